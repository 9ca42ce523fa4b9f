//! Shared pieces of the tower-pat fuzz targets: independent oracles for the token and
//! scope grammars, a fixed set of tokens in a `MemoryStore`, a synchronous driver for the
//! whole `PatLayer` + `RequireScopes` stack, and the check that every answer is one of
//! the rejection table's.
//!
//! The oracles are written from the specification (DESIGN.md, RFC 6749, RFC 6750), not
//! from the crate's code, so a target that compares the two finds a disagreement.

use std::{
    convert::Infallible,
    future::Future,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use futures_util::FutureExt;
use http::{HeaderMap, Request, Response, header::WWW_AUTHENTICATE};
use time::{Duration, OffsetDateTime};
use tower_pat::{
    AccessToken, ManageTokens, MemoryStore,
    record::{TokenId, TokenRecord},
    scope::Scopes,
    token::{TokenFormat, TokenHash},
};
use tower_service::Service;

/// The base62 alphabet of the token format, in digit order.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Random characters in a token.
pub const RANDOM_LEN: usize = 33;
/// Checksum characters in a token.
pub const CHECKSUM_LEN: usize = 6;

/// The checksum of a token's random part: CRC32, written as six base62 digits, most
/// significant first.
pub fn checksum_of(random: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut value = u64::from(crc32fast::hash(random));
    let mut digits = [0u8; CHECKSUM_LEN];
    for i in (0..CHECKSUM_LEN).rev() {
        digits[i] = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    digits
}

/// Builds a well-formed token: `prefix`, then 33 alphabet characters chosen by `seed`
/// (cycled), then the checksum.
pub fn token_from_seed(prefix: &str, seed: &[u8]) -> String {
    let mut random = [b'0'; RANDOM_LEN];
    if !seed.is_empty() {
        for (i, slot) in random.iter_mut().enumerate() {
            *slot = ALPHABET[usize::from(seed[i % seed.len()]) % 62];
        }
    }
    let mut out = String::with_capacity(prefix.len() + RANDOM_LEN + CHECKSUM_LEN);
    out.push_str(prefix);
    out.extend(random.iter().map(|&b| char::from(b)));
    out.extend(checksum_of(&random).iter().map(|&b| char::from(b)));
    out
}

/// The token grammar, from the format's description: the prefix, 33 base62 characters,
/// and the six-character checksum of those 33.
pub fn is_valid_token(prefix: &str, s: &str) -> bool {
    let Some(rest) = s.strip_prefix(prefix) else {
        return false;
    };
    let rest = rest.as_bytes();
    rest.len() == RANDOM_LEN + CHECKSUM_LEN
        && rest.iter().all(|b| ALPHABET.contains(b))
        && checksum_of(&rest[..RANDOM_LEN]) == rest[RANDOM_LEN..]
}

/// A prefix `TokenFormat::new` must accept: 1 to 16 characters of `[A-Za-z0-9_]`.
pub fn is_valid_prefix(p: &str) -> bool {
    (1..=16).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| matches!(c, '!' | '#'..='[' | ']'..='~'))
}

/// Whether a token holding `held` satisfies the requirement `required`, by the rules of
/// DESIGN.md: exact and case-sensitive; a held `*` grants everything when `wildcard` is
/// on; a held `a` grants `a:…` when `inheritance` is on.
pub fn oracle_grants(held: &[&str], required: &str, wildcard: bool, inheritance: bool) -> bool {
    held.iter().any(|h| {
        *h == required
            || (wildcard && *h == "*")
            || (inheritance
                && required.len() > h.len() + 1
                && required.starts_with(h)
                && required.as_bytes()[h.len()] == b':')
    })
}

/// The time the fixture's clock starts at.
pub fn base_time() -> OffsetDateTime {
    // 2026-01-01T00:00:00Z
    OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("a valid timestamp")
}

/// What the store says about a fixture token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Stored, not revoked; expires at `expires_at`.
    Stored,
    /// Stored and revoked.
    Revoked,
    /// Well formed, never stored.
    Unknown,
}

/// One token of the fixture.
#[derive(Debug)]
pub struct Entry {
    /// The plaintext.
    pub token: String,
    /// The id of its record.
    pub id: TokenId,
    /// Its scopes.
    pub scopes: &'static [&'static str],
    /// Whether it is stored, revoked or unknown.
    pub state: State,
    /// When it expires.
    pub expires_at: OffsetDateTime,
}

impl Entry {
    /// Whether a request at `now` with this token may pass, scopes aside.
    pub fn active_at(&self, now: OffsetDateTime) -> bool {
        self.state == State::Stored && now < self.expires_at
    }
}

/// The fixture: a few tokens in every state the layer tells apart.
pub fn entries() -> Vec<Entry> {
    let base = base_time();
    let specs: [(&[&str], State, i64); 7] = [
        (&["orders:read"], State::Stored, 1000),
        (&["orders:create", "orders:read"], State::Stored, 10),
        (
            &["admin", "orders:create", "orders:read"],
            State::Revoked,
            1000,
        ),
        (
            &["admin", "orders:create", "orders:read"],
            State::Stored,
            -1,
        ),
        (&["*", "orders"], State::Stored, 1000),
        (&["admin", "orders:read"], State::Unknown, 1000),
        (&["orders:read:status"], State::Stored, 3000),
    ];
    specs
        .into_iter()
        .enumerate()
        .map(|(i, (scopes, state, expires_in))| {
            let seed = [i as u8 * 17 + 3, i as u8 * 5 + 11, 29, i as u8];
            let mut id = [0u8; 16];
            id[0] = i as u8 + 1;
            Entry {
                token: token_from_seed("pat_", &seed),
                id: TokenId::from_bytes(id),
                scopes,
                state,
                expires_at: base + Duration::seconds(expires_in),
            }
        })
        .collect()
}

/// A `MemoryStore` holding the fixture's stored and revoked tokens.
///
/// # Panics
///
/// When a fixture token fails the crate's own parser (the oracle and the crate disagree).
pub fn store(entries: &[Entry]) -> Arc<MemoryStore<i64>> {
    let store = MemoryStore::<i64>::new();
    let format = TokenFormat::default();
    let base = base_time();
    for (i, e) in entries.iter().enumerate() {
        let hash = format
            .parse(&e.token)
            .expect("the oracle's token must pass the crate's parser");
        if e.state == State::Unknown {
            continue;
        }
        let record = TokenRecord {
            id: e.id,
            user_id: i as i64,
            client_id: None,
            name: format!("fixture {i}"),
            scopes: Scopes::try_from_iter(e.scopes).expect("valid fixture scopes"),
            token_hash: hash,
            revoked: e.state == State::Revoked,
            created_at: base - Duration::days(1),
            updated_at: base - Duration::days(1),
            expires_at: e.expires_at,
            // Every other token was used recently, so both touch paths run.
            last_used_at: (i % 2 == 0).then_some(base),
        };
        store
            .insert(record)
            .now_or_never()
            .expect("MemoryStore answers at once")
            .expect("fixture insert");
    }
    Arc::new(store)
}

/// What the innermost service saw of a request it was handed.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The token the layer resolved.
    pub token: Option<AccessToken<i64>>,
    /// The request's `Authorization` header was marked sensitive.
    pub auth_sensitive: Vec<bool>,
}

/// The innermost service: records what it saw and answers 200 with `x-inner: 1`.
#[derive(Clone, Debug, Default)]
pub struct Inner {
    /// What the last call saw.
    pub seen: Arc<Mutex<Option<Seen>>>,
}

impl<B> Service<Request<B>> for Inner {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let seen = Seen {
            token: req.extensions().get::<AccessToken<i64>>().cloned(),
            auth_sensitive: req
                .headers()
                .get_all(http::header::AUTHORIZATION)
                .iter()
                .map(|v| v.is_sensitive())
                .collect(),
        };
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(seen);
        let mut res = Response::new(String::new());
        res.headers_mut()
            .insert("x-inner", http::HeaderValue::from_static("1"));
        std::future::ready(Ok(res))
    }
}

/// Drives one request through a service whose store answers synchronously.
///
/// # Panics
///
/// When the service is not ready at once or its future does not complete at once: with
/// `MemoryStore` (`find_now`) nothing may wait.
pub fn drive<S, B>(svc: &mut S, req: Request<B>) -> Response<String>
where
    S: Service<Request<B>, Response = Response<String>, Error = Infallible>,
{
    let ready = futures_util::future::poll_fn(|cx| svc.poll_ready(cx))
        .now_or_never()
        .expect("the stack must be ready at once");
    let Ok(()) = ready;
    let fut = svc.call(req);
    let Ok(res) = complete_now(fut);
    res
}

fn complete_now<F: Future>(fut: F) -> F::Output {
    fut.now_or_never()
        .expect("over MemoryStore the stack must answer without waiting")
}

/// How the stack answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The inner service answered.
    Pass,
    /// An HTTP refusal with this status.
    Http(u16),
    /// A trailers-only gRPC refusal with this `grpc-status`.
    Grpc(u16),
}

impl Outcome {
    /// The gRPC code of an HTTP status, per the rejection table.
    pub fn grpc_of(status: u16) -> u16 {
        match status {
            400 | 401 => 16,
            403 => 7,
            503 => 14,
            500 => 13,
            other => panic!("no gRPC twin for HTTP {other}"),
        }
    }

    /// This outcome as the request's protocol would see a refusal of HTTP `status`.
    pub fn refusal(status: u16, grpc: bool) -> Self {
        if grpc {
            Self::Grpc(Self::grpc_of(status))
        } else {
            Self::Http(status)
        }
    }
}

/// Checks that a response is one the rejection table allows for a request of this kind,
/// and says which it is.
///
/// # Panics
///
/// When it is not.
pub fn classify(res: &Response<String>, grpc: bool) -> Outcome {
    let headers = res.headers();
    let status = res.status().as_u16();
    if headers.get("x-inner").is_some() {
        assert_eq!(status, 200, "the inner service answers 200");
        return Outcome::Pass;
    }
    assert!(
        res.body().is_empty(),
        "a refusal has the default (empty) body"
    );
    if let Some(code) = headers.get("grpc-status") {
        assert!(grpc, "a gRPC answer to a request that is not gRPC: {res:?}");
        assert_eq!(status, 200, "gRPC refusals are trailers-only 200s");
        assert_eq!(
            headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"application/grpc"[..])
        );
        assert!(headers.get(WWW_AUTHENTICATE).is_none());
        let code: u16 = code
            .to_str()
            .ok()
            .and_then(|c| c.parse().ok())
            .expect("a numeric grpc-status");
        assert!(
            matches!(code, 3 | 7 | 13 | 14 | 16),
            "grpc-status {code} is not in the table"
        );
        return Outcome::Grpc(code);
    }
    assert!(!grpc, "an HTTP refusal to a gRPC request: {res:?}");
    let challenge = headers
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("an ASCII challenge").to_owned());
    match status {
        400 | 401 | 403 => {
            let c = challenge.expect("400, 401 and 403 carry a challenge");
            assert!(c.starts_with("Bearer realm=\"api\""), "challenge {c}");
            match status {
                400 => assert!(c.contains("error=\"invalid_request\""), "{c}"),
                403 => assert!(c.contains("error=\"insufficient_scope\", scope=\""), "{c}"),
                _ => assert!(
                    !c.contains("error=") || c.contains("error=\"invalid_token\""),
                    "{c}"
                ),
            }
        }
        500 | 503 => assert!(challenge.is_none(), "{status} carries no challenge"),
        other => panic!("status {other} is not in the rejection table"),
    }
    Outcome::Http(status)
}

/// The `Authorization` values of a request, as bytes.
pub fn authorization_values(headers: &HeaderMap) -> Vec<Vec<u8>> {
    headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect()
}

/// The token of a single `Bearer` value, the way RFC 6750 writes it: the scheme
/// (any case), one or more spaces, the token. `None` when the value is not of that shape.
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    if value.len() < 7 || !value[..6].eq_ignore_ascii_case(b"bearer") || value[6] != b' ' {
        return None;
    }
    let rest = &value[6..];
    let start = rest.iter().position(|&b| b != b' ')?;
    Some(&rest[start..])
}

/// Whether an `Authorization` value uses the `Bearer` scheme (the word before the first
/// space, in any case): a value of another scheme carries no bearer token.
pub fn is_bearer_scheme(value: &[u8]) -> bool {
    let end = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    value[..end].eq_ignore_ascii_case(b"bearer")
}

/// The value of the first `access_token` query parameter.
pub fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|p| p.strip_prefix("access_token="))
}

/// The hash of `s`, computed without the crate.
pub fn sha256(s: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(s).into()
}

/// Whether `hash` is the SHA-256 of `s`.
pub fn hash_is_of(hash: &TokenHash, s: &str) -> bool {
    *hash.as_bytes() == sha256(s.as_bytes())
}
