//! [`MySqlStore`]: tokens in a MySQL or MariaDB table (sqlx), for services that share one
//! MySQL 8 or MariaDB database (10.6 and later; tested on 10.11) — Laravel's default
//! database: every instance of the API shares the table, so a token created or revoked
//! through one instance is seen by all of them on their next request.
//!
//! ```no_run
//! use tower_pat::{MySqlStore, Tokens, scope::ScopeRegistry};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MySqlStore::<i64>::connect("mysql://app@db.internal/app").await?;
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
//! With an existing pool, another table name, and string user ids:
//!
//! ```no_run
//! use tower_pat::MySqlStore;
//!
//! # async fn run(pool: sqlx::MySqlPool) -> Result<(), tower_pat::store::StoreError> {
//! let store = MySqlStore::<String>::new(pool).with_table("api_tokens");
//! store.migrate().await?; // creates `user_id VARCHAR(255)`
//! # Ok(()) }
//! ```
//!
//! # Schema
//!
//! `migrations/mysql/0001_personal_access_tokens.sql` and `0002_token_lifecycle.sql` in
//! the crate's repository, with the table name and the user id's SQL type filled in
//! ([`MySqlStore::schema_sql`] shows the result). Passport's columns plus `token_hash`
//! (`VARBINARY(32)`, unique) and `last_used_at`; scopes are space-delimited `TEXT`; text
//! compares byte for byte (`utf8mb4_bin`).
//!
//! Timestamps are `DATETIME(6)` holding UTC, to the microsecond: the store converts every
//! time it writes to UTC and reads every one back as UTC, so the session's `time_zone`
//! plays no part (a `DATETIME` is never converted by the server, unlike a `TIMESTAMP`,
//! which also ends in 2038). A sub-microsecond part is dropped.
//!
//! Indexes serve every query the store makes: by hash, by id, by user, by expiry (the
//! expiring list and the notices), and the two kinds of pruning.
//!
//! # Concurrency
//!
//! Each state change is one statement, or one transaction: a rotation locks the old row
//! (`SELECT … FOR UPDATE`) before it marks it, so of two rotations of one token exactly
//! one succeeds; a claim of expiry notices reads its candidates without locking them, then
//! marks each by its primary key with an `UPDATE` that checks it again as it stands, so of
//! two claims at once exactly one takes each token, and the claim holds no lock on the
//! index that a rotation would wait for (a `FOR UPDATE` scan deadlocked with rotations;
//! `SKIP LOCKED` skipped rows InnoDB's range scans only looked past); a transaction InnoDB
//! still picks as a deadlock's victim is run again, up to three times; an insert under a per-user cap holds a named lock
//! (`GET_LOCK`) on that user while it counts and inserts, so concurrent creations never
//! exceed the cap, whatever the isolation level.
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
    AssertSqlSafe, Connection, Decode, Encode, MySql, SqlStr, Type, TypeInfo,
    mysql::{
        MySqlArguments, MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions, MySqlRow,
    },
    pool::PoolConnection,
};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use super::poller::{ChangePoller, DEFAULT_POLL_INTERVAL, FollowOptions};
pub use super::sql::InvalidTableName;
use super::{
    Cursor, Lookup, ManageTokens, Revoked, Rotated, StoreError, StoreErrorKind, TokenStore, feed,
    sql::{
        self, Dialect, Server, Table, Writes, check_type_name, optional, render, required,
        sql_store,
    },
};
#[cfg(feature = "cache")]
use super::{cache::Evictor, poller};
use crate::{
    record::{TokenId, TokenRecord, UserId},
    token::TokenHash,
};

/// The migration, with `{table}` and `{user_id_type}` to fill in.
const MIGRATION: &str = include_str!("../../migrations/mysql/0001_personal_access_tokens.sql");

/// The second migration: the lifecycle columns and the expiry index.
const MIGRATION_LIFECYCLE: &str = include_str!("../../migrations/mysql/0002_token_lifecycle.sql");

/// The third migration: the change table and the triggers that fill it.
const MIGRATION_FEED: &str = feed::MYSQL;

/// How long after a change took its id in the change table its transaction may commit
/// and still be read: the poller reads this last stretch's ids again.
#[cfg(feature = "cache")]
const LOOKBACK: Duration = Duration::from_secs(10);

/// How long [`MySqlStore::connect`] waits for the database, unless told otherwise
/// ([`MySqlStore::connect_with`]).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The table [`MySqlStore::new`] uses unless told otherwise.
pub const DEFAULT_TABLE: &str = "personal_access_tokens";

/// How many rows one `DELETE` of [`prune`](ManageTokens::prune) removes at most, unless
/// configured with [`MySqlStore::prune_batch_size`].
pub const DEFAULT_PRUNE_BATCH: u32 = 1000;

/// The longest table name accepted: index and constraint names append up to 21
/// characters, and MySQL cuts names at 64.
pub const MAX_TABLE_NAME_LEN: usize = 43;

/// MySQL keeps no prefix of table names for itself (its catalogs live in their own
/// schemas).
const RESERVED_PREFIX: Option<&str> = None;

/// What a user id's SQL type name may hold besides ASCII letters and digits.
const TYPE_NAME_PUNCTUATION: &[u8] = b"_ (),";

/// How long an insert under the per-user cap, and a migration, wait for their named lock
/// before they give up ([`StoreErrorKind::Timeout`]), in seconds.
const LOCK_WAIT_SECS: i64 = 10;

/// What a user id type needs to live in MySQL: `i64`, `i32`, `u64`, `String`, and with
/// sqlx's `uuid` feature `uuid::Uuid` (16 bytes) all qualify. Implemented for every such
/// type.
pub trait MySqlUserId:
    UserId + Type<MySql> + for<'q> Encode<'q, MySql> + for<'r> Decode<'r, MySql>
{
}

impl<T> MySqlUserId for T where
    T: UserId + Type<MySql> + for<'q> Encode<'q, MySql> + for<'r> Decode<'r, MySql>
{
}

/// Personal access tokens in a MySQL or MariaDB table, through an sqlx pool.
///
/// Every statement is a runtime query (no compile-time checking, so building needs no
/// database) on a table whose name is validated once, when it is set. Cheap to clone: the
/// clones share the pool.
///
/// - [`connect`](Self::connect) to a URL, or [`new`](Self::new) over a pool you
///   configured yourself (any `time_zone`, any isolation level).
/// - [`migrate`](Self::migrate) creates the table and its indexes if they are missing.
/// - [`with_table`](Self::with_table) picks another table name (unqualified: it lives in
///   the connection's database).
pub struct MySqlStore<U = i64> {
    pool: MySqlPool,
    table: Table,
    user: PhantomData<fn() -> U>,
}

/// `?`, numbered in a comment (see [`bind`]); the uses `touch` writes come as one JSON
/// array of `[id, "YYYY-MM-DD hh:mm:ss.ffffff"]` (UTC), read with `JSON_TABLE`. The cap
/// holds a named lock per user around its statement (see [`UserLock`]), not a lock of the
/// template's; a claim reads without locking and marks each row with a checking `UPDATE`
/// (see the module docs).
const DIALECT: Dialect = Dialect {
    param: |n| format!("?/*{n}*/"),
    id_order: "id",
    uses: "JSON_TABLE(?/*1*/, '$[*]' COLUMNS (id CHAR(32) PATH '$[0]', at DATETIME(6) PATH '$[1]')) AS u",
    notify: None,
    lock_user: None,
    claim_lock: "",
    quote: '`',
    writes: Writes::MySql,
};

sql_store! {
    store: MySqlStore,
    pool: MySqlPool,
    dialect: DIALECT,
    reserved_prefix: RESERVED_PREFIX,
    table_rule: "not starting with a digit. The name is quoted in every statement, so it may be a reserved word; whether case matters is the server's `lower_case_table_names`.",
    prune_rule: "each batch is its own short statement, so a big table is never locked for long.",
}

impl<U> MySqlStore<U> {
    /// Connects a pool to `url` (`mysql://user:password@host:port/database`, or
    /// `mariadb://…`), waiting at most [`DEFAULT_CONNECT_TIMEOUT`] (5 s) for the database:
    /// see [`connect_with`](Self::connect_with).
    ///
    /// Runs no migration: call [`migrate`](Self::migrate).
    ///
    /// # Errors
    ///
    /// As [`connect_with`](Self::connect_with).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, DEFAULT_CONNECT_TIMEOUT).await
    }

    /// Connects a pool to `url` (`mysql://user:password@host:port/database`, or
    /// `mariadb://…`), waiting at most `timeout` for the database. A refused connection is
    /// tried again until then (a database that is starting refuses connections); the pool
    /// then gives up acquiring a connection after `timeout` too. Otherwise sqlx's default
    /// options (among them `time_zone` `+00:00`, which the store does not rely on).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tower_pat::MySqlStore;
    ///
    /// # async fn run() -> Result<(), tower_pat::store::StoreError> {
    /// // A database that may take a while to come up.
    /// let store =
    ///     MySqlStore::<i64>::connect_with("mysql://app@db.internal/app", Duration::from_secs(20))
    ///         .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Runs no migration: call [`migrate`](Self::migrate).
    ///
    /// # Errors
    ///
    /// [`StoreError`] at once when `url` is not a MySQL URL (naming its scheme and the
    /// accepted ones) or does not parse; when the database cannot be reached within
    /// `timeout` ([`StoreErrorKind::Timeout`]: refused, or no answer), or refuses the
    /// connection for another reason (a wrong password, a missing database). These name
    /// the host and port (or the socket) and say why. No error shows the URL or the
    /// password.
    pub async fn connect_with(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let options = connect_options(url)?;
        let server = server(&options);
        let deadline = tokio::time::Instant::now() + timeout;
        server
            .reach(
                || MySqlConnection::connect_with(&options),
                deadline,
                timeout,
            )
            .await?;
        let pool = MySqlPoolOptions::new()
            .acquire_timeout(timeout)
            .connect_with(options)
            .await
            .map_err(|error| server.cannot_connect(error))?;
        Ok(Self::new(pool))
    }
}

/// The SQL type the user id column gets for `U`: sqlx's name for it, with a length where
/// MySQL needs one to index the column (`VARCHAR(255)` for `String`, `VARBINARY(255)` for
/// bytes and `uuid::Uuid`).
fn user_id_type<U: MySqlUserId>() -> String {
    let info = U::type_info();
    let name = info.name();
    match name {
        "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "CHAR" => {
            "VARCHAR(255)".to_owned()
        }
        "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BINARY" => {
            "VARBINARY(255)".to_owned()
        }
        other => other.to_owned(),
    }
}

impl<U: MySqlUserId> MySqlStore<U> {
    /// The migrations for this store's table and user id type, as [`migrate`](Self::migrate)
    /// runs them (0001, 0002, then the change feed of 0003): to read, or to hand to your own
    /// migration tool, which must run each statement of 0002 and 0003 once.
    pub fn schema_sql(&self) -> String {
        let user_id_type = user_id_type::<U>();
        format!(
            "{}\n{}\n{}",
            render(MIGRATION, &self.table.name, &user_id_type),
            render(MIGRATION_LIFECYCLE, &self.table.name, &user_id_type),
            self.change_feed_sql()
        )
    }

    /// The change feed alone (`0003_change_feed.sql` filled in): the change table
    /// `<table>_changes` and the two triggers that record every writer's changes in it.
    pub fn change_feed_sql(&self) -> String {
        render(MIGRATION_FEED, &self.table.name, &user_id_type::<U>())
    }

    /// Puts the change feed on a table that exists already (made by your own migration
    /// tool from an older [`schema_sql`](Self::schema_sql), say), without touching
    /// anything else: the change table and each trigger are created if missing.
    /// [`migrate`](Self::migrate) does this too. Holds `migrate`'s named lock meanwhile.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database refuses the statements (the table does not exist,
    /// or the account lacks the TRIGGER privilege), or the lock is not free within 10 s
    /// ([`StoreErrorKind::Timeout`]).
    pub async fn install_change_feed(&self) -> Result<(), StoreError> {
        let mut lock = NamedLock::acquire(
            &self.pool,
            "tower_pat_migrate",
            &self.table.name,
            None::<&U>,
        )
        .await?;
        let result = self.install_feed(lock.connection()).await;
        lock.release().await;
        result
    }

    /// Runs the statements of the change feed that are not done yet on `conn`.
    async fn install_feed(&self, conn: &mut MySqlConnection) -> Result<(), StoreError> {
        let triggers: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(trigger_name AS CHAR) FROM information_schema.triggers \
             WHERE event_object_schema = DATABASE() AND event_object_table = ?",
        )
        .bind(self.table.name.as_ref())
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::new)?;
        for statement in sql::split_statements(&self.change_feed_sql()) {
            if created_trigger(&statement)
                .is_some_and(|t| triggers.iter().any(|have| have.eq_ignore_ascii_case(t)))
            {
                continue;
            }
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut *conn)
                .await
                .map_err(StoreError::new)?;
        }
        Ok(())
    }

    /// Creates the table and its indexes if they are missing, and brings a table made by
    /// an earlier version up to date (the columns and index of `0002_token_lifecycle.sql`,
    /// each added only if missing, as `information_schema` tells; rows are kept), and
    /// installs the change feed (`0003_change_feed.sql`: see
    /// [`install_change_feed`](Self::install_change_feed)); changes nothing otherwise, so it is safe to run at every start. Holds a named lock (per
    /// table name) meanwhile, so instances that start together take turns. MySQL commits
    /// each DDL statement by itself: a migration cut short is completed by the next run.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database refuses the statements (or the user id type's SQL
    /// name is not a plain type name), or the lock is not free within 10 s
    /// ([`StoreErrorKind::Timeout`]).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let user_id_type = user_id_type::<U>();
        check_type_name(&user_id_type, TYPE_NAME_PUNCTUATION)?;
        let table = &self.table.name;
        let mut lock =
            NamedLock::acquire(&self.pool, "tower_pat_migrate", table, None::<&U>).await?;
        let result = async {
            let conn = lock.connection();
            let create = render(MIGRATION, table, &user_id_type);
            for statement in sql::split_statements(&create) {
                sqlx::raw_sql(AssertSqlSafe(statement))
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::new)?;
            }
            let columns: Vec<String> = sqlx::query_scalar(
                "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = ?",
            )
            .bind(table.as_ref())
            .fetch_all(&mut *conn)
            .await
            .map_err(StoreError::new)?;
            let indexes: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT CAST(index_name AS CHAR) FROM information_schema.statistics \
                 WHERE table_schema = DATABASE() AND table_name = ?",
            )
            .bind(table.as_ref())
            .fetch_all(&mut *conn)
            .await
            .map_err(StoreError::new)?;
            let lifecycle = render(MIGRATION_LIFECYCLE, table, &user_id_type);
            for statement in sql::split_statements(&lifecycle) {
                let done = sql::added_column(&statement)
                    .is_some_and(|c| columns.iter().any(|have| have.eq_ignore_ascii_case(c)))
                    || created_index(&statement)
                        .is_some_and(|i| indexes.iter().any(|have| have.eq_ignore_ascii_case(i)));
                if done {
                    continue;
                }
                sqlx::raw_sql(AssertSqlSafe(statement))
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::new)?;
            }
            self.install_feed(conn).await
        }
        .await;
        lock.release().await;
        result
    }

    async fn fetch_one_record(
        &self,
        query: MySqlQuery<'_>,
    ) -> Result<Option<TokenRecord<U>>, StoreError> {
        let row = query
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::new)?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn fetch_records(
        &self,
        query: MySqlQuery<'_>,
    ) -> Result<Vec<TokenRecord<U>>, StoreError> {
        let rows = query.fetch_all(&self.pool).await.map_err(StoreError::new)?;
        rows.iter().map(record_from_row).collect()
    }

    async fn execute(&self, query: MySqlQuery<'_>) -> Result<u64, StoreError> {
        Ok(query
            .execute(&self.pool)
            .await
            .map_err(StoreError::new)?
            .rows_affected())
    }

    async fn prune_where(
        &self,
        statement: &SqlStr,
        before: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let args = [
                Arg::At(utc(before)),
                Arg::Int(i64::from(self.table.prune_batch)),
            ];
            let deleted = self.execute(bind::<U>(statement, &args)).await?;
            total += deleted;
            if deleted < u64::from(self.table.prune_batch) {
                return Ok(total);
            }
        }
    }
}

/// How many times a transaction InnoDB picked as a deadlock's victim is run (it was rolled
/// back whole, so running it again is safe): InnoDB's next-key locks let a rotation's
/// inserts and another statement's range locks wait for each other.
const DEADLOCK_ATTEMPTS: u32 = 3;

/// Whether `error` is InnoDB rolling back this transaction to break a deadlock (1213).
fn is_deadlock(error: &StoreError) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<sqlx::Error>())
        .and_then(sqlx::Error::as_database_error)
        .and_then(|error| error.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .is_some_and(|error| error.number() == 1213)
}

impl<U: MySqlUserId> MySqlStore<U> {
    /// One attempt at [`rotate`](ManageTokens::rotate), in one transaction.
    async fn rotate_once(
        &self,
        user: &U,
        id: TokenId,
        successor: &TokenRecord<U>,
        old_expires_at: OffsetDateTime,
        at: OffsetDateTime,
    ) -> Result<Rotated<U>, StoreError> {
        let old_id = id.to_string();
        let successor_id = successor.id.to_string();
        let mut tx = self.pool.begin().await.map_err(StoreError::new)?;
        // The old row's lock, held until the transaction ends: a concurrent rotation waits
        // for it, then finds `rotated_to` set and changes nothing.
        let lock_row = sql::statement(format!(
            "SELECT id FROM `{}` WHERE id = ?/*1*/ FOR UPDATE",
            self.table.name
        ));
        bind::<U>(&lock_row, &[Arg::Text(&old_id)])
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::new)?;
        let args = [
            Arg::Text(&successor_id),
            Arg::At(utc(old_expires_at)),
            Arg::At(utc(at)),
            Arg::Text(&old_id),
            Arg::User(user),
        ];
        let changed = bind(&self.table.sql.rotate, &args)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::new)?
            .rows_affected();
        if changed > 0 {
            let texts = record_texts(successor);
            bind(&self.table.sql.insert, &record_args(successor, &texts))
                .execute(&mut *tx)
                .await
                .map_err(|err| sql::insert_error(successor.id, err))?;
        }
        let row = bind::<U>(&self.table.sql.get, &[Arg::Text(&old_id)])
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

    /// One attempt at [`claim_expiry_notices`](ManageTokens::claim_expiry_notices), in
    /// one transaction.
    async fn claim_once(
        &self,
        within: time::Duration,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<TokenRecord<U>>, StoreError> {
        let within_secs = within.whole_seconds();
        let args = [
            Arg::Int(within_secs),
            Arg::At(utc(now)),
            Arg::At(utc(now + within)),
            Arg::Int(i64::from(limit)),
        ];
        let mut tx = self.pool.begin().await.map_err(StoreError::new)?;
        // Candidates, read without locks: each is taken only if its mark, under the row's
        // lock, finds it still claimable.
        let rows = bind::<U>(&self.table.sql.claim_notices, &args)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::new)?;
        let candidates = rows
            .iter()
            .map(record_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut claimed = Vec::with_capacity(candidates.len());
        let Some(mark) = &self.table.sql.mark_notice else {
            return Err(StoreError::unsupported("claim_expiry_notices"));
        };
        for record in candidates {
            // The mark checks the row again as it stands: a claim that took it between
            // the read and now makes this one change nothing, and it is not returned.
            let id = record.id.to_string();
            let marked = bind::<U>(mark, &[Arg::Int(within_secs), Arg::Text(&id)])
                .execute(&mut *tx)
                .await
                .map_err(StoreError::new)?
                .rows_affected();
            if marked > 0 {
                claimed.push(record);
            }
        }
        tx.commit().await.map_err(StoreError::new)?;
        claimed.sort_by_key(|r| (r.expires_at, r.id));
        Ok(claimed)
    }
}

/// The index a `CREATE INDEX <name> ON …` statement creates, if it is one.
fn created_index(statement: &str) -> Option<&str> {
    let rest = statement.strip_prefix("CREATE INDEX ")?;
    rest.split_whitespace()
        .next()
        .map(|name| name.trim_matches('`'))
}

/// The trigger a `CREATE TRIGGER <name> …` statement creates, if it is one.
fn created_trigger(statement: &str) -> Option<&str> {
    let rest = statement.strip_prefix("CREATE TRIGGER ")?;
    rest.split_whitespace()
        .next()
        .map(|name| name.trim_matches('`'))
}

type MySqlQuery<'q> = sqlx::query::Query<'q, MySql, MySqlArguments>;

/// The value of one numbered parameter of a statement.
enum Arg<'a, U> {
    Text(&'a str),
    MaybeText(Option<&'a str>),
    Int(i64),
    Bool(bool),
    Bytes(&'a [u8]),
    User(&'a U),
    At(PrimitiveDateTime),
    MaybeAt(Option<PrimitiveDateTime>),
}

/// The parameters' numbers, in the order their `?` appear in `sql`: `?/*2*/ … ?/*1*/ …
/// ?/*2*/` gives 2, 1, 2.
fn numbered(sql: &str) -> impl Iterator<Item = usize> + '_ {
    sql.split("?/*")
        .skip(1)
        .filter_map(|rest| rest.split_once("*/")?.0.parse().ok())
}

/// `statement` with parameter `n` bound to `args[n - 1]` at every `?` numbered `n`:
/// MySQL's `?` is anonymous, each one bound in turn, so a parameter the template names
/// twice is bound twice, and the order of the `?` in the text, not the order of the
/// parameters' numbers, is the order of binding.
fn bind<'a, U: MySqlUserId>(statement: &SqlStr, args: &[Arg<'a, U>]) -> MySqlQuery<'a> {
    let mut query = sqlx::query(statement.clone());
    for n in numbered(statement.as_str()) {
        let Some(arg) = n.checked_sub(1).and_then(|i| args.get(i)) else {
            // Unbound: the database refuses the statement, naming the count.
            continue;
        };
        query = match arg {
            Arg::Text(v) => query.bind(*v),
            Arg::MaybeText(v) => query.bind(*v),
            Arg::Int(v) => query.bind(*v),
            Arg::Bool(v) => query.bind(*v),
            Arg::Bytes(v) => query.bind(*v),
            Arg::User(v) => query.bind(*v),
            Arg::At(v) => query.bind(*v),
            Arg::MaybeAt(v) => query.bind(*v),
        };
    }
    query
}

/// `at` in UTC, without its offset: what a `DATETIME` column holds.
fn utc(at: OffsetDateTime) -> PrimitiveDateTime {
    let at = at.to_offset(UtcOffset::UTC);
    PrimitiveDateTime::new(at.date(), at.time())
}

/// The [`COLUMNS`](sql::COLUMNS) of `record`, in order (parameters 1 to 13); the texts
/// are `texts`' (see [`record_texts`]).
fn record_args<'a, U>(record: &'a TokenRecord<U>, texts: &'a RecordTexts) -> Vec<Arg<'a, U>> {
    vec![
        Arg::Text(&texts.id),
        Arg::User(&record.user_id),
        Arg::MaybeText(record.client_id.as_deref()),
        Arg::Text(record.name.as_str()),
        Arg::Text(&texts.scopes),
        Arg::Bytes(&record.token_hash.as_bytes()[..]),
        Arg::Bool(record.revoked),
        Arg::At(utc(record.created_at)),
        Arg::At(utc(record.updated_at)),
        Arg::At(utc(record.expires_at)),
        Arg::MaybeAt(record.last_used_at.map(utc)),
        Arg::MaybeText(texts.rotated_from.as_deref()),
        Arg::MaybeText(texts.rotated_to.as_deref()),
    ]
}

/// The columns of a record that are written as text made for the purpose.
struct RecordTexts {
    id: String,
    scopes: String,
    rotated_from: Option<String>,
    rotated_to: Option<String>,
}

fn record_texts<U>(record: &TokenRecord<U>) -> RecordTexts {
    RecordTexts {
        id: record.id.to_string(),
        scopes: record.scopes.to_string(),
        rotated_from: record.rotated_from.map(|id| id.to_string()),
        rotated_to: record.rotated_to.map(|id| id.to_string()),
    }
}

/// A named lock (`GET_LOCK`) held by one pooled connection. MySQL ties it to the session,
/// not to a transaction: [`release`](Self::release) frees it, and a lock never released
/// (an error, a cancelled future) closes its connection instead of returning it to the
/// pool, which frees the lock on the server.
struct NamedLock {
    conn: PoolConnection<MySql>,
    name: String,
    released: bool,
}

/// The lock name: `kind`, `:`, and the MD5 of the table name and (for a user's lock) the
/// user id, which keeps it within MySQL's 64 characters.
const LOCK_NAME: &str = "CONCAT(?, ':', MD5(CONCAT(?, ':', COALESCE(?, ''))))";

impl NamedLock {
    async fn acquire<U: MySqlUserId>(
        pool: &MySqlPool,
        kind: &str,
        table: &str,
        user: Option<&U>,
    ) -> Result<Self, StoreError> {
        let conn = pool.acquire().await.map_err(StoreError::new)?;
        // From here on, a call that fails or is cancelled may leave the lock held: the
        // connection then closes.
        let mut lock = Self {
            conn,
            name: String::new(),
            released: false,
        };
        let (name, got): (String, Option<i64>) = sqlx::query_as(AssertSqlSafe(format!(
            // The parameters in the order of their `?`: kind, table, user, wait.
            "SELECT n.name, GET_LOCK(n.name, n.wait) FROM (SELECT {LOCK_NAME} AS name, ? AS wait) AS n"
        )))
        .bind(kind)
        .bind(table)
        .bind(user)
        .bind(LOCK_WAIT_SECS)
        .fetch_one(&mut *lock.conn)
        .await
        .map_err(StoreError::new)?;
        lock.name = name;
        if got != Some(1) {
            // Not held (a timeout answers 0): the connection is clean.
            lock.released = true;
            return Err(StoreError::with_kind(
                StoreErrorKind::Timeout,
                format!(
                    "the named lock {} was not free within {LOCK_WAIT_SECS} s",
                    lock.name
                ),
            ));
        }
        Ok(lock)
    }

    fn connection(&mut self) -> &mut MySqlConnection {
        &mut self.conn
    }

    /// Frees the lock, and the connection goes back to the pool; if the server cannot
    /// be told, the connection closes instead, which frees the lock as surely. What was
    /// done under the lock stands either way, so this reports nothing.
    async fn release(mut self) {
        let released = sqlx::query("SELECT RELEASE_LOCK(?)")
            .bind(self.name.as_str())
            .execute(&mut *self.conn)
            .await;
        self.released = released.is_ok();
    }
}

impl Drop for NamedLock {
    fn drop(&mut self) {
        if !self.released {
            self.conn.close_on_drop();
        }
    }
}

#[async_trait]
impl<U: MySqlUserId> TokenStore for MySqlStore<U> {
    type UserId = U;

    async fn find(&self, hash: &TokenHash) -> Lookup<U> {
        let args = [Arg::Bytes(&hash.as_bytes()[..])];
        let query = bind::<U>(&self.table.sql.find, &args);
        Ok(self.fetch_one_record(query).await?.map(Arc::new))
    }

    async fn touch(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        // One statement for the whole batch: `[["<id>","<UTC time>"], …]` (ids are hex).
        let mut batch = String::with_capacity(uses.len() * 64 + 2);
        batch.push('[');
        for (i, (id, at)) in uses.iter().enumerate() {
            if i > 0 {
                batch.push(',');
            }
            let at = utc(*at);
            batch.push_str(&format!(
                r#"["{id}","{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}"]"#,
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second(),
                at.microsecond()
            ));
        }
        batch.push(']');
        self.execute(bind::<U>(&self.table.sql.touch, &[Arg::Text(&batch)]))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl<U: MySqlUserId> ManageTokens for MySqlStore<U> {
    async fn insert(&self, record: TokenRecord<U>) -> Result<(), StoreError> {
        let texts = record_texts(&record);
        let args = record_args(&record, &texts);
        let result = bind(&self.table.sql.insert, &args)
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => Err(sql::insert_error(record.id, err)),
        }
    }

    async fn get(&self, id: TokenId) -> Result<Option<TokenRecord<U>>, StoreError> {
        let id = id.to_string();
        self.fetch_one_record(bind::<U>(&self.table.sql.get, &[Arg::Text(&id)]))
            .await
    }

    async fn list(&self, user: &U) -> Result<Vec<TokenRecord<U>>, StoreError> {
        self.fetch_records(bind(&self.table.sql.list, &[Arg::User(user)]))
            .await
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
        let args = [Arg::At(utc(at)), Arg::Text(&id), Arg::User(user)];
        if self.execute(bind(&self.table.sql.revoke, &args)).await? > 0 {
            return Ok(Revoked::Revoked);
        }
        let exists = bind(&self.table.sql.owned, &[Arg::Text(&id), Arg::User(user)])
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
        let args = [Arg::At(utc(at)), Arg::User(user)];
        self.execute(bind(&self.table.sql.revoke_all, &args)).await
    }

    async fn delete(&self, user: &U, id: TokenId) -> Result<bool, StoreError> {
        let id = id.to_string();
        let args = [Arg::Text(&id), Arg::User(user)];
        Ok(self.execute(bind(&self.table.sql.delete, &args)).await? > 0)
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
        let limit = i64::from(limit);
        match after {
            None => {
                let args = [Arg::User(user), Arg::Int(limit)];
                self.fetch_records(bind(&self.table.sql.list_first, &args))
                    .await
            }
            Some(cursor) => {
                let id = cursor.id().to_string();
                let args = [
                    Arg::User(user),
                    Arg::At(utc(cursor.at())),
                    Arg::Text(&id),
                    Arg::Int(limit),
                ];
                self.fetch_records(bind(&self.table.sql.list_after, &args))
                    .await
            }
        }
    }

    async fn insert_limited(
        &self,
        record: TokenRecord<U>,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        // The user's named lock is held while the one statement counts and inserts: an
        // insert for the same user waits for it, then counts this one.
        let mut lock = NamedLock::acquire(
            &self.pool,
            "tower_pat_cap",
            &self.table.name,
            Some(&record.user_id),
        )
        .await?;
        let texts = record_texts(&record);
        let mut args = record_args(&record, &texts);
        args.push(Arg::At(utc(now)));
        args.push(Arg::Int(i64::from(limit)));
        let mut attempt = 1;
        let inserted = loop {
            let inserted = bind(&self.table.sql.insert_limited, &args)
                .execute(lock.connection())
                .await
                .map_err(|err| sql::insert_error(record.id, err));
            match inserted {
                // Its count's shared locks can deadlock with a rotation's insert.
                Err(error) if is_deadlock(&error) && attempt < DEADLOCK_ATTEMPTS => attempt += 1,
                inserted => break inserted,
            }
        };
        lock.release().await;
        Ok(inserted?.rows_affected() > 0)
    }

    async fn rotate(
        &self,
        user: &U,
        id: TokenId,
        successor: TokenRecord<U>,
        old_expires_at: OffsetDateTime,
        at: OffsetDateTime,
    ) -> Result<Rotated<U>, StoreError> {
        let mut attempt = 1;
        loop {
            match self
                .rotate_once(user, id, &successor, old_expires_at, at)
                .await
            {
                Err(error) if is_deadlock(&error) && attempt < DEADLOCK_ATTEMPTS => attempt += 1,
                outcome => return outcome,
            }
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
        let args = [
            Arg::At(utc(now)),
            Arg::At(utc(until)),
            Arg::At(utc(from_at)),
            Arg::Text(&from_id),
            Arg::Int(i64::from(limit)),
        ];
        self.fetch_records(bind::<U>(&self.table.sql.expiring, &args))
            .await
    }

    async fn claim_expiry_notices(
        &self,
        within: time::Duration,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<TokenRecord<U>>, StoreError> {
        let mut attempt = 1;
        loop {
            match self.claim_once(within, now, limit).await {
                Err(error) if is_deadlock(&error) && attempt < DEADLOCK_ATTEMPTS => attempt += 1,
                outcome => return outcome,
            }
        }
    }
}

/// The URL schemes [`MySqlStore::connect`] accepts.
const SCHEMES: [&str; 2] = ["mysql", "mariadb"];

/// `url` as connection options, or an error that says what is wrong with it (never
/// showing the URL itself: it may hold a password).
fn connect_options(url: &str) -> Result<MySqlConnectOptions, StoreError> {
    let url = match url.split_once(':') {
        Some((scheme, rest)) if SCHEMES.iter().any(|s| scheme.eq_ignore_ascii_case(s)) => {
            // sqlx reads `mysql:` only; a MariaDB server speaks the same protocol.
            format!("mysql:{rest}")
        }
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme.len() <= 32
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) =>
        {
            let slashes = if rest.starts_with("//") { "//" } else { "" };
            return Err(StoreError::with_kind(
                StoreErrorKind::Backend,
                format!(
                    "unsupported URL scheme `{scheme}:{slashes}`: MySqlStore accepts \
                     `mysql://` and `mariadb://` URLs"
                ),
            ));
        }
        _ => {
            return Err(StoreError::with_kind(
                StoreErrorKind::Backend,
                "not a MySQL URL: expected `mysql://user:password@host:port/database` \
                 (or `mariadb://…`)",
            ));
        }
    };
    url.parse::<MySqlConnectOptions>().map_err(|error| {
        StoreError::with_kind(
            StoreErrorKind::Backend,
            format!("invalid MySQL URL: {error}"),
        )
        .with_source(error)
    })
}

/// The server `options` connect to, for messages.
fn server(options: &MySqlConnectOptions) -> Server {
    Server::new(
        "MySQL",
        options.get_socket().map(|p| p.as_path()),
        options.get_host(),
        options.get_port(),
    )
}

/// Reads a row back, exactly, or says which row is bad and why.
fn record_from_row<U: MySqlUserId>(row: &MySqlRow) -> Result<TokenRecord<U>, StoreError> {
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

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
impl<U: MySqlUserId> MySqlStore<U> {
    /// Evicts from a [`CachedStore`](super::CachedStore) every token that any writer
    /// revokes, rotates, shortens or deletes in this table, with the default
    /// [`FollowOptions`] (a read every 250 ms): see
    /// [`follow_changes_with`](Self::follow_changes_with).
    ///
    /// ```no_run
    /// use tower_pat::{MySqlStore, Tokens, scope::ScopeRegistry, store::CachedStore};
    ///
    /// # async fn run(pool: sqlx::MySqlPool, registry: ScopeRegistry) -> Result<(), tower_pat::store::StoreError> {
    /// let mysql = MySqlStore::<i64>::new(pool);
    /// mysql.migrate().await?; // installs the change feed too
    /// let store = CachedStore::new(mysql.clone());
    /// mysql.follow_changes(store.evictor()).await?;
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
    /// revokes, rotates, shortens or deletes in this table, whoever it is (this store on
    /// another instance, an admin's `UPDATE`, Laravel): the table's triggers
    /// ([`install_change_feed`](Self::install_change_feed)) record each changed id in
    /// `<table>_changes`, and a task reads what is new there every
    /// [`FollowOptions::interval`] (250 ms by default) and hands it to `evictor`. Returns
    /// once it has read the change table's end; the polling runs on the Tokio runtime
    /// until the cache is dropped (or [`ChangePoller::stop`]).
    ///
    /// **Propagation bound.** A change committed by any writer is refused here within the
    /// interval, plus the time of one read. The change table's ids are taken when a
    /// change is made, not when it commits, so each read also reads again the ids taken
    /// in the 10 s before the previous read (each row is evicted once): a writer whose
    /// transaction stays open for longer than that after its change may go unseen, and
    /// then only the cache's TTL bounds it. A read that fails, or has not answered within
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
        let changes = poller::PoolChanges {
            pool: self.pool.clone(),
            sql: feed::ChangeTable::mysql(&self.table.name),
            lookback: LOOKBACK,
        };
        poller::start(changes, evictor, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::{Statements, check_table_name};

    #[test]
    fn table_names_are_checked() {
        for good in ["personal_access_tokens", "_t", "User", &"a".repeat(43)] {
            assert!(
                check_table_name(good, MAX_TABLE_NAME_LEN, RESERVED_PREFIX).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "",
            "1tokens",
            "app.tokens",
            "pat`; DROP TABLE x; --",
            "pat-tokens",
            "tökens",
            &"a".repeat(44),
        ] {
            let err = check_table_name(bad, MAX_TABLE_NAME_LEN, RESERVED_PREFIX).unwrap_err();
            assert_eq!(err.name(), bad);
        }
    }

    #[test]
    fn the_migration_is_filled_in() {
        let sql = render(MIGRATION, "my_tokens", "BIGINT");
        assert!(sql.starts_with("-- tower-pat personal access tokens"));
        assert!(
            !sql.contains("{table}") && !sql.contains("{user_id_type}"),
            "{sql}"
        );
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS `my_tokens`"));
        assert!(sql.contains("user_id      BIGINT NOT NULL"));
        let lifecycle = render(MIGRATION_LIFECYCLE, "my_tokens", "BIGINT");
        let statements = sql::split_statements(&lifecycle);
        assert_eq!(statements.len(), 4, "{statements:#?}");
        assert_eq!(sql::added_column(&statements[0]), Some("rotated_from"));
        assert_eq!(sql::added_column(&statements[2]), Some("expiry_notice"));
        assert_eq!(
            created_index(&statements[3]),
            Some("my_tokens_expiring_idx")
        );
        assert_eq!(user_id_type::<i64>(), "BIGINT");
        assert_eq!(user_id_type::<String>(), "VARCHAR(255)");
        assert!(check_type_name("BIGINT UNSIGNED", TYPE_NAME_PUNCTUATION).is_ok());
        assert!(check_type_name("x; DROP TABLE y", TYPE_NAME_PUNCTUATION).is_err());
    }

    #[test]
    fn parameters_are_bound_in_the_order_their_marks_appear() {
        assert_eq!(
            numbered("a = ?/*2*/ AND b < ?/*1*/ OR c = ?/*2*/").collect::<Vec<_>>(),
            [2, 1, 2]
        );
        let sql = Statements::new("t", &DIALECT);
        // The expiring list: now, until, the cursor's time, the cursor's id, limit — each
        // named where it is used, the cursor's time twice.
        assert_eq!(
            numbered(sql.expiring.as_str()).collect::<Vec<_>>(),
            [1, 2, 3, 3, 4, 5]
        );
        // The claim: within (twice in the template, once here), now, until, limit.
        assert_eq!(
            numbered(sql.claim_notices.as_str()).collect::<Vec<_>>(),
            [2, 3, 1, 4]
        );
        assert_eq!(
            numbered(sql.rotate.as_str()).collect::<Vec<_>>(),
            [1, 2, 2, 2, 3, 3, 4, 5, 3]
        );
        let capped: Vec<usize> = numbered(sql.insert_limited.as_str()).collect();
        assert_eq!(capped, (1..=13).chain([2, 14, 15]).collect::<Vec<_>>());
        for statement in [&sql.find, &sql.touch, &sql.prune_expired, &sql.list_after] {
            assert!(!statement.as_str().contains('"'), "{}", statement.as_str());
        }
    }
}
