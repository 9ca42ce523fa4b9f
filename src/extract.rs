//! [`AccessToken`] as an axum extractor (feature `axum`).
//!
//! `AccessToken<U>` takes the token [`PatLayer`](crate::PatLayer) resolved;
//! `Option<AccessToken<U>>` also accepts a request that
//! [`PatLayer::optional`](crate::PatLayer::optional) let through without credentials.
//! Without a `PatLayer` in front, both answer 500 with a message that says so.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_pat::{AccessToken, MemoryStore, PatLayer};
//!
//! async fn orders(token: AccessToken) -> String {
//!     if token.can("orders:create") {
//!         format!("user {} may place orders", token.user_id())
//!     } else {
//!         format!("user {} may only look", token.user_id())
//!     }
//! }
//!
//! let app: Router = Router::new()
//!     .route("/orders", get(orders))
//!     .layer(PatLayer::new(MemoryStore::<i64>::new()));
//! ```

use std::fmt;

use axum_core::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::{StatusCode, header::WWW_AUTHENTICATE, request::Parts};

use crate::{
    AccessToken,
    auth::granted,
    record::UserId,
    reject::{RejectionKind, challenge},
};

/// Why an [`AccessToken`] could not be extracted.
#[derive(Debug)]
#[non_exhaustive]
pub enum AccessTokenRejection {
    /// No `PatLayer` ran for this request: a wiring error (500).
    MissingLayer,
    /// `PatLayer` let the request through without credentials (401).
    Unauthenticated {
        /// The realm of the challenge.
        realm: String,
    },
    /// `PatLayer` resolved a token whose user id is of another type than the one asked
    /// for (500): ask for `AccessToken<T>` with the store's `UserId`.
    UserIdType {
        /// The type asked for.
        expected: &'static str,
    },
}

impl fmt::Display for AccessTokenRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingLayer => f.write_str(
                "AccessToken extractor used without PatLayer: add tower_pat::PatLayer in front of this route",
            ),
            Self::Unauthenticated { .. } => f.write_str("this route needs a bearer token"),
            Self::UserIdType { expected } => write!(
                f,
                "PatLayer resolved a token, but not an AccessToken<{expected}>: the store's user id type differs"
            ),
        }
    }
}

impl std::error::Error for AccessTokenRejection {}

impl IntoResponse for AccessTokenRejection {
    fn into_response(self) -> Response {
        let body = self.to_string();
        match self {
            Self::Unauthenticated { realm } => {
                let mut res = (StatusCode::UNAUTHORIZED, body).into_response();
                res.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    challenge(&realm, RejectionKind::MissingCredentials, None),
                );
                res
            }
            Self::MissingLayer | Self::UserIdType { .. } => {
                tracing::error!("{body}");
                (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
            }
        }
    }
}

fn extract<U: UserId>(parts: &Parts) -> Result<Option<AccessToken<U>>, AccessTokenRejection> {
    if let Some(token) = parts.extensions.get::<AccessToken<U>>() {
        return Ok(Some(token.clone()));
    }
    match granted(&parts.extensions) {
        None => Err(AccessTokenRejection::MissingLayer),
        Some((None, _)) => Ok(None),
        Some((Some(_), _)) => Err(AccessTokenRejection::UserIdType {
            expected: std::any::type_name::<U>(),
        }),
    }
}

impl<S: Send + Sync, U: UserId> FromRequestParts<S> for AccessToken<U> {
    type Rejection = AccessTokenRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        extract(parts)?.ok_or_else(|| AccessTokenRejection::Unauthenticated {
            realm: granted(&parts.extensions)
                .map_or_else(String::new, |(_, settings)| settings.realm.to_string()),
        })
    }
}

impl<S: Send + Sync, U: UserId> OptionalFromRequestParts<S> for AccessToken<U> {
    type Rejection = AccessTokenRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        extract(parts)
    }
}
