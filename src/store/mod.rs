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

use std::{error::Error, fmt, sync::Arc};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::{
    record::{TokenId, TokenRecord, UserId},
    token::TokenHash,
};

#[cfg(all(feature = "cache", any(feature = "postgres", feature = "redis")))]
mod bus;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod cache;
#[cfg(all(feature = "cache", feature = "postgres"))]
mod listener;
pub mod memory;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use cache::{CachedStore, CachedStoreBuilder, Closed, Evictor, PauseGuard, WeakEvictor};
pub use memory::MemoryStore;
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

/// Creating, listing, revoking and pruning tokens: what [`Tokens`](crate::Tokens) needs on
/// top of [`TokenStore`].
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
