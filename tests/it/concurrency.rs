//! Concurrency: many tasks on a multi-threaded runtime create, use and revoke tokens at
//! once, through a real axum server on loopback and directly through the service, against
//! `MemoryStore`, `SqliteStore` and (with `TOWER_PAT_POSTGRES_URL`, `TOWER_PAT_MYSQL_URL`)
//! `PostgresStore` and `MySqlStore`.
//!
//! What must hold: no record is lost or duplicated (counted with `list`); a request never
//! fails for a token nobody is revoking; once `revoke` (or `revoke_all`) has returned, no
//! later request with that token succeeds.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_pat::{
    AccessToken, ManageTokens, MemoryStore, RequireScopesLayer, Tokens, record::TokenId,
    scope::ScopeRegistry, store::Revoked,
};

/// How much work one run does.
#[derive(Clone, Copy, Debug)]
struct Scale {
    /// Users, each with its own task (user 0 has `shared` tasks at once).
    users: i64,
    /// Tasks creating tokens for user 0 at the same time.
    shared: usize,
    /// Tokens each task creates (every other one it revokes).
    per_task: usize,
    /// Tasks using random tokens while all that goes on.
    hammers: usize,
}

/// Operations run, for the report.
#[derive(Default, Debug)]
struct Counts {
    creates: AtomicU64,
    revokes: AtomicU64,
    http_requests: AtomicU64,
    direct_requests: AtomicU64,
    lists: AtomicU64,
}

impl Counts {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        [
            &self.creates,
            &self.revokes,
            &self.http_requests,
            &self.direct_requests,
            &self.lists,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

struct Issued {
    token: String,
    id: TokenId,
}

/// What the tasks share.
#[derive(Default)]
struct Book {
    issued: Mutex<Vec<Issued>>,
    created: Mutex<HashMap<i64, Vec<TokenId>>>,
    /// Put in *before* `revoke` is called.
    revoking: Mutex<HashSet<TokenId>>,
    /// Put in *after* `revoke` has returned.
    revoked_at: Mutex<HashMap<TokenId, Instant>>,
    counts: Counts,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn registry() -> ScopeRegistry {
    ScopeRegistry::new().scope("orders:read", "See orders")
}

async fn orders(token: AccessToken) -> String {
    format!("user {}", token.user_id())
}

async fn serve<S: ManageTokens<UserId = i64>>(tokens: &Tokens<S>) -> SocketAddr {
    let app = Router::new()
        .route("/orders", get(orders))
        .route_layer(RequireScopesLayer::all(["orders:read"]))
        .layer(tokens.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

async fn http_status(client: &HttpClient, addr: SocketAddr, token: &str) -> StatusCode {
    let req = Request::get(format!("http://{addr}/orders"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::new())
        .unwrap();
    client.request(req).await.unwrap().status()
}

/// Creates, uses and revokes tokens for `user`, checking each revocation at once.
async fn owner_task<S: ManageTokens<UserId = i64>>(
    tokens: Tokens<S>,
    book: Arc<Book>,
    addr: SocketAddr,
    user: i64,
    n: usize,
) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    for i in 0..n {
        let created = tokens
            .create(user, format!("token {i}"), ["orders:read"])
            .await
            .unwrap();
        Counts::add(&book.counts.creates, 1);
        let id = created.record.id;
        let token = created.token.expose_secret().to_owned();
        lock(&book.created).entry(user).or_default().push(id);
        lock(&book.issued).push(Issued {
            token: token.clone(),
            id,
        });
        assert_eq!(http_status(&client, addr, &token).await, StatusCode::OK);
        Counts::add(&book.counts.http_requests, 1);
        if i % 2 == 0 {
            lock(&book.revoking).insert(id);
            assert_eq!(tokens.revoke(&user, id).await.unwrap(), Revoked::Revoked);
            lock(&book.revoked_at).insert(id, Instant::now());
            // Revoking twice is not an error.
            assert_eq!(
                tokens.revoke(&user, id).await.unwrap(),
                Revoked::AlreadyRevoked
            );
            Counts::add(&book.counts.revokes, 2);
            assert_eq!(
                http_status(&client, addr, &token).await,
                StatusCode::UNAUTHORIZED,
                "a request after revoke returned succeeded"
            );
            Counts::add(&book.counts.http_requests, 1);
        }
    }
}

/// Uses random issued tokens, directly through the service, until told to stop.
async fn hammer<S: ManageTokens<UserId = i64>>(tokens: Tokens<S>, book: Arc<Book>, seed: u64) {
    let svc = ServiceBuilder::new()
        .layer(tokens.layer())
        .layer(RequireScopesLayer::all(["orders:read"]))
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let mut x = seed | 1;
    while !book.stop.load(Ordering::Relaxed) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let picked = {
            let issued = lock(&book.issued);
            if issued.is_empty() {
                None
            } else {
                let i = &issued[(x % issued.len() as u64) as usize];
                Some((i.token.clone(), i.id))
            }
        };
        let Some((token, id)) = picked else {
            tokio::task::yield_now().await;
            continue;
        };
        let started = Instant::now();
        let req = Request::get("/orders")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .unwrap();
        let status = svc.clone().oneshot(req).await.unwrap().status();
        Counts::add(&book.counts.direct_requests, 1);
        match status {
            StatusCode::OK => {
                if let Some(at) = lock(&book.revoked_at).get(&id) {
                    assert!(
                        *at > started,
                        "token {id} succeeded in a request started after its revoke returned"
                    );
                }
            }
            StatusCode::UNAUTHORIZED => assert!(
                lock(&book.revoking).contains(&id),
                "token {id} refused though nobody revoked it"
            ),
            other => panic!("unexpected {other} for token {id}"),
        }
        tokio::task::yield_now().await;
    }
}

/// Runs the whole scenario on one store and returns the operations run.
async fn scenario<S: ManageTokens<UserId = i64>>(
    label: &str,
    tokens: Tokens<S>,
    scale: Scale,
) -> u64 {
    let started = Instant::now();
    let book = Arc::new(Book::default());
    let addr = serve(&tokens).await;
    let hammers: Vec<_> = (0..scale.hammers)
        .map(|h| tokio::spawn(hammer(tokens.clone(), Arc::clone(&book), 0x9E37 + h as u64)))
        .collect();
    let mut owners = Vec::new();
    for _ in 0..scale.shared {
        owners.push(tokio::spawn(owner_task(
            tokens.clone(),
            Arc::clone(&book),
            addr,
            0,
            scale.per_task,
        )));
    }
    for user in 1..scale.users {
        owners.push(tokio::spawn(owner_task(
            tokens.clone(),
            Arc::clone(&book),
            addr,
            user,
            scale.per_task,
        )));
    }
    for o in owners {
        o.await.unwrap();
    }
    book.stop.store(true, Ordering::Relaxed);
    for h in hammers {
        h.await.unwrap();
    }

    // Nothing lost, nothing duplicated, every revocation recorded.
    let created = lock(&book.created).clone();
    let revoked: HashSet<TokenId> = lock(&book.revoked_at).keys().copied().collect();
    for (user, ids) in &created {
        let listed = tokens.list(user).await.unwrap();
        Counts::add(&book.counts.lists, 1);
        let listed_ids: Vec<TokenId> = listed.iter().map(|r| r.id).collect();
        let unique: HashSet<TokenId> = listed_ids.iter().copied().collect();
        assert_eq!(
            unique.len(),
            listed_ids.len(),
            "{label}: duplicated records"
        );
        let want: HashSet<TokenId> = ids.iter().copied().collect();
        assert_eq!(unique, want, "{label}: user {user}: lost or stray records");
        for r in &listed {
            assert_eq!(
                r.revoked,
                revoked.contains(&r.id),
                "{label}: token {}",
                r.id
            );
            assert_eq!(r.user_id, *user);
        }
    }
    let want_total = scale.per_task * (scale.shared + scale.users as usize - 1);
    assert_eq!(created.values().map(Vec::len).sum::<usize>(), want_total);

    let c = &book.counts;
    let total = c.total();
    eprintln!(
        "concurrency [{label}]: {} creates, {} revokes, {} HTTP + {} direct requests, {} lists \
         = {total} operations in {:?}; nothing lost",
        c.creates.load(Ordering::Relaxed),
        c.revokes.load(Ordering::Relaxed),
        c.http_requests.load(Ordering::Relaxed),
        c.direct_requests.load(Ordering::Relaxed),
        c.lists.load(Ordering::Relaxed),
        started.elapsed(),
    );
    total
}

/// `revoke_all` while tokens are being created: every token whose `create` returned before
/// `revoke_all` was called is refused afterwards; every token created after it returned
/// works.
async fn revoke_all_race<S: ManageTokens<UserId = i64>>(
    label: &str,
    tokens: Tokens<S>,
    per_task: usize,
) -> u64 {
    const USER: i64 = 4242;
    let svc = ServiceBuilder::new()
        .layer(tokens.layer())
        .layer(RequireScopesLayer::all(["orders:read"]))
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    // (token, create called, create returned)
    let made: Arc<Mutex<Vec<(String, Instant, Instant)>>> = Arc::default();
    let creators: Vec<_> = (0..4)
        .map(|_| {
            let tokens = tokens.clone();
            let made = Arc::clone(&made);
            tokio::spawn(async move {
                for i in 0..per_task {
                    let called = Instant::now();
                    let t = tokens
                        .create(USER, format!("race {i}"), ["orders:read"])
                        .await
                        .unwrap();
                    let returned = Instant::now();
                    lock(&made).push((t.token.expose_secret().to_owned(), called, returned));
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    // Let some creates land first.
    while lock(&made).len() < per_task {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let called = Instant::now();
    let n = tokens.revoke_all(&USER).await.unwrap();
    let returned = Instant::now();
    for c in creators {
        c.await.unwrap();
    }
    let made = lock(&made).clone();
    let mut before = 0;
    let mut after = 0;
    for (token, create_called, create_returned) in &made {
        let req = Request::get("/orders")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .unwrap();
        let status = svc.clone().oneshot(req).await.unwrap().status();
        if *create_returned < called {
            before += 1;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{label}: survived revoke_all"
            );
        } else if *create_called > returned {
            after += 1;
            assert_eq!(status, StatusCode::OK, "{label}: created after revoke_all");
        } else {
            assert!(matches!(status, StatusCode::OK | StatusCode::UNAUTHORIZED));
        }
    }
    assert!(
        n >= before,
        "{label}: revoke_all reported {n}, {before} were due"
    );
    let listed = tokens.list(&USER).await.unwrap();
    assert_eq!(listed.len(), made.len(), "{label}: lost records");
    eprintln!(
        "concurrency [{label}] revoke_all race: {} creates, 1 revoke_all ({n} revoked; {before} \
         created before it, {after} after), {} requests",
        made.len(),
        made.len()
    );
    (made.len() * 2 + 2) as u64
}

/// One token used by many tasks at once (through HTTP and directly) while it is revoked:
/// every success started before `revoke` returned; every request started after it is
/// refused.
async fn hot_token_revocation<S: ManageTokens<UserId = i64>>(
    label: &str,
    tokens: Tokens<S>,
) -> u64 {
    const USER: i64 = 777;
    const TASKS: u64 = 8;
    let addr = serve(&tokens).await;
    let created = tokens.create(USER, "hot", ["orders:read"]).await.unwrap();
    let token = Arc::new(created.token.expose_secret().to_owned());
    let revoking = Arc::new(AtomicBool::new(false));
    let revoked_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|n| {
            let (tokens, token, revoking, revoked_at, stop, ok, refused) = (
                tokens.clone(),
                Arc::clone(&token),
                Arc::clone(&revoking),
                Arc::clone(&revoked_at),
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&refused),
            );
            tokio::spawn(async move {
                let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
                let svc = ServiceBuilder::new()
                    .layer(tokens.layer())
                    .layer(RequireScopesLayer::all(["orders:read"]))
                    .service(service_fn(|_: Request<()>| async {
                        Ok::<_, Infallible>(Response::new(String::new()))
                    }));
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let status = if n % 2 == 0 {
                        http_status(&client, addr, &token).await
                    } else {
                        let req = Request::get("/orders")
                            .header(AUTHORIZATION, format!("Bearer {token}"))
                            .body(())
                            .unwrap();
                        svc.clone().oneshot(req).await.unwrap().status()
                    };
                    let revoked = *lock(&revoked_at);
                    match status {
                        StatusCode::OK => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if let Some(at) = revoked {
                                assert!(at > started, "succeeded after revoke returned");
                            }
                        }
                        StatusCode::UNAUTHORIZED => {
                            assert!(
                                revoking.load(Ordering::SeqCst),
                                "refused before anybody revoked it"
                            );
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("unexpected {other}"),
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    // Revoke once the tasks are well under way, stop once refusals are well under way:
    // by counts, not by sleeping a fixed time, so a loaded machine changes nothing.
    let wait_for = |counter: Arc<AtomicU64>, at_least: u64| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        while counter.load(Ordering::Relaxed) < at_least && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    wait_for(Arc::clone(&ok), 300).await;
    revoking.store(true, Ordering::SeqCst);
    tokens.revoke(&USER, created.record.id).await.unwrap();
    *lock(&revoked_at) = Some(Instant::now());
    wait_for(Arc::clone(&refused), 300).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let (ok, refused) = (ok.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
    assert!(
        ok > 0 && refused > 0,
        "{label}: {ok} passed, {refused} refused"
    );
    eprintln!(
        "concurrency [{label}] hot token: {} requests by {TASKS} tasks, {ok} passed (all \
         started before the revoke returned), {refused} refused",
        ok + refused
    );
    ok + refused + 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_loses_nothing_and_honours_revocation() {
    let tokens = Tokens::new(MemoryStore::<i64>::new(), registry());
    let scale = Scale {
        users: 16,
        shared: 6,
        per_task: 80,
        hammers: 4,
    };
    let mut ops = scenario("memory", tokens.clone(), scale).await;
    ops += revoke_all_race("memory", tokens.clone(), 100).await;
    ops += hot_token_revocation("memory", tokens).await;
    eprintln!("concurrency [memory]: {ops} operations in all");
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_loses_nothing_and_honours_revocation() {
    use tower_pat::SqliteStore;

    let path = std::env::temp_dir().join(format!(
        "tower-pat-concurrency-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let store = SqliteStore::<i64>::open(&path).await.unwrap();
    store.migrate().await.unwrap();
    let tokens = Tokens::new(store, registry());
    let scale = Scale {
        users: 6,
        shared: 3,
        per_task: 25,
        hammers: 3,
    };
    let mut ops = scenario("sqlite", tokens.clone(), scale).await;
    ops += revoke_all_race("sqlite", tokens.clone(), 25).await;
    ops += hot_token_revocation("sqlite", tokens.clone()).await;
    eprintln!("concurrency [sqlite]: {ops} operations in all");
    tokens.store().pool().close().await;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_loses_nothing_and_honours_revocation() {
    use tower_pat::PostgresStore;

    let Ok(url) = std::env::var("TOWER_PAT_POSTGRES_URL") else {
        eprintln!("concurrency [postgres]: skipped (TOWER_PAT_POSTGRES_URL is not set)");
        return;
    };
    // A table of its own, so that other tests sharing the database change nothing here.
    let table = format!("conc_{}", uuid::Uuid::new_v4().simple());
    let store = PostgresStore::<i64>::connect(&url)
        .await
        .unwrap()
        .with_table(&table);
    store.migrate().await.unwrap();
    let tokens = Tokens::new(store, registry());
    let scale = Scale {
        users: 6,
        shared: 3,
        per_task: 25,
        hammers: 3,
    };
    let mut ops = scenario("postgres", tokens.clone(), scale).await;
    ops += revoke_all_race("postgres", tokens.clone(), 25).await;
    ops += hot_token_revocation("postgres", tokens.clone()).await;
    eprintln!("concurrency [postgres]: {ops} operations in all");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE \"{table}\"")))
        .execute(tokens.store().pool())
        .await
        .unwrap();
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_store_loses_nothing_and_honours_revocation() {
    use tower_pat::MySqlStore;

    let Some(url) = crate::common::db::mysql_url() else {
        return;
    };
    // A table of its own, so that other tests sharing the database change nothing here.
    let table = format!("conc_{}", uuid::Uuid::new_v4().simple());
    let store = MySqlStore::<i64>::connect(&url)
        .await
        .unwrap()
        .with_table(&table);
    store.migrate().await.unwrap();
    let tokens = Tokens::new(store, registry());
    let scale = Scale {
        users: 6,
        shared: 3,
        per_task: 25,
        hammers: 3,
    };
    let mut ops = scenario("mysql", tokens.clone(), scale).await;
    ops += revoke_all_race("mysql", tokens.clone(), 25).await;
    ops += hot_token_revocation("mysql", tokens.clone()).await;
    eprintln!("concurrency [mysql]: {ops} operations in all");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE `{table}`")))
        .execute(tokens.store().pool())
        .await
        .unwrap();
}
