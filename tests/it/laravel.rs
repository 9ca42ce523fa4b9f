//! Beside a Laravel application: the Sanctum and Passport tokens it issued, minted by PHP
//! itself (`scripts/laravel-fixtures.php` wrote `tests/fixtures/laravel/`), read by
//! `LaravelStore` from tables shaped as Laravel's migrations make them, on SQLite, and on
//! MariaDB and PostgreSQL where `TOWER_PAT_MYSQL_URL` and `TOWER_PAT_POSTGRES_URL` name
//! them, through a real layer over loopback.

use crate::common::{self, db};

use std::time::Duration as StdDuration;

use axum::{Router, routing::get};
use http::StatusCode;
use serde_json::Value;
use sqlx::AssertSqlSafe;
use tower_pat::{
    AccessToken, PatLayer, RequireScopesLayer,
    credential::Formats,
    laravel::{PassportFormat, SanctumFormat},
    store::laravel::{LaravelPool, LaravelStore},
    token::TokenFormat,
};

/// The fixtures PHP minted: `tests/fixtures/laravel/`, or the directory
/// `TOWER_PAT_LARAVEL_FIXTURES` names (CI mints fresh ones there with
/// `php scripts/laravel-fixtures.php DIR`).
fn fixtures() -> String {
    std::env::var("TOWER_PAT_LARAVEL_FIXTURES")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/laravel").to_owned()
        })
}

fn fixture(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{}/{name}", fixtures())).expect("a fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

/// Which database, for the few statements whose SQL differs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Db {
    MySql,
    Postgres,
    Sqlite,
}

/// The three tables, named after `prefix`, in Laravel's shapes: Sanctum's
/// `personal_access_tokens`, and Passport's `oauth_access_tokens` and `oauth_clients` as
/// 13.x makes them (`grant_types`), or 12.x (`personal_access_client`).
struct Tables {
    sanctum: String,
    tokens: String,
    clients: String,
}

impl Tables {
    fn new(prefix: &str) -> Self {
        Self {
            sanctum: format!("{prefix}_pat"),
            tokens: format!("{prefix}_oat"),
            clients: format!("{prefix}_oc"),
        }
    }

    fn create(&self, db: Db, passport_12: bool) -> Vec<String> {
        let (id, ts, boolean) = match db {
            Db::MySql => (
                "bigint unsigned auto_increment primary key",
                "timestamp",
                "tinyint(1)",
            ),
            Db::Postgres => (
                "bigserial primary key",
                "timestamp(0) without time zone",
                "boolean",
            ),
            Db::Sqlite => (
                "integer primary key autoincrement",
                "datetime",
                "tinyint(1)",
            ),
        };
        let client_kind = if passport_12 {
            format!("personal_access_client {boolean} not null, password_client {boolean} not null")
        } else {
            "grant_types text not null".to_owned()
        };
        vec![
            format!(
                "CREATE TABLE {} (id {id}, tokenable_type varchar(255) not null, \
                 tokenable_id bigint not null, name text not null, token varchar(64) not null unique, \
                 abilities text null, last_used_at {ts} null, expires_at {ts} null, \
                 created_at {ts} null, updated_at {ts} null)",
                self.sanctum
            ),
            format!(
                "CREATE TABLE {} (id varchar(100) primary key, user_id bigint null, \
                 client_id varchar(36) not null, name varchar(255) null, scopes text null, \
                 revoked {boolean} not null, created_at {ts} null, updated_at {ts} null, \
                 expires_at {ts} null)",
                self.tokens
            ),
            format!(
                "CREATE TABLE {} (id varchar(36) primary key, name varchar(255) not null, \
                 {client_kind}, revoked {boolean} not null, created_at {ts} null, updated_at {ts} null)",
                self.clients
            ),
        ]
    }

    /// The rows: every Sanctum fixture (the bare one as row 1, one owned by a team), the
    /// Passport clients, and a row per Passport fixture but "no row".
    fn rows(&self, db: Db, passport_12: bool) -> Vec<String> {
        let (t, f) = match db {
            Db::Postgres => ("true", "false"),
            Db::MySql | Db::Sqlite => ("1", "0"),
        };
        let mut rows = Vec::new();
        for token in fixture("sanctum.json") {
            let id = token["id"].as_u64().unwrap_or(1);
            let owner = if token["generation"] == "3.3 other owner type" {
                "App\\Models\\Team"
            } else {
                "App\\Models\\User"
            };
            // MySQL reads a backslash in a string literal as an escape.
            let owner = if db == Db::MySql {
                owner.replace('\\', "\\\\")
            } else {
                owner.to_owned()
            };
            let expires = token["expires_at"]
                .as_str()
                .map_or("NULL".to_owned(), |e| format!("'{e}'"));
            rows.push(format!(
                "INSERT INTO {} (id, tokenable_type, tokenable_id, name, token, abilities, expires_at, \
                 created_at, updated_at) VALUES ({id}, '{owner}', 42, '{}', '{}', '{}', {expires}, \
                 '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
                self.sanctum,
                token["generation"].as_str().unwrap(),
                token["token"].as_str().unwrap(),
                token["abilities"].as_str().unwrap(),
            ));
        }
        for (client, personal, revoked) in [
            ("personal-client", true, false),
            ("revoked-client", true, true),
            ("password-client", false, false),
        ] {
            let kind = if passport_12 {
                format!(
                    "{}, {}",
                    if personal { t } else { f },
                    if personal { f } else { t }
                )
            } else if personal {
                "'[\"personal_access\"]'".to_owned()
            } else {
                "'[\"password\",\"refresh_token\"]'".to_owned()
            };
            let columns = if passport_12 {
                "personal_access_client, password_client"
            } else {
                "grant_types"
            };
            rows.push(format!(
                "INSERT INTO {} (id, name, {columns}, revoked) VALUES ('{client}', '{client}', {kind}, {})",
                self.clients,
                if revoked { t } else { f },
            ));
        }
        for token in fixture("passport.json") {
            let case = token["case"].as_str().unwrap();
            if case == "no row" {
                continue;
            }
            let client = match case {
                "client revoked" => "revoked-client",
                "not a personal access client" => "password-client",
                _ => "personal-client",
            };
            let scopes = if case == "valid, all scopes" {
                "[\"*\"]"
            } else {
                "[\"orders:read\"]"
            };
            let user = if case == "client credentials" {
                "NULL"
            } else {
                "42"
            };
            rows.push(format!(
                "INSERT INTO {} (id, user_id, client_id, name, scopes, revoked, created_at, updated_at, \
                 expires_at) VALUES ('{}', {user}, '{client}', '{case}', '{scopes}', {}, \
                 '2026-01-01 00:00:00', '2026-01-01 00:00:00', '2037-01-01 00:00:00')",
                self.tokens,
                token["jti"].as_str().unwrap(),
                if case == "revoked row" { t } else { f },
            ));
        }
        rows
    }
}

async fn execute(pool: &LaravelPool, statements: &[String]) {
    for statement in statements {
        // One statement, typed for each pool's database.
        macro_rules! run {
            ($p:expr) => {
                sqlx::query(AssertSqlSafe(statement.clone()))
                    .execute($p)
                    .await
                    .map(drop)
            };
        }
        let done = match pool {
            LaravelPool::MySql(p) => run!(p),
            LaravelPool::Postgres(p) => run!(p),
            LaravelPool::Sqlite(p) => run!(p),
            _ => unreachable!("the tests build MySQL, Postgres and SQLite pools"),
        };
        done.unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

async fn text(pool: &LaravelPool, statement: &str) -> Option<String> {
    macro_rules! fetch {
        ($p:expr) => {
            sqlx::query_scalar::<_, Option<String>>(AssertSqlSafe(statement.to_owned()))
                .fetch_one($p)
                .await
        };
    }
    match pool {
        LaravelPool::MySql(p) => fetch!(p),
        LaravelPool::Postgres(p) => fetch!(p),
        LaravelPool::Sqlite(p) => fetch!(p),
        _ => unreachable!("the tests build MySQL, Postgres and SQLite pools"),
    }
    .expect(statement)
}

/// A pool on a SQLite file, as a Laravel application keeps `database.sqlite` (WAL, so a
/// second pool on the same file writes beside it).
async fn sqlite_pool(file: &db::TempDb) -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(file.path())
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(StdDuration::from_secs(5)),
        )
        .await
        .expect("a SQLite file")
}

fn status_scope() -> RequireScopesLayer {
    RequireScopesLayer::all(["orders:read:status"])
}

/// Every check, on one database: the Sanctum generations, the Passport cases, last use
/// written back, a deleted row refused.
async fn laravel_tokens_are_accepted_as_laravel_accepts_them(
    pool: LaravelPool,
    db: Db,
    prefix: &str,
    passport_12: bool,
) {
    let tables = Tables::new(prefix);
    execute(&pool, &tables.create(db, passport_12)).await;
    execute(&pool, &tables.rows(db, passport_12)).await;

    let store = LaravelStore::<i64>::connect(pool.clone())
        .await
        .unwrap()
        .tables(&tables.sanctum, &tables.tokens, &tables.clients)
        .await
        .unwrap();
    let passport = PassportFormat::from_file(format!("{}/oauth-public.key", fixtures())).unwrap();
    let layer = PatLayer::new(store)
        .accept(
            Formats::new(TokenFormat::default())
                .sanctum(SanctumFormat::new())
                .passport(passport),
        )
        .last_used_interval(Some(time::Duration::seconds(1)));
    let app = Router::new()
        .route(
            "/whoami",
            get(
                |token: AccessToken| async move { format!("{} {}", token.user_id(), token.kind()) },
            ),
        )
        .route(
            "/orders",
            get(|| async { "placed" }).route_layer(RequireScopesLayer::all(["orders:create"])),
        )
        .route(
            "/status",
            get(|| async { "status" }).route_layer(status_scope()),
        )
        .layer(layer.clone());
    let addr = common::serve(app).await;

    // Sanctum: every generation PHP minted, a bad crc32b included (Sanctum never checks it).
    for token in fixture("sanctum.json") {
        let generation = token["generation"].as_str().unwrap();
        let bearer = token["bearer"].as_str().unwrap();
        let reply = common::bearer(addr, "/whoami", bearer).await;
        let expected = match generation {
            "3.3 expired" | "3.3 other owner type" => StatusCode::UNAUTHORIZED,
            _ => StatusCode::OK,
        };
        assert_eq!(
            reply.status, expected,
            "sanctum {generation}: {}",
            reply.body
        );
        if expected == StatusCode::OK {
            assert_eq!(reply.body, "42 sanctum", "sanctum {generation}");
        }
    }
    // Abilities are scopes: `*` grants all, otherwise exact names.
    let by_generation = |g: &str| {
        fixture("sanctum.json")
            .into_iter()
            .find(|t| t["generation"] == g)
            .unwrap()["bearer"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let wildcard = by_generation("3.2.6 prefix+crc32");
    let read_only = by_generation("3.3 crc32b");
    assert_eq!(
        common::bearer(addr, "/orders", &wildcard).await.status,
        StatusCode::OK
    );
    assert_eq!(
        common::bearer(addr, "/orders", &read_only).await.status,
        StatusCode::FORBIDDEN
    );
    // The id before `|` must be the row's.
    let (_, secret) = read_only.split_once('|').unwrap();
    let reply = common::bearer(addr, "/whoami", &format!("6|{secret}")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // Passport.
    for token in fixture("passport.json") {
        let case = token["case"].as_str().unwrap();
        let bearer = token["bearer"].as_str().unwrap();
        let reply = common::bearer(addr, "/whoami", bearer).await;
        let accepted = matches!(
            case,
            "valid" | "valid, all scopes" | "integer dates" | "numeric string dates"
        );
        if accepted {
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "passport {case}: {}",
                reply.body
            );
            assert_eq!(reply.body, "42 passport", "passport {case}");
        } else {
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "passport {case}: {}",
                reply.body
            );
            assert!(
                reply.challenge().unwrap().contains("invalid_token"),
                "passport {case}: {:?}",
                reply.challenge()
            );
        }
    }
    let passport = |c: &str| {
        fixture("passport.json")
            .into_iter()
            .find(|t| t["case"] == c)
            .unwrap()["bearer"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        common::bearer(addr, "/orders", &passport("valid"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        common::bearer(addr, "/orders", &passport("valid, all scopes"))
            .await
            .status,
        StatusCode::OK
    );

    // `orders:read` grants `orders:read:status` only with Passport's inherited scopes on.
    assert_eq!(
        common::bearer(addr, "/status", &passport("valid"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let inheriting = PatLayer::new(
        LaravelStore::<i64>::connect(pool.clone())
            .await
            .unwrap()
            .tables(&tables.sanctum, &tables.tokens, &tables.clients)
            .await
            .unwrap(),
    )
    .accept(
        Formats::new(TokenFormat::default())
            .sanctum(SanctumFormat::new())
            .passport(
                PassportFormat::from_file(format!("{}/oauth-public.key", fixtures()))
                    .unwrap()
                    .inherited_scopes(true),
            ),
    )
    // The crate's own tokens inherit here too; a Sanctum ability still must not.
    .matching(tower_pat::scope::ScopeMatching::EXACT.with_inheritance(true));
    let inheriting = common::serve(
        Router::new()
            .route(
                "/status",
                get(|| async { "status" }).route_layer(status_scope()),
            )
            .layer(inheriting),
    )
    .await;
    assert_eq!(
        common::bearer(inheriting, "/status", &passport("valid"))
            .await
            .status,
        StatusCode::OK
    );
    // A Sanctum ability never inherits.
    assert_eq!(
        common::bearer(inheriting, "/status", &read_only)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // Last use, written back as Laravel writes it, once per batch.
    assert!(layer.flush().await > 0, "uses were recorded");
    let as_text = if db == Db::MySql { "CHAR" } else { "TEXT" };
    let row = |column: &str| {
        format!(
            "SELECT CAST({column} AS {as_text}) FROM {} WHERE id = 5",
            tables.sanctum
        )
    };
    let used = text(&pool, &row("last_used_at"))
        .await
        .expect("last_used_at written");
    let updated = text(&pool, &row("updated_at")).await.expect("updated_at");
    assert_eq!(used, updated, "both columns, one time");
    // Written as Laravel writes it (`Y-m-d H:i:s`, UTC here), a moment ago.
    let written = time::PrimitiveDateTime::parse(
        &used[..19],
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .unwrap_or_else(|e| panic!("last_used_at {used:?}: {e}"))
    .assume_utc();
    let ago = time::OffsetDateTime::now_utc() - written;
    assert!(
        ago >= time::Duration::ZERO && ago < time::Duration::minutes(1),
        "last used {used}, {ago} ago"
    );

    // Revocation is the row's deletion: refused at once without a cache.
    execute(
        &pool,
        &[format!("DELETE FROM {} WHERE id = 5", tables.sanctum)],
    )
    .await;
    assert_eq!(
        common::bearer(addr, "/whoami", &read_only).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Revoked by Laravel's `revoke()`: `revoked = 1`.
    let t = if db == Db::Postgres { "true" } else { "1" };
    let valid = fixture("passport.json")
        .into_iter()
        .find(|t| t["case"] == "valid")
        .unwrap();
    execute(
        &pool,
        &[format!(
            "UPDATE {} SET revoked = {t} WHERE id = '{}'",
            tables.tokens,
            valid["jti"].as_str().unwrap()
        )],
    )
    .await;
    assert_eq!(
        common::bearer(addr, "/whoami", &passport("valid"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    tokio::time::sleep(StdDuration::from_millis(10)).await;
    if db != Db::Sqlite {
        execute(
            &pool,
            &[format!(
                "DROP TABLE {}, {}, {}",
                tables.sanctum, tables.tokens, tables.clients
            )],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_laravel_tables() {
    for passport_12 in [false, true] {
        let file = db::TempDb::new();
        let pool = sqlite_pool(&file).await;
        laravel_tokens_are_accepted_as_laravel_accepts_them(
            pool.into(),
            Db::Sqlite,
            "laravel",
            passport_12,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_laravel_tables() {
    db::with_postgres(|url, table| async move {
        let pool = db::pg_pool(&url).await;
        laravel_tokens_are_accepted_as_laravel_accepts_them(
            pool.clone().into(),
            Db::Postgres,
            &format!("{table}_13"),
            false,
        )
        .await;
        laravel_tokens_are_accepted_as_laravel_accepts_them(
            pool.into(),
            Db::Postgres,
            &format!("{table}_12"),
            true,
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_laravel_tables() {
    db::with_mysql(|url, table| async move {
        let pool = db::mysql_pool(&url).await;
        laravel_tokens_are_accepted_as_laravel_accepts_them(
            pool.clone().into(),
            Db::MySql,
            &format!("{table}_13"),
            false,
        )
        .await;
        laravel_tokens_are_accepted_as_laravel_accepts_them(
            pool.into(),
            Db::MySql,
            &format!("{table}_12"),
            true,
        )
        .await;
    })
    .await;
}

/// A table from before Sanctum 3.0 has no `expires_at`: its tokens never expire, and the
/// store still reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sanctum_table_from_before_expiry() {
    use tower_pat::{
        TokenStore,
        credential::{Credential, Presented},
        token::TokenHash,
    };
    let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
    let token = fixture("sanctum.json")
        .into_iter()
        .find(|t| t["generation"] == "2.6 id|40")
        .unwrap();
    for statement in [
        "CREATE TABLE personal_access_tokens (id integer primary key autoincrement, \
         tokenable_type varchar not null, tokenable_id integer not null, name varchar not null, \
         token varchar(64) not null unique, abilities text, last_used_at datetime, \
         created_at datetime, updated_at datetime)"
            .to_owned(),
        format!(
            "INSERT INTO personal_access_tokens (id, tokenable_type, tokenable_id, name, token, \
             abilities, created_at, updated_at) VALUES (3, 'App\\Models\\User', 42, 'old', '{}', \
             '[\"orders:read\"]', '2020-01-01 00:00:00', '2020-01-01 00:00:00')",
            token["token"].as_str().unwrap()
        ),
    ] {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&pool)
            .await
            .unwrap();
    }
    let store = LaravelStore::<i64>::connect(pool).await.unwrap();
    let key = TokenHash::from_hex(token["token"].as_str().unwrap()).unwrap();
    let found = store
        .find_presented(&Presented::new(key, Credential::Sanctum { id: Some(3) }))
        .await
        .unwrap()
        .expect("the row, without an expires_at column");
    assert_eq!(found.user_id, 42);
    assert!(found.expires_at.year() >= 9999, "{}", found.expires_at);
    // With `sanctum.expiration` set, `created_at` bounds it.
    let store = store.sanctum_expiration(Some(time::Duration::minutes(60)));
    let found = store
        .find_presented(&Presented::new(key, Credential::Sanctum { id: Some(3) }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.expires_at,
        time::macros::datetime!(2020-01-01 01:00 UTC)
    );
    // Read in the application's zone: `2020-01-01 00:00:00` written at +01:00 is 23:00 UTC
    // the day before.
    let store = store.timezone(time::macros::offset!(+1));
    let found = store
        .find_presented(&Presented::new(key, Credential::Sanctum { id: Some(3) }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.created_at,
        time::macros::datetime!(2019-12-31 23:00 UTC)
    );
    assert_eq!(
        found.expires_at,
        time::macros::datetime!(2020-01-01 00:00 UTC)
    );
}

/// How many plain-SQL revocations the propagation test times, per database.
const REVOCATIONS: usize = 100;

/// Revocations written by plain SQL on a connection of their own (Sanctum: `DELETE`, as
/// Laravel revokes; Passport: `UPDATE … SET revoked`, and a revoked client), refused by an
/// instance whose `CachedStore` (TTL ten minutes) follows the tables' change feed. Prints
/// how long each Sanctum revocation took to be refused, p50 and p99.
async fn laravel_revocations_reach_a_cached_instance(
    pool: LaravelPool,
    writer: LaravelPool,
    db: Db,
    prefix: &str,
) {
    use tower_pat::store::CachedStore;

    let tables = Tables::new(prefix);
    execute(&pool, &tables.create(db, false)).await;
    execute(&pool, &tables.rows(db, false)).await;
    // A hundred Sanctum tokens more, ids 1001…, as Sanctum makes them.
    let minted: Vec<(u64, String)> = (0..REVOCATIONS as u64)
        .map(|i| {
            let secret: String = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )[..40]
                .to_owned();
            (1001 + i, secret)
        })
        .collect();
    let inserts: Vec<String> = minted
        .iter()
        .map(|(id, secret)| {
            let owner = if db == Db::MySql {
                "App\\\\Models\\\\User"
            } else {
                "App\\Models\\User"
            };
            format!(
                "INSERT INTO {} (id, tokenable_type, tokenable_id, name, token, abilities, \
                 created_at, updated_at) VALUES ({id}, '{owner}', 42, 'cli', '{}', '[\"*\"]', \
                 '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
                tables.sanctum,
                tower_pat::token::TokenHash::of(secret).to_hex()
            )
        })
        .collect();
    execute(&pool, &inserts).await;

    let laravel = LaravelStore::<i64>::connect(pool.clone())
        .await
        .unwrap()
        .tables(&tables.sanctum, &tables.tokens, &tables.clients)
        .await
        .unwrap();
    laravel.install_change_feed().await.unwrap();
    let cached = CachedStore::builder()
        .ttl(StdDuration::from_secs(600))
        .build(laravel.clone());
    let follower = laravel.follow_changes(cached.evictor()).await.unwrap();
    let passport = PassportFormat::from_file(format!("{}/oauth-public.key", fixtures())).unwrap();
    let layer = PatLayer::new(cached).accept(
        Formats::new(TokenFormat::default())
            .sanctum(SanctumFormat::new())
            .passport(passport),
    );
    let app = Router::new()
        .route(
            "/whoami",
            get(|token: AccessToken| async move { token.kind().to_string() }),
        )
        .layer(layer);
    let addr = common::serve(app).await;
    let client = common::KeepAlive::new(addr, "/whoami");
    let bearers: Vec<String> = minted
        .iter()
        .map(|(id, secret)| format!("{id}|{secret}"))
        .collect();
    for bearer in &bearers {
        assert_eq!(client.status(bearer).await, StatusCode::OK, "warm");
    }

    // Ten at a time: each task deletes its row, then asks until it is refused.
    let mut seen = Vec::with_capacity(REVOCATIONS);
    for round in minted.chunks(10).zip(bearers.chunks(10)) {
        let tasks: Vec<_> = round
            .0
            .iter()
            .zip(round.1)
            .map(|((id, _), bearer)| {
                let writer = writer.clone();
                let client = client.clone();
                let bearer = bearer.clone();
                let delete = format!("DELETE FROM {} WHERE id = {id}", tables.sanctum);
                tokio::spawn(async move {
                    execute(&writer, &[delete]).await;
                    let committed = std::time::Instant::now();
                    while client.status(&bearer).await == StatusCode::OK {
                        assert!(
                            committed.elapsed() < StdDuration::from_secs(5),
                            "a deleted Sanctum row still admitted after 5 s"
                        );
                        tokio::time::sleep(StdDuration::from_millis(1)).await;
                    }
                    committed.elapsed()
                })
            })
            .collect();
        for task in tasks {
            seen.push(task.await.unwrap());
        }
    }
    seen.sort();
    let at = |q: f64| seen[((seen.len() - 1) as f64 * q).round() as usize];
    let line = format!(
        "{db:?}: {REVOCATIONS} Sanctum rows deleted by plain SQL, refused by a cached instance \
         after p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());

    // Passport: the row revoked as `$token->revoke()` does, then the client.
    let passport_token = |case: &str| {
        fixture("passport.json")
            .into_iter()
            .find(|t| t["case"] == case)
            .unwrap()
    };
    let valid = passport_token("valid");
    let all = passport_token("valid, all scopes");
    for token in [&valid, &all] {
        assert_eq!(
            client.status(token["bearer"].as_str().unwrap()).await,
            StatusCode::OK
        );
    }
    let t = if db == Db::Postgres { "true" } else { "1" };
    let refused_soon = |bearer: String| {
        let client = client.clone();
        async move {
            let start = std::time::Instant::now();
            while client.status(&bearer).await == StatusCode::OK {
                assert!(
                    start.elapsed() < StdDuration::from_secs(5),
                    "still admitted after 5 s"
                );
                tokio::time::sleep(StdDuration::from_millis(5)).await;
            }
        }
    };
    execute(
        &writer,
        &[format!(
            "UPDATE {} SET revoked = {t} WHERE id = '{}'",
            tables.tokens,
            valid["jti"].as_str().unwrap()
        )],
    )
    .await;
    refused_soon(valid["bearer"].as_str().unwrap().to_owned()).await;
    execute(
        &writer,
        &[format!(
            "UPDATE {} SET revoked = {t} WHERE id = 'personal-client'",
            tables.clients
        )],
    )
    .await;
    refused_soon(all["bearer"].as_str().unwrap().to_owned()).await;

    follower.stop();
    if db != Db::Sqlite {
        execute(
            &pool,
            &[format!(
                "DROP TABLE {}, {}, {}",
                tables.sanctum, tables.tokens, tables.clients
            )],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_laravel_revocations_reach_a_cached_instance() {
    let file = db::TempDb::new();
    let pool = sqlite_pool(&file).await;
    let writer = sqlite_pool(&file).await;
    laravel_revocations_reach_a_cached_instance(pool.into(), writer.into(), Db::Sqlite, "laravel")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_laravel_revocations_reach_a_cached_instance() {
    db::with_postgres(|url, table| async move {
        let pool = db::pg_pool(&url).await;
        let writer = db::pg_pool(&url).await;
        laravel_revocations_reach_a_cached_instance(
            pool.into(),
            writer.into(),
            Db::Postgres,
            &format!("{table}_feed"),
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_laravel_revocations_reach_a_cached_instance() {
    db::with_mysql(|url, table| async move {
        let pool = db::mysql_pool(&url).await;
        let writer = db::mysql_pool(&url).await;
        laravel_revocations_reach_a_cached_instance(
            pool.into(),
            writer.into(),
            Db::MySql,
            &format!("{table}_feed"),
        )
        .await;
    })
    .await;
}

/// What the README says of a cached Passport token: the RSA check runs when the store
/// does not know the token, not on every request. A store that knows the SHA-256 of a JWT
/// at once (a warm `CachedStore`; a `MemoryStore` here) admits it without the signature
/// being checked again — shown with a JWT whose signature was broken after the record was
/// stored — while the same JWT unknown to the store is refused on its signature.
#[tokio::test]
async fn a_known_passport_token_is_not_verified_again() {
    use tower_pat::{
        ManageTokens, MemoryStore, TokenId, TokenRecord, credential::CredentialKind, scope::Scopes,
        token::TokenHash,
    };
    let valid = fixture("passport.json")
        .into_iter()
        .find(|t| t["case"] == "valid")
        .unwrap();
    let jwt = valid["bearer"].as_str().unwrap();
    // The same claims under another signature: the RSA check would refuse it.
    let (signed, signature) = jwt.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let broken = format!("{signed}.{flipped}{}", &signature[1..]);
    let layer = |store: MemoryStore<i64>| {
        PatLayer::new(store).accept(Formats::new(TokenFormat::default()).passport(
            PassportFormat::from_file(format!("{}/oauth-public.key", fixtures())).unwrap(),
        ))
    };
    let app = |store| {
        Router::new()
            .route(
                "/whoami",
                get(|t: AccessToken| async move { t.kind().to_string() }),
            )
            .layer(layer(store))
    };

    let unknown = common::serve(app(MemoryStore::new())).await;
    let reply = common::bearer(unknown, "/whoami", &broken).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);

    let known = MemoryStore::<i64>::new();
    let now = time::OffsetDateTime::now_utc();
    known
        .insert(
            TokenRecord::new(
                TokenId::from_text(valid["jti"].as_str().unwrap()),
                42,
                TokenHash::of(&broken),
                now,
                now + time::Duration::days(1),
            )
            .with_kind(CredentialKind::Passport)
            .with_scopes(Scopes::try_from_iter(["orders:read"]).unwrap()),
        )
        .await
        .unwrap();
    let known = common::serve(app(known)).await;
    let reply = common::bearer(known, "/whoami", &broken).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "passport");
}
