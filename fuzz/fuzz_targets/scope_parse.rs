//! `Scope::new` and `Scopes::parse_space_delimited` on arbitrary strings: never panic, and
//! accept exactly what RFC 6749's `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )` allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_pat::{
    RequireScopesLayer,
    scope::{Scope, ScopeError, Scopes},
};
use tower_pat_fuzz::is_scope_token;

fuzz_target!(|data: &[u8]| {
    let owned;
    let s = match std::str::from_utf8(data) {
        Ok(s) => s,
        Err(_) => {
            owned = String::from_utf8_lossy(data).into_owned();
            &owned
        }
    };

    // One scope.
    match Scope::new(s) {
        Ok(scope) => {
            assert!(is_scope_token(s), "accepted {s:?}");
            assert_eq!(scope.as_str(), s);
            assert_eq!(scope.to_string(), s);
        }
        Err(e) => {
            assert!(!is_scope_token(s), "refused {s:?}");
            assert_eq!(e, ScopeError::Invalid(s.to_owned()));
        }
    }

    // The space-delimited form.
    let parts: Vec<&str> = s.split(' ').filter(|p| !p.is_empty()).collect();
    let valid = parts.iter().all(|p| is_scope_token(p));
    match Scopes::parse_space_delimited(s) {
        Ok(set) => {
            assert!(valid, "accepted {s:?}");
            assert!(set.len() <= parts.len());
            for p in &parts {
                assert!(set.contains(p), "{p:?} missing from {set:?}");
            }
            for w in set.as_slice().windows(2) {
                assert!(w[0] < w[1], "not sorted and deduplicated: {set:?}");
            }
            let shown = set.to_string();
            assert!(!shown.contains("  ") && !shown.starts_with(' ') && !shown.ends_with(' '));
            assert_eq!(Scopes::parse_space_delimited(&shown).as_ref(), Ok(&set));
        }
        Err(ScopeError::Invalid(bad)) => {
            assert!(!valid, "refused {s:?}");
            let first = parts.iter().find(|p| !is_scope_token(p));
            assert_eq!(
                first.copied(),
                Some(bad.as_str()),
                "names the first bad part"
            );
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }

    // A requirement: valid and non-empty, or a construction error.
    let all = RequireScopesLayer::try_all(&parts);
    let any = RequireScopesLayer::try_any(&parts);
    assert_eq!(all.is_ok(), valid && !parts.is_empty());
    assert_eq!(any.is_ok(), valid && !parts.is_empty());
    if parts.is_empty() {
        assert_eq!(all.unwrap_err(), ScopeError::Empty);
    }
});
