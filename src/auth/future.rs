//! [`ResponseFuture`]: the inner service's future, a rejection ready at once, or a store
//! lookup to wait for first.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{
    admit::{Presentation, Shared, Stamp, verdict},
    config::bounded,
    credentials::Candidate,
};
use crate::{
    credential::Presented,
    metrics::Started,
    store::{Lookup, TokenStore},
};

/// A request waiting for the store's answer, with the readied inner service.
pub(super) struct Pending<S, St, ReqB> {
    pub(super) presented: Presented,
    pub(super) candidate: Candidate,
    pub(super) req: Request<ReqB>,
    pub(super) inner: S,
    pub(super) shared: Arc<Shared<St>>,
}

type PendingLookup<U> = BoxFuture<'static, Lookup<U>>;

pin_project! {
    /// The future of [`Pat`](super::Pat).
    pub struct ResponseFuture<S, St, ReqB>
    where
        S: Service<Request<ReqB>>,
        St: TokenStore,
    {
        #[pin]
        state: State<S, St, ReqB>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, St, ReqB>
    where
        S: Service<Request<ReqB>>,
        St: TokenStore,
    {
        Lookup {
            fut: PendingLookup<St::UserId>,
            pending: Option<Box<Pending<S, St, ReqB>>>,
        },
        Inner {
            #[pin]
            fut: S::Future,
            stamp: Option<Box<Stamp>>,
        },
        // Boxed, as the pending lookup is: the future a hot request carries stays the
        // size of the inner service's.
        Done {
            res: Option<Box<S::Response>>,
        },
    }
}

impl<S, St, ReqB> ResponseFuture<S, St, ReqB>
where
    S: Service<Request<ReqB>>,
    St: TokenStore,
{
    #[inline]
    pub(super) fn inner(fut: S::Future, stamp: Option<Stamp>) -> Self {
        Self {
            state: State::Inner {
                fut,
                stamp: stamp.map(Box::new),
            },
        }
    }

    #[inline]
    pub(super) fn done(res: S::Response) -> Self {
        Self {
            state: State::Done {
                res: Some(Box::new(res)),
            },
        }
    }

    /// Asks the store (within the store timeout, if one is set).
    pub(super) fn lookup(pending: Box<Pending<S, St, ReqB>>) -> Self {
        let shared = Arc::clone(&pending.shared);
        let presented = pending.presented.clone();
        let fut = Box::pin(async move {
            let started = Started::now();
            let found = bounded(
                shared.store_timeout.as_ref(),
                shared.store.find_presented(&presented),
            )
            .await;
            shared.metrics.waited(started);
            shared.metrics.looked_up(&found);
            found
        });
        Self {
            state: State::Lookup {
                fut,
                pending: Some(pending),
            },
        }
    }
}

impl<S, St, ReqB, ResB> Future for ResponseFuture<S, St, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    St: TokenStore,
    ResB: Default + 'static,
{
    type Output = Result<Response<ResB>, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Inner { fut, stamp } => {
                    let mut res = ready!(fut.poll(cx));
                    if let (Ok(res), Some(stamp)) = (&mut res, stamp.take()) {
                        stamp.apply(res);
                    }
                    return Poll::Ready(res);
                }
                StateProj::Done { res } => {
                    return Poll::Ready(Ok(*res.take().expect("polled after completion")));
                }
                StateProj::Lookup { fut, pending } => {
                    let found = ready!(fut.as_mut().poll(cx));
                    let Pending {
                        presented,
                        candidate,
                        mut req,
                        mut inner,
                        shared,
                    } = *pending.take().expect("polled after completion");
                    let now = shared.clock.unix_nanos();
                    let at = Presentation {
                        hash: presented.key(),
                        candidate,
                        now,
                        idle: shared.idle,
                    };
                    match verdict(at, found) {
                        Ok(record) => {
                            let stamp = shared.admit(record, now, &mut req);
                            State::Inner {
                                fut: inner.call(req),
                                stamp: stamp.map(Box::new),
                            }
                        }
                        Err(refused) => State::Done {
                            res: Some(Box::new(shared.refuse(refused, &req))),
                        },
                    }
                }
            };
            this.state.set(next);
        }
    }
}

impl<S, St, ReqB> fmt::Debug for ResponseFuture<S, St, ReqB>
where
    S: Service<Request<ReqB>>,
    St: TokenStore,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
