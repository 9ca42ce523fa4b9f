//! The shipped stores against the conformance kit, against bad rows, and their own knobs:
//! `MemoryStore`; `SqliteStore` on a temp file and on `:memory:`; `PostgresStore` at
//! `TOWER_PAT_POSTGRES_URL` and `MySqlStore` at `TOWER_PAT_MYSQL_URL` (each test on a
//! table of its own, dropped afterwards; skipped, saying so, when the variable is unset).

#![cfg(feature = "test-kit")]

use tower_pat::{MemoryStore, testing::Conformance};

#[tokio::test]
async fn memory_store_conforms() {
    Conformance::new(|n| i64::from(n) + 1)
        .client_id(true)
        .last_used(true)
        .manage_tokens(&MemoryStore::<i64>::new())
        .await;
}

/// What the SQL stores' tests share.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod shared {
    pub(crate) use tower_pat::{
        record::{TokenId, TokenRecord},
        scope::Scopes,
        store::{StoreError, StoreErrorKind},
        testing::Conformance,
        token::TokenHash,
    };

    /// An active record of `user` with scope `orders:read`, created at a whole second.
    pub(crate) fn record(user: i64) -> TokenRecord<i64> {
        let now = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap();
        TokenRecord::new(
            TokenId::random().unwrap(),
            user,
            TokenHash::of(&TokenId::random().unwrap().to_string()),
            now,
            now + time::Duration::days(1),
        )
        .with_name("test")
        .with_scopes(Scopes::try_from_iter(["orders:read"]).unwrap())
    }

    /// The error is `Corrupt` and names the row and what is wrong with it.
    #[track_caller]
    pub(crate) fn assert_corrupt<T: std::fmt::Debug>(
        result: Result<T, StoreError>,
        row: &str,
        what: &str,
    ) {
        let err = result.expect_err("a bad row must be an error");
        assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
        let message = err.to_string();
        assert!(message.contains(&format!("token row {row}")), "{message}");
        assert!(message.contains(what), "{message}");
    }

    /// A 32-hex-digit id made of one repeated digit.
    pub(crate) fn row_id(digit: char) -> String {
        std::iter::repeat_n(digit, 32).collect()
    }

    /// A store whose prune deletes in batches of 3: 10 expired rows of user 1 and 5 of
    /// user 2's 10 revoked ones go (in batches 3, 3, 3, 1, then 3, 2), the rest stay.
    pub(crate) async fn prunes_in_batches_of_three<S>(store: &S)
    where
        S: tower_pat::ManageTokens<UserId = i64>,
    {
        let now = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap();
        for i in 0..10 {
            let mut expired = record(1);
            expired.expires_at = now - time::Duration::days(1);
            store.insert(expired).await.unwrap();
            let mut revoked = record(2);
            revoked.revoked = i % 2 == 0;
            revoked.updated_at = now - time::Duration::days(1);
            store.insert(revoked).await.unwrap();
        }
        assert_eq!(store.prune(now).await.unwrap(), 15);
        assert_eq!(store.list(&1).await.unwrap().len(), 0);
        assert_eq!(store.list(&2).await.unwrap().len(), 5);
    }

    /// Writes each bad row of `cases` (`column`, SQL `value`, what the error must say) with
    /// `write(user, id, hash, column, value)`, and rows whose ids are not canonical, and
    /// checks that every read of each (by hash, by user, by id) is `Corrupt` naming it.
    pub(crate) async fn bad_rows_are_corrupt<S, W, F>(
        store: &S,
        cases: &[(&str, &str, &str)],
        write: W,
    ) where
        S: tower_pat::ManageTokens<UserId = i64>,
        W: Fn(i64, String, TokenHash, String, String) -> F,
        F: std::future::Future<Output = ()>,
    {
        for (n, (column, value, what)) in cases.iter().enumerate() {
            let user = 100 + n as i64;
            let id = TokenId::random().unwrap().to_string();
            let hash = TokenHash::of(&id);
            write(
                user,
                id.clone(),
                hash,
                column.to_string(),
                value.to_string(),
            )
            .await;
            if *column != "token_hash" {
                assert_corrupt(store.find(&hash).await, &id, what);
            }
            if *column != "user_id" {
                assert_corrupt(store.list(&user).await, &id, what);
            }
            assert_corrupt(store.get(id.parse().unwrap()).await, &id, what);
        }
        // Ids that are not the canonical 32 lowercase hex digits.
        for (n, bad_id) in ["XYZ".to_owned(), row_id('A')].iter().enumerate() {
            let user = 200 + n as i64;
            let hash = TokenHash::of(bad_id);
            write(user, bad_id.clone(), hash, "name".into(), "'bad id'".into()).await;
            let what = "id is not 32 lowercase hex digits";
            assert_corrupt(store.find(&hash).await, bad_id, what);
            assert_corrupt(store.list(&user).await, bad_id, what);
        }
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::shared::*;
    use sqlx::{AssertSqlSafe, SqlitePool};
    use tower_pat::{
        ManageTokens, SqliteStore, TokenStore, Tokens, scope::ScopeRegistry, store::Revoked,
    };

    use crate::common::db::{TempDb, unique_table};

    #[tokio::test]
    async fn file_store_conforms() {
        let file = TempDb::new();
        let store = SqliteStore::<i64>::open(file.path()).await.unwrap();
        store.migrate().await.unwrap();
        Conformance::new(|n| i64::from(n) + 1)
            .client_id(true)
            .last_used(true)
            .manage_tokens(&store)
            .await;
        store.pool().close().await;
    }

    #[tokio::test]
    async fn in_memory_store_conforms() {
        let store = SqliteStore::<i64>::open(":memory:").await.unwrap();
        store.migrate().await.unwrap();
        Conformance::new(|n| i64::from(n) + 1)
            .client_id(true)
            .last_used(true)
            .manage_tokens(&store)
            .await;
    }

    #[tokio::test]
    async fn uuid_and_string_user_ids_conform() {
        let store = SqliteStore::<uuid::Uuid>::open(":memory:").await.unwrap();
        store.migrate().await.unwrap();
        assert!(store.schema_sql().contains("user_id      BLOB NOT NULL"));
        Conformance::new(|_| uuid::Uuid::new_v4())
            .client_id(true)
            .last_used(true)
            .manage_tokens(&store)
            .await;

        let store = SqliteStore::<String>::open(":memory:").await.unwrap();
        store.migrate().await.unwrap();
        assert!(store.schema_sql().contains("user_id      TEXT NOT NULL"));
        Conformance::new(|n| format!("user-{n}"))
            .client_id(true)
            .last_used(true)
            .manage_tokens(&store)
            .await;
    }

    #[tokio::test]
    async fn tokens_survive_a_reopen_and_migrate_is_idempotent() {
        let file = TempDb::new();
        let registry = ScopeRegistry::new().scope("orders:read", "See orders");
        let store = SqliteStore::<i64>::open(file.path()).await.unwrap();
        store.migrate().await.unwrap();
        store.migrate().await.unwrap();
        let pool = store.pool().clone();
        let tokens = Tokens::new(store, registry.clone());
        let created = tokens.create(7, "laptop", ["orders:read"]).await.unwrap();
        drop(tokens);
        pool.close().await;

        let store = SqliteStore::<i64>::open(file.path()).await.unwrap();
        store.migrate().await.unwrap();
        let found = store.find(&created.token.hash()).await.unwrap().unwrap();
        assert_eq!(*found, created.record);
        store.pool().close().await;
    }

    #[tokio::test]
    async fn tables_do_not_see_each_other() {
        let store = SqliteStore::<i64>::open(":memory:").await.unwrap();
        let a = store.clone().with_table("tokens_a");
        let b = store.with_table("tokens_b");
        assert_eq!((a.table(), b.table()), ("tokens_a", "tokens_b"));
        a.migrate().await.unwrap();
        b.migrate().await.unwrap();
        let token = record(1);
        a.insert(token.clone()).await.unwrap();
        assert!(a.find(&token.token_hash).await.unwrap().is_some());
        assert!(b.find(&token.token_hash).await.unwrap().is_none());
        assert_eq!(
            b.revoke(&1, token.id, token.created_at).await.unwrap(),
            Revoked::NotFound
        );
    }

    #[tokio::test]
    async fn prune_deletes_in_batches() {
        let store = SqliteStore::<i64>::open(":memory:")
            .await
            .unwrap()
            .prune_batch_size(3);
        store.migrate().await.unwrap();
        prunes_in_batches_of_three(&store).await;
    }

    /// A table without the shipped schema's constraints (one made by hand, say), so that
    /// bad rows can be written.
    async fn loose_table(pool: &SqlitePool, table: &str) {
        sqlx::query(AssertSqlSafe(format!(
            r#"CREATE TABLE "{table}" (id, user_id, client_id, name, scopes, token_hash,
               revoked, created_at, updated_at, expires_at, last_used_at, rotated_from,
               rotated_to)"#
        )))
        .execute(pool)
        .await
        .unwrap();
    }

    /// Writes a good row of `user` with `id`, then breaks `column` with `value`.
    async fn bad_row(
        pool: &SqlitePool,
        table: &str,
        user: i64,
        id: &str,
        hash: &TokenHash,
        column: &str,
        value: &str,
    ) {
        sqlx::query(AssertSqlSafe(format!(
            r#"INSERT INTO "{table}" VALUES (?1, ?2, NULL, 'bad', 'orders:read', ?3, 0,
               1700000000, 1700000000, 4000000000, NULL, NULL, NULL)"#
        )))
        .bind(id)
        .bind(user)
        .bind(&hash.as_bytes()[..])
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(AssertSqlSafe(format!(
            r#"UPDATE "{table}" SET {column} = {value} WHERE id = ?1"#
        )))
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn bad_rows_are_corrupt_errors_naming_the_row() {
        let store = SqliteStore::<i64>::open(":memory:").await.unwrap();
        let table = unique_table();
        loose_table(store.pool(), &table).await;
        let store = store.with_table(&table);

        let cases: &[(&str, &str, &str)] = &[
            (
                "scopes",
                r#"'["orders:read","admin"]'"#,
                "scopes do not parse",
            ),
            (
                "scopes",
                "'orders:read' || char(9) || 'admin'",
                "scopes do not parse",
            ),
            ("name", "NULL", "name is NULL"),
            ("scopes", "NULL", "scopes is NULL"),
            (
                "token_hash",
                "zeroblob(16)",
                "token_hash is 16 bytes, not 32",
            ),
            ("revoked", "2", "revoked is 2, not 0 or 1"),
            ("revoked", "'yes'", "revoked cannot be read"),
            ("user_id", "'seven'", "user_id cannot be read"),
            ("created_at", "'yesterday'", "created_at cannot be read"),
            ("expires_at", "NULL", "expires_at is NULL"),
            (
                "last_used_at",
                "999999999999999",
                "last_used_at is out of range",
            ),
        ];
        let bad_rows_pool = store.pool().clone();
        bad_rows_are_corrupt(&store, cases, |user, id, hash, column, value| {
            let (pool, table) = (bad_rows_pool.clone(), table.clone());
            async move { bad_row(&pool, &table, user, &id, &hash, &column, &value).await }
        })
        .await;
    }

    #[tokio::test]
    async fn the_schema_refuses_bad_rows() {
        let store = SqliteStore::<i64>::open(":memory:").await.unwrap();
        store.migrate().await.unwrap();
        let table = store.table().to_owned();
        let good = row_id('a');
        let hash = TokenHash::of("x");
        let insert = |id: String, name: Option<&'static str>, hash: Vec<u8>, revoked: i64| {
            sqlx::query(AssertSqlSafe(format!(
                r#"INSERT INTO "{table}" (id, user_id, name, scopes, token_hash, revoked,
                   created_at, updated_at, expires_at) VALUES (?1, 1, ?2, '', ?3, ?4, 0, 0, 0)"#
            )))
            .bind(id)
            .bind(name)
            .bind(hash)
            .bind(revoked)
            .execute(store.pool())
        };
        let full = hash.as_bytes().to_vec();
        assert!(
            insert(good.clone(), None, full.clone(), 0).await.is_err(),
            "NULL name"
        );
        assert!(
            insert(good.clone(), Some("n"), full[..16].to_vec(), 0)
                .await
                .is_err(),
            "short hash"
        );
        assert!(
            insert(good.clone(), Some("n"), full.clone(), 2)
                .await
                .is_err(),
            "revoked = 2"
        );
        assert!(
            insert(row_id('A'), Some("n"), full.clone(), 0)
                .await
                .is_err(),
            "uppercase id"
        );
        assert!(
            insert("abc".into(), Some("n"), full.clone(), 0)
                .await
                .is_err(),
            "short id"
        );
        insert(good, Some("n"), full, 0).await.expect("a good row");
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::shared::*;
    use sqlx::{AssertSqlSafe, PgPool};
    use tower_pat::{ManageTokens, PostgresStore, TokenStore};

    use crate::common::db::{pg_pool, with_postgres};

    #[tokio::test]
    async fn store_conforms() {
        with_postgres(|url, table| async move {
            let store = PostgresStore::<i64>::new(pg_pool(&url).await).with_table(&table);
            store.migrate().await.unwrap();
            Conformance::new(|n| i64::from(n) + 1)
                .client_id(true)
                .last_used(true)
                .manage_tokens(&store)
                .await;
        })
        .await;
    }

    #[tokio::test]
    async fn store_conforms_with_uuid_user_ids() {
        with_postgres(|url, table| async move {
            let store = PostgresStore::<uuid::Uuid>::new(pg_pool(&url).await).with_table(&table);
            assert!(store.schema_sql().contains("user_id      UUID NOT NULL"));
            store.migrate().await.unwrap();
            Conformance::new(|_| uuid::Uuid::new_v4())
                .client_id(true)
                .last_used(true)
                .manage_tokens(&store)
                .await;
        })
        .await;
    }

    #[tokio::test]
    async fn migrate_is_idempotent_and_safe_when_instances_start_together() {
        with_postgres(|url, table| async move {
            let stores: Vec<_> = futures_util::future::join_all((0..4).map(|_| async {
                PostgresStore::<i64>::new(pg_pool(&url).await).with_table(&table)
            }))
            .await;
            let results = futures_util::future::join_all(stores.iter().map(|s| s.migrate())).await;
            for result in results {
                result.expect("concurrent migrations take turns");
            }
            stores[0].migrate().await.unwrap();
            let token = record(1);
            stores[1].insert(token.clone()).await.unwrap();
            let found = stores[2].find(&token.token_hash).await.unwrap().unwrap();
            assert_eq!(*found, token);
        })
        .await;
    }

    #[tokio::test]
    async fn prune_deletes_in_batches() {
        with_postgres(|url, table| async move {
            let store = PostgresStore::<i64>::new(pg_pool(&url).await)
                .with_table(&table)
                .prune_batch_size(3);
            store.migrate().await.unwrap();
            prunes_in_batches_of_three(&store).await;
        })
        .await;
    }

    /// A table without the shipped schema's constraints (an adapted one, say), so that
    /// bad rows can be written.
    async fn loose_table(pool: &PgPool, table: &str) {
        sqlx::query(AssertSqlSafe(format!(
            r#"CREATE TABLE "{table}" (id TEXT, user_id INT8, client_id TEXT, name TEXT,
               scopes TEXT, token_hash BYTEA, revoked BOOLEAN, created_at TIMESTAMPTZ,
               updated_at TIMESTAMPTZ, expires_at TIMESTAMPTZ, last_used_at TIMESTAMPTZ,
               rotated_from TEXT, rotated_to TEXT)"#
        )))
        .execute(pool)
        .await
        .unwrap();
    }

    /// Writes a good row of `user` with `id`, then breaks `column` with `value`.
    async fn bad_row(
        pool: &PgPool,
        table: &str,
        user: i64,
        id: &str,
        hash: &TokenHash,
        column: &str,
        value: &str,
    ) {
        sqlx::query(AssertSqlSafe(format!(
            r#"INSERT INTO "{table}" VALUES ($1, $2, NULL, 'bad', 'orders:read', $3, FALSE,
               now(), now(), now() + interval '1 day', NULL, NULL, NULL)"#
        )))
        .bind(id)
        .bind(user)
        .bind(&hash.as_bytes()[..])
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(AssertSqlSafe(format!(
            r#"UPDATE "{table}" SET {column} = {value} WHERE id = $1"#
        )))
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn bad_rows_are_corrupt_errors_naming_the_row() {
        with_postgres(|url, table| async move {
            let pool = pg_pool(&url).await;
            loose_table(&pool, &table).await;
            let store = PostgresStore::<i64>::new(pool.clone()).with_table(&table);

            let cases: &[(&str, &str, &str)] = &[
                (
                    "scopes",
                    r#"'["orders:read","admin"]'"#,
                    "scopes do not parse",
                ),
                (
                    "scopes",
                    "'orders:read' || chr(9) || 'admin'",
                    "scopes do not parse",
                ),
                ("scopes", "'orders:read ünïcode'", "scopes do not parse"),
                ("name", "NULL", "name is NULL"),
                ("scopes", "NULL", "scopes is NULL"),
                (
                    "token_hash",
                    "'\\x0102'::bytea",
                    "token_hash is 2 bytes, not 32",
                ),
                ("revoked", "NULL", "revoked is NULL"),
                ("user_id", "NULL", "user_id is NULL"),
                ("expires_at", "NULL", "expires_at is NULL"),
            ];
            let bad_rows_pool = pool.clone();
            bad_rows_are_corrupt(&store, cases, |user, id, hash, column, value| {
                let (pool, table) = (bad_rows_pool.clone(), table.clone());
                async move { bad_row(&pool, &table, user, &id, &hash, &column, &value).await }
            })
            .await;

            // A column of the wrong type is bad data too, named by row.
            let id = TokenId::random().unwrap().to_string();
            let hash = TokenHash::of(&id);
            bad_row(&pool, &table, 300, &id, &hash, "name", "'ok'").await;
            sqlx::query(AssertSqlSafe(format!(
                r#"ALTER TABLE "{table}" ALTER COLUMN revoked TYPE TEXT"#
            )))
            .execute(&pool)
            .await
            .unwrap();
            // A new pool: the old one's prepared statements predate the column's new type.
            let store = PostgresStore::<i64>::new(pg_pool(&url).await).with_table(&table);
            assert_corrupt(store.find(&hash).await, &id, "revoked cannot be read");
        })
        .await;
    }

    #[tokio::test]
    async fn the_schema_refuses_bad_rows() {
        with_postgres(|url, table| async move {
            let pool = pg_pool(&url).await;
            let store = PostgresStore::<i64>::new(pool.clone()).with_table(&table);
            store.migrate().await.unwrap();
            let full = TokenHash::of("x").as_bytes().to_vec();
            let insert = |id: String, name: Option<&'static str>, hash: Vec<u8>| {
                sqlx::query(AssertSqlSafe(format!(
                    r#"INSERT INTO "{table}" (id, user_id, name, scopes, token_hash,
                       created_at, updated_at, expires_at) VALUES ($1, 1, $2, '', $3, now(), now(), now())"#
                )))
                .bind(id)
                .bind(name)
                .bind(hash)
                .execute(&pool)
            };
            let good = row_id('a');
            assert!(insert(good.clone(), None, full.clone()).await.is_err(), "NULL name");
            assert!(insert(good.clone(), Some("n"), full[..16].to_vec()).await.is_err(), "short hash");
            assert!(insert(row_id('A'), Some("n"), full.clone()).await.is_err(), "uppercase id");
            assert!(insert("abc".into(), Some("n"), full.clone()).await.is_err(), "short id");
            insert(good, Some("n"), full).await.expect("a good row");
        })
        .await;
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use super::shared::*;
    use sqlx::{AssertSqlSafe, MySqlPool};
    use tower_pat::{ManageTokens, MySqlStore, TokenStore, store::Rotated};

    use crate::common::db::{mysql_pool, with_mysql};

    #[tokio::test]
    async fn store_conforms() {
        with_mysql(|url, table| async move {
            let store = MySqlStore::<i64>::new(mysql_pool(&url).await).with_table(&table);
            store.migrate().await.unwrap();
            Conformance::new(|n| i64::from(n) + 1)
                .client_id(true)
                .last_used(true)
                .manage_tokens(&store)
                .await;
        })
        .await;
    }

    #[tokio::test]
    async fn store_conforms_with_string_user_ids() {
        with_mysql(|url, table| async move {
            let store = MySqlStore::<String>::new(mysql_pool(&url).await).with_table(&table);
            assert!(
                store
                    .schema_sql()
                    .contains("user_id      VARCHAR(255) NOT NULL")
            );
            store.migrate().await.unwrap();
            Conformance::new(|n| format!("user-{n}"))
                .client_id(true)
                .last_used(true)
                .manage_tokens(&store)
                .await;
        })
        .await;
    }

    #[tokio::test]
    async fn store_conforms_with_uuid_user_ids() {
        with_mysql(|url, table| async move {
            let store = MySqlStore::<uuid::Uuid>::new(mysql_pool(&url).await).with_table(&table);
            assert!(
                store
                    .schema_sql()
                    .contains("user_id      VARBINARY(255) NOT NULL")
            );
            store.migrate().await.unwrap();
            Conformance::new(|_| uuid::Uuid::new_v4())
                .client_id(true)
                .last_used(true)
                .manage_tokens(&store)
                .await;
        })
        .await;
    }

    #[tokio::test]
    async fn string_user_ids_compare_byte_for_byte() {
        with_mysql(|url, table| async move {
            let store = MySqlStore::<String>::new(mysql_pool(&url).await).with_table(&table);
            store.migrate().await.unwrap();
            let user = "Ann".to_owned();
            let token = record(1);
            let owned = TokenRecord::new(
                token.id,
                user.clone(),
                token.token_hash,
                token.created_at,
                token.expires_at,
            )
            .with_name("x");
            store.insert(owned.clone()).await.unwrap();
            assert_eq!(store.list(&user).await.unwrap().len(), 1);
            assert!(store.list(&"ann".to_owned()).await.unwrap().is_empty());
            assert!(!store.delete(&"ANN".to_owned(), owned.id).await.unwrap());
        })
        .await;
    }

    /// Claims of expiry notices from several instances at once (each with a pool of its
    /// own) never take one token twice, and take every token once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_claims_take_each_token_once() {
        with_mysql(|url, table| async move {
            let stores: Vec<_> = futures_util::future::join_all((0..4).map(|_| async {
                MySqlStore::<i64>::new(mysql_pool(&url).await).with_table(&table)
            }))
            .await;
            stores[0].migrate().await.unwrap();
            let now = time::OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap();
            const TOKENS: usize = 200;
            for i in 0..TOKENS {
                let mut token = record(1 + (i % 7) as i64);
                token.expires_at = now + time::Duration::minutes(10 + i as i64);
                stores[0].insert(token).await.unwrap();
            }
            let within = time::Duration::days(1);
            let claims = stores.iter().map(|store| async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_expiry_notices(within, now, 7).await.unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|r| r.id));
                }
            });
            let claimed: Vec<Vec<TokenId>> = futures_util::future::join_all(claims).await;
            let per_instance: Vec<usize> = claimed.iter().map(Vec::len).collect();
            let all: Vec<TokenId> = claimed.into_iter().flatten().collect();
            let distinct: std::collections::HashSet<_> = all.iter().collect();
            eprintln!(
                "mysql: {TOKENS} notices claimed by 4 instances at once, 7 at a time: {per_instance:?}, {} distinct",
                distinct.len()
            );
            assert_eq!(all.len(), TOKENS, "every token once: {per_instance:?}");
            assert_eq!(distinct.len(), TOKENS, "no token twice");
        })
        .await;
    }

    /// Rotations and claims of expiry notices at once, on tokens within the claims' range:
    /// the two lock one another's rows and index entries, and whatever InnoDB makes of
    /// that, every rotation succeeds and every claim answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn rotations_and_claims_at_once_all_succeed() {
        with_mysql(|url, table| async move {
            let store = MySqlStore::<i64>::new(mysql_pool(&url).await).with_table(&table);
            store.migrate().await.unwrap();
            let now = time::OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap();
            const TOKENS: i64 = 60;
            let mut olds = Vec::new();
            for i in 0..TOKENS {
                let mut token = record(1 + i % 5);
                token.expires_at = now + time::Duration::hours(2 + i);
                store.insert(token.clone()).await.unwrap();
                olds.push(token);
            }
            let rotations = {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut rotated = 0;
                    for old in olds {
                        let mut successor = record(old.user_id);
                        successor.expires_at = old.expires_at + time::Duration::minutes(30);
                        successor.rotated_from = Some(old.id);
                        let at = now;
                        let outcome = store
                            .rotate(&old.user_id, old.id, successor, now + time::Duration::hours(1), at)
                            .await
                            .expect("a rotation answers");
                        assert!(matches!(outcome, Rotated::Rotated(_)), "{outcome:?}");
                        rotated += 1;
                    }
                    rotated
                })
            };
            let claims: Vec<_> = (0..2)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let mut claimed = 0;
                        for _ in 0..40 {
                            let within = time::Duration::days(3);
                            claimed += store
                                .claim_expiry_notices(within, now, 5)
                                .await
                                .expect("a claim answers")
                                .len();
                        }
                        claimed
                    })
                })
                .collect();
            let rotated = rotations.await.unwrap();
            let mut claimed = Vec::new();
            for claim in claims {
                claimed.push(claim.await.unwrap());
            }
            eprintln!(
                "mysql: {rotated} rotations and 80 claims at once over {TOKENS} tokens: all answered, claimed {claimed:?}"
            );
            assert_eq!(rotated, TOKENS);
        })
        .await;
    }

    #[tokio::test]
    async fn migrate_is_idempotent_and_safe_when_instances_start_together() {
        with_mysql(|url, table| async move {
            let stores: Vec<_> = futures_util::future::join_all((0..4).map(|_| async {
                MySqlStore::<i64>::new(mysql_pool(&url).await).with_table(&table)
            }))
            .await;
            let results = futures_util::future::join_all(stores.iter().map(|s| s.migrate())).await;
            for result in results {
                result.expect("concurrent migrations take turns");
            }
            stores[0].migrate().await.unwrap();
            let token = record(1);
            stores[1].insert(token.clone()).await.unwrap();
            let found = stores[2].find(&token.token_hash).await.unwrap().unwrap();
            assert_eq!(*found, token);
        })
        .await;
    }

    #[tokio::test]
    async fn times_are_utc_whatever_the_session_time_zone() {
        with_mysql(|url, table| async move {
            let pool = sqlx::mysql::MySqlPoolOptions::new()
                .max_connections(2)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::query("SET time_zone = '+05:30'")
                            .execute(conn)
                            .await?;
                        Ok(())
                    })
                })
                .connect(&url)
                .await
                .unwrap();
            let store = MySqlStore::<i64>::new(pool.clone()).with_table(&table);
            store.migrate().await.unwrap();
            let token = record(1);
            store.insert(token.clone()).await.unwrap();
            let found = store.find(&token.token_hash).await.unwrap().unwrap();
            assert_eq!(found.created_at, token.created_at);
            let stored: String = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT CAST(created_at AS CHAR) FROM `{table}` WHERE id = ?"
            )))
            .bind(token.id.to_string())
            .fetch_one(&pool)
            .await
            .unwrap();
            let utc = token.created_at.to_offset(time::UtcOffset::UTC);
            assert!(
                stored.starts_with(&format!(
                    "{:04}-{:02}-{:02} {:02}:",
                    utc.year(),
                    u8::from(utc.month()),
                    utc.day(),
                    utc.hour()
                )),
                "{stored}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn prune_deletes_in_batches() {
        with_mysql(|url, table| async move {
            let store = MySqlStore::<i64>::new(mysql_pool(&url).await)
                .with_table(&table)
                .prune_batch_size(3);
            store.migrate().await.unwrap();
            prunes_in_batches_of_three(&store).await;
        })
        .await;
    }

    /// A table without the shipped schema's constraints (an adapted one, say), so that
    /// bad rows can be written.
    async fn loose_table(pool: &MySqlPool, table: &str) {
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE `{table}` (id VARCHAR(64), user_id BIGINT, client_id TEXT, name TEXT,
               scopes TEXT, token_hash VARBINARY(64), revoked TINYINT(1), created_at DATETIME(6),
               updated_at DATETIME(6), expires_at DATETIME(6), last_used_at DATETIME(6),
               rotated_from VARCHAR(64), rotated_to VARCHAR(64)) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        )))
        .execute(pool)
        .await
        .unwrap();
    }

    /// Writes a good row of `user` with `id`, then breaks `column` with `value`.
    async fn bad_row(
        pool: &MySqlPool,
        table: &str,
        user: i64,
        id: &str,
        hash: &TokenHash,
        column: &str,
        value: &str,
    ) {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO `{table}` VALUES (?, ?, NULL, 'bad', 'orders:read', ?, FALSE,
               UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL 1 DAY, NULL, NULL, NULL)"
        )))
        .bind(id)
        .bind(user)
        .bind(&hash.as_bytes()[..])
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE `{table}` SET {column} = {value} WHERE id = ?"
        )))
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn bad_rows_are_corrupt_errors_naming_the_row() {
        with_mysql(|url, table| async move {
            let pool = mysql_pool(&url).await;
            loose_table(&pool, &table).await;
            let store = MySqlStore::<i64>::new(pool.clone()).with_table(&table);

            let cases: &[(&str, &str, &str)] = &[
                (
                    "scopes",
                    r#"'["orders:read","admin"]'"#,
                    "scopes do not parse",
                ),
                (
                    "scopes",
                    "CONCAT('orders:read', CHAR(9), 'admin')",
                    "scopes do not parse",
                ),
                ("scopes", "'orders:read ünïcode'", "scopes do not parse"),
                ("name", "NULL", "name is NULL"),
                ("scopes", "NULL", "scopes is NULL"),
                ("token_hash", "X'0102'", "token_hash is 2 bytes, not 32"),
                ("revoked", "NULL", "revoked is NULL"),
                ("user_id", "NULL", "user_id is NULL"),
                ("expires_at", "NULL", "expires_at is NULL"),
            ];
            let bad_rows_pool = pool.clone();
            bad_rows_are_corrupt(&store, cases, |user, id, hash, column, value| {
                let (pool, table) = (bad_rows_pool.clone(), table.clone());
                async move { bad_row(&pool, &table, user, &id, &hash, &column, &value).await }
            })
            .await;
        })
        .await;
    }

    #[tokio::test]
    async fn the_schema_refuses_bad_rows() {
        with_mysql(|url, table| async move {
            let pool = mysql_pool(&url).await;
            let store = MySqlStore::<i64>::new(pool.clone()).with_table(&table);
            store.migrate().await.unwrap();
            let full = TokenHash::of("x").as_bytes().to_vec();
            let insert = |id: String, name: Option<&'static str>, hash: Vec<u8>| {
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO `{table}` (id, user_id, name, scopes, token_hash,
                       created_at, updated_at, expires_at) VALUES (?, 1, ?, '', ?, NOW(), NOW(), NOW())"
                )))
                .bind(id)
                .bind(name)
                .bind(hash)
                .execute(&pool)
            };
            let good = row_id('a');
            assert!(insert(good.clone(), None, full.clone()).await.is_err(), "NULL name");
            assert!(insert(good.clone(), Some("n"), full[..16].to_vec()).await.is_err(), "short hash");
            assert!(insert(row_id('A'), Some("n"), full.clone()).await.is_err(), "uppercase id");
            assert!(insert("abc".into(), Some("n"), full.clone()).await.is_err(), "short id");
            insert(good, Some("n"), full).await.expect("a good row");
        })
        .await;
    }
}
