//! The audit trail: one [`AuditEvent`] for every change in a token's life (created,
//! rotated, revoked, revoked all, deleted, pruned) and for what a request met (a token
//! used after it expired, or after it was idle too long, and refusals), written through
//! `tracing` at target [`TARGET`] and handed, off the request path, to a sink the
//! application implements ([`AuditSink`]).
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use tower_pat::{
//!     MemoryStore, Tokens,
//!     audit::{Audit, AuditEvent, AuditKind, AuditSink, SinkError},
//!     scope::ScopeRegistry,
//! };
//!
//! /// Keeps the events in memory (an application writes them to a table, or ships them).
//! #[derive(Clone, Default)]
//! struct Trail(Arc<Mutex<Vec<AuditKind>>>);
//!
//! #[tower_pat::async_trait]
//! impl AuditSink<i64> for Trail {
//!     async fn record(&self, event: &AuditEvent<i64>) -> Result<(), SinkError> {
//!         self.0.lock().unwrap().push(event.kind);
//!         Ok(())
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let trail = Trail::default();
//! let registry = ScopeRegistry::new().scope("orders:read", "See orders");
//! let tokens = Tokens::new(MemoryStore::<i64>::new(), registry)
//!     .audit(Audit::builder().sink(trail.clone()).build());
//!
//! let created = tokens.create(7, "laptop", ["orders:read"]).await.unwrap();
//! tokens.revoke(&7, created.record.id).await.unwrap();
//! tokens.audit_handle().flush().await; // what was queued has reached the sink
//! assert_eq!(*trail.0.lock().unwrap(), [AuditKind::Created, AuditKind::Revoked]);
//! # });
//! ```
//!
//! # What is recorded, and when
//!
//! An event is recorded *after* the change it tells of committed (a failed or refused
//! operation records nothing, except the request refusals, which are themselves the
//! event). It never holds a secret: no plaintext token, no hash.
//!
//! # Fields
//!
//! Each event is one `tracing` event at level `INFO` and target `tower_pat::audit`, with
//! these field names (stable: a log pipeline may match on them). A field without a value
//! for the kind is left out.
//!
//! | field | value | events |
//! |---|---|---|
//! | `audit.kind` | `created`, `rotated`, `revoked`, `revoked_all`, `deleted`, `pruned`, `expired_on_use`, `idle_expired`, `refused`, `suppressed` | all |
//! | `audit.source` | who acted: `app` (the facade, unless told otherwise), `page` (the token page), `layer` (a request), or the application's own (`cli`, `leak`…) | all |
//! | `audit.at` | when, Unix seconds (the facade's clock) | all |
//! | `token.id` | the token's id (32 hex digits) | all but `revoked_all`, `pruned`, `suppressed` |
//! | `user.id` | the user id, as its `Debug` shows it | when known |
//! | `token.name` | the token's name, quoted and escaped as `Debug` shows it | `created`, `rotated`, `revoked`, `deleted`, `expired_on_use`, `idle_expired` |
//! | `token.scopes` | the scopes, space-delimited, quoted as `Debug` shows a string | `created`, `rotated` |
//! | `token.expires_at` | Unix seconds: when a new token expires; for `rotated`, when the old one stops working | `created`, `rotated` |
//! | `successor.id` | the id of the token a rotation made | `rotated` |
//! | `audit.code` | the refusal's code (`unknown_token`, `revoked_token`…) | `refused` |
//! | `audit.count` | how many: tokens revoked or pruned, events suppressed | `revoked_all`, `pruned`, `suppressed` |
//!
//! # The sink
//!
//! [`AuditBuilder::sink`] gives the application's [`AuditSink`]. Events reach it through
//! a bounded queue ([`AuditBuilder::queue_capacity`], default
//! [`DEFAULT_QUEUE_CAPACITY`]) drained by one task, one event at a time, in order, so a
//! slow or failing sink never holds up or fails a request or a lifecycle call: an event
//! that finds the queue full is dropped and counted ([`AuditStats::dropped`]), with a
//! warning at most once a minute; a sink that fails is counted ([`AuditStats::failed`])
//! and logged at most once a minute. The `tracing` event is written either way.
//!
//! With the `tokio` feature the task starts by itself on the current Tokio runtime with
//! the first queued event, and gives up on a sink call after
//! [`AuditBuilder::sink_timeout`] (default 10 s). Without it the application runs
//! [`Audit::drain`] on its runtime; until it does, events wait in the queue (and beyond
//! its bound are dropped). [`Audit::flush`] waits until what was queued has been handed
//! over, for a shutdown.
//!
//! # Refusals
//!
//! A flood of garbage must not flood the trail: [`Audit::refused`], [`Audit::expired_on_use`]
//! and [`Audit::idle_expired`] (the layer's events) share a budget of
//! [`AuditBuilder::refused_per_second`] events a second (default
//! [`DEFAULT_REFUSED_PER_SECOND`]); the rest are counted and told in one `suppressed`
//! event per second, with `audit.count` saying how many (written with the next refusal,
//! by the drain task a second later, or by [`Audit::flush`]).

use std::{
    borrow::Cow,
    collections::VecDeque,
    error::Error,
    fmt,
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Poll, Waker},
    time::Instant,
};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::{
    clock::{Clock, SystemClock},
    record::{TokenId, TokenRecord},
    scope::Scopes,
};

/// The `tracing` target of every audit event.
pub const TARGET: &str = "tower_pat::audit";

/// How many events wait for the sink at most, unless configured.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// How many of the layer's events (refusals, expired or idle tokens used) are recorded a
/// second, unless configured; the rest are counted in one `suppressed` event.
pub const DEFAULT_REFUSED_PER_SECOND: u32 = 10;

/// With the `tokio` feature, how long one sink call may take unless configured.
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub const DEFAULT_SINK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The source of the facade's events unless told otherwise
/// ([`Tokens::audit_source`](crate::Tokens::audit_source)).
pub const SOURCE_APP: &str = "app";

/// The source of the token page's events.
pub const SOURCE_PAGE: &str = "page";

/// The source of the layer's events (a request met the token).
pub const SOURCE_LAYER: &str = "layer";

/// How often, at most, a full queue or a failing sink is warned about.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditKind {
    /// A token was created.
    Created,
    /// A token was rotated: `token_id` is the old one, `successor` the new one,
    /// `expires_at` when the old one stops working.
    Rotated,
    /// A token was revoked.
    Revoked,
    /// Every active token of a user was revoked; `count` says how many.
    RevokedAll,
    /// A token was deleted.
    Deleted,
    /// Old tokens were pruned; `count` says how many.
    Pruned,
    /// A request came with a token that had expired.
    ExpiredOnUse,
    /// A request came with a token unused for longer than the idle lifetime.
    IdleExpired,
    /// A request was refused; `code` says why (the rejection's code).
    Refused,
    /// Events of the layer beyond the per-second budget were not recorded; `count` says
    /// how many.
    Suppressed,
}

impl AuditKind {
    /// The `audit.kind` field: `created`, `rotated`, `revoked`, `revoked_all`, `deleted`,
    /// `pruned`, `expired_on_use`, `idle_expired`, `refused` or `suppressed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Rotated => "rotated",
            Self::Revoked => "revoked",
            Self::RevokedAll => "revoked_all",
            Self::Deleted => "deleted",
            Self::Pruned => "pruned",
            Self::ExpiredOnUse => "expired_on_use",
            Self::IdleExpired => "idle_expired",
            Self::Refused => "refused",
            Self::Suppressed => "suppressed",
        }
    }

    /// What an event of this kind changed, for the token-change metric: its name and how
    /// many tokens (`count` for the events that change several); `None` for the events
    /// that change no token (uses, refusals).
    fn tokens_changed(self, count: Option<u64>) -> Option<(&'static str, u64)> {
        Some(match self {
            Self::Created => ("created", 1),
            Self::Rotated => ("rotated", 1),
            Self::Revoked => ("revoked", 1),
            Self::RevokedAll => ("revoked", count.unwrap_or(0)),
            Self::Deleted => ("deleted", 1),
            Self::Pruned => ("pruned", count.unwrap_or(0)),
            _ => return None,
        })
    }

    fn message(self) -> &'static str {
        match self {
            Self::Created => "personal access token created",
            Self::Rotated => "personal access token rotated",
            Self::Revoked => "personal access token revoked",
            Self::RevokedAll => "every personal access token of a user revoked",
            Self::Deleted => "personal access token deleted",
            Self::Pruned => "old personal access tokens pruned",
            Self::ExpiredOnUse => "an expired personal access token was used",
            Self::IdleExpired => "a personal access token idle too long was used",
            Self::Refused => "a request's personal access token was refused",
            Self::Suppressed => "audit events beyond the per-second budget were not recorded",
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the audit trail. Never holds a secret (no token, no hash).
///
/// Non-exhaustive: the crate makes them; an application that records events of its own
/// builds one with [`new`](Self::new) and the `with_` setters.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditEvent<U> {
    /// What happened.
    pub kind: AuditKind,
    /// When.
    pub at: OffsetDateTime,
    /// Who acted ([`SOURCE_APP`], [`SOURCE_PAGE`], [`SOURCE_LAYER`], or the
    /// application's own).
    pub source: Cow<'static, str>,
    /// The token, when there is one.
    pub token_id: Option<TokenId>,
    /// Whose token, when known.
    pub user_id: Option<U>,
    /// The token's name.
    pub name: Option<String>,
    /// The token's scopes.
    pub scopes: Option<Scopes>,
    /// When a new token expires; for a rotation, when the old one stops working.
    pub expires_at: Option<OffsetDateTime>,
    /// The token a rotation made.
    pub successor: Option<TokenId>,
    /// Why a request was refused: the rejection's code.
    pub code: Option<&'static str>,
    /// How many tokens (revoked all, pruned) or events (suppressed).
    pub count: Option<u64>,
}

impl<U> AuditEvent<U> {
    /// An event of `kind` at `at` from `source`, with no other field set.
    pub fn new(kind: AuditKind, at: OffsetDateTime, source: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            at,
            source: source.into(),
            token_id: None,
            user_id: None,
            name: None,
            scopes: None,
            expires_at: None,
            successor: None,
            code: None,
            count: None,
        }
    }

    /// The same event about `record`: its id, user, name and scopes.
    pub fn with_record(mut self, record: &TokenRecord<U>) -> Self
    where
        U: Clone,
    {
        self.token_id = Some(record.id);
        self.user_id = Some(record.user_id.clone());
        self.name = Some(record.name.clone());
        self.scopes = Some(record.scopes.clone());
        self
    }

    /// The same event about token `id`.
    pub fn with_token_id(mut self, id: TokenId) -> Self {
        self.token_id = Some(id);
        self
    }

    /// The same event about `user`'s token(s).
    pub fn with_user_id(mut self, user: U) -> Self {
        self.user_id = Some(user);
        self
    }

    /// The same event with this expiry.
    pub fn with_expires_at(mut self, at: OffsetDateTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// The same event with this successor.
    pub fn with_successor(mut self, id: TokenId) -> Self {
        self.successor = Some(id);
        self
    }

    /// The same event with this refusal code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The same event with this count.
    pub fn with_count(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// The same event without the scopes (what a request's event records of a token).
    fn without_details(mut self) -> Self {
        self.scopes = None;
        self
    }
}

/// A sink's failure, kept as the source of the warning that logs it.
pub type SinkError = Box<dyn Error + Send + Sync>;

/// Where the application keeps the audit trail: a table, a log shipper, a SIEM.
///
/// Called off the request path, one event at a time, in the order recorded, after the
/// change committed. A failure is counted and logged (at most once a minute), never
/// retried and never seen by the request or the lifecycle call that made the event.
#[async_trait]
pub trait AuditSink<U>: Send + Sync + 'static {
    /// Keeps `event`.
    ///
    /// # Errors
    ///
    /// Whatever kept it from keeping the event; logged and counted.
    async fn record(&self, event: &AuditEvent<U>) -> Result<(), SinkError>;
}

#[async_trait]
impl<U: Send + Sync + 'static, T: AuditSink<U> + ?Sized> AuditSink<U> for Arc<T> {
    async fn record(&self, event: &AuditEvent<U>) -> Result<(), SinkError> {
        (**self).record(event).await
    }
}

/// What an [`Audit`] has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditStats {
    /// Events recorded (each written through `tracing`).
    pub recorded: u64,
    /// Events the sink took.
    pub delivered: u64,
    /// Events dropped because the queue was full.
    pub dropped: u64,
    /// Events the sink failed on (or did not take in time).
    pub failed: u64,
    /// The layer's events not recorded, beyond the per-second budget.
    pub suppressed: u64,
}

/// The options of an [`Audit`].
pub struct AuditBuilder<U> {
    sink: Option<Arc<dyn AuditSink<U>>>,
    capacity: usize,
    per_second: u32,
    clock: Arc<dyn Clock>,
    #[cfg(feature = "tokio")]
    sink_timeout: Option<std::time::Duration>,
}

impl<U> fmt::Debug for AuditBuilder<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditBuilder")
            .field("sink", &self.sink.is_some())
            .field("queue_capacity", &self.capacity)
            .field("refused_per_second", &self.per_second)
            .finish_non_exhaustive()
    }
}

impl<U: Clone + fmt::Debug + Send + Sync + 'static> AuditBuilder<U> {
    /// Hands every event to `sink` as well, off the request path.
    pub fn sink(mut self, sink: impl AuditSink<U>) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// How many events may wait for the sink (default [`DEFAULT_QUEUE_CAPACITY`]; at
    /// least 1); more are dropped and counted.
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.capacity = events.max(1);
        self
    }

    /// How many of the layer's events are recorded a second (default
    /// [`DEFAULT_REFUSED_PER_SECOND`]); the rest are counted.
    pub fn refused_per_second(mut self, events: u32) -> Self {
        self.per_second = events;
        self
    }

    /// The clock that dates the events recorded through [`Audit::refused`],
    /// [`Audit::expired_on_use`] and [`Audit::idle_expired`] by hand (a
    /// [`ManualClock`](crate::clock::ManualClock) in tests). The facade dates its own events
    /// with its clock, and a `PatLayer` its refusals with the layer's clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long one sink call may take (default [`DEFAULT_SINK_TIMEOUT`]); `None` waits
    /// as long as it takes, holding up the events behind it.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn sink_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.sink_timeout = timeout;
        self
    }

    /// The audit trail.
    pub fn build(self) -> Audit<U> {
        Audit {
            shared: Arc::new(Shared {
                sink: self.sink,
                capacity: self.capacity,
                per_second: self.per_second,
                clock: self.clock,
                #[cfg(feature = "tokio")]
                sink_timeout: self.sink_timeout,
                queue: Mutex::new(Queue::default()),
                budget: Mutex::new(Budget::new()),
                recorded: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                suppressed: AtomicU64::new(0),
                draining: AtomicBool::new(false),
                warned_full: Mutex::new(None),
                warned_failed: Mutex::new(None),
            }),
        }
    }
}

/// The audit trail of a [`Tokens`](crate::Tokens) facade and the
/// [`PatLayer`](crate::PatLayer) built from it: writes each [`AuditEvent`] through
/// `tracing` and queues it for the application's [`AuditSink`], if any. See the [module
/// documentation](self).
///
/// Cheap to clone (one `Arc`), `Send` and `Sync`; its recording methods never wait and
/// never fail.
pub struct Audit<U> {
    shared: Arc<Shared<U>>,
}

impl<U> Clone for Audit<U> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<U> fmt::Debug for Audit<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audit")
            .field("sink", &self.shared.sink.is_some())
            .field("queue_capacity", &self.shared.capacity)
            .field("refused_per_second", &self.shared.per_second)
            .finish_non_exhaustive()
    }
}

impl<U: Clone + fmt::Debug + Send + Sync + 'static> Default for Audit<U> {
    fn default() -> Self {
        Self::new()
    }
}

struct Shared<U> {
    sink: Option<Arc<dyn AuditSink<U>>>,
    capacity: usize,
    per_second: u32,
    clock: Arc<dyn Clock>,
    #[cfg(feature = "tokio")]
    sink_timeout: Option<std::time::Duration>,
    queue: Mutex<Queue<U>>,
    budget: Mutex<Budget>,
    recorded: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    suppressed: AtomicU64,
    /// Whether a drain task runs (started by the `tokio` feature, or by [`Audit::drain`]).
    draining: AtomicBool,
    warned_full: Mutex<Option<Instant>>,
    warned_failed: Mutex<Option<Instant>>,
}

impl<U> Drop for Shared<U> {
    fn drop(&mut self) {
        // The drain task holds a weak reference: wake it so that it sees it is alone.
        let queue = self.queue.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(waker) = queue.waker.take() {
            waker.wake();
        }
    }
}

struct Queue<U> {
    events: VecDeque<AuditEvent<U>>,
    /// An event taken by the drain task and not yet handed over.
    in_flight: bool,
    /// The drain task, waiting for an event.
    waker: Option<Waker>,
    /// Callers of [`Audit::flush`], waiting for the queue to empty.
    flushers: Vec<Waker>,
}

impl<U> Default for Queue<U> {
    fn default() -> Self {
        Self {
            events: VecDeque::new(),
            in_flight: false,
            waker: None,
            flushers: Vec::new(),
        }
    }
}

impl<U> Queue<U> {
    fn is_idle(&self) -> bool {
        self.events.is_empty() && !self.in_flight
    }
}

/// The per-second budget of the layer's events.
struct Budget {
    second_started: Instant,
    spent: u32,
    /// Suppressed this second, not yet told.
    untold: u64,
}

impl Budget {
    fn new() -> Self {
        Self {
            second_started: Instant::now(),
            spent: 0,
            untold: 0,
        }
    }

    /// Starts a new second if the current one is over; returns what the old one
    /// suppressed, to tell.
    fn roll(&mut self, now: Instant) -> u64 {
        if now.duration_since(self.second_started) < std::time::Duration::from_secs(1) {
            return 0;
        }
        self.second_started = now;
        self.spent = 0;
        std::mem::take(&mut self.untold)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state behind each lock stays consistent between statements.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether a warning is due: at most one every [`WARN_EVERY`].
fn warn_due(last: &Mutex<Option<Instant>>) -> bool {
    let mut last = lock(last);
    let now = Instant::now();
    if last.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}

impl<U: Clone + fmt::Debug + Send + Sync + 'static> Audit<U> {
    /// An audit trail written through `tracing` only.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// The options: a sink, the queue's bound, the refusal budget.
    pub fn builder() -> AuditBuilder<U> {
        AuditBuilder {
            sink: None,
            capacity: DEFAULT_QUEUE_CAPACITY,
            per_second: DEFAULT_REFUSED_PER_SECOND,
            clock: Arc::new(SystemClock),
            #[cfg(feature = "tokio")]
            sink_timeout: Some(DEFAULT_SINK_TIMEOUT),
        }
    }

    /// Records `event`: writes it through `tracing`, and queues it for the sink (or drops
    /// and counts it when the queue is full). Never waits.
    pub fn record(&self, event: AuditEvent<U>) {
        self.shared.recorded.fetch_add(1, Ordering::Relaxed);
        if let Some((change, tokens)) = event.kind.tokens_changed(event.count) {
            crate::metrics::tokens_changed(change, tokens);
        }
        emit(&event);
        let Some(_) = &self.shared.sink else {
            return;
        };
        let waker = {
            let mut queue = lock(&self.shared.queue);
            if queue.events.len() >= self.shared.capacity {
                drop(queue);
                let dropped = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if warn_due(&self.shared.warned_full) {
                    tracing::warn!(
                        target: TARGET,
                        dropped,
                        capacity = self.shared.capacity,
                        "the audit sink does not keep up (or nothing drains its queue): events beyond the queue's bound are dropped"
                    );
                }
                return;
            }
            queue.events.push_back(event);
            queue.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        self.start_drain();
    }

    /// Records that a request was refused with `code` (a rejection's code), naming the
    /// token and user when the store knew them. Within the per-second budget it is an
    /// event; beyond it, it is counted in the next `suppressed` event. Never waits.
    pub fn refused(&self, code: &'static str, token_id: Option<TokenId>, user_id: Option<U>) {
        self.refused_at(None, code, token_id, user_id);
    }

    /// [`refused`](Self::refused), dated `at` (the layer's clock) rather than by this
    /// trail's clock.
    pub(crate) fn refused_at(
        &self,
        at: Option<OffsetDateTime>,
        code: &'static str,
        token_id: Option<TokenId>,
        user_id: Option<U>,
    ) {
        let Some(at) = self.spend(at) else {
            return;
        };
        let mut event = AuditEvent::new(AuditKind::Refused, at, SOURCE_LAYER).with_code(code);
        event.token_id = token_id;
        event.user_id = user_id;
        self.record(event);
    }

    /// Records that a request came with `record` after it expired (within the layer's
    /// budget, as [`refused`](Self::refused)). Never waits.
    pub fn expired_on_use(&self, record: &TokenRecord<U>) {
        self.layer_event(None, AuditKind::ExpiredOnUse, record);
    }

    /// Records that a request came with `record` after it was idle longer than the idle
    /// lifetime (within the layer's budget, as [`refused`](Self::refused)). Never waits.
    pub fn idle_expired(&self, record: &TokenRecord<U>) {
        self.layer_event(None, AuditKind::IdleExpired, record);
    }

    /// A layer's event about `record`, dated `at` (the layer's clock) or, without it, by
    /// this trail's clock.
    pub(crate) fn layer_event(
        &self,
        at: Option<OffsetDateTime>,
        kind: AuditKind,
        record: &TokenRecord<U>,
    ) {
        let Some(at) = self.spend(at) else {
            return;
        };
        let event = AuditEvent::new(kind, at, SOURCE_LAYER)
            .with_record(record)
            .without_details();
        self.record(event);
    }

    /// Takes one event from the per-second budget: the time to date it (`at`, else now),
    /// or `None` when the budget is spent (the event is counted). Tells what the last
    /// second suppressed, first, if it is over.
    fn spend(&self, at: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
        let (untold, allowed) = {
            let mut budget = lock(&self.shared.budget);
            let untold = budget.roll(Instant::now());
            let allowed = budget.spent < self.shared.per_second;
            if allowed {
                budget.spent += 1;
            } else {
                budget.untold += 1;
            }
            (untold, allowed)
        };
        self.tell_suppressed(untold);
        if allowed {
            Some(at.unwrap_or_else(|| self.now()))
        } else {
            self.shared.suppressed.fetch_add(1, Ordering::Relaxed);
            // The drain task tells it a second later, if nothing else does.
            self.start_drain();
            self.wake_drain();
            None
        }
    }

    fn tell_suppressed(&self, count: u64) {
        if count > 0 {
            let event =
                AuditEvent::new(AuditKind::Suppressed, self.now(), SOURCE_LAYER).with_count(count);
            self.record(event);
        }
    }

    /// Tells what a second that is over suppressed.
    fn tell_due(&self) {
        let untold = lock(&self.shared.budget).roll(Instant::now());
        self.tell_suppressed(untold);
    }

    fn has_untold(&self) -> bool {
        lock(&self.shared.budget).untold > 0
    }

    fn now(&self) -> OffsetDateTime {
        let now = self.shared.clock.now();
        now.replace_nanosecond(0).unwrap_or(now)
    }

    /// What this trail has done so far.
    pub fn stats(&self) -> AuditStats {
        AuditStats {
            recorded: self.shared.recorded.load(Ordering::Relaxed),
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            suppressed: self.shared.suppressed.load(Ordering::Relaxed),
        }
    }

    /// Waits until every event queued so far has been handed to the sink (or failed),
    /// and tells what the refusal budget suppressed until now: for a shutdown, or a test.
    /// Needs the drain task (the `tokio` feature starts it; else [`drain`](Self::drain)).
    /// A sink that hangs holds this up: bound it with a timeout.
    pub async fn flush(&self) {
        let untold = std::mem::take(&mut lock(&self.shared.budget).untold);
        self.tell_suppressed(untold);
        if self.shared.sink.is_none() {
            return;
        }
        self.start_drain();
        std::future::poll_fn(|cx| {
            let mut queue = lock(&self.shared.queue);
            if queue.is_idle() {
                return Poll::Ready(());
            }
            queue.flushers.push(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }

    /// The task that hands queued events to the sink, for an application that does not
    /// turn on the crate's `tokio` feature: spawn it on your runtime, handing it the
    /// runtime's sleep (it tells suppressed refusals a second after the fact with it). It
    /// ends when every clone of this `Audit` is gone. With the `tokio` feature such a task
    /// starts by itself with the first queued event; spawning this as well does nothing.
    ///
    /// ```
    /// use tower_pat::audit::Audit;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let audit = Audit::<i64>::new();
    /// tokio::spawn(audit.drain(tokio::time::sleep));
    /// # });
    /// ```
    pub fn drain<F, Fut>(&self, sleep: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Fn(std::time::Duration) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let start = !self.shared.draining.swap(true, Ordering::AcqRel);
        let shared = Arc::downgrade(&self.shared);
        async move {
            if start {
                run_drain(shared, sleep).await;
            }
        }
    }

    /// With the `tokio` feature: starts the drain task on the current runtime, once.
    fn start_drain(&self) {
        #[cfg(feature = "tokio")]
        {
            if self.shared.draining.load(Ordering::Acquire) {
                return;
            }
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            if self.shared.draining.swap(true, Ordering::AcqRel) {
                return;
            }
            runtime.spawn(run_drain(Arc::downgrade(&self.shared), tokio::time::sleep));
        }
    }

    fn wake_drain(&self) {
        let waker = lock(&self.shared.queue).waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// What the drain task waits for next.
enum Next<U> {
    Event(Arc<dyn AuditSink<U>>, AuditEvent<U>),
    /// Suppressed refusals to tell once their second is over.
    Untold,
    Gone,
}

async fn run_drain<U, F, Fut>(shared: Weak<Shared<U>>, sleep: F)
where
    U: Clone + fmt::Debug + Send + Sync + 'static,
    F: Fn(std::time::Duration) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let next = std::future::poll_fn(|cx| {
            let Some(shared) = shared.upgrade() else {
                return Poll::Ready(Next::Gone);
            };
            let audit = Audit { shared };
            if audit.has_untold() {
                return Poll::Ready(Next::Untold);
            }
            let mut queue = lock(&audit.shared.queue);
            match (&audit.shared.sink, queue.events.pop_front()) {
                (Some(sink), Some(event)) => {
                    queue.in_flight = true;
                    Poll::Ready(Next::Event(Arc::clone(sink), event))
                }
                _ => {
                    queue.in_flight = false;
                    for flusher in queue.flushers.drain(..) {
                        flusher.wake();
                    }
                    queue.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        match next {
            Next::Gone => return,
            Next::Untold => {
                sleep(std::time::Duration::from_secs(1)).await;
                match shared.upgrade() {
                    Some(shared) => Audit { shared }.tell_due(),
                    None => return,
                }
            }
            Next::Event(sink, event) => {
                let outcome = deliver(&shared, &*sink, &event).await;
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                match outcome {
                    Ok(()) => {
                        shared.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        let failed = shared.failed.fetch_add(1, Ordering::Relaxed) + 1;
                        if warn_due(&shared.warned_failed) {
                            tracing::warn!(
                                target: TARGET,
                                %error,
                                failed,
                                "the audit sink failed to keep an event"
                            );
                        }
                    }
                }
                let mut queue = lock(&shared.queue);
                queue.in_flight = false;
                if queue.is_idle() {
                    for flusher in queue.flushers.drain(..) {
                        flusher.wake();
                    }
                }
            }
        }
    }
}

/// One sink call, bounded by the sink timeout with the `tokio` feature.
async fn deliver<U: Send + Sync + 'static>(
    shared: &Weak<Shared<U>>,
    sink: &dyn AuditSink<U>,
    event: &AuditEvent<U>,
) -> Result<(), SinkError> {
    #[cfg(feature = "tokio")]
    {
        let timeout = shared.upgrade().and_then(|s| s.sink_timeout);
        if let Some(timeout) = timeout {
            return match tokio::time::timeout(timeout, sink.record(event)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("the sink did not answer within {timeout:?}").into()),
            };
        }
    }
    #[cfg(not(feature = "tokio"))]
    let _ = shared;
    sink.record(event).await
}

/// Writes `event` through `tracing`, at target [`TARGET`], with the documented fields.
fn emit<U: fmt::Debug>(event: &AuditEvent<U>) {
    use tracing::field::{debug, display};
    let (token_id, user_id, name, scopes, successor) = (
        event.token_id.map(display),
        event.user_id.as_ref().map(debug),
        event.name.as_deref().map(debug),
        event
            .scopes
            .as_ref()
            .map(|scopes| debug(scopes.to_string())),
        event.successor.map(display),
    );
    tracing::event!(
        target: TARGET,
        tracing::Level::INFO,
        audit.kind = event.kind.as_str(),
        audit.source = &*event.source,
        audit.at = event.at.unix_timestamp(),
        token.id = token_id,
        user.id = user_id,
        token.name = name,
        token.scopes = scopes,
        token.expires_at = event.expires_at.map(OffsetDateTime::unix_timestamp),
        successor.id = successor,
        audit.code = event.code,
        audit.count = event.count,
        "{}",
        event.kind.message()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handle_is_cheap_to_share() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<Audit<i64>>();
        shareable::<Audit<String>>();
        assert_eq!(
            std::mem::size_of::<Audit<i64>>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn kinds_have_stable_names() {
        let kinds = [
            AuditKind::Created,
            AuditKind::Rotated,
            AuditKind::Revoked,
            AuditKind::RevokedAll,
            AuditKind::Deleted,
            AuditKind::Pruned,
            AuditKind::ExpiredOnUse,
            AuditKind::IdleExpired,
            AuditKind::Refused,
            AuditKind::Suppressed,
        ];
        let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "created",
                "rotated",
                "revoked",
                "revoked_all",
                "deleted",
                "pruned",
                "expired_on_use",
                "idle_expired",
                "refused",
                "suppressed"
            ]
        );
    }

    #[test]
    fn the_refusal_budget_counts_what_it_suppresses() {
        let audit = Audit::<i64>::builder().refused_per_second(3).build();
        for _ in 0..10 {
            audit.refused("unknown_token", None, None);
        }
        let stats = audit.stats();
        assert_eq!((stats.recorded, stats.suppressed), (3, 7));
        // The second is not over: nothing told yet; a flush tells it.
        futures_util::FutureExt::now_or_never(audit.flush()).expect("no sink: nothing to wait for");
        assert_eq!(audit.stats().recorded, 4);
    }

    #[test]
    fn without_a_sink_nothing_is_queued() {
        let audit = Audit::<i64>::new();
        audit.record(AuditEvent::new(
            AuditKind::Pruned,
            OffsetDateTime::UNIX_EPOCH,
            SOURCE_APP,
        ));
        let stats = audit.stats();
        assert_eq!((stats.recorded, stats.dropped, stats.delivered), (1, 0, 0));
    }
}
