//! The verdict on a store's answer ([`verdict`]: no side effect), and what every clone of
//! one layer's service shares on the request path ([`Shared`]), with the two steps that
//! follow a verdict: admitting the request (count the use, hand the token on) or
//! rejecting it.

use std::sync::Arc;

use http::{Request, Response};
use time::Duration;

use super::{
    config::{CredentialRules, StoreTimeout},
    usage::Usage,
};
use crate::{
    clock::Clock,
    record::{AccessToken, Settings, TokenRecord},
    reject::RejectionKind,
    store::{Lookup, TokenStore},
    token::TokenHash,
};

/// Judges the store's answer for `hash` at `now` (nanoseconds since the epoch): the
/// record, if the token may be used, or why not. Decides only; the caller admits.
#[inline]
pub(crate) fn verdict<U>(
    hash: &TokenHash,
    found: Lookup<U>,
    now: i128,
) -> Result<Arc<TokenRecord<U>>, RejectionKind> {
    let record = match found {
        Ok(Some(record)) => record,
        Ok(None) => return Err(RejectionKind::UnknownToken),
        Err(error) => {
            tracing::warn!(%error, "rejecting with 503: the token store could not answer");
            return Err(RejectionKind::StoreUnavailable);
        }
    };
    // A store that answers with another token's row is broken: fail closed.
    if record.token_hash != *hash {
        tracing::warn!(token.id = %record.id, "rejecting with 503: the token store returned a record for another hash");
        return Err(RejectionKind::StoreUnavailable);
    }
    if record.revoked {
        return Err(RejectionKind::RevokedToken);
    }
    // `now >= expires_at`, in nanoseconds: the boundary second is expired.
    if now >= record.expires_at.unix_timestamp_nanos() {
        return Err(RejectionKind::ExpiredToken);
    }
    Ok(record)
}

/// What every clone of one layer's service reads on the request path. The realm, the
/// matching rules and the body hook live in `settings` only, which every admitted
/// request's `AccessToken` shares.
pub(crate) struct Shared<St> {
    pub(crate) store: Arc<St>,
    pub(crate) credentials: CredentialRules,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) optional: bool,
    pub(crate) store_timeout: Option<StoreTimeout>,
    pub(crate) last_used_interval: Option<Duration>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) usage: Arc<Usage>,
}

impl<St: TokenStore> Shared<St> {
    /// Admits a request the [`verdict`] let through at `now`: counts the use (the
    /// flusher starts with the first, under the `tokio` feature) and puts the
    /// `AccessToken` into the request.
    #[inline]
    pub(crate) fn admit<B>(
        &self,
        record: Arc<TokenRecord<St::UserId>>,
        now: i128,
        req: &mut Request<B>,
    ) {
        if let Some(interval) = self.last_used_interval
            && self.usage.record(&record, now, interval)
        {
            self.start_flusher(interval);
        }
        AccessToken::with_settings(record, Arc::clone(&self.settings))
            .insert_into(req.extensions_mut());
    }

    /// With the `tokio` feature, the flusher starts with the first use to write.
    #[cfg(feature = "tokio")]
    #[inline(never)]
    fn start_flusher(&self, interval: Duration) {
        let plan = super::usage::FlushPlan {
            clock: Arc::clone(&self.clock),
            interval,
            timeout: self.store_timeout.clone(),
        };
        super::usage::spawn_flusher(&self.usage, &self.store, plan);
    }

    /// Without the `tokio` feature, the application runs
    /// [`PatLayer::last_used_flusher`](super::PatLayer::last_used_flusher) or calls
    /// [`PatLayer::flush`](super::PatLayer::flush).
    #[cfg(not(feature = "tokio"))]
    fn start_flusher(&self, _interval: Duration) {}
}

impl<St> Shared<St> {
    /// The answer to a request this layer rejects.
    pub(crate) fn reject<ReqB, ResB>(
        &self,
        kind: RejectionKind,
        req: &Request<ReqB>,
    ) -> Response<ResB>
    where
        ResB: Default + 'static,
    {
        tracing::debug!(reason = ?kind, "request rejected by PatLayer");
        self.settings.rejector.reject(kind, None, req.headers())
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::{record::TokenId, store::StoreError};

    const SECOND: i128 = 1_000_000_000;

    fn record(revoked: bool, expires_at: i64) -> Arc<TokenRecord<i64>> {
        let at = |s| OffsetDateTime::from_unix_timestamp(s).unwrap();
        let record = TokenRecord::new(
            TokenId::from_bytes([1; 16]),
            7,
            TokenHash::of("t"),
            at(0),
            at(expires_at),
        );
        Arc::new(if revoked {
            record.revoked_at(at(0))
        } else {
            record
        })
    }

    #[test]
    fn the_verdict_on_each_answer() {
        let hash = TokenHash::of("t");
        let now = 100 * SECOND;
        assert!(verdict(&hash, Ok(Some(record(false, 101))), now).is_ok());
        let cases = [
            (Ok(None), RejectionKind::UnknownToken),
            (Ok(Some(record(true, 101))), RejectionKind::RevokedToken),
            // The boundary second is expired already.
            (Ok(Some(record(false, 100))), RejectionKind::ExpiredToken),
            (Err(StoreError::timeout()), RejectionKind::StoreUnavailable),
        ];
        for (found, want) in cases {
            assert_eq!(verdict(&hash, found, now).unwrap_err(), want);
        }
        let other = TokenHash::of("another token");
        assert_eq!(
            verdict(&other, Ok(Some(record(false, 101))), now).unwrap_err(),
            RejectionKind::StoreUnavailable
        );
    }
}
