//! Where a request logger belongs: `PatLayer` marks the `Authorization` header sensitive
//! when the request reaches it, so a logger that prints headers (tower-http's `TraceLayer`
//! with `include_headers(true)`) prints `Sensitive` when it runs inside the layer, or
//! behind tower-http's `SetSensitiveRequestHeadersLayer`, and the bearer token in full when
//! it runs outside the layer without one. The last case is the hazard SECURITY.md and the
//! README warn about: this test fails if it stops being true, so the warning stays honest.

#![cfg(feature = "axum")]

use std::{
    io::{self, Write},
    sync::{Arc, Mutex, PoisonError},
};

use axum::{Router, routing::get};
use http::header::AUTHORIZATION;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tower_http::{
    sensitive_headers::SetSensitiveRequestHeadersLayer,
    trace::{DefaultMakeSpan, TraceLayer},
};
use tower_pat::{MemoryStore, Tokens, scope::ScopeRegistry};

/// What the subscriber printed.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn take(&self) -> String {
        let mut out = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&std::mem::take(&mut *out)).into_owned()
    }
}

/// One request with `token` to a server on 127.0.0.1; the status line.
async fn call(app: Router, token: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    server.abort();
    answer.lines().next().unwrap_or_default().to_owned()
}

fn trace()
-> TraceLayer<tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>>
{
    TraceLayer::new_for_http().make_span_with(DefaultMakeSpan::new().include_headers(true))
}

// One thread: the subscriber set for this thread sees the server's tasks too.
#[tokio::test(flavor = "current_thread")]
async fn a_logger_inside_the_layer_prints_sensitive_and_one_outside_prints_the_token() {
    let out = Capture::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let tokens = Tokens::new(
        MemoryStore::<i64>::new(),
        ScopeRegistry::new().scope("orders:read", "See orders"),
    );
    let token = tokens.create(1, "log", ["orders:read"]).await.unwrap();
    let secret = token.token.expose_secret();
    let route = || Router::new().route("/", get(|| async { "ok" }));

    // Inside: axum's last `.layer` is the outermost, so the trace is added first.
    let inside = route().layer(trace()).layer(tokens.layer());
    assert_eq!(call(inside, secret).await, "HTTP/1.1 200 OK");
    let logged = out.take();
    assert!(
        logged.contains("authorization"),
        "headers were logged:\n{logged}"
    );
    assert!(logged.contains("Sensitive"), "{logged}");
    assert!(
        !logged.contains(secret),
        "a logger inside the layer printed the token"
    );

    // Outside, behind SetSensitiveRequestHeadersLayer: marked before any layer sees it.
    let marked = route()
        .layer(tokens.layer())
        .layer(trace())
        .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION]));
    assert_eq!(call(marked, secret).await, "HTTP/1.1 200 OK");
    let logged = out.take();
    assert!(logged.contains("Sensitive"), "{logged}");
    assert!(!logged.contains(secret), "the marked header was printed");

    // Outside, unmarked: the hazard. The logger sees the request before the layer does.
    let outside = route().layer(tokens.layer()).layer(trace());
    assert_eq!(call(outside, secret).await, "HTTP/1.1 200 OK");
    let logged = out.take();
    assert!(
        logged.contains(secret),
        "a logger outside PatLayer no longer prints the token: update SECURITY.md and the README"
    );
}
