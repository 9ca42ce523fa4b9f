//! Plain hyper 1.x over loopback: `tower::ServiceBuilder` with `PatLayer` and
//! `RequireScopesLayer` around a `service_fn`, served by hyper's http1 connection builder.

mod common;

use std::{convert::Infallible, net::SocketAddr};

use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    server::conn::http1,
};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, service_fn};
use tower_pat::{AccessToken, MemoryStore, RequireScopesLayer, Tokens};

use common::{Fault, Faulty, bearer, registry, send};

type Store = Faulty<MemoryStore<i64>>;

async fn orders(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match req.extensions().get::<AccessToken>() {
        Some(token) if token.can("orders:create") => {
            format!("user {} may place orders", token.user_id())
        }
        Some(token) => format!("user {} may only look", token.user_id()),
        None => "no token".to_owned(),
    };
    Ok(Response::new(Full::new(Bytes::from(body))))
}

/// Serves `PatLayer` + `RequireScopesLayer::any(orders:read, orders:create)` in front of
/// [`orders`], one hyper http1 connection per accepted socket.
async fn start(tokens: &Tokens<Store>) -> SocketAddr {
    let svc = ServiceBuilder::new()
        .layer(tokens.layer())
        .layer(RequireScopesLayer::any(["orders:read", "orders:create"]))
        .service(service_fn(orders));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                    .expect("serve a connection");
            });
        }
    });
    addr
}

#[tokio::test]
async fn hyper_server_with_service_builder() {
    let tokens = Tokens::new(Faulty::new(MemoryStore::new()), registry());
    let addr = start(&tokens).await;
    let reader = tokens.create(1, "r", ["orders:read"]).await.unwrap();
    let creator = tokens.create(2, "c", ["orders:create"]).await.unwrap();
    let plain = tokens.create(3, "p", ["user:read"]).await.unwrap();

    let reply = bearer(addr, "/", reader.token.expose_secret()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "user 1 may only look");
    let reply = bearer(addr, "/", creator.token.expose_secret()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "user 2 may place orders");

    let reply = send(addr, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.challenge(), Some(r#"Bearer realm="api""#));
    assert_eq!(reply.body, "");

    let reply = bearer(addr, "/", plain.token.expose_secret()).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.challenge(),
        Some(
            r#"Bearer realm="api", error="insufficient_scope", scope="orders:create orders:read""#
        )
    );

    let reply = bearer(addr, "/", "a b").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.challenge(),
        Some(r#"Bearer realm="api", error="invalid_request""#)
    );

    tokens.revoke(&1, reader.record.id).await.unwrap();
    let reply = bearer(addr, "/", reader.token.expose_secret()).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.challenge(),
        Some(
            r#"Bearer realm="api", error="invalid_token", error_description="the access token has been revoked""#
        )
    );

    tokens.store().set(Fault::Fail);
    let reply = bearer(addr, "/", creator.token.expose_secret()).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.challenge(), None);
}
