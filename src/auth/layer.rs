//! [`PatLayer`] and its setters; the options themselves live in `config`.

use std::{any::Any, fmt, future::Future, sync::Arc};

use http::{HeaderName, Response};
use time::Duration;
use tower_layer::Layer;

use super::{
    admit::Shared,
    config::{LayerOptions, StoreTimeout},
    service::Pat,
    usage::{self, Usage},
};
use crate::{
    audit::Audit,
    clock::Clock,
    credential::Formats,
    lifecycle::Tokens,
    metrics::RequestMetrics,
    record::Settings,
    reject::{InvalidRealm, Rejection, RejectionBody, is_valid_realm},
    scope::ScopeMatching,
    store::{ManageTokens, TokenStore},
    token::TokenFormat,
};

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
    options: LayerOptions,
    usage: Arc<Usage>,
    /// An `Audit<St::UserId>`: kept without naming the store's user id type, which the
    /// struct does not bound.
    audit: Option<Arc<dyn Any + Send + Sync>>,
}

impl<St> Clone for PatLayer<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            options: self.options.clone(),
            usage: Arc::clone(&self.usage),
            audit: self.audit.clone(),
        }
    }
}

impl<St> fmt::Debug for PatLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatLayer")
            .field("options", &self.options)
            .field("audit", &self.audit.is_some())
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
            options: LayerOptions::default(),
            usage: Arc::default(),
            audit: None,
        }
    }

    /// Tells `audit` of every request this layer refuses (within the trail's budget for
    /// refusals, so a flood of garbage cannot flood it): an expired or idle token as
    /// such, any other refusal with its code and, when the store knew the token, its id
    /// and user. A request without credentials is not told. [`Tokens::layer`] sets the
    /// facade's trail.
    pub fn audit(mut self, audit: Audit<St::UserId>) -> Self {
        self.audit = Some(Arc::new(audit));
        self
    }

    /// Writes the uses recorded so far (`last_used_at`) now, in one
    /// [`TokenStore::touch`] call, and returns how many were written. Call it when the
    /// server shuts down, after the last request; a failed write is logged, not returned.
    ///
    /// Uses are recorded in memory on the request path (a request never waits for a
    /// write) and written in batches: by a task of their own with the `tokio` feature,
    /// else by [`last_used_flusher`](Self::last_used_flusher) or by calling this.
    pub async fn flush(&self) -> usize {
        match self.flush_plan() {
            Some(plan) => usage::flush(&self.usage, &*self.store, &plan).await,
            None => 0,
        }
    }

    /// How recorded uses are written; `None` when uses are not recorded.
    fn flush_plan(&self) -> Option<usage::FlushPlan> {
        Some(usage::FlushPlan {
            clock: Arc::clone(&self.options.clock),
            interval: self.options.last_used_interval?,
            timeout: self.options.store_timeout.clone(),
        })
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
        let usage = Arc::downgrade(&self.usage);
        let store = Arc::clone(&self.store);
        let plan = self.flush_plan();
        if plan.is_some() {
            self.usage.start_flusher();
        }
        async move {
            if let Some(plan) = plan {
                usage::flusher(usage, store, plan, sleep).await;
            }
        }
    }
}

impl<St> PatLayer<St> {
    /// The token format to accept (must match the one tokens were created with).
    pub fn format(mut self, format: TokenFormat) -> Self {
        self.options.credentials.formats.pat = format;
        self
    }

    /// The formats to accept: the crate's own (as [`format`](Self::format) sets it), and
    /// with feature `laravel` the tokens a Laravel application issued (Sanctum's, and
    /// Passport's personal access tokens), picked by the bearer's shape; the store answers
    /// them through [`TokenStore::find_presented`]. Scope checks work alike for every
    /// format; for Laravel's tokens `*` means every scope, as it does in Laravel.
    pub fn accept(mut self, formats: Formats) -> Self {
        self.options.credentials.formats = formats;
        self
    }

    /// Refuses a token unused for `idle` or longer (judged on the `last_used_at` the
    /// store returned, or `created_at` for a token never used) as `invalid_token` with
    /// its own description and the rejection code `idle_token`. Off by default;
    /// [`Tokens::layer`] sets the facade's
    /// [`idle_lifetime`](crate::Tokens::idle_lifetime). A use never extends a token past
    /// its `expires_at`.
    ///
    /// Recorded uses reach the store every [`last_used_interval`](Self::last_used_interval)
    /// and a cache holds a record up to its TTL, so keep `idle` far longer than both
    /// (days, not minutes).
    pub fn idle_lifetime(mut self, idle: Option<Duration>) -> Self {
        self.options.idle_lifetime = idle.filter(|d| d.is_positive());
        self
    }

    /// Sends the admitted token's expiry on every response to an authenticated request,
    /// as an HTTP date (`Token-Expires-At: Sat, 04 Dec 2027 20:00:00 GMT`), so a client's
    /// logs warn before its token stops working. `None` (the default) sends nothing;
    /// [`DEFAULT_EXPIRY_HEADER`](super::DEFAULT_EXPIRY_HEADER) is the name suggested.
    /// For gRPC the header is response metadata. It costs one small allocation per
    /// response.
    ///
    /// ```
    /// use tower_pat::{MemoryStore, PatLayer, auth::DEFAULT_EXPIRY_HEADER};
    ///
    /// let layer = PatLayer::new(MemoryStore::<i64>::new())
    ///     .expiry_header(Some(DEFAULT_EXPIRY_HEADER));
    /// ```
    pub fn expiry_header(mut self, name: Option<HeaderName>) -> Self {
        self.options.expiry_header = name;
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
        match self.try_realm(realm) {
            Ok(value) => value,
            Err(e) => panic!("{e}"),
        }
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
        self.options.realm = Box::from(realm);
        Ok(self)
    }

    /// The scope matching rules [`AccessToken::can`](crate::AccessToken::can) and the
    /// scope checks apply (`*`, inheritance).
    pub fn matching(mut self, matching: ScopeMatching) -> Self {
        self.options.matching = matching;
        self
    }

    /// The clock expiry is judged by (a [`ManualClock`](crate::clock::ManualClock) in tests).
    pub fn clock(self, clock: impl Clock) -> Self {
        self.shared_clock(Arc::new(clock))
    }

    fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.options.clock = clock;
        self
    }

    /// When on, a request without any credentials goes through without an
    /// [`AccessToken`](crate::AccessToken) (a handler or a scope check decides); a request
    /// with bad credentials is still refused. Off by default.
    pub fn optional(mut self, on: bool) -> Self {
        self.options.optional = on;
        self
    }

    /// Accepts a token in the `access_token` query parameter (RFC 6750 §2.3) when there
    /// is no `Authorization` header; a request with both is refused with
    /// `invalid_request`. Off by default, and while off the query string is not looked at:
    /// URLs end up in logs and histories.
    pub fn allow_query_token(mut self, on: bool) -> Self {
        self.options.credentials.query_token = on;
        self
    }

    /// The longest `Authorization` value read (default 4 KiB); a longer one is refused
    /// with `invalid_request` before anything is hashed.
    pub fn max_header_len(mut self, len: usize) -> Self {
        self.options.credentials.max_header_len = len;
        self
    }

    /// How often, at most, a token's `last_used_at` is written back through
    /// [`TokenStore::touch`] (default one minute); `None` never records uses. A use is
    /// queued when the token's last queued use, and the `last_used_at` the store
    /// returned, are older than this; queued uses are written in batches off the request
    /// path (see [`flush`](Self::flush)).
    pub fn last_used_interval(mut self, interval: Option<Duration>) -> Self {
        self.options.last_used_interval = interval;
        self
    }

    /// Gives up on a store that has not answered `find` within `after`, and answers 503 /
    /// `UNAVAILABLE` as for any store failure (a `touch` of the flusher gives up too, and
    /// is logged). The core depends on no runtime, so it is handed the runtime's sleep:
    /// `tokio::time::sleep` with Tokio. With the crate's `tokio` feature (on with the SQL
    /// stores) the default is [`DEFAULT_STORE_TIMEOUT`](super::DEFAULT_STORE_TIMEOUT)
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
        self.options.store_timeout = Some(StoreTimeout::new(after, sleep));
        self
    }

    /// Waits for the store as long as it takes: no timeout, even with the `tokio`
    /// feature. A hung database then holds requests as long as it hangs.
    pub fn without_store_timeout(mut self) -> Self {
        self.options.store_timeout = None;
        self
    }

    /// Shapes the HTTP answer to every rejected request: this layer's, and those of the
    /// scope checks and the axum extractor behind it (a JSON body, say). The crate sets
    /// the status and the `WWW-Authenticate` challenge after the hook ran; gRPC answers
    /// stay trailers-only. `B` is the response body type of the service the layer wraps
    /// (`axum::body::Body` for axum); a service with another body type (an axum hook in
    /// front of a tonic server, say) answers with an empty body, and says so once in the
    /// log. The layer's `Debug` shows the hook's body type.
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
        self.options.body = RejectionBody::new(hook);
        self
    }
}

impl<S, St> Layer<S> for PatLayer<St> {
    type Service = Pat<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        let options = &self.options;
        let idle = options.idle_lifetime.map(|d| d.whole_nanoseconds());
        let settings =
            Settings::new(&options.realm, options.matching, options.body.clone()).counted();
        #[cfg(feature = "laravel")]
        let settings = settings.with_passport_inheritance(
            options
                .credentials
                .formats
                .passport
                .as_ref()
                .is_some_and(|p| p.inherits_scopes()),
        );
        Pat::new(
            inner,
            Arc::new(Shared {
                store: Arc::clone(&self.store),
                credentials: options.credentials.clone(),
                clock: Arc::clone(&options.clock),
                optional: options.optional,
                store_timeout: options.store_timeout.clone(),
                last_used_interval: options.last_used_interval,
                settings: Arc::new(settings),
                usage: Arc::clone(&self.usage),
                idle,
                expiry_header: options.expiry_header.clone(),
                audit: self.audit.clone(),
                metrics: RequestMetrics::new(),
            }),
        )
    }
}

impl<St: ManageTokens> Tokens<St> {
    /// The layer that resolves the tokens this facade creates: same store (shared, not
    /// wrapped again), format, clock and scope matching rules.
    /// The facade's idle lifetime is enforced, and its audit trail told of refusals.
    pub fn layer(&self) -> PatLayer<St> {
        PatLayer::from_shared(Arc::clone(self.store()))
            .format(self.token_format().clone())
            .matching(self.registry().matching())
            .shared_clock(self.shared_clock())
            .idle_lifetime(self.longest_idle())
            .audit(self.audit_handle().clone())
    }
}
