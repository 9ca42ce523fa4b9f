//! The layer's side of a token's life, over a real server on loopback: idle expiry, the
//! expiry header, and the audit trail told of what the layer refuses.

use crate::common;

use std::sync::{Arc, Mutex};

use axum::{Router, routing::get};
use http::StatusCode;
use time::{Duration, macros::datetime};
use tower_pat::{
    AccessToken, MemoryStore, PatLayer, TokenStore, Tokens,
    audit::{Audit, AuditEvent, AuditKind, AuditSink, SinkError},
    auth::DEFAULT_EXPIRY_HEADER,
    clock::ManualClock,
};

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<AuditEvent<i64>>>>);

#[tower_pat::async_trait]
impl AuditSink<i64> for Recorder {
    async fn record(&self, event: &AuditEvent<i64>) -> Result<(), SinkError> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

async fn serve(layer: PatLayer<MemoryStore<i64>>) -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/orders",
            get(|token: AccessToken| async move { format!("user {}", token.user_id()) }),
        )
        .layer(layer);
    common::serve(app).await
}

#[tokio::test]
async fn a_token_unused_for_the_idle_lifetime_is_refused_with_its_own_code() {
    let clock = ManualClock::new(datetime!(2030-01-01 00:00 UTC));
    let trail = Recorder::default();
    let tokens = Tokens::new(MemoryStore::<i64>::new(), common::registry())
        .clock(clock.clone())
        .idle_lifetime(Duration::days(30))
        .audit(Audit::builder().sink(trail.clone()).build());
    let addr = serve(tokens.layer().last_used_interval(None)).await;

    let used = tokens.create(7, "used", ["orders:read"]).await.unwrap();
    let unused = tokens.create(7, "unused", ["orders:read"]).await.unwrap();
    // `used` was used on day 20 (as the flusher would have written it).
    tokens
        .store()
        .touch(&[(used.record.id, datetime!(2030-01-21 00:00 UTC))])
        .await
        .unwrap();

    // A second before day 30: both work.
    clock.set(datetime!(2030-01-30 23:59:59 UTC));
    for token in [&used, &unused] {
        let reply = common::bearer(addr, "/orders", token.token.expose_secret()).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    // Day 30 to the second: the unused token is idle, the used one is not.
    clock.set(datetime!(2030-01-31 00:00 UTC));
    let reply = common::bearer(addr, "/orders", unused.token.expose_secret()).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let challenge = reply.challenge().unwrap().to_owned();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert!(challenge.contains("unused for too long"), "{challenge}");
    let reply = common::bearer(addr, "/orders", used.token.expose_secret()).await;
    assert_eq!(reply.status, StatusCode::OK);
    // Day 50 from its use on day 20: idle too.
    clock.set(datetime!(2030-02-20 00:00 UTC));
    let reply = common::bearer(addr, "/orders", used.token.expose_secret()).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    tokens.audit_handle().flush().await;
    let idle: Vec<_> = trail
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.kind == AuditKind::IdleExpired)
        .map(|e| e.token_id)
        .collect();
    assert_eq!(idle, [Some(unused.record.id), Some(used.record.id)]);
    eprintln!(
        "idle expiry: unused token refused at 30 days to the second; used one 30 days after its last use"
    );
}

#[tokio::test]
async fn the_expiry_header_names_the_admitted_tokens_expiry() {
    let clock = ManualClock::new(datetime!(2030-01-01 00:00 UTC));
    let tokens = Tokens::new(MemoryStore::<i64>::new(), common::registry()).clock(clock);
    let name = DEFAULT_EXPIRY_HEADER;
    let addr = serve(tokens.layer().expiry_header(Some(name.clone()))).await;
    let created = tokens.create(7, "ci", ["orders:read"]).await.unwrap();

    let reply = common::bearer(addr, "/orders", created.token.expose_secret()).await;
    assert_eq!(reply.status, StatusCode::OK);
    // The default lifetime is a year.
    assert_eq!(
        reply.headers.get(&name).unwrap(),
        "Wed, 01 Jan 2031 00:00:00 GMT"
    );
    // Not on a refusal.
    let reply = common::bearer(addr, "/orders", "pat_nonsense").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers.get(&name).is_none());
    // Not unless asked for.
    let plain = serve(tokens.layer()).await;
    let reply = common::bearer(plain, "/orders", created.token.expose_secret()).await;
    assert!(reply.headers.get(&name).is_none());
}

#[tokio::test]
async fn the_layer_tells_the_trail_what_it_refuses_within_the_budget() {
    let trail = Recorder::default();
    let tokens = Tokens::new(MemoryStore::<i64>::new(), common::registry()).audit(
        Audit::builder()
            .sink(trail.clone())
            .refused_per_second(5)
            .build(),
    );
    let addr = serve(tokens.layer()).await;
    let created = tokens.create(7, "ci", ["orders:read"]).await.unwrap();
    tokens.revoke(&7, created.record.id).await.unwrap();

    let reply = common::bearer(addr, "/orders", created.token.expose_secret()).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // A flood of garbage: at most the budget reaches the trail.
    for _ in 0..50 {
        let reply = common::bearer(addr, "/orders", "garbage").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // No credentials at all: not a token's event.
    let reply = common::send(addr, "/orders", &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    tokens.audit_handle().flush().await;

    let events = trail.0.lock().unwrap().clone();
    let refused: Vec<_> = events
        .iter()
        .filter(|e| e.kind == AuditKind::Refused)
        .collect();
    assert_eq!(refused[0].code, Some("revoked_token"));
    assert_eq!(refused[0].token_id, Some(created.record.id));
    assert_eq!(refused[0].user_id, Some(7));
    assert!(
        refused.len() <= 5,
        "{} refusals recorded with a budget of 5",
        refused.len()
    );
    assert!(
        refused[1..]
            .iter()
            .all(|e| e.code == Some("malformed_token"))
    );
    assert!(tokens.audit_handle().stats().suppressed >= 45);
}
