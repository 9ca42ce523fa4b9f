//! The verdict on a store's answer ([`verdict`]: no side effect), and what every clone of
//! one layer's service shares on the request path ([`Shared`]), with the two steps that
//! follow a verdict: admitting the request (count the use, hand the token on) or
//! rejecting it.

use std::{any::Any, sync::Arc};

use http::{HeaderName, HeaderValue, Request, Response};
use time::Duration;

use super::{
    config::{CredentialRules, StoreTimeout},
    credentials::Candidate,
    usage::Usage,
};
use crate::{
    audit::{Audit, AuditKind},
    clock::Clock,
    metrics::RequestMetrics,
    record::{AccessToken, Settings, TokenRecord},
    reject::RejectionKind,
    store::{Lookup, TokenStore},
    token::TokenHash,
};

/// Why the verdict refused a token, with the record when the store knew it (for the
/// audit trail).
pub(crate) struct Refused<U> {
    pub(crate) kind: RejectionKind,
    pub(crate) record: Option<Arc<TokenRecord<U>>>,
}

impl<U> From<RejectionKind> for Refused<U> {
    fn from(kind: RejectionKind) -> Self {
        Self { kind, record: None }
    }
}

/// What the verdict needs to know besides the store's answer.
#[derive(Clone, Copy)]
pub(crate) struct Presentation<'a> {
    /// The key the store was asked for.
    pub(crate) hash: &'a TokenHash,
    /// The format the bearer had the shape of.
    pub(crate) candidate: Candidate,
    /// Now, in nanoseconds since the epoch.
    pub(crate) now: i128,
    /// The idle lifetime in nanoseconds, if there is one.
    pub(crate) idle: Option<i128>,
}

/// Judges the store's answer for a presented token: the record, if the token may be used,
/// or why not. Decides only; the caller admits.
#[inline]
pub(crate) fn verdict<U>(
    at: Presentation<'_>,
    found: Lookup<U>,
) -> Result<Arc<TokenRecord<U>>, Refused<U>> {
    let record = match found {
        Ok(Some(record)) => record,
        Ok(None) => return Err(RejectionKind::UnknownToken.into()),
        Err(error) => {
            tracing::warn!(%error, "rejecting with 503: the token store could not answer");
            return Err(RejectionKind::StoreUnavailable.into());
        }
    };
    // A store that answers with another token's row is broken: fail closed.
    if record.token_hash != *at.hash {
        tracing::warn!(token.id = %record.id, "rejecting with 503: the token store returned a record for another hash");
        return Err(RejectionKind::StoreUnavailable.into());
    }
    // Another format's row under the same key, or a Sanctum token naming another row:
    // not the token presented.
    if !at.candidate.matches(&record) {
        return Err(RejectionKind::UnknownToken.into());
    }
    let kind = if record.revoked {
        RejectionKind::RevokedToken
    // `now >= expires_at`, in nanoseconds: the boundary second is expired.
    } else if at.now >= record.expires_at.unix_timestamp_nanos() {
        RejectionKind::ExpiredToken
    } else if at
        .idle
        .is_some_and(|idle| at.now >= idle_since(&record) + idle)
    {
        RejectionKind::IdleToken
    } else {
        return Ok(record);
    };
    Err(Refused {
        kind,
        record: Some(record),
    })
}

/// Since when a token has been idle: its last recorded use, or its creation.
fn idle_since<U>(record: &TokenRecord<U>) -> i128 {
    record
        .last_used_at
        .map_or(record.created_at, |used| used.max(record.created_at))
        .unix_timestamp_nanos()
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
    /// The idle lifetime in nanoseconds, if there is one.
    pub(crate) idle: Option<i128>,
    /// The response header naming an admitted token's expiry, if it is sent.
    pub(crate) expiry_header: Option<HeaderName>,
    /// The audit trail (an `Audit<St::UserId>`), told of refusals.
    pub(crate) audit: Option<Arc<dyn Any + Send + Sync>>,
    /// This layer's counters (feature `metrics`).
    pub(crate) metrics: RequestMetrics,
}

/// What an admitted request's response is stamped with: the token's expiry.
pub(crate) struct Stamp {
    pub(crate) name: HeaderName,
    pub(crate) expires_at: time::OffsetDateTime,
}

impl Stamp {
    /// Adds the header to `res`: the expiry as an HTTP date (RFC 9110's IMF-fixdate,
    /// as `Expires` has it).
    pub(crate) fn apply<B>(self, res: &mut Response<B>) {
        if let Ok(value) = HeaderValue::try_from(http_date(self.expires_at)) {
            res.headers_mut().insert(self.name, value);
        }
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn http_date(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[at.weekday().number_days_from_monday() as usize],
        at.day(),
        MONTHS[u8::from(at.month()) as usize - 1],
        at.year(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

impl<St: TokenStore> Shared<St> {
    /// Admits a request the [`verdict`] let through at `now`: counts the use (the
    /// flusher starts with the first, under the `tokio` feature) and puts the
    /// `AccessToken` into the request.
    /// Returns what the response is to be stamped with, if anything.
    #[inline]
    pub(crate) fn admit<B>(
        &self,
        record: Arc<TokenRecord<St::UserId>>,
        now: i128,
        req: &mut Request<B>,
    ) -> Option<Stamp> {
        self.metrics.accepted();
        if let Some(interval) = self.last_used_interval
            && self.usage.record(&record, now, interval)
        {
            self.start_flusher(interval);
        }
        let stamp = self.expiry_header.as_ref().map(|name| Stamp {
            name: name.clone(),
            expires_at: record.expires_at,
        });
        AccessToken::with_settings(record, Arc::clone(&self.settings))
            .insert_into(req.extensions_mut());
        stamp
    }

    /// The answer to a request the verdict refused; tells the audit trail, if there is
    /// one (within its budget for refusals).
    pub(crate) fn refuse<ReqB, ResB>(
        &self,
        refused: Refused<St::UserId>,
        req: &Request<ReqB>,
    ) -> Response<ResB>
    where
        ResB: Default + 'static,
    {
        self.metrics.refused(refused.kind);
        self.tell_audit(refused.kind, refused.record.as_deref());
        self.reject(refused.kind, req)
    }

    /// Tells the audit trail of a refusal: an expired or idle token as such, any other
    /// refusal with its code. A request without credentials is not a token's event.
    #[inline(never)]
    pub(crate) fn tell_audit(&self, kind: RejectionKind, record: Option<&TokenRecord<St::UserId>>) {
        let Some(audit) = self
            .audit
            .as_deref()
            .and_then(|a| a.downcast_ref::<Audit<St::UserId>>())
        else {
            return;
        };
        // Dated by the layer's clock, as the facade dates its events by its own.
        let at = Some(self.clock.now());
        match (kind, record) {
            (RejectionKind::MissingCredentials, _) => {}
            (RejectionKind::ExpiredToken, Some(record)) => {
                audit.layer_event(at, AuditKind::ExpiredOnUse, record);
            }
            (RejectionKind::IdleToken, Some(record)) => {
                audit.layer_event(at, AuditKind::IdleExpired, record);
            }
            (kind, record) => audit.refused_at(
                at,
                kind.code(),
                record.map(|r| r.id),
                record.map(|r| r.user_id.clone()),
            ),
        }
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
    /// The answer to a request this layer rejects (the audit trail is told by the caller,
    /// or by [`refuse`](Self::refuse)).
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

    fn at(hash: &TokenHash, now: i128) -> Presentation<'_> {
        Presentation {
            hash,
            candidate: Candidate::Pat,
            now,
            idle: None,
        }
    }

    #[test]
    fn the_verdict_on_each_answer() {
        let hash = TokenHash::of("t");
        let now = 100 * SECOND;
        assert!(verdict(at(&hash, now), Ok(Some(record(false, 101)))).is_ok());
        let cases = [
            (Ok(None), RejectionKind::UnknownToken),
            (Ok(Some(record(true, 101))), RejectionKind::RevokedToken),
            // The boundary second is expired already.
            (Ok(Some(record(false, 100))), RejectionKind::ExpiredToken),
            (Err(StoreError::timeout()), RejectionKind::StoreUnavailable),
        ];
        for (found, want) in cases {
            assert_eq!(verdict(at(&hash, now), found).err().unwrap().kind, want);
        }
        let other = TokenHash::of("another token");
        assert_eq!(
            verdict(at(&other, now), Ok(Some(record(false, 101))))
                .err()
                .unwrap()
                .kind,
            RejectionKind::StoreUnavailable
        );
    }

    #[test]
    fn idle_is_judged_on_the_last_use_or_the_creation() {
        let hash = TokenHash::of("t");
        let idle = Some(50 * SECOND);
        let judge = |last_used: Option<i64>, now: i128| {
            let mut r = (*record(false, 1_000)).clone();
            r.last_used_at = last_used.map(|s| OffsetDateTime::from_unix_timestamp(s).unwrap());
            let at = Presentation {
                idle,
                ..at(&hash, now * SECOND)
            };
            verdict(at, Ok(Some(Arc::new(r)))).err().map(|r| r.kind)
        };
        // Created at 0, never used: idle from 50 s on.
        assert_eq!(judge(None, 49), None);
        assert_eq!(judge(None, 50), Some(RejectionKind::IdleToken));
        // Used at 40: idle from 90 s on.
        assert_eq!(judge(Some(40), 89), None);
        assert_eq!(judge(Some(40), 90), Some(RejectionKind::IdleToken));
        // Expiry comes first, and a use never extends it.
        assert_eq!(judge(Some(990), 1_000), Some(RejectionKind::ExpiredToken));
    }

    #[test]
    fn http_dates() {
        let at = OffsetDateTime::from_unix_timestamp(784_111_777).unwrap();
        assert_eq!(http_date(at), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
