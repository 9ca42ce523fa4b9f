//! Arbitrary request parts (method, URI with query, headers, gRPC or not) into
//! `PatLayer` + `RequireScopesLayer` over a `MemoryStore` holding issued, revoked and
//! expired tokens, with a `ManualClock` and arbitrary layer settings.
//!
//! Invariants: no panic; every answer is one of the rejection table's; the inner service
//! runs only for a token that was issued, is not revoked, not expired at the clock's time,
//! and holds the required scopes; and a well-formed request with such a token does pass.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderName, HeaderValue, Method, Request, Uri, header::AUTHORIZATION};
use libfuzzer_sys::fuzz_target;
use time::Duration;
use tower_layer::Layer;
use tower_pat::{PatLayer, RequireScopesLayer, clock::ManualClock, scope::ScopeMatching};
use tower_pat_fuzz::{
    Entry, Inner, Outcome, base_time, bearer_token, classify, drive, entries, is_bearer_scheme,
    oracle_grants, query_token, store,
};

/// Requirements a route may have: (all?, scopes).
const REQUIREMENTS: &[(bool, &[&str])] = &[
    (true, &["orders:read"]),
    (true, &["orders:create", "orders:read"]),
    (false, &["admin", "orders:create"]),
    (true, &["admin"]),
    (false, &["orders:read:status"]),
    (true, &["orders:read:status", "orders:create"]),
    (true, &["*"]),
];

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: Meth<'a>,
    path: &'a [u8],
    query: Option<Query<'a>>,
    auth: Vec<Auth<'a>>,
    headers: Vec<(&'a [u8], &'a [u8])>,
    content_type: ContentType<'a>,
    /// Seconds past the fixture's base time (tokens expire at +10 s, +1000 s, +3000 s).
    clock: u16,
    requirement: u8,
    wildcard: bool,
    inheritance: bool,
    optional: bool,
    allow_query: bool,
}

#[derive(Arbitrary, Debug)]
enum Meth<'a> {
    Get,
    Post,
    Options,
    Other(&'a [u8]),
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

fn method(m: &Meth<'_>) -> Method {
    match m {
        Meth::Get => Method::GET,
        Meth::Post => Method::POST,
        Meth::Options => Method::OPTIONS,
        Meth::Other(b) => Method::from_bytes(b).unwrap_or(Method::PATCH),
    }
}

fn uri(path: &[u8], query: Option<&[u8]>) -> Uri {
    let mut s = Vec::with_capacity(path.len() + 16);
    s.push(b'/');
    s.extend_from_slice(path);
    if let Some(q) = query {
        s.push(b'?');
        s.extend_from_slice(q);
    }
    Uri::try_from(s).unwrap_or_else(|_| {
        // Keep the query (the part the layer reads) when only the path was unusable.
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
        .uri(uri(input.path, query.as_deref()));
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
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let auth_values = tower_pat_fuzz::authorization_values(req.headers());
    let presented_query = query_token(req.uri().query()).map(str::to_owned);

    // The stack.
    let (all, required) = REQUIREMENTS[usize::from(input.requirement) % REQUIREMENTS.len()];
    let require = if all {
        RequireScopesLayer::all(required)
    } else {
        RequireScopesLayer::any(required)
    };
    let matching = ScopeMatching::EXACT
        .with_wildcard(input.wildcard)
        .with_inheritance(input.inheritance);
    let inner = Inner::default();
    let seen = inner.seen.clone();
    let mut svc = PatLayer::from_shared(store(&fixture))
        .clock(ManualClock::new(now))
        .matching(matching)
        .optional(input.optional)
        .allow_query_token(input.allow_query)
        .layer(require.layer(inner));
    let res = drive(&mut svc, req);
    let outcome = classify(&res, grpc);
    assert!(
        !matches!(outcome, Outcome::Http(500 | 503) | Outcome::Grpc(13 | 14)),
        "MemoryStore never fails and PatLayer is in front: {outcome:?}"
    );

    let holds = |e: &Entry| {
        let check = |r: &&str| oracle_grants(e.scopes, r, input.wildcard, input.inheritance);
        if all {
            required.iter().all(check)
        } else {
            required.iter().any(check)
        }
    };

    // Exactly one way of presenting a fixture token, in its canonical form: one `Bearer`
    // header and no query token, or (where enabled) a query token and no bearer header
    // (a header of another scheme, `Basic` say, carries no bearer token).
    let canonical: Option<&Entry> = match (auth_values.as_slice(), &presented_query) {
        ([v], None) => {
            bearer_token(v).and_then(|t| fixture.iter().find(|e| e.token.as_bytes() == t))
        }
        ([], Some(q)) if input.allow_query => fixture.iter().find(|e| e.token == *q),
        ([v], Some(q)) if input.allow_query && v.len() <= 4096 && !is_bearer_scheme(v) => {
            fixture.iter().find(|e| e.token == *q)
        }
        _ => None,
    };

    if outcome == Outcome::Pass {
        let e = canonical.expect("the inner service ran without one well-presented token");
        assert!(
            e.active_at(now),
            "passed with a {:?} token at {now}",
            e.state
        );
        assert!(holds(e), "passed without the required scopes");
        let seen = seen.lock().unwrap().clone().expect("the inner service ran");
        let token = seen.token.expect("an AccessToken for the handler");
        assert_eq!(token.id(), e.id);
        assert!(
            seen.auth_sensitive.iter().all(|s| *s),
            "Authorization must be sensitive"
        );
        for r in required {
            assert_eq!(
                token.can(r),
                oracle_grants(e.scopes, r, input.wildcard, input.inheritance)
            );
        }
    } else if let Some(e) = canonical {
        let want = if !e.active_at(now) {
            Outcome::refusal(401, grpc)
        } else if holds(e) {
            Outcome::Pass
        } else {
            Outcome::refusal(403, grpc)
        };
        assert_eq!(outcome, want, "token {:?} at {now}", e.state);
    }

    // A query token where that is off is refused as a bad request.
    if presented_query.is_some() && !input.allow_query {
        assert_eq!(outcome, Outcome::refusal(400, grpc));
    }
    // No credentials at all: 401 without an error code (optional mode lets it through
    // PatLayer, and RequireScopes then asks for credentials).
    if auth_values.is_empty() && presented_query.is_none() {
        assert_eq!(outcome, Outcome::refusal(401, grpc));
        if let Some(c) = res.headers().get(http::header::WWW_AUTHENTICATE) {
            assert_eq!(c, "Bearer realm=\"api\"");
        }
    }
});
