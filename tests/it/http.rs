//! Axum end to end over loopback: every row of the RFC 6750 rejection table with the
//! exact `WWW-Authenticate` text, and the token lifecycle as a client sees it.

use crate::common;

use std::{net::SocketAddr, sync::Arc, time::Duration as StdDuration};

use axum::{Router, body::Body, routing::get};
use http::{
    HeaderMap, StatusCode,
    header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE},
};
use time::{Duration, OffsetDateTime, macros::datetime};
use tower_pat::{
    AccessToken, CreateToken, ManageTokens, MemoryStore, PatLayer, RequireScopesLayer, TokenError,
    Tokens,
    clock::ManualClock,
    reject::{Rejection, RejectionKind},
    scope::ScopeError,
    store::Revoked,
    token::TokenFormat,
};
use uuid::Uuid;

use common::{Fault, Faulty, LogCapture, Reply, bearer, registry, send, serve};

type Store = Faulty<MemoryStore<i64>>;

const NO_CREDENTIALS: &str = r#"Bearer realm="api""#;
const INVALID_REQUEST: &str = r#"Bearer realm="api", error="invalid_request""#;
const MALFORMED: &str = "the access token is malformed";
const UNKNOWN: &str = "the access token is not recognized";
const REVOKED: &str = "the access token has been revoked";
const EXPIRED: &str = "the access token has expired";
const ORDERS_SHORT: &str =
    r#"Bearer realm="api", error="insufficient_scope", scope="orders:create orders:read""#;

fn invalid_token(description: &str) -> String {
    format!(r#"Bearer realm="api", error="invalid_token", error_description="{description}""#)
}

async fn orders(token: AccessToken) -> String {
    format!("orders of user {}", token.user_id())
}

async fn orders_any(token: AccessToken) -> String {
    if token.can("orders:create") {
        format!("user {} may place orders", token.user_id())
    } else {
        format!("user {} may only look", token.user_id())
    }
}

async fn user(token: AccessToken) -> String {
    format!(
        "user {} via {} with [{}]",
        token.user_id(),
        token.name(),
        token.scopes()
    )
}

async fn open(token: Option<AccessToken>) -> String {
    match token {
        Some(token) => format!("user {}", token.user_id()),
        None => "anonymous".to_owned(),
    }
}

async fn me(token: AccessToken) -> String {
    format!("user {}", token.user_id())
}

async fn sensitive(headers: HeaderMap) -> String {
    format!("sensitive={}", headers[AUTHORIZATION].is_sensitive())
}

/// Passport's routes: `/orders` needs all of `orders:read` and `orders:create`,
/// `/orders/any` one of them, `/user` needs `user:read`; `/open`, `/me` and `/sensitive`
/// need a layer only.
fn routes() -> Router {
    Router::new()
        .route(
            "/orders",
            get(orders).layer(RequireScopesLayer::all(["orders:read", "orders:create"])),
        )
        .route(
            "/orders/any",
            get(orders_any).layer(RequireScopesLayer::any(["orders:read", "orders:create"])),
        )
        .route(
            "/user",
            get(user).layer(RequireScopesLayer::all(["user:read"])),
        )
        .route("/open", get(open))
        .route("/me", get(me))
        .route("/sensitive", get(sensitive))
}

fn tokens() -> Tokens<Store> {
    Tokens::new(Faulty::new(MemoryStore::new()), registry())
}

/// The routes behind the facade's default layer.
async fn start() -> (Tokens<Store>, SocketAddr) {
    let tokens = tokens();
    let addr = serve(routes().layer(tokens.layer())).await;
    (tokens, addr)
}

async fn token(tokens: &Tokens<Store>, user: i64, scopes: &[&str]) -> String {
    let created = tokens
        .create(user, "test", scopes.iter().copied())
        .await
        .expect("create a token");
    created.token.into_secret()
}

#[track_caller]
fn assert_refused(reply: &Reply, status: StatusCode, challenge: Option<&str>) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.challenge(), challenge, "{reply:?}");
}

/// Replaces the byte at `at` with another alphanumeric one.
fn typo(token: &str, at: usize) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn no_credentials_is_401_with_a_bare_challenge() {
    let (tokens, addr) = start().await;
    for path in ["/user", "/orders", "/open", "/me"] {
        let reply = send(addr, path, &[]).await;
        assert_refused(&reply, StatusCode::UNAUTHORIZED, Some(NO_CREDENTIALS));
        assert_eq!(reply.body, "");
    }
    // Another scheme is no bearer credentials at all.
    for other in [&b"Basic dXNlcjpwYXNz"[..], b"Digest username=\"a\"", b""] {
        let reply = send(addr, "/user", &[("authorization", other)]).await;
        assert_refused(&reply, StatusCode::UNAUTHORIZED, Some(NO_CREDENTIALS));
    }
    assert_eq!(tokens.store().find_calls(), 0);
}

#[tokio::test]
async fn malformed_tokens_are_invalid_token_and_never_reach_the_store() {
    let (tokens, addr) = start().await;
    let good = token(&tokens, 1, &["user:read"]).await;
    let last = good.len() - 1;
    let dashed = {
        let mut b = good.clone().into_bytes();
        b[10] = b'-';
        String::from_utf8(b).unwrap()
    };
    let malformed = [
        typo(&good, last),                  // checksum
        typo(&good, 10),                    // random part, checksum no longer matches
        format!("ghp_{}", &good[4..]),      // wrong prefix
        good[..last].to_owned(),            // too short
        format!("{good}A"),                 // too long
        "pat_abc".to_owned(),               // far too short
        dashed,                             // a b64token character outside base62
        format!("pat_{}", "a".repeat(200)), // long garbage
    ];
    // A store that has to wait for its answer is never asked about garbage; one that
    // answers at once may be probed for a token of the right length and prefix (a hit
    // would prove it real without its checksum), and the answer is the same.
    for waits in [true, false] {
        tokens.store().async_only(waits);
        for bad in &malformed {
            let reply = bearer(addr, "/user", bad).await;
            assert_refused(
                &reply,
                StatusCode::UNAUTHORIZED,
                Some(&invalid_token(MALFORMED)),
            );
        }
        if waits {
            assert_eq!(tokens.store().find_calls(), 0, "garbage reached the store");
        }
    }
    // The good one still works, through one lookup.
    tokens.store().async_only(true);
    let before = tokens.store().find_calls();
    assert_eq!(bearer(addr, "/user", &good).await.status, StatusCode::OK);
    assert_eq!(tokens.store().find_calls(), before + 1);
}

#[tokio::test]
async fn unknown_token_is_invalid_token() {
    let (tokens, addr) = start().await;
    let stranger = TokenFormat::default().generate().unwrap();
    let reply = bearer(addr, "/user", stranger.expose_secret()).await;
    assert_refused(
        &reply,
        StatusCode::UNAUTHORIZED,
        Some(&invalid_token(UNKNOWN)),
    );
    assert_eq!(tokens.store().find_calls(), 1);
}

#[tokio::test]
async fn bad_syntax_is_400_invalid_request() {
    let (tokens, addr) = start().await;
    let good = token(&tokens, 1, &["user:read"]).await;
    let header = format!("Bearer {good}");
    let mut non_ascii = b"Bearer pat_".to_vec();
    non_ascii.extend_from_slice(b"\xff\xfe\xc3\xa9");
    non_ascii.extend_from_slice(&good.as_bytes()[15..]);
    let huge = format!("Bearer {}", "a".repeat(5000));
    let cases: Vec<Vec<(&str, &[u8])>> = vec![
        // Two Authorization headers, even both good ones.
        vec![
            ("authorization", header.as_bytes()),
            ("authorization", header.as_bytes()),
        ],
        vec![
            ("authorization", b"Basic dXNlcjpwYXNz"),
            ("authorization", header.as_bytes()),
        ],
        vec![("authorization", b"Bearer")],
        vec![("authorization", b"Bearer ")],
        vec![("authorization", b"Bearer a b")],
        vec![("authorization", b"Bearer a,b")],
        vec![("authorization", &non_ascii)],
        vec![("authorization", huge.as_bytes())],
    ];
    for headers in &cases {
        let reply = send(addr, "/user", headers).await;
        assert_refused(&reply, StatusCode::BAD_REQUEST, Some(INVALID_REQUEST));
    }
    assert_eq!(tokens.store().find_calls(), 0);
}

#[tokio::test]
async fn scopes_falling_short_is_403_insufficient_scope() {
    let (tokens, addr) = start().await;
    let reader = token(&tokens, 1, &["orders:read"]).await;
    let plain = token(&tokens, 1, &["user:read"]).await;
    let reply = bearer(addr, "/orders", &reader).await;
    assert_refused(&reply, StatusCode::FORBIDDEN, Some(ORDERS_SHORT));
    let reply = bearer(addr, "/orders/any", &plain).await;
    assert_refused(&reply, StatusCode::FORBIDDEN, Some(ORDERS_SHORT));
    let reply = bearer(addr, "/user", &reader).await;
    assert_refused(
        &reply,
        StatusCode::FORBIDDEN,
        Some(r#"Bearer realm="api", error="insufficient_scope", scope="user:read""#),
    );
}

#[tokio::test]
async fn store_failure_is_503_without_a_challenge() {
    let (tokens, addr) = start().await;
    let good = token(&tokens, 1, &["user:read"]).await;
    let store = tokens.store();
    for (mode, async_only) in [
        (Fault::Fail, false),
        (Fault::Fail, true),
        (Fault::Timeout, false),
        (Fault::Timeout, true),
    ] {
        store.set(mode);
        store.async_only(async_only);
        let before = store.find_calls();
        let reply = bearer(addr, "/user", &good).await;
        assert_refused(&reply, StatusCode::SERVICE_UNAVAILABLE, None);
        assert_eq!(reply.body, "");
        assert_eq!(store.find_calls(), before + 1);
        // Garbage and missing credentials are still answered offline, never with the
        // store's 503 (a store that waits is not even asked).
        let reply = bearer(addr, "/user", &typo(&good, 10)).await;
        assert_refused(
            &reply,
            StatusCode::UNAUTHORIZED,
            Some(&invalid_token(MALFORMED)),
        );
        let reply = send(addr, "/user", &[]).await;
        assert_refused(&reply, StatusCode::UNAUTHORIZED, Some(NO_CREDENTIALS));
        if async_only {
            assert_eq!(store.find_calls(), before + 1);
        }
    }
    store.set(Fault::Pass);
    assert_eq!(bearer(addr, "/user", &good).await.status, StatusCode::OK);
    store.async_only(false);
    assert_eq!(bearer(addr, "/user", &good).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_slow_store_is_waited_for() {
    let (tokens, addr) = start().await;
    let good = token(&tokens, 1, &["user:read"]).await;
    tokens
        .store()
        .set(Fault::Slow(StdDuration::from_millis(150)));
    let started = std::time::Instant::now();
    let reply = bearer(addr, "/user", &good).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(started.elapsed() >= StdDuration::from_millis(150));
    // A slow store that then fails still fails closed.
    tokens.store().set(Fault::Fail);
    let reply = bearer(addr, "/user", &good).await;
    assert_refused(&reply, StatusCode::SERVICE_UNAVAILABLE, None);
}

#[tokio::test]
async fn require_scopes_without_pat_layer_is_500() {
    let tokens = tokens();
    let good = token(&tokens, 1, &["orders:read", "orders:create"]).await;
    let app = Router::new().route(
        "/orders",
        get(orders).layer(RequireScopesLayer::all(["orders:read"])),
    );
    let addr = serve(app).await;
    for reply in [
        bearer(addr, "/orders", &good).await,
        send(addr, "/orders", &[]).await,
    ] {
        assert_refused(&reply, StatusCode::INTERNAL_SERVER_ERROR, None);
    }
}

#[tokio::test]
async fn extractor_without_pat_layer_is_500_with_the_hint_in_the_log_only() {
    let log = LogCapture::start();
    let tokens = tokens();
    let good = token(&tokens, 1, &["user:read"]).await;
    let app = Router::new()
        .route("/me", get(me))
        .route("/open", get(open));
    let addr = serve(app).await;
    for path in ["/me", "/open"] {
        let reply = bearer(addr, path, &good).await;
        assert_refused(&reply, StatusCode::INTERNAL_SERVER_ERROR, None);
        assert_eq!(reply.body, "", "a wiring hint reached the client");
    }
    let text = log.text();
    assert!(
        text.contains("add tower_pat::PatLayer in front of this route"),
        "{text}"
    );
}

#[tokio::test]
async fn the_scheme_is_case_insensitive() {
    let (tokens, addr) = start().await;
    let good = token(&tokens, 5, &["user:read"]).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        for spaces in [" ", "   "] {
            let value = format!("{scheme}{spaces}{good}");
            let reply = send(addr, "/user", &[("authorization", value.as_bytes())]).await;
            assert_eq!(reply.status, StatusCode::OK, "{value:?}: {reply:?}");
            assert_eq!(reply.body, "user 5 via test with [user:read]");
        }
    }
}

#[tokio::test]
async fn a_custom_realm_is_in_every_challenge() {
    let tokens = tokens();
    let addr = serve(routes().layer(tokens.layer().realm("orders api"))).await;
    let reader = tokens.create(1, "r", ["orders:read"]).await.unwrap();
    let secret = reader.token.expose_secret();

    let reply = send(addr, "/orders", &[]).await;
    assert_refused(
        &reply,
        StatusCode::UNAUTHORIZED,
        Some(r#"Bearer realm="orders api""#),
    );
    let reply = bearer(addr, "/orders", "a b").await;
    assert_refused(
        &reply,
        StatusCode::BAD_REQUEST,
        Some(r#"Bearer realm="orders api", error="invalid_request""#),
    );
    let reply = bearer(addr, "/orders", secret).await;
    assert_refused(
        &reply,
        StatusCode::FORBIDDEN,
        Some(
            r#"Bearer realm="orders api", error="insufficient_scope", scope="orders:create orders:read""#,
        ),
    );
    tokens.revoke(&1, reader.record.id).await.unwrap();
    let reply = bearer(addr, "/orders", secret).await;
    assert_refused(
        &reply,
        StatusCode::UNAUTHORIZED,
        Some(&format!(
            r#"Bearer realm="orders api", error="invalid_token", error_description="{REVOKED}""#
        )),
    );
}

#[tokio::test]
async fn expiry_is_exact_to_the_second() {
    let t0 = datetime!(2030-01-01 00:00 UTC);
    let clock = ManualClock::new(t0);
    let tokens = tokens().clock(clock.clone());
    let addr = serve(routes().layer(tokens.layer())).await;

    let hourly = tokens
        .create_with(
            1,
            CreateToken::new("hourly")
                .scopes(["user:read"])
                .expires_in(Duration::hours(1)),
        )
        .await
        .unwrap();
    assert_eq!(hourly.record.expires_at, t0 + Duration::hours(1));
    let yearly = tokens.create(1, "yearly", ["user:read"]).await.unwrap();
    assert_eq!(yearly.record.expires_at, t0 + Duration::days(365));

    let hourly_secret = hourly.token.expose_secret();
    clock.set(hourly.record.expires_at - Duration::seconds(1));
    assert_eq!(
        bearer(addr, "/user", hourly_secret).await.status,
        StatusCode::OK
    );
    clock.set(hourly.record.expires_at);
    let reply = bearer(addr, "/user", hourly_secret).await;
    assert_refused(
        &reply,
        StatusCode::UNAUTHORIZED,
        Some(&invalid_token(EXPIRED)),
    );
    clock.advance(Duration::days(1));
    let reply = bearer(addr, "/user", hourly_secret).await;
    assert_refused(
        &reply,
        StatusCode::UNAUTHORIZED,
        Some(&invalid_token(EXPIRED)),
    );

    let yearly_secret = yearly.token.expose_secret();
    clock.set(yearly.record.expires_at - Duration::seconds(1));
    assert_eq!(
        bearer(addr, "/user", yearly_secret).await.status,
        StatusCode::OK
    );
    clock.set(yearly.record.expires_at);
    let reply = bearer(addr, "/user", yearly_secret).await;
    assert_refused(
        &reply,
        StatusCode::UNAUTHORIZED,
        Some(&invalid_token(EXPIRED)),
    );
}

#[tokio::test]
async fn revocation_takes_effect_on_the_very_next_request() {
    let (tokens, addr) = start().await;
    let mine = tokens.create(1, "laptop", ["user:read"]).await.unwrap();
    let theirs = tokens.create(2, "laptop", ["user:read"]).await.unwrap();
    let secret = mine.token.expose_secret();
    assert_eq!(bearer(addr, "/user", secret).await.status, StatusCode::OK);

    assert_eq!(
        tokens.revoke(&1, mine.record.id).await.unwrap(),
        Revoked::Revoked
    );
    let reply = bearer(addr, "/user", secret).await;
    assert_refused(
        &reply,
        StatusCode::UNAUTHORIZED,
        Some(&invalid_token(REVOKED)),
    );
    // Twice is not an error.
    assert_eq!(
        tokens.revoke(&1, mine.record.id).await.unwrap(),
        Revoked::AlreadyRevoked
    );
    // The row stays, flagged.
    let listed = tokens.list(&1).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].revoked);

    // Revoking someone else's token is an error and changes nothing.
    let err = tokens.revoke(&1, theirs.record.id).await.unwrap_err();
    assert!(
        matches!(err, TokenError::NotFound(id) if id == theirs.record.id),
        "{err:?}"
    );
    let reply = bearer(addr, "/user", theirs.token.expose_secret()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "user 2 via laptop with [user:read]");
}

#[tokio::test]
async fn revoke_all_revokes_every_token_of_one_user() {
    let (tokens, addr) = start().await;
    let mut mine = Vec::new();
    for name in ["a", "b", "c"] {
        mine.push(tokens.create(1, name, ["user:read"]).await.unwrap());
    }
    let theirs = tokens.create(2, "a", ["user:read"]).await.unwrap();
    for t in &mine {
        assert_eq!(
            bearer(addr, "/user", t.token.expose_secret()).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(tokens.revoke_all(&1).await.unwrap(), 3);
    for t in &mine {
        let reply = bearer(addr, "/user", t.token.expose_secret()).await;
        assert_refused(
            &reply,
            StatusCode::UNAUTHORIZED,
            Some(&invalid_token(REVOKED)),
        );
    }
    assert_eq!(
        bearer(addr, "/user", theirs.token.expose_secret())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(tokens.revoke_all(&1).await.unwrap(), 0);
}

#[tokio::test]
async fn same_name_tokens_are_separate_records_and_both_work() {
    let (tokens, addr) = start().await;
    let first = tokens
        .create(9, "My Personal Token", ["user:read"])
        .await
        .unwrap();
    let second = tokens
        .create(9, "My Personal Token", ["user:read"])
        .await
        .unwrap();
    assert_ne!(first.record.id, second.record.id);
    assert_ne!(first.token.expose_secret(), second.token.expose_secret());
    let listed = tokens.list(&9).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|r| r.name == "My Personal Token"));
    for t in [&first, &second] {
        let reply = bearer(addr, "/user", t.token.expose_secret()).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "user 9 via My Personal Token with [user:read]");
    }
    tokens.revoke(&9, first.record.id).await.unwrap();
    assert_eq!(
        bearer(addr, "/user", first.token.expose_secret())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        bearer(addr, "/user", second.token.expose_secret())
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn no_scopes_asked_gives_the_default_scopes() {
    let (tokens, addr) = start().await;
    let created = tokens.create(3, "cli", Vec::<&str>::new()).await.unwrap();
    assert_eq!(created.record.scopes.to_string(), "user:read");
    let secret = created.token.expose_secret();
    let reply = bearer(addr, "/user", secret).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "user 3 via cli with [user:read]");
    let reply = bearer(addr, "/orders/any", secret).await;
    assert_refused(&reply, StatusCode::FORBIDDEN, Some(ORDERS_SHORT));

    // Without defaults in the registry: no scopes at all, never an implicit `*`.
    let bare = Tokens::new(
        MemoryStore::<i64>::new(),
        common_registry_without_defaults(),
    );
    let created = bare.create(3, "cli", Vec::<&str>::new()).await.unwrap();
    assert!(created.record.scopes.is_empty());
}

fn common_registry_without_defaults() -> tower_pat::scope::ScopeRegistry {
    tower_pat::scope::ScopeRegistry::new().scope("user:read", "Retrieve the user info")
}

#[tokio::test]
async fn an_undefined_scope_is_an_error_naming_it_and_stores_nothing() {
    let tokens = tokens();
    let err = tokens
        .create(1, "x", ["orders:read", "orders:delete"])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TokenError::Scope(ScopeError::Undefined(s)) if s == "orders:delete"),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"orders:delete\""), "{err}");
    // `*` is undefined unless the registry allows it.
    let err = tokens.create(1, "x", ["*"]).await.unwrap_err();
    assert!(
        matches!(&err, TokenError::Scope(ScopeError::Undefined(s)) if s == "*"),
        "{err:?}"
    );
    assert!(tokens.list(&1).await.unwrap().is_empty());
    assert!(tokens.store().inner().is_empty());
}

#[tokio::test]
async fn all_versus_any_and_handlers_asking_can() {
    let (tokens, addr) = start().await;
    let reader = token(&tokens, 1, &["orders:read"]).await;
    let creator = token(&tokens, 2, &["orders:create"]).await;
    let both = token(&tokens, 3, &["orders:read", "orders:create"]).await;
    let plain = token(&tokens, 4, &["user:read"]).await;

    // All of orders:read and orders:create.
    for t in [&reader, &creator, &plain] {
        let reply = bearer(addr, "/orders", t).await;
        assert_refused(&reply, StatusCode::FORBIDDEN, Some(ORDERS_SHORT));
    }
    let reply = bearer(addr, "/orders", &both).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "orders of user 3");

    // Any one of them; the handler branches on `can("orders:create")`.
    let cases = [
        (&reader, "user 1 may only look"),
        (&creator, "user 2 may place orders"),
        (&both, "user 3 may place orders"),
    ];
    for (t, want) in cases {
        let reply = bearer(addr, "/orders/any", t).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, want);
    }
    let reply = bearer(addr, "/orders/any", &plain).await;
    assert_refused(&reply, StatusCode::FORBIDDEN, Some(ORDERS_SHORT));
}

#[tokio::test]
async fn optional_mode_lets_anonymous_requests_through_but_not_bad_tokens() {
    let tokens = tokens();
    let addr = serve(routes().layer(tokens.layer().optional(true))).await;
    let good = token(&tokens, 7, &["user:read"]).await;

    let reply = send(addr, "/open", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "anonymous");
    let reply = send(addr, "/open", &[("authorization", b"Basic dXNlcjpwYXNz")]).await;
    assert_eq!(reply.body, "anonymous");
    let reply = bearer(addr, "/open", &good).await;
    assert_eq!(reply.body, "user 7");

    // Bad credentials are still refused.
    let reply = bearer(addr, "/open", &typo(&good, 10)).await;
    assert_refused(
        &reply,
        StatusCode::UNAUTHORIZED,
        Some(&invalid_token(MALFORMED)),
    );
    let stranger = TokenFormat::default().generate().unwrap();
    let reply = bearer(addr, "/open", stranger.expose_secret()).await;
    assert_refused(
        &reply,
        StatusCode::UNAUTHORIZED,
        Some(&invalid_token(UNKNOWN)),
    );
    let reply = bearer(addr, "/open", "a b").await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, Some(INVALID_REQUEST));

    // A route that needs scopes, or a token, answers 401 to an anonymous request.
    for path in ["/user", "/orders", "/me"] {
        let reply = send(addr, path, &[]).await;
        assert_refused(&reply, StatusCode::UNAUTHORIZED, Some(NO_CREDENTIALS));
    }
    assert_eq!(bearer(addr, "/user", &good).await.status, StatusCode::OK);
}

fn json_body(r: &Rejection<'_>) -> http::Response<Body> {
    let body = serde_json::json!({
        "error": r.kind().error_code(),
        "message": r.kind().message(),
        "status": r.status().as_u16(),
    });
    // A careless hook: the wrong status and a challenge of its own, which the crate
    // must overwrite.
    http::Response::builder()
        .status(StatusCode::IM_A_TEAPOT)
        .header(CONTENT_TYPE, "application/json")
        .header(WWW_AUTHENTICATE, "Basic realm=\"oops\"")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn a_rejection_body_hook_keeps_status_and_challenge() {
    let tokens = tokens();
    let app = Router::new()
        .route(
            "/orders",
            // No hook of its own: the PatLayer's serves every refusal behind it.
            get(orders).layer(tokens.require_all(["orders:read", "orders:create"])),
        )
        .layer(tokens.layer().rejection_body(json_body));
    let addr = serve(app).await;
    let reader = tokens.create(1, "r", ["orders:read"]).await.unwrap();
    let secret = reader.token.expose_secret();

    let check =
        |reply: &Reply, status: StatusCode, challenge: Option<&str>, error: Option<&str>| {
            assert_refused(reply, status, challenge);
            assert_eq!(reply.headers[CONTENT_TYPE], "application/json");
            let json: serde_json::Value = serde_json::from_str(&reply.body).expect("a JSON body");
            assert_eq!(json["status"], status.as_u16());
            assert_eq!(json["error"], serde_json::Value::from(error), "{json}");
        };
    let reply = send(addr, "/orders", &[]).await;
    check(&reply, StatusCode::UNAUTHORIZED, Some(NO_CREDENTIALS), None);
    let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(json["message"], "missing bearer token");

    let reply = bearer(addr, "/orders", "a b").await;
    check(
        &reply,
        StatusCode::BAD_REQUEST,
        Some(INVALID_REQUEST),
        Some("invalid_request"),
    );
    let reply = bearer(addr, "/orders", secret).await;
    check(
        &reply,
        StatusCode::FORBIDDEN,
        Some(ORDERS_SHORT),
        Some("insufficient_scope"),
    );
    tokens.store().set(Fault::Fail);
    let reply = bearer(addr, "/orders", secret).await;
    assert_refused(&reply, StatusCode::SERVICE_UNAVAILABLE, None);
    assert_eq!(reply.headers[CONTENT_TYPE], "application/json");
    tokens.store().set(Fault::Pass);
    tokens.revoke(&1, reader.record.id).await.unwrap();
    let reply = bearer(addr, "/orders", secret).await;
    check(
        &reply,
        StatusCode::UNAUTHORIZED,
        Some(&invalid_token(REVOKED)),
        Some("invalid_token"),
    );
}

#[tokio::test]
async fn query_tokens_are_not_looked_at_unless_enabled() {
    let tokens = tokens();
    let strict = serve(routes().layer(tokens.layer())).await;
    let public = serve(routes().layer(tokens.layer().optional(true))).await;
    let lenient = serve(routes().layer(tokens.layer().allow_query_token(true))).await;
    let good = token(&tokens, 1, &["user:read"]).await;
    let with_query = format!("/user?access_token={good}");

    // Off (the default): a request whose only credential is in the query has none.
    let reply = send(strict, &with_query, &[]).await;
    assert_refused(&reply, StatusCode::UNAUTHORIZED, Some(NO_CREDENTIALS));
    let reply = send(strict, "/user?access_token=a%20b", &[]).await;
    assert_refused(&reply, StatusCode::UNAUTHORIZED, Some(NO_CREDENTIALS));
    // ... a public route lets it through without a token ...
    let reply = send(public, &format!("/open?access_token={good}"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body, "anonymous");
    // ... and a header beside it is all that counts.
    let reply = bearer(strict, "/user?access_token=garbage", &good).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");

    // On: accepted when it is the only credential.
    let reply = send(lenient, &with_query, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body, "user 1 via test with [user:read]");
    // One method per request.
    let reply = bearer(lenient, &with_query, &good).await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, Some(INVALID_REQUEST));
    // A query token is checked like any other.
    let reply = send(
        lenient,
        &format!("/user?access_token={}", typo(&good, 10)),
        &[],
    )
    .await;
    assert_refused(
        &reply,
        StatusCode::UNAUTHORIZED,
        Some(&invalid_token(MALFORMED)),
    );
    let reply = send(lenient, "/user?access_token=a%20b", &[]).await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, Some(INVALID_REQUEST));
    // Unrelated query parameters do not matter.
    let reply = bearer(strict, "/user?page=2", &good).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn a_refused_query_token_is_not_called_a_header() {
    let tokens = tokens();
    let lenient = serve(routes().layer(tokens.layer().allow_query_token(true))).await;
    let reply = send(lenient, "/user?access_token=a%20b", &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let message = RejectionKind::InvalidRequest.message();
    assert!(!message.to_lowercase().contains("header"), "{message}");
}

#[tokio::test]
async fn the_authorization_header_reaches_the_handler_marked_sensitive() {
    let (tokens, addr) = start().await;
    let good = token(&tokens, 1, &["user:read"]).await;
    let reply = bearer(addr, "/sensitive", &good).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "sensitive=true");
}

#[tokio::test]
async fn integer_and_uuid_user_ids_both_work() {
    // i64
    let (tokens, addr) = start().await;
    let created = tokens.create(42, "int", ["user:read"]).await.unwrap();
    assert_eq!(created.record.user_id, 42);
    let reply = bearer(addr, "/user", created.token.expose_secret()).await;
    assert_eq!(reply.body, "user 42 via int with [user:read]");

    // Uuid
    async fn whoami(token: AccessToken<Uuid>) -> String {
        format!("user {}", token.user_id())
    }
    let tokens = Tokens::new(MemoryStore::<Uuid>::new(), registry());
    let app = Router::new()
        .route(
            "/user",
            get(whoami).layer(RequireScopesLayer::all(["user:read"])),
        )
        // Asking for the wrong user id type is a wiring error, not a pass.
        .route("/wrong", get(me))
        .layer(tokens.layer());
    let addr = serve(app).await;
    let alice = Uuid::new_v4();
    let bob = Uuid::new_v4();
    let created = tokens.create(alice, "uuid", ["user:read"]).await.unwrap();
    let secret = created.token.expose_secret();
    let reply = bearer(addr, "/user", secret).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, format!("user {alice}"));
    let log = LogCapture::start();
    let reply = bearer(addr, "/wrong", secret).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.body, "", "a wiring hint reached the client");
    // The log names both types and the fix.
    let text = log.text();
    assert!(
        text.contains("asks for AccessToken<i64>, but the store's user ids are uuid::")
            && text.contains("write AccessToken<uuid::"),
        "{text}"
    );

    assert_eq!(tokens.list(&alice).await.unwrap().len(), 1);
    assert!(tokens.list(&bob).await.unwrap().is_empty());
    assert!(tokens.revoke(&bob, created.record.id).await.is_err());
    assert_eq!(bearer(addr, "/user", secret).await.status, StatusCode::OK);
    tokens.revoke(&alice, created.record.id).await.unwrap();
    assert_eq!(
        bearer(addr, "/user", secret).await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn last_used_at(tokens: &Tokens<Store>, id: tower_pat::TokenId) -> Option<OffsetDateTime> {
    tokens.store().get(id).await.unwrap().unwrap().last_used_at
}

#[tokio::test]
async fn last_used_at_is_written_once_per_interval_off_the_request_path() {
    let t0 = datetime!(2030-06-01 12:00 UTC);
    let clock = ManualClock::new(t0);
    let tokens = tokens().clock(clock.clone());
    let layer = tokens.layer();
    let addr = serve(routes().layer(layer.clone())).await;
    let created = tokens.create(1, "ci", ["user:read"]).await.unwrap();
    let id = created.record.id;
    let secret = created.token.expose_secret();
    assert_eq!(created.record.last_used_at, None);

    // A use is recorded, not written: the request does not wait for the store.
    assert_eq!(bearer(addr, "/user", secret).await.status, StatusCode::OK);
    assert_eq!(tokens.store().touch_calls(), 0);
    assert_eq!(last_used_at(&tokens, id).await, None);
    assert_eq!(layer.flush().await, 1);
    assert_eq!(tokens.store().touch_calls(), 1);
    assert_eq!(last_used_at(&tokens, id).await, Some(t0));

    clock.advance(Duration::seconds(10));
    for _ in 0..5 {
        assert_eq!(bearer(addr, "/user", secret).await.status, StatusCode::OK);
    }
    assert_eq!(layer.flush().await, 0, "a write within the interval");
    assert_eq!(tokens.store().touch_calls(), 1);
    assert_eq!(last_used_at(&tokens, id).await, Some(t0));

    // Once the interval (one minute) has passed, the next use is written.
    clock.advance(Duration::minutes(1));
    assert_eq!(bearer(addr, "/user", secret).await.status, StatusCode::OK);
    assert_eq!(layer.flush().await, 1);
    assert_eq!(
        last_used_at(&tokens, id).await,
        Some(t0 + Duration::seconds(70))
    );
    assert_eq!(tokens.store().find_calls(), 7);

    // A request answered 403 still used the token.
    let other = tokens.create(1, "other", ["user:read"]).await.unwrap();
    let reply = bearer(addr, "/orders", other.token.expose_secret()).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(layer.flush().await, 1);
    assert_eq!(
        last_used_at(&tokens, other.record.id).await,
        Some(t0 + Duration::seconds(70))
    );
    // One statement per flush, whatever the batch.
    assert_eq!(tokens.store().touch_calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_concurrent_uses_make_one_write() {
    let tokens = tokens();
    let layer = tokens.layer();
    let addr = serve(routes().layer(layer.clone())).await;
    let secret = token(&tokens, 1, &["user:read"]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let secret = secret.clone();
        tasks.spawn(async move {
            for _ in 0..40 {
                assert_eq!(bearer(addr, "/user", &secret).await.status, StatusCode::OK);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(layer.flush().await, 1);
    assert_eq!(tokens.store().touch_calls(), 1);
    assert_eq!(tokens.store().uses_touched(), 1);
}

#[tokio::test]
async fn layers_can_share_one_store() {
    // Two servers over one store: a revocation through one facade is seen by both.
    let store = Arc::new(Faulty::new(MemoryStore::<i64>::new()));
    let tokens = Tokens::from_shared(Arc::clone(&store), Arc::new(registry()));
    let a = serve(routes().layer(tokens.layer())).await;
    let b = serve(routes().layer(tokens.layer().realm("b"))).await;
    let created = tokens.create(1, "shared", ["user:read"]).await.unwrap();
    let secret = created.token.expose_secret();
    assert_eq!(bearer(a, "/user", secret).await.status, StatusCode::OK);
    assert_eq!(bearer(b, "/user", secret).await.status, StatusCode::OK);
    tokens.revoke(&1, created.record.id).await.unwrap();
    assert_eq!(
        bearer(a, "/user", secret).await.challenge(),
        Some(invalid_token(REVOKED).as_str())
    );
    assert_eq!(
        bearer(b, "/user", secret).await.challenge(),
        Some(
            format!(r#"Bearer realm="b", error="invalid_token", error_description="{REVOKED}""#)
                .as_str()
        )
    );
    assert_eq!(store.find_calls(), 4);
}

#[tokio::test]
async fn rotation_and_pruning_as_a_client_sees_them() {
    let t0 = datetime!(2030-01-01 00:00 UTC);
    let clock = ManualClock::new(t0);
    let tokens = tokens().clock(clock.clone());
    let addr = serve(routes().layer(tokens.layer())).await;
    let old = tokens.create(1, "deploy", ["user:read"]).await.unwrap();
    let new = tokens
        .rotate(&1, old.record.id, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(new.record.name, "deploy");
    assert_eq!(new.record.scopes, old.record.scopes);
    let reply = bearer(addr, "/user", old.token.expose_secret()).await;
    assert_refused(
        &reply,
        StatusCode::UNAUTHORIZED,
        Some(&invalid_token(REVOKED)),
    );
    let reply = bearer(addr, "/user", new.token.expose_secret()).await;
    assert_eq!(reply.body, "user 1 via deploy with [user:read]");

    // A pruned token is gone: the layer no longer knows it.
    clock.advance(Duration::days(1));
    assert_eq!(tokens.prune(Duration::hours(1)).await.unwrap(), 1);
    let reply = bearer(addr, "/user", old.token.expose_secret()).await;
    assert_refused(
        &reply,
        StatusCode::UNAUTHORIZED,
        Some(&invalid_token(UNKNOWN)),
    );
    assert_eq!(tokens.list(&1).await.unwrap().len(), 1);
    assert_eq!(
        bearer(addr, "/user", new.token.expose_secret())
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_header_limit_is_4_kib_to_the_byte() {
    let (tokens, addr) = start().await;
    // 4096 bytes: read, then refused as a malformed token.
    let at_limit = format!("Bearer {}", "a".repeat(4096 - 7));
    assert_eq!(at_limit.len(), 4096);
    let reply = send(addr, "/user", &[("authorization", at_limit.as_bytes())]).await;
    assert_refused(
        &reply,
        StatusCode::UNAUTHORIZED,
        Some(&invalid_token(MALFORMED)),
    );
    // 4097 bytes: not read at all.
    let over = format!("Bearer {}", "a".repeat(4096 - 6));
    let reply = send(addr, "/user", &[("authorization", over.as_bytes())]).await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, Some(INVALID_REQUEST));
    assert_eq!(tokens.store().find_calls(), 0);
}

#[tokio::test]
async fn optional_mode_challenges_carry_the_custom_realm() {
    let tokens = tokens();
    let layer = tokens.layer().optional(true).realm("orders api");
    let addr = serve(routes().layer(layer)).await;
    for path in ["/user", "/me"] {
        let reply = send(addr, path, &[]).await;
        assert_refused(
            &reply,
            StatusCode::UNAUTHORIZED,
            Some(r#"Bearer realm="orders api""#),
        );
    }
    assert_eq!(send(addr, "/open", &[]).await.body, "anonymous");
}

#[tokio::test]
async fn wildcard_and_inheritance_reach_the_routes_only_when_the_registry_allows_them() {
    let open_registry = registry()
        .scope("orders", "Everything about orders")
        .allow_wildcard(true)
        .inheritance(true);
    let tokens = Tokens::new(MemoryStore::<i64>::new(), open_registry);
    let addr = serve(routes().layer(tokens.layer())).await;
    let star = tokens.create(1, "star", ["*"]).await.unwrap();
    let parent = tokens.create(2, "parent", ["orders"]).await.unwrap();
    let reader = tokens.create(3, "reader", ["orders:read"]).await.unwrap();

    for (t, body) in [(&star, "orders of user 1"), (&parent, "orders of user 2")] {
        let reply = bearer(addr, "/orders", t.token.expose_secret()).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.body, body);
    }
    // `can` follows the same rules as the route guard.
    let reply = bearer(addr, "/orders/any", parent.token.expose_secret()).await;
    assert_eq!(reply.body, "user 2 may place orders");
    let reply = bearer(addr, "/orders/any", reader.token.expose_secret()).await;
    assert_eq!(reply.body, "user 3 may only look");
    let reply = bearer(addr, "/orders", reader.token.expose_secret()).await;
    assert_refused(&reply, StatusCode::FORBIDDEN, Some(ORDERS_SHORT));
    // `*` grants every scope, `orders` only its own subtree.
    let reply = bearer(addr, "/user", star.token.expose_secret()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = bearer(addr, "/user", parent.token.expose_secret()).await;
    assert_refused(
        &reply,
        StatusCode::FORBIDDEN,
        Some(r#"Bearer realm="api", error="insufficient_scope", scope="user:read""#),
    );

    // The same tokens behind a layer with exact matching (the default): no magic.
    let exact = serve(routes().layer(PatLayer::from_shared(Arc::clone(tokens.store())))).await;
    for t in [&star, &parent] {
        let reply = bearer(exact, "/orders", t.token.expose_secret()).await;
        assert_refused(&reply, StatusCode::FORBIDDEN, Some(ORDERS_SHORT));
    }
}

#[test]
fn scope_requirements_are_checked_when_the_layer_is_built() {
    let empty = RequireScopesLayer::try_all(Vec::<&str>::new()).unwrap_err();
    assert_eq!(empty, ScopeError::Empty);
    let empty = RequireScopesLayer::try_any(Vec::<&str>::new()).unwrap_err();
    assert_eq!(empty, ScopeError::Empty);
    let invalid = RequireScopesLayer::try_any(["orders:read", "orders read"]).unwrap_err();
    assert_eq!(invalid, ScopeError::Invalid("orders read".to_owned()));
    let panic = std::panic::catch_unwind(|| RequireScopesLayer::all(["user:read", "a\"b"]))
        .expect_err("an invalid scope must not build");
    let message = panic.downcast_ref::<String>().expect("a formatted message");
    assert!(message.contains(r#""a\"b""#), "{message}");
}

#[test]
fn route_requirements_built_from_tokens_refuse_undefined_scopes_naming_them() {
    let tokens = tokens();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tokens.require_all(["orders:read", "orders:raed"])
    }))
    .expect_err("a misspelt scope must not build");
    let message = panic.downcast_ref::<String>().expect("a formatted message");
    assert!(
        message.contains(r#"undefined scope "orders:raed""#),
        "{message}"
    );
    let err = tokens
        .try_require(tower_pat::Requirement::any(["user:read", "user:write"]))
        .unwrap_err();
    assert_eq!(err, ScopeError::Undefined("user:write".into()));
    assert!(
        tokens
            .try_require(tower_pat::Requirement::all(["user:read"]))
            .is_ok()
    );
}

#[test]
fn configuration_that_panics_has_try_twins() {
    let err = PatLayer::new(MemoryStore::<i64>::new())
        .try_realm("my \"api\"")
        .unwrap_err();
    assert!(err.to_string().contains(r#""my \"api\"""#), "{err}");
    assert!(
        PatLayer::new(MemoryStore::<i64>::new())
            .try_realm("my api")
            .is_ok()
    );
    assert!(matches!(
        tokens().try_expires_in(Duration::ZERO),
        Err(TokenError::Lifetime { .. })
    ));
    assert!(matches!(
        tokens().try_max_lifetime(Duration::days(-1)),
        Err(TokenError::Lifetime { .. })
    ));
    // A default above the maximum set before is refused too.
    assert!(matches!(
        tokens()
            .max_lifetime(Duration::days(30))
            .try_expires_in(Duration::days(90)),
        Err(TokenError::Lifetime { .. })
    ));
    let tokens = tokens().try_max_lifetime(Duration::days(30)).unwrap();
    assert_eq!(tokens.default_lifetime(), Duration::days(30));
}

/// A token put into a request by hand, with any user id type, is seen by the scope checks
/// and the extractor as one the layer put there.
#[tokio::test]
async fn a_hand_inserted_token_of_any_user_id_type_passes_the_scope_check() {
    use tower_pat::{record::TokenRecord, scope::Scopes};

    fn record<U>(user_id: U, scopes: &[&str]) -> Arc<TokenRecord<U>> {
        let now = OffsetDateTime::now_utc();
        Arc::new(
            TokenRecord::new(
                tower_pat::TokenId::from_bytes([7; 16]),
                user_id,
                tower_pat::token::TokenHash::of("x"),
                now,
                now + Duration::hours(1),
            )
            .with_name("handler test")
            .with_scopes(Scopes::try_from_iter(scopes).unwrap()),
        )
    }
    async fn whoami(token: AccessToken<Uuid>) -> String {
        format!("user {}", token.user_id())
    }
    let alice = Uuid::new_v4();
    let app = |scopes: &'static [&'static str]| {
        Router::new()
            .route(
                "/user",
                get(whoami).layer(RequireScopesLayer::all(["user:read"])),
            )
            .layer(axum::middleware::map_request(
                move |mut req: http::Request<Body>| async move {
                    let token = AccessToken::new(
                        record(alice, scopes),
                        tower_pat::scope::ScopeMatching::EXACT,
                    );
                    token.insert_into(req.extensions_mut());
                    req
                },
            ))
    };
    let addr = serve(app(&["user:read"])).await;
    let reply = send(addr, "/user", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body, format!("user {alice}"));
    let addr = serve(app(&["orders:read"])).await;
    let reply = send(addr, "/user", &[]).await;
    assert_refused(
        &reply,
        StatusCode::FORBIDDEN,
        Some(r#"Bearer realm="api", error="insufficient_scope", scope="user:read""#),
    );
}

/// The extractor's own refusals go through the layer's body hook like every other: a
/// handler taking `AccessToken` behind `optional(true)`, asked without credentials.
#[tokio::test]
async fn the_extractors_refusals_use_the_layers_body_hook() {
    let tokens = tokens();
    let json = |r: &Rejection<'_>| {
        http::Response::builder()
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(r.to_json()))
            .unwrap()
    };
    async fn wrong_type(_: AccessToken<String>) -> &'static str {
        "unreachable"
    }
    let app = routes()
        .route("/wrong", get(wrong_type))
        .layer(tokens.layer().optional(true).rejection_body(json));
    let addr = serve(app).await;

    let reply = send(addr, "/me", &[]).await;
    assert_refused(&reply, StatusCode::UNAUTHORIZED, Some(NO_CREDENTIALS));
    assert_eq!(reply.headers[CONTENT_TYPE], "application/json");
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["code"], "missing_credentials");

    // A wiring error: a JSON 500 without the hint, which goes to the log.
    let good = token(&tokens, 1, &["user:read"]).await;
    let reply = bearer(addr, "/wrong", &good).await;
    assert_refused(&reply, StatusCode::INTERNAL_SERVER_ERROR, None);
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["code"], "missing_layer");
    assert!(!reply.body.contains("String"), "{}", reply.body);

    // The same hook shapes the scope checks' refusals: one hook for the whole app.
    let reply = bearer(addr, "/orders", &good).await;
    assert_refused(&reply, StatusCode::FORBIDDEN, Some(ORDERS_SHORT));
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["code"], "insufficient_scope");
    assert_eq!(body["form"], "all");
    assert_eq!(body["scope"], "orders:create orders:read");
}
