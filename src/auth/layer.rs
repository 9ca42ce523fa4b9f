//! [`PatLayer`] and its options.

use std::{fmt, future::Future, pin::Pin, sync::Arc};

use http::Response;
use time::Duration;
use tower_layer::Layer;

use super::{
    service::{Pat, Shared},
    usage::{self, Usage},
};
use crate::{
    clock::{Clock, SystemClock},
    lifecycle::Tokens,
    record::{DEFAULT_REALM, Settings},
    reject::{Hook, InvalidRealm, Rejection, is_valid_realm},
    scope::ScopeMatching,
    store::{ManageTokens, StoreError, TokenStore},
    token::TokenFormat,
};

/// The longest `Authorization` value the layer reads; a longer one is refused before
/// anything is hashed.
pub const DEFAULT_MAX_HEADER_LEN: usize = 4096;

/// How often, at most, a token's `last_used_at` is written back, unless configured.
pub const DEFAULT_LAST_USED_INTERVAL: Duration = Duration::minutes(1);

/// With the `tokio` feature, how long the layer waits for the store unless configured
/// ([`PatLayer::store_timeout`]).
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub const DEFAULT_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Authenticates requests by personal access token.
///
/// For each request: takes the bearer token from `Authorization` (scheme matched
/// case-insensitively), checks it offline, hashes it, asks the store, refuses revoked and
/// expired tokens, marks the header sensitive, and inserts an
/// [`AccessToken`](crate::AccessToken) into the request's extensions. Every refusal is
/// answered per the table in [`reject`](crate::reject); a store failure is 503 /
/// `UNAVAILABLE`, never a pass and never a 401.
///
/// [`Tokens::layer`] gives one matched to a lifecycle facade (same store, format, clock
/// and scope rules); [`new`](Self::new) builds one over a store of your own.
pub struct PatLayer<St> {
    store: Arc<St>,
    config: Config,
    usage: Arc<Usage>,
}

/// Every option of the layer, in one place: adding one is a field, its default and a
/// setter.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) format: TokenFormat,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) realm: Box<str>,
    pub(crate) matching: ScopeMatching,
    pub(crate) hook: Hook,
    pub(crate) optional: bool,
    pub(crate) query_token: bool,
    pub(crate) max_header_len: usize,
    pub(crate) last_used_interval: Option<Duration>,
    pub(crate) store_timeout: Option<StoreTimeout>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            format: TokenFormat::default(),
            clock: Arc::new(SystemClock),
            realm: Box::from(DEFAULT_REALM),
            matching: ScopeMatching::EXACT,
            hook: Hook::default(),
            optional: false,
            query_token: false,
            max_header_len: DEFAULT_MAX_HEADER_LEN,
            last_used_interval: Some(DEFAULT_LAST_USED_INTERVAL),
            #[cfg(feature = "tokio")]
            store_timeout: Some(StoreTimeout::new(DEFAULT_STORE_TIMEOUT, tokio::time::sleep)),
            #[cfg(not(feature = "tokio"))]
            store_timeout: None,
        }
    }
}

type Sleep = Arc<dyn Fn(std::time::Duration) -> BoxFuture<()> + Send + Sync>;

/// How long a store may take, and the runtime's sleep to measure it with.
#[derive(Clone)]
pub(crate) struct StoreTimeout {
    after: std::time::Duration,
    sleep: Sleep,
}

impl StoreTimeout {
    fn new<F, Fut>(after: std::time::Duration, sleep: F) -> Self
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
        fut: Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + '_>>,
    ) -> Result<T, StoreError> {
        match futures_util::future::select(fut, (self.sleep)(self.after)).await {
            futures_util::future::Either::Left((result, _)) => result,
            futures_util::future::Either::Right(_) => Err(StoreError::timeout()),
        }
    }
}

impl fmt::Debug for StoreTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreTimeout").field(&self.after).finish()
    }
}

impl<St> Clone for PatLayer<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            config: self.config.clone(),
            usage: Arc::clone(&self.usage),
        }
    }
}

impl<St> fmt::Debug for PatLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<St: TokenStore> PatLayer<St> {
    /// A layer resolving tokens through `store`, with the defaults: the default token
    /// format, realm `"api"`, exact scope matching, credentials required, no query-string
    /// tokens, the system clock.
    pub fn new(store: St) -> Self {
        Self::from_shared(Arc::new(store))
    }

    /// A layer over a store shared elsewhere too.
    pub fn from_shared(store: Arc<St>) -> Self {
        Self {
            store,
            config: Config::default(),
            usage: Arc::default(),
        }
    }

    /// Writes the uses recorded so far (`last_used_at`) now, in one
    /// [`TokenStore::touch`] call, and returns how many were written. Call it when the
    /// server shuts down, after the last request; a failed write is logged, not returned.
    ///
    /// Uses are recorded in memory on the request path (a request never waits for a
    /// write) and written in batches: by a task of their own with the `tokio` feature,
    /// else by [`last_used_flusher`](Self::last_used_flusher) or by calling this.
    pub async fn flush(&self) -> usize {
        usage::flush(&self.usage, &*self.store, &self.config).await
    }

    /// The task that writes recorded uses every
    /// [`last_used_interval`](Self::last_used_interval), for an application that does not
    /// turn on the crate's `tokio` feature: spawn it on your runtime, handing it the
    /// runtime's sleep. It ends when the layer and every service made from it are gone.
    /// With the `tokio` feature such a task starts by itself with the first use.
    ///
    /// ```
    /// use tower_pat::{MemoryStore, PatLayer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let layer = PatLayer::new(MemoryStore::<i64>::new());
    /// tokio::spawn(layer.last_used_flusher(tokio::time::sleep));
    /// # });
    /// ```
    pub fn last_used_flusher<F, Fut>(&self, sleep: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Fn(std::time::Duration) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.usage.start_flusher();
        usage::flusher(
            Arc::downgrade(&self.usage),
            Arc::clone(&self.store),
            self.config.clone(),
            sleep,
        )
    }
}

impl<St> PatLayer<St> {
    /// The token format to accept (must match the one tokens were created with).
    pub fn format(mut self, format: TokenFormat) -> Self {
        self.config.format = format;
        self
    }

    /// The realm of the `WWW-Authenticate` challenge.
    ///
    /// # Panics
    ///
    /// When `realm` has a `"`, a `\` or a character that is not visible ASCII or space
    /// (see [`try_realm`](Self::try_realm)).
    #[track_caller]
    pub fn realm(self, realm: &str) -> Self {
        self.try_realm(realm).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The realm of the `WWW-Authenticate` challenge.
    ///
    /// # Errors
    ///
    /// [`InvalidRealm`] naming `realm` when it has a `"`, a `\` or a character that is not
    /// visible ASCII or space.
    pub fn try_realm(mut self, realm: &str) -> Result<Self, InvalidRealm> {
        if !is_valid_realm(realm) {
            return Err(InvalidRealm(realm.to_owned()));
        }
        self.config.realm = Box::from(realm);
        Ok(self)
    }

    /// The scope matching rules [`AccessToken::can`](crate::AccessToken::can) and the
    /// scope checks apply (`*`, inheritance).
    pub fn matching(mut self, matching: ScopeMatching) -> Self {
        self.config.matching = matching;
        self
    }

    /// The clock expiry is judged by (a [`ManualClock`](crate::clock::ManualClock) in tests).
    pub fn clock(self, clock: impl Clock) -> Self {
        self.shared_clock(Arc::new(clock))
    }

    fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.config.clock = clock;
        self
    }

    /// When on, a request without any credentials goes through without an
    /// [`AccessToken`](crate::AccessToken) (a handler or a scope check decides); a request
    /// with bad credentials is still refused. Off by default.
    pub fn optional(mut self, on: bool) -> Self {
        self.config.optional = on;
        self
    }

    /// Accepts a token in the `access_token` query parameter (RFC 6750 §2.3) when there
    /// is no `Authorization` header; a request with both is refused with
    /// `invalid_request`. Off by default, and while off the query string is not looked at:
    /// URLs end up in logs and histories.
    pub fn allow_query_token(mut self, on: bool) -> Self {
        self.config.query_token = on;
        self
    }

    /// The longest `Authorization` value read (default 4 KiB); a longer one is refused
    /// with `invalid_request` before anything is hashed.
    pub fn max_header_len(mut self, len: usize) -> Self {
        self.config.max_header_len = len;
        self
    }

    /// How often, at most, a token's `last_used_at` is written back through
    /// [`TokenStore::touch`] (default one minute); `None` never records uses. A use is
    /// queued when the token's last queued use, and the `last_used_at` the store
    /// returned, are older than this; queued uses are written in batches off the request
    /// path (see [`flush`](Self::flush)).
    pub fn last_used_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.last_used_interval = interval;
        self
    }

    /// Gives up on a store that has not answered `find` within `after`, and answers 503 /
    /// `UNAVAILABLE` as for any store failure (a `touch` of the flusher gives up too, and
    /// is logged). The core depends on no runtime, so it is handed the runtime's sleep:
    /// `tokio::time::sleep` with Tokio. With the crate's `tokio` feature (on with the SQL
    /// stores) the default is [`DEFAULT_STORE_TIMEOUT`]
    /// with Tokio's sleep; without it there is no timeout unless set here.
    ///
    /// A store failure, a timeout included, is logged through `tracing` at `WARN` level;
    /// without a subscriber (`tracing-subscriber`) nothing is printed and clients only
    /// see the 503.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_pat::{MemoryStore, PatLayer};
    ///
    /// let layer = PatLayer::new(MemoryStore::<i64>::new())
    ///     .store_timeout(Duration::from_millis(500), tokio::time::sleep);
    /// ```
    pub fn store_timeout<F, Fut>(mut self, after: std::time::Duration, sleep: F) -> Self
    where
        F: Fn(std::time::Duration) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.config.store_timeout = Some(StoreTimeout::new(after, sleep));
        self
    }

    /// Waits for the store as long as it takes: no timeout, even with the `tokio`
    /// feature. A hung database then holds requests as long as it hangs.
    pub fn without_store_timeout(mut self) -> Self {
        self.config.store_timeout = None;
        self
    }

    /// Shapes the HTTP answer to every refused request: this layer's, and those of the
    /// scope checks and the axum extractor behind it (a JSON body, say). The crate sets
    /// the status and the `WWW-Authenticate` challenge after the hook ran; gRPC answers
    /// stay trailers-only. `B` is the response body type of the service the layer wraps
    /// (`axum::body::Body` for axum); a service with another body type answers with an
    /// empty body.
    ///
    /// ```
    /// use axum::body::Body;
    /// use tower_pat::{MemoryStore, PatLayer};
    ///
    /// let layer = PatLayer::new(MemoryStore::<i64>::new()).rejection_body(|r| {
    ///     http::Response::builder()
    ///         .header(http::header::CONTENT_TYPE, "application/json")
    ///         .body(Body::from(r.to_json()))
    ///         .unwrap()
    /// });
    /// ```
    pub fn rejection_body<B, F>(mut self, hook: F) -> Self
    where
        B: 'static,
        F: Fn(&Rejection<'_>) -> Response<B> + Send + Sync + 'static,
    {
        self.config.hook = Hook::new(hook);
        self
    }
}

impl<S, St> Layer<S> for PatLayer<St> {
    type Service = Pat<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        let config = self.config.clone();
        let settings = Arc::new(Settings::new(
            &config.realm,
            config.matching,
            config.hook.clone(),
        ));
        Pat::new(
            inner,
            Arc::new(Shared {
                store: Arc::clone(&self.store),
                config,
                settings,
                usage: Arc::clone(&self.usage),
            }),
        )
    }
}

impl<St: ManageTokens> Tokens<St> {
    /// The layer that resolves the tokens this facade creates: same store (shared, not
    /// wrapped again), format, clock and scope matching rules.
    pub fn layer(&self) -> PatLayer<St> {
        PatLayer::from_shared(Arc::clone(self.store()))
            .format(self.token_format().clone())
            .matching(self.registry().matching())
            .shared_clock(self.shared_clock())
    }
}
