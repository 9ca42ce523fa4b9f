//! [`Requirement`]: what a route asks of a token's scopes.

use std::fmt;

use super::{ScopeError, ScopeMatching, Scopes};

/// What a route asks of a token's scopes: all of a set, any of a set, or one of several
/// sets in full (an OR of ANDs, GitHub's "`repo:read` and `repo:write`, or `admin`").
///
/// Built once, at startup: an invalid scope name or an empty set is an error there
/// (or a panic naming it, for the non-`try_` constructors), never "allow everything".
/// [`ScopeRegistry::check`](super::ScopeRegistry::check) also refuses scopes the
/// application never defined.
///
/// ```
/// use tower_pat::scope::{Requirement, ScopeMatching, Scopes};
///
/// let rule = Requirement::all(["repo:read", "repo:write"]).or(Requirement::all(["admin"]));
/// let held = |s: &str| Scopes::parse_space_delimited(s).unwrap();
/// assert!(rule.is_met_by(&held("repo:read repo:write"), ScopeMatching::EXACT));
/// assert!(rule.is_met_by(&held("admin"), ScopeMatching::EXACT));
/// assert!(!rule.is_met_by(&held("repo:read"), ScopeMatching::EXACT));
/// assert_eq!(rule.to_string(), "(repo:read and repo:write) or admin");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Requirement(Form);

#[derive(Clone, PartialEq, Eq)]
enum Form {
    All(Scopes),
    Any(Scopes),
    /// At least two sets, none empty.
    OneOf(Box<[Scopes]>),
}

/// The shape of a [`Requirement`], as a rejection reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequirementForm {
    /// Every scope of one set (Passport's `CheckToken`).
    All,
    /// At least one scope of one set (Passport's `CheckTokenForAnyScope`).
    Any,
    /// Every scope of at least one of several sets.
    OneOf,
}

impl RequirementForm {
    /// `"all"`, `"any"` or `"one_of"`: a stable name for JSON bodies and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Any => "any",
            Self::OneOf => "one_of",
        }
    }
}

fn non_empty<I>(scopes: I) -> Result<Scopes, ScopeError>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let set = Scopes::try_from_iter(scopes)?;
    if set.is_empty() {
        Err(ScopeError::Empty)
    } else {
        Ok(set)
    }
}

impl Requirement {
    /// Every one of `scopes`.
    ///
    /// # Panics
    ///
    /// When a scope is invalid (the message names it) or `scopes` is empty.
    #[track_caller]
    pub fn all<I>(scopes: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        match Self::try_all(scopes) {
            Ok(value) => value,
            Err(e) => panic!("Requirement::all: {e}"),
        }
    }

    /// At least one of `scopes`.
    ///
    /// # Panics
    ///
    /// When a scope is invalid (the message names it) or `scopes` is empty.
    #[track_caller]
    pub fn any<I>(scopes: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        match Self::try_any(scopes) {
            Ok(value) => value,
            Err(e) => panic!("Requirement::any: {e}"),
        }
    }

    /// Every scope of at least one of `sets`: `one_of([["repo:read", "repo:write"],
    /// ["admin"]])`. [`or`](Self::or) builds the same from requirements.
    ///
    /// # Panics
    ///
    /// When a scope is invalid (the message names it), or there is no set, or a set is
    /// empty.
    #[track_caller]
    pub fn one_of<I, J>(sets: I) -> Self
    where
        I: IntoIterator<Item = J>,
        J: IntoIterator,
        J::Item: AsRef<str>,
    {
        match Self::try_one_of(sets) {
            Ok(value) => value,
            Err(e) => panic!("Requirement::one_of: {e}"),
        }
    }

    /// Every one of `scopes`.
    ///
    /// # Errors
    ///
    /// [`ScopeError`] for an invalid scope or an empty list.
    pub fn try_all<I>(scopes: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Ok(Self(Form::All(non_empty(scopes)?)))
    }

    /// At least one of `scopes`.
    ///
    /// # Errors
    ///
    /// [`ScopeError`] for an invalid scope or an empty list.
    pub fn try_any<I>(scopes: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Ok(Self(Form::Any(non_empty(scopes)?)))
    }

    /// Every scope of at least one of `sets`.
    ///
    /// # Errors
    ///
    /// [`ScopeError`] for an invalid scope, no set at all, or an empty set.
    pub fn try_one_of<I, J>(sets: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = J>,
        J: IntoIterator,
        J::Item: AsRef<str>,
    {
        let sets = sets
            .into_iter()
            .map(non_empty)
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_sets(sets).ok_or(ScopeError::Empty)
    }

    /// Either this requirement or `other`: the result is met when one of them is.
    /// `any([a, b])` counts as the sets `[a]` and `[b]`.
    #[must_use]
    pub fn or(self, other: Self) -> Self {
        let mut sets = self.into_sets();
        sets.extend(other.into_sets());
        Self::from_sets(sets).unwrap_or_else(|| unreachable!("two requirements have sets"))
    }

    /// `None` without sets; the single set of one `all` stays an `all`. A set given twice
    /// counts once.
    fn from_sets(given: Vec<Scopes>) -> Option<Self> {
        let mut sets: Vec<Scopes> = Vec::with_capacity(given.len());
        for set in given {
            if !sets.contains(&set) {
                sets.push(set);
            }
        }
        match sets.len() {
            0 => None,
            1 => sets.pop().map(|set| Self(Form::All(set))),
            _ => Some(Self(Form::OneOf(sets.into()))),
        }
    }

    fn into_sets(self) -> Vec<Scopes> {
        match self.0 {
            Form::All(set) => vec![set],
            Form::Any(set) => set
                .iter()
                .map(|scope| Scopes::from(vec![scope.clone()]))
                .collect(),
            Form::OneOf(sets) => sets.into_vec(),
        }
    }

    /// Whether a token holding `held` meets the requirement under `matching`.
    #[inline]
    pub fn is_met_by(&self, held: &Scopes, matching: ScopeMatching) -> bool {
        match &self.0 {
            Form::All(set) => held.grants_all(set, matching),
            Form::Any(set) => held.grants_any(set, matching),
            Form::OneOf(sets) => sets.iter().any(|set| held.grants_all(set, matching)),
        }
    }

    /// All, any, or one of several sets.
    pub fn form(&self) -> RequirementForm {
        match self.0 {
            Form::All(_) => RequirementForm::All,
            Form::Any(_) => RequirementForm::Any,
            Form::OneOf(_) => RequirementForm::OneOf,
        }
    }

    /// The scopes the `insufficient_scope` challenge names (its `scope=`): the set of an
    /// `all` or an `any` (holding all of an `any`'s scopes meets it too), and for
    /// [`one_of`](Self::one_of) the *first* set, one that would be enough.
    pub fn challenge_scopes(&self) -> &Scopes {
        match &self.0 {
            Form::All(set) | Form::Any(set) => set,
            Form::OneOf(sets) => &sets[0],
        }
    }

    /// The sets, as the form reads them: one set for `all` and `any`, several for
    /// `one_of`.
    pub fn sets(&self) -> &[Scopes] {
        match &self.0 {
            Form::All(set) | Form::Any(set) => std::slice::from_ref(set),
            Form::OneOf(sets) => sets,
        }
    }
}

/// `a and b`, `a or b`, `(a and b) or c`: how the gRPC `PERMISSION_DENIED` message names
/// what was required.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, set: &Scopes, word: &str| {
            for (i, scope) in set.iter().enumerate() {
                if i > 0 {
                    write!(f, " {word} ")?;
                }
                f.write_str(scope)?;
            }
            Ok(())
        };
        match &self.0 {
            Form::All(set) => join(f, set, "and"),
            Form::Any(set) => join(f, set, "or"),
            Form::OneOf(sets) => {
                for (i, set) in sets.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    if set.len() > 1 {
                        f.write_str("(")?;
                        join(f, set, "and")?;
                        f.write_str(")")?;
                    } else {
                        join(f, set, "and")?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requirement")
            .field("form", &self.form())
            .field("sets", &self.sets())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: ScopeMatching = ScopeMatching::EXACT;

    fn held(s: &str) -> Scopes {
        Scopes::parse_space_delimited(s).unwrap()
    }

    #[test]
    fn each_form_meets_what_it_says() {
        let all = Requirement::all(["a", "b"]);
        assert!(all.is_met_by(&held("a b c"), M));
        assert!(!all.is_met_by(&held("a"), M));
        let any = Requirement::any(["a", "b"]);
        assert!(any.is_met_by(&held("b"), M));
        assert!(!any.is_met_by(&held("c"), M));
        let one_of = Requirement::one_of([vec!["a", "b"], vec!["c"]]);
        assert_eq!(one_of.form(), RequirementForm::OneOf);
        assert!(one_of.is_met_by(&held("a b"), M));
        assert!(one_of.is_met_by(&held("c"), M));
        assert!(one_of.is_met_by(&held("a b c d"), M));
        assert!(!one_of.is_met_by(&held("a d"), M));
        assert!(!one_of.is_met_by(&held(""), M));
    }

    #[test]
    fn or_flattens_into_sets() {
        let r = Requirement::any(["a", "b"]).or(Requirement::all(["c", "d"]));
        assert_eq!(r.form(), RequirementForm::OneOf);
        assert_eq!(r.sets(), [held("a"), held("b"), held("c d")]);
        assert_eq!(r.to_string(), "a or b or (c and d)");
        assert_eq!(r.challenge_scopes(), &held("a"));
        let same = Requirement::all(["a"]).or(Requirement::all(["a"]));
        assert_eq!(same, Requirement::all(["a"]));
        let apart = Requirement::all(["a"])
            .or(Requirement::all(["b"]))
            .or(Requirement::all(["a"]));
        assert_eq!(apart.sets(), [held("a"), held("b")]);
    }

    #[test]
    fn empty_and_invalid_are_construction_errors() {
        assert_eq!(
            Requirement::try_all(Vec::<&str>::new()),
            Err(ScopeError::Empty)
        );
        assert_eq!(
            Requirement::try_any(Vec::<&str>::new()),
            Err(ScopeError::Empty)
        );
        assert_eq!(
            Requirement::try_one_of(Vec::<Vec<&str>>::new()),
            Err(ScopeError::Empty)
        );
        assert_eq!(
            Requirement::try_one_of([vec!["a"], vec![]]),
            Err(ScopeError::Empty)
        );
        assert_eq!(
            Requirement::try_all(["a", "b c"]),
            Err(ScopeError::Invalid("b c".into()))
        );
    }

    #[test]
    #[should_panic(expected = "Requirement::all: invalid scope \"user:\"")]
    fn the_panic_names_the_scope() {
        let _ = Requirement::all(["user:"]);
    }

    #[test]
    fn display_names_the_form() {
        assert_eq!(Requirement::all(["b", "a"]).to_string(), "a and b");
        assert_eq!(Requirement::any(["b", "a"]).to_string(), "a or b");
        assert_eq!(Requirement::all(["a"]).to_string(), "a");
    }
}
