//! Opening a store with a wrong address: `PostgresStore::connect` and
//! `MySqlStore::connect` give up after their timeout (5 s by default) naming host and port,
//! never the password, and refuse a misspelt scheme at once; `SqliteStore::open` refuses another kind of URL and a file in
//! a directory that does not exist, naming them.

use crate::common;

use std::{error::Error as _, net::SocketAddr};

use tower_pat::{SqliteStore, store::StoreErrorKind};

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("its address");
    drop(listener);
    addr
}

/// The error's message, its `Debug`, and every source's message.
fn everything_said(error: &tower_pat::store::StoreError) -> String {
    let mut said = format!("{error}\n{error:?}");
    let mut source = error.source();
    while let Some(s) = source {
        said.push_str(&format!("\n{s}"));
        source = s.source();
    }
    said
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::time::Duration;

    use tower_pat::{
        PostgresStore,
        store::{StoreErrorKind, postgres::DEFAULT_CONNECT_TIMEOUT},
    };

    use super::{closed_port, everything_said};
    use crate::common::db::with_postgres;

    const PASSWORD: &str = "s3cret-Pa55word";

    #[tokio::test]
    async fn a_closed_port_fails_within_the_timeout_naming_host_and_port() {
        let addr = closed_port();
        let url = format!("postgres://app:{PASSWORD}@{addr}/app");
        let error = PostgresStore::<i64>::connect_with(&url, Duration::from_millis(300))
            .await
            .expect_err("nothing listens there");
        assert_eq!(error.kind(), StoreErrorKind::Timeout);
        let message = error.to_string();
        assert!(message.contains(&addr.to_string()), "{message}");
        assert!(message.contains("refused"), "{message}");
        assert!(message.contains("300ms"), "{message}");
        assert!(!everything_said(&error).contains(PASSWORD), "{error:?}");
    }

    #[tokio::test]
    async fn connect_waits_the_default_timeout_and_says_so() {
        let addr = closed_port();
        let url = format!("postgresql://app:{PASSWORD}@{addr}/app");
        let error = PostgresStore::<i64>::connect(&url)
            .await
            .expect_err("nothing listens there");
        assert_eq!(DEFAULT_CONNECT_TIMEOUT, Duration::from_secs(5));
        let message = error.to_string();
        assert!(message.contains(&addr.to_string()), "{message}");
        assert!(message.contains("5s"), "{message}");
        assert!(!everything_said(&error).contains(PASSWORD), "{error:?}");
    }

    #[tokio::test]
    async fn a_misspelt_scheme_is_refused_at_once_naming_it() {
        // The server would answer (when there is one), so only the scheme can be refused.
        let host = std::env::var(crate::common::db::POSTGRES_URL_VAR)
            .ok()
            .and_then(|url| url.split_once("://").map(|(_, rest)| rest.to_owned()))
            .unwrap_or_else(|| format!("postgres@{}/test", closed_port()));
        let host = host.replace("postgres@", &format!("postgres:{PASSWORD}@"));
        for scheme in ["postgress", "postgre", "mysql", "sqlite"] {
            let url = format!("{scheme}://{host}");
            let error = PostgresStore::<i64>::connect_with(&url, Duration::from_secs(30))
                .await
                .expect_err("not a PostgreSQL URL");
            let message = error.to_string();
            assert!(message.contains(&format!("`{scheme}://`")), "{message}");
            assert!(
                message.contains("`postgres://`") && message.contains("`postgresql://`"),
                "{message}"
            );
            assert!(!everything_said(&error).contains(PASSWORD), "{error:?}");
        }
        for not_a_url in ["", "db.internal:5432", "//db.internal/app", "5432"] {
            let error = PostgresStore::<i64>::connect_with(not_a_url, Duration::from_secs(30))
                .await
                .expect_err("not a URL");
            assert!(
                error.to_string().contains("PostgreSQL URL")
                    || error.to_string().contains("scheme"),
                "{not_a_url:?}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn a_url_that_does_not_parse_is_refused_without_showing_it() {
        let url = format!("postgres://app:{PASSWORD}@127.0.0.1:99999/app");
        let error = PostgresStore::<i64>::connect_with(&url, Duration::from_secs(30))
            .await
            .expect_err("no such port");
        assert!(
            error.to_string().starts_with("invalid PostgreSQL URL"),
            "{error}"
        );
        assert!(!everything_said(&error).contains(PASSWORD), "{error:?}");
    }

    #[tokio::test]
    async fn both_schemes_connect_and_a_refusal_names_the_server() {
        with_postgres(|url, _table| async move {
            let rest = url.split_once("://").expect("a URL").1.to_owned();
            for scheme in ["postgres", "postgresql", "PostgreSQL"] {
                let store = PostgresStore::<i64>::connect(&format!("{scheme}://{rest}"))
                    .await
                    .unwrap_or_else(|error| panic!("{scheme}: {error}"));
                let one: i32 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
                assert_eq!(one, 1);
            }
            // Reached, but refused: a database that does not exist.
            let (server, _database) = rest.rsplit_once('/').expect("a database in the URL");
            let error = PostgresStore::<i64>::connect(&format!(
                "postgres://{server}/tower_pat_no_such_database"
            ))
            .await
            .expect_err("no such database");
            assert_eq!(error.kind(), StoreErrorKind::Backend);
            let message = error.to_string();
            let address = server.rsplit_once('@').map_or(server, |(_, a)| a);
            assert!(message.contains(address), "{message}");
            assert!(message.contains("tower_pat_no_such_database"), "{message}");
        })
        .await;
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use std::time::Duration;

    use tower_pat::{MySqlStore, store::StoreErrorKind};

    use super::{closed_port, everything_said};
    use crate::common::db::with_mysql;

    const PASSWORD: &str = "s3cret-Pa55word";

    #[tokio::test]
    async fn a_closed_port_fails_within_the_timeout_naming_host_and_port() {
        let addr = closed_port();
        let url = format!("mysql://app:{PASSWORD}@{addr}/app");
        let error = MySqlStore::<i64>::connect_with(&url, Duration::from_millis(300))
            .await
            .expect_err("nothing listens there");
        assert_eq!(error.kind(), StoreErrorKind::Timeout);
        let message = error.to_string();
        assert!(message.contains(&addr.to_string()), "{message}");
        assert!(message.contains("refused"), "{message}");
        assert!(!everything_said(&error).contains(PASSWORD), "{error:?}");
    }

    #[tokio::test]
    async fn a_misspelt_scheme_is_refused_at_once_naming_it() {
        let addr = closed_port();
        for scheme in ["mysq", "maria", "postgres", "sqlite"] {
            let url = format!("{scheme}://root:{PASSWORD}@{addr}/test");
            let error = MySqlStore::<i64>::connect_with(&url, Duration::from_secs(30))
                .await
                .expect_err("not a MySQL URL");
            let message = error.to_string();
            assert!(message.contains(&format!("`{scheme}://`")), "{message}");
            assert!(
                message.contains("`mysql://`") && message.contains("`mariadb://`"),
                "{message}"
            );
            assert!(!everything_said(&error).contains(PASSWORD), "{error:?}");
        }
        let error = MySqlStore::<i64>::connect_with("db.internal/app", Duration::from_secs(30))
            .await
            .expect_err("not a URL");
        assert!(error.to_string().contains("MySQL URL"), "{error}");
    }

    #[tokio::test]
    async fn both_schemes_connect_and_a_refusal_names_the_server() {
        with_mysql(|url, _table| async move {
            let rest = url.split_once("://").expect("a URL").1.to_owned();
            for scheme in ["mysql", "mariadb", "MySQL"] {
                let store = MySqlStore::<i64>::connect(&format!("{scheme}://{rest}"))
                    .await
                    .unwrap_or_else(|error| panic!("{scheme}: {error}"));
                let one: i32 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
                assert_eq!(one, 1);
            }
            // Reached, but refused: a database that does not exist.
            let (server, _database) = rest.rsplit_once('/').expect("a database in the URL");
            let error =
                MySqlStore::<i64>::connect(&format!("mysql://{server}/tower_pat_no_such_database"))
                    .await
                    .expect_err("no such database");
            assert_eq!(error.kind(), StoreErrorKind::Backend);
            let message = error.to_string();
            let address = server.rsplit_once('@').map_or(server, |(_, a)| a);
            assert!(message.contains(address), "{message}");
            assert!(message.contains("tower_pat_no_such_database"), "{message}");
        })
        .await;
    }
}

#[tokio::test]
async fn sqlite_refuses_another_kind_of_url_naming_its_scheme() {
    for url in [
        "postgres://app:pw@127.0.0.1/app",
        "mysql://root@localhost/test",
    ] {
        let error = SqliteStore::<i64>::open(url)
            .await
            .expect_err("not a SQLite file");
        let scheme = url.split_once("://").unwrap().0;
        assert!(
            error.to_string().contains(&format!("`{scheme}://`")),
            "{error}"
        );
        assert!(!everything_said(&error).contains(":pw@"), "{error:?}");
    }
    let error = SqliteStore::<i64>::open("sqlite://tokens.db?mode=ro")
        .await
        .expect_err("parameters");
    assert!(error.to_string().contains("without parameters"), "{error}");
}

#[tokio::test]
async fn sqlite_refuses_a_file_in_a_missing_directory_naming_it() {
    let dir = std::env::temp_dir().join(format!(
        "tower-pat-missing-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let path = dir.join("tokens.db");
    let error = SqliteStore::<i64>::open(&path)
        .await
        .expect_err("no such directory");
    assert_eq!(error.kind(), StoreErrorKind::Backend);
    let message = error.to_string();
    assert!(
        message.contains(&format!("directory {} does not exist", dir.display())),
        "{message}"
    );
    assert!(!dir.exists(), "nothing was created");
    // Through a `sqlite:` URL too.
    let url = format!("sqlite://{}", path.display());
    let error = SqliteStore::<i64>::open(url.as_str())
        .await
        .expect_err("no such directory");
    assert!(error.to_string().contains("does not exist"), "{error}");
}

#[tokio::test]
async fn sqlite_urls_name_the_same_file() {
    let db = common::db::TempDb::new();
    let url = format!("sqlite://{}", db.path().display());
    let store = SqliteStore::<i64>::open(url.as_str()).await.unwrap();
    store.migrate().await.unwrap();
    assert!(db.path().is_file(), "the URL opened the file itself");
    let memory = SqliteStore::<i64>::open("sqlite::memory:").await.unwrap();
    memory.migrate().await.unwrap();
}
