//! What the layer, the service and its future share: the options of a
//! [`PatLayer`](super::PatLayer), the rules for reading credentials, the store timeout and
//! the defaults. Imports nothing else from `auth`.

use std::{fmt, future::Future, sync::Arc};

use futures_util::future::{BoxFuture, Either, select};
use time::Duration;

use crate::{
    clock::{Clock, SystemClock},
    credential::Formats,
    record::DEFAULT_REALM,
    reject::RejectionBody,
    scope::ScopeMatching,
    store::StoreError,
};

/// The longest `Authorization` value the layer reads; a longer one is rejected before
/// anything is hashed.
pub const DEFAULT_MAX_HEADER_LEN: usize = 4096;

/// The name suggested for the response header
/// [`PatLayer::expiry_header`](super::PatLayer::expiry_header) sends (the admitted token's
/// expiry, as an HTTP date): `token-expires-at`. The header is off unless a name is given:
/// `layer.expiry_header(Some(DEFAULT_EXPIRY_HEADER))`.
pub const DEFAULT_EXPIRY_HEADER: http::HeaderName =
    http::HeaderName::from_static("token-expires-at");

/// How often, at most, a token's `last_used_at` is written back, unless configured.
pub const DEFAULT_LAST_USED_INTERVAL: Duration = Duration::minutes(1);

/// With the `tokio` feature, how long the layer waits for the store unless configured
/// ([`PatLayer::store_timeout`](super::PatLayer::store_timeout)).
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub const DEFAULT_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Every option of the layer, in one place: adding one is a field, its default and a
/// setter.
#[derive(Clone, Debug)]
pub(crate) struct LayerOptions {
    pub(crate) credentials: CredentialRules,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) realm: Box<str>,
    pub(crate) matching: ScopeMatching,
    pub(crate) body: RejectionBody,
    pub(crate) optional: bool,
    pub(crate) last_used_interval: Option<Duration>,
    pub(crate) store_timeout: Option<StoreTimeout>,
    pub(crate) idle_lifetime: Option<Duration>,
    pub(crate) expiry_header: Option<http::HeaderName>,
}

impl Default for LayerOptions {
    fn default() -> Self {
        Self {
            credentials: CredentialRules::default(),
            clock: Arc::new(SystemClock),
            realm: Box::from(DEFAULT_REALM),
            matching: ScopeMatching::EXACT,
            body: RejectionBody::default(),
            optional: false,
            last_used_interval: Some(DEFAULT_LAST_USED_INTERVAL),
            #[cfg(feature = "tokio")]
            store_timeout: Some(StoreTimeout::new(DEFAULT_STORE_TIMEOUT, tokio::time::sleep)),
            #[cfg(not(feature = "tokio"))]
            store_timeout: None,
            idle_lifetime: None,
            expiry_header: None,
        }
    }
}

/// Where the layer looks for a bearer token, and what it accepts, before any store is
/// asked.
#[derive(Clone, Debug)]
pub(crate) struct CredentialRules {
    /// The formats accepted: the crate's own, and Laravel's where configured.
    pub(crate) formats: Formats,
    /// Whether the `access_token` query parameter is read (RFC 6750 §2.3).
    pub(crate) query_token: bool,
    pub(crate) max_header_len: usize,
}

impl Default for CredentialRules {
    fn default() -> Self {
        Self {
            formats: Formats::default(),
            query_token: false,
            max_header_len: DEFAULT_MAX_HEADER_LEN,
        }
    }
}

type Sleep = Arc<dyn Fn(std::time::Duration) -> BoxFuture<'static, ()> + Send + Sync>;

/// How long a store may take, and the runtime's sleep to measure it with.
#[derive(Clone)]
pub(crate) struct StoreTimeout {
    after: std::time::Duration,
    sleep: Sleep,
}

impl StoreTimeout {
    pub(crate) fn new<F, Fut>(after: std::time::Duration, sleep: F) -> Self
    where
        F: Fn(std::time::Duration) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            after,
            sleep: Arc::new(move |d| Box::pin(sleep(d))),
        }
    }

    /// Runs `fut`, or gives up with [`StoreError::timeout`] after the configured time.
    pub(crate) async fn bound<T>(
        &self,
        fut: BoxFuture<'_, Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match select(fut, (self.sleep)(self.after)).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => Err(StoreError::timeout()),
        }
    }
}

impl fmt::Debug for StoreTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreTimeout").field(&self.after).finish()
    }
}

/// Runs a store call within `timeout`, when there is one.
pub(crate) async fn bounded<T>(
    timeout: Option<&StoreTimeout>,
    fut: BoxFuture<'_, Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match timeout {
        Some(timeout) => timeout.bound(fut).await,
        None => fut.await,
    }
}
