//! Where tokens live: the [`TokenStore`] trait the layer resolves tokens through, the
//! [`ManageTokens`] trait the lifecycle facade needs on top, and the stores the crate ships.
//!
//! Resolution needs one query, find-by-hash. An application whose tokens are created
//! elsewhere (an admin tool, another service) implements [`TokenStore`] alone; one that
//! issues tokens through [`Tokens`](crate::Tokens) implements [`ManageTokens`] as well.
//! Both traits are dyn-compatible (`Arc<dyn TokenStore<UserId = i64>>` works), are
//! implemented for `Arc<T>`, and are written with [`async_trait`](crate::async_trait),
//! which the crate re-exports.
//!
//! Implementing [`TokenStore`] for your own table:
//!
//! ```
//! use std::{collections::HashMap, sync::Arc};
//! use tower_pat::{
//!     async_trait,
//!     record::TokenRecord,
//!     store::{Lookup, TokenStore},
//!     token::TokenHash,
//! };
//!
//! /// Stands in for a database: the hash, hex-encoded, is the key.
//! struct MyTable(HashMap<String, TokenRecord<i64>>);
//!
//! #[async_trait]
//! impl TokenStore for MyTable {
//!     type UserId = i64;
//!
//!     async fn find(&self, hash: &TokenHash) -> Lookup<i64> {
//!         // A real store runs `SELECT … WHERE token_hash = $1` here and maps a driver
//!         // error with `StoreError::new(err)` (in `tower_pat::store`), keeping it as the
//!         // source.
//!         Ok(self.0.get(&hash.to_hex()).cloned().map(Arc::new))
//!     }
//! }
//! ```

use std::{error::Error, fmt, str::FromStr, sync::Arc};

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use crate::{
    credential::{Credential, Presented},
    record::{TokenId, TokenRecord, UserId},
    token::TokenHash,
};

#[cfg(all(
    feature = "cache",
    any(
        feature = "postgres",
        feature = "redis",
        feature = "sqlite",
        feature = "mysql"
    )
))]
mod bus;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod cache;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) mod feed;
#[cfg(all(
    feature = "laravel",
    any(feature = "mysql", feature = "postgres", feature = "sqlite")
))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(
        feature = "laravel",
        any(feature = "mysql", feature = "postgres", feature = "sqlite")
    )))
)]
pub mod laravel;
#[cfg(all(feature = "cache", feature = "postgres"))]
pub(crate) mod listener;
pub mod memory;
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub mod mysql;
#[cfg(all(feature = "cache", any(feature = "sqlite", feature = "mysql")))]
pub(crate) mod poller;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod sql;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use cache::{CachedStore, CachedStoreBuilder, Closed, Evictor, PauseGuard, WeakEvictor};
#[cfg(all(
    feature = "laravel",
    any(feature = "mysql", feature = "postgres", feature = "sqlite")
))]
pub use laravel::LaravelStore;
pub use memory::MemoryStore;
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub use mysql::MySqlStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PostgresStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{BusStore, RedisBus};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::SqliteStore;

/// The answer to a lookup by hash: the record, shared; `Ok(None)` when no token has that
/// hash; `Err` when the store could not answer.
pub type Lookup<U> = Result<Option<Arc<TokenRecord<U>>>, StoreError>;

/// Resolves tokens: the one thing [`PatLayer`](crate::PatLayer) needs from a database.
///
/// `Ok(None)` means "no such token"; `Err` means the store could not answer, and the
/// layer fails closed with 503 / `UNAVAILABLE` (never 401: a client must not throw a good
/// token away because the database hiccuped).
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// The type of the `user_id` column.
    type UserId: UserId;

    /// The record whose `token_hash` is `hash`, revoked and expired ones included (the
    /// layer tells those apart).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails or a row cannot be read.
    async fn find(&self, hash: &TokenHash) -> Lookup<Self::UserId>;

    /// Answers [`find`](Self::find) at once, without a future, when the store can (an
    /// in-memory map, a warm cache); `None` means "ask `find`". The default is `None`.
    ///
    /// The layer tries this first, so that a store that never waits costs no future and
    /// no allocation. It must never block: a store that would have to wait says `None`.
    fn find_ready(&self, hash: &TokenHash) -> Option<Lookup<Self::UserId>> {
        let _ = hash;
        None
    }

    /// The record for a credential the layer checked offline: what a store of Laravel's
    /// tables (or any store that knows more than one format) implements. The record found
    /// must have the presented [`key`](Presented::key) as its `token_hash`, and its
    /// [`kind`](TokenRecord::kind) must be the credential's: the layer refuses a record
    /// that does not.
    ///
    /// The default answers the crate's own tokens and Sanctum's (both looked up by their
    /// key) through [`find`](Self::find), and knows no Passport token. A store of the
    /// crate's own tables needs nothing more.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails or a row cannot be read.
    async fn find_presented(&self, presented: &Presented) -> Lookup<Self::UserId> {
        match presented.credential() {
            Credential::Pat | Credential::Sanctum { .. } => self.find(presented.key()).await,
            #[allow(unreachable_patterns)]
            _ => Ok(None),
        }
    }

    /// Records uses: sets each token's `last_used_at` to the time given, unless it is
    /// later already (so that instances whose clocks differ a little never move it
    /// backwards); an unknown id is skipped. The layer calls it off the request path with
    /// a batch of the uses it recorded, at most one per token per
    /// [`last_used_interval`](crate::PatLayer::last_used_interval), and ignores (but logs)
    /// a failure. The default does nothing, which is right for a store that keeps no
    /// `last_used_at`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails.
    async fn touch(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        let _ = uses;
        Ok(())
    }
}

/// What revoking one token did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// It was active and is now revoked.
    Revoked,
    /// It was revoked already; nothing changed.
    AlreadyRevoked,
    /// The user has no token with that id (it does not exist, or is someone else's);
    /// nothing changed.
    NotFound,
}

/// What rotating one token did ([`ManageTokens::rotate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rotated<U> {
    /// The successor is stored, and the old token is as given here: `rotated_to` set, its
    /// `expires_at` lowered (never raised), revoked when its overlap was zero.
    Rotated(TokenRecord<U>),
    /// The token was rotated before, to this successor; nothing changed.
    AlreadyRotated(TokenId),
    /// The token is revoked or expired; nothing changed.
    Inactive,
    /// The user has no token with that id (it does not exist, or is someone else's);
    /// nothing changed.
    NotFound,
}

/// A position in a list of tokens, to ask for the page after it: the sort key of the last
/// record of a page (its time and id). Its text form (`Display` / `FromStr`) is opaque
/// and URL-safe, for an API to hand out and take back.
///
/// A cursor means something only to the list that gave it: newest first by `created_at`
/// for [`ManageTokens::list_page`], soonest first by `expires_at` for
/// [`ManageTokens::expiring`].
///
/// ```
/// use time::macros::datetime;
/// use tower_pat::{record::TokenId, store::Cursor};
///
/// let cursor = Cursor::new(datetime!(2026-01-01 00:00 UTC), TokenId::from_bytes([7; 16]));
/// let text = cursor.to_string();
/// assert_eq!(text.parse::<Cursor>(), Ok(cursor));
/// assert!("not a cursor".parse::<Cursor>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    at: OffsetDateTime,
    id: TokenId,
}

impl Cursor {
    /// The position of a record sorted by `at`, ties by `id`.
    pub fn new(at: OffsetDateTime, id: TokenId) -> Self {
        Self { at, id }
    }

    /// The time of the record the cursor is after.
    pub fn at(&self) -> OffsetDateTime {
        self.at
    }

    /// The id of the record the cursor is after.
    pub fn id(&self) -> TokenId {
        self.id
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.at.unix_timestamp_nanos(), self.id)
    }
}

/// Text that is not a [`Cursor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidCursor;

impl fmt::Display for InvalidCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a cursor of this list")
    }
}

impl Error for InvalidCursor {}

impl FromStr for Cursor {
    type Err = InvalidCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (nanos_text, id_text) = s.split_once('_').ok_or(InvalidCursor)?;
        // Nothing longer than a time can be is parsed.
        if nanos_text.len() > 40 {
            return Err(InvalidCursor);
        }
        let nanos: i128 = nanos_text.parse().map_err(|_| InvalidCursor)?;
        let at = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| InvalidCursor)?;
        let id: TokenId = id_text.parse().map_err(|_| InvalidCursor)?;
        // Only the canonical form, so that one position has one text.
        if nanos.to_string() != nanos_text || id.to_string() != id_text {
            return Err(InvalidCursor);
        }
        Ok(Self { at, id })
    }
}

/// Creating, listing, revoking, rotating and pruning tokens: what
/// [`Tokens`](crate::Tokens) needs on top of [`TokenStore`].
///
/// The methods added with rotation, paging, the per-user cap and expiry notices
/// ([`rotate`](Self::rotate), [`insert_limited`](Self::insert_limited),
/// [`expiring`](Self::expiring), [`claim_expiry_notices`](Self::claim_expiry_notices))
/// each must be one atomic step in the store, which no default built on the other
/// methods could be: their defaults answer [`StoreErrorKind::Unsupported`] and change
/// nothing, so a store written before them still compiles and fails closed, naming the
/// method, only when the feature is used. [`list_page`](Self::list_page) has a default
/// built on [`list`](Self::list) (correct, not efficient). The stores the crate ships
/// implement them all; [`testing::Conformance`](crate::testing) checks them.
#[async_trait]
pub trait ManageTokens: TokenStore {
    /// Stores a new record.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails, or when the id or the hash exists already
    /// ([`StoreErrorKind::Conflict`]); nothing is stored then.
    async fn insert(&self, record: TokenRecord<Self::UserId>) -> Result<(), StoreError>;

    /// The token with this id, whoever owns it.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails.
    async fn get(&self, id: TokenId) -> Result<Option<TokenRecord<Self::UserId>>, StoreError>;

    /// The user's tokens, revoked and expired ones included, newest first (`created_at`
    /// descending; ties by id, descending): the order a token page shows.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails.
    async fn list(&self, user: &Self::UserId)
    -> Result<Vec<TokenRecord<Self::UserId>>, StoreError>;

    /// Revokes token `id` if, and only if, it belongs to `user`; sets `updated_at` to `at`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails.
    async fn revoke(
        &self,
        user: &Self::UserId,
        id: TokenId,
        at: OffsetDateTime,
    ) -> Result<Revoked, StoreError>;

    /// Revokes, in one atomic step, every token of `user` not revoked yet (expired ones
    /// included); returns how many changed.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails (then none changed).
    async fn revoke_all(&self, user: &Self::UserId, at: OffsetDateTime) -> Result<u64, StoreError>;

    /// Deletes token `id` if it belongs to `user`; returns whether a row went.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails.
    async fn delete(&self, user: &Self::UserId, id: TokenId) -> Result<bool, StoreError>;

    /// Deletes tokens that expired strictly before `before`, and revoked tokens last
    /// updated (revoked) strictly before `before`; returns how many went. A token that
    /// expired exactly at `before` stays.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails.
    async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError>;

    /// At most `limit` of the user's tokens after `after` (from the newest when `None`),
    /// in [`list`](Self::list)'s order: newest first by `created_at`, ties by id
    /// descending. Revoked and expired ones included.
    ///
    /// The default reads the whole [`list`](Self::list) and cuts the page out of it;
    /// a database store should run one query on an index of `(user_id, created_at, id)`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails.
    async fn list_page(
        &self,
        user: &Self::UserId,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<TokenRecord<Self::UserId>>, StoreError> {
        let all = self.list(user).await?;
        Ok(all
            .into_iter()
            .filter(|r| after.is_none_or(|c| (r.created_at, r.id) < (c.at, c.id)))
            .take(limit as usize)
            .collect())
    }

    /// Stores a new record unless its user has `limit` live tokens already (not revoked,
    /// not rotated, not expired at `now`): returns whether it was stored. The count and
    /// the insert are one atomic step: any number of concurrent calls for one user leave
    /// at most `limit` live tokens.
    ///
    /// # Errors
    ///
    /// [`StoreError`] as for [`insert`](Self::insert); the default answers
    /// [`StoreErrorKind::Unsupported`] and stores nothing.
    async fn insert_limited(
        &self,
        record: TokenRecord<Self::UserId>,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let _ = (record, limit, now);
        Err(StoreError::unsupported("insert_limited"))
    }

    /// Rotates token `id` of `user`, in one atomic step: stores `successor` (whose
    /// `rotated_from` is `id`) and marks the old token replaced: `rotated_to` set to the
    /// successor's id, `expires_at` lowered to `old_expires_at` if that is sooner (never
    /// raised), revoked as well when `old_expires_at` is not after `at`, `updated_at` set
    /// to `at`. Only a token that is active at `at` and not rotated yet is rotated: of
    /// concurrent rotations of one token exactly one succeeds, and a token never has two
    /// successors.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails (then nothing changed); the default answers
    /// [`StoreErrorKind::Unsupported`] and changes nothing.
    async fn rotate(
        &self,
        user: &Self::UserId,
        id: TokenId,
        successor: TokenRecord<Self::UserId>,
        old_expires_at: OffsetDateTime,
        at: OffsetDateTime,
    ) -> Result<Rotated<Self::UserId>, StoreError> {
        let _ = (user, id, successor, old_expires_at, at);
        Err(StoreError::unsupported("rotate"))
    }

    /// At most `limit` live tokens of every user (not revoked, not rotated) that expire
    /// after `now` and at the latest at `until`, soonest first (ties by id), after
    /// `after` (a cursor of `expires_at` and id).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails; the default answers
    /// [`StoreErrorKind::Unsupported`].
    async fn expiring(
        &self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<TokenRecord<Self::UserId>>, StoreError> {
        let _ = (now, until, after, limit);
        Err(StoreError::unsupported("expiring"))
    }

    /// Claims the expiry notice for threshold `within` of at most `limit` live tokens:
    /// those (not revoked, not rotated) expiring after `now` and at the latest at
    /// `now + within` whose notice was not claimed yet for `within` or a shorter
    /// threshold. Marks them claimed for `within` and returns them, in one atomic step:
    /// two claims at once never both get a token. Soonest first.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails (then nothing is marked); the default
    /// answers [`StoreErrorKind::Unsupported`].
    async fn claim_expiry_notices(
        &self,
        within: Duration,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<TokenRecord<Self::UserId>>, StoreError> {
        let _ = (within, now, limit);
        Err(StoreError::unsupported("claim_expiry_notices"))
    }
}

#[async_trait]
impl<T: TokenStore + ?Sized> TokenStore for Arc<T> {
    type UserId = T::UserId;

    async fn find(&self, hash: &TokenHash) -> Lookup<Self::UserId> {
        (**self).find(hash).await
    }

    fn find_ready(&self, hash: &TokenHash) -> Option<Lookup<Self::UserId>> {
        (**self).find_ready(hash)
    }

    async fn find_presented(&self, presented: &Presented) -> Lookup<Self::UserId> {
        (**self).find_presented(presented).await
    }

    async fn touch(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        (**self).touch(uses).await
    }
}

#[async_trait]
impl<T: ManageTokens + ?Sized> ManageTokens for Arc<T> {
    async fn insert(&self, record: TokenRecord<Self::UserId>) -> Result<(), StoreError> {
        (**self).insert(record).await
    }

    async fn get(&self, id: TokenId) -> Result<Option<TokenRecord<Self::UserId>>, StoreError> {
        (**self).get(id).await
    }

    async fn list(
        &self,
        user: &Self::UserId,
    ) -> Result<Vec<TokenRecord<Self::UserId>>, StoreError> {
        (**self).list(user).await
    }

    async fn revoke(
        &self,
        user: &Self::UserId,
        id: TokenId,
        at: OffsetDateTime,
    ) -> Result<Revoked, StoreError> {
        (**self).revoke(user, id, at).await
    }

    async fn revoke_all(&self, user: &Self::UserId, at: OffsetDateTime) -> Result<u64, StoreError> {
        (**self).revoke_all(user, at).await
    }

    async fn delete(&self, user: &Self::UserId, id: TokenId) -> Result<bool, StoreError> {
        (**self).delete(user, id).await
    }

    async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        (**self).prune(before).await
    }

    async fn list_page(
        &self,
        user: &Self::UserId,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<TokenRecord<Self::UserId>>, StoreError> {
        (**self).list_page(user, after, limit).await
    }

    async fn insert_limited(
        &self,
        record: TokenRecord<Self::UserId>,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        (**self).insert_limited(record, limit, now).await
    }

    async fn rotate(
        &self,
        user: &Self::UserId,
        id: TokenId,
        successor: TokenRecord<Self::UserId>,
        old_expires_at: OffsetDateTime,
        at: OffsetDateTime,
    ) -> Result<Rotated<Self::UserId>, StoreError> {
        (**self)
            .rotate(user, id, successor, old_expires_at, at)
            .await
    }

    async fn expiring(
        &self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<TokenRecord<Self::UserId>>, StoreError> {
        (**self).expiring(now, until, after, limit).await
    }

    async fn claim_expiry_notices(
        &self,
        within: Duration,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<TokenRecord<Self::UserId>>, StoreError> {
        (**self).claim_expiry_notices(within, now, limit).await
    }
}

/// What kind of failure a [`StoreError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The backend failed (connection, query, pool).
    Backend,
    /// The backend did not answer in time.
    Timeout,
    /// A row could not be read back (bad scopes, a NULL, a bad hash).
    Corrupt,
    /// An insert met an existing id or hash.
    Conflict,
    /// The store does not implement the operation (a [`ManageTokens`] method whose
    /// default it kept); nothing changed.
    Unsupported,
}

/// A store could not answer. Keeps the backend's error as its [`source`](Error::source).
///
/// Never contains a token: stores only ever see hashes.
pub struct StoreError {
    kind: StoreErrorKind,
    message: Option<String>,
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl StoreError {
    /// A backend failure, keeping `source`.
    pub fn new(source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            kind: StoreErrorKind::Backend,
            message: None,
            source: Some(source.into()),
        }
    }

    /// A failure of the given kind with a message of its own.
    pub fn with_kind(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: Some(message.into()),
            source: None,
        }
    }

    /// The store did not answer in time.
    pub fn timeout() -> Self {
        Self::with_kind(
            StoreErrorKind::Timeout,
            "the token store did not answer in time",
        )
    }

    /// The store does not implement `method` of [`ManageTokens`]: names it.
    pub fn unsupported(method: &str) -> Self {
        Self::with_kind(
            StoreErrorKind::Unsupported,
            format!(
                "this token store does not implement ManageTokens::{method}: implement it to use what needs it"
            ),
        )
    }

    /// A row that cannot be read: names the row.
    pub fn corrupt(id: impl fmt::Display, what: impl fmt::Display) -> Self {
        Self::with_kind(StoreErrorKind::Corrupt, format!("token row {id}: {what}"))
    }

    /// The failure of one lookup that several requests waited on, for each of them: the
    /// same kind, the original as the source.
    #[cfg(feature = "cache")]
    pub(crate) fn shared(error: Arc<StoreError>) -> Self {
        Self {
            kind: error.kind,
            message: None,
            source: Some(Box::new(error)),
        }
    }

    /// Adds the underlying error.
    pub fn with_source(mut self, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.message, &self.source) {
            (Some(m), _) => f.write_str(m),
            (None, Some(s)) => write!(f, "token store failed: {s}"),
            (None, None) => f.write_str("token store failed"),
        }
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}
