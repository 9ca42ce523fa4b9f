//! The `WWW-Authenticate` challenge (RFC 6750 §3), the rules a realm must follow to be
//! quoted in one, and the challenges of one realm that do not depend on the route, built
//! once.

use std::fmt;

use http::HeaderValue;

use super::RejectionKind;
use crate::scope::Scopes;

/// Builds the `WWW-Authenticate` value of `kind`: `Bearer realm="…"`, then RFC 6750's
/// `error`, `error_description` and, for `insufficient_scope`, `scope` where they apply.
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

/// The challenges of one realm that do not depend on the route, built once per layer so a
/// rejection only clones a header value.
#[derive(Clone, Debug)]
pub(crate) struct Challenges {
    missing_credentials: HeaderValue,
    invalid_request: HeaderValue,
    malformed_token: HeaderValue,
    unknown_token: HeaderValue,
    revoked_token: HeaderValue,
    expired_token: HeaderValue,
    idle_token: HeaderValue,
}

impl Challenges {
    /// For a realm [`is_valid_realm`] accepted.
    pub(crate) fn new(realm: &str) -> Self {
        let c = |kind| challenge(realm, kind, None);
        Self {
            missing_credentials: c(RejectionKind::MissingCredentials),
            invalid_request: c(RejectionKind::InvalidRequest),
            malformed_token: c(RejectionKind::MalformedToken),
            unknown_token: c(RejectionKind::UnknownToken),
            revoked_token: c(RejectionKind::RevokedToken),
            expired_token: c(RejectionKind::ExpiredToken),
            idle_token: c(RejectionKind::IdleToken),
        }
    }

    /// The prebuilt challenge of `kind`; `None` where it depends on the route (403) or
    /// where there is none.
    pub(crate) fn get(&self, kind: RejectionKind) -> Option<&HeaderValue> {
        match kind {
            RejectionKind::MissingCredentials => Some(&self.missing_credentials),
            RejectionKind::InvalidRequest => Some(&self.invalid_request),
            RejectionKind::MalformedToken => Some(&self.malformed_token),
            RejectionKind::UnknownToken => Some(&self.unknown_token),
            RejectionKind::RevokedToken => Some(&self.revoked_token),
            RejectionKind::ExpiredToken => Some(&self.expired_token),
            RejectionKind::IdleToken => Some(&self.idle_token),
            RejectionKind::InsufficientScope
            | RejectionKind::StoreUnavailable
            | RejectionKind::MissingLayer => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::tests::ALL;

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
    fn prebuilt_challenges_equal_built_ones() {
        let challenges = Challenges::new("my api");
        for kind in ALL {
            if let Some(prebuilt) = challenges.get(kind) {
                assert_eq!(prebuilt, challenge("my api", kind, None), "{kind:?}");
                assert!(kind.has_challenge());
            }
        }
    }

    #[test]
    fn realms_are_checked() {
        assert!(is_valid_realm("my api"));
        assert!(!is_valid_realm("a\"b"));
        assert!(!is_valid_realm("a\nb"));
    }
}
