//! Token uses for `last_used_at`, recorded in memory on the request path and written to
//! the store in batches off it.
//!
//! A request never waits for a write. Each admitted request counts as a use; a use is
//! queued only when the token's last queued (or stored) use is at least one interval old,
//! so a token is written at most once per interval whatever the request rate or the
//! concurrency. A flush takes every queued use and hands them to
//! [`TokenStore::touch`] in one call (one statement in the SQL stores).
//!
//! A hot token is answered by a lock-free filter (one atomic load) before the shards'
//! locks are taken. It pays for its lines: counted under callgrind
//! (`scripts/count-instructions.sh hot_token`, the filter turned off by hand for the
//! second figure), a hot request costs +5,678 instructions over the empty service with it
//! and +6,039 without, 6% of the layer's whole overhead for a lock, a map probe and an
//! unlock it skips; and under concurrency it keeps the requests for one token on many
//! cores from taking turns at that token's shard lock.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use time::{Duration, OffsetDateTime};

use super::config::{StoreTimeout, bounded};
use crate::{
    clock::Clock,
    record::{TokenId, TokenRecord},
    store::TokenStore,
};

/// Uses are spread over this many locks, by bits 48 and up of the mixed token id (see
/// [`mix`]), so that concurrent requests for different tokens rarely meet.
const SHARDS: usize = 16;

/// The most uses a shard keeps waiting for a flush: an application that never flushes
/// (no `tokio` feature, no flusher spawned) loses uses beyond it, never memory.
const MAX_PENDING: usize = 4096;

/// Slots of the lock-free "queued recently" filter, by the top byte of the mixed token id.
const RECENT: usize = 256;

/// The low bits of a slot: when the use was queued, in whole seconds (wrapping every 194
/// days); the high bits: a 40-bit fingerprint of the token id (the mix folded onto its low
/// bits, so that it depends on the top bits too, though the slot index is taken from
/// them).
const TIME_BITS: u32 = 24;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
const FINGERPRINT_MASK: u64 = (1 << (64 - TIME_BITS)) - 1;

/// The uses one layer (and every service and clone made from it) records.
#[derive(Debug)]
pub(crate) struct Usage {
    shards: [Mutex<Shard>; SHARDS],
    /// A hot token is checked here with one atomic load instead of a lock: each slot
    /// remembers one token (by fingerprint) and when its last use was queued. A miss, or
    /// a slot another token took, falls through to the shards, which decide.
    recent: [AtomicU64; RECENT],
    /// Whether a flusher runs (spawned by the `tokio` feature, or handed out by
    /// `PatLayer::last_used_flusher`).
    flusher: AtomicBool,
}

#[derive(Debug, Default)]
struct Shard {
    /// When each recently used token's last use was queued, in nanoseconds since the
    /// epoch; tokens not queued for a whole interval are dropped at the next flush.
    queued: HashMap<TokenId, i128>,
    /// Uses waiting for the next flush.
    pending: Vec<(TokenId, OffsetDateTime)>,
}

impl Default for Usage {
    fn default() -> Self {
        Self {
            shards: Default::default(),
            recent: [const { AtomicU64::new(0) }; RECENT],
            flusher: AtomicBool::new(false),
        }
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding the lock leaves at worst a use queued twice or not at all.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Usage {
    /// Counts a use of `record` at `now` (nanoseconds since the epoch). Returns whether a
    /// use was queued (at most once per token per `interval`).
    #[inline]
    pub(crate) fn record<U>(&self, record: &TokenRecord<U>, now: i128, interval: Duration) -> bool {
        let mixed = mix(record.id.as_bytes());
        let slot = &self.recent[(mixed >> 56) as usize % RECENT];
        let fingerprint = (mixed ^ (mixed >> 29)) & FINGERPRINT_MASK;
        // One atomic load answers a token whose use was queued (or seen written) within
        // the interval; a second of slack on each side, as the slot keeps whole seconds.
        let seen = slot.load(Ordering::Relaxed);
        if seen >> TIME_BITS == fingerprint {
            let elapsed = whole_seconds(now).wrapping_sub(seen) & TIME_MASK;
            if i64::try_from(elapsed).is_ok_and(|e| e + 1 < interval.whole_seconds()) {
                return false;
            }
        }
        self.record_slow(record, now, interval, slot, fingerprint, mixed)
    }

    /// The shards decide what the filter could not.
    #[inline(never)]
    fn record_slow<U>(
        &self,
        record: &TokenRecord<U>,
        now: i128,
        interval: Duration,
        slot: &AtomicU64,
        fingerprint: u64,
        mixed: u64,
    ) -> bool {
        let every = interval.whole_nanoseconds();
        // What the store said already: a token written back recently needs nothing.
        if let Some(last) = record.last_used_at {
            let last = last.unix_timestamp_nanos();
            if now - last < every {
                remember(slot, fingerprint, last);
                return false;
            }
        }
        let mut shard = lock(&self.shards[(mixed >> 48) as usize % SHARDS]);
        let queued_at = match shard.queued.get_mut(&record.id) {
            Some(queued) if now - *queued < every => {
                let queued = *queued;
                drop(shard);
                remember(slot, fingerprint, queued);
                return false;
            }
            Some(queued) => {
                *queued = now;
                now
            }
            None => {
                shard.queued.insert(record.id, now);
                now
            }
        };
        remember(slot, fingerprint, queued_at);
        if shard.pending.len() >= MAX_PENDING {
            drop(shard);
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "token uses pile up unwritten: nothing flushes them (turn on tower-pat's tokio feature, spawn PatLayer::last_used_flusher, or call PatLayer::flush); uses beyond {} are dropped",
                    MAX_PENDING * SHARDS
                );
            }
            return false;
        }
        // Whole seconds, as every timestamp the crate writes.
        let at = i64::try_from(whole_seconds(now))
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        shard.pending.push((record.id, at));
        true
    }

    /// Takes the queued uses, and forgets tokens whose last queued use is an interval old
    /// (their next use is due anyway).
    fn take(&self, now: i128, interval: Duration) -> Vec<(TokenId, OffsetDateTime)> {
        let every = interval.whole_nanoseconds();
        let mut batch = Vec::new();
        for shard in &self.shards {
            let mut shard = lock(shard);
            batch.append(&mut shard.pending);
            shard.queued.retain(|_, queued| now - *queued < every);
        }
        batch
    }

    /// Marks a flusher as running; `false` when one was already.
    pub(crate) fn start_flusher(&self) -> bool {
        !self.flusher.swap(true, Ordering::AcqRel)
    }

    /// How many uses wait for a flush.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.shards.iter().map(|s| lock(s).pending.len()).sum()
    }
}

/// The token id, mixed: its top bits pick the filter slot and the shard, and 40 bits of it
/// are the fingerprint a slot keeps beside the time's 24. Mixed rather than taken as they
/// are, because an application's own store may make ids that are not random (counters).
#[inline]
fn mix(id: &[u8; 16]) -> u64 {
    let (low, high) = id.split_at(8);
    let low = u64::from_le_bytes(low.try_into().unwrap_or_default());
    let high = u64::from_le_bytes(high.try_into().unwrap_or_default());
    // Two independent multiplications by odd constants: the top bits of the result depend
    // on every input bit (they pick the slot and the shard); the fingerprint folds them
    // down onto the low bits.
    low.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ high.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
}

/// Whole seconds since the epoch of `nanos` (in 64-bit arithmetic: a 128-bit division
/// costs a library call).
#[inline]
fn whole_seconds(nanos: i128) -> u64 {
    let nanos = i64::try_from(nanos).unwrap_or(i64::MAX);
    u64::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or(0)
}

/// Notes in `slot` that the token of `fingerprint` had a use queued at `queued` (nanoseconds).
fn remember(slot: &AtomicU64, fingerprint: u64, queued: i128) {
    let seconds = whole_seconds(queued) & TIME_MASK;
    slot.store(fingerprint << TIME_BITS | seconds, Ordering::Relaxed);
}

/// What writing recorded uses needs: the clock (to forget tokens whose last use is an
/// interval old), the interval, and the store timeout.
#[derive(Clone, Debug)]
pub(crate) struct FlushPlan {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) interval: Duration,
    pub(crate) timeout: Option<StoreTimeout>,
}

/// Writes the queued uses in one [`TokenStore::touch`] call, bounded by the store
/// timeout; a failure is logged and the uses dropped (the next use after an interval is
/// queued again). Returns how many uses were written.
pub(crate) async fn flush<St: TokenStore>(usage: &Usage, store: &St, plan: &FlushPlan) -> usize {
    let batch = usage.take(plan.clock.unix_nanos(), plan.interval);
    if batch.is_empty() {
        return 0;
    }
    let written = bounded(plan.timeout.as_ref(), store.touch(&batch)).await;
    crate::metrics::flushed(batch.len(), written.is_ok());
    match written {
        Ok(()) => batch.len(),
        Err(error) => {
            tracing::warn!(%error, uses = batch.len(), "could not record token uses (last_used_at)");
            0
        }
    }
}

/// Flushes every interval until the layer and every service made from it are gone.
pub(crate) async fn flusher<St, F, Fut>(
    usage: Weak<Usage>,
    store: Arc<St>,
    plan: FlushPlan,
    sleep: F,
) where
    St: TokenStore,
    F: Fn(std::time::Duration) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let every = std::time::Duration::try_from(plan.interval)
        .unwrap_or(std::time::Duration::from_secs(60))
        .max(std::time::Duration::from_millis(10));
    loop {
        sleep(every).await;
        let Some(usage) = usage.upgrade() else {
            return;
        };
        flush(&usage, &*store, &plan).await;
    }
}

/// With the `tokio` feature: starts the flusher on the current runtime the first time a
/// use is queued. Without a runtime, uses wait for [`PatLayer::flush`](super::PatLayer::flush).
#[cfg(feature = "tokio")]
pub(crate) fn spawn_flusher<St: TokenStore>(usage: &Arc<Usage>, store: &Arc<St>, plan: FlushPlan) {
    if !usage.start_flusher() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(flusher(
                Arc::downgrade(usage),
                Arc::clone(store),
                plan,
                tokio::time::sleep,
            ));
        }
        Err(_) => {
            usage.flusher.store(false, Ordering::Release);
            tracing::warn!(
                "no Tokio runtime to run the last_used_at flusher on; uses wait for PatLayer::flush"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenHash;

    fn record(id: u8, last_used_at: Option<OffsetDateTime>) -> TokenRecord<i64> {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut record = TokenRecord::new(
            TokenId::from_bytes([id; 16]),
            1,
            TokenHash::of("t"),
            now,
            now,
        );
        record.last_used_at = last_used_at;
        record
    }

    const SECOND: i128 = 1_000_000_000;

    #[test]
    fn one_use_per_token_per_interval() {
        let usage = Usage::default();
        let minute = Duration::minutes(1);
        let t0 = 1_000 * SECOND;
        let a = record(1, None);
        assert!(usage.record(&a, t0, minute));
        for i in 0..1000 {
            assert!(!usage.record(&a, t0 + i * SECOND / 20, minute));
        }
        assert!(usage.record(&record(2, None), t0, minute));
        assert_eq!(usage.pending(), 2);
        assert!(usage.record(&a, t0 + 60 * SECOND, minute));
        let batch = usage.take(t0 + 60 * SECOND, minute);
        assert_eq!(batch.len(), 3);
        assert_eq!(usage.pending(), 0);
    }

    #[test]
    fn a_recent_stored_use_is_not_written_again() {
        let usage = Usage::default();
        let t0 = 1_000 * SECOND;
        let recent = OffsetDateTime::from_unix_timestamp(990).unwrap();
        assert!(!usage.record(&record(1, Some(recent)), t0, Duration::minutes(1)));
        let old = OffsetDateTime::from_unix_timestamp(900).unwrap();
        assert!(usage.record(&record(2, Some(old)), t0, Duration::minutes(1)));
    }

    #[test]
    fn the_lock_free_filter_never_hides_a_due_use() {
        let usage = Usage::default();
        let minute = Duration::minutes(1);
        let t0 = 1_000 * SECOND + SECOND / 2;
        let a = record(1, None);
        // Same filter slot, another token: falls through to the shards.
        let mut b = record(1, None);
        b.id = (0..=u8::MAX)
            .map(|n| TokenId::from_bytes([n; 16]))
            .find(|id| id != &a.id && mix(id.as_bytes()) >> 56 == mix(a.id.as_bytes()) >> 56)
            .expect("another id in the same slot");
        assert!(usage.record(&a, t0, minute));
        assert!(usage.record(&b, t0, minute));
        let mut again = Vec::new();
        for step in 1..=130 {
            // Every half second for 65 s: the use is queued again exactly once, at the
            // first request a whole minute after the first one.
            if usage.record(&a, t0 + step * SECOND / 2, minute) {
                again.push(step);
            }
        }
        assert_eq!(again, [120]);
        assert_eq!(usage.take(t0 + 65 * SECOND, minute).len(), 3);
    }

    #[test]
    fn a_queued_token_is_answered_by_the_filter_alone() {
        let usage = std::sync::Arc::new(Usage::default());
        let a = record(7, None);
        let t0 = 1_000 * SECOND;
        assert!(usage.record(&a, t0, Duration::minutes(1)));
        // Hold the shard's lock: a request that reached the shard would wait for it, and
        // the answer would not come in time; the filter must answer without the lock.
        let _held = lock(&usage.shards[(mix(a.id.as_bytes()) >> 48) as usize % SHARDS]);
        let (done, answer) = std::sync::mpsc::channel();
        let usage = std::sync::Arc::clone(&usage);
        std::thread::spawn(move || {
            let queued =
                (1..100).any(|i| usage.record(&a, t0 + i * SECOND / 10, Duration::minutes(1)));
            let _ = done.send(queued);
        });
        let answer = answer.recv_timeout(std::time::Duration::from_secs(5));
        assert_eq!(answer, Ok(false), "the filter did not answer alone");
    }

    #[test]
    fn counter_ids_spread_over_slots_and_shards() {
        let ids = (0u64..4096).map(|n| {
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&n.to_be_bytes());
            mix(&id)
        });
        let mut slots = [0usize; RECENT];
        let mut fingerprints = std::collections::HashSet::new();
        for m in ids {
            slots[(m >> 56) as usize % RECENT] += 1;
            fingerprints.insert((m ^ (m >> 29)) & FINGERPRINT_MASK);
        }
        assert!(slots.iter().all(|&n| n > 0 && n < 64), "{slots:?}");
        assert_eq!(fingerprints.len(), 4096);
    }

    #[test]
    fn without_a_flush_uses_are_bounded() {
        let usage = Usage::default();
        let t0 = 1_000 * SECOND;
        let mut queued = 0;
        for n in 0..(MAX_PENDING * SHARDS * 2) {
            // Ids are random, as the crate makes them (the filter relies on it).
            let _ = n;
            let mut r = record(0, None);
            r.id = TokenId::random().unwrap();
            queued += usize::from(usage.record(&r, t0, Duration::minutes(1)));
        }
        assert_eq!(usage.pending(), MAX_PENDING * SHARDS);
        assert_eq!(queued, MAX_PENDING * SHARDS);
    }

    #[test]
    fn forgotten_tokens_leave_the_map() {
        let usage = Usage::default();
        let t0 = 1_000 * SECOND;
        usage.record(&record(1, None), t0, Duration::minutes(1));
        usage.take(t0 + 61 * SECOND, Duration::minutes(1));
        assert!(usage.shards.iter().all(|s| lock(s).queued.is_empty()));
    }
}
