//! Shared pieces of the tower-pat fuzz targets: independent oracles for the token and
//! scope-name grammars, the credential rules, the rejection table and scope requirements;
//! a fixed set of tokens in a `MemoryStore`; a synchronous driver for the whole stack; and
//! the check that an answer is exactly the one the oracle expects.
//!
//! The oracles are written from the specification (`docs/DESIGN.md` in this repository,
//! RFC 6749, RFC 6750, and the rustdoc where `docs/DESIGN.md` leaves a detail to it), not
//! from the crate's code, so a target that compares the two finds a disagreement.

use std::{
    convert::Infallible,
    future::Future,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use futures_util::FutureExt;
use http::{
    HeaderMap, Request, Response,
    header::{CONTENT_TYPE, WWW_AUTHENTICATE},
};
use time::{Duration, OffsetDateTime};
use tower_pat::{
    AccessToken, ManageTokens, MemoryStore, Requirement,
    record::{TokenId, TokenRecord},
    reject::Rejection,
    scope::{ScopeError, Scopes},
    token::{TokenFormat, TokenHash},
};
use tower_service::Service;

// ---------------------------------------------------------------------------------------
// Tokens (docs/DESIGN.md, "Tokens").

/// The base62 alphabet of the token format, in digit order.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Random characters in a token.
pub const RANDOM_LEN: usize = 33;
/// Checksum characters in a token.
pub const CHECKSUM_LEN: usize = 6;
/// The prefix of the default format.
pub const PREFIX: &str = "pat_";

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

// ---------------------------------------------------------------------------------------
// Scope names (docs/DESIGN.md, "Scopes").

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`. The grammar alone: a
/// scope *name* obeys [`is_scope_name`].
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| matches!(c, '!' | '#'..='[' | ']'..='~'))
}

/// What `Scope::new` must answer for `s`, by `docs/DESIGN.md`: a name is an RFC 6749
/// `scope-token` (else `Invalid`); `*` is the wildcard and only that, so a name is `*`
/// alone or holds no `*` (else `MisplacedWildcard`); `:` separates levels and no level is
/// empty (else `EmptyLevel`). Checked in that order, so the first rule broken names the
/// error.
pub fn scope_name_verdict(s: &str) -> Result<(), ScopeError> {
    if !is_scope_token(s) {
        return Err(ScopeError::Invalid(s.to_owned()));
    }
    if s != "*" && s.contains('*') {
        return Err(ScopeError::MisplacedWildcard(s.to_owned()));
    }
    if s.starts_with(':') || s.ends_with(':') || s.contains("::") {
        return Err(ScopeError::EmptyLevel(s.to_owned()));
    }
    Ok(())
}

/// Whether `s` is a valid scope name (see [`scope_name_verdict`]).
pub fn is_scope_name(s: &str) -> bool {
    scope_name_verdict(s).is_ok()
}

/// Whether a token holding `held` satisfies the requirement `required`, by the rules of
/// `docs/DESIGN.md`: exact and case-sensitive; a held `*` grants everything when
/// `wildcard` is on; a held `a` grants `a:…` when `inheritance` is on.
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

// ---------------------------------------------------------------------------------------
// Requirements (docs/DESIGN.md, "Requirements"; the gRPC message of "Rejections").

/// A scope set as `Scopes` holds it: sorted, without duplicates.
pub fn scope_set<'a>(names: &[&'a str]) -> Vec<&'a str> {
    let mut v = names.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// What a route asks of a token's scopes: all of a set, any of a set, or every scope of
/// at least one of several sets.
#[derive(Clone, Debug)]
pub enum Req<'a> {
    /// Every one.
    All(Vec<&'a str>),
    /// At least one.
    Any(Vec<&'a str>),
    /// Every scope of at least one of the sets (two or more sets, distinct as sets).
    OneOf(Vec<Vec<&'a str>>),
}

impl Req<'_> {
    /// Whether a token holding `held` meets it.
    pub fn met(&self, held: &[&str], wildcard: bool, inheritance: bool) -> bool {
        let g = |r: &&str| oracle_grants(held, r, wildcard, inheritance);
        match self {
            Self::All(set) => set.iter().all(g),
            Self::Any(set) => set.iter().any(g),
            Self::OneOf(sets) => sets.iter().any(|set| set.iter().all(g)),
        }
    }

    /// How the gRPC `PERMISSION_DENIED` message names it: `a and b`, `a or b`,
    /// `(a and b) or c`, each set in `Scopes` order.
    pub fn display(&self) -> String {
        match self {
            Self::All(set) => scope_set(set).join(" and "),
            Self::Any(set) => scope_set(set).join(" or "),
            Self::OneOf(sets) => sets
                .iter()
                .map(|set| {
                    let set = scope_set(set);
                    if set.len() > 1 {
                        format!("({})", set.join(" and "))
                    } else {
                        set.join(" and ")
                    }
                })
                .collect::<Vec<_>>()
                .join(" or "),
        }
    }

    /// What the 403 challenge's `scope=` names: the set of an `all` or an `any`, and the
    /// first set of a one-of, space-delimited.
    pub fn challenge_scopes(&self) -> String {
        match self {
            Self::All(set) | Self::Any(set) => scope_set(set).join(" "),
            Self::OneOf(sets) => scope_set(&sets[0]).join(" "),
        }
    }

    /// Every scope it names.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Self::All(set) | Self::Any(set) => set.clone(),
            Self::OneOf(sets) => sets.iter().flatten().copied().collect(),
        }
    }

    /// The crate's `Requirement` for it; a one-of is built with `Requirement::one_of`, or
    /// with `Requirement::or` when `via_or`.
    ///
    /// # Panics
    ///
    /// When the crate refuses a valid requirement.
    pub fn build(&self, via_or: bool) -> Requirement {
        match self {
            Self::All(set) => Requirement::all(set),
            Self::Any(set) => Requirement::any(set),
            Self::OneOf(sets) if via_or => sets
                .iter()
                .map(Requirement::all)
                .reduce(Requirement::or)
                .expect("a one-of has sets"),
            Self::OneOf(sets) => Requirement::one_of(sets),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Credentials (docs/DESIGN.md, "One request", "Rejections", "Query tokens"; RFC 6750).

/// The default bound on an `Authorization` value (4 KiB; a longer one is
/// `invalid_request`).
pub const MAX_HEADER_LEN: usize = 4096;

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

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_b64token(t: &[u8]) -> bool {
    let body_len = t.len() - t.iter().rev().take_while(|&&b| b == b'=').count();
    body_len > 0
        && t[..body_len]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// The value of the first `access_token` query parameter.
pub fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|p| p.strip_prefix("access_token="))
}

/// What a request presents, as `PatLayer` must read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    /// No credentials: no `Authorization` header or one of another scheme, and no query
    /// token that is looked at.
    Nothing,
    /// Refused before any store is asked, with this rejection code.
    Refused(&'static str),
    /// A well-formed token of the default format.
    Token(&'a [u8]),
}

/// The offline verdict on presented credentials: a token of the format; else a
/// `b64token` that is not one is `malformed_token` (RFC 6750 `invalid_token`), and
/// anything else is bad syntax, `invalid_request`.
pub fn judge(candidate: &[u8]) -> Presented<'_> {
    if std::str::from_utf8(candidate).is_ok_and(|s| is_valid_token(PREFIX, s)) {
        Presented::Token(candidate)
    } else if is_b64token(candidate) {
        Presented::Refused("malformed_token")
    } else {
        Presented::Refused("invalid_request")
    }
}

/// What `PatLayer` must find in a request with these `Authorization` values and query
/// string: several values, a value over the bound, `Bearer` without credentials, or (with
/// query tokens on) a bearer header beside a query token are `invalid_request`. With
/// query tokens off the query string is not looked at.
pub fn presented<'a>(
    auth: &'a [Vec<u8>],
    query: Option<&'a str>,
    allow_query: bool,
) -> Presented<'a> {
    if auth.len() > 1 {
        return Presented::Refused("invalid_request");
    }
    let in_query = if allow_query {
        query_token(query)
    } else {
        None
    };
    match auth.first() {
        Some(v) if v.len() > MAX_HEADER_LEN => Presented::Refused("invalid_request"),
        Some(v) if is_bearer_scheme(v) => match bearer_token(v) {
            None => Presented::Refused("invalid_request"),
            Some(_) if in_query.is_some() => Presented::Refused("invalid_request"),
            Some(token) => judge(token),
        },
        _ => match in_query {
            Some(token) => judge(token.as_bytes()),
            None => Presented::Nothing,
        },
    }
}

// ---------------------------------------------------------------------------------------
// The rejection table (docs/DESIGN.md, "Rejections").

/// Every rejection code, with its HTTP status and gRPC status.
pub const TABLE: [(&str, u16, u16); 9] = [
    ("missing_credentials", 401, 16),
    ("malformed_token", 401, 16),
    ("unknown_token", 401, 16),
    ("revoked_token", 401, 16),
    ("expired_token", 401, 16),
    ("invalid_request", 400, 16),
    ("insufficient_scope", 403, 7),
    ("store_unavailable", 503, 14),
    ("missing_layer", 500, 13),
];

/// The HTTP and gRPC statuses of a rejection code.
///
/// # Panics
///
/// For a code that is not in the table.
pub fn statuses(code: &str) -> (u16, u16) {
    TABLE
        .iter()
        .find(|(c, ..)| *c == code)
        .map(|&(_, http, grpc)| (http, grpc))
        .unwrap_or_else(|| panic!("{code:?} is not in the rejection table"))
}

/// The gRPC message of `invalid_request` (the brief of the reshaped crate, matching
/// `docs/DESIGN.md`'s "malformed, repeated" row).
pub const INVALID_REQUEST_MESSAGE: &str = "malformed or repeated credentials";
/// The gRPC message of `missing_layer`: no wiring hint reaches a client.
pub const MISSING_LAYER_MESSAGE: &str = "internal error";

// ---------------------------------------------------------------------------------------
// The fixture.

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
    /// Its stored `last_used_at`.
    pub last_used_at: Option<OffsetDateTime>,
}

impl Entry {
    /// Whether a request at `now` with this token may pass, scopes aside: stored, not
    /// revoked, and `now < expires_at` (the boundary second is already expired).
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
                token: token_from_seed(PREFIX, &seed),
                id: TokenId::from_bytes(id),
                scopes,
                state,
                expires_at: base + Duration::seconds(expires_in),
                // Every other token was used at the base time, so a use at a later time
                // is or is not due depending on the interval.
                last_used_at: (i % 2 == 0).then_some(base),
            }
        })
        .collect()
}

/// Why the layer must refuse a well-formed token at `now`, or the fixture entry it
/// admits: unknown (never stored, or not in the fixture), revoked, expired. A token both
/// revoked and expired may be refused as either (`docs/DESIGN.md` orders neither first).
pub fn admit<'e>(
    fixture: &'e [Entry],
    token: &[u8],
    now: OffsetDateTime,
) -> Result<&'e Entry, (&'static str, Option<&'static str>)> {
    let Some(e) = fixture.iter().find(|e| e.token.as_bytes() == token) else {
        return Err(("unknown_token", None));
    };
    let expired = now >= e.expires_at;
    match e.state {
        State::Unknown => Err(("unknown_token", None)),
        State::Revoked if expired => Err(("revoked_token", Some("expired_token"))),
        State::Revoked => Err(("revoked_token", None)),
        State::Stored if expired => Err(("expired_token", None)),
        State::Stored => Ok(e),
    }
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
        let mut record = TokenRecord::new(
            e.id,
            i as i64,
            hash,
            base - Duration::days(1),
            e.expires_at,
        )
        .with_name(format!("fixture {i}"))
        .with_scopes(Scopes::try_from_iter(e.scopes).expect("valid fixture scopes"));
        record.revoked = e.state == State::Revoked;
        record.last_used_at = e.last_used_at;
        store
            .insert(record)
            .now_or_never()
            .expect("MemoryStore answers at once")
            .expect("fixture insert");
    }
    Arc::new(store)
}

/// The stored `last_used_at` of a record.
///
/// # Panics
///
/// When the record is gone, or `MemoryStore` does not answer at once.
pub fn stored_last_used(store: &MemoryStore<i64>, id: TokenId) -> Option<OffsetDateTime> {
    store
        .get(id)
        .now_or_never()
        .expect("MemoryStore answers at once")
        .expect("MemoryStore never fails")
        .expect("fixture records are never deleted")
        .last_used_at
}

// ---------------------------------------------------------------------------------------
// Driving the stack.

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

impl Inner {
    /// What the last call saw, if the inner service ran.
    pub fn last(&self) -> Option<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The body hook the targets install with `PatLayer::rejection_body`: the kind's code,
/// its message and the requirement, one per line, so the answer shows which refusal the
/// crate chose and that it went through the hook.
pub fn hook_body(r: &Rejection<'_>) -> Response<String> {
    let requirement = r.requirement().map(|q| q.to_string()).unwrap_or_default();
    Response::new(format!(
        "{}\n{}\n{}",
        r.kind().code(),
        r.kind().message(),
        requirement
    ))
}

/// Drives one request through a service whose store answers synchronously.
///
/// # Panics
///
/// When the service is not ready at once or its future does not complete at once: with
/// `MemoryStore` (`find_ready`) nothing may wait, and uses are recorded in memory, never
/// awaited on the request path.
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

/// Whether a request is gRPC: `content-type: application/grpc*`.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The `Authorization` values of a request, as bytes.
pub fn authorization_values(headers: &HeaderMap) -> Vec<Vec<u8>> {
    headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect()
}

/// The answer the oracle expects.
#[derive(Clone, Debug)]
pub enum Expect {
    /// The inner service answers.
    Pass,
    /// A refusal.
    Refuse {
        /// The rejection code.
        code: &'static str,
        /// Another code that is as right (a revoked token that has expired too).
        or: Option<&'static str>,
        /// For `insufficient_scope`: the requirement's display and challenge scopes, or
        /// `None` for a path no requirement is mapped to.
        required: Option<(String, String)>,
    },
}

impl Expect {
    /// A refusal with one possible code and no requirement.
    pub fn refuse(code: &'static str) -> Self {
        Self::Refuse {
            code,
            or: None,
            required: None,
        }
    }

    /// `insufficient_scope` for `req` (or for an unmapped path, without one).
    pub fn insufficient(req: Option<&Req<'_>>) -> Self {
        Self::Refuse {
            code: "insufficient_scope",
            or: None,
            required: req.map(|r| (r.display(), r.challenge_scopes())),
        }
    }
}

/// Undoes gRPC's percent-encoding of `grpc-message`.
pub fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if s[i] == b'%'
            && let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Checks that `res` is exactly the answer `want` for a request of this kind (gRPC or
/// not), through a layer with the body hook [`hook_body`] (`hooked`) or without one, by
/// the rejection table of `docs/DESIGN.md` (realm `"api"`). Returns the rejection code the
/// crate chose, if it refused.
///
/// # Panics
///
/// When it is not.
pub fn check_answer(
    res: &Response<String>,
    grpc: bool,
    hooked: bool,
    want: &Expect,
) -> Option<&'static str> {
    let headers = res.headers();
    let status = res.status().as_u16();
    let (code, or, required) = match want {
        Expect::Pass => {
            assert!(
                headers.get("x-inner").is_some(),
                "expected the inner service to answer: {res:?}"
            );
            assert_eq!(status, 200, "the inner service answers 200");
            return None;
        }
        Expect::Refuse { code, or, required } => (*code, *or, required.as_ref()),
    };
    assert!(
        headers.get("x-inner").is_none(),
        "expected {code}, the inner service answered: {res:?}"
    );
    let codes = [Some(code), or];
    if grpc {
        // Trailers-only: 200, `content-type: application/grpc`, no challenge, no body.
        assert_eq!(status, 200, "gRPC refusals are trailers-only 200s: {res:?}");
        assert_eq!(
            headers.get(CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(&b"application/grpc"[..])
        );
        assert!(headers.get(WWW_AUTHENTICATE).is_none(), "{res:?}");
        assert!(res.body().is_empty(), "a gRPC refusal has no body: {res:?}");
        let got: u16 = headers
            .get("grpc-status")
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("a numeric grpc-status: {res:?}"));
        let message = headers
            .get("grpc-message")
            .map(|m| String::from_utf8(percent_decode(m.as_bytes())).expect("UTF-8 message"))
            .unwrap_or_else(|| panic!("a grpc-message: {res:?}"));
        let chosen = codes
            .into_iter()
            .flatten()
            .find(|c| statuses(c).1 == got)
            .unwrap_or_else(|| panic!("expected {codes:?}, got grpc-status {got} ({message})"));
        match chosen {
            "invalid_request" => assert_eq!(message, INVALID_REQUEST_MESSAGE),
            "missing_layer" => assert_eq!(message, MISSING_LAYER_MESSAGE),
            "insufficient_scope" => match required {
                Some((display, _)) => {
                    assert_eq!(message, format!("insufficient scope: requires {display}"))
                }
                None => assert!(
                    message.starts_with("insufficient scope") && !message.contains("requires"),
                    "an unmapped path names no requirement: {message:?}"
                ),
            },
            _ => assert!(!message.is_empty()),
        }
        // gRPC answers cannot tell the 401 kinds apart: say the first that fits.
        return Some(chosen);
    }

    assert!(headers.get("grpc-status").is_none(), "{res:?}");
    let chosen = codes
        .into_iter()
        .flatten()
        .find(|c| statuses(c).0 == status)
        .unwrap_or_else(|| panic!("expected {codes:?}, got HTTP {status}: {res:?}"));
    let challenge = headers
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("an ASCII challenge").to_owned());
    let chosen = if hooked && chosen != "missing_layer" {
        // The hook shaped the body (a scope check behind the layer answers through it too),
        // and names the kind the crate chose.
        let mut lines = res.body().split('\n');
        let body_code = lines.next().unwrap_or_default();
        let message = lines.next().unwrap_or_default();
        let requirement = lines.next().unwrap_or_default();
        let chosen = codes
            .into_iter()
            .flatten()
            .find(|c| *c == body_code)
            .unwrap_or_else(|| panic!("expected {codes:?}, the hook saw {:?}", res.body()));
        assert!(!message.is_empty());
        if chosen == "invalid_request" {
            assert_eq!(message, INVALID_REQUEST_MESSAGE);
        }
        if chosen == "insufficient_scope" {
            let want = required.map(|(display, _)| display.as_str()).unwrap_or("");
            assert_eq!(requirement, want, "the hook's requirement");
        }
        chosen
    } else {
        assert!(
            res.body().is_empty(),
            "without a hook (or with no layer) a refusal has an empty body: {res:?}"
        );
        chosen
    };
    let realm = "Bearer realm=\"api\"";
    match chosen {
        "missing_credentials" => assert_eq!(challenge.as_deref(), Some(realm)),
        "invalid_request" => assert_eq!(
            challenge.as_deref(),
            Some(&*format!("{realm}, error=\"invalid_request\""))
        ),
        "malformed_token" | "unknown_token" | "revoked_token" | "expired_token" => {
            let c = challenge.expect("invalid_token carries a challenge");
            let rest = c
                .strip_prefix(&format!(
                    "{realm}, error=\"invalid_token\", error_description=\""
                ))
                .unwrap_or_else(|| panic!("challenge {c}"));
            assert!(
                rest.len() > 1 && rest.ends_with('"') && !rest[..rest.len() - 1].contains('"'),
                "challenge {c}"
            );
        }
        "insufficient_scope" => {
            let mut want = format!("{realm}, error=\"insufficient_scope\"");
            if let Some((_, scopes)) = required {
                want.push_str(&format!(", scope=\"{scopes}\""));
            }
            assert_eq!(challenge.as_deref(), Some(&*want));
        }
        "store_unavailable" | "missing_layer" => {
            assert!(
                challenge.is_none(),
                "{chosen} carries no challenge: {res:?}"
            )
        }
        other => panic!("{other} is not in the rejection table"),
    }
    Some(chosen)
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
