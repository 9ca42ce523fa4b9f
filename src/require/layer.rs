//! [`RequireScopesLayer`]: one route's requirement.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{ResponseFuture, Rule, accepted_scopes, check};
use crate::{
    lifecycle::Tokens,
    scope::{Requirement, ScopeError},
    store::ManageTokens,
};

/// Requires scopes of the token [`PatLayer`](crate::PatLayer) resolved (see the
/// [module](super) for the answers).
///
/// Build it from the application's [`Tokens`] ([`Tokens::require_all`] and friends) to
/// have its scopes checked against the registry at startup; the constructors here check
/// the syntax only.
#[derive(Clone, Debug)]
pub struct RequireScopesLayer {
    requirement: Arc<Requirement>,
    /// `X-Accepted-OAuth-Scopes`, when the scope headers are on.
    accepted: Option<HeaderValue>,
}

impl RequireScopesLayer {
    /// Requires `requirement`.
    pub fn new(requirement: Requirement) -> Self {
        Self {
            requirement: Arc::new(requirement),
            accepted: None,
        }
    }

    /// Adds GitHub's `X-OAuth-Scopes` (the token's scopes) and `X-Accepted-OAuth-Scopes`
    /// (every scope the requirement names) to the answer, on success and on 403. Off by
    /// default.
    pub fn scope_headers(mut self, on: bool) -> Self {
        self.accepted = on.then(|| accepted_scopes(Some(&self.requirement)));
        self
    }

    /// Requires every one of `scopes` ([`Requirement::all`]).
    ///
    /// # Panics
    ///
    /// When a scope is invalid (the message names it) or `scopes` is empty: a
    /// misconfigured route fails at startup.
    #[track_caller]
    pub fn all<I>(scopes: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::new(Requirement::all(scopes))
    }

    /// Requires at least one of `scopes` ([`Requirement::any`]).
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
        Self::new(Requirement::any(scopes))
    }

    /// Requires every one of `scopes`.
    ///
    /// # Errors
    ///
    /// [`ScopeError`] for an invalid scope or an empty list.
    pub fn try_all<I>(scopes: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Requirement::try_all(scopes).map(Self::new)
    }

    /// Requires at least one of `scopes`.
    ///
    /// # Errors
    ///
    /// [`ScopeError`] for an invalid scope or an empty list.
    pub fn try_any<I>(scopes: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Requirement::try_any(scopes).map(Self::new)
    }

    /// What the layer requires.
    pub fn requirement(&self) -> &Requirement {
        &self.requirement
    }
}

impl<S> Layer<S> for RequireScopesLayer {
    type Service = RequireScopes<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopes {
            inner,
            requirement: Arc::clone(&self.requirement),
            accepted: self.accepted.clone(),
        }
    }
}

impl<St: ManageTokens> Tokens<St> {
    /// A scope check requiring every one of `scopes`, each defined in the registry.
    ///
    /// # Panics
    ///
    /// When a scope is invalid or undefined (the message names it) or `scopes` is empty:
    /// a misspelt route scope fails at startup instead of refusing every token with 403.
    /// [`try_require`](Self::try_require) returns the error instead.
    #[track_caller]
    pub fn require_all<I>(&self, scopes: I) -> RequireScopesLayer
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.require(Requirement::all(scopes))
    }

    /// A scope check requiring at least one of `scopes`, each defined in the registry.
    ///
    /// # Panics
    ///
    /// As [`require_all`](Self::require_all).
    #[track_caller]
    pub fn require_any<I>(&self, scopes: I) -> RequireScopesLayer
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.require(Requirement::any(scopes))
    }

    /// A scope check requiring `requirement`, whose scopes must be defined in the
    /// registry.
    ///
    /// # Panics
    ///
    /// When a scope is undefined; the message names it.
    #[track_caller]
    pub fn require(&self, requirement: Requirement) -> RequireScopesLayer {
        match self.try_require(requirement) {
            Ok(value) => value,
            Err(e) => panic!("route requirement: {e}"),
        }
    }

    /// A scope check requiring `requirement`, whose scopes must be defined in the
    /// registry.
    ///
    /// # Errors
    ///
    /// [`ScopeError::Undefined`] naming the first undefined scope.
    pub fn try_require(&self, requirement: Requirement) -> Result<RequireScopesLayer, ScopeError> {
        self.registry().check(&requirement)?;
        Ok(RequireScopesLayer::new(requirement))
    }
}

/// The service [`RequireScopesLayer`] makes.
#[derive(Clone)]
pub struct RequireScopes<S> {
    inner: S,
    requirement: Arc<Requirement>,
    accepted: Option<HeaderValue>,
}

impl<S> RequireScopes<S> {
    /// Wraps `inner`, requiring `requirement`.
    pub fn new(inner: S, requirement: Requirement) -> Self {
        RequireScopesLayer::new(requirement).layer(inner)
    }

    /// Wraps `inner`, requiring every one of `scopes`.
    ///
    /// # Panics
    ///
    /// As [`RequireScopesLayer::all`].
    #[track_caller]
    pub fn all<I>(inner: S, scopes: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        RequireScopesLayer::all(scopes).layer(inner)
    }

    /// Wraps `inner`, requiring at least one of `scopes`.
    ///
    /// # Panics
    ///
    /// As [`RequireScopesLayer::any`].
    #[track_caller]
    pub fn any<I>(inner: S, scopes: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        RequireScopesLayer::any(scopes).layer(inner)
    }
}

impl<S: fmt::Debug> fmt::Debug for RequireScopes<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopes")
            .field("inner", &self.inner)
            .field("requirement", &self.requirement)
            .finish()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for RequireScopes<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Default + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let verdict = check(
            Rule::Require(&self.requirement),
            self.accepted.as_ref(),
            req.headers(),
            req.extensions(),
        );
        ResponseFuture::new(verdict, || self.inner.call(req))
    }
}
