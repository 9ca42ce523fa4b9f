//! `last_used_at` off the request path, over a real server on loopback: 10 000 requests
//! with one token from 32 concurrent tasks within one interval make exactly one write, and
//! a write that never finishes holds no request up.

use crate::common;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use common::{Fault, Faulty, registry};
use http::{Request, StatusCode, header::AUTHORIZATION};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tower_pat::{ManageTokens, MemoryStore, PatLayer, Tokens};

type Store = Faulty<MemoryStore<i64>>;

async fn serve(layer: PatLayer<Store>) -> SocketAddr {
    let app = Router::new()
        .route("/orders", get(|| async { "ok" }))
        .layer(layer);
    common::serve(app).await
}

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get_with(
    client: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
    token: &str,
) -> StatusCode {
    let req = Request::get(format!("http://{addr}/orders"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::new())
        .unwrap();
    client
        .request(req)
        .await
        .expect("the server answers")
        .status()
}

/// Sends `per_task` requests from each of `tasks` tasks at once; returns the slowest.
async fn hammer(addr: SocketAddr, tokens: Vec<String>, tasks: usize, per_task: usize) -> Duration {
    let tokens = Arc::new(tokens);
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let tokens = Arc::clone(&tokens);
            tokio::spawn(async move {
                let client = client();
                let mut slowest = Duration::ZERO;
                for i in 0..per_task {
                    let token = &tokens[(task + i) % tokens.len()];
                    let started = Instant::now();
                    assert_eq!(get_with(&client, addr, token).await, StatusCode::OK);
                    slowest = slowest.max(started.elapsed());
                }
                slowest
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for handle in handles {
        slowest = slowest.max(handle.await.unwrap());
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_from_32_tasks_within_an_interval_make_one_write() {
    let tokens = Tokens::new(Faulty::new(MemoryStore::<i64>::new()), registry());
    let created = tokens.create(1, "cli", ["orders:read"]).await.unwrap();
    // The default interval (one minute): the test runs well within it.
    let layer = tokens.layer();
    let addr = serve(layer.clone()).await;

    let started = Instant::now();
    hammer(
        addr,
        vec![created.token.expose_secret().to_owned()],
        32,
        10_000 / 32 + 1,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(60));
    // Nothing was written on the request path.
    assert_eq!(tokens.store().touch_calls(), 0);

    assert_eq!(layer.flush().await, 1);
    assert_eq!(tokens.store().touch_calls(), 1, "one write");
    assert_eq!(tokens.store().uses_touched(), 1, "of one use");
    assert_eq!(layer.flush().await, 0);
    assert_eq!(tokens.store().touch_calls(), 1);
    let record = tokens.store().inner().list(&1).await.unwrap().remove(0);
    assert!(record.last_used_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_never_finishes_holds_no_request_up() {
    let tokens = Tokens::new(Faulty::new(MemoryStore::<i64>::new()), registry());
    tokens.store().schedule_touch([], Fault::Hang);
    let mut plaintexts = Vec::new();
    for user in 0..8 {
        let created = tokens.create(user, "cli", ["orders:read"]).await.unwrap();
        plaintexts.push(created.token.into_secret());
    }
    // Uses are due every 20 ms, and the flusher (which starts by itself) waits forever
    // for its first write.
    let layer = tokens
        .layer()
        .last_used_interval(Some(time::Duration::milliseconds(20)))
        .without_store_timeout();
    let addr = serve(layer.clone()).await;

    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(1) {
        slowest = slowest.max(hammer(addr, plaintexts.clone(), 8, 25).await);
    }
    assert!(
        tokens.store().touch_calls() >= 1,
        "the flusher is stuck in a write"
    );
    // A flush of its own hangs too, and still holds no request up.
    let flushing = tokio::spawn(async move { layer.flush().await });
    slowest = slowest.max(hammer(addr, plaintexts, 8, 25).await);
    assert!(!flushing.is_finished());
    flushing.abort();
    assert!(
        slowest < Duration::from_millis(500),
        "a request took {slowest:?} while the write hung"
    );
}
