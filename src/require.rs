//! [`RequireScopesLayer`]: lets a request through only when its token meets the
//! [`Requirement`] of a route (Passport's `CheckToken` and `CheckTokenForAnyScope`, and an
//! OR of ANDs).
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode, header::AUTHORIZATION};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pat::{MemoryStore, Tokens, scope::ScopeRegistry};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let registry = ScopeRegistry::new()
//!     .scope("orders:read", "See orders")
//!     .scope("orders:create", "Place orders");
//! let tokens = Tokens::new(MemoryStore::<i64>::new(), registry);
//! let reader = tokens.create(1, "reader", ["orders:read"]).await.unwrap();
//!
//! let svc = ServiceBuilder::new()
//!     .layer(tokens.layer())
//!     // Checked against the registry now: a misspelt scope panics here, naming it.
//!     .layer(tokens.require_all(["orders:read", "orders:create"]))
//!     .service(service_fn(|_: Request<String>| async {
//!         Ok::<_, Infallible>(Response::new(String::new()))
//!     }));
//!
//! let req = Request::builder()
//!     .header(AUTHORIZATION, format!("Bearer {}", reader.token.expose_secret()))
//!     .body(String::new())
//!     .unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! assert_eq!(
//!     res.headers()["www-authenticate"],
//!     r#"Bearer realm="api", error="insufficient_scope", scope="orders:create orders:read""#
//! );
//! # });
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    lifecycle::Tokens,
    record::{Granted, granted},
    reject::{RejectionKind, respond_without_layer},
    scope::{Requirement, ScopeError},
    store::ManageTokens,
};

/// Requires scopes of the token [`PatLayer`](crate::PatLayer) resolved.
///
/// Answers 403 `insufficient_scope` (gRPC 7 `PERMISSION_DENIED`) when the token falls
/// short, 401 when the request was let through without a token
/// ([`PatLayer::optional`](crate::PatLayer::optional)), and 500 (gRPC 13, logged at error
/// level) when there is no `PatLayer` in front: a wiring error must not let requests in.
/// Refusals are shaped by the `PatLayer`'s
/// [`rejection_body`](crate::PatLayer::rejection_body).
///
/// Build it from the application's [`Tokens`] ([`Tokens::require_all`] and friends) to
/// have its scopes checked against the registry at startup; the constructors here check
/// the syntax only.
#[derive(Clone)]
pub struct RequireScopesLayer {
    requirement: Arc<Requirement>,
}

impl fmt::Debug for RequireScopesLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopesLayer")
            .field("requirement", &self.requirement)
            .finish()
    }
}

impl RequireScopesLayer {
    /// Requires `requirement`.
    pub fn new(requirement: Requirement) -> Self {
        Self {
            requirement: Arc::new(requirement),
        }
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
        self.try_require(requirement)
            .unwrap_or_else(|e| panic!("route requirement: {e}"))
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

/// The verdict of a scope check on a request: `Ok` to pass it on, or the refusal. Shared
/// by every layer that checks scopes.
#[inline]
pub(crate) fn check<B: Default + 'static>(
    requirement: &Requirement,
    headers: &http::HeaderMap,
    extensions: &http::Extensions,
) -> Result<(), Response<B>> {
    let refuse = |kind, settings: Granted<'_>| {
        Err(settings
            .settings
            .refusals
            .respond(kind, Some(requirement), headers))
    };
    match granted(extensions) {
        None => {
            tracing::error!(
                "a scope check found no PatLayer in front of it; refusing with 500 (add PatLayer before RequireScopesLayer, or insert tokens with AccessToken::insert_into)"
            );
            Err(respond_without_layer(headers))
        }
        Some(grant @ Granted { scopes: None, .. }) => {
            refuse(RejectionKind::MissingCredentials, grant)
        }
        Some(
            grant @ Granted {
                scopes: Some(held), ..
            },
        ) => {
            if requirement.is_met_by(held, grant.settings.matching) {
                return Ok(());
            }
            tracing::debug!(required = %requirement, "token lacks required scopes");
            refuse(RejectionKind::InsufficientScope, grant)
        }
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
        match check(&self.requirement, req.headers(), req.extensions()) {
            Ok(()) => ResponseFuture::pass(self.inner.call(req)),
            Err(res) => ResponseFuture::refused(res),
        }
    }
}

pin_project! {
    /// The future of [`RequireScopes`]: the inner service's, or a refusal ready at once.
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Pass {
            #[pin]
            fut: F,
        },
        Refused {
            res: Option<Response<B>>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    #[inline]
    pub(crate) fn pass(fut: F) -> Self {
        Self {
            kind: Kind::Pass { fut },
        }
    }

    #[inline]
    pub(crate) fn refused(res: Response<B>) -> Self {
        Self {
            kind: Kind::Refused { res: Some(res) },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Pass { fut } => fut.poll(cx),
            KindProj::Refused { res } => {
                Poll::Ready(Ok(res.take().expect("polled after completion")))
            }
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
