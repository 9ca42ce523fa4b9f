//! Revocation seen by every instance: two instances (each its own pool, cache, layer and
//! loopback server) over one PostgreSQL table, both caches warm. A revokes; how long until
//! B refuses the token, over many revocations. Then B's listening connection is killed
//! with `pg_terminate_backend` while tokens are revoked behind its back: B clears its
//! cache, refuses them, and keeps serving. B's listening connection goes through a proxy
//! written here that stops forwarding without closing: B refuses a token A revoked
//! meanwhile within the staleness bound, asks the store for everything while cut off, and
//! uses its cache again once the proxy forwards. Someone floods the channel with junk: the
//! cache is cleared at most once a second and one warning is logged. A stopped listener
//! leaves the cache in use and closes its connection; one dropped with its runtime leaves
//! the cache paused. Also: what the notifications carry.
//!
//! Skipped, saying so, without `TOWER_PAT_POSTGRES_URL`.

#![cfg(all(feature = "cache", feature = "postgres"))]

use crate::common;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use common::{
    Faulty, KeepAlive,
    db::{pg_pool, with_postgres},
    registry,
};
use http::StatusCode;
use sqlx::{
    AssertSqlSafe,
    postgres::{PgConnectOptions, PgListener},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::watch,
};
use tower_pat::{
    ManageTokens, PostgresStore, Tokens,
    store::{
        CachedStore,
        postgres::{
            DEFAULT_STALENESS_BOUND, LISTENER_APPLICATION_NAME, ListenOptions, RevocationListener,
        },
    },
};

/// Long enough that only a notification (or a cleared cache) can explain a refusal.
const TTL: Duration = Duration::from_secs(3600);

/// What a stalled listener may take beyond its staleness bound to refuse a revoked token:
/// the timer firing, and a request reaching the store.
const MARGIN: Duration = Duration::from_millis(500);

type Cached = CachedStore<Faulty<PostgresStore<i64>>>;

/// One API instance: its own pool, cache and server.
struct Instance {
    tokens: Tokens<Cached>,
    store: Cached,
    postgres: PostgresStore<i64>,
    http: KeepAlive,
}

async fn instance(url: &str, table: &str) -> Instance {
    let postgres = PostgresStore::<i64>::new(pg_pool(url).await).with_table(table);
    postgres.migrate().await.unwrap();
    let faulty = Faulty::new(postgres.clone());
    let store = CachedStore::builder().ttl(TTL).build(faulty);
    let tokens = Tokens::new(store.clone(), registry());
    let app = Router::new()
        .route("/orders", get(|| async { "ok" }))
        .layer(tokens.layer());
    let http = KeepAlive::new(common::serve(app).await, "/orders");
    Instance {
        tokens,
        store,
        postgres,
        http,
    }
}

impl Instance {
    fn store_calls(&self) -> usize {
        self.store.inner().find_calls()
    }
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_instance_is_seen_by_the_other() {
    with_postgres(|url, table| async move {
        let a = instance(&url, &table).await;
        let b = instance(&url, &table).await;
        let _listening_a = a.postgres.listen(a.store.evictor()).await.unwrap();
        let listening_b = b.postgres.listen(b.store.evictor()).await.unwrap();

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
        assert_eq!(listening_b.losses(), 0);

        latencies.sort();
        let (p50, p99, max) = (
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies[N - 1],
        );
        eprintln!("revocation A -> B over {N} revocations: p50 {p50:?}, p99 {p99:?}, max {max:?}");
        assert!(p99 < Duration::from_millis(500), "p99 {p99:?}");
    })
    .await;
}

/// The listening backend's pid, checked against the server's list of listeners.
async fn listener_pid(pool: &sqlx::PgPool, listening: &RevocationListener) -> i32 {
    let pid = listening.backend_pid().expect("listening");
    let name: String =
        sqlx::query_scalar("SELECT application_name FROM pg_stat_activity WHERE pid = $1")
            .bind(pid)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(name, LISTENER_APPLICATION_NAME);
    pid
}

// On the test's own thread, so the log capture sees the listener's warning.
#[tokio::test]
async fn losing_the_listening_connection_clears_the_cache() {
    with_postgres(|url, table| async move {
        let logs = common::LogCapture::start();
        let a = instance(&url, &table).await;
        let b = instance(&url, &table).await;
        let listening = b.postgres.listen(b.store.evictor()).await.unwrap();

        let mut created = Vec::new();
        for i in 0..20 {
            created.push(a.tokens.create(i, "t", ["orders:read"]).await.unwrap());
        }
        for t in &created {
            assert_eq!(b.http.status(t.token.expose_secret()).await, StatusCode::OK);
        }
        let warm_calls = b.store_calls();
        let (gone, kept) = created.split_at(10);

        // B keeps serving a token nobody revokes all along.
        let serving = Arc::new(AtomicBool::new(true));
        let served = Arc::new(AtomicU64::new(0));
        let hammer = tokio::spawn({
            let (http, token) = (b.http.clone(), kept[9].token.expose_secret().to_owned());
            let (serving, served) = (Arc::clone(&serving), Arc::clone(&served));
            async move {
                while serving.load(Ordering::Acquire) {
                    assert_eq!(http.status(&token).await, StatusCode::OK);
                    served.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        });

        // Revoked behind everyone's back, as if their notifications had been sent while
        // B's connection was down: with the session in replica mode the table's triggers
        // do not fire, so nothing announces the change (a writer the feed cannot see).
        // B cannot know, and serves them from its cache.
        let ids: Vec<String> = gone.iter().map(|t| t.record.id.to_string()).collect();
        let mut unseen = a.postgres.pool().begin().await.unwrap();
        sqlx::query("SET LOCAL session_replication_role = replica")
            .execute(&mut *unseen)
            .await
            .unwrap();
        sqlx::query(AssertSqlSafe(format!(
            r#"UPDATE "{table}" SET revoked = TRUE WHERE id = ANY($1)"#
        )))
        .bind(&ids)
        .execute(&mut *unseen)
        .await
        .unwrap();
        unseen.commit().await.unwrap();
        assert_eq!(
            b.http.status(gone[0].token.expose_secret()).await,
            StatusCode::OK
        );

        // Kill B's listening backend.
        let pid = listener_pid(a.postgres.pool(), &listening).await;
        let killed = Instant::now();
        let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(a.postgres.pool())
            .await
            .unwrap();
        assert!(terminated);

        // B notices, reconnects and clears its cache: the tokens revoked in the gap are
        // refused, well within the TTL.
        let mut refused_after = Vec::new();
        for t in gone {
            until_refused(&b.http, t.token.expose_secret(), Duration::from_secs(5)).await;
            refused_after.push(killed.elapsed());
        }
        eprintln!(
            "listener killed: every token revoked in the gap refused {:?} after the kill",
            refused_after.last().unwrap()
        );
        assert_eq!(listening.losses(), 1);
        assert!(
            logs.text().contains("lost its connection"),
            "{}",
            logs.text()
        );
        // B listens again (the cache was paused from the loss until a heartbeat came back
        // over the new connection), and the token B kept serving is cached again.
        let evictor = b.store.evictor();
        let lost = Instant::now();
        while evictor.is_paused() {
            assert!(lost.elapsed() < Duration::from_secs(10), "still paused");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            b.http.status(kept[9].token.expose_secret()).await,
            StatusCode::OK
        );
        // The others were asked for again (the cache was cleared), and still work.
        let before = b.store_calls();
        for t in &kept[..9] {
            assert_eq!(b.http.status(t.token.expose_secret()).await, StatusCode::OK);
        }
        assert!(b.store_calls() > warm_calls);
        assert_eq!(b.store_calls(), before + 9, "cleared, then cached again");

        // The new connection listens: a revocation through A reaches B.
        a.tokens
            .revoke(&kept[0].record.user_id, kept[0].record.id)
            .await
            .unwrap();
        until_refused(
            &b.http,
            kept[0].token.expose_secret(),
            Duration::from_secs(5),
        )
        .await;
        // And no token revoked in the gap comes back.
        for t in gone {
            assert_eq!(
                b.http.status(t.token.expose_secret()).await,
                StatusCode::UNAUTHORIZED
            );
        }

        serving.store(false, Ordering::Release);
        hammer.await.unwrap();
        assert!(served.load(Ordering::Relaxed) > 0);
    })
    .await;
}

#[tokio::test]
async fn notifications_carry_the_changed_ids_in_batches_under_the_payload_limit() {
    with_postgres(|url, table| async move {
        let store = PostgresStore::<i64>::new(pg_pool(&url).await).with_table(&table);
        store.migrate().await.unwrap();
        assert_eq!(store.channel(), format!("tower_pat:{table}"));
        let tokens = Tokens::new(store.clone(), registry());
        let mut ids = std::collections::HashSet::new();
        for _ in 0..450 {
            ids.insert(
                tokens
                    .create(1, "t", ["orders:read"])
                    .await
                    .unwrap()
                    .record
                    .id
                    .to_string(),
            );
        }
        let other = tokens.create(2, "t", ["orders:read"]).await.unwrap();
        let mut listener = PgListener::connect(&url).await.unwrap();
        listener.listen(store.channel()).await.unwrap();

        // Nothing changes: nothing is sent.
        assert_eq!(
            store
                .revoke(&3, other.record.id, time::OffsetDateTime::now_utc())
                .await
                .unwrap(),
            tower_pat::store::Revoked::NotFound
        );
        assert_eq!(tokens.revoke_all(&1).await.unwrap(), 450);
        let mut seen = std::collections::HashSet::new();
        let mut notifications = 0;
        while seen.len() < 450 {
            let note = tokio::time::timeout(Duration::from_secs(5), listener.recv())
                .await
                .expect("a notification")
                .unwrap();
            assert!(note.payload().len() < 8000);
            let batch: Vec<&str> = note.payload().split(' ').collect();
            assert!(
                batch.len() <= 200,
                "{} ids in one notification",
                batch.len()
            );
            seen.extend(batch.into_iter().map(str::to_owned));
            notifications += 1;
        }
        assert_eq!(seen, ids);
        assert_eq!(notifications, 3);

        // delete, and a revoke of one token, send its id.
        tokens.delete(&2, other.record.id).await.unwrap();
        let note = tokio::time::timeout(Duration::from_secs(5), listener.recv())
            .await
            .expect("a notification")
            .unwrap();
        assert_eq!(note.payload(), other.record.id.to_string());

        // A change rolled back sends nothing: the next notification is the next change.
        let mut tx = store.pool().begin().await.unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "SELECT pg_notify('{}', 'rolled back')",
            store.channel()
        )))
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.rollback().await.unwrap();
        let last = tokens.create(4, "t", ["orders:read"]).await.unwrap();
        tokens.revoke(&4, last.record.id).await.unwrap();
        let note = tokio::time::timeout(Duration::from_secs(5), listener.recv())
            .await
            .expect("a notification")
            .unwrap();
        assert_eq!(note.payload(), last.record.id.to_string());
    })
    .await;
}

/// A TCP proxy to the PostgreSQL server, written for the test, that can stop forwarding
/// without closing anything: what a partition or a stuck middlebox looks like from the
/// client (the connection stays open, nothing arrives).
struct Proxy {
    addr: SocketAddr,
    forwarding: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (forwarding, gate) = watch::channel(true);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let gate = gate.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (from_client, to_client) = client.into_split();
                    let (from_server, to_server) = server.into_split();
                    tokio::join!(
                        pipe(from_client, to_server, gate.clone()),
                        pipe(from_server, to_client, gate),
                    );
                });
            }
        });
        Self { addr, forwarding }
    }

    /// Stops forwarding: bytes in flight and bytes to come are held, connections stay
    /// open, new ones are accepted (and held too).
    fn stall(&self) {
        self.forwarding.send_replace(false);
    }

    fn resume(&self) {
        self.forwarding.send_replace(true);
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

/// The PostgreSQL server's address, from its URL.
async fn server_addr(url: &str) -> SocketAddr {
    let options: PgConnectOptions = url.parse().unwrap();
    tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .unwrap()
        .next()
        .expect("an address for the server")
}

/// The status of a request for `token`, and how many store calls it made.
async fn next(instance: &Instance, token: &str) -> (StatusCode, usize) {
    let before = instance.store_calls();
    let status = instance.http.status(token).await;
    (status, instance.store_calls() - before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_cut_off_by_a_silent_proxy_pauses_the_cache_within_the_bound() {
    with_postgres(|url, table| async move {
        let a = instance(&url, &table).await;
        let b = instance(&url, &table).await;
        let _listening_a = a.postgres.listen(a.store.evictor()).await.unwrap();
        // B answers requests over its own pool, straight to the server; only its
        // listening connection goes through the proxy.
        let proxy = Proxy::start(server_addr(&url).await).await;
        let options = url
            .parse::<PgConnectOptions>()
            .unwrap()
            .host("127.0.0.1")
            .port(proxy.addr.port());
        let through_proxy = PostgresStore::<i64>::new(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(options),
        )
        .with_table(&table);
        let bound = DEFAULT_STALENESS_BOUND;
        let listening = through_proxy.listen(b.store.evictor()).await.unwrap();

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

        // Cut off: A revokes a token B has cached; the notification is held by the proxy.
        proxy.stall();
        let stalled = Instant::now();
        a.tokens
            .revoke(&revoked.record.user_id, revoked.record.id)
            .await
            .unwrap();
        until_refused(
            &b.http,
            revoked.token.expose_secret(),
            bound + Duration::from_secs(5),
        )
        .await;
        let refused_after = stalled.elapsed();
        eprintln!(
            "stalled listener: the revoked token was refused {refused_after:?} after the stall \
             began (bound {bound:?})"
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

        // The proxy forwards again: the listener reconnects and the cache is used again.
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
            "stalled listener: the cache was in use again {:?} after the proxy resumed",
            resumed.elapsed()
        );
        assert!(listening.backend_pid().is_some());
        // What B cached since comes from after the reconnection: a revocation reaches it
        // by notification again, well before the bound.
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
async fn a_flood_of_junk_notifications_clears_the_cache_at_most_once_a_second_and_warns_once() {
    with_postgres(|url, table| async move {
        let logs = common::LogCapture::start();
        let b = instance(&url, &table).await;
        let bound = Duration::from_millis(800);
        let listening = b
            .postgres
            .listen_with(
                b.store.evictor(),
                ListenOptions::new().staleness_bound(bound),
            )
            .await
            .unwrap();
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
            let (pool, channel) = (pg_pool(&url).await, b.postgres.channel().to_owned());
            let flooding = Arc::clone(&flooding);
            async move {
                let mut sent = 0_u64;
                while flooding.load(Ordering::Acquire) {
                    sqlx::query(
                        "SELECT pg_notify($1, 'junk ' || g) FROM generate_series(1, 200) AS g",
                    )
                    .bind(&channel)
                    .execute(&pool)
                    .await
                    .unwrap();
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
            .filter(|line| line.contains("WARN") && line.contains("not a list of token ids"))
            .count();
        let warnings = text.lines().filter(|line| line.contains("WARN")).count();
        eprintln!(
            "junk flood: {sent} notifications sent, {} read by the listener, in {elapsed:?}; \
             {requests} requests made {calls} store calls; {junk_warnings} warning line(s), \
             {warnings} in all",
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

#[tokio::test]
async fn a_stopped_listener_leaves_the_cache_in_use_and_ends_its_connection() {
    with_postgres(|url, table| async move {
        let b = instance(&url, &table).await;
        let listening = b.postgres.listen(b.store.evictor()).await.unwrap();
        let pid = listener_pid(b.postgres.pool(), &listening).await;
        listening.stop();
        let stopped = Instant::now();
        loop {
            let alive: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
                    .bind(pid)
                    .fetch_one(b.postgres.pool())
                    .await
                    .unwrap();
            if !alive {
                break;
            }
            assert!(
                stopped.elapsed() < Duration::from_secs(10),
                "the listening connection is still open"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!b.store.evictor().is_paused());
        let created = b.tokens.create(1, "t", ["orders:read"]).await.unwrap();
        let token = created.token.expose_secret();
        assert_eq!(next(&b, token).await, (StatusCode::OK, 1));
        assert_eq!(next(&b, token).await, (StatusCode::OK, 0));
    })
    .await;
}

/// A listener whose runtime shuts down while the cache lives on leaves the cache paused:
/// nothing vouches for it any more.
#[tokio::test]
async fn a_listener_dropped_with_its_runtime_leaves_the_cache_paused() {
    with_postgres(|url, table| async move {
        let cache = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let cache = runtime.block_on(async {
                let postgres = PostgresStore::<i64>::new(pg_pool(&url).await).with_table(&table);
                postgres.migrate().await.unwrap();
                let cache = CachedStore::new(postgres.clone());
                postgres.listen(cache.evictor()).await.unwrap();
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
