//! The `metrics` feature over a real axum server on loopback: a Prometheus recorder (the
//! exporter the demo serves) counts what the requests did, exactly: accepted, missing
//! credentials, unknown (twice: the store, then the negative cache), revoked, a store
//! failure, a scope refusal; cache hits and misses; store lookups and the time they took; a batch of uses
//! written back; token changes.
//! The stack is built with the recorder as the thread's, so its counters are this test's
//! alone, whatever other tests run beside it.

#![cfg(feature = "metrics")]

use crate::common;

use axum::{Router, routing::get};
use common::{Fault, Faulty, registry};
use http::StatusCode;
use metrics_exporter_prometheus::PrometheusBuilder;
use tower_pat::{MemoryStore, Tokens, store::CachedStore};

/// The value of one series (`name{labels}`) in Prometheus' text format, if it is there.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a number"))
}

#[tokio::test]
async fn requests_cache_and_changes_are_counted_exactly() {
    // A token of the same format that this server's store has never seen.
    let stranger = Tokens::new(MemoryStore::<i64>::new(), registry())
        .create(9, "elsewhere", ["orders:read"])
        .await
        .unwrap()
        .token;

    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    // The test's runtime runs on this thread only: the server's tasks count here too.
    let _local = metrics::set_default_local_recorder(&recorder);

    // A store that never answers at once, as a database: every miss waits for it.
    let faulty = Faulty::new(MemoryStore::<i64>::new());
    faulty.async_only(true);
    let tokens = Tokens::new(CachedStore::new(faulty), registry());
    let layer = tokens.layer();
    let app = Router::new()
        .route(
            "/orders",
            get(|| async { "orders" }).layer(tokens.require_all(["orders:read"])),
        )
        .layer(layer.clone());
    let addr = common::serve(app).await;

    let reader = tokens.create(1, "reader", ["orders:read"]).await.unwrap();
    let other = tokens.create(2, "other", ["user:read"]).await.unwrap();
    let status = |token: Option<String>| async move {
        match token {
            Some(token) => common::bearer(addr, "/orders", &token).await.status,
            None => common::send(addr, "/orders", &[]).await.status,
        }
    };
    let secret = |t: &tower_pat::token::PlaintextToken| t.expose_secret().to_owned();

    // A miss (the store is asked), then a hit.
    assert_eq!(status(Some(secret(&reader.token))).await, StatusCode::OK);
    assert_eq!(status(Some(secret(&reader.token))).await, StatusCode::OK);
    assert_eq!(status(None).await, StatusCode::UNAUTHORIZED);
    // Unknown: the store says so, then the negative cache does.
    assert_eq!(
        status(Some(secret(&stranger))).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(Some(secret(&stranger))).await,
        StatusCode::UNAUTHORIZED
    );
    // Admitted by the layer, refused by the scope check.
    assert_eq!(
        status(Some(secret(&other.token))).await,
        StatusCode::FORBIDDEN
    );
    // Revoked through the cache: evicted, asked again, refused.
    tokens.revoke(&1, reader.record.id).await.unwrap();
    assert_eq!(
        status(Some(secret(&reader.token))).await,
        StatusCode::UNAUTHORIZED
    );

    // The store fails once: 503, and nothing cached.
    let third = tokens.create(3, "third", ["orders:read"]).await.unwrap();
    tokens.store().inner().schedule([Fault::Fail], Fault::Pass);
    assert_eq!(
        status(Some(secret(&third.token))).await,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // The two tokens' uses (one each per interval), written in one batch; a rotation.
    assert_eq!(layer.flush().await, 2);
    tokens
        .rotate(&2, other.record.id, time::Duration::ZERO)
        .await
        .unwrap();

    let text = prometheus.render();
    let expected = [
        (r#"tower_pat_requests_total{outcome="accepted"}"#, 3.0),
        (
            r#"tower_pat_requests_total{outcome="missing_credentials"}"#,
            1.0,
        ),
        (r#"tower_pat_requests_total{outcome="unknown_token"}"#, 2.0),
        (r#"tower_pat_requests_total{outcome="revoked_token"}"#, 1.0),
        (
            r#"tower_pat_requests_total{outcome="store_unavailable"}"#,
            1.0,
        ),
        (r#"tower_pat_requests_total{outcome="expired_token"}"#, 0.0),
        (
            r#"tower_pat_scope_refusals_total{code="insufficient_scope"}"#,
            1.0,
        ),
        (r#"tower_pat_cache_lookups_total{result="hit"}"#, 1.0),
        (
            r#"tower_pat_cache_lookups_total{result="negative_hit"}"#,
            1.0,
        ),
        (r#"tower_pat_cache_lookups_total{result="miss"}"#, 5.0),
        // The revoked token, and the rotated one.
        (r#"tower_pat_cache_evictions_total{reason="revoked"}"#, 2.0),
        (r#"tower_pat_store_lookups_total{result="found"}"#, 4.0),
        (r#"tower_pat_store_lookups_total{result="not_found"}"#, 2.0),
        (r#"tower_pat_store_lookups_total{result="error"}"#, 1.0),
        // Only the misses waited for the store.
        ("tower_pat_store_lookup_duration_seconds_count", 5.0),
        (r#"tower_pat_token_changes_total{change="created"}"#, 3.0),
        (r#"tower_pat_token_changes_total{change="revoked"}"#, 1.0),
        (r#"tower_pat_token_changes_total{change="rotated"}"#, 1.0),
        (r#"tower_pat_last_used_flushes_total{result="ok"}"#, 1.0),
        ("tower_pat_last_used_uses_total", 2.0),
    ];
    for (series, want) in expected {
        assert_eq!(value(&text, series), Some(want), "{series} in\n{text}");
    }
    // No label names a token, its hash or its id.
    for token in [&reader, &other] {
        for named in [
            secret(&token.token),
            token.record.id.to_string(),
            token.record.token_hash.to_hex(),
        ] {
            assert!(!text.contains(&named), "{named} in\n{text}");
        }
    }
}

/// The demo's `GET /metrics`, over a socket, after a few API calls: Prometheus' text,
/// with the counters the calls moved.
#[tokio::test]
async fn the_demo_serves_what_it_counted() {
    use crate::demo_app as app;

    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let (addr, demo) = crate::demo::serve_with(app::metrics(prometheus)).await;

    let token = demo
        .tokens
        .create(app::ADMIN, "metrics", ["user:read"])
        .await
        .unwrap()
        .token;
    let token = token.expose_secret();
    assert_eq!(
        common::bearer(addr, "/api/user", token).await.status,
        StatusCode::OK
    );
    assert_eq!(
        common::bearer(addr, "/api/orders", token).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        common::send(addr, "/api/user", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );

    let reply = common::send(addr, "/metrics", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers[http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    for (series, want) in [
        (r#"tower_pat_requests_total{outcome="accepted"}"#, 2.0),
        (
            r#"tower_pat_requests_total{outcome="missing_credentials"}"#,
            1.0,
        ),
        (
            r#"tower_pat_scope_refusals_total{code="insufficient_scope"}"#,
            1.0,
        ),
        (r#"tower_pat_token_changes_total{change="created"}"#, 1.0),
    ] {
        assert_eq!(
            value(&reply.body, series),
            Some(want),
            "{series} in\n{}",
            reply.body
        );
    }
    assert!(
        reply
            .body
            .contains("# TYPE tower_pat_requests_total counter")
    );
}
