//! An axum API guarded by personal access tokens, shaped after the routes in Laravel
//! Passport's documentation.
//!
//! ```text
//! cargo run --all-features --example axum            # serves on 127.0.0.1:3000
//! PORT=8080 cargo run --all-features --example axum  # another port (0 picks a free one)
//! ```
//!
//! On start it issues two tokens for user 1 through [`Tokens`], kept in a SQLite file
//! ([`SqliteStore`]; `TOWER_PAT_DEMO_DB` names another file), prints each one once as a
//! shell `export`, and prints `curl` lines to paste into another terminal. Tokens from
//! earlier runs stay valid until they expire or are revoked: the store is persistent. The
//! routes:
//!
//! | route | needs |
//! |---|---|
//! | `GET /orders` | all of `orders:read` and `orders:create` (Passport's `CheckToken`) |
//! | `GET /orders/summary` | any of `orders:read`, `orders:create` (`CheckTokenForAnyScope`); the handler branches on `token.can("orders:create")` (`tokenCan`) |
//! | `GET /user` | `user:read` |
//!
//! Every route sits behind [`PatLayer`](tower_pat::PatLayer) (from [`Tokens::layer`]), so a
//! request without a token is answered 401 before any handler runs, and a token that
//! lacks a scope 403 with `error="insufficient_scope"`.

use std::{env, error::Error, net::SocketAddr, path::PathBuf};

use axum::{Json, Router, routing::get};
use serde_json::{Value, json};
use time::{OffsetDateTime, UtcOffset};
use tokio::net::TcpListener;
use tower_pat::{AccessToken, RequireScopesLayer, SqliteStore, Tokens, scope::ScopeRegistry};

/// The scopes of the API, with the descriptions a "create token" page would show
/// (Passport's `tokensCan`), and the ones a token gets when none are asked for
/// (`defaultScopes`).
fn registry() -> ScopeRegistry {
    ScopeRegistry::new()
        .scope("user:read", "Retrieve the user info")
        .scope("orders:create", "Place orders")
        .scope("orders:read", "List orders")
        .scope("orders:read:status", "Check order status")
        .default_scopes(["user:read"])
}

/// The application: each group of routes gets its own scope requirement through
/// `route_layer`, and `PatLayer` goes around all of them.
fn app(tokens: &Tokens<SqliteStore<i64>>) -> Router {
    let orders = Router::new()
        .route("/orders", get(list_orders))
        .route_layer(RequireScopesLayer::all(["orders:read", "orders:create"]));
    let summary = Router::new()
        .route("/orders/summary", get(orders_summary))
        .route_layer(RequireScopesLayer::any(["orders:read", "orders:create"]));
    let user = Router::new()
        .route("/user", get(current_user))
        .route_layer(RequireScopesLayer::all(["user:read"]));
    Router::new()
        .merge(orders)
        .merge(summary)
        .merge(user)
        .layer(tokens.layer())
}

/// Some orders to show; a real handler would query them for `user`.
fn orders_of(user: i64) -> Value {
    json!([
        { "id": 1001, "user_id": user, "item": "coffee beans", "quantity": 2, "status": "shipped" },
        { "id": 1002, "user_id": user, "item": "grinder", "quantity": 1, "status": "pending" },
    ])
}

/// `GET /orders`: reached only with both `orders:read` and `orders:create`.
async fn list_orders(token: AccessToken) -> Json<Value> {
    Json(json!({
        "user_id": token.user_id(),
        "orders": orders_of(*token.user_id()),
    }))
}

/// `GET /orders/summary`: reached with either scope; what it shows depends on which.
async fn orders_summary(token: AccessToken) -> Json<Value> {
    let may_order = token.can("orders:create");
    let mut body = json!({
        "user_id": token.user_id(),
        "may_place_orders": may_order,
    });
    if token.can("orders:read") {
        body["open_orders"] = json!(1);
    }
    body["hint"] = if may_order {
        json!("this token may place orders")
    } else {
        json!("create a token with orders:create to place orders")
    };
    Json(body)
}

/// `GET /user`: who the token belongs to, and what the token is.
async fn current_user(token: AccessToken) -> Json<Value> {
    let scopes: Vec<&str> = token.scopes().iter().map(|s| s.as_str()).collect();
    Json(json!({
        "id": token.user_id(),
        "token": {
            "id": token.id().to_string(),
            "name": token.name(),
            "scopes": scopes,
            "expires_at": rfc3339(token.expires_at()),
        },
    }))
}

/// `2027-01-31T12:00:00Z`, without pulling in `time`'s formatting feature.
fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let port: u16 = match env::var("PORT") {
        Ok(p) => p.parse().map_err(|e| format!("PORT={p:?}: {e}"))?,
        Err(_) => 3000,
    };
    let db = env::var_os("TOWER_PAT_DEMO_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|| env::temp_dir().join("tower-pat-demo.sqlite3"));
    let store = SqliteStore::<i64>::open(&db).await?;
    store.migrate().await?;
    let tokens = Tokens::new(store, registry());

    // Passport's `$user->createToken(name, scopes)`: the plaintext exists only in the
    // value `create` returns, so it is printed now and never again.
    let full = tokens
        .create(1, "Laptop", ["orders:read", "orders:create", "user:read"])
        .await?;
    let reader = tokens
        .create(1, "Dashboard", ["orders:read", "orders:read:status"])
        .await?;

    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let url = format!("http://{}", listener.local_addr()?);

    println!("Tokens are kept in {}", db.display());
    println!(
        "User 1 holds {} tokens, revoked and expired ones included.",
        tokens.list(&1).await?.len()
    );
    println!();
    println!("Scopes this API defines:");
    for (scope, description) in tokens.registry().scopes() {
        println!("  {:<20} {description}", scope.as_str());
    }
    println!();
    println!("Tokens just issued to user 1, shown this once. Paste both export lines into the");
    println!("shell where you will run curl:");
    println!();
    println!("  # {:?}: {}", full.record.name, full.record.scopes);
    println!("  export FULL={}", full.token.expose_secret());
    println!("  # {:?}: {}", reader.record.name, reader.record.scopes);
    println!("  export READER={}", reader.token.expose_secret());
    println!();
    println!("Then try:");
    println!();
    println!("  # 200: FULL holds orders:read and orders:create");
    println!("  curl -i -H \"Authorization: Bearer $FULL\" {url}/orders");
    println!("  # 403 insufficient_scope: READER lacks orders:create");
    println!("  curl -i -H \"Authorization: Bearer $READER\" {url}/orders");
    println!("  # 200: any one of orders:read, orders:create is enough here");
    println!("  curl -i -H \"Authorization: Bearer $READER\" {url}/orders/summary");
    println!("  # 200: FULL holds user:read");
    println!("  curl -i -H \"Authorization: Bearer $FULL\" {url}/user");
    println!("  # 403 insufficient_scope: READER lacks user:read");
    println!("  curl -i -H \"Authorization: Bearer $READER\" {url}/user");
    println!("  # 401 invalid_token: not a token this server issued");
    println!("  curl -i -H \"Authorization: Bearer pat_made_up\" {url}/user");
    println!("  # 401: no token at all");
    println!("  curl -i {url}/orders");
    println!();
    println!("Listening on {url} (Ctrl-C to stop)");

    axum::serve(listener, app(&tokens)).await?;
    Ok(())
}
