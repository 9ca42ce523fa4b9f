//! [`CachedStore`]: a revocation-aware cache in front of any [`TokenStore`], so that a hot
//! token costs no database round trip.
//!
//! ```
//! use std::time::Duration;
//! use tower_pat::{MemoryStore, Tokens, scope::ScopeRegistry, store::CachedStore};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // In production the inner store is a `PostgresStore` or a `SqliteStore`.
//! let store = CachedStore::builder()
//!     .ttl(Duration::from_secs(60))
//!     .build(MemoryStore::<i64>::new());
//! let registry = ScopeRegistry::new().scope("orders:read", "See orders");
//! let tokens = Tokens::new(store, registry);
//! let layer = tokens.layer(); // resolves tokens through the cache
//!
//! let created = tokens.create(1, "cli", ["orders:read"]).await.unwrap();
//! // Revoking through the cache evicts the token at once.
//! tokens.revoke(&1, created.record.id).await.unwrap();
//! # });
//! ```
//!
//! # What it keeps
//!
//! - **Records** (revoked and expired ones too: the layer judges them against its own
//!   clock on every request), for [`DEFAULT_TTL`] after they were loaded, at most
//!   [`DEFAULT_MAX_ENTRIES`] of them. A hit is answered by
//!   [`find_ready`](TokenStore::find_ready): no future, no allocation, no store call.
//!   (moka applies recent inserts to its eviction lists a little later, on the thread of
//!   some read; that catching up allocates for the inserts, a hit itself never does.)
//! - **Unknown hashes** (well-formed tokens that no record has), for the shorter
//!   [`DEFAULT_NEGATIVE_TTL`], in a bound of their own ([`DEFAULT_MAX_NEGATIVE_ENTRIES`]),
//!   so a flood of made-up tokens reaches the store at most once per hash per negative TTL
//!   and cannot push real tokens out.
//! - **Never errors**: a failed lookup is asked again by the next request.
//!
//! Concurrent misses for one hash share one store call.
//!
//! # Revocation
//!
//! `revoke`, `revoke_all`, `delete` and `prune` through the cache (and so through
//! [`Tokens`](crate::Tokens), rotation included) evict what they change at once, by token
//! id and by user. A revocation made elsewhere (another instance, an admin tool) reaches
//! this cache only through an [`Evictor`], driven by a bus: [`PostgresStore::listen`]
//! wires one to PostgreSQL's notifications; an application with a bus of its own (Redis,
//! NATS) drives it itself. **Where no bus reaches the cache, a revoked token keeps working
//! for up to the TTL.**
//!
//! A lookup that began before an eviction never puts its (possibly stale) answer into the
//! cache after it: every eviction moves an epoch, and a load stores its answer only if
//! the epoch has not moved since it began.
//!
//! # Pausing: what a bus must do
//!
//! A bus can only vouch for the cache while it is connected. [`Evictor::pause`] clears the
//! cache and returns a [`PauseGuard`]; while any guard lives the cache keeps nothing, so
//! every request asks the store (slower, never stale), and a lookup that began before or
//! during the pause never stores its answer. Pauses are counted, so two buses pause
//! independently. A bus implementation:
//!
//! - evicts what it hears ([`Evictor::evict_token`], [`Evictor::evict_user`], or
//!   [`Evictor::evict_all`] for a message it cannot read);
//! - pauses whenever it cannot prove it is connected: from its start until it is
//!   subscribed, when its connection drops, and when it has been silent for longer than a
//!   revoked token may keep working (a partition drops nothing, it just goes quiet: only
//!   a heartbeat that must come back notices it);
//! - drops the guard once it is subscribed again and has evicted or cleared what it may
//!   have missed (the pause cleared everything and kept nothing since, so dropping it
//!   after resubscribing is enough);
//! - holds a [`WeakEvictor`] and waits on [`WeakEvictor::closed`] beside the bus, so it
//!   ends when the application drops the cache.
//!
//! [`PostgresStore::listen`] does all of this, with a heartbeat every quarter of its
//! staleness bound (2 s by default, [`ListenOptions`]): a token revoked on another
//! instance is refused here within the bound, partition or not.
//!
//! [`PostgresStore::listen`]: crate::PostgresStore::listen
//! [`ListenOptions`]: crate::store::postgres::ListenOptions

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, Weak,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use async_trait::async_trait;
use futures_util::{
    FutureExt,
    future::{BoxFuture, Shared, WeakShared},
};
use moka::sync::Cache;
use time::OffsetDateTime;

use super::{Cursor, Lookup, ManageTokens, Revoked, Rotated, StoreError, TokenStore};
use crate::{
    credential::Presented,
    hashers::PrefixState,
    metrics::{CacheMetrics, Eviction},
    record::{TokenId, TokenRecord, UserId},
    token::TokenHash,
};

/// How long a record stays cached unless configured ([`CachedStoreBuilder::ttl`]): the
/// longest a revocation made where no notification reaches the cache goes unseen.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// How long an unknown hash stays cached unless configured
/// ([`CachedStoreBuilder::negative_ttl`]).
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// How many records the cache holds at most unless configured
/// ([`CachedStoreBuilder::max_entries`]).
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;

/// How many unknown hashes the cache holds at most unless configured
/// ([`CachedStoreBuilder::max_negative_entries`]).
pub const DEFAULT_MAX_NEGATIVE_ENTRIES: u64 = 10_000;

/// The index of cached records by id and by user is swept of records the cache no longer
/// holds when it grows past twice what it held after the last sweep, and at least this.
const MIN_SWEEP: usize = 1024;

type Record<U> = Arc<TokenRecord<U>>;
/// What a lookup found: the record, or `None` for "no such token".
type LoadOutput<U> = Result<Option<Record<U>>, Arc<StoreError>>;
type Load<U> = Shared<BoxFuture<'static, LoadOutput<U>>>;
type WeakLoad<U> = WeakShared<BoxFuture<'static, LoadOutput<U>>>;

/// A cache in front of a [`TokenStore`]: see the [module documentation](self).
///
/// Cheap to clone: clones share the cache. Build it with [`new`](Self::new) (the
/// defaults) or [`builder`](Self::builder).
pub struct CachedStore<St: TokenStore> {
    inner: Arc<St>,
    core: Arc<Core<St::UserId>>,
}

/// A handle that evicts tokens from one [`CachedStore`]: hand it to whatever tells this
/// instance about revocations made elsewhere (a bus). Cheap to clone; it keeps the cache
/// alive, so a task that should end with the cache holds a [`WeakEvictor`] instead.
///
/// # What a bus must do
///
/// - Evict what it hears: [`evict_token`](Self::evict_token),
///   [`evict_user`](Self::evict_user), or [`evict_all`](Self::evict_all) for a message it
///   cannot read.
/// - [`pause`](Self::pause) the cache whenever it cannot prove that it is connected (the
///   connection dropped, or has been silent for longer than you accept a revoked token to
///   keep working). Pausing clears the cache, and while any [`PauseGuard`] lives the
///   cache keeps nothing, so every request asks the store: slower, never stale.
/// - Drop the guard once it is subscribed again (whatever is published from then on
///   reaches it). Nothing was kept during the pause, so there is nothing left to evict.
///
/// An application with a bus of its own (Redis pub/sub, NATS, …), here a channel standing
/// in for it:
///
/// ```
/// use std::sync::mpsc;
/// use tower_pat::{
///     ManageTokens, MemoryStore, TokenId, TokenStore, Tokens,
///     scope::ScopeRegistry,
///     store::{CachedStore, Evictor, PauseGuard},
/// };
///
/// /// What the bus delivers to each instance.
/// enum Bus {
///     Revoked(TokenId),
///     UserRevoked(i64),
///     Disconnected,
///     Reconnected,
/// }
///
/// /// The subscriber of one instance.
/// fn on_event(evictor: &Evictor<i64>, paused: &mut Option<PauseGuard<i64>>, event: Bus) {
///     match event {
///         Bus::Revoked(id) => evictor.evict_token(id),
///         Bus::UserRevoked(user) => evictor.evict_user(&user),
///         // Revocations may be missed from now on: keep nothing until the bus is back.
///         Bus::Disconnected => {
///             paused.get_or_insert_with(|| evictor.pause());
///         }
///         // Subscribed again: whatever is revoked from now on is heard.
///         Bus::Reconnected => *paused = None,
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = CachedStore::new(MemoryStore::<i64>::new());
/// let registry = ScopeRegistry::new().scope("orders:read", "See orders");
/// let tokens = Tokens::new(store.clone(), registry);
/// let token = tokens.create(7, "cli", ["orders:read"]).await.unwrap().record;
/// let evictor = store.evictor();
/// let (bus, events) = mpsc::channel();
/// let mut paused = None;
///
/// bus.send(Bus::Disconnected).unwrap();
/// for event in events.try_iter() {
///     on_event(&evictor, &mut paused, event);
/// }
/// assert!(evictor.is_paused());
/// // Another instance revokes the token while this one cannot hear it.
/// let now = tower_pat::time::OffsetDateTime::now_utc();
/// store.inner().revoke(&7, token.id, now).await.unwrap();
///
/// bus.send(Bus::Reconnected).unwrap();
/// bus.send(Bus::UserRevoked(8)).unwrap();
/// for event in events.try_iter() {
///     on_event(&evictor, &mut paused, event);
/// }
/// assert!(!evictor.is_paused());
/// // Nothing stale was kept: the store's answer, revoked, is what the layer sees.
/// let found = store.find(&token.token_hash).await.unwrap().unwrap();
/// assert!(found.revoked);
/// # });
/// ```
pub struct Evictor<U> {
    core: Arc<Core<U>>,
}

/// An [`Evictor`] that does not keep the cache alive, for a task that should end when the
/// cache is dropped: [`upgrade`](Self::upgrade) it for each message, and wait on
/// [`closed`](Self::closed) beside the bus. From [`Evictor::downgrade`]; cheap to clone.
///
/// ```
/// use tower_pat::{MemoryStore, TokenId, store::{CachedStore, WeakEvictor}};
/// use tokio::sync::mpsc;
///
/// /// Evicts what the bus says until the bus or the cache is gone.
/// async fn subscriber(cache: WeakEvictor<i64>, mut bus: mpsc::Receiver<TokenId>) {
///     let mut closed = cache.closed();
///     loop {
///         tokio::select! {
///             () = &mut closed => return,
///             message = bus.recv() => {
///                 let (Some(id), Some(evictor)) = (message, cache.upgrade()) else { return };
///                 evictor.evict_token(id);
///             }
///         }
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = CachedStore::new(MemoryStore::<i64>::new());
/// let (bus, messages) = mpsc::channel(16);
/// let task = tokio::spawn(subscriber(store.evictor().downgrade(), messages));
/// bus.send(TokenId::random().unwrap()).await.unwrap();
///
/// drop(store); // the last handle: the subscriber ends, though the bus is still open
/// tokio::time::timeout(std::time::Duration::from_secs(5), task)
///     .await
///     .expect("the subscriber ends with the cache")
///     .unwrap();
/// assert!(bus.is_closed());
/// # });
/// ```
pub struct WeakEvictor<U> {
    core: Weak<Core<U>>,
}

/// While it lives, the cache it came from ([`Evictor::pause`]) keeps nothing: every
/// request asks the store. Dropping it resumes the cache (unless another guard still
/// lives). It does not keep the cache alive.
#[must_use = "the cache resumes as soon as the guard is dropped"]
pub struct PauseGuard<U> {
    core: Weak<Core<U>>,
}

/// A future that completes once the cache is gone (every [`CachedStore`] clone and
/// [`Evictor`] of it dropped): from [`WeakEvictor::closed`]. It needs no runtime: the
/// cache wakes it as it is dropped.
#[must_use = "futures do nothing unless polled"]
pub struct Closed<U> {
    core: Weak<Core<U>>,
    /// Where this future's waker is kept in the cache, once it was polled.
    slot: Option<u64>,
}

/// The options of a [`CachedStore`] in front of a store of type `St`, from
/// [`CachedStore::builder`].
pub struct CachedStoreBuilder<St> {
    options: CacheOptions,
    store: PhantomData<fn() -> St>,
}

#[derive(Clone, Debug)]
struct CacheOptions {
    ttl: Duration,
    negative_ttl: Duration,
    max_entries: u64,
    max_negative_entries: u64,
}

impl<St> fmt::Debug for CachedStoreBuilder<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CachedStoreBuilder")
            .field(&self.options)
            .finish()
    }
}

impl<St> Clone for CachedStoreBuilder<St> {
    fn clone(&self) -> Self {
        Self {
            options: self.options.clone(),
            store: PhantomData,
        }
    }
}

impl<St> Default for CachedStoreBuilder<St> {
    fn default() -> Self {
        Self {
            options: CacheOptions {
                ttl: DEFAULT_TTL,
                negative_ttl: DEFAULT_NEGATIVE_TTL,
                max_entries: DEFAULT_MAX_ENTRIES,
                max_negative_entries: DEFAULT_MAX_NEGATIVE_ENTRIES,
            },
            store: PhantomData,
        }
    }
}

impl<St: TokenStore> CachedStoreBuilder<St> {
    /// How long a record stays cached after it was loaded (default [`DEFAULT_TTL`]):
    /// where no notification reaches the cache, the longest a revocation goes unseen.
    /// Recording a use does not extend it.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.options.ttl = ttl;
        self
    }

    /// How long a well-formed token that no record has stays known as unknown (default
    /// [`DEFAULT_NEGATIVE_TTL`]); zero caches none.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.options.negative_ttl = ttl;
        self
    }

    /// How many records the cache holds at most (default [`DEFAULT_MAX_ENTRIES`]).
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.options.max_entries = entries;
        self
    }

    /// How many unknown hashes the cache holds at most (default
    /// [`DEFAULT_MAX_NEGATIVE_ENTRIES`]); they never take the records' room.
    pub fn max_negative_entries(mut self, entries: u64) -> Self {
        self.options.max_negative_entries = entries;
        self
    }

    /// The cache in front of `store`.
    pub fn build(self, store: St) -> CachedStore<St> {
        self.build_shared(Arc::new(store))
    }

    /// The cache in front of a store shared elsewhere too.
    pub fn build_shared(self, store: Arc<St>) -> CachedStore<St> {
        let options = self.options;
        let metrics = CacheMetrics::new();
        let positive = Cache::builder()
            .max_capacity(options.max_entries)
            .time_to_live(options.ttl)
            // Keys are SHA-256 digests of real tokens (only found records go in): uniform
            // already, and out of an attacker's reach.
            .build_with_hasher(PrefixState::default());
        // Keys here are digests of whatever clients sent: hashed again, with a random key.
        let negative = Cache::builder()
            .max_capacity(if options.negative_ttl.is_zero() {
                0
            } else {
                options.max_negative_entries
            })
            .time_to_live(options.negative_ttl.max(Duration::from_nanos(1)))
            .build();
        CachedStore {
            inner: store,
            core: Arc::new(Core {
                positive,
                negative,
                index: Mutex::new(Index::default()),
                epoch: AtomicU64::new(0),
                pauses: AtomicUsize::new(0),
                inflight: Mutex::new(HashMap::default()),
                tickets: AtomicU64::new(0),
                closers: Mutex::new(Closers::default()),
                options,
                metrics,
            }),
        }
    }
}

/// What the clones of one cache, and its evictors, share.
struct Core<U> {
    positive: Cache<TokenHash, Record<U>, PrefixState>,
    negative: Cache<TokenHash, ()>,
    /// Which cached hashes belong to which token id and user; every change of `positive`
    /// other than moka's own expiry and eviction happens under this lock.
    index: Mutex<Index<U>>,
    /// Moves (under `index`) with every eviction; a load stores its answer only if it has
    /// not moved since the load began.
    epoch: AtomicU64,
    /// How many [`PauseGuard`]s live; while above zero nothing is stored (some bus cannot
    /// prove that revocations reach the cache).
    pauses: AtomicUsize,
    /// The loads under way, by hash: joined by concurrent misses.
    /// Std's keyed hash: a miss inserts the hash a client presented.
    inflight: Mutex<HashMap<TokenHash, Inflight<U>>>,
    tickets: AtomicU64,
    /// The wakers of the [`Closed`] futures waiting for the cache to go, woken as it goes.
    closers: Mutex<Closers>,
    options: CacheOptions,
    /// Hits, misses, entries and evictions (feature `metrics`).
    metrics: CacheMetrics,
}

#[derive(Default)]
struct Closers {
    next: u64,
    wakers: Vec<(u64, Waker)>,
}

impl<U> Drop for Core<U> {
    fn drop(&mut self) {
        let closers = self
            .closers
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for (_, waker) in closers.wakers.drain(..) {
            waker.wake();
        }
    }
}

struct Inflight<U> {
    ticket: u64,
    epoch: u64,
    load: WeakLoad<U>,
}

struct Index<U> {
    /// Std's keyed hash: ids come from the application's store and need not be random.
    by_id: HashMap<TokenId, (TokenHash, U)>,
    by_user: HashMap<U, Vec<TokenId>>,
    sweep_at: usize,
}

impl<U> Default for Index<U> {
    fn default() -> Self {
        Self {
            by_id: HashMap::default(),
            by_user: HashMap::new(),
            sweep_at: MIN_SWEEP,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the maps consistent before it can panic.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<U: UserId> Index<U> {
    fn add(&mut self, id: TokenId, hash: TokenHash, user: &U) {
        if self.by_id.insert(id, (hash, user.clone())).is_none() {
            self.by_user.entry(user.clone()).or_default().push(id);
        }
    }

    /// Forgets `id`, and returns the hash it had.
    fn remove(&mut self, id: TokenId) -> Option<TokenHash> {
        let (hash, user) = self.by_id.remove(&id)?;
        if let Some(ids) = self.by_user.get_mut(&user) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_user.remove(&user);
            }
        }
        Some(hash)
    }

    /// Drops the ids of records the cache no longer holds (expired, or evicted for room),
    /// once the index has grown enough for it to be worth it.
    fn sweep<S>(&mut self, positive: &Cache<TokenHash, Record<U>, S>)
    where
        S: std::hash::BuildHasher + Clone + Send + Sync + 'static,
    {
        if self.by_id.len() < self.sweep_at {
            return;
        }
        self.by_id
            .retain(|_, (hash, _)| positive.contains_key(hash));
        let by_id = &self.by_id;
        self.by_user.retain(|_, ids| {
            ids.retain(|id| by_id.contains_key(id));
            !ids.is_empty()
        });
        self.sweep_at = (self.by_id.len() * 2).max(MIN_SWEEP);
    }
}

impl<U: UserId> Core<U> {
    /// What the cache knows about `hash`, without asking the store.
    #[inline]
    fn cached(&self, hash: &TokenHash) -> Option<Option<Record<U>>> {
        let found = self.known(hash);
        self.metrics.cached(&found);
        found
    }

    #[inline]
    fn known(&self, hash: &TokenHash) -> Option<Option<Record<U>>> {
        if let Some(record) = self.positive.get(hash) {
            return Some(Some(record));
        }
        if self.negative.contains_key(hash) {
            return Some(None);
        }
        None
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stores the store's answer for `hash`, unless an eviction happened since the load
    /// began (at `epoch`) or the cache is paused.
    fn remember(&self, hash: TokenHash, found: &Option<Record<U>>, epoch: u64) {
        let mut index = lock(&self.index);
        if self.epoch() != epoch || self.pauses.load(Ordering::Acquire) > 0 {
            return;
        }
        match found {
            // A record for another hash is the store's bug (the layer answers 503): not
            // an answer to keep.
            Some(record) if record.token_hash == hash => {
                index.add(record.id, hash, &record.user_id);
                self.positive.insert(hash, Arc::clone(record));
                self.metrics.entries(&self.positive, &self.negative);
                index.sweep(&self.positive);
            }
            Some(_) => {}
            None => {
                self.negative.insert(hash, ());
                self.metrics.entries(&self.positive, &self.negative);
            }
        }
    }

    fn evict_token(&self, id: TokenId) {
        let mut index = lock(&self.index);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(hash) = index.remove(id) {
            self.positive.invalidate(&hash);
            self.metrics.evicted(Eviction::Revoked, 1);
        }
    }

    fn evict_user(&self, user: &U) {
        let mut index = lock(&self.index);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for id in index.by_user.remove(user).unwrap_or_default() {
            if let Some((hash, _)) = index.by_id.remove(&id) {
                self.positive.invalidate(&hash);
                self.metrics.evicted(Eviction::Revoked, 1);
            }
        }
    }

    fn evict_all(&self) {
        let mut index = lock(&self.index);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.metrics
            .evicted(Eviction::Cleared, self.positive.entry_count());
        self.positive.invalidate_all();
        self.negative.invalidate_all();
        index.by_id.clear();
        index.by_user.clear();
        index.sweep_at = MIN_SWEEP;
    }

    /// Evicts the cached records `doomed` picks (what a prune deletes).
    fn evict_where(&self, doomed: impl Fn(&TokenRecord<U>) -> bool) {
        let mut index = lock(&self.index);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let ids: Vec<TokenId> = self
            .positive
            .iter()
            .filter(|(_, record)| doomed(record))
            .map(|(_, record)| record.id)
            .collect();
        for id in ids {
            if let Some(hash) = index.remove(id) {
                self.positive.invalidate(&hash);
                self.metrics.evicted(Eviction::Pruned, 1);
            }
        }
    }

    /// A new record: a negative entry for its hash (from a lookup that raced the insert)
    /// must not hide it.
    fn inserted(&self, hash: &TokenHash) {
        let _index = lock(&self.index);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.negative.invalidate(hash);
    }

    /// Clears everything and keeps nothing until [`resume`](Self::resume): a load under
    /// way (begun before, at an older epoch) stores nothing either.
    fn pause(&self) {
        let mut index = lock(&self.index);
        self.pauses.fetch_add(1, Ordering::AcqRel);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.metrics
            .evicted(Eviction::Cleared, self.positive.entry_count());
        self.positive.invalidate_all();
        self.negative.invalidate_all();
        index.by_id.clear();
        index.by_user.clear();
        index.sweep_at = MIN_SWEEP;
    }
}

impl<U> Core<U> {
    /// Ends one pause. The epoch moves too: a load begun during the pause read the store
    /// while revocations could be missed, and must not be kept after it.
    fn resume(&self) {
        let _index = lock(&self.index);
        let _ = self
            .pauses
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// Removes its load from the in-flight map when the load ends or every request waiting
/// on it gave up.
struct InflightGuard<U: UserId> {
    core: Arc<Core<U>>,
    hash: TokenHash,
    ticket: u64,
}

impl<U: UserId> Drop for InflightGuard<U> {
    fn drop(&mut self) {
        let mut inflight = lock(&self.core.inflight);
        if inflight
            .get(&self.hash)
            .is_some_and(|i| i.ticket == self.ticket)
        {
            inflight.remove(&self.hash);
        }
    }
}

impl<St: TokenStore> CachedStore<St> {
    /// A cache with the defaults ([`DEFAULT_TTL`], [`DEFAULT_NEGATIVE_TTL`],
    /// [`DEFAULT_MAX_ENTRIES`], [`DEFAULT_MAX_NEGATIVE_ENTRIES`]) in front of `store`.
    pub fn new(store: St) -> Self {
        Self::builder().build(store)
    }

    /// The options, to set before building.
    pub fn builder() -> CachedStoreBuilder<St> {
        CachedStoreBuilder::default()
    }

    /// The store behind the cache. Changes made directly through it are not seen by the
    /// cache until they are evicted (through an [`Evictor`]) or expire.
    pub fn inner(&self) -> &St {
        &self.inner
    }

    /// A handle that evicts from this cache.
    pub fn evictor(&self) -> Evictor<St::UserId> {
        Evictor {
            core: Arc::clone(&self.core),
        }
    }

    /// About how many records are cached (moka counts lazily: recent changes may not
    /// show yet).
    pub fn entry_count(&self) -> u64 {
        self.core.positive.entry_count()
    }

    /// The one load of `presented` under way (joined), or a new one: loads are keyed, and
    /// joined, by the credential's key.
    fn load(&self, presented: Presented) -> Load<St::UserId> {
        let hash = presented.key();
        let core = &self.core;
        core.metrics.miss();
        let epoch = core.epoch();
        let mut inflight = lock(&core.inflight);
        // Joins only a load that began since the last eviction: an older one may bring
        // back what was just evicted. (Upgrading never drops the last handle of a load,
        // so no load ends, and takes this lock, while it is held.)
        if let Some(load) = inflight
            .get(hash)
            .filter(|i| i.epoch == epoch)
            .and_then(|i| i.load.upgrade())
        {
            return load;
        }
        let ticket = core.tickets.fetch_add(1, Ordering::Relaxed);
        let guard = InflightGuard {
            core: Arc::clone(core),
            hash: *hash,
            ticket,
        };
        let store = Arc::clone(&self.inner);
        let hash = *hash;
        let fut: BoxFuture<'static, LoadOutput<St::UserId>> = Box::pin(async move {
            let guard = guard;
            match store.find_presented(&presented).await {
                Ok(found) => {
                    guard.core.remember(hash, &found, epoch);
                    Ok(found)
                }
                Err(error) => Err(Arc::new(error)),
            }
        });
        let load = fut.shared();
        if let Some(weak) = load.downgrade() {
            inflight.insert(
                hash,
                Inflight {
                    ticket,
                    epoch,
                    load: weak,
                },
            );
        }
        load
    }
}

impl<St: TokenStore> Clone for CachedStore<St> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            core: Arc::clone(&self.core),
        }
    }
}

impl<St: TokenStore> fmt::Debug for CachedStore<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("options", &self.core.options)
            .field("entries", &self.core.positive.entry_count())
            .field("negative_entries", &self.core.negative.entry_count())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<St: TokenStore> TokenStore for CachedStore<St> {
    type UserId = St::UserId;

    async fn find(&self, hash: &TokenHash) -> Lookup<St::UserId> {
        if let Some(found) = self.core.cached(hash) {
            return Ok(found);
        }
        self.load(Presented::pat(*hash))
            .await
            .map_err(StoreError::shared)
    }

    /// Cached by the credential's key, as [`find`](Self::find) caches by the hash: a
    /// Passport token's signature is checked again only once its record has left the cache.
    async fn find_presented(&self, presented: &Presented) -> Lookup<St::UserId> {
        if let Some(found) = self.core.cached(presented.key()) {
            return Ok(found);
        }
        self.load(presented.clone())
            .await
            .map_err(StoreError::shared)
    }

    #[inline]
    fn find_ready(&self, hash: &TokenHash) -> Option<Lookup<St::UserId>> {
        if let Some(found) = self.core.cached(hash) {
            return Some(Ok(found));
        }
        // A store that answers at once (in memory) fills the cache at once too.
        let epoch = self.core.epoch();
        let found = self.inner.find_ready(hash);
        self.core.metrics.missed(&found);
        let found = found?;
        if let Ok(found) = &found {
            self.core.remember(*hash, found, epoch);
        }
        Some(found)
    }

    /// Passes the uses on. The cached records keep the `last_used_at` they were loaded
    /// with (a record is never re-inserted, so its TTL counts from its load): the layer
    /// remembers recent uses itself and asks nothing of the record to skip them.
    async fn touch(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        self.inner.touch(uses).await
    }
}

#[async_trait]
impl<St: ManageTokens> ManageTokens for CachedStore<St> {
    async fn insert(&self, record: TokenRecord<St::UserId>) -> Result<(), StoreError> {
        let hash = record.token_hash;
        let result = self.inner.insert(record).await;
        self.core.inserted(&hash);
        result
    }

    async fn get(&self, id: TokenId) -> Result<Option<TokenRecord<St::UserId>>, StoreError> {
        self.inner.get(id).await
    }

    async fn list(&self, user: &St::UserId) -> Result<Vec<TokenRecord<St::UserId>>, StoreError> {
        self.inner.list(user).await
    }

    // Each change evicts after the store answered, whatever it answered: a failure may
    // still have committed.
    async fn revoke(
        &self,
        user: &St::UserId,
        id: TokenId,
        at: OffsetDateTime,
    ) -> Result<Revoked, StoreError> {
        let result = self.inner.revoke(user, id, at).await;
        self.core.evict_token(id);
        result
    }

    async fn revoke_all(&self, user: &St::UserId, at: OffsetDateTime) -> Result<u64, StoreError> {
        let result = self.inner.revoke_all(user, at).await;
        self.core.evict_user(user);
        result
    }

    async fn delete(&self, user: &St::UserId, id: TokenId) -> Result<bool, StoreError> {
        let result = self.inner.delete(user, id).await;
        self.core.evict_token(id);
        result
    }

    async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let result = self.inner.prune(before).await;
        self.core
            .evict_where(|r| r.expires_at < before || (r.revoked && r.updated_at < before));
        result
    }

    async fn list_page(
        &self,
        user: &St::UserId,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<TokenRecord<St::UserId>>, StoreError> {
        self.inner.list_page(user, after, limit).await
    }

    async fn insert_limited(
        &self,
        record: TokenRecord<St::UserId>,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let hash = record.token_hash;
        let result = self.inner.insert_limited(record, limit, now).await;
        self.core.inserted(&hash);
        result
    }

    /// Evicts the old token, whose `expires_at` the rotation lowered, so that this
    /// instance refuses it from the end of its overlap on.
    async fn rotate(
        &self,
        user: &St::UserId,
        id: TokenId,
        successor: TokenRecord<St::UserId>,
        old_expires_at: OffsetDateTime,
        at: OffsetDateTime,
    ) -> Result<Rotated<St::UserId>, StoreError> {
        let hash = successor.token_hash;
        let result = self
            .inner
            .rotate(user, id, successor, old_expires_at, at)
            .await;
        self.core.evict_token(id);
        self.core.inserted(&hash);
        result
    }

    async fn expiring(
        &self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<TokenRecord<St::UserId>>, StoreError> {
        self.inner.expiring(now, until, after, limit).await
    }

    async fn claim_expiry_notices(
        &self,
        within: time::Duration,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<TokenRecord<St::UserId>>, StoreError> {
        self.inner.claim_expiry_notices(within, now, limit).await
    }
}

impl<U> Clone for Evictor<U> {
    fn clone(&self) -> Self {
        Self {
            core: Arc::clone(&self.core),
        }
    }
}

impl<U> fmt::Debug for Evictor<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evictor").finish_non_exhaustive()
    }
}

impl<U: UserId> Evictor<U> {
    /// Forgets token `id` (revoked, deleted or changed elsewhere): the next request with
    /// it asks the store.
    pub fn evict_token(&self, id: TokenId) {
        self.core.evict_token(id);
    }

    /// Forgets every cached token of `user` (all revoked elsewhere, say).
    pub fn evict_user(&self, user: &U) {
        self.core.evict_user(user);
    }

    /// Forgets everything, unknown hashes included: for when notifications may have been
    /// missed (the connection that brings them was lost).
    pub fn evict_all(&self) {
        self.core.evict_all();
    }

    /// Clears the cache (records and unknown hashes) and keeps nothing while the guard
    /// lives: for while this instance cannot prove that revocations reach it (its bus is
    /// disconnected, or silent). Every request then asks the store. Pauses are counted:
    /// two buses may each hold one, and the cache resumes when the last guard is dropped.
    /// A lookup that began before the pause, or during it, never stores its answer.
    pub fn pause(&self) -> PauseGuard<U> {
        self.core.pause();
        PauseGuard {
            core: Arc::downgrade(&self.core),
        }
    }

    /// Whether a [`PauseGuard`] of this cache lives.
    pub fn is_paused(&self) -> bool {
        self.core.pauses.load(Ordering::Acquire) > 0
    }

    /// A handle that does not keep the cache alive: for a bus task that should end with
    /// the cache.
    pub fn downgrade(&self) -> WeakEvictor<U> {
        WeakEvictor {
            core: Arc::downgrade(&self.core),
        }
    }
}

impl<U> WeakEvictor<U> {
    /// The evictor, while the cache lives.
    pub fn upgrade(&self) -> Option<Evictor<U>> {
        self.core.upgrade().map(|core| Evictor { core })
    }

    /// Completes once the cache is gone: select on it beside the bus, so the task ends
    /// when the application drops its cache. Needs no runtime.
    pub fn closed(&self) -> Closed<U> {
        Closed {
            core: Weak::clone(&self.core),
            slot: None,
        }
    }

    /// Whether the cache is gone.
    pub fn is_closed(&self) -> bool {
        self.core.strong_count() == 0
    }
}

impl<U> Clone for WeakEvictor<U> {
    fn clone(&self) -> Self {
        Self {
            core: Weak::clone(&self.core),
        }
    }
}

impl<U> fmt::Debug for WeakEvictor<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakEvictor")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<U> Drop for PauseGuard<U> {
    fn drop(&mut self) {
        if let Some(core) = self.core.upgrade() {
            core.resume();
        }
    }
}

impl<U> fmt::Debug for PauseGuard<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PauseGuard").finish_non_exhaustive()
    }
}

impl<U> Future for Closed<U> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(core) = self.core.upgrade() else {
            return Poll::Ready(());
        };
        {
            let mut closers = lock(&core.closers);
            let closers = &mut *closers;
            let kept = self
                .slot
                .and_then(|slot| closers.wakers.iter_mut().find(|(s, _)| *s == slot));
            match kept {
                Some((_, waker)) => waker.clone_from(cx.waker()),
                None => {
                    let slot = closers.next;
                    closers.next += 1;
                    closers.wakers.push((slot, cx.waker().clone()));
                    self.slot = Some(slot);
                }
            }
        }
        // If this was the last strong handle, the cache goes here, and wakes this task.
        drop(core);
        Poll::Pending
    }
}

impl<U> Drop for Closed<U> {
    fn drop(&mut self) {
        if let (Some(slot), Some(core)) = (self.slot, self.core.upgrade()) {
            lock(&core.closers).wakers.retain(|(s, _)| *s != slot);
        }
    }
}

impl<U> fmt::Debug for Closed<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Closed")
            .field("closed", &(self.core.strong_count() == 0))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{scope::Scopes, store::MemoryStore};

    fn record(n: u8, user: i64) -> TokenRecord<i64> {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        TokenRecord::new(
            TokenId::from_bytes([n; 16]),
            user,
            TokenHash::from_bytes([n; 32]),
            now,
            now + time::Duration::days(1),
        )
        .with_name(format!("t{n}"))
        .with_scopes(Scopes::try_from_iter(["a"]).unwrap())
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        futures_util::FutureExt::now_or_never(Box::pin(f)).expect("a memory store never waits")
    }

    #[test]
    fn a_load_that_began_before_an_eviction_is_not_kept() {
        let store = CachedStore::new(MemoryStore::<i64>::new());
        let r = record(1, 7);
        block_on(store.inner().insert(r.clone())).unwrap();
        let epoch = store.core.epoch();
        let found = Some(Arc::new(r.clone()));
        store.evictor().evict_token(r.id);
        store.core.remember(r.token_hash, &found, epoch);
        assert!(store.core.cached(&r.token_hash).is_none());
        store
            .core
            .remember(r.token_hash, &found, store.core.epoch());
        assert!(store.core.cached(&r.token_hash).is_some());
    }

    #[test]
    fn the_index_follows_evictions_by_user() {
        let store = CachedStore::new(MemoryStore::<i64>::new());
        for (n, user) in [(1, 7), (2, 7), (3, 8)] {
            let r = record(n, user);
            block_on(store.inner().insert(r.clone())).unwrap();
            assert!(store.find_ready(&r.token_hash).unwrap().unwrap().is_some());
        }
        store.evictor().evict_user(&7);
        assert!(store.core.cached(&record(1, 7).token_hash).is_none());
        assert!(store.core.cached(&record(2, 7).token_hash).is_none());
        assert!(store.core.cached(&record(3, 8).token_hash).is_some());
        let index = lock(&store.core.index);
        assert_eq!(index.by_id.len(), 1);
        assert_eq!(index.by_user.len(), 1);
    }

    #[test]
    fn a_paused_cache_keeps_nothing_until_the_last_guard_goes() {
        let store = CachedStore::new(MemoryStore::<i64>::new());
        let r = record(1, 7);
        block_on(store.inner().insert(r.clone())).unwrap();
        assert!(store.find_ready(&r.token_hash).unwrap().unwrap().is_some());
        assert!(store.core.cached(&r.token_hash).is_some());
        let evictor = store.evictor();
        let first = evictor.pause();
        assert!(store.core.cached(&r.token_hash).is_none(), "pausing clears");
        assert!(lock(&store.core.index).by_id.is_empty());
        let second = evictor.pause();
        assert!(store.find_ready(&r.token_hash).unwrap().unwrap().is_some());
        assert!(store.core.cached(&r.token_hash).is_none());
        drop(first);
        assert!(evictor.is_paused(), "the second bus still holds its guard");
        assert!(store.find_ready(&r.token_hash).unwrap().unwrap().is_some());
        assert!(store.core.cached(&r.token_hash).is_none());
        drop(second);
        assert!(!evictor.is_paused());
        assert!(store.find_ready(&r.token_hash).unwrap().unwrap().is_some());
        assert!(store.core.cached(&r.token_hash).is_some());
    }

    #[test]
    fn a_load_that_began_before_or_during_a_pause_is_not_kept() {
        let store = CachedStore::new(MemoryStore::<i64>::new());
        let r = record(1, 7);
        let found = Some(Arc::new(r.clone()));
        let before = store.core.epoch();
        let guard = store.evictor().pause();
        let during = store.core.epoch();
        drop(guard);
        store.core.remember(r.token_hash, &found, before);
        store.core.remember(r.token_hash, &found, during);
        assert!(store.core.cached(&r.token_hash).is_none());
    }

    #[test]
    fn a_guard_and_a_weak_evictor_do_not_keep_the_cache_alive() {
        let store = CachedStore::new(MemoryStore::<i64>::new());
        let weak = store.evictor().downgrade();
        let guard = store.evictor().pause();
        assert!(weak.upgrade().is_some());
        drop(store);
        assert!(weak.upgrade().is_none());
        assert!(weak.is_closed());
        drop(guard);
    }

    struct Flag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn closed_is_woken_when_the_cache_goes_and_forgets_its_waker_when_dropped() {
        let store = CachedStore::new(MemoryStore::<i64>::new());
        let weak = store.evictor().downgrade();
        let flag = Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
        let waker = Waker::from(Arc::clone(&flag));
        let mut cx = Context::from_waker(&waker);

        let mut closed = weak.closed();
        let mut other = weak.closed();
        for _ in 0..3 {
            assert!(Pin::new(&mut closed).poll(&mut cx).is_pending());
        }
        assert!(Pin::new(&mut other).poll(&mut cx).is_pending());
        assert_eq!(lock(&store.core.closers).wakers.len(), 2, "one slot each");
        drop(other);
        assert_eq!(lock(&store.core.closers).wakers.len(), 1);

        let clone = store.clone();
        drop(store);
        assert!(
            !flag.0.load(Ordering::SeqCst),
            "a clone still holds the cache"
        );
        assert!(Pin::new(&mut closed).poll(&mut cx).is_pending());
        drop(clone);
        assert!(flag.0.load(Ordering::SeqCst), "woken as the cache went");
        assert!(Pin::new(&mut closed).poll(&mut cx).is_ready());
        assert!(Pin::new(&mut weak.closed()).poll(&mut cx).is_ready());
    }
}
