//! The demo is what people copy: its sign-in bounds what an attacker can make it spend
//! (argon2 at most two at a time, a per-address allowance of attempts), its forms refuse
//! another site, and its order list stays bounded. Over a real socket, against the very
//! application `cargo run --example demo` serves.

use std::net::SocketAddr;

use http::{Method, Request, StatusCode, header};
use http_body_util::Full;
use hyper::body::Bytes;
use tower_pat::SqliteStore;

use crate::{common, demo_app as app};

/// The demo, served with each connection's address (as `main.rs` serves it).
async fn serve() -> (SocketAddr, app::Demo) {
    serve_with(axum::Router::new()).await
}

/// The same, with `extra` routes beside the demo's (its `/metrics`, say). Builds the demo
/// on the caller's thread, so a thread-local metrics recorder set before counts it.
pub(crate) async fn serve_with(extra: axum::Router) -> (SocketAddr, app::Demo) {
    let store = SqliteStore::<i64>::open(":memory:")
        .await
        .expect("an in-memory SQLite store");
    store.migrate().await.expect("migrations");
    let demo = app::demo(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let service = demo
        .router
        .clone()
        .merge(extra)
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.expect("axum server") });
    (addr, demo)
}

fn form(addr: SocketAddr, path: &str, body: &str, origin: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}{path}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(origin) = origin {
        req = req.header(header::ORIGIN, origin);
    }
    req.body(Full::from(body.to_owned())).expect("a request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_sites_form_cannot_sign_in_or_out() {
    let (addr, _demo) = serve().await;
    let good = "username=alice&password=wonderland";
    // An old browser: no Sec-Fetch-Site, only an Origin from elsewhere.
    for path in ["/login", "/logout"] {
        let reply = common::request(form(addr, path, good, Some("https://evil.example"))).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{path}: {}",
            reply.body
        );
        assert!(reply.body.contains("cross_origin"), "{}", reply.body);
        assert!(
            !reply.headers.contains_key(header::SET_COOKIE),
            "{path}: no session for a refused form"
        );
    }
    // The demo's own page posts with its own origin: signed in, sent to the token page.
    let own = format!("http://{addr}");
    let reply = common::request(form(addr, "/login", good, Some(&own))).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.headers[header::LOCATION], app::TOKEN_PAGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_hash_two_at_a_time_and_an_address_gets_ten_tries() {
    let (addr, demo) = serve().await;
    // Sixteen wrong passwords at once from one address.
    let attempts: Vec<_> = (0..16)
        .map(|i| {
            let body = format!("username=alice&password=guess{i}");
            tokio::spawn(common::request(form(addr, "/login", &body, None)))
        })
        .collect();
    let mut unauthorized = 0;
    let mut throttled = 0;
    for attempt in attempts {
        let reply = attempt.await.expect("the attempt ran");
        match reply.status {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                throttled += 1;
                let wait: u64 = reply.headers[header::RETRY_AFTER]
                    .to_str()
                    .expect("ASCII")
                    .parse()
                    .expect("Retry-After in seconds");
                assert!(
                    (1..=app::SIGN_IN_PERIOD_SECS + 1).contains(&wait),
                    "Retry-After: {wait}"
                );
                assert!(reply.body.contains("sign_in_throttled"), "{}", reply.body);
            }
            other => panic!("a wrong password answered {other}: {}", reply.body),
        }
    }
    assert_eq!(
        (unauthorized, throttled),
        (
            app::SIGN_IN_BURST as usize,
            16 - app::SIGN_IN_BURST as usize
        ),
        "ten tries, then the allowance is spent"
    );
    // Ten verifications were asked for at once; two ran at a time.
    let peak = demo.hashes_at_once_peak();
    assert!(
        (1..=app::HASHES_AT_ONCE).contains(&peak),
        "argon2 ran {peak} at once"
    );
    // The right password is throttled too while the allowance is spent: the throttle
    // answers before any hashing.
    let reply = common::request(form(
        addr,
        "/login",
        "username=alice&password=wonderland",
        None,
    ))
    .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
}

fn post_order(addr: SocketAddr, token: &str, body: String) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}/api/orders"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::from(body))
        .expect("a request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_list_stays_bounded() {
    let (addr, demo) = serve().await;
    let bob = 2;
    let token = demo
        .tokens
        .create(bob, "orders", ["orders:create", "orders:read"])
        .await
        .expect("a token");
    let token = token.token.expose_secret().to_owned();

    // A body over 4 KiB is refused before it is read whole.
    let big = format!(r#"{{"item":"{}"}}"#, "x".repeat(app::MAX_ORDER_BODY));
    let reply = common::request(post_order(addr, &token, big)).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.body
    );

    // An item name over 100 characters is refused, as an order, not a transport matter.
    let long = format!(r#"{{"item":"{}"}}"#, "é".repeat(app::MAX_ITEM_CHARS + 1));
    let reply = common::request(post_order(addr, &token, long)).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    let exact = format!(r#"{{"item":"{}"}}"#, "é".repeat(app::MAX_ITEM_CHARS));
    let reply = common::request(post_order(addr, &token, exact)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);

    // Bob had one order and placed one: 98 more fill his list, the next is refused.
    for i in 0..98 {
        let reply =
            common::request(post_order(addr, &token, format!(r#"{{"item":"n{i}"}}"#))).await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "order {i}: {}",
            reply.body
        );
    }
    let reply = common::request(post_order(
        addr,
        &token,
        r#"{"item":"one more"}"#.to_owned(),
    ))
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(reply.body.contains("too_many_orders"), "{}", reply.body);

    let reply = common::bearer(addr, "/api/orders", &token).await;
    assert_eq!(reply.status, StatusCode::OK);
    let list: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(
        list["orders"].as_array().map(Vec::len),
        Some(app::MAX_ORDERS_PER_USER)
    );
}
