//! [`RequireScopesLayer`]: lets a request through only when its token holds the scopes a
//! route requires (Passport's `CheckToken` and `CheckTokenForAnyScope`).
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode, header::AUTHORIZATION};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pat::{MemoryStore, RequireScopesLayer, Tokens, scope::ScopeRegistry};
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
//!     .layer(RequireScopesLayer::all(["orders:read", "orders:create"]))
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
    reject::{self, EmptyBody, Rejection, RejectionBody, RejectionKind},
    scope::{ScopeError, Scopes},
};

/// All of the scopes, or any one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every scope is required (Passport's `CheckToken`).
    All,
    /// One of the scopes is enough (Passport's `CheckTokenForAnyScope`).
    Any,
}

#[derive(Debug)]
struct Requirement {
    mode: Mode,
    scopes: Scopes,
}

/// Requires scopes of the token [`PatLayer`](crate::PatLayer) resolved.
///
/// Answers 403 `insufficient_scope` (gRPC 7 `PERMISSION_DENIED`) when the token falls
/// short, 401 when the request was let through without a token
/// ([`PatLayer::optional`](crate::PatLayer::optional)), and 500 (gRPC 13, logged at error
/// level) when there is no `PatLayer` in front: a wiring error must not let requests in.
pub struct RequireScopesLayer<H = EmptyBody> {
    requirement: Arc<Requirement>,
    hook: H,
}

impl<H: Clone> Clone for RequireScopesLayer<H> {
    fn clone(&self) -> Self {
        Self {
            requirement: Arc::clone(&self.requirement),
            hook: self.hook.clone(),
        }
    }
}

impl<H> fmt::Debug for RequireScopesLayer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopesLayer")
            .field("mode", &self.requirement.mode)
            .field("scopes", &self.requirement.scopes)
            .finish_non_exhaustive()
    }
}

fn requirement<I>(mode: Mode, scopes: I) -> Result<Arc<Requirement>, ScopeError>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let scopes = Scopes::try_from_iter(scopes)?;
    if scopes.is_empty() {
        return Err(ScopeError::Empty);
    }
    Ok(Arc::new(Requirement { mode, scopes }))
}

impl RequireScopesLayer {
    /// Requires every one of `scopes`.
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
        Self::try_all(scopes).unwrap_or_else(|e| panic!("RequireScopesLayer::all: {e}"))
    }

    /// Requires at least one of `scopes`.
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
        Self::try_any(scopes).unwrap_or_else(|e| panic!("RequireScopesLayer::any: {e}"))
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
        Ok(Self {
            requirement: requirement(Mode::All, scopes)?,
            hook: EmptyBody,
        })
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
        Ok(Self {
            requirement: requirement(Mode::Any, scopes)?,
            hook: EmptyBody,
        })
    }
}

impl<H> RequireScopesLayer<H> {
    /// Shapes the HTTP answer to a refused request; the crate still sets the status and
    /// the challenge. See [`RejectionBody`].
    pub fn rejection_body<H2>(self, hook: H2) -> RequireScopesLayer<H2> {
        RequireScopesLayer {
            requirement: self.requirement,
            hook,
        }
    }

    /// The required scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.requirement.scopes
    }

    /// Whether all or any of them are required.
    pub fn mode(&self) -> Mode {
        self.requirement.mode
    }
}

impl<S, H: Clone> Layer<S> for RequireScopesLayer<H> {
    type Service = RequireScopes<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopes {
            inner,
            requirement: Arc::clone(&self.requirement),
            hook: self.hook.clone(),
        }
    }
}

/// The service [`RequireScopesLayer`] makes.
pub struct RequireScopes<S, H = EmptyBody> {
    inner: S,
    requirement: Arc<Requirement>,
    hook: H,
}

impl<S> RequireScopes<S> {
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

impl<S: Clone, H: Clone> Clone for RequireScopes<S, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            requirement: Arc::clone(&self.requirement),
            hook: self.hook.clone(),
        }
    }
}

impl<S: fmt::Debug, H> fmt::Debug for RequireScopes<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopes")
            .field("inner", &self.inner)
            .field("mode", &self.requirement.mode)
            .field("scopes", &self.requirement.scopes)
            .finish_non_exhaustive()
    }
}

impl<S, H, ReqB, ResB> Service<Request<ReqB>> for RequireScopes<S, H>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    H: RejectionBody<ResB>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let req_scopes = &self.requirement;
        let granted = crate::auth::granted(req.extensions());
        let kind = match granted {
            None => {
                tracing::error!(
                    "RequireScopes found no PatLayer in front of it; refusing with 500 (add PatLayer before RequireScopesLayer)"
                );
                RejectionKind::MissingLayer
            }
            Some((None, _)) => RejectionKind::MissingCredentials,
            Some((Some(held), settings)) => {
                let ok = match req_scopes.mode {
                    Mode::All => held.grants_all(&req_scopes.scopes, settings.matching),
                    Mode::Any => held.grants_any(&req_scopes.scopes, settings.matching),
                };
                if ok {
                    return ResponseFuture {
                        kind: Kind::Pass {
                            fut: self.inner.call(req),
                        },
                    };
                }
                tracing::debug!(required = %req_scopes.scopes, "token lacks required scopes");
                RejectionKind::InsufficientScope
            }
        };
        let realm = granted.map_or(crate::auth::DEFAULT_REALM, |(_, settings)| &settings.realm);
        let rejection = Rejection::new(kind, realm, Some(&req_scopes.scopes));
        let res = reject::respond(&self.hook, reject::is_grpc(req.headers()), &rejection, None);
        ResponseFuture {
            kind: Kind::Refused { res: Some(res) },
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
