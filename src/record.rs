//! The stored row ([`TokenRecord`]) and the view of it a handler gets ([`AccessToken`]).

use std::{error::Error, fmt, hash::Hash, str::FromStr, sync::Arc};

use time::OffsetDateTime;

use crate::{
    auth::Settings,
    scope::{ScopeMatching, Scopes},
    token::TokenHash,
};

/// What a user id must be: `i64`, `uuid::Uuid`, `String` and the like all are.
pub trait UserId: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static {}

impl<T> UserId for T where T: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static {}

/// A token's id: 128 random bits, shown as 32 lowercase hex digits.
///
/// Not a secret: it names a token in lists and in revocation, the way Passport's `id`
/// column does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId([u8; 16]);

impl TokenId {
    /// A new random id.
    ///
    /// # Errors
    ///
    /// [`RandomError`](crate::token::RandomError) when the OS has no randomness to give.
    pub fn random() -> Result<Self, crate::token::RandomError> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(crate::token::RandomError::new)?;
        Ok(Self(b))
    }

    /// An id from its 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({self})")
    }
}

impl FromStr for TokenId {
    type Err = InvalidTokenId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return Err(InvalidTokenId);
        }
        let mut out = [0u8; 16];
        for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| InvalidTokenId)?;
            *slot = u8::from_str_radix(pair, 16).map_err(|_| InvalidTokenId)?;
        }
        Ok(Self(out))
    }
}

/// Text that is not a [`TokenId`] (32 hex digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidTokenId;

impl fmt::Display for InvalidTokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a token id (32 hex digits)")
    }
}

impl Error for InvalidTokenId {}

/// One stored token: Passport's `oauth_access_tokens` row, with the hash of the token
/// (never the token) and when it was last used.
///
/// Timestamps are UTC and whole seconds when the crate makes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord<U> {
    /// The token's id.
    pub id: TokenId,
    /// Whose token it is.
    pub user_id: U,
    /// The application (Passport's personal access client) it was issued through, if any.
    pub client_id: Option<String>,
    /// The name the user gave it; not unique.
    pub name: String,
    /// What it may do.
    pub scopes: Scopes,
    /// SHA-256 of the token.
    pub token_hash: TokenHash,
    /// Whether it was revoked (the row stays until pruned).
    pub revoked: bool,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When the row last changed (creation or revocation).
    pub updated_at: OffsetDateTime,
    /// When it stops working: expired at `now >= expires_at`.
    pub expires_at: OffsetDateTime,
    /// When it was last used, as far as the store has been told (see
    /// [`PatLayer::last_used_interval`](crate::PatLayer::last_used_interval)).
    pub last_used_at: Option<OffsetDateTime>,
}

impl<U> TokenRecord<U> {
    /// Whether the token is expired at `now` (the boundary second is expired).
    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        now >= self.expires_at
    }

    /// Whether the token works at `now`: not revoked, not expired.
    pub fn is_active_at(&self, now: OffsetDateTime) -> bool {
        !self.revoked && !self.is_expired_at(now)
    }
}

/// The token a request was authenticated with, as a handler sees it.
///
/// [`PatLayer`](crate::PatLayer) puts it in the request's extensions; with feature `axum`
/// it is also an extractor. Cheap to clone (one `Arc`). The type parameter is the store's
/// user id type, `i64` unless said otherwise.
///
/// ```
/// use tower_pat::{AccessToken, scope::ScopeMatching};
/// # use tower_pat::{record::{TokenRecord, TokenId}, scope::Scopes, token::TokenHash};
/// # use std::sync::Arc;
/// # let now = time::OffsetDateTime::now_utc();
/// # let record = TokenRecord { id: TokenId::from_bytes([0; 16]), user_id: 7_i64,
/// #   client_id: None, name: "ci".into(),
/// #   scopes: Scopes::try_from_iter(["orders:read"]).unwrap(),
/// #   token_hash: TokenHash::of("x"), revoked: false, created_at: now, updated_at: now,
/// #   expires_at: now, last_used_at: None };
/// let token: AccessToken = AccessToken::new(Arc::new(record), ScopeMatching::EXACT);
/// assert!(token.can("orders:read"));
/// assert!(token.cant("orders:create"));
/// assert_eq!(*token.user_id(), 7);
/// ```
pub struct AccessToken<U = i64> {
    record: Arc<TokenRecord<U>>,
    settings: Arc<Settings>,
}

impl<U> Clone for AccessToken<U> {
    fn clone(&self) -> Self {
        Self {
            record: Arc::clone(&self.record),
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<U: fmt::Debug> fmt::Debug for AccessToken<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("id", &self.record.id)
            .field("user_id", &self.record.user_id)
            .field("name", &self.record.name)
            .field("scopes", &self.record.scopes)
            .field("expires_at", &self.record.expires_at)
            .finish()
    }
}

impl<U> AccessToken<U> {
    /// A view of a record, checked with `matching` (what the layer builds; useful in
    /// tests of handlers).
    pub fn new(record: Arc<TokenRecord<U>>, matching: ScopeMatching) -> Self {
        let settings = Settings {
            realm: Box::from(crate::auth::DEFAULT_REALM),
            matching,
        };
        Self::with_settings(record, Arc::new(settings))
    }

    pub(crate) fn with_settings(record: Arc<TokenRecord<U>>, settings: Arc<Settings>) -> Self {
        Self { record, settings }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether the token may do `scope` (Passport's `tokenCan`), under the layer's
    /// matching rules.
    pub fn can(&self, scope: &str) -> bool {
        self.record.scopes.grants(scope, self.settings.matching)
    }

    /// Whether the token may not do `scope`.
    pub fn cant(&self, scope: &str) -> bool {
        !self.can(scope)
    }

    /// Whose token it is.
    pub fn user_id(&self) -> &U {
        &self.record.user_id
    }

    /// The token's id.
    pub fn id(&self) -> TokenId {
        self.record.id
    }

    /// The name the user gave it.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// Its scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.record.scopes
    }

    /// When it expires.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.record.expires_at
    }

    /// The application it was issued through, if any.
    pub fn client_id(&self) -> Option<&str> {
        self.record.client_id.as_deref()
    }

    /// The matching rules [`can`](Self::can) applies.
    pub fn matching(&self) -> ScopeMatching {
        self.settings.matching
    }

    /// The whole stored record.
    pub fn record(&self) -> &TokenRecord<U> {
        &self.record
    }
}
