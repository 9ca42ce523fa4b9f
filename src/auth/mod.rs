//! [`PatLayer`]: resolves the bearer token of every request through a
//! [`TokenStore`](crate::TokenStore) and puts the [`AccessToken`](crate::AccessToken) in
//! the request's extensions.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode, header::AUTHORIZATION};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pat::{AccessToken, MemoryStore, Tokens, scope::ScopeRegistry};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let registry = ScopeRegistry::new().scope("orders:read", "See orders");
//! let tokens = Tokens::new(MemoryStore::<i64>::new(), registry);
//! let created = tokens.create(1, "cli", ["orders:read"]).await.unwrap();
//!
//! let svc = ServiceBuilder::new()
//!     .layer(tokens.layer())
//!     .layer(tokens.require_all(["orders:read"]))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let token = req.extensions().get::<AccessToken>().unwrap();
//!         Ok::<_, Infallible>(Response::new(format!("hello, user {}", token.user_id())))
//!     }));
//!
//! let req = Request::builder()
//!     .header(AUTHORIZATION, format!("Bearer {}", created.token.expose_secret()))
//!     .body(String::new())
//!     .unwrap();
//! let res = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.body(), "hello, user 1");
//!
//! let res = svc.oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="api""#);
//! # });
//! ```
//!
//! The parts, each importing only those below it: [`layer`](PatLayer) holds the setters,
//! the [`service`](Pat) finds the token and asks the store, [`ResponseFuture`] waits for a
//! store that cannot answer at once, `admit` decides on the store's answer (the verdict,
//! without side effects) and admits or rejects, `usage` records uses for `last_used_at`,
//! `credentials` finds and checks the bearer token of a request (RFC 6750: the header, the
//! `bearer` scheme, the query parameter, `b64token`), and `config` holds the options they
//! share.

mod admit;
mod config;
mod credentials;
mod future;
mod layer;
mod service;
mod usage;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use config::DEFAULT_STORE_TIMEOUT;
pub use config::{DEFAULT_EXPIRY_HEADER, DEFAULT_LAST_USED_INTERVAL, DEFAULT_MAX_HEADER_LEN};
pub use future::ResponseFuture;
pub use layer::PatLayer;
pub use service::Pat;
