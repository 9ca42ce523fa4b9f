//! Helpers shared by the integration tests: a loopback axum server, an HTTP client that
//! sends whatever header bytes a test asks for, a store that fails or stalls on demand,
//! and the scopes of Passport's documentation.
//!
//! Every test binary compiles this module on its own; items one of them does not use are
//! marked `#[allow(dead_code)]`.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering},
    time::Duration,
};

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header::WWW_AUTHENTICATE};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use time::OffsetDateTime;
use tower_pat::{
    ManageTokens, TokenRecord, TokenStore,
    record::TokenId,
    scope::ScopeRegistry,
    store::{Found, Revoked, StoreError},
    token::TokenHash,
};

/// Passport's example scopes, plus `orders:read` for the `/orders` routes; a token
/// created without scopes gets `user:read`.
pub fn registry() -> ScopeRegistry {
    ScopeRegistry::new()
        .scope("user:read", "Retrieve the user info")
        .scope("orders:read", "See orders")
        .scope("orders:create", "Place orders")
        .default_scopes(["user:read"])
}

/// Serves `app` on a fresh loopback port until the test's runtime shuts down.
#[allow(dead_code)]
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("axum server");
    });
    addr
}

/// What came back over the socket.
#[allow(dead_code)]
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

#[allow(dead_code)]
impl Reply {
    /// The `WWW-Authenticate` value; fails the test if the header came more than once.
    pub fn challenge(&self) -> Option<&str> {
        let all: Vec<_> = self.headers.get_all(WWW_AUTHENTICATE).iter().collect();
        assert!(all.len() <= 1, "several WWW-Authenticate headers: {all:?}");
        all.first().map(|v| v.to_str().expect("an ASCII challenge"))
    }
}

/// Sends `GET path` to `addr` with these headers, appended in order (so a name given
/// twice is sent twice) and taken as raw bytes (so they need not be UTF-8).
#[allow(dead_code)]
pub async fn send(addr: SocketAddr, path: &str, headers: &[(&str, &[u8])]) -> Reply {
    let mut req = Request::get(format!("http://{addr}{path}"))
        .body(Full::<Bytes>::default())
        .expect("a request");
    for (name, value) in headers {
        req.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            HeaderValue::from_bytes(value).expect("a header value"),
        );
    }
    let client = Client::builder(TokioExecutor::new()).build_http();
    let res = client.request(req).await.expect("the server answers");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("a body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `GET path` with `Authorization: Bearer <token>`.
#[allow(dead_code)]
pub async fn bearer(addr: SocketAddr, path: &str, token: &str) -> Reply {
    let value = format!("Bearer {token}");
    send(addr, path, &[("authorization", value.as_bytes())]).await
}

/// How a [`FlakyStore`] answers lookups.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// As the wrapped store does.
    Healthy = 0,
    /// Every lookup fails with a backend error.
    Fail = 1,
    /// Every lookup fails with a timeout.
    Timeout = 2,
}

/// Wraps a store; can be switched to fail, to answer slowly, or to answer only through
/// the async `find`, and counts the lookups and `touch` calls it sees.
#[derive(Debug)]
pub struct FlakyStore<S> {
    inner: S,
    mode: AtomicU8,
    delay_ms: AtomicU64,
    async_only: AtomicBool,
    lookups: AtomicUsize,
    touches: AtomicUsize,
}

#[allow(dead_code)]
impl<S> FlakyStore<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            mode: AtomicU8::new(Mode::Healthy as u8),
            delay_ms: AtomicU64::new(0),
            async_only: AtomicBool::new(false),
            lookups: AtomicUsize::new(0),
            touches: AtomicUsize::new(0),
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Every `find` sleeps this long first (and `find_now` declines).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).expect("a short delay");
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// `find_now` always declines, so the layer takes its async path.
    pub fn set_async_only(&self, on: bool) {
        self.async_only.store(on, Ordering::SeqCst);
    }

    /// How many lookups (`find`, or a `find_now` that answered) reached the store.
    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }

    /// How many times `touch` was called.
    pub fn touches(&self) -> usize {
        self.touches.load(Ordering::SeqCst)
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            0 => Mode::Healthy,
            1 => Mode::Fail,
            _ => Mode::Timeout,
        }
    }

    fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))
    }

    fn failure(&self) -> Option<StoreError> {
        match self.mode() {
            Mode::Healthy => None,
            Mode::Fail => Some(StoreError::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "database is down (injected)",
            ))),
            Mode::Timeout => Some(StoreError::timeout()),
        }
    }
}

#[async_trait]
impl<S: TokenStore> TokenStore for FlakyStore<S> {
    type UserId = S::UserId;

    async fn find(&self, hash: &TokenHash) -> Result<Found<Self::UserId>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match self.failure() {
            Some(error) => Err(error),
            None => self.inner.find(hash).await,
        }
    }

    fn find_now(&self, hash: &TokenHash) -> Option<Result<Found<Self::UserId>, StoreError>> {
        if self.async_only.load(Ordering::SeqCst) || !self.delay().is_zero() {
            return None;
        }
        let answer = match self.failure() {
            Some(error) => Some(Err(error)),
            None => self.inner.find_now(hash),
        };
        if answer.is_some() {
            self.lookups.fetch_add(1, Ordering::SeqCst);
        }
        answer
    }

    async fn touch(&self, id: TokenId, at: OffsetDateTime) -> Result<(), StoreError> {
        self.touches.fetch_add(1, Ordering::SeqCst);
        self.inner.touch(id, at).await
    }
}

#[async_trait]
impl<S: ManageTokens> ManageTokens for FlakyStore<S> {
    async fn insert(&self, record: TokenRecord<Self::UserId>) -> Result<(), StoreError> {
        self.inner.insert(record).await
    }

    async fn get(&self, id: TokenId) -> Result<Option<TokenRecord<Self::UserId>>, StoreError> {
        self.inner.get(id).await
    }

    async fn list(
        &self,
        user: &Self::UserId,
    ) -> Result<Vec<TokenRecord<Self::UserId>>, StoreError> {
        self.inner.list(user).await
    }

    async fn revoke(
        &self,
        user: &Self::UserId,
        id: TokenId,
        at: OffsetDateTime,
    ) -> Result<Revoked, StoreError> {
        self.inner.revoke(user, id, at).await
    }

    async fn revoke_all(&self, user: &Self::UserId, at: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.revoke_all(user, at).await
    }

    async fn delete(&self, user: &Self::UserId, id: TokenId) -> Result<bool, StoreError> {
        self.inner.delete(user, id).await
    }

    async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.prune(before).await
    }
}
