//! The one place where a refused request becomes a response: RFC 6750 status and
//! `WWW-Authenticate` challenge for HTTP, a trailers-only answer for gRPC, and the
//! application's own body where it asked for one.
//!
//! | case | HTTP | `WWW-Authenticate` | gRPC |
//! |---|---|---|---|
//! | no credentials | 401 | `Bearer realm="…"` | 16 `UNAUTHENTICATED` |
//! | malformed, unknown, revoked, expired token | 401 | `Bearer realm="…", error="invalid_token", error_description="…"` | 16 `UNAUTHENTICATED` |
//! | several `Authorization` headers, bad syntax | 400 | `Bearer realm="…", error="invalid_request"` | 16 `UNAUTHENTICATED` |
//! | scopes fall short | 403 | `Bearer realm="…", error="insufficient_scope", scope="a b"` | 7 `PERMISSION_DENIED` |
//! | store failed or timed out | 503 | none | 14 `UNAVAILABLE` |
//! | `RequireScopes` without `PatLayer` | 500 | none | 13 `INTERNAL` |
//!
//! A custom body ([`PatLayer::rejection_body`](crate::PatLayer::rejection_body),
//! [`RequireScopes::rejection_body`](crate::RequireScopesLayer::rejection_body)) shapes the
//! rest of an HTTP answer; the crate sets the status and the challenge after it, so a
//! body cannot break RFC 6750 by accident. gRPC answers have no body, so the hook is not
//! asked for them.

use std::fmt;

use http::{
    HeaderMap, HeaderValue, Response, StatusCode,
    header::{CONTENT_TYPE, WWW_AUTHENTICATE},
};

use crate::scope::Scopes;

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No bearer token at all (no `Authorization` header, or another scheme).
    MissingCredentials,
    /// The `Authorization` header is unusable: sent twice, not ASCII, a bearer with no or
    /// badly formed credentials, too long; or a token in the query string where that is
    /// not enabled.
    InvalidRequest,
    /// The token fails the offline checks (prefix, length, charset, checksum).
    MalformedToken,
    /// Well formed, but the store does not know it.
    UnknownToken,
    /// Revoked.
    RevokedToken,
    /// Expired.
    ExpiredToken,
    /// The token lacks a scope the route requires.
    InsufficientScope,
    /// The store failed or timed out: fail closed.
    StoreUnavailable,
    /// `RequireScopes` found no `PatLayer` in front of it: a wiring error.
    MissingLayer,
}

impl RejectionKind {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::MissingCredentials
            | Self::MalformedToken
            | Self::UnknownToken
            | Self::RevokedToken
            | Self::ExpiredToken => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The RFC 6750 `error` code, where the challenge carries one.
    pub fn error_code(self) -> Option<&'static str> {
        match self {
            Self::MalformedToken | Self::UnknownToken | Self::RevokedToken | Self::ExpiredToken => {
                Some("invalid_token")
            }
            Self::InvalidRequest => Some("invalid_request"),
            Self::InsufficientScope => Some("insufficient_scope"),
            Self::MissingCredentials | Self::StoreUnavailable | Self::MissingLayer => None,
        }
    }

    /// The RFC 6750 `error_description`, where the challenge carries one.
    pub fn error_description(self) -> Option<&'static str> {
        match self {
            Self::MalformedToken => Some("the access token is malformed"),
            Self::UnknownToken => Some("the access token is not recognized"),
            Self::RevokedToken => Some("the access token has been revoked"),
            Self::ExpiredToken => Some("the access token has expired"),
            _ => None,
        }
    }

    /// The gRPC status code.
    pub fn grpc_code(self) -> GrpcCode {
        match self {
            Self::MissingCredentials
            | Self::InvalidRequest
            | Self::MalformedToken
            | Self::UnknownToken
            | Self::RevokedToken
            | Self::ExpiredToken => GrpcCode::Unauthenticated,
            Self::InsufficientScope => GrpcCode::PermissionDenied,
            Self::StoreUnavailable => GrpcCode::Unavailable,
            Self::MissingLayer => GrpcCode::Internal,
        }
    }

    /// A short human-readable message (the gRPC `grpc-message`).
    pub fn message(self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing bearer token",
            Self::InvalidRequest => "invalid Authorization header",
            Self::MalformedToken => "the access token is malformed",
            Self::UnknownToken => "the access token is not recognized",
            Self::RevokedToken => "the access token has been revoked",
            Self::ExpiredToken => "the access token has expired",
            Self::InsufficientScope => "insufficient scope",
            Self::StoreUnavailable => "token store unavailable",
            Self::MissingLayer => "PatLayer is missing in front of RequireScopes",
        }
    }

    /// Whether the challenge goes in a `WWW-Authenticate` header (401, 400, 403).
    pub fn has_challenge(self) -> bool {
        !matches!(self, Self::StoreUnavailable | Self::MissingLayer)
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// The gRPC status codes the crate answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrpcCode {
    /// 16.
    Unauthenticated = 16,
    /// 7.
    PermissionDenied = 7,
    /// 14.
    Unavailable = 14,
    /// 13.
    Internal = 13,
}

/// A refused request, as the body hook sees it.
#[derive(Clone, Copy, Debug)]
pub struct Rejection<'a> {
    kind: RejectionKind,
    realm: &'a str,
    scopes: Option<&'a Scopes>,
}

impl<'a> Rejection<'a> {
    pub(crate) fn new(kind: RejectionKind, realm: &'a str, scopes: Option<&'a Scopes>) -> Self {
        Self {
            kind,
            realm,
            scopes,
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

    /// The scopes the route requires, for [`RejectionKind::InsufficientScope`].
    pub fn required_scopes(&self) -> Option<&Scopes> {
        self.scopes
    }

    /// The `WWW-Authenticate` value, where the answer carries one.
    pub fn challenge(&self) -> Option<HeaderValue> {
        self.kind
            .has_challenge()
            .then(|| challenge(self.realm, self.kind, self.scopes))
    }
}

/// Shapes the HTTP answer to a refused request (a JSON body, say). The crate sets the
/// status and `WWW-Authenticate` after it.
///
/// Implemented for every `Fn(&Rejection<'_>) -> http::Response<B>` that is
/// `Clone + Send + Sync + 'static`:
///
/// ```
/// use tower_pat::{MemoryStore, PatLayer};
///
/// let layer = PatLayer::new(MemoryStore::<i64>::new()).rejection_body(|r: &tower_pat::reject::Rejection<'_>| {
///     let json = format!(r#"{{"error":"{}"}}"#, r.kind().message());
///     http::Response::builder()
///         .header(http::header::CONTENT_TYPE, "application/json")
///         .body(json)
///         .unwrap()
/// });
/// ```
pub trait RejectionBody<B>: Clone + Send + Sync + 'static {
    /// The answer before the crate stamps status and challenge on it.
    fn response(&self, rejection: &Rejection<'_>) -> Response<B>;
}

/// The default: an empty body (`B::default()`).
#[derive(Clone, Copy, Debug, Default)]
pub struct EmptyBody;

impl<B: Default> RejectionBody<B> for EmptyBody {
    fn response(&self, _: &Rejection<'_>) -> Response<B> {
        Response::new(B::default())
    }
}

impl<B, F> RejectionBody<B> for F
where
    F: Fn(&Rejection<'_>) -> Response<B> + Clone + Send + Sync + 'static,
{
    fn response(&self, rejection: &Rejection<'_>) -> Response<B> {
        self(rejection)
    }
}

/// Whether a request is gRPC (`content-type: application/grpc`, `+proto`, `-web`, …).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Builds the `WWW-Authenticate` value.
pub(crate) fn challenge(realm: &str, kind: RejectionKind, scopes: Option<&Scopes>) -> HeaderValue {
    let mut s = format!("Bearer realm=\"{realm}\"");
    if let Some(code) = kind.error_code() {
        s.push_str(", error=\"");
        s.push_str(code);
        s.push('"');
    }
    if let Some(desc) = kind.error_description() {
        s.push_str(", error_description=\"");
        s.push_str(desc);
        s.push('"');
    }
    if let (RejectionKind::InsufficientScope, Some(scopes)) = (kind, scopes) {
        s.push_str(", scope=\"");
        s.push_str(&scopes.to_string());
        s.push('"');
    }
    // The realm is checked when it is set, scopes exclude `"` and `\`, the rest is ours.
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// Checks a realm for use in a quoted-string: visible ASCII and space, no `"` or `\`.
pub(crate) fn is_valid_realm(realm: &str) -> bool {
    realm
        .bytes()
        .all(|b| (b == b' ' || b.is_ascii_graphic()) && b != b'"' && b != b'\\')
}

/// A trailers-only gRPC answer.
pub(crate) fn grpc_response<B: Default>(kind: RejectionKind, message: &str) -> Response<B> {
    let mut res = Response::new(B::default());
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(kind.grpc_code() as u16));
    if let Ok(v) = HeaderValue::try_from(percent_encode(message)) {
        headers.insert("grpc-message", v);
    }
    res
}

/// The percent-encoding gRPC asks of `grpc-message`: bytes outside `%x20-7E`, and `%`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds the answer to a refused request. `challenge` is the prebuilt header value when
/// the caller has one.
pub(crate) fn respond<B, H>(
    hook: &H,
    grpc: bool,
    rejection: &Rejection<'_>,
    challenge: Option<HeaderValue>,
) -> Response<B>
where
    B: Default,
    H: RejectionBody<B>,
{
    let kind = rejection.kind();
    if grpc {
        return match (kind, rejection.required_scopes()) {
            (RejectionKind::InsufficientScope, Some(scopes)) => {
                grpc_response(kind, &format!("insufficient scope: requires {scopes}"))
            }
            _ => grpc_response(kind, kind.message()),
        };
    }
    let mut res = hook.response(rejection);
    *res.status_mut() = kind.status();
    let headers = res.headers_mut();
    match challenge.or_else(|| rejection.challenge()) {
        Some(v) => {
            headers.insert(WWW_AUTHENTICATE, v);
        }
        None => {
            headers.remove(WWW_AUTHENTICATE);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_match_rfc_6750() {
        let scopes = Scopes::try_from_iter(["b", "a"]).unwrap();
        let cases = [
            (RejectionKind::MissingCredentials, r#"Bearer realm="api""#),
            (
                RejectionKind::ExpiredToken,
                r#"Bearer realm="api", error="invalid_token", error_description="the access token has expired""#,
            ),
            (
                RejectionKind::InvalidRequest,
                r#"Bearer realm="api", error="invalid_request""#,
            ),
            (
                RejectionKind::InsufficientScope,
                r#"Bearer realm="api", error="insufficient_scope", scope="a b""#,
            ),
        ];
        for (kind, want) in cases {
            assert_eq!(challenge("api", kind, Some(&scopes)), want);
        }
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("a b%c\u{e9}"), "a b%25c%C3%A9");
    }

    #[test]
    fn realms_are_checked() {
        assert!(is_valid_realm("my api"));
        assert!(!is_valid_realm("a\"b"));
        assert!(!is_valid_realm("a\nb"));
    }
}
