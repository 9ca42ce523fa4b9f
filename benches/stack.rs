//! What `PatLayer` + `RequireScopes` cost per request, side by side with the same empty
//! service without them, with the irreducible work of a hot request written by hand, and
//! with the JWT middleware applications pick instead of opaque tokens.
//!
//! ```text
//! TOWER_PAT_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench --all-features --bench stack -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! One criterion group, `stack`:
//!
//! | case | what runs |
//! |---|---|
//! | `baseline` | an empty `tower::service_fn` answering an empty response |
//! | `floor` | the irreducible work of one hot request, by hand: header lookup, SHA-256 of the token, one probe of a hash map of 100 000 records, one `Arc` clone, one extensions insert |
//! | `hot_token` | `PatLayer` + `RequireScopesLayer::all(["orders:read"])` over a `MemoryStore` of 100 000 tokens, one valid token on every request |
//! | `hot_token_counted` | the same stack built with a Prometheus recorder (`metrics-exporter-prometheus`) as the thread's: each request counted (feature `metrics`; without it the case is left out, and `hot_token` is the crate with no metrics code at all) |
//! | `scope_map_50` | the same with a `ScopeMapLayer` of 50 gRPC methods instead of the `RequireScopesLayer` (the request's path is one of them) |
//! | `cached_sqlite` | the same over `CachedStore<SqliteStore>` (a file), the token cached |
//! | `cached_postgres` | the same over `CachedStore<PostgresStore>` at `TOWER_PAT_POSTGRES_URL`, the token cached (left out, saying so, when the variable is unset) |
//! | `cached_passport` | a Laravel Passport personal access token (an RS256 JWT PHP minted, `tests/fixtures/laravel/`) over `CachedStore<LaravelStore>` on SQLite, cached: what accepting a Laravel application's tokens costs once they are hot (feature `laravel`) |
//! | `garbage_token` | the `MemoryStore` stack behind a store wrapper that answers nothing at once (as a database), a token of the right prefix and length but a bad checksum: rejected offline, never looked up |
//! | `no_header` | the same stack, no `Authorization` header |
//! | `tower_http_bearer` | tower-http's `ValidateRequestHeaderLayer::bearer` (one fixed token, no store, no scopes) |
//! | `jwt_hs256` | middleware verifying a typical access token with jsonwebtoken, HS256 (see `support/jwt.rs`) |
//! | `jwt_rs256` | the same, RS256 with a 2048-bit key |
//!
//! `STACK_COUNT=<case> STACK_REQUESTS=<n>` runs only that case, `n` times, without
//! criterion: what `scripts/count-instructions.sh` runs under callgrind to count a
//! request's instructions (a count that does not move with the machine's load).
//!
//! Every case builds its request the same way (a gRPC method's path, two headers, the
//! second one the credential) and drives the service without a runtime: `poll_ready`, then `call`, then
//! one poll of the future with a no-op waker, which must complete it. The garbage,
//! no-header and cached cases run over stores wrapped in a counter of lookups that reach
//! them, and the run asserts they made none. After criterion's own output, a summary
//! prints each case's median and its overhead over `baseline`, next to the same from an
//! interleaved pass (every case in turn, round after round, which a machine shared with
//! other work disturbs far less), and the ratios between overheads that matter.

use std::{
    collections::HashMap,
    convert::Infallible,
    env, fs,
    future::Future,
    hash::{BuildHasherDefault, Hasher},
    hint::black_box,
    pin::pin,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, Waker},
    time::{Duration, Instant, SystemTime},
};

use async_trait::async_trait;
use criterion::Criterion;
use futures_util::future::{Either, Ready, ready};
use http::{
    HeaderName, HeaderValue, Request, Response, StatusCode,
    header::{ACCEPT, AUTHORIZATION},
};
use sha2::{Digest, Sha256};
use sqlx::{
    AssertSqlSafe,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use time::OffsetDateTime;
use tower::{Layer, Service, ServiceBuilder, service_fn};
use tower_pat::{
    ManageTokens, MemoryStore, PatLayer, PostgresStore, RequireScopesLayer, Requirement,
    ScopeMapLayer, SqliteStore, TokenStore, Tokens,
    credential::Presented,
    record::{TokenId, TokenRecord},
    scope::ScopeRegistry,
    store::{CachedStore, Lookup, StoreError},
    token::TokenHash,
};

#[path = "support/criterion_results.rs"]
mod criterion_results;
#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/jwt.rs"]
mod jwt;

/// How many tokens the in-memory store (and the floor's map) holds.
const TOKENS: usize = 100_000;
/// How many tokens the SQL stores behind the caches hold.
const SQL_TOKENS: usize = 10_000;

/// The interleaved pass: rounds, and requests per case per round.
const ROUNDS: usize = 100;
const PER_SLICE: u64 = 10_000;
/// About how long one slice of the interleaved pass takes, in nanoseconds.
const SLICE_NS: f64 = 2_000_000.0;

const GROUP: &str = "stack";

/// Ratios of overheads (over `baseline`) the summary prints: (numerator, denominator).
const RATIOS: [(&str, &str); 10] = [
    ("cached_passport", "hot_token"),
    ("cached_passport", "cached_sqlite"),
    ("hot_token_counted", "hot_token"),
    ("scope_map_50", "hot_token"),
    ("cached_postgres", "hot_token"),
    ("cached_sqlite", "hot_token"),
    ("hot_token", "floor"),
    ("jwt_hs256", "hot_token"),
    ("jwt_rs256", "hot_token"),
    ("tower_http_bearer", "hot_token"),
];

/// A store that counts how often it is asked to look a token up (`find`, a call that
/// waits). It answers at once (`find_ready`) only when `ready`: the garbage and no-header
/// cases run over one that does not, so that any token the layer did not reject offline
/// would show up as a `find`.
struct CountingStore<S> {
    inner: Arc<S>,
    finds: Arc<AtomicU64>,
    ready: bool,
}

#[async_trait]
impl<S: TokenStore> TokenStore for CountingStore<S> {
    type UserId = S::UserId;

    async fn find(&self, hash: &TokenHash) -> Lookup<S::UserId> {
        self.finds.fetch_add(1, Ordering::Relaxed);
        self.inner.find(hash).await
    }

    async fn find_presented(&self, presented: &Presented) -> Lookup<S::UserId> {
        self.finds.fetch_add(1, Ordering::Relaxed);
        self.inner.find_presented(presented).await
    }

    fn find_ready(&self, hash: &TokenHash) -> Option<Lookup<S::UserId>> {
        if self.ready {
            self.inner.find_ready(hash)
        } else {
            None
        }
    }

    async fn touch(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        self.inner.touch(uses).await
    }
}

/// The first eight bytes of a key that is uniform already (a SHA-256 digest): the same
/// function as the crate's `MemoryStore` and cache use (`src/hashers.rs`,
/// `PrefixHasher`, crate-private), so the floor probes a map exactly as the store does.
/// Change both together.
#[derive(Default)]
struct FirstWord(u64);

impl Hasher for FirstWord {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
    }
}

type FloorMap = HashMap<[u8; 32], Arc<TokenRecord<i64>>, BuildHasherDefault<FirstWord>>;

/// The floor: what any bearer-token middleware over an in-memory map must do, and
/// nothing else.
#[derive(Clone)]
struct Floor<S> {
    inner: S,
    map: Arc<FloorMap>,
}

impl<S, ResB> Service<Request<()>> for Floor<S>
where
    S: Service<Request<()>, Response = Response<ResB>>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response<ResB>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Request<()>) -> Self::Future {
        let record = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .and_then(|token| {
                let hash: [u8; 32] = Sha256::digest(token).into();
                self.map.get(&hash)
            })
            .map(Arc::clone);
        match record {
            Some(record) => {
                req.extensions_mut().insert(record);
                Either::Left(self.inner.call(req))
            }
            None => {
                let mut res = Response::new(ResB::default());
                *res.status_mut() = StatusCode::UNAUTHORIZED;
                Either::Right(ready(Ok(res)))
            }
        }
    }
}

/// The request of every case: the same shape, only the credential header differs.
/// `HeaderValue::from_static` makes cloning the values free, so the loop measures the
/// middleware rather than reference counting.
#[derive(Clone)]
struct RequestTemplate {
    name: HeaderName,
    value: HeaderValue,
    uri: http::Uri,
}

/// The path of every request: the 26th of the scope map's 50 methods.
const PATH: &str = "/orders.v1.Orders/Method25";

impl RequestTemplate {
    fn new(name: HeaderName, value: String) -> Self {
        let value: &'static str = Box::leak(value.into_boxed_str());
        Self {
            name,
            value: HeaderValue::from_static(value),
            uri: http::Uri::from_static(PATH),
        }
    }

    #[inline]
    fn build(&self) -> Request<()> {
        let mut req = Request::new(());
        *req.uri_mut() = self.uri.clone();
        let headers = req.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(self.name.clone(), self.value.clone());
        req
    }
}

/// `poll_ready`, `call`, and one poll of the future, which must be enough.
#[inline]
fn drive<S>(svc: &mut S, req: Request<()>) -> Response<()>
where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("the service was not ready at once"),
    }
    match pin!(svc.call(req)).poll(&mut cx) {
        Poll::Ready(Ok(res)) => res,
        _ => panic!("the response future did not complete at once"),
    }
}

/// One case: a service kept across iterations, the request it gets, and whether its
/// store must not be asked.
struct Case {
    name: &'static str,
    /// Runs `iters` requests and returns how long they took.
    run: Box<dyn FnMut(u64) -> Duration>,
    /// Its store's lookup counter, when the case must make no store call.
    finds: Option<Arc<AtomicU64>>,
    requests: u64,
    finds_seen: u64,
}

impl Case {
    fn new<S>(name: &'static str, svc: &S, template: &RequestTemplate, expected: StatusCode) -> Self
    where
        S: Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone + 'static,
    {
        let mut svc = svc.clone();
        let template = template.clone();
        let status = drive(&mut svc, template.build()).status();
        assert_eq!(status, expected, "{name}: unexpected status");
        let run = move |iters: u64| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(drive(&mut svc, black_box(template.build())));
            }
            start.elapsed()
        };
        Self {
            name,
            run: Box::new(run),
            finds: None,
            requests: 0,
            finds_seen: 0,
        }
    }

    /// The case must make no call to the store behind `finds`.
    fn counted(mut self, finds: &Arc<AtomicU64>) -> Self {
        self.finds = Some(Arc::clone(finds));
        self
    }
}

async fn fill<S: ManageTokens<UserId = i64>>(store: &S, records: &[TokenRecord<i64>]) {
    for chunk in records.chunks(100) {
        for result in
            futures_util::future::join_all(chunk.iter().map(|r| store.insert(r.clone()))).await
        {
            result.expect("insert");
        }
    }
}

fn registry() -> ScopeRegistry {
    ScopeRegistry::new()
        .scope("orders:read", "List orders")
        .scope("orders:create", "Place orders")
}

/// A `CachedStore` over `store` (behind a lookup counter) holding one hot token: the
/// service over it, the token, and the counter.
fn cached_stack<S>(
    rt: &tokio::runtime::Runtime,
    store: S,
) -> (
    impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone + 'static,
    String,
    Arc<AtomicU64>,
)
where
    S: ManageTokens<UserId = i64>,
{
    let store = Arc::new(store);
    rt.block_on(fill(
        &*store,
        &fixtures::records(SQL_TOKENS, &["orders:read"]),
    ));
    let finds = Arc::new(AtomicU64::new(0));
    // A TTL longer than the whole run: every measured request is a hit.
    let cached = CachedStore::builder()
        .ttl(Duration::from_secs(3600))
        .build(CountingStore {
            inner: Arc::clone(&store),
            finds: Arc::clone(&finds),
            ready: true,
        });
    // Tokens are created through the bare store; the layer reads through the cache.
    let tokens = Tokens::from_shared(store, Arc::new(registry()));
    let created = rt
        .block_on(tokens.create(1, "bench", ["orders:read"]))
        .expect("create the hot token");
    // Warm: the one lookup that reaches the store.
    assert!(
        rt.block_on(cached.find(&created.record.token_hash))
            .unwrap()
            .is_some()
    );
    finds.store(0, Ordering::Relaxed);
    let hot = created.token.into_secret();
    let svc = ServiceBuilder::new()
        .layer(PatLayer::new(cached))
        .layer(RequireScopesLayer::all(["orders:read"]))
        .service(empty());
    (svc, hot, finds)
}

/// A Passport personal access token PHP minted, over `CachedStore<LaravelStore>` on an
/// in-memory SQLite database shaped as Passport 13's migrations make it, cached: the
/// service, the token, and the lookup counter.
#[cfg(feature = "laravel")]
async fn passport_stack() -> (
    impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone + 'static,
    String,
    Arc<AtomicU64>,
) {
    use tower_pat::{
        credential::{Credential, Formats},
        laravel::PassportFormat,
        store::laravel::LaravelStore,
        token::TokenFormat,
    };
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/laravel");
    let minted: Vec<serde_json::Value> = serde_json::from_str(
        &fs::read_to_string(format!("{fixtures}/passport.json")).expect("the fixtures"),
    )
    .expect("fixture JSON");
    let valid = minted
        .iter()
        .find(|t| t["case"] == "valid")
        .expect("a valid token");
    let jwt = valid["bearer"].as_str().expect("a bearer").to_owned();
    // One connection: every connection to `:memory:` is a database of its own.
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .expect("SQLite in memory");
    for statement in [
        "CREATE TABLE oauth_clients (id varchar(36) primary key, name varchar not null, \
         grant_types text not null, revoked tinyint(1) not null)"
            .to_owned(),
        "CREATE TABLE oauth_access_tokens (id varchar(100) primary key, user_id integer, \
         client_id varchar(36) not null, name varchar, scopes text, revoked tinyint(1) not null, \
         created_at datetime, updated_at datetime, expires_at datetime)"
            .to_owned(),
        "INSERT INTO oauth_clients VALUES ('personal-client', 'Personal Access Client', \
         '[\"personal_access\"]', 0)"
            .to_owned(),
        format!(
            "INSERT INTO oauth_access_tokens (id, user_id, client_id, name, scopes, revoked) \
             VALUES ('{}', 42, 'personal-client', 'bench', '[\"orders:read\"]', 0)",
            valid["jti"].as_str().expect("a jti")
        ),
    ] {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&pool)
            .await
            .expect("the Laravel tables");
    }
    let store = LaravelStore::<i64>::connect(pool).await.expect("the store");
    let finds = Arc::new(AtomicU64::new(0));
    let cached = CachedStore::builder()
        .ttl(Duration::from_secs(3600))
        .build(CountingStore {
            inner: Arc::new(store),
            finds: Arc::clone(&finds),
            ready: true,
        });
    let format =
        PassportFormat::from_file(format!("{fixtures}/oauth-public.key")).expect("the fixture key");
    // Warm: the one lookup that reaches the store, as the layer makes it.
    let claims = format
        .verify(jwt.as_bytes(), OffsetDateTime::now_utc())
        .expect("a valid JWT");
    let presented = Presented::new(TokenHash::of(&jwt), Credential::Passport(claims));
    assert!(cached.find_presented(&presented).await.unwrap().is_some());
    finds.store(0, Ordering::Relaxed);
    let svc = ServiceBuilder::new()
        .layer(PatLayer::new(cached).accept(Formats::new(TokenFormat::default()).passport(format)))
        .layer(RequireScopesLayer::all(["orders:read"]))
        .service(empty());
    (svc, jwt, finds)
}

fn empty()
-> impl Service<Request<()>, Response = Response<()>, Error = Infallible, Future = impl Send>
+ Clone
+ 'static {
    service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) })
}

/// Fills the stores, builds the stacks, and returns the cases (only those `wants` names).
fn setup(rt: &tokio::runtime::Runtime, wants: impl Fn(&str) -> bool) -> Vec<Case> {
    let tokens = Tokens::new(MemoryStore::<i64>::new(), registry());

    let started = Instant::now();
    let mut floor_map = FloorMap::default();
    let hot = rt.block_on(async {
        let mut hot = None;
        for i in 0..TOKENS {
            let user = (i % 1_000) as i64;
            let created = tokens
                .create(user, "bench", ["orders:read"])
                .await
                .expect("create a token");
            floor_map.insert(
                *created.record.token_hash.as_bytes(),
                Arc::new(created.record),
            );
            if i == TOKENS / 2 {
                hot = Some(created.token.into_secret());
            }
        }
        hot.expect("a hot token")
    });
    assert_eq!(tokens.store().len(), TOKENS);
    println!(
        "created {TOKENS} tokens in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // Right prefix and length, valid characters, but the checksum does not match.
    let mut garbage = hot.clone();
    let last = garbage.pop().expect("a non-empty token");
    garbage.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(garbage.len(), hot.len());
    assert!(tokens.token_format().parse(&garbage).is_err());

    let memory_finds = Arc::new(AtomicU64::new(0));
    let counted_memory = CountingStore {
        inner: Arc::clone(tokens.store()),
        finds: Arc::clone(&memory_finds),
        ready: false,
    };
    // The hot case runs over the store itself; the rejection cases over the counting
    // wrapper, which answers nothing at once, so a token the layer did not reject offline
    // would be a `find`: the run proves there is none.
    let stack = ServiceBuilder::new()
        .layer(
            PatLayer::from_shared(Arc::clone(tokens.store())).format(tokens.token_format().clone()),
        )
        .layer(RequireScopesLayer::all(["orders:read"]))
        .service(empty());
    // The same requirement for each of 50 methods, looked up by the request's path.
    let map = (0..50).fold(ScopeMapLayer::grpc(), |map, i| {
        map.route(
            &format!("/orders.v1.Orders/Method{i}"),
            Requirement::all(["orders:read"]),
        )
    });
    let mapped = ServiceBuilder::new()
        .layer(
            PatLayer::from_shared(Arc::clone(tokens.store())).format(tokens.token_format().clone()),
        )
        .layer(map)
        .service(empty());
    let counted = ServiceBuilder::new()
        .layer(PatLayer::new(counted_memory).format(tokens.token_format().clone()))
        .layer(RequireScopesLayer::all(["orders:read"]))
        .service(empty());
    let floor = Floor {
        inner: empty(),
        map: Arc::new(floor_map),
    };
    #[allow(deprecated)]
    let peer = ServiceBuilder::new()
        .layer(tower_http::validate_request::ValidateRequestHeaderLayer::bearer(&hot))
        .service(empty());
    let (hs256_token, hs256) = jwt::token_and_layer(jsonwebtoken::Algorithm::HS256);
    let (rs256_token, rs256) = jwt::token_and_layer(jsonwebtoken::Algorithm::RS256);
    let hs256 = hs256.layer(empty());
    let rs256 = rs256.layer(empty());

    let bearer = |token: &str| RequestTemplate::new(AUTHORIZATION, format!("Bearer {token}"));
    let hot_req = bearer(&hot);
    let garbage_req = bearer(&garbage);
    // Same shape and size, under a header the layer does not read.
    let no_auth_req = RequestTemplate::new(
        HeaderName::from_static("x-request-id"),
        format!("Bearer {hot}"),
    );

    let mut cases = vec![
        Case::new("baseline", &empty(), &hot_req, StatusCode::OK),
        Case::new("floor", &floor, &hot_req, StatusCode::OK),
        Case::new("hot_token", &stack, &hot_req, StatusCode::OK),
        Case::new("scope_map_50", &mapped, &hot_req, StatusCode::OK),
    ];
    // The hot stack again, its counters taken from a real recorder (kept for the run).
    #[cfg(feature = "metrics")]
    {
        let recorder: &'static _ = Box::leak(Box::new(
            metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder(),
        ));
        let counted = metrics::with_local_recorder(recorder, || {
            ServiceBuilder::new()
                .layer(
                    PatLayer::from_shared(Arc::clone(tokens.store()))
                        .format(tokens.token_format().clone()),
                )
                .layer(RequireScopesLayer::all(["orders:read"]))
                .service(empty())
        });
        cases.push(Case::new(
            "hot_token_counted",
            &counted,
            &hot_req,
            StatusCode::OK,
        ));
        let text = recorder.handle().render();
        assert!(
            text.contains(r#"tower_pat_requests_total{outcome="accepted"} 1"#),
            "the counted stack counts:\n{text}"
        );
    }

    // SQLite on a file, behind the cache.
    let path = std::env::temp_dir().join(format!(
        "tower-pat-bench-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let sqlite = wants("cached_sqlite").then(|| {
        let sqlite = rt.block_on(async {
            let store = SqliteStore::<i64>::open(&path).await.unwrap();
            store.migrate().await.unwrap();
            store
        });
        let (svc, token, finds) = cached_stack(rt, sqlite.clone());
        cases.push(
            Case::new("cached_sqlite", &svc, &bearer(&token), StatusCode::OK).counted(&finds),
        );
        sqlite
    });

    let postgres = match env::var("TOWER_PAT_POSTGRES_URL") {
        Ok(_) if !wants("cached_postgres") => None,
        Ok(url) if !url.is_empty() => {
            let table = format!(
                "pat_bench_{}",
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            );
            let store = rt.block_on(async {
                let options = PgConnectOptions::from_str(&url).unwrap();
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await
                    .unwrap();
                let store = PostgresStore::<i64>::new(pool).with_table(&table);
                store.migrate().await.unwrap();
                store
            });
            let (svc, token, finds) = cached_stack(rt, store.clone());
            cases.push(
                Case::new("cached_postgres", &svc, &bearer(&token), StatusCode::OK).counted(&finds),
            );
            Some((store, table))
        }
        _ => {
            println!("cached_postgres: left out: TOWER_PAT_POSTGRES_URL is not set");
            None
        }
    };

    #[cfg(feature = "laravel")]
    if wants("cached_passport") {
        let (svc, token, finds) = rt.block_on(passport_stack());
        cases.push(
            Case::new("cached_passport", &svc, &bearer(&token), StatusCode::OK).counted(&finds),
        );
    }

    cases.extend([
        Case::new(
            "garbage_token",
            &counted,
            &garbage_req,
            StatusCode::UNAUTHORIZED,
        )
        .counted(&memory_finds),
        Case::new(
            "no_header",
            &counted,
            &no_auth_req,
            StatusCode::UNAUTHORIZED,
        )
        .counted(&memory_finds),
        Case::new("tower_http_bearer", &peer, &hot_req, StatusCode::OK),
        Case::new("jwt_hs256", &hs256, &bearer(&hs256_token), StatusCode::OK),
        Case::new("jwt_rs256", &rs256, &bearer(&rs256_token), StatusCode::OK),
    ]);

    // The stacks keep what they need; the databases can go once the run ends.
    CLEANUP.with(|c| {
        c.borrow_mut()
            .push(Box::new(move |rt: &tokio::runtime::Runtime| {
                if let Some(sqlite) = sqlite {
                    rt.block_on(sqlite.pool().close());
                }
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = fs::remove_file(file);
                }
                if let Some((store, table)) = &postgres {
                    rt.block_on(async {
                        sqlx::query(AssertSqlSafe(format!(r#"DROP TABLE "{table}""#)))
                            .execute(store.pool())
                            .await
                            .unwrap();
                    });
                }
            }));
    });
    cases
}

type Cleanup = Box<dyn FnOnce(&tokio::runtime::Runtime)>;

thread_local! {
    static CLEANUP: std::cell::RefCell<Vec<Cleanup>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn bench_stack(c: &mut Criterion, cases: &mut [Case]) {
    let mut group = c.benchmark_group(GROUP);
    for case in cases.iter_mut() {
        let before = case.finds.as_ref().map(|f| f.load(Ordering::Relaxed));
        group.bench_function(case.name, |b| {
            b.iter_custom(|iters| {
                case.requests += iters;
                (case.run)(iters)
            });
        });
        if let (Some(finds), Some(before)) = (&case.finds, before) {
            case.finds_seen += finds.load(Ordering::Relaxed) - before;
        }
    }
    group.finish();

    println!();
    for case in cases.iter().filter(|c| c.finds.is_some()) {
        println!(
            "store calls during {}: {} for {} requests",
            case.name, case.finds_seen, case.requests
        );
    }
    for case in cases.iter().filter(|c| c.finds.is_some()) {
        assert_eq!(case.finds_seen, 0, "{}: the store was asked", case.name);
    }
}

/// Runs the cases in turn, round after round, so that a load that comes and goes on a
/// shared machine weighs on all of them alike; returns each case's median ns/request.
/// Each slice is about the same time (at most [`PER_SLICE`] requests), so slow cases do
/// not stretch the pass.
fn interleaved(cases: &mut [Case]) -> Vec<f64> {
    let slices: Vec<u64> = cases
        .iter_mut()
        .map(|case| {
            let per = (case.run)(1_000).as_nanos() as f64 / 1_000.0;
            ((SLICE_NS / per) as u64).clamp(10, PER_SLICE)
        })
        .collect();
    let mut samples = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for _ in 0..ROUNDS {
        for ((case, samples), &n) in cases.iter_mut().zip(&mut samples).zip(&slices) {
            samples.push((case.run)(n).as_nanos() as f64 / n as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

fn summary(cases: &mut [Case], since: SystemTime) {
    // Only after a measuring run (not `--test`, `--list`, or a filter without baseline).
    let Some(base) = criterion_results::median_ns(GROUP, "baseline", since) else {
        return;
    };
    let paired = interleaved(cases);
    let mut overheads: HashMap<&str, (f64, f64)> = HashMap::new();
    println!();
    println!(
        "{:<18} {:>10} {:>10}   {:>11} {:>10}",
        "case", "criterion", "overhead", "interleaved", "overhead"
    );
    for (case, &inter) in cases.iter().zip(&paired) {
        let Some(ns) = criterion_results::median_ns(GROUP, case.name, since) else {
            continue;
        };
        let over = ns - base;
        let inter_over = inter - paired[0];
        overheads.insert(case.name, (over, inter_over));
        println!(
            "{:<18} {ns:>7.1} ns {over:>+7.1} ns   {inter:>8.1} ns {inter_over:>+7.1} ns",
            case.name
        );
    }
    println!(
        "(criterion: median of this run; interleaved: median of {ROUNDS} rounds of \
         about {:.0} ms of every case in turn; overhead: over baseline)",
        SLICE_NS / 1e6
    );
    println!();
    println!(
        "{:<40} {:>10} {:>12}",
        "ratio of overheads", "criterion", "interleaved"
    );
    for (num, den) in RATIOS {
        let (Some(n), Some(d)) = (overheads.get(num), overheads.get(den)) else {
            continue;
        };
        println!(
            "{:<40} {:>9.2}x {:>11.2}x",
            format!("{num} / {den}"),
            n.0 / d.0,
            n.1 / d.1
        );
    }
}

/// Runs case `name` `STACK_REQUESTS` times (default 10 000), for an instruction count.
fn count(rt: &tokio::runtime::Runtime, name: &str) {
    let requests = env::var("STACK_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let mut cases = setup(rt, |case| case == name);
    let case = cases
        .iter_mut()
        .find(|case| case.name == name)
        .unwrap_or_else(|| panic!("no case {name}"));
    (case.run)(requests);
    println!("{name}: {requests} requests");
    drop(cases);
    for cleanup in CLEANUP.with(|c| c.take()) {
        cleanup(rt);
    }
}

fn main() {
    let since = SystemTime::now() - Duration::from_secs(1);
    let mut c = Criterion::default().configure_from_args();
    // sqlx's pools and the last-used flusher run on this runtime's worker; the measured
    // requests never wait on it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let _entered = rt.enter();
    if let Ok(name) = env::var("STACK_COUNT") {
        count(&rt, &name);
        return;
    }
    let mut cases = setup(&rt, |_| true);
    bench_stack(&mut c, &mut cases);
    c.final_summary();
    summary(&mut cases, since);
    drop(cases);
    for cleanup in CLEANUP.with(|c| c.take()) {
        cleanup(&rt);
    }
}
