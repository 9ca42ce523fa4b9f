//! Property tests: scope syntax against the RFC 6749 grammar, the laws of scope matching
//! (all / any / inheritance / `*`), the stack's decisions against those laws, token
//! round trips, and single-character changes to valid tokens.
//!
//! Each property prints its case count (`cargo test --all-features --test it props:: -- --nocapture`);
//! `PROPTEST_CASES` overrides them all.

use std::{
    convert::Infallible,
    fmt::Debug,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use futures_util::FutureExt;
use http::{HeaderValue, Request, Response, StatusCode, header::AUTHORIZATION};
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use time::{Duration, OffsetDateTime};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_pat::{
    ManageTokens, MemoryStore, PatLayer, RequireScopesLayer, Requirement, ScopeMapLayer,
    TokenStore, Tokens,
    record::{TokenId, TokenRecord},
    scope::{Scope, ScopeError, ScopeMatching, ScopeRegistry, Scopes},
    token::{MalformedToken, TokenFormat},
};

/// Runs one property for `cases` cases (or `PROPTEST_CASES`) and reports the count.
fn check<S>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let run = AtomicUsize::new(0);
    let result = runner.run(&strategy, |v| {
        run.fetch_add(1, Ordering::Relaxed);
        test(v)
    });
    if let Err(e) = result {
        panic!("property {name} failed: {e}");
    }
    eprintln!(
        "props: {name}: {cases} cases passed ({} runs)",
        run.load(Ordering::Relaxed)
    );
}

/// RFC 6749 §3.3, written out: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn grammar_accepts(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| matches!(c, '!' | '#'..='[' | ']'..='~'))
}

/// The crate's rule on top of the grammar (docs/DESIGN.md): no empty level around `:`,
/// and `*` only as the whole name.
fn rule_accepts(s: &str) -> bool {
    grammar_accepts(s) && (s == "*" || (!s.contains('*') && s.split(':').all(|l| !l.is_empty())))
}

/// Strings drawn from the grammar.
fn grammar_string() -> impl Strategy<Value = String> {
    "[!#-\\[\\]-~]{1,24}"
}

/// Strings drawn from the rule: `*`, or levels of grammar characters other than `:` and
/// `*`, joined by `:`.
fn rule_string() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("*".to_owned()),
        9 => prop::collection::vec("[!#-)+-9;-\\[\\]-~]{1,8}", 1..4).prop_map(|l| l.join(":")),
    ]
}

/// Strings of every kind: arbitrary Unicode, ASCII with controls, grammar strings with
/// one forbidden character spliced in.
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x7f]{0,12}",
        "[ -~]{0,12}",
        (
            grammar_string(),
            any::<char>(),
            any::<prop::sample::Index>()
        )
            .prop_map(|(s, c, at)| {
                let mut chars: Vec<char> = s.chars().collect();
                let i = at.index(chars.len() + 1);
                chars.insert(i, c);
                chars.into_iter().collect()
            }),
        // Near misses of the rule: levels and wildcards in odd places.
        "[a:*]{1,6}",
    ]
}

#[test]
fn every_string_of_the_rule_is_a_scope() {
    check("scope rule → accepted", 10_000, rule_string(), |s| {
        let scope = Scope::new(&s).map_err(|e| TestCaseError::fail(format!("{s:?}: {e}")))?;
        prop_assert_eq!(scope.as_str(), s.as_str());
        prop_assert_eq!(s.parse::<Scope>().ok(), Some(scope));
        Ok(())
    });
}

#[test]
fn a_string_is_a_scope_iff_the_rule_says_so() {
    check(
        "arbitrary string → scope iff the rule",
        10_000,
        any_string(),
        |s| {
            match Scope::new(&s) {
                Ok(_) => prop_assert!(rule_accepts(&s), "accepted {:?}", s),
                Err(e) => {
                    prop_assert!(!rule_accepts(&s), "refused {:?}", s);
                    let want = if !grammar_accepts(&s) {
                        ScopeError::Invalid(s.clone())
                    } else if s.contains('*') {
                        ScopeError::MisplacedWildcard(s.clone())
                    } else {
                        ScopeError::EmptyLevel(s.clone())
                    };
                    prop_assert_eq!(e, want);
                }
            }
            Ok(())
        },
    );
}

#[test]
fn space_delimited_lists_parse_iff_every_part_does() {
    let part = prop_oneof![3 => rule_string(), 1 => any_string()];
    let list = (prop::collection::vec((part, 1..4usize), 0..6), 0..3usize);
    check("space-delimited list", 5_000, list, |(parts, lead)| {
        let mut s = " ".repeat(lead);
        for (p, spaces) in &parts {
            s.push_str(p);
            s.push_str(&" ".repeat(*spaces));
        }
        let tokens: Vec<&str> = s.split(' ').filter(|t| !t.is_empty()).collect();
        let valid = tokens.iter().all(|t| rule_accepts(t));
        match Scopes::parse_space_delimited(&s) {
            Ok(set) => {
                prop_assert!(valid, "accepted {:?}", s);
                for t in &tokens {
                    prop_assert!(set.contains(t));
                }
                prop_assert!(set.len() <= tokens.len());
                let again = Scopes::parse_space_delimited(&set.to_string()).unwrap();
                prop_assert_eq!(again, set);
            }
            Err(_) => prop_assert!(!valid, "refused {:?}", s),
        }
        Ok(())
    });
}

const MODES: [ScopeMatching; 4] = [
    ScopeMatching::EXACT,
    ScopeMatching::EXACT.with_wildcard(true),
    ScopeMatching::EXACT.with_inheritance(true),
    ScopeMatching::EXACT
        .with_wildcard(true)
        .with_inheritance(true),
];

/// Scope names from a tiny vocabulary, so that sets overlap, nest (`a` / `a:b`) and hold
/// `*` often.
fn scope_name() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("*".to_owned()),
        4 => prop::collection::vec(prop::sample::select(&["a", "b", "ab", "x"][..]), 1..=3)
            .prop_map(|v| v.join(":")),
    ]
}

fn scope_set() -> impl Strategy<Value = Scopes> {
    prop::collection::vec(scope_name(), 0..5)
        .prop_map(|v| Scopes::try_from_iter(v).expect("vocabulary scopes are valid"))
}

fn union(a: &Scopes, b: &Scopes) -> Scopes {
    a.iter().chain(b.iter()).cloned().collect()
}

/// The matching rules of docs/DESIGN.md, written out.
fn oracle(held: &Scopes, required: &str, m: ScopeMatching) -> bool {
    held.iter().any(|h| {
        let h = h.as_str();
        h == required
            || (m.wildcard && h == "*")
            || (m.inheritance
                && required
                    .strip_prefix(h)
                    .is_some_and(|rest| rest.starts_with(':')))
    })
}

#[test]
fn matching_laws() {
    let input = (scope_set(), scope_set(), scope_set(), scope_name());
    check(
        "all/any/inheritance/* laws",
        5_000,
        input,
        |(held, a, b, r)| {
            let ab = union(&a, &b);
            for m in MODES {
                // all(a ∪ b) ⇔ all(a) ∧ all(b);  any(a ∪ b) ⇔ any(a) ∨ any(b).
                prop_assert_eq!(
                    held.grants_all(&ab, m),
                    held.grants_all(&a, m) && held.grants_all(&b, m)
                );
                prop_assert_eq!(
                    held.grants_any(&ab, m),
                    held.grants_any(&a, m) || held.grants_any(&b, m)
                );
                // A token's own scopes satisfy all (and, when there are any, any) of themselves.
                prop_assert!(held.grants_all(&held, m));
                prop_assert_eq!(held.grants_any(&held, m), !held.is_empty());
                // all ⇒ any for a non-empty requirement; the empty cases are fixed.
                if !a.is_empty() && held.grants_all(&a, m) {
                    prop_assert!(held.grants_any(&a, m));
                }
                prop_assert!(held.grants_all(&Scopes::empty(), m));
                prop_assert!(!held.grants_any(&Scopes::empty(), m));
                // More scopes never grant less.
                let more = union(&held, &a);
                if held.grants(&r, m) {
                    prop_assert!(more.grants(&r, m));
                }
                // The rules, written out.
                prop_assert_eq!(held.grants(&r, m), oracle(&held, &r, m), "mode {:?}", m);
                let scope = Scope::new(&r).unwrap();
                prop_assert_eq!(
                    held.iter().any(|h| h.grants(&r, m)),
                    held.grants(scope.as_str(), m)
                );
            }
            // Exact matching is membership, and case-sensitive.
            prop_assert_eq!(held.grants(&r, MODES[0]), held.contains(&r));
            // exact ⊆ inheritance ⊆ both;  exact ⊆ wildcard ⊆ both.
            let [exact, wild, inherit, both] = MODES.map(|m| held.grants(&r, m));
            prop_assert!(!exact || inherit);
            prop_assert!(!inherit || both);
            prop_assert!(!exact || wild);
            prop_assert!(!wild || both);
            // `*` grants everything with the wildcard on, and only `*` (or, with inheritance,
            // `*:…`) without it.
            let star = Scopes::try_from_iter(["*"]).unwrap();
            prop_assert!(star.grants(&r, MODES[1]) && star.grants(&r, MODES[3]));
            prop_assert_eq!(star.grants(&r, MODES[0]), r == "*");
            prop_assert_eq!(star.grants(&r, MODES[2]), r == "*" || r.starts_with("*:"));
            // Without `*` held, the wildcard setting changes nothing.
            if !held.contains("*") {
                prop_assert_eq!(exact, wild);
                prop_assert_eq!(inherit, both);
            }
            Ok(())
        },
    );
}

fn ok_service() -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(|_: Request<String>| async { Ok::<_, Infallible>(Response::new(String::new())) })
}

/// Sends one request through a service whose store answers at once.
fn status_of<S>(svc: S, authorization: &[u8]) -> StatusCode
where
    S: tower::Service<Request<String>, Response = Response<String>, Error = Infallible>,
{
    let mut req = Request::new(String::new());
    req.headers_mut().insert(
        AUTHORIZATION,
        HeaderValue::from_bytes(authorization).expect("a sendable value"),
    );
    svc.oneshot(req)
        .now_or_never()
        .expect("MemoryStore answers without waiting")
        .unwrap_or_else(|e| match e {})
        .status()
}

fn record(hash: tower_pat::token::TokenHash, scopes: Scopes, n: u8) -> TokenRecord<i64> {
    let now = OffsetDateTime::now_utc();
    TokenRecord::new(
        TokenId::from_bytes([n; 16]),
        i64::from(n),
        hash,
        now,
        now + Duration::hours(1),
    )
    .with_name("props")
    .with_scopes(scopes)
    .with_last_used_at(now)
}

/// The whole stack decides as plain set logic says: 200 exactly when the token's scopes
/// meet the requirement under the layer's matching rules, 403 otherwise. For both scope
/// checks — one route's `RequireScopesLayer` and a path's entry in a `ScopeMapLayer` — and
/// requirements of every form: all of a set, any of a set, every scope of one of several
/// sets.
#[test]
fn requirements_decide_as_set_logic_says() {
    let sets = prop::collection::vec(prop::collection::vec(scope_name(), 1..4), 1..4);
    let input = (scope_set(), sets, 0..3usize, 0..4usize);
    check(
        "requirement verdict = set logic",
        2_000,
        input,
        |(held, sets, form, mode)| {
            let m = MODES[mode];
            let grants = |r: &String| oracle(&held, r, m);
            let (requirement, want) = match form {
                0 => (Requirement::all(&sets[0]), sets[0].iter().all(grants)),
                1 => (Requirement::any(&sets[0]), sets[0].iter().any(grants)),
                _ => (
                    Requirement::one_of(&sets),
                    sets.iter().any(|set| set.iter().all(grants)),
                ),
            };
            let want = if want {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            let store = Arc::new(MemoryStore::<i64>::new());
            let token = TokenFormat::default().generate().unwrap();
            store
                .insert(record(token.hash(), held.clone(), 1))
                .now_or_never()
                .unwrap()
                .unwrap();
            let bearer = format!("Bearer {}", token.expose_secret());
            let layer = PatLayer::from_shared(store).matching(m);
            let single = ServiceBuilder::new()
                .layer(layer.clone())
                .layer(RequireScopesLayer::new(requirement.clone()))
                .service(ok_service());
            let map = ServiceBuilder::new()
                .layer(layer)
                .layer(ScopeMapLayer::http().route("/", requirement.clone()))
                .service(ok_service());
            let case = format!("held {held:?} requirement {requirement} {m:?}");
            prop_assert_eq!(status_of(single, bearer.as_bytes()), want, "{}", case);
            prop_assert_eq!(status_of(map, bearer.as_bytes()), want, "map: {}", case);
            Ok(())
        },
    );
}

#[test]
fn prefixes_are_accepted_iff_they_follow_the_rule() {
    let prefix = prop_oneof!["[A-Za-z0-9_]{1,16}", any::<String>(), "[ -~]{0,20}"];
    check("prefix rule", 5_000, prefix, |p| {
        let want = (1..=16).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        prop_assert_eq!(TokenFormat::new(p.clone()).is_ok(), want, "{:?}", p);
        Ok(())
    });
}

#[test]
fn generated_tokens_round_trip() {
    check(
        "generate → parse round trip",
        3_000,
        "[A-Za-z0-9_]{1,16}",
        |prefix| {
            let format = TokenFormat::new(prefix.clone()).unwrap();
            let token = format.generate().unwrap();
            let s = token.expose_secret();
            prop_assert_eq!(s.len(), format.token_len());
            prop_assert!(s.starts_with(prefix.as_str()));
            prop_assert_eq!(format.parse(s), Ok(token.hash()));
            prop_assert_eq!(format.check(s), Ok(()));
            // The text round-trips through a String, and through another format only when the
            // prefixes agree.
            let copy = String::from(s);
            prop_assert_eq!(format.parse(&copy), Ok(token.hash()));
            if prefix != "pat_" {
                prop_assert!(TokenFormat::default().parse(s).is_err());
            }
            // The plaintext never shows in Debug or Display.
            let secret = &s[prefix.len()..];
            let shown = [format!("{token:?}"), format!("{token}")];
            prop_assert!(shown.iter().all(|s| !s.contains(secret)), "{:?}", shown);
            Ok(())
        },
    );
}

/// One edit of a token.
#[derive(Clone, Debug)]
enum Edit {
    Replace(usize, char),
    Insert(usize, char),
    Delete(usize),
    /// Swap the characters at `i` and `i + 1`.
    Swap(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let c = prop_oneof![
        4 => prop::sample::select(
            "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-.~+/="
                .chars()
                .collect::<Vec<_>>()
        ),
        1 => any::<char>(),
    ];
    let at = 0..64usize;
    prop_oneof![
        6 => (at.clone(), c.clone()).prop_map(|(i, c)| Edit::Replace(i, c)),
        1 => (at.clone(), c).prop_map(|(i, c)| Edit::Insert(i, c)),
        1 => at.clone().prop_map(Edit::Delete),
        2 => at.prop_map(Edit::Swap),
    ]
}

fn apply(token: &str, edit: &Edit) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let n = chars.len();
    match *edit {
        Edit::Replace(i, c) => chars[i % n] = c,
        Edit::Insert(i, c) => chars.insert(i % (n + 1), c),
        Edit::Delete(i) => {
            chars.remove(i % n);
        }
        // Swaps stay inside the 33 random characters, where CRC32 catches every one.
        Edit::Swap(i) => {
            let i = 4 + i % 32;
            chars.swap(i, i + 1);
        }
    }
    chars.into_iter().collect()
}

/// Any one-character change to a valid token fails the offline checks; were one ever to
/// pass them, it would be another token, which the store does not know. Through the whole
/// stack, such a request is refused (401, or 400 for text that is not a bearer token),
/// never let through.
#[test]
fn one_character_changes_are_caught() {
    let store = Arc::new(MemoryStore::<i64>::new());
    let tokens = Tokens::new(
        Arc::clone(&store),
        ScopeRegistry::new().scope("orders:read", "See orders"),
    );
    let issued: Vec<_> = (0..8)
        .map(|i| {
            tokens
                .create(i, "props", ["orders:read"])
                .now_or_never()
                .unwrap()
                .unwrap()
        })
        .collect();
    let svc = ServiceBuilder::new()
        .layer(tokens.layer())
        .layer(RequireScopesLayer::all(["orders:read"]))
        .service(ok_service());
    let format = TokenFormat::default();
    let passed_offline = AtomicUsize::new(0);
    let input = (0..issued.len(), edit());
    check(
        "one-character change → refused",
        10_000,
        input,
        |(which, edit)| {
            let original = issued[which].token.expose_secret();
            let mutated = apply(original, &edit);
            if mutated == original {
                return Ok(());
            }
            match format.parse(&mutated) {
                Err(e) => prop_assert!(matches!(
                    e,
                    MalformedToken::Length
                        | MalformedToken::Prefix
                        | MalformedToken::Charset
                        | MalformedToken::Checksum
                )),
                Ok(hash) => {
                    passed_offline.fetch_add(1, Ordering::Relaxed);
                    prop_assert!(hash != issued[which].token.hash());
                    let found = store
                        .find_ready(&hash)
                        .expect("MemoryStore answers at once");
                    prop_assert!(found.unwrap().is_none(), "the store knows {:?}", edit);
                }
            }
            let value = format!("Bearer {mutated}");
            if HeaderValue::from_bytes(value.as_bytes()).is_ok() {
                let status = status_of(svc.clone(), value.as_bytes());
                if mutated.trim_start_matches(' ') == original {
                    // A space before the token widens the separator (`"Bearer" 1*SP
                    // b64token`, RFC 6750 §2.1): the same token, rightly accepted.
                    prop_assert_eq!(status, StatusCode::OK, "{:?}", edit);
                } else {
                    prop_assert!(
                        status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST,
                        "{:?} gave {}",
                        edit,
                        status
                    );
                }
            }
            Ok(())
        },
    );
    // The original tokens still work: the store was never changed by the attempts.
    for t in &issued {
        let value = format!("Bearer {}", t.token.expose_secret());
        assert_eq!(status_of(svc.clone(), value.as_bytes()), StatusCode::OK);
    }
    eprintln!(
        "props: one-character changes that passed the offline checks: {}",
        passed_offline.load(Ordering::Relaxed)
    );
}

/// The case the property above once found: spaces before the token belong to the
/// separator (`"Bearer" 1*SP b64token`), after it they make the credentials malformed.
#[test]
fn spaces_around_the_token() {
    let tokens = Tokens::new(
        MemoryStore::<i64>::new(),
        ScopeRegistry::new().scope("orders:read", "See orders"),
    );
    let created = tokens
        .create(1, "props", ["orders:read"])
        .now_or_never()
        .unwrap()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(tokens.layer())
        .layer(RequireScopesLayer::all(["orders:read"]))
        .service(ok_service());
    let token = created.token.expose_secret();
    let status = |value: String| status_of(svc.clone(), value.as_bytes());
    assert_eq!(status(format!("Bearer {token}")), StatusCode::OK);
    assert_eq!(status(format!("Bearer   {token}")), StatusCode::OK);
    assert_eq!(status(format!("Bearer {token} ")), StatusCode::BAD_REQUEST);
    assert_eq!(status(format!("Bearer\t{token}")), StatusCode::UNAUTHORIZED);
}
