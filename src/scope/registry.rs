//! [`ScopeRegistry`]: the scopes an application defines.

use super::{Requirement, Scope, ScopeError, ScopeMatching, Scopes};

/// The scopes an application defines, with descriptions (Passport's `tokensCan`), the
/// ones a token gets when none are asked for (`defaultScopes`), and the matching rules.
///
/// The builder methods panic on an invalid or undefined name, naming it: a registry is
/// built at startup, where that is the clearest failure. The `try_` twins return errors.
#[derive(Clone, Debug, Default)]
pub struct ScopeRegistry {
    defined: Vec<(Scope, String)>,
    defaults: Scopes,
    matching: ScopeMatching,
}

impl ScopeRegistry {
    /// An empty registry: no scopes, no defaults, exact matching.
    pub fn new() -> Self {
        Self::default()
    }

    /// Defines a scope with its description (redefining one replaces the description).
    ///
    /// # Panics
    ///
    /// When `name` is not a valid scope, or is `*`; the message names it.
    #[track_caller]
    pub fn scope(self, name: &str, description: impl Into<String>) -> Self {
        match self.try_scope(name, description) {
            Ok(value) => value,
            Err(e) => panic!("{e}"),
        }
    }

    /// Defines a scope with its description.
    ///
    /// # Errors
    ///
    /// [`ScopeError`] when `name` is not a valid scope, and
    /// [`ScopeError::WildcardDefined`] for `*` (turn the wildcard on with
    /// [`allow_wildcard`](Self::allow_wildcard) instead).
    pub fn try_scope(
        mut self,
        name: &str,
        description: impl Into<String>,
    ) -> Result<Self, ScopeError> {
        let scope = Scope::new(name)?;
        if scope.is_wildcard() {
            return Err(ScopeError::WildcardDefined);
        }
        let description = description.into();
        match self.defined.iter_mut().find(|(s, _)| *s == scope) {
            Some(slot) => slot.1 = description,
            None => self.defined.push((scope, description)),
        }
        Ok(self)
    }

    /// The scopes a token gets when it is created without any.
    ///
    /// # Panics
    ///
    /// When a name is invalid or not defined; the message names it.
    #[track_caller]
    pub fn default_scopes<I>(self, names: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        match self.try_default_scopes(names) {
            Ok(value) => value,
            Err(e) => panic!("{e}"),
        }
    }

    /// The scopes a token gets when it is created without any.
    ///
    /// # Errors
    ///
    /// [`ScopeError`] naming the first invalid or undefined name.
    pub fn try_default_scopes<I>(mut self, names: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let scopes = Scopes::try_from_iter(names)?;
        self.check_defined(&scopes)?;
        self.defaults = scopes;
        Ok(self)
    }

    /// Lets tokens be created with `*`, and makes a held `*` satisfy every requirement.
    /// Off by default.
    pub fn allow_wildcard(mut self, on: bool) -> Self {
        self.matching.wildcard = on;
        self
    }

    /// Makes a held `orders` satisfy `orders:create` (levels separated by `:`).
    /// Off by default.
    pub fn inheritance(mut self, on: bool) -> Self {
        self.matching.inheritance = on;
        self
    }

    /// The matching rules tokens are checked with.
    pub fn matching(&self) -> ScopeMatching {
        self.matching
    }

    /// The defined scopes and their descriptions, in the order they were defined
    /// (Passport's `scopes()`).
    pub fn scopes(&self) -> impl Iterator<Item = (&Scope, &str)> {
        self.defined.iter().map(|(s, d)| (s, d.as_str()))
    }

    /// The description of a defined scope.
    pub fn description(&self, name: &str) -> Option<&str> {
        self.defined
            .iter()
            .find(|(s, _)| s.as_str() == name)
            .map(|(_, d)| d.as_str())
    }

    /// The default scopes.
    pub fn defaults(&self) -> &Scopes {
        &self.defaults
    }

    /// Whether tokens may be created with this scope.
    pub fn is_defined(&self, name: &str) -> bool {
        (self.matching.wildcard && name == Scope::WILDCARD)
            || self.defined.iter().any(|(s, _)| s.as_str() == name)
    }

    /// The scopes a new token gets for a request of `requested`: the defaults when the
    /// request is empty, else exactly the requested ones, each of which must be defined.
    ///
    /// # Errors
    ///
    /// [`ScopeError`] naming the first invalid or undefined scope.
    pub fn resolve<I>(&self, requested: I) -> Result<Scopes, ScopeError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let scopes = Scopes::try_from_iter(requested)?;
        if scopes.is_empty() {
            return Ok(self.defaults.clone());
        }
        self.check_defined(&scopes)?;
        Ok(scopes)
    }

    /// Checks that every scope `requirement` names is defined, so that a misspelt route
    /// scope fails at startup instead of refusing every token with 403.
    ///
    /// ```
    /// use tower_pat::scope::{Requirement, ScopeRegistry};
    ///
    /// let registry = ScopeRegistry::new().scope("orders:read", "See orders");
    /// assert!(registry.check(&Requirement::all(["orders:read"])).is_ok());
    /// let err = registry.check(&Requirement::all(["order:read"])).unwrap_err();
    /// assert_eq!(err.to_string(), r#"undefined scope "order:read": define it in the ScopeRegistry"#);
    /// ```
    ///
    /// # Errors
    ///
    /// [`ScopeError::Undefined`] naming the first undefined scope.
    pub fn check(&self, requirement: &Requirement) -> Result<(), ScopeError> {
        requirement
            .sets()
            .iter()
            .try_for_each(|set| self.check_defined(set))
    }

    fn check_defined(&self, scopes: &Scopes) -> Result<(), ScopeError> {
        match scopes.iter().find(|s| !self.is_defined(s)) {
            Some(undefined) => Err(ScopeError::Undefined(undefined.to_string())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> Scopes {
        Scopes::try_from_iter(names).unwrap()
    }

    #[test]
    fn registry_defaults_and_undefined() {
        let r = ScopeRegistry::new()
            .scope("user:read", "Retrieve the user info")
            .scope("orders:create", "Place orders")
            .default_scopes(["user:read"]);
        assert_eq!(
            r.resolve(Vec::<String>::new()).unwrap(),
            set(&["user:read"])
        );
        assert_eq!(
            r.resolve(["orders:create"]).unwrap(),
            set(&["orders:create"])
        );
        assert_eq!(
            r.resolve(["nope"]).unwrap_err(),
            ScopeError::Undefined("nope".into())
        );
        assert_eq!(
            r.resolve(["*"]).unwrap_err(),
            ScopeError::Undefined("*".into())
        );
        let r = r.allow_wildcard(true);
        assert_eq!(r.resolve(["*"]).unwrap(), set(&["*"]));
        assert_eq!(r.description("user:read"), Some("Retrieve the user info"));
        let names: Vec<_> = r.scopes().map(|(s, _)| s.as_str()).collect();
        assert_eq!(names, ["user:read", "orders:create"]);
    }

    #[test]
    fn the_wildcard_is_never_an_ordinary_scope() {
        let err = ScopeRegistry::new()
            .try_scope("*", "everything")
            .unwrap_err();
        assert_eq!(err, ScopeError::WildcardDefined);
        assert!(err.to_string().contains("allow_wildcard"), "{err}");
        let err = ScopeRegistry::new().try_scope("user:*", "x").unwrap_err();
        assert_eq!(err, ScopeError::MisplacedWildcard("user:*".into()));
    }

    #[test]
    fn requirements_are_checked_against_the_definitions() {
        let r = ScopeRegistry::new()
            .scope("repo:read", "Read")
            .scope("repo:write", "Write")
            .scope("admin", "Everything");
        let ok = Requirement::all(["repo:read", "repo:write"]).or(Requirement::all(["admin"]));
        assert_eq!(r.check(&ok), Ok(()));
        let misspelt = Requirement::all(["repo:read"]).or(Requirement::any(["admn"]));
        assert_eq!(
            r.check(&misspelt),
            Err(ScopeError::Undefined("admn".into()))
        );
        assert!(r.check(&Requirement::all(["*"])).is_err());
        assert!(
            r.allow_wildcard(true)
                .check(&Requirement::all(["*"]))
                .is_ok()
        );
    }

    #[test]
    #[should_panic(expected = "undefined scope \"orders:read\"")]
    fn undefined_default_panics_with_its_name() {
        let _ = ScopeRegistry::new().default_scopes(["orders:read"]);
    }
}
