//! One layer, several formats: the crate's own tokens and Sanctum's in one `PatLayer`,
//! over a real server on loopback. (Passport's, and Laravel's own tables, are in
//! `laravel.rs`.)

use crate::common;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{Router, routing::get};
use http::StatusCode;
use time::{Duration, OffsetDateTime};
use tower_pat::{
    AccessToken, ManageTokens, MemoryStore, PatLayer, TokenId, TokenRecord, TokenStore,
    credential::{CredentialKind, Formats, Presented},
    laravel::SanctumFormat,
    scope::Scopes,
    store::{Lookup, StoreError},
    token::{TokenFormat, TokenHash},
};

/// Counts every question the layer asks.
struct Counting {
    inner: MemoryStore<i64>,
    asked: Arc<AtomicUsize>,
}

#[tower_pat::async_trait]
impl TokenStore for Counting {
    type UserId = i64;

    async fn find(&self, hash: &TokenHash) -> Lookup<i64> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.inner.find(hash).await
    }

    async fn find_presented(&self, presented: &Presented) -> Lookup<i64> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.inner.find_presented(presented).await
    }

    async fn touch(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        self.inner.touch(uses).await
    }
}

#[tokio::test]
async fn sanctum_and_own_tokens_through_one_layer() {
    let store = MemoryStore::<i64>::new();
    let now = OffsetDateTime::now_utc();
    // A Sanctum row: id 7, `token` = SHA-256 of the secret, ability `*`.
    let secret = "Zq3pW9xK2mL7vB4nR8tY1cF6hJ0dS5aGeUoIiPlk";
    let sanctum = TokenRecord::new(
        TokenId::from_integer(7),
        42,
        TokenHash::of(secret),
        now,
        now + Duration::days(1),
    )
    .with_kind(CredentialKind::Sanctum)
    .with_scopes(Scopes::try_from_iter(["*"]).unwrap());
    store.insert(sanctum).await.unwrap();
    // One of our own, holding orders:read only.
    let own = TokenFormat::default().generate().unwrap();
    let record = TokenRecord::new(
        TokenId::random().unwrap(),
        43,
        own.hash(),
        now,
        now + Duration::days(1),
    )
    .with_scopes(Scopes::try_from_iter(["orders:read"]).unwrap());
    store.insert(record).await.unwrap();

    let asked = Arc::new(AtomicUsize::new(0));
    let counting = Counting {
        inner: store,
        asked: Arc::clone(&asked),
    };
    let layer = PatLayer::new(counting)
        .accept(Formats::new(TokenFormat::default()).sanctum(SanctumFormat::new()));
    let app = Router::new()
        .route(
            "/whoami",
            get(|token: AccessToken| async move {
                format!(
                    "{} {} {}",
                    token.user_id(),
                    token.kind(),
                    token.can("orders:create")
                )
            }),
        )
        .layer(layer);
    let addr = common::serve(app).await;

    let reply = common::bearer(addr, "/whoami", &format!("7|{secret}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // `*` is every scope for a Laravel token.
    assert_eq!(reply.body, "42 sanctum true");
    let reply = common::bearer(addr, "/whoami", own.expose_secret()).await;
    assert_eq!(reply.body, "43 pat false");

    // The id before `|` must name the row found.
    let reply = common::bearer(addr, "/whoami", &format!("8|{secret}")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.challenge().unwrap().contains("invalid_token"));

    // Nothing of no accepted shape reaches the store.
    let before = asked.load(Ordering::SeqCst);
    for bad in ["|", "7|", "x7|abc", "07|short", "7|a|b", "7|tooshort"] {
        let reply = common::bearer(addr, "/whoami", bad).await;
        assert!(
            reply.status == StatusCode::UNAUTHORIZED || reply.status == StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.status
        );
    }
    let long = format!("7|{}", "a".repeat(400));
    let reply = common::bearer(addr, "/whoami", &long).await;
    assert_ne!(reply.status, StatusCode::OK);
    assert_eq!(
        asked.load(Ordering::SeqCst),
        before,
        "a bad shape was looked up"
    );
}

#[tokio::test]
async fn a_bar_is_invalid_request_unless_sanctum_is_accepted() {
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(PatLayer::new(MemoryStore::<i64>::new()));
    let addr = common::serve(app).await;
    let secret = "a".repeat(40);
    let reply = common::bearer(addr, "/", &format!("7|{secret}")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.challenge().unwrap().contains("invalid_request"));
}
