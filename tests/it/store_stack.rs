//! The whole stack on the persistent stores, over loopback: an axum server behind
//! `PatLayer`, tokens created through `Tokens`, used over HTTP, revoked, and refused on the
//! very next request. Then two instances on one database: two servers, two layers, two
//! pools on one table; a token created through one works on the other, and revoked
//! through the other is refused by both.
//!
//! PostgreSQL runs at `TOWER_PAT_POSTGRES_URL` (skipped, saying so, when it is unset);
//! SQLite on a temp file.

#![cfg(any(feature = "sqlite", feature = "postgres"))]

use crate::common;

use std::net::SocketAddr;

use axum::{Router, routing::get};
use http::StatusCode;
use tower_pat::{AccessToken, ManageTokens, PatLayer, RequireScopesLayer, Tokens, store::Revoked};

use common::{bearer, registry, serve};

const REVOKED: &str =
    r#"error="invalid_token", error_description="the access token has been revoked""#;

async fn orders(token: AccessToken) -> String {
    format!("orders of user {}", token.user_id())
}

/// One instance of the API: `/orders` needs `orders:read`. Its layer, to flush the uses.
async fn instance<S: ManageTokens<UserId = i64>>(tokens: &Tokens<S>) -> (SocketAddr, PatLayer<S>) {
    let layer = tokens.layer();
    let app = Router::new()
        .route("/orders", get(orders))
        .route_layer(RequireScopesLayer::all(["orders:read"]))
        .layer(layer.clone());
    (serve(app).await, layer)
}

#[track_caller]
fn assert_refused_as_revoked(reply: &common::Reply) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    let challenge = reply.challenge().expect("a challenge");
    assert!(challenge.contains(REVOKED), "{challenge}");
}

/// Create, use (200, and the use is written back), check scopes (403), revoke, refused
/// (401).
async fn revocation_over_http<S: ManageTokens<UserId = i64>>(tokens: Tokens<S>) {
    let (addr, layer) = instance(&tokens).await;
    let created = tokens.create(7, "laptop", ["orders:read"]).await.unwrap();
    let secret = created.token.expose_secret();

    let reply = bearer(addr, "/orders", secret).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body, "orders of user 7");
    assert_eq!(layer.flush().await, 1, "one use written, in one statement");
    let stored = tokens
        .store()
        .get(created.record.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.last_used_at.is_some(),
        "the use was recorded: {stored:?}"
    );
    assert_eq!(bearer(addr, "/orders", secret).await.status, StatusCode::OK);

    let narrow = tokens.create(7, "narrow", ["user:read"]).await.unwrap();
    let reply = bearer(addr, "/orders", narrow.token.expose_secret()).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");

    assert_eq!(
        tokens.revoke(&7, created.record.id).await.unwrap(),
        Revoked::Revoked
    );
    assert_refused_as_revoked(&bearer(addr, "/orders", secret).await);
    assert_eq!(tokens.list(&7).await.unwrap().len(), 2);
}

/// Two instances over two stores (two pools) on one table.
async fn two_instances<S: ManageTokens<UserId = i64>>(first: Tokens<S>, second: Tokens<S>) {
    let (one, _) = instance(&first).await;
    let (two, _) = instance(&second).await;

    let created = first.create(42, "shared", ["orders:read"]).await.unwrap();
    let secret = created.token.expose_secret();
    let reply = bearer(two, "/orders", secret).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "created on one, used on two: {reply:?}"
    );
    assert_eq!(reply.body, "orders of user 42");
    assert_eq!(bearer(one, "/orders", secret).await.status, StatusCode::OK);
    let listed: Vec<_> = second
        .list(&42)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, [created.record.id]);

    assert_eq!(
        second.revoke(&42, created.record.id).await.unwrap(),
        Revoked::Revoked
    );
    assert_refused_as_revoked(&bearer(two, "/orders", secret).await);
    assert_refused_as_revoked(&bearer(one, "/orders", secret).await);
    assert_eq!(
        first.revoke(&42, created.record.id).await.unwrap(),
        Revoked::AlreadyRevoked
    );
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use tower_pat::PostgresStore;

    use crate::common::db::with_postgres;

    async fn store(url: &str, table: &str) -> PostgresStore<i64> {
        let store = PostgresStore::<i64>::connect(url)
            .await
            .unwrap()
            .with_table(table);
        store.migrate().await.unwrap();
        store
    }

    #[tokio::test]
    async fn revocation_over_http() {
        with_postgres(|url, table| async move {
            let tokens = Tokens::new(store(&url, &table).await, registry());
            super::revocation_over_http(tokens).await;
        })
        .await;
    }

    #[tokio::test]
    async fn two_instances_one_database() {
        with_postgres(|url, table| async move {
            let first = store(&url, &table).await;
            let second = store(&url, &table).await;
            super::two_instances(
                Tokens::new(first, registry()),
                Tokens::new(second, registry()),
            )
            .await;
        })
        .await;
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use tower_pat::SqliteStore;

    use crate::common::db::TempDb;

    async fn store(file: &TempDb) -> SqliteStore<i64> {
        let store = SqliteStore::<i64>::open(file.path()).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    #[tokio::test]
    async fn revocation_over_http() {
        let file = TempDb::new();
        super::revocation_over_http(Tokens::new(store(&file).await, registry())).await;
    }

    #[tokio::test]
    async fn two_instances_one_file() {
        let file = TempDb::new();
        let first = Tokens::new(store(&file).await, registry());
        let second = Tokens::new(store(&file).await, registry());
        super::two_instances(first, second).await;
    }
}
