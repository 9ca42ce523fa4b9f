//! The revocation listener of [`PostgresStore`]: hands what other instances revoke to this
//! instance's [`CachedStore`](super::CachedStore), and pauses the cache whenever it cannot
//! prove that it would hear a revocation.
//!
//! One task per listener, on a connection of its own:
//!
//! - it evicts the ids each notification on the store's channel carries;
//! - every quarter of the staleness bound it sends itself a heartbeat (a `pg_notify` on a
//!   channel only it listens to, sent over its own connection) and waits to hear it back.
//!   PostgreSQL delivers notifications in the order their transactions committed, so
//!   hearing a heartbeat sent at time *t* proves that every revocation committed before
//!   *t* was heard. When none has come back within the bound, or the connection fails, it
//!   pauses the cache ([`Evictor::pause`]), reconnects, and resumes once a heartbeat sent
//!   over the new connection came back;
//! - a notification it cannot read (anyone who may connect may `NOTIFY` the channel)
//!   clears the cache, at most once a second, and is logged at most once a minute.
//!
//! `PgListener::try_recv` (sqlx 0.9) is raced against timers and dropped when one fires.
//! It is cancel-safe while its connection is up: its only wait is one message read, which
//! keeps partial messages in the connection's buffer. It is not while it reconnects by
//! itself (the lost-connection answer, or the notification buffer, can be lost if it is
//! dropped then). So the listener turns sqlx's reconnecting off (`eager_reconnect(false)`)
//! and never polls a listener again once it reported a loss: it subscribes anew.

use std::{
    future::poll_fn,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicI32, AtomicU64, Ordering},
    },
    task::Poll,
    time::Duration,
};

use futures_util::FutureExt;
use sqlx::postgres::{PgConnectOptions, PgListener, PgNotification, PgPoolOptions};
use time::OffsetDateTime;
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};

use super::{
    StoreError,
    bus::{Ends, FailClosed, Junk, MAX_BACKOFF, Stop, WARN_INTERVAL, parse_ids, until_end},
    cache::{Evictor, WeakEvictor},
    postgres::{DEFAULT_CONNECT_TIMEOUT, PostgresStore, PostgresUserId},
};
use crate::record::{TokenId, UserId};

/// The `application_name` of the connection [`PostgresStore::listen`] opens.
pub const LISTENER_APPLICATION_NAME: &str = "tower-pat revocation listener";

/// How long a revocation made on another instance may go unheard at most, unless
/// configured ([`ListenOptions::staleness_bound`]).
pub const DEFAULT_STALENESS_BOUND: Duration = Duration::from_secs(2);

/// The options of [`PostgresStore::listen_with`].
///
/// ```
/// use std::time::Duration;
/// use tower_pat::store::postgres::ListenOptions;
///
/// let options = ListenOptions::new().staleness_bound(Duration::from_millis(500));
/// assert_eq!(options.bound(), Duration::from_millis(500));
/// ```
#[derive(Clone, Debug)]
pub struct ListenOptions {
    bound: Duration,
}

impl Default for ListenOptions {
    fn default() -> Self {
        Self {
            bound: DEFAULT_STALENESS_BOUND,
        }
    }
}

impl ListenOptions {
    /// The defaults ([`DEFAULT_STALENESS_BOUND`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a revocation made on another instance may go unheard at most (default
    /// [`DEFAULT_STALENESS_BOUND`], 2 s): the staleness bound under a partition. The
    /// listener sends itself a heartbeat every quarter of it; when none has come back
    /// within the bound, the cache is paused (every request asks the database) until the
    /// listener hears one again over a new connection. A shorter bound costs more
    /// heartbeats (each a tiny transaction) and makes a slow network pause the cache
    /// sooner.
    ///
    /// # Panics
    ///
    /// When `bound` is under a millisecond: there would be no time for a heartbeat.
    #[track_caller]
    pub fn staleness_bound(mut self, bound: Duration) -> Self {
        assert!(
            bound >= Duration::from_millis(1),
            "ListenOptions::staleness_bound: {bound:?} leaves no time for a heartbeat (at least 1 ms)"
        );
        self.bound = bound;
        self
    }

    /// The staleness bound.
    pub fn bound(&self) -> Duration {
        self.bound
    }

    fn heartbeat_interval(&self) -> Duration {
        self.bound / 4
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
impl<U: PostgresUserId> PostgresStore<U> {
    /// Evicts from a [`CachedStore`](super::CachedStore) every token that any writer
    /// revokes, rotates, shortens or deletes (the table's change feed announces it), with the default
    /// [`ListenOptions`]: see [`listen_with`](Self::listen_with).
    ///
    /// ```no_run
    /// use tower_pat::{PostgresStore, Tokens, scope::ScopeRegistry, store::CachedStore};
    ///
    /// # async fn run(pool: sqlx::PgPool, registry: ScopeRegistry) -> Result<(), tower_pat::store::StoreError> {
    /// let postgres = PostgresStore::<i64>::new(pool);
    /// let store = CachedStore::new(postgres.clone());
    /// postgres.listen(store.evictor()).await?;
    /// let tokens = Tokens::new(store, registry);
    /// let layer = tokens.layer();
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`listen_with`](Self::listen_with).
    pub async fn listen(&self, evictor: Evictor<U>) -> Result<RevocationListener, StoreError> {
        self.listen_with(evictor, ListenOptions::default()).await
    }

    /// Evicts from a [`CachedStore`](super::CachedStore) every token that any writer
    /// revokes, rotates, shortens or deletes (the table's change feed announces it): listens to
    /// [`channel`](Self::channel) on a connection of its own (named
    /// [`LISTENER_APPLICATION_NAME`]) and hands each notification to `evictor`. Returns
    /// once it is listening and has heard its first heartbeat; the listening runs on the
    /// Tokio runtime until the cache is dropped (or [`RevocationListener::stop`]).
    ///
    /// **Staleness bound.** The listener proves it is connected with a heartbeat every
    /// quarter of [`ListenOptions::staleness_bound`] (2 s by default). When the
    /// connection fails, or stays silent (a partition, a proxy that stops forwarding)
    /// until no heartbeat has come back within the bound, it pauses the cache
    /// ([`Evictor::pause`]: cleared, keeping nothing, every request asks the database),
    /// logs a warning through `tracing`, and reconnects; once a heartbeat comes back over
    /// the new connection it resumes the cache. So a token revoked on another instance is
    /// refused here within the bound, partition or not, as long as the database answers.
    ///
    /// **Unreadable notifications.** Any role that can connect may `NOTIFY` the channel.
    /// A notification that is not a list of token ids clears the cache (it may announce a
    /// change this listener cannot read), but at most once a second: later ones within the
    /// second are folded into one clear at its end. Its warning is logged at most once a
    /// minute, saying how many were not logged.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the first connection, its `LISTEN` or its first heartbeat fails
    /// or takes longer than [`DEFAULT_CONNECT_TIMEOUT`].
    pub async fn listen_with(
        &self,
        evictor: Evictor<U>,
        options: ListenOptions,
    ) -> Result<RevocationListener, StoreError> {
        listen_on(
            PgConnectOptions::clone(&self.pool().connect_options()),
            self.channel().to_owned(),
            evictor,
            options,
        )
        .await
    }
}

/// Listens on `channel` over a connection made with `connect`, evicting the token ids each
/// notification names through `evictor`, with the heartbeat and the pause of
/// [`PostgresStore::listen_with`]: what any table with a change feed on PostgreSQL needs
/// (the crate's own, and a Laravel application's).
pub(crate) async fn listen_on<U: UserId>(
    connect: PgConnectOptions,
    channel: String,
    evictor: Evictor<U>,
    options: ListenOptions,
) -> Result<RevocationListener, StoreError> {
    let mut relay = Relay {
        connect: connect.application_name(LISTENER_APPLICATION_NAME),
        channel,
        options,
        cache: evictor.downgrade(),
        shared: Arc::default(),
        junk: Junk::default(),
    };
    drop(evictor);
    let first = match timeout(DEFAULT_CONNECT_TIMEOUT, relay.subscribe(None)).await {
        Ok(Ok(subscription)) => subscription,
        Ok(Err(error)) => {
            return Err(StoreError::with_kind(
                super::StoreErrorKind::Backend,
                format!("the revocation listener cannot listen on {}", relay.channel),
            )
            .with_source(error));
        }
        Err(_) => {
            return Err(StoreError::with_kind(
                super::StoreErrorKind::Timeout,
                format!(
                    "the revocation listener could not listen on {} within {:?}",
                    relay.channel, DEFAULT_CONNECT_TIMEOUT
                ),
            ));
        }
    };
    let shared = Arc::clone(&relay.shared);
    // Made here, not in the task: a task dropped before it first ran drops it too.
    let sentinel = FailClosed {
        cache: relay.cache.clone(),
        armed: true,
        listener: LISTENER_APPLICATION_NAME,
    };
    tokio::spawn(relay.run(first, sentinel));
    Ok(RevocationListener { shared })
}

/// The listening that [`PostgresStore::listen`] started. Dropping this handle does not
/// stop it: it runs as long as the cache does.
///
/// If it ends any other way than the cache being dropped or [`stop`](Self::stop) (it
/// panicked, or the Tokio runtime running it shut down while the cache lives on), it
/// leaves the cache paused for good: nothing vouches for it any more.
#[derive(Debug)]
pub struct RevocationListener {
    shared: Arc<Shared>,
}

/// What the handle and the task share.
#[derive(Debug, Default)]
struct Shared {
    losses: AtomicU64,
    malformed: AtomicU64,
    /// The server process of the connection listening now; 0 while there is none.
    backend_pid: AtomicI32,
    /// Set by [`RevocationListener::stop`].
    stop: Arc<Stop>,
}

impl RevocationListener {
    /// Stops listening (the cache then sees only the revocations made through it, and
    /// its TTL bounds the rest). A pause the listener holds ends with it.
    pub fn stop(&self) {
        self.shared.stop.stop();
    }

    /// How many times the connection was lost or went silent past the staleness bound
    /// (each time the cache was paused until the listener heard a heartbeat again).
    pub fn losses(&self) -> u64 {
        self.shared.losses.load(Ordering::Acquire)
    }

    /// How many notifications on the channel were not lists of token ids.
    pub fn malformed(&self) -> u64 {
        self.shared.malformed.load(Ordering::Acquire)
    }

    /// The server process (`pg_stat_activity.pid`) of the connection listening now, if
    /// one is: to tell it from the others of [`LISTENER_APPLICATION_NAME`].
    pub fn backend_pid(&self) -> Option<i32> {
        Some(self.shared.backend_pid.load(Ordering::Acquire)).filter(|pid| *pid != 0)
    }
}

/// What the listening task owns.
struct Relay<U> {
    connect: PgConnectOptions,
    channel: String,
    options: ListenOptions,
    cache: WeakEvictor<U>,
    shared: Arc<Shared>,
    junk: Junk,
}

/// One connection listening: to the store's channel, and to its own heartbeat channel.
struct Subscription {
    listener: PgListener,
    /// The channel its heartbeats go to: `tower_pat:heartbeat:` and 16 random hex digits.
    heartbeat: String,
    /// The heartbeats sent on this connection.
    beats: u64,
    /// When the last heartbeat that came back was sent: every revocation committed
    /// before then has been heard.
    proven: Instant,
    /// The server process and its start time, to end it if the connection is abandoned
    /// while the server still holds it.
    backend: Option<(i32, OffsetDateTime)>,
}

/// Why the listening stopped.
enum Ended {
    /// The cache is gone, or the listener was stopped.
    Done,
    /// The connection failed or stayed silent.
    Lost(String),
}

/// What one wait brought.
enum Event {
    Done,
    Message(Result<Option<PgNotification>, sqlx::Error>),
    Timer,
}

/// What a notification on the store's channel says.
enum Payload {
    Ids(Vec<TokenId>),
    Junk { len: usize },
}

impl<U: UserId> Relay<U> {
    /// Listens until the cache is gone or the listener is stopped; pauses the cache for
    /// good if it ends otherwise.
    async fn run(self, subscription: Subscription, mut sentinel: FailClosed<U>) {
        let listening = AssertUnwindSafe(self.listen(subscription)).catch_unwind();
        if listening.await.is_ok() {
            sentinel.armed = false;
        } else {
            tracing::error!("the revocation listener panicked");
        }
    }

    async fn listen(mut self, mut subscription: Subscription) {
        let mut ends = Ends {
            closed: self.cache.closed(),
            stop: Arc::clone(&self.shared.stop),
        };
        loop {
            let why = match self.relay(&mut subscription, &mut ends).await {
                Ended::Done => return,
                Ended::Lost(why) => why,
            };
            self.shared.losses.fetch_add(1, Ordering::AcqRel);
            crate::metrics::listener_lost("postgres");
            self.shared.backend_pid.store(0, Ordering::Release);
            let Some(evictor) = self.cache.upgrade() else {
                return;
            };
            let pause = evictor.pause();
            drop(evictor);
            tracing::warn!(
                channel = %self.channel,
                reason = %why,
                "the revocation listener lost its connection: the token cache is cleared and \
                 keeps nothing (every request asks the database) until it listens again"
            );
            let previous = subscription.backend;
            // Dropping it sends `UNLISTEN` on the old connection in the background; that
            // connection's pool is its own, so nothing waits for it.
            drop(subscription);
            let Some(fresh) = self.reconnect(&mut ends, previous).await else {
                return;
            };
            subscription = fresh;
            drop(pause);
            tracing::info!(
                channel = %self.channel,
                "the revocation listener is listening again; the token cache is in use again"
            );
        }
    }

    /// Hands notifications to the cache and sends heartbeats until the cache is gone, the
    /// listener is stopped, or the connection is lost.
    async fn relay(&mut self, subscription: &mut Subscription, ends: &mut Ends<U>) -> Ended {
        let bound = self.options.bound;
        let interval = self.options.heartbeat_interval();
        let mut outstanding: Option<(String, Instant)> = None;
        loop {
            let now = Instant::now();
            let deadline = subscription.proven + bound;
            if now >= deadline {
                return Ended::Lost(format!("no heartbeat came back within {bound:?}"));
            }
            if self.junk.clear_due(now) && !self.clear() {
                return Ended::Done;
            }
            let next_beat = subscription.proven + interval;
            if outstanding.is_none() && now >= next_beat {
                let payload = subscription.next_beat();
                let sent = timeout_at(
                    deadline,
                    send_heartbeat(
                        &mut subscription.listener,
                        &subscription.heartbeat,
                        &payload,
                    ),
                )
                .await;
                match sent {
                    Ok(Ok(())) => outstanding = Some((payload, now)),
                    Ok(Err(error)) => return Ended::Lost(error.to_string()),
                    Err(_) => {
                        return Ended::Lost(format!("a heartbeat was not sent within {bound:?}"));
                    }
                }
                continue;
            }
            let mut wake = deadline;
            if outstanding.is_none() {
                wake = wake.min(next_beat);
            }
            if let Some(at) = self.junk.clear_at {
                wake = wake.min(at);
            }
            let event = next_event(&mut subscription.listener, ends, wake).await;
            let note = match event {
                Event::Done => return Ended::Done,
                Event::Timer => continue,
                Event::Message(Ok(Some(note))) => note,
                Event::Message(Ok(None)) => return Ended::Lost("the connection closed".into()),
                Event::Message(Err(error)) => return Ended::Lost(error.to_string()),
            };
            if note.channel() == subscription.heartbeat {
                if let Some((payload, sent)) = &outstanding
                    && payload_of(&note) == Some(payload.as_str())
                {
                    subscription.proven = *sent;
                    outstanding = None;
                }
                continue;
            }
            if !self.deliver(&note) {
                return Ended::Done;
            }
        }
    }

    /// Evicts what `note` announces; `false` once the cache is gone.
    fn deliver(&mut self, note: &PgNotification) -> bool {
        let Some(evictor) = self.cache.upgrade() else {
            return false;
        };
        let payload = payload_of(note).map_or(Payload::Junk { len: 0 }, Payload::parse);
        match payload {
            Payload::Ids(ids) => {
                for id in ids {
                    evictor.evict_token(id);
                }
            }
            Payload::Junk { len } => {
                self.shared.malformed.fetch_add(1, Ordering::AcqRel);
                let now = Instant::now();
                if self.junk.clear_now(now) {
                    evictor.evict_all();
                }
                if let Some(unlogged) = self.junk.warn(now) {
                    tracing::warn!(
                        channel = %self.channel,
                        notifier_pid = note.process_id(),
                        payload_len = len,
                        unlogged,
                        "a notification on the revocation channel is not a list of token ids \
                         (something else notifies the channel): the token cache is cleared, at \
                         most once a second; this warning is logged at most once a minute, \
                         `unlogged` says how many came since the last one"
                    );
                }
            }
        }
        true
    }

    /// Clears the cache for unreadable notifications; `false` once the cache is gone.
    fn clear(&self) -> bool {
        match self.cache.upgrade() {
            Some(evictor) => {
                evictor.evict_all();
                true
            }
            None => false,
        }
    }

    /// Listens again, waiting longer after each failure (up to [`MAX_BACKOFF`]); `None`
    /// once the cache is gone or the listener is stopped.
    async fn reconnect(
        &mut self,
        ends: &mut Ends<U>,
        previous: Option<(i32, OffsetDateTime)>,
    ) -> Option<Subscription> {
        let mut wait = Duration::from_millis(50);
        let mut failures = 0_u64;
        let mut warned_at: Option<Instant> = None;
        loop {
            let attempt = timeout(DEFAULT_CONNECT_TIMEOUT, self.subscribe(previous));
            let error = match until_end(ends, attempt).await? {
                Ok(Ok(subscription)) => return Some(subscription),
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no answer within {DEFAULT_CONNECT_TIMEOUT:?}"),
            };
            failures += 1;
            let now = Instant::now();
            if warned_at.is_none_or(|at| now - at >= WARN_INTERVAL) {
                warned_at = Some(now);
                tracing::warn!(
                    channel = %self.channel,
                    %error,
                    failures,
                    "the revocation listener cannot listen again yet; the token cache stays \
                     paused (logged at most once a minute)"
                );
            }
            until_end(ends, sleep(wait)).await?;
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    }

    /// Connects, listens, ends the server process of an abandoned connection (`previous`),
    /// and waits for its first heartbeat to come back. Notifications that arrive meanwhile
    /// are delivered.
    async fn subscribe(
        &mut self,
        previous: Option<(i32, OffsetDateTime)>,
    ) -> Result<Subscription, sqlx::Error> {
        // A pool of its own for each connection: an abandoned connection that never
        // answers again holds only its own pool.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(DEFAULT_CONNECT_TIMEOUT)
            .connect_lazy_with(self.connect.clone());
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        listener.eager_reconnect(false);
        let heartbeat = format!("tower_pat:heartbeat:{:016x}", random_u64()?);
        listener
            .listen_all([self.channel.as_str(), heartbeat.as_str()])
            .await?;
        let backend: Option<(i32, OffsetDateTime)> = sqlx::query_as(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
        )
        .fetch_optional(&mut listener)
        .await?;
        if let Some((pid, started)) = previous {
            // The server may still hold a connection that went silent: end it, so that it
            // neither keeps a connection slot nor holds back the notification queue.
            // Refused (another role's process) or gone already: nothing to do.
            let ended = sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2",
            )
            .bind(pid)
            .bind(started)
            .execute(&mut listener)
            .await;
            if let Err(error) = ended {
                tracing::debug!(%error, pid, "the abandoned listening connection was not ended");
            }
        }
        let mut subscription = Subscription {
            listener,
            heartbeat,
            beats: 0,
            proven: Instant::now(),
            backend,
        };
        let payload = subscription.next_beat();
        let sent = Instant::now();
        send_heartbeat(
            &mut subscription.listener,
            &subscription.heartbeat,
            &payload,
        )
        .await?;
        loop {
            let Some(note) = subscription.listener.try_recv().await? else {
                return Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the connection closed before its first heartbeat came back",
                )));
            };
            if note.channel() == subscription.heartbeat {
                if payload_of(&note) == Some(payload.as_str()) {
                    subscription.proven = sent;
                    let pid = subscription.backend.map_or(0, |(pid, _)| pid);
                    self.shared.backend_pid.store(pid, Ordering::Release);
                    return Ok(subscription);
                }
            } else {
                // Were the cache gone, the listening that follows ends at once.
                self.deliver(&note);
            }
        }
    }
}

impl Subscription {
    /// The payload of the next heartbeat.
    fn next_beat(&mut self) -> String {
        self.beats += 1;
        self.beats.to_string()
    }
}

/// Sends one heartbeat on `listener`'s own connection.
async fn send_heartbeat(
    listener: &mut PgListener,
    channel: &str,
    payload: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(listener)
        .await?;
    Ok(())
}

/// Waits for a notification, the end, or `wake`, whichever comes first. Dropping
/// `try_recv` when another comes first is safe: see the module documentation.
async fn next_event<U>(listener: &mut PgListener, ends: &mut Ends<U>, wake: Instant) -> Event {
    let mut recv = pin!(listener.try_recv());
    let mut timer = pin!(sleep_until(wake));
    poll_fn(|cx| {
        if ends.poll(cx).is_ready() {
            return Poll::Ready(Event::Done);
        }
        if let Poll::Ready(message) = recv.as_mut().poll(cx) {
            return Poll::Ready(Event::Message(message));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::Timer);
        }
        Poll::Pending
    })
    .await
}

/// The payload of `note`, unless it is not UTF-8: sqlx panics on that (possible on a
/// `SQL_ASCII` server), and someone else's notification is no reason to stop listening.
fn payload_of(note: &PgNotification) -> Option<&str> {
    catch_unwind(AssertUnwindSafe(|| note.payload())).ok()
}

fn random_u64() -> Result<u64, sqlx::Error> {
    getrandom::u64().map_err(|error| sqlx::Error::Io(std::io::Error::other(error)))
}

impl Payload {
    /// Token ids, space-separated, as the table's triggers send them; anything else
    /// (nothing at all included) is junk.
    fn parse(payload: &str) -> Self {
        match parse_ids(payload) {
            Some(ids) => Self::Ids(ids),
            None => Self::Junk { len: payload.len() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_ids_or_junk() {
        let a = TokenId::from_bytes([1; 16]);
        let b = TokenId::from_bytes([2; 16]);
        match Payload::parse(&format!("{a} {b}")) {
            Payload::Ids(ids) => assert_eq!(ids, vec![a, b]),
            Payload::Junk { .. } => panic!("two ids"),
        }
        for junk in ["", " ", "junk", &format!("{a} junk"), &format!("{a},{b}")] {
            assert!(
                matches!(Payload::parse(junk), Payload::Junk { len } if len == junk.len()),
                "{junk:?}"
            );
        }
    }
}
