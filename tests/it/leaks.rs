//! GitHub secret scanning's partner endpoint (`tower_pat::leaks`) over a real loopback
//! socket, with reports signed the way GitHub signs them (ECDSA P-256 over SHA-256 of the
//! raw body, DER in base64) by keys the tests make: a real token is revoked and the layer
//! then refuses it; every refusal revokes nothing and asks the store nothing.

use crate::common;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
};

use axum::{Router, routing::get};
use base64ct::{Base64, Encoding};
use common::{Fault, Faulty, Reply, registry};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use p256::{
    ecdsa::{Signature, SigningKey, signature::Signer},
    elliptic_curve::rand_core::OsRng,
    pkcs8::{EncodePublicKey, LineEnding},
};
use regex::Regex;
use serde_json::{Value, json};
use tower_pat::{
    AccessToken, MemoryStore, Tokens,
    clock::ManualClock,
    leaks::{
        DEFAULT_TOKEN_PATTERN, FeedbackToken, KEY_IDENTIFIER_HEADER, KeySet, LeakReports,
        SIGNATURE_HEADER, token_pattern,
    },
    record::TokenId,
    token::{TokenFormat, TokenHash},
};

const PATH: &str = "/github/secret-scanning";
const TYPE: &str = "acme_personal_access_token";
const LEAK_URL: &str = "https://github.com/octo/app/blob/0123456789abcdef/config.yml";

/// Plays GitHub: a signing key and the identifier it publishes it under.
struct Github {
    key: SigningKey,
    id: String,
}

impl Github {
    fn new(id: &str) -> Self {
        Self {
            key: SigningKey::random(&mut OsRng),
            id: id.to_owned(),
        }
    }

    fn pem(&self) -> String {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    }

    fn keys(&self) -> KeySet {
        KeySet::from_pem(self.id.clone(), &self.pem()).unwrap()
    }

    /// `Github-Public-Key-Signature` for `body`.
    fn sign(&self, body: &[u8]) -> String {
        let signature: Signature = self.key.sign(body);
        Base64::encode_string(signature.to_der().as_bytes())
    }

    /// The two headers of a report of `body`, signed by this key.
    fn headers(&self, body: &[u8]) -> Vec<(&'static str, String)> {
        vec![
            (KEY_IDENTIFIER_HEADER, self.id.clone()),
            (SIGNATURE_HEADER, self.sign(body)),
        ]
    }
}

/// A report's body, as GitHub writes it.
fn report(matches: &[(&str, &str)]) -> String {
    report_from(LEAK_URL, matches)
}

/// A report's body, every match found at `url`.
fn report_from(url: &str, matches: &[(&str, &str)]) -> String {
    let items: Vec<Value> = matches
        .iter()
        .map(|(token, ty)| json!({"token": token, "type": ty, "url": url, "source": "content"}))
        .collect();
    Value::Array(items).to_string()
}

/// Everything this test binary logs, at every level, from every test.
///
/// One global subscriber, installed before a test does anything that logs: a
/// thread-local one (`common::LogCapture`) races with the other tests' threads, which may
/// register a callsite as uninteresting while the capture is being set up, and then the
/// capture misses its events.
fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        logs
    })
}

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Fails the test if any line logged so far holds the secret part of `token`.
    fn assert_never_shown(&self, token: &str) {
        let text = self.text();
        let shown: Vec<&str> = text.lines().filter(|l| l.contains(&token[4..])).collect();
        assert!(shown.is_empty(), "{shown:#?}");
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type Store = Faulty<MemoryStore<i64>>;

/// The application: the API behind a `PatLayer` and the leak endpoint beside it, over one
/// store; what `on_revoke` saw.
struct App {
    tokens: Tokens<Store>,
    addr: SocketAddr,
    revoked: Arc<Mutex<Vec<(TokenId, i64, String)>>>,
}

impl App {
    async fn start(keys: KeySet) -> Self {
        Self::with(
            Tokens::new(Faulty::new(MemoryStore::new()), registry()),
            keys,
            |r| r,
        )
        .await
    }

    async fn with(
        tokens: Tokens<Store>,
        keys: KeySet,
        configure: impl FnOnce(LeakReports<Store>) -> LeakReports<Store>,
    ) -> Self {
        logs();
        let revoked = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&revoked);
        let reports = configure(LeakReports::new(tokens.clone(), keys)).on_revoke(move |leak| {
            seen.lock()
                .unwrap()
                .push((leak.record.id, leak.record.user_id, leak.url.to_owned()));
        });
        let app = Router::new()
            .route(
                "/api/user",
                get(|token: AccessToken| async move { token.user_id().to_string() }),
            )
            .route_layer(tokens.layer())
            .route_service(PATH, reports);
        let addr = common::serve(app).await;
        Self {
            tokens,
            addr,
            revoked,
        }
    }

    fn store_lookups(&self) -> usize {
        self.tokens.store().find_calls()
    }

    async fn create(&self, user: i64) -> String {
        self.tokens
            .create(user, "laptop", ["user:read"])
            .await
            .unwrap()
            .token
            .into_secret()
    }

    /// `GET /api/user` with the token: what the layer says of it.
    async fn api(&self, token: &str) -> StatusCode {
        common::bearer(self.addr, "/api/user", token).await.status
    }

    async fn post(&self, headers: &[(&str, String)], body: impl Into<Bytes>) -> Reply {
        self.send(Method::POST, headers, body).await
    }

    async fn send(
        &self,
        method: Method,
        headers: &[(&str, String)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{PATH}", self.addr))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.into()))
            .unwrap();
        for (name, value) in headers {
            req.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
                value.parse().expect("a header value"),
            );
        }
        common::request(req).await
    }

    fn revocations(&self) -> Vec<(TokenId, i64, String)> {
        self.revoked.lock().unwrap().clone()
    }
}

fn feedback(reply: &Reply) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    serde_json::from_str(&reply.body).unwrap()
}

/// A refusal's `code`, after checking the status and the documented shape.
fn refusal(reply: &Reply, status: StatusCode) -> String {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    let object = body.as_object().expect("an object");
    assert_eq!(object.len(), 3, "{body}");
    for key in ["error", "code", "message"] {
        assert!(object[key].is_string(), "{key} in {body}");
    }
    body["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_signed_report_revokes_a_real_token_and_the_layer_then_refuses_it() {
    let github = Github::new("key-1");
    let app = App::start(github.keys()).await;
    let token = app.create(7).await;
    let other = app.create(8).await;
    assert_eq!(app.api(&token).await, StatusCode::OK);

    let url = "https://github.com/octo/app/blob/feedface/first-test.env";
    let body = report_from(url, &[(&token, TYPE), ("pat_short", TYPE)]);
    let reply = app.post(&github.headers(body.as_bytes()), body).await;
    assert_eq!(
        feedback(&reply),
        json!([
            {"token_raw": token, "token_type": TYPE, "label": "true_positive"},
            {"token_raw": "pat_short", "token_type": TYPE, "label": "false_positive"},
        ])
    );

    // The same store, through the layer: refused now; the other token is untouched.
    assert_eq!(app.api(&token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.api(&other).await, StatusCode::OK);
    let records = app.tokens.list(&7).await.unwrap();
    assert!(records[0].revoked);
    assert_eq!(app.revocations(), [(records[0].id, 7, url.to_owned())]);

    // Logged: the counts, and the URL with the token's id; never the token.
    let text = logs().text();
    let revoked_line = text
        .lines()
        .find(|l| l.contains(url))
        .unwrap_or_else(|| panic!("no line names {url}"));
    assert!(revoked_line.contains("WARN"), "{revoked_line}");
    assert!(
        revoked_line.contains(&records[0].id.to_string()),
        "{revoked_line}"
    );
    assert!(
        text.lines().any(|l| l.contains("a report was judged")
            && l.contains("candidates=2 revoked=1 already_revoked=0 unknown=0 malformed=1")),
        "{text}"
    );
    logs().assert_never_shown(&token);
}

#[tokio::test]
async fn a_mixed_batch_is_judged_one_by_one_and_garbage_never_reaches_the_store() {
    let github = Github::new("key-1");
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let tokens = Tokens::new(Faulty::new(MemoryStore::new()), registry()).clock(clock.clone());
    let app = App::with(tokens, github.keys(), |r| r).await;
    let format = TokenFormat::default();

    // Created first, then left to expire (not revoked): real all the same.
    let expired = app.create(1).await;
    clock.advance(time::Duration::days(400));
    let real = app.create(2).await;
    let revoked_before = app.create(3).await;
    let reported_as_other_type = app.create(4).await;
    let id = app.tokens.list(&3).await.unwrap()[0].id;
    app.tokens.revoke(&3, id).await.unwrap();
    let unknown = format.generate().unwrap().into_secret();
    let mut typo = real.clone().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let foreign = format!("ghp_{}", "A".repeat(36));

    let candidates = [
        (real.as_str(), TYPE),
        (revoked_before.as_str(), TYPE),
        (unknown.as_str(), TYPE),
        (typo.as_str(), TYPE),
        ("pat_short", TYPE),
        (foreign.as_str(), "github_personal_access_token"),
        (reported_as_other_type.as_str(), "some_other_type"),
        (expired.as_str(), TYPE),
    ];
    let body = report(&candidates);
    let before = app.store_lookups();
    let reply = app.post(&github.headers(body.as_bytes()), body).await;
    let answer = feedback(&reply);
    let labels: Vec<&str> = answer
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "true_positive",  // real: revoked now
            "true_positive",  // revoked before
            "false_positive", // well formed, unknown
            "false_positive", // checksum typo
            "false_positive", // too short
            "false_positive", // another provider's token
            "true_positive",  // ours, whatever the type says
            "true_positive",  // expired, and revoked now
        ]
    );
    // The feedback echoes each match, in order.
    for (item, (token, ty)) in answer.as_array().unwrap().iter().zip(candidates) {
        assert_eq!(item["token_raw"], token);
        assert_eq!(item["token_type"], ty);
    }
    // Only the five well-formed ones were looked up.
    assert_eq!(app.store_lookups() - before, 5);

    for (user, token) in [
        (1, &expired),
        (2, &real),
        (3, &revoked_before),
        (4, &reported_as_other_type),
    ] {
        assert!(
            app.tokens.list(&user).await.unwrap()[0].revoked,
            "user {user}"
        );
        assert_eq!(
            app.api(token).await,
            StatusCode::UNAUTHORIZED,
            "user {user}"
        );
    }
    // Revoked by this report: three, each announced once; the one revoked before is not.
    let announced: Vec<i64> = app.revocations().iter().map(|r| r.1).collect();
    assert_eq!(announced, [2, 4, 1]);
    for token in [&real, &unknown, &typo, &expired] {
        logs().assert_never_shown(token);
    }
}

/// Every way a request can fail to be a genuine report: refused before anything is
/// judged, with nothing revoked and no store lookup.
#[tokio::test]
async fn refusals_revoke_nothing_and_ask_the_store_nothing() {
    let github = Github::new("key-1");
    let impostor = Github::new("key-1");
    let unknown_key = Github::new("key-2");
    let app = App::with(
        Tokens::new(Faulty::new(MemoryStore::new()), registry()),
        github.keys(),
        |r| r.body_limit(4096),
    )
    .await;
    let token = app.create(7).await;
    let body = report(&[(&token, TYPE)]);
    let good = github.headers(body.as_bytes());

    let other_body = report(&[(&token, "other")]);
    let big = report(&vec![(token.as_str(), TYPE); 40]);
    assert!(big.len() > 4096);
    let not_json = format!("[{{\"token\": \"{token}\"");
    let bare_string = format!("[\"{token}\"]");
    let respaced = body.replace(',', ", ");
    let long_id = "k".repeat(300);
    let signature_only = vec![good[1].clone()];
    let key_id_only = vec![good[0].clone()];
    let two_signatures = vec![good[0].clone(), good[1].clone(), good[1].clone()];
    let not_base64 = vec![good[0].clone(), (SIGNATURE_HEADER, "not base64!".into())];
    let not_der = vec![
        good[0].clone(),
        (SIGNATURE_HEADER, Base64::encode_string(&[0u8; 64])),
    ];
    use StatusCode as S;
    let cases = [
        (
            "no headers",
            vec![],
            &body,
            S::BAD_REQUEST,
            "missing_signature",
        ),
        (
            "no key id",
            signature_only,
            &body,
            S::BAD_REQUEST,
            "missing_signature",
        ),
        (
            "no signature",
            key_id_only,
            &body,
            S::BAD_REQUEST,
            "missing_signature",
        ),
        (
            "two signatures",
            two_signatures,
            &body,
            S::BAD_REQUEST,
            "missing_signature",
        ),
        (
            "signature not base64",
            not_base64,
            &body,
            S::BAD_REQUEST,
            "malformed_signature",
        ),
        (
            "signature not DER",
            not_der,
            &body,
            S::BAD_REQUEST,
            "malformed_signature",
        ),
        (
            "unknown key id",
            unknown_key.headers(body.as_bytes()),
            &body,
            S::FORBIDDEN,
            "unknown_key",
        ),
        (
            "a key id no key could have",
            vec![(KEY_IDENTIFIER_HEADER, long_id.clone()), good[1].clone()],
            &body,
            S::FORBIDDEN,
            "unknown_key",
        ),
        (
            "signature of another body",
            github.headers(other_body.as_bytes()),
            &body,
            S::FORBIDDEN,
            "invalid_signature",
        ),
        (
            "signature by another key under the right id",
            impostor.headers(body.as_bytes()),
            &body,
            S::FORBIDDEN,
            "invalid_signature",
        ),
        (
            "the body re-spaced after signing",
            good.clone(),
            &respaced,
            S::FORBIDDEN,
            "invalid_signature",
        ),
        (
            "oversized",
            github.headers(big.as_bytes()),
            &big,
            S::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "not JSON",
            github.headers(not_json.as_bytes()),
            &not_json,
            S::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "not an array of matches",
            github.headers(bare_string.as_bytes()),
            &bare_string,
            S::UNPROCESSABLE_ENTITY,
            "invalid_report",
        ),
    ];
    for (case, headers, body, status, code) in cases {
        let reply = app.post(&headers, body.clone()).await;
        assert_eq!(refusal(&reply, status), code, "{case}");
        assert!(!reply.body.contains(&token[4..]), "{case}: {}", reply.body);
    }

    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let reply = app.send(method.clone(), &good, body.clone()).await;
        assert_eq!(
            refusal(&reply, StatusCode::METHOD_NOT_ALLOWED),
            "method_not_allowed",
            "{method}"
        );
        assert_eq!(reply.headers[header::ALLOW], "POST");
    }

    assert_eq!(app.store_lookups(), 0);
    assert!(app.revocations().is_empty());
    assert!(!app.tokens.list(&7).await.unwrap()[0].revoked);
    assert_eq!(app.api(&token).await, StatusCode::OK);
    assert!(logs().text().contains("refresh the KeySet"));
    assert!(!logs().text().contains(&long_id));
    logs().assert_never_shown(&token);
}

#[tokio::test]
async fn an_oversized_body_without_a_length_is_cut_off_as_it_streams() {
    let github = Github::new("key-1");
    let app = App::with(
        Tokens::new(Faulty::new(MemoryStore::new()), registry()),
        github.keys(),
        |r| r.body_limit(1024),
    )
    .await;
    let token = app.create(7).await;
    let body = report(&vec![(token.as_str(), TYPE); 20]);
    // Chunked: no Content-Length to judge by.
    let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> = body
        .as_bytes()
        .chunks(256)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let mut req = Request::post(format!("http://{}{PATH}", app.addr))
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    for (name, value) in github.headers(body.as_bytes()) {
        req.headers_mut().insert(name, value.parse().unwrap());
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let res = client.request(req).await.unwrap();
    let status = res.status();
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text:?}");
    assert_eq!(app.store_lookups(), 0);
    assert_eq!(app.api(&token).await, StatusCode::OK);
}

#[tokio::test]
async fn an_empty_report_is_an_empty_answer() {
    let github = Github::new("key-1");
    let app = App::start(github.keys()).await;
    let reply = app.post(&github.headers(b"[]"), "[]").await;
    assert_eq!(feedback(&reply), json!([]));
    assert_eq!(app.store_lookups(), 0);
}

#[tokio::test]
async fn a_store_failure_stops_the_report_and_a_second_sending_finishes_it() {
    let github = Github::new("key-1");
    let app = App::start(github.keys()).await;
    let first = app.create(1).await;
    let second = app.create(2).await;
    let body = report(&[(&first, TYPE), (&second, TYPE)]);
    let headers = github.headers(body.as_bytes());

    app.tokens
        .store()
        .schedule([Fault::Pass, Fault::Fail], Fault::Pass);
    let reply = app.post(&headers, body.clone()).await;
    assert_eq!(
        refusal(&reply, StatusCode::SERVICE_UNAVAILABLE),
        "store_unavailable"
    );
    assert!(!reply.body.contains("injected"), "{}", reply.body);
    assert!(app.tokens.list(&1).await.unwrap()[0].revoked);
    assert!(!app.tokens.list(&2).await.unwrap()[0].revoked);

    // GitHub's report again: the first is revoked already, the second now.
    let answer = feedback(&app.post(&headers, body).await);
    assert_eq!(answer[0]["label"], "true_positive");
    assert_eq!(answer[1]["label"], "true_positive");
    assert!(app.tokens.list(&2).await.unwrap()[0].revoked);
    let announced: Vec<i64> = app.revocations().iter().map(|r| r.1).collect();
    assert_eq!(announced, [1, 2]);

    // A store answering with a record for another hash is broken: nothing is revoked.
    let third = app.create(3).await;
    let body = report(&[(&third, TYPE)]);
    app.tokens.store().set(Fault::WrongHash);
    let reply = app.post(&github.headers(body.as_bytes()), body).await;
    assert_eq!(
        refusal(&reply, StatusCode::SERVICE_UNAVAILABLE),
        "store_unavailable"
    );
    app.tokens.store().set(Fault::Pass);
    assert!(!app.tokens.list(&3).await.unwrap()[0].revoked);
    for token in [&first, &second, &third] {
        logs().assert_never_shown(token);
    }
}

#[tokio::test]
async fn hashed_feedback_never_carries_the_token() {
    let github = Github::new("key-1");
    let app = App::with(
        Tokens::new(Faulty::new(MemoryStore::new()), registry()),
        github.keys(),
        |r| r.feedback_token(FeedbackToken::Sha256),
    )
    .await;
    let token = app.create(7).await;
    let body = report(&[(&token, TYPE), ("pat_short", TYPE)]);
    let reply = app.post(&github.headers(body.as_bytes()), body).await;
    assert!(!reply.body.contains(&token[4..]), "{}", reply.body);
    assert_eq!(
        feedback(&reply),
        json!([
            {"token_hash": TokenHash::of(&token).to_hex(), "token_type": TYPE, "label": "true_positive"},
            {"token_hash": TokenHash::of("pat_short").to_hex(), "token_type": TYPE, "label": "false_positive"},
        ])
    );
}

/// GitHub's key document: every key it lists verifies (current or not), and a refresh
/// reaches the running service.
#[tokio::test]
async fn the_key_document_is_read_and_replaced_at_runtime() {
    let old = Github::new("8f3c0a41d4b5c6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f");
    let current = Github::new("1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff001");
    let document = |keys: &[(&Github, bool)]| {
        json!({
            "public_keys": keys
                .iter()
                .map(|(k, is_current)| json!({
                    "key_identifier": k.id,
                    "key": k.pem(),
                    "is_current": is_current,
                }))
                .collect::<Vec<_>>()
        })
        .to_string()
    };
    let keys = KeySet::from_github_json(&document(&[(&old, false), (&current, true)])).unwrap();
    assert_eq!(keys.len(), 2);
    let app = App::start(keys.clone()).await;
    let a = app.create(1).await;
    let b = app.create(2).await;

    let body = report(&[(&a, TYPE)]);
    let answer = feedback(&app.post(&old.headers(body.as_bytes()), body).await);
    assert_eq!(answer[0]["label"], "true_positive");

    // GitHub retires the old key; the application fetches the document again.
    keys.replace(KeySet::from_github_json(&document(&[(&current, true)])).unwrap());
    let body = report(&[(&b, TYPE)]);
    let reply = app.post(&old.headers(body.as_bytes()), body.clone()).await;
    assert_eq!(refusal(&reply, StatusCode::FORBIDDEN), "unknown_key");
    assert!(!app.tokens.list(&2).await.unwrap()[0].revoked);
    let answer = feedback(&app.post(&current.headers(body.as_bytes()), body).await);
    assert_eq!(answer[0]["label"], "true_positive");
    assert!(app.tokens.list(&2).await.unwrap()[0].revoked);
}

/// The pattern registered with GitHub finds every token and nothing that is not one
/// (but for the checksum, which the endpoint checks).
#[test]
fn the_registered_pattern_matches_tokens_and_rejects_near_misses() {
    assert_eq!(DEFAULT_TOKEN_PATTERN, r"\bpat_[0-9A-Za-z]{39}\b");
    // The README gives it to copy, exactly.
    assert!(
        include_str!("../../README.md")
            .lines()
            .any(|l| l == DEFAULT_TOKEN_PATTERN)
    );
    let pattern = Regex::new(DEFAULT_TOKEN_PATTERN).unwrap();
    let format = TokenFormat::default();
    for _ in 0..500 {
        let token = format.generate().unwrap().into_secret();
        assert!(pattern.is_match(&token), "{token}");
        for text in [
            format!("ACME_TOKEN={token}\n"),
            format!("\"{token}\","),
            format!("Authorization: Bearer {token}"),
            format!("https://api.example.com/?access_token={token}&x=1"),
        ] {
            let found: Vec<&str> = pattern.find_iter(&text).map(|m| m.as_str()).collect();
            assert_eq!(found, [token.as_str()], "{text}");
        }
    }
    let token = format.generate().unwrap().into_secret();
    let random = &token[4..];
    for near_miss in [
        format!("pat_{}", &random[1..]), // one character short
        format!("pat_{random}a"),        // one too long
        format!("pat_{random}_"),        // followed by a word character
        format!("PAT_{random}"),         // the prefix's case
        format!("xpat_{random}"),        // inside a longer word
        format!("pa_{random}"),          // another prefix
        format!("pat_{}-{}", &random[..20], &random[21..]), // a character outside base62
        format!("pat_{}é{}", &random[..20], &random[22..]), // a non-ASCII one
    ] {
        assert!(!pattern.is_match(&near_miss), "{near_miss}");
    }
    // The checksum is beyond a regular expression: a typo matches, and the endpoint
    // (or the layer) refuses it.
    let mut typo = token.clone().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    assert!(pattern.is_match(&typo));
    assert!(format.parse(&typo).is_err());

    let acme = TokenFormat::new("acme_").unwrap();
    let pattern = Regex::new(&token_pattern(&acme)).unwrap();
    let token = acme.generate().unwrap().into_secret();
    assert!(pattern.is_match(&token));
    assert!(!pattern.is_match(&format.generate().unwrap().into_secret()));
}

/// The point of the feature: a token GitHub reports to one instance is refused by
/// another instance of the API, behind its cache, within seconds (PostgreSQL's
/// notification evicts it there).
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_token_is_refused_by_every_instance_within_seconds() {
    use std::time::{Duration, Instant};

    use tower_pat::{PostgresStore, store::CachedStore};

    logs();
    common::db::with_postgres(|url, table| async move {
        let pg = |url: String, table: String| async move {
            let store =
                PostgresStore::<i64>::new(common::db::pg_pool(&url).await).with_table(&table);
            store.migrate().await.unwrap();
            store
        };
        let github = Github::new("key-1");

        // Instance A receives GitHub's reports.
        let a = Tokens::new(pg(url.clone(), table.clone()).await, registry());
        let endpoint =
            Router::new().route_service(PATH, LeakReports::new(a.clone(), github.keys()));
        let a_addr = common::serve(endpoint).await;

        // Instance B serves the API behind an hour-long cache, listening for revocations.
        let b_pg = pg(url.clone(), table.clone()).await;
        let cached = CachedStore::builder()
            .ttl(Duration::from_secs(3600))
            .build(b_pg.clone());
        let _listening = b_pg.listen(cached.evictor()).await.unwrap();
        let b = Tokens::new(cached, registry());
        let api = Router::new()
            .route("/api/user", get(|| async { "ok" }))
            .layer(b.layer());
        let b_http = common::KeepAlive::new(common::serve(api).await, "/api/user");

        let token = a
            .create(7, "ci", ["user:read"])
            .await
            .unwrap()
            .token
            .into_secret();
        assert_eq!(b_http.status(&token).await, StatusCode::OK); // now cached on B

        let body = report(&[(&token, TYPE)]);
        let mut req = Request::post(format!("http://{a_addr}{PATH}"))
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        for (name, value) in github.headers(body.as_bytes()) {
            req.headers_mut().insert(name, value.parse().unwrap());
        }
        let reported = Instant::now();
        let reply = common::request(req).await;
        assert_eq!(feedback(&reply)[0]["label"], "true_positive");

        // A bound against waiting forever, not a measurement: the notification usually
        // arrives within milliseconds.
        loop {
            match b_http.status(&token).await {
                StatusCode::UNAUTHORIZED => {
                    eprintln!(
                        "refused by instance B {:?} after the report",
                        reported.elapsed()
                    );
                    break;
                }
                StatusCode::OK => {}
                other => panic!("unexpected {other}"),
            }
            assert!(
                reported.elapsed() < Duration::from_secs(5),
                "instance B still accepts the token 5 s after GitHub reported it"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}
