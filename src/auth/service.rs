//! [`Pat`], the service: asks the store about the presented token and judges the answer.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use super::{
    credentials,
    future::{Pending, ResponseFuture},
    layer::Config,
    usage::Usage,
};
use crate::{
    AccessToken,
    record::{Settings, insert_anonymous},
    reject::RejectionKind,
    store::{Found, StoreError, TokenStore},
    token::TokenHash,
};

/// The service [`PatLayer`](super::PatLayer) makes.
pub struct Pat<S, St> {
    inner: S,
    shared: Arc<Shared<St>>,
}

/// What every clone of one layer's service shares.
pub(crate) struct Shared<St> {
    pub(crate) store: Arc<St>,
    pub(crate) config: Config,
    /// Matching rules and refusals, shared with every request's `AccessToken`.
    pub(crate) settings: Arc<Settings>,
    pub(crate) usage: Arc<Usage>,
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
            .field("config", &self.shared.config)
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
        let hash = match credentials::presented(&mut req, &shared.config) {
            Ok(Some(hash)) => hash,
            Ok(None) if shared.config.optional => {
                insert_anonymous(req.extensions_mut(), Arc::clone(&shared.settings));
                // Called right away: the readied service itself, no clone needed.
                return ResponseFuture::inner(self.inner.call(req));
            }
            Ok(None) => {
                return ResponseFuture::done(
                    shared.refuse(RejectionKind::MissingCredentials, &req),
                );
            }
            Err(kind) => return ResponseFuture::done(shared.refuse(kind, &req)),
        };
        // A store that answers at once (a map, a warm cache) costs no future and no box.
        match shared.store.find_ready(&hash) {
            Some(found) => match shared.admit(&hash, found, &mut req) {
                Ok(()) => ResponseFuture::inner(self.inner.call(req)),
                Err(kind) => ResponseFuture::done(shared.refuse(kind, &req)),
            },
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

impl<St: TokenStore> Shared<St> {
    /// Judges the store's answer for `hash`; on success counts a use and puts the
    /// `AccessToken` into the request. The one path every admitted request takes.
    #[inline]
    pub(crate) fn admit<B>(
        &self,
        hash: &TokenHash,
        found: Result<Found<St::UserId>, StoreError>,
        req: &mut Request<B>,
    ) -> Result<(), RejectionKind> {
        let record = match found {
            Ok(Some(record)) => record,
            Ok(None) => return Err(RejectionKind::UnknownToken),
            Err(error) => {
                tracing::warn!(%error, "token store failed; refusing with 503");
                return Err(RejectionKind::StoreUnavailable);
            }
        };
        // A store that answers with another token's row is broken: fail closed.
        if record.token_hash != *hash {
            tracing::warn!(token.id = %record.id, "token store returned a record for another hash; refusing with 503");
            return Err(RejectionKind::StoreUnavailable);
        }
        if record.revoked {
            return Err(RejectionKind::RevokedToken);
        }
        // `now >= expires_at`, in nanoseconds: the boundary second is expired.
        let now = self.config.clock.unix_nanos();
        if now >= record.expires_at.unix_timestamp_nanos() {
            return Err(RejectionKind::ExpiredToken);
        }
        if let Some(interval) = self.config.last_used_interval
            && self.usage.record(&record, now, interval)
        {
            self.start_flusher();
        }
        AccessToken::with_settings(record, Arc::clone(&self.settings))
            .insert_into(req.extensions_mut());
        Ok(())
    }
}

impl<St: TokenStore> Shared<St> {
    /// With the `tokio` feature, the flusher starts with the first use to write.
    #[cfg(feature = "tokio")]
    fn start_flusher(&self) {
        super::usage::spawn_flusher(&self.usage, &self.store, &self.config);
    }

    /// Without the `tokio` feature, the application runs
    /// [`PatLayer::last_used_flusher`](super::PatLayer::last_used_flusher) or calls
    /// [`PatLayer::flush`](super::PatLayer::flush).
    #[cfg(not(feature = "tokio"))]
    fn start_flusher(&self) {}
}

impl<St> Shared<St> {
    /// The answer to a request refused by this layer.
    pub(crate) fn refuse<ReqB, ResB>(
        &self,
        kind: RejectionKind,
        req: &Request<ReqB>,
    ) -> Response<ResB>
    where
        ResB: Default + 'static,
    {
        tracing::debug!(reason = ?kind, "request refused by PatLayer");
        self.settings.refusals.respond(kind, None, req.headers())
    }
}
