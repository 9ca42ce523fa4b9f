//! The lifecycle facade: Passport's `createToken` and friends.
//!
//! ```
//! use tower_pat::{MemoryStore, Tokens, scope::ScopeRegistry, store::Revoked};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let registry = ScopeRegistry::new()
//!     .scope("user:read", "Retrieve the user info")
//!     .scope("orders:create", "Place orders")
//!     .default_scopes(["user:read"]);
//! let tokens = Tokens::new(MemoryStore::<i64>::new(), registry);
//!
//! // Shown once: hand `created.token.expose_secret()` to the user now.
//! let created = tokens.create(42, "My Personal Token", ["orders:create"]).await?;
//! assert_eq!(created.record.scopes.to_string(), "orders:create");
//!
//! // Same name again: a second, separate record. No scopes: the defaults.
//! let second = tokens.create(42, "My Personal Token", Vec::<&str>::new()).await?;
//! assert_eq!(second.record.scopes.to_string(), "user:read");
//! assert_eq!(tokens.list(&42).await?.len(), 2);
//!
//! assert_eq!(tokens.revoke(&42, created.record.id).await?, Revoked::Revoked);
//! assert!(tokens.revoke(&7, second.record.id).await.is_err()); // not user 7's token
//! assert_eq!(tokens.revoke_all(&42).await?, 1);
//! # Ok::<_, tower_pat::TokenError>(())
//! # }).unwrap();
//! ```

use std::{error::Error, fmt, sync::Arc};

use time::{Duration, OffsetDateTime};

use crate::{
    clock::{Clock, SystemClock},
    record::{TokenId, TokenRecord},
    scope::{ScopeError, ScopeRegistry},
    store::{ManageTokens, Revoked, StoreError},
    token::{PlaintextToken, RandomError, TokenFormat},
};

/// Tokens live 365 days unless configured otherwise (a fixed duration, not a calendar year).
pub const DEFAULT_LIFETIME: Duration = Duration::days(365);

/// The longest token name [`Tokens::create`] accepts, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Creates, lists, revokes and prunes tokens over a [`ManageTokens`] store, with the
/// scope registry, the token format, the clock and the lifetimes they share.
///
/// Cheap to clone. [`layer`](Self::layer) gives the [`PatLayer`](crate::PatLayer) that
/// accepts the tokens it creates, and [`require_all`](Self::require_all),
/// [`require_any`](Self::require_any) and [`require`](Self::require) give scope checks
/// whose scopes are checked against the registry at startup.
pub struct Tokens<St> {
    store: Arc<St>,
    registry: Arc<ScopeRegistry>,
    format: TokenFormat,
    clock: Arc<dyn Clock>,
    lifetime: Duration,
    max_lifetime: Option<Duration>,
    client_id: Option<String>,
}

impl<St> Clone for Tokens<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            registry: Arc::clone(&self.registry),
            format: self.format.clone(),
            clock: Arc::clone(&self.clock),
            lifetime: self.lifetime,
            max_lifetime: self.max_lifetime,
            client_id: self.client_id.clone(),
        }
    }
}

impl<St> fmt::Debug for Tokens<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("format", &self.format)
            .field("lifetime", &self.lifetime)
            .field("max_lifetime", &self.max_lifetime)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// A token just created: the plaintext, to show once, and the stored record.
#[derive(Debug)]
pub struct NewToken<U> {
    /// The token: give it to the user now; it cannot be recovered later.
    pub token: PlaintextToken,
    /// What was stored.
    pub record: TokenRecord<U>,
}

/// The options of one [`Tokens::create_with`] call.
#[derive(Clone, Debug)]
pub struct CreateToken {
    name: String,
    scopes: Vec<String>,
    lifetime: Option<Duration>,
}

impl CreateToken {
    /// A token named `name`, with the registry's default scopes and lifetime.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            scopes: Vec::new(),
            lifetime: None,
        }
    }

    /// Asks for these scopes (each must be defined in the registry).
    pub fn scopes<I>(mut self, scopes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Overrides the lifetime for this token (bounded by
    /// [`Tokens::max_lifetime`]).
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }
}

impl<St: ManageTokens> Tokens<St> {
    /// The facade over `store` and `registry`, with the defaults: tokens of the
    /// [`TokenFormat::default`] format, living [`DEFAULT_LIFETIME`], the system clock.
    pub fn new(store: St, registry: ScopeRegistry) -> Self {
        Self::from_shared(Arc::new(store), Arc::new(registry))
    }

    /// The facade over a store and a registry that are shared elsewhere too.
    pub fn from_shared(store: Arc<St>, registry: Arc<ScopeRegistry>) -> Self {
        Self {
            store,
            registry,
            format: TokenFormat::default(),
            clock: Arc::new(SystemClock),
            lifetime: DEFAULT_LIFETIME,
            max_lifetime: None,
            client_id: None,
        }
    }

    /// How long new tokens live unless a request says otherwise (Passport's
    /// `personalAccessTokensExpireIn`).
    ///
    /// # Panics
    ///
    /// When `lifetime` is not positive (see [`try_expires_in`](Self::try_expires_in)).
    #[track_caller]
    pub fn expires_in(self, lifetime: Duration) -> Self {
        match self.try_expires_in(lifetime) {
            Ok(value) => value,
            Err(e) => panic!("{e}"),
        }
    }

    /// How long new tokens live unless a request says otherwise.
    ///
    /// # Errors
    ///
    /// [`TokenError::Lifetime`] when `lifetime` is not positive, or exceeds the
    /// [`max_lifetime`](Self::max_lifetime) set before.
    pub fn try_expires_in(mut self, lifetime: Duration) -> Result<Self, TokenError> {
        self.check_lifetime(lifetime)?;
        self.lifetime = lifetime;
        Ok(self)
    }

    /// The longest lifetime a token may be created with; a request for more is an error.
    /// Lowers the default lifetime to it if that was longer.
    ///
    /// # Panics
    ///
    /// When `max` is not positive (see [`try_max_lifetime`](Self::try_max_lifetime)).
    #[track_caller]
    pub fn max_lifetime(self, max: Duration) -> Self {
        match self.try_max_lifetime(max) {
            Ok(value) => value,
            Err(e) => panic!("{e}"),
        }
    }

    /// The longest lifetime a token may be created with.
    ///
    /// # Errors
    ///
    /// [`TokenError::Lifetime`] when `max` is not positive.
    pub fn try_max_lifetime(mut self, max: Duration) -> Result<Self, TokenError> {
        if !max.is_positive() {
            return Err(TokenError::Lifetime {
                requested: max,
                max: None,
            });
        }
        self.max_lifetime = Some(max);
        self.lifetime = self.lifetime.min(max);
        Ok(self)
    }

    /// The lifetime new tokens get unless a request says otherwise.
    pub fn default_lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The longest lifetime a token may be created with, if one is set.
    pub fn longest_lifetime(&self) -> Option<Duration> {
        self.max_lifetime
    }

    fn check_lifetime(&self, lifetime: Duration) -> Result<(), TokenError> {
        if !lifetime.is_positive() || self.max_lifetime.is_some_and(|max| lifetime > max) {
            return Err(TokenError::Lifetime {
                requested: lifetime,
                max: self.max_lifetime,
            });
        }
        Ok(())
    }

    /// Stamps new tokens with this `client_id` (the application issuing them).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Uses this token format (a prefix of your own, say).
    pub fn format(mut self, format: TokenFormat) -> Self {
        self.format = format;
        self
    }

    /// Uses this clock (a [`ManualClock`](crate::clock::ManualClock) in tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The clock, for the layer built from this facade.
    pub(crate) fn shared_clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// The store.
    pub fn store(&self) -> &Arc<St> {
        &self.store
    }

    /// The scope registry (Passport's `scopes()` is `registry().scopes()`).
    pub fn registry(&self) -> &ScopeRegistry {
        &self.registry
    }

    /// The token format.
    pub fn token_format(&self) -> &TokenFormat {
        &self.format
    }

    /// Creates a token for `user` (Passport's `createToken(name, scopes)`): a new record
    /// every call, even with a name used before. No scopes: the registry's defaults.
    ///
    /// # Errors
    ///
    /// [`TokenError`] for an undefined or invalid scope, a bad name, or a store failure;
    /// nothing is stored then.
    pub async fn create<I>(
        &self,
        user: St::UserId,
        name: impl Into<String>,
        scopes: I,
    ) -> Result<NewToken<St::UserId>, TokenError>
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.create_with(user, CreateToken::new(name).scopes(scopes))
            .await
    }

    /// Creates a token with the options of `request` (a lifetime of its own, say).
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create), and [`TokenError::Lifetime`] for a lifetime that is
    /// not positive or exceeds the maximum.
    pub async fn create_with(
        &self,
        user: St::UserId,
        request: CreateToken,
    ) -> Result<NewToken<St::UserId>, TokenError> {
        let CreateToken {
            name,
            scopes,
            lifetime,
        } = request;
        if name.trim().is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control)
        {
            return Err(TokenError::Name);
        }
        let scopes = self.registry.resolve(&scopes)?;
        let lifetime = lifetime.unwrap_or(self.lifetime);
        self.check_lifetime(lifetime)?;
        let token = self.format.generate()?;
        let now = self.now();
        let record = TokenRecord {
            id: TokenId::random()?,
            user_id: user,
            client_id: self.client_id.clone(),
            name,
            scopes,
            token_hash: token.hash(),
            revoked: false,
            created_at: now,
            updated_at: now,
            expires_at: now + lifetime,
            last_used_at: None,
            kind: crate::credential::CredentialKind::Pat,
        };
        self.store.insert(record.clone()).await?;
        tracing::debug!(token.id = %record.id, user.id = ?record.user_id, "personal access token created");
        Ok(NewToken { token, record })
    }

    /// The user's tokens, revoked and expired ones included, newest first.
    ///
    /// # Errors
    ///
    /// [`TokenError::Store`] when the store fails.
    pub async fn list(
        &self,
        user: &St::UserId,
    ) -> Result<Vec<TokenRecord<St::UserId>>, TokenError> {
        Ok(self.store.list(user).await?)
    }

    /// Revokes one of the user's tokens. Revoking it again is not an error
    /// ([`Revoked::AlreadyRevoked`]).
    ///
    /// # Errors
    ///
    /// [`TokenError::NotFound`] when the user has no token with that id (another user's
    /// token included: nothing changes); [`TokenError::Store`] when the store fails.
    pub async fn revoke(&self, user: &St::UserId, id: TokenId) -> Result<Revoked, TokenError> {
        match self.store.revoke(user, id, self.now()).await? {
            Revoked::NotFound => Err(TokenError::NotFound(id)),
            outcome => {
                tracing::debug!(token.id = %id, "personal access token revoked");
                Ok(outcome)
            }
        }
    }

    /// Revokes every token of the user not revoked yet (expired ones included, as
    /// Passport does); returns how many changed.
    ///
    /// # Errors
    ///
    /// [`TokenError::Store`] when the store fails.
    pub async fn revoke_all(&self, user: &St::UserId) -> Result<u64, TokenError> {
        Ok(self.store.revoke_all(user, self.now()).await?)
    }

    /// Deletes one of the user's tokens outright.
    ///
    /// # Errors
    ///
    /// [`TokenError::NotFound`] when the user has no token with that id;
    /// [`TokenError::Store`] when the store fails.
    pub async fn delete(&self, user: &St::UserId, id: TokenId) -> Result<(), TokenError> {
        if self.store.delete(user, id).await? {
            Ok(())
        } else {
            Err(TokenError::NotFound(id))
        }
    }

    /// Replaces one of the user's tokens: a new token with the same name, scopes and
    /// client, living the default lifetime from now; the old one is revoked.
    ///
    /// # Errors
    ///
    /// [`TokenError::NotFound`] when the user has no active token with that id;
    /// [`TokenError::Store`] when the store fails.
    pub async fn rotate(
        &self,
        user: &St::UserId,
        id: TokenId,
    ) -> Result<NewToken<St::UserId>, TokenError> {
        let old = match self.store.get(id).await? {
            Some(r) if r.user_id == *user && r.is_active_at(self.now()) => r,
            _ => return Err(TokenError::NotFound(id)),
        };
        let request = CreateToken::new(old.name).scopes(old.scopes.iter().map(|s| s.to_string()));
        let new = self.create_with(user.clone(), request).await?;
        self.revoke(user, id).await?;
        Ok(new)
    }

    /// Deletes tokens expired, and tokens revoked, more than `retention` ago; returns how
    /// many went.
    ///
    /// # Errors
    ///
    /// [`TokenError::Store`] when the store fails.
    pub async fn prune(&self, retention: Duration) -> Result<u64, TokenError> {
        Ok(self.store.prune(self.now() - retention).await?)
    }

    fn now(&self) -> OffsetDateTime {
        let now = self.clock.now();
        now.replace_nanosecond(0).unwrap_or(now)
    }
}

/// Why a lifecycle operation failed. Never contains a token.
#[derive(Debug)]
#[non_exhaustive]
pub enum TokenError {
    /// A requested scope is invalid or not defined (the message names it).
    Scope(ScopeError),
    /// The name is empty, longer than [`MAX_NAME_LEN`] or has a control character.
    Name,
    /// The requested lifetime is not positive or exceeds the maximum.
    Lifetime {
        /// What was asked for.
        requested: Duration,
        /// The configured maximum.
        max: Option<Duration>,
    },
    /// The user has no token with this id.
    NotFound(TokenId),
    /// The store failed.
    Store(StoreError),
    /// The operating system had no randomness to give.
    Random(RandomError),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scope(e) => fmt::Display::fmt(e, f),
            Self::Name => write!(
                f,
                "a token name must be 1 to {MAX_NAME_LEN} bytes without control characters"
            ),
            Self::Lifetime {
                requested,
                max: Some(max),
            } => write!(f, "token lifetime {requested} is not within (0, {max}]"),
            Self::Lifetime {
                requested,
                max: None,
            } => {
                write!(f, "token lifetime {requested} is not positive")
            }
            Self::NotFound(id) => write!(f, "no token {id} for this user"),
            Self::Store(e) => fmt::Display::fmt(e, f),
            Self::Random(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl Error for TokenError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Scope(e) => Some(e),
            Self::Store(e) => Some(e),
            Self::Random(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ScopeError> for TokenError {
    fn from(e: ScopeError) -> Self {
        Self::Scope(e)
    }
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<RandomError> for TokenError {
    fn from(e: RandomError) -> Self {
        Self::Random(e)
    }
}
