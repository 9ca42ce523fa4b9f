//! What the revocation listeners share: PostgreSQL's (`listener`) and Redis's (`redis`);
//! the change poller (`poller`) uses what ends a task and keeps it fail-closed. Both
//! listeners relay what other instances revoke to a [`CachedStore`](super::CachedStore)
//! through its [`Evictor`](super::Evictor), pause it when they cannot prove that they
//! would hear a revocation, and treat a message they cannot read the same way:
//!
//! - [`parse_ids`]: the payload both buses use, token ids separated by spaces;
//! - [`Junk`]: an unreadable message clears the cache at most once per
//!   [`JUNK_CLEAR_INTERVAL`], and is logged at most once per [`WARN_INTERVAL`];
//! - [`Stop`], [`Ends`] and [`until_end`]: what ends a listening task (the cache going, or
//!   its handle's `stop`);
//! - [`FailClosed`]: a task that ends any other way leaves the cache paused for good.

use std::{
    future::{Future, poll_fn},
    pin::{Pin, pin},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use tokio::time::Instant;

use super::cache::{Closed, WeakEvictor};
#[cfg(any(feature = "postgres", feature = "redis"))]
use crate::record::TokenId;
use crate::record::UserId;

#[cfg(any(feature = "postgres", feature = "redis"))]
/// Unreadable messages clear the cache at most once per this.
pub(crate) const JUNK_CLEAR_INTERVAL: Duration = Duration::from_secs(1);

/// A warning that may repeat is logged at most once per this.
pub(crate) const WARN_INTERVAL: Duration = Duration::from_secs(60);

#[cfg(any(feature = "postgres", feature = "redis"))]
/// The longest wait between two attempts to listen again.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[cfg(any(feature = "postgres", feature = "redis"))]
/// Token ids, separated by single spaces (extra spaces are tolerated); `None` for anything
/// else, nothing at all included.
pub(crate) fn parse_ids(payload: &str) -> Option<Vec<TokenId>> {
    let ids: Result<Vec<TokenId>, _> = payload
        .split(' ')
        .filter(|part| !part.is_empty())
        .map(str::parse)
        .collect();
    ids.ok().filter(|ids| !ids.is_empty())
}

/// A warning that may repeat, logged at most once per [`WARN_INTERVAL`].
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    warned_at: Option<Instant>,
    unlogged: u64,
}

impl Throttle {
    /// How many warnings were not logged since the last one, if a warning may be logged
    /// at `now`.
    pub(crate) fn warn(&mut self, now: Instant) -> Option<u64> {
        if self.warned_at.is_some_and(|at| now - at < WARN_INTERVAL) {
            self.unlogged += 1;
            return None;
        }
        self.warned_at = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(any(feature = "postgres", feature = "redis"))]
/// How unreadable messages are rate-limited: a clear at most once per
/// [`JUNK_CLEAR_INTERVAL`] (one owed clear at the end of it for those that came within),
/// a warning at most once per [`WARN_INTERVAL`].
#[derive(Debug, Default)]
pub(crate) struct Junk {
    cleared_at: Option<Instant>,
    /// A clear owed to messages that came too soon after the last one.
    pub(crate) clear_at: Option<Instant>,
    warnings: Throttle,
}

#[cfg(any(feature = "postgres", feature = "redis"))]
impl Junk {
    /// Whether an unreadable message at `now` clears the cache now (else a clear is owed
    /// at the end of the interval).
    pub(crate) fn clear_now(&mut self, now: Instant) -> bool {
        match self.cleared_at {
            Some(at) if now - at < JUNK_CLEAR_INTERVAL => {
                self.clear_at.get_or_insert(at + JUNK_CLEAR_INTERVAL);
                false
            }
            _ => {
                self.cleared_at = Some(now);
                self.clear_at = None;
                true
            }
        }
    }

    /// Whether the owed clear is due at `now`; if so it counts as done.
    pub(crate) fn clear_due(&mut self, now: Instant) -> bool {
        if self.clear_at.is_some_and(|at| at <= now) {
            self.cleared_at = Some(now);
            self.clear_at = None;
            return true;
        }
        false
    }

    /// How many warnings were not logged since the last one, if a warning may be logged
    /// at `now`.
    pub(crate) fn warn(&mut self, now: Instant) -> Option<u64> {
        self.warnings.warn(now)
    }
}

/// A signal from a listener's handle to its task: stop listening.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    stopped: AtomicBool,
    /// The task's waker, woken by [`stop`](Self::stop).
    waker: Mutex<Option<Waker>>,
}

impl Stop {
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn poll_stopped(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.stopped.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        *self.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        if self.stopped.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// What ends a listening task: the cache going, or its handle's [`Stop`].
pub(crate) struct Ends<U> {
    pub(crate) closed: Closed<U>,
    pub(crate) stop: Arc<Stop>,
}

impl<U> Ends<U> {
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if Pin::new(&mut self.closed).poll(cx).is_ready() {
            return Poll::Ready(());
        }
        self.stop.poll_stopped(cx)
    }
}

/// `fut`'s output, or `None` if the listening ends first.
pub(crate) async fn until_end<U, F: Future>(ends: &mut Ends<U>, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if ends.poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        fut.as_mut().poll(cx).map(Some)
    })
    .await
}

/// Pauses the cache for good unless disarmed (the listening ended as it should): a task
/// that panicked, or that its runtime dropped while the cache lives on, would otherwise
/// leave the cache serving what nothing vouches for.
pub(crate) struct FailClosed<U: UserId> {
    pub(crate) cache: WeakEvictor<U>,
    pub(crate) armed: bool,
    /// Which listener, for the log.
    pub(crate) listener: &'static str,
}

impl<U: UserId> Drop for FailClosed<U> {
    fn drop(&mut self) {
        if self.armed
            && let Some(evictor) = self.cache.upgrade()
        {
            // The guard only holds a weak handle: forgetting it leaks no cache.
            std::mem::forget(evictor.pause());
            tracing::warn!(
                listener = self.listener,
                "the revocation listener ended without being stopped (it panicked, or its \
                 runtime shut down): the token cache keeps nothing from now on (every request \
                 asks the store)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(feature = "postgres", feature = "redis"))]
    #[test]
    fn payloads_are_ids_or_nothing() {
        let a = TokenId::from_bytes([1; 16]);
        let b = TokenId::from_bytes([2; 16]);
        assert_eq!(parse_ids(&format!("{a} {b}")), Some(vec![a, b]));
        assert_eq!(parse_ids(&format!(" {a}  {b} ")), Some(vec![a, b]));
        for junk in ["", " ", "junk", &format!("{a} junk"), &format!("{a},{b}")] {
            assert_eq!(parse_ids(junk), None, "{junk:?}");
        }
    }

    #[cfg(any(feature = "postgres", feature = "redis"))]
    #[test]
    fn junk_clears_at_most_once_an_interval_and_warns_at_most_once_a_minute() {
        let start = Instant::now();
        let mut junk = Junk::default();
        assert!(junk.clear_now(start));
        assert_eq!(junk.warn(start), Some(0));
        let mut clears = 1;
        let mut warnings = 1;
        // 10 a millisecond for 3 s.
        for ms in 1..3000 {
            let now = start + Duration::from_millis(ms);
            if junk.clear_due(now) {
                clears += 1;
            }
            for _ in 0..10 {
                if junk.clear_now(now) {
                    clears += 1;
                }
                if junk.warn(now).is_some() {
                    warnings += 1;
                }
            }
        }
        assert_eq!(
            clears, 3,
            "one at the start, then one at the end of each second"
        );
        assert_eq!(warnings, 1);
        assert_eq!(junk.warn(start + WARN_INTERVAL), Some(29_990));
        // Quiet: the owed clear is done once, then nothing is owed.
        let later = start + Duration::from_secs(10);
        assert!(junk.clear_due(later));
        assert!(!junk.clear_due(later + Duration::from_secs(5)));
        assert!(junk.clear_now(later + Duration::from_secs(5)));
    }
}
