//! Arbitrary bytes as one or many `Authorization` values (non-UTF-8, huge, repeated,
//! well-formed and almost well-formed bearer tokens) through the whole stack:
//! `PatLayer` (defaults) + `RequireScopesLayer::all(["orders:read"])` over `MemoryStore`.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderValue, Request, header::AUTHORIZATION};
use libfuzzer_sys::fuzz_target;
use tower_layer::Layer;
use tower_pat::{PatLayer, RequireScopesLayer, clock::ManualClock};
use tower_pat_fuzz::{
    Inner, Outcome, base_time, bearer_token, classify, drive, entries, oracle_grants, store,
};

/// The layer's default bound on an `Authorization` value.
const MAX_HEADER_LEN: usize = 4096;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    grpc: bool,
    values: Vec<Value<'a>>,
}

#[derive(Arbitrary, Debug)]
enum Value<'a> {
    /// Any bytes at all.
    Raw(&'a [u8]),
    /// `<scheme><spaces><token><suffix>`.
    Bearer {
        scheme: Scheme<'a>,
        spaces: u8,
        token: Pick<'a>,
        suffix: &'a [u8],
    },
    /// A long value: `Bearer ` (or not), then a fixture token (or not), then `fill`
    /// bytes up to `len` in total.
    Huge {
        bearer: bool,
        token: Option<u8>,
        fill: u8,
        len: u16,
    },
}

#[derive(Arbitrary, Debug)]
enum Scheme<'a> {
    Bearer,
    Lower,
    Upper,
    Mixed(u8),
    Other(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
enum Pick<'a> {
    Fixture(u8),
    Mutated { which: u8, at: u8, byte: u8 },
    Raw(&'a [u8]),
}

fn scheme_bytes(s: &Scheme<'_>) -> Vec<u8> {
    match s {
        Scheme::Bearer => b"Bearer".to_vec(),
        Scheme::Lower => b"bearer".to_vec(),
        Scheme::Upper => b"BEARER".to_vec(),
        Scheme::Mixed(bits) => b"bearer"
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if bits >> i & 1 == 1 {
                    b.to_ascii_uppercase()
                } else {
                    *b
                }
            })
            .collect(),
        Scheme::Other(b) => b.to_vec(),
    }
}

fuzz_target!(|input: Input<'_>| {
    let fixture = entries();
    let pick = |i: u8| &fixture[usize::from(i) % fixture.len()].token;
    let mut values: Vec<Vec<u8>> = Vec::new();
    for v in &input.values {
        let bytes = match v {
            Value::Raw(b) => b.to_vec(),
            Value::Bearer {
                scheme,
                spaces,
                token,
                suffix,
            } => {
                let mut out = scheme_bytes(scheme);
                out.extend(std::iter::repeat_n(b' ', usize::from(*spaces % 8)));
                match token {
                    Pick::Fixture(i) => out.extend_from_slice(pick(*i).as_bytes()),
                    Pick::Mutated { which, at, byte } => {
                        let mut t = pick(*which).clone().into_bytes();
                        let at = usize::from(*at) % t.len();
                        t[at] = *byte;
                        out.extend(t);
                    }
                    Pick::Raw(b) => out.extend_from_slice(b),
                }
                out.extend_from_slice(suffix);
                out
            }
            Value::Huge {
                bearer,
                token,
                fill,
                len,
            } => {
                let mut out = Vec::with_capacity(usize::from(*len));
                if *bearer {
                    out.extend_from_slice(b"Bearer ");
                }
                if let Some(i) = token {
                    out.extend_from_slice(pick(*i).as_bytes());
                }
                let fill = if fill.is_ascii_graphic() { *fill } else { b'a' };
                out.resize(out.len().max(usize::from(*len)), fill);
                out
            }
        };
        // Values that `http` cannot carry (CR, LF, NUL…) never reach a server.
        if HeaderValue::from_bytes(&bytes).is_ok() {
            values.push(bytes);
        }
    }

    let mut req = Request::builder().uri("/orders");
    if input.grpc {
        req = req.header(http::header::CONTENT_TYPE, "application/grpc");
    }
    for v in &values {
        req = req.header(AUTHORIZATION, HeaderValue::from_bytes(v).expect("checked"));
    }
    let req = req.body(()).expect("a valid request");

    let clock = ManualClock::new(base_time());
    let now = base_time();
    let inner = Inner::default();
    let seen = inner.seen.clone();
    let mut svc = PatLayer::from_shared(store(&fixture))
        .clock(clock)
        .layer(RequireScopesLayer::all(["orders:read"]).layer(inner));
    let res = drive(&mut svc, req);
    let outcome = classify(&res, input.grpc);

    // Limits: several values, or one above the bound, are `invalid_request`.
    if values.len() > 1 || values.first().is_some_and(|v| v.len() > MAX_HEADER_LEN) {
        assert_eq!(outcome, Outcome::refusal(400, input.grpc), "{values:?}");
    }
    if values.is_empty() {
        assert_eq!(outcome, Outcome::refusal(401, input.grpc));
    }

    // A request passes only with the one value `Bearer <an active token with the scope>`.
    let canonical = match values.as_slice() {
        [v] if v.len() <= MAX_HEADER_LEN => {
            bearer_token(v).and_then(|t| fixture.iter().find(|e| e.token.as_bytes() == t))
        }
        _ => None,
    };
    if outcome == Outcome::Pass {
        let e = canonical.expect("passed without exactly one valid bearer value");
        assert!(e.active_at(now));
        assert!(oracle_grants(e.scopes, "orders:read", false, false));
        let seen = seen.lock().unwrap().clone().expect("the inner service ran");
        let token = seen.token.expect("an AccessToken for the handler");
        assert_eq!(token.id(), e.id);
        assert_eq!(
            seen.auth_sensitive,
            [true],
            "Authorization must be marked sensitive"
        );
    } else if let Some(e) = canonical {
        // And such a value does pass (or is refused for the token's own reasons).
        let want = if !e.active_at(now) {
            Outcome::refusal(401, input.grpc)
        } else if oracle_grants(e.scopes, "orders:read", false, false) {
            Outcome::Pass
        } else {
            Outcome::refusal(403, input.grpc)
        };
        assert_eq!(outcome, want, "token state {:?}", e.state);
    }
});
