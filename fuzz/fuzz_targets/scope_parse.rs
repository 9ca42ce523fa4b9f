//! `Scope::new`, `Scopes::parse_space_delimited`, `ScopeRegistry::try_scope` and the
//! requirement constructors on arbitrary strings: never panic, accept exactly the names
//! `docs/DESIGN.md` allows (an RFC 6749 `scope-token`, `*` alone or no `*`, no empty level
//! around `:`), refuse the rest with the error of the first rule broken (grammar, then
//! wildcard, then levels), and build requirements that display and decide as specified.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_pat::{
    RequireScopesLayer, Requirement,
    scope::{Scope, ScopeError, ScopeMatching, ScopeRegistry, Scopes},
};
use tower_pat_fuzz::{Req, is_scope_name, scope_name_verdict, scope_set};

/// The error naming the first bad name of `names`, if any.
fn first_bad(names: &[&str]) -> Option<ScopeError> {
    names.iter().find_map(|n| scope_name_verdict(n).err())
}

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
    let verdict = scope_name_verdict(s);
    match Scope::new(s) {
        Ok(scope) => {
            assert_eq!(verdict, Ok(()), "accepted {s:?}");
            assert_eq!(scope.as_str(), s);
            assert_eq!(scope.to_string(), s);
            assert_eq!(scope.is_wildcard(), s == "*");
        }
        Err(e) => assert_eq!(Err(e), verdict, "refused {s:?}"),
    }

    // Registering it: `*` is the wildcard, never an ordinary scope.
    match ScopeRegistry::new().try_scope(s, "fuzz") {
        Ok(registry) => {
            assert!(is_scope_name(s) && s != "*", "registered {s:?}");
            assert!(registry.is_defined(s));
        }
        Err(e) if s == "*" => assert_eq!(e, ScopeError::WildcardDefined),
        Err(e) => assert_eq!(Err(e), verdict, "refused to register {s:?}"),
    }

    // The space-delimited form.
    let parts: Vec<&str> = s.split(' ').filter(|p| !p.is_empty()).collect();
    let bad = first_bad(&parts);
    match Scopes::parse_space_delimited(s) {
        Ok(set) => {
            assert_eq!(bad, None, "accepted {s:?}");
            assert_eq!(
                set.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                scope_set(&parts),
                "a set is sorted and without duplicates"
            );
            let shown = set.to_string();
            assert_eq!(shown, scope_set(&parts).join(" "));
            assert_eq!(Scopes::parse_space_delimited(&shown).as_ref(), Ok(&set));
        }
        Err(e) => assert_eq!(Some(e), bad, "refused {s:?}: names the first bad part"),
    }

    // A requirement: valid and non-empty, or a construction error (never "allow
    // everything").
    let want = match &bad {
        Some(e) => Err(e.clone()),
        None if parts.is_empty() => Err(ScopeError::Empty),
        None => Ok(()),
    };
    let all = Requirement::try_all(&parts);
    let any = Requirement::try_any(&parts);
    assert_eq!(all.as_ref().map(|_| ()).map_err(Clone::clone), want);
    assert_eq!(any.as_ref().map(|_| ()).map_err(Clone::clone), want);
    assert_eq!(
        RequireScopesLayer::try_all(&parts).map(|_| ()),
        want,
        "RequireScopesLayer::try_all"
    );
    assert_eq!(
        RequireScopesLayer::try_any(&parts).map(|_| ()),
        want,
        "RequireScopesLayer::try_any"
    );

    // Several sets, separated by `"` (never part of a scope name).
    let sets: Vec<Vec<&str>> = s
        .split('"')
        .map(|seg| seg.split(' ').filter(|p| !p.is_empty()).collect())
        .collect();
    let names: Vec<&str> = sets.iter().flatten().copied().collect();
    let one_of = Requirement::try_one_of(&sets);
    let bad_name = first_bad(&names);
    let empty_set = sets.iter().any(Vec::is_empty);
    match &one_of {
        Ok(_) => assert!(bad_name.is_none() && !empty_set, "one_of accepted {s:?}"),
        Err(e) => match (&bad_name, empty_set) {
            (None, true) => assert_eq!(*e, ScopeError::Empty),
            (Some(b), false) => assert_eq!(e, b),
            // Both wrong: either error names a real fault.
            (Some(b), true) => assert!(*e == ScopeError::Empty || e == b, "{e:?}"),
            (None, false) => panic!("one_of refused {s:?}: {e:?}"),
        },
    }

    // Display and decision, against the oracle, for what was accepted.
    let Ok(all) = all else { return };
    let any = any.expect("same names as all");
    let held = &sets[0];
    let m = ScopeMatching::EXACT;
    let held_set = Scopes::try_from_iter(held).expect("valid names");
    let oracle_all = Req::All(parts.clone());
    let oracle_any = Req::Any(parts.clone());
    assert_eq!(all.to_string(), oracle_all.display());
    assert_eq!(any.to_string(), oracle_any.display());
    assert_eq!(
        all.challenge_scopes().to_string(),
        oracle_all.challenge_scopes()
    );
    assert_eq!(
        any.challenge_scopes().to_string(),
        oracle_any.challenge_scopes()
    );
    assert_eq!(
        all.is_met_by(&held_set, m),
        oracle_all.met(held, false, false)
    );
    assert_eq!(
        any.is_met_by(&held_set, m),
        oracle_any.met(held, false, false)
    );

    let Ok(one_of) = one_of else { return };
    let mut distinct: Vec<Vec<&str>> = sets.iter().map(|set| scope_set(set)).collect();
    distinct.sort();
    distinct.dedup();
    if distinct.len() == sets.len() && sets.len() > 1 {
        // Distinct sets: the display names each, in order; `or` builds the same.
        let oracle = Req::OneOf(sets.clone());
        assert_eq!(one_of.to_string(), oracle.display());
        assert_eq!(
            one_of.challenge_scopes().to_string(),
            oracle.challenge_scopes()
        );
        assert_eq!(oracle.build(true).to_string(), oracle.display());
        assert_eq!(
            one_of.is_met_by(&held_set, m),
            oracle.met(held, false, false)
        );
    } else if sets.len() == 1 {
        // One set is an `all`.
        assert_eq!(one_of.to_string(), Req::All(sets[0].clone()).display());
    }
    let oracle_met = sets.iter().any(|set| set.iter().all(|r| held.contains(r)));
    assert_eq!(one_of.is_met_by(&held_set, m), oracle_met);
});
