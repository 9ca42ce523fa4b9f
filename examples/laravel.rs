//! A Rust API beside a Laravel application: it accepts the Sanctum tokens (`7|…`) and the
//! Passport personal access tokens (RS256 JWTs) the application already issued, read from
//! the application's own database, together with the crate's own `pat_…` tokens.
//!
//! ```text
//! # Against your Laravel application's database and Passport key:
//! DATABASE_URL=mysql://laravel:secret@127.0.0.1/laravel \
//! PASSPORT_PUBLIC_KEY=/srv/laravel/storage/oauth-public.key \
//!     cargo run --all-features --example laravel
//!
//! # Or a self-contained run: a SQLite database shaped by Laravel's migrations, holding
//! # tokens PHP minted (tests/fixtures/laravel/), called once each, then exit:
//! cargo run --all-features --example laravel -- --self-test
//! ```
//!
//! What it reads from the environment, as Laravel's `.env` names it where it can:
//!
//! | variable | meaning |
//! |---|---|
//! | `DATABASE_URL` | `mysql://…` (or `mariadb://…`), `postgres://…` or `sqlite://…`: the application's database |
//! | `PASSPORT_PUBLIC_KEY` | Passport's public key: the path of `storage/oauth-public.key`, or the PEM itself (`\n` escapes allowed); unset: Sanctum tokens only |
//! | `SANCTUM_TOKENABLE_TYPE` | the `tokenable_type`s accepted, comma-separated: the model and its morph-map alias (default `App\Models\User`) |
//! | `SANCTUM_EXPIRATION` | minutes, Sanctum's `sanctum.expiration` (unset: none) |
//! | `PORT` | where to listen on 127.0.0.1 (default 3000) |
//! | `INSTALL_CHANGE_FEED` | `1`: put the change feed's triggers on the three tables first (needs a role that may create triggers) |
//!
//! Routes: `GET /api/user` answers `{"id": "<user id>", "format": "sanctum" | "passport" |
//! "pat", "scopes": [...]}` for any valid token; `GET /api/orders` needs `orders:read`.
//!
//! Lookups are cached for 30 seconds. With the tables' change feed installed (once, with
//! `INSTALL_CHANGE_FEED=1`, or `LaravelStore::change_feed_sql` run by hand), a token Laravel
//! revokes (a deleted Sanctum row, `revoked = 1`, a revoked client) is refused within
//! milliseconds on PostgreSQL and 250 ms on MySQL and SQLite; without it, within the 30 s.

use std::{env, error::Error, net::SocketAddr, time::Duration};

use axum::{Json, Router, routing::get};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use tokio::net::TcpListener;
use tower_pat::{
    AccessToken, PatLayer, RequireScopesLayer,
    credential::Formats,
    laravel::{PassportFormat, SanctumFormat},
    store::CachedStore,
    store::laravel::{LaravelPool, LaravelStore},
    token::TokenFormat,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    if env::args().any(|a| a == "--self-test") {
        return self_test().await;
    }
    let url = env::var("DATABASE_URL").map_err(
        |_| "set DATABASE_URL to the Laravel application's database (or pass --self-test)",
    )?;
    let pool = connect(&url).await?;
    let passport = match env::var("PASSPORT_PUBLIC_KEY") {
        Ok(key) if key.contains("-----BEGIN") => Some(PassportFormat::from_pem(&key)?),
        Ok(path) => Some(PassportFormat::from_file(path)?),
        Err(_) => None,
    };
    let port: u16 = match env::var("PORT") {
        Ok(p) => p.parse().map_err(|e| format!("PORT={p:?}: {e}"))?,
        Err(_) => 3000,
    };
    let app = app(pool, passport).await?;
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let url = format!("http://{}", listener.local_addr()?);
    println!("Accepting the Laravel application's Sanctum and Passport tokens on {url}");
    println!("  curl -H \"Authorization: Bearer $TOKEN\" {url}/api/user");
    println!("  curl -H \"Authorization: Bearer $TOKEN\" {url}/api/orders   # needs orders:read");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn connect(url: &str) -> Result<LaravelPool, Box<dyn Error>> {
    if url.starts_with("mysql:") || url.starts_with("mariadb:") {
        let url = url.replacen("mariadb:", "mysql:", 1);
        Ok(sqlx::MySqlPool::connect(&url).await?.into())
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(sqlx::PgPool::connect(url).await?.into())
    } else if url.starts_with("sqlite:") {
        Ok(sqlx::SqlitePool::connect(url).await?.into())
    } else {
        Err(format!(
            "DATABASE_URL: expected mysql://…, postgres://… or sqlite://…, got a URL starting {:?}",
            url.split(':').next().unwrap_or_default()
        )
        .into())
    }
}

/// The API over the Laravel application's tables.
async fn app(
    pool: LaravelPool,
    passport: Option<PassportFormat>,
) -> Result<Router, Box<dyn Error>> {
    let mut store = LaravelStore::<i64>::connect(pool).await?;
    if let Ok(minutes) = env::var("SANCTUM_EXPIRATION") {
        let minutes: i64 = minutes
            .parse()
            .map_err(|e| format!("SANCTUM_EXPIRATION={minutes:?}: {e}"))?;
        store = store.sanctum_expiration(Some(time::Duration::minutes(minutes)));
    }
    if let Ok(types) = env::var("SANCTUM_TOKENABLE_TYPE") {
        store = store.owner_types(types.split(',').map(str::trim));
    }
    if env::var("INSTALL_CHANGE_FEED").is_ok_and(|v| v == "1") {
        store.install_change_feed().await?;
    }
    let cached = CachedStore::builder()
        .ttl(Duration::from_secs(30))
        .build(store.clone());
    match store.follow_changes(cached.evictor()).await {
        Ok(_) => {
            println!("Following the Laravel tables' change feed: revocations are seen at once")
        }
        Err(e) => println!(
            "Not following the change feed ({e}): revocations are seen within the cache's 30 s \
             (INSTALL_CHANGE_FEED=1 installs it)"
        ),
    }
    let mut formats = Formats::new(TokenFormat::default()).sanctum(SanctumFormat::new());
    if let Some(passport) = passport {
        formats = formats.passport(passport);
    }
    let layer = PatLayer::new(cached).accept(formats);
    Ok(Router::new()
        .route("/api/user", get(user))
        .route(
            "/api/orders",
            get(|| async { Json(json!({ "orders": [] })) })
                .route_layer(RequireScopesLayer::all(["orders:read"])),
        )
        .layer(layer))
}

async fn user(token: AccessToken) -> Json<Value> {
    let scopes: Vec<&str> = token.scopes().iter().map(|s| s.as_str()).collect();
    Json(json!({
        "id": token.user_id().to_string(),
        "format": token.kind().as_str(),
        "scopes": scopes,
    }))
}

/// A SQLite database shaped by Laravel's migrations, holding tokens PHP minted
/// (`scripts/laravel-fixtures.php`), each called over HTTP; exits non-zero on a surprise.
async fn self_test() -> Result<(), Box<dyn Error>> {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/laravel");
    let read = |name: &str| -> Result<Vec<Value>, Box<dyn Error>> {
        Ok(serde_json::from_str(&std::fs::read_to_string(format!(
            "{fixtures}/{name}"
        ))?)?)
    };
    let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
    for statement in [
        "CREATE TABLE personal_access_tokens (id integer primary key autoincrement, \
         tokenable_type varchar not null, tokenable_id integer not null, name text not null, \
         token varchar(64) not null unique, abilities text, last_used_at datetime, \
         expires_at datetime, created_at datetime, updated_at datetime)",
        "CREATE TABLE oauth_clients (id varchar(36) primary key, name varchar not null, \
         grant_types text not null, revoked tinyint(1) not null)",
        "CREATE TABLE oauth_access_tokens (id varchar(100) primary key, user_id integer, \
         client_id varchar(36) not null, name varchar, scopes text, revoked tinyint(1) not null, \
         created_at datetime, updated_at datetime, expires_at datetime)",
        "INSERT INTO oauth_clients VALUES ('personal-client', 'Personal Access Client', \
         '[\"personal_access\"]', 0)",
    ] {
        sqlx::query(statement).execute(&pool).await?;
    }
    let sanctum = read("sanctum.json")?;
    let current = sanctum
        .iter()
        .find(|t| t["generation"] == "3.3 crc32b")
        .ok_or("fixture")?;
    sqlx::query(
        "INSERT INTO personal_access_tokens (id, tokenable_type, tokenable_id, name, token, \
         abilities, created_at, updated_at) VALUES (5, 'App\\Models\\User', 42, 'cli', ?, ?, \
         '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
    )
    .bind(current["token"].as_str())
    .bind(current["abilities"].as_str())
    .execute(&pool)
    .await?;
    let passport = read("passport.json")?;
    let jwt = passport
        .iter()
        .find(|t| t["case"] == "valid")
        .ok_or("fixture")?;
    sqlx::query(AssertSqlSafe(
        "INSERT INTO oauth_access_tokens (id, user_id, client_id, name, scopes, revoked) \
         VALUES (?, 42, 'personal-client', 'mobile', '[\"orders:read\"]', 0)"
            .to_owned(),
    ))
    .bind(jwt["jti"].as_str())
    .execute(&pool)
    .await?;
    let key = PassportFormat::from_file(format!("{fixtures}/oauth-public.key"))?;

    // The self-test's own tables get the change feed, as INSTALL_CHANGE_FEED=1 would.
    LaravelStore::<i64>::connect(pool.clone())
        .await?
        .install_change_feed()
        .await?;
    let app = app(pool.clone().into(), Some(key)).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = client::Client::new(addr);
    let mut surprises = 0;
    for (what, bearer, path, expected) in [
        (
            "Sanctum token",
            current["bearer"].as_str().ok_or("fixture")?,
            "/api/user",
            200,
        ),
        (
            "Sanctum token (orders:read)",
            current["bearer"].as_str().ok_or("fixture")?,
            "/api/orders",
            200,
        ),
        (
            "Passport token",
            jwt["bearer"].as_str().ok_or("fixture")?,
            "/api/user",
            200,
        ),
        (
            "Passport token",
            jwt["bearer"].as_str().ok_or("fixture")?,
            "/api/orders",
            200,
        ),
        (
            "Sanctum token naming another row",
            "6|nope0000000000000000000000000000000000000000",
            "/api/user",
            401,
        ),
    ] {
        let (status, body) = client.get(path, bearer).await?;
        let ok = status == expected;
        surprises += usize::from(!ok);
        println!(
            "{} {what} GET {path}: {status} {body}",
            if ok { "ok  " } else { "FAIL" }
        );
    }
    // Laravel revokes the Sanctum token (`$token->delete()`): refused within the poll
    // interval, long before the cache's 30 s.
    let sanctum = current["bearer"].as_str().ok_or("fixture")?;
    sqlx::query("DELETE FROM personal_access_tokens WHERE id = 5")
        .execute(&pool)
        .await?;
    let deleted = std::time::Instant::now();
    let (mut status, mut body) = client.get("/api/user", sanctum).await?;
    while status == 200 && deleted.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        (status, body) = client.get("/api/user", sanctum).await?;
    }
    let ok = status == 401;
    surprises += usize::from(!ok);
    println!(
        "{} Sanctum token deleted by Laravel GET /api/user: {status} {body}(after {} ms)",
        if ok { "ok  " } else { "FAIL" },
        deleted.elapsed().as_millis()
    );
    if surprises > 0 {
        return Err(format!("{surprises} unexpected answers").into());
    }
    Ok(())
}

/// The smallest HTTP/1.1 client the self-test needs (hyper's, over one connection).
mod client {
    use std::{error::Error, net::SocketAddr};

    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::{client::legacy::Client as Hyper, rt::TokioExecutor};

    pub struct Client {
        addr: SocketAddr,
        inner: Hyper<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    }

    impl Client {
        pub fn new(addr: SocketAddr) -> Self {
            Self {
                addr,
                inner: Hyper::builder(TokioExecutor::new()).build_http(),
            }
        }

        pub async fn get(&self, path: &str, bearer: &str) -> Result<(u16, String), Box<dyn Error>> {
            let req = http::Request::get(format!("http://{}{path}", self.addr))
                .header(http::header::AUTHORIZATION, format!("Bearer {bearer}"))
                .body(Empty::new())?;
            let res = self.inner.request(req).await?;
            let status = res.status().as_u16();
            let body = res.into_body().collect().await?.to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        }
    }
}
