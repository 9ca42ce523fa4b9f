//! A token's life over the real stores (`MemoryStore`, `SqliteStore` on a file,
//! `PostgresStore` at `TOWER_PAT_POSTGRES_URL` and `MySqlStore` at `TOWER_PAT_MYSQL_URL`,
//! each skipped saying so without its variable), through
//! `Tokens` and a `PatLayer` served on loopback: rotation with an overlap, to the second;
//! concurrent rotations; the per-user cap under concurrent creates; a cache in front, and
//! another instance behind the PostgreSQL listener, seeing the shortened expiry; the
//! upgrade of a table made by the first migration; paging; expiry notices a daily job
//! claims once per threshold.
//!
//! Run with `--nocapture` to see the figures each test prints.

use crate::common;

use std::{
    io::Write as _,
    net::SocketAddr,
    sync::Arc,
    time::{Duration as StdDuration, Instant},
};

use axum::{Router, routing::get};
use common::db::{TempDb, with_mysql, with_postgres};
use http::StatusCode;
use sqlx::AssertSqlSafe;
use time::{Duration, OffsetDateTime, macros::datetime};
use tower_pat::{
    AccessToken, CreateToken, ManageTokens, MemoryStore, MySqlStore, PostgresStore, RotateToken,
    SqliteStore, TokenError, TokenStore, Tokens,
    clock::ManualClock,
    store::{CachedStore, Cursor},
};

const T0: OffsetDateTime = datetime!(2030-01-01 00:00 UTC);

/// Writes past the harness's capture.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A pool of 8 connections: concurrent calls run on several connections at once.
async fn pg_pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(url)
        .await
        .expect("connect to PostgreSQL")
}

/// A MySQL pool of 8 connections, likewise.
async fn mysql_pool(url: &str) -> sqlx::MySqlPool {
    sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(8)
        .connect(url)
        .await
        .expect("connect to MySQL")
}

/// Runs the body once on each store, with `$store` of the store's own type: memory, a
/// SQLite file, and PostgreSQL and MySQL (each on a table of its own) when their
/// variables are set.
macro_rules! on_every_store {
    (|$name:ident, $store:ident| $body:block) => {{
        async fn run<St: ManageTokens<UserId = i64>>($name: &'static str, $store: St) $body

        run("memory", MemoryStore::<i64>::new()).await;

        let file = TempDb::new();
        let sqlite = SqliteStore::<i64>::open(file.path()).await.unwrap();
        sqlite.migrate().await.unwrap();
        run("sqlite", sqlite).await;

        with_postgres(|url, table| async move {
            let store = PostgresStore::<i64>::new(pg_pool(&url).await).with_table(&table);
            store.migrate().await.unwrap();
            run("postgres", store).await;
        })
        .await;

        with_mysql(|url, table| async move {
            let store = MySqlStore::<i64>::new(mysql_pool(&url).await).with_table(&table);
            store.migrate().await.unwrap();
            run("mysql", store).await;
        })
        .await;
    }};
}

fn tokens<St: ManageTokens<UserId = i64>>(store: St, clock: &ManualClock) -> Tokens<St> {
    Tokens::new(store, common::registry()).clock(clock.clone())
}

/// `/orders` behind the facade's layer.
async fn serve<St: ManageTokens<UserId = i64>>(tokens: &Tokens<St>) -> SocketAddr {
    let app = Router::new()
        .route(
            "/orders",
            get(|token: AccessToken| async move { format!("user {}", token.user_id()) }),
        )
        .layer(tokens.layer());
    common::serve(app).await
}

async fn status(addr: SocketAddr, token: &str) -> (StatusCode, String) {
    let reply = common::bearer(addr, "/orders", token).await;
    let challenge = reply.challenge().unwrap_or_default().to_owned();
    (reply.status, challenge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_token_works_until_the_overlap_ends_to_the_second() {
    on_every_store!(|name, store| {
        let clock = ManualClock::new(T0);
        let tokens = tokens(store, &clock);
        let addr = serve(&tokens).await;
        let old = tokens.create(1, "deploy", ["orders:read"]).await.unwrap();

        clock.set(T0 + Duration::seconds(10));
        let rotated = tokens
            .rotate(&1, old.record.id, Duration::hours(1))
            .await
            .unwrap();
        let end = T0 + Duration::seconds(10) + Duration::hours(1);
        assert_eq!(rotated.previous.expires_at, end);
        assert_eq!(rotated.previous.rotated_to, Some(rotated.record.id));
        assert!(!rotated.previous.revoked);
        assert_eq!(rotated.record.rotated_from, Some(old.record.id));
        assert_eq!(
            (&rotated.record.name, &rotated.record.scopes),
            (&old.record.name, &old.record.scopes)
        );
        assert_eq!(
            rotated.record.expires_at,
            T0 + Duration::seconds(10) + tower_pat::lifecycle::DEFAULT_LIFETIME,
            "a fresh lifetime by default"
        );

        let old_secret = old.token.expose_secret();
        let new_secret = rotated.token.expose_secret();
        clock.set(end - Duration::seconds(1));
        let before = status(addr, old_secret).await;
        assert_eq!(
            before.0,
            StatusCode::OK,
            "{name}: one second before the end"
        );
        clock.set(end);
        let at = status(addr, old_secret).await;
        assert_eq!(at.0, StatusCode::UNAUTHORIZED, "{name}: at the end");
        assert!(at.1.contains("expired"), "{name}: {}", at.1);
        let new = status(addr, new_secret).await;
        assert_eq!(new.0, StatusCode::OK, "{name}: the successor works");
        say(&format!(
            "{name}: rotated at {} with a 1 h overlap, ends {end}: old at {} -> {}, old at {end} -> {} ({}), new -> {}",
            T0 + Duration::seconds(10),
            end - Duration::seconds(1),
            before.0.as_u16(),
            at.0.as_u16(),
            at.1,
            new.0.as_u16()
        ));

        // Rotated once: a second rotation names the successor and changes nothing.
        match tokens.rotate(&1, old.record.id, Duration::ZERO).await {
            Err(TokenError::AlreadyRotated { successor }) => {
                assert_eq!(successor, rotated.record.id);
                assert!(
                    TokenError::AlreadyRotated { successor }
                        .to_string()
                        .contains(&successor.to_string())
                );
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(tokens.list(&1).await.unwrap().len(), 2, "{name}");

        // No overlap: the old token stops at once, revoked.
        let next = tokens
            .rotate(&1, rotated.record.id, Duration::ZERO)
            .await
            .unwrap();
        assert!(next.previous.revoked, "{name}");
        let refused = status(addr, new_secret).await;
        assert_eq!(refused.0, StatusCode::UNAUTHORIZED, "{name}");
        assert!(refused.1.contains("revoked"), "{name}: {}", refused.1);
        assert_eq!(
            status(addr, next.token.expose_secret()).await.0,
            StatusCode::OK
        );

        // Keeping the expiry, and the overlap never extends the old token.
        let short = tokens
            .create_with(
                2,
                CreateToken::new("short")
                    .scopes(["orders:read"])
                    .expires_in(Duration::minutes(30)),
            )
            .await
            .unwrap();
        let kept = tokens
            .rotate_with(
                &2,
                short.record.id,
                RotateToken::new(Duration::hours(2)).keep_expiry(),
            )
            .await
            .unwrap();
        assert_eq!(kept.record.expires_at, short.record.expires_at, "{name}");
        assert_eq!(kept.previous.expires_at, short.record.expires_at, "{name}");

        // What cannot be rotated.
        assert!(matches!(
            tokens.rotate(&3, kept.record.id, Duration::ZERO).await,
            Err(TokenError::NotFound(_))
        ));
        assert!(matches!(
            tokens.rotate(&2, kept.record.id, Duration::days(31)).await,
            Err(TokenError::Overlap { .. })
        ));
        assert!(matches!(
            tokens
                .rotate(&2, kept.record.id, Duration::seconds(-1))
                .await,
            Err(TokenError::Overlap { .. })
        ));
        tokens.revoke(&2, kept.record.id).await.unwrap();
        assert!(matches!(
            tokens.rotate(&2, kept.record.id, Duration::ZERO).await,
            Err(TokenError::Inactive(_))
        ));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotations_of_one_token_exactly_one_succeeds() {
    on_every_store!(|name, store| {
        let clock = ManualClock::new(T0);
        let tokens = tokens(store, &clock);
        const N: usize = 16;
        for round in 0..5 {
            let old = tokens
                .create(round, "raced", ["orders:read"])
                .await
                .unwrap();
            let barrier = Arc::new(tokio::sync::Barrier::new(N));
            let tasks: Vec<_> = (0..N)
                .map(|_| {
                    let tokens = tokens.clone();
                    let barrier = Arc::clone(&barrier);
                    let id = old.record.id;
                    tokio::spawn(async move {
                        barrier.wait().await;
                        tokens.rotate(&round, id, Duration::minutes(5)).await
                    })
                })
                .collect();
            let mut winners = Vec::new();
            let mut named = Vec::new();
            for task in tasks {
                match task.await.unwrap() {
                    Ok(rotated) => winners.push(rotated.record.id),
                    Err(TokenError::AlreadyRotated { successor }) => named.push(successor),
                    Err(other) => panic!("{name}: {other}"),
                }
            }
            assert_eq!(winners.len(), 1, "{name}: round {round}");
            assert!(named.iter().all(|s| *s == winners[0]), "{name}: {named:?}");
            let successors: Vec<_> = tokens
                .list(&round)
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.rotated_from == Some(old.record.id))
                .map(|r| r.id)
                .collect();
            assert_eq!(successors, winners, "{name}: one successor stored");
            if round == 0 {
                say(&format!(
                    "{name}: {N} concurrent rotations of one token: {} succeeded, {} refused naming the successor (5 rounds)",
                    winners.len(),
                    named.len()
                ));
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cap_holds_under_32_concurrent_creates() {
    on_every_store!(|name, store| {
        let clock = ManualClock::new(T0);
        let tokens = tokens(store, &clock).max_tokens_per_user(5);
        const N: usize = 32;
        const ROUNDS: i64 = 10;
        // Every connection of the pool open first, so that the creates meet.
        futures_util::future::join_all((0..8).map(|_| tokens.list(&0))).await;
        let mut outcomes = Vec::new();
        for user in 100..100 + ROUNDS {
            let barrier = Arc::new(tokio::sync::Barrier::new(N));
            let tasks: Vec<_> = (0..N)
                .map(|i| {
                    let tokens = tokens.clone();
                    let barrier = Arc::clone(&barrier);
                    tokio::spawn(async move {
                        barrier.wait().await;
                        tokens
                            .create(user, format!("flood {i}"), ["orders:read"])
                            .await
                    })
                })
                .collect();
            let (mut created, mut refused) = (0, 0);
            for task in tasks {
                match task.await.unwrap() {
                    Ok(_) => created += 1,
                    Err(TokenError::Limit { max: 5 }) => refused += 1,
                    Err(other) => panic!("{name}: {other}"),
                }
            }
            let live = tokens.list(&user).await.unwrap().len();
            outcomes.push((created, refused, live));
        }
        say(&format!(
            "{name}: {N} concurrent creates against a cap of 5, {ROUNDS} users: (created, refused, stored) per user {outcomes:?}"
        ));
        assert!(
            outcomes.iter().all(|o| *o == (5, N - 5, 5)),
            "{name}: {outcomes:?}"
        );
        for i in 0..5 {
            tokens
                .create(9, format!("mine {i}"), ["orders:read"])
                .await
                .unwrap();
        }

        // Only live tokens count: revoking one makes room for one; a rotation replaces.
        let listed = tokens.list(&9).await.unwrap();
        tokens.revoke(&9, listed[0].id).await.unwrap();
        tokens.create(9, "room", ["orders:read"]).await.unwrap();
        assert!(matches!(
            tokens.create(9, "no room", ["orders:read"]).await,
            Err(TokenError::Limit { max: 5 })
        ));
        let rotated = tokens
            .rotate(&9, listed[1].id, Duration::hours(1))
            .await
            .expect("a rotation is not held back by the cap");
        assert!(matches!(
            tokens.create(9, "still no room", ["orders:read"]).await,
            Err(TokenError::Limit { max: 5 })
        ));
        // Expired ones do not count either.
        clock.set(rotated.record.expires_at);
        tokens
            .create(9, "after a year", ["orders:read"])
            .await
            .unwrap();
        // Other users are not held back.
        tokens
            .create(10, "another user", ["orders:read"])
            .await
            .unwrap();
    });
}

#[tokio::test]
async fn lists_page_newest_first_with_a_cursor() {
    on_every_store!(|name, store| {
        let clock = ManualClock::new(T0);
        let tokens = tokens(store, &clock);
        for i in 0..11 {
            // Pairs share a second: the id breaks the tie.
            if i % 2 == 0 {
                clock.advance(Duration::seconds(1));
            }
            tokens
                .create(4, format!("t{i}"), ["orders:read"])
                .await
                .unwrap();
        }
        let all = tokens.list(&4).await.unwrap();
        let mut paged = Vec::new();
        let mut after: Option<Cursor> = None;
        let mut pages = 0;
        loop {
            let page = tokens.list_page(&4, after.as_ref(), 4).await.unwrap();
            pages += 1;
            assert!(page.records.len() <= 4);
            paged.extend(page.records);
            match page.next {
                Some(next) => {
                    // The cursor survives a trip through text, as an API hands it out.
                    after = Some(next.to_string().parse().unwrap());
                }
                None => break,
            }
        }
        assert_eq!(pages, 3, "{name}");
        let ids = |records: &[tower_pat::TokenRecord<i64>]| {
            records.iter().map(|r| r.id).collect::<Vec<_>>()
        };
        assert_eq!(ids(&paged), ids(&all), "{name}");
        let page = tokens.list_page(&4, None, 1_000).await.unwrap();
        assert_eq!(
            page.records.len(),
            11,
            "{name}: capped at 100, which is more"
        );
        assert_eq!(page.next, None);
    });
}

#[tokio::test]
async fn a_daily_job_mails_each_token_once_per_threshold() {
    on_every_store!(|name, store| {
        let clock = ManualClock::new(T0);
        let tokens = tokens(store, &clock);
        let lifetimes = [40, 20, 5, 3];
        let mut created = Vec::new();
        for (i, days) in lifetimes.iter().enumerate() {
            created.push(
                tokens
                    .create_with(
                        20 + i as i64,
                        CreateToken::new(format!("{days} days")).expires_in(Duration::days(*days)),
                    )
                    .await
                    .unwrap(),
            );
        }
        // One that is rotated: the successor is what the user should hear about.
        let rotated = tokens
            .rotate(&23, created[3].record.id, Duration::hours(1))
            .await
            .unwrap();
        let thresholds = [Duration::days(30), Duration::days(7), Duration::days(1)];

        // Two jobs at once on the first day, then one a day for six weeks.
        let (a, b) = tokio::join!(
            tokens.claim_expiry_notices(&thresholds, 100),
            tokens.claim_expiry_notices(&thresholds, 100)
        );
        let mut mails: Vec<(i64, i64, String)> = Vec::new();
        for notice in a.unwrap().into_iter().chain(b.unwrap()) {
            mails.push((0, notice.threshold.whole_days(), notice.record.name.clone()));
        }
        for day in 1..=45 {
            clock.set(T0 + Duration::days(day));
            for _run in 0..2 {
                for notice in tokens.claim_expiry_notices(&thresholds, 100).await.unwrap() {
                    mails.push((
                        day,
                        notice.threshold.whole_days(),
                        notice.record.name.clone(),
                    ));
                }
            }
        }
        mails.sort();
        say(&format!(
            "{name}: mails (day, threshold in days, token): {mails:?}"
        ));
        let want: Vec<(i64, i64, String)> = vec![
            (0, 7, "5 days".into()),
            (0, 30, "20 days".into()),
            (4, 1, "5 days".into()),
            (10, 30, "40 days".into()),
            (13, 7, "20 days".into()),
            (19, 1, "20 days".into()),
            (33, 7, "40 days".into()),
            (39, 1, "40 days".into()),
        ];
        // The successor of the rotated token (a year) is never due in six weeks.
        assert!(rotated.record.expires_at > T0 + Duration::days(46));
        assert_eq!(mails, want, "{name}");
    });
}

#[tokio::test]
async fn expiring_within_pages_every_users_tokens_soonest_first() {
    on_every_store!(|name, store| {
        let clock = ManualClock::new(T0);
        let tokens = tokens(store, &clock);
        for (user, hours) in [(31, 5), (32, 1), (33, 3), (34, 30), (35, 2)] {
            tokens
                .create_with(
                    user,
                    CreateToken::new(format!("{hours} h")).expires_in(Duration::hours(hours)),
                )
                .await
                .unwrap();
        }
        let revoked = tokens
            .create_with(
                36,
                CreateToken::new("revoked").expires_in(Duration::hours(1)),
            )
            .await
            .unwrap();
        tokens.revoke(&36, revoked.record.id).await.unwrap();

        let first = tokens
            .expiring_within(Duration::hours(24), None, 2)
            .await
            .unwrap();
        let second = tokens
            .expiring_within(Duration::hours(24), first.next.as_ref(), 2)
            .await
            .unwrap();
        assert_eq!(second.next, None, "{name}");
        let names: Vec<_> = first
            .records
            .iter()
            .chain(&second.records)
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["1 h", "2 h", "3 h", "5 h"], "{name}");

        let mine = tokens
            .expiring_within_for(&34, Duration::days(2))
            .await
            .unwrap();
        assert_eq!(mine.len(), 1, "{name}");
        assert!(
            tokens
                .expiring_within_for(&34, Duration::hours(2))
                .await
                .unwrap()
                .is_empty()
        );
    });
}

/// A cache in front of each store: a rotation through it evicts the old token, so the
/// shortened expiry is seen at once, though the cache keeps records for an hour.
#[tokio::test]
async fn a_cache_in_front_sees_the_shortened_expiry_at_once() {
    on_every_store!(|name, store| {
        let clock = ManualClock::new(T0);
        let cached = CachedStore::builder()
            .ttl(StdDuration::from_secs(3600))
            .build(store);
        let tokens = Tokens::new(cached, common::registry()).clock(clock.clone());
        let addr = serve(&tokens).await;
        let old = tokens.create(1, "cached", ["orders:read"]).await.unwrap();
        let secret = old.token.expose_secret();
        assert_eq!(status(addr, secret).await.0, StatusCode::OK, "{name}");

        let rotated = tokens
            .rotate(&1, old.record.id, Duration::seconds(30))
            .await
            .unwrap();
        clock.advance(Duration::seconds(29));
        assert_eq!(status(addr, secret).await.0, StatusCode::OK, "{name}");
        clock.advance(Duration::seconds(1));
        assert_eq!(
            status(addr, secret).await.0,
            StatusCode::UNAUTHORIZED,
            "{name}: the cache does not serve the old expiry"
        );
        assert_eq!(
            status(addr, rotated.token.expose_secret()).await.0,
            StatusCode::OK,
            "{name}"
        );
    });
}

/// Two instances over one PostgreSQL table, each with a cache that keeps records for an
/// hour: A rotates; B hears of it through its listener (the rotation notifies the old
/// id) and refuses the old token once its overlap ends. A third instance with a cache
/// and no listener still serves the old token from its cache: the listener is what told B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_sees_the_rotation_through_the_listener() {
    with_postgres(|url, table| async move {
        let clock = ManualClock::new(OffsetDateTime::now_utc().replace_nanosecond(0).unwrap());
        let instance = |listen: bool| {
            let (url, table, clock) = (url.clone(), table.clone(), clock.clone());
            async move {
                let postgres = PostgresStore::<i64>::new(pg_pool(&url).await).with_table(&table);
                postgres.migrate().await.unwrap();
                let cached = CachedStore::builder()
                    .ttl(StdDuration::from_secs(3600))
                    .build(postgres.clone());
                let listening = if listen {
                    Some(postgres.listen(cached.evictor()).await.unwrap())
                } else {
                    None
                };
                let tokens = Tokens::new(cached, common::registry()).clock(clock);
                let addr = serve(&tokens).await;
                (tokens, addr, listening)
            }
        };
        let (a, addr_a, _listening_a) = instance(true).await;
        let (_b, addr_b, _listening_b) = instance(true).await;
        let (_c, addr_c, _) = instance(false).await;

        let old = a.create(1, "shared", ["orders:read"]).await.unwrap();
        let secret = old.token.expose_secret();
        for addr in [addr_a, addr_b, addr_c] {
            assert_eq!(status(addr, secret).await.0, StatusCode::OK);
        }
        let rotated = a
            .rotate(&1, old.record.id, Duration::seconds(30))
            .await
            .unwrap();
        let heard = Instant::now();
        clock.advance(Duration::seconds(30));
        // B refuses once its listener has evicted the old record.
        loop {
            match status(addr_b, secret).await.0 {
                StatusCode::UNAUTHORIZED => break,
                StatusCode::OK => {}
                other => panic!("{other}"),
            }
            assert!(
                heard.elapsed() < StdDuration::from_secs(3),
                "B still accepts the old token"
            );
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
        say(&format!(
            "postgres: B refused the rotated token {:?} after the rotation on A",
            heard.elapsed()
        ));
        assert_eq!(status(addr_a, secret).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            status(addr_c, secret).await.0,
            StatusCode::OK,
            "without a listener, the cache keeps the old expiry until its TTL"
        );
        assert_eq!(
            status(addr_b, rotated.token.expose_secret()).await.0,
            StatusCode::OK
        );
    })
    .await;
}

/// Two rows written the way version 0.1 wrote them, on a table made by the first
/// migration alone, then `migrate`: the rows read back, rotate, and migrating again
/// changes nothing.
#[tokio::test]
async fn migrate_upgrades_a_table_made_by_the_first_migration() {
    const SQLITE_0001: &str =
        include_str!("../../migrations/sqlite/0001_personal_access_tokens.sql");
    const POSTGRES_0001: &str =
        include_str!("../../migrations/postgres/0001_personal_access_tokens.sql");
    const MYSQL_0001: &str = include_str!("../../migrations/mysql/0001_personal_access_tokens.sql");
    let hashes = [
        tower_pat::token::TokenHash::of("first"),
        tower_pat::token::TokenHash::of("second"),
    ];
    let ids = ["a".repeat(32), "b".repeat(32)];

    // SQLite.
    let file = TempDb::new();
    let store = SqliteStore::<i64>::open(file.path()).await.unwrap();
    let table = common::db::unique_table();
    let sql = SQLITE_0001
        .replace("{table}", &table)
        .replace("{user_id_type}", "INTEGER");
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(store.pool())
        .await
        .unwrap();
    for (id, hash) in ids.iter().zip(&hashes) {
        sqlx::query(AssertSqlSafe(format!(
            r#"INSERT INTO "{table}" (id, user_id, client_id, name, scopes, token_hash, revoked,
               created_at, updated_at, expires_at, last_used_at)
               VALUES (?1, 7, NULL, 'old', 'orders:read', ?2, 0, 1893456000, 1893456000, 4000000000, NULL)"#
        )))
        .bind(id)
        .bind(&hash.as_bytes()[..])
        .execute(store.pool())
        .await
        .unwrap();
    }
    let store = store.with_table(&table);
    assert!(
        store.find(&hashes[0]).await.is_err(),
        "the old table lacks the new columns"
    );
    store.migrate().await.expect("the upgrade");
    upgraded("sqlite", store.clone(), &hashes).await;
    store.migrate().await.expect("migrating again");
    let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        r#"SELECT count(*) FROM pragma_table_info('{table}') WHERE name IN ('rotated_from', 'rotated_to', 'expiry_notice')"#
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(count, 3);

    // PostgreSQL.
    let (pg_ids, pg_hashes) = (ids.clone(), hashes);
    with_postgres(|url, table| async move {
        let (ids, hashes) = (pg_ids, pg_hashes);
        let pool = pg_pool(&url).await;
        let sql = POSTGRES_0001
            .replace("{table}", &table)
            .replace("{user_id_type}", "INT8");
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&pool).await.unwrap();
        for (id, hash) in ids.iter().zip(&hashes) {
            sqlx::query(AssertSqlSafe(format!(
                r#"INSERT INTO "{table}" (id, user_id, client_id, name, scopes, token_hash, revoked,
                   created_at, updated_at, expires_at, last_used_at)
                   VALUES ($1, 7, NULL, 'old', 'orders:read', $2, FALSE, to_timestamp(1893456000),
                   to_timestamp(1893456000), to_timestamp(4000000000), NULL)"#
            )))
            .bind(id)
            .bind(&hash.as_bytes()[..])
            .execute(&pool)
            .await
            .unwrap();
        }
        let store = PostgresStore::<i64>::new(pool.clone()).with_table(&table);
        assert!(
            store.find(&hashes[0]).await.is_err(),
            "the old table lacks the new columns"
        );
        store.migrate().await.expect("the upgrade");
        upgraded("postgres", store.clone(), &hashes).await;
        store.migrate().await.expect("migrating again");
        let indexes: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_indexes WHERE tablename = $1 AND indexname = $1 || '_expiring_idx'",
        )
        .bind(&table)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(indexes, 1);
    })
    .await;

    // MySQL.
    with_mysql(|url, table| async move {
        let pool = mysql_pool(&url).await;
        let sql = MYSQL_0001
            .replace("{table}", &table)
            .replace("{user_id_type}", "BIGINT");
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&pool).await.unwrap();
        for (id, hash) in ids.iter().zip(&hashes) {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO `{table}` (id, user_id, client_id, name, scopes, token_hash, revoked,
                   created_at, updated_at, expires_at, last_used_at)
                   VALUES (?, 7, NULL, 'old', 'orders:read', ?, FALSE, '2030-01-01 00:00:00',
                   '2030-01-01 00:00:00', '2096-10-02 07:06:40', NULL)"
            )))
            .bind(id)
            .bind(&hash.as_bytes()[..])
            .execute(&pool)
            .await
            .unwrap();
        }
        let store = MySqlStore::<i64>::new(pool.clone()).with_table(&table);
        assert!(
            store.find(&hashes[0]).await.is_err(),
            "the old table lacks the new columns"
        );
        store.migrate().await.expect("the upgrade");
        upgraded("mysql", store.clone(), &hashes).await;
        store.migrate().await.expect("migrating again");
        let indexes: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT index_name) FROM information_schema.statistics
             WHERE table_schema = DATABASE() AND table_name = ? AND index_name = CONCAT(?, '_expiring_idx')",
        )
        .bind(&table)
        .bind(&table)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(indexes, 1);
    })
    .await;
}

async fn upgraded<St>(name: &str, store: St, hashes: &[tower_pat::token::TokenHash])
where
    St: ManageTokens<UserId = i64>,
{
    for hash in hashes {
        let found = store.find(hash).await.unwrap().expect("the old row");
        assert_eq!(
            (
                found.user_id,
                found.name.as_str(),
                found.rotated_from,
                found.rotated_to
            ),
            (7, "old", None, None),
            "{name}"
        );
    }
    assert_eq!(store.list(&7).await.unwrap().len(), 2, "{name}");
    let clock = ManualClock::new(T0);
    let tokens = Tokens::new(store, common::registry()).clock(clock);
    let old = tokens.list(&7).await.unwrap().remove(0);
    let rotated = tokens
        .rotate(&7, old.id, Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(
        rotated.previous.rotated_to,
        Some(rotated.record.id),
        "{name}"
    );
    assert_eq!(tokens.list(&7).await.unwrap().len(), 3, "{name}");
    say(&format!(
        "{name}: a table made by 0001 with 2 rows migrated to 0002: both rows read back, one rotated"
    ));
}

/// The facade's futures are `Send` for a concrete store (what `tokio::spawn` and axum need).
#[allow(dead_code)]
fn futures_are_send(tokens: Tokens<MemoryStore<i64>>) {
    fn send<T: Send>(_: T) {}
    let id = tower_pat::TokenId::from_bytes([0; 16]);
    send(tokens.rotate(&1, id, Duration::ZERO));
    send(tokens.create(1, "x", ["orders:read"]));
    send(tokens.list_page(&1, None, 10));
    send(tokens.claim_expiry_notices(&[], 10));
}
