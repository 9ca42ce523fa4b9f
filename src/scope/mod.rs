//! Scopes: validated names, sets of them, the registry of the ones an application
//! defines, the rules that say when a token's scopes satisfy a route, and the
//! [`Requirement`] a route states.
//!
//! ```
//! use tower_pat::scope::{ScopeRegistry, Scopes};
//!
//! // Passport's `tokensCan` and `defaultScopes`.
//! let registry = ScopeRegistry::new()
//!     .scope("user:read", "Retrieve the user info")
//!     .scope("orders:create", "Place orders")
//!     .scope("orders:read:status", "Check order status")
//!     .default_scopes(["user:read", "orders:create"]);
//!
//! // No scopes asked for: the defaults.
//! let granted = registry.resolve(Vec::<&str>::new()).unwrap();
//! assert_eq!(granted.to_string(), "orders:create user:read");
//!
//! // An undefined scope is an error that names it.
//! let err = registry.resolve(["orders:delete"]).unwrap_err();
//! assert!(err.to_string().contains("orders:delete"));
//! ```

use std::{borrow::Borrow, error::Error, fmt, ops::Deref, str::FromStr, sync::Arc};

mod registry;
mod requirement;

pub use registry::ScopeRegistry;
pub use requirement::{Requirement, RequirementForm};

/// One scope: a non-empty string of the characters RFC 6749 §3.3 allows in a
/// `scope-token` (`%x21 / %x23-5B / %x5D-7E`: printable ASCII except space, `"` and `\`),
/// with two rules of this crate on top:
///
/// - `:` separates levels (`orders:read:status`), so no level is empty: `user:`,
///   `:read` and `a::b` are refused;
/// - `*` is the wildcard and only that: a name is `*` alone or holds no `*` (`user:*`,
///   `*user` and `**` are refused).
///
/// Comparison is exact and case-sensitive. Cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(Arc<str>);

impl Scope {
    /// The scope that grants every other one, where the registry allows it.
    pub const WILDCARD: &'static str = "*";

    /// Validates a scope name.
    ///
    /// # Errors
    ///
    /// [`ScopeError::Invalid`], naming the input, when it is empty or has a character
    /// outside the RFC 6749 `scope-token` set; [`ScopeError::EmptyLevel`] for an empty
    /// level around `:`; [`ScopeError::MisplacedWildcard`] for a `*` that is not the whole
    /// name.
    pub fn new(name: &str) -> Result<Self, ScopeError> {
        if !is_scope_token(name) {
            return Err(ScopeError::Invalid(name.to_owned()));
        }
        if name != Self::WILDCARD && name.contains('*') {
            return Err(ScopeError::MisplacedWildcard(name.to_owned()));
        }
        if name.split(':').any(str::is_empty) {
            return Err(ScopeError::EmptyLevel(name.to_owned()));
        }
        Ok(Self(Arc::from(name)))
    }

    /// Whether this is the wildcard, `*`.
    pub fn is_wildcard(&self) -> bool {
        &*self.0 == Self::WILDCARD
    }

    /// The scope's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether holding `self` satisfies a requirement of `required` under `matching`.
    pub fn grants(&self, required: &str, matching: ScopeMatching) -> bool {
        grants(&self.0, required, matching)
    }
}

/// Whether `s` matches RFC 6749's `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )` (the
/// grammar alone: [`Scope::new`] adds the rules on `:` and `*`).
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

fn grants(held: &str, required: &str, matching: ScopeMatching) -> bool {
    if held == required {
        return true;
    }
    if matching.wildcard && held == Scope::WILDCARD {
        return true;
    }
    matching.inheritance
        && required.len() > held.len()
        && required.starts_with(held)
        && required.as_bytes()[held.len()] == b':'
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Deref for Scope {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Scope {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Scope {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for Scope {
    type Error = ScopeError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for Scope {
    type Error = ScopeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

/// When a held scope satisfies a required one, beyond exact equality.
///
/// Both rules are off by default; [`ScopeRegistry`] turns them on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScopeMatching {
    /// A held `*` satisfies every requirement.
    pub wildcard: bool,
    /// A held `orders` satisfies `orders:create` and `orders:read:status`; a held
    /// `orders:read` satisfies `orders:read:status` (`:` separates the levels).
    pub inheritance: bool,
}

impl ScopeMatching {
    /// Exact matching only: the default.
    pub const EXACT: Self = Self {
        wildcard: false,
        inheritance: false,
    };

    /// With `*` granting everything.
    pub const fn with_wildcard(mut self, on: bool) -> Self {
        self.wildcard = on;
        self
    }

    /// With `a` granting `a:b`.
    pub const fn with_inheritance(mut self, on: bool) -> Self {
        self.inheritance = on;
        self
    }
}

/// A set of scopes, sorted and without duplicates. Cheap to clone.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Scopes(Arc<[Scope]>);

impl Scopes {
    /// The empty set.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Validates every name and builds the set.
    ///
    /// # Errors
    ///
    /// [`ScopeError::Invalid`] naming the first invalid one.
    pub fn try_from_iter<I>(names: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let scopes = names
            .into_iter()
            .map(|n| Scope::new(n.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from(scopes))
    }

    /// Parses the space-delimited form of RFC 6749 (`"a b c"`), as used in the `scope`
    /// parameter and the `WWW-Authenticate` challenge. Runs of spaces are tolerated.
    ///
    /// # Errors
    ///
    /// [`ScopeError::Invalid`] naming the first invalid token.
    pub fn parse_space_delimited(s: &str) -> Result<Self, ScopeError> {
        Self::try_from_iter(s.split(' ').filter(|p| !p.is_empty()))
    }

    /// Whether the set holds exactly this scope (no wildcard or inheritance).
    pub fn contains(&self, scope: &str) -> bool {
        self.0.binary_search_by(|s| (**s).cmp(scope)).is_ok()
    }

    /// Whether any held scope satisfies `required` under `matching`.
    pub fn grants(&self, required: &str, matching: ScopeMatching) -> bool {
        if self.contains(required) {
            return true;
        }
        (matching.wildcard || matching.inheritance)
            && self.0.iter().any(|h| grants(h, required, matching))
    }

    /// Whether every scope of `required` is satisfied.
    pub fn grants_all<'a, I>(&self, required: I, matching: ScopeMatching) -> bool
    where
        I: IntoIterator<Item = &'a Scope>,
    {
        required.into_iter().all(|r| self.grants(r, matching))
    }

    /// Whether at least one scope of `required` is satisfied.
    pub fn grants_any<'a, I>(&self, required: I, matching: ScopeMatching) -> bool
    where
        I: IntoIterator<Item = &'a Scope>,
    {
        required.into_iter().any(|r| self.grants(r, matching))
    }

    /// The scopes, sorted.
    pub fn iter(&self) -> std::slice::Iter<'_, Scope> {
        self.0.iter()
    }

    /// How many scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scopes as a slice, sorted.
    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }
}

impl From<Vec<Scope>> for Scopes {
    fn from(mut v: Vec<Scope>) -> Self {
        v.sort_unstable();
        v.dedup();
        Self(v.into())
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl<'a> IntoIterator for &'a Scopes {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter()).finish()
    }
}

/// The space-delimited form: `"orders:create user:read"`.
impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
        }
        Ok(())
    }
}

impl FromStr for Scopes {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_space_delimited(s)
    }
}

/// A scope name that was refused. The message names it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeError {
    /// Not a valid RFC 6749 `scope-token`.
    Invalid(String),
    /// A level around `:` is empty (`user:`, `:read`, `a::b`).
    EmptyLevel(String),
    /// A `*` that is not the whole name (`user:*`, `*user`, `**`).
    MisplacedWildcard(String),
    /// `*` registered as an ordinary scope: it is the wildcard, turned on with
    /// [`ScopeRegistry::allow_wildcard`].
    WildcardDefined,
    /// Valid, but not defined in the [`ScopeRegistry`].
    Undefined(String),
    /// A requirement with no scopes at all (which would allow everything).
    Empty,
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(s) => write!(
                f,
                "invalid scope {s:?}: a scope is one or more printable ASCII characters other than space, '\"' and '\\'"
            ),
            Self::EmptyLevel(s) => write!(
                f,
                "invalid scope {s:?}: `:` separates levels, and no level may be empty"
            ),
            Self::MisplacedWildcard(s) => write!(
                f,
                "invalid scope {s:?}: `*` is the wildcard and must be the whole name"
            ),
            Self::WildcardDefined => f.write_str(
                "`*` cannot be defined as a scope: it is the wildcard, turned on with ScopeRegistry::allow_wildcard(true)",
            ),
            Self::Undefined(s) => {
                write!(f, "undefined scope {s:?}: define it in the ScopeRegistry")
            }
            Self::Empty => f.write_str("no scopes given: a scope requirement needs at least one"),
        }
    }
}

impl Error for ScopeError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> Scopes {
        Scopes::try_from_iter(names).unwrap()
    }

    #[test]
    fn scope_syntax_follows_rfc_6749() {
        for ok in ["a", "orders:create", "*", "!#[]^~", "a/b.c-d_e"] {
            assert!(Scope::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a\"b", "a\\b", "é", "a\tb", "\u{7f}"] {
            let err = Scope::new(bad).unwrap_err();
            assert_eq!(err, ScopeError::Invalid(bad.to_owned()));
        }
    }

    #[test]
    fn levels_are_never_empty() {
        for bad in ["user:", ":read", "a::b", ":", "::", "a:b:"] {
            let err = Scope::new(bad).unwrap_err();
            assert_eq!(err, ScopeError::EmptyLevel(bad.to_owned()));
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert!(Scope::new("a:b:c").is_ok());
    }

    #[test]
    fn the_wildcard_is_a_whole_name_or_nothing() {
        assert!(Scope::new("*").unwrap().is_wildcard());
        for bad in ["user:*", "*user", "**", "a*b", "*:read"] {
            let err = Scope::new(bad).unwrap_err();
            assert_eq!(err, ScopeError::MisplacedWildcard(bad.to_owned()));
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn exact_matching_is_case_sensitive_and_ignores_star_and_levels() {
        let held = set(&["orders", "*", "User:read"]);
        let m = ScopeMatching::EXACT;
        assert!(held.grants("orders", m));
        assert!(!held.grants("orders:create", m));
        assert!(!held.grants("user:read", m));
        assert!(held.grants("*", m));
        assert!(!held.grants("anything", m));
    }

    #[test]
    fn wildcard_and_inheritance_are_opt_in() {
        let m = ScopeMatching::EXACT.with_wildcard(true);
        assert!(set(&["*"]).grants("anything", m));
        let m = ScopeMatching::EXACT.with_inheritance(true);
        let held = set(&["orders"]);
        assert!(held.grants("orders:create", m));
        assert!(held.grants("orders:read:status", m));
        assert!(!held.grants("ordersx", m));
        assert!(!held.grants("order", m));
        assert!(set(&["orders:read"]).grants("orders:read:status", m));
        assert!(!set(&["orders:read"]).grants("orders:create", m));
        assert!(!set(&["orders:read:status"]).grants("orders:read", m));
    }

    #[test]
    fn all_and_any() {
        let held = set(&["a", "b"]);
        let m = ScopeMatching::EXACT;
        assert!(held.grants_all(&set(&["a", "b"]), m));
        assert!(!held.grants_all(&set(&["a", "c"]), m));
        assert!(held.grants_any(&set(&["c", "b"]), m));
        assert!(!held.grants_any(&set(&["c", "d"]), m));
    }

    #[test]
    fn sets_sort_dedup_and_print_space_delimited() {
        let s = Scopes::parse_space_delimited("b  a b").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.to_string(), "a b");
        assert!(Scopes::parse_space_delimited("a \"b").is_err());
    }
}
