//! Leaked tokens, revoked within seconds (feature `leaks`): the endpoint GitHub's secret
//! scanning partner program reports leaks to.
//!
//! GitHub scans public repositories, gists, issues and npm packages for the token
//! patterns its partners register, and POSTs every match to the partner's endpoint,
//! signed with a key it publishes. [`LeakReports`] is that endpoint as a Tower service:
//! it checks the signature, checks each reported token offline (prefix, length, charset,
//! checksum), revokes the real ones, and answers GitHub's feedback array.
//!
//! ```
//! use axum::{Router, body::Body};
//! use base64ct::{Base64, Encoding};
//! use http::{Request, StatusCode};
//! use p256::{
//!     ecdsa::{Signature, SigningKey, signature::Signer},
//!     elliptic_curve::rand_core::OsRng,
//!     pkcs8::{EncodePublicKey, LineEnding},
//! };
//! use tower::ServiceExt;
//! use tower_pat::{
//!     MemoryStore, Tokens,
//!     leaks::{KeySet, LeakReports},
//!     scope::ScopeRegistry,
//! };
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let tokens = Tokens::new(MemoryStore::<i64>::new(), ScopeRegistry::new());
//! let leaked = tokens.create(7, "ci", Vec::<&str>::new()).await.unwrap();
//!
//! // In production: `KeySet::from_github_json` of the document GitHub publishes. Here
//! // the test plays GitHub, with a key of its own.
//! let github = SigningKey::random(&mut OsRng);
//! let pem = github.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
//! let keys = KeySet::from_pem("key-1", &pem).unwrap();
//!
//! let app = Router::new().route_service(
//!     "/github/secret-scanning",
//!     LeakReports::new(tokens.clone(), keys),
//! );
//!
//! let report = format!(
//!     r#"[{{"token":"{}","type":"acme_pat","url":"https://github.com/o/r/blob/1/f","source":"content"}}]"#,
//!     leaked.token.expose_secret()
//! );
//! let signature: Signature = github.sign(report.as_bytes());
//! let req = Request::post("/github/secret-scanning")
//!     .header("github-public-key-identifier", "key-1")
//!     .header("github-public-key-signature", Base64::encode_string(signature.to_der().as_bytes()))
//!     .body(Body::from(report))
//!     .unwrap();
//! let res = app.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
//! let feedback: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(feedback[0]["label"], "true_positive");
//! assert!(tokens.list(&7).await.unwrap()[0].revoked);
//!
//! // Unsigned: refused, and nothing is looked at.
//! let req = Request::post("/github/secret-scanning").body(Body::from("[]")).unwrap();
//! let res = app.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::BAD_REQUEST);
//! # });
//! ```
//!
//! # The protocol
//!
//! A report is a `POST` whose body is a JSON array of matches,
//! `[{"token", "type", "url", "source"}]` (`url` may be empty, `source` absent in older
//! reports; other fields are ignored). GitHub signs the raw body with ECDSA P-256 over
//! SHA-256; the `Github-Public-Key-Identifier` header names the key and
//! `Github-Public-Key-Signature` carries the DER signature in base64. The keys are those
//! of GitHub's document at `https://api.github.com/meta/public_keys/secret_scanning`:
//! fetching it, and fetching it again when a report names a key the service does not know
//! (it logs a warning saying so), is the application's part; [`KeySet`] reads it and
//! [`KeySet::replace`] swaps the keys of a running service.
//!
//! The answer is GitHub's feedback array, one element per match in the report's order:
//! `[{"token_raw", "token_type", "label"}]` (or `token_hash`, the SHA-256 in hex, with
//! [`FeedbackToken::Sha256`]), `label` being
//!
//! | the match | `label` | what happens |
//! |---|---|---|
//! | fails the offline check (prefix, length, charset, checksum) | `false_positive` | nothing: it never reaches the store |
//! | well formed, but the store does not know it | `false_positive` | one store lookup |
//! | a token of the store, not revoked (expired or not) | `true_positive` | revoked now; logged with its id and the leak's `url`; [`on_revoke`](LeakReports::on_revoke) called |
//! | a token of the store, revoked already | `true_positive` | nothing more |
//!
//! `true_positive` means what GitHub's documentation says it means, a real credential:
//! a token this application issued is one, revoked or not. The match's `type` is echoed
//! back and decides nothing: a token of this application's format is judged whatever name
//! it was reported under (revoking a leaked token is never wrong), so give the endpoint a
//! URL of its own rather than one shared with another kind of secret.
//!
//! # Refusals
//!
//! Every refusal is JSON `{"error", "code", "message"}`, the keys of
//! [`Rejection::to_json`](crate::reject::Rejection::to_json), and revokes nothing. They
//! are checked in this order: the signature's headers, form and key before the body is
//! read, the signature before the body is parsed, the whole body before any match is
//! looked at.
//!
//! | case | status | `error` | `code` |
//! |---|---|---|---|
//! | not a `POST` | 405, with `Allow: POST` | `invalid_request` | `method_not_allowed` |
//! | either header missing, empty, repeated or not ASCII | 400 | `invalid_request` | `missing_signature` |
//! | the signature is not base64 of a DER ECDSA signature | 400 | `invalid_request` | `malformed_signature` |
//! | the key identifier names no key of the [`KeySet`] | 403 | `forbidden` | `unknown_key` |
//! | body over [`body_limit`](LeakReports::body_limit) (by `Content-Length`, or as read) | 413 | `invalid_request` | `payload_too_large` |
//! | the body cannot be read | 400 | `invalid_request` | `malformed_body` |
//! | the signature does not verify for this body and key | 403 | `forbidden` | `invalid_signature` |
//! | not JSON | 400 | `invalid_request` | `malformed_json` |
//! | JSON, but not an array of match objects | 422 | `invalid_request` | `invalid_report` |
//! | the store failed | 503 | `store_unavailable` | `store_unavailable` |
//!
//! A store failure stops the report where it happened: the tokens revoked before it stay
//! revoked, and a report sent again finds them revoked already (revoking is idempotent).
//! Messages say where a body went wrong (line and column), never what it held.
//!
//! # What is secret here
//!
//! Keys, key identifiers and signatures are public data: they are compared as such (a map
//! lookup; the signature check is RustCrypto's `p256`, whose arithmetic is constant-time
//! anyway). A reported token is a secret until revoked: it is never logged, nor quoted in
//! a refusal; the only place it goes is the feedback, to GitHub, over the connection the
//! signed report came on ([`FeedbackToken::Sha256`] sends its hash instead). Looking it up
//! goes through the store by hash, as every lookup does. A captured report replayed
//! revokes nothing new: its tokens are revoked already.
//!
//! # The pattern to register with GitHub
//!
//! GitHub finds tokens by a regular expression the partner registers.
//! [`DEFAULT_TOKEN_PATTERN`] is the one of the default format, and [`token_pattern`] gives
//! it for any [`TokenFormat`]; the checksum, which no regular
//! expression can check, is checked here.

use std::{fmt, sync::Arc};

use crate::{
    lifecycle::Tokens,
    record::TokenRecord,
    store::ManageTokens,
    token::{CHECKSUM_LEN, RANDOM_LEN, TokenFormat},
};

mod keys;
mod report;
mod service;

pub use keys::{KeyError, KeySet};
pub use service::{ReportBody, ResponseFuture};

/// The header naming the key that signed a report.
pub const KEY_IDENTIFIER_HEADER: &str = "github-public-key-identifier";

/// The header carrying a report's signature (base64 of an ASN.1 DER ECDSA signature).
pub const SIGNATURE_HEADER: &str = "github-public-key-signature";

/// The longest report read unless configured: 1 MiB.
///
/// The whole body has to be held before its signature can be checked, so this bounds
/// what an unsigned request can make the server buffer. A match is about 150 to 400
/// bytes (the URL makes most of it), so 1 MiB carries thousands of matches in one report,
/// far more than a push leaks.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The regular expression of the default token format (`pat_`, 33 base62 characters of
/// randomness, 6 of checksum), to register with GitHub: what [`token_pattern`] gives for
/// [`TokenFormat::default`]. The `\b` on either side keep a longer word that contains a
/// token-shaped run from matching.
pub const DEFAULT_TOKEN_PATTERN: &str = r"\bpat_[0-9A-Za-z]{39}\b";

/// The regular expression to register with GitHub for tokens of `format`: the prefix,
/// then 39 base62 characters (33 of randomness, 6 of checksum), between word boundaries.
/// A prefix is made of `[A-Za-z0-9_]` only, so it needs no escaping.
///
/// ```
/// use tower_pat::{leaks::{DEFAULT_TOKEN_PATTERN, token_pattern}, token::TokenFormat};
///
/// assert_eq!(token_pattern(&TokenFormat::default()), DEFAULT_TOKEN_PATTERN);
/// let acme = TokenFormat::new("acme_").unwrap();
/// assert_eq!(token_pattern(&acme), r"\bacme_[0-9A-Za-z]{39}\b");
/// ```
pub fn token_pattern(format: &TokenFormat) -> String {
    format!(
        r"\b{}[0-9A-Za-z]{{{}}}\b",
        format.prefix(),
        RANDOM_LEN + CHECKSUM_LEN
    )
}

/// How the feedback names each token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedbackToken {
    /// `token_raw`: the token as reported (GitHub's first form).
    #[default]
    Raw,
    /// `token_hash`: the SHA-256 of the token, in lowercase hex (GitHub's second form),
    /// so the answer never carries a token.
    Sha256,
}

/// One token revoked because GitHub reported it, as [`LeakReports::on_revoke`] sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Revocation<'a, U> {
    /// The token's record as it was found, before it was revoked.
    pub record: &'a TokenRecord<U>,
    /// Where GitHub found it (may be empty).
    pub url: &'a str,
    /// What GitHub found it in (`content`, `commit`, `issue_comment`, …; may be empty).
    pub source: &'a str,
    /// The type GitHub reported it under (the name registered with GitHub).
    pub token_type: &'a str,
}

pub(crate) type OnRevoke<U> = Arc<dyn Fn(&Revocation<'_, U>) + Send + Sync>;

/// The endpoint GitHub's secret scanning reports leaked tokens to, over a [`Tokens`]
/// facade and a [`KeySet`]: a `tower::Service<http::Request<B>>` for any request body
/// `B`, answering [`ReportBody`]. See the [module documentation](self) for the protocol
/// and the refusals.
///
/// It answers any path it is given: mount it on the one path registered with GitHub
/// (`Router::route_service`). It has no sign-in of its own; the signature is the
/// authentication, so mount it outside any `PatLayer` or session check.
///
/// Cheap to clone.
pub struct LeakReports<St: ManageTokens> {
    pub(crate) tokens: Tokens<St>,
    pub(crate) keys: KeySet,
    pub(crate) options: Arc<Options<St::UserId>>,
}

pub(crate) struct Options<U> {
    pub(crate) body_limit: usize,
    pub(crate) feedback: FeedbackToken,
    pub(crate) on_revoke: Option<OnRevoke<U>>,
}

impl<U> Clone for Options<U> {
    fn clone(&self) -> Self {
        Self {
            body_limit: self.body_limit,
            feedback: self.feedback,
            on_revoke: self.on_revoke.clone(),
        }
    }
}

impl<St: ManageTokens> Clone for LeakReports<St> {
    fn clone(&self) -> Self {
        Self {
            tokens: self.tokens.clone(),
            keys: self.keys.clone(),
            options: Arc::clone(&self.options),
        }
    }
}

impl<St: ManageTokens> fmt::Debug for LeakReports<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeakReports")
            .field("keys", &self.keys)
            .field("body_limit", &self.options.body_limit)
            .field("feedback", &self.options.feedback)
            .field("on_revoke", &self.options.on_revoke.is_some())
            .finish_non_exhaustive()
    }
}

impl<St: ManageTokens> LeakReports<St> {
    /// The endpoint for the tokens of `tokens` (their store, their format), trusting the
    /// keys of `keys` (keep a clone to [`replace`](KeySet::replace) them later).
    pub fn new(tokens: Tokens<St>, keys: KeySet) -> Self {
        Self {
            tokens,
            keys,
            options: Arc::new(Options {
                body_limit: DEFAULT_BODY_LIMIT,
                feedback: FeedbackToken::default(),
                on_revoke: None,
            }),
        }
    }

    fn options_mut(&mut self) -> &mut Options<St::UserId> {
        Arc::make_mut(&mut self.options)
    }

    /// The longest body read, in bytes ([`DEFAULT_BODY_LIMIT`] unless set); a longer one
    /// is refused with 413 before its signature is checked.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.options_mut().body_limit = bytes;
        self
    }

    /// How the feedback names each token: as reported ([`FeedbackToken::Raw`], the
    /// default) or by its SHA-256.
    pub fn feedback_token(mut self, form: FeedbackToken) -> Self {
        self.options_mut().feedback = form;
        self
    }

    /// Calls `f` for every token revoked because of a report, right after the store
    /// revoked it (not for tokens revoked already): where an audit trail or a notice to
    /// the token's owner is wired in. `f` runs on the request's task; work that waits
    /// belongs in a task it spawns or a channel it sends to.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use tower_pat::{MemoryStore, Tokens, leaks::{KeySet, LeakReports}, scope::ScopeRegistry};
    ///
    /// let tokens = Tokens::new(MemoryStore::<i64>::new(), ScopeRegistry::new());
    /// let (audit, revoked) = mpsc::channel();
    /// let endpoint = LeakReports::new(tokens, KeySet::new()).on_revoke(move |leak| {
    ///     let _ = audit.send((leak.record.id, leak.record.user_id, leak.url.to_owned()));
    /// });
    /// # drop(endpoint);
    /// assert!(revoked.try_recv().is_err());
    /// ```
    pub fn on_revoke<F>(mut self, f: F) -> Self
    where
        F: Fn(&Revocation<'_, St::UserId>) + Send + Sync + 'static,
    {
        self.options_mut().on_revoke = Some(Arc::new(f));
        self
    }

    /// The keys reports are checked against (a handle: [`KeySet::replace`] on it swaps
    /// them for the running service).
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }
}
