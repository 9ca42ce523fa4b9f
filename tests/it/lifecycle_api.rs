//! The token lifecycle through the management API (`tower_pat::manage`), over a loopback
//! socket: regenerating (rotating) a token, pages of a long list with `Link: rel="next"`,
//! the per-user cap, the expiry warning and idle tokens, what a user may grant (the
//! wildcard included), names a person can trust, and 422s that never echo their input
//! at length.

use crate::common;

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{Router, body::Body, middleware::map_request, routing::get};
use common::Reply;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::{Value, json};
use time::{Duration, macros::datetime};
use tower_pat::{
    AccessToken, ManageTokens, MemoryStore, TokenStore, Tokens,
    clock::ManualClock,
    manage::{SignedIn, TokenPage},
    scope::{ScopeRegistry, Scopes},
};

const BASE: &str = "/settings/tokens";

/// `x-test-user: 7` is user 7 signed in.
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

fn tokens(clock: &ManualClock) -> Tokens<MemoryStore<i64>> {
    Tokens::new(MemoryStore::new(), common::registry()).clock(clock.clone())
}

/// The page at `BASE`, and `/orders` (any token) and, when the registry defines it,
/// `/admin` (`admin`) behind the facade's layer.
async fn serve<St: ManageTokens<UserId = i64>>(
    tokens: &Tokens<St>,
    page: TokenPage<St>,
) -> SocketAddr {
    let mut api = Router::new().route(
        "/orders",
        get(|token: AccessToken| async move { format!("user {}", token.user_id()) }),
    );
    if tokens.registry().is_defined("admin") {
        api = api.merge(
            Router::new()
                .route("/admin", get(|| async { "every user's orders" }))
                .route_layer(tokens.require_all(["admin"])),
        );
    }
    let api = api.layer(tokens.layer());
    let app = Router::new()
        .nest_service(BASE, page)
        .layer(map_request(sign_in))
        .merge(api);
    common::serve(app).await
}

/// A request as the page sends it: signed in as `user`, same-origin, JSON.
async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    user: i64,
    body: Option<Value>,
) -> Reply {
    let url = if path.starts_with(BASE) {
        format!("http://{addr}{path}")
    } else {
        format!("http://{addr}{BASE}{path}")
    };
    let mut req = Request::builder()
        .method(method)
        .uri(url)
        .header("x-test-user", user.to_string())
        .header("sec-fetch-site", "same-origin");
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    common::request(req.body(Full::new(Bytes::from(body))).unwrap()).await
}

fn json(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.body))
}

async fn create(addr: SocketAddr, user: i64, name: &str, scopes: &[&str]) -> Value {
    let reply = call(
        addr,
        Method::POST,
        "/tokens",
        user,
        Some(json!({ "name": name, "scopes": scopes })),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    json(&reply)
}

async fn bearer(addr: SocketAddr, path: &str, token: &Value) -> StatusCode {
    common::bearer(addr, path, token["plaintext"].as_str().unwrap())
        .await
        .status
}

#[tokio::test]
async fn a_token_is_regenerated_with_an_overlap_and_only_once() {
    let clock = ManualClock::new(datetime!(2030-01-01 00:00 UTC));
    let tokens = tokens(&clock);
    let addr = serve(&tokens, TokenPage::new(tokens.clone(), BASE)).await;
    let old = create(addr, 7, "deploy", &["orders:read"]).await;
    let id = old["token"]["id"].as_str().unwrap().to_owned();

    // A minute later, so that the successor is the newest row.
    clock.advance(Duration::minutes(1));
    let reply = call(
        addr,
        Method::POST,
        &format!("/tokens/{id}/rotate"),
        7,
        Some(json!({"overlap_seconds": 3600})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.headers["cache-control"], "no-store");
    let rotated = json(&reply);
    let new_id = rotated["token"]["id"].as_str().unwrap();
    assert!(rotated["plaintext"].as_str().unwrap().starts_with("pat_"));
    assert_eq!(rotated["token"]["rotated_from"], id.as_str());
    assert_eq!(rotated["token"]["name"], "deploy");
    assert_eq!(rotated["token"]["scopes"], json!(["orders:read"]));
    assert_eq!(rotated["previous"]["id"], id.as_str());
    assert_eq!(rotated["previous"]["rotated_to"], new_id);
    assert_eq!(rotated["previous"]["expires_at"], "2030-01-01T01:01:00Z");
    assert_eq!(rotated["previous"]["status"], "active");
    assert!(rotated["previous"].get("plaintext").is_none());
    assert!(!reply.body.contains(old["plaintext"].as_str().unwrap()));

    // Both work until the overlap ends; then only the new one.
    assert_eq!(bearer(addr, "/orders", &old).await, StatusCode::OK);
    assert_eq!(bearer(addr, "/orders", &rotated).await, StatusCode::OK);
    clock.advance(Duration::hours(1));
    assert_eq!(
        bearer(addr, "/orders", &old).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(bearer(addr, "/orders", &rotated).await, StatusCode::OK);

    // The list shows both ends of the rotation.
    let listed = json(&call(addr, Method::GET, "/tokens", 7, None).await);
    assert_eq!(listed[0]["id"], new_id);
    assert_eq!(listed[0]["rotated_from"], id.as_str());
    assert_eq!(listed[1]["rotated_to"], new_id);
    assert_eq!(listed[1]["status"], "expired");

    // Once only: the answer names the successor.
    let again = call(
        addr,
        Method::POST,
        &format!("/tokens/{id}/rotate"),
        7,
        Some(json!({})),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    let body = json(&again);
    assert_eq!(
        (&body["error"], &body["code"]),
        (&json!("conflict"), &json!("already_rotated"))
    );
    assert!(body["message"].as_str().unwrap().contains(new_id), "{body}");
    assert_eq!(
        tokens.list(&7).await.unwrap().len(),
        2,
        "no second successor"
    );

    // Another user's token is unknown; a revoked one cannot be regenerated.
    let reply = call(
        addr,
        Method::POST,
        &format!("/tokens/{new_id}/rotate"),
        8,
        Some(json!({})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(json(&reply)["code"], "token_not_found");
    let revoked = create(addr, 7, "to revoke", &[]).await;
    let revoked_id = revoked["token"]["id"].as_str().unwrap();
    let reply = call(
        addr,
        Method::DELETE,
        &format!("/tokens/{revoked_id}"),
        7,
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = call(
        addr,
        Method::POST,
        &format!("/tokens/{revoked_id}/rotate"),
        7,
        Some(json!({})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(json(&reply)["code"], "token_inactive");

    // Bad overlaps, another method, another site.
    for bad in [json!(-1), json!(30 * 86_400 + 1), json!("1h")] {
        let reply = call(
            addr,
            Method::POST,
            &format!("/tokens/{new_id}/rotate"),
            7,
            Some(json!({ "overlap_seconds": bad })),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(json(&reply)["problems"][0]["field"], "overlap_seconds");
    }
    let reply = call(
        addr,
        Method::GET,
        &format!("/tokens/{new_id}/rotate"),
        7,
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "POST");
    let cross = Request::post(format!("http://{addr}{BASE}/tokens/{new_id}/rotate"))
        .header("x-test-user", "7")
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from("{}")))
        .unwrap();
    let reply = common::request(cross).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(json(&reply)["code"], "cross_origin");
    // No overlap: the old one stops at once.
    let reply = call(
        addr,
        Method::POST,
        &format!("/tokens/{new_id}/rotate"),
        7,
        Some(json!({})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(json(&reply)["previous"]["status"], "revoked");
    assert_eq!(
        bearer(addr, "/orders", &rotated).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_long_list_comes_in_pages_and_a_cap_stops_a_flood() {
    let clock = ManualClock::new(datetime!(2030-01-01 00:00 UTC));
    let tokens = tokens(&clock);
    let addr = serve(&tokens, TokenPage::new(tokens.clone(), BASE)).await;
    for i in 0..230 {
        if i % 3 == 0 {
            clock.advance(Duration::seconds(1));
        }
        tokens
            .create(7, format!("token {i}"), ["orders:read"])
            .await
            .unwrap();
    }
    let first = call(addr, Method::GET, "/tokens", 7, None).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        json(&first).as_array().unwrap().len(),
        50,
        "the default page"
    );
    let mut seen: Vec<String> = Vec::new();
    let mut url = format!("{BASE}/tokens?limit=100");
    let mut sizes = Vec::new();
    loop {
        let reply = call(addr, Method::GET, &url, 7, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        sizes.push(reply.body.len());
        for token in json(&reply).as_array().unwrap() {
            seen.push(token["name"].as_str().unwrap().to_owned());
        }
        let Some(link) = reply.headers.get("link") else {
            break;
        };
        let link = link.to_str().unwrap();
        assert!(link.ends_with(">; rel=\"next\""), "{link}");
        url = link[1..link.find('>').unwrap()].to_owned();
        assert!(url.starts_with(&format!("{BASE}/tokens?after=")), "{url}");
    }
    assert_eq!(sizes.len(), 3);
    let all: Vec<String> = tokens
        .list(&7)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(seen, all, "every token once, newest first");
    let largest = sizes.iter().max().unwrap();
    eprintln!("230 tokens in pages of 100: answers of {sizes:?} bytes");
    assert!(*largest < 60_000, "a page is bounded: {largest} bytes");

    for bad in [
        "?limit=0",
        "?limit=101",
        "?limit=ten",
        "?after=123_nope",
        "?page=2",
    ] {
        let reply = call(addr, Method::GET, &format!("/tokens{bad}"), 7, None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        let body = json(&reply);
        assert_eq!(body["code"], "invalid_query", "{bad}");
        assert!(
            !reply.body.contains("nope") && !reply.body.contains("ten"),
            "{body}"
        );
    }

    // With a cap, the flood stops at the cap, and the page names it.
    let capped = Tokens::new(MemoryStore::<i64>::new(), common::registry()).max_tokens_per_user(20);
    let addr = serve(&capped, TokenPage::new(capped.clone(), BASE)).await;
    for i in 0..20 {
        create(addr, 7, &format!("token {i}"), &[]).await;
    }
    let reply = call(
        addr,
        Method::POST,
        "/tokens",
        7,
        Some(json!({"name": "one more"})),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    let body = json(&reply);
    assert_eq!(
        (&body["error"], &body["code"]),
        (&json!("invalid_request"), &json!("token_limit"))
    );
    assert!(body["message"].as_str().unwrap().contains("20"), "{body}");
    assert_eq!(body["problems"][0]["field"], "tokens");
    assert_eq!(capped.list(&7).await.unwrap().len(), 20);
    // Another user is not held back.
    create(addr, 8, "mine", &[]).await;
}

#[tokio::test]
async fn tokens_near_expiry_and_idle_ones_are_marked() {
    let clock = ManualClock::new(datetime!(2030-01-01 00:00 UTC));
    let tokens = tokens(&clock).idle_lifetime(Duration::days(20));
    let addr = serve(&tokens, TokenPage::new(tokens.clone(), BASE)).await;
    let reply = call(
        addr,
        Method::POST,
        "/tokens",
        7,
        Some(json!({"name": "monthly", "expires_in_days": 30})),
    )
    .await;
    let created = json(&reply);
    assert_eq!(created["token"]["expires_soon"], false);
    assert_eq!(created["token"]["expires_in_seconds"], 30 * 86_400);

    clock.advance(Duration::days(19));
    // A use, written back to the store, keeps it from going idle.
    tokens
        .store()
        .touch(&[(
            created["token"]["id"].as_str().unwrap().parse().unwrap(),
            clock_now(&clock),
        )])
        .await
        .unwrap();
    clock.advance(Duration::days(5));
    let listed = json(&call(addr, Method::GET, "/tokens", 7, None).await);
    assert_eq!(listed[0]["status"], "active");
    assert_eq!(listed[0]["expires_soon"], true, "{}", listed[0]);
    assert_eq!(listed[0]["expires_in_seconds"], 6 * 86_400);

    // A wider window, configured on the page.
    let wide = TokenPage::new(tokens.clone(), BASE).expiry_warning(Duration::days(60));
    let addr_wide = serve(&tokens, wide).await;
    let other = create(addr_wide, 8, "fresh", &[]).await;
    assert_eq!(
        other["token"]["expires_soon"], false,
        "a year is not within 60 days"
    );
    let page = call(addr_wide, Method::GET, "/", 8, None).await;
    assert!(
        page.body
            .contains(&format!("data-expiry-warning=\"{}\"", 60 * 86_400))
    );

    // Unused for 20 days: idle.
    clock.advance(Duration::days(20));
    let listed = json(&call(addr, Method::GET, "/tokens", 8, None).await);
    assert_eq!(listed[0]["status"], "idle_expired");
    assert_eq!(listed[0]["expires_in_seconds"], Value::Null);
    let id = listed[0]["id"].as_str().unwrap();
    let reply = call(
        addr,
        Method::POST,
        &format!("/tokens/{id}/rotate"),
        8,
        Some(json!({})),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::CONFLICT,
        "an idle token is not regenerated"
    );
}

fn clock_now(clock: &ManualClock) -> time::OffsetDateTime {
    use tower_pat::clock::Clock;
    clock.now()
}

fn admin_registry() -> ScopeRegistry {
    ScopeRegistry::new()
        .scope("orders:read", "See your orders")
        .scope("admin", "See every user's orders")
        .allow_wildcard(true)
}

/// Without a grant policy every signed-in user may grant every scope, the wildcard
/// included when the registry allows it: any user mints a `*` token through the API and
/// passes an admin-only check. That is the documented default; a policy closes it.
#[tokio::test]
async fn without_a_policy_any_user_can_mint_a_wildcard_token() {
    let tokens = Tokens::new(MemoryStore::<i64>::new(), admin_registry());
    let addr = serve(&tokens, TokenPage::new(tokens.clone(), BASE)).await;
    let minted = create(addr, 2, "all of it", &["*"]).await;
    assert_eq!(bearer(addr, "/admin", &minted).await, StatusCode::OK);
    let scopes = json(&call(addr, Method::GET, "/scopes", 2, None).await);
    let ids: Vec<_> = scopes
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    assert_eq!(ids, [json!("orders:read"), json!("admin"), json!("*")]);
}

#[tokio::test]
async fn a_user_grants_only_what_the_policy_allows() {
    const ADMIN: i64 = 1;
    const USER: i64 = 2;
    let admins = Arc::new(Mutex::new(HashSet::from([ADMIN])));
    let policy = Arc::clone(&admins);
    let tokens =
        Tokens::new(MemoryStore::<i64>::new(), admin_registry()).grantable(move |user: &i64| {
            let admin = policy.lock().unwrap().contains(user);
            let names: &[&str] = if admin {
                &["orders:read", "admin", "*"]
            } else {
                &["orders:read"]
            };
            Scopes::try_from_iter(names).unwrap()
        });
    let addr = serve(&tokens, TokenPage::new(tokens.clone(), BASE)).await;

    // The same request that worked without a policy is refused, naming the scope.
    for scope in ["*", "admin"] {
        let reply = call(
            addr,
            Method::POST,
            "/tokens",
            USER,
            Some(json!({"name": "all of it", "scopes": [scope]})),
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            reply.body
        );
        let problem = &json(&reply)["problems"][0];
        assert_eq!(problem["field"], "scopes");
        assert_eq!(problem["message"], format!("you may not grant \"{scope}\""));
    }
    assert!(
        tokens.list(&USER).await.unwrap().is_empty(),
        "nothing stored"
    );
    // Through the facade too.
    assert!(matches!(
        tokens.create(USER, "x", ["*"]).await,
        Err(tower_pat::TokenError::NotGrantable(ref s)) if s == "*"
    ));

    // The page and the scope list show each user what they may grant.
    let user_scopes = json(&call(addr, Method::GET, "/scopes", USER, None).await);
    assert_eq!(
        user_scopes,
        json!([{"id": "orders:read", "description": "See your orders", "default": false}])
    );
    let user_page = call(addr, Method::GET, "/", USER, None).await.body;
    assert!(user_page.contains("value=\"orders:read\""));
    assert!(!user_page.contains("value=\"admin\"") && !user_page.contains("value=\"*\""));
    let admin_page = call(addr, Method::GET, "/", ADMIN, None).await.body;
    assert!(admin_page.contains("value=\"admin\"") && admin_page.contains("value=\"*\""));

    // The admin mints an admin token; once demoted, it cannot be regenerated.
    let minted = create(addr, ADMIN, "ops", &["admin"]).await;
    assert_eq!(bearer(addr, "/admin", &minted).await, StatusCode::OK);
    admins.lock().unwrap().clear();
    let id = minted["token"]["id"].as_str().unwrap();
    let reply = call(
        addr,
        Method::POST,
        &format!("/tokens/{id}/rotate"),
        ADMIN,
        Some(json!({})),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(json(&reply)["problems"][0]["field"], "scopes");
    assert!(
        json(&reply)["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("admin")
    );
}

#[tokio::test]
async fn names_must_read_as_they_are_and_refusals_stay_short() {
    let tokens = tokens(&ManualClock::new(datetime!(2030-01-01 00:00 UTC)));
    let addr = serve(&tokens, TokenPage::new(tokens.clone(), BASE)).await;
    for (name, needle) in [
        ("invoice\u{202E}fdp.exe", "bidirectional"),
        ("\u{2066}admin\u{2069}", "bidirectional"),
        ("\u{200B}\u{200D}\u{FEFF}", "visible"),
        ("\u{3164}", "visible"),
    ] {
        let reply = call(
            addr,
            Method::POST,
            "/tokens",
            7,
            Some(json!({ "name": name })),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{name:?}");
        let problem = &json(&reply)["problems"][0];
        assert_eq!(problem["field"], "name");
        assert!(
            problem["message"].as_str().unwrap().contains(needle),
            "{problem}"
        );
        assert!(!reply.body.contains(name), "the name is not echoed");
    }
    assert!(tokens.list(&7).await.unwrap().is_empty());

    // Bodies just under the 16 KiB limit, built to draw the longest answer.
    let long = "x".repeat(16_000);
    let many_scopes: Vec<String> = (0..1_200).map(|i| format!("bad:{i:05}")).collect();
    let many_fields: serde_json::Map<String, Value> = (0..700)
        .map(|i| (format!("f{i:05}{}", "y".repeat(10)), json!(1)))
        .collect();
    let mut long_field = serde_json::Map::new();
    long_field.insert("name".into(), json!("n"));
    long_field.insert(long.clone(), json!(true));
    let bodies = [
        json!({"name": long}),
        json!({"name": "n", "scopes": [long]}),
        json!({"name": "n", "scopes": many_scopes}),
        Value::Object(many_fields),
        Value::Object(long_field),
    ];
    let mut worst = 0.0f64;
    for body in bodies {
        let sent = body.to_string().len();
        assert!(sent <= 16 * 1024, "{sent}");
        let reply = call(addr, Method::POST, "/tokens", 7, Some(body)).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            &reply.body[..200.min(reply.body.len())]
        );
        assert!(
            reply.body.len() <= 2048,
            "{} bytes for {sent} sent",
            reply.body.len()
        );
        assert!(!reply.body.contains(&"x".repeat(41)), "no long echo");
        worst = worst.max(reply.body.len() as f64 / sent as f64);
    }
    eprintln!("the largest 422 answer is {worst:.3} times its request");
    assert!(worst < 1.0);
}
