//! End to end: a hyper HTTP/1 server on 127.0.0.1 answering `200 ok`, with each way of
//! authenticating in front, driven by a load generator in this process for a bounded
//! time at 1 and at 32 connections. Reports requests per second, p50/p99 latency, and the
//! server's CPU time per request (`getrusage(RUSAGE_THREAD)` of the server's thread:
//! steadier than req/s when client, server and database share two cores).
//!
//! ```text
//! TOWER_PAT_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench --all-features --bench e2e
//! ```
//!
//! Modes (each its own server thread, a current-thread Tokio runtime, started once):
//!
//! | mode | in front of the handler |
//! |---|---|
//! | `no_auth` | nothing |
//! | `memory` | `PatLayer` + `RequireScopes(orders:read)` over a `MemoryStore` of 10 001 tokens |
//! | `cached_postgres` | the same over `CachedStore<PostgresStore>` (10 001 tokens), listening for revocations; the token cached |
//! | `postgres` | the same over the bare `PostgresStore`: one query per request (pool of 4) |
//! | `jwt_hs256` | jsonwebtoken HS256 middleware (`support/jwt.rs`) checking the same scope |
//!
//! Every mode sends the same request (`GET /orders` with a bearer token, keep-alive).
//! The load alternates between modes, slice after slice, round after round, so a
//! machine's drift weighs on all alike; the figures are medians over the rounds (latency
//! percentiles over every request of the mode). The PostgreSQL modes are left out, saying
//! so, when `TOWER_PAT_POSTGRES_URL` is unset.
//!
//! Environment: `E2E_SLICE_MS` (default 1000) and `E2E_ROUNDS` (default 3) size the run;
//! `E2E_CONNECTIONS` (default `1,32`) lists the connection counts.

use std::{
    convert::Infallible,
    env,
    net::SocketAddr,
    str::FromStr,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use http::{Request, Response, header::AUTHORIZATION};
use http_body_util::{Empty, Full};
use hyper::{
    body::{Bytes, Incoming},
    server::conn::http1,
};
use hyper_util::rt::TokioIo;
use sqlx::{AssertSqlSafe, postgres::PgPoolOptions};
use tokio::{net::TcpListener, sync::oneshot};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_pat::{
    ManageTokens, MemoryStore, PostgresStore, Tokens, scope::ScopeRegistry, store::CachedStore,
};

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/jwt.rs"]
mod jwt;

/// Tokens in each store: 10 000 fillers and the one presented.
const FILLERS: usize = 10_000;

type Body = Full<Bytes>;

fn registry() -> ScopeRegistry {
    ScopeRegistry::new()
        .scope("orders:read", "List orders")
        .scope("user:read", "Who you are")
}

async fn fill<S: ManageTokens<UserId = i64>>(store: &S) {
    for chunk in fixtures::records(FILLERS, &["orders:read"]).chunks(100) {
        for r in join_all(chunk.iter().map(|r| store.insert(r.clone()))).await {
            r.expect("insert");
        }
    }
}

/// The CPU time this thread has used (user + system).
fn thread_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `getrusage` writes a `rusage` into the pointer it is given, which points at
    // memory of the right size and alignment; it is read only after a successful call.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) != 0 {
            panic!("getrusage: {}", std::io::Error::last_os_error());
        }
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A running server: its address, and a way to read its thread's CPU time.
struct Server {
    name: &'static str,
    addr: SocketAddr,
    token: String,
    cpu: tokio::sync::mpsc::UnboundedSender<oneshot::Sender<Duration>>,
}

impl Server {
    async fn cpu(&self) -> Duration {
        let (tx, rx) = oneshot::channel();
        self.cpu.send(tx).expect("the server runs");
        rx.await.expect("the server answers")
    }
}

/// Starts a server on a thread of its own; `build` makes the service on that thread's
/// runtime (so database pools live there) and returns it with the token to present.
fn start<F, Fut, S>(name: &'static str, build: F) -> Server
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = (S, String)>,
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    thread::Builder::new()
        .name(format!("server-{name}"))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (svc, token) = build().await;
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let (cpu_tx, mut cpu_rx) =
                    tokio::sync::mpsc::unbounded_channel::<oneshot::Sender<Duration>>();
                tokio::spawn(async move {
                    while let Some(reply) = cpu_rx.recv().await {
                        let _ = reply.send(thread_cpu());
                    }
                });
                ready_tx.send((addr, token, cpu_tx)).unwrap();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    stream.set_nodelay(true).unwrap();
                    let svc = svc.clone();
                    tokio::spawn(async move {
                        let hyper_svc =
                            hyper::service::service_fn(move |req| svc.clone().oneshot(req));
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), hyper_svc)
                            .await;
                    });
                }
            });
        })
        .unwrap();
    let (addr, token, cpu) = ready_rx.recv().expect("the server starts");
    Server {
        name,
        addr,
        token,
        cpu,
    }
}

fn ok()
-> impl Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future = impl Send>
+ Clone
+ Send
+ 'static {
    service_fn(|_: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Body::from("ok")))
    })
}

/// What one slice of load measured.
struct Slice {
    requests: u64,
    elapsed: Duration,
    cpu: Duration,
    latencies_us: Vec<u32>,
}

/// Sends requests on `connections` keep-alive connections until `length` has passed.
async fn load(server: &Server, connections: usize, length: Duration) -> Slice {
    let cpu_before = server.cpu().await;
    let started = Instant::now();
    let deadline = started + length;
    let header = format!("Bearer {}", server.token);
    let tasks = (0..connections).map(|_| {
        let header = header.clone();
        let addr = server.addr;
        async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            let driver = tokio::spawn(conn);
            let mut latencies = Vec::with_capacity(1 << 16);
            while Instant::now() < deadline {
                let req = Request::get("/orders")
                    .header(http::header::HOST, "127.0.0.1")
                    .header(AUTHORIZATION, header.as_str())
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let sent = Instant::now();
                sender.ready().await.unwrap();
                let res = sender.send_request(req).await.unwrap();
                assert!(res.status().is_success(), "{}", res.status());
                // The body is "ok": reading it to the end keeps the connection reusable.
                let _ = http_body_util::BodyExt::collect(res.into_body())
                    .await
                    .unwrap();
                latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            drop(sender);
            let _ = driver.await;
            latencies
        }
    });
    let per_connection = join_all(tasks).await;
    let elapsed = started.elapsed();
    let cpu = server.cpu().await - cpu_before;
    let latencies_us: Vec<u32> = per_connection.into_iter().flatten().collect();
    Slice {
        requests: latencies_us.len() as u64,
        elapsed,
        cpu,
        latencies_us,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let slice = Duration::from_millis(env_or("E2E_SLICE_MS", 1000));
    let rounds: usize = env_or("E2E_ROUNDS", 3);
    let connections: Vec<usize> = env::var("E2E_CONNECTIONS")
        .unwrap_or_else(|_| "1,32".into())
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .expect("E2E_CONNECTIONS: numbers, comma-separated")
        })
        .collect();
    let postgres_url = env::var("TOWER_PAT_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());

    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut servers = Vec::new();
    servers.push(start("no_auth", || async { (ok(), String::new()) }));

    servers.push(start("memory", || async {
        let tokens = Tokens::new(MemoryStore::<i64>::new(), registry());
        fill(&**tokens.store()).await;
        let token = tokens.create(1, "e2e", ["orders:read"]).await.unwrap();
        let svc = ServiceBuilder::new()
            .layer(tokens.layer())
            .layer(tokens.require_all(["orders:read"]))
            .service(ok());
        (svc, token.token.into_secret())
    }));

    let table = format!(
        "pat_e2e_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    if let Some(url) = &postgres_url {
        let token = setup.block_on(async {
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .connect(url)
                .await
                .unwrap();
            let store = PostgresStore::<i64>::new(pool).with_table(&table);
            store.migrate().await.unwrap();
            fill(&store).await;
            let tokens = Tokens::new(store.clone(), registry());
            let token = tokens.create(1, "e2e", ["orders:read"]).await.unwrap();
            sqlx::query(AssertSqlSafe(format!(r#"ANALYZE "{table}""#)))
                .execute(store.pool())
                .await
                .unwrap();
            store.pool().close().await;
            token.token.into_secret()
        });
        for cached in [true, false] {
            let (url, table, token) = (url.clone(), table.clone(), token.clone());
            let name = if cached {
                "cached_postgres"
            } else {
                "postgres"
            };
            servers.push(start(name, move || async move {
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .connect(&url)
                    .await
                    .unwrap();
                let store = PostgresStore::<i64>::new(pool).with_table(&table);
                let registry = Arc::new(registry());
                let svc = if cached {
                    let cache = CachedStore::new(store.clone());
                    store.listen(cache.evictor()).await.unwrap();
                    let tokens = Tokens::from_shared(Arc::new(cache), registry);
                    ServiceBuilder::new()
                        .layer(tokens.layer())
                        .layer(tokens.require_all(["orders:read"]))
                        .service(ok())
                        .boxed_clone()
                } else {
                    let tokens = Tokens::from_shared(Arc::new(store), registry);
                    ServiceBuilder::new()
                        .layer(tokens.layer())
                        .layer(tokens.require_all(["orders:read"]))
                        .service(ok())
                        .boxed_clone()
                };
                (svc, token)
            }));
        }
    } else {
        println!("cached_postgres, postgres: left out: TOWER_PAT_POSTGRES_URL is not set");
    }

    servers.push(start("jwt_hs256", || async {
        let (token, layer) = jwt::token_and_layer(jsonwebtoken::Algorithm::HS256);
        (ServiceBuilder::new().layer(layer).service(ok()), token)
    }));

    // The load generator: one thread, as `wrk -t1`.
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "e2e: {} modes, connections {connections:?}, {rounds} rounds of {} ms slices",
        servers.len(),
        slice.as_millis()
    );
    for &conns in &connections {
        // Warm every server (connections, caches, pools) before measuring.
        for server in &servers {
            client.block_on(load(server, conns, Duration::from_millis(300)));
        }
        let mut slices: Vec<Vec<Slice>> = servers.iter().map(|_| Vec::new()).collect();
        for _ in 0..rounds {
            for (server, slices) in servers.iter().zip(&mut slices) {
                slices.push(client.block_on(load(server, conns, slice)));
            }
        }
        report(&servers, slices, conns);
    }

    if let Some(url) = &postgres_url {
        setup.block_on(async {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .unwrap();
            sqlx::query(AssertSqlSafe(format!(r#"DROP TABLE IF EXISTS "{table}""#)))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        });
    }
    // The server threads end with the process.
}

fn report(servers: &[Server], slices: Vec<Vec<Slice>>, connections: usize) {
    struct Row {
        name: &'static str,
        rps: f64,
        p50: u32,
        p99: u32,
        cpu_us: f64,
    }
    let rows: Vec<Row> = servers
        .iter()
        .zip(slices)
        .map(|(server, slices)| {
            let rps = median(
                slices
                    .iter()
                    .map(|s| s.requests as f64 / s.elapsed.as_secs_f64())
                    .collect(),
            );
            let cpu_us = median(
                slices
                    .iter()
                    .map(|s| s.cpu.as_secs_f64() * 1e6 / s.requests.max(1) as f64)
                    .collect(),
            );
            let mut all: Vec<u32> = slices.into_iter().flat_map(|s| s.latencies_us).collect();
            all.sort_unstable();
            Row {
                name: server.name,
                rps,
                p50: percentile(&all, 0.50),
                p99: percentile(&all, 0.99),
                cpu_us,
            }
        })
        .collect();
    let base = &rows[0];
    println!();
    println!("{connections} connection(s):");
    println!(
        "{:<16} {:>10} {:>8} {:>8} {:>8} {:>14} {:>10}",
        "mode", "req/s", "vs none", "p50 µs", "p99 µs", "server CPU µs", "+ vs none"
    );
    for row in &rows {
        println!(
            "{:<16} {:>10.0} {:>8.3} {:>8} {:>8} {:>14.2} {:>+10.2}",
            row.name,
            row.rps,
            row.rps / base.rps,
            row.p50,
            row.p99,
            row.cpu_us,
            row.cpu_us - base.cpu_us
        );
    }
    let find = |name: &str| rows.iter().find(|r| r.name == name);
    if let (Some(cached), Some(bare)) = (find("cached_postgres"), find("postgres")) {
        println!(
            "cached_postgres / postgres: {:.2}x the requests per second, {:.2}x the server CPU per request",
            cached.rps / bare.rps,
            cached.cpu_us / bare.cpu_us
        );
    }
}
