//! The stored row ([`TokenRecord`]) and the view of it a handler gets ([`AccessToken`]),
//! with the contract by which an `AccessToken` travels in a request's extensions from
//! [`PatLayer`](crate::PatLayer) to the scope checks, the extractor and handlers.

use std::{
    any::{TypeId, type_name},
    error::Error,
    fmt,
    hash::Hash,
    str::FromStr,
    sync::Arc,
};

use http::Extensions;
use time::OffsetDateTime;

use crate::{
    credential::CredentialKind,
    metrics::ScopeMetrics,
    reject::{RejectionBody, Rejector},
    scope::{ScopeMatching, Scopes},
    token::{TokenHash, parse_hex, write_hex},
};

/// The realm of the `WWW-Authenticate` challenge unless configured otherwise.
pub const DEFAULT_REALM: &str = "api";

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

    /// The id of a row whose own id is an integer (Sanctum's `personal_access_tokens.id`,
    /// say): the number, big-endian, in the last eight bytes, the first eight zero. The
    /// same number always gives the same id, so an eviction that names the row's number
    /// finds the cached token.
    pub const fn from_integer(n: u64) -> Self {
        let b = n.to_be_bytes();
        Self([
            0, 0, 0, 0, 0, 0, 0, 0, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ])
    }

    /// The id of a row whose own id is text that does not fit 16 bytes (Passport's 80-hex
    /// `jti`, say): the first 16 bytes of the SHA-256 of `tower-pat id:` and the text. The
    /// same text always gives the same id.
    pub fn from_text(text: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"tower-pat id:")
            .chain_update(text.as_bytes())
            .finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Self(id)
    }

    /// The 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

#[cfg(test)]
mod id_tests {
    use super::TokenId;

    #[test]
    fn ids_from_other_keys_are_stable_and_distinct() {
        assert_eq!(TokenId::from_integer(7), TokenId::from_integer(7));
        assert_eq!(
            TokenId::from_integer(258).to_string(),
            "00000000000000000000000000000102"
        );
        assert_ne!(TokenId::from_integer(7), TokenId::from_integer(8));
        let jti = "a".repeat(80);
        assert_eq!(TokenId::from_text(&jti), TokenId::from_text(&jti));
        assert_ne!(TokenId::from_text(&jti), TokenId::from_text("b"));
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
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
        parse_hex(s).map(Self).ok_or(InvalidTokenId)
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
///
/// Non-exhaustive: build one with [`TokenRecord::new`] and the `with_` setters; fields
/// added later (as `rotated_from` and `rotated_to` were) then need no change to your code.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// When the row last changed (creation, revocation or rotation).
    pub updated_at: OffsetDateTime,
    /// When it stops working: expired at `now >= expires_at`.
    pub expires_at: OffsetDateTime,
    /// When it was last used, as far as the store has been told (see
    /// [`PatLayer::last_used_interval`](crate::PatLayer::last_used_interval)).
    pub last_used_at: Option<OffsetDateTime>,
    /// The token this one replaced, if it was made by a rotation
    /// ([`Tokens::rotate`](crate::Tokens::rotate)).
    pub rotated_from: Option<TokenId>,
    /// The token that replaced this one, once it was rotated: it then works only until
    /// its (shortened) `expires_at`, and cannot be rotated again.
    pub rotated_to: Option<TokenId>,
    /// Which format the token is in: [`CredentialKind::Pat`] for the crate's own; a store
    /// over a Laravel application's tables says `Sanctum` or `Passport`.
    pub kind: CredentialKind,
}

impl<U> TokenRecord<U> {
    /// A record of an active token: named `""`, no scopes, no client, created (and last
    /// updated) at `created_at`, never used. Set the rest with the `with_` methods:
    ///
    /// ```
    /// use time::{Duration, macros::datetime};
    /// use tower_pat::{record::{TokenId, TokenRecord}, scope::Scopes, token::TokenHash};
    ///
    /// let created = datetime!(2026-01-01 00:00 UTC);
    /// let record = TokenRecord::new(
    ///     TokenId::from_bytes([7; 16]),
    ///     42_i64,
    ///     TokenHash::of("pat_…"),
    ///     created,
    ///     created + Duration::days(30),
    /// )
    /// .with_name("laptop")
    /// .with_scopes(Scopes::try_from_iter(["orders:read"]).unwrap());
    /// assert!(record.is_active_at(created));
    /// assert!(!record.is_active_at(created + Duration::days(30)));
    /// ```
    pub fn new(
        id: TokenId,
        user_id: U,
        token_hash: TokenHash,
        created_at: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            user_id,
            client_id: None,
            name: String::new(),
            scopes: Scopes::empty(),
            token_hash,
            revoked: false,
            created_at,
            updated_at: created_at,
            expires_at,
            last_used_at: None,
            rotated_from: None,
            rotated_to: None,
            kind: CredentialKind::Pat,
        }
    }

    /// The same record, of a token in another format than the crate's own.
    pub fn with_kind(mut self, kind: CredentialKind) -> Self {
        self.kind = kind;
        self
    }

    /// The same record with this name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The same record with these scopes.
    pub fn with_scopes(mut self, scopes: Scopes) -> Self {
        self.scopes = scopes;
        self
    }

    /// The same record, issued through this client.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The same record, revoked at `at` (which becomes `updated_at`).
    pub fn revoked_at(mut self, at: OffsetDateTime) -> Self {
        self.revoked = true;
        self.updated_at = at;
        self
    }

    /// The same record, last used at `at`.
    pub fn with_last_used_at(mut self, at: OffsetDateTime) -> Self {
        self.last_used_at = Some(at);
        self
    }

    /// The same record, made by rotating token `predecessor`.
    pub fn with_rotated_from(mut self, predecessor: TokenId) -> Self {
        self.rotated_from = Some(predecessor);
        self
    }

    /// The same record, replaced by token `successor`.
    pub fn with_rotated_to(mut self, successor: TokenId) -> Self {
        self.rotated_to = Some(successor);
        self
    }

    /// The same record, last changed at `at`.
    pub fn with_updated_at(mut self, at: OffsetDateTime) -> Self {
        self.updated_at = at;
        self
    }

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
/// it is also an extractor. Cheap to clone (two `Arc`s). The type parameter is the store's
/// user id type, `i64` unless said otherwise.
///
/// To put one into a request yourself (a test of a handler behind
/// [`RequireScopesLayer`](crate::RequireScopesLayer), say), use
/// [`insert_into`](Self::insert_into), as the layer does: it works for every user id type.
///
/// ```
/// use tower_pat::{AccessToken, scope::ScopeMatching};
/// # use tower_pat::{record::{TokenRecord, TokenId}, scope::Scopes, token::TokenHash};
/// # use std::sync::Arc;
/// # let now = time::OffsetDateTime::now_utc();
/// # let record = TokenRecord::new(TokenId::from_bytes([0; 16]), 7_i64, TokenHash::of("x"), now, now)
/// #     .with_name("ci")
/// #     .with_scopes(Scopes::try_from_iter(["orders:read"]).unwrap());
/// let token: AccessToken = AccessToken::new(Arc::new(record), ScopeMatching::EXACT);
/// assert!(token.can("orders:read"));
/// assert!(token.cant("orders:create"));
/// assert_eq!(*token.user_id(), 7);
///
/// let mut request = http::Request::new(());
/// token.insert_into(request.extensions_mut());
/// assert!(request.extensions().get::<AccessToken>().is_some());
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
            .field("kind", &self.record.kind)
            .finish()
    }
}

impl<U> AccessToken<U> {
    /// A view of a record, checked with `matching`, answering refusals with the default
    /// realm and an empty body (what a test of a handler needs; the layer builds its own).
    pub fn new(record: Arc<TokenRecord<U>>, matching: ScopeMatching) -> Self {
        let settings = Settings::new(DEFAULT_REALM, matching, RejectionBody::default());
        Self::with_settings(record, Arc::new(settings))
    }

    pub(crate) fn with_settings(record: Arc<TokenRecord<U>>, settings: Arc<Settings>) -> Self {
        Self { record, settings }
    }

    /// Whether the token may do `scope` (Passport's `tokenCan`), under the layer's
    /// matching rules.
    pub fn can(&self, scope: &str) -> bool {
        self.record.scopes.grants(scope, self.matching())
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

    /// Which format the token came in: the crate's own (`pat_…`), or, with feature
    /// `laravel`, a Laravel application's Sanctum or Passport token.
    pub fn kind(&self) -> CredentialKind {
        self.record.kind
    }

    /// The matching rules [`can`](Self::can) applies: the layer's for the crate's own
    /// tokens; for a Laravel token (Sanctum abilities, Passport scopes) the layer's with
    /// `*` meaning every scope, as it does in Laravel.
    #[inline]
    pub fn matching(&self) -> ScopeMatching {
        self.settings.matching_for(self.record.kind)
    }

    /// The whole stored record.
    pub fn record(&self) -> &TokenRecord<U> {
        &self.record
    }
}

impl<U: UserId> AccessToken<U> {
    /// Puts the token into a request's extensions, where handlers
    /// (`extensions().get::<AccessToken<U>>()`), the axum extractor and the scope checks
    /// find it. The layer puts tokens there this way; do the same when you insert one
    /// yourself, so that [`RequireScopesLayer`](crate::RequireScopesLayer) sees it
    /// whatever the user id type (a bare `Extensions::insert` works for `i64` only).
    #[inline]
    pub fn insert_into(self, extensions: &mut Extensions) {
        // The scope checks do not know `U`: they read an `AccessToken<i64>` directly (one
        // insert for the default type), and for any other type this non-generic record of
        // the admission.
        if TypeId::of::<U>() != TypeId::of::<i64>() {
            extensions.insert(Admission {
                scopes: Some(self.record.scopes.clone()),
                matching: self.matching(),
                settings: Arc::clone(&self.settings),
                user_id_type: type_name::<U>(),
            });
        }
        extensions.insert(self);
    }
}

/// Layer-wide settings every request carries, shared by all the `AccessToken`s of one
/// `PatLayer`: how scopes match and how rejections are answered.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) matching: ScopeMatching,
    pub(crate) rejector: Rejector,
    /// Whether a Passport token's scopes grant the ones below them
    /// (`PassportFormat::inherited_scopes`).
    pub(crate) passport_inheritance: bool,
    /// The scope checks' counters; a layer's settings have them, those of
    /// [`AccessToken::new`] count through the current recorder.
    pub(crate) scope_metrics: Option<ScopeMetrics>,
}

impl Settings {
    pub(crate) fn new(realm: &str, matching: ScopeMatching, body: RejectionBody) -> Self {
        Self {
            matching,
            rejector: Rejector::new(realm, body),
            passport_inheritance: false,
            scope_metrics: None,
        }
    }

    /// With counters of their own for the scope checks (a layer's settings).
    pub(crate) fn counted(mut self) -> Self {
        self.scope_metrics = Some(ScopeMetrics::new());
        self
    }

    /// Passport's scopes granting the ones below them, or not.
    #[cfg(feature = "laravel")]
    pub(crate) fn with_passport_inheritance(mut self, on: bool) -> Self {
        self.passport_inheritance = on;
        self
    }

    /// The matching rules for a token of `kind`. Laravel's tokens follow Laravel's rules,
    /// whatever the registry's: `*` grants every scope; otherwise a Sanctum ability is
    /// compared exactly, and a Passport scope grants those below it only when the layer's
    /// `PassportFormat` says so (`Passport::$withInheritedScopes`).
    #[inline]
    pub(crate) fn matching_for(&self, kind: CredentialKind) -> ScopeMatching {
        match kind {
            CredentialKind::Pat => self.matching,
            CredentialKind::Passport => ScopeMatching::EXACT
                .with_wildcard(true)
                .with_inheritance(self.passport_inheritance),
            _ => ScopeMatching::EXACT.with_wildcard(true),
        }
    }
}

/// The admission of a request, as `PatLayer` decided it, for the scope checks and the
/// extractor, which do not know the user id type. Kept in the extensions for a token of
/// another user id type than `i64` (see [`AccessToken::insert_into`]), and, with `scopes:
/// None`, for a request let through without credentials; for an `i64` token the token
/// itself is read.
#[derive(Clone)]
struct Admission {
    scopes: Option<Scopes>,
    matching: ScopeMatching,
    settings: Arc<Settings>,
    user_id_type: &'static str,
}

/// A borrowed view of a request's [`Admission`], whichever way it is kept.
#[derive(Clone, Copy)]
pub(crate) struct AdmissionRef<'a> {
    /// The token's scopes; `None` for a request let through without credentials.
    pub(crate) scopes: Option<&'a Scopes>,
    /// The matching rules for the token's scopes.
    pub(crate) matching: ScopeMatching,
    pub(crate) settings: &'a Arc<Settings>,
    /// The token's user id type, to name it when an extractor asks for another.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) user_id_type: &'static str,
}

/// How `PatLayer` admitted the request, without knowing the user id type: `None` when no
/// `PatLayer` ran (and no token was inserted by hand).
#[inline]
pub(crate) fn admission(extensions: &Extensions) -> Option<AdmissionRef<'_>> {
    if let Some(token) = extensions.get::<AccessToken<i64>>() {
        return Some(AdmissionRef {
            scopes: Some(token.scopes()),
            matching: token.matching(),
            settings: &token.settings,
            user_id_type: type_name::<i64>(),
        });
    }
    extensions.get::<Admission>().map(|a| AdmissionRef {
        scopes: a.scopes.as_ref(),
        matching: a.matching,
        settings: &a.settings,
        user_id_type: a.user_id_type,
    })
}

/// Marks a request that `PatLayer` let through without credentials.
pub(crate) fn admit_anonymous(extensions: &mut Extensions, settings: Arc<Settings>) {
    extensions.insert(Admission {
        scopes: None,
        matching: settings.matching,
        settings,
        user_id_type: "",
    });
}
