//! Fault injection: a store that fails, hangs, answers slowly or answers with data that
//! does not fit the question, behind a real axum server (and a tonic one) on loopback.
//!
//! The layer must answer 503 / `UNAVAILABLE` — never a 2xx, never a 401 that would make a
//! client throw a good token away — within the configured store timeout, and recover as
//! soon as the store does. Garbage never reaches the store at all.

use crate::common;

#[allow(clippy::all, missing_docs, unreachable_pub)]
mod pb {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/proto/orders.v1.rs"));
}

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use common::{Fault, Faulty};
use http::{HeaderValue, Request, StatusCode, header::AUTHORIZATION};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tower_pat::{
    AccessToken, MemoryStore, NewToken, PatLayer, RequireScopesLayer, Tokens, scope::ScopeRegistry,
};

/// The store timeout of most tests.
const TIMEOUT: Duration = Duration::from_millis(200);

/// A refusal for a hung store must arrive well before this: a bound, not a speed test.
fn bound(timeout: Duration) -> Duration {
    timeout * 5
}

type Store = Arc<MemoryStore<i64>>;

/// A server on 127.0.0.1:0 whose layer resolves tokens through a [`Faulty`] store.
struct Server {
    tokens: Tokens<Store>,
    faulty: Arc<Faulty<Store>>,
    layer: PatLayer<Faulty<Store>>,
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

fn registry() -> ScopeRegistry {
    ScopeRegistry::new()
        .scope("orders:read", "See orders")
        .scope("orders:create", "Place orders")
}

async fn orders(token: AccessToken) -> String {
    format!("orders of user {}", token.user_id())
}

impl Server {
    async fn start(timeout: Duration) -> Self {
        Self::start_with(timeout, |layer| layer).await
    }

    async fn start_with(
        timeout: Duration,
        configure: impl FnOnce(PatLayer<Faulty<Store>>) -> PatLayer<Faulty<Store>>,
    ) -> Self {
        let store: Store = Arc::new(MemoryStore::new());
        let tokens = Tokens::new(Arc::clone(&store), registry());
        let faulty = Arc::new(Faulty::new(store));
        let layer = configure(
            PatLayer::from_shared(Arc::clone(&faulty)).store_timeout(timeout, tokio::time::sleep),
        );
        let app = Router::new()
            .route("/orders", get(orders))
            .route_layer(RequireScopesLayer::all(["orders:read"]))
            .layer(layer.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            tokens,
            faulty,
            layer,
            base: format!("http://{addr}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn token(&self, user: i64) -> NewToken<i64> {
        self.tokens
            .create(user, "fault test", ["orders:read"])
            .await
            .unwrap()
    }

    /// Sends `GET <path>` with these `Authorization` values; the status and how long the
    /// answer took.
    async fn send(&self, path: &str, auth: &[&[u8]]) -> (StatusCode, Option<String>, Duration) {
        let mut req = Request::get(format!("{}{path}", self.base));
        for v in auth {
            req = req.header(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        let req = req.body(Empty::new()).unwrap();
        let start = Instant::now();
        let res = self.client.request(req).await.unwrap();
        let elapsed = start.elapsed();
        let challenge = res
            .headers()
            .get(http::header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        (res.status(), challenge, elapsed)
    }

    async fn get(&self, token: &NewToken<i64>) -> (StatusCode, Duration) {
        let value = format!("Bearer {}", token.token.expose_secret());
        let (status, _, elapsed) = self.send("/orders", &[value.as_bytes()]).await;
        (status, elapsed)
    }
}

/// The answer to a store fault: 503 without a challenge, in time.
async fn expect_unavailable(server: &Server, token: &NewToken<i64>, timeout: Duration) {
    let value = format!("Bearer {}", token.token.expose_secret());
    let (status, challenge, elapsed) = server.send("/orders", &[value.as_bytes()]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "store fault");
    assert_eq!(challenge, None, "a 503 carries no challenge");
    assert!(
        elapsed < bound(timeout),
        "answered after {elapsed:?}, timeout {timeout:?}"
    );
}

#[tokio::test]
async fn failures_answer_503_and_the_layer_recovers_with_the_store() {
    let server = Server::start(TIMEOUT).await;
    let token = server.token(1).await;
    server
        .faulty
        .schedule([Fault::Fail, Fault::Corrupt, Fault::Fail], Fault::Pass);
    for _ in 0..3 {
        expect_unavailable(&server, &token, TIMEOUT).await;
    }
    for _ in 0..2 {
        assert_eq!(server.get(&token).await.0, StatusCode::OK);
    }
    assert_eq!(
        server.faulty.applied(),
        ["fail", "corrupt", "fail", "pass", "pass"]
    );
}

#[tokio::test]
async fn a_hung_store_answers_503_within_the_timeout_then_recovers() {
    let server = Server::start(TIMEOUT).await;
    let token = server.token(1).await;
    server
        .faulty
        .schedule([Fault::Hang, Fault::Hang], Fault::Pass);
    for _ in 0..2 {
        let (status, elapsed) = server.get(&token).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        // It waited for the timeout (the 503 is the timeout's), and not much longer.
        assert!(elapsed >= TIMEOUT, "gave up after {elapsed:?}");
        assert!(elapsed < bound(TIMEOUT), "answered after {elapsed:?}");
    }
    let (status, elapsed) = server.get(&token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(elapsed < bound(TIMEOUT));
}

#[tokio::test]
async fn slow_answers_pass_below_the_timeout_and_fail_closed_above_it() {
    let server = Server::start(TIMEOUT).await;
    let token = server.token(1).await;
    server.faulty.schedule(
        [
            Fault::Slow(TIMEOUT / 5),
            Fault::Slow(TIMEOUT * 4),
            Fault::Slow(TIMEOUT / 5),
        ],
        Fault::Pass,
    );
    assert_eq!(server.get(&token).await.0, StatusCode::OK);
    expect_unavailable(&server, &token, TIMEOUT).await;
    assert_eq!(server.get(&token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn recovery_is_immediate_once_the_store_answers() {
    let server = Server::start(TIMEOUT).await;
    let token = server.token(1).await;
    server.faulty.set(Fault::Fail);
    for _ in 0..5 {
        expect_unavailable(&server, &token, TIMEOUT).await;
    }
    server.faulty.set(Fault::Hang);
    expect_unavailable(&server, &token, TIMEOUT).await;
    // The very first request after the store is back succeeds: no circuit stays open.
    server.faulty.set(Fault::Pass);
    assert_eq!(server.get(&token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_failing_or_hung_touch_never_blocks_or_refuses_a_request() {
    let server = Server::start(TIMEOUT).await;
    let first = server.token(1).await;
    let second = server.token(2).await;
    let third = server.token(3).await;
    // The writes of `last_used_at` hang (until the store timeout), then fail, then land.
    server
        .faulty
        .schedule_touch([Fault::Hang, Fault::Fail], Fault::Pass);
    for (token, written) in [(&first, 0), (&second, 0), (&third, 1)] {
        // Requests never wait for a write: they are answered at once, whatever the store
        // does with the writes.
        for _ in 0..3 {
            let (status, elapsed) = server.get(token).await;
            assert_eq!(status, StatusCode::OK);
            assert!(elapsed < TIMEOUT, "answered after {elapsed:?}");
        }
        // The flush gives up on a hung write at the store timeout and logs a failed one.
        let start = Instant::now();
        assert_eq!(server.layer.flush().await, written);
        assert!(
            start.elapsed() < bound(TIMEOUT),
            "flush took {:?}",
            start.elapsed()
        );
    }
    assert_eq!(server.faulty.touch_calls(), 3);
    let tokens = &server.tokens;
    let stored = |user| async move {
        tokens
            .list(&user)
            .await
            .unwrap()
            .pop()
            .expect("stored")
            .last_used_at
    };
    assert_eq!(stored(1).await, None, "the hung write never landed");
    assert_eq!(stored(2).await, None, "the failed write never landed");
    assert!(stored(3).await.is_some());
}

/// A record that does not answer the question asked (its `token_hash` is not the hash of
/// the presented token) is a broken store: never a pass, never a 401, but 503.
#[tokio::test]
async fn inconsistent_records_never_pass() {
    let server = Server::start(TIMEOUT).await;
    let token = server.token(1).await;
    let other = server.token(2).await;
    let other_record = Arc::new(other.record.clone());
    let cases = [
        // The record for the asked hash, but claiming another hash.
        Fault::WrongHash,
        // Somebody else's (valid, active) record, whatever was asked.
        Fault::Record(other_record),
    ];
    for fault in cases {
        let name = fault.name();
        server.faulty.schedule([fault], Fault::Pass);
        let (status, _) = server.get(&token).await;
        assert!(
            !status.is_success(),
            "{name}: the layer let a request through on a record whose token_hash is not \
             the presented token's hash"
        );
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{name}");
    }
    // And with a consistent answer again, the token works.
    assert_eq!(server.get(&token).await.0, StatusCode::OK);
    assert_eq!(
        server.faulty.applied(),
        ["wrong-hash", "other-record", "pass"]
    );
}

#[tokio::test]
async fn a_store_that_says_not_found_is_believed() {
    let server = Server::start(TIMEOUT).await;
    let token = server.token(1).await;
    server.faulty.schedule([Fault::Missing], Fault::Pass);
    let value = format!("Bearer {}", token.token.expose_secret());
    let (status, challenge, _) = server.send("/orders", &[value.as_bytes()]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.unwrap().contains("error=\"invalid_token\""));
    assert_eq!(server.get(&token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn garbage_and_limit_violations_never_reach_the_store() {
    let server = Server::start(TIMEOUT).await;
    let token = server.token(1).await;
    let good = format!("Bearer {}", token.token.expose_secret());
    // A store that would fail: any request that reached it would be a 503.
    server.faulty.set(Fault::Fail);
    let mut typo = good.clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
    let huge = format!("Bearer {}", "a".repeat(5000));
    let at_bound = format!("Bearer {}", "a".repeat(4096 - 7));
    let over_bound = format!("Bearer {}", "a".repeat(4096 - 6));
    // (path, Authorization values, status, RFC 6750 error code)
    type Case<'a> = (&'a str, Vec<&'a [u8]>, StatusCode, Option<&'a str>);
    let cases: [Case<'_>; 9] = [
        ("/orders", vec![], StatusCode::UNAUTHORIZED, None),
        (
            "/orders",
            vec![&typo],
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "/orders",
            vec![b"Bearer pat_short"],
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "/orders",
            vec![b"Bearer caf\xc3\xa9"],
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
        ),
        (
            "/orders",
            vec![good.as_bytes(), good.as_bytes()],
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
        ),
        (
            "/orders",
            vec![huge.as_bytes()],
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
        ),
        (
            "/orders",
            vec![over_bound.as_bytes()],
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
        ),
        // Exactly at the bound: read, and refused offline as a malformed token.
        (
            "/orders",
            vec![at_bound.as_bytes()],
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        // Query tokens are off: the query string is not looked at.
        (
            &format!("/orders?access_token={}", token.token.expose_secret()),
            vec![],
            StatusCode::UNAUTHORIZED,
            None,
        ),
    ];
    // A store that has to wait is never asked about garbage. One that answers at once may
    // be probed for a token of the right length and prefix (a hit proves the token real
    // without its checksum), but the answer is still the offline one, never its 503.
    for waits in [true, false] {
        server.faulty.async_only(waits);
        for (path, auth, want, code) in &cases {
            let (status, challenge, _) = server.send(path, auth).await;
            assert_eq!(status, *want, "{path} {auth:?} (store waits: {waits})");
            let challenge = challenge.expect("a challenge");
            if let Some(code) = code {
                assert!(
                    challenge.contains(&format!("error=\"{code}\"")),
                    "{challenge}"
                );
            }
        }
        if waits {
            assert_eq!(server.faulty.find_calls(), 0, "garbage reached the store");
        }
    }
    server.faulty.async_only(true);
    let probes = server.faulty.find_calls();
    // The good token does reach it, and gets the store's 503.
    expect_unavailable(&server, &token, TIMEOUT).await;
    assert_eq!(server.faulty.find_calls(), probes + 1);
}

#[tokio::test]
async fn query_tokens_work_only_when_enabled_and_still_fail_closed() {
    let server = Server::start_with(TIMEOUT, |l| l.allow_query_token(true)).await;
    let token = server.token(1).await;
    let path = format!("/orders?access_token={}", token.token.expose_secret());
    assert_eq!(server.send(&path, &[]).await.0, StatusCode::OK);
    server.faulty.set(Fault::Hang);
    let (status, _, elapsed) = server.send(&path, &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(elapsed < bound(TIMEOUT));
    server.faulty.set(Fault::Pass);
    // Both a header and a query token: one method per request (RFC 6750 §2).
    let value = format!("Bearer {}", token.token.expose_secret());
    let (status, _, _) = server.send(&path, &[value.as_bytes()]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// A small xorshift generator: schedules differ from run to run only by their seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Random schedules of pass / fail / corrupt / hang / slow / wrong-hash, each on its own server, a few
/// at a time: every answer is the one the fault calls for, never a 401, and afterwards
/// nothing was lost (the same records, still active, and the token works).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_fault_schedules_lose_nothing() {
    const SCHEDULES: u64 = 24;
    const STEPS: usize = 10;
    let timeout = Duration::from_millis(100);
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_fa17_u64);
    let mut tasks = Vec::new();
    for n in 0..SCHEDULES {
        let mut rng = Rng(seed.wrapping_add(n).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let schedule: Vec<Fault> = (0..STEPS)
            .map(|_| match rng.next() % 8 {
                0 | 1 => Fault::Pass,
                2 => Fault::Fail,
                3 => Fault::Corrupt,
                4 => Fault::Hang,
                5 => Fault::Slow(timeout / 10),
                6 => Fault::Slow(timeout * 3),
                _ => Fault::WrongHash,
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            let server = Server::start(timeout).await;
            let token = server.token(7).await;
            let spare = server.token(7).await;
            let before = server.tokens.list(&7).await.unwrap();
            server.faulty.schedule(schedule.clone(), Fault::Pass);
            for fault in &schedule {
                let (status, elapsed) = server.get(&token).await;
                let want = match fault {
                    Fault::Pass => StatusCode::OK,
                    Fault::Slow(d) if *d < timeout => StatusCode::OK,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                assert_eq!(status, want, "schedule {n} ({seed:#x}): {fault:?}");
                assert!(
                    elapsed < bound(timeout),
                    "{fault:?} answered after {elapsed:?}"
                );
            }
            assert_eq!(server.get(&token).await.0, StatusCode::OK);
            assert_eq!(server.get(&spare).await.0, StatusCode::OK);
            let after = server.tokens.list(&7).await.unwrap();
            let ids = |v: &[tower_pat::TokenRecord<i64>]| {
                v.iter().map(|r| (r.id, r.revoked)).collect::<Vec<_>>()
            };
            assert_eq!(ids(&before), ids(&after), "records changed under faults");
            schedule.len() + 2
        }));
    }
    let mut requests = 0;
    for t in tasks {
        requests += t.await.unwrap();
    }
    eprintln!(
        "faults: {SCHEDULES} random schedules of {STEPS} faults (seed {seed:#x}), \
         {requests} requests, nothing lost"
    );
}

mod grpc {
    use super::*;
    use pb::{
        GetUserRequest, User,
        orders_client::OrdersClient,
        orders_server::{Orders, OrdersServer},
    };
    use tonic::{Code, Status};

    struct Svc;

    #[tonic::async_trait]
    impl Orders for Svc {
        async fn list_orders(
            &self,
            _: tonic::Request<pb::ListOrdersRequest>,
        ) -> Result<tonic::Response<pb::ListOrdersResponse>, Status> {
            Ok(tonic::Response::new(pb::ListOrdersResponse::default()))
        }

        async fn create_order(
            &self,
            _: tonic::Request<pb::CreateOrderRequest>,
        ) -> Result<tonic::Response<pb::Order>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn get_user(
            &self,
            req: tonic::Request<GetUserRequest>,
        ) -> Result<tonic::Response<User>, Status> {
            let token = req
                .extensions()
                .get::<AccessToken>()
                .ok_or_else(|| Status::internal("no token"))?;
            Ok(tonic::Response::new(User {
                id: token.user_id().to_string(),
                token_name: token.name().to_owned(),
                scopes: token.scopes().iter().map(|s| s.to_string()).collect(),
            }))
        }
    }

    async fn call(
        client: &mut OrdersClient<tonic::transport::Channel>,
        token: &NewToken<i64>,
    ) -> (Result<User, Status>, Duration) {
        let mut req = tonic::Request::new(GetUserRequest {});
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", token.token.expose_secret())
                .parse()
                .unwrap(),
        );
        let start = Instant::now();
        let res = client.get_user(req).await.map(tonic::Response::into_inner);
        (res, start.elapsed())
    }

    #[tokio::test]
    async fn grpc_store_faults_are_unavailable_then_recover() {
        let store: Store = Arc::new(MemoryStore::new());
        let tokens = Tokens::new(Arc::clone(&store), registry());
        let faulty = Arc::new(Faulty::new(store));
        let layer =
            PatLayer::from_shared(Arc::clone(&faulty)).store_timeout(TIMEOUT, tokio::time::sleep);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .layer(layer)
                .add_service(OrdersServer::new(Svc))
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = OrdersClient::new(channel);
        let token = tokens.create(3, "grpc", ["orders:read"]).await.unwrap();

        faulty.schedule([Fault::Fail, Fault::Hang, Fault::Corrupt], Fault::Pass);
        for want in ["fail", "hang", "corrupt"] {
            let (res, elapsed) = call(&mut client, &token).await;
            let status = res.expect_err(want);
            assert_eq!(status.code(), Code::Unavailable, "{want}: {status:?}");
            assert!(
                elapsed < bound(TIMEOUT),
                "{want} answered after {elapsed:?}"
            );
        }
        let (res, _) = call(&mut client, &token).await;
        let user = res.expect("recovered");
        assert_eq!(user.id, "3");
        assert_eq!(faulty.applied(), ["fail", "hang", "corrupt", "pass"]);
    }
}

/// A server in front of any store (for the persistent ones).
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
#[derive(Clone)]
struct Http {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
impl Http {
    async fn serve<St: tower_pat::TokenStore<UserId = i64>>(layer: PatLayer<St>) -> Self {
        let app = Router::new()
            .route("/orders", get(orders))
            .route_layer(RequireScopesLayer::all(["orders:read"]))
            .layer(layer.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base: format!("http://{addr}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn get(&self, token: &NewToken<i64>) -> (StatusCode, Duration) {
        self.get_secret(token.token.expose_secret()).await
    }

    async fn get_secret(&self, secret: &str) -> (StatusCode, Duration) {
        let req = Request::get(format!("{}/orders", self.base))
            .header(AUTHORIZATION, format!("Bearer {secret}"))
            .body(Empty::new())
            .unwrap();
        let start = Instant::now();
        let status = self.client.request(req).await.unwrap().status();
        (status, start.elapsed())
    }
}

/// The fault a persistent store went through, and what the layer answered.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
fn report(store: &str, fault: &str, status: StatusCode, elapsed: Duration) {
    eprintln!("faults [{store}] {fault}: {status} after {elapsed:?}");
}

/// A store whose pool (acquire timeout 250 ms) has lost its one connection to `hold`:
/// requests are answered 503 by the pool's own timeout, before the layer's 2 s, and 200
/// once the connection is back.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
async fn an_exhausted_pool_answers_503_then_recovers<St, H, Fut>(
    database: &str,
    store: St,
    token: &NewToken<i64>,
    hold: impl FnOnce() -> Fut,
) where
    St: tower_pat::TokenStore<UserId = i64>,
    Fut: std::future::Future<Output = H>,
{
    let http =
        Http::serve(PatLayer::new(store).store_timeout(Duration::from_secs(2), tokio::time::sleep))
            .await;
    assert_eq!(http.get(token).await.0, StatusCode::OK);
    let held = hold().await;
    for _ in 0..2 {
        let (status, elapsed) = http.get(token).await;
        report(
            database,
            "pool exhausted (acquire timeout 250 ms)",
            status,
            elapsed,
        );
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            elapsed < Duration::from_secs(2),
            "the pool's own timeout answers first"
        );
    }
    drop(held);
    assert_eq!(http.get(token).await.0, StatusCode::OK);
}

/// A store whose table `rename(true)` moved away answers 503, not 401 (the token is
/// good), and 200 once `rename(false)` has put it back.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
async fn a_missing_table_is_unavailable_not_unknown<St, Fut>(
    database: &str,
    store: St,
    token: &NewToken<i64>,
    rename: impl Fn(bool) -> Fut,
) where
    St: tower_pat::TokenStore<UserId = i64>,
    Fut: std::future::Future<Output = ()>,
{
    let http = Http::serve(PatLayer::new(store).store_timeout(TIMEOUT, tokio::time::sleep)).await;
    rename(true).await;
    let (status, elapsed) = http.get(token).await;
    report(database, "table missing", status, elapsed);
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not a 401: the token is good"
    );
    rename(false).await;
    assert_eq!(http.get(token).await.0, StatusCode::OK);
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use sqlx::{
        AssertSqlSafe, Connection, SqliteConnection,
        sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
    };
    use tower_pat::SqliteStore;

    struct Db {
        path: std::path::PathBuf,
        store: SqliteStore<i64>,
        tokens: Tokens<SqliteStore<i64>>,
    }

    impl Db {
        /// A file database in rollback-journal mode (a writer's lock blocks readers), on a
        /// pool of `connections` that gives up acquiring after `acquire`.
        async fn open(connections: u32, acquire: Duration) -> Self {
            let path = std::env::temp_dir().join(format!(
                "tower-pat-faults-{}.db",
                uuid::Uuid::new_v4().simple()
            ));
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Delete);
            let pool = SqlitePoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(acquire)
                .connect_with(options)
                .await
                .unwrap();
            let store = SqliteStore::<i64>::new(pool);
            store.migrate().await.unwrap();
            let tokens = Tokens::new(store.clone(), registry());
            Self {
                path,
                store,
                tokens,
            }
        }

        async fn close(self) {
            self.store.pool().close().await;
            for suffix in ["", "-journal", "-wal", "-shm"] {
                let mut p = self.path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
    }

    #[tokio::test]
    async fn sqlite_pool_exhausted_answers_503_then_recovers() {
        let db = Db::open(1, Duration::from_millis(250)).await;
        let token = db
            .tokens
            .create(1, "sqlite", ["orders:read"])
            .await
            .unwrap();
        // The test holds the pool's only connection: the store cannot acquire one.
        let pool = db.store.pool().clone();
        an_exhausted_pool_answers_503_then_recovers("sqlite", db.store.clone(), &token, || async {
            pool.acquire().await.unwrap()
        })
        .await;
        db.close().await;
    }

    #[tokio::test]
    async fn sqlite_locked_database_is_bounded_by_the_store_timeout() {
        let db = Db::open(2, Duration::from_secs(5)).await;
        let token = db
            .tokens
            .create(1, "sqlite", ["orders:read"])
            .await
            .unwrap();
        let http =
            Http::serve(PatLayer::new(db.store.clone()).store_timeout(TIMEOUT, tokio::time::sleep))
                .await;
        assert_eq!(http.get(&token).await.0, StatusCode::OK);
        // Another process-like connection takes the database's exclusive lock: readers
        // wait for SQLite's busy timeout (seconds), the layer only for its own.
        let mut locker = SqliteConnection::connect_with(
            &SqliteConnectOptions::new()
                .filename(&db.path)
                .journal_mode(SqliteJournalMode::Delete),
        )
        .await
        .unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut locker)
            .await
            .unwrap();
        for _ in 0..2 {
            let (status, elapsed) = http.get(&token).await;
            report(
                "sqlite",
                "database locked by another writer",
                status,
                elapsed,
            );
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(elapsed < bound(TIMEOUT), "answered after {elapsed:?}");
        }
        sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
        locker.close().await.unwrap();
        assert_eq!(http.get(&token).await.0, StatusCode::OK);
        db.close().await;
    }

    #[tokio::test]
    async fn sqlite_missing_table_is_unavailable_not_unknown() {
        let db = Db::open(2, Duration::from_secs(5)).await;
        let token = db
            .tokens
            .create(1, "sqlite", ["orders:read"])
            .await
            .unwrap();
        let table = db.store.table().to_owned();
        let pool = db.store.pool().clone();
        a_missing_table_is_unavailable_not_unknown("sqlite", db.store.clone(), &token, |away| {
            let (from, to) = if away {
                (table.clone(), "moved_away".to_owned())
            } else {
                ("moved_away".to_owned(), table.clone())
            };
            let pool = pool.clone();
            async move {
                sqlx::query(AssertSqlSafe(format!(
                    "ALTER TABLE \"{from}\" RENAME TO \"{to}\""
                )))
                .execute(&pool)
                .await
                .unwrap();
            }
        })
        .await;
        assert_eq!(db.tokens.list(&1).await.unwrap().len(), 1, "nothing lost");
        db.close().await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use sqlx::{
        AssertSqlSafe, Connection, PgConnection,
        postgres::{PgConnectOptions, PgPoolOptions},
    };
    use tower_pat::PostgresStore;

    struct Db {
        url: String,
        /// The pool's connections carry this `application_name`, so the test can find
        /// (and kill) exactly them.
        app: String,
        table: String,
        store: PostgresStore<i64>,
        tokens: Tokens<PostgresStore<i64>>,
    }

    impl Db {
        async fn open(connections: u32, acquire: Duration) -> Option<Self> {
            let Ok(url) = std::env::var("TOWER_PAT_POSTGRES_URL") else {
                eprintln!("faults [postgres]: skipped (TOWER_PAT_POSTGRES_URL is not set)");
                return None;
            };
            let id = uuid::Uuid::new_v4().simple().to_string();
            let app = format!("tower_pat_faults_{id}");
            let options: PgConnectOptions = url.parse().unwrap();
            let pool = PgPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(acquire)
                .connect_with(options.application_name(&app))
                .await
                .unwrap();
            let table = format!("faults_{id}");
            let store = PostgresStore::<i64>::new(pool).with_table(&table);
            store.migrate().await.unwrap();
            let tokens = Tokens::new(store.clone(), registry());
            Some(Self {
                url,
                app,
                table,
                store,
                tokens,
            })
        }

        /// A connection of the test's own, outside the store's pool.
        async fn side(&self) -> PgConnection {
            PgConnection::connect(&self.url).await.unwrap()
        }

        /// Waits until one of the pool's connections waits on a lock.
        async fn wait_until_blocked(&self, side: &mut PgConnection) {
            for _ in 0..300 {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE application_name = $1 AND wait_event_type = 'Lock'",
                )
                .bind(&self.app)
                .fetch_one(&mut *side)
                .await
                .unwrap();
                if n > 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("the store's query never blocked");
        }

        async fn close(self) {
            let mut side = self.side().await;
            sqlx::query(AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS \"{}\"",
                self.table
            )))
            .execute(&mut side)
            .await
            .unwrap();
            self.store.pool().close().await;
        }
    }

    #[tokio::test]
    async fn postgres_connection_killed_mid_request_answers_503_then_recovers() {
        let Some(db) = Db::open(2, Duration::from_secs(5)).await else {
            return;
        };
        let token = db.tokens.create(1, "pg", ["orders:read"]).await.unwrap();
        // A store timeout far away: the answer must come from the dropped connection.
        let http = Http::serve(
            PatLayer::new(db.store.clone())
                .store_timeout(Duration::from_secs(10), tokio::time::sleep),
        )
        .await;
        assert_eq!(http.get(&token).await.0, StatusCode::OK);

        // Hold the table so that the store's next query is in flight on the server...
        let mut side = db.side().await;
        let mut tx = side.begin().await.unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "LOCK TABLE \"{}\" IN ACCESS EXCLUSIVE MODE",
            db.table
        )))
        .execute(&mut *tx)
        .await
        .unwrap();
        let request = {
            let http = http.clone();
            let secret = token.token.expose_secret().to_owned();
            tokio::spawn(async move { http.get_secret(&secret).await })
        };
        let mut watcher = db.side().await;
        db.wait_until_blocked(&mut watcher).await;
        // ...then kill every connection of the pool, mid-query.
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&db.app)
        .execute(&mut watcher)
        .await
        .unwrap();
        let (status, elapsed) = request.await.unwrap();
        report(
            "postgres",
            "connection terminated mid-query",
            status,
            elapsed,
        );
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            elapsed < Duration::from_secs(10),
            "the timeout answered, not the drop"
        );
        tx.rollback().await.unwrap();

        // The pool reconnects: the next request works.
        let (status, elapsed) = http.get(&token).await;
        report(
            "postgres",
            "after the pool's connections were killed",
            status,
            elapsed,
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(db.tokens.list(&1).await.unwrap().len(), 1, "nothing lost");
        db.close().await;
    }

    #[tokio::test]
    async fn postgres_blocked_query_is_bounded_by_the_store_timeout() {
        let Some(db) = Db::open(2, Duration::from_secs(5)).await else {
            return;
        };
        let token = db.tokens.create(1, "pg", ["orders:read"]).await.unwrap();
        let http =
            Http::serve(PatLayer::new(db.store.clone()).store_timeout(TIMEOUT, tokio::time::sleep))
                .await;
        assert_eq!(http.get(&token).await.0, StatusCode::OK);
        let mut side = db.side().await;
        let mut tx = side.begin().await.unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "LOCK TABLE \"{}\" IN ACCESS EXCLUSIVE MODE",
            db.table
        )))
        .execute(&mut *tx)
        .await
        .unwrap();
        for _ in 0..3 {
            let (status, elapsed) = http.get(&token).await;
            report("postgres", "table locked (query hangs)", status, elapsed);
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(elapsed < bound(TIMEOUT), "answered after {elapsed:?}");
        }
        tx.rollback().await.unwrap();
        // Queries abandoned by the timeout leave the pool usable.
        let (status, elapsed) = http.get(&token).await;
        report("postgres", "after the lock was released", status, elapsed);
        assert_eq!(status, StatusCode::OK);
        db.close().await;
    }

    #[tokio::test]
    async fn postgres_pool_exhausted_answers_503_then_recovers() {
        let Some(db) = Db::open(1, Duration::from_millis(250)).await else {
            return;
        };
        let token = db.tokens.create(1, "pg", ["orders:read"]).await.unwrap();
        let pool = db.store.pool().clone();
        an_exhausted_pool_answers_503_then_recovers(
            "postgres",
            db.store.clone(),
            &token,
            || async { pool.acquire().await.unwrap() },
        )
        .await;
        db.close().await;
    }

    #[tokio::test]
    async fn postgres_missing_table_is_unavailable_not_unknown() {
        let Some(db) = Db::open(2, Duration::from_secs(5)).await else {
            return;
        };
        let token = db.tokens.create(1, "pg", ["orders:read"]).await.unwrap();
        let away = format!("{}_away", db.table);
        let (url, table) = (db.url.clone(), db.table.clone());
        a_missing_table_is_unavailable_not_unknown(
            "postgres",
            db.store.clone(),
            &token,
            |moving_away| {
                let (from, to) = if moving_away {
                    (table.clone(), away.clone())
                } else {
                    (away.clone(), table.clone())
                };
                let url = url.clone();
                async move {
                    let mut side = PgConnection::connect(&url).await.unwrap();
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "ALTER TABLE \"{from}\" RENAME TO \"{to}\""
                    )))
                    .execute(&mut side)
                    .await
                    .unwrap();
                }
            },
        )
        .await;
        db.close().await;
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use super::*;
    use sqlx::{
        AssertSqlSafe, Connection, MySqlConnection,
        mysql::{MySqlConnectOptions, MySqlPoolOptions},
    };
    use tower_pat::MySqlStore;

    struct Db {
        url: String,
        /// The server's ids of the pool's connections (`CONNECTION_ID()`), so the test
        /// can find (and kill) exactly them.
        ids: Arc<std::sync::Mutex<Vec<u64>>>,
        table: String,
        store: MySqlStore<i64>,
        tokens: Tokens<MySqlStore<i64>>,
    }

    impl Db {
        async fn open(connections: u32, acquire: Duration) -> Option<Self> {
            let url = crate::common::db::mysql_url()?;
            let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
            let options: MySqlConnectOptions = url.parse().unwrap();
            let pool = {
                let ids = Arc::clone(&ids);
                MySqlPoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(acquire)
                    .after_connect(move |conn, _| {
                        let ids = Arc::clone(&ids);
                        Box::pin(async move {
                            let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
                                .fetch_one(conn)
                                .await?;
                            ids.lock().unwrap().push(id);
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
                    .unwrap()
            };
            let table = format!("faults_{}", uuid::Uuid::new_v4().simple());
            let store = MySqlStore::<i64>::new(pool).with_table(&table);
            store.migrate().await.unwrap();
            let tokens = Tokens::new(store.clone(), registry());
            Some(Self {
                url,
                ids,
                table,
                store,
                tokens,
            })
        }

        /// A connection of the test's own, outside the store's pool.
        async fn side(&self) -> MySqlConnection {
            MySqlConnection::connect(&self.url).await.unwrap()
        }

        fn ids(&self) -> Vec<u64> {
            self.ids.lock().unwrap().clone()
        }

        /// Waits until one of the pool's connections waits on the table lock.
        async fn wait_until_blocked(&self, side: &mut MySqlConnection) {
            for _ in 0..300 {
                let states: Vec<(u64, Option<String>)> = sqlx::query_as(
                    "SELECT CAST(id AS UNSIGNED), CAST(state AS CHAR) FROM information_schema.processlist",
                )
                .fetch_all(&mut *side)
                .await
                .unwrap();
                let ids = self.ids();
                let blocked = states.iter().any(|(id, state)| {
                    ids.contains(id) && state.as_deref().is_some_and(|s| s.contains("lock"))
                });
                if blocked {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("the store's query never blocked");
        }

        /// Holds a write lock on the table until `UNLOCK TABLES` on `side`: the store's
        /// queries wait for it on the server.
        async fn lock_table(&self, side: &mut MySqlConnection) {
            sqlx::raw_sql(AssertSqlSafe(format!("LOCK TABLES `{}` WRITE", self.table)))
                .execute(&mut *side)
                .await
                .unwrap();
        }

        async fn close(self) {
            let mut side = self.side().await;
            sqlx::query(AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS `{}`",
                self.table
            )))
            .execute(&mut side)
            .await
            .unwrap();
            self.store.pool().close().await;
        }
    }

    async fn unlock(side: &mut MySqlConnection) {
        sqlx::raw_sql("UNLOCK TABLES").execute(side).await.unwrap();
    }

    #[tokio::test]
    async fn mysql_connection_killed_mid_request_answers_503_then_recovers() {
        let Some(db) = Db::open(2, Duration::from_secs(5)).await else {
            return;
        };
        let token = db.tokens.create(1, "my", ["orders:read"]).await.unwrap();
        // A store timeout far away: the answer must come from the dropped connection.
        let http = Http::serve(
            PatLayer::new(db.store.clone())
                .store_timeout(Duration::from_secs(10), tokio::time::sleep),
        )
        .await;
        assert_eq!(http.get(&token).await.0, StatusCode::OK);

        // Hold the table so that the store's next query is in flight on the server...
        let mut side = db.side().await;
        db.lock_table(&mut side).await;
        let request = {
            let http = http.clone();
            let secret = token.token.expose_secret().to_owned();
            tokio::spawn(async move { http.get_secret(&secret).await })
        };
        let mut watcher = db.side().await;
        db.wait_until_blocked(&mut watcher).await;
        // ...then kill every connection of the pool, mid-query.
        for id in db.ids() {
            // A connection closed already is no error of the test's.
            let _ = sqlx::raw_sql(AssertSqlSafe(format!("KILL {id}")))
                .execute(&mut watcher)
                .await;
        }
        let (status, elapsed) = request.await.unwrap();
        report("mysql", "connection killed mid-query", status, elapsed);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            elapsed < Duration::from_secs(10),
            "the timeout answered, not the drop"
        );
        unlock(&mut side).await;

        // The pool reconnects: the next request works.
        let (status, elapsed) = http.get(&token).await;
        report(
            "mysql",
            "after the pool's connections were killed",
            status,
            elapsed,
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(db.tokens.list(&1).await.unwrap().len(), 1, "nothing lost");
        db.close().await;
    }

    #[tokio::test]
    async fn mysql_blocked_query_is_bounded_by_the_store_timeout() {
        let Some(db) = Db::open(2, Duration::from_secs(5)).await else {
            return;
        };
        let token = db.tokens.create(1, "my", ["orders:read"]).await.unwrap();
        let http =
            Http::serve(PatLayer::new(db.store.clone()).store_timeout(TIMEOUT, tokio::time::sleep))
                .await;
        assert_eq!(http.get(&token).await.0, StatusCode::OK);
        let mut side = db.side().await;
        db.lock_table(&mut side).await;
        for _ in 0..3 {
            let (status, elapsed) = http.get(&token).await;
            report("mysql", "table locked (query hangs)", status, elapsed);
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(elapsed < bound(TIMEOUT), "answered after {elapsed:?}");
        }
        unlock(&mut side).await;
        // Queries abandoned by the timeout leave the pool usable.
        let (status, elapsed) = http.get(&token).await;
        report("mysql", "after the lock was released", status, elapsed);
        assert_eq!(status, StatusCode::OK);
        db.close().await;
    }

    #[tokio::test]
    async fn mysql_pool_exhausted_answers_503_then_recovers() {
        let Some(db) = Db::open(1, Duration::from_millis(250)).await else {
            return;
        };
        let token = db.tokens.create(1, "my", ["orders:read"]).await.unwrap();
        let pool = db.store.pool().clone();
        an_exhausted_pool_answers_503_then_recovers("mysql", db.store.clone(), &token, || async {
            pool.acquire().await.unwrap()
        })
        .await;
        db.close().await;
    }

    #[tokio::test]
    async fn mysql_missing_table_is_unavailable_not_unknown() {
        let Some(db) = Db::open(2, Duration::from_secs(5)).await else {
            return;
        };
        let token = db.tokens.create(1, "my", ["orders:read"]).await.unwrap();
        let away = format!("{}_away", db.table);
        let (url, table) = (db.url.clone(), db.table.clone());
        a_missing_table_is_unavailable_not_unknown(
            "mysql",
            db.store.clone(),
            &token,
            |moving_away| {
                let (from, to) = if moving_away {
                    (table.clone(), away.clone())
                } else {
                    (away.clone(), table.clone())
                };
                let url = url.clone();
                async move {
                    let mut side = MySqlConnection::connect(&url).await.unwrap();
                    sqlx::raw_sql(AssertSqlSafe(format!("RENAME TABLE `{from}` TO `{to}`")))
                        .execute(&mut side)
                        .await
                        .unwrap();
                }
            },
        )
        .await;
        db.close().await;
    }

    /// A creation under the per-user cap that is cancelled while it waits for the user's
    /// lock, or holds it, leaves no lock behind: the next creation for that user goes
    /// through at once.
    #[tokio::test]
    async fn mysql_cancelled_capped_creates_leave_no_lock_behind() {
        let Some(db) = Db::open(2, Duration::from_secs(5)).await else {
            return;
        };
        let tokens = db.tokens.clone().max_tokens_per_user(3);
        let mut side = db.side().await;
        db.lock_table(&mut side).await;
        // Holds the user's lock, then waits on the table: cancelled there.
        let create = tokens.create(1, "cancelled", ["orders:read"]);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), create)
                .await
                .is_err(),
            "the insert waits on the table lock"
        );
        unlock(&mut side).await;
        let start = Instant::now();
        tokens
            .create(1, "next", ["orders:read"])
            .await
            .expect("the user's lock is free again");
        let elapsed = start.elapsed();
        eprintln!("faults [mysql] capped create after a cancelled one: done in {elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
        db.close().await;
    }
}

/// With the `tokio` feature (on in the tests, as with the SQL stores) a layer that was
/// given no timeout still gives up on a hung store, after `DEFAULT_STORE_TIMEOUT`.
#[cfg(feature = "tokio")]
#[tokio::test]
async fn with_tokio_a_hung_store_is_given_up_on_by_default() {
    use tower_pat::auth::DEFAULT_STORE_TIMEOUT;

    let store: Store = Arc::new(MemoryStore::new());
    let tokens = Tokens::new(Arc::clone(&store), registry());
    let token = tokens
        .create(1, "default timeout", ["orders:read"])
        .await
        .unwrap();
    let faulty = Arc::new(Faulty::new(store));
    faulty.async_only(true).set(Fault::Hang);
    let app = Router::new()
        .route("/orders", get(orders))
        .layer(PatLayer::from_shared(faulty));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let req = Request::get(format!("http://{addr}/orders"))
        .header(
            AUTHORIZATION,
            format!("Bearer {}", token.token.expose_secret()),
        )
        .body(Empty::<Bytes>::new())
        .unwrap();
    let start = Instant::now();
    let res = Client::builder(TokioExecutor::new())
        .build_http()
        .request(req)
        .await
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        elapsed >= DEFAULT_STORE_TIMEOUT && elapsed < bound(DEFAULT_STORE_TIMEOUT),
        "answered after {elapsed:?}"
    );
}
