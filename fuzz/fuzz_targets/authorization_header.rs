//! Arbitrary bytes as one or many `Authorization` values (non-UTF-8, huge, repeated,
//! well-formed and almost well-formed bearer tokens) through the whole stack:
//! `PatLayer` (defaults, with or without a body hook) +
//! `RequireScopesLayer::new(Requirement::all(["orders:read"]))` over `MemoryStore`.
//!
//! Every answer is exactly the one the oracle derives from `docs/DESIGN.md` and RFC 6750
//! for the values sent: the refusal and its code, or a pass with the right token.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderValue, Request, header::AUTHORIZATION};
use libfuzzer_sys::fuzz_target;
use tower_layer::Layer;
use tower_pat::{PatLayer, RequireScopesLayer, clock::ManualClock};
use tower_pat_fuzz::{
    Expect, Inner, Presented, Req, admit, base_time, check_answer, drive, entries, hook_body,
    presented, store,
};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    grpc: bool,
    hook: bool,
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

    let now = base_time();
    let route = Req::All(vec!["orders:read"]);
    let inner = Inner::default();
    let mut layer = PatLayer::from_shared(store(&fixture)).clock(ManualClock::new(now));
    if input.hook {
        layer = layer.rejection_body(hook_body);
    }
    let mut svc = layer.layer(RequireScopesLayer::new(route.build(false)).layer(inner.clone()));
    let res = drive(&mut svc, req);

    // The answer the specification gives for these values (no query string here).
    let mut admitted = None;
    let want = match presented(&values, None, false) {
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
                if route.met(e.scopes, false, false) {
                    Expect::Pass
                } else {
                    Expect::insufficient(Some(&route))
                }
            }
        },
    };
    check_answer(&res, input.grpc, input.hook, &want);

    let seen = inner.last();
    match (&want, seen) {
        (Expect::Pass, Some(seen)) => {
            let e = admitted.expect("a pass admits a token");
            let token = seen.token.expect("an AccessToken for the handler");
            assert_eq!(token.id(), e.id);
            assert_eq!(
                seen.auth_sensitive,
                [true],
                "Authorization must be marked sensitive"
            );
        }
        (Expect::Refuse { .. }, None) => {}
        (want, seen) => panic!("expected {want:?}, the inner service saw {seen:?}"),
    }
});
