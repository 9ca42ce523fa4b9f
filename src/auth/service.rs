//! [`Pat`], the service: finds the presented token, asks the store, and admits or rejects
//! the request on the [`verdict`](super::admit::verdict).

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use super::{
    admit::{Shared, verdict},
    credentials,
    future::{Pending, ResponseFuture},
};
use crate::{record::admit_anonymous, reject::RejectionKind, store::TokenStore};

/// The service [`PatLayer`](super::PatLayer) makes.
pub struct Pat<S, St> {
    inner: S,
    shared: Arc<Shared<St>>,
}

impl<S, St> Pat<S, St> {
    pub(super) fn new(inner: S, shared: Arc<Shared<St>>) -> Self {
        Self { inner, shared }
    }
}

impl<S: Clone, St> Clone for Pat<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, St> fmt::Debug for Pat<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pat")
            .field("inner", &self.inner)
            .field("settings", &self.shared.settings)
            .field("optional", &self.shared.optional)
            .finish_non_exhaustive()
    }
}

impl<S, St, ReqB, ResB> Service<Request<ReqB>> for Pat<S, St>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    St: TokenStore,
    ResB: Default + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, St, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let shared = &self.shared;
        let hash = match credentials::presented(&mut req, &shared.credentials) {
            Ok(Some(hash)) => hash,
            Ok(None) if shared.optional => {
                admit_anonymous(req.extensions_mut(), Arc::clone(&shared.settings));
                // Called right away: the readied service itself, no clone needed.
                return ResponseFuture::inner(self.inner.call(req));
            }
            Ok(None) => {
                return ResponseFuture::done(
                    shared.reject(RejectionKind::MissingCredentials, &req),
                );
            }
            Err(kind) => return ResponseFuture::done(shared.reject(kind, &req)),
        };
        // A store that answers at once (a map, a warm cache) costs no future and no box.
        // A token it found is real; anything else gets the rest of the offline verdict
        // (charset, checksum) before it is answered or a store is asked to wait.
        let found = shared.store.find_ready(&hash);
        if !matches!(found, Some(Ok(Some(_))))
            && let Err(kind) = credentials::checked_offline(&req, &shared.credentials)
        {
            return ResponseFuture::done(shared.reject(kind, &req));
        }
        match found {
            Some(found) => {
                let now = shared.clock.unix_nanos();
                match verdict(&hash, found, now) {
                    Ok(record) => {
                        shared.admit(record, now, &mut req);
                        ResponseFuture::inner(self.inner.call(req))
                    }
                    Err(kind) => ResponseFuture::done(shared.reject(kind, &req)),
                }
            }
            None => {
                // The readied service moves into the future; a clone stays for the next
                // `poll_ready`.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::lookup(Box::new(Pending {
                    hash,
                    req,
                    inner,
                    shared: Arc::clone(shared),
                }))
            }
        }
    }
}
