//! [`RedisBus`]: revocations reach the [`CachedStore`](super::CachedStore) of every
//! instance over Redis pub/sub, whatever the store: a SQLite file on each machine, your own
//! database, anything that has no notifications of its own. (A [`PostgresStore`] needs
//! none of this: [`PostgresStore::listen`] hears its own notifications.)
//!
//! It works both ways on every instance:
//!
//! - **publishing**: [`RedisBus::wrap`] puts a [`BusStore`] around the store. After each
//!   `revoke`, `revoke_all` and `delete` has returned, it publishes what changed on the
//!   bus's [channel](RedisBus::channel);
//! - **evicting**: [`RedisBus::listen`] subscribes to the channel and hands what it hears
//!   to the cache's [`Evictor`]. It pauses the cache whenever it cannot prove that it would
//!   hear a revocation, and ends when the cache is dropped.
//!
//! ```no_run
//! use tower_pat::{
//!     SqliteStore, Tokens,
//!     scope::ScopeRegistry,
//!     store::{CachedStore, RedisBus},
//! };
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = RedisBus::connect("redis://127.0.0.1:6379").await?;
//! let sqlite = SqliteStore::<i64>::open("tokens.db").await?;
//! sqlite.migrate().await?;
//! // Revoking through the cache publishes on the bus, then evicts here at once.
//! let store = CachedStore::new(bus.wrap(sqlite));
//! // Every instance: evict what any instance publishes.
//! let listening = bus.listen(store.evictor()).await?;
//!
//! let tokens = Tokens::new(store, ScopeRegistry::new().scope("orders:read", "See orders"));
//! let layer = tokens.layer(); // wrap your router in it
//!
//! let created = tokens.create(7, "laptop", ["orders:read"]).await?;
//! tokens.revoke(&7, created.record.id).await?; // every listening instance evicts it
//! assert_eq!(bus.publish_failures(), 0);
//! assert_eq!(listening.losses(), 0);
//! # let _ = layer;
//! # Ok(()) }
//! ```
//!
//! # The messages
//!
//! Each message on the channel ([`DEFAULT_CHANNEL`] unless
//! [configured](RedisBusBuilder::channel)) is one of:
//!
//! | payload | published after | every listener |
//! |---|---|---|
//! | token ids, 32 lowercase hex digits each, separated by single spaces, at most [`IDS_PER_MESSAGE`] per message (what [`PostgresStore`]'s notifications carry too) | `revoke` (unless the token was not the user's), `delete` (unless no row went), [`RedisBus::publish_tokens`] | evicts each token |
//! | `user ` and the user id as its `Display` writes it | `revoke_all` (unless no token changed), [`RedisBus::publish_user`] | evicts every cached token of the user, whose id it reads back with `FromStr` |
//! | anything else | someone else | clears the cache, at most once a second; warns at most once a minute |
//!
//! So the user id type must read back what it writes (`i64`, `uuid::Uuid` and `String` do),
//! and a store wrapped in a [`BusStore`] manages tokens only when it has `Display`.
//!
//! A `revoke` that fails is announced all the same (it may have committed), and so is one
//! that finds the token revoked already: revoking again announces again. A `prune` is not
//! announced: `ManageTokens::prune` does not say which tokens went, and none of them can be
//! used anywhere anyway (each expired, or was revoked and announced when it was; the layer
//! refuses a cached expired or revoked record by itself).
//!
//! # When publishing fails
//!
//! The change has committed, but other instances do not hear of it. A publish is tried
//! again once over a new connection, both tries within
//! [`publish_timeout`](RedisBusBuilder::publish_timeout) (2 s by default); then it is
//! counted ([`RedisBus::publish_failures`]) and logged through `tracing`, at most once a
//! minute, and the store's answer is returned as it was. **The other instances then keep
//! accepting the token until its cached record's TTL ends** (60 s by default, or sooner if
//! it is revoked again once Redis is back).
//!
//! # The staleness bound
//!
//! A listener proves that it is subscribed with a heartbeat every quarter of its
//! [staleness bound](RedisBusBuilder::staleness_bound) (2 s by default): it publishes a
//! random payload, over its own connection, on a channel only it subscribes to
//! (`<channel>:heartbeat:` and 16 random hex digits), and waits to hear it back. Redis
//! hands a subscriber the messages in the order it processed their `PUBLISH`, so hearing a
//! heartbeat published at time *t* proves that every revocation published before *t* was
//! heard. When none has come back within the bound, or the connection fails, it pauses the
//! cache ([`Evictor::pause`]: cleared, keeping nothing, every request asks the store),
//! subscribes again over a new connection, and resumes once a heartbeat comes back over
//! it. So a token revoked on another instance is refused here within the bound (as long as
//! the revoking instance could publish), partition or not.
//!
//! # Redis
//!
//! The listener speaks RESP3 (Redis 6 or later, or Valkey), so that one connection
//! subscribes and publishes its heartbeats. It names that connection
//! [`LISTENER_CLIENT_NAME`] (`CLIENT LIST` shows it) and, when it subscribes again, ends
//! the connection it abandoned (`CLIENT KILL`), if the server still holds it. A server
//! whose ACL forbids `CLIENT` is fine: the name and the cleanup are skipped.
//!
//! `rediss://` URLs need redis's TLS support, which this crate does not turn on: add
//! `redis = { version = "1.8", features = ["tokio-rustls-comp"] }` (or
//! `tokio-native-tls-comp`) to your own `Cargo.toml`.
//!
//! Anyone who may `PUBLISH` on the channel can clear every cache (each instance then asks
//! the store once per token, at most once a second), but not make a cache keep a revoked
//! token: a message can only evict. Restrict the channel with an ACL (`&tower_pat:*`) if
//! other clients share the server.
//!
//! [`PostgresStore`]: crate::PostgresStore
//! [`PostgresStore::listen`]: crate::PostgresStore::listen

use std::{
    fmt,
    future::poll_fn,
    panic::AssertUnwindSafe,
    pin::pin,
    str::FromStr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    task::Poll,
    time::Duration,
};

use ::redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ProtocolVersion, PushInfo, PushKind, RedisError,
    Value,
    aio::{AsyncPushSender, MultiplexedConnection, SendError},
};
use async_trait::async_trait;
use futures_util::FutureExt;
use time::OffsetDateTime;
use tokio::{
    sync::mpsc,
    time::{Instant, sleep, sleep_until, timeout, timeout_at},
};

use super::{
    Cursor, Lookup, ManageTokens, Revoked, Rotated, StoreError, StoreErrorKind, TokenStore,
    bus::{
        Ends, FailClosed, Junk, MAX_BACKOFF, Stop, Throttle, WARN_INTERVAL, parse_ids, until_end,
    },
    cache::{Evictor, WeakEvictor},
};
use crate::{
    credential::Presented,
    record::{TokenId, TokenRecord, UserId},
    token::TokenHash,
};

/// The channel revocations are published on unless configured
/// ([`RedisBusBuilder::channel`]).
pub const DEFAULT_CHANNEL: &str = "tower_pat:revocations";

/// How long a revocation published by another instance may go unheard at most, unless
/// configured ([`RedisBusBuilder::staleness_bound`]).
pub const DEFAULT_STALENESS_BOUND: Duration = Duration::from_secs(2);

/// How long connecting to Redis may take unless configured
/// ([`RedisBusBuilder::connect_timeout`]).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long publishing one change may take, both tries included, unless configured
/// ([`RedisBusBuilder::publish_timeout`]).
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// How many token ids one message carries at most: 32 hex digits and a space each.
pub const IDS_PER_MESSAGE: usize = 200;

/// The name (`CLIENT SETNAME`) of the connection [`RedisBus::listen`] subscribes over.
pub const LISTENER_CLIENT_NAME: &str = "tower-pat-revocation-listener";

/// What a message that names a user starts with.
const USER_PREFIX: &str = "user ";

/// How many messages may wait for the listener; past that they are dropped, and the cache
/// is cleared instead (at most once a second, as for unreadable ones).
const PUSH_QUEUE: usize = 16 * 1024;

/// The options of a [`RedisBus`], from [`RedisBus::builder`].
///
/// ```
/// use std::time::Duration;
/// use tower_pat::store::redis::{DEFAULT_CHANNEL, RedisBus};
///
/// let options = RedisBus::builder()
///     .channel("api:revocations")
///     .staleness_bound(Duration::from_millis(500));
/// assert_eq!(options.bound(), Duration::from_millis(500));
/// assert_ne!(DEFAULT_CHANNEL, "api:revocations");
/// // Then: `options.connect("redis://…").await?`
/// ```
#[derive(Clone, Debug)]
pub struct RedisBusBuilder {
    channel: String,
    bound: Duration,
    connect_timeout: Duration,
    publish_timeout: Duration,
}

impl Default for RedisBusBuilder {
    fn default() -> Self {
        Self {
            channel: DEFAULT_CHANNEL.to_owned(),
            bound: DEFAULT_STALENESS_BOUND,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
        }
    }
}

impl RedisBusBuilder {
    /// The channel changes are published on (default [`DEFAULT_CHANNEL`]): the same on
    /// every instance that shares a store, another one for each store (or each
    /// environment) that shares the Redis server.
    ///
    /// # Panics
    ///
    /// When `channel` is empty.
    #[track_caller]
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        let channel = channel.into();
        assert!(
            !channel.is_empty(),
            "RedisBusBuilder::channel: the channel name is empty"
        );
        self.channel = channel;
        self
    }

    /// How long a revocation published by another instance may go unheard at most
    /// (default [`DEFAULT_STALENESS_BOUND`], 2 s): the staleness bound under a partition.
    /// The listener publishes itself a heartbeat every quarter of it; when none has come
    /// back within the bound, the cache is paused (every request asks the store) until
    /// the listener hears one again over a new connection. A shorter bound costs more
    /// heartbeats and makes a slow network pause the cache sooner.
    ///
    /// # Panics
    ///
    /// When `bound` is under a millisecond: there would be no time for a heartbeat.
    #[track_caller]
    pub fn staleness_bound(mut self, bound: Duration) -> Self {
        assert!(
            bound >= Duration::from_millis(1),
            "RedisBusBuilder::staleness_bound: {bound:?} leaves no time for a heartbeat (at least 1 ms)"
        );
        self.bound = bound;
        self
    }

    /// How long connecting (and subscribing) may take (default
    /// [`DEFAULT_CONNECT_TIMEOUT`], 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long publishing one change may take, the try over a new connection included
    /// (default [`DEFAULT_PUBLISH_TIMEOUT`], 2 s): a revocation waits for it before it
    /// returns.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// The staleness bound.
    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// Connects to the Redis server at `url` (`redis://[user:password@]host[:port][/db]`,
    /// or `unix:///path/to/redis.sock`), for publishing, waiting at most the connect
    /// timeout. Subscribing waits for [`RedisBus::listen`].
    ///
    /// # Errors
    ///
    /// [`StoreError`] at once when `url` is not a Redis URL (saying why), when nothing
    /// listens there, or when the server turns the connection down (a wrong password,
    /// say); [`StoreErrorKind::Timeout`] when the server does not answer within the
    /// connect timeout. These name the host and port (or the socket), never the URL or
    /// the password.
    pub async fn connect(self, url: &str) -> Result<RedisBus, StoreError> {
        let client = Client::open(url).map_err(|error| {
            StoreError::with_kind(
                StoreErrorKind::Backend,
                format!(
                    "not a Redis URL (`redis://[user:password@]host[:port][/db]`, or \
                     `unix:///path`): {error}"
                ),
            )
        })?;
        let info = client.get_connection_info().clone();
        let place = place(info.addr());
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let listen_client = Client::open(info.set_redis_settings(resp3))
            .map_err(|error| cannot_connect(&place, &error.to_string()).with_source(error))?;
        let bus = RedisBus {
            inner: Arc::new(Inner {
                client,
                listen_client,
                place,
                options: self,
                publisher: Mutex::default(),
                published: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                failure_warnings: Mutex::default(),
            }),
        };
        let deadline = Instant::now() + bus.inner.options.connect_timeout;
        let no_answer = || {
            StoreError::with_kind(
                StoreErrorKind::Timeout,
                format!(
                    "cannot connect to Redis at {}: no answer within {:?}",
                    bus.inner.place, bus.inner.options.connect_timeout
                ),
            )
        };
        match timeout_at(deadline, bus.inner.connection()).await {
            Ok(Ok(_)) => Ok(bus),
            Ok(Err(error)) if error.is_timeout() => Err(no_answer().with_source(error)),
            Ok(Err(error)) => {
                Err(cannot_connect(&bus.inner.place, &error.to_string()).with_source(error))
            }
            Err(_) => Err(no_answer()),
        }
    }
}

/// Where a connection goes, for messages: `host:port`, or the Unix socket.
fn place(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. }
            if host.contains(':') =>
        {
            format!("[{host}]:{port}")
        }
        ConnectionAddr::Unix(path) => format!("socket {}", path.display()),
        other => other.to_string(),
    }
}

fn cannot_connect(place: &str, why: &str) -> StoreError {
    StoreError::with_kind(
        StoreErrorKind::Backend,
        format!("cannot connect to Redis at {place}: {why}"),
    )
}

/// A Redis pub/sub bus that carries revocations between the instances sharing a store:
/// see the [module documentation](self). Cheap to clone: clones share the publishing
/// connection.
#[derive(Clone)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// The same server, spoken to in RESP3, for the listeners.
    listen_client: Client,
    /// Where the server is, for messages.
    place: String,
    options: RedisBusBuilder,
    publisher: Mutex<Publisher>,
    published: AtomicU64,
    failures: AtomicU64,
    failure_warnings: Mutex<Throttle>,
}

/// The publishing connection, made again after a failure.
#[derive(Default)]
struct Publisher {
    /// Moves with each new connection, so that a failure forgets only its own.
    generation: u64,
    connection: Option<MultiplexedConnection>,
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus")
            .field("server", &self.inner.place)
            .field("options", &self.inner.options)
            .field("published", &self.published())
            .field("publish_failures", &self.publish_failures())
            .finish()
    }
}

impl RedisBus {
    /// Connects to the Redis server at `url` with the defaults: see
    /// [`RedisBusBuilder::connect`].
    ///
    /// # Errors
    ///
    /// As [`RedisBusBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder().connect(url).await
    }

    /// The options, to set before connecting.
    pub fn builder() -> RedisBusBuilder {
        RedisBusBuilder::default()
    }

    /// The channel changes are published on.
    pub fn channel(&self) -> &str {
        &self.inner.options.channel
    }

    /// The staleness bound of the listeners ([`RedisBusBuilder::staleness_bound`]).
    pub fn staleness_bound(&self) -> Duration {
        self.inner.options.bound
    }

    /// `store`, publishing on this bus what its `revoke`, `revoke_all` and `delete` change.
    pub fn wrap<St>(&self, store: St) -> BusStore<St> {
        BusStore {
            store,
            bus: self.clone(),
        }
    }

    /// Publishes that these tokens changed (revoked, deleted, or changed in the database
    /// by something else, an admin tool): every listening instance evicts them. Batched,
    /// [`IDS_PER_MESSAGE`] ids a message, in one round trip. Nothing is sent for no ids.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the messages could not be published (tried twice, the second
    /// time over a new connection) within the publish timeout. Unlike a [`BusStore`],
    /// this neither counts nor logs the failure.
    pub async fn publish_tokens(&self, ids: &[TokenId]) -> Result<(), StoreError> {
        self.inner.publish(&messages_of(ids)).await
    }

    /// Publishes that every token of `user` changed (all revoked): every listening
    /// instance evicts them. The user id is sent as its `Display` writes it, and read back
    /// with `FromStr`.
    ///
    /// # Errors
    ///
    /// As [`publish_tokens`](Self::publish_tokens).
    pub async fn publish_user<U: fmt::Display + ?Sized>(&self, user: &U) -> Result<(), StoreError> {
        self.inner.publish(&[format!("{USER_PREFIX}{user}")]).await
    }

    /// How many messages were published.
    pub fn published(&self) -> u64 {
        self.inner.published.load(Ordering::Acquire)
    }

    /// How many changes a [`BusStore`] of this bus could not publish (each one logged, at
    /// most once a minute): other instances learnt of them only when their caches' TTL
    /// ended.
    pub fn publish_failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Acquire)
    }

    /// Evicts from a [`CachedStore`](super::CachedStore) every token that any instance
    /// publishes on this bus: subscribes to [`channel`](Self::channel) over a connection
    /// of its own (named [`LISTENER_CLIENT_NAME`]) and hands each message to `evictor`.
    /// Returns once it is subscribed and has heard its first heartbeat; the cache is
    /// paused (cleared) until then. The listening runs on the Tokio runtime until the
    /// cache is dropped (or [`RedisListener::stop`]).
    ///
    /// **Staleness bound.** The listener proves it is subscribed with a heartbeat every
    /// quarter of the [staleness bound](RedisBusBuilder::staleness_bound) (2 s by
    /// default). When the connection fails, or stays silent (a partition, a proxy that
    /// stops forwarding) until no heartbeat has come back within the bound, it pauses the
    /// cache ([`Evictor::pause`]: cleared, keeping nothing, every request asks the store),
    /// logs a warning through `tracing`, and subscribes again; once a heartbeat comes back
    /// over the new connection it resumes the cache.
    ///
    /// **Unreadable messages.** A message on the channel that is neither token ids nor a
    /// user (see [the module documentation](self#the-messages)) clears the cache (it may
    /// announce a change this listener cannot read), but at most once a second: later ones
    /// within the second are folded into one clear at its end. Its warning is logged at
    /// most once a minute, saying how many were not logged.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the first connection, its subscription or its first heartbeat
    /// fails or takes longer than the connect timeout (a server older than Redis 6, which
    /// does not speak RESP3, fails here).
    pub async fn listen<U>(&self, evictor: Evictor<U>) -> Result<RedisListener, StoreError>
    where
        U: UserId + FromStr,
    {
        let mut relay = Relay {
            bus: Arc::clone(&self.inner),
            cache: evictor.downgrade(),
            shared: Arc::default(),
            junk: Junk::default(),
        };
        // Nothing vouches for what the cache holds until the listener is subscribed.
        let pause = evictor.pause();
        drop(evictor);
        let connect_timeout = self.inner.options.connect_timeout;
        let first = match timeout(connect_timeout, relay.subscribe(None)).await {
            Ok(Ok(subscription)) => subscription,
            Ok(Err(error)) => {
                return Err(StoreError::with_kind(
                    StoreErrorKind::Backend,
                    format!(
                        "the revocation listener cannot subscribe to {} at {}: {error}",
                        self.channel(),
                        self.inner.place
                    ),
                )
                .with_source(error));
            }
            Err(_) => {
                return Err(StoreError::with_kind(
                    StoreErrorKind::Timeout,
                    format!(
                        "the revocation listener could not subscribe to {} at {} within {:?}",
                        self.channel(),
                        self.inner.place,
                        connect_timeout
                    ),
                ));
            }
        };
        drop(pause);
        let shared = Arc::clone(&relay.shared);
        // Made here, not in the task: a task dropped before it first ran drops it too.
        let sentinel = FailClosed {
            cache: relay.cache.clone(),
            armed: true,
            listener: LISTENER_CLIENT_NAME,
        };
        tokio::spawn(relay.run(first, sentinel));
        Ok(RedisListener { shared })
    }
}

impl Inner {
    /// The publishing connection, made if there is none.
    async fn connection(&self) -> Result<(u64, MultiplexedConnection), RedisError> {
        {
            let publisher = lock(&self.publisher);
            if let Some(connection) = &publisher.connection {
                return Ok((publisher.generation, connection.clone()));
            }
        }
        // The caller bounds the whole; each try is bounded too.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(None);
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut publisher = lock(&self.publisher);
        publisher.generation += 1;
        publisher.connection = Some(connection.clone());
        Ok((publisher.generation, connection))
    }

    /// Forgets the publishing connection of `generation`, which failed.
    fn forget(&self, generation: u64) {
        let mut publisher = lock(&self.publisher);
        if publisher.generation == generation {
            publisher.connection = None;
        }
    }

    /// Publishes `messages` on the channel, in one round trip: tried again once over a
    /// new connection, both tries within the publish timeout.
    async fn publish(&self, messages: &[String]) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        for message in messages {
            pipe.cmd("PUBLISH")
                .arg(&self.options.channel)
                .arg(message)
                .ignore();
        }
        let deadline = Instant::now() + self.options.publish_timeout;
        let mut why = None;
        for _ in 0..2 {
            let (generation, mut connection) = match timeout_at(deadline, self.connection()).await {
                Ok(Ok(connection)) => connection,
                Ok(Err(error)) => {
                    why = Some(format!("cannot connect: {error}"));
                    continue;
                }
                Err(_) => {
                    why = None;
                    break;
                }
            };
            match timeout_at(deadline, pipe.exec_async(&mut connection)).await {
                Ok(Ok(())) => {
                    self.published
                        .fetch_add(messages.len() as u64, Ordering::AcqRel);
                    return Ok(());
                }
                Ok(Err(error)) => {
                    self.forget(generation);
                    why = Some(error.to_string());
                }
                Err(_) => {
                    self.forget(generation);
                    why = None;
                    break;
                }
            }
        }
        let channel = &self.options.channel;
        let place = &self.place;
        Err(match why {
            Some(why) => StoreError::with_kind(
                StoreErrorKind::Backend,
                format!("could not publish on {channel} at {place}: {why}"),
            ),
            None => StoreError::with_kind(
                StoreErrorKind::Timeout,
                format!(
                    "could not publish on {channel} at {place} within {:?}",
                    self.options.publish_timeout
                ),
            ),
        })
    }

    /// Publishes `messages` for a change that has committed: a failure is counted and
    /// logged, never returned.
    async fn announce(&self, messages: &[String]) {
        let Err(error) = self.publish(messages).await else {
            return;
        };
        self.failures.fetch_add(1, Ordering::AcqRel);
        let unlogged = lock(&self.failure_warnings).warn(Instant::now());
        if let Some(unlogged) = unlogged {
            tracing::warn!(
                channel = %self.options.channel,
                %error,
                unlogged,
                "a change to tokens could not be published on Redis: other instances may \
                 accept the tokens it revoked until their cached records expire (revoking \
                 again publishes again); logged at most once a minute, `unlogged` says how \
                 many failed since the last one"
            );
        }
    }
}

/// The messages that announce `ids`: [`IDS_PER_MESSAGE`] at most each.
fn messages_of(ids: &[TokenId]) -> Vec<String> {
    ids.chunks(IDS_PER_MESSAGE)
        .map(|chunk| {
            let mut message = String::with_capacity(chunk.len() * 33);
            for id in chunk {
                if !message.is_empty() {
                    message.push(' ');
                }
                message.push_str(&id.to_string());
            }
            message
        })
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A store whose changes are published on a [`RedisBus`]: from [`RedisBus::wrap`].
///
/// Lookups and writes pass straight through. After `revoke`, `revoke_all` and `delete`
/// have returned, the change is published (what, and when not: see [the
/// messages](self#the-messages)), then the store's answer is returned as it was, even
/// when publishing failed ([`RedisBus::publish_failures`]). Put the cache in front of it,
/// `CachedStore::new(bus.wrap(store))`, so that revoking through the cache evicts at once
/// here too.
pub struct BusStore<St> {
    store: St,
    bus: RedisBus,
}

impl<St> BusStore<St> {
    /// The store it wraps. Changes made directly through it are not published.
    pub fn inner(&self) -> &St {
        &self.store
    }

    /// The bus it publishes on.
    pub fn bus(&self) -> &RedisBus {
        &self.bus
    }

    /// The store it wraps, unwrapped.
    pub fn into_inner(self) -> St {
        self.store
    }
}

impl<St: Clone> Clone for BusStore<St> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            bus: self.bus.clone(),
        }
    }
}

impl<St> fmt::Debug for BusStore<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusStore")
            .field("channel", &self.bus.channel())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<St: TokenStore> TokenStore for BusStore<St> {
    type UserId = St::UserId;

    async fn find(&self, hash: &TokenHash) -> Lookup<St::UserId> {
        self.store.find(hash).await
    }

    #[inline]
    fn find_ready(&self, hash: &TokenHash) -> Option<Lookup<St::UserId>> {
        self.store.find_ready(hash)
    }

    async fn find_presented(&self, presented: &Presented) -> Lookup<St::UserId> {
        self.store.find_presented(presented).await
    }

    async fn touch(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        self.store.touch(uses).await
    }
}

// Each change that may have committed is published after the store answered: a failure
// may still have committed.
#[async_trait]
impl<St> ManageTokens for BusStore<St>
where
    St: ManageTokens,
    St::UserId: fmt::Display,
{
    async fn insert(&self, record: TokenRecord<St::UserId>) -> Result<(), StoreError> {
        self.store.insert(record).await
    }

    async fn get(&self, id: TokenId) -> Result<Option<TokenRecord<St::UserId>>, StoreError> {
        self.store.get(id).await
    }

    async fn list(&self, user: &St::UserId) -> Result<Vec<TokenRecord<St::UserId>>, StoreError> {
        self.store.list(user).await
    }

    async fn revoke(
        &self,
        user: &St::UserId,
        id: TokenId,
        at: OffsetDateTime,
    ) -> Result<Revoked, StoreError> {
        let result = self.store.revoke(user, id, at).await;
        if !matches!(result, Ok(Revoked::NotFound)) {
            self.bus.inner.announce(&[id.to_string()]).await;
        }
        result
    }

    async fn revoke_all(&self, user: &St::UserId, at: OffsetDateTime) -> Result<u64, StoreError> {
        let result = self.store.revoke_all(user, at).await;
        if !matches!(result, Ok(0)) {
            self.bus
                .inner
                .announce(&[format!("{USER_PREFIX}{user}")])
                .await;
        }
        result
    }

    async fn delete(&self, user: &St::UserId, id: TokenId) -> Result<bool, StoreError> {
        let result = self.store.delete(user, id).await;
        if !matches!(result, Ok(false)) {
            self.bus.inner.announce(&[id.to_string()]).await;
        }
        result
    }

    /// Not published: see [the messages](self#the-messages).
    async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.store.prune(before).await
    }

    async fn list_page(
        &self,
        user: &St::UserId,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<TokenRecord<St::UserId>>, StoreError> {
        self.store.list_page(user, after, limit).await
    }

    /// Not published: a new token is in no cache yet.
    async fn insert_limited(
        &self,
        record: TokenRecord<St::UserId>,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.store.insert_limited(record, limit, now).await
    }

    /// Publishes the old token's id once it was rotated: its expiry was shortened (or it
    /// was revoked), which every instance's cache must see.
    async fn rotate(
        &self,
        user: &St::UserId,
        id: TokenId,
        successor: TokenRecord<St::UserId>,
        old_expires_at: OffsetDateTime,
        at: OffsetDateTime,
    ) -> Result<Rotated<St::UserId>, StoreError> {
        let result = self
            .store
            .rotate(user, id, successor, old_expires_at, at)
            .await;
        if !matches!(
            result,
            Ok(Rotated::NotFound | Rotated::Inactive | Rotated::AlreadyRotated(_))
        ) {
            self.bus.inner.announce(&[id.to_string()]).await;
        }
        result
    }

    async fn expiring(
        &self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<TokenRecord<St::UserId>>, StoreError> {
        self.store.expiring(now, until, after, limit).await
    }

    async fn claim_expiry_notices(
        &self,
        within: ::time::Duration,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<TokenRecord<St::UserId>>, StoreError> {
        self.store.claim_expiry_notices(within, now, limit).await
    }
}

/// The listening that [`RedisBus::listen`] started. Dropping this handle does not stop
/// it: it runs as long as the cache does.
///
/// If it ends any other way than the cache being dropped or [`stop`](Self::stop) (it
/// panicked, or the Tokio runtime running it shut down while the cache lives on), it
/// leaves the cache paused for good: nothing vouches for it any more.
#[derive(Debug)]
pub struct RedisListener {
    shared: Arc<Shared>,
}

/// What the handle and the task share.
#[derive(Debug, Default)]
struct Shared {
    losses: AtomicU64,
    malformed: AtomicU64,
    /// The `CLIENT ID` of the connection subscribed now; 0 while there is none (Redis
    /// numbers clients from 1).
    client_id: AtomicI64,
    stop: Arc<Stop>,
}

impl RedisListener {
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

    /// How many messages on the channel were neither token ids nor a user.
    pub fn malformed(&self) -> u64 {
        self.shared.malformed.load(Ordering::Acquire)
    }

    /// The `CLIENT ID` of the connection subscribed now, if one is (and the server let it
    /// ask): to tell it from the others named [`LISTENER_CLIENT_NAME`].
    pub fn client_id(&self) -> Option<i64> {
        Some(self.shared.client_id.load(Ordering::Acquire)).filter(|id| *id != 0)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the listening task owns.
struct Relay<U> {
    bus: Arc<Inner>,
    cache: WeakEvictor<U>,
    shared: Arc<Shared>,
    junk: Junk,
}

/// One connection subscribed: to the bus's channel, and to its own heartbeat channel.
struct Subscription {
    connection: MultiplexedConnection,
    /// What the server pushes: the messages, in order.
    pushes: mpsc::Receiver<PushInfo>,
    /// Set when a push was dropped because too many were waiting.
    overflowed: Arc<AtomicBool>,
    /// `<channel>:heartbeat:` and 16 random hex digits.
    heartbeat: String,
    /// When the last heartbeat that came back was sent: every revocation published
    /// before then has been heard.
    proven: Instant,
    client_id: Option<i64>,
}

/// Hands what the server pushes to the listener, dropping it (and saying so) when too
/// many wait: the connection's reader never waits for the listener.
struct PushQueue {
    sender: mpsc::Sender<PushInfo>,
    overflowed: Arc<AtomicBool>,
}

impl AsyncPushSender for PushQueue {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match self.sender.try_send(info) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflowed.store(true, Ordering::Release);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError),
        }
    }
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
    Push(Option<PushInfo>),
    Timer,
}

/// What a push says.
enum Heard<'a> {
    /// A message on `channel`; `None` for a payload that is not a string.
    Message {
        channel: &'a [u8],
        payload: Option<&'a [u8]>,
    },
    /// The connection is gone.
    Closed,
    /// A subscription's confirmation, and the like.
    Other,
}

impl<'a> Heard<'a> {
    fn of(push: &'a PushInfo) -> Self {
        match push.kind {
            PushKind::Disconnection => Self::Closed,
            PushKind::Message => match push.data.as_slice() {
                [Value::BulkString(channel), payload] => Self::Message {
                    channel,
                    payload: match payload {
                        Value::BulkString(payload) => Some(payload),
                        _ => None,
                    },
                },
                _ => Self::Other,
            },
            _ => Self::Other,
        }
    }
}

/// What a message on the bus's channel says.
enum Payload<U> {
    Ids(Vec<TokenId>),
    User(U),
    Junk { len: usize },
}

impl<U: FromStr> Payload<U> {
    fn parse(payload: &[u8]) -> Self {
        let junk = Self::Junk { len: payload.len() };
        let Ok(text) = std::str::from_utf8(payload) else {
            return junk;
        };
        if let Some(user) = text.strip_prefix(USER_PREFIX) {
            return user.parse().map_or(junk, Self::User);
        }
        parse_ids(text).map_or(junk, Self::Ids)
    }
}

impl<U: UserId + FromStr> Relay<U> {
    /// Listens until the cache is gone or the listener is stopped; pauses the cache for
    /// good if it ends otherwise.
    async fn run(self, subscription: Subscription, mut sentinel: FailClosed<U>) {
        let listening = AssertUnwindSafe(self.listen(subscription)).catch_unwind();
        if listening.await.is_ok() {
            sentinel.armed = false;
        } else {
            tracing::error!("the Redis revocation listener panicked");
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
            crate::metrics::listener_lost("redis");
            self.shared.client_id.store(0, Ordering::Release);
            let Some(evictor) = self.cache.upgrade() else {
                return;
            };
            let pause = evictor.pause();
            drop(evictor);
            tracing::warn!(
                channel = %self.bus.options.channel,
                server = %self.bus.place,
                reason = %why,
                "the Redis revocation listener lost its connection: the token cache is cleared \
                 and keeps nothing (every request asks the store) until it subscribes again"
            );
            let previous = subscription.client_id;
            // Closes the old connection; the server may still hold it, and the next
            // subscription ends it.
            drop(subscription);
            let Some(fresh) = self.reconnect(&mut ends, previous).await else {
                return;
            };
            subscription = fresh;
            drop(pause);
            tracing::info!(
                channel = %self.bus.options.channel,
                "the Redis revocation listener is subscribed again; the token cache is in use again"
            );
        }
    }

    /// Hands messages to the cache and sends heartbeats until the cache is gone, the
    /// listener is stopped, or the connection is lost.
    async fn relay(&mut self, subscription: &mut Subscription, ends: &mut Ends<U>) -> Ended {
        let bound = self.bus.options.bound;
        let interval = bound / 4;
        let mut outstanding: Option<(String, Instant)> = None;
        loop {
            let now = Instant::now();
            let deadline = subscription.proven + bound;
            if now >= deadline {
                return Ended::Lost(format!("no heartbeat came back within {bound:?}"));
            }
            if subscription.overflowed.swap(false, Ordering::AcqRel) && !self.overflowed(now) {
                return Ended::Done;
            }
            if self.junk.clear_due(now) && !self.clear() {
                return Ended::Done;
            }
            let next_beat = subscription.proven + interval;
            if outstanding.is_none() && now >= next_beat {
                let sent = match beat() {
                    Ok(payload) => {
                        let publish = publish_heartbeat(
                            &mut subscription.connection,
                            &subscription.heartbeat,
                            &payload,
                        );
                        timeout_at(deadline, publish)
                            .await
                            .map(|sent| sent.map(|()| payload))
                    }
                    Err(error) => Ok(Err(error)),
                };
                match sent {
                    Ok(Ok(payload)) => outstanding = Some((payload, now)),
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
            let push = match next_event(&mut subscription.pushes, ends, wake).await {
                Event::Done => return Ended::Done,
                Event::Timer => continue,
                Event::Push(None) => return Ended::Lost("the connection closed".into()),
                Event::Push(Some(push)) => push,
            };
            match Heard::of(&push) {
                Heard::Closed => return Ended::Lost("the connection closed".into()),
                Heard::Other => {}
                Heard::Message { channel, payload } => {
                    if channel == subscription.heartbeat.as_bytes() {
                        if let Some((expected, sent)) = &outstanding
                            && payload == Some(expected.as_bytes())
                        {
                            subscription.proven = *sent;
                            outstanding = None;
                        }
                    } else if !self.deliver(payload.unwrap_or_default()) {
                        return Ended::Done;
                    }
                }
            }
        }
    }

    /// Evicts what `payload` announces; `false` once the cache is gone.
    fn deliver(&mut self, payload: &[u8]) -> bool {
        let Some(evictor) = self.cache.upgrade() else {
            return false;
        };
        match Payload::<U>::parse(payload) {
            Payload::Ids(ids) => {
                for id in ids {
                    evictor.evict_token(id);
                }
            }
            Payload::User(user) => evictor.evict_user(&user),
            Payload::Junk { len } => {
                self.shared.malformed.fetch_add(1, Ordering::AcqRel);
                let now = Instant::now();
                if self.junk.clear_now(now) {
                    evictor.evict_all();
                }
                if let Some(unlogged) = self.junk.warn(now) {
                    tracing::warn!(
                        channel = %self.bus.options.channel,
                        payload_len = len,
                        unlogged,
                        "a message on the revocation channel is neither token ids nor a user \
                         (something else publishes on the channel): the token cache is cleared, \
                         at most once a second; this warning is logged at most once a minute, \
                         `unlogged` says how many came since the last one"
                    );
                }
            }
        }
        true
    }

    /// Messages were dropped (too many waited): clears the cache as for an unreadable
    /// one; `false` once the cache is gone.
    fn overflowed(&mut self, now: Instant) -> bool {
        let Some(evictor) = self.cache.upgrade() else {
            return false;
        };
        if self.junk.clear_now(now) {
            evictor.evict_all();
        }
        if let Some(unlogged) = self.junk.warn(now) {
            tracing::warn!(
                channel = %self.bus.options.channel,
                unlogged,
                "more than {PUSH_QUEUE} messages waited for the revocation listener and some \
                 were dropped: the token cache is cleared, at most once a second; logged at \
                 most once a minute"
            );
        }
        true
    }

    /// Clears the cache for unreadable messages; `false` once the cache is gone.
    fn clear(&self) -> bool {
        match self.cache.upgrade() {
            Some(evictor) => {
                evictor.evict_all();
                true
            }
            None => false,
        }
    }

    /// Subscribes again, waiting longer after each failure (up to [`MAX_BACKOFF`]);
    /// `None` once the cache is gone or the listener is stopped.
    async fn reconnect(
        &mut self,
        ends: &mut Ends<U>,
        previous: Option<i64>,
    ) -> Option<Subscription> {
        let connect_timeout = self.bus.options.connect_timeout;
        let mut wait = Duration::from_millis(50);
        let mut failures = 0_u64;
        let mut warned_at: Option<Instant> = None;
        loop {
            let attempt = timeout(connect_timeout, self.subscribe(previous));
            let error = match until_end(ends, attempt).await? {
                Ok(Ok(subscription)) => return Some(subscription),
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no answer within {connect_timeout:?}"),
            };
            failures += 1;
            let now = Instant::now();
            if warned_at.is_none_or(|at| now - at >= WARN_INTERVAL) {
                warned_at = Some(now);
                tracing::warn!(
                    channel = %self.bus.options.channel,
                    server = %self.bus.place,
                    %error,
                    failures,
                    "the Redis revocation listener cannot subscribe again yet; the token cache \
                     stays paused (logged at most once a minute)"
                );
            }
            until_end(ends, sleep(wait)).await?;
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    }

    /// Connects, names the connection, ends an abandoned one (`previous`), subscribes,
    /// and waits for its first heartbeat to come back. Messages that arrive meanwhile
    /// are delivered.
    async fn subscribe(&mut self, previous: Option<i64>) -> Result<Subscription, BoxError> {
        let (sender, pushes) = mpsc::channel(PUSH_QUEUE);
        let overflowed = Arc::new(AtomicBool::new(false));
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.bus.options.connect_timeout))
            // The listener bounds each command by its staleness bound or connect timeout.
            .set_response_timeout(None)
            .set_push_sender(PushQueue {
                sender,
                overflowed: Arc::clone(&overflowed),
            });
        let mut connection = self
            .bus
            .listen_client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        // A server whose ACL forbids CLIENT is no reason not to listen.
        let named = ::redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(LISTENER_CLIENT_NAME)
            .exec_async(&mut connection)
            .await;
        if let Err(error) = named {
            tracing::debug!(%error, "the revocation listener's connection was not named");
        }
        let client_id = ::redis::cmd("CLIENT")
            .arg("ID")
            .query_async::<i64>(&mut connection)
            .await
            .ok();
        if let Some(previous) = previous {
            // The server may still hold a connection that went silent: end it, so that
            // its output buffer stops growing. Gone already: nothing to do.
            let ended = ::redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(previous)
                .exec_async(&mut connection)
                .await;
            if let Err(error) = ended {
                tracing::debug!(%error, previous, "the abandoned subscription was not ended");
            }
        }
        let heartbeat = format!(
            "{}:heartbeat:{:016x}",
            self.bus.options.channel,
            getrandom::u64()?
        );
        connection
            .subscribe(&[self.bus.options.channel.as_str(), heartbeat.as_str()])
            .await?;
        let mut subscription = Subscription {
            connection,
            pushes,
            overflowed,
            heartbeat,
            proven: Instant::now(),
            client_id,
        };
        let expected = beat()?;
        let sent = Instant::now();
        publish_heartbeat(
            &mut subscription.connection,
            &subscription.heartbeat,
            &expected,
        )
        .await?;
        loop {
            let Some(push) = subscription.pushes.recv().await else {
                return Err(FIRST_HEARTBEAT_LOST.into());
            };
            match Heard::of(&push) {
                Heard::Closed => return Err(FIRST_HEARTBEAT_LOST.into()),
                Heard::Other => {}
                Heard::Message { channel, payload } => {
                    if channel != subscription.heartbeat.as_bytes() {
                        // Were the cache gone, the listening that follows ends at once.
                        self.deliver(payload.unwrap_or_default());
                    } else if payload == Some(expected.as_bytes()) {
                        subscription.proven = sent;
                        let id = subscription.client_id.unwrap_or(0);
                        self.shared.client_id.store(id, Ordering::Release);
                        return Ok(subscription);
                    }
                }
            }
        }
    }
}

const FIRST_HEARTBEAT_LOST: &str = "the connection closed before its first heartbeat came back";

/// The payload of a heartbeat: 16 random hex digits, so that nobody else can publish one
/// in advance.
fn beat() -> Result<String, BoxError> {
    Ok(format!("{:016x}", getrandom::u64()?))
}

/// Publishes one heartbeat over the listener's own connection.
async fn publish_heartbeat(
    connection: &mut MultiplexedConnection,
    channel: &str,
    payload: &str,
) -> Result<(), BoxError> {
    ::redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .exec_async(connection)
        .await?;
    Ok(())
}

/// Waits for a push, the end, or `wake`, whichever comes first. Dropping the receive
/// when another comes first loses nothing: a channel's receive is cancel-safe.
async fn next_event<U>(
    pushes: &mut mpsc::Receiver<PushInfo>,
    ends: &mut Ends<U>,
    wake: Instant,
) -> Event {
    let mut timer = pin!(sleep_until(wake));
    poll_fn(|cx| {
        if ends.poll(cx).is_ready() {
            return Poll::Ready(Event::Done);
        }
        if let Poll::Ready(push) = pushes.poll_recv(cx) {
            return Poll::Ready(Event::Push(push));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::Timer);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_ids_a_user_or_junk() {
        let a = TokenId::from_bytes([1; 16]);
        let b = TokenId::from_bytes([2; 16]);
        match Payload::<i64>::parse(format!("{a} {b}").as_bytes()) {
            Payload::Ids(ids) => assert_eq!(ids, vec![a, b]),
            _ => panic!("two ids"),
        }
        assert!(matches!(
            Payload::<i64>::parse(b"user 42"),
            Payload::User(42)
        ));
        assert!(matches!(
            Payload::<i64>::parse(b"user -7"),
            Payload::User(-7)
        ));
        match Payload::<String>::parse("user ann o'neil".as_bytes()) {
            Payload::User(user) => assert_eq!(user, "ann o'neil"),
            _ => panic!("a user whose id holds a space"),
        }
        let mixed = format!("{a} user 42");
        let junk: [&[u8]; 8] = [
            b"",
            b" ",
            b"junk",
            b"user",
            b"user x",
            b"users 42",
            mixed.as_bytes(),
            b"\xff\xfe",
        ];
        for payload in junk {
            assert!(
                matches!(Payload::<i64>::parse(payload), Payload::Junk { len } if len == payload.len()),
                "{payload:?}"
            );
        }
        assert!(matches!(
            Payload::<i64>::parse(&[0xff, 0xfe]),
            Payload::Junk { len: 2 }
        ));
    }

    #[test]
    fn a_message_carries_at_most_its_share_of_ids() {
        let ids: Vec<TokenId> = (0..=IDS_PER_MESSAGE)
            .map(|n| TokenId::from_bytes([n as u8; 16]))
            .collect();
        let messages = messages_of(&ids);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].len(), IDS_PER_MESSAGE * 33 - 1);
        assert_eq!(messages[1], ids[IDS_PER_MESSAGE].to_string());
        let back: Vec<TokenId> = messages
            .iter()
            .flat_map(|m| parse_ids(m).unwrap())
            .collect();
        assert_eq!(back, ids);
        assert!(messages_of(&[]).is_empty());
    }

    #[test]
    fn places_name_host_and_port_never_more() {
        let info = |url: &str| Client::open(url).unwrap().get_connection_info().clone();
        assert_eq!(
            place(info("redis://:secret@cache.internal:6380/2").addr()),
            "cache.internal:6380"
        );
        assert_eq!(place(info("redis://[::1]:6379").addr()), "[::1]:6379");
        assert_eq!(
            place(info("unix:///run/redis.sock").addr()),
            "socket /run/redis.sock"
        );
    }
}
