//! Helpers shared by the integration tests, the one way they share code (`mod common;`):
//! a loopback axum server, an HTTP client that sends whatever header bytes a test asks
//! for, the scopes of Passport's documentation, the fault-injecting store ([`faulty`]) and
//! the databases of the store tests ([`db`]).
//!
//! Every test binary compiles this module on its own; items one of them does not use are
//! allowed to be dead.

#![allow(dead_code)]

pub mod db;
pub mod faulty;

use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header::WWW_AUTHENTICATE};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower_pat::scope::ScopeRegistry;

#[allow(unused_imports)]
pub use faulty::{Fault, Faulty};

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
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

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
    request(req).await
}

/// Sends any request over a fresh connection and reads the whole answer.
pub async fn request(req: Request<Full<Bytes>>) -> Reply {
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
pub async fn bearer(addr: SocketAddr, path: &str, token: &str) -> Reply {
    let value = format!("Bearer {token}");
    send(addr, path, &[("authorization", value.as_bytes())]).await
}

/// A client that keeps its connections, asking one path with a bearer token: a request
/// costs a round trip, not a handshake (what the cache and revocation tests time).
#[derive(Clone)]
pub struct KeepAlive {
    client:
        Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Empty<Bytes>>,
    url: String,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr, path: &str) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            url: format!("http://{addr}{path}"),
        }
    }

    /// The status of `GET <path>` with `Authorization: Bearer <token>`.
    pub async fn status(&self, token: &str) -> StatusCode {
        let req = Request::get(&self.url)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(http_body_util::Empty::new())
            .expect("a request");
        self.client
            .request(req)
            .await
            .expect("the server answers")
            .status()
    }
}

/// Captures what the crate logs (every level) on this thread while it lives: a test on a
/// current-thread runtime sees its server's events too.
pub struct LogCapture {
    buffer: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    pub fn start() -> Self {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = std::sync::Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || CaptureWriter(std::sync::Arc::clone(&writer)))
            .finish();
        Self {
            buffer,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    pub fn text(&self) -> String {
        let buffer = self
            .buffer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

struct CaptureWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
