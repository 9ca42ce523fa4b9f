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
    admit::{Presentation, Shared, verdict},
    credentials,
    future::{Pending, ResponseFuture},
};
use crate::{
    credential::{Credential, Presented},
    record::admit_anonymous,
    reject::RejectionKind,
    store::TokenStore,
};

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
        let (hash, candidate) = match credentials::presented(&mut req, &shared.credentials) {
            Ok(Some(found)) => found,
            Ok(None) if shared.optional => {
                shared.metrics.anonymous();
                admit_anonymous(req.extensions_mut(), Arc::clone(&shared.settings));
                // Called right away: the readied service itself, no clone needed.
                return ResponseFuture::inner(self.inner.call(req), None);
            }
            Ok(None) => {
                return ResponseFuture::done(
                    shared.refuse(RejectionKind::MissingCredentials.into(), &req),
                );
            }
            Err(kind) => return ResponseFuture::done(shared.refuse(kind.into(), &req)),
        };
        // A store that answers at once (a map, a warm cache) costs no future and no box.
        // A token it found is real; anything else gets the rest of the offline verdict
        // (charset, checksum; a JWT's signature) before it is answered or a store is
        // asked to wait, which is told what the verdict found.
        let found = shared.store.find_ready(&hash);
        if let Some(found) = &found {
            shared.metrics.looked_up(found);
        }
        let credential = if matches!(found, Some(Ok(Some(_)))) {
            None
        } else {
            let now = || shared.clock.now();
            match credentials::checked_offline(&req, &shared.credentials, candidate, now) {
                Ok(credential) => Some(credential),
                Err(kind) => return ResponseFuture::done(shared.refuse(kind.into(), &req)),
            }
        };
        match (found, credential) {
            (Some(found), _) => {
                let now = shared.clock.unix_nanos();
                let at = Presentation {
                    hash: &hash,
                    candidate,
                    now,
                    idle: shared.idle,
                };
                match verdict(at, found) {
                    Ok(record) => {
                        let stamp = shared.admit(record, now, &mut req);
                        ResponseFuture::inner(self.inner.call(req), stamp)
                    }
                    Err(refused) => ResponseFuture::done(shared.refuse(refused, &req)),
                }
            }
            (None, credential) => {
                // The readied service moves into the future; a clone stays for the next
                // `poll_ready`.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                // The offline verdict ran: a store that did not answer at once knew nothing.
                let credential = credential.unwrap_or(Credential::Pat);
                ResponseFuture::lookup(Box::new(Pending {
                    presented: Presented::new(hash, credential),
                    candidate,
                    req,
                    inner,
                    shared: Arc::clone(shared),
                }))
            }
        }
    }
}
