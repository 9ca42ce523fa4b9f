//! Plain hyper 1.x: a `tower::ServiceBuilder` stack of `PatLayer` and
//! `RequireScopesLayer` around a `service_fn`, served connection by connection with
//! hyper's HTTP/1 server. No framework involved.
//!
//! ```text
//! cargo run --example hyper                  # serves on 127.0.0.1:3001 (PORT overrides)
//! cargo run --example hyper -- --self-test   # serves on a free port, calls itself, exits
//! ```
//!
//! Every request needs a token holding `orders:read`; the handler reads the
//! [`AccessToken`] from the request's extensions and branches on
//! `token.can("orders:create")`. In `--self-test` mode (or with `SELF_TEST=1`) a hyper
//! client makes a few requests (allowed with and without `orders:create`, short of scope,
//! no token, a made-up token, a just-revoked token), prints the answers and exits non-zero if one is not what it should be.

use std::{convert::Infallible, env, error::Error, net::SocketAddr};

use http::{
    Method, Request, Response, StatusCode,
    header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE},
};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};
use tower_pat::{
    AccessToken, MemoryStore, NewToken, RequireScopesLayer, Tokens, scope::ScopeRegistry,
};

type Body = Full<Bytes>;

/// The application, behind the stack: by the time it runs, `PatLayer` has resolved the
/// token and `RequireScopes` has checked `orders:read`.
async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let Some(token) = req.extensions().get::<AccessToken>().cloned() else {
        // Only reachable if the stack were wired without PatLayer.
        return Ok(text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no PatLayer".into(),
        ));
    };
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/orders") => {
            let may_order = if token.can("orders:create") {
                "this token may also place orders"
            } else {
                "this token may not place orders (it lacks orders:create)"
            };
            text(
                StatusCode::OK,
                format!(
                    "orders of user {} (token {:?}): #1001 coffee beans, #1002 grinder\n{may_order}\n",
                    token.user_id(),
                    token.name()
                ),
            )
        }
        _ => text(StatusCode::NOT_FOUND, "no such route\n".into()),
    })
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, "text/plain; charset=utf-8".parse().unwrap());
    res
}

/// Accepts connections forever, serving each with the tower stack.
async fn serve(listener: TcpListener, tokens: Tokens<MemoryStore<i64>>) {
    let stack = ServiceBuilder::new()
        .layer(tokens.layer())
        .layer(RequireScopesLayer::all(["orders:read"]))
        .service_fn(handle);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        let stack = stack.clone();
        tokio::spawn(async move {
            // hyper's own `Service` takes `&self`: give each request a clone of the
            // tower stack, driven by `oneshot` (poll_ready, then call).
            let svc = hyper::service::service_fn(move |req| stack.clone().oneshot(req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                eprintln!("connection error: {e}");
            }
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let self_test = env::args().any(|a| a == "--self-test")
        || env::var("SELF_TEST").is_ok_and(|v| !v.is_empty() && v != "0");
    let port: u16 = match env::var("PORT") {
        Ok(p) => p.parse().map_err(|e| format!("PORT={p:?}: {e}"))?,
        Err(_) if self_test => 0,
        Err(_) => 3001,
    };

    let registry = ScopeRegistry::new()
        .scope("orders:read", "List orders")
        .scope("orders:create", "Place orders")
        .scope("user:read", "Retrieve the user info")
        .default_scopes(["user:read"]);
    let tokens = Tokens::new(MemoryStore::<i64>::new(), registry);
    let cli = tokens
        .create(1, "CLI", ["orders:read", "orders:create"])
        .await?;
    let reader = tokens.create(1, "Read-only", ["orders:read"]).await?;
    // No scopes asked for: the registry's defaults (user:read), so no orders:read.
    let profile = tokens.create(1, "Profile", Vec::<String>::new()).await?;

    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(serve(listener, tokens.clone()));

    if self_test {
        return self_test_against(&url, &tokens, [cli, reader, profile]).await;
    }

    println!("Tokens issued to user 1 (shown once; paste these lines into your shell):");
    println!();
    println!("  # {:?}: {}", cli.record.name, cli.record.scopes);
    println!("  export CLI={}", cli.token.expose_secret());
    println!("  # {:?}: {}", reader.record.name, reader.record.scopes);
    println!("  export READER={}", reader.token.expose_secret());
    println!("  # {:?}: {}", profile.record.name, profile.record.scopes);
    println!("  export PROFILE={}", profile.token.expose_secret());
    println!();
    println!("Then try:");
    println!();
    println!("  # 200: CLI holds orders:read");
    println!("  curl -i -H \"Authorization: Bearer $CLI\" {url}/orders");
    println!("  # 200, but told it may not place orders: READER lacks orders:create");
    println!("  curl -i -H \"Authorization: Bearer $READER\" {url}/orders");
    println!("  # 403 insufficient_scope: PROFILE holds only user:read");
    println!("  curl -i -H \"Authorization: Bearer $PROFILE\" {url}/orders");
    println!("  # 401: no token");
    println!("  curl -i {url}/orders");
    println!();
    println!("Listening on {url} (Ctrl-C to stop)");
    std::future::pending::<()>().await;
    Ok(())
}

/// Calls the server with a hyper client and checks every answer.
async fn self_test_against(
    url: &str,
    tokens: &Tokens<MemoryStore<i64>>,
    [cli, reader, profile]: [NewToken<i64>; 3],
) -> Result<(), Box<dyn Error>> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let orders = format!("{url}/orders");
    let get = |bearer: Option<String>| {
        let mut req = Request::get(&orders);
        if let Some(b) = bearer {
            req = req.header(AUTHORIZATION, format!("Bearer {b}"));
        }
        req.body(Empty::new())
    };
    println!("self-test against {url}");

    let cli_secret = cli.token.expose_secret().to_owned();
    let mut made_up = cli_secret.clone();
    // Same prefix and length, but the checksum no longer matches: refused offline.
    let last = made_up.pop().unwrap_or('0');
    made_up.push(if last == 'A' { 'B' } else { 'A' });

    let cases = [
        ("CLI token", Some(cli_secret.clone()), StatusCode::OK),
        (
            "Read-only token",
            Some(reader.token.expose_secret().to_owned()),
            StatusCode::OK,
        ),
        (
            "Profile token (no orders:read)",
            Some(profile.token.expose_secret().to_owned()),
            StatusCode::FORBIDDEN,
        ),
        ("no token", None, StatusCode::UNAUTHORIZED),
        ("made-up token", Some(made_up), StatusCode::UNAUTHORIZED),
    ];
    let mut failures = 0;
    for (what, bearer, expected) in cases {
        failures += check(&client, what, get(bearer)?, expected).await?;
    }

    tokens.revoke(&1, cli.record.id).await?;
    failures += check(
        &client,
        "CLI token, just revoked",
        get(Some(cli_secret))?,
        StatusCode::UNAUTHORIZED,
    )
    .await?;

    if failures > 0 {
        return Err(format!("{failures} answer(s) not as expected").into());
    }
    println!("self-test passed");
    Ok(())
}

/// Sends `req`, prints the answer, and returns 1 when the status is not `expected`.
async fn check(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    what: &str,
    req: Request<Empty<Bytes>>,
    expected: StatusCode,
) -> Result<u32, Box<dyn Error>> {
    let res = client.request(req).await?;
    let status = res.status();
    let challenge = res
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap_or("?").to_owned());
    let body = res.into_body().collect().await?.to_bytes();
    let verdict = if status == expected {
        "ok"
    } else {
        "UNEXPECTED"
    };
    println!("  {what}: {status} [{verdict}]");
    if let Some(c) = challenge {
        println!("    www-authenticate: {c}");
    }
    for line in String::from_utf8_lossy(&body).lines() {
        println!("    | {line}");
    }
    Ok(u32::from(status != expected))
}
