//! What the store tests share: a PostgreSQL or MySQL table of their own (or a visible
//! skip), and a SQLite file of their own.

#![allow(unused_imports, unreachable_pub)]

use std::{
    future::Future,
    io::Write,
    panic::{AssertUnwindSafe, resume_unwind},
    path::PathBuf,
};

use futures_util::FutureExt;

/// The variable that names the PostgreSQL server the tests use.
pub const POSTGRES_URL_VAR: &str = "TOWER_PAT_POSTGRES_URL";

/// A table name no other run uses: `pat_test_` and 16 random hex digits.
pub fn unique_table() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("pat_test_{}", &hex[..16])
}

/// Runs `f` with the server's URL and a fresh table name, then drops that table (whether
/// the test passed or panicked). Without the variable, says so where the test's output
/// is not captured, and returns.
#[cfg(feature = "postgres")]
pub async fn with_postgres<F, Fut>(f: F)
where
    F: FnOnce(String, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(url) = std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|u| !u.is_empty())
    else {
        // The test harness names the thread after the test.
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("a PostgreSQL test");
        // Straight to stderr: the harness captures `eprintln!`.
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped: {POSTGRES_URL_VAR} is not set"
        );
        return;
    };
    let table = unique_table();
    let outcome = AssertUnwindSafe(f(url.clone(), table.clone()))
        .catch_unwind()
        .await;
    drop_table(&url, &table).await;
    if let Err(panic) = outcome {
        resume_unwind(panic);
    }
}

#[cfg(feature = "postgres")]
async fn drop_table(url: &str, table: &str) {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect to drop the test table");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"DROP TABLE IF EXISTS "{table}""#
    )))
    .execute(&pool)
    .await
    .expect("drop the test table");
    // The change feed's function outlives its table's triggers.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"DROP FUNCTION IF EXISTS "{table}_change_feed"()"#
    )))
    .execute(&pool)
    .await
    .expect("drop the test table's change feed");
    pool.close().await;
}

/// A small pool on `url`: tests run side by side on one server.
#[cfg(feature = "postgres")]
pub async fn pg_pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .expect("connect to PostgreSQL")
}

/// The variable that names the MySQL (or MariaDB) server the tests use.
pub const MYSQL_URL_VAR: &str = "TOWER_PAT_MYSQL_URL";

/// Runs `f` with the MySQL server's URL and a fresh table name, then drops that table
/// (whether the test passed or panicked). Without the variable, says so where the test's
/// output is not captured, and returns.
#[cfg(feature = "mysql")]
pub async fn with_mysql<F, Fut>(f: F)
where
    F: FnOnce(String, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(url) = mysql_url() else {
        return;
    };
    let table = unique_table();
    let outcome = AssertUnwindSafe(f(url.clone(), table.clone()))
        .catch_unwind()
        .await;
    let pool = mysql_pool(&url).await;
    // The table's change feed: its triggers go with it, its change table does not.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS `{table}`, `{table}_changes`"
    )))
    .execute(&pool)
    .await
    .expect("drop the test table");
    pool.close().await;
    if let Err(panic) = outcome {
        resume_unwind(panic);
    }
}

/// The MySQL server's URL, or `None` after saying the test is skipped.
#[cfg(feature = "mysql")]
pub fn mysql_url() -> Option<String> {
    let url = std::env::var(MYSQL_URL_VAR).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("a MySQL test");
        // Straight to stderr: the harness captures `eprintln!`.
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped: {MYSQL_URL_VAR} is not set"
        );
    }
    url
}

/// A small pool on `url`: tests run side by side on one server.
#[cfg(feature = "mysql")]
pub async fn mysql_pool(url: &str) -> sqlx::MySqlPool {
    sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .expect("connect to MySQL")
}

/// A SQLite file path under the temp dir, unique to this run; the file and its WAL
/// companions are removed on drop.
pub struct TempDb(PathBuf);

impl TempDb {
    pub fn new() -> Self {
        let name = format!("tower-pat-test-{}.db", uuid::Uuid::new_v4().simple());
        Self(std::env::temp_dir().join(name))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}
