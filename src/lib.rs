//! Personal access tokens for any Tower server: Axum, Tonic, Hyper, or a bare
//! `tower::Service`.
//!
//! A user creates a token (a name and scopes), sees it once, and calls your API with
//! `Authorization: Bearer pat_…` until it expires (a year by default) or is revoked, the
//! way Laravel Passport's personal access tokens and GitHub's PATs work.
//!
//! - [`Tokens`] creates, lists, revokes, rotates and prunes tokens over a store.
//! - [`PatLayer`] resolves the bearer token of each request through a [`TokenStore`] and
//!   puts an [`AccessToken`] in the request's extensions.
//! - [`Tokens::require_all`] / [`Tokens::require_any`] / [`Tokens::require`] (or
//!   [`RequireScopesLayer`] without a registry) guard routes by scope; handlers ask
//!   [`AccessToken::can`].
//! - With feature `manage`, `manage::TokenPage` serves the page where a signed-in user
//!   generates and revokes their tokens, and its JSON API.
//! - Every refusal is an RFC 6750 answer, or a gRPC-native one for gRPC requests (see
//!   [`reject`]); a failing store answers 503, never lets a request through.
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode, header::AUTHORIZATION};
//! use tower::ServiceExt;
//! use tower_pat::{AccessToken, MemoryStore, Tokens, scope::ScopeRegistry};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let registry = ScopeRegistry::new()
//!     .scope("orders:read", "See orders")
//!     .scope("orders:create", "Place orders");
//! let tokens = Tokens::new(MemoryStore::<i64>::new(), registry);
//!
//! async fn orders(token: AccessToken) -> String {
//!     format!("orders of user {}", token.user_id())
//! }
//! let app = Router::new()
//!     .route("/orders", get(orders))
//!     .route_layer(tokens.require_all(["orders:read"]))
//!     .layer(tokens.layer());
//!
//! let created = tokens.create(7, "laptop", ["orders:read"]).await.unwrap();
//! let req = Request::get("/orders")
//!     .header(AUTHORIZATION, format!("Bearer {}", created.token.expose_secret()))
//!     .body(Body::empty())
//!     .unwrap();
//! let res = app.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! tokens.revoke(&7, created.record.id).await.unwrap();
//! let req = Request::get("/orders")
//!     .header(AUTHORIZATION, format!("Bearer {}", created.token.expose_secret()))
//!     .body(Body::empty())
//!     .unwrap();
//! assert_eq!(app.oneshot(req).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # });
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `tokio` | the runtime pieces: the `last_used_at` flusher starts by itself, and `PatLayer::store_timeout` defaults to 3 s |
//! | `axum` | [`AccessToken`] as an extractor (`FromRequestParts`, `OptionalFromRequestParts`) |
//! | `sqlite` | `SqliteStore`: tokens in an embedded SQLite database (sqlx, bundled SQLite) |
//! | `postgres` | `PostgresStore`: one PostgreSQL database shared by many instances (sqlx) |
//! | `mysql` | `MySqlStore`: one MySQL 8 or MariaDB (10.11) database shared by many instances (sqlx) |
//! | `cache` | `CachedStore`: a revocation-aware cache in front of any store (moka); with `postgres`, `PostgresStore::listen` evicts what other instances revoke |
//! | `redis` | `RedisBus`: revocations reach every instance's `CachedStore` over Redis pub/sub, whatever the store |
//! | `test-kit` | `testing::Conformance`: the suites a `TokenStore` (and `ManageTokens`) implementation should pass |
//! | `manage` | `manage::TokenPage`: the token page and its JSON API, mounted behind the application's sign-in |
//! | `cli` | `cli::TokensCommand`: the admin command line (create, list, revoke, rotate, prune, expiring, migrate, schema) an application embeds in its own binary (clap) |
//! | `metrics` | counters, a gauge and a histogram through the `metrics` facade, listed in `tower_pat::metrics` (the application installs the exporter) |
//! | `leaks` | `leaks::LeakReports`: the endpoint GitHub's secret scanning reports leaked tokens to; the real ones are revoked |
//!
//! # Security
//!
//! Only the SHA-256 of a token is stored. Tokens carry a CRC32 checksum, so garbage is
//! refused before the store is asked. The plaintext redacts itself in `Debug` and
//! `Display`, the `Authorization` header is marked sensitive, and hashes compare in
//! constant time.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

pub mod audit;
pub mod auth;
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
pub mod clock;
pub mod credential;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
mod hashers;
#[cfg(feature = "laravel")]
#[cfg_attr(docsrs, doc(cfg(feature = "laravel")))]
pub mod laravel;
#[cfg(feature = "leaks")]
#[cfg_attr(docsrs, doc(cfg(feature = "leaks")))]
pub mod leaks;
pub mod lifecycle;
#[cfg(feature = "manage")]
#[cfg_attr(docsrs, doc(cfg(feature = "manage")))]
pub mod manage;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(not(feature = "metrics"))]
mod metrics;
pub mod record;
pub mod reject;
pub mod require;
pub mod scope;
pub mod store;
#[cfg(feature = "test-kit")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-kit")))]
pub mod testing;
pub mod token;

// The README's examples compile as doctests (they use the optional stores).
#[cfg(all(
    doctest,
    feature = "sqlite",
    feature = "postgres",
    feature = "cache",
    feature = "redis",
    feature = "test-kit",
    feature = "manage",
    feature = "leaks",
    feature = "cli"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The attribute [`TokenStore`] and [`ManageTokens`] implementations are written with.
pub use async_trait::async_trait;
pub use auth::{Pat, PatLayer};
pub use lifecycle::{CreateToken, NewToken, RotateToken, RotatedToken, TokenError, Tokens};
pub use record::{AccessToken, TokenId, TokenRecord};
pub use require::{RequireScopes, RequireScopesLayer, ScopeMapLayer};
pub use scope::Requirement;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use store::CachedStore;
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub use store::MySqlStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use store::PostgresStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use store::SqliteStore;
pub use store::{ManageTokens, MemoryStore, TokenStore};
/// The time crate, whose `OffsetDateTime` and `Duration` the records and the lifecycle
/// use: a store implementation names them through here.
pub use time;
