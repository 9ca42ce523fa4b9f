//! Finding the bearer token of a request (RFC 6750): the `Authorization` header, the
//! `bearer` scheme, the `access_token` query parameter where enabled, and the offline
//! verdict on what was presented.
//!
//! This is the seam between "the bytes a client presented" and "the key the store is
//! asked for": [`presented`] returns the [`TokenHash`] to look up and which format the
//! bearer has the shape of ([`Candidate`]), or why the request is rejected before any
//! store is asked. The service knows nothing of the formats. The crate's own shape is
//! tried first, then Passport's (a JWT) and Sanctum's where the layer accepts them
//! ([`Formats`](crate::credential::Formats)); a bearer of no accepted shape is judged as
//! the crate's own format would judge it, so it is rejected without a store call.
//!
//! A bearer outside RFC 6750's `b64token` characters is `invalid_request`, except that a
//! layer accepting Sanctum's tokens lets Sanctum's `id|secret` through to that format
//! first (`|` is not a `b64token` character).
//!
//! The token page's "does this request carry a token" check (`manage::guard::carries_token`)
//! is broader on purpose: any `Bearer` credentials however malformed, several of them, an
//! `access_token` parameter whatever the layer's query rule, or a token a layer resolved.
//! This parser decides which credential a request presents, and rejects what is not one;
//! that check only has to know that a script's credential is there, and a page for people
//! must refuse it even where this parser would say "no credentials".
//!
//! The verdict comes in two steps. Before anything is hashed: the length and the prefix
//! ([`presented`]). Before a store is asked to wait for a lookup, or when a store that
//! answers at once does not know the token: the charset and the checksum
//! ([`checked_offline`]). A token that a store answering at once has found is real (its
//! SHA-256 matched), so the hot path skips the checksum.

use http::{Request, header::AUTHORIZATION};

use time::OffsetDateTime;

use super::config::CredentialRules;
use crate::{
    credential::{Credential, CredentialKind},
    record::TokenRecord,
    reject::RejectionKind,
    token::{MalformedToken, TokenHash},
};

/// Which accepted format a bearer has the shape of: decided before its key is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Candidate {
    /// The crate's own format.
    Pat,
    /// Sanctum's, naming its row or not.
    #[cfg_attr(not(feature = "laravel"), allow(dead_code))]
    Sanctum(Option<u64>),
    /// Passport's (a JWT): its signature is checked before a store is asked.
    #[cfg_attr(not(feature = "laravel"), allow(dead_code))]
    Passport,
}

impl Candidate {
    /// Whether `record`, found by this candidate's key, is the token presented: of the
    /// same format, and for a Sanctum token naming a row, that row.
    #[inline]
    pub(super) fn matches<U>(self, record: &TokenRecord<U>) -> bool {
        match self {
            Self::Pat => record.kind == CredentialKind::Pat,
            Self::Sanctum(id) => {
                record.kind == CredentialKind::Sanctum
                    && id.is_none_or(|id| record.id == crate::record::TokenId::from_integer(id))
            }
            Self::Passport => record.kind == CredentialKind::Passport,
        }
    }
}

/// Finds the bearer token of a request and marks the `Authorization` header sensitive:
/// `Ok(None)` when there is none, else the hash of a token with the format's length and
/// prefix, or why the request is rejected.
///
/// One lookup of the header in the common case: `len` counts values and `keys_len`
/// names, so only a request with some repeated header pays for a second look. With query
/// tokens off (the default) the query string is not looked at.
#[inline]
pub(super) fn presented<B>(
    req: &mut Request<B>,
    rules: &CredentialRules,
) -> Result<Option<(TokenHash, Candidate)>, RejectionKind> {
    let in_query = rules.query_token && req.uri().query().and_then(query_token).is_some();
    let headers = req.headers_mut();
    if headers.len() != headers.keys_len() && headers.get_all(AUTHORIZATION).iter().nth(1).is_some()
    {
        return Err(RejectionKind::InvalidRequest);
    }
    let from_header = match headers.get_mut(AUTHORIZATION) {
        None => None,
        Some(value) => {
            value.set_sensitive(true);
            bearer(value.as_bytes(), rules.max_header_len)?
        }
    };
    if let Some(candidate) = from_header {
        // RFC 6750 §2: one method per request.
        if in_query {
            return Err(RejectionKind::InvalidRequest);
        }
        return shaped(rules, candidate).map(Some);
    }
    if !in_query {
        return Ok(None);
    }
    match req.uri().query().and_then(query_token) {
        Some(candidate) => shaped(rules, candidate.as_bytes()).map(Some),
        None => Ok(None),
    }
}

/// The second step of the offline verdict, for a request [`presented`] found a token in:
/// the charset and the checksum of one of the crate's tokens; nothing more for a Sanctum
/// token (its checksum is advice: Sanctum accepts a token without one); the signature and
/// the dates of a Passport token, at `now`. What the store is then told.
///
/// # Errors
///
/// Why the token is rejected, as the whole verdict answers it.
#[inline(never)]
pub(super) fn checked_offline<B>(
    req: &Request<B>,
    rules: &CredentialRules,
    candidate: Candidate,
    now: impl FnOnce() -> OffsetDateTime,
) -> Result<Credential, RejectionKind> {
    let kind = candidate;
    let from_header = req.headers().get(AUTHORIZATION).and_then(|value| {
        bearer(value.as_bytes(), rules.max_header_len)
            .ok()
            .flatten()
    });
    let bearer_token = match from_header {
        Some(token) => token,
        None => match req.uri().query().and_then(query_token) {
            Some(token) => token.as_bytes(),
            // `presented` found a token, so there is one: fail closed all the same.
            None => return Err(RejectionKind::InvalidRequest),
        },
    };
    match kind {
        Candidate::Pat => judge(rules, bearer_token).map(|_| Credential::Pat),
        Candidate::Sanctum(id) => Ok(Credential::Sanctum { id }),
        #[cfg(feature = "laravel")]
        Candidate::Passport => {
            use crate::laravel::PassportError;
            let Some(format) = &rules.formats.passport else {
                return Err(RejectionKind::MalformedToken);
            };
            match format.verify(bearer_token, now()) {
                Ok(claims) => Ok(Credential::Passport(claims)),
                Err(why) => {
                    tracing::debug!(reason = %why, "Passport token rejected offline");
                    Err(match why {
                        PassportError::Expired => RejectionKind::ExpiredToken,
                        _ => RejectionKind::MalformedToken,
                    })
                }
            }
        }
        #[cfg(not(feature = "laravel"))]
        Candidate::Passport => {
            let _ = now;
            Err(RejectionKind::MalformedToken)
        }
    }
}

/// The first step: a token with the crate's length and prefix is hashed; then the
/// Laravel shapes where accepted; anything else gets the whole verdict of the crate's
/// format, to say why it is rejected.
#[inline]
fn shaped(
    rules: &CredentialRules,
    candidate: &[u8],
) -> Result<(TokenHash, Candidate), RejectionKind> {
    if rules.formats.pat.is_shaped(candidate) {
        return Ok((TokenHash::of_bytes(candidate), Candidate::Pat));
    }
    #[cfg(feature = "laravel")]
    if let Some(found) = laravel_shaped(rules, candidate) {
        return Ok(found);
    }
    judge(rules, candidate).map(|hash| (hash, Candidate::Pat))
}

/// A bearer with the shape of a Passport or a Sanctum token the layer accepts: its key.
#[cfg(feature = "laravel")]
#[inline(never)]
fn laravel_shaped(rules: &CredentialRules, candidate: &[u8]) -> Option<(TokenHash, Candidate)> {
    if rules.formats.passport.is_some() && crate::laravel::PassportFormat::is_shaped(candidate) {
        return Some((TokenHash::of_bytes(candidate), Candidate::Passport));
    }
    let token = rules.formats.sanctum.as_ref()?.parse(candidate)?;
    Some((token.key, Candidate::Sanctum(token.id)))
}

/// The whole offline verdict: the hash to look up, or why the credentials are rejected.
fn judge(rules: &CredentialRules, candidate: &[u8]) -> Result<TokenHash, RejectionKind> {
    rules.formats.pat.parse_bytes(candidate).map_err(|why| {
        tracing::debug!(reason = %why, "bearer token rejected offline");
        offline_rejection(candidate, why)
    })
}

/// Splits `Bearer 1*SP credentials`. `Ok(None)`: another scheme, so no bearer
/// credentials. Whether the credentials are a `b64token` is judged only when they fail the
/// token format (see [`offline_rejection`]): a valid token is one already.
fn bearer(value: &[u8], max_len: usize) -> Result<Option<&[u8]>, RejectionKind> {
    if value.len() > max_len {
        return Err(RejectionKind::InvalidRequest);
    }
    const SCHEME: &[u8] = b"bearer";
    let Some((scheme, rest)) = value.split_at_checked(SCHEME.len()) else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return Ok(None);
    }
    match rest.first() {
        // `Bearer` alone: the bearer scheme without credentials.
        None => Err(RejectionKind::InvalidRequest),
        Some(b' ') => match rest.iter().position(|&b| b != b' ') {
            Some(start) => Ok(Some(&rest[start..])),
            None => Err(RejectionKind::InvalidRequest),
        },
        // `Bearerx …`: another scheme.
        Some(_) => Ok(None),
    }
}

/// How to reject credentials that failed the token format: a well-formed `b64token` is an
/// `invalid_token`, anything else an `invalid_request` (RFC 6750 §3.1).
fn offline_rejection(candidate: &[u8], why: MalformedToken) -> RejectionKind {
    match why {
        // Only base62 characters get as far as the checksum.
        MalformedToken::Checksum => RejectionKind::MalformedToken,
        _ if is_b64token(candidate) => RejectionKind::MalformedToken,
        _ => RejectionKind::InvalidRequest,
    }
}

/// RFC 6750: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(t: &[u8]) -> bool {
    let body = t.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    body > 0
        && t[..body].iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

fn query_token(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("access_token="))
}

#[cfg(test)]
mod tests {
    use super::super::config::DEFAULT_MAX_HEADER_LEN;
    use super::*;

    #[test]
    fn bearer_syntax() {
        let max = DEFAULT_MAX_HEADER_LEN;
        assert_eq!(bearer(b"Bearer abc", max), Ok(Some(&b"abc"[..])));
        assert_eq!(bearer(b"bEaReR   abc==", max), Ok(Some(&b"abc=="[..])));
        assert_eq!(bearer(b"Basic dXNlcjpwYXNz", max), Ok(None));
        assert_eq!(bearer(b"Bearerabc", max), Ok(None));
        for empty in [&b"Bearer"[..], b"Bearer ", b"Bearer   "] {
            assert_eq!(bearer(empty, max), Err(RejectionKind::InvalidRequest));
        }
        let long = format!("Bearer {}", "a".repeat(max));
        assert_eq!(
            bearer(long.as_bytes(), max),
            Err(RejectionKind::InvalidRequest)
        );
    }

    #[test]
    fn credentials_that_fail_the_format_are_classified() {
        let rules = CredentialRules::default();
        let format = &rules.formats.pat;
        let good = format.generate().unwrap();
        assert_eq!(
            judge(&rules, good.expose_secret().as_bytes()),
            Ok(good.hash())
        );
        for bad_syntax in [&b"a b"[..], b"=abc", b"a\xffb", b"a,b", b"a\"b"] {
            assert_eq!(
                judge(&rules, bad_syntax),
                Err(RejectionKind::InvalidRequest),
                "{bad_syntax:?}"
            );
        }
        for b64_but_not_ours in [&b"abc"[..], b"abc==", b"a-b.c_d~e+f/g", b"ghp_x"] {
            assert_eq!(
                judge(&rules, b64_but_not_ours),
                Err(RejectionKind::MalformedToken),
                "{b64_but_not_ours:?}"
            );
        }
        let mut typo = good.into_secret().into_bytes();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        assert_eq!(judge(&rules, &typo), Err(RejectionKind::MalformedToken));
    }

    #[test]
    fn a_shaped_token_is_hashed_and_its_checksum_judged_later() {
        let rules = CredentialRules::default();
        let good = rules.formats.pat.generate().unwrap();
        let mut typo = good.expose_secret().to_owned().into_bytes();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        let mut spaced = good.expose_secret().to_owned();
        spaced.replace_range(10..11, " ");
        for (token, later) in [
            (good.expose_secret(), Ok(Credential::Pat)),
            (typo.as_str(), Err(RejectionKind::MalformedToken)),
            // Right length and prefix, but not a `b64token`.
            (spaced.as_str(), Err(RejectionKind::InvalidRequest)),
        ] {
            let header = format!("Bearer {token}");
            let mut req = request("/", &[&header], 0);
            assert_eq!(
                presented(&mut req, &rules),
                Ok(Some((TokenHash::of(token), Candidate::Pat))),
                "{token:?}"
            );
            assert_eq!(
                checked_offline(&req, &rules, Candidate::Pat, OffsetDateTime::now_utc),
                later,
                "{token:?}"
            );
        }
        // From the query string too.
        let mut rules = rules;
        rules.query_token = true;
        let req = request(&format!("/?access_token={typo}"), &[], 0);
        assert_eq!(
            checked_offline(&req, &rules, Candidate::Pat, OffsetDateTime::now_utc),
            Err(RejectionKind::MalformedToken)
        );
    }

    fn request(uri: &str, auth: &[&str], cookies: usize) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        for a in auth {
            b = b.header(AUTHORIZATION, *a);
        }
        for i in 0..cookies {
            b = b.header(http::header::COOKIE, format!("c{i}=1"));
        }
        b.body(()).unwrap()
    }

    #[test]
    fn repeated_authorization_is_found_among_other_repeated_headers() {
        let config = CredentialRules::default();
        let token = config.formats.pat.generate().unwrap();
        let bearer = format!("Bearer {}", token.expose_secret());
        for cookies in [0, 1, 3] {
            let mut one = request("/", &[&bearer], cookies);
            assert_eq!(
                presented(&mut one, &config),
                Ok(Some((token.hash(), Candidate::Pat)))
            );
            assert!(one.headers()[AUTHORIZATION].is_sensitive());
            let mut two = request("/", &[&bearer, &bearer], cookies);
            assert_eq!(
                presented(&mut two, &config),
                Err(RejectionKind::InvalidRequest)
            );
            let mut none = request("/", &[], cookies);
            assert_eq!(presented(&mut none, &config), Ok(None));
        }
    }

    #[test]
    fn the_query_is_not_looked_at_unless_enabled() {
        let mut config = CredentialRules::default();
        let token = config.formats.pat.generate().unwrap();
        let in_query = format!("/orders?access_token={}", token.expose_secret());
        let header = format!("Bearer {}", token.expose_secret());

        assert_eq!(
            presented(&mut request(&in_query, &[], 0), &config),
            Ok(None)
        );
        assert_eq!(
            presented(&mut request("/?access_token=garbage", &[], 0), &config),
            Ok(None)
        );
        assert_eq!(
            presented(&mut request(&in_query, &[&header], 0), &config),
            Ok(Some((token.hash(), Candidate::Pat)))
        );

        config.query_token = true;
        assert_eq!(
            presented(&mut request(&in_query, &[], 0), &config),
            Ok(Some((token.hash(), Candidate::Pat)))
        );
        assert_eq!(
            presented(&mut request(&in_query, &[&header], 0), &config),
            Err(RejectionKind::InvalidRequest)
        );
        assert_eq!(
            presented(&mut request("/?access_token=garbage", &[], 0), &config),
            Err(RejectionKind::MalformedToken)
        );
    }

    #[test]
    fn query_tokens() {
        assert_eq!(query_token("a=1&access_token=xyz&b=2"), Some("xyz"));
        assert_eq!(query_token("my_access_token=xyz"), None);
    }
}
