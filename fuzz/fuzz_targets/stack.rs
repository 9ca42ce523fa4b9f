//! Arbitrary request parts (method, path, query, headers, gRPC or not) into `PatLayer`
//! over a `MemoryStore` holding issued, revoked and expired tokens, with a `ManualClock`
//! and arbitrary layer settings (matching, optional, query tokens, body hook, last-used
//! interval), behind it a `RequireScopesLayer` (all / any / one of several sets), a
//! `ScopeMapLayer` (by path), or no scope check; or a scope check with no `PatLayer` in
//! front.
//!
//! Invariants, each from `docs/DESIGN.md`: no panic; every answer is exactly the one the
//! oracle derives for the request (which refusal, its challenge, gRPC message and hook
//! body; or a pass with the right token, the header marked sensitive); the query string
//! is not looked at unless query tokens are on; the request writes nothing to the store,
//! and the next `PatLayer::flush` writes exactly the use of an admitted token that was
//! due, once.
#![no_main]

use arbitrary::Arbitrary;
use futures_util::FutureExt;
use http::{HeaderName, HeaderValue, Method, Request, Uri, header::AUTHORIZATION};
use libfuzzer_sys::fuzz_target;
use time::Duration;
use tower_layer::Layer;
use tower_pat::{
    PatLayer, RequireScopesLayer,
    clock::ManualClock,
    require::{ScopeMapLayer, Unmapped},
    scope::ScopeMatching,
};
use tower_pat_fuzz::{
    Entry, Expect, Inner, Presented, Req, State, admit, authorization_values, base_time,
    check_answer, drive, entries, hook_body, is_grpc, oracle_grants, presented, store,
    stored_last_used,
};

/// The requirements a route may have.
fn requirement(i: u8) -> Req<'static> {
    match i % 10 {
        0 => Req::All(vec!["orders:read"]),
        1 => Req::All(vec!["orders:read", "orders:create"]),
        2 => Req::Any(vec!["orders:create", "admin"]),
        3 => Req::All(vec!["admin"]),
        4 => Req::Any(vec!["orders:read:status"]),
        5 => Req::All(vec!["orders:read:status", "orders:create"]),
        6 => Req::All(vec!["*"]),
        7 => Req::OneOf(vec![vec!["admin"], vec!["orders:read", "orders:create"]]),
        8 => Req::OneOf(vec![
            vec!["orders:create", "orders:read"],
            vec!["orders:read:status"],
        ]),
        _ => Req::Any(vec!["orders:read", "admin"]),
    }
}

/// The scope map: HTTP paths (exact, or a prefix ending in `/*`) to a requirement (an
/// index for [`requirement`]) or to "authenticated only" (`None`).
const MAP: &[(&str, Option<u8>)] = &[
    ("/orders", Some(0)),
    ("/orders/new", Some(1)),
    ("/orders/*", Some(9)),
    ("/admin/*", Some(7)),
    ("/admin/audit/*", None),
    ("/status", None),
    ("/reports/*", Some(8)),
];

/// What the map says about a request path, by `docs/DESIGN.md`: an exact entry wins over
/// prefixes, a longer prefix over a shorter one; paths compared as sent. `None` when
/// unmapped; `Some(None)` for "authenticated only".
fn map_lookup(path: &str) -> Option<Option<u8>> {
    if let Some((_, r)) = MAP.iter().find(|(p, _)| *p == path) {
        return Some(*r);
    }
    MAP.iter()
        .filter_map(|(p, r)| Some((p.strip_suffix('*')?, r)))
        .filter(|(prefix, _)| path.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, r)| *r)
}

/// Paths worth hitting: mapped, just beside a mapping, odd spellings.
const PATHS: &[&str] = &[
    "/orders",
    "/orders/",
    "/orders/new",
    "/orders/new/",
    "/orders/7/items",
    "/ordersx",
    "/admin",
    "/admin/",
    "/admin/users",
    "/admin/audit",
    "/admin/audit/",
    "/admin/audit/log",
    "/status",
    "/status/",
    "/reports/q1",
    "/Orders",
    "/orders%2Fnew",
    "/orders/./new",
    "//orders",
    "/",
];

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: Meth<'a>,
    path: PathIn<'a>,
    query: Option<Query<'a>>,
    auth: Vec<Auth<'a>>,
    headers: Vec<(&'a [u8], &'a [u8])>,
    content_type: ContentType<'a>,
    /// Seconds past the fixture's base time (tokens expire at −1 s, +10 s, +1000 s,
    /// +3000 s).
    clock: u16,
    guard: Guard,
    wildcard: bool,
    inheritance: bool,
    optional: bool,
    allow_query: bool,
    hook: bool,
    interval: Interval,
}

#[derive(Arbitrary, Debug)]
enum Meth<'a> {
    Get,
    Post,
    Options,
    Other(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
enum PathIn<'a> {
    Known(u8),
    KnownPlus(u8, &'a [u8]),
    Raw(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
enum Query<'a> {
    Raw(&'a [u8]),
    /// `<before>access_token=<token><after>`.
    Token {
        before: &'a [u8],
        token: u8,
        after: &'a [u8],
    },
}

#[derive(Arbitrary, Debug)]
enum Auth<'a> {
    Token(u8),
    Mutated { which: u8, at: u8, byte: u8 },
    Raw(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
enum ContentType<'a> {
    None,
    Grpc,
    GrpcProto,
    GrpcWeb,
    Json,
    Raw(&'a [u8]),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Guard {
    /// `PatLayer` alone.
    None,
    /// `PatLayer` + `RequireScopesLayer::new(requirement)`.
    Require { which: u8, via_or: bool },
    /// `PatLayer` + `ScopeMapLayer::http()` of [`MAP`].
    Map { unmapped_authenticated: bool },
    /// `RequireScopesLayer` with no `PatLayer` in front: a wiring error.
    NoPatLayer { which: u8 },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Interval {
    Default,
    Off,
    Seconds(u16),
}

impl Interval {
    fn get(self) -> Option<Duration> {
        match self {
            // The documented default: one minute.
            Self::Default => Some(Duration::minutes(1)),
            Self::Off => None,
            Self::Seconds(s) => Some(Duration::seconds(i64::from(s % 4000))),
        }
    }
}

fn method(m: &Meth<'_>) -> Method {
    match m {
        Meth::Get => Method::GET,
        Meth::Post => Method::POST,
        Meth::Options => Method::OPTIONS,
        Meth::Other(b) => Method::from_bytes(b).unwrap_or(Method::PATCH),
    }
}

fn path_bytes(p: &PathIn<'_>) -> Vec<u8> {
    match p {
        PathIn::Known(i) => PATHS[usize::from(*i) % PATHS.len()].as_bytes().to_vec(),
        PathIn::KnownPlus(i, more) => {
            [PATHS[usize::from(*i) % PATHS.len()].as_bytes(), more].concat()
        }
        PathIn::Raw(b) => [&b"/"[..], b].concat(),
    }
}

fn uri(path: &[u8], query: Option<&[u8]>) -> Uri {
    let mut s = path.to_vec();
    if let Some(q) = query {
        s.push(b'?');
        s.extend_from_slice(q);
    }
    Uri::try_from(s).unwrap_or_else(|_| {
        // Keep the query when only the path was unusable.
        let q = query.map(|q| [b"/?", q].concat());
        q.and_then(|q| Uri::try_from(q).ok())
            .unwrap_or_else(|| Uri::from_static("/"))
    })
}

fn token_of(fixture: &[Entry], i: u8) -> &Entry {
    &fixture[usize::from(i) % fixture.len()]
}

fuzz_target!(|input: Input<'_>| {
    let fixture = entries();
    let now = base_time() + Duration::seconds(i64::from(input.clock % 4000));

    // The request.
    let query: Option<Vec<u8>> = input.query.as_ref().map(|q| match q {
        Query::Raw(b) => b.to_vec(),
        Query::Token {
            before,
            token,
            after,
        } => [
            before,
            &b"access_token="[..],
            token_of(&fixture, *token).token.as_bytes(),
            after,
        ]
        .concat(),
    });
    let mut req = Request::builder()
        .method(method(&input.method))
        .uri(uri(&path_bytes(&input.path), query.as_deref()));
    for a in &input.auth {
        let bytes = match a {
            Auth::Token(i) => format!("Bearer {}", token_of(&fixture, *i).token).into_bytes(),
            Auth::Mutated { which, at, byte } => {
                let mut v = format!("Bearer {}", token_of(&fixture, *which).token).into_bytes();
                let at = usize::from(*at) % v.len();
                v[at] = *byte;
                v
            }
            Auth::Raw(b) => b.to_vec(),
        };
        if let Ok(v) = HeaderValue::from_bytes(&bytes) {
            req = req.header(AUTHORIZATION, v);
        }
    }
    for (name, value) in &input.headers {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            req = req.header(n, v);
        }
    }
    let content_type: Option<&[u8]> = match &input.content_type {
        ContentType::None => None,
        ContentType::Grpc => Some(b"application/grpc"),
        ContentType::GrpcProto => Some(b"application/grpc+proto"),
        ContentType::GrpcWeb => Some(b"application/grpc-web"),
        ContentType::Json => Some(b"application/json"),
        ContentType::Raw(b) => Some(b),
    };
    if let Some(ct) = content_type.and_then(|b| HeaderValue::from_bytes(b).ok()) {
        req = req.header(http::header::CONTENT_TYPE, ct);
    }
    let Ok(req) = req.body(Vec::<u8>::new()) else {
        return;
    };
    // What the oracle reads, taken from the request as built.
    let grpc = is_grpc(req.headers());
    let auth_values = authorization_values(req.headers());
    let raw_query = req.uri().query().map(str::to_owned);
    let path = req.uri().path().to_owned();

    // The stack.
    let store = store(&fixture);
    let matching = ScopeMatching::EXACT
        .with_wildcard(input.wildcard)
        .with_inheritance(input.inheritance);
    let mut layer = PatLayer::from_shared(store.clone())
        .clock(ManualClock::new(now))
        .matching(matching)
        .optional(input.optional)
        .allow_query_token(input.allow_query)
        .last_used_interval(input.interval.get());
    if input.hook {
        layer = layer.rejection_body(hook_body);
    }
    let inner = Inner::default();
    let route_of = |r: Option<u8>| r.map(requirement);
    // The rule the route applies to an admitted token: `Some(req)`, or `None` for "any
    // token"; `Err(())` for an unmapped path that is denied.
    let (res, rule): (_, Result<Option<Req<'static>>, ()>) = match input.guard {
        Guard::None => (drive(&mut layer.layer(inner.clone()), req), Ok(None)),
        Guard::Require { which, via_or } => {
            let r = requirement(which);
            let guard = RequireScopesLayer::new(r.build(via_or));
            let mut svc = layer.layer(guard.layer(inner.clone()));
            (drive(&mut svc, req), Ok(Some(r)))
        }
        Guard::Map {
            unmapped_authenticated,
        } => {
            let mut map = ScopeMapLayer::http().unmapped(if unmapped_authenticated {
                Unmapped::Authenticated
            } else {
                Unmapped::Deny
            });
            for (p, r) in MAP {
                map = match route_of(*r) {
                    Some(r) => map.route(p, r.build(false)),
                    None => map.authenticated(p),
                };
            }
            let rule = match map_lookup(&path) {
                Some(r) => Ok(route_of(r)),
                None if unmapped_authenticated => Ok(None),
                None => Err(()),
            };
            let mut svc = layer.layer(map.layer(inner.clone()));
            (drive(&mut svc, req), rule)
        }
        Guard::NoPatLayer { which } => {
            let guard = RequireScopesLayer::new(requirement(which).build(false));
            let mut svc = guard.layer(inner.clone());
            let res = drive(&mut svc, req);
            // Whatever the request, a scope check without PatLayer is a wiring error: 500
            // (gRPC 13) with an empty body and no hint for the client.
            check_answer(&res, grpc, false, &Expect::refuse("missing_layer"));
            assert!(
                inner.last().is_none(),
                "the inner service ran without PatLayer"
            );
            return;
        }
    };
    let guarded = !matches!(input.guard, Guard::None);

    // The answer the specification gives.
    let mut admitted: Option<&Entry> = None;
    let want = match presented(&auth_values, raw_query.as_deref(), input.allow_query) {
        // A request without credentials: 401 with a bare challenge, or (optional) through
        // the layer without a token, where a scope check then asks for credentials.
        Presented::Nothing if input.optional && !guarded => Expect::Pass,
        Presented::Nothing => Expect::refuse("missing_credentials"),
        Presented::Refused(code) => Expect::refuse(code),
        Presented::Token(t) => match admit(&fixture, t, now) {
            Err((code, or)) => Expect::Refuse {
                code,
                or,
                required: None,
            },
            Ok(e) => {
                admitted = Some(e);
                match &rule {
                    Err(()) => Expect::insufficient(None),
                    Ok(None) => Expect::Pass,
                    Ok(Some(r)) if r.met(e.scopes, input.wildcard, input.inheritance) => {
                        Expect::Pass
                    }
                    Ok(Some(r)) => Expect::insufficient(Some(r)),
                }
            }
        },
    };
    check_answer(&res, grpc, input.hook, &want);

    match (&want, inner.last()) {
        (Expect::Pass, Some(seen)) => {
            assert!(
                seen.auth_sensitive.iter().all(|s| *s),
                "Authorization must be sensitive"
            );
            match (admitted, seen.token) {
                (None, None) => {}
                (Some(e), Some(token)) => {
                    assert_eq!(token.id(), e.id);
                    let names = match &rule {
                        Ok(Some(r)) => r.names(),
                        _ => vec!["orders:read", "admin", "*"],
                    };
                    for r in names {
                        assert_eq!(
                            token.can(r),
                            oracle_grants(e.scopes, r, input.wildcard, input.inheritance),
                            "can({r:?})"
                        );
                    }
                }
                (e, t) => panic!("admitted {e:?}, the handler got {t:?}"),
            }
        }
        (Expect::Refuse { .. }, None) => {}
        (want, seen) => panic!("expected {want:?}, the inner service saw {seen:?}"),
    }

    // Last used: the request itself wrote nothing (uses are recorded in memory, never
    // awaited on the request path).
    for e in fixture.iter().filter(|e| e.state != State::Unknown) {
        assert_eq!(
            stored_last_used(&store, e.id),
            e.last_used_at,
            "the request path wrote last_used_at"
        );
    }
    // The flush writes the admitted token's use (a 403 behind the layer counts too) when
    // its stored last use is older than the interval; nothing else, and only once.
    let written = layer
        .flush()
        .now_or_never()
        .expect("a flush over MemoryStore completes at once");
    let (due, boundary) = match (admitted, input.interval.get()) {
        (Some(e), Some(interval)) => match e.last_used_at {
            None => (true, false),
            Some(last) => (now - last > interval, now - last == interval),
        },
        _ => (false, false),
    };
    if boundary {
        assert!(written <= 1, "wrote {written} uses");
    } else {
        assert_eq!(written, usize::from(due), "uses written by the flush");
    }
    for e in fixture.iter().filter(|e| e.state != State::Unknown) {
        let stored = stored_last_used(&store, e.id);
        if admitted.is_some_and(|a| a.id == e.id) && written == 1 {
            let at = stored.expect("a use was written");
            assert!(
                at <= now && now - at < Duration::SECOND,
                "last_used_at {at} for a use at {now}"
            );
        } else {
            assert_eq!(stored, e.last_used_at, "a use nobody made was written");
        }
    }
    let again = layer.flush().now_or_never().expect("completes at once");
    assert_eq!(again, 0, "a use is written once");
});
