//! Rejections: why a request was turned away, and the one place where that becomes a
//! response — RFC 6750 status and `WWW-Authenticate` challenge for HTTP, a trailers-only
//! answer for gRPC, and the application's own body where it asked for one.
//!
//! | case | [`RejectionKind`] ([`code`](RejectionKind::code)) | HTTP | `WWW-Authenticate` | gRPC |
//! |---|---|---|---|---|
//! | no credentials | `missing_credentials` | 401 | `Bearer realm="…"` | 16 `UNAUTHENTICATED` |
//! | malformed, unknown, revoked, expired token | `malformed_token`, `unknown_token`, `revoked_token`, `expired_token` | 401 | `Bearer realm="…", error="invalid_token", error_description="…"` | 16 `UNAUTHENTICATED` |
//! | several `Authorization` headers, bad syntax, header too long, a query token beside a header | `invalid_request` | 400 | `Bearer realm="…", error="invalid_request"` | 16 `UNAUTHENTICATED` |
//! | scopes fall short | `insufficient_scope` | 403 | `Bearer realm="…", error="insufficient_scope", scope="a b"` | 7 `PERMISSION_DENIED` |
//! | store failed or timed out | `store_unavailable` | 503 | none | 14 `UNAVAILABLE` |
//! | no `PatLayer` in front of a scope check or an extractor | `missing_layer` | 500 | none | 13 `INTERNAL` |
//!
//! The body is empty unless the application gives one with
//! [`PatLayer::rejection_body`](crate::PatLayer::rejection_body): set once, it shapes the
//! rejections of the `PatLayer`, of every scope check behind it, and of the axum extractor.
//! The crate sets the status and the challenge after the hook ran, so a body cannot break
//! RFC 6750 by accident. gRPC answers have no body, so the hook is not asked for them. A
//! hook made for another body type than the service's (an axum hook in front of a tonic
//! server) cannot answer there: those rejections get an empty body, and the first one is
//! logged at `WARN`, once for each hook, naming both types; `PatLayer`'s `Debug` shows the
//! hook's body type.
//!
//! ```
//! use axum::body::Body;
//! use tower_pat::{MemoryStore, PatLayer, reject::Rejection};
//!
//! let layer = PatLayer::new(MemoryStore::<i64>::new()).rejection_body(|r: &Rejection<'_>| {
//!     http::Response::builder()
//!         .header(http::header::CONTENT_TYPE, "application/json")
//!         .body(Body::from(r.to_json()))
//!         .unwrap()
//! });
//! ```
//!
//! The parts: this module holds the table ([`RejectionKind`], one exhaustive row per kind)
//! and [`Rejection`], the hook's view; `challenge` builds the `WWW-Authenticate` values and
//! checks realms; `grpc` encodes trailers-only answers; `body` keeps the hook; [`Rejector`]
//! puts them together for one layer.

use std::fmt;

use http::{HeaderValue, StatusCode};

use crate::scope::{Requirement, RequirementForm, Scopes};

mod body;
mod challenge;
mod grpc;
mod rejector;

pub(crate) use body::RejectionBody;
pub use challenge::InvalidRealm;
use challenge::challenge;
pub(crate) use challenge::is_valid_realm;
pub use grpc::GrpcCode;
pub use rejector::Rejector;
pub(crate) use rejector::reject_without_layer;

/// Why a request was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No bearer token at all (no `Authorization` header, or another scheme).
    MissingCredentials,
    /// The credentials are unusable: several `Authorization` headers, not ASCII, a bearer
    /// with no or badly formed credentials, too long; or a query-string token beside a
    /// header, where query tokens are enabled.
    InvalidRequest,
    /// The token fails the offline checks (prefix, length, charset, checksum).
    MalformedToken,
    /// Well formed, but the store does not know it.
    UnknownToken,
    /// Revoked.
    RevokedToken,
    /// Expired.
    ExpiredToken,
    /// Unused for longer than the idle lifetime
    /// ([`Tokens::idle_lifetime`](crate::Tokens::idle_lifetime)): expired by disuse.
    IdleToken,
    /// The token lacks a scope the route requires.
    InsufficientScope,
    /// The store failed or timed out: fail closed.
    StoreUnavailable,
    /// A scope check or an extractor found no `PatLayer` in front of it: a wiring error.
    MissingLayer,
}

/// One row of the rejection table: every column of one kind, decided in one place.
struct Row {
    status: StatusCode,
    code: &'static str,
    /// RFC 6750's `error`, where the challenge carries one.
    rfc_error: Option<&'static str>,
    /// Whether the challenge repeats the message as `error_description`.
    described: bool,
    /// Whether the answer carries a `WWW-Authenticate` challenge.
    challenged: bool,
    grpc: GrpcCode,
    message: &'static str,
}

impl RejectionKind {
    /// The rejection table. A new kind does not compile until its row is written.
    const fn row(self) -> Row {
        const fn row(
            status: StatusCode,
            code: &'static str,
            rfc_error: Option<&'static str>,
            described: bool,
            grpc: GrpcCode,
            message: &'static str,
        ) -> Row {
            Row {
                status,
                code,
                rfc_error,
                described,
                challenged: matches!(status.as_u16(), 400 | 401 | 403),
                grpc,
                message,
            }
        }
        use GrpcCode::*;
        use StatusCode as S;
        const INVALID_TOKEN: Option<&str> = Some("invalid_token");
        match self {
            Self::MissingCredentials => row(
                S::UNAUTHORIZED,
                "missing_credentials",
                None,
                false,
                Unauthenticated,
                "missing bearer token",
            ),
            Self::InvalidRequest => row(
                S::BAD_REQUEST,
                "invalid_request",
                Some("invalid_request"),
                false,
                Unauthenticated,
                "malformed or repeated credentials",
            ),
            Self::MalformedToken => row(
                S::UNAUTHORIZED,
                "malformed_token",
                INVALID_TOKEN,
                true,
                Unauthenticated,
                "the access token is malformed",
            ),
            Self::UnknownToken => row(
                S::UNAUTHORIZED,
                "unknown_token",
                INVALID_TOKEN,
                true,
                Unauthenticated,
                "the access token is not recognized",
            ),
            Self::RevokedToken => row(
                S::UNAUTHORIZED,
                "revoked_token",
                INVALID_TOKEN,
                true,
                Unauthenticated,
                "the access token has been revoked",
            ),
            Self::ExpiredToken => row(
                S::UNAUTHORIZED,
                "expired_token",
                INVALID_TOKEN,
                true,
                Unauthenticated,
                "the access token has expired",
            ),
            Self::IdleToken => row(
                S::UNAUTHORIZED,
                "idle_token",
                INVALID_TOKEN,
                true,
                Unauthenticated,
                "the access token has expired: unused for too long",
            ),
            Self::InsufficientScope => row(
                S::FORBIDDEN,
                "insufficient_scope",
                Some("insufficient_scope"),
                false,
                PermissionDenied,
                "insufficient scope",
            ),
            Self::StoreUnavailable => row(
                S::SERVICE_UNAVAILABLE,
                "store_unavailable",
                None,
                false,
                Unavailable,
                "token store unavailable",
            ),
            Self::MissingLayer => row(
                S::INTERNAL_SERVER_ERROR,
                "missing_layer",
                None,
                false,
                Internal,
                "internal error",
            ),
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        self.row().status
    }

    /// A stable, machine-readable name of the kind (`missing_credentials`,
    /// `expired_token`, `insufficient_scope`, …) for JSON bodies and metrics. Finer than
    /// [`error_code`](Self::error_code): the four `invalid_token` kinds have codes of
    /// their own.
    pub fn code(self) -> &'static str {
        self.row().code
    }

    /// The RFC 6750 `error` code, where the challenge carries one.
    pub fn error_code(self) -> Option<&'static str> {
        self.row().rfc_error
    }

    /// The RFC 6750 `error_description`, where the challenge carries one (the
    /// [`message`](Self::message) of the four `invalid_token` kinds).
    pub fn error_description(self) -> Option<&'static str> {
        let row = self.row();
        row.described.then_some(row.message)
    }

    /// The gRPC status code.
    pub fn grpc_code(self) -> GrpcCode {
        self.row().grpc
    }

    /// A short human-readable message (the gRPC `grpc-message`). Never a wiring hint:
    /// those go to the log.
    pub fn message(self) -> &'static str {
        self.row().message
    }

    /// Whether the answer carries a `WWW-Authenticate` challenge (401, 400, 403).
    pub fn has_challenge(self) -> bool {
        self.row().challenged
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// A rejected request, as the body hook sees it.
#[derive(Clone, Copy, Debug)]
pub struct Rejection<'a> {
    kind: RejectionKind,
    realm: &'a str,
    requirement: Option<&'a Requirement>,
}

impl<'a> Rejection<'a> {
    pub(crate) fn new(
        kind: RejectionKind,
        realm: &'a str,
        requirement: Option<&'a Requirement>,
    ) -> Self {
        Self {
            kind,
            realm,
            requirement,
        }
    }

    /// Why.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The HTTP status the response will have.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The realm of the challenge.
    pub fn realm(&self) -> &str {
        self.realm
    }

    /// What the route requires, when a scope check rejected the request (for
    /// [`RejectionKind::InsufficientScope`], and for a request that reached a scope check
    /// without a token).
    pub fn requirement(&self) -> Option<&Requirement> {
        self.requirement
    }

    /// Whether the route required all, any, or one of several sets of its scopes.
    pub fn required_form(&self) -> Option<RequirementForm> {
        self.requirement.map(Requirement::form)
    }

    /// The scopes the challenge names (see [`Requirement::challenge_scopes`]).
    pub fn required_scopes(&self) -> Option<&Scopes> {
        self.requirement.map(Requirement::challenge_scopes)
    }

    /// The `WWW-Authenticate` value, where the answer carries one.
    pub fn challenge(&self) -> Option<HeaderValue> {
        self.kind
            .has_challenge()
            .then(|| challenge(self.realm, self.kind, self.required_scopes()))
    }

    /// A JSON object describing the rejection, for a body hook:
    /// `{"error":"invalid_token","code":"expired_token","message":"the access token has expired"}`,
    /// with `"scope"` and `"form"` for `insufficient_scope`. `error` is the RFC 6750 code,
    /// or the kind's code where RFC 6750 has none (`store_unavailable`, `missing_layer`).
    pub fn to_json(&self) -> String {
        let kind = self.kind;
        // Every string here is the crate's own, or scope names, which exclude `"` and `\`.
        let mut json = format!(
            r#"{{"error":"{}","code":"{}","message":"{}""#,
            kind.error_code().unwrap_or(kind.code()),
            kind.code(),
            kind.message()
        );
        if let (RejectionKind::InsufficientScope, Some(requirement)) = (kind, self.requirement) {
            json.push_str(&format!(
                r#","scope":"{}","form":"{}""#,
                requirement.challenge_scopes(),
                requirement.form().as_str()
            ));
        }
        json.push('}');
        json
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const ALL: [RejectionKind; 10] = [
        RejectionKind::MissingCredentials,
        RejectionKind::InvalidRequest,
        RejectionKind::MalformedToken,
        RejectionKind::UnknownToken,
        RejectionKind::RevokedToken,
        RejectionKind::ExpiredToken,
        RejectionKind::IdleToken,
        RejectionKind::InsufficientScope,
        RejectionKind::StoreUnavailable,
        RejectionKind::MissingLayer,
    ];

    #[test]
    fn codes_are_distinct_and_snake_case() {
        let codes: std::collections::HashSet<_> = ALL.iter().map(|k| k.code()).collect();
        assert_eq!(codes.len(), ALL.len());
        for code in codes {
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn json_names_the_kind_and_the_requirement() {
        let expired = Rejection::new(RejectionKind::ExpiredToken, "api", None);
        assert_eq!(
            expired.to_json(),
            r#"{"error":"invalid_token","code":"expired_token","message":"the access token has expired"}"#
        );
        let requirement = Requirement::any(["b", "a"]);
        let short = Rejection::new(RejectionKind::InsufficientScope, "api", Some(&requirement));
        assert_eq!(
            short.to_json(),
            r#"{"error":"insufficient_scope","code":"insufficient_scope","message":"insufficient scope","scope":"a b","form":"any"}"#
        );
        let down = Rejection::new(RejectionKind::StoreUnavailable, "api", None);
        assert!(
            down.to_json()
                .starts_with(r#"{"error":"store_unavailable""#)
        );
    }
}
