//! The change poller: for databases without notifications (SQLite), hands every writer's
//! changes to this instance's [`CachedStore`](super::CachedStore), and pauses the cache
//! whenever it cannot read them.
//!
//! The table's triggers (`feed`) append each changed token's id to `<table>_changes`, in
//! the writer's transaction. One task per poller, every [`FollowOptions::interval`]:
//!
//! - it reads the rows after the last one it read (`WHERE id > last ORDER BY id`, by the
//!   primary key), in batches, and evicts their token ids; a row whose token id is not one
//!   clears the cache (something else writes to the change table). Where ids may commit
//!   out of order ([`ChangeSource::lookback`]: MySQL) it reads from an earlier id, the last
//!   one read before the lookback began, and skips the rows it has evicted already;
//! - a read that fails, or has not answered within [`FollowOptions::read_timeout`], pauses
//!   the cache ([`Evictor::pause`]) until a read succeeds again: the rows are still there
//!   (for a minute, at least), so that read catches up, and nothing was kept meanwhile;
//! - at most once every [`PRUNE_EVERY`] it deletes the rows older than [`RETENTION`]; a
//!   poller that has read nothing for half of it (its process was stopped, say) clears the
//!   cache before it reads again, since what it missed may have been deleted.

use std::{
    collections::{BTreeSet, VecDeque},
    fmt,
    panic::AssertUnwindSafe,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use futures_util::FutureExt;
use tokio::time::{Instant, MissedTickBehavior, interval_at, timeout};

use super::{
    StoreError, StoreErrorKind,
    bus::{Ends, FailClosed, Stop, Throttle, until_end},
    cache::{Evictor, PauseGuard, WeakEvictor},
};
use crate::record::{TokenId, UserId};

/// How often a poller reads the change table, unless configured
/// ([`FollowOptions::interval`]): the bound on how long a change made by any writer goes
/// unseen by this instance's cache.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How long the change table keeps a row: a poller deletes older ones as it goes.
pub(crate) const RETENTION: Duration = Duration::from_secs(60);

/// How often one poller deletes the rows older than [`RETENTION`] at most.
pub(crate) const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// How many rows one read takes at most; a poller reads again at once when it got as many.
const BATCH: i64 = 1000;

/// The floor of the read timeout: a short interval does not make a busy database's
/// answers count as failures.
const MIN_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Who the poller's log lines and its fail-closed warning name.
const POLLER: &str = "tower-pat change poller";

/// What a poller reads, in one database: the change table of one token table.
#[async_trait]
pub(crate) trait ChangeSource: Send + Sync + 'static {
    /// The last row's id, 0 when the table is empty.
    async fn latest(&self) -> Result<i64, sqlx::Error>;

    /// The first `limit` rows after `after`, by id: `(id, token_id)`.
    async fn read(&self, after: i64, limit: i64) -> Result<Vec<(i64, String)>, sqlx::Error>;

    /// Deletes the rows older than `retention`; how many.
    async fn prune(&self, retention: Duration) -> Result<u64, sqlx::Error>;

    /// The change table, for messages.
    fn name(&self) -> &str;

    /// How long after it took its row id a change may commit: zero where writes take
    /// turns, so ids commit in order (SQLite); where they do not (MySQL's
    /// `AUTO_INCREMENT`, taken at the insert), the poller reads the ids taken in this
    /// last stretch again, and evicts each row once.
    fn lookback(&self) -> Duration;
}

/// The change table `sql` over `pool`: what a store (or a Laravel application's tables)
/// hands the poller. Written once for the pools that have change tables ([`read_over`]).
pub(crate) struct PoolChanges<P> {
    pub(crate) pool: P,
    pub(crate) sql: super::feed::ChangeTable,
    /// See [`ChangeSource::lookback`]: zero for SQLite, whose writes take turns.
    pub(crate) lookback: Duration,
}

/// Implements [`ChangeSource`] for [`PoolChanges`] over one sqlx pool type: the
/// statements are [`ChangeTable`](super::feed::ChangeTable)'s, the same for every database.
macro_rules! read_over {
    ($pool:ty) => {
        #[async_trait]
        impl ChangeSource for PoolChanges<$pool> {
            async fn latest(&self) -> Result<i64, sqlx::Error> {
                sqlx::query_scalar(self.sql.latest.clone())
                    .fetch_one(&self.pool)
                    .await
            }

            async fn read(
                &self,
                after: i64,
                limit: i64,
            ) -> Result<Vec<(i64, String)>, sqlx::Error> {
                sqlx::query_as(self.sql.read.clone())
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }

            async fn prune(&self, retention: Duration) -> Result<u64, sqlx::Error> {
                let seconds = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
                let done = sqlx::query(self.sql.prune.clone())
                    .bind(seconds)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            fn name(&self) -> &str {
                &self.sql.name
            }

            fn lookback(&self) -> Duration {
                self.lookback
            }
        }
    };
}

#[cfg(feature = "sqlite")]
read_over!(sqlx::SqlitePool);
#[cfg(feature = "mysql")]
read_over!(sqlx::MySqlPool);

/// A change table whose rows name tokens in a form of their own (a Laravel application's
/// `s:<row id>`, `p:<jti>`): read through `inner`, each row's token named as the poller
/// reads it by `token_id`.
#[cfg(feature = "laravel")]
pub(crate) struct Translated<S> {
    pub(crate) inner: S,
    pub(crate) token_id: fn(&str) -> String,
}

#[cfg(feature = "laravel")]
#[async_trait]
impl<S: ChangeSource> ChangeSource for Translated<S> {
    async fn latest(&self) -> Result<i64, sqlx::Error> {
        self.inner.latest().await
    }

    async fn read(&self, after: i64, limit: i64) -> Result<Vec<(i64, String)>, sqlx::Error> {
        let rows = self.inner.read(after, limit).await?;
        Ok(rows
            .into_iter()
            .map(|(id, token)| (id, (self.token_id)(&token)))
            .collect())
    }

    async fn prune(&self, retention: Duration) -> Result<u64, sqlx::Error> {
        self.inner.prune(retention).await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn lookback(&self) -> Duration {
        self.inner.lookback()
    }
}

/// The options of a store's `follow_changes_with` ([`SqliteStore`](super::SqliteStore)).
///
/// ```
/// use std::time::Duration;
/// use tower_pat::store::sqlite::FollowOptions;
///
/// let options = FollowOptions::new().interval(Duration::from_millis(100));
/// assert_eq!(options.bound(), Duration::from_millis(100));
/// ```
#[derive(Clone, Debug)]
pub struct FollowOptions {
    interval: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        Self {
            interval: DEFAULT_POLL_INTERVAL,
        }
    }
}

impl FollowOptions {
    /// The defaults ([`DEFAULT_POLL_INTERVAL`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// How often the change table is read (default [`DEFAULT_POLL_INTERVAL`], 250 ms): a
    /// change any writer commits is evicted here by the next read, so within the interval
    /// (plus the read's own time). Each read is one indexed query; a shorter interval
    /// costs more of them.
    ///
    /// # Panics
    ///
    /// When `interval` is under a millisecond.
    #[track_caller]
    pub fn interval(mut self, interval: Duration) -> Self {
        assert!(
            interval >= Duration::from_millis(1),
            "FollowOptions::interval: {interval:?} is under a millisecond"
        );
        self.interval = interval;
        self
    }

    /// The propagation bound: the interval.
    pub fn bound(&self) -> Duration {
        self.interval
    }

    /// How long a read may take before it counts as failed (and the cache is paused): the
    /// interval, but at least a second.
    pub fn read_timeout(&self) -> Duration {
        self.interval.max(MIN_READ_TIMEOUT)
    }
}

/// The polling a store's `follow_changes` started. Dropping this handle does not stop it:
/// it runs as long as the cache does (as the PostgreSQL listener does), so that
/// `store.follow_changes(cache.evictor()).await?;` needs no handle kept.
///
/// If it ends any other way than the cache being dropped or [`stop`](Self::stop) (it
/// panicked, or the Tokio runtime running it shut down while the cache lives on), it
/// leaves the cache paused for good: nothing vouches for it any more.
#[derive(Debug)]
pub struct ChangePoller {
    shared: Arc<Shared>,
}

/// What the handle and the task share.
#[derive(Debug, Default)]
struct Shared {
    reads: AtomicU64,
    failures: AtomicU64,
    malformed: AtomicU64,
    evicted: AtomicU64,
    stop: Arc<Stop>,
}

impl ChangePoller {
    /// Stops polling (the cache then sees only the changes made through it, and its TTL
    /// bounds the rest). A pause the poller holds ends with it.
    pub fn stop(&self) {
        self.shared.stop.stop();
    }

    /// How many reads succeeded.
    pub fn reads(&self) -> u64 {
        self.shared.reads.load(Ordering::Acquire)
    }

    /// How many reads failed or timed out (each time the cache was paused until a read
    /// succeeded again).
    pub fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Acquire)
    }

    /// How many rows of the change table did not hold a token id (each cleared the cache).
    pub fn malformed(&self) -> u64 {
        self.shared.malformed.load(Ordering::Acquire)
    }

    /// How many token ids were evicted.
    pub fn evicted(&self) -> u64 {
        self.shared.evicted.load(Ordering::Acquire)
    }
}

/// Reads the last row's id, then polls `source` on the Tokio runtime, evicting through
/// `evictor`, until the cache is gone or the poller is stopped.
pub(crate) async fn start<U: UserId, S: ChangeSource>(
    source: S,
    evictor: Evictor<U>,
    options: FollowOptions,
) -> Result<ChangePoller, StoreError> {
    let read_timeout = options.read_timeout();
    let last = match timeout(read_timeout, source.latest()).await {
        Ok(Ok(last)) => last,
        Ok(Err(error)) => {
            return Err(StoreError::with_kind(
                StoreErrorKind::Backend,
                format!(
                    "the change poller cannot read {} (does the table have its change feed? \
                     `migrate` or `install_change_feed` installs it)",
                    source.name()
                ),
            )
            .with_source(error));
        }
        Err(_) => {
            return Err(StoreError::with_kind(
                StoreErrorKind::Timeout,
                format!(
                    "the change poller could not read {} within {read_timeout:?}",
                    source.name()
                ),
            ));
        }
    };
    let shared = Arc::new(Shared::default());
    let cache = evictor.downgrade();
    drop(evictor);
    let sentinel = FailClosed {
        cache: cache.clone(),
        armed: true,
        listener: POLLER,
    };
    let poller = Poller {
        source,
        options,
        cache,
        shared: Arc::clone(&shared),
        last,
        history: VecDeque::from([(Instant::now(), last)]),
        seen: BTreeSet::new(),
        last_read: Instant::now(),
        last_prune: Instant::now(),
        pause: None,
        failing: Throttle::default(),
        malformed: Throttle::default(),
    };
    tokio::spawn(poller.run(sentinel));
    Ok(ChangePoller { shared })
}

/// What the polling task owns.
struct Poller<U, S> {
    source: S,
    options: FollowOptions,
    cache: WeakEvictor<U>,
    shared: Arc<Shared>,
    /// The last row read.
    last: i64,
    /// Where a lookback applies: when each recent read that succeeded began, and `last`
    /// then, oldest first.
    history: VecDeque<(Instant, i64)>,
    /// Where a lookback applies: the rows read above the oldest `history` entry.
    seen: BTreeSet<i64>,
    /// When the last read that succeeded began.
    last_read: Instant,
    last_prune: Instant,
    /// Held while reads fail.
    pause: Option<PauseGuard<U>>,
    failing: Throttle,
    malformed: Throttle,
}

/// Why a read did not catch up.
enum Missed {
    /// The cache is gone.
    Done,
    Failed(String),
}

impl fmt::Display for Missed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Done => f.write_str("the cache is gone"),
            Self::Failed(why) => f.write_str(why),
        }
    }
}

impl<U: UserId, S: ChangeSource> Poller<U, S> {
    /// Polls until the cache is gone or the poller is stopped; pauses the cache for good
    /// if it ends otherwise.
    async fn run(self, mut sentinel: FailClosed<U>) {
        let polling = AssertUnwindSafe(self.poll()).catch_unwind();
        if polling.await.is_ok() {
            sentinel.armed = false;
        } else {
            tracing::error!("the change poller panicked");
        }
    }

    async fn poll(mut self) {
        let mut ends = Ends {
            closed: self.cache.closed(),
            stop: Arc::clone(&self.shared.stop),
        };
        let interval = self.options.interval;
        let mut ticks = interval_at(Instant::now() + interval, interval);
        // A slow read delays the next one rather than bunching them up.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if until_end(&mut ends, ticks.tick()).await.is_none() {
                return;
            }
            let began = Instant::now();
            let before = self.last;
            let read = timeout(self.options.read_timeout(), self.catch_up(began));
            let outcome = match until_end(&mut ends, read).await {
                None => return,
                Some(Ok(outcome)) => outcome,
                Some(Err(_)) => Err(Missed::Failed(format!(
                    "no answer within {:?}",
                    self.options.read_timeout()
                ))),
            };
            match outcome {
                Ok(()) => {
                    self.shared.reads.fetch_add(1, Ordering::AcqRel);
                    self.last_read = began;
                    if !self.source.lookback().is_zero() {
                        self.history.push_back((began, before));
                    }
                    if self.pause.take().is_some() {
                        tracing::info!(
                            changes = self.source.name(),
                            "the change poller reads again; the token cache is in use again"
                        );
                    }
                    self.prune_if_due(&mut ends).await;
                }
                Err(Missed::Done) => return,
                Err(Missed::Failed(why)) => {
                    self.shared.failures.fetch_add(1, Ordering::AcqRel);
                    if self.pause.is_none() {
                        let Some(evictor) = self.cache.upgrade() else {
                            return;
                        };
                        self.pause = Some(evictor.pause());
                        crate::metrics::listener_lost("poller");
                    }
                    if let Some(unlogged) = self.failing.warn(Instant::now()) {
                        tracing::warn!(
                            changes = self.source.name(),
                            reason = %why,
                            unlogged,
                            "the change poller cannot read the change table: the token cache \
                             is cleared and keeps nothing (every request asks the database) \
                             until a read succeeds (logged at most once a minute)"
                        );
                    }
                }
            }
        }
    }

    /// Reads every row after the last one read and evicts their tokens.
    async fn catch_up(&mut self, began: Instant) -> Result<(), Missed> {
        // Asleep for longer than half the retention: what was missed may be deleted.
        let mut stale = began.duration_since(self.last_read) > RETENTION / 2;
        let lookback = !self.source.lookback().is_zero();
        let mut cursor = if lookback { self.floor() } else { self.last };
        loop {
            let rows = self
                .source
                .read(cursor, BATCH)
                .await
                .map_err(|error| Missed::Failed(error.to_string()))?;
            let evictor = self.cache.upgrade().ok_or(Missed::Done)?;
            if std::mem::take(&mut stale) {
                evictor.evict_all();
            }
            let full = rows.len() as i64 >= BATCH;
            for (id, token) in rows {
                cursor = id;
                let new = if lookback {
                    self.seen.insert(id)
                } else {
                    id > self.last
                };
                self.last = self.last.max(id);
                if new {
                    self.evict(&evictor, id, &token);
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Where a read with a lookback starts: `last` as it was when the newest read began
    /// that began a lookback or more before the previous read that succeeded. Every change
    /// whose id is at most that committed before the previous read (if it commits within
    /// the lookback), which read it. Forgets the history and the rows below it.
    fn floor(&mut self) -> i64 {
        let cutoff = self.last_read.checked_sub(self.source.lookback());
        while let (Some(cutoff), Some(&(next, _))) = (cutoff, self.history.get(1))
            && next <= cutoff
        {
            self.history.pop_front();
        }
        let floor = self.history.front().map_or(self.last, |&(_, last)| last);
        self.seen = self.seen.split_off(&floor.saturating_add(1));
        floor
    }

    fn evict(&mut self, evictor: &Evictor<U>, row: i64, token: &str) {
        match TokenId::from_str(token) {
            Ok(id) => {
                evictor.evict_token(id);
                self.shared.evicted.fetch_add(1, Ordering::AcqRel);
            }
            Err(_) => {
                self.shared.malformed.fetch_add(1, Ordering::AcqRel);
                evictor.evict_all();
                if let Some(unlogged) = self.malformed.warn(Instant::now()) {
                    tracing::warn!(
                        changes = self.source.name(),
                        row,
                        unlogged,
                        "a row of the change table does not hold a token id (something else \
                         writes to it): the token cache is cleared; logged at most once a \
                         minute"
                    );
                }
            }
        }
    }

    /// Deletes the rows older than [`RETENTION`], at most once every [`PRUNE_EVERY`]. A
    /// failure is logged, not more: the rows wait for the next prune.
    async fn prune_if_due(&mut self, ends: &mut Ends<U>) {
        let now = Instant::now();
        if now.duration_since(self.last_prune) < PRUNE_EVERY {
            return;
        }
        self.last_prune = now;
        let pruned = timeout(self.options.read_timeout(), self.source.prune(RETENTION));
        match until_end(ends, pruned).await {
            Some(Ok(Err(error))) => {
                tracing::debug!(changes = self.source.name(), %error, "the change table was not pruned");
            }
            Some(Err(_)) => {
                tracing::debug!(
                    changes = self.source.name(),
                    "the change table's prune timed out"
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_timeout_is_the_interval_but_at_least_a_second() {
        let fast = FollowOptions::new();
        assert_eq!(fast.bound(), DEFAULT_POLL_INTERVAL);
        assert_eq!(fast.read_timeout(), Duration::from_secs(1));
        let slow = FollowOptions::new().interval(Duration::from_secs(3));
        assert_eq!(slow.read_timeout(), Duration::from_secs(3));
    }

    #[test]
    #[should_panic(expected = "under a millisecond")]
    fn an_interval_under_a_millisecond_is_refused() {
        let _ = FollowOptions::new().interval(Duration::from_micros(10));
    }
}
