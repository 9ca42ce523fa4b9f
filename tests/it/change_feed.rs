//! Every writer's change is seen: two cached instances (each its own pool, cache, layer and
//! loopback server) over one database, both caches warm; a token is revoked by plain SQL
//! on a connection of its own (`UPDATE … SET revoked`, an `expires_at` moved into the
//! past, a `DELETE`), as an admin or another program would, and the other instance must
//! refuse it within the feed's bound. Measured over at least 100 revocations per database
//! and printed (`--nocapture`): PostgreSQL through the triggers' `pg_notify` and the
//! listener, SQLite through the triggers' change table and the poller.
//!
//! Also: what announces nothing (the store's own bookkeeping), a table made before the
//! feed gets it with `install_change_feed`, and a poller that cannot read pauses the cache
//! (nothing served from it while blind) until it reads again.
//!
//! The PostgreSQL tests are skipped, saying so, without `TOWER_PAT_POSTGRES_URL`.

#![cfg(feature = "cache")]

use crate::common;

use std::time::{Duration, Instant};

use axum::{Router, routing::get};
use common::{Faulty, KeepAlive, registry};
use http::StatusCode;
use tower_pat::{
    NewToken, Tokens,
    store::{CachedStore, ManageTokens},
};

/// Long enough that only the feed (or a cleared cache) can explain a refusal.
const TTL: Duration = Duration::from_secs(3600);

/// How many tokens each measurement revokes.
const REVOCATIONS: usize = 120;

/// One API instance: its own cache and server over a store.
struct Instance<St: ManageTokens> {
    tokens: Tokens<CachedStore<Faulty<St>>>,
    store: CachedStore<Faulty<St>>,
    http: KeepAlive,
}

async fn instance<St>(inner: St) -> Instance<St>
where
    St: ManageTokens<UserId = i64> + Clone,
{
    let store = CachedStore::builder().ttl(TTL).build(Faulty::new(inner));
    let tokens = Tokens::new(store.clone(), registry());
    let app = Router::new()
        .route("/orders", get(|| async { "ok" }))
        .layer(tokens.layer());
    let http = KeepAlive::new(common::serve(app).await, "/orders");
    Instance {
        tokens,
        store,
        http,
    }
}

impl<St: ManageTokens> Instance<St> {
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

/// How a plain-SQL writer takes token `i` away: revoke it, move its expiry into the past,
/// or delete its row, in turn.
#[derive(Clone, Copy, Debug)]
enum Writer {
    Revoke,
    Expire,
    Delete,
}

impl Writer {
    fn nth(i: usize) -> Self {
        [Self::Revoke, Self::Expire, Self::Delete][i % 3]
    }
}

/// Creates `n` tokens through `a` and warms both caches with them: B answers them all
/// without a store call.
async fn warm<St>(a: &Instance<St>, b: &Instance<St>, n: usize) -> Vec<NewToken<i64>>
where
    St: ManageTokens<UserId = i64> + Clone,
{
    let mut created = Vec::with_capacity(n);
    for i in 0..n {
        created.push(
            a.tokens
                .create(i as i64 % 7, "t", ["orders:read"])
                .await
                .unwrap(),
        );
    }
    for t in &created {
        assert_eq!(a.http.status(t.token.expose_secret()).await, StatusCode::OK);
        assert_eq!(b.http.status(t.token.expose_secret()).await, StatusCode::OK);
    }
    let calls = b.store_calls();
    for t in &created {
        assert_eq!(b.http.status(t.token.expose_secret()).await, StatusCode::OK);
    }
    assert_eq!(b.store_calls(), calls, "B answers from its cache");
    created
}

/// The `i`-th of a spread of waits across `interval`, so that revocations land anywhere
/// between two reads of a poller (deterministic: 0, 37, 74, … hundredths, modulo 100).
fn spread(i: usize, interval: Duration) -> Duration {
    interval * ((i * 37) % 100) as u32 / 100
}

/// Prints and returns p50 and p99 of `latencies`.
fn report(database: &str, latencies: &mut [Duration]) -> (Duration, Duration) {
    latencies.sort();
    let (p50, p99, max) = (
        percentile(latencies, 0.50),
        percentile(latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    eprintln!(
        "{database}: plain-SQL revocation seen by another cached instance, over {} revocations: \
         p50 {p50:?}, p99 {p99:?}, max {max:?}",
        latencies.len()
    );
    (p50, p99)
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    use common::db::{pg_pool, with_postgres};
    use sqlx::{AssertSqlSafe, postgres::PgListener};
    use tower_pat::PostgresStore;

    async fn store(url: &str, table: &str) -> PostgresStore<i64> {
        PostgresStore::<i64>::new(pg_pool(url).await).with_table(table)
    }

    /// Takes token `id` away by plain SQL, on `pool`, as `writer` does.
    async fn take_away(pool: &sqlx::PgPool, table: &str, writer: Writer, id: &str) {
        let sql = match writer {
            Writer::Revoke => {
                format!(r#"UPDATE "{table}" SET revoked = TRUE, updated_at = now() WHERE id = $1"#)
            }
            Writer::Expire => format!(
                r#"UPDATE "{table}" SET expires_at = now() - interval '1 second' WHERE id = $1"#
            ),
            Writer::Delete => format!(r#"DELETE FROM "{table}" WHERE id = $1"#),
        };
        let changed = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(changed, 1, "{writer:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_plain_sql_revocation_is_seen_by_another_cached_instance() {
        with_postgres(|url, table| async move {
            let first = store(&url, &table).await;
            first.migrate().await.unwrap();
            let a = instance(first).await;
            let b_store = store(&url, &table).await;
            let b = instance(b_store.clone()).await;
            let listening = b_store.listen(b.store.evictor()).await.unwrap();
            let created = warm(&a, &b, REVOCATIONS).await;

            // An admin's connection: no store, no cache, plain SQL.
            let admin = pg_pool(&url).await;
            let mut latencies = Vec::with_capacity(REVOCATIONS);
            for (i, t) in created.iter().enumerate() {
                let started = Instant::now();
                take_away(&admin, &table, Writer::nth(i), &t.record.id.to_string()).await;
                until_refused(&b.http, t.token.expose_secret(), Duration::from_secs(5)).await;
                latencies.push(started.elapsed());
            }
            for t in &created {
                assert_eq!(
                    b.http.status(t.token.expose_secret()).await,
                    StatusCode::UNAUTHORIZED
                );
            }
            assert_eq!(listening.losses(), 0);
            assert_eq!(listening.malformed(), 0);
            let (_, p99) = report("PostgreSQL (trigger, pg_notify)", &mut latencies);
            assert!(p99 < Duration::from_millis(500), "p99 {p99:?}");
        })
        .await;
    }

    /// The next notification on `listener`, within 5 s.
    async fn next(listener: &mut PgListener) -> String {
        tokio::time::timeout(Duration::from_secs(5), listener.recv())
            .await
            .expect("a notification")
            .unwrap()
            .payload()
            .to_owned()
    }

    #[tokio::test]
    async fn the_triggers_announce_what_changes_a_token_and_nothing_else() {
        with_postgres(|url, table| async move {
            let store = store(&url, &table).await;
            store.migrate().await.unwrap();
            let tokens = Tokens::new(store.clone(), registry());
            let t = tokens.create(1, "t", ["orders:read"]).await.unwrap();
            let id = t.record.id.to_string();
            let mut listener = PgListener::connect(&url).await.unwrap();
            listener.listen(store.channel()).await.unwrap();
            let run = |sql: String| {
                let pool = store.pool().clone();
                let id = id.clone();
                async move {
                    sqlx::query(AssertSqlSafe(sql))
                        .bind(id)
                        .execute(&pool)
                        .await
                        .unwrap();
                }
            };

            // The bookkeeping announces nothing; a scope taken away, a rotation, an expiry
            // moved, each announce the id. The marker after the quiet statements proves
            // nothing came before it (notifications arrive in commit order).
            run(format!(
                r#"UPDATE "{table}" SET last_used_at = now(), expiry_notice = 60, updated_at = now(), name = 'renamed' WHERE id = $1"#
            ))
            .await;
            sqlx::query("SELECT pg_notify($1, 'marker')")
                .bind(store.channel())
                .execute(store.pool())
                .await
                .unwrap();
            assert_eq!(next(&mut listener).await, "marker");
            for change in [
                "scopes = ''",
                "expires_at = expires_at - interval '1 day'",
                "rotated_to = repeat('a', 32)",
                "revoked = TRUE",
            ] {
                run(format!(r#"UPDATE "{table}" SET {change} WHERE id = $1"#)).await;
                assert_eq!(next(&mut listener).await, id, "{change}");
            }
            // Whoever writes, through the store too: the statements send nothing of their
            // own, so each change is announced once.
            let u = tokens.create(2, "u", ["orders:read"]).await.unwrap();
            tokens.revoke(&2, u.record.id).await.unwrap();
            tokens.delete(&2, u.record.id).await.unwrap();
            sqlx::query("SELECT pg_notify($1, 'marker')")
                .bind(store.channel())
                .execute(store.pool())
                .await
                .unwrap();
            assert_eq!(next(&mut listener).await, u.record.id.to_string());
            assert_eq!(next(&mut listener).await, u.record.id.to_string());
            assert_eq!(next(&mut listener).await, "marker");
            // A change rolled back announces nothing.
            let mut tx = store.pool().begin().await.unwrap();
            sqlx::query(AssertSqlSafe(format!(r#"DELETE FROM "{table}" WHERE id = $1"#)))
                .bind(&id)
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.rollback().await.unwrap();
            run(format!(r#"DELETE FROM "{table}" WHERE id = $1"#)).await;
            assert_eq!(next(&mut listener).await, id);
        })
        .await;
    }

    #[tokio::test]
    async fn a_table_made_before_the_feed_gets_it_from_install_change_feed() {
        with_postgres(|url, table| async move {
            let store = store(&url, &table).await;
            let schema = store.schema_sql();
            assert!(schema.contains("tower_pat_feed_update"), "{schema}");
            assert!(schema.contains(&format!("'tower_pat:{table}'")), "{schema}");
            assert!(schema.ends_with(&store.change_feed_sql()));
            store.migrate().await.unwrap();
            // As if made by an older schema_sql: no triggers.
            for trigger in ["tower_pat_feed_update", "tower_pat_feed_delete"] {
                sqlx::query(AssertSqlSafe(format!(
                    r#"DROP TRIGGER {trigger} ON "{table}""#
                )))
                .execute(store.pool())
                .await
                .unwrap();
            }
            let tokens = Tokens::new(store.clone(), registry());
            let t = tokens.create(1, "t", ["orders:read"]).await.unwrap();
            let mut listener = PgListener::connect(&url).await.unwrap();
            listener.listen(store.channel()).await.unwrap();
            tokens.revoke(&1, t.record.id).await.unwrap();
            sqlx::query("SELECT pg_notify($1, 'marker')")
                .bind(store.channel())
                .execute(store.pool())
                .await
                .unwrap();
            assert_eq!(next(&mut listener).await, "marker", "no feed, no notification");

            store.install_change_feed().await.unwrap();
            store.install_change_feed().await.unwrap(); // idempotent
            store.migrate().await.unwrap();
            let triggers: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname LIKE 'tower_pat_feed_%'",
            )
            .bind(format!(r#""{table}""#))
            .fetch_one(store.pool())
            .await
            .unwrap();
            assert_eq!(triggers, 2);
            let u = tokens.create(1, "u", ["orders:read"]).await.unwrap();
            tokens.revoke(&1, u.record.id).await.unwrap();
            assert_eq!(next(&mut listener).await, u.record.id.to_string());
        })
        .await;
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;

    use common::db::TempDb;
    use sqlx::{
        AssertSqlSafe, SqlitePool,
        sqlite::{SqliteConnectOptions, SqlitePoolOptions},
    };
    use tower_pat::{
        SqliteStore,
        store::{
            Evictor,
            sqlite::{DEFAULT_POLL_INTERVAL, FollowOptions},
        },
    };

    /// The table the SQLite tests use: one file each, so the default name.
    const TABLE: &str = "personal_access_tokens";

    /// A connection of its own on the file, as the `sqlite3` shell or another program
    /// would open it.
    async fn admin(db: &TempDb) -> SqlitePool {
        SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::new().filename(db.path()))
            .await
            .unwrap()
    }

    async fn exec(pool: &SqlitePool, sql: String, id: &str) -> u64 {
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected()
    }

    /// Takes token `id` away by plain SQL, on `pool`, as `writer` does.
    async fn take_away(pool: &SqlitePool, writer: Writer, id: &str) {
        let now = "CAST(strftime('%s', 'now') AS INTEGER)";
        let sql = match writer {
            Writer::Revoke => {
                format!(r#"UPDATE "{TABLE}" SET revoked = 1, updated_at = {now} WHERE id = ?1"#)
            }
            Writer::Expire => {
                format!(r#"UPDATE "{TABLE}" SET expires_at = {now} - 1 WHERE id = ?1"#)
            }
            Writer::Delete => format!(r#"DELETE FROM "{TABLE}" WHERE id = ?1"#),
        };
        assert_eq!(exec(pool, sql, id).await, 1, "{writer:?}");
    }

    /// Two instances over one file: A migrated it, B follows its changes.
    async fn pair(
        db: &TempDb,
        options: FollowOptions,
    ) -> (
        Instance<SqliteStore<i64>>,
        Instance<SqliteStore<i64>>,
        tower_pat::store::sqlite::ChangePoller,
    ) {
        let first = SqliteStore::<i64>::open(db.path()).await.unwrap();
        first.migrate().await.unwrap();
        let a = instance(first).await;
        let b_store = SqliteStore::<i64>::open(db.path()).await.unwrap();
        let b = instance(b_store.clone()).await;
        let poller = b_store
            .follow_changes_with(b.store.evictor(), options)
            .await
            .unwrap();
        (a, b, poller)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_plain_sql_revocation_is_seen_by_another_cached_instance() {
        let db = TempDb::new();
        let (a, b, poller) = pair(&db, FollowOptions::new()).await;
        let created = warm(&a, &b, REVOCATIONS).await;

        let admin = admin(&db).await;
        let mut latencies = Vec::with_capacity(REVOCATIONS);
        for (i, t) in created.iter().enumerate() {
            // Revoking right after the previous refusal would always land just after a
            // read: spread the revocations over the interval, as writers come.
            tokio::time::sleep(spread(i, DEFAULT_POLL_INTERVAL)).await;
            let started = Instant::now();
            take_away(&admin, Writer::nth(i), &t.record.id.to_string()).await;
            until_refused(&b.http, t.token.expose_secret(), Duration::from_secs(5)).await;
            latencies.push(started.elapsed());
        }
        for t in &created {
            assert_eq!(
                b.http.status(t.token.expose_secret()).await,
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(poller.failures(), 0);
        assert_eq!(poller.malformed(), 0);
        assert!(poller.evicted() >= REVOCATIONS as u64);
        let (_, p99) = report(
            &format!("SQLite (trigger, change table, a read every {DEFAULT_POLL_INTERVAL:?})"),
            &mut latencies,
        );
        assert!(
            p99 < DEFAULT_POLL_INTERVAL + Duration::from_millis(250),
            "p99 {p99:?}"
        );
    }

    /// The token ids in the change table, in order.
    async fn recorded(pool: &SqlitePool) -> Vec<String> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            r#"SELECT token_id FROM "{TABLE}_changes" ORDER BY id"#
        )))
        .fetch_all(pool)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn the_triggers_record_what_changes_a_token_and_nothing_else() {
        let db = TempDb::new();
        let store = SqliteStore::<i64>::open(db.path()).await.unwrap();
        let schema = store.schema_sql();
        assert!(
            schema.contains(r#"CREATE TRIGGER IF NOT EXISTS "personal_access_tokens_feed_update""#)
        );
        assert!(schema.ends_with(&store.change_feed_sql()));
        store.migrate().await.unwrap();
        store.migrate().await.unwrap(); // idempotent
        let tokens = Tokens::new(store.clone(), registry());
        let t = tokens.create(1, "t", ["orders:read"]).await.unwrap();
        let id = t.record.id.to_string();
        let admin = admin(&db).await;

        exec(
            &admin,
            format!(
                r#"UPDATE "{TABLE}" SET last_used_at = 5, expiry_notice = 60, updated_at = 7, name = 'renamed' WHERE id = ?1"#
            ),
            &id,
        )
        .await;
        assert!(
            recorded(&admin).await.is_empty(),
            "bookkeeping is no change"
        );
        let changes = [
            "scopes = ''",
            "expires_at = expires_at - 86400",
            "rotated_to = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'",
            "revoked = 1",
        ];
        for change in changes {
            exec(
                &admin,
                format!(r#"UPDATE "{TABLE}" SET {change} WHERE id = ?1"#),
                &id,
            )
            .await;
        }
        assert_eq!(recorded(&admin).await, vec![id.clone(); changes.len()]);
        // Through the store: each change recorded once.
        let u = tokens.create(2, "u", ["orders:read"]).await.unwrap();
        tokens.revoke(&2, u.record.id).await.unwrap();
        tokens.delete(&2, u.record.id).await.unwrap();
        // A change rolled back records nothing.
        let mut tx = admin.begin().await.unwrap();
        sqlx::query(AssertSqlSafe(format!(
            r#"DELETE FROM "{TABLE}" WHERE id = ?1"#
        )))
        .bind(&id)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.rollback().await.unwrap();
        let all = recorded(&admin).await;
        assert_eq!(all.len(), changes.len() + 2, "{all:?}");
        assert_eq!(
            all[changes.len()..],
            [u.record.id.to_string(), u.record.id.to_string()]
        );

        // A table made before the feed: install_change_feed puts it on.
        for trigger in ["feed_update", "feed_delete"] {
            sqlx::query(AssertSqlSafe(format!(
                r#"DROP TRIGGER "{TABLE}_{trigger}""#
            )))
            .execute(&admin)
            .await
            .unwrap();
        }
        tokens.revoke(&1, t.record.id).await.unwrap();
        let w = tokens.create(3, "w", ["orders:read"]).await.unwrap();
        tokens.delete(&3, w.record.id).await.unwrap();
        assert_eq!(
            recorded(&admin).await.len(),
            all.len(),
            "no feed, no record"
        );
        store.install_change_feed().await.unwrap();
        store.install_change_feed().await.unwrap();
        let v = tokens.create(3, "v", ["orders:read"]).await.unwrap();
        tokens.delete(&3, v.record.id).await.unwrap();
        assert_eq!(
            recorded(&admin).await.last(),
            Some(&v.record.id.to_string())
        );
    }

    /// Waits until `evictor` is paused (`true`) or not (`false`); panics after 5 s.
    async fn until_paused(evictor: &Evictor<i64>, paused: bool) {
        let started = Instant::now();
        while evictor.is_paused() != paused {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "paused is still {}",
                !paused
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    // One thread: the log capture sees the poller's warnings.
    #[tokio::test]
    async fn a_poller_that_cannot_read_pauses_the_cache_until_it_reads_again() {
        let logs = common::LogCapture::start();
        let db = TempDb::new();
        let interval = Duration::from_millis(50);
        let (a, b, poller) = pair(&db, FollowOptions::new().interval(interval)).await;
        let created = warm(&a, &b, 4).await;
        let evictor = b.store.evictor();
        assert!(!evictor.is_paused());
        let admin = admin(&db).await;

        // The change table goes away: B's reads fail, and B pauses its cache.
        sqlx::query(AssertSqlSafe(format!(
            r#"ALTER TABLE "{TABLE}_changes" RENAME TO "{TABLE}_elsewhere""#
        )))
        .execute(&admin)
        .await
        .unwrap();
        until_paused(&evictor, true).await;
        assert!(poller.failures() > 0);
        // Blind: nothing is served from the cache, every request asks the store.
        let before = b.store_calls();
        for _ in 0..3 {
            assert_eq!(
                b.http.status(created[0].token.expose_secret()).await,
                StatusCode::OK
            );
        }
        assert_eq!(b.store_calls(), before + 3, "nothing served from the cache");
        // So a revocation B cannot read about is refused at once.
        take_away(&admin, Writer::Revoke, &created[1].record.id.to_string()).await;
        assert_eq!(
            b.http.status(created[1].token.expose_secret()).await,
            StatusCode::UNAUTHORIZED
        );

        // The table comes back: B reads again, catches up, and uses its cache again.
        sqlx::query(AssertSqlSafe(format!(
            r#"ALTER TABLE "{TABLE}_elsewhere" RENAME TO "{TABLE}_changes""#
        )))
        .execute(&admin)
        .await
        .unwrap();
        until_paused(&evictor, false).await;
        assert_eq!(
            b.http.status(created[1].token.expose_secret()).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            b.http.status(created[2].token.expose_secret()).await,
            StatusCode::OK
        );
        let cached = b.store_calls();
        assert_eq!(
            b.http.status(created[2].token.expose_secret()).await,
            StatusCode::OK
        );
        assert_eq!(b.store_calls(), cached, "cached again");
        // And it follows: a change now is seen within the bound.
        take_away(&admin, Writer::Delete, &created[3].record.id.to_string()).await;
        until_refused(
            &b.http,
            created[3].token.expose_secret(),
            interval + Duration::from_secs(1),
        )
        .await;
        assert!(
            logs.text().contains("cannot read the change table"),
            "{}",
            logs.text()
        );
        assert!(logs.text().contains("reads again"), "{}", logs.text());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_row_that_is_not_a_token_id_clears_the_cache() {
        let db = TempDb::new();
        let (a, b, poller) = pair(
            &db,
            FollowOptions::new().interval(Duration::from_millis(20)),
        )
        .await;
        let created = warm(&a, &b, 1).await;
        let admin = admin(&db).await;
        exec(
            &admin,
            format!(r#"INSERT INTO "{TABLE}_changes" (token_id, changed_at) VALUES (?1, 0)"#),
            "42",
        )
        .await;
        let started = Instant::now();
        while poller.malformed() == 0 {
            assert!(started.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let before = b.store_calls();
        assert_eq!(
            b.http.status(created[0].token.expose_secret()).await,
            StatusCode::OK
        );
        assert_eq!(b.store_calls(), before + 1, "the cache was cleared");
        assert!(!b.store.evictor().is_paused());
    }

    #[tokio::test]
    async fn following_a_table_without_its_feed_says_how_to_install_it() {
        let store = SqliteStore::<i64>::open(":memory:").await.unwrap();
        let cache = CachedStore::new(store.clone());
        let err = store.follow_changes(cache.evictor()).await.unwrap_err();
        assert!(err.to_string().contains("install_change_feed"), "{err}");
        store.migrate().await.unwrap();
        let poller = store.follow_changes(cache.evictor()).await.unwrap();
        poller.stop();
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use super::*;

    use common::db::{mysql_pool, with_mysql};
    use sqlx::{AssertSqlSafe, MySqlPool};
    use tower_pat::{
        MySqlStore,
        store::mysql::{DEFAULT_POLL_INTERVAL, FollowOptions},
    };

    async fn store(url: &str, table: &str) -> MySqlStore<i64> {
        MySqlStore::<i64>::new(mysql_pool(url).await).with_table(table)
    }

    /// Runs `sql` with `id` as its one parameter; how many rows it changed.
    async fn exec(pool: &MySqlPool, sql: String, id: &str) -> u64 {
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected()
    }

    /// Takes token `id` away by plain SQL, on `pool`, as `writer` does.
    async fn take_away(pool: &MySqlPool, table: &str, writer: Writer, id: &str) {
        let sql = match writer {
            Writer::Revoke => format!(
                "UPDATE `{table}` SET revoked = TRUE, updated_at = UTC_TIMESTAMP(6) WHERE id = ?"
            ),
            Writer::Expire => format!(
                "UPDATE `{table}` SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND WHERE id = ?"
            ),
            Writer::Delete => format!("DELETE FROM `{table}` WHERE id = ?"),
        };
        assert_eq!(exec(pool, sql, id).await, 1, "{writer:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_plain_sql_revocation_is_seen_by_another_cached_instance() {
        with_mysql(|url, table| async move {
            let first = store(&url, &table).await;
            first.migrate().await.unwrap();
            let a = instance(first).await;
            let b_store = store(&url, &table).await;
            let b = instance(b_store.clone()).await;
            let poller = b_store.follow_changes(b.store.evictor()).await.unwrap();
            let created = warm(&a, &b, REVOCATIONS).await;

            let admin = mysql_pool(&url).await;
            let mut latencies = Vec::with_capacity(REVOCATIONS);
            for (i, t) in created.iter().enumerate() {
                tokio::time::sleep(spread(i, DEFAULT_POLL_INTERVAL)).await;
                let started = Instant::now();
                take_away(&admin, &table, Writer::nth(i), &t.record.id.to_string()).await;
                until_refused(&b.http, t.token.expose_secret(), Duration::from_secs(5)).await;
                latencies.push(started.elapsed());
            }
            for t in &created {
                assert_eq!(
                    b.http.status(t.token.expose_secret()).await,
                    StatusCode::UNAUTHORIZED
                );
            }
            assert_eq!(poller.failures(), 0);
            assert_eq!(poller.malformed(), 0);
            // Each change evicted once, though the last ten seconds are read again.
            assert_eq!(poller.evicted(), REVOCATIONS as u64);
            let (_, p99) = report(
                &format!(
                    "MariaDB/MySQL (trigger, change table, a read every {DEFAULT_POLL_INTERVAL:?})"
                ),
                &mut latencies,
            );
            assert!(
                p99 < DEFAULT_POLL_INTERVAL + Duration::from_millis(250),
                "p99 {p99:?}"
            );
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_that_commits_after_later_ones_is_still_seen() {
        with_mysql(|url, table| async move {
            let first = store(&url, &table).await;
            first.migrate().await.unwrap();
            let a = instance(first).await;
            let b_store = store(&url, &table).await;
            let b = instance(b_store.clone()).await;
            let poller = b_store
                .follow_changes_with(
                    b.store.evictor(),
                    FollowOptions::new().interval(Duration::from_millis(50)),
                )
                .await
                .unwrap();
            let created = warm(&a, &b, 2).await;
            let admin = mysql_pool(&url).await;

            // The first writer takes its change-table id, then waits before committing; a
            // second writer's change (a higher id) commits and is read meanwhile.
            let mut slow = admin.begin().await.unwrap();
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE `{table}` SET revoked = TRUE WHERE id = ?"
            )))
            .bind(created[0].record.id.to_string())
            .execute(&mut *slow)
            .await
            .unwrap();
            take_away(
                &admin,
                &table,
                Writer::Delete,
                &created[1].record.id.to_string(),
            )
            .await;
            until_refused(
                &b.http,
                created[1].token.expose_secret(),
                Duration::from_secs(5),
            )
            .await;
            assert_eq!(
                b.http.status(created[0].token.expose_secret()).await,
                StatusCode::OK
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            slow.commit().await.unwrap();
            until_refused(
                &b.http,
                created[0].token.expose_secret(),
                Duration::from_secs(2),
            )
            .await;
            assert_eq!(poller.evicted(), 2);
        })
        .await;
    }

    #[tokio::test]
    async fn the_triggers_record_what_changes_a_token_and_nothing_else() {
        with_mysql(|url, table| async move {
            let store = store(&url, &table).await;
            let schema = store.schema_sql();
            assert!(
                schema.contains(&format!("CREATE TRIGGER `{table}_feed_update`")),
                "{schema}"
            );
            store.migrate().await.unwrap();
            store.migrate().await.unwrap(); // idempotent
            let tokens = Tokens::new(store.clone(), registry());
            let t = tokens.create(1, "t", ["orders:read"]).await.unwrap();
            let id = t.record.id.to_string();
            let admin = mysql_pool(&url).await;
            let recorded = || {
                let admin = admin.clone();
                let table = table.clone();
                async move {
                    sqlx::query_scalar::<_, String>(AssertSqlSafe(format!(
                        "SELECT CAST(token_id AS CHAR) FROM `{table}_changes` ORDER BY id"
                    )))
                    .fetch_all(&admin)
                    .await
                    .unwrap()
                }
            };
            exec(
                &admin,
                format!(
                    "UPDATE `{table}` SET last_used_at = UTC_TIMESTAMP(6), expiry_notice = 60, updated_at = UTC_TIMESTAMP(6), name = 'renamed' WHERE id = ?"
                ),
                &id,
            )
            .await;
            assert!(recorded().await.is_empty(), "bookkeeping is no change");
            let changes = [
                "scopes = ''",
                "expires_at = expires_at - INTERVAL 1 DAY",
                "rotated_to = REPEAT('a', 32)",
                "revoked = TRUE",
            ];
            for change in changes {
                exec(&admin, format!("UPDATE `{table}` SET {change} WHERE id = ?"), &id).await;
            }
            assert_eq!(recorded().await, vec![id.clone(); changes.len()]);

            // A table made before the feed: install_change_feed puts it on.
            for trigger in ["feed_update", "feed_delete"] {
                sqlx::query(AssertSqlSafe(format!("DROP TRIGGER `{table}_{trigger}`")))
                    .execute(&admin)
                    .await
                    .unwrap();
            }
            tokens.delete(&1, t.record.id).await.unwrap();
            assert_eq!(recorded().await.len(), changes.len(), "no feed, no record");
            store.install_change_feed().await.unwrap();
            store.install_change_feed().await.unwrap();
            let v = tokens.create(3, "v", ["orders:read"]).await.unwrap();
            tokens.delete(&3, v.record.id).await.unwrap();
            assert_eq!(recorded().await.last(), Some(&v.record.id.to_string()));
        })
        .await;
    }
}
