//! [`PostgresStore`]: tokens in a PostgreSQL table (sqlx), the store for services that
//! outgrow one machine: every instance of the API shares the table, so a token created or
//! revoked through one instance is seen by all of them on their next request.
//!
//! ```no_run
//! use tower_pat::{PostgresStore, Tokens, scope::ScopeRegistry};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::<i64>::connect("postgres://app@db.internal/app").await?;
//! store.migrate().await?; // idempotent; safe when many instances start at once
//! let tokens = Tokens::new(store, ScopeRegistry::new().scope("orders:read", "See orders"));
//! let layer = tokens.layer(); // wrap your router in it
//!
//! let created = tokens.create(7, "laptop", ["orders:read"]).await?;
//! println!("your token (shown once): {}", created.token.expose_secret());
//! # let _ = layer;
//! # Ok(()) }
//! ```
//!
//! With an existing pool, another table name, and UUID user ids (sqlx's `uuid` feature):
//!
//! ```no_run
//! use tower_pat::PostgresStore;
//!
//! # async fn run(pool: sqlx::PgPool) -> Result<(), tower_pat::store::StoreError> {
//! let store = PostgresStore::<uuid::Uuid>::new(pool).with_table("api_tokens");
//! store.migrate().await?; // creates `user_id UUID`
//! # Ok(()) }
//! ```
//!
//! # Schema
//!
//! `migrations/postgres/0001_personal_access_tokens.sql` in the crate's repository, with
//! the table name and the user id's SQL type filled in ([`PostgresStore::schema_sql`]
//! shows the result). Passport's columns plus `token_hash` (32-byte `BYTEA`, unique) and
//! `last_used_at`; timestamps are `TIMESTAMPTZ`; scopes are space-delimited `TEXT`.
//! Indexes serve every query the store makes: by hash, by id, by user, and the two kinds
//! of pruning. `0003_change_feed.sql` puts triggers on the table that announce every
//! writer's revocations, rotations and deletions on [`PostgresStore::channel`], for
//! [`PostgresStore::listen`] to evict them from every instance's cache.
//!
//! # Bad rows
//!
//! A row the store cannot read back exactly (a NULL where none belongs, scopes that do not
//! parse, a hash that is not 32 bytes, an id that is not 32 lowercase hex digits) makes the
//! operation fail with [`StoreErrorKind::Corrupt`], naming the row's id: the layer answers
//! 503, and no token gains or loses a scope.
//!
//! [`StoreErrorKind::Corrupt`]: super::StoreErrorKind::Corrupt

use std::{fmt, marker::PhantomData, sync::Arc, time::Duration};

use async_trait::async_trait;
use sqlx::{
    AssertSqlSafe, Connection, Decode, Encode, Postgres, SqlStr, Type, TypeInfo,
    postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow},
};
use time::OffsetDateTime;

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use super::listener::{
    DEFAULT_STALENESS_BOUND, LISTENER_APPLICATION_NAME, ListenOptions, RevocationListener,
};
pub use super::sql::InvalidTableName;
use super::{
    Cursor, Lookup, ManageTokens, Revoked, Rotated, StoreError, StoreErrorKind, TokenStore, feed,
    sql::{
        self, Dialect, Server, Table, Writes, check_type_name, optional, render, required,
        sql_store,
    },
};
use crate::{
    record::{TokenId, TokenRecord, UserId},
    token::TokenHash,
};

/// The migration, with `{table}` and `{user_id_type}` to fill in.
const MIGRATION: &str = include_str!("../../migrations/postgres/0001_personal_access_tokens.sql");

/// The second migration: the lifecycle columns and the expiry index.
const MIGRATION_LIFECYCLE: &str =
    include_str!("../../migrations/postgres/0002_token_lifecycle.sql");

/// The third migration: the change feed's function and triggers.
const MIGRATION_FEED: &str = feed::POSTGRES;

/// How long [`PostgresStore::connect`] waits for the database, unless told otherwise
/// ([`PostgresStore::connect_with`]); also how long the revocation listener waits for
/// each of its connections.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The table [`PostgresStore::new`] uses unless told otherwise.
pub const DEFAULT_TABLE: &str = "personal_access_tokens";

/// How many rows one `DELETE` of [`prune`](ManageTokens::prune) removes at most, unless
/// configured with [`PostgresStore::prune_batch_size`].
pub const DEFAULT_PRUNE_BATCH: u32 = 1000;

/// The longest table name accepted: index and constraint names append up to 15
/// characters, and PostgreSQL cuts names at 63.
pub const MAX_TABLE_NAME_LEN: usize = 48;

/// PostgreSQL keeps no prefix of table names for itself (its catalogs live in their own
/// schema).
const RESERVED_PREFIX: Option<&str> = None;

/// What a user id's SQL type name may hold besides ASCII letters and digits (`[]` for
/// arrays).
const TYPE_NAME_PUNCTUATION: &[u8] = b"_ (),[]";

/// The first key of the advisory lock [`PostgresStore::migrate`] holds (the second is
/// derived from the table name).
const MIGRATE_LOCK_CLASS: i32 = i32::from_be_bytes(*b"tpat");

/// What a user id type needs to live in PostgreSQL: `i64`, `i32`, `String`, and with
/// sqlx's `uuid` feature `uuid::Uuid` all qualify. Implemented for every such type.
pub trait PostgresUserId:
    UserId + Type<Postgres> + for<'q> Encode<'q, Postgres> + for<'r> Decode<'r, Postgres>
{
}

impl<T> PostgresUserId for T where
    T: UserId + Type<Postgres> + for<'q> Encode<'q, Postgres> + for<'r> Decode<'r, Postgres>
{
}

/// Personal access tokens in a PostgreSQL table, through an sqlx pool.
///
/// Every statement is a runtime query (no compile-time checking, so building needs no
/// database) on a table whose name is validated once, when it is set; each state change
/// is one statement, so instances sharing the table never see half of one. Cheap to
/// clone: the clones share the pool.
///
/// - [`connect`](Self::connect) to a URL, or [`new`](Self::new) over a pool you
///   configured yourself.
/// - [`migrate`](Self::migrate) creates the table and its indexes if they are missing.
/// - [`with_table`](Self::with_table) picks another table name (unqualified: it lives in
///   the connection's `search_path`).
pub struct PostgresStore<U = i64> {
    pool: PgPool,
    table: Table,
    user: PhantomData<fn() -> U>,
}

/// `$1`, `$2`, …; the uses `touch` writes come as two arrays, of ids and of times. The cap
/// holds a transaction-scoped advisory lock per user (see [`lock_user`]); a claim skips
/// the rows another claim has locked.
const DIALECT: Dialect = Dialect {
    param: |n| format!("${n}"),
    id_order: r#"id COLLATE "C""#,
    uses: "UNNEST($1::text[], $2::timestamptz[]) AS u(id, at)",
    notify: Some(channel_name),
    lock_user: Some(lock_user),
    claim_lock: " FOR UPDATE SKIP LOCKED",
    quote: '"',
    writes: Writes::Standard,
};

/// The first key of the advisory lock an insert under the per-user cap holds (the second
/// is a hash of the table name and the user id).
const CAP_LOCK_CLASS: i32 = i32::from_be_bytes(*b"tpcp");

/// Locks one user's tokens until the transaction ends: an advisory lock keyed by the
/// table and the user id's text. Under `READ COMMITTED` the count that follows then sees
/// every insert of the transactions that held the lock before, so concurrent inserts for
/// one user take turns; other users' inserts do not wait (unless their keys collide,
/// which only makes them take turns too).
fn lock_user(table: &str) -> String {
    format!("SELECT pg_advisory_xact_lock({CAP_LOCK_CLASS}, hashtext('{table}:' || $1::text))")
}

/// The channel a store on `table` notifies of revocations: `tower_pat:` and the table
/// name (at most 58 bytes, within PostgreSQL's 63).
fn channel_name(table: &str) -> String {
    format!("tower_pat:{table}")
}

sql_store! {
    store: PostgresStore,
    pool: PgPool,
    dialect: DIALECT,
    reserved_prefix: RESERVED_PREFIX,
    table_rule: "not starting with a digit. The name is quoted in every statement, so it is case-sensitive and may be a reserved word.",
    prune_rule: "each batch is its own short transaction, so a big table is never locked for long.",
}

impl<U> PostgresStore<U> {
    /// Connects a pool to `url` (`postgres://user:password@host:port/database`, or
    /// `postgresql://…`), waiting at most [`DEFAULT_CONNECT_TIMEOUT`] (5 s) for the
    /// database: see [`connect_with`](Self::connect_with).
    ///
    /// Runs no migration: call [`migrate`](Self::migrate).
    ///
    /// # Errors
    ///
    /// As [`connect_with`](Self::connect_with).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, DEFAULT_CONNECT_TIMEOUT).await
    }

    /// Connects a pool to `url` (`postgres://user:password@host:port/database`, or
    /// `postgresql://…`), waiting at most `timeout` for the database. A refused
    /// connection is tried again until then (a database that is starting refuses
    /// connections); the pool then gives up acquiring a connection after `timeout` too.
    /// Otherwise sqlx's default pool options.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tower_pat::PostgresStore;
    ///
    /// # async fn run() -> Result<(), tower_pat::store::StoreError> {
    /// // A database that may take a while to come up.
    /// let store = PostgresStore::<i64>::connect_with(
    ///     "postgres://app@db.internal/app",
    ///     Duration::from_secs(20),
    /// )
    /// .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Runs no migration: call [`migrate`](Self::migrate).
    ///
    /// # Errors
    ///
    /// [`StoreError`] at once when `url` is not a PostgreSQL URL (naming its scheme and
    /// the accepted ones) or does not parse; when the database cannot be reached within
    /// `timeout` ([`StoreErrorKind::Timeout`]: refused, or no answer), or refuses the
    /// connection for another reason (a wrong password, a missing database). These name
    /// the host and port (or the socket) and say why. No error shows the URL or the
    /// password.
    pub async fn connect_with(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let options = connect_options(url)?;
        let server = server(&options);
        let deadline = tokio::time::Instant::now() + timeout;
        server
            .reach(|| PgConnection::connect_with(&options), deadline, timeout)
            .await?;
        let pool = PgPoolOptions::new()
            .acquire_timeout(timeout)
            .connect_with(options)
            .await
            .map_err(|error| server.cannot_connect(error))?;
        Ok(Self::new(pool))
    }

    /// The channel the table's change feed notifies: `tower_pat:` and the table name.
    /// The triggers [`migrate`](Self::migrate) (or
    /// [`install_change_feed`](Self::install_change_feed)) puts on the table send the ids
    /// of the rows every `DELETE`, and every `UPDATE` that revokes, rotates, shortens or
    /// otherwise changes a token, changed, whoever runs it (this store, an admin's plain
    /// SQL, another program), with `pg_notify`: space-separated, at most 200 per
    /// notification, sent if, and only if, the change commits. [`listen`](Self::listen)
    /// evicts them from a [`CachedStore`](super::CachedStore); anything else may `LISTEN`
    /// to it too.
    pub fn channel(&self) -> &str {
        self.table.sql.channel.as_deref().unwrap_or_default()
    }
}

impl<U: PostgresUserId> PostgresStore<U> {
    /// The migrations for this store's table and user id type, as [`migrate`](Self::migrate)
    /// runs them (0001, 0002, then the change feed of 0003, each statement idempotent): to
    /// read, or to hand to your own migration tool.
    pub fn schema_sql(&self) -> String {
        let user_id_type = U::type_info();
        format!(
            "{}\n{}\n{}",
            render(MIGRATION, &self.table.name, user_id_type.name()),
            render(MIGRATION_LIFECYCLE, &self.table.name, user_id_type.name()),
            self.change_feed_sql()
        )
    }

    /// The change feed alone (`0003_change_feed.sql` filled in): the function and the two
    /// triggers that announce every writer's changes on [`channel`](Self::channel), as
    /// [`install_change_feed`](Self::install_change_feed) runs it.
    pub fn change_feed_sql(&self) -> String {
        render(MIGRATION_FEED, &self.table.name, U::type_info().name())
    }

    /// Puts the change feed on a table that exists already (made by your own migration
    /// tool from an older [`schema_sql`](Self::schema_sql), say), without touching
    /// anything else: the function is replaced, the triggers are created if missing.
    /// [`migrate`](Self::migrate) does this too. Runs in one transaction, under the
    /// advisory lock `migrate` takes.
    ///
    /// Without the feed, [`listen`](Self::listen) hears nothing, and a token revoked
    /// through another instance stays cached here until the cache's TTL.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database refuses the statements (the table does not exist,
    /// or the role may not create functions or triggers on it).
    pub async fn install_change_feed(&self) -> Result<(), StoreError> {
        self.run_locked(self.change_feed_sql()).await
    }

    /// Creates the table and its indexes if they are missing, and brings a table made by
    /// an earlier version up to date (the columns and index of
    /// `0002_token_lifecycle.sql`, `IF NOT EXISTS`; rows are kept), and installs the
    /// change feed (`0003_change_feed.sql`: see
    /// [`install_change_feed`](Self::install_change_feed)); changes nothing otherwise, so
    /// it is safe to run at every start. Runs in one transaction holding an
    /// advisory lock (per table name), so instances that start together take turns.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database refuses the statements (or the user id type's SQL
    /// name is not a plain type name).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let user_id_type = U::type_info();
        check_type_name(user_id_type.name(), TYPE_NAME_PUNCTUATION)?;
        self.run_locked(self.schema_sql()).await
    }

    /// Runs `sql` in one transaction holding the advisory lock of this table's migrations.
    async fn run_locked(&self, sql: String) -> Result<(), StoreError> {
        let lock = i32::from_be_bytes(crc32fast::hash(self.table.name.as_bytes()).to_be_bytes());
        let mut tx = self.pool.begin().await.map_err(StoreError::new)?;
        // A second run would log "already exists, skipping" for every statement.
        sqlx::query("SET LOCAL client_min_messages TO warning")
            .execute(&mut *tx)
            .await
            .map_err(StoreError::new)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(MIGRATE_LOCK_CLASS)
            .bind(lock)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::new)?;
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::new)?;
        tx.commit().await.map_err(StoreError::new)
    }

    async fn fetch_one_record(
        &self,
        query: sqlx::query::Query<'_, Postgres, PgArguments>,
    ) -> Result<Option<TokenRecord<U>>, StoreError> {
        let row = query
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::new)?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn prune_where(
        &self,
        statement: &SqlStr,
        before: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let deleted = changed(
                sqlx::query(statement.clone())
                    .bind(before)
                    .bind(i64::from(self.table.prune_batch)),
                &self.pool,
            )
            .await?;
            total += deleted;
            if deleted < u64::from(self.table.prune_batch) {
                return Ok(total);
            }
        }
    }
}

#[async_trait]
impl<U: PostgresUserId> TokenStore for PostgresStore<U> {
    type UserId = U;

    async fn find(&self, hash: &TokenHash) -> Lookup<U> {
        let query = sqlx::query(self.table.sql.find.clone()).bind(&hash.as_bytes()[..]);
        Ok(self.fetch_one_record(query).await?.map(Arc::new))
    }

    async fn touch(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        // One statement for the whole batch, as two arrays.
        let ids: Vec<String> = uses.iter().map(|(id, _)| id.to_string()).collect();
        let times: Vec<OffsetDateTime> = uses.iter().map(|(_, at)| *at).collect();
        sqlx::query(self.table.sql.touch.clone())
            .bind(ids)
            .bind(times)
            .execute(&self.pool)
            .await
            .map_err(StoreError::new)?;
        Ok(())
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// Binds the [`COLUMNS`](sql::COLUMNS) of `record`, in order.
fn bind_record<'q, U: PostgresUserId>(query: PgQuery<'q>, record: &TokenRecord<U>) -> PgQuery<'q> {
    query
        .bind(record.id.to_string())
        .bind(&record.user_id)
        .bind(record.client_id.as_deref())
        .bind(record.name.as_str())
        .bind(record.scopes.to_string())
        .bind(&record.token_hash.as_bytes()[..])
        .bind(record.revoked)
        .bind(record.created_at)
        .bind(record.updated_at)
        .bind(record.expires_at)
        .bind(record.last_used_at)
        .bind(record.rotated_from.map(|id| id.to_string()))
        .bind(record.rotated_to.map(|id| id.to_string()))
}

impl<U: PostgresUserId> PostgresStore<U> {
    async fn fetch_records(&self, query: PgQuery<'_>) -> Result<Vec<TokenRecord<U>>, StoreError> {
        let rows = query.fetch_all(&self.pool).await.map_err(StoreError::new)?;
        rows.iter().map(record_from_row).collect()
    }
}

#[async_trait]
impl<U: PostgresUserId> ManageTokens for PostgresStore<U> {
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
        // One statement does the change (a concurrent revoke waits for the row lock, then
        // finds it revoked), so two revokes cannot both win; a second query only tells
        // "already revoked" from "not this user's".
        let changed = changed(
            sqlx::query(self.table.sql.revoke.clone())
                .bind(at)
                .bind(id.as_str())
                .bind(user),
            &self.pool,
        )
        .await?;
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
        changed(
            sqlx::query(self.table.sql.revoke_all.clone())
                .bind(at)
                .bind(user),
            &self.pool,
        )
        .await
    }

    async fn delete(&self, user: &U, id: TokenId) -> Result<bool, StoreError> {
        let deleted = changed(
            sqlx::query(self.table.sql.delete.clone())
                .bind(id.to_string())
                .bind(user),
            &self.pool,
        )
        .await?;
        Ok(deleted > 0)
    }

    async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
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
                .bind(cursor.at())
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
        let mut tx = self.pool.begin().await.map_err(StoreError::new)?;
        if let Some(lock) = &self.table.sql.lock_user {
            sqlx::query(lock.clone())
                .bind(&record.user_id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::new)?;
        }
        let inserted = bind_record(sqlx::query(self.table.sql.insert_limited.clone()), &record)
            .bind(now)
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
        let mut tx = self.pool.begin().await.map_err(StoreError::new)?;
        // The update takes the old row's lock until the transaction ends: a concurrent
        // rotation waits for it, then finds `rotated_to` set and changes nothing. The
        // table's trigger announces the old id, delivered if, and only if, this commits.
        let changed = changed(
            sqlx::query(self.table.sql.rotate.clone())
                .bind(successor.id.to_string())
                .bind(old_expires_at)
                .bind(at)
                .bind(old_id.as_str())
                .bind(user),
            &mut *tx,
        )
        .await?;
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
            .bind(now)
            .bind(until)
            .bind(from_at)
            .bind(from_id)
            .bind(i64::from(limit));
        self.fetch_records(query).await
    }

    async fn claim_expiry_notices(
        &self,
        within: time::Duration,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<TokenRecord<U>>, StoreError> {
        let query = sqlx::query(self.table.sql.claim_notices.clone())
            .bind(within.whole_seconds())
            .bind(now)
            .bind(now + within)
            .bind(i64::from(limit));
        let mut claimed = self.fetch_records(query).await?;
        claimed.sort_by_key(|r| (r.expires_at, r.id));
        Ok(claimed)
    }
}

/// The URL schemes [`PostgresStore::connect`] accepts.
const SCHEMES: [&str; 2] = ["postgres", "postgresql"];

/// `url` as connection options, or an error that says what is wrong with it (never
/// showing the URL itself: it may hold a password).
fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    match url.split_once(':') {
        Some((scheme, _)) if SCHEMES.iter().any(|s| scheme.eq_ignore_ascii_case(s)) => {}
        Some((scheme, rest)) if is_scheme(scheme) => {
            let slashes = if rest.starts_with("//") { "//" } else { "" };
            return Err(StoreError::with_kind(
                StoreErrorKind::Backend,
                format!(
                    "unsupported URL scheme `{scheme}:{slashes}`: PostgresStore accepts \
                     `postgres://` and `postgresql://` URLs"
                ),
            ));
        }
        _ => {
            return Err(StoreError::with_kind(
                StoreErrorKind::Backend,
                "not a PostgreSQL URL: expected `postgres://user:password@host:port/database` \
                 (or `postgresql://…`)",
            ));
        }
    }
    url.parse::<PgConnectOptions>().map_err(|error| {
        StoreError::with_kind(
            StoreErrorKind::Backend,
            format!("invalid PostgreSQL URL: {error}"),
        )
        .with_source(error)
    })
}

/// RFC 3986: a letter, then letters, digits, `+`, `-` and `.`.
fn is_scheme(text: &str) -> bool {
    text.len() <= 32
        && text.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// The server `options` connect to, for messages.
fn server(options: &PgConnectOptions) -> Server {
    Server::new(
        "PostgreSQL",
        options.get_socket().map(|p| p.as_path()),
        options.get_host(),
        options.get_port(),
    )
}

/// Runs a changing statement and returns how many rows it changed (the table's triggers
/// announce them on the store's channel).
async fn changed<'c, E>(query: PgQuery<'_>, executor: E) -> Result<u64, StoreError>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    let done = query.execute(executor).await.map_err(StoreError::new)?;
    Ok(done.rows_affected())
}

/// Reads a row back, exactly, or says which row is bad and why.
fn record_from_row<U: PostgresUserId>(row: &PgRow) -> Result<TokenRecord<U>, StoreError> {
    let (raw_id, id) = sql::read_id(row)?;
    let row_id = raw_id.as_str();
    let scopes = sql::read_scopes(row, row_id)?;
    let token_hash = sql::read_token_hash(row, row_id)?;

    Ok(TokenRecord {
        id,
        user_id: required(row, row_id, "user_id")?,
        client_id: optional(row, row_id, "client_id")?,
        name: required(row, row_id, "name")?,
        scopes,
        token_hash,
        revoked: required(row, row_id, "revoked")?,
        created_at: required(row, row_id, "created_at")?,
        updated_at: required(row, row_id, "updated_at")?,
        expires_at: required(row, row_id, "expires_at")?,
        last_used_at: optional(row, row_id, "last_used_at")?,
        rotated_from: sql::read_optional_id(row, row_id, "rotated_from")?,
        rotated_to: sql::read_optional_id(row, row_id, "rotated_to")?,
        kind: crate::credential::CredentialKind::Pat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::check_table_name;

    #[test]
    fn table_names_are_checked() {
        for good in ["personal_access_tokens", "_t", "User", &"a".repeat(48)] {
            assert!(
                check_table_name(good, MAX_TABLE_NAME_LEN, RESERVED_PREFIX).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "",
            "1tokens",
            "public.tokens",
            "pat\"; DROP TABLE x; --",
            "pat-tokens",
            "tökens",
            &"a".repeat(49),
        ] {
            let err = check_table_name(bad, MAX_TABLE_NAME_LEN, RESERVED_PREFIX).unwrap_err();
            assert_eq!(err.name(), bad);
            assert!(err.to_string().contains("invalid table name"));
        }
    }

    #[test]
    fn the_migration_is_filled_in() {
        let sql = render(MIGRATION, "my_tokens", "UUID");
        assert!(sql.starts_with("-- tower-pat personal access tokens"));
        assert!(
            !sql.contains("{table}") && !sql.contains("{user_id_type}"),
            "{sql}"
        );
        assert!(sql.contains(r#"CREATE TABLE IF NOT EXISTS "my_tokens""#));
        assert!(sql.contains("user_id      UUID NOT NULL"));
        assert!(sql.contains(r#"CONSTRAINT "my_tokens_token_hash_key" UNIQUE (token_hash)"#));
        assert!(check_type_name("INT8", TYPE_NAME_PUNCTUATION).is_ok());
        assert!(check_type_name("TEXT[]", TYPE_NAME_PUNCTUATION).is_ok());
        assert!(check_type_name("x; DROP TABLE y", TYPE_NAME_PUNCTUATION).is_err());
    }
}
