//! The time of one `find` of a hot hash on each shipped store, side by side in one run,
//! each store holding 10 000 tokens: `MemoryStore`, `SqliteStore` on a file, and
//! `PostgresStore` at `TOWER_PAT_POSTGRES_URL` (skipped, saying so, when it is unset).
//!
//! ```text
//! TOWER_PAT_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench --all-features --bench stores -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! The medians are in `target/criterion/find/<store>/new/estimates.json`.

use std::{hint::black_box, str::FromStr};

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::future::join_all;
use sqlx::{
    AssertSqlSafe,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use time::{Duration, OffsetDateTime};
use tokio::runtime::Runtime;
use tower_pat::{
    ManageTokens, MemoryStore, PostgresStore, SqliteStore, TokenStore,
    record::{TokenId, TokenRecord},
    scope::Scopes,
    token::TokenHash,
};

const TOKENS: usize = 10_000;

/// 10 000 tokens of 1 000 users, two scopes each.
fn records() -> Vec<TokenRecord<i64>> {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let scopes = Scopes::try_from_iter(["orders:read", "user:read"]).unwrap();
    (0..TOKENS)
        .map(|i| {
            let id = TokenId::random().unwrap();
            TokenRecord {
                id,
                user_id: (i % 1000) as i64,
                client_id: None,
                name: format!("token {i}"),
                scopes: scopes.clone(),
                token_hash: TokenHash::of(&id.to_string()),
                revoked: false,
                created_at: now,
                updated_at: now,
                expires_at: now + Duration::days(365),
                last_used_at: None,
            }
        })
        .collect()
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

fn stores(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let records = records();
    let hot = records[TOKENS / 2].token_hash;

    let memory = MemoryStore::<i64>::new();
    rt.block_on(fill(&memory, &records));
    bench_find(c, &rt, "memory", &memory, hot);

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
            rt.block_on(async {
                sqlx::query(AssertSqlSafe(format!(r#"DROP TABLE "{table}""#)))
                    .execute(postgres.pool())
                    .await
                    .unwrap();
                postgres.pool().close().await;
            });
        }
        _ => println!("find/postgres: skipped: TOWER_PAT_POSTGRES_URL is not set"),
    }
}

criterion_group!(benches, stores);
criterion_main!(benches);
