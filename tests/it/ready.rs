//! An inner service that panics when `call` comes without `poll_ready` still works behind
//! `PatLayer` and `RequireScopesLayer`: on a real server under many concurrent requests,
//! and driven directly with `ServiceExt::ready` / `call` while earlier calls are still in
//! flight; through both the synchronous (`find_ready`) and the async (`find`) store paths.

use crate::common;

use std::{
    convert::Infallible,
    future::{Ready, ready},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use tokio::task::JoinSet;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_pat::{AccessToken, MemoryStore, RequireScopesLayer, TokenStore, Tokens};

use common::{Fault, Faulty, bearer, registry, send, serve};

type Store = Faulty<MemoryStore<i64>>;

/// Panics in `call` unless `poll_ready` came first; each `call` uses the readiness up.
/// A clone starts unready, as a clone of a real `Buffer` or pool slot would.
#[derive(Debug)]
struct MustBeReady {
    ready: bool,
    calls: Arc<AtomicUsize>,
}

impl MustBeReady {
    fn new(calls: Arc<AtomicUsize>) -> Self {
        Self {
            ready: false,
            calls,
        }
    }
}

impl Clone for MustBeReady {
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.calls))
    }
}

impl<B> Service<Request<B>> for MustBeReady {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        assert!(
            std::mem::take(&mut self.ready),
            "call without poll_ready first"
        );
        self.calls.fetch_add(1, Ordering::SeqCst);
        let body = match req.extensions().get::<AccessToken>() {
            Some(token) => format!("user {}", token.user_id()),
            None => "no token".to_owned(),
        };
        ready(Ok(Response::new(body)))
    }
}

#[test]
#[should_panic(expected = "call without poll_ready first")]
fn the_inner_service_does_panic_without_poll_ready() {
    let mut svc = MustBeReady::new(Arc::default());
    drop(svc.call(Request::new(())));
}

fn tokens(async_only: bool) -> Tokens<Store> {
    let store = Faulty::new(MemoryStore::new());
    if async_only {
        store.async_only(true);
        // Make the lookup really wait, so the inner service is held across an await.
        store.set(Fault::Slow(Duration::from_millis(2)));
    }
    Tokens::new(store, registry())
}

fn request(token: Option<&str>) -> Request<String> {
    let mut req = Request::new(String::new());
    if let Some(token) = token {
        req.headers_mut()
            .insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    }
    req
}

/// Drives one service instance with `ready().await?.call(..)`, keeping every response
/// future pending until all calls are made, so that each call finds the inner service
/// readied by the `poll_ready` just before it and not by an earlier one.
async fn direct(async_only: bool) {
    let tokens = tokens(async_only);
    let reader = tokens.create(1, "r", ["orders:read"]).await.unwrap();
    let plain = tokens.create(2, "p", ["user:read"]).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(tokens.layer())
        .layer(RequireScopesLayer::all(["orders:read"]))
        .service(MustBeReady::new(Arc::clone(&calls)));

    let mut pending = Vec::new();
    let mut expected = Vec::new();
    for i in 0..60 {
        let (req, want) = match i % 4 {
            0 | 1 => (request(Some(reader.token.expose_secret())), StatusCode::OK),
            2 => (
                request(Some(plain.token.expose_secret())),
                StatusCode::FORBIDDEN,
            ),
            _ => (request(None), StatusCode::UNAUTHORIZED),
        };
        let fut = ServiceExt::<Request<String>>::ready(&mut svc)
            .await
            .unwrap()
            .call(req);
        pending.push(fut);
        expected.push(want);
    }
    for (fut, want) in pending.into_iter().zip(expected) {
        let res = fut.await.unwrap();
        assert_eq!(res.status(), want);
        if want == StatusCode::OK {
            assert_eq!(res.body(), "user 1");
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 30);
    let lookups = tokens.store().find_calls();
    assert_eq!(lookups, 45, "every call with a token asks the store once");

    // `oneshot` on clones works too.
    let res = svc
        .clone()
        .oneshot(request(Some(reader.token.expose_secret())))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 31);
}

#[tokio::test]
async fn direct_calls_through_find_ready() {
    direct(false).await;
}

#[tokio::test]
async fn direct_calls_through_async_find() {
    direct(true).await;
}

/// Many concurrent requests on a real axum server.
async fn served(async_only: bool) {
    let tokens = tokens(async_only);
    let reader = tokens.create(1, "r", ["orders:read"]).await.unwrap();
    let plain = tokens.create(2, "p", ["user:read"]).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(tokens.layer())
        .layer(RequireScopesLayer::all(["orders:read"]))
        .service(MustBeReady::new(Arc::clone(&calls)));
    let addr = serve(axum::Router::new().route_service("/orders", svc)).await;

    let mut set = JoinSet::new();
    for i in 0..100 {
        let reader = reader.token.expose_secret().to_owned();
        let plain = plain.token.expose_secret().to_owned();
        set.spawn(async move {
            match i % 4 {
                0 | 1 => {
                    let reply = bearer(addr, "/orders", &reader).await;
                    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
                    assert_eq!(reply.body, "user 1");
                }
                2 => {
                    let reply = bearer(addr, "/orders", &plain).await;
                    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
                }
                _ => {
                    let reply = send(addr, "/orders", &[]).await;
                    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
                }
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.expect("a request task panicked");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 50);
    assert_eq!(tokens.store().find_calls(), 75);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_through_find_ready() {
    served(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_through_async_find() {
    served(true).await;
}

#[tokio::test]
async fn the_async_path_is_really_taken() {
    let tokens = tokens(true);
    let created = tokens.create(1, "r", ["orders:read"]).await.unwrap();
    assert!(tokens.store().find_ready(&created.token.hash()).is_none());
    assert!(
        tokens
            .store()
            .inner()
            .find_ready(&created.token.hash())
            .is_some()
    );
}
