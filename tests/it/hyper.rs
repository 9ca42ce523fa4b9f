//! Plain hyper 1.x over loopback, a server without a router: `tower::ServiceBuilder` with
//! `PatLayer` and `RequireScopesLayer` (or one `ScopeMapLayer` for every path) around a
//! `service_fn`, served by hyper's http1 connection builder.

use crate::common;

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
use tower_pat::{
    AccessToken, MemoryStore, RequireScopesLayer, Requirement, ScopeMapLayer, Tokens,
    reject::Rejection,
    require::{Unmapped, X_ACCEPTED_OAUTH_SCOPES, X_OAUTH_SCOPES},
    scope::ScopeRegistry,
};

use common::{Fault, Faulty, Reply, bearer, registry, send};

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
    serve(svc).await
}

/// Serves a tower service over hyper http1 on a fresh loopback port.
async fn serve<S>(svc: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
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

/// A GitHub-like registry for the map and the OR-of-ANDs routes.
fn repo_registry() -> ScopeRegistry {
    ScopeRegistry::new()
        .scope("repo:read", "Read repositories")
        .scope("repo:write", "Push to repositories")
        .scope("admin", "Everything")
        .scope("orders:read", "See orders")
}

async fn ok(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// The map of a server without a router: exact paths, prefixes, an OR of ANDs, an
/// authenticated-only path; the rest denied (or let through, with `unmapped`).
fn repo_map(tokens: &Tokens<Store>) -> ScopeMapLayer {
    ScopeMapLayer::http()
        .registry(tokens.registry())
        .route("/orders", Requirement::all(["orders:read"]))
        .route("/repos/*", Requirement::all(["repo:read"]))
        .route(
            "/repos/push",
            Requirement::all(["repo:read", "repo:write"]).or(Requirement::all(["admin"])),
        )
        .authenticated("/health")
}

async fn start_map(tokens: &Tokens<Store>, map: ScopeMapLayer) -> SocketAddr {
    let svc = ServiceBuilder::new()
        .layer(tokens.layer().rejection_body(|r: &Rejection<'_>| {
            let form = r.required_form().map_or("none", |f| f.as_str());
            Response::new(Full::new(Bytes::from(form)))
        }))
        .layer(map)
        .service(service_fn(ok));
    serve(svc).await
}

const SHORT: &str = r#"Bearer realm="api", error="insufficient_scope""#;

#[track_caller]
fn forbidden(reply: &Reply, scope: Option<&str>, form: &str) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    let want = match scope {
        Some(scope) => format!(r#"{SHORT}, scope="{scope}""#),
        None => SHORT.to_owned(),
    };
    assert_eq!(reply.challenge(), Some(want.as_str()), "{reply:?}");
    assert_eq!(
        reply.body, form,
        "the hook sees the form the route required"
    );
}

#[tokio::test]
async fn a_scope_map_guards_exact_paths_and_prefixes() {
    let tokens = Tokens::new(Faulty::new(MemoryStore::new()), repo_registry());
    let addr = start_map(&tokens, repo_map(&tokens)).await;
    let reader = tokens.create(1, "r", ["repo:read"]).await.unwrap();
    let orders = tokens.create(2, "o", ["orders:read"]).await.unwrap();
    let (reader, orders) = (reader.token.expose_secret(), orders.token.expose_secret());

    assert_eq!(bearer(addr, "/orders", orders).await.status, StatusCode::OK);
    forbidden(
        &bearer(addr, "/orders", reader).await,
        Some("orders:read"),
        "all",
    );
    // A prefix covers every path below it, not the path of its own name.
    for path in ["/repos/a", "/repos/a/b", "/repos/"] {
        assert_eq!(
            bearer(addr, path, reader).await.status,
            StatusCode::OK,
            "{path}"
        );
        forbidden(&bearer(addr, path, orders).await, Some("repo:read"), "all");
    }
    // Unmapped: denied whatever the token holds, naming no scope.
    for path in ["/repos", "/ordersx", "/orders/1", "/", "/%6Frders"] {
        forbidden(&bearer(addr, path, orders).await, None, "none");
    }
    // Authenticated only: any valid token, and a missing one is still 401.
    assert_eq!(bearer(addr, "/health", orders).await.status, StatusCode::OK);
    let reply = send(addr, "/health", &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // A bad token is refused before the map is consulted.
    let reply = bearer(addr, "/repos/a", "pat_made_up").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.challenge().unwrap().contains("invalid_token"));

    // Unmapped paths let through with any valid token, when asked.
    let lenient = start_map(&tokens, repo_map(&tokens).unmapped(Unmapped::Authenticated)).await;
    assert_eq!(
        bearer(lenient, "/anything", orders).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(lenient, "/anything", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn one_of_several_sets_each_satisfies_neither_does_a_superset_does() {
    let tokens = Tokens::new(Faulty::new(MemoryStore::new()), repo_registry());
    let addr = start_map(&tokens, repo_map(&tokens)).await;
    let cases: [(&[&str], StatusCode); 6] = [
        (&["repo:read", "repo:write"], StatusCode::OK),
        (&["admin"], StatusCode::OK),
        (
            &["repo:read", "repo:write", "admin", "orders:read"],
            StatusCode::OK,
        ),
        (&["repo:read"], StatusCode::FORBIDDEN),
        (&["repo:write"], StatusCode::FORBIDDEN),
        (&["orders:read"], StatusCode::FORBIDDEN),
    ];
    for (i, (scopes, want)) in cases.into_iter().enumerate() {
        let token = tokens
            .create(10, format!("t{i}"), scopes.iter().copied())
            .await
            .unwrap();
        let reply = bearer(addr, "/repos/push", token.token.expose_secret()).await;
        if want == StatusCode::OK {
            assert_eq!(reply.status, StatusCode::OK, "{scopes:?}: {reply:?}");
        } else {
            // The challenge names the first set, one that would be enough.
            forbidden(&reply, Some("repo:read repo:write"), "one_of");
        }
    }
    // The same requirement on a single route, through RequireScopesLayer.
    let svc =
        ServiceBuilder::new()
            .layer(tokens.layer())
            .layer(tokens.require(
                Requirement::all(["repo:read", "repo:write"]).or(Requirement::all(["admin"])),
            ))
            .service(service_fn(ok));
    let single = serve(svc).await;
    let admin = tokens.create(11, "a", ["admin"]).await.unwrap();
    let reader = tokens.create(11, "r", ["repo:read"]).await.unwrap();
    assert_eq!(
        bearer(single, "/", admin.token.expose_secret())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        bearer(single, "/", reader.token.expose_secret())
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn scope_headers_when_on_and_absent_when_off() {
    let tokens = Tokens::new(Faulty::new(MemoryStore::new()), repo_registry());
    let on = start_map(&tokens, repo_map(&tokens).scope_headers(true)).await;
    let off = start_map(&tokens, repo_map(&tokens)).await;
    let reader = tokens
        .create(1, "r", ["repo:read", "orders:read"])
        .await
        .unwrap();
    let secret = reader.token.expose_secret();
    let headers = |reply: &Reply| {
        let get = |name| {
            reply
                .headers
                .get(name)
                .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
        };
        (get(&X_OAUTH_SCOPES), get(&X_ACCEPTED_OAUTH_SCOPES))
    };

    let reply = bearer(on, "/repos/a", secret).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        headers(&reply),
        (
            Some("orders:read, repo:read".into()),
            Some("repo:read".into())
        )
    );
    let reply = bearer(on, "/repos/push", secret).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        headers(&reply),
        (
            Some("orders:read, repo:read".into()),
            Some("admin, repo:read, repo:write".into())
        )
    );
    // No token, no token scopes to tell.
    let reply = send(on, "/repos/a", &[]).await;
    assert_eq!(headers(&reply), (None, None));

    for path in ["/repos/a", "/repos/push"] {
        assert_eq!(
            headers(&bearer(off, path, secret).await),
            (None, None),
            "{path}"
        );
    }

    // The same on a single route.
    let svc = ServiceBuilder::new()
        .layer(tokens.layer())
        .layer(tokens.require_all(["repo:read"]).scope_headers(true))
        .service(service_fn(ok));
    let single = serve(svc).await;
    let reply = bearer(single, "/", secret).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        headers(&reply),
        (
            Some("orders:read, repo:read".into()),
            Some("repo:read".into())
        )
    );
}
