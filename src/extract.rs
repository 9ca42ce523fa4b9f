//! [`AccessToken`] as an axum extractor (feature `axum`).
//!
//! `AccessToken<U>` takes the token [`PatLayer`](crate::PatLayer) resolved;
//! `Option<AccessToken<U>>` also accepts a request that
//! [`PatLayer::optional`](crate::PatLayer::optional) let through without credentials.
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
//!
//! `U` must be the store's user id type. `AccessToken` alone means `AccessToken<i64>`:
//! with a store of `String` or `uuid::Uuid` ids, write `AccessToken<String>` or
//! `AccessToken<Uuid>`, or every request answers 500 and the log names both types.
//!
//! Rejections go through the layer's
//! [`rejection_body`](crate::PatLayer::rejection_body), like every other rejection: a 401
//! for a request let through without credentials, a 500 for a wiring error. What a
//! wiring error is goes to the log (at error level), never to the client.

use std::fmt;

use axum_core::{
    body::Body,
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::request::Parts;

use crate::{
    record::{AccessToken, UserId, admission},
    reject::{RejectionKind, Rejector, reject_without_layer},
};

/// Why an [`AccessToken`] could not be extracted.
#[non_exhaustive]
pub enum AccessTokenRejection {
    /// No `PatLayer` ran for this request: a wiring error (500).
    MissingLayer,
    /// `PatLayer` let the request through without credentials (401, answered as the
    /// layer answers rejections).
    Unauthenticated(Rejector),
    /// `PatLayer` resolved a token whose user id is of another type than the one asked
    /// for (500): ask for `AccessToken<T>` with the store's `UserId`.
    UserIdType {
        /// The type asked for.
        expected: &'static str,
        /// The store's user id type.
        found: &'static str,
        /// How the layer answers rejections.
        rejector: Rejector,
    },
}

impl fmt::Debug for AccessTokenRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingLayer => f.write_str("MissingLayer"),
            Self::Unauthenticated(_) => f.write_str("Unauthenticated"),
            Self::UserIdType {
                expected, found, ..
            } => f
                .debug_struct("UserIdType")
                .field("expected", expected)
                .field("found", found)
                .finish_non_exhaustive(),
        }
    }
}

impl fmt::Display for AccessTokenRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingLayer => f.write_str(
                "AccessToken extractor used without PatLayer: add tower_pat::PatLayer in front of this route",
            ),
            Self::Unauthenticated(_) => f.write_str("this route needs a bearer token"),
            Self::UserIdType {
                expected, found, ..
            } => write!(
                f,
                "the handler asks for AccessToken<{expected}>, but the store's user ids are {found}: write AccessToken<{found}>"
            ),
        }
    }
}

impl std::error::Error for AccessTokenRejection {}

impl IntoResponse for AccessTokenRejection {
    fn into_response(self) -> Response {
        let empty = http::HeaderMap::new();
        match &self {
            Self::Unauthenticated(rejector) => {
                rejector.reject::<Body>(RejectionKind::MissingCredentials, None, &empty)
            }
            Self::UserIdType { rejector, .. } => {
                tracing::error!("{self}; rejecting with 500");
                rejector.reject::<Body>(RejectionKind::MissingLayer, None, &empty)
            }
            Self::MissingLayer => {
                tracing::error!("{self}; rejecting with 500");
                reject_without_layer(&empty)
            }
        }
    }
}

/// What the extractor found: the token, or a request the layer let through without one
/// (with how the layer answers rejections).
enum Extracted<U> {
    Token(AccessToken<U>),
    Anonymous(Rejector),
}

fn extract<U: UserId>(parts: &Parts) -> Result<Extracted<U>, AccessTokenRejection> {
    if let Some(token) = parts.extensions.get::<AccessToken<U>>() {
        return Ok(Extracted::Token(token.clone()));
    }
    let Some(admission) = admission(&parts.extensions) else {
        return Err(AccessTokenRejection::MissingLayer);
    };
    let rejector = admission.settings.rejector.clone();
    match admission.scopes {
        None => Ok(Extracted::Anonymous(rejector)),
        Some(_) => Err(AccessTokenRejection::UserIdType {
            expected: std::any::type_name::<U>(),
            found: admission.user_id_type,
            rejector,
        }),
    }
}

impl<S: Send + Sync, U: UserId> FromRequestParts<S> for AccessToken<U> {
    type Rejection = AccessTokenRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match extract(parts)? {
            Extracted::Token(token) => Ok(token),
            Extracted::Anonymous(rejector) => Err(AccessTokenRejection::Unauthenticated(rejector)),
        }
    }
}

impl<S: Send + Sync, U: UserId> OptionalFromRequestParts<S> for AccessToken<U> {
    type Rejection = AccessTokenRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        match extract(parts)? {
            Extracted::Token(token) => Ok(Some(token)),
            Extracted::Anonymous(_) => Ok(None),
        }
    }
}
