//! [`SqliteStore`]: tokens in a SQLite database (sqlx, bundled SQLite), the embedded
//! persistent store for a single machine.
//!
//! Open a file (or `:memory:`), run the shipped migration once with
//! [`migrate`](SqliteStore::migrate), and hand the store to [`Tokens`](crate::Tokens):
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode, header::AUTHORIZATION};
//! use tower::ServiceExt;
//! use tower_pat::{SqliteStore, Tokens, scope::ScopeRegistry};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = SqliteStore::<i64>::open(":memory:").await?;
//! store.migrate().await?;
//! let tokens = Tokens::new(store, ScopeRegistry::new().scope("orders:read", "See orders"));
//! let app = Router::new()
//!     .route("/orders", get(|| async { "orders" }))
//!     .layer(tokens.layer());
//!
//! let created = tokens.create(7, "laptop", ["orders:read"]).await?;
//! let bearer = format!("Bearer {}", created.token.expose_secret());
//! let request = || Request::get("/orders").header(AUTHORIZATION, &bearer).body(Body::empty());
//! assert_eq!(app.clone().oneshot(request()?).await?.status(), StatusCode::OK);
//!
//! tokens.revoke(&7, created.record.id).await?;
//! assert_eq!(app.oneshot(request()?).await?.status(), StatusCode::UNAUTHORIZED);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Schema
//!
//! `migrations/sqlite/0001_personal_access_tokens.sql` in the crate's repository, with the
//! table name and the user id's SQL type filled in ([`SqliteStore::schema_sql`] shows the
//! result). Passport's columns plus `token_hash` (32-byte BLOB, unique) and `last_used_at`;
//! timestamps are Unix seconds (UTC) in INTEGER columns; scopes are space-delimited text.
//! Indexes serve every query the store makes: by hash, by id, by user, and the two kinds of
//! pruning.
//!
//! # Bad rows
//!
//! A row the store cannot read back exactly (a NULL where none belongs, scopes that do not
//! parse, a hash that is not 32 bytes, an id that is not 32 lowercase hex digits, a
//! timestamp out of range) makes the operation fail with
//! [`StoreErrorKind::Corrupt`], naming the row's id: the layer answers 503, and no token
//! gains or loses a scope.
//!
//! [`StoreErrorKind::Corrupt`]: super::StoreErrorKind::Corrupt

use std::{fmt, marker::PhantomData, path::Path, sync::Arc};

use async_trait::async_trait;
use sqlx::{
    AssertSqlSafe, Decode, Encode, SqlStr, Sqlite, Type, TypeInfo,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow},
};
use time::{Duration, OffsetDateTime};

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use super::poller::{ChangePoller, DEFAULT_POLL_INTERVAL, FollowOptions};
pub use super::sql::InvalidTableName;
use super::{
    Cursor, Lookup, ManageTokens, Revoked, Rotated, StoreError, StoreErrorKind, TokenStore, feed,
    sql::{self, Dialect, Table, Writes, check_type_name, optional, render, required, sql_store},
};
#[cfg(feature = "cache")]
use super::{cache::Evictor, poller};
use crate::{
    record::{TokenId, TokenRecord, UserId},
    token::TokenHash,
};

/// The migration, with `{table}` and `{user_id_type}` to fill in.
const MIGRATION: &str = include_str!("../../migrations/sqlite/0001_personal_access_tokens.sql");

/// The second migration: the lifecycle columns and the expiry index.
const MIGRATION_LIFECYCLE: &str = include_str!("../../migrations/sqlite/0002_token_lifecycle.sql");

/// The third migration: the change table and the triggers that fill it.
const MIGRATION_FEED: &str = feed::SQLITE;

/// The table [`SqliteStore::new`] uses unless told otherwise.
pub const DEFAULT_TABLE: &str = "personal_access_tokens";

/// How many rows one `DELETE` of [`prune`](ManageTokens::prune) removes at most, unless
/// configured with [`SqliteStore::prune_batch_size`].
pub const DEFAULT_PRUNE_BATCH: u32 = 1000;

/// The longest table name accepted: index names append up to 15 characters.
pub const MAX_TABLE_NAME_LEN: usize = 48;

/// The prefix of the names SQLite keeps for its own tables, refused in any case.
const RESERVED_PREFIX: Option<&str> = Some("sqlite_");

/// What a user id's SQL type name may hold besides ASCII letters and digits.
const TYPE_NAME_PUNCTUATION: &[u8] = b"_ (),";

/// What a user id type needs to live in SQLite: `i64`, `String`, and with sqlx's `uuid`
/// feature `uuid::Uuid` all qualify. Implemented for every such type.
pub trait SqliteUserId:
    UserId + Type<Sqlite> + for<'q> Encode<'q, Sqlite> + for<'r> Decode<'r, Sqlite>
{
}

impl<T> SqliteUserId for T where
    T: UserId + Type<Sqlite> + for<'q> Encode<'q, Sqlite> + for<'r> Decode<'r, Sqlite>
{
}

/// Personal access tokens in a SQLite table, through an sqlx pool.
///
/// Every statement is a runtime query (no compile-time checking, so building needs no
/// database) on a table whose name is validated once, when it is set. Cheap to clone: the
/// clones share the pool.
///
/// - [`open`](Self::open) a file, created if missing (WAL journal), or `":memory:"`;
///   [`new`](Self::new) takes a pool you configured yourself.
/// - [`migrate`](Self::migrate) creates the table and its indexes if they are missing.
/// - [`with_table`](Self::with_table) picks another table name.
///
/// Timestamps are stored to the second: a sub-second part is dropped.
pub struct SqliteStore<U = i64> {
    pool: SqlitePool,
    table: Table,
    user: PhantomData<fn() -> U>,
}

/// `?1`, `?2`, …; the uses `touch` writes come as one JSON array of `[id, unix seconds]`.
/// A write transaction begins `IMMEDIATE`, taking the database's one write lock at once:
/// no lock of its own for a user, nor for a claim.
const DIALECT: Dialect = Dialect {
    param: |n| format!("?{n}"),
    id_order: "id",
    uses: "(SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS at FROM json_each(?1)) AS u",
    notify: None,
    lock_user: None,
    claim_lock: "",
    quote: '"',
    writes: Writes::Standard,
};

sql_store! {
    store: SqliteStore,
    pool: SqlitePool,
    dialect: DIALECT,
    reserved_prefix: RESERVED_PREFIX,
    table_rule: "not starting with a digit nor with `sqlite_`.",
    prune_rule: "each batch is its own short write, so other writers get their turn in between.",
    ///
    /// An in-memory database lives only as long as the connection that opened it: give an
    /// in-memory pool exactly one connection, with no idle timeout and no maximum
    /// lifetime (as [`open(":memory:")`](Self::open) does), or its tokens vanish.
}

impl<U> SqliteStore<U> {
    /// Opens the database file at `path`, creating it if missing, in WAL mode (readers do
    /// not wait for the writer). `":memory:"` opens a private in-memory database on a
    /// pool of one connection that is never closed while the store lives. A `sqlite:`
    /// URL without parameters (`sqlite://tokens.db`, `sqlite::memory:`) names the same
    /// path.
    ///
    /// Runs no migration: call [`migrate`](Self::migrate).
    ///
    /// # Errors
    ///
    /// [`StoreError`] at once when `path` is another kind of URL (`postgres://…`: naming
    /// its scheme), a `sqlite:` URL with parameters, or a file in a directory that does
    /// not exist (naming it); when the file cannot be opened or created.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = file_path(path.as_ref())?;
        let pool = if path == Path::new(":memory:") {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(SqliteConnectOptions::new().in_memory(true))
                .await
        } else {
            if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty())
                && !dir.is_dir()
            {
                return Err(StoreError::with_kind(
                    StoreErrorKind::Backend,
                    format!(
                        "cannot open SQLite database {}: directory {} does not exist",
                        path.display(),
                        dir.display()
                    ),
                ));
            }
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal);
            SqlitePoolOptions::new().connect_with(options).await
        };
        let pool = pool.map_err(|error| {
            StoreError::with_kind(
                StoreErrorKind::Backend,
                format!("cannot open SQLite database {}: {error}", path.display()),
            )
            .with_source(error)
        })?;
        Ok(Self::new(pool))
    }
}

/// The file `path` names: itself, or the path of a `sqlite:` URL. Another URL is an error
/// naming its scheme.
fn file_path(path: &Path) -> Result<&Path, StoreError> {
    let Some(text) = path.to_str() else {
        return Ok(path);
    };
    let refuse = |message: String| Err(StoreError::with_kind(StoreErrorKind::Backend, message));
    if let Some(rest) = text.strip_prefix("sqlite:") {
        if rest.contains('?') {
            return refuse(
                "SqliteStore::open takes a path or a `sqlite:` URL without parameters; for \
                 options, build a pool and use SqliteStore::new"
                    .to_owned(),
            );
        }
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        return Ok(Path::new(rest));
    }
    if let Some((scheme, _)) = text.split_once("://")
        && !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return refuse(format!(
            "SqliteStore::open takes a file path (or `:memory:`, or a `sqlite:` URL), not a \
             `{scheme}://` URL"
        ));
    }
    Ok(path)
}

impl<U: SqliteUserId> SqliteStore<U> {
    /// The migrations for this store's table and user id type, as [`migrate`](Self::migrate)
    /// runs them (0001, 0002, then the change feed of 0003): to read, or to hand to your own
    /// migration tool, which must run each `ALTER TABLE` of 0002 once.
    pub fn schema_sql(&self) -> String {
        let user_id_type = U::type_info();
        format!(
            "{}\n{}\n{}",
            render(MIGRATION, &self.table.name, user_id_type.name()),
            render(MIGRATION_LIFECYCLE, &self.table.name, user_id_type.name()),
            self.change_feed_sql()
        )
    }

    /// The change feed alone (`0003_change_feed.sql` filled in): the change table
    /// `<table>_changes` and the two triggers that record every writer's changes in it, as
    /// [`install_change_feed`](Self::install_change_feed) runs it.
    pub fn change_feed_sql(&self) -> String {
        render(MIGRATION_FEED, &self.table.name, U::type_info().name())
    }

    /// Puts the change feed on a table that exists already (made by your own migration
    /// tool from an older [`schema_sql`](Self::schema_sql), say), without touching
    /// anything else: the change table and the triggers are created if missing.
    /// [`migrate`](Self::migrate) does this too. Runs in one transaction.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database refuses the statements (the table does not
    /// exist, say).
    pub async fn install_change_feed(&self) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::new)?;
        sqlx::raw_sql(AssertSqlSafe(self.change_feed_sql()))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::new)?;
        tx.commit().await.map_err(StoreError::new)
    }

    /// Creates the table and its indexes if they are missing, and brings a table made by
    /// an earlier version up to date (the columns and index of
    /// `0002_token_lifecycle.sql`, each added only if missing; rows are kept), and installs
    /// the change feed (`0003_change_feed.sql`: see
    /// [`install_change_feed`](Self::install_change_feed)); changes nothing otherwise, so
    /// it is safe to run at every start. Runs in one transaction.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database refuses the statements (or the user id type's SQL
    /// name is not a plain type name).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let user_id_type = U::type_info();
        check_type_name(user_id_type.name(), TYPE_NAME_PUNCTUATION)?;
        let table = &self.table.name;
        let sql = render(MIGRATION, table, user_id_type.name());
        // All or nothing, and holding the write lock from the start: another process
        // migrating the same file waits its turn (`busy_timeout`) instead of failing.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::new)?;
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::new)?;
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)")
            .bind(table.as_ref())
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::new)?;
        let lifecycle = render(MIGRATION_LIFECYCLE, table, user_id_type.name());
        for statement in sql::split_statements(&lifecycle) {
            // SQLite has no `ADD COLUMN IF NOT EXISTS`.
            if sql::added_column(&statement).is_some_and(|c| columns.iter().any(|have| have == c)) {
                continue;
            }
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::new)?;
        }
        sqlx::raw_sql(AssertSqlSafe(self.change_feed_sql()))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::new)?;
        tx.commit().await.map_err(StoreError::new)
    }

    async fn fetch_one_record(
        &self,
        query: sqlx::query::Query<'_, Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<Option<TokenRecord<U>>, StoreError> {
        let row = query
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::new)?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn prune_where(&self, statement: &SqlStr, before: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let deleted = sqlx::query(statement.clone())
                .bind(before)
                .bind(i64::from(self.table.prune_batch))
                .execute(&self.pool)
                .await
                .map_err(StoreError::new)?
                .rows_affected();
            total += deleted;
            if deleted < u64::from(self.table.prune_batch) {
                return Ok(total);
            }
        }
    }
}

#[async_trait]
impl<U: SqliteUserId> TokenStore for SqliteStore<U> {
    type UserId = U;

    async fn find(&self, hash: &TokenHash) -> Lookup<U> {
        let query = sqlx::query(self.table.sql.find.clone()).bind(&hash.as_bytes()[..]);
        Ok(self.fetch_one_record(query).await?.map(Arc::new))
    }

    async fn touch(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        // One statement for the whole batch: `[["<id>", <unix seconds>], …]` (ids are hex).
        let mut batch = String::with_capacity(uses.len() * 50 + 2);
        batch.push('[');
        for (i, (id, at)) in uses.iter().enumerate() {
            if i > 0 {
                batch.push(',');
            }
            batch.push_str(&format!(r#"["{id}",{}]"#, at.unix_timestamp()));
        }
        batch.push(']');
        sqlx::query(self.table.sql.touch.clone())
            .bind(batch)
            .execute(&self.pool)
            .await
            .map_err(StoreError::new)?;
        Ok(())
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds the [`COLUMNS`](sql::COLUMNS) of `record`, in order.
fn bind_record<'q, U: SqliteUserId>(
    query: SqliteQuery<'q>,
    record: &TokenRecord<U>,
) -> SqliteQuery<'q> {
    query
        .bind(record.id.to_string())
        .bind(&record.user_id)
        .bind(record.client_id.as_deref())
        .bind(record.name.as_str())
        .bind(record.scopes.to_string())
        .bind(&record.token_hash.as_bytes()[..])
        .bind(record.revoked)
        .bind(record.created_at.unix_timestamp())
        .bind(record.updated_at.unix_timestamp())
        .bind(record.expires_at.unix_timestamp())
        .bind(record.last_used_at.map(OffsetDateTime::unix_timestamp))
        .bind(record.rotated_from.map(|id| id.to_string()))
        .bind(record.rotated_to.map(|id| id.to_string()))
}

impl<U: SqliteUserId> SqliteStore<U> {
    /// A write transaction that holds the database's write lock from its start.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::new)
    }

    async fn fetch_records(
        &self,
        query: SqliteQuery<'_>,
    ) -> Result<Vec<TokenRecord<U>>, StoreError> {
        let rows = query.fetch_all(&self.pool).await.map_err(StoreError::new)?;
        rows.iter().map(record_from_row).collect()
    }
}

#[async_trait]
impl<U: SqliteUserId> ManageTokens for SqliteStore<U> {
    async fn insert(&self, record: TokenRecord<U>) -> Result<(), StoreError> {
        let result = bind_record(sqlx::query(self.table.sql.insert.clone()), &record)
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => Err(sql::insert_error(record.id, err)),
        }
    }

    async fn get(&self, id: TokenId) -> Result<Option<TokenRecord<U>>, StoreError> {
        let query = sqlx::query(self.table.sql.get.clone()).bind(id.to_string());
        self.fetch_one_record(query).await
    }

    async fn list(&self, user: &U) -> Result<Vec<TokenRecord<U>>, StoreError> {
        let rows = sqlx::query(self.table.sql.list.clone())
            .bind(user)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::new)?;
        rows.iter().map(record_from_row).collect()
    }

    async fn revoke(
        &self,
        user: &U,
        id: TokenId,
        at: OffsetDateTime,
    ) -> Result<Revoked, StoreError> {
        let id = id.to_string();
        // One statement does the change, so two concurrent revokes cannot both win; a
        // second query only tells "already revoked" from "not this user's".
        let changed = sqlx::query(self.table.sql.revoke.clone())
            .bind(at.unix_timestamp())
            .bind(id.as_str())
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(StoreError::new)?
            .rows_affected();
        if changed > 0 {
            return Ok(Revoked::Revoked);
        }
        let exists = sqlx::query(self.table.sql.owned.clone())
            .bind(id.as_str())
            .bind(user)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::new)?
            .is_some();
        Ok(if exists {
            Revoked::AlreadyRevoked
        } else {
            Revoked::NotFound
        })
    }

    async fn revoke_all(&self, user: &U, at: OffsetDateTime) -> Result<u64, StoreError> {
        Ok(sqlx::query(self.table.sql.revoke_all.clone())
            .bind(at.unix_timestamp())
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(StoreError::new)?
            .rows_affected())
    }

    async fn delete(&self, user: &U, id: TokenId) -> Result<bool, StoreError> {
        let deleted = sqlx::query(self.table.sql.delete.clone())
            .bind(id.to_string())
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(StoreError::new)?
            .rows_affected();
        Ok(deleted > 0)
    }

    async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let before = before.unix_timestamp();
        let expired = self
            .prune_where(&self.table.sql.prune_expired, before)
            .await?;
        let revoked = self
            .prune_where(&self.table.sql.prune_revoked, before)
            .await?;
        Ok(expired + revoked)
    }

    async fn list_page(
        &self,
        user: &U,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<TokenRecord<U>>, StoreError> {
        let query = match after {
            None => sqlx::query(self.table.sql.list_first.clone())
                .bind(user)
                .bind(i64::from(limit)),
            Some(cursor) => sqlx::query(self.table.sql.list_after.clone())
                .bind(user)
                .bind(cursor.at().unix_timestamp())
                .bind(cursor.id().to_string())
                .bind(i64::from(limit)),
        };
        self.fetch_records(query).await
    }

    async fn insert_limited(
        &self,
        record: TokenRecord<U>,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        // `BEGIN IMMEDIATE`: the count is read under the write lock, so no other writer
        // can insert between the count and the insert.
        let mut tx = self.begin_write().await?;
        let inserted = bind_record(sqlx::query(self.table.sql.insert_limited.clone()), &record)
            .bind(now.unix_timestamp())
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await
            .map_err(|err| sql::insert_error(record.id, err))?
            .rows_affected();
        tx.commit().await.map_err(StoreError::new)?;
        Ok(inserted > 0)
    }

    async fn rotate(
        &self,
        user: &U,
        id: TokenId,
        successor: TokenRecord<U>,
        old_expires_at: OffsetDateTime,
        at: OffsetDateTime,
    ) -> Result<Rotated<U>, StoreError> {
        let old_id = id.to_string();
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(self.table.sql.rotate.clone())
            .bind(successor.id.to_string())
            .bind(old_expires_at.unix_timestamp())
            .bind(at.unix_timestamp())
            .bind(old_id.as_str())
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::new)?
            .rows_affected();
        if changed > 0 {
            bind_record(sqlx::query(self.table.sql.insert.clone()), &successor)
                .execute(&mut *tx)
                .await
                .map_err(|err| sql::insert_error(successor.id, err))?;
        }
        let row = sqlx::query(self.table.sql.get.clone())
            .bind(old_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::new)?;
        let old = row.as_ref().map(record_from_row::<U>).transpose()?;
        if changed == 0 {
            // Nothing was written: what is there only says why.
            drop(tx);
            return Ok(sql::rotation_refused(old, user));
        }
        tx.commit().await.map_err(StoreError::new)?;
        match old {
            Some(old) => Ok(Rotated::Rotated(old)),
            None => Err(StoreError::corrupt(id, "the rotated row vanished")),
        }
    }

    async fn expiring(
        &self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<TokenRecord<U>>, StoreError> {
        let (from_at, from_id) = match after {
            Some(cursor) => (cursor.at(), cursor.id().to_string()),
            None => (now, String::new()),
        };
        let query = sqlx::query(self.table.sql.expiring.clone())
            .bind(now.unix_timestamp())
            .bind(until.unix_timestamp())
            .bind(from_at.unix_timestamp())
            .bind(from_id)
            .bind(i64::from(limit));
        self.fetch_records(query).await
    }

    async fn claim_expiry_notices(
        &self,
        within: Duration,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<TokenRecord<U>>, StoreError> {
        let query = sqlx::query(self.table.sql.claim_notices.clone())
            .bind(within.whole_seconds())
            .bind(now.unix_timestamp())
            .bind((now + within).unix_timestamp())
            .bind(i64::from(limit));
        let mut claimed = self.fetch_records(query).await?;
        claimed.sort_by_key(|r| (r.expires_at, r.id));
        Ok(claimed)
    }
}

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
impl<U: SqliteUserId> SqliteStore<U> {
    /// Evicts from a [`CachedStore`](super::CachedStore) every token that any writer
    /// revokes, rotates, shortens or deletes in this table, with the default
    /// [`FollowOptions`] (a read every 250 ms): see
    /// [`follow_changes_with`](Self::follow_changes_with).
    ///
    /// ```no_run
    /// use tower_pat::{SqliteStore, Tokens, scope::ScopeRegistry, store::CachedStore};
    ///
    /// # async fn run(registry: ScopeRegistry) -> Result<(), tower_pat::store::StoreError> {
    /// let sqlite = SqliteStore::<i64>::open("tokens.db").await?;
    /// sqlite.migrate().await?; // installs the change feed too
    /// let store = CachedStore::new(sqlite.clone());
    /// sqlite.follow_changes(store.evictor()).await?;
    /// let tokens = Tokens::new(store, registry);
    /// let layer = tokens.layer();
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`follow_changes_with`](Self::follow_changes_with).
    pub async fn follow_changes(&self, evictor: Evictor<U>) -> Result<ChangePoller, StoreError> {
        self.follow_changes_with(evictor, FollowOptions::default())
            .await
    }

    /// Evicts from a [`CachedStore`](super::CachedStore) every token that any writer
    /// revokes, rotates, shortens or deletes in this table, whoever it is (this store in
    /// another process, an admin in the `sqlite3` shell, another program): the table's
    /// triggers ([`install_change_feed`](Self::install_change_feed)) record each changed
    /// id in `<table>_changes`, and a task reads what is new there every
    /// [`FollowOptions::interval`] (250 ms by default) and hands it to `evictor`. Returns
    /// once it has read the change table's end; the polling runs on the Tokio runtime
    /// until the cache is dropped (or [`ChangePoller::stop`]).
    ///
    /// **Propagation bound.** A change committed by any writer is refused here within the
    /// interval, plus the time of one read. A read that fails, or has not answered within
    /// [`FollowOptions::read_timeout`], pauses the cache ([`Evictor::pause`]: cleared,
    /// keeping nothing, every request asks the database) and logs a warning through
    /// `tracing`; the first read that succeeds again catches up and resumes it.
    ///
    /// **The change table** stays small: each poller deletes the rows older than a minute
    /// as it goes (at most every 10 s). A row that does not hold a token id (something else
    /// writes to the table) clears the cache.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the change table cannot be read (the feed is not installed:
    /// [`migrate`](Self::migrate) or [`install_change_feed`](Self::install_change_feed)),
    /// or does not answer within [`FollowOptions::read_timeout`].
    pub async fn follow_changes_with(
        &self,
        evictor: Evictor<U>,
        options: FollowOptions,
    ) -> Result<ChangePoller, StoreError> {
        poller::start(self.changes(), evictor, options).await
    }

    /// The change table, as the poller reads it. Writes to one file take turns, so ids
    /// commit in order: no lookback.
    fn changes(&self) -> poller::PoolChanges<SqlitePool> {
        poller::PoolChanges {
            pool: self.pool.clone(),
            sql: feed::ChangeTable::sqlite(&self.table.name),
            lookback: std::time::Duration::ZERO,
        }
    }
}

/// Reads a row back, exactly, or says which row is bad and why.
fn record_from_row<U: SqliteUserId>(row: &SqliteRow) -> Result<TokenRecord<U>, StoreError> {
    let (raw_id, id) = sql::read_id(row)?;
    let row_id = raw_id.as_str();
    let scopes = sql::read_scopes(row, row_id)?;
    let token_hash = sql::read_token_hash(row, row_id)?;

    let revoked = match required::<i64, _>(row, row_id, "revoked")? {
        0 => false,
        1 => true,
        other => {
            return Err(StoreError::corrupt(
                row_id,
                format_args!("revoked is {other}, not 0 or 1"),
            ));
        }
    };

    let last_used_at = match optional::<i64, _>(row, row_id, "last_used_at")? {
        Some(secs) => Some(timestamp(row_id, "last_used_at", secs)?),
        None => None,
    };

    Ok(TokenRecord {
        id,
        user_id: required(row, row_id, "user_id")?,
        client_id: optional(row, row_id, "client_id")?,
        name: required(row, row_id, "name")?,
        scopes,
        token_hash,
        revoked,
        created_at: timestamp(row_id, "created_at", required(row, row_id, "created_at")?)?,
        updated_at: timestamp(row_id, "updated_at", required(row, row_id, "updated_at")?)?,
        expires_at: timestamp(row_id, "expires_at", required(row, row_id, "expires_at")?)?,
        last_used_at,
        rotated_from: sql::read_optional_id(row, row_id, "rotated_from")?,
        rotated_to: sql::read_optional_id(row, row_id, "rotated_to")?,
        kind: crate::credential::CredentialKind::Pat,
    })
}

fn timestamp(row_id: &str, column: &str, secs: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(|err| {
        StoreError::corrupt(row_id, format_args!("{column} is out of range")).with_source(err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::check_table_name;

    #[cfg(feature = "cache")]
    #[tokio::test]
    async fn the_change_table_is_read_in_order_and_pruned_by_age() {
        use poller::ChangeSource;
        let store = SqliteStore::<i64>::open(":memory:").await.unwrap();
        store.migrate().await.unwrap();
        let changes = store.changes();
        assert_eq!(changes.latest().await.unwrap(), 0);
        let now = "CAST(strftime('%s', 'now') AS INTEGER)";
        sqlx::raw_sql(AssertSqlSafe(format!(
            "INSERT INTO personal_access_tokens_changes (token_id, changed_at) \
             VALUES ('old', {now} - 61), ('recent', {now} - 59), ('new', {now})"
        )))
        .execute(&store.pool)
        .await
        .unwrap();
        assert_eq!(changes.latest().await.unwrap(), 3);
        let rows = changes.read(1, 1).await.unwrap();
        assert_eq!(rows, [(2, "recent".to_owned())]);
        assert_eq!(changes.read(0, 10).await.unwrap().len(), 3);
        assert_eq!(
            changes
                .prune(std::time::Duration::from_secs(60))
                .await
                .unwrap(),
            1
        );
        let left: Vec<String> = changes
            .read(0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, token)| token)
            .collect();
        assert_eq!(left, ["recent", "new"]);
        // Ids are never reused, even once every row is gone (`AUTOINCREMENT`): a poller
        // that read up to 3 reads the next change.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DELETE FROM personal_access_tokens_changes; \
             INSERT INTO personal_access_tokens_changes (token_id, changed_at) VALUES ('next', {now})"
        )))
        .execute(&store.pool)
        .await
        .unwrap();
        assert_eq!(changes.read(3, 10).await.unwrap(), [(4, "next".to_owned())]);
    }

    #[test]
    fn table_names_are_checked() {
        for good in ["personal_access_tokens", "_t", "T1", &"a".repeat(48)] {
            assert!(
                check_table_name(good, MAX_TABLE_NAME_LEN, RESERVED_PREFIX).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "",
            "1tokens",
            "pat tokens",
            "pat\"; DROP TABLE x; --",
            "pat-tokens",
            "tökens",
            "sqlite_master",
            "SQLITE_x",
            &"a".repeat(49),
        ] {
            let err = check_table_name(bad, MAX_TABLE_NAME_LEN, RESERVED_PREFIX).unwrap_err();
            assert_eq!(err.name(), bad);
            assert!(err.to_string().contains("invalid table name"));
        }
    }

    #[test]
    #[should_panic(expected = "invalid table name \"no way\"")]
    fn with_table_panics_naming_the_name() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _context = runtime.enter();
        // A lazy pool opens nothing.
        let pool = SqlitePoolOptions::new().connect_lazy_with(SqliteConnectOptions::new());
        let _ = SqliteStore::<i64>::new(pool).with_table("no way");
    }

    #[test]
    fn the_migration_is_filled_in() {
        let sql = render(MIGRATION, "my_tokens", "INTEGER");
        assert!(sql.starts_with("-- tower-pat personal access tokens"));
        assert!(!sql.contains('{'), "{sql}");
        assert!(sql.contains(r#"CREATE TABLE IF NOT EXISTS "my_tokens""#));
        assert!(sql.contains("user_id      INTEGER NOT NULL"));
        assert!(sql.contains(r#"CREATE INDEX IF NOT EXISTS "my_tokens_expires_idx""#));
        assert!(check_type_name("INTEGER", TYPE_NAME_PUNCTUATION).is_ok());
        assert!(check_type_name("x; DROP TABLE y", TYPE_NAME_PUNCTUATION).is_err());
    }
}
