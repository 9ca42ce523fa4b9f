//! The time of one lookup of a hot hash on each shipped store, side by side in one run:
//!
//! | case | what runs |
//! |---|---|
//! | `memory_1e3`, `memory_1e5`, `memory_1e6` | `MemoryStore::find_ready` (what the layer calls) with 1 000, 100 000 and 1 000 000 tokens |
//! | `sqlite_file`, `postgres` | `find` on `SqliteStore` (a file) and `PostgresStore` (loopback), 10 000 tokens each |
//! | `cached_sqlite_hot`, `cached_postgres_hot` | `CachedStore::find_ready` over them, the token cached |
//! | `cached_sqlite_cold`, `cached_postgres_cold` | the token evicted, then `CachedStore::find`: a miss, one store call, the answer cached |
//!
//! PostgreSQL is at `TOWER_PAT_POSTGRES_URL` (its cases are skipped, saying so, when it is
//! unset).
//!
//! ```text
//! TOWER_PAT_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench --all-features --bench stores -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! After criterion's output, a summary prints every median and the ratios between them.
//! The medians are in `target/criterion/find/<case>/new/estimates.json`.

use std::{
    hint::black_box,
    str::FromStr,
    time::{Duration as StdDuration, SystemTime},
};

use criterion::Criterion;
use futures_util::FutureExt;
use futures_util::future::join_all;
use sqlx::{
    AssertSqlSafe,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::runtime::Runtime;
use tower_pat::{
    ManageTokens, MemoryStore, PostgresStore, SqliteStore, TokenStore, record::TokenRecord,
    store::CachedStore, token::TokenHash,
};

#[path = "support/criterion_results.rs"]
mod criterion_results;
#[path = "support/fixtures.rs"]
mod fixtures;
const TOKENS: usize = 10_000;

/// The group every case is in.
const GROUP: &str = "find";

/// Ratios of medians the summary prints: (numerator, denominator).
const RATIOS: [(&str, &str); 7] = [
    ("memory_1e5", "memory_1e3"),
    ("memory_1e6", "memory_1e3"),
    ("cached_postgres_hot", "memory_1e5"),
    ("cached_sqlite_hot", "memory_1e5"),
    ("postgres", "cached_postgres_hot"),
    ("cached_postgres_cold", "postgres"),
    ("cached_sqlite_cold", "sqlite_file"),
];

/// `TOKENS` tokens of 1 000 users, two scopes each.
fn records() -> Vec<TokenRecord<i64>> {
    records_n(TOKENS)
}

/// `n` tokens of 1 000 users, two scopes each.
fn records_n(n: usize) -> Vec<TokenRecord<i64>> {
    fixtures::records(n, &["orders:read", "user:read"])
}

async fn fill<S: ManageTokens<UserId = i64>>(store: &S, records: &[TokenRecord<i64>]) {
    for chunk in records.chunks(100) {
        for result in join_all(chunk.iter().map(|r| store.insert(r.clone()))).await {
            result.expect("insert");
        }
    }
}

fn bench_find<S: TokenStore>(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    store: &S,
    hot: TokenHash,
) {
    let found = rt
        .block_on(store.find(&hot))
        .expect("find")
        .expect("the hot token");
    assert_eq!(found.token_hash, hot);
    c.benchmark_group("find").bench_function(name, |b| {
        b.to_async(rt)
            .iter(|| async { black_box(store.find(black_box(&hot)).await.unwrap()) });
    });
}

/// `find_ready` of a hot hash on a store that answers at once.
fn bench_ready<S: TokenStore>(c: &mut Criterion, name: &str, store: &S, hot: TokenHash) {
    let found = store
        .find_ready(&hot)
        .expect("answers at once")
        .expect("find")
        .expect("the hot token");
    assert_eq!(found.token_hash, hot);
    c.benchmark_group(GROUP).bench_function(name, |b| {
        b.iter(|| black_box(store.find_ready(black_box(&hot))));
    });
}

/// A miss every time: the token is evicted, then found (one store call) and cached.
fn bench_cold<S: TokenStore<UserId = i64>>(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    cache: &CachedStore<S>,
    hot: &TokenRecord<i64>,
) {
    let evictor = cache.evictor();
    c.benchmark_group(GROUP).bench_function(name, |b| {
        b.to_async(rt).iter(|| async {
            evictor.evict_token(hot.id);
            black_box(cache.find(black_box(&hot.token_hash)).await.unwrap())
        });
    });
}

/// Hot and cold lookups through a cache over `store` (which holds `records`).
fn bench_cached<S: TokenStore<UserId = i64> + Clone>(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    store: &S,
    hot: &TokenRecord<i64>,
) {
    let cache = CachedStore::new(store.clone());
    assert!(rt.block_on(cache.find(&hot.token_hash)).unwrap().is_some());
    bench_ready(c, &format!("cached_{name}_hot"), &cache, hot.token_hash);
    bench_cold(c, rt, &format!("cached_{name}_cold"), &cache, hot);
}

fn memory_of(n: usize) -> (MemoryStore<i64>, TokenHash) {
    let records = records_n(n);
    let hot = records[n / 2].token_hash;
    let store = MemoryStore::<i64>::new();
    for record in records {
        store
            .insert(record)
            .now_or_never()
            .expect("a memory store never waits")
            .expect("insert");
    }
    (store, hot)
}

fn stores(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let records = records();
    let hot = records[TOKENS / 2].token_hash;

    for (name, n) in [
        ("memory_1e3", 1_000),
        ("memory_1e5", 100_000),
        ("memory_1e6", 1_000_000),
    ] {
        let (memory, hot) = memory_of(n);
        bench_ready(c, name, &memory, hot);
    }
    let hot_record = records[TOKENS / 2].clone();

    // The fill need not wait for the disk on every insert; `find` reads all the same.
    let path = std::env::temp_dir().join(format!(
        "tower-pat-bench-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let sqlite = rt.block_on(async {
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            .connect_with(options)
            .await
            .unwrap();
        let store = SqliteStore::<i64>::new(pool);
        store.migrate().await.unwrap();
        fill(&store, &records).await;
        store
    });
    bench_find(c, &rt, "sqlite_file", &sqlite, hot);
    bench_cached(c, &rt, "sqlite", &sqlite, &hot_record);
    rt.block_on(sqlite.pool().close());
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }

    match std::env::var("TOWER_PAT_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            let table = format!(
                "pat_bench_{}",
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            );
            let postgres = rt.block_on(async {
                let options = PgConnectOptions::from_str(&url)
                    .unwrap()
                    .options([("synchronous_commit", "off")]);
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    .connect_with(options)
                    .await
                    .unwrap();
                let store = PostgresStore::<i64>::new(pool).with_table(&table);
                store.migrate().await.unwrap();
                fill(&store, &records).await;
                sqlx::query(AssertSqlSafe(format!(r#"ANALYZE "{table}""#)))
                    .execute(store.pool())
                    .await
                    .unwrap();
                store
            });
            bench_find(c, &rt, "postgres", &postgres, hot);
            bench_cached(c, &rt, "postgres", &postgres, &hot_record);
            rt.block_on(async {
                sqlx::query(AssertSqlSafe(format!(r#"DROP TABLE "{table}""#)))
                    .execute(postgres.pool())
                    .await
                    .unwrap();
                postgres.pool().close().await;
            });
        }
        _ => println!(
            "find/postgres, find/cached_postgres_*: skipped: TOWER_PAT_POSTGRES_URL is not set"
        ),
    }
}

fn summary(since: SystemTime) {
    const CASES: [&str; 9] = [
        "memory_1e3",
        "memory_1e5",
        "memory_1e6",
        "sqlite_file",
        "postgres",
        "cached_sqlite_hot",
        "cached_postgres_hot",
        "cached_sqlite_cold",
        "cached_postgres_cold",
    ];
    let measured: Vec<(&str, f64)> = CASES
        .iter()
        .filter_map(|case| Some((*case, criterion_results::median_ns(GROUP, case, since)?)))
        .collect();
    if measured.is_empty() {
        return;
    }
    println!();
    println!("{:<24} {:>14}", "case", "median");
    for (case, ns) in &measured {
        println!("{case:<24} {:>11.1} ns", ns);
    }
    println!();
    let get = |name: &str| measured.iter().find(|(c, _)| *c == name).map(|(_, ns)| *ns);
    for (num, den) in RATIOS {
        if let (Some(n), Some(d)) = (get(num), get(den)) {
            println!("{:<44} {:>9.2}x", format!("{num} / {den}"), n / d);
        }
    }
}

fn main() {
    let since = SystemTime::now() - StdDuration::from_secs(1);
    let mut c = Criterion::default().configure_from_args();
    stores(&mut c);
    c.final_summary();
    summary(since);
}
