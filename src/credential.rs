//! The credential formats a [`PatLayer`](crate::PatLayer) accepts, and what it tells a
//! store about a presented credential.
//!
//! The crate's own tokens (`pat_…`, [`TokenFormat`]) are always accepted. With feature
//! `laravel`, a layer can also accept the tokens an existing Laravel application issued:
//! Sanctum's (`7|…`, [`SanctumFormat`](crate::laravel::SanctumFormat)) and Passport's
//! personal access tokens (RS256 JWTs, [`PassportFormat`](crate::laravel::PassportFormat)).
//! The layer picks the format from the bearer's shape; a bearer of no accepted shape is
//! `invalid_token` (or `invalid_request`) without any store call.
//!
//! For every format the layer derives a key, a [`TokenHash`]: what a store that answers at
//! once (a map, a warm [`CachedStore`](crate::store::CachedStore)) is asked for, so that a
//! hot token of any format costs one hash and one probe. Only when that store does not know
//! the key does the layer finish the offline verdict (the checksum; a JWT's signature and
//! dates) and hand the store a [`Presented`] credential: the key and what the format adds.
//!
//! | format | key | what the store is told |
//! |---|---|---|
//! | `pat_…` | SHA-256 of the whole token | [`Credential::Pat`]: find the record whose `token_hash` is the key |
//! | Sanctum `id\|secret` or `secret` | SHA-256 of what follows the first `\|` (Sanctum's `token` column) | [`Credential::Sanctum`]: the same, by the key; the layer checks the row's id against the presented one |
//! | Passport JWT | SHA-256 of the whole JWT | [`Credential::Passport`]: the verified claims; the store finds the row by `jti` |

use std::fmt;

use crate::token::{TokenFormat, TokenHash};

/// Which format a token came in. [`AccessToken::kind`](crate::AccessToken::kind) says it
/// for every admitted request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialKind {
    /// The crate's own personal access tokens (`pat_…`).
    #[default]
    Pat,
    /// A Laravel Sanctum personal access token.
    Sanctum,
    /// A Laravel Passport personal access token (a JWT).
    Passport,
}

impl CredentialKind {
    /// `pat`, `sanctum` or `passport`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pat => "pat",
            Self::Sanctum => "sanctum",
            Self::Passport => "passport",
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a store is told about a credential it is asked to look up (see
/// [`TokenStore::find_presented`](crate::TokenStore::find_presented)). Never holds a
/// secret: the layer has checked it offline and keeps only what identifies the row.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// One of the crate's own tokens: the record whose `token_hash` is the key.
    Pat,
    /// A Sanctum token: the row whose `token` column is the key (hex), and, when the
    /// token named one, the row id it named (the layer checks that the row found has it).
    Sanctum {
        /// The id before the `|`, if there was one.
        id: Option<u64>,
    },
    /// A Passport token whose signature and dates the layer verified: the row is the one
    /// whose `id` is the claims' `jti`.
    #[cfg(feature = "laravel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "laravel")))]
    Passport(crate::laravel::PassportClaims),
}

impl Credential {
    /// Which format it came in.
    pub fn kind(&self) -> CredentialKind {
        match self {
            Self::Pat => CredentialKind::Pat,
            Self::Sanctum { .. } => CredentialKind::Sanctum,
            #[cfg(feature = "laravel")]
            Self::Passport(_) => CredentialKind::Passport,
        }
    }
}

/// A credential as the layer presents it to a store: the key (also what a cache keeps it
/// under) and what its format adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presented {
    key: TokenHash,
    credential: Credential,
}

impl Presented {
    /// A credential and its key.
    pub fn new(key: TokenHash, credential: Credential) -> Self {
        Self { key, credential }
    }

    /// One of the crate's own tokens, by its hash.
    pub fn pat(key: TokenHash) -> Self {
        Self::new(key, Credential::Pat)
    }

    /// The key: what the record found must have as its `token_hash`, and what a cache keeps
    /// it under.
    pub fn key(&self) -> &TokenHash {
        &self.key
    }

    /// What the format adds.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }
}

/// The formats a layer accepts, tried in this order: the crate's own (always), then
/// Passport's and Sanctum's where configured ([`PatLayer::accept`](crate::PatLayer::accept)).
#[derive(Clone, Debug, Default)]
pub struct Formats {
    pub(crate) pat: TokenFormat,
    #[cfg(feature = "laravel")]
    pub(crate) sanctum: Option<crate::laravel::SanctumFormat>,
    #[cfg(feature = "laravel")]
    pub(crate) passport: Option<std::sync::Arc<crate::laravel::PassportFormat>>,
}

impl Formats {
    /// The crate's own tokens in `format`, and nothing else.
    pub fn new(format: TokenFormat) -> Self {
        Self {
            pat: format,
            #[cfg(feature = "laravel")]
            sanctum: None,
            #[cfg(feature = "laravel")]
            passport: None,
        }
    }

    /// Accepts Sanctum tokens as `format` describes them too.
    #[cfg(feature = "laravel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "laravel")))]
    pub fn sanctum(mut self, format: crate::laravel::SanctumFormat) -> Self {
        self.sanctum = Some(format);
        self
    }

    /// Accepts Passport personal access tokens signed with `format`'s key too.
    #[cfg(feature = "laravel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "laravel")))]
    pub fn passport(mut self, format: crate::laravel::PassportFormat) -> Self {
        self.passport = Some(std::sync::Arc::new(format));
        self
    }

    /// The crate's own token format.
    pub fn pat(&self) -> &TokenFormat {
        &self.pat
    }
}
