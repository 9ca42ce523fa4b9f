//! Revocation over Redis pub/sub for a store with no notifications of its own: two
//! instances (each its own SQLite pool on one shared file, its own cache, layer and
//! loopback server, its own `RedisBus`) over the Redis server of this machine. A revokes;
//! how long until B refuses the token, over many revocations. B's subscription is killed
//! (`CLIENT KILL`) while tokens are revoked behind the bus's back: B pauses its cache
//! (every request asks the store) until it is subscribed again, then refuses them. B's
//! connection goes through a proxy written here that stops forwarding without closing: B
//! refuses a token A revoked meanwhile within the staleness bound, asks the store for
//! everything while cut off, and uses its cache again once the proxy forwards. Someone
//! floods the channel with junk: the cache is cleared at most once a second and one
//! warning is logged. Publishing that fails leaves the change in place, counted and
//! logged. Also: what the messages carry, the listener's end, the conformance kit over a
//! `BusStore`, and what a bad URL or an unreachable server say.
//!
//! Skipped, saying so, without `TOWER_PAT_REDIS_URL` (except the tests that need no
//! server).

#![cfg(feature = "redis")]

use crate::common;

use std::{
    future::Future,
    io::Write,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use common::{Faulty, KeepAlive, db::TempDb, registry};
use http::StatusCode;
use redis::{AsyncCommands, ConnectionAddr, aio::MultiplexedConnection};
use time::OffsetDateTime;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::watch,
};
use tower_pat::{
    ManageTokens, MemoryStore, SqliteStore, TokenId, Tokens,
    store::{
        BusStore, CachedStore, RedisBus, Revoked, StoreErrorKind,
        redis::{DEFAULT_STALENESS_BOUND, IDS_PER_MESSAGE, LISTENER_CLIENT_NAME, RedisListener},
    },
};

/// The variable that names the Redis server the tests use.
const REDIS_URL_VAR: &str = "TOWER_PAT_REDIS_URL";

/// Long enough that only a message (or a cleared cache) can explain a refusal.
const TTL: Duration = Duration::from_secs(3600);

/// What a stalled listener may take beyond its staleness bound to refuse a revoked token:
/// the timer firing, and a request reaching the store.
const MARGIN: Duration = Duration::from_millis(500);

/// Runs `f` with the server's URL and a channel of its own. Without the variable, says so
/// where the test's output is not captured, and returns.
async fn with_redis<F, Fut>(f: F)
where
    F: FnOnce(String, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(url) = std::env::var(REDIS_URL_VAR).ok().filter(|u| !u.is_empty()) else {
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("a Redis test");
        // Straight to stderr: the harness captures `eprintln!`.
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped: {REDIS_URL_VAR} is not set"
        );
        return;
    };
    let hex = uuid::Uuid::new_v4().simple().to_string();
    f(url, format!("tower_pat_test:{}", &hex[..16])).await;
}

type Cached = CachedStore<Faulty<BusStore<SqliteStore<i64>>>>;

/// One API instance: its own pool, bus, cache and server.
struct Instance {
    tokens: Tokens<Cached>,
    store: Cached,
    bus: RedisBus,
    http: KeepAlive,
}

async fn instance(db: &TempDb, bus: RedisBus) -> Instance {
    let sqlite = SqliteStore::<i64>::open(db.path()).await.unwrap();
    sqlite.migrate().await.unwrap();
    let store = CachedStore::builder()
        .ttl(TTL)
        .build(Faulty::new(bus.wrap(sqlite)));
    let tokens = Tokens::new(store.clone(), registry());
    let app = Router::new()
        .route("/orders", get(|| async { "ok" }))
        .layer(tokens.layer());
    let http = KeepAlive::new(common::serve(app).await, "/orders");
    Instance {
        tokens,
        store,
        bus,
        http,
    }
}

impl Instance {
    fn store_calls(&self) -> usize {
        self.store.inner().find_calls()
    }

    /// The SQLite store under the bus: what it changes, nobody hears of.
    fn sqlite(&self) -> &SqliteStore<i64> {
        self.store.inner().inner().inner()
    }
}

async fn bus(url: &str, channel: &str) -> RedisBus {
    RedisBus::builder()
        .channel(channel)
        .connect(url)
        .await
        .unwrap()
}

/// A connection of the test's own, straight to the server.
async fn raw(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Asks until the token is refused; how long that took. Panics after `limit`.
async fn until_refused(http: &KeepAlive, token: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match http.status(token).await {
            StatusCode::UNAUTHORIZED => return started.elapsed(),
            StatusCode::OK => {}
            other => panic!("unexpected {other}"),
        }
        assert!(
            started.elapsed() < limit,
            "still accepted {limit:?} after the revocation"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// The status of a request for `token`, and how many store calls it made.
async fn next(instance: &Instance, token: &str) -> (StatusCode, usize) {
    let before = instance.store_calls();
    let status = instance.http.status(token).await;
    (status, instance.store_calls() - before)
}

/// Waits (a bounded time) until `done` holds.
async fn eventually(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "never: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// `CLIENT LIST ID id`: the server's line for that client, empty once it is gone.
async fn client_line(conn: &mut MultiplexedConnection, id: i64) -> String {
    redis::cmd("CLIENT")
        .arg("LIST")
        .arg("ID")
        .arg(id)
        .query_async(conn)
        .await
        .unwrap()
}

/// The listener's connection, checked against the server's list of clients.
async fn listener_id(conn: &mut MultiplexedConnection, listening: &RedisListener) -> i64 {
    let id = listening.client_id().expect("subscribed");
    let line = client_line(conn, id).await;
    assert!(
        line.contains(&format!("name={LISTENER_CLIENT_NAME} ")),
        "{line}"
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_instance_is_seen_by_the_other() {
    with_redis(|url, channel| async move {
        let db = TempDb::new();
        let a = instance(&db, bus(&url, &channel).await).await;
        let b = instance(&db, bus(&url, &channel).await).await;
        let _listening_a = a.bus.listen(a.store.evictor()).await.unwrap();
        let listening_b = b.bus.listen(b.store.evictor()).await.unwrap();

        const N: usize = 120;
        let mut created = Vec::with_capacity(N);
        for i in 0..N {
            created.push(
                a.tokens
                    .create(i as i64 % 7, "t", ["orders:read"])
                    .await
                    .unwrap(),
            );
        }
        // Both caches warm: a second round makes no store call.
        for t in &created {
            assert_eq!(a.http.status(t.token.expose_secret()).await, StatusCode::OK);
            assert_eq!(b.http.status(t.token.expose_secret()).await, StatusCode::OK);
        }
        let (calls_a, calls_b) = (a.store_calls(), b.store_calls());
        for t in &created {
            assert_eq!(b.http.status(t.token.expose_secret()).await, StatusCode::OK);
        }
        assert_eq!(b.store_calls(), calls_b, "B answers from its cache");

        let mut latencies = Vec::with_capacity(N);
        for t in &created {
            a.tokens
                .revoke(&t.record.user_id, t.record.id)
                .await
                .unwrap();
            latencies.push(
                until_refused(&b.http, t.token.expose_secret(), Duration::from_secs(5)).await,
            );
        }
        // A evicted at once, through its own cache.
        for t in &created {
            assert_eq!(
                a.http.status(t.token.expose_secret()).await,
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(a.store_calls(), calls_a + N);
        // No revoked token is accepted again.
        for t in &created {
            assert_eq!(
                b.http.status(t.token.expose_secret()).await,
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(a.bus.published(), N as u64);
        assert_eq!(a.bus.publish_failures(), 0);
        assert_eq!(listening_b.losses(), 0);
        assert_eq!(listening_b.malformed(), 0);

        latencies.sort();
        let (p50, p99, max) = (
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies[N - 1],
        );
        eprintln!(
            "revocation A -> B over Redis, {N} revocations: p50 {p50:?}, p99 {p99:?}, max {max:?}"
        );
        assert!(p99 < Duration::from_millis(500), "p99 {p99:?}");

        // Revoking all of a user's tokens names the user; deleting names the token.
        let mut user_9 = Vec::new();
        for _ in 0..3 {
            user_9.push(a.tokens.create(9, "t", ["orders:read"]).await.unwrap());
        }
        let deleted = a.tokens.create(10, "t", ["orders:read"]).await.unwrap();
        for t in user_9.iter().chain([&deleted]) {
            let token = t.token.expose_secret();
            assert_eq!(b.http.status(token).await, StatusCode::OK);
            assert_eq!(next(&b, token).await, (StatusCode::OK, 0));
        }
        assert_eq!(a.tokens.revoke_all(&9).await.unwrap(), 3);
        for t in &user_9 {
            until_refused(&b.http, t.token.expose_secret(), Duration::from_secs(5)).await;
        }
        a.tokens.delete(&10, deleted.record.id).await.unwrap();
        until_refused(
            &b.http,
            deleted.token.expose_secret(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(listening_b.malformed(), 0);

        // And the other way round: B revokes, A hears.
        let from_b = b.tokens.create(11, "t", ["orders:read"]).await.unwrap();
        let token = from_b.token.expose_secret();
        assert_eq!(a.http.status(token).await, StatusCode::OK);
        assert_eq!(next(&a, token).await, (StatusCode::OK, 0));
        b.tokens.revoke(&11, from_b.record.id).await.unwrap();
        until_refused(&a.http, token, Duration::from_secs(5)).await;
    })
    .await;
}

// On the test's own thread, so the log capture sees the listener's warning.
#[tokio::test]
async fn a_killed_subscription_pauses_the_cache_until_it_is_subscribed_again() {
    with_redis(|url, channel| async move {
        let logs = common::LogCapture::start();
        let db = TempDb::new();
        let a = instance(&db, bus(&url, &channel).await).await;
        // B reaches Redis through a proxy that can turn new connections away, so that the
        // pause lasts long enough to be looked at.
        let proxy = Proxy::start(server_addr(&url)).await;
        let b = instance(&db, bus(&proxy.url(&url), &channel).await).await;
        let listening = b.bus.listen(b.store.evictor()).await.unwrap();
        let mut admin = raw(&url).await;
        let id = listener_id(&mut admin, &listening).await;

        let mut created = Vec::new();
        for i in 0..6 {
            created.push(a.tokens.create(i, "t", ["orders:read"]).await.unwrap());
        }
        for t in &created {
            let token = t.token.expose_secret();
            assert_eq!(b.http.status(token).await, StatusCode::OK);
            assert_eq!(next(&b, token).await, (StatusCode::OK, 0));
        }
        let (gone, kept) = created.split_at(3);

        // Revoked behind the bus's back, as if their messages had been published while
        // B's subscription was down: B cannot know, and serves them from its cache.
        let now = OffsetDateTime::now_utc();
        for t in gone {
            a.sqlite()
                .revoke(&t.record.user_id, t.record.id, now)
                .await
                .unwrap();
        }
        assert_eq!(
            next(&b, gone[0].token.expose_secret()).await,
            (StatusCode::OK, 0)
        );

        // Kill B's subscription; it cannot subscribe again while the proxy refuses.
        proxy.refuse(true);
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(killed, 1);
        let evictor = b.store.evictor();
        eventually("paused", Duration::from_secs(5), || evictor.is_paused()).await;

        // Paused: every request asks the store, and the tokens revoked in the gap are
        // refused.
        for t in gone {
            assert_eq!(
                next(&b, t.token.expose_secret()).await,
                (StatusCode::UNAUTHORIZED, 1)
            );
        }
        let kept_token = kept[0].token.expose_secret();
        for _ in 0..10 {
            assert_eq!(next(&b, kept_token).await, (StatusCode::OK, 1));
        }
        assert_eq!(listening.losses(), 1);
        assert_eq!(listening.client_id(), None);
        assert!(
            logs.text().contains("lost its connection"),
            "{}",
            logs.text()
        );

        // The proxy lets it through again: subscribed, the cache in use again.
        proxy.refuse(false);
        eventually("resumed", Duration::from_secs(10), || !evictor.is_paused()).await;
        assert_eq!(next(&b, kept_token).await, (StatusCode::OK, 1));
        assert_eq!(next(&b, kept_token).await, (StatusCode::OK, 0));
        let again = listener_id(&mut admin, &listening).await;
        assert_ne!(again, id);
        assert_eq!(listening.losses(), 1);

        // The new subscription hears: a revocation through A reaches B.
        a.tokens
            .revoke(&kept[0].record.user_id, kept[0].record.id)
            .await
            .unwrap();
        until_refused(&b.http, kept_token, Duration::from_secs(5)).await;
        // And no token revoked in the gap comes back.
        for t in gone {
            assert_eq!(
                b.http.status(t.token.expose_secret()).await,
                StatusCode::UNAUTHORIZED
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_cut_off_by_a_silent_proxy_pauses_the_cache_within_the_bound() {
    with_redis(|url, channel| async move {
        let db = TempDb::new();
        let a = instance(&db, bus(&url, &channel).await).await;
        // B's bus (its publishing and its subscription) goes through the proxy; its
        // requests go to the SQLite file.
        let proxy = Proxy::start(server_addr(&url)).await;
        let b = instance(&db, bus(&proxy.url(&url), &channel).await).await;
        let bound = DEFAULT_STALENESS_BOUND;
        assert_eq!(b.bus.staleness_bound(), bound);
        let listening = b.bus.listen(b.store.evictor()).await.unwrap();
        let mut admin = raw(&url).await;
        let stalled_id = listener_id(&mut admin, &listening).await;

        let mut created = Vec::new();
        for user in 1..=4 {
            created.push(a.tokens.create(user, "t", ["orders:read"]).await.unwrap());
        }
        let [revoked, kept, later, unused] = &created[..] else {
            unreachable!()
        };
        for t in &created {
            let token = t.token.expose_secret();
            assert_eq!(b.http.status(token).await, StatusCode::OK);
            assert_eq!(
                next(&b, token).await,
                (StatusCode::OK, 0),
                "B's cache is warm"
            );
        }

        // Cut off: A revokes a token B has cached; the message is held by the proxy.
        proxy.stall();
        let stalled = Instant::now();
        a.tokens
            .revoke(&revoked.record.user_id, revoked.record.id)
            .await
            .unwrap();
        assert_eq!(a.bus.publish_failures(), 0);
        until_refused(
            &b.http,
            revoked.token.expose_secret(),
            bound + Duration::from_secs(5),
        )
        .await;
        let refused_after = stalled.elapsed();
        eprintln!(
            "stalled Redis listener: the revoked token was refused {refused_after:?} after the \
             stall began (bound {bound:?})"
        );
        assert!(
            refused_after <= bound + MARGIN,
            "refused {refused_after:?} after the stall, bound {bound:?}"
        );
        assert_eq!(listening.losses(), 1);
        // Paused: every request asks the store.
        let kept_token = kept.token.expose_secret();
        for _ in 0..10 {
            assert_eq!(next(&b, kept_token).await, (StatusCode::OK, 1));
        }

        // The proxy forwards again: the listener subscribes again, ends the connection it
        // abandoned, and the cache is used again.
        proxy.resume();
        let resumed = Instant::now();
        loop {
            assert_eq!(b.http.status(kept_token).await, StatusCode::OK);
            if next(&b, kept_token).await == (StatusCode::OK, 0) {
                break;
            }
            assert!(
                resumed.elapsed() < Duration::from_secs(30),
                "the cache is still paused {:?} after the proxy resumed",
                resumed.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "stalled Redis listener: the cache was in use again {:?} after the proxy resumed",
            resumed.elapsed()
        );
        assert_ne!(listener_id(&mut admin, &listening).await, stalled_id);
        assert_eq!(client_line(&mut admin, stalled_id).await, "");
        // What B cached since comes from after the new subscription: a revocation reaches
        // it by message again, well before the bound.
        let later_token = later.token.expose_secret();
        assert_eq!(b.http.status(later_token).await, StatusCode::OK);
        assert_eq!(next(&b, later_token).await, (StatusCode::OK, 0));
        a.tokens
            .revoke(&later.record.user_id, later.record.id)
            .await
            .unwrap();
        let heard = until_refused(&b.http, later_token, Duration::from_secs(5)).await;
        assert!(heard < bound, "{heard:?}");
        for t in [revoked, later] {
            assert_eq!(
                b.http.status(t.token.expose_secret()).await,
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(
            b.http.status(unused.token.expose_secret()).await,
            StatusCode::OK
        );
        assert_eq!(listening.losses(), 1);
    })
    .await;
}

// On the test's own thread, so the log capture sees the listener's warnings.
#[tokio::test]
async fn a_flood_of_junk_messages_clears_the_cache_at_most_once_a_second_and_warns_once() {
    with_redis(|url, channel| async move {
        let logs = common::LogCapture::start();
        let db = TempDb::new();
        let bound = Duration::from_millis(800);
        let bus = RedisBus::builder()
            .channel(&channel)
            .staleness_bound(bound)
            .connect(&url)
            .await
            .unwrap();
        let b = instance(&db, bus).await;
        let listening = b.bus.listen(b.store.evictor()).await.unwrap();
        let created = b.tokens.create(1, "t", ["orders:read"]).await.unwrap();
        let token = created.token.expose_secret();
        assert_eq!(next(&b, token).await, (StatusCode::OK, 1));

        // Heartbeats (every 200 ms here) are not junk, and keep the cache in use.
        tokio::time::sleep(bound * 2).await;
        assert_eq!(next(&b, token).await, (StatusCode::OK, 0));
        assert_eq!(listening.malformed(), 0);
        assert_eq!(listening.losses(), 0);
        assert!(!logs.text().contains("WARN"), "{}", logs.text());

        // Someone else floods the channel, while requests go on.
        let flooding = Arc::new(AtomicBool::new(true));
        let flood = tokio::spawn({
            let (mut conn, channel) = (raw(&url).await, channel.clone());
            let flooding = Arc::clone(&flooding);
            async move {
                let mut sent = 0_u64;
                while flooding.load(Ordering::Acquire) {
                    let mut pipe = redis::pipe();
                    for n in 0..200 {
                        pipe.publish(&channel, format!("junk {n}")).ignore();
                    }
                    pipe.exec_async(&mut conn).await.unwrap();
                    sent += 200;
                }
                sent
            }
        });
        let before = b.store_calls();
        let started = Instant::now();
        let mut requests = 0_usize;
        while started.elapsed() < Duration::from_secs(3) {
            assert_eq!(b.http.status(token).await, StatusCode::OK);
            requests += 1;
        }
        flooding.store(false, Ordering::Release);
        let sent = flood.await.unwrap();
        let elapsed = started.elapsed();
        let calls = b.store_calls() - before;
        let text = logs.text();
        let junk_warnings = text
            .lines()
            .filter(|line| line.contains("WARN") && line.contains("neither token ids nor a user"))
            .count();
        let warnings = text.lines().filter(|line| line.contains("WARN")).count();
        eprintln!(
            "junk flood over Redis: {sent} messages sent, {} read by the listener, in \
             {elapsed:?}; {requests} requests made {calls} store calls; {junk_warnings} warning \
             line(s), {warnings} in all",
            listening.malformed()
        );
        assert!(
            listening.malformed() >= 1000,
            "the flood reached the listener: {} read",
            listening.malformed()
        );
        assert!(requests >= 100, "requests went on: {requests}");
        // One clear at the first junk, then at most one a second.
        let clears = elapsed.as_secs() as usize + 2;
        assert!(calls >= 1, "junk clears the cache");
        assert!(
            calls <= clears,
            "{calls} store calls for {requests} requests in {elapsed:?} (at most {clears})"
        );
        assert_eq!(junk_warnings, 1, "{text}");
        assert_eq!(warnings, 1, "{text}");
        assert_eq!(listening.losses(), 0);

        // Well-formed ids are still evicted one by one.
        b.tokens.revoke(&1, created.record.id).await.unwrap();
        until_refused(&b.http, token, Duration::from_secs(5)).await;
    })
    .await;
}

/// The next message on `pubsub`, as text.
async fn message(pubsub: &mut redis::aio::PubSubStream) -> String {
    use futures_util::StreamExt;
    let msg = tokio::time::timeout(Duration::from_secs(5), pubsub.next())
        .await
        .expect("a message")
        .expect("subscribed");
    msg.get_payload().unwrap()
}

#[tokio::test]
async fn messages_carry_the_changed_ids_in_batches_or_the_user_and_nothing_else() {
    with_redis(|url, channel| async move {
        let bus = bus(&url, &channel).await;
        let store = Arc::new(bus.wrap(MemoryStore::<i64>::new()));
        let tokens = Tokens::new(Arc::clone(&store), registry());
        let mut pubsub = redis::Client::open(url.as_str())
            .unwrap()
            .get_async_pubsub()
            .await
            .unwrap();
        pubsub.subscribe(&channel).await.unwrap();
        let mut pubsub = pubsub.into_on_message();
        let mut admin = raw(&url).await;
        // Says "nothing was published before this", to check that nothing was.
        let mut marker = 0;
        let mut nothing_since =
            async |admin: &mut MultiplexedConnection, pubsub: &mut redis::aio::PubSubStream| {
                marker += 1;
                let _: i64 = admin
                    .publish(&channel, format!("marker {marker}"))
                    .await
                    .unwrap();
                assert_eq!(message(pubsub).await, format!("marker {marker}"));
            };

        let one = tokens.create(1, "t", ["orders:read"]).await.unwrap().record;
        let two = tokens.create(1, "t", ["orders:read"]).await.unwrap().record;
        let other = tokens.create(2, "t", ["orders:read"]).await.unwrap().record;

        // Another user's token: nothing changes, nothing is published.
        assert_eq!(
            store
                .revoke(&3, one.id, OffsetDateTime::now_utc())
                .await
                .unwrap(),
            Revoked::NotFound
        );
        assert!(!store.delete(&3, one.id).await.unwrap());
        nothing_since(&mut admin, &mut pubsub).await;

        // Revoking publishes the id; revoking again publishes it again.
        assert_eq!(tokens.revoke(&1, one.id).await.unwrap(), Revoked::Revoked);
        assert_eq!(message(&mut pubsub).await, one.id.to_string());
        assert_eq!(
            tokens.revoke(&1, one.id).await.unwrap(),
            Revoked::AlreadyRevoked
        );
        assert_eq!(message(&mut pubsub).await, one.id.to_string());

        // Revoking all names the user, unless none changed.
        assert_eq!(tokens.revoke_all(&1).await.unwrap(), 1);
        assert_eq!(message(&mut pubsub).await, "user 1");
        assert_eq!(tokens.revoke_all(&1).await.unwrap(), 0);
        assert_eq!(tokens.revoke_all(&4).await.unwrap(), 0);
        nothing_since(&mut admin, &mut pubsub).await;

        // Deleting publishes the id.
        tokens.delete(&2, other.id).await.unwrap();
        assert_eq!(message(&mut pubsub).await, other.id.to_string());

        // Pruning publishes nothing (what it deletes is expired or revoked already).
        let later = OffsetDateTime::now_utc() + Duration::from_secs(5);
        let pruned = store.prune(later).await.unwrap();
        assert_eq!(pruned, 2, "{} and {} were revoked", one.id, two.id);
        nothing_since(&mut admin, &mut pubsub).await;

        // Many ids: IDS_PER_MESSAGE a message.
        let ids: Vec<TokenId> = (0..450).map(|_| TokenId::random().unwrap()).collect();
        let published = bus.published();
        bus.publish_tokens(&ids).await.unwrap();
        assert_eq!(bus.published(), published + 3);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let batch = message(&mut pubsub).await;
            let batch: Vec<TokenId> = batch.split(' ').map(|id| id.parse().unwrap()).collect();
            assert!(batch.len() <= IDS_PER_MESSAGE);
            seen.extend(batch);
        }
        assert_eq!(seen, ids);
        bus.publish_tokens(&[]).await.unwrap();
        bus.publish_user("ann o'neil").await.unwrap();
        assert_eq!(message(&mut pubsub).await, "user ann o'neil");
        assert_eq!(bus.publish_failures(), 0);
    })
    .await;
}

// On the test's own thread, so the log capture sees the warning.
#[tokio::test]
async fn a_change_that_cannot_be_published_stands_and_is_counted_and_logged() {
    with_redis(|url, channel| async move {
        let logs = common::LogCapture::start();
        let proxy = Proxy::start(server_addr(&url)).await;
        let bus = RedisBus::builder()
            .channel(&channel)
            .publish_timeout(Duration::from_millis(300))
            .connect(&proxy.url(&url))
            .await
            .unwrap();
        let store = Arc::new(bus.wrap(MemoryStore::<i64>::new()));
        let tokens = Tokens::new(Arc::clone(&store), registry());
        let created = tokens.create(1, "t", ["orders:read"]).await.unwrap().record;

        // Redis cannot be reached: the connection is cut and new ones are turned away.
        proxy.refuse(true);
        proxy.cut();
        let started = Instant::now();
        assert_eq!(
            tokens.revoke(&1, created.id).await.unwrap(),
            Revoked::Revoked
        );
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert!(
            store
                .inner()
                .get(created.id)
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
        assert_eq!(bus.publish_failures(), 1);
        assert_eq!(bus.published(), 0);
        let text = logs.text();
        assert!(text.contains("could not be published on Redis"), "{text}");
        assert!(text.contains(&channel), "{text}");

        // A stalled server: the publish timeout bounds the wait.
        proxy.refuse(false);
        proxy.stall();
        let started = Instant::now();
        tokens.revoke(&1, created.id).await.unwrap();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert_eq!(bus.publish_failures(), 2);
        // Logged at most once a minute.
        let warnings = logs
            .text()
            .lines()
            .filter(|line| line.contains("could not be published"))
            .count();
        assert_eq!(warnings, 1);

        // Redis is back: revoking again publishes again, over a new connection.
        proxy.resume();
        tokio::time::timeout(Duration::from_secs(5), bus.publish_tokens(&[created.id]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            tokens.revoke(&1, created.id).await.unwrap(),
            Revoked::AlreadyRevoked
        );
        assert_eq!(bus.published(), 2);
        assert_eq!(bus.publish_failures(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_stopped_or_dropped_listener_ends_its_subscription() {
    with_redis(|url, channel| async move {
        let bus = bus(&url, &channel).await;
        let mut admin = raw(&url).await;

        // Stopped: the cache stays in use, the connection goes.
        let store = CachedStore::new(MemoryStore::<i64>::new());
        let listening = bus.listen(store.evictor()).await.unwrap();
        let id = listener_id(&mut admin, &listening).await;
        listening.stop();
        gone(&mut admin, id).await;
        assert!(!store.evictor().is_paused());

        // The cache dropped: the listener ends, the connection goes.
        let store = CachedStore::new(MemoryStore::<i64>::new());
        let listening = bus.listen(store.evictor()).await.unwrap();
        let id = listener_id(&mut admin, &listening).await;
        drop(store);
        gone(&mut admin, id).await;
    })
    .await;
}

/// Waits (a bounded time) for the server to forget client `id`.
async fn gone(admin: &mut MultiplexedConnection, id: i64) {
    let started = Instant::now();
    while !client_line(admin, id).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "client {id} is still connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A listener whose runtime shuts down while the cache lives on leaves the cache paused:
/// nothing vouches for it any more.
#[tokio::test]
async fn a_listener_dropped_with_its_runtime_leaves_the_cache_paused() {
    with_redis(|url, channel| async move {
        let cache = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let cache = runtime.block_on(async {
                let bus = bus(&url, &channel).await;
                let cache = CachedStore::new(MemoryStore::<i64>::new());
                bus.listen(cache.evictor()).await.unwrap();
                assert!(!cache.evictor().is_paused());
                cache
            });
            drop(runtime);
            cache
        })
        .join()
        .unwrap();
        assert!(cache.evictor().is_paused());
    })
    .await;
}

#[cfg(feature = "test-kit")]
#[tokio::test]
async fn a_bus_store_passes_the_conformance_kit() {
    with_redis(|url, channel| async move {
        let bus = bus(&url, &channel).await;
        tower_pat::testing::Conformance::new(|n| i64::from(n) + 1)
            .client_id(true)
            .last_used(true)
            .manage_tokens(&bus.wrap(MemoryStore::<i64>::new()))
            .await;
        assert_eq!(bus.publish_failures(), 0);
        assert!(bus.published() > 0);
    })
    .await;
}

/// Needs no server.
#[tokio::test]
async fn a_bad_url_or_an_unreachable_server_is_a_clear_error_without_the_password() {
    for url in [
        "http://127.0.0.1:6379",
        "redis//127.0.0.1",
        "redis://:hunter2@0.0.0.0:6379",
        "redis://127.0.0.1:6379/not-a-db",
    ] {
        let error = RedisBus::connect(url).await.unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("not a Redis URL"), "{url}: {text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains(url), "{text}");
    }

    // Nothing listens on the port: refused at once, naming host and port.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let error = RedisBus::connect(&format!("redis://:hunter2@127.0.0.1:{port}/0"))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("cannot connect to Redis at 127.0.0.1:{port}: ")),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Something accepts but never answers: given up after the connect timeout.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let started = Instant::now();
    let error = RedisBus::builder()
        .connect_timeout(Duration::from_millis(300))
        .connect(&format!("redis://:hunter2@{addr}"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    let text = error.to_string();
    assert_eq!(error.kind(), StoreErrorKind::Timeout, "{text}");
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    held.abort();
}

/// A TCP proxy to the Redis server, written for the test. It can stop forwarding without
/// closing anything (what a partition or a stuck middlebox looks like from the client),
/// turn new connections away, and cut the ones it holds.
struct Proxy {
    addr: SocketAddr,
    forwarding: watch::Sender<bool>,
    refusing: watch::Sender<bool>,
    cuts: watch::Sender<u64>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (forwarding, gate) = watch::channel(true);
        let (refusing, refused) = watch::channel(false);
        let (cuts, cut) = watch::channel(0_u64);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *refused.borrow() {
                    drop(client);
                    continue;
                }
                let (gate, mut cut) = (gate.clone(), cut.clone());
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (from_client, to_client) = client.into_split();
                    let (from_server, to_server) = server.into_split();
                    // Cut: both directions end, and their halves close.
                    tokio::select! {
                        _ = async {
                            tokio::join!(
                                pipe(from_client, to_server, gate.clone()),
                                pipe(from_server, to_client, gate),
                            )
                        } => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            forwarding,
            refusing,
            cuts,
        }
    }

    /// `url` with the proxy in place of the server.
    fn url(&self, url: &str) -> String {
        let mut url = redis::parse_redis_url(url).expect("a Redis URL");
        url.set_ip_host(self.addr.ip()).unwrap();
        url.set_port(Some(self.addr.port())).unwrap();
        url.to_string()
    }

    /// Stops forwarding: bytes in flight and bytes to come are held, connections stay
    /// open, new ones are accepted (and held too).
    fn stall(&self) {
        self.forwarding.send_replace(false);
    }

    fn resume(&self) {
        self.forwarding.send_replace(true);
    }

    /// Closes every new connection at once (or accepts them again).
    fn refuse(&self, on: bool) {
        self.refusing.send_replace(on);
    }

    /// Closes the connections it holds.
    fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }
}

/// Copies `from` to `to` while the gate is open; holds what it read while it is shut.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut gate: watch::Receiver<bool>) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        if gate.wait_for(|open| *open).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if gate.wait_for(|open| *open).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The Redis server's address, from its URL.
fn server_addr(url: &str) -> SocketAddr {
    let client = redis::Client::open(url).expect("a Redis URL");
    let ConnectionAddr::Tcp(host, port) = client.get_connection_info().addr().clone() else {
        panic!("{REDIS_URL_VAR} must name a TCP address for the proxy tests");
    };
    std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .unwrap()
        .next()
        .expect("an address for the server")
}
