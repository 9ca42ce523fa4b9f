//! The token management API and page (`tower_pat::manage`), route by route, over a real
//! loopback socket: who may call it (a signed-in user, never a token, never another
//! site), what it answers, and that bad input stores nothing.

use crate::common;

use std::net::SocketAddr;

use axum::{Router, body::Body, middleware::map_request};
use common::Reply;
use http::{Method, Request, StatusCode, header};
use http_body_util::{Full, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::{Value, json};
use time::{Duration, macros::datetime};
use tower_pat::{
    MemoryStore, SqliteStore, Tokens,
    clock::ManualClock,
    manage::{SignedIn, TokenPage},
    store::ManageTokens,
    token::TokenHash,
};

const BASE: &str = "/settings/tokens";

/// Stands in for the application's sign-in: `x-test-user: 7` is user 7 signed in.
async fn sign_in(mut req: Request<Body>) -> Request<Body> {
    let user = req
        .headers()
        .get("x-test-user")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    if let Some(user) = user {
        req.extensions_mut().insert(SignedIn(user));
    }
    req
}

fn tokens() -> Tokens<MemoryStore<i64>> {
    Tokens::new(MemoryStore::new(), common::registry())
}

fn app<St: ManageTokens<UserId = i64>>(manage: TokenPage<St>) -> Router {
    Router::new()
        .nest_service(BASE, manage)
        .layer(map_request(sign_in))
}

async fn serve<St: ManageTokens<UserId = i64>>(tokens: &Tokens<St>) -> SocketAddr {
    common::serve(app(TokenPage::new(tokens.clone(), BASE))).await
}

/// What the tests read of an answer of the JSON API.
trait Api {
    fn json(&self) -> Value;
    /// A refusal's `code`, after checking it is a refusal of the documented shape.
    fn code(&self) -> String;
    fn header(&self, name: &str) -> &str;
}

impl Api for Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn code(&self) -> String {
        let body = self.json();
        let Value::Object(fields) = &body else {
            panic!("a refusal is an object: {body}");
        };
        let mut keys: Vec<&str> = fields.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let expected: &[&str] = if self.status == StatusCode::UNPROCESSABLE_ENTITY {
            &["code", "error", "message", "problems"]
        } else {
            &["code", "error", "message"]
        };
        assert_eq!(keys, expected, "{body}");
        for key in ["error", "code", "message"] {
            assert!(
                body[key].as_str().is_some_and(|v| !v.is_empty()),
                "{key} is a non-empty string: {body}"
            );
        }
        body["code"].as_str().unwrap_or_default().to_owned()
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("an ASCII header"))
            .unwrap_or_default()
    }
}

/// A request as the page sends it: signed in as `user`, same-origin.
struct Call {
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

fn call(method: Method, path: &str) -> Call {
    Call {
        method,
        path: format!("{BASE}{path}"),
        headers: Vec::new(),
        body: None,
    }
}

impl Call {
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn user(self, user: i64) -> Self {
        self.header("x-test-user", &user.to_string())
    }

    fn same_origin(self) -> Self {
        self.header("sec-fetch-site", "same-origin")
    }

    /// Signed in as `user`, same-origin: what the page sends.
    fn page(self, user: i64) -> Self {
        self.user(user).same_origin()
    }

    fn json(self, body: Value) -> Self {
        self.raw("application/json", body.to_string())
    }

    fn raw(mut self, content_type: &str, body: impl Into<String>) -> Self {
        self.headers
            .push(("content-type".to_owned(), content_type.to_owned()));
        self.body = Some(body.into());
        self
    }

    async fn send(self, addr: SocketAddr) -> Reply {
        let mut req = Request::builder()
            .method(self.method)
            .uri(format!("http://{addr}{}", self.path));
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(self.body.unwrap_or_default())))
            .expect("a request");
        common::request(req).await
    }
}

async fn create(addr: SocketAddr, user: i64, name: &str, scopes: &[&str]) -> Value {
    let reply = call(Method::POST, "/tokens")
        .page(user)
        .json(json!({ "name": name, "scopes": scopes, "expires_in_days": 30 }))
        .send(addr)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.json()
}

async fn list(addr: SocketAddr, user: i64) -> Vec<Value> {
    let reply = call(Method::GET, "/tokens").page(user).send(addr).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.json().as_array().expect("an array").clone()
}

#[tokio::test]
async fn every_route_answers_as_documented_and_never_to_be_cached() {
    let tokens = tokens();
    let addr = serve(&tokens).await;
    let created = create(addr, 7, "laptop", &["orders:read"]).await;
    let id = created["token"]["id"].as_str().unwrap().to_owned();

    let cases: Vec<(Call, StatusCode, &str)> = vec![
        (call(Method::GET, "/").user(7), StatusCode::OK, "text/html"),
        (call(Method::GET, "").user(7), StatusCode::OK, "text/html"),
        (call(Method::GET, "/page.css"), StatusCode::OK, "text/css"),
        (
            call(Method::GET, "/page.js"),
            StatusCode::OK,
            "text/javascript",
        ),
        (
            call(Method::GET, "/scopes").page(7),
            StatusCode::OK,
            "application/json",
        ),
        (
            call(Method::GET, "/tokens").page(7),
            StatusCode::OK,
            "application/json",
        ),
        (
            call(Method::POST, "/tokens")
                .page(7)
                .json(json!({"name": "ci"})),
            StatusCode::CREATED,
            "application/json",
        ),
        (
            call(Method::DELETE, &format!("/tokens/{id}")).page(7),
            StatusCode::NO_CONTENT,
            "",
        ),
        (
            call(Method::DELETE, "/tokens").page(7),
            StatusCode::OK,
            "application/json",
        ),
        (
            call(Method::GET, "/nope").page(7),
            StatusCode::NOT_FOUND,
            "application/json",
        ),
        (
            call(Method::PUT, "/tokens").page(7),
            StatusCode::METHOD_NOT_ALLOWED,
            "application/json",
        ),
        (
            call(Method::GET, "/tokens"),
            StatusCode::UNAUTHORIZED,
            "application/json",
        ),
        (
            call(Method::GET, "/"),
            StatusCode::UNAUTHORIZED,
            "text/html",
        ),
        (
            call(Method::POST, "/tokens")
                .user(7)
                .header("sec-fetch-site", "cross-site")
                .json(json!({"name": "x"})),
            StatusCode::FORBIDDEN,
            "application/json",
        ),
        (
            call(Method::POST, "/tokens")
                .page(7)
                .raw("application/json", "{"),
            StatusCode::BAD_REQUEST,
            "application/json",
        ),
        (
            call(Method::POST, "/tokens")
                .page(7)
                .json(json!({"name": ""})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "application/json",
        ),
    ];
    for (request, status, content_type) in cases {
        let what = format!("{} {}", request.method, request.path);
        let reply = request.send(addr).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        assert_eq!(reply.header("cache-control"), "no-store", "{what}");
        assert_eq!(reply.header("x-content-type-options"), "nosniff", "{what}");
        assert!(
            reply.header("content-type").starts_with(content_type),
            "{what}: {:?}",
            reply.header("content-type")
        );
        assert!(!reply.body.contains("token_hash"), "{what}");
    }
}

/// Writes `request` as raw bytes on a fresh connection and reads the answer until the
/// server closes it: for requests no HTTP client library would send.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write the request");
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server closes the connection")
    .expect("read the answer");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The refusal table of the module documentation, row by row, over the socket: the
/// status, `error` (the broad class), `code` (the precise reason) and a message, the same
/// three keys as `Rejection::to_json`; a 422 adds `problems`.
#[tokio::test]
async fn every_refusal_is_error_code_and_message() {
    let tokens = tokens();
    let leaked = tokens.create(7, "leaked", ["user:read"]).await.unwrap();
    let bearer = format!("Bearer {}", leaked.token.expose_secret());
    let addr = common::serve(app(TokenPage::new(tokens.clone(), BASE).body_limit(64))).await;
    let unknown_id = "/tokens/0123456789abcdef0123456789abcdef";

    let rows: Vec<(Call, StatusCode, &str, &str)> = vec![
        (
            call(Method::GET, "/nope").page(7),
            StatusCode::NOT_FOUND,
            "not_found",
            "not_found",
        ),
        (
            call(Method::DELETE, unknown_id).page(7),
            StatusCode::NOT_FOUND,
            "not_found",
            "token_not_found",
        ),
        (
            call(Method::PUT, "/tokens").page(7),
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "method_not_allowed",
        ),
        (
            call(Method::GET, "/tokens")
                .page(7)
                .header("authorization", &bearer),
            StatusCode::FORBIDDEN,
            "forbidden",
            "token_not_accepted",
        ),
        (
            call(Method::POST, "/tokens")
                .user(7)
                .header("sec-fetch-site", "cross-site")
                .json(json!({"name": "csrf"})),
            StatusCode::FORBIDDEN,
            "forbidden",
            "cross_origin",
        ),
        (
            call(Method::POST, "/tokens")
                .page(7)
                .raw("text/plain", r#"{"name":"form"}"#),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "unsupported_media_type",
        ),
        (
            call(Method::GET, "/tokens").same_origin(),
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "not_signed_in",
        ),
        (
            call(Method::POST, "/tokens")
                .page(7)
                .json(json!({"name": "n".repeat(100)})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "payload_too_large",
        ),
        (
            call(Method::POST, "/tokens")
                .page(7)
                .raw("application/json", "{"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "malformed_json",
        ),
        (
            call(Method::POST, "/tokens")
                .page(7)
                .json(json!({"name": ""})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "invalid_input",
        ),
    ];
    for (request, status, error, code) in rows {
        let what = format!("{} {}", request.method, request.path);
        let reply = request.send(addr).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        assert_eq!(reply.header("content-type"), "application/json", "{what}");
        assert_eq!(reply.code(), code, "{what}");
        assert_eq!(reply.json()["error"], error, "{what}");
    }

    // A body that cannot be read (a broken chunked encoding): no client library sends
    // one, so the bytes go over the socket as they are.
    let answer = raw_exchange(
        addr,
        format!(
            "POST {BASE}/tokens HTTP/1.1\r\nhost: {addr}\r\nx-test-user: 7\r\n\
             sec-fetch-site: same-origin\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\n\r\n5\r\n{{\"na\r\nzz\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(
        (body["error"].as_str(), body["code"].as_str()),
        (Some("invalid_request"), Some("malformed_body")),
        "{answer}"
    );
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));

    // A store that fails: a real SQLite store whose table was never created.
    let store = SqliteStore::<i64>::open(":memory:").await.unwrap();
    let addr = serve(&Tokens::new(store, common::registry())).await;
    let reply = call(Method::GET, "/tokens").page(7).send(addr).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.code(), "store_unavailable");
    assert_eq!(reply.json()["error"], "store_unavailable");

    // The 500 row (`internal`: the OS had no randomness, or an answer could not be
    // written as JSON) cannot be caused from outside; its body is checked in the unit
    // tests of `manage::json`.
    assert_eq!(
        tokens.list(&7).await.unwrap().len(),
        1,
        "nothing was created"
    );
}

#[tokio::test]
async fn the_api_lists_scopes_in_order_and_tokens_newest_first_with_their_status() {
    let clock = ManualClock::new(datetime!(2026-03-01 12:00 UTC));
    let tokens = tokens().clock(clock.clone());
    let addr = serve(&tokens).await;

    let scopes = call(Method::GET, "/scopes").page(7).send(addr).await.json();
    assert_eq!(
        scopes,
        json!([
            {"id": "user:read", "description": "Retrieve the user info", "default": true},
            {"id": "orders:read", "description": "See orders", "default": false},
            {"id": "orders:create", "description": "Place orders", "default": false},
        ])
    );

    let first = create(addr, 7, "first", &["orders:read"]).await;
    clock.advance(Duration::days(10));
    let second = create(addr, 7, "second", &[]).await;
    assert_eq!(
        second["token"]["scopes"],
        json!(["user:read"]),
        "the defaults"
    );
    clock.advance(Duration::days(25)); // `first` (30 days) is now expired
    let third = create(addr, 7, "third", &["orders:create"]).await;
    let third_id = third["token"]["id"].as_str().unwrap();
    let reply = call(Method::DELETE, &format!("/tokens/{third_id}"))
        .page(7)
        .send(addr)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.body, "");

    let listed = list(addr, 7).await;
    let names: Vec<_> = listed.iter().map(|t| t["name"].as_str().unwrap()).collect();
    let statuses: Vec<_> = listed
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["third", "second", "first"]);
    assert_eq!(statuses, ["revoked", "active", "expired"]);
    assert_eq!(
        listed[2],
        json!({
            "id": first["token"]["id"],
            "name": "first",
            "scopes": ["orders:read"],
            "created_at": "2026-03-01T12:00:00Z",
            "last_used_at": null,
            "expires_at": "2026-03-31T12:00:00Z",
            "status": "expired",
            "expires_in_seconds": null,
            "expires_soon": false,
            "rotated_from": null,
            "rotated_to": null,
        }),
        "exactly these fields: never the hash"
    );
    assert!(list(addr, 8).await.is_empty(), "user 8 sees none of them");
}

#[tokio::test]
async fn nobody_signed_in_is_401() {
    let tokens = tokens();
    tokens.create(7, "mine", ["user:read"]).await.unwrap();
    let addr = serve(&tokens).await;
    for request in [
        call(Method::GET, "/scopes").same_origin(),
        call(Method::GET, "/tokens").same_origin(),
        call(Method::POST, "/tokens")
            .same_origin()
            .json(json!({"name": "x"})),
        call(Method::DELETE, "/tokens/00000000000000000000000000000000").same_origin(),
        call(Method::DELETE, "/tokens").same_origin(),
    ] {
        let what = format!("{} {}", request.method, request.path);
        let reply = request.send(addr).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(reply.code(), "not_signed_in", "{what}");
    }
    let page = call(Method::GET, "/").send(addr).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("Sign in to manage your tokens"));
    assert_eq!(tokens.list(&7).await.unwrap().len(), 1);
    assert!(!tokens.list(&7).await.unwrap()[0].revoked);

    // With a sign-in URL, the page sends the browser there instead.
    let addr = common::serve(app(
        TokenPage::new(tokens.clone(), BASE).sign_in_url("/login")
    ))
    .await;
    let page = call(Method::GET, "/").send(addr).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.header("location"), "/login");
    assert_eq!(page.header("cache-control"), "no-store");
}

#[tokio::test]
async fn a_personal_access_token_is_never_an_identity() {
    let tokens = tokens();
    let leaked = tokens
        .create(7, "leaked", ["user:read", "orders:read"])
        .await
        .unwrap();
    let secret = leaked.token.expose_secret().to_owned();
    let bearer = format!("Bearer {secret}");
    let addr = serve(&tokens).await;

    // A bearer token alone, and a bearer token beside a signed-in user: both refused.
    for signed_in in [false, true] {
        let requests = [
            call(Method::GET, "/tokens"),
            call(Method::GET, "/scopes"),
            call(Method::GET, "/"),
            call(Method::POST, "/tokens").json(json!({"name": "minted"})),
            call(Method::DELETE, &format!("/tokens/{}", leaked.record.id)),
            call(Method::DELETE, "/tokens"),
        ];
        for request in requests {
            let request = request.same_origin().header("authorization", &bearer);
            let request = if signed_in { request.user(7) } else { request };
            let what = format!(
                "{} {} (signed in: {signed_in})",
                request.method, request.path
            );
            let reply = request.send(addr).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{what}");
            assert_eq!(reply.code(), "token_not_accepted", "{what}");
        }
    }
    // In the query string, and in any case of the scheme, too.
    for request in [
        call(Method::GET, &format!("/tokens?access_token={secret}")).page(7),
        call(Method::GET, "/tokens")
            .page(7)
            .header("authorization", &format!("bEaReR {secret}")),
    ] {
        assert_eq!(request.send(addr).await.code(), "token_not_accepted");
    }
    let records = tokens.list(&7).await.unwrap();
    assert_eq!(records.len(), 1, "nothing was minted");
    assert!(!records[0].revoked, "nothing was revoked");

    // Behind an optional PatLayer that resolved the token: refused all the same.
    let app = Router::new()
        .nest_service(BASE, TokenPage::new(tokens.clone(), BASE))
        .layer(tokens.layer().optional(true))
        .layer(map_request(sign_in));
    let addr = common::serve(app).await;
    let reply = call(Method::GET, "/tokens")
        .page(7)
        .header("authorization", &bearer)
        .send(addr)
        .await;
    assert_eq!(reply.code(), "token_not_accepted");
    // Without a token, the same stack serves the signed-in user.
    let reply = call(Method::GET, "/tokens").page(7).send(addr).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn other_sites_cannot_call_the_api() {
    let tokens = tokens();
    let kept = tokens.create(7, "kept", ["user:read"]).await.unwrap();
    let addr = serve(&tokens).await;
    let host = addr.to_string();
    let own = format!("http://{host}");
    let post = || {
        call(Method::POST, "/tokens")
            .user(7)
            .json(json!({"name": "csrf"}))
    };
    let delete = || call(Method::DELETE, &format!("/tokens/{}", kept.record.id)).user(7);

    let other_port = format!("http://127.0.0.1:{}", addr.port() ^ 1);
    let with_user = format!("http://user@{host}");
    let refused = [
        post().header("sec-fetch-site", "cross-site"),
        post().header("sec-fetch-site", "same-site"),
        post().header("sec-fetch-site", "SAME-ORIGIN"),
        post()
            .header("sec-fetch-site", "cross-site")
            .header("origin", &own),
        post().header("origin", "http://evil.example"),
        post().header("origin", &other_port),
        post().header("origin", &with_user),
        post().header("origin", "null"),
        delete().header("sec-fetch-site", "cross-site"),
        delete().header("origin", "http://evil.example"),
        call(Method::DELETE, "/tokens")
            .user(7)
            .header("origin", "http://evil.example"),
        call(Method::GET, "/tokens")
            .user(7)
            .header("sec-fetch-site", "cross-site"),
    ];
    for request in refused {
        let what = format!("{} {} {:?}", request.method, request.path, request.headers);
        let reply = request.send(addr).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{what}");
        assert_eq!(reply.code(), "cross_origin", "{what}");
    }
    let records = tokens.list(&7).await.unwrap();
    assert_eq!(records.len(), 1, "nothing was created");
    assert!(!records[0].revoked, "nothing was revoked");

    // The application's own origin passes, by either header; a GET needs neither.
    //
    // As with tower-http (and Go), `Sec-Fetch-Site: none` passes too: it marks a request
    // the person started (the address bar, a bookmark), which no other site can make a
    // browser send. And so does a request with neither header, which no browser sends
    // another site's page with a JSON body: see
    // `without_browser_headers_only_json_passes_and_no_browser_can_send_it`.
    for accepted in [
        post().header("sec-fetch-site", "same-origin"),
        post().header("origin", &own),
        post().header("sec-fetch-site", "none"),
        post(),
    ] {
        let what = format!("{:?}", accepted.headers);
        let reply = accepted.send(addr).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{what}: {}", reply.body);
    }
    let reply = call(Method::GET, "/tokens").user(7).send(addr).await;
    assert_eq!(reply.status, StatusCode::OK);
    // A cross-site link to the page itself still opens it.
    let reply = call(Method::GET, "/")
        .user(7)
        .header("sec-fetch-site", "cross-site")
        .send(addr)
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    // An origin the application allows passes even as another site, written however the
    // application wrote it, for writes and reads; another origin does not.
    let allowed =
        TokenPage::new(tokens.clone(), BASE).allowed_origins(["HTTPS://Front.Example:443"]);
    let addr = common::serve(app(allowed)).await;
    let from = |origin: &str, request: Call| {
        request
            .header("sec-fetch-site", "same-site")
            .header("origin", origin)
            .send(addr)
    };
    let reply = from("https://front.example", post()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let reply = from(
        "https://front.example",
        call(Method::GET, "/tokens").user(7),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = from("https://back.example", post()).await;
    assert_eq!(reply.code(), "cross_origin");
    let reply = from("https://back.example", call(Method::GET, "/tokens").user(7)).await;
    assert_eq!(reply.code(), "cross_origin");
}

/// Why the API refuses another site's reads, which tower-http's CSRF check (for
/// requests that change something) lets through: the answer is the user's data. A page
/// of another site that includes the API (`<script src>`, `<img src>`) sends the
/// session cookie where it is not `SameSite`, and gets the bytes into its own process in
/// browsers without cross-origin read blocking (Spectre), or times and sizes them.
#[tokio::test]
async fn another_sites_page_cannot_read_the_api() {
    let tokens = tokens();
    tokens
        .create(7, "deploy key for prod", ["user:read"])
        .await
        .unwrap();
    let addr = serve(&tokens).await;

    // What the user's data looks like to the page's own script.
    let own = call(Method::GET, "/tokens").page(7).send(addr).await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.body.contains("deploy key for prod"));

    // The same read as a browser sends it for another site's `<script src>`.
    for path in ["/tokens", "/scopes"] {
        for site in ["cross-site", "same-site"] {
            let reply = call(Method::GET, path)
                .user(7)
                .header("sec-fetch-site", site)
                .header("sec-fetch-mode", "no-cors")
                .header("sec-fetch-dest", "script")
                .send(addr)
                .await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path} {site}");
            assert_eq!(reply.code(), "cross_origin", "{path} {site}");
            assert!(!reply.body.contains("deploy key"), "{}", reply.body);
            assert!(!reply.body.contains("user:read"), "{}", reply.body);
        }
    }
    // The person opening the API's address themselves reads it.
    let reply = call(Method::GET, "/tokens")
        .user(7)
        .header("sec-fetch-site", "none")
        .send(addr)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// Why a state-changing request with neither `Sec-Fetch-Site` nor `Origin` passes, as
/// with tower-http: such a request is no browser's on another site's behalf, because
/// what a browser sends across sites without asking first is a form (or a "simple"
/// request: a form's content types), which the JSON-only rule refuses, and anything else
/// (a JSON body, `DELETE`) waits for a CORS preflight the page never grants. What passes
/// is a program holding the session, which needs no forgery.
#[tokio::test]
async fn without_browser_headers_only_json_passes_and_no_browser_can_send_it() {
    let tokens = tokens();
    let addr = serve(&tokens).await;

    // What an old browser's cross-site form, or a "simple" cross-site fetch, can carry.
    for (content_type, body) in [
        ("application/x-www-form-urlencoded", "name=forged"),
        (
            "multipart/form-data; boundary=x",
            "--x\r\ncontent-disposition: form-data; name=\"name\"\r\n\r\nforged\r\n--x--",
        ),
        ("text/plain", r#"{"name":"forged"}"#),
    ] {
        let reply = call(Method::POST, "/tokens")
            .user(7)
            .raw(content_type, body)
            .send(addr)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
        assert_eq!(reply.code(), "unsupported_media_type");
    }
    assert!(tokens.list(&7).await.unwrap().is_empty());

    // The preflight a browser sends before another site's JSON POST or DELETE: no CORS
    // permission, so the browser never sends the request itself.
    for method in ["POST", "DELETE"] {
        let reply = call(Method::OPTIONS, "/tokens")
            .header("origin", "http://evil.example")
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "content-type")
            .header("sec-fetch-site", "cross-site")
            .header("sec-fetch-mode", "cors")
            .send(addr)
            .await;
        assert!(!reply.status.is_success(), "{method}: {}", reply.status);
        for header in reply.headers.keys() {
            assert!(
                !header.as_str().starts_with("access-control-"),
                "{method}: {header}"
            );
        }
    }

    // A program with the session (curl with the cookie) sends JSON and no browser
    // headers: it passes, as it could send any header it liked anyway.
    let reply = call(Method::POST, "/tokens")
        .user(7)
        .json(json!({"name": "from a script"}))
        .send(addr)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let id = reply.json()["token"]["id"].as_str().unwrap().to_owned();
    let reply = call(Method::DELETE, &format!("/tokens/{id}"))
        .user(7)
        .send(addr)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_form_cannot_create_a_token() {
    let tokens = tokens();
    let addr = serve(&tokens).await;
    for (content_type, body) in [
        ("application/x-www-form-urlencoded", "name=form"),
        (
            "multipart/form-data; boundary=x",
            "--x\r\n\r\nname=form\r\n--x--",
        ),
        ("text/plain", r#"{"name":"form"}"#),
    ] {
        let reply = call(Method::POST, "/tokens")
            .page(7)
            .raw(content_type, body)
            .send(addr)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
        assert_eq!(reply.code(), "unsupported_media_type");
    }
    // No content type at all.
    let mut request = call(Method::POST, "/tokens").page(7);
    request.body = Some(r#"{"name":"form"}"#.to_owned());
    assert_eq!(
        request.send(addr).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert!(tokens.list(&7).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_same_name_twice_is_two_tokens() {
    let tokens = tokens();
    let addr = serve(&tokens).await;
    let a = create(addr, 7, "My Personal Token", &["user:read"]).await;
    let b = create(addr, 7, "My Personal Token", &["user:read"]).await;
    assert_ne!(a["token"]["id"], b["token"]["id"]);
    assert_ne!(a["plaintext"], b["plaintext"]);
    let listed = list(addr, 7).await;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|t| t["name"] == "My Personal Token"));
}

#[tokio::test]
async fn the_plaintext_is_sent_once_in_the_201() {
    let tokens = tokens();
    let addr = serve(&tokens).await;
    let reply = call(Method::POST, "/tokens")
        .page(7)
        .json(json!({"name": "once", "scopes": ["orders:read"], "expires_in_days": 90}))
        .send(addr)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let created = reply.json();
    let plaintext = created["plaintext"].as_str().unwrap().to_owned();
    assert!(plaintext.starts_with("pat_"));
    assert_eq!(created["token"]["name"], "once");
    assert_eq!(created["token"]["status"], "active");
    // The token works.
    let stored = tokens.list(&7).await.unwrap();
    assert_eq!(stored[0].token_hash, TokenHash::of(&plaintext));
    let hash = TokenHash::of(&plaintext).to_hex();
    assert!(!reply.body.contains(&hash), "not even the hash");

    let id = created["token"]["id"].as_str().unwrap();
    for request in [
        call(Method::GET, "/tokens").page(7),
        call(Method::GET, "/scopes").page(7),
        call(Method::GET, "/").page(7),
        call(Method::GET, "/page.js"),
        call(Method::DELETE, &format!("/tokens/{id}")).page(7),
        call(Method::DELETE, "/tokens").page(7),
        call(Method::GET, "/tokens").page(7),
    ] {
        let what = format!("{} {}", request.method, request.path);
        let reply = request.send(addr).await;
        assert!(reply.status.is_success(), "{what}: {}", reply.status);
        assert!(
            !reply.body.contains(&plaintext),
            "{what} holds the plaintext"
        );
        assert!(!reply.body.contains(&hash), "{what} holds the hash");
    }
}

#[tokio::test]
async fn another_users_token_is_not_found_and_stays_untouched() {
    let tokens = tokens();
    let addr = serve(&tokens).await;
    let alice = create(addr, 7, "alice's", &["user:read"]).await;
    let id = alice["token"]["id"].as_str().unwrap();

    let theirs = call(Method::DELETE, &format!("/tokens/{id}"))
        .page(8)
        .send(addr)
        .await;
    let unknown = call(Method::DELETE, "/tokens/0123456789abcdef0123456789abcdef")
        .page(8)
        .send(addr)
        .await;
    let malformed = call(Method::DELETE, "/tokens/not-an-id")
        .page(8)
        .send(addr)
        .await;
    for reply in [&theirs, &unknown, &malformed] {
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        theirs.body, unknown.body,
        "the same answer: ids cannot be probed"
    );
    assert_eq!(theirs.body, malformed.body);

    // Revoking all of user 8's tokens leaves user 7's alone.
    let all = call(Method::DELETE, "/tokens").page(8).send(addr).await;
    assert_eq!(all.json(), json!({"revoked": 0}));
    let listed = list(addr, 7).await;
    assert_eq!(listed[0]["status"], "active");
    assert!(!tokens.list(&7).await.unwrap()[0].revoked);

    // Revoking one's own twice is not an error.
    for _ in 0..2 {
        let reply = call(Method::DELETE, &format!("/tokens/{id}"))
            .page(7)
            .send(addr)
            .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
    }
    assert_eq!(list(addr, 7).await[0]["status"], "revoked");
}

#[tokio::test]
async fn revoke_all_revokes_every_token_of_the_user_and_counts_them() {
    let tokens = tokens();
    let addr = serve(&tokens).await;
    for name in ["a", "b", "c"] {
        create(addr, 7, name, &["user:read"]).await;
    }
    create(addr, 8, "someone else's", &["user:read"]).await;
    let reply = call(Method::DELETE, "/tokens").page(7).send(addr).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!({"revoked": 3}));
    let again = call(Method::DELETE, "/tokens").page(7).send(addr).await;
    assert_eq!(again.json(), json!({"revoked": 0}));
    assert!(list(addr, 7).await.iter().all(|t| t["status"] == "revoked"));
    assert_eq!(list(addr, 8).await[0]["status"], "active");
}

#[tokio::test]
async fn each_invalid_input_is_a_422_naming_it_and_stores_nothing() {
    let tokens = tokens().max_lifetime(Duration::days(90));
    let addr = serve(&tokens).await;
    let long = "n".repeat(256);
    let cases = [
        (json!({"name": ""}), "name", "empty"),
        (json!({"name": "   "}), "name", "empty"),
        (json!({"name": long}), "name", "256 bytes"),
        (json!({"name": "a\u{0}b"}), "name", "control"),
        (json!({"scopes": ["user:read"]}), "name", "required"),
        (
            json!({"name": "x", "scopes": ["orders:delete"]}),
            "scopes",
            "orders:delete",
        ),
        (
            json!({"name": "x", "scopes": ["no spaces"]}),
            "scopes",
            "no spaces",
        ),
        (
            json!({"name": "x", "scopes": "user:read"}),
            "scopes",
            "array",
        ),
        (
            json!({"name": "x", "expires_in_days": 91}),
            "expires_in_days",
            "at most 90",
        ),
        (
            json!({"name": "x", "expires_in_days": 0}),
            "expires_in_days",
            "at least 1",
        ),
        (
            json!({"name": "x", "expires_in_days": "30"}),
            "expires_in_days",
            "whole number",
        ),
        (json!({"name": "x", "admin": true}), "body", "admin"),
        (json!(["x"]), "body", "object"),
    ];
    for (body, field, needle) in cases {
        let reply = call(Method::POST, "/tokens")
            .page(7)
            .json(body.clone())
            .send(addr)
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let answer = reply.json();
        assert_eq!(reply.code(), "invalid_input");
        assert_eq!(answer["error"], "invalid_request");
        let problems = answer["problems"].as_array().expect("problems");
        assert_eq!(problems.len(), 1, "{body}: {problems:?}");
        assert_eq!(problems[0]["field"], field, "{body}");
        let message = problems[0]["message"].as_str().unwrap();
        assert!(
            message.contains(needle),
            "{body}: {message:?} names {needle:?}"
        );
    }

    // Several problems at once: each named.
    let reply = call(Method::POST, "/tokens")
        .page(7)
        .json(json!({"name": "", "scopes": ["user:read", "nope"], "expires_in_days": 365}))
        .send(addr)
        .await;
    let fields: Vec<_> = reply.json()["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["name", "scopes", "expires_in_days"]);

    assert!(
        tokens.list(&7).await.unwrap().is_empty(),
        "nothing was stored"
    );
    // The longest allowed lifetime is accepted.
    let reply = call(Method::POST, "/tokens")
        .page(7)
        .json(json!({"name": "x", "expires_in_days": 90}))
        .send(addr)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused() {
    let tokens = tokens();
    let manage = TokenPage::new(tokens.clone(), BASE).body_limit(64);
    let addr = common::serve(app(manage)).await;
    for body in ["{", "not json", "", "{\"name\": \"x\",}"] {
        let reply = call(Method::POST, "/tokens")
            .page(7)
            .raw("application/json", body)
            .send(addr)
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body:?}");
        assert_eq!(reply.code(), "malformed_json");
    }
    let big = json!({"name": "n".repeat(100)});
    let reply = call(Method::POST, "/tokens")
        .page(7)
        .json(big.clone())
        .send(addr)
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.code(), "payload_too_large");

    // Without a Content-Length (chunked), the limit holds as the body is read.
    let chunks = big
        .to_string()
        .into_bytes()
        .chunks(16)
        .map(|c| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::copy_from_slice(c))))
        .collect::<Vec<_>>();
    let req = Request::post(format!("http://{addr}{BASE}/tokens"))
        .header("x-test-user", "7")
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/json")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let res = Client::builder(TokioExecutor::new())
        .build_http()
        .request(req)
        .await
        .expect("an answer");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(tokens.list(&7).await.unwrap().is_empty());
}

#[tokio::test]
async fn wrong_methods_and_unknown_paths() {
    let tokens = tokens();
    let addr = serve(&tokens).await;
    for (method, path, allow) in [
        (Method::POST, "/", "GET, HEAD"),
        (Method::DELETE, "/scopes", "GET, HEAD"),
        (Method::PUT, "/tokens", "GET, HEAD, POST, DELETE"),
        (Method::PATCH, "/tokens", "GET, HEAD, POST, DELETE"),
        (
            Method::GET,
            "/tokens/0123456789abcdef0123456789abcdef",
            "DELETE",
        ),
        (Method::OPTIONS, "/tokens", "GET, HEAD, POST, DELETE"),
    ] {
        let reply = call(method.clone(), path).page(7).send(addr).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(reply.header("allow"), allow, "{method} {path}");
        assert_eq!(reply.code(), "method_not_allowed");
    }
    for path in ["/token", "/tokens/", "/tokens/a/b", "/admin", "/page.css/x"] {
        let reply = call(Method::GET, path).page(7).send(addr).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.code(), "not_found", "{path}");
    }
    // HEAD answers like GET, without a body.
    let reply = call(Method::HEAD, "/tokens").page(7).send(addr).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "");
}

#[tokio::test]
async fn the_page_is_safe_to_render() {
    let tokens = tokens().max_lifetime(Duration::days(60));
    let manage = TokenPage::new(tokens.clone(), BASE)
        .title("<b>Tokens</b> & \"keys\"")
        .example_url("/api/user?a=1&b=2")
        .link("Back", "/");
    let addr = common::serve(app(manage)).await;
    let page = call(Method::GET, "/").user(7).send(addr).await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.header("content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(page.header("x-frame-options"), "DENY");
    let html = &page.body;
    assert!(html.contains("<title>&lt;b&gt;Tokens&lt;/b&gt; &amp; &quot;keys&quot;</title>"));
    assert!(!html.contains("<b>Tokens</b>"));
    assert!(html.contains("data-example-url=\"/api/user?a=1&amp;b=2\""));
    // One script, from a file; no inline script, no inline style.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains(&format!("<script src=\"{BASE}/page.js")));
    assert!(!html.contains("style=") && !html.contains("<style"));
    let handlers: Vec<_> = html
        .split_whitespace()
        .filter(|w| w.starts_with("on") && w.contains('='))
        .collect();
    assert!(handlers.is_empty(), "inline event handlers: {handlers:?}");
    // The defaults pre-checked; expiry choices within the maximum.
    assert!(html.contains("value=\"user:read\" checked"));
    assert!(html.contains("value=\"orders:read\">"));
    assert!(html.contains("<option value=\"30\">30 days</option><option value=\"60\" selected>60 days</option></select>"));
    assert!(!html.contains("value=\"90\""));
}

#[tokio::test]
async fn the_user_can_come_from_a_function() {
    let tokens = tokens();
    // The application's own sign-in, read by a function: here, a cookie in clear (a real
    // application reads its session store).
    let manage = TokenPage::new(tokens.clone(), BASE).current_user(|parts| {
        let user = parts
            .headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("user="))
            .and_then(|v| v.parse::<i64>().ok());
        async move { user }
    });
    let addr = common::serve(Router::new().nest_service(BASE, manage)).await;
    let reply = call(Method::POST, "/tokens")
        .same_origin()
        .header("cookie", "user=42")
        .json(json!({"name": "from a cookie"}))
        .send(addr)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(tokens.list(&42).await.unwrap().len(), 1);
    // The extension is not read any more.
    let reply = call(Method::GET, "/tokens").page(42).send(addr).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_failing_store_is_503_and_says_nothing_more() {
    // A real store whose table was never created: every query fails.
    let store = SqliteStore::<i64>::open(":memory:").await.unwrap();
    let tokens = Tokens::new(store, common::registry());
    let addr = serve(&tokens).await;
    for request in [
        call(Method::GET, "/tokens").page(7),
        call(Method::POST, "/tokens")
            .page(7)
            .json(json!({"name": "x"})),
        call(Method::DELETE, "/tokens/0123456789abcdef0123456789abcdef").page(7),
        call(Method::DELETE, "/tokens").page(7),
    ] {
        let what = format!("{} {}", request.method, request.path);
        let reply = request.send(addr).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{what}");
        assert_eq!(reply.code(), "store_unavailable", "{what}");
        assert!(
            !reply.body.to_lowercase().contains("table"),
            "{what}: {}",
            reply.body
        );
    }
}

#[tokio::test]
async fn it_is_a_plain_service_for_hyper_too() {
    use hyper::{server::conn::http1, service::service_fn};
    use hyper_util::rt::TokioIo;
    use tower::ServiceExt;

    let tokens = tokens();
    let manage = TokenPage::new(tokens.clone(), "/");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.expect("a connection");
            let manage = manage.clone();
            tokio::spawn(async move {
                let service = service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    // The application's sign-in, in front of the service.
                    req.extensions_mut().insert(SignedIn(5_i64));
                    manage.clone().oneshot(req)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let mut request = call(Method::POST, "/tokens")
        .same_origin()
        .json(json!({"name": "hyper"}));
    request.path = "/tokens".to_owned();
    assert_eq!(request.send(addr).await.status, StatusCode::CREATED);
    let mut request = call(Method::GET, "/").same_origin();
    request.path = "/".to_owned();
    let page = request.send(addr).await;
    assert!(
        page.body
            .contains("<link rel=\"stylesheet\" href=\"/page.css")
    );
    assert_eq!(tokens.list(&5).await.unwrap().len(), 1);
}
