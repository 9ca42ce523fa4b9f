//! `CachedStore` in front of a store that cannot answer at once (the fault store, which
//! counts the lookups that reach it), behind a real axum server on loopback: what a hit,
//! a cold miss, an unknown token and concurrent misses cost in store calls, that errors
//! are never kept, that every change through the cache evicts at once, that a lookup
//! begun before an eviction never brings the evicted record back, and that the TTL is the
//! bound where no eviction comes. A bus of the application's own (a hub over loopback,
//! written here) that disconnects pauses the cache: every request asks the store, and a
//! token revoked in the gap stays refused once the bus is back. The same cache passes the
//! conformance kit over every shipped store.

#![cfg(feature = "cache")]

use crate::common;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use common::{Fault, Faulty, KeepAlive, registry};
use http::StatusCode;
use time::OffsetDateTime;
use tower_pat::{
    AccessToken, CreateToken, ManageTokens, MemoryStore, TokenStore, Tokens, async_trait,
    clock::ManualClock,
    record::{TokenId, TokenRecord},
    store::{
        CachedStore, CachedStoreBuilder, Lookup, PauseGuard, Revoked, StoreError, WeakEvictor,
    },
    token::TokenHash,
};

type Cached = CachedStore<Faulty<MemoryStore<i64>>>;

/// A cache over a fault store that never answers at once (as a database does).
fn cached(options: CachedStoreBuilder<Faulty<MemoryStore<i64>>>) -> (Tokens<Cached>, Cached) {
    let faulty = Faulty::new(MemoryStore::<i64>::new());
    faulty.async_only(true);
    let store = options.build(faulty);
    (Tokens::new(store.clone(), registry()), store)
}

fn faults(store: &Cached) -> &Faulty<MemoryStore<i64>> {
    store.inner()
}

async fn serve<St: TokenStore<UserId = i64> + ManageTokens>(tokens: &Tokens<St>) -> SocketAddr {
    let app = Router::new()
        .route(
            "/orders",
            get(|token: AccessToken| async move { format!("user {}", token.user_id()) }),
        )
        .layer(tokens.layer());
    common::serve(app).await
}

#[tokio::test]
async fn a_hit_makes_no_store_call_and_a_cold_miss_makes_one() {
    let (tokens, store) = cached(CachedStore::builder());
    let http = KeepAlive::new(serve(&tokens).await, "/orders");
    let created = tokens.create(1, "cli", ["orders:read"]).await.unwrap();
    let token = created.token.expose_secret();

    assert_eq!(http.status(token).await, StatusCode::OK);
    assert_eq!(
        faults(&store).find_calls(),
        1,
        "a cold miss is one store call"
    );
    for _ in 0..200 {
        assert_eq!(http.status(token).await, StatusCode::OK);
    }
    assert_eq!(faults(&store).find_calls(), 1, "hits make no store call");
    // The hit is the synchronous answer.
    assert!(matches!(
        store.find_ready(&created.record.token_hash),
        Some(Ok(Some(_)))
    ));
    assert_eq!(faults(&store).find_calls(), 1);
}

#[tokio::test]
async fn an_unknown_token_reaches_the_store_at_most_once_per_negative_ttl() {
    let ttl = Duration::from_millis(300);
    let (tokens, store) = cached(CachedStore::builder().negative_ttl(ttl));
    let http = KeepAlive::new(serve(&tokens).await, "/orders");
    // Well-formed (right prefix, length and checksum), but no record has it.
    let unknown = tokens.token_format().generate().unwrap();

    let started = Instant::now();
    let mut requests = 0;
    while started.elapsed() < Duration::from_millis(1300) {
        assert_eq!(
            http.status(unknown.expose_secret()).await,
            StatusCode::UNAUTHORIZED
        );
        requests += 1;
    }
    let elapsed = started.elapsed();
    let calls = faults(&store).find_calls();
    // One call at the start, then at most one each time the entry expires.
    let bound = (elapsed.as_secs_f64() / ttl.as_secs_f64()).floor() as usize + 1;
    assert!(
        calls <= bound,
        "{calls} store calls for {requests} requests in {elapsed:?} (at most {bound})"
    );
    assert!(
        calls >= 2,
        "the negative entry must expire: {calls} calls in {elapsed:?}"
    );
    assert!(requests > 5 * calls, "{requests} requests, {calls} calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_requests_for_one_uncached_token_make_one_store_call() {
    let (tokens, store) = cached(CachedStore::builder());
    let http = KeepAlive::new(serve(&tokens).await, "/orders");
    let created = tokens.create(1, "cli", ["orders:read"]).await.unwrap();
    let token: Arc<str> = created.token.expose_secret().into();
    // Slow enough that every request arrives while the one lookup is under way.
    faults(&store).set(Fault::Slow(Duration::from_millis(750)));
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (http, token, barrier) = (http.clone(), Arc::clone(&token), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                http.status(&token).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(faults(&store).find_calls(), 1);
}

#[tokio::test]
async fn store_errors_are_never_kept() {
    let (tokens, store) = cached(CachedStore::builder());
    let http = KeepAlive::new(serve(&tokens).await, "/orders");
    let created = tokens.create(1, "cli", ["orders:read"]).await.unwrap();
    let token = created.token.expose_secret();
    faults(&store).schedule([Fault::Fail, Fault::Timeout], Fault::Pass);

    assert_eq!(http.status(token).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(http.status(token).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(http.status(token).await, StatusCode::OK);
    assert_eq!(http.status(token).await, StatusCode::OK);
    assert_eq!(faults(&store).find_calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sharing_a_failed_lookup_all_fail_and_the_next_asks_again() {
    let store = CachedStore::new(ReadThenWait::new(Duration::from_millis(300)));
    let tokens = Tokens::new(store.clone(), registry());
    let created = tokens.create(1, "cli", ["orders:read"]).await.unwrap();
    let hash = created.record.token_hash;
    store.inner().fail_next.store(1, Ordering::SeqCst);
    let results = futures_util::future::join_all((0..8).map(|_| store.find(&hash))).await;
    for result in &results {
        let error = result.as_ref().expect_err("every waiter sees the failure");
        assert!(error.to_string().contains("injected"), "{error}");
    }
    assert_eq!(store.inner().calls.load(Ordering::SeqCst), 1);
    assert!(store.find(&hash).await.unwrap().is_some());
    assert!(store.find(&hash).await.unwrap().is_some());
    assert_eq!(store.inner().calls.load(Ordering::SeqCst), 2);
}

/// How many store calls the next request makes, and its status.
async fn next(http: &KeepAlive, store: &Cached, token: &str) -> (StatusCode, usize) {
    let before = faults(store).find_calls();
    let status = http.status(token).await;
    (status, faults(store).find_calls() - before)
}

#[tokio::test]
async fn every_change_through_the_cache_evicts_at_once() {
    let clock = ManualClock::new(OffsetDateTime::now_utc().replace_nanosecond(0).unwrap());
    let (tokens, store) = cached(CachedStore::builder());
    let tokens = tokens.clock(clock.clone());
    let http = KeepAlive::new(serve(&tokens).await, "/orders");
    let create = |user: i64| {
        let tokens = tokens.clone();
        async move { tokens.create(user, "t", ["orders:read"]).await.unwrap() }
    };
    let (a, b, c, d, other) = (
        create(1).await,
        create(1).await,
        create(2).await,
        create(3).await,
        create(4).await,
    );
    for t in [&a, &b, &c, &d, &other] {
        assert_eq!(http.status(t.token.expose_secret()).await, StatusCode::OK);
        assert_eq!(
            next(&http, &store, t.token.expose_secret()).await,
            (StatusCode::OK, 0)
        );
    }

    // revoke: the next request asks the store, and is refused.
    assert_eq!(
        tokens.revoke(&4, other.record.id).await.unwrap(),
        Revoked::Revoked
    );
    assert_eq!(
        next(&http, &store, other.token.expose_secret()).await,
        (StatusCode::UNAUTHORIZED, 1)
    );
    // revoke_all: every token of the user.
    assert_eq!(tokens.revoke_all(&1).await.unwrap(), 2);
    for t in [&a, &b] {
        assert_eq!(
            next(&http, &store, t.token.expose_secret()).await,
            (StatusCode::UNAUTHORIZED, 1)
        );
    }
    // rotate: the old token is refused, the new one works.
    let rotated = tokens
        .rotate(&2, c.record.id, time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        next(&http, &store, c.token.expose_secret()).await,
        (StatusCode::UNAUTHORIZED, 1)
    );
    assert_eq!(
        http.status(rotated.token.expose_secret()).await,
        StatusCode::OK
    );
    // delete.
    tokens.delete(&3, d.record.id).await.unwrap();
    assert_eq!(
        next(&http, &store, d.token.expose_secret()).await,
        (StatusCode::UNAUTHORIZED, 1)
    );
    // Tokens of nobody else were touched: still hits.
    assert_eq!(
        next(&http, &store, rotated.token.expose_secret()).await,
        (StatusCode::OK, 0)
    );

    // prune: what it deletes leaves the cache (a revoked record, cached as revoked).
    assert_eq!(
        next(&http, &store, other.token.expose_secret()).await,
        (StatusCode::UNAUTHORIZED, 0)
    );
    clock.advance(time::Duration::days(2));
    assert!(tokens.prune(time::Duration::days(1)).await.unwrap() >= 4);
    assert_eq!(
        next(&http, &store, other.token.expose_secret()).await,
        (StatusCode::UNAUTHORIZED, 1)
    );
    // The active token was kept, and stays cached.
    assert_eq!(
        next(&http, &store, rotated.token.expose_secret()).await,
        (StatusCode::OK, 0)
    );
}

#[tokio::test]
async fn the_layer_judges_expiry_of_a_cached_record_itself() {
    let clock = ManualClock::new(OffsetDateTime::now_utc().replace_nanosecond(0).unwrap());
    let (tokens, store) = cached(CachedStore::builder());
    let tokens = tokens.clock(clock.clone());
    let http = KeepAlive::new(serve(&tokens).await, "/orders");
    let created = tokens
        .create_with(
            1,
            CreateToken::new("short").expires_in(time::Duration::minutes(5)),
        )
        .await
        .unwrap();
    let token = created.token.expose_secret();
    assert_eq!(http.status(token).await, StatusCode::OK);
    clock.advance(time::Duration::minutes(5));
    assert_eq!(
        next(&http, &store, token).await,
        (StatusCode::UNAUTHORIZED, 0)
    );
}

#[tokio::test]
async fn a_token_created_after_its_hash_was_cached_as_unknown_works_at_once() {
    let (tokens, store) = cached(CachedStore::builder());
    let http = KeepAlive::new(serve(&tokens).await, "/orders");
    // The record is made by hand, so the token is known before it is stored.
    let plaintext = tokens.token_format().generate().unwrap();
    assert_eq!(
        http.status(plaintext.expose_secret()).await,
        StatusCode::UNAUTHORIZED
    );
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    store
        .insert(
            TokenRecord::new(
                TokenId::random().unwrap(),
                1,
                plaintext.hash(),
                now,
                now + time::Duration::days(1),
            )
            .with_name("late")
            .with_scopes(tower_pat::scope::Scopes::try_from_iter(["orders:read"]).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(http.status(plaintext.expose_secret()).await, StatusCode::OK);
}

#[tokio::test]
async fn the_ttl_bounds_staleness_where_no_eviction_comes_and_touch_does_not_extend_it() {
    let ttl = Duration::from_millis(600);
    let (tokens, store) = cached(CachedStore::builder().ttl(ttl));
    let layer = tokens.layer();
    let app = Router::new()
        .route("/orders", get(|| async { "ok" }))
        .layer(layer.clone());
    let http = KeepAlive::new(common::serve(app).await, "/orders");
    let created = tokens.create(1, "cli", ["orders:read"]).await.unwrap();
    let token = created.token.expose_secret();

    let loaded = Instant::now();
    assert_eq!(http.status(token).await, StatusCode::OK);
    // The use is written back; the cached record is not touched (its TTL still counts
    // from its load), and no lookup was needed.
    assert_eq!(layer.flush().await, 1);
    let Some(Ok(Some(_))) = store.find_ready(&created.record.token_hash) else {
        panic!("the record is cached");
    };
    assert_eq!(faults(&store).find_calls(), 1);

    // Revoked behind the cache's back (as another instance without notifications would).
    store
        .inner()
        .inner()
        .revoke(&1, created.record.id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(
        http.status(token).await,
        StatusCode::OK,
        "stale within the TTL"
    );
    loop {
        // An acceptance proves the entry alive when the request was sent, or later.
        let sent = loaded.elapsed();
        let status = http.status(token).await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            sent < ttl + Duration::from_millis(300),
            "still accepted {sent:?} after it was loaded (TTL {ttl:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        loaded.elapsed() >= ttl,
        "refused before the TTL: something else evicted it"
    );
}

#[tokio::test]
async fn a_flood_of_unknown_tokens_does_not_push_records_out() {
    let (tokens, store) = cached(
        CachedStore::builder()
            .max_entries(100)
            .max_negative_entries(50),
    );
    let mut hot = Vec::new();
    for _ in 0..20 {
        let created = tokens.create(1, "hot", ["orders:read"]).await.unwrap();
        assert!(
            store
                .find(&created.record.token_hash)
                .await
                .unwrap()
                .is_some()
        );
        hot.push(created.record.token_hash);
    }
    let calls = faults(&store).find_calls();
    for _ in 0..5_000 {
        let unknown = tokens.token_format().generate().unwrap().hash();
        assert!(store.find(&unknown).await.unwrap().is_none());
    }
    assert_eq!(faults(&store).find_calls(), calls + 5_000);
    for hash in &hot {
        assert!(matches!(store.find_ready(hash), Some(Ok(Some(_)))));
    }
    assert_eq!(faults(&store).find_calls(), calls + 5_000);
}

/// Reads the record, then waits before answering: a lookup that saw the row as it was
/// before a revocation and comes back after it.
struct ReadThenWait {
    inner: MemoryStore<i64>,
    wait: Duration,
    calls: AtomicUsize,
    /// How many of the next lookups fail (after the wait).
    fail_next: AtomicUsize,
}

impl ReadThenWait {
    fn new(wait: Duration) -> Self {
        Self {
            inner: MemoryStore::new(),
            wait,
            calls: AtomicUsize::new(0),
            fail_next: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl TokenStore for ReadThenWait {
    type UserId = i64;

    async fn find(&self, hash: &TokenHash) -> Lookup<i64> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let found = self.inner.find(hash).await;
        tokio::time::sleep(self.wait).await;
        let fail = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(StoreError::new(std::io::Error::other("injected failure")));
        }
        found
    }
}

#[async_trait]
impl ManageTokens for ReadThenWait {
    async fn insert(&self, record: TokenRecord<i64>) -> Result<(), StoreError> {
        self.inner.insert(record).await
    }
    async fn get(&self, id: TokenId) -> Result<Option<TokenRecord<i64>>, StoreError> {
        self.inner.get(id).await
    }
    async fn list(&self, user: &i64) -> Result<Vec<TokenRecord<i64>>, StoreError> {
        self.inner.list(user).await
    }
    async fn revoke(
        &self,
        user: &i64,
        id: TokenId,
        at: OffsetDateTime,
    ) -> Result<Revoked, StoreError> {
        self.inner.revoke(user, id, at).await
    }
    async fn revoke_all(&self, user: &i64, at: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.revoke_all(user, at).await
    }
    async fn delete(&self, user: &i64, id: TokenId) -> Result<bool, StoreError> {
        self.inner.delete(user, id).await
    }
    async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.prune(before).await
    }
}

#[tokio::test]
async fn a_lookup_begun_before_a_revocation_does_not_bring_the_token_back() {
    let store = CachedStore::new(ReadThenWait::new(Duration::from_millis(300)));
    let tokens = Tokens::new(store, registry());
    let http = KeepAlive::new(serve(&tokens).await, "/orders");
    let created = tokens.create(1, "cli", ["orders:read"]).await.unwrap();
    let token = created.token.expose_secret().to_owned();

    // The lookup reads the active row, then takes its time.
    let early = tokio::spawn({
        let (http, token) = (http.clone(), token.clone());
        async move { http.status(&token).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokens.revoke(&1, created.record.id).await.unwrap();
    // It began before the revocation, so it may pass; it must not be kept.
    assert_eq!(early.await.unwrap(), StatusCode::OK);
    assert_eq!(http.status(&token).await, StatusCode::UNAUTHORIZED);
}

/// A bus written for the test, over loopback: subscribers connect, are told `ready`, then
/// get every published line. While down it drops its subscribers and every connection
/// (what a Redis or NATS failover looks like to a subscriber); what is published then is
/// lost.
struct Hub {
    addr: SocketAddr,
    lines: tokio::sync::broadcast::Sender<String>,
    up: tokio::sync::watch::Sender<bool>,
}

impl Hub {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (lines, _) = tokio::sync::broadcast::channel::<String>(64);
        let (up, _) = tokio::sync::watch::channel(true);
        let (published, state) = (lines.clone(), up.subscribe());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                if !*state.borrow() {
                    continue;
                }
                let (mut lines, mut state) = (published.subscribe(), state.clone());
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    if stream.write_all(b"ready\n").await.is_err() {
                        return;
                    }
                    loop {
                        tokio::select! {
                            line = lines.recv() => {
                                let Ok(line) = line else { return };
                                if stream.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                            changed = state.changed() => {
                                if changed.is_err() || !*state.borrow() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Self { addr, lines, up }
    }

    /// Sends `line` to the subscribers connected now, if any.
    fn publish(&self, line: String) {
        let _ = self.lines.send(line);
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// What an application writes for its own bus: evict what the bus says; pause the cache
/// whenever it is not connected (from the start until the bus says `ready`, and from a
/// lost connection until it is subscribed again); end when the cache is dropped.
async fn subscriber(cache: WeakEvictor<i64>, hub: SocketAddr) {
    use tokio::io::AsyncBufReadExt;
    let mut closed = cache.closed();
    let Some(evictor) = cache.upgrade() else {
        return;
    };
    let mut paused: Option<PauseGuard<i64>> = Some(evictor.pause());
    drop(evictor);
    loop {
        let connected = tokio::select! {
            () = &mut closed => return,
            stream = tokio::net::TcpStream::connect(hub) => stream,
        };
        if let Ok(stream) = connected {
            let mut lines = tokio::io::BufReader::new(stream).lines();
            loop {
                let line = tokio::select! {
                    () = &mut closed => return,
                    line = lines.next_line() => line,
                };
                let Some(evictor) = cache.upgrade() else {
                    return;
                };
                match line {
                    Ok(Some(line)) if line == "ready" => paused = None,
                    Ok(Some(line)) => match line.strip_prefix("revoked ").map(str::parse) {
                        Some(Ok(id)) => evictor.evict_token(id),
                        _ => evictor.evict_all(),
                    },
                    Ok(None) | Err(_) => {
                        paused.get_or_insert_with(|| evictor.pause());
                        break;
                    }
                }
            }
        }
        tokio::select! {
            () = &mut closed => return,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

/// Waits (a bounded time) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_bus_that_disconnects_pauses_the_cache_and_a_token_revoked_in_the_gap_stays_refused() {
    let (tokens, store) = cached(CachedStore::builder().ttl(Duration::from_secs(3600)));
    let http = KeepAlive::new(serve(&tokens).await, "/orders");
    let hub = Hub::start().await;
    let evictor = store.evictor();
    let bus = tokio::spawn(subscriber(evictor.downgrade(), hub.addr));
    eventually("subscribed", || !evictor.is_paused()).await;

    let gone = tokens.create(1, "gone", ["orders:read"]).await.unwrap();
    let kept = tokens.create(2, "kept", ["orders:read"]).await.unwrap();
    let (gone_token, kept_token) = (gone.token.expose_secret(), kept.token.expose_secret());
    for token in [gone_token, kept_token] {
        assert_eq!(next(&http, &store, token).await, (StatusCode::OK, 1));
        assert_eq!(next(&http, &store, token).await, (StatusCode::OK, 0));
    }

    // The bus goes down; `gone` is revoked elsewhere meanwhile, and its message is lost.
    hub.set_up(false);
    eventually("paused", || evictor.is_paused()).await;
    store
        .inner()
        .inner()
        .revoke(&1, gone.record.id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    hub.publish(format!("revoked {}", gone.record.id));
    // Paused: every request asks the store.
    for _ in 0..20 {
        assert_eq!(next(&http, &store, kept_token).await, (StatusCode::OK, 1));
    }
    assert_eq!(
        next(&http, &store, gone_token).await,
        (StatusCode::UNAUTHORIZED, 1)
    );

    // The bus is back: the token revoked in the gap stays refused, the cache is used again.
    hub.set_up(true);
    eventually("resumed", || !evictor.is_paused()).await;
    assert_eq!(
        next(&http, &store, gone_token).await,
        (StatusCode::UNAUTHORIZED, 1)
    );
    assert_eq!(
        next(&http, &store, gone_token).await,
        (StatusCode::UNAUTHORIZED, 0)
    );
    assert_eq!(next(&http, &store, kept_token).await, (StatusCode::OK, 1));
    assert_eq!(next(&http, &store, kept_token).await, (StatusCode::OK, 0));

    // And what it carries evicts again.
    store
        .inner()
        .inner()
        .revoke(&2, kept.record.id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    hub.publish(format!("revoked {}", kept.record.id));
    let started = Instant::now();
    while http.status(kept_token).await == StatusCode::OK {
        assert!(started.elapsed() < Duration::from_secs(10), "never evicted");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(!bus.is_finished());
}

#[tokio::test]
async fn a_bus_task_ends_when_the_cache_is_dropped() {
    let store = CachedStore::new(MemoryStore::<i64>::new());
    let hub = Hub::start().await;
    let bus = tokio::spawn(subscriber(store.evictor().downgrade(), hub.addr));
    let evictor = store.evictor();
    eventually("subscribed", || !evictor.is_paused()).await;
    drop((store, evictor));
    tokio::time::timeout(Duration::from_secs(10), bus)
        .await
        .expect("the bus task ends with the cache")
        .unwrap();
}

#[cfg(feature = "test-kit")]
mod conformance {
    use tower_pat::{MemoryStore, store::CachedStore, testing::Conformance};

    #[tokio::test]
    async fn over_memory() {
        Conformance::new(|n| i64::from(n) + 1)
            .client_id(true)
            .last_used(true)
            .manage_tokens(&CachedStore::new(MemoryStore::<i64>::new()))
            .await;
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn over_sqlite() {
        let db = crate::common::db::TempDb::new();
        let store = tower_pat::SqliteStore::<i64>::open(db.path())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        Conformance::new(|n| i64::from(n) + 1)
            .client_id(true)
            .last_used(true)
            .manage_tokens(&CachedStore::new(store))
            .await;
    }

    #[cfg(feature = "postgres")]
    #[tokio::test]
    async fn over_postgres() {
        crate::common::db::with_postgres(|url, table| async move {
            let store =
                tower_pat::PostgresStore::<i64>::new(crate::common::db::pg_pool(&url).await)
                    .with_table(&table);
            store.migrate().await.unwrap();
            Conformance::new(|n| i64::from(n) + 1)
                .client_id(true)
                .last_used(true)
                .manage_tokens(&CachedStore::new(store))
                .await;
        })
        .await;
    }
}
