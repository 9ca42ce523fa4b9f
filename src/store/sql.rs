//! What the sqlx stores (`SqliteStore`, `PostgresStore` and `MySqlStore`) do the same way: the
//! table and type name checks, filling in the migration, the statements (one template,
//! with a small [`Dialect`] for what differs), the constructor, builder and accessor
//! block ([`sql_store!`]), the mapping of an `INSERT`'s failure, and reading back the
//! columns both databases store alike (id, scopes, token hash, and any column through
//! [`required`] / [`optional`]).
//!
//! What depends on the database stays in each store's module: binding (timestamps are
//! `TIMESTAMPTZ` in PostgreSQL, Unix seconds in SQLite), decoding, the row type, and the
//! sqlx bounds on the user id. The stores are deliberately not generic over sqlx's
//! `Database`: the bounds that would take are worse than the few lines of binding each
//! store writes.

use std::{fmt, str::FromStr, sync::Arc};

use sqlx::{AssertSqlSafe, ColumnIndex, Decode, Row, SqlSafeStr, SqlStr, Type};

use super::{Rotated, StoreError, StoreErrorKind};
use crate::{
    record::{TokenId, TokenRecord},
    scope::Scopes,
    token::TokenHash,
};

/// A table name a store's `try_with_table` refused (`SqliteStore::try_with_table`,
/// `PostgresStore::try_with_table`): its message names it and says what the store
/// accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct InvalidTableName {
    name: String,
    /// The store's longest table name, named in the message.
    max_len: usize,
    /// The prefix the database keeps for itself, if any, named in the message.
    reserved_prefix: Option<&'static str>,
}

impl InvalidTableName {
    /// The name that was refused.
    pub fn name(&self) -> &str {
        &self.name
    }
}

// By hand, to print the name alone (`InvalidTableName("no way")`): the other fields only
// shape the message.
impl fmt::Debug for InvalidTableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("InvalidTableName").field(&self.name).finish()
    }
}

impl fmt::Display for InvalidTableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid table name {:?}: expected 1 to {} ASCII letters, digits and `_`, not \
             starting with a digit",
            self.name, self.max_len
        )?;
        if let Some(prefix) = self.reserved_prefix {
            write!(f, " nor with `{prefix}`")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidTableName {}

/// Accepts 1 to `max_len` ASCII letters, digits and `_`, not starting with a digit nor, in
/// any case, with `reserved_prefix` (given in lowercase) when there is one: such a name
/// holds no quote, so it can go into SQL as it is.
///
/// # Errors
///
/// [`InvalidTableName`] naming `name` otherwise.
pub(crate) fn check_table_name(
    name: &str,
    max_len: usize,
    reserved_prefix: Option<&'static str>,
) -> Result<(), InvalidTableName> {
    let valid = (1..=max_len).contains(&name.len())
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && reserved_prefix.is_none_or(|prefix| !name.to_ascii_lowercase().starts_with(prefix));
    if valid {
        Ok(())
    } else {
        Err(InvalidTableName {
            name: name.to_owned(),
            max_len,
            reserved_prefix,
        })
    }
}

/// The user id's SQL type goes into DDL as it is: it must look like a type name, ASCII
/// letters and digits and the database's `punctuation`.
///
/// # Errors
///
/// [`StoreErrorKind::Backend`] naming the type otherwise.
pub(crate) fn check_type_name(name: &str, punctuation: &[u8]) -> Result<(), StoreError> {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || punctuation.contains(&b));
    if plain {
        Ok(())
    } else {
        Err(StoreError::with_kind(
            StoreErrorKind::Backend,
            format!("the user id's SQL type {name:?} is not a plain type name"),
        ))
    }
}

/// Fills in the migration, without its leading comment block (which explains the
/// placeholders).
pub(crate) fn render(template: &str, table: &str, user_id_type: &str) -> String {
    let body: Vec<&str> = template
        .lines()
        .skip_while(|line| line.starts_with("--") || line.trim().is_empty())
        .collect();
    format!(
        "-- tower-pat personal access tokens: table \"{table}\", user id {user_id_type}\n{}\n",
        body.join("\n")
    )
    .replace("{table}", table)
    .replace("{user_id_type}", user_id_type)
}

/// The columns of the table, in the order of [`Statements::insert`]'s parameters.
pub(crate) const COLUMNS: &str = "id, user_id, client_id, name, scopes, token_hash, revoked, \
                                  created_at, updated_at, expires_at, last_used_at, \
                                  rotated_from, rotated_to";

/// How many columns [`COLUMNS`] names: the parameters of an insert.
const COLUMN_COUNT: usize = 13;

/// What differs between the two databases' SQL.
pub(crate) struct Dialect {
    /// The `n`-th parameter, from 1: `$1` (PostgreSQL), `?1` (SQLite), or `?/*1*/`
    /// (MySQL: an anonymous `?`, numbered in a comment so that the store binds each
    /// occurrence in order, however often a parameter repeats).
    pub(crate) param: fn(usize) -> String,
    /// The id column as `list` breaks ties with it: in byte order whatever the
    /// database's collation.
    pub(crate) id_order: &'static str,
    /// A table `u(id, at)` of the uses one `touch` writes, read from the statement's
    /// parameter(s).
    pub(crate) uses: &'static str,
    /// The channel the table's change feed notifies, given the table name (PostgreSQL,
    /// whose triggers send it: see `feed`); `None` where the database has no
    /// notifications (SQLite).
    pub(crate) notify: Option<fn(&str) -> String>,
    /// A statement that takes a lock on one user's tokens until the transaction ends,
    /// given the table name, its one parameter the user id (PostgreSQL: an advisory
    /// lock); `None` where a write transaction locks the whole database already (SQLite,
    /// which begins it `IMMEDIATE`).
    pub(crate) lock_user: Option<fn(&str) -> String>,
    /// What follows the subquery that picks the rows a claim takes, so that two claims
    /// at once never take the same row: `FOR UPDATE SKIP LOCKED` (PostgreSQL),
    /// or nothing: where writes are serialized anyway (SQLite), or where the claim is a
    /// read of candidates each marked by a checking `UPDATE` (MySQL, whose next-key locks
    /// made a locking scan deadlock with rotations and `SKIP LOCKED` skip rows a scan only
    /// looked past).
    pub(crate) claim_lock: &'static str,
    /// The character that quotes the table name: `"` (PostgreSQL, SQLite) or `` ` ``
    /// (MySQL, whose `"` quotes strings unless the session is in `ANSI_QUOTES` mode).
    pub(crate) quote: char,
    /// Which forms of the writing statements the database takes.
    pub(crate) writes: Writes,
}

/// The forms of the statements that write while reading: what SQL the database takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writes {
    /// `UPDATE … FROM`, `UPDATE … RETURNING`, and an `UPDATE` or `DELETE` whose
    /// subquery reads its own table (PostgreSQL, SQLite).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    Standard,
    /// MySQL and MariaDB, which take none of these: `touch` joins the uses
    /// (`UPDATE … JOIN … SET`), a prune is `DELETE … LIMIT`, a claim is a locking
    /// `SELECT` followed by one [`Statements::mark_notice`] per row (run in one
    /// transaction), and the capped insert selects `FROM DUAL`.
    #[cfg(feature = "mysql")]
    MySql,
}

/// The statements, built once per table name by each store. Each store binds the
/// parameters named here, in this order. Booleans are written `TRUE` and `NOT revoked`,
/// which both databases read alike (SQLite stores them as 1 and 0).
pub(crate) struct Statements {
    /// [`COLUMNS`] of the row with `token_hash`.
    pub(crate) find: SqlStr,
    /// [`COLUMNS`] of the row with `id`.
    pub(crate) get: SqlStr,
    /// [`COLUMNS`] of the rows with `user_id`, newest first (ties by id, descending).
    pub(crate) list: SqlStr,
    /// Adds a row: the [`COLUMNS`], in order.
    pub(crate) insert: SqlStr,
    /// Revokes, setting `updated_at`, the row with `id` and `user_id`, unless it is
    /// revoked already: `updated_at`, `id`, `user_id`.
    pub(crate) revoke: SqlStr,
    /// A row if one has `id` and `user_id`.
    pub(crate) owned: SqlStr,
    /// Revokes, setting `updated_at`, every row with `user_id` not revoked yet:
    /// `updated_at`, `user_id`.
    pub(crate) revoke_all: SqlStr,
    /// Deletes the row with `id` and `user_id`.
    pub(crate) delete: SqlStr,
    /// Sets `last_used_at` of every row of the batch ([`Dialect::uses`]), unless it holds
    /// a later time.
    pub(crate) touch: SqlStr,
    /// Deletes at most `limit` rows that expired before `before`: `before`, `limit`.
    pub(crate) prune_expired: SqlStr,
    /// Deletes at most `limit` rows revoked before `before`: `before`, `limit`.
    pub(crate) prune_revoked: SqlStr,
    /// The first `limit` rows of `user_id`, newest first: `user_id`, `limit`.
    pub(crate) list_first: SqlStr,
    /// The `limit` rows of `user_id` after the cursor, newest first: `user_id`,
    /// the cursor's `created_at`, the cursor's `id`, `limit`.
    pub(crate) list_after: SqlStr,
    /// Adds a row, unless its user has `limit` live tokens (not revoked, not rotated,
    /// not expired at `now`) already: the [`COLUMNS`], in order, then `now`, `limit`.
    /// One statement: run in a transaction that holds [`lock_user`](Self::lock_user)
    /// where the dialect has one (MySQL's store holds a named lock of its own instead).
    pub(crate) insert_limited: SqlStr,
    /// Locks one user's tokens until the transaction ends: `user_id`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) lock_user: Option<SqlStr>,
    /// Marks the live row with `id` and `user_id` as rotated: sets `rotated_to`, lowers
    /// `expires_at` to `old_expires_at` (never raises it), revokes it when
    /// `old_expires_at` is not after `at`, sets `updated_at`: `rotated_to`,
    /// `old_expires_at`, `at`, `id`, `user_id`. Changes nothing (0 rows) for a row that is
    /// revoked, expired at `at`, or rotated already.
    pub(crate) rotate: SqlStr,
    /// Live rows (not revoked, not rotated) expiring after `now` and at the latest at
    /// `until`, by expiry then id, after a cursor: `now`, `until`, the cursor's
    /// `expires_at`, the cursor's `id`, `limit`. The first page passes `now` and `""`.
    pub(crate) expiring: SqlStr,
    /// Claims the expiry notice of at most `limit` live rows expiring after `now` and at
    /// the latest at `until` whose notice, if any, was for a longer threshold than
    /// `within`; sets it to `within` and returns the rows ([`COLUMNS`]): `within` (whole
    /// seconds), `now`, `until`, `limit`.
    pub(crate) claim_notices: SqlStr,
    /// Where the dialect's claim is a locking `SELECT` ([`Writes::MySql`]): the `UPDATE`
    /// that records one claimed notice, `within` (whole seconds), `id`. It checks the row
    /// again, under its lock, as it stands then: 0 rows when another claim took it first.
    #[cfg(feature = "mysql")]
    pub(crate) mark_notice: Option<SqlStr>,
    /// The channel the table's change feed notifies, if the dialect has notifications.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) channel: Option<String>,
}

impl Statements {
    /// The statements for `table`, which has passed [`check_table_name`] (or is the
    /// default): it holds no quote.
    pub(crate) fn new(table: &str, dialect: &Dialect) -> Self {
        let p = dialect.param;
        let (p1, p2, p3, p4, p5) = (p(1), p(2), p(3), p(4), p(5));
        let id_order = dialect.id_order;
        let uses = dialect.uses;
        let params = (1..=COLUMN_COUNT).map(p).collect::<Vec<_>>().join(", ");
        let (now, limit) = (p(COLUMN_COUNT + 1), p(COLUMN_COUNT + 2));
        let user = p(2);
        let claim_lock = dialect.claim_lock;
        let quote = dialect.quote;
        // The table name holds no quote of either kind.
        let t = format!("{quote}{table}{quote}");
        let writes = dialect.writes;
        // A live token counts against the cap, the notices and the expiring list: not
        // revoked, not replaced by a rotation.
        let live = "NOT revoked AND rotated_to IS NULL";
        let channel = dialect.notify.map(|name| name(table));
        // Nothing to notify by hand: the table's triggers announce every change (`feed`).
        let changing = statement;
        let prune = |condition: &str| match writes {
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            Writes::Standard => changing(format!(
                r#"DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE {condition} LIMIT {p2})"#
            )),
            #[cfg(feature = "mysql")]
            Writes::MySql => changing(format!(r#"DELETE FROM {t} WHERE {condition} LIMIT {p2}"#)),
        };
        // `SELECT` without `FROM` takes no `WHERE` in MySQL.
        let dual = match writes {
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            Writes::Standard => "",
            #[cfg(feature = "mysql")]
            Writes::MySql => " FROM DUAL",
        };
        // The rows a claim takes.
        let claimable = format!(
            r#"{live} AND expires_at > {p2} AND expires_at <= {p3} AND (expiry_notice IS NULL OR expiry_notice > {p1})"#
        );
        Self {
            find: statement(format!(
                r#"SELECT {COLUMNS} FROM {t} WHERE token_hash = {p1}"#
            )),
            get: statement(format!(r#"SELECT {COLUMNS} FROM {t} WHERE id = {p1}"#)),
            list: statement(format!(
                r#"SELECT {COLUMNS} FROM {t} WHERE user_id = {p1} ORDER BY created_at DESC, {id_order} DESC"#
            )),
            insert: statement(format!(r#"INSERT INTO {t} ({COLUMNS}) VALUES ({params})"#)),
            revoke: changing(format!(
                r#"UPDATE {t} SET revoked = TRUE, updated_at = {p1} WHERE id = {p2} AND user_id = {p3} AND NOT revoked"#
            )),
            owned: statement(format!(
                r#"SELECT 1 FROM {t} WHERE id = {p1} AND user_id = {p2}"#
            )),
            revoke_all: changing(format!(
                r#"UPDATE {t} SET revoked = TRUE, updated_at = {p1} WHERE user_id = {p2} AND NOT revoked"#
            )),
            delete: changing(format!(
                r#"DELETE FROM {t} WHERE id = {p1} AND user_id = {p2}"#
            )),
            touch: statement(match writes {
                #[cfg(any(feature = "sqlite", feature = "postgres"))]
                Writes::Standard => format!(
                    r#"UPDATE {t} SET last_used_at = u.at FROM {uses} WHERE {t}.id = u.id AND ({t}.last_used_at IS NULL OR {t}.last_used_at < u.at)"#
                ),
                #[cfg(feature = "mysql")]
                Writes::MySql => format!(
                    r#"UPDATE {t} JOIN {uses} ON {t}.id = u.id SET {t}.last_used_at = u.at WHERE {t}.last_used_at IS NULL OR {t}.last_used_at < u.at"#
                ),
            }),
            prune_expired: prune(&format!("expires_at < {p1}")),
            prune_revoked: prune(&format!("revoked AND updated_at < {p1}")),
            list_first: statement(format!(
                r#"SELECT {COLUMNS} FROM {t} WHERE user_id = {p1} ORDER BY created_at DESC, {id_order} DESC LIMIT {p2}"#
            )),
            list_after: statement(format!(
                r#"SELECT {COLUMNS} FROM {t} WHERE user_id = {p1} AND (created_at < {p2} OR (created_at = {p2} AND {id_order} < {p3})) ORDER BY created_at DESC, {id_order} DESC LIMIT {p4}"#
            )),
            insert_limited: statement(format!(
                r#"INSERT INTO {t} ({COLUMNS}) SELECT {params}{dual} WHERE (SELECT count(*) FROM {t} WHERE user_id = {user} AND {live} AND expires_at > {now}) < {limit}"#
            )),
            lock_user: dialect.lock_user.map(|lock| statement(lock(table))),
            rotate: changing(format!(
                r#"UPDATE {t} SET rotated_to = {p1}, expires_at = CASE WHEN expires_at < {p2} THEN expires_at ELSE {p2} END, revoked = CASE WHEN {p2} <= {p3} THEN TRUE ELSE revoked END, updated_at = {p3} WHERE id = {p4} AND user_id = {p5} AND {live} AND expires_at > {p3}"#
            )),
            expiring: statement(format!(
                r#"SELECT {COLUMNS} FROM {t} WHERE {live} AND expires_at > {p1} AND expires_at <= {p2} AND (expires_at > {p3} OR (expires_at = {p3} AND {id_order} > {p4})) ORDER BY expires_at, {id_order} LIMIT {p5}"#
            )),
            claim_notices: statement(match writes {
                #[cfg(any(feature = "sqlite", feature = "postgres"))]
                Writes::Standard => format!(
                    r#"UPDATE {t} SET expiry_notice = {p1} WHERE id IN (SELECT id FROM {t} WHERE {claimable} ORDER BY expires_at, {id_order} LIMIT {p4}{claim_lock}) AND {live} AND (expiry_notice IS NULL OR expiry_notice > {p1}) RETURNING {COLUMNS}"#
                ),
                #[cfg(feature = "mysql")]
                Writes::MySql => format!(
                    r#"SELECT {COLUMNS} FROM {t} WHERE {claimable} ORDER BY expires_at, {id_order} LIMIT {p4}{claim_lock}"#
                ),
            }),
            #[cfg(feature = "mysql")]
            mark_notice: (writes == Writes::MySql).then(|| {
                statement(format!(
                    r#"UPDATE {t} SET expiry_notice = {p1} WHERE id = {p2} AND {live} AND (expiry_notice IS NULL OR expiry_notice > {p1})"#
                ))
            }),
            channel,
        }
    }
}

/// The table a store works on: its name, its statements, and how many rows a prune
/// deletes at once.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    pub(crate) name: Arc<str>,
    pub(crate) sql: Arc<Statements>,
    pub(crate) prune_batch: u32,
}

impl Table {
    pub(crate) fn new(name: &str, dialect: &Dialect, prune_batch: u32) -> Self {
        Self {
            name: Arc::from(name),
            sql: Arc::new(Statements::new(name, dialect)),
            prune_batch,
        }
    }
}

impl fmt::Debug for Statements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Statements").finish_non_exhaustive()
    }
}

/// The constructor, builder and accessor block of a sqlx store, with its docs: written
/// once for both. The store is `struct $store<U> { pool: $pool, table: Table, user:
/// PhantomData<fn() -> U> }`.
macro_rules! sql_store {
    (
        store: $store:ident,
        pool: $pool:ty,
        dialect: $dialect:expr,
        reserved_prefix: $reserved:expr,
        table_rule: $table_rule:literal,
        prune_rule: $prune_rule:literal,
        $(#[$new_doc:meta])*
    ) => {
        impl<U> Clone for $store<U> {
            fn clone(&self) -> Self {
                Self {
                    pool: self.pool.clone(),
                    table: self.table.clone(),
                    user: PhantomData,
                }
            }
        }

        impl<U> fmt::Debug for $store<U> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($store))
                    .field("table", &self.table.name)
                    .field("prune_batch", &self.table.prune_batch)
                    .field("pool", &self.pool)
                    .finish()
            }
        }

        impl<U> $store<U> {
            #[doc = concat!("A store over `pool`, on table [`DEFAULT_TABLE`].")]
            $(#[$new_doc])*
            pub fn new(pool: $pool) -> Self {
                Self {
                    pool,
                    table: $crate::store::sql::Table::new(DEFAULT_TABLE, &$dialect, DEFAULT_PRUNE_BATCH),
                    user: PhantomData,
                }
            }

            /// The same store on table `name`.
            ///
            /// # Panics
            ///
            /// When `name` is not a valid table name, naming it (see
            /// [`try_with_table`](Self::try_with_table)): a table name is configuration,
            /// read at startup, where that is the clearest failure.
            #[track_caller]
            pub fn with_table(self, name: &str) -> Self {
                match self.try_with_table(name) {
                    Ok(store) => store,
                    Err(err) => panic!("{err}"),
                }
            }

            #[doc = concat!(
                "The same store on table `name`: 1 to [`MAX_TABLE_NAME_LEN`] ASCII letters, ",
                "digits and `_`, ", $table_rule, "\n\n",
                "# Errors\n\n[`InvalidTableName`] naming `name` otherwise."
            )]
            pub fn try_with_table(mut self, name: &str) -> Result<Self, InvalidTableName> {
                $crate::store::sql::check_table_name(name, MAX_TABLE_NAME_LEN, $reserved)?;
                self.table = $crate::store::sql::Table::new(name, &$dialect, self.table.prune_batch);
                Ok(self)
            }

            #[doc = concat!(
                "Sets how many rows one `DELETE` of [`prune`](ManageTokens::prune) removes ",
                "at most (default [`DEFAULT_PRUNE_BATCH`]; at least 1): ", $prune_rule
            )]
            pub fn prune_batch_size(mut self, rows: u32) -> Self {
                self.table.prune_batch = rows.max(1);
                self
            }

            /// The pool.
            pub fn pool(&self) -> &$pool {
                &self.pool
            }

            /// The table name.
            pub fn table(&self) -> &str {
                &self.table.name
            }
        }
    };
}
pub(crate) use sql_store;

/// One statement of [`Statements`]: its table name has passed [`check_table_name`] (or is
/// the default) and every value is a parameter, so the text is safe as it is.
pub(crate) fn statement(text: String) -> SqlStr {
    AssertSqlSafe(Arc::<str>::from(text)).into_sql_str()
}

/// What an `INSERT` that failed with `err` returns: a unique violation (same id or same
/// hash) is [`StoreErrorKind::Conflict`] naming token `id`, with `err` as its source;
/// anything else is the backend's failure.
pub(crate) fn insert_error(id: TokenId, err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Database(err) if err.is_unique_violation() => StoreError::with_kind(
            StoreErrorKind::Conflict,
            format!("token {id} exists already (same id or same hash)"),
        )
        .with_source(sqlx::Error::Database(err)),
        err => StoreError::new(err),
    }
}

/// The row's `id`, as stored (to name the row in every later error) and parsed.
///
/// # Errors
///
/// [`StoreErrorKind::Corrupt`] when it is NULL, unreadable, or not in the canonical form
/// (32 lowercase hex digits).
pub(crate) fn read_id<R>(row: &R) -> Result<(String, TokenId), StoreError>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let Some(raw_id) = optional::<String, _>(row, "(unreadable)", "id")? else {
        return Err(StoreError::corrupt("(NULL)", "id is NULL"));
    };
    // Only the canonical form: an id that reads back differently would never match the
    // `WHERE id = …` of a later revoke.
    match TokenId::from_str(&raw_id) {
        Ok(id) if id.to_string() == raw_id => Ok((raw_id, id)),
        _ => Err(StoreError::corrupt(
            &raw_id,
            "id is not 32 lowercase hex digits",
        )),
    }
}

/// Why a rotation changed nothing, from the old row as it is (`None`: no row has the id):
/// not this user's token, rotated already, or no longer active.
pub(crate) fn rotation_refused<U: PartialEq>(old: Option<TokenRecord<U>>, user: &U) -> Rotated<U> {
    match old {
        Some(old) if old.user_id == *user => match old.rotated_to {
            Some(successor) => Rotated::AlreadyRotated(successor),
            None => Rotated::Inactive,
        },
        _ => Rotated::NotFound,
    }
}

/// A nullable column holding a token id (`rotated_from`, `rotated_to`).
///
/// # Errors
///
/// [`StoreErrorKind::Corrupt`] naming `row_id` when the column is unreadable or not a
/// token id in the canonical form.
pub(crate) fn read_optional_id<R>(
    row: &R,
    row_id: &str,
    column: &str,
) -> Result<Option<TokenId>, StoreError>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let Some(raw) = optional::<String, _>(row, row_id, column)? else {
        return Ok(None);
    };
    match TokenId::from_str(&raw) {
        Ok(id) if id.to_string() == raw => Ok(Some(id)),
        _ => Err(StoreError::corrupt(
            row_id,
            format_args!("{column} is not 32 lowercase hex digits"),
        )),
    }
}

/// The statements of a migration file, rendered: split at the `;` that ends a line, each
/// without its leading comment lines, empty ones dropped.
#[cfg_attr(not(any(feature = "sqlite", feature = "mysql")), allow(dead_code))]
pub(crate) fn split_statements(sql: &str) -> Vec<String> {
    sql.split(";\n")
        .map(|chunk| {
            chunk
                .lines()
                .skip_while(|line| line.trim_start().starts_with("--") || line.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .trim_end_matches(';')
                .to_owned()
        })
        .filter(|statement| !statement.is_empty())
        .collect()
}

/// The column an `ALTER TABLE … ADD COLUMN <name> …` statement adds, if it is one.
#[cfg_attr(not(any(feature = "sqlite", feature = "mysql")), allow(dead_code))]
pub(crate) fn added_column(statement: &str) -> Option<&str> {
    let upper = statement.to_ascii_uppercase();
    if !upper.starts_with("ALTER TABLE") {
        return None;
    }
    let at = upper.find("ADD COLUMN")? + "ADD COLUMN".len();
    statement[at..].split_whitespace().next()
}

/// The row's `scopes`, space-delimited text.
///
/// # Errors
///
/// [`StoreErrorKind::Corrupt`] naming `row_id` when the column is NULL, unreadable, or
/// does not parse.
pub(crate) fn read_scopes<R>(row: &R, row_id: &str) -> Result<Scopes, StoreError>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let scopes_text: String = required(row, row_id, "scopes")?;
    Scopes::parse_space_delimited(&scopes_text)
        .map_err(|err| StoreError::corrupt(row_id, format_args!("scopes do not parse: {err}")))
}

/// The row's `token_hash`, 32 bytes.
///
/// # Errors
///
/// [`StoreErrorKind::Corrupt`] naming `row_id` when the column is NULL, unreadable, or
/// not 32 bytes long.
pub(crate) fn read_token_hash<R>(row: &R, row_id: &str) -> Result<TokenHash, StoreError>
where
    R: Row,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let hash: Vec<u8> = required(row, row_id, "token_hash")?;
    <[u8; 32]>::try_from(hash.as_slice())
        .map(TokenHash::from_bytes)
        .map_err(|_| {
            StoreError::corrupt(
                row_id,
                format_args!("token_hash is {} bytes, not 32", hash.len()),
            )
        })
}

/// A column that must not be NULL.
pub(crate) fn required<'r, T, R>(row: &'r R, row_id: &str, column: &str) -> Result<T, StoreError>
where
    R: Row,
    T: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    optional(row, row_id, column)?
        .ok_or_else(|| StoreError::corrupt(row_id, format_args!("{column} is NULL")))
}

/// A nullable column.
pub(crate) fn optional<'r, T, R>(
    row: &'r R,
    row_id: &str,
    column: &str,
) -> Result<Option<T>, StoreError>
where
    R: Row,
    T: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    row.try_get::<Option<T>, _>(column)
        .map_err(|err| read_error(row_id, column, err))
}

/// A value of the wrong type is bad data; anything else (a missing column) is the
/// backend's failure.
fn read_error(row_id: &str, column: &str, err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::ColumnDecode { .. } => {
            StoreError::corrupt(row_id, format_args!("{column} cannot be read")).with_source(err)
        }
        err => StoreError::new(err),
    }
}

/// Where a server is reached, for messages: the database's name and `host:port` (or the
/// Unix socket). Names no user and no password.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) struct Server {
    pub(crate) database: &'static str,
    pub(crate) place: String,
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl Server {
    pub(crate) fn new(
        database: &'static str,
        socket: Option<&std::path::Path>,
        host: &str,
        port: u16,
    ) -> Self {
        let place = match socket {
            Some(socket) => format!("socket {}", socket.display()),
            None if host.contains(':') => format!("[{host}]:{port}"),
            None => format!("{host}:{port}"),
        };
        Self { database, place }
    }

    /// Opens (and closes) one connection with `connect` before `deadline`, trying again
    /// while the server refuses, so that a failure says why.
    pub(crate) async fn reach<C, F, Fut>(
        &self,
        connect: F,
        deadline: tokio::time::Instant,
        timeout: std::time::Duration,
    ) -> Result<(), StoreError>
    where
        C: sqlx::Connection,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<C, sqlx::Error>>,
    {
        let Self { database, place } = self;
        let mut backoff = std::time::Duration::from_millis(10);
        let mut refused = None;
        loop {
            match tokio::time::timeout_at(deadline, connect()).await {
                Ok(Ok(connection)) => {
                    let _ = tokio::time::timeout_at(deadline, connection.close()).await;
                    return Ok(());
                }
                Ok(Err(sqlx::Error::Io(error)))
                    if error.kind() == std::io::ErrorKind::ConnectionRefused =>
                {
                    refused = Some(error);
                }
                Ok(Err(error)) => return Err(self.cannot_connect(error)),
                Err(_) => break,
            }
            if tokio::time::Instant::now() + backoff >= deadline {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(std::time::Duration::from_millis(500));
        }
        Err(match refused {
            Some(error) => StoreError::with_kind(
                StoreErrorKind::Timeout,
                format!(
                    "cannot connect to {database} at {place}: connection refused (tried for {timeout:?}: is the port right, is the server running?)"
                ),
            )
            .with_source(error),
            None => StoreError::with_kind(
                StoreErrorKind::Timeout,
                format!("cannot connect to {database} at {place}: no answer within {timeout:?}"),
            ),
        })
    }

    /// A failure to connect, naming the server (a pool that timed out is a timeout).
    pub(crate) fn cannot_connect(&self, error: sqlx::Error) -> StoreError {
        let kind = match error {
            sqlx::Error::PoolTimedOut => StoreErrorKind::Timeout,
            _ => StoreErrorKind::Backend,
        };
        StoreError::with_kind(
            kind,
            format!(
                "cannot connect to {} at {}: {error}",
                self.database, self.place
            ),
        )
        .with_source(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_split_into_statements_and_name_added_columns() {
        let sql = "-- head\n\nALTER TABLE \"t\" ADD COLUMN a TEXT\n    CHECK (a <> ';');\n-- c\nCREATE INDEX x ON t (a);\n";
        let statements = split_statements(sql);
        assert_eq!(
            statements,
            [
                "ALTER TABLE \"t\" ADD COLUMN a TEXT\n    CHECK (a <> ';')",
                "CREATE INDEX x ON t (a)"
            ]
        );
        assert_eq!(added_column(&statements[0]), Some("a"));
        assert_eq!(added_column(&statements[1]), None);
    }

    #[test]
    fn a_refused_name_reads_as_before() {
        let err = check_table_name("no way", 48, Some("sqlite_")).unwrap_err();
        assert_eq!(err.name(), "no way");
        assert_eq!(format!("{err:?}"), r#"InvalidTableName("no way")"#);
        assert_eq!(
            err.to_string(),
            "invalid table name \"no way\": expected 1 to 48 ASCII letters, digits and `_`, \
             not starting with a digit nor with `sqlite_`"
        );
        let err = check_table_name("no way", 48, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid table name \"no way\": expected 1 to 48 ASCII letters, digits and `_`, \
             not starting with a digit"
        );
        assert!(check_table_name("Sqlite_x", 48, None).is_ok());
        assert!(check_table_name("Sqlite_x", 48, Some("sqlite_")).is_err());
    }
}
