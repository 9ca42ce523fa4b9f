//! The audit trail (`tower_pat::audit`): every lifecycle change written through `tracing`
//! with its documented fields and handed to the application's sink after it committed;
//! a sink that hangs or fails never holds up a request or a lifecycle call (events beyond
//! the queue are dropped and counted, with one warning); the layer's refusals are
//! rate-limited and summarized; no event holds a secret.
//!
//! Run with `--nocapture` to see the trail of one token's life as `tracing` prints it.

use crate::common;

use std::{
    io::Write as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration as StdDuration,
};

use axum::{Router, routing::get};
use common::LogCapture;
use http::StatusCode;
use time::{Duration, macros::datetime};
use tower_pat::{
    AccessToken, MemoryStore, Tokens,
    audit::{Audit, AuditEvent, AuditKind, AuditSink, SinkError},
    clock::ManualClock,
    manage::{SignedIn, TokenPage},
};

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Keeps every event it is given.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<AuditEvent<i64>>>>);

#[tower_pat::async_trait]
impl AuditSink<i64> for Recorder {
    async fn record(&self, event: &AuditEvent<i64>) -> Result<(), SinkError> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

impl Recorder {
    fn kinds(&self) -> Vec<AuditKind> {
        self.0.lock().unwrap().iter().map(|e| e.kind).collect()
    }
}

/// Never answers.
struct Hangs(Arc<AtomicUsize>);

#[tower_pat::async_trait]
impl AuditSink<i64> for Hangs {
    async fn record(&self, _event: &AuditEvent<i64>) -> Result<(), SinkError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }
}

/// Always fails.
struct Fails;

#[tower_pat::async_trait]
impl AuditSink<i64> for Fails {
    async fn record(&self, _event: &AuditEvent<i64>) -> Result<(), SinkError> {
        Err("the audit table is gone".into())
    }
}

async fn serve(tokens: &Tokens<MemoryStore<i64>>) -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/orders",
            get(|token: AccessToken| async move { format!("user {}", token.user_id()) }),
        )
        .layer(tokens.layer());
    common::serve(app).await
}

/// A token's life, in order, as the sink gets it and as `tracing` prints it; nothing in
/// it is a secret.
#[tokio::test]
async fn a_tokens_life_is_written_in_order_after_each_change() {
    let logs = LogCapture::start();
    let clock = ManualClock::new(datetime!(2030-01-01 00:00 UTC));
    let trail = Recorder::default();
    let tokens = Tokens::new(MemoryStore::<i64>::new(), common::registry())
        .clock(clock.clone())
        .audit(Audit::builder().sink(trail.clone()).build());
    let addr = serve(&tokens).await;

    let created = tokens.create(7, "deploy", ["orders:read"]).await.unwrap();
    assert_eq!(
        common::bearer(addr, "/orders", created.token.expose_secret())
            .await
            .status,
        StatusCode::OK
    );
    clock.advance(Duration::minutes(1));
    let rotated = tokens
        .rotate(&7, created.record.id, Duration::minutes(10))
        .await
        .unwrap();
    clock.advance(Duration::minutes(10));
    let refused = common::bearer(addr, "/orders", created.token.expose_secret()).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    // The layer told the trail: the old token was met after its overlap.
    tokens.revoke(&7, rotated.record.id).await.unwrap();
    // Failures record nothing.
    assert!(tokens.revoke(&8, rotated.record.id).await.is_err());
    assert!(tokens.create(7, "", ["orders:read"]).await.is_err());
    assert_eq!(tokens.revoke_all(&9).await.unwrap(), 0); // nothing changed: no event
    clock.advance(Duration::days(2));
    assert_eq!(tokens.prune(Duration::days(1)).await.unwrap(), 2);
    tokens.audit_handle().flush().await;

    assert_eq!(
        trail.kinds(),
        [
            AuditKind::Created,
            AuditKind::Rotated,
            AuditKind::ExpiredOnUse,
            AuditKind::Revoked,
            AuditKind::Pruned,
        ]
    );
    let events = trail.0.lock().unwrap().clone();
    // Every event is dated by the facade's clock, the layer's included (it shares it).
    let old_expired = datetime!(2030-01-01 00:11 UTC);
    assert_eq!(
        events[2].at, old_expired,
        "the layer's event is dated by its clock"
    );
    assert_eq!(events[0].token_id, Some(created.record.id));
    assert_eq!(events[0].user_id, Some(7));
    assert_eq!(events[0].name.as_deref(), Some("deploy"));
    assert_eq!(events[0].source, "app");
    assert_eq!(events[0].expires_at, Some(created.record.expires_at));
    assert_eq!(events[1].token_id, Some(created.record.id));
    assert_eq!(events[1].successor, Some(rotated.record.id));
    assert_eq!(
        events[1].expires_at,
        Some(datetime!(2030-01-01 00:11 UTC)),
        "when the old token stops"
    );
    assert_eq!(events[2].source, "layer");
    assert_eq!(events[3].token_id, Some(rotated.record.id));
    assert_eq!(events[3].name.as_deref(), Some("deploy"));
    assert_eq!(events[4].count, Some(2));
    assert_eq!(tokens.audit_handle().stats().delivered, 5);

    let printed = logs.text();
    let trail_lines: Vec<&str> = printed
        .lines()
        .filter(|l| l.contains("tower_pat::audit"))
        .collect();
    say("the trail of one token's life, as tracing prints it:");
    for line in &trail_lines {
        say(&format!("  {line}"));
    }
    assert_eq!(trail_lines.len(), 5, "{printed}");
    for (line, kind) in
        trail_lines
            .iter()
            .zip(["created", "rotated", "expired_on_use", "revoked", "pruned"])
    {
        assert!(line.contains(&format!("audit.kind=\"{kind}\"")), "{line}");
    }
    assert!(trail_lines[0].contains(&format!("token.id={}", created.record.id)));
    assert!(trail_lines[0].contains("user.id=7"));
    assert!(
        trail_lines[0].contains(r#"token.name="\"deploy\"""#)
            || trail_lines[0].contains(r#"token.name="deploy""#),
        "{}",
        trail_lines[0]
    );
    assert!(trail_lines[1].contains(&format!("successor.id={}", rotated.record.id)));
    assert!(trail_lines[4].contains("audit.count=2"));

    // No secret anywhere: neither plaintext nor hash.
    let everything = format!("{printed}{events:?}");
    for secret in [created.token.expose_secret(), rotated.token.expose_secret()] {
        assert!(!everything.contains(secret));
    }
    for hash in [
        created.record.token_hash.to_hex(),
        rotated.record.token_hash.to_hex(),
    ] {
        assert!(!everything.contains(&hash));
    }
}

/// A sink that never answers: every lifecycle call and request still completes; events
/// beyond the queue are dropped and counted, with one warning.
#[tokio::test]
async fn a_sink_that_hangs_holds_nothing_up() {
    let logs = LogCapture::start();
    let calls = Arc::new(AtomicUsize::new(0));
    let audit = Audit::builder()
        .sink(Hangs(Arc::clone(&calls)))
        .queue_capacity(8)
        .sink_timeout(None)
        .build();
    let tokens = Tokens::new(MemoryStore::<i64>::new(), common::registry()).audit(audit);
    let addr = serve(&tokens).await;

    let work = async {
        for i in 0..100 {
            let created = tokens.create(i, "t", ["orders:read"]).await.unwrap();
            let reply = common::bearer(addr, "/orders", created.token.expose_secret()).await;
            assert_eq!(reply.status, StatusCode::OK);
            tokens.revoke(&i, created.record.id).await.unwrap();
        }
    };
    // A bound on the whole test, so that a regression fails instead of hanging CI.
    tokio::time::timeout(StdDuration::from_secs(60), work)
        .await
        .expect("200 lifecycle calls and 100 requests complete while the sink hangs");

    let stats = tokens.audit_handle().stats();
    assert_eq!(stats.recorded, 200);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the drain task waits on the first"
    );
    assert_eq!(stats.delivered, 0);
    // One in the sink's hands, eight queued, the rest dropped.
    assert_eq!(stats.dropped, 200 - 1 - 8);
    let warnings = logs
        .text()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("the audit sink does not keep up"))
        .count();
    assert_eq!(warnings, 1, "one warning, not one per dropped event");
    say(&format!("a hanging sink: {stats:?}"));
}

/// A sink that fails, and one that does not answer within the sink timeout: counted and
/// warned about once, the trail moves on.
#[tokio::test]
async fn a_failing_or_slow_sink_is_counted() {
    let logs = LogCapture::start();
    let tokens = Tokens::new(MemoryStore::<i64>::new(), common::registry())
        .audit(Audit::builder().sink(Fails).build());
    for i in 0..5 {
        tokens.create(i, "t", ["orders:read"]).await.unwrap();
    }
    tokens.audit_handle().flush().await;
    let stats = tokens.audit_handle().stats();
    assert_eq!((stats.recorded, stats.failed, stats.delivered), (5, 5, 0));
    let text = logs.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("the audit sink failed"))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains("the audit table is gone"));

    let calls = Arc::new(AtomicUsize::new(0));
    let tokens = Tokens::new(MemoryStore::<i64>::new(), common::registry()).audit(
        Audit::builder()
            .sink(Hangs(Arc::clone(&calls)))
            .sink_timeout(Some(StdDuration::from_millis(20)))
            .build(),
    );
    for i in 0..3 {
        tokens.create(i, "t", ["orders:read"]).await.unwrap();
    }
    tokens.audit_handle().flush().await;
    let stats = tokens.audit_handle().stats();
    assert_eq!((stats.failed, calls.load(Ordering::SeqCst)), (3, 3));
}

/// The layer's refusals (and expired or idle tokens used) share a per-second budget; the
/// rest are counted and told in one `suppressed` event.
#[tokio::test]
async fn refusals_are_rate_limited_and_summarized() {
    let trail = Recorder::default();
    let audit = Audit::<i64>::builder()
        .sink(trail.clone())
        .refused_per_second(5)
        .build();
    for _ in 0..1000 {
        audit.refused("unknown_token", None, None);
    }
    audit.flush().await;
    let stats = audit.stats();
    let events = trail.0.lock().unwrap().clone();
    let refused = events
        .iter()
        .filter(|e| e.kind == AuditKind::Refused)
        .count();
    let told: u64 = events
        .iter()
        .filter(|e| e.kind == AuditKind::Suppressed)
        .map(|e| e.count.unwrap_or(0))
        .sum();
    say(&format!(
        "1000 refusals: {refused} recorded, {told} told as suppressed in {} summary events",
        events
            .iter()
            .filter(|e| e.kind == AuditKind::Suppressed)
            .count()
    ));
    // The loop may straddle a second: at most two budgets.
    assert!((5..=10).contains(&refused), "{refused}");
    assert_eq!(refused as u64 + told, 1000);
    assert_eq!(stats.suppressed, told);
    assert!(events.iter().all(|e| e.source == "layer"));
    assert_eq!(events[0].code, Some("unknown_token"));
}

/// The drain task tells what a flood suppressed a second after, without a flush.
#[tokio::test]
async fn the_suppressed_count_is_told_a_second_later() {
    let trail = Recorder::default();
    let audit = Audit::<i64>::builder()
        .sink(trail.clone())
        .refused_per_second(2)
        .build();
    for _ in 0..10 {
        audit.refused("malformed_token", None, None);
    }
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(5);
    while !trail.kinds().contains(&AuditKind::Suppressed) {
        assert!(tokio::time::Instant::now() < deadline, "nothing told");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    let told: u64 = trail
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| (e.kind == AuditKind::Suppressed).then_some(e.count.unwrap_or(0)))
        .sum();
    assert_eq!(told + 2, 10);
}

/// The page's changes name the page as their source; a facade can name its own.
#[tokio::test]
async fn events_name_their_source() {
    let trail = Recorder::default();
    let tokens = Tokens::new(MemoryStore::<i64>::new(), common::registry())
        .audit(Audit::builder().sink(trail.clone()).build());
    let page = TokenPage::new(tokens.clone(), "/t");
    let app = Router::new()
        .nest_service("/t", page)
        .layer(axum::middleware::map_request(
            |mut req: http::Request<axum::body::Body>| async move {
                req.extensions_mut().insert(SignedIn(7_i64));
                req
            },
        ));
    let addr = common::serve(app).await;
    let req = http::Request::post(format!("http://{addr}/t/tokens"))
        .header("content-type", "application/json")
        .header("sec-fetch-site", "same-origin")
        .body(http_body_util::Full::new(hyper::body::Bytes::from(
            r#"{"name":"from the page"}"#,
        )))
        .unwrap();
    assert_eq!(common::request(req).await.status, StatusCode::CREATED);
    let cli = tokens.audit_source("cli");
    cli.create(7, "from the cli", ["orders:read"])
        .await
        .unwrap();
    tokens
        .create(7, "from the app", ["orders:read"])
        .await
        .unwrap();
    tokens.audit_handle().flush().await;
    let sources: Vec<String> = trail
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.source.to_string())
        .collect();
    assert_eq!(sources, ["page", "cli", "app"]);
}
