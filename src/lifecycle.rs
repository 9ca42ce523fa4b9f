//! The lifecycle facade: Passport's `createToken` and friends, with rotation, expiry
//! notices, a per-user cap, a grant policy, paged lists and an audit trail.
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
//!
//! # A token's life
//!
//! - **Created** with [`Tokens::create`]: the plaintext is shown once; the name must be
//!   one a person can read (no bidirectional controls, something visible); the scopes
//!   must be ones the user may grant ([`Tokens::grantable`]); a user may hold at most
//!   [`Tokens::max_tokens_per_user`] live tokens.
//! - **Rotated** with [`Tokens::rotate`]: a successor with the same name, scopes and
//!   client, and the old token limited to an overlap (none: it stops at once; minutes or a
//!   day: deployed clients have time to switch). One atomic store operation; a token is
//!   rotated at most once.
//! - **Warned about** before it expires: [`Tokens::claim_expiry_notices`] hands each
//!   token to a daily mailing job once per threshold (30, 7 and 1 days, say).
//! - **Revoked**, **deleted** or **pruned**; every step is written to the audit trail
//!   ([`Tokens::audit`]).
//!
//! ```
//! use time::Duration;
//! use tower_pat::{MemoryStore, TokenError, Tokens, scope::ScopeRegistry};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let tokens = Tokens::new(MemoryStore::<i64>::new(), ScopeRegistry::new().scope("ci", "Deploy"));
//! let old = tokens.create(7, "deploy", ["ci"]).await?;
//!
//! // The old token keeps working for an hour, while the deployment switches.
//! let rotated = tokens.rotate(&7, old.record.id, Duration::hours(1)).await?;
//! assert_eq!(rotated.record.rotated_from, Some(old.record.id));
//! assert_eq!(rotated.previous.rotated_to, Some(rotated.record.id));
//! assert_eq!(rotated.previous.expires_at, rotated.record.created_at + Duration::hours(1));
//!
//! // Once is enough: a second rotation names the successor.
//! match tokens.rotate(&7, old.record.id, Duration::ZERO).await {
//!     Err(TokenError::AlreadyRotated { successor }) => assert_eq!(successor, rotated.record.id),
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<_, TokenError>(())
//! # }).unwrap();
//! ```

use std::{borrow::Cow, error::Error, fmt, future::Future, sync::Arc};

use futures_util::future::BoxFuture;
use time::{Duration, OffsetDateTime};

use crate::{
    audit::{Audit, AuditEvent, AuditKind, SOURCE_APP},
    clock::{Clock, SystemClock},
    record::{TokenId, TokenRecord},
    scope::{Scope, ScopeError, ScopeRegistry, Scopes},
    store::{Cursor, ManageTokens, Revoked, Rotated, StoreError},
    token::{PlaintextToken, RandomError, TokenFormat},
};

/// Tokens live 365 days unless configured otherwise (a fixed duration, not a calendar year).
pub const DEFAULT_LIFETIME: Duration = Duration::days(365);

/// The longest token name [`Tokens::create`] accepts, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// The longest overlap a rotation grants the old token ([`Tokens::rotate`]).
pub const MAX_ROTATION_OVERLAP: Duration = Duration::days(30);

/// The most records one page of a list holds ([`Tokens::list_page`],
/// [`Tokens::expiring_within`]); a larger page size asks for this many.
pub const MAX_PAGE_SIZE: u32 = 100;

/// What a user may grant, as the application decides it ([`Tokens::grantable`]).
type GrantFn<U> = Arc<dyn Fn(&U) -> BoxFuture<'static, Scopes> + Send + Sync>;

/// Creates, lists, rotates, revokes and prunes tokens over a [`ManageTokens`] store, with
/// the scope registry, the token format, the clock, the lifetimes, the grant policy, the
/// per-user cap and the audit trail they share.
///
/// Cheap to clone. [`layer`](Self::layer) gives the [`PatLayer`](crate::PatLayer) that
/// accepts the tokens it creates, and [`require_all`](Self::require_all),
/// [`require_any`](Self::require_any) and [`require`](Self::require) give scope checks
/// whose scopes are checked against the registry at startup.
pub struct Tokens<St: ManageTokens> {
    store: Arc<St>,
    registry: Arc<ScopeRegistry>,
    format: TokenFormat,
    clock: Arc<dyn Clock>,
    lifetime: Duration,
    max_lifetime: Option<Duration>,
    idle_lifetime: Option<Duration>,
    client_id: Option<String>,
    max_per_user: Option<u32>,
    grantable: Option<GrantFn<St::UserId>>,
    audit: Audit<St::UserId>,
    source: Cow<'static, str>,
}

impl<St: ManageTokens> Clone for Tokens<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            registry: Arc::clone(&self.registry),
            format: self.format.clone(),
            clock: Arc::clone(&self.clock),
            lifetime: self.lifetime,
            max_lifetime: self.max_lifetime,
            idle_lifetime: self.idle_lifetime,
            client_id: self.client_id.clone(),
            max_per_user: self.max_per_user,
            grantable: self.grantable.clone(),
            audit: self.audit.clone(),
            source: self.source.clone(),
        }
    }
}

impl<St: ManageTokens> fmt::Debug for Tokens<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("format", &self.format)
            .field("lifetime", &self.lifetime)
            .field("max_lifetime", &self.max_lifetime)
            .field("idle_lifetime", &self.idle_lifetime)
            .field("client_id", &self.client_id)
            .field("max_tokens_per_user", &self.max_per_user)
            .field("grant_policy", &self.grantable.is_some())
            .field("audit_source", &self.source)
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

/// A rotation: the successor's plaintext, to show once, its record, and the old token as
/// the rotation left it.
#[derive(Debug)]
#[non_exhaustive]
pub struct RotatedToken<U> {
    /// The successor: give it to the user now; it cannot be recovered later.
    pub token: PlaintextToken,
    /// The successor as stored (`rotated_from` names the old token).
    pub record: TokenRecord<U>,
    /// The old token: `rotated_to` names the successor, `expires_at` is the end of its
    /// overlap (or its own expiry, if sooner); revoked when the overlap was zero.
    pub previous: TokenRecord<U>,
}

/// One page of a list: at most the page size of records, and where the next page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page<U> {
    /// The records, in the list's order.
    pub records: Vec<TokenRecord<U>>,
    /// The cursor to ask for the next page with; `None` on the last page.
    pub next: Option<Cursor>,
}

/// A token whose expiry notice was claimed ([`Tokens::claim_expiry_notices`]): tell its
/// user it expires within `threshold`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpiryNotice<U> {
    /// The threshold the notice is for: the shortest one the token falls within.
    pub threshold: Duration,
    /// The token.
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

/// The options of one [`Tokens::rotate_with`] call.
///
/// By default the successor gets a fresh lifetime (the facade's default, from now); it
/// can keep the old token's `expires_at` instead, or have a lifetime of its own.
#[derive(Clone, Debug)]
pub struct RotateToken {
    overlap: Duration,
    lifetime: SuccessorLifetime,
}

#[derive(Clone, Copy, Debug)]
enum SuccessorLifetime {
    Default,
    KeepExpiry,
    Own(Duration),
}

impl RotateToken {
    /// A rotation that leaves the old token working for `overlap` from now (at most
    /// [`MAX_ROTATION_OVERLAP`], and never past its own expiry); zero revokes it at once.
    pub fn new(overlap: Duration) -> Self {
        Self {
            overlap,
            lifetime: SuccessorLifetime::Default,
        }
    }

    /// The successor expires when the old token would have (its `expires_at` before the
    /// rotation), instead of living a fresh default lifetime.
    pub fn keep_expiry(mut self) -> Self {
        self.lifetime = SuccessorLifetime::KeepExpiry;
        self
    }

    /// The successor lives `lifetime` from now (bounded by [`Tokens::max_lifetime`]).
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.lifetime = SuccessorLifetime::Own(lifetime);
        self
    }
}

/// Why a token name was refused ([`check_name`]); its message is for the person who
/// typed it, and never repeats the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidName {
    /// Empty, or only whitespace.
    Empty,
    /// Longer than [`MAX_NAME_LEN`] bytes.
    TooLong {
        /// Its length, in bytes.
        len: usize,
    },
    /// A control character (a line break, a tab…).
    Control,
    /// A bidirectional formatting character (U+202A–U+202E, U+2066–U+2069, U+200E,
    /// U+200F, U+061C), which can make a name read differently than it is.
    Bidi,
    /// Nothing visible: only whitespace, zero-width and other formatting characters.
    Invisible,
}

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the name must not be empty"),
            Self::TooLong { len } => write!(
                f,
                "the name is {len} bytes long; at most {MAX_NAME_LEN} are allowed"
            ),
            Self::Control => {
                f.write_str("the name must not contain control characters (line breaks, tabs…)")
            }
            Self::Bidi => f.write_str(
                "the name must not contain bidirectional formatting characters (such as \
                 U+202E), which make text read differently than it is",
            ),
            Self::Invisible => f.write_str(
                "the name must have a visible character, not only spaces, zero-width or \
                 formatting characters",
            ),
        }
    }
}

impl Error for InvalidName {}

/// The bidirectional formatting characters a name may not hold.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Characters that show nothing by themselves: zero-width and other formatting
/// characters (Unicode's `Cf`, and the fillers and selectors that render blank).
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E007F}'
                | '\u{E0100}'..='\u{E01EF}'
        )
}

/// Checks a token name as [`Tokens::create`] does: 1 to [`MAX_NAME_LEN`] bytes, no
/// control character, no bidirectional formatting character, and something visible.
///
/// ```
/// use tower_pat::lifecycle::{InvalidName, check_name};
///
/// assert_eq!(check_name("CI deploy"), Ok(()));
/// assert_eq!(check_name("   "), Err(InvalidName::Empty));
/// assert_eq!(check_name("\u{200B}\u{200D}"), Err(InvalidName::Invisible));
/// assert_eq!(check_name("exe.\u{202E}txt"), Err(InvalidName::Bidi));
/// ```
///
/// # Errors
///
/// [`InvalidName`] saying what is wrong (never repeating the name).
pub fn check_name(name: &str) -> Result<(), InvalidName> {
    if name.trim().is_empty() {
        return Err(InvalidName::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(InvalidName::TooLong { len: name.len() });
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidName::Control);
    }
    if name.chars().any(is_bidi_control) {
        return Err(InvalidName::Bidi);
    }
    if name.chars().all(is_invisible) {
        return Err(InvalidName::Invisible);
    }
    Ok(())
}

/// `text`, cut to at most `max` characters (an ellipsis marks the cut): what an error
/// message may repeat of someone's input.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

impl<St: ManageTokens> Tokens<St> {
    /// The facade over `store` and `registry`, with the defaults: tokens of the
    /// [`TokenFormat::default`] format, living [`DEFAULT_LIFETIME`], the system clock, no
    /// cap, every scope of the registry grantable by every user, and an audit trail
    /// written through `tracing` only.
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
            idle_lifetime: None,
            client_id: None,
            max_per_user: None,
            grantable: None,
            audit: Audit::new(),
            source: Cow::Borrowed(SOURCE_APP),
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

    /// How long a token may go unused before it stops working (GitLab's "inactive token"
    /// expiry): counted from its last use, or its creation if never used. The layer built
    /// from this facade ([`layer`](Self::layer)) refuses such a token; the token page and
    /// [`is_idle_expired`](Self::is_idle_expired) show it as idle-expired. Off by default.
    ///
    /// The last use is what the store was told ([`TokenStore::touch`](crate::TokenStore::touch)),
    /// which lags real use by up to the layer's
    /// [`last_used_interval`](crate::PatLayer::last_used_interval): keep the idle lifetime
    /// far longer than that.
    ///
    /// # Panics
    ///
    /// When `idle` is not positive.
    #[track_caller]
    pub fn idle_lifetime(mut self, idle: Duration) -> Self {
        assert!(
            idle.is_positive(),
            "the idle lifetime must be positive, not {idle}"
        );
        self.idle_lifetime = Some(idle);
        self
    }

    /// The idle lifetime, if one is set ([`idle_lifetime`](Self::idle_lifetime)).
    pub fn longest_idle(&self) -> Option<Duration> {
        self.idle_lifetime
    }

    /// Whether `record` went unused for longer than the idle lifetime at the facade's
    /// clock's now (never, without one): its last use, or its creation, is at least the
    /// idle lifetime ago.
    pub fn is_idle_expired(&self, record: &TokenRecord<St::UserId>) -> bool {
        self.idle_at(record, self.clock.now())
    }

    fn idle_at(&self, record: &TokenRecord<St::UserId>, now: OffsetDateTime) -> bool {
        self.idle_lifetime.is_some_and(|idle| {
            now >= record
                .last_used_at
                .unwrap_or(record.created_at)
                .max(record.created_at)
                + idle
        })
    }

    /// Stamps new tokens with this `client_id` (the application issuing them).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// At most `max` live tokens (not revoked, not expired, not replaced by a rotation)
    /// per user: creating one more is [`TokenError::Limit`], decided in one atomic store
    /// operation ([`ManageTokens::insert_limited`]), so concurrent creations cannot pass
    /// it. A rotation replaces a token and is not held back by the cap. No cap by default.
    pub fn max_tokens_per_user(mut self, max: u32) -> Self {
        self.max_per_user = Some(max);
        self
    }

    /// The cap on live tokens per user, if one is set.
    pub fn tokens_per_user_limit(&self) -> Option<u32> {
        self.max_per_user
    }

    /// Decides which scopes each user may grant a token: `policy` answers the set for a
    /// user (`*` included, when the registry allows the wildcard and the user may grant
    /// it). [`create`](Self::create), [`rotate`](Self::rotate) and the token page refuse
    /// any other scope ([`TokenError::NotGrantable`], naming it), and the page lists only
    /// these. Names the registry does not define are ignored.
    ///
    /// Without a policy every user may grant every scope of the registry, and `*` when the
    /// registry allows the wildcard: set one as soon as some scopes are not for everyone.
    ///
    /// ```
    /// use tower_pat::{MemoryStore, TokenError, Tokens, scope::{ScopeRegistry, Scopes}};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// const ADMIN: i64 = 1;
    /// let registry = ScopeRegistry::new()
    ///     .scope("orders:read", "See your orders")
    ///     .scope("admin", "Administer everything")
    ///     .allow_wildcard(true);
    /// let tokens = Tokens::new(MemoryStore::<i64>::new(), registry).grantable(|user: &i64| {
    ///     let all = *user == ADMIN;
    ///     let names: &[&str] = if all { &["orders:read", "admin", "*"] } else { &["orders:read"] };
    ///     Scopes::try_from_iter(names).unwrap()
    /// });
    ///
    /// assert!(tokens.create(ADMIN, "ops", ["*"]).await.is_ok());
    /// let refused = tokens.create(2, "mine now", ["*"]).await.unwrap_err();
    /// assert!(matches!(refused, TokenError::NotGrantable(ref scope) if scope == "*"));
    /// # });
    /// ```
    pub fn grantable<F>(mut self, policy: F) -> Self
    where
        F: Fn(&St::UserId) -> Scopes + Send + Sync + 'static,
    {
        self.grantable = Some(Arc::new(move |user: &St::UserId| {
            Box::pin(std::future::ready(policy(user)))
        }));
        self
    }

    /// As [`grantable`](Self::grantable), for a policy that has to wait (a role read from
    /// the database, say). The future must own what it needs (clone the user id into it).
    pub fn grantable_async<F, Fut>(mut self, policy: F) -> Self
    where
        F: Fn(&St::UserId) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Scopes> + Send + 'static,
    {
        self.grantable = Some(Arc::new(move |user: &St::UserId| Box::pin(policy(user))));
        self
    }

    /// The scopes `user` may grant a token: the policy's answer
    /// ([`grantable`](Self::grantable)) within the registry, or without a policy every
    /// defined scope (and `*` when the registry allows the wildcard). In the registry's
    /// order, `*` last.
    pub async fn grantable_scopes(&self, user: &St::UserId) -> Vec<Scope> {
        let allowed = match &self.grantable {
            Some(policy) => Some(policy(user).await),
            None => None,
        };
        let may = |name: &str| allowed.as_ref().is_none_or(|set| set.contains(name));
        let mut scopes: Vec<Scope> = self
            .registry
            .scopes()
            .filter(|(scope, _)| may(scope.as_str()))
            .map(|(scope, _)| scope.clone())
            .collect();
        if self.registry.matching().wildcard
            && may(Scope::WILDCARD)
            && let Ok(wildcard) = Scope::new(Scope::WILDCARD)
        {
            scopes.push(wildcard);
        }
        scopes
    }

    /// Checks that `user` may grant every one of `scopes`.
    async fn check_grantable(&self, user: &St::UserId, scopes: &Scopes) -> Result<(), TokenError> {
        if self.grantable.is_none() || scopes.is_empty() {
            return Ok(());
        }
        let grantable = self.grantable_scopes(user).await;
        match scopes
            .iter()
            .find(|s| !grantable.iter().any(|g| g.as_str() == s.as_str()))
        {
            Some(scope) => Err(TokenError::NotGrantable(scope.as_str().to_owned())),
            None => Ok(()),
        }
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

    /// Writes this facade's events (and, through [`layer`](Self::layer), the layer's) to
    /// `audit`: see [`audit`](crate::audit). By default a facade has an audit trail of its
    /// own, written through `tracing` only.
    pub fn audit(mut self, audit: Audit<St::UserId>) -> Self {
        self.audit = audit;
        self
    }

    /// The audit trail this facade writes to, for the layer and the application to write
    /// to as well. Cheap to clone.
    pub fn audit_handle(&self) -> &Audit<St::UserId> {
        &self.audit
    }

    /// The same facade, naming `source` as who acted in the events it records
    /// (`audit.source`; [`SOURCE_APP`] by default): `"cli"` for an admin tool,
    /// `"leak"` for a leak scanner revoking what it found, say. Cheap: the clone shares
    /// the store and everything else.
    pub fn audit_source(&self, source: impl Into<Cow<'static, str>>) -> Self {
        let mut tokens = self.clone();
        tokens.source = source.into();
        tokens
    }

    /// Who acts in the events this facade records.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn event(&self, kind: AuditKind, at: OffsetDateTime) -> AuditEvent<St::UserId> {
        AuditEvent::new(kind, at, self.source.clone())
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
    /// every call, even with a name used before. No scopes: the registry's defaults that
    /// the user may grant.
    ///
    /// # Errors
    ///
    /// [`TokenError`] for an undefined or invalid scope, one the user may not grant, a
    /// bad name, the per-user cap reached, or a store failure; nothing is stored then.
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
        check_name(&name)?;
        let scopes = if scopes.is_empty() {
            self.default_scopes_for(&user).await
        } else {
            let scopes = self.registry.resolve(&scopes)?;
            self.check_grantable(&user, &scopes).await?;
            scopes
        };
        let lifetime = lifetime.unwrap_or(self.lifetime);
        self.check_lifetime(lifetime)?;
        let token = self.format.generate()?;
        let now = self.now();
        let mut record =
            TokenRecord::new(TokenId::random()?, user, token.hash(), now, now + lifetime)
                .with_name(name)
                .with_scopes(scopes);
        record.client_id = self.client_id.clone();
        match self.max_per_user {
            None => self.store.insert(record.clone()).await?,
            Some(max) => {
                if !self.store.insert_limited(record.clone(), max, now).await? {
                    return Err(TokenError::Limit { max });
                }
            }
        }
        self.audit.record(
            self.event(AuditKind::Created, now)
                .with_record(&record)
                .with_expires_at(record.expires_at),
        );
        Ok(NewToken { token, record })
    }

    /// The registry's defaults, less those `user` may not grant.
    async fn default_scopes_for(&self, user: &St::UserId) -> Scopes {
        let defaults = self.registry.defaults();
        if self.grantable.is_none() || defaults.is_empty() {
            return defaults.clone();
        }
        let grantable = self.grantable_scopes(user).await;
        let kept = defaults
            .iter()
            .filter(|s| grantable.iter().any(|g| g == *s))
            .map(Scope::as_str);
        Scopes::try_from_iter(kept).unwrap_or_default()
    }

    /// The user's tokens, revoked and expired ones included, newest first: all of them.
    /// A page of a user interface reads [`list_page`](Self::list_page) instead.
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

    /// One page of the user's tokens, newest first (`created_at` descending, ties by id
    /// descending), revoked and expired ones included: at most `limit` (1 to
    /// [`MAX_PAGE_SIZE`]) after `after`, and the cursor of the next page if there is one.
    ///
    /// ```
    /// use tower_pat::{MemoryStore, Tokens, scope::ScopeRegistry};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let tokens = Tokens::new(MemoryStore::<i64>::new(), ScopeRegistry::new());
    /// for n in 0..5 {
    ///     tokens.create(7, format!("token {n}"), Vec::<&str>::new()).await.unwrap();
    /// }
    /// let first = tokens.list_page(&7, None, 2).await.unwrap();
    /// assert_eq!(first.records.len(), 2);
    /// let second = tokens.list_page(&7, first.next.as_ref(), 2).await.unwrap();
    /// let third = tokens.list_page(&7, second.next.as_ref(), 2).await.unwrap();
    /// assert_eq!((third.records.len(), third.next), (1, None));
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// [`TokenError::Store`] when the store fails.
    pub async fn list_page(
        &self,
        user: &St::UserId,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<St::UserId>, TokenError> {
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let mut records = self.store.list_page(user, after, limit + 1).await?;
        Ok(page(&mut records, limit, |r| {
            Cursor::new(r.created_at, r.id)
        }))
    }

    /// Revokes one of the user's tokens. Revoking it again is not an error
    /// ([`Revoked::AlreadyRevoked`]).
    ///
    /// # Errors
    ///
    /// [`TokenError::NotFound`] when the user has no token with that id (another user's
    /// token included: nothing changes); [`TokenError::Store`] when the store fails.
    pub async fn revoke(&self, user: &St::UserId, id: TokenId) -> Result<Revoked, TokenError> {
        let now = self.now();
        match self.store.revoke(user, id, now).await? {
            Revoked::NotFound => Err(TokenError::NotFound(id)),
            Revoked::Revoked => {
                let mut event = self
                    .event(AuditKind::Revoked, now)
                    .with_token_id(id)
                    .with_user_id(user.clone());
                // Best effort: the name, for a person reading the trail.
                if let Ok(Some(record)) = self.store.get(id).await {
                    event.name = Some(record.name);
                }
                self.audit.record(event);
                Ok(Revoked::Revoked)
            }
            outcome => Ok(outcome),
        }
    }

    /// Revokes every token of the user not revoked yet (expired ones included, as
    /// Passport does); returns how many changed.
    ///
    /// # Errors
    ///
    /// [`TokenError::Store`] when the store fails.
    pub async fn revoke_all(&self, user: &St::UserId) -> Result<u64, TokenError> {
        let now = self.now();
        let count = self.store.revoke_all(user, now).await?;
        if count > 0 {
            self.audit.record(
                self.event(AuditKind::RevokedAll, now)
                    .with_user_id(user.clone())
                    .with_count(count),
            );
        }
        Ok(count)
    }

    /// Deletes one of the user's tokens outright.
    ///
    /// # Errors
    ///
    /// [`TokenError::NotFound`] when the user has no token with that id;
    /// [`TokenError::Store`] when the store fails.
    pub async fn delete(&self, user: &St::UserId, id: TokenId) -> Result<(), TokenError> {
        if self.store.delete(user, id).await? {
            self.audit.record(
                self.event(AuditKind::Deleted, self.now())
                    .with_token_id(id)
                    .with_user_id(user.clone()),
            );
            Ok(())
        } else {
            Err(TokenError::NotFound(id))
        }
    }

    /// Replaces one of the user's tokens (GitLab's "rotate", Stripe's "roll"): a
    /// successor with the same name, scopes and client, living the default lifetime from
    /// now; the old token keeps working for `overlap` (never past its own expiry), and
    /// stops at once when `overlap` is zero (it is revoked then). One atomic store
    /// operation ([`ManageTokens::rotate`]): of two concurrent rotations of a token
    /// exactly one succeeds, and a token never has two successors.
    ///
    /// # Errors
    ///
    /// [`TokenError::NotFound`] when the user has no token with that id;
    /// [`TokenError::AlreadyRotated`] naming the successor when it was rotated before;
    /// [`TokenError::Inactive`] when it is revoked or expired (or idle-expired);
    /// [`TokenError::Overlap`] for an overlap that is negative or longer than
    /// [`MAX_ROTATION_OVERLAP`]; [`TokenError::NotGrantable`] when the user may no longer
    /// grant one of its scopes; [`TokenError::Store`] when the store fails. Nothing
    /// changes then.
    pub async fn rotate(
        &self,
        user: &St::UserId,
        id: TokenId,
        overlap: Duration,
    ) -> Result<RotatedToken<St::UserId>, TokenError> {
        self.rotate_with(user, id, RotateToken::new(overlap)).await
    }

    /// Rotates a token with the options of `request` (keeping its expiry, say).
    ///
    /// # Errors
    ///
    /// As [`rotate`](Self::rotate), and [`TokenError::Lifetime`] for a successor lifetime
    /// that is not positive or exceeds the maximum.
    pub async fn rotate_with(
        &self,
        user: &St::UserId,
        id: TokenId,
        request: RotateToken,
    ) -> Result<RotatedToken<St::UserId>, TokenError> {
        let RotateToken { overlap, lifetime } = request;
        if overlap.is_negative() || overlap > MAX_ROTATION_OVERLAP {
            return Err(TokenError::Overlap {
                requested: overlap,
                max: MAX_ROTATION_OVERLAP,
            });
        }
        let now = self.now();
        let old = match self.store.get(id).await? {
            Some(old) if old.user_id == *user => old,
            _ => return Err(TokenError::NotFound(id)),
        };
        if let Some(successor) = old.rotated_to {
            return Err(TokenError::AlreadyRotated { successor });
        }
        if !old.is_active_at(now) || self.idle_at(&old, now) {
            return Err(TokenError::Inactive(id));
        }
        self.check_grantable(user, &old.scopes).await?;
        let expires_at = match lifetime {
            SuccessorLifetime::KeepExpiry => old.expires_at,
            SuccessorLifetime::Default => now + self.lifetime,
            SuccessorLifetime::Own(lifetime) => {
                self.check_lifetime(lifetime)?;
                now + lifetime
            }
        };
        let token = self.format.generate()?;
        let mut successor = TokenRecord::new(
            TokenId::random()?,
            user.clone(),
            token.hash(),
            now,
            expires_at,
        )
        .with_name(old.name.clone())
        .with_scopes(old.scopes.clone())
        .with_rotated_from(id);
        successor.client_id = old.client_id.clone();
        let old_expires_at = old.expires_at.min(now + overlap);
        match self
            .store
            .rotate(user, id, successor.clone(), old_expires_at, now)
            .await?
        {
            Rotated::Rotated(previous) => {
                self.audit.record(
                    self.event(AuditKind::Rotated, now)
                        .with_record(&previous)
                        .with_successor(successor.id)
                        .with_expires_at(previous.expires_at),
                );
                Ok(RotatedToken {
                    token,
                    record: successor,
                    previous,
                })
            }
            Rotated::AlreadyRotated(successor) => Err(TokenError::AlreadyRotated { successor }),
            Rotated::Inactive => Err(TokenError::Inactive(id)),
            Rotated::NotFound => Err(TokenError::NotFound(id)),
        }
    }

    /// One page of every user's live tokens (not revoked, not rotated) that expire within
    /// `within` from now, soonest first (ties by id): at most `limit` (1 to
    /// [`MAX_PAGE_SIZE`]) after `after`, and the cursor of the next page. Served by an
    /// index in the SQL stores. To mail each user once per threshold, use
    /// [`claim_expiry_notices`](Self::claim_expiry_notices) instead.
    ///
    /// # Errors
    ///
    /// [`TokenError::Store`] when the store fails (or does not implement
    /// [`ManageTokens::expiring`]).
    pub async fn expiring_within(
        &self,
        within: Duration,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<St::UserId>, TokenError> {
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let now = self.now();
        let mut records = self
            .store
            .expiring(now, now + within, after, limit + 1)
            .await?;
        Ok(page(&mut records, limit, |r| {
            Cursor::new(r.expires_at, r.id)
        }))
    }

    /// The user's live tokens (not revoked, not rotated) that expire within `within` from
    /// now, soonest first.
    ///
    /// # Errors
    ///
    /// [`TokenError::Store`] when the store fails.
    pub async fn expiring_within_for(
        &self,
        user: &St::UserId,
        within: Duration,
    ) -> Result<Vec<TokenRecord<St::UserId>>, TokenError> {
        let now = self.now();
        let mut records: Vec<_> = self
            .store
            .list(user)
            .await?
            .into_iter()
            .filter(|r| {
                r.is_active_at(now) && r.rotated_to.is_none() && r.expires_at <= now + within
            })
            .collect();
        records.sort_by_key(|r| (r.expires_at, r.id));
        Ok(records)
    }

    /// Claims expiry notices for a job that mails users ahead of expiry, once per token
    /// per threshold (GitLab mails 30, 7 and 1 days ahead): for each threshold, shortest
    /// first, the live tokens expiring within it whose notice was not claimed yet for it
    /// or a shorter one are marked and returned, at most `limit` (1 to
    /// [`MAX_PAGE_SIZE`]) in all. Call it until it returns fewer than `limit`.
    ///
    /// Marking and returning are one store operation, so two jobs running at once never
    /// both get a token, and a job that runs twice a day mails nothing twice. A token that
    /// falls within several thresholds at once (the job did not run for a while) is
    /// claimed for the shortest only: one mail, the most urgent.
    ///
    /// ```
    /// use time::Duration;
    /// use tower_pat::{CreateToken, MemoryStore, Tokens, scope::ScopeRegistry};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let tokens = Tokens::new(MemoryStore::<i64>::new(), ScopeRegistry::new());
    /// tokens.create_with(7, CreateToken::new("soon").expires_in(Duration::days(5))).await.unwrap();
    /// let thresholds = [Duration::days(30), Duration::days(7), Duration::days(1)];
    ///
    /// let notices = tokens.claim_expiry_notices(&thresholds, 100).await.unwrap();
    /// assert_eq!(notices.len(), 1);
    /// assert_eq!(notices[0].threshold, Duration::days(7));
    /// // The next run finds nothing new.
    /// assert!(tokens.claim_expiry_notices(&thresholds, 100).await.unwrap().is_empty());
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// [`TokenError::Store`] when the store fails (or does not implement
    /// [`ManageTokens::claim_expiry_notices`]); what was claimed before the failure stays
    /// claimed.
    pub async fn claim_expiry_notices(
        &self,
        thresholds: &[Duration],
        limit: u32,
    ) -> Result<Vec<ExpiryNotice<St::UserId>>, TokenError> {
        let mut thresholds: Vec<Duration> = thresholds
            .iter()
            .copied()
            .filter(|t| t.is_positive())
            .collect();
        thresholds.sort_unstable();
        thresholds.dedup();
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let now = self.now();
        let mut notices = Vec::new();
        for threshold in thresholds {
            let left = limit - notices.len() as u32;
            if left == 0 {
                break;
            }
            let claimed = self
                .store
                .claim_expiry_notices(threshold, now, left)
                .await?;
            notices.extend(
                claimed
                    .into_iter()
                    .map(|record| ExpiryNotice { threshold, record }),
            );
        }
        Ok(notices)
    }

    /// Deletes tokens expired, and tokens revoked, more than `retention` ago; returns how
    /// many went.
    ///
    /// # Errors
    ///
    /// [`TokenError::Store`] when the store fails.
    pub async fn prune(&self, retention: Duration) -> Result<u64, TokenError> {
        let now = self.now();
        let count = self.store.prune(now - retention).await?;
        if count > 0 {
            self.audit
                .record(self.event(AuditKind::Pruned, now).with_count(count));
        }
        Ok(count)
    }

    fn now(&self) -> OffsetDateTime {
        let now = self.clock.now();
        now.replace_nanosecond(0).unwrap_or(now)
    }
}

/// Cuts a page of `limit` out of `records` (asked for `limit + 1`): the cursor of the
/// last record kept when there were more.
fn page<U>(
    records: &mut Vec<TokenRecord<U>>,
    limit: u32,
    key: impl Fn(&TokenRecord<U>) -> Cursor,
) -> Page<U> {
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    let next = more.then(|| records.last().map(&key)).flatten();
    Page {
        records: std::mem::take(records),
        next,
    }
}

/// Why a lifecycle operation failed. Never contains a token.
#[derive(Debug)]
#[non_exhaustive]
pub enum TokenError {
    /// A requested scope is invalid or not defined (the message names it).
    Scope(ScopeError),
    /// The user may not grant this scope ([`Tokens::grantable`]).
    NotGrantable(String),
    /// The name is not one a person can read safely (see [`check_name`]).
    Name(InvalidName),
    /// The requested lifetime is not positive or exceeds the maximum.
    Lifetime {
        /// What was asked for.
        requested: Duration,
        /// The configured maximum.
        max: Option<Duration>,
    },
    /// The user has `max` live tokens already ([`Tokens::max_tokens_per_user`]).
    Limit {
        /// The cap.
        max: u32,
    },
    /// The rotation overlap is negative or longer than the maximum.
    Overlap {
        /// What was asked for.
        requested: Duration,
        /// The longest overlap, [`MAX_ROTATION_OVERLAP`].
        max: Duration,
    },
    /// The token was rotated before; it has a successor already.
    AlreadyRotated {
        /// The token that replaced it.
        successor: TokenId,
    },
    /// The token is revoked or expired, so it cannot be rotated.
    Inactive(TokenId),
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
            Self::NotGrantable(scope) => {
                write!(f, "you may not grant scope {:?}", excerpt(scope, 64))
            }
            Self::Name(e) => fmt::Display::fmt(e, f),
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
            Self::Limit { max } => write!(
                f,
                "you have {max} active tokens, the most allowed: revoke one to create another"
            ),
            Self::Overlap { requested, max } => {
                write!(f, "rotation overlap {requested} is not within [0, {max}]")
            }
            Self::AlreadyRotated { successor } => write!(
                f,
                "this token was rotated already: its successor is token {successor}"
            ),
            Self::Inactive(id) => write!(
                f,
                "token {id} is revoked or expired: create a new token instead"
            ),
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
            Self::Name(e) => Some(e),
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

impl From<InvalidName> for TokenError {
    fn from(e: InvalidName) -> Self {
        Self::Name(e)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_person_can_trust() {
        for good in [
            "laptop",
            "CI — déploiement ✓",
            "a b",
            "日本語",
            "x\u{200B}y",
            "👍",
        ] {
            assert_eq!(check_name(good), Ok(()), "{good:?}");
        }
        let cases: [(&str, InvalidName); 12] = [
            ("", InvalidName::Empty),
            (" \t ", InvalidName::Empty),
            ("a\nb", InvalidName::Control),
            ("a\u{0}b", InvalidName::Control),
            ("invoice\u{202E}fdp.exe", InvalidName::Bidi),
            ("\u{2066}x\u{2069}", InvalidName::Bidi),
            ("a\u{200F}", InvalidName::Bidi),
            ("a\u{061C}", InvalidName::Bidi),
            ("\u{200B}", InvalidName::Invisible),
            (
                "\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}",
                InvalidName::Invisible,
            ),
            (" \u{3164} \u{00AD}", InvalidName::Invisible),
            ("\u{E0041}\u{E0042}", InvalidName::Invisible),
        ];
        for (name, want) in cases {
            assert_eq!(check_name(name), Err(want), "{name:?}");
            assert!(!want.to_string().contains(name) || name.is_empty());
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(check_name(&long), Err(InvalidName::TooLong { len: 256 }));
        assert_eq!(check_name(&"x".repeat(MAX_NAME_LEN)), Ok(()));
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt("short", 8), "short");
        assert_eq!(excerpt("ééééééééééé", 3), "ééé…");
        assert_eq!(excerpt(&"x".repeat(10_000), 16).chars().count(), 17);
    }
}
