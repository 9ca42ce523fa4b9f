//! Scope checks: [`RequireScopesLayer`] guards one route (Passport's `CheckToken` and
//! `CheckTokenForAnyScope`, and an OR of ANDs); [`ScopeMapLayer`] guards a whole server by
//! path — every method of a tonic server, or the paths of a hyper server without a
//! router — from one table.
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
//!
//! Both answer 403 `insufficient_scope` (gRPC 7 `PERMISSION_DENIED`, naming what was
//! required) when the token falls short, 401 when the request was let through without a
//! token ([`PatLayer::optional`](crate::PatLayer::optional)), and 500 (gRPC 13, logged at
//! error level) when there is no `PatLayer` in front: a wiring error must not let
//! requests in. Rejections are shaped by the `PatLayer`'s
//! [`rejection_body`](crate::PatLayer::rejection_body).
//!
//! With `scope_headers(true)` both add GitHub's headers to the answer, on success and on
//! 403: `X-OAuth-Scopes` (the token's scopes) and `X-Accepted-OAuth-Scopes` (the scopes
//! the route names), so a client can see why a call failed.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Response};
use pin_project_lite::pin_project;

use crate::{
    metrics::ScopeMetrics,
    record::{AdmissionRef, admission},
    reject::{RejectionKind, reject_without_layer},
    scope::{Requirement, Scopes},
};

mod layer;
mod map;

pub use layer::{RequireScopes, RequireScopesLayer};
pub use map::{MapError, ScopeMap, ScopeMapLayer, Unmapped};

/// GitHub's header with the token's scopes.
pub const X_OAUTH_SCOPES: HeaderName = HeaderName::from_static("x-oauth-scopes");

/// GitHub's header with the scopes the route accepts.
pub const X_ACCEPTED_OAUTH_SCOPES: HeaderName = HeaderName::from_static("x-accepted-oauth-scopes");

/// What a route asks of a request: what a scope check applies, and what
/// [`ScopeMapLayer::rule_for`] tells of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule<'a> {
    /// A token that meets the requirement.
    Require(&'a Requirement),
    /// A token, any scopes.
    Authenticated,
    /// Nothing gets through (an unmapped path that is denied).
    Deny,
}

/// The value of `X-Accepted-OAuth-Scopes` for a requirement: every scope it names,
/// comma-separated, in order, once each.
pub(crate) fn accepted_scopes(requirement: Option<&Requirement>) -> HeaderValue {
    let names: Scopes = requirement
        .map(|r| {
            r.sets()
                .iter()
                .flat_map(|set| set.iter().cloned())
                .collect()
        })
        .unwrap_or_default();
    comma_separated(&names)
}

/// `a, b, c`: how GitHub lists scopes in its headers. Scope names are visible ASCII.
fn comma_separated(scopes: &Scopes) -> HeaderValue {
    let text = scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The two headers of a request that reached a scope check with a token.
#[derive(Clone, Debug)]
pub(crate) struct ScopeHeaders {
    token: HeaderValue,
    accepted: HeaderValue,
}

impl ScopeHeaders {
    fn stamp(self, headers: &mut HeaderMap) {
        headers.insert(X_OAUTH_SCOPES, self.token);
        headers.insert(X_ACCEPTED_OAUTH_SCOPES, self.accepted);
    }
}

/// The verdict of a scope check on a request. Shared by every layer that checks scopes.
pub(crate) enum Verdict<B> {
    /// Pass it on, with the scope headers to add to the answer when they are asked for.
    Pass(Option<Box<ScopeHeaders>>),
    /// The rejection (boxed: the future stays small for the common case).
    Reject(Box<Response<B>>),
}

/// Judges a request by `rule`.
#[inline]
pub(crate) fn check<B: Default + 'static>(
    rule: Rule<'_>,
    accepted: Option<&HeaderValue>,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Verdict<B> {
    let Some(admission) = admission(extensions) else {
        tracing::error!(
            "a scope check found no PatLayer in front of it; rejecting with 500 (add PatLayer before the scope check, or insert tokens with AccessToken::insert_into)"
        );
        crate::metrics::scope_without_layer();
        return Verdict::Reject(Box::new(reject_without_layer(headers)));
    };
    let requirement = match rule {
        Rule::Require(requirement) => Some(requirement),
        Rule::Authenticated | Rule::Deny => None,
    };
    let reject = |kind, admission: AdmissionRef<'_>| {
        ScopeMetrics::refused(admission.settings.scope_metrics.as_ref(), kind);
        Verdict::Reject(Box::new(admission.settings.rejector.reject(
            kind,
            requirement,
            headers,
        )))
    };
    let Some(held) = admission.scopes else {
        return reject(RejectionKind::MissingCredentials, admission);
    };
    let scope_headers = accepted.map(|accepted| {
        Box::new(ScopeHeaders {
            token: comma_separated(held),
            accepted: accepted.clone(),
        })
    });
    let met = match rule {
        Rule::Require(requirement) => requirement.is_met_by(held, admission.matching),
        Rule::Authenticated => true,
        Rule::Deny => false,
    };
    if met {
        return Verdict::Pass(scope_headers);
    }
    match requirement {
        Some(requirement) => {
            tracing::debug!(required = %requirement, "token lacks required scopes")
        }
        None => tracing::debug!("no scope grants this path"),
    }
    ScopeMetrics::refused(
        admission.settings.scope_metrics.as_ref(),
        RejectionKind::InsufficientScope,
    );
    let mut res =
        admission
            .settings
            .rejector
            .reject(RejectionKind::InsufficientScope, requirement, headers);
    if let Some(scope_headers) = scope_headers {
        scope_headers.stamp(res.headers_mut());
    }
    Verdict::Reject(Box::new(res))
}

pin_project! {
    /// The future of a scope check: the inner service's, or a rejection ready at once.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Pass {
            #[pin]
            fut: F,
            // Boxed: the common case (no scope headers) keeps the future small.
            scope_headers: Option<Box<ScopeHeaders>>,
        },
        // Boxed too: a rejection is rarer than a pass, and the future stays small.
        Rejected {
            res: Option<Box<Response<B>>>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    /// The answer of a scope check that ran: the inner service's, or the rejection.
    #[inline]
    pub(crate) fn new(verdict: Verdict<B>, call: impl FnOnce() -> F) -> Self {
        let state = match verdict {
            Verdict::Pass(scope_headers) => State::Pass {
                fut: call(),
                scope_headers,
            },
            Verdict::Reject(res) => State::Rejected { res: Some(res) },
        };
        Self { state }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Pass { fut, scope_headers } => {
                let mut res = match fut.poll(cx) {
                    Poll::Ready(res) => res,
                    Poll::Pending => return Poll::Pending,
                };
                if let (Ok(res), Some(scope_headers)) = (&mut res, scope_headers.take().map(|h| *h))
                {
                    scope_headers.stamp(res.headers_mut());
                }
                Poll::Ready(res)
            }
            StateProj::Rejected { res } => {
                Poll::Ready(Ok(*res.take().expect("polled after completion")))
            }
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
