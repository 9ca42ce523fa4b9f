//! The one place where a refused request becomes a response: RFC 6750 status and
//! `WWW-Authenticate` challenge for HTTP, a trailers-only answer for gRPC, and the
//! application's own body where it asked for one.
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
//! refusals of the `PatLayer`, of every scope check behind it, and of the axum extractor.
//! The crate sets the status and the challenge after the hook ran, so a body cannot break
//! RFC 6750 by accident. gRPC answers have no body, so the hook is not asked for them.
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

use std::{
    any::Any,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use http::{
    HeaderMap, HeaderValue, Response, StatusCode,
    header::{CONTENT_TYPE, WWW_AUTHENTICATE},
};

use crate::scope::{Requirement, RequirementForm, Scopes};

/// Why a request was refused.
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

    /// What the route requires, when a scope check refused the request (for
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

    /// A JSON object describing the refusal, for a body hook:
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

/// The application's body for refused requests, set once on the
/// [`PatLayer`](crate::PatLayer) and found by every scope check and extractor behind it.
/// Kept without its body type (the layer is not generic over bodies); the response's
/// body type is recovered when a refusal is answered.
#[derive(Clone, Default)]
pub(crate) struct Hook(Option<Arc<dyn Any + Send + Sync>>);

type BodyFn<B> = Box<dyn Fn(&Rejection<'_>) -> Response<B> + Send + Sync>;

impl Hook {
    pub(crate) fn new<B, F>(f: F) -> Self
    where
        B: 'static,
        F: Fn(&Rejection<'_>) -> Response<B> + Send + Sync + 'static,
    {
        let f: BodyFn<B> = Box::new(f);
        Self(Some(Arc::new(f)))
    }

    /// The hook's answer, or an empty one without a hook (or for another body type than
    /// the hook's, which is logged once).
    fn response<B: Default + 'static>(&self, rejection: &Rejection<'_>) -> Response<B> {
        let Some(hook) = &self.0 else {
            return Response::new(B::default());
        };
        match hook.downcast_ref::<BodyFn<B>>() {
            Some(f) => f(rejection),
            None => {
                static WARNED: AtomicBool = AtomicBool::new(false);
                if !WARNED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        body = std::any::type_name::<B>(),
                        "PatLayer::rejection_body was given for another response body type than this service's; answering refusals with an empty body"
                    );
                }
                Response::new(B::default())
            }
        }
    }
}

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Hook(custom)"
        } else {
            "Hook(empty body)"
        })
    }
}

/// How one `PatLayer` answers refusals: its realm, the body hook, and the challenges that
/// do not depend on the route, built once.
#[derive(Clone, Debug)]
pub(crate) struct Refusals {
    realm: Box<str>,
    hook: Hook,
    missing_credentials: HeaderValue,
    invalid_request: HeaderValue,
    malformed_token: HeaderValue,
    unknown_token: HeaderValue,
    revoked_token: HeaderValue,
    expired_token: HeaderValue,
}

impl Refusals {
    /// For a realm [`is_valid_realm`] accepted.
    pub(crate) fn new(realm: &str, hook: Hook) -> Self {
        let c = |kind| challenge(realm, kind, None);
        Self {
            realm: Box::from(realm),
            hook,
            missing_credentials: c(RejectionKind::MissingCredentials),
            invalid_request: c(RejectionKind::InvalidRequest),
            malformed_token: c(RejectionKind::MalformedToken),
            unknown_token: c(RejectionKind::UnknownToken),
            revoked_token: c(RejectionKind::RevokedToken),
            expired_token: c(RejectionKind::ExpiredToken),
        }
    }

    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn realm(&self) -> &str {
        &self.realm
    }

    /// The prebuilt challenge of `kind`; `None` where it depends on the route (403) or
    /// where there is none.
    fn prebuilt(&self, kind: RejectionKind) -> Option<&HeaderValue> {
        match kind {
            RejectionKind::MissingCredentials => Some(&self.missing_credentials),
            RejectionKind::InvalidRequest => Some(&self.invalid_request),
            RejectionKind::MalformedToken => Some(&self.malformed_token),
            RejectionKind::UnknownToken => Some(&self.unknown_token),
            RejectionKind::RevokedToken => Some(&self.revoked_token),
            RejectionKind::ExpiredToken => Some(&self.expired_token),
            RejectionKind::InsufficientScope
            | RejectionKind::StoreUnavailable
            | RejectionKind::MissingLayer => None,
        }
    }

    /// The answer to a refused request: trailers-only for gRPC, else the hook's body with
    /// the status and challenge of `kind`.
    pub(crate) fn respond<B: Default + 'static>(
        &self,
        kind: RejectionKind,
        requirement: Option<&Requirement>,
        headers: &HeaderMap,
    ) -> Response<B> {
        let rejection = Rejection::new(kind, &self.realm, requirement);
        if is_grpc(headers) {
            return grpc_refusal(&rejection);
        }
        let mut res = self.hook.response(&rejection);
        let challenge = match self.prebuilt(kind) {
            Some(v) => Some(v.clone()),
            None => rejection.challenge(),
        };
        stamp(&mut res, kind, challenge);
        res
    }
}

/// The answer when no `PatLayer` ran, so there is no realm and no hook: 500 with an empty
/// body, or `INTERNAL` for gRPC.
pub(crate) fn respond_without_layer<B: Default>(headers: &HeaderMap) -> Response<B> {
    let kind = RejectionKind::MissingLayer;
    if is_grpc(headers) {
        return grpc_response(kind, kind.message());
    }
    let mut res = Response::new(B::default());
    stamp(&mut res, kind, None);
    res
}

/// Sets what the crate decides, whatever the hook returned.
fn stamp<B>(res: &mut Response<B>, kind: RejectionKind, challenge: Option<HeaderValue>) {
    *res.status_mut() = kind.status();
    let headers = res.headers_mut();
    match challenge {
        Some(v) => {
            headers.insert(WWW_AUTHENTICATE, v);
        }
        None => {
            headers.remove(WWW_AUTHENTICATE);
        }
    }
}

fn grpc_refusal<B: Default>(rejection: &Rejection<'_>) -> Response<B> {
    let kind = rejection.kind();
    match (kind, rejection.requirement()) {
        (RejectionKind::InsufficientScope, Some(requirement)) => {
            grpc_response(kind, &format!("insufficient scope: requires {requirement}"))
        }
        _ => grpc_response(kind, kind.message()),
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

/// A realm [`PatLayer::try_realm`](crate::PatLayer::try_realm) refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidRealm(pub(crate) String);

impl fmt::Display for InvalidRealm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid realm {:?}: use visible ASCII and spaces, without '\"' or '\\'",
            self.0
        )
    }
}

impl std::error::Error for InvalidRealm {}

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

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [RejectionKind; 9] = [
        RejectionKind::MissingCredentials,
        RejectionKind::InvalidRequest,
        RejectionKind::MalformedToken,
        RejectionKind::UnknownToken,
        RejectionKind::RevokedToken,
        RejectionKind::ExpiredToken,
        RejectionKind::InsufficientScope,
        RejectionKind::StoreUnavailable,
        RejectionKind::MissingLayer,
    ];

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
    fn codes_are_distinct_and_snake_case() {
        let codes: std::collections::HashSet<_> = ALL.iter().map(|k| k.code()).collect();
        assert_eq!(codes.len(), ALL.len());
        for code in codes {
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn prebuilt_challenges_equal_built_ones() {
        let refusals = Refusals::new("my api", Hook::default());
        for kind in ALL {
            if let Some(prebuilt) = refusals.prebuilt(kind) {
                assert_eq!(prebuilt, challenge("my api", kind, None), "{kind:?}");
                assert!(kind.has_challenge());
            }
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
