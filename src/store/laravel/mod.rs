//! [`LaravelStore`]: the Sanctum and Passport tokens a Laravel application issued, read from
//! its own tables (`personal_access_tokens`, `oauth_access_tokens`, `oauth_clients`) on
//! MySQL/MariaDB, PostgreSQL or SQLite.

use std::{fmt, marker::PhantomData, str::FromStr};

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};
use time::{
    Duration, OffsetDateTime, PrimitiveDateTime, UtcOffset,
    format_description::BorrowedFormatItem,
    macros::{datetime, format_description},
};

use crate::{
    credential::{Credential, CredentialKind, Presented},
    laravel::PassportClaims,
    record::{TokenId, TokenRecord, UserId},
    scope::{Scope, Scopes},
    store::{Lookup, StoreError, TokenStore},
    token::TokenHash,
};

mod feed;

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use feed::ChangeFollower;
pub use feed::{LARAVEL_CHANGES, LARAVEL_CHANNEL};

/// The model class Laravel's default `User` is stored under in `tokenable_type`.
pub const DEFAULT_OWNER_TYPE: &str = "App\\Models\\User";

/// The expiry given to a Sanctum token whose row has no `expires_at` (and no global
/// expiration applies): it does not expire.
const NEVER: OffsetDateTime = datetime!(9999-12-31 23:59:59 UTC);

/// The connection pool of the Laravel application's database.
#[derive(Clone)]
#[non_exhaustive]
pub enum LaravelPool {
    /// MySQL or MariaDB (`DB_CONNECTION=mysql`/`mariadb`), Laravel's default.
    #[cfg(feature = "mysql")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
    MySql(sqlx::MySqlPool),
    /// PostgreSQL (`DB_CONNECTION=pgsql`).
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    Postgres(sqlx::PgPool),
    /// SQLite (`DB_CONNECTION=sqlite`).
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    Sqlite(sqlx::SqlitePool),
}

impl fmt::Debug for LaravelPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            #[cfg(feature = "mysql")]
            Self::MySql(_) => "LaravelPool::MySql",
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => "LaravelPool::Postgres",
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => "LaravelPool::Sqlite",
        })
    }
}

#[cfg(feature = "mysql")]
impl From<sqlx::MySqlPool> for LaravelPool {
    fn from(pool: sqlx::MySqlPool) -> Self {
        Self::MySql(pool)
    }
}

#[cfg(feature = "postgres")]
impl From<sqlx::PgPool> for LaravelPool {
    fn from(pool: sqlx::PgPool) -> Self {
        Self::Postgres(pool)
    }
}

#[cfg(feature = "sqlite")]
impl From<sqlx::SqlitePool> for LaravelPool {
    fn from(pool: sqlx::SqlitePool) -> Self {
        Self::Sqlite(pool)
    }
}

/// Runs `$body` with `$pool` bound to whichever pool it is: the statements are the same
/// text-typed queries on every database, only the driver differs.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            #[cfg(feature = "mysql")]
            LaravelPool::MySql($p) => $body,
            #[cfg(feature = "postgres")]
            LaravelPool::Postgres($p) => $body,
            #[cfg(feature = "sqlite")]
            LaravelPool::Sqlite($p) => $body,
        }
    };
}
use on_pool;

/// Which database a pool speaks to: what the few differing pieces of SQL depend on. The
/// variants of the databases not built in are never made (their arms stay, one `match`
/// for every feature set).
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(all(feature = "mysql", feature = "postgres", feature = "sqlite")),
    allow(dead_code)
)]
pub(super) enum Db {
    MySql,
    Postgres,
    Sqlite,
}

impl LaravelPool {
    pub(super) fn db(&self) -> Db {
        match self {
            #[cfg(feature = "mysql")]
            Self::MySql(_) => Db::MySql,
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => Db::Postgres,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => Db::Sqlite,
        }
    }

    /// The `n`th (1-based) parameter of a statement.
    fn param(&self, n: usize) -> String {
        match self.db() {
            Db::Postgres => format!("${n}"),
            Db::MySql | Db::Sqlite => "?".to_owned(),
        }
    }

    /// The `n`th parameter, read as a timestamp without a zone.
    fn timestamp_param(&self, n: usize) -> String {
        match self.db() {
            Db::Postgres => format!("CAST(${n} AS TIMESTAMP)"),
            Db::MySql => "CAST(? AS DATETIME)".to_owned(),
            Db::Sqlite => "?".to_owned(),
        }
    }

    /// `expr` read as text: every column is, so one row decoder serves every database.
    fn text(&self, expr: &str) -> String {
        match self.db() {
            Db::MySql => format!("CAST({expr} AS CHAR)"),
            Db::Postgres | Db::Sqlite => format!("CAST({expr} AS TEXT)"),
        }
    }

    /// Whether `SELECT <column> FROM <table>` runs: how an install's schema is told apart.
    async fn has_column(&self, table: &str, column: &str) -> bool {
        let sql = sql(format!("SELECT {column} FROM {table} WHERE 1 = 0"));
        on_pool!(self, |p| sqlx::query(sql).execute(p).await.is_ok())
    }
}

pub(super) fn sql(text: String) -> SqlStr {
    AssertSqlSafe(text).into_sql_str()
}

/// The store's statements, built from the tables and the schema found: what the stores of
/// the crate's own tables keep in their `Statements`, so that a lookup formats nothing.
#[derive(Clone)]
struct Queries {
    sanctum: SqlStr,
    /// None when the install has no Passport tables.
    passport: Option<SqlStr>,
    touch: SqlStr,
}

impl Queries {
    /// Before [`LaravelStore::detect`] has looked at the tables: never run.
    fn unbuilt() -> Self {
        Self {
            sanctum: sql(String::new()),
            passport: None,
            touch: sql(String::new()),
        }
    }
}

/// Which Passport schema an install has: how its personal access client is recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PassportSchema {
    /// 12.x: `oauth_clients.personal_access_client` is true.
    Flag,
    /// 13.x: `oauth_clients.grant_types` (JSON) holds `personal_access`.
    GrantTypes,
}

/// A token store over a Laravel application's own tables: the Sanctum tokens of
/// `personal_access_tokens` and the Passport personal access tokens of
/// `oauth_access_tokens`, as Laravel itself would accept them, so a Rust service admits the
/// tokens the application's users already hold.
///
/// Give the layer the formats ([`PatLayer::accept`](crate::PatLayer::accept) with a
/// [`SanctumFormat`](crate::laravel::SanctumFormat) and a [`PassportFormat`](crate::laravel::PassportFormat));
/// it checks a bearer's shape (and a JWT's signature and dates) before this store is asked,
/// and tells it the key and what the format adds ([`Presented`]).
///
/// **Sanctum** — the row whose `token` is the SHA-256 of the secret; its id must be the one
/// the bearer names (`7|…`), its `tokenable_type` one of the [owner
/// types](Self::owner_types) (default `App\Models\User`), its `expires_at` unpassed and,
/// with [`sanctum_expiration`](Self::sanctum_expiration) (Sanctum's `sanctum.expiration`),
/// its `created_at` recent enough. Abilities are the scopes: `["*"]` grants everything,
/// otherwise exact names. Revocation is the row's deletion. Uses are written back as
/// Laravel writes them (`last_used_at` and `updated_at`), but batched and coalesced by the
/// layer, not on every request.
///
/// **Passport** — the row of `oauth_access_tokens` whose `id` is the JWT's `jti` (a missing
/// row counts as revoked, as in Laravel); `revoked` false; its `user_id` present and equal
/// to the JWT's `sub` (an advisory, GHSA-349c-2h2f-mxf6, was about accepting a token whose
/// row had another); its `client_id` equal to the JWT's `aud`, and that client present, not
/// revoked and a personal access client (12.x: `personal_access_client`; 13.x: `grant_types`
/// holding `personal_access`; the schema is recognised by [`connect`](Self::connect)). The
/// scopes are those both the JWT and the row hold: Passport 12 checks the row, 13 the
/// claim, and a token keeps only what both grant (`*` on one side defers to the other). The
/// expiry is the JWT's `exp`: Laravel never reads the row's `expires_at` on a request.
///
/// The owner's id is read as text (`tokenable_id`, `user_id`) and parsed into `U` (`i64`
/// for Laravel's big integer ids, a UUID type for `uuidMorphs`). Timestamps are read in the
/// application's zone ([`timezone`](Self::timezone), UTC by default, Laravel's default
/// `app.timezone`).
///
/// Put a [`CachedStore`](crate::store::CachedStore) in front: a hot token then costs no
/// query, and a Passport JWT's RSA check runs once per cache lifetime. A revocation by
/// Laravel (a deleted Sanctum row, `revoked = 1`, a revoked client) reaches the cache
/// through the tables' change feed ([`install_change_feed`](Self::install_change_feed),
/// [`follow_changes`](Self::follow_changes)); without it, when the entry's TTL ends.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_pat::{
///     PatLayer,
///     credential::Formats,
///     laravel::{PassportFormat, SanctumFormat},
///     store::{CachedStore, laravel::LaravelStore},
///     token::TokenFormat,
/// };
///
/// let pool = sqlx::PgPool::connect("postgres://laravel@127.0.0.1/laravel").await?;
/// let store = LaravelStore::<i64>::connect(pool).await?;
/// let layer = PatLayer::new(CachedStore::new(store)).accept(
///     Formats::new(TokenFormat::default())
///         .sanctum(SanctumFormat::new())
///         .passport(PassportFormat::from_file("storage/oauth-public.key")?),
/// );
/// # let _ = layer; Ok(()) }
/// ```
pub struct LaravelStore<U> {
    pub(super) pool: LaravelPool,
    pub(super) sanctum_table: String,
    owner_types: Vec<String>,
    expiration: Option<Duration>,
    pub(super) sanctum_expires_column: bool,
    pub(super) tokens_table: String,
    pub(super) clients_table: String,
    pub(super) passport: Option<PassportSchema>,
    /// Built by [`detect`](Self::detect) once the tables are known.
    queries: Queries,
    offset: UtcOffset,
    _user: PhantomData<fn() -> U>,
}

impl<U> Clone for LaravelStore<U> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            sanctum_table: self.sanctum_table.clone(),
            owner_types: self.owner_types.clone(),
            expiration: self.expiration,
            sanctum_expires_column: self.sanctum_expires_column,
            tokens_table: self.tokens_table.clone(),
            clients_table: self.clients_table.clone(),
            passport: self.passport,
            queries: self.queries.clone(),
            offset: self.offset,
            _user: PhantomData,
        }
    }
}

impl<U> fmt::Debug for LaravelStore<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaravelStore")
            .field("pool", &self.pool)
            .field("sanctum_table", &self.sanctum_table)
            .field("owner_types", &self.owner_types)
            .field("expiration", &self.expiration)
            .field("passport", &self.passport)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl<U> LaravelStore<U> {
    /// A store over the tables of the Laravel application `pool` connects to. Looks once at
    /// what the install has: whether `personal_access_tokens` has `expires_at` (Sanctum 3.0
    /// added it), and which Passport schema `oauth_clients` follows (none: Passport tokens
    /// are then never found).
    ///
    /// # Errors
    ///
    /// None today; a failure to look is taken as "the column is not there". The `Result`
    /// leaves room for a connection check.
    pub async fn connect(pool: impl Into<LaravelPool>) -> Result<Self, StoreError> {
        let mut store = Self {
            pool: pool.into(),
            sanctum_table: "personal_access_tokens".to_owned(),
            owner_types: vec![DEFAULT_OWNER_TYPE.to_owned()],
            expiration: None,
            sanctum_expires_column: true,
            tokens_table: "oauth_access_tokens".to_owned(),
            clients_table: "oauth_clients".to_owned(),
            passport: None,
            queries: Queries::unbuilt(),
            offset: UtcOffset::UTC,
            _user: PhantomData,
        };
        store.detect().await;
        Ok(store)
    }

    async fn detect(&mut self) {
        self.sanctum_expires_column = self
            .pool
            .has_column(&self.sanctum_table, "expires_at")
            .await;
        self.passport = if self
            .pool
            .has_column(&self.clients_table, "personal_access_client")
            .await
        {
            Some(PassportSchema::Flag)
        } else if self
            .pool
            .has_column(&self.clients_table, "grant_types")
            .await
        {
            Some(PassportSchema::GrantTypes)
        } else {
            None
        };
        self.queries = self.queries();
    }

    /// The statements, built once for the tables and schema [`detect`](Self::detect) found.
    fn queries(&self) -> Queries {
        Queries {
            sanctum: self.sanctum_query(),
            passport: self.passport.map(|schema| self.passport_query(schema)),
            touch: self.touch_query(),
        }
    }

    /// The Sanctum row with a `token`, every column as text.
    fn sanctum_query(&self) -> SqlStr {
        let t = |expr: &str| self.pool.text(expr);
        let expires = if self.sanctum_expires_column {
            t("expires_at")
        } else {
            "NULL".to_owned()
        };
        sql(format!(
            "SELECT {}, tokenable_type, {}, name, {}, {}, {expires}, {}, {} \
             FROM {} WHERE token = {}",
            t("id"),
            t("tokenable_id"),
            t("abilities"),
            t("last_used_at"),
            t("created_at"),
            t("updated_at"),
            self.sanctum_table,
            self.pool.param(1)
        ))
    }

    /// The Passport row with an `id`, joined to its client, as text.
    fn passport_query(&self, schema: PassportSchema) -> SqlStr {
        let t = |expr: &str| self.pool.text(expr);
        let personal = match schema {
            PassportSchema::Flag => "c.personal_access_client".to_owned(),
            PassportSchema::GrantTypes => {
                format!("{} LIKE '%\"personal_access\"%'", t("c.grant_types"))
            }
        };
        sql(format!(
            "SELECT {}, {}, t.name, {}, CASE WHEN t.revoked THEN 'y' ELSE 'n' END, {}, {}, \
             CASE WHEN c.id IS NULL THEN 'missing' WHEN c.revoked THEN 'revoked' \
             WHEN {personal} THEN 'personal' ELSE 'other' END \
             FROM {} t LEFT JOIN {} c ON {} = {} \
             WHERE t.id = {}",
            t("t.user_id"),
            t("t.client_id"),
            t("t.scopes"),
            t("t.created_at"),
            t("t.updated_at"),
            self.tokens_table,
            self.clients_table,
            t("c.id"),
            t("t.client_id"),
            self.pool.param(1)
        ))
    }

    /// Sanctum's `last_used_at` and `updated_at` of one row, never backwards.
    fn touch_query(&self) -> SqlStr {
        sql(format!(
            "UPDATE {table} SET last_used_at = {at}, updated_at = {at_too} \
             WHERE id = {id} AND (last_used_at IS NULL OR last_used_at < {at_again})",
            table = self.sanctum_table,
            at = self.pool.timestamp_param(1),
            at_too = self.pool.timestamp_param(2),
            id = self.pool.param(3),
            at_again = self.pool.timestamp_param(4),
        ))
    }

    /// The `tokenable_type` values whose tokens are accepted (default
    /// [`DEFAULT_OWNER_TYPE`], `App\Models\User`): the model class, and any alias the
    /// application's morph map gives it (`Relation::enforceMorphMap(['user' => User::class])`
    /// stores `user`). A token of another owner (a team, a device) is unknown here.
    pub fn owner_types<I>(mut self, types: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.owner_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Sanctum's global `sanctum.expiration`: a token older than this (by `created_at`) is
    /// expired, whatever its `expires_at` says. `None` (the default, as Sanctum's) sets no
    /// such bound.
    pub fn sanctum_expiration(mut self, expiration: Option<Duration>) -> Self {
        self.expiration = expiration;
        self
    }

    /// The zone the application writes its timestamps in (`app.timezone`; default UTC).
    pub fn timezone(mut self, offset: UtcOffset) -> Self {
        self.offset = offset;
        self
    }

    /// Other table names than Laravel's defaults (`personal_access_tokens`,
    /// `oauth_access_tokens`, `oauth_clients`), schema looked at again.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when a name is not a plain SQL identifier (letters, digits, `_`, `.`).
    pub async fn tables(
        mut self,
        sanctum: &str,
        passport_tokens: &str,
        passport_clients: &str,
    ) -> Result<Self, StoreError> {
        for name in [sanctum, passport_tokens, passport_clients] {
            let plain = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
            if !plain {
                return Err(StoreError::with_kind(
                    crate::store::StoreErrorKind::Backend,
                    format!("not a plain table name: {name:?}"),
                ));
            }
        }
        self.sanctum_table = sanctum.to_owned();
        self.tokens_table = passport_tokens.to_owned();
        self.clients_table = passport_clients.to_owned();
        self.detect().await;
        Ok(self)
    }

    /// The pool the store reads.
    pub fn pool(&self) -> &LaravelPool {
        &self.pool
    }
}

/// A Sanctum row, every column read as text: id, tokenable_type, tokenable_id, name,
/// abilities, last_used_at, expires_at, created_at, updated_at.
type SanctumRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A Passport row joined to its client, as text: user_id, client_id, name, scopes,
/// revoked (`y`/`n`), created_at, updated_at, the client's state (`missing`, `revoked`,
/// `personal`, `other`).
type PassportRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
);

const TIMESTAMP: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
const TIMESTAMP_FRACTION: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]");

impl<U> LaravelStore<U>
where
    U: UserId + FromStr,
{
    /// A timestamp as Laravel writes it (`2026-01-01 12:00:00`, a fraction or a `T` allowed),
    /// in the application's zone.
    fn timestamp(&self, row: &str, text: &str) -> Result<OffsetDateTime, StoreError> {
        let text = text.trim().replacen('T', " ", 1);
        // PostgreSQL prints a zone for `timestamptz` columns: drop it, the offset is ours.
        let text = text
            .split_once('+')
            .map_or(text.as_str(), |(t, _)| t)
            .to_owned();
        PrimitiveDateTime::parse(&text, TIMESTAMP)
            .or_else(|_| PrimitiveDateTime::parse(&text, TIMESTAMP_FRACTION))
            .map(|t| t.assume_offset(self.offset))
            .map_err(|e| StoreError::corrupt(row, format!("timestamp {text:?}: {e}")))
    }

    fn optional_timestamp(
        &self,
        row: &str,
        text: Option<&str>,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        text.map(|t| self.timestamp(row, t)).transpose()
    }

    /// Laravel's JSON array of names (`abilities`, `scopes`): the names that are scopes
    /// (others are dropped: they could never be required). `None` for a NULL column.
    fn names(row: &str, json: Option<&str>) -> Result<Option<Vec<String>>, StoreError> {
        let Some(json) = json else { return Ok(None) };
        serde_json::from_str::<Vec<String>>(json)
            .map(Some)
            .map_err(|e| StoreError::corrupt(row, format!("scopes {json:?}: {e}")))
    }

    fn scopes(names: &[String]) -> Scopes {
        Scopes::from_iter(names.iter().filter_map(|n| Scope::from_str(n).ok()))
    }

    fn user(row: &str, text: Option<&str>) -> Result<U, StoreError> {
        let text = text.ok_or_else(|| StoreError::corrupt(row, "no owner"))?;
        U::from_str(text.trim())
            .map_err(|_| StoreError::corrupt(row, "an owner id of another type"))
    }

    async fn find_sanctum(&self, key: &TokenHash) -> Lookup<U> {
        let query = self.queries.sanctum.clone();
        let hex = key.to_hex();
        let row: Option<SanctumRow> = on_pool!(&self.pool, |p| {
            sqlx::query_as(query).bind(hex).fetch_optional(p).await
        })
        .map_err(StoreError::new)?;
        let Some((id, owner_type, owner, name, abilities, last_used, expires, created, updated)) =
            row
        else {
            return Ok(None);
        };
        if !owner_type
            .as_deref()
            .is_some_and(|t| self.owner_types.iter().any(|o| o == t))
        {
            return Ok(None);
        }
        let number: u64 = id
            .trim()
            .parse()
            .map_err(|_| StoreError::corrupt(&id, "an id that is not a number"))?;
        let user = Self::user(&id, owner.as_deref())?;
        let scopes = Self::scopes(&Self::names(&id, abilities.as_deref())?.unwrap_or_default());
        // Laravel fills both; a row written by hand may lack them.
        let created_at = self
            .optional_timestamp(&id, created.as_deref())?
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let updated_at = self
            .optional_timestamp(&id, updated.as_deref())?
            .unwrap_or(created_at);
        let mut expires_at = self
            .optional_timestamp(&id, expires.as_deref())?
            .unwrap_or(NEVER);
        if let Some(expiration) = self.expiration {
            expires_at = expires_at.min(created_at.saturating_add(expiration));
        }
        let mut record = TokenRecord::new(
            TokenId::from_integer(number),
            user,
            *key,
            created_at,
            expires_at,
        )
        .with_name(name.unwrap_or_default())
        .with_scopes(scopes)
        .with_updated_at(updated_at)
        .with_kind(CredentialKind::Sanctum);
        record.last_used_at = self.optional_timestamp(&id, last_used.as_deref())?;
        Ok(Some(std::sync::Arc::new(record)))
    }

    async fn find_passport(&self, key: &TokenHash, claims: &PassportClaims) -> Lookup<U> {
        let Some(query) = self.queries.passport.clone() else {
            return Ok(None);
        };
        let jti = claims.jti.clone();
        let row: Option<PassportRow> = on_pool!(&self.pool, |p| {
            sqlx::query_as(query).bind(jti).fetch_optional(p).await
        })
        .map_err(StoreError::new)?;
        // No row: revoked, as Laravel counts it.
        let Some((user, client, name, scopes, revoked, created, updated, client_state)) = row
        else {
            return Ok(None);
        };
        let id = TokenId::from_text(&claims.jti);
        let row_name = id.to_string();
        // The row's user must be the token's subject (never a token without a user: a
        // client credentials token is not a personal access token).
        if user.as_deref().map(str::trim) != Some(claims.sub.as_str()) {
            return Ok(None);
        }
        // The client the token names, the row's, present and a personal access client.
        if client.as_deref().map(str::trim) != Some(claims.client_id.as_str())
            || client_state != "personal"
        {
            return Ok(None);
        }
        let user = Self::user(&row_name, user.as_deref())?;
        let claimed = &claims.scopes;
        let stored = Self::names(&row_name, scopes.as_deref())?;
        let wildcard = |names: &[String]| names.iter().any(|n| n == "*");
        let granted: Vec<String> = match stored {
            None => claimed.clone(),
            Some(stored) if wildcard(&stored) => claimed.clone(),
            Some(stored) if wildcard(claimed) => stored,
            Some(stored) => claimed
                .iter()
                .filter(|n| stored.contains(n))
                .cloned()
                .collect(),
        };
        let created_at = self
            .optional_timestamp(&row_name, created.as_deref())?
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let updated_at = self
            .optional_timestamp(&row_name, updated.as_deref())?
            .unwrap_or(created_at);
        let mut record = TokenRecord::new(id, user, *key, created_at, claims.expires_at)
            .with_name(name.unwrap_or_default())
            .with_scopes(Self::scopes(&granted))
            .with_updated_at(updated_at)
            .with_client_id(claims.client_id.clone())
            .with_kind(CredentialKind::Passport);
        record.revoked = revoked != "n";
        Ok(Some(std::sync::Arc::new(record)))
    }

    /// The number of a Sanctum row's id, from the [`TokenId`] made of it.
    fn row_number(id: TokenId) -> Option<i64> {
        let bytes = id.as_bytes();
        let (high, low) = bytes.split_at(8);
        if high.iter().any(|b| *b != 0) {
            return None;
        }
        let low: [u8; 8] = low.try_into().ok()?;
        i64::try_from(u64::from_be_bytes(low)).ok()
    }
}

#[async_trait]
impl<U> TokenStore for LaravelStore<U>
where
    U: UserId + FromStr,
{
    type UserId = U;

    /// A Sanctum row by the SHA-256 of the secret (no row id is checked: the layer
    /// presents Sanctum tokens through [`find_presented`](TokenStore::find_presented)).
    async fn find(&self, hash: &TokenHash) -> Lookup<U> {
        self.find_sanctum(hash).await
    }

    async fn find_presented(&self, presented: &Presented) -> Lookup<U> {
        match presented.credential() {
            Credential::Sanctum { .. } => self.find_sanctum(presented.key()).await,
            Credential::Passport(claims) => self.find_passport(presented.key(), claims).await,
            // The crate's own tokens are not in Laravel's tables.
            _ => Ok(None),
        }
    }

    /// Writes Sanctum's `last_used_at` and `updated_at`, as Laravel does on each request,
    /// but once per batch the layer hands over, and never backwards. Passport's table keeps
    /// no last use: its tokens are skipped.
    async fn touch(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        let update = &self.queries.touch;
        for (id, at) in uses {
            let Some(number) = Self::row_number(*id) else {
                continue;
            };
            let local = at.to_offset(self.offset);
            let text = local
                .format(TIMESTAMP)
                .map_err(|e| StoreError::corrupt(id, format!("a time Laravel cannot hold: {e}")))?;
            let query = update.clone();
            on_pool!(&self.pool, |p| {
                sqlx::query(query)
                    .bind(text.clone())
                    .bind(text.clone())
                    .bind(number)
                    .bind(text)
                    .execute(p)
                    .await
                    .map(|_| ())
            })
            .map_err(StoreError::new)?;
        }
        Ok(())
    }
}
