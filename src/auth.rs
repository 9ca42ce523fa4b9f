//! [`PatLayer`]: resolves the bearer token of every request through a
//! [`TokenStore`] and puts the [`AccessToken`] in the request's extensions.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode, header::AUTHORIZATION};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pat::{AccessToken, MemoryStore, RequireScopesLayer, Tokens, scope::ScopeRegistry};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let registry = ScopeRegistry::new().scope("orders:read", "See orders");
//! let tokens = Tokens::new(MemoryStore::<i64>::new(), registry);
//! let created = tokens.create(1, "cli", ["orders:read"]).await.unwrap();
//!
//! let svc = ServiceBuilder::new()
//!     .layer(tokens.layer())
//!     .layer(RequireScopesLayer::all(["orders:read"]))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let token = req.extensions().get::<AccessToken>().unwrap();
//!         Ok::<_, Infallible>(Response::new(format!("hello, user {}", token.user_id())))
//!     }));
//!
//! let req = Request::builder()
//!     .header(AUTHORIZATION, format!("Bearer {}", created.token.expose_secret()))
//!     .body(String::new())
//!     .unwrap();
//! let res = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.body(), "hello, user 1");
//!
//! let res = svc.oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="api""#);
//! # });
//! ```

use std::{
    any::TypeId,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{HeaderValue, Request, Response, header::AUTHORIZATION};
use pin_project_lite::pin_project;
use time::{Duration, OffsetDateTime};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    AccessToken,
    clock::{Clock, SystemClock},
    record::{TokenRecord, UserId},
    reject::{self, EmptyBody, Rejection, RejectionBody, RejectionKind},
    scope::{ScopeMatching, Scopes},
    store::{Found, StoreError, TokenStore},
    token::{MalformedToken, TokenFormat, TokenHash},
};

/// The realm of the challenge unless configured otherwise.
pub const DEFAULT_REALM: &str = "api";

/// The longest `Authorization` value the layer reads; a longer one is refused before
/// anything is hashed.
pub const DEFAULT_MAX_HEADER_LEN: usize = 4096;

/// How often, at most, a token's `last_used_at` is written back, unless configured.
pub const DEFAULT_LAST_USED_INTERVAL: Duration = Duration::minutes(1);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Authenticates requests by personal access token.
///
/// For each request: takes the bearer token from `Authorization` (scheme matched
/// case-insensitively), checks it offline, hashes it, asks the store, refuses revoked and
/// expired tokens, marks the header sensitive, and inserts an [`AccessToken`] into the
/// request's extensions. Every refusal is answered per the table in [`reject`];
/// a store failure is 503 / `UNAVAILABLE`, never a pass and never a 401.
pub struct PatLayer<St, H = EmptyBody> {
    config: Config<St>,
    hook: H,
}

struct Config<St> {
    store: Arc<St>,
    format: TokenFormat,
    clock: Arc<dyn Clock>,
    /// Realm and matching rules, shared with every request's `AccessToken`.
    settings: Arc<Settings>,
    optional: bool,
    query_param: bool,
    max_header_len: usize,
    last_used_interval: Option<Duration>,
    store_timeout: Option<StoreTimeout>,
}

type Sleep = Arc<dyn Fn(std::time::Duration) -> BoxFuture<()> + Send + Sync>;

#[derive(Clone)]
struct StoreTimeout {
    after: std::time::Duration,
    sleep: Sleep,
}

impl StoreTimeout {
    /// Runs `fut`, or gives up with [`StoreError::timeout`] after the configured time.
    async fn bound<T>(
        &self,
        fut: Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + '_>>,
    ) -> Result<T, StoreError> {
        match futures_util::future::select(fut, (self.sleep)(self.after)).await {
            futures_util::future::Either::Left((result, _)) => result,
            futures_util::future::Either::Right(_) => Err(StoreError::timeout()),
        }
    }
}

impl<St> Clone for Config<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            format: self.format.clone(),
            clock: Arc::clone(&self.clock),
            settings: Arc::clone(&self.settings),
            optional: self.optional,
            query_param: self.query_param,
            max_header_len: self.max_header_len,
            last_used_interval: self.last_used_interval,
            store_timeout: self.store_timeout.clone(),
        }
    }
}

impl<St, H: Clone> Clone for PatLayer<St, H> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            hook: self.hook.clone(),
        }
    }
}

impl<St, H> fmt::Debug for PatLayer<St, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("PatLayer")
            .field("format", &c.format)
            .field("realm", &c.settings.realm)
            .field("matching", &c.settings.matching)
            .field("optional", &c.optional)
            .field("query_param", &c.query_param)
            .field("max_header_len", &c.max_header_len)
            .field("last_used_interval", &c.last_used_interval)
            .field("store_timeout", &c.store_timeout.as_ref().map(|t| t.after))
            .finish_non_exhaustive()
    }
}

impl<St: TokenStore> PatLayer<St> {
    /// A layer resolving tokens through `store`, with the defaults: the default token
    /// format, realm `"api"`, exact scope matching, credentials required, no query-string
    /// tokens, the system clock.
    ///
    /// [`Tokens::layer`](crate::Tokens::layer) gives one already matched to a facade.
    pub fn new(store: St) -> Self {
        Self::from_shared(Arc::new(store))
    }

    /// A layer over a store shared elsewhere too.
    pub fn from_shared(store: Arc<St>) -> Self {
        Self {
            config: Config {
                store,
                format: TokenFormat::default(),
                clock: Arc::new(SystemClock),
                settings: Arc::new(Settings {
                    realm: Box::from(DEFAULT_REALM),
                    matching: ScopeMatching::EXACT,
                }),
                optional: false,
                query_param: false,
                max_header_len: DEFAULT_MAX_HEADER_LEN,
                last_used_interval: Some(DEFAULT_LAST_USED_INTERVAL),
                store_timeout: None,
            },
            hook: EmptyBody,
        }
    }
}

impl<St, H> PatLayer<St, H> {
    /// The token format to accept (must match the one tokens were created with).
    pub fn format(mut self, format: TokenFormat) -> Self {
        self.config.format = format;
        self
    }

    /// The realm of the `WWW-Authenticate` challenge.
    ///
    /// # Panics
    ///
    /// When `realm` has a `"`, a `\` or a character that is not visible ASCII or space.
    #[track_caller]
    pub fn realm(mut self, realm: &str) -> Self {
        assert!(
            reject::is_valid_realm(realm),
            "invalid realm {realm:?}: use visible ASCII and spaces, without '\"' or '\\'"
        );
        self.config.settings = Arc::new(Settings {
            realm: Box::from(realm),
            matching: self.config.settings.matching,
        });
        self
    }

    /// The scope matching rules [`AccessToken::can`] and
    /// [`RequireScopes`](crate::RequireScopes) apply (`*`, inheritance).
    pub fn matching(mut self, matching: ScopeMatching) -> Self {
        self.config.settings = Arc::new(Settings {
            realm: self.config.settings.realm.clone(),
            matching,
        });
        self
    }

    /// The clock expiry is judged by (a [`ManualClock`](crate::clock::ManualClock) in tests).
    pub fn clock(self, clock: impl Clock) -> Self {
        self.shared_clock(Arc::new(clock))
    }

    pub(crate) fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.config.clock = clock;
        self
    }

    /// When on, a request without any credentials goes through without an
    /// [`AccessToken`] (a handler or [`RequireScopes`](crate::RequireScopes) decides); a
    /// request with bad credentials is still refused. Off by default.
    pub fn optional(mut self, on: bool) -> Self {
        self.config.optional = on;
        self
    }

    /// Accepts a token in the `access_token` query parameter (RFC 6750 §2.3) when there
    /// is no `Authorization` header. Off by default, and while off a request that carries
    /// one is refused with `invalid_request`: URLs end up in logs and histories.
    pub fn allow_query_token(mut self, on: bool) -> Self {
        self.config.query_param = on;
        self
    }

    /// The longest `Authorization` value read (default 4 KiB); a longer one is refused
    /// with `invalid_request` before anything is hashed.
    pub fn max_header_len(mut self, len: usize) -> Self {
        self.config.max_header_len = len;
        self
    }

    /// How often, at most, a token's `last_used_at` is written back through
    /// [`TokenStore::touch`] (default one minute); `None` never writes it. A write happens
    /// when the `last_used_at` the store returned is older than this.
    pub fn last_used_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.last_used_interval = interval;
        self
    }

    /// Gives up on a store that has not answered `find` (or `touch`) within `after`, and
    /// answers 503 / `UNAVAILABLE` as for any store failure. The crate depends on no
    /// runtime, so it is handed the runtime's sleep: `tokio::time::sleep` with Tokio.
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
        self.config.store_timeout = Some(StoreTimeout {
            after,
            sleep: Arc::new(move |d| Box::pin(sleep(d))),
        });
        self
    }

    /// Shapes the HTTP answer to a refused request (a JSON body, say); the crate still sets
    /// the status and the `WWW-Authenticate` challenge. gRPC answers stay trailers-only.
    pub fn rejection_body<H2>(self, hook: H2) -> PatLayer<St, H2> {
        PatLayer {
            config: self.config,
            hook,
        }
    }
}

/// Layer-wide settings a request carries to [`RequireScopes`](crate::RequireScopes).
pub(crate) struct Settings {
    pub(crate) realm: Box<str>,
    pub(crate) matching: ScopeMatching,
}

/// What `RequireScopes` and the extractors, which do not know the store's user id type,
/// read to learn what `PatLayer` decided: the token's scopes, or `None` for a request let
/// through without credentials.
///
/// With the default user id type (`i64`) an authenticated request carries no `Grant`:
/// [`granted`] reads the `AccessToken<i64>` itself, so the common case costs one extension
/// insert. Any other user id type adds this small non-generic marker.
#[derive(Clone)]
pub(crate) struct Grant {
    pub(crate) scopes: Option<Scopes>,
    pub(crate) settings: Arc<Settings>,
}

/// What `PatLayer` decided for this request, without knowing the user id type: `None`
/// when no `PatLayer` ran.
pub(crate) fn granted(extensions: &http::Extensions) -> Option<(Option<&Scopes>, &Settings)> {
    if let Some(token) = extensions.get::<AccessToken<i64>>() {
        return Some((Some(token.scopes()), token.settings()));
    }
    extensions
        .get::<Grant>()
        .map(|g| (g.scopes.as_ref(), &*g.settings))
}

struct Shared<St> {
    config: Config<St>,
    /// Prebuilt challenges, by [`challenge_index`].
    challenges: [HeaderValue; 6],
}

fn challenge_index(kind: RejectionKind) -> Option<usize> {
    Some(match kind {
        RejectionKind::MissingCredentials => 0,
        RejectionKind::InvalidRequest => 1,
        RejectionKind::MalformedToken => 2,
        RejectionKind::UnknownToken => 3,
        RejectionKind::RevokedToken => 4,
        RejectionKind::ExpiredToken => 5,
        _ => return None,
    })
}

impl<S, St, H: Clone> Layer<S> for PatLayer<St, H> {
    type Service = Pat<S, St, H>;

    fn layer(&self, inner: S) -> Self::Service {
        let realm = &self.config.settings.realm;
        let challenges = [
            RejectionKind::MissingCredentials,
            RejectionKind::InvalidRequest,
            RejectionKind::MalformedToken,
            RejectionKind::UnknownToken,
            RejectionKind::RevokedToken,
            RejectionKind::ExpiredToken,
        ]
        .map(|kind| reject::challenge(realm, kind, None));
        Pat {
            inner,
            shared: Arc::new(Shared {
                config: self.config.clone(),
                challenges,
            }),
            hook: self.hook.clone(),
        }
    }
}

/// The service [`PatLayer`] makes.
pub struct Pat<S, St, H = EmptyBody> {
    inner: S,
    shared: Arc<Shared<St>>,
    hook: H,
}

impl<S: Clone, St, H: Clone> Clone for Pat<S, St, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            hook: self.hook.clone(),
        }
    }
}

impl<S: fmt::Debug, St, H> fmt::Debug for Pat<S, St, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pat")
            .field("inner", &self.inner)
            .field("realm", &self.shared.config.settings.realm)
            .finish_non_exhaustive()
    }
}

/// Finds the bearer token of a request and marks the `Authorization` header sensitive:
/// `Ok(None)` when there is none, else the token checked offline and hashed, or why the
/// request is refused. One lookup of the header in the common case: `len` counts values and
/// `keys_len` names, so only a request with some repeated header pays for a second look.
fn presented<B>(
    req: &mut Request<B>,
    config: &Config<impl Sized>,
) -> Result<Option<TokenHash>, RejectionKind> {
    let in_query = req.uri().query().and_then(query_token).is_some();
    let headers = req.headers_mut();
    if headers.len() != headers.keys_len() && headers.get_all(AUTHORIZATION).iter().nth(1).is_some()
    {
        return Err(RejectionKind::InvalidRequest);
    }
    let from_header = match headers.get_mut(AUTHORIZATION) {
        None => None,
        Some(value) => {
            value.set_sensitive(true);
            bearer(value.as_bytes(), config.max_header_len)?
        }
    };
    // RFC 6750 §2: one method per request; the query only where it is enabled.
    if in_query && (from_header.is_some() || !config.query_param) {
        return Err(RejectionKind::InvalidRequest);
    }
    if let Some(candidate) = from_header {
        return judge(&config.format, candidate).map(Some);
    }
    match req.uri().query().and_then(query_token) {
        Some(candidate) => judge(&config.format, candidate.as_bytes()).map(Some),
        None => Ok(None),
    }
}

/// Checks credentials offline and hashes them.
fn judge(format: &TokenFormat, candidate: &[u8]) -> Result<TokenHash, RejectionKind> {
    format.parse_bytes(candidate).map_err(|why| {
        tracing::debug!(reason = %why, "bearer token refused offline");
        offline_refusal(candidate, why)
    })
}

/// Splits `Bearer 1*SP credentials`. `Ok(None)`: another scheme, so no bearer
/// credentials. Whether the credentials are a `b64token` is judged only when they fail the
/// token format (see [`offline_refusal`]): a valid token is one already.
fn bearer(value: &[u8], max_len: usize) -> Result<Option<&[u8]>, RejectionKind> {
    if value.len() > max_len {
        return Err(RejectionKind::InvalidRequest);
    }
    const SCHEME: &[u8] = b"bearer";
    let Some((scheme, rest)) = value.split_at_checked(SCHEME.len()) else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return Ok(None);
    }
    match rest.first() {
        // `Bearer` alone: the bearer scheme without credentials.
        None => Err(RejectionKind::InvalidRequest),
        Some(b' ') => match rest.iter().position(|&b| b != b' ') {
            Some(start) => Ok(Some(&rest[start..])),
            None => Err(RejectionKind::InvalidRequest),
        },
        // `Bearerx …`: another scheme.
        Some(_) => Ok(None),
    }
}

/// How to refuse credentials that failed the token format: a well-formed `b64token` is an
/// `invalid_token`, anything else an `invalid_request` (RFC 6750 §3.1).
fn offline_refusal(candidate: &[u8], why: MalformedToken) -> RejectionKind {
    match why {
        // Only base62 characters get as far as the checksum.
        MalformedToken::Checksum => RejectionKind::MalformedToken,
        _ if is_b64token(candidate) => RejectionKind::MalformedToken,
        _ => RejectionKind::InvalidRequest,
    }
}

/// RFC 6750: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(t: &[u8]) -> bool {
    let body = t.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    body > 0
        && t[..body].iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

fn query_token(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("access_token="))
}

impl<S, St, H, ReqB, ResB> Service<Request<ReqB>> for Pat<S, St, H>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    St: TokenStore,
    H: RejectionBody<ResB>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, St, H, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let config = &self.shared.config;
        let hash = match presented(&mut req, config) {
            Err(kind) => return self.refuse(kind, &req),
            Ok(None) if config.optional => {
                req.extensions_mut().insert(Grant {
                    scopes: None,
                    settings: Arc::clone(&self.shared.config.settings),
                });
                // Called right away: the readied service itself, no clone needed.
                return ResponseFuture::inner(self.inner.call(req));
            }
            Ok(None) => return self.refuse(RejectionKind::MissingCredentials, &req),
            Ok(Some(hash)) => hash,
        };
        // A store that answers at once (a map, a warm cache) costs no future and no box.
        let Some(found) = config.store.find_now(&hash) else {
            let shared = Arc::clone(&self.shared);
            return ResponseFuture::lookup(Box::new(Pending {
                hash,
                req,
                inner: self.take_ready(),
                shared,
                hook: self.hook.clone(),
            }));
        };
        match admit(&self.shared, &hash, found) {
            Err(kind) => self.refuse(kind, &req),
            Ok(admitted) => {
                let touch = admitted.touch(&self.shared);
                admitted.grant(&mut req, &self.shared);
                match touch {
                    // Called right away: the readied service itself, no clone needed.
                    None => ResponseFuture::inner(self.inner.call(req)),
                    // Called after the write: the readied service moves into the future.
                    Some(touch) => ResponseFuture::after(touch, self.take_ready(), req),
                }
            }
        }
    }
}

impl<S: Clone, St, H> Pat<S, St, H> {
    /// Takes the inner service that `poll_ready` readied, leaving a clone in its place.
    #[inline]
    fn take_ready(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

impl<S, St, H> Pat<S, St, H> {
    fn refuse<ReqB, ResB>(
        &self,
        kind: RejectionKind,
        req: &Request<ReqB>,
    ) -> ResponseFuture<S, St, H, ReqB>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
        St: TokenStore,
        H: RejectionBody<ResB>,
        ResB: Default,
    {
        ResponseFuture::done(refusal(&self.shared, &self.hook, kind, req))
    }
}

fn refusal<St, H, ReqB, ResB>(
    shared: &Shared<St>,
    hook: &H,
    kind: RejectionKind,
    req: &Request<ReqB>,
) -> Response<ResB>
where
    H: RejectionBody<ResB>,
    ResB: Default,
{
    let grpc = reject::is_grpc(req.headers());
    tracing::debug!(reason = ?kind, grpc, "request refused by PatLayer");
    let rejection = Rejection::new(kind, &shared.config.settings.realm, None);
    let challenge = challenge_index(kind).map(|i| shared.challenges[i].clone());
    reject::respond(hook, grpc, &rejection, challenge)
}

/// A token the store found and the layer accepts.
struct Admitted<U> {
    record: Arc<TokenRecord<U>>,
    /// When it was judged, in nanoseconds since the Unix epoch.
    now: i128,
}

/// Judges the store's answer for `hash`.
#[inline]
fn admit<St: TokenStore>(
    shared: &Shared<St>,
    hash: &TokenHash,
    found: Result<Found<St::UserId>, StoreError>,
) -> Result<Admitted<St::UserId>, RejectionKind> {
    let record = match found {
        Err(error) => {
            tracing::warn!(%error, "token store failed; refusing with 503");
            return Err(RejectionKind::StoreUnavailable);
        }
        Ok(None) => return Err(RejectionKind::UnknownToken),
        Ok(Some(record)) => record,
    };
    // A store that answers with another token's row is broken: fail closed.
    if record.token_hash != *hash {
        tracing::warn!(token.id = %record.id, "token store returned a record for another hash; refusing with 503");
        return Err(RejectionKind::StoreUnavailable);
    }
    if record.revoked {
        return Err(RejectionKind::RevokedToken);
    }
    // `now >= expires_at`, in nanoseconds: the boundary second is expired.
    let now = shared.config.clock.unix_nanos();
    if now >= record.expires_at.unix_timestamp_nanos() {
        return Err(RejectionKind::ExpiredToken);
    }
    Ok(Admitted { record, now })
}

impl<U: UserId> Admitted<U> {
    /// The `last_used_at` write, when one is due.
    #[inline]
    fn touch<St: TokenStore<UserId = U>>(&self, shared: &Arc<Shared<St>>) -> Option<BoxFuture<()>> {
        let config = &shared.config;
        let due = match (config.last_used_interval, self.record.last_used_at) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(every), Some(last)) => {
                self.now - last.unix_timestamp_nanos() >= every.whole_nanoseconds()
            }
        };
        if !due {
            return None;
        }
        let shared = Arc::clone(shared);
        let id = self.record.id;
        let now = OffsetDateTime::from_unix_timestamp_nanos(self.now)
            .unwrap_or_else(|_| shared.config.clock.now());
        Some(Box::pin(async move {
            let config = &shared.config;
            let touch = config.store.touch(id, now);
            let result = match &config.store_timeout {
                Some(timeout) => timeout.bound(touch).await,
                None => touch.await,
            };
            if let Err(error) = result {
                tracing::warn!(%error, token.id = %id, "could not record token use");
            }
        }))
    }

    /// Puts the token in the request's extensions (and, for a user id type other than
    /// `i64`, the marker [`granted`] reads).
    #[inline]
    fn grant<St, ReqB>(self, req: &mut Request<ReqB>, shared: &Shared<St>) {
        let extensions = req.extensions_mut();
        if TypeId::of::<U>() != TypeId::of::<i64>() {
            extensions.insert(Grant {
                scopes: Some(self.record.scopes.clone()),
                settings: Arc::clone(&shared.config.settings),
            });
        }
        extensions.insert(AccessToken::with_settings(
            self.record,
            Arc::clone(&shared.config.settings),
        ));
    }
}

/// A request waiting for the store's answer.
struct Pending<S, St, H, ReqB> {
    hash: TokenHash,
    req: Request<ReqB>,
    inner: S,
    shared: Arc<Shared<St>>,
    hook: H,
}

impl<S, St, H, ReqB, ResB> Pending<S, St, H, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    St: TokenStore,
    H: RejectionBody<ResB>,
    ResB: Default,
{
    /// Judges the store's answer: refuses, or passes the request on.
    fn resolve(
        self,
        found: Result<Found<St::UserId>, StoreError>,
    ) -> ResponseFuture<S, St, H, ReqB> {
        let Self {
            hash,
            mut req,
            mut inner,
            shared,
            hook,
        } = self;
        match admit(&shared, &hash, found) {
            Err(kind) => ResponseFuture::done(refusal(&shared, &hook, kind, &req)),
            Ok(admitted) => {
                let touch = admitted.touch(&shared);
                admitted.grant(&mut req, &shared);
                match touch {
                    None => ResponseFuture::inner(inner.call(req)),
                    Some(touch) => ResponseFuture::after(touch, inner, req),
                }
            }
        }
    }
}

pin_project! {
    /// The future of [`Pat`].
    pub struct ResponseFuture<S, St, H, ReqB>
    where
        S: Service<Request<ReqB>>,
        St: TokenStore,
    {
        #[pin]
        state: State<S, St, H, ReqB>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, St, H, ReqB>
    where
        S: Service<Request<ReqB>>,
        St: TokenStore,
    {
        Lookup {
            fut: BoxFuture<Result<Found<St::UserId>, StoreError>>,
            pending: Option<Box<Pending<S, St, H, ReqB>>>,
        },
        Touch {
            fut: BoxFuture<()>,
            next: Option<Box<(S, Request<ReqB>)>>,
        },
        Inner {
            #[pin]
            fut: S::Future,
        },
        Done {
            res: Option<S::Response>,
        },
    }
}

impl<S, St, H, ReqB> ResponseFuture<S, St, H, ReqB>
where
    S: Service<Request<ReqB>>,
    St: TokenStore,
{
    #[inline]
    fn inner(fut: S::Future) -> Self {
        Self {
            state: State::Inner { fut },
        }
    }

    fn done(res: S::Response) -> Self {
        Self {
            state: State::Done { res: Some(res) },
        }
    }

    /// Calls `inner` once `touch` (the `last_used_at` write) is done.
    fn after(touch: BoxFuture<()>, inner: S, req: Request<ReqB>) -> Self {
        Self {
            state: State::Touch {
                fut: touch,
                next: Some(Box::new((inner, req))),
            },
        }
    }

    fn lookup(pending: Box<Pending<S, St, H, ReqB>>) -> Self {
        let shared = Arc::clone(&pending.shared);
        let hash = pending.hash;
        let fut = Box::pin(async move {
            let config = &shared.config;
            let find = config.store.find(&hash);
            match &config.store_timeout {
                Some(timeout) => timeout.bound(find).await,
                None => find.await,
            }
        });
        Self {
            state: State::Lookup {
                fut,
                pending: Some(pending),
            },
        }
    }
}

impl<S, St, H, ReqB, ResB> Future for ResponseFuture<S, St, H, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    St: TokenStore,
    H: RejectionBody<ResB>,
    ResB: Default,
{
    type Output = Result<Response<ResB>, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Inner { fut } => return fut.poll(cx),
                StateProj::Done { res } => {
                    return Poll::Ready(Ok(res.take().expect("polled after completion")));
                }
                StateProj::Lookup { fut, pending } => {
                    let found = ready!(fut.as_mut().poll(cx));
                    let pending = pending.take().expect("polled after completion");
                    pending.resolve(found).state
                }
                StateProj::Touch { fut, next } => {
                    ready!(fut.as_mut().poll(cx));
                    let (mut inner, req) = *next.take().expect("polled after completion");
                    State::Inner {
                        fut: inner.call(req),
                    }
                }
            };
            this.state.set(next);
        }
    }
}

impl<S, St, H, ReqB> fmt::Debug for ResponseFuture<S, St, H, ReqB>
where
    S: Service<Request<ReqB>>,
    St: TokenStore,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_syntax() {
        let max = DEFAULT_MAX_HEADER_LEN;
        assert_eq!(bearer(b"Bearer abc", max), Ok(Some(&b"abc"[..])));
        assert_eq!(bearer(b"bEaReR   abc==", max), Ok(Some(&b"abc=="[..])));
        assert_eq!(bearer(b"Basic dXNlcjpwYXNz", max), Ok(None));
        assert_eq!(bearer(b"Bearerabc", max), Ok(None));
        for empty in [&b"Bearer"[..], b"Bearer ", b"Bearer   "] {
            assert_eq!(bearer(empty, max), Err(RejectionKind::InvalidRequest));
        }
        let long = format!("Bearer {}", "a".repeat(max));
        assert_eq!(
            bearer(long.as_bytes(), max),
            Err(RejectionKind::InvalidRequest)
        );
    }

    #[test]
    fn credentials_that_fail_the_format_are_classified() {
        let format = TokenFormat::default();
        let judge = |credentials: &[u8]| {
            format
                .parse_bytes(credentials)
                .map(|_| ())
                .map_err(|why| offline_refusal(credentials, why))
        };
        let good = format.generate().unwrap();
        assert_eq!(judge(good.expose_secret().as_bytes()), Ok(()));
        for bad_syntax in [&b"a b"[..], b"=abc", b"a\xffb", b"a,b", b"a\"b"] {
            assert_eq!(
                judge(bad_syntax),
                Err(RejectionKind::InvalidRequest),
                "{bad_syntax:?}"
            );
        }
        for b64_but_not_ours in [&b"abc"[..], b"abc==", b"a-b.c_d~e+f/g", b"ghp_x"] {
            assert_eq!(
                judge(b64_but_not_ours),
                Err(RejectionKind::MalformedToken),
                "{b64_but_not_ours:?}"
            );
        }
        let mut typo = good.into_secret().into_bytes();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        assert_eq!(judge(&typo), Err(RejectionKind::MalformedToken));
    }

    #[test]
    fn repeated_authorization_is_found_among_other_repeated_headers() {
        let store = crate::MemoryStore::<i64>::new();
        let layer = PatLayer::new(store);
        let config = &layer.config;
        let token = config.format.generate().unwrap();
        let bearer = format!("Bearer {}", token.expose_secret());
        let request = |auth: &[&str], cookies: usize| {
            let mut b = Request::builder();
            for a in auth {
                b = b.header(AUTHORIZATION, *a);
            }
            for i in 0..cookies {
                b = b.header(http::header::COOKIE, format!("c{i}=1"));
            }
            b.body(()).unwrap()
        };
        for cookies in [0, 1, 3] {
            let mut one = request(&[&bearer], cookies);
            assert_eq!(presented(&mut one, config), Ok(Some(token.hash())));
            assert!(one.headers()[AUTHORIZATION].is_sensitive());
            let mut two = request(&[&bearer, &bearer], cookies);
            assert_eq!(
                presented(&mut two, config),
                Err(RejectionKind::InvalidRequest)
            );
            let mut none = request(&[], cookies);
            assert_eq!(presented(&mut none, config), Ok(None));
        }
    }

    #[test]
    fn query_tokens() {
        assert_eq!(query_token("a=1&access_token=xyz&b=2"), Some("xyz"));
        assert_eq!(query_token("my_access_token=xyz"), None);
    }
}
