//! A token never shows: all tracing output (TRACE level) and every `Debug` / `Display` /
//! error string produced over a full create → use → refuse → revoke cycle is searched for
//! the plaintext and for any 12-character piece of its secret part.

use crate::common;

use std::{
    io,
    sync::{Arc, Mutex, PoisonError},
};

use axum::{
    Router,
    body::Body,
    extract::Request,
    routing::{any, get},
};
use http::StatusCode;
use time::{Duration, OffsetDateTime};
use tower::Layer;
use tower_pat::{
    AccessToken, CreateToken, MemoryStore, RequireScopesLayer, TokenStore, Tokens,
    clock::ManualClock, reject::Rejection, token::TokenFormat,
};

use common::{Fault, Faulty, Reply, bearer, registry, send, serve};

/// Everything printed during the test, tracing output included.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn push(&self, s: impl AsRef<str>) {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        buf.extend_from_slice(s.as_ref().as_bytes());
        buf.push(b'\n');
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn record_reply(out: &Capture, reply: &Reply) {
    out.push(format!("{reply:?}"));
    out.push(format!("{:?}", reply.headers));
    out.push(format!("{:#?}", reply.headers));
    out.push(&reply.body);
}

fn error_chain(out: &Capture, err: &(dyn std::error::Error + 'static)) {
    out.push(format!("{err} / {err:?} / {err:#?}"));
    let mut source = err.source();
    while let Some(s) = source {
        out.push(format!("{s} / {s:?}"));
        source = s.source();
    }
}

/// Fails naming the first place a piece of `secret` shows up in `text`.
fn assert_absent(text: &str, secret: &str, prefix: &str) {
    assert!(!text.contains(secret), "the whole token leaked");
    let random = &secret[prefix.len()..];
    assert!(!text.contains(random), "the secret part leaked");
    for piece in random.as_bytes().windows(12) {
        let piece = std::str::from_utf8(piece).unwrap();
        if let Some(at) = text.find(piece) {
            let start = text[..at]
                .char_indices()
                .rev()
                .nth(80)
                .map_or(0, |(i, _)| i);
            panic!(
                "a piece of a token leaked: …{}…",
                &text[start..(at + piece.len()).min(text.len())]
            );
        }
    }
}

#[tokio::test]
async fn no_token_appears_in_logs_debug_display_or_errors() {
    let out = Capture::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let t0 = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let clock = ManualClock::new(t0);
    let tokens = Tokens::new(Faulty::new(MemoryStore::<i64>::new()), registry())
        .clock(clock.clone())
        .client_id("secrets-test");
    let prefix = tokens.token_format().prefix().to_owned();

    // Create.
    let main = tokens
        .create(1, "main", ["orders:read", "user:read"])
        .await
        .unwrap();
    let doomed = tokens.create(1, "doomed", ["user:read"]).await.unwrap();
    let brief = tokens
        .create_with(
            1,
            CreateToken::new("brief")
                .scopes(["user:read"])
                .expires_in(Duration::minutes(1)),
        )
        .await
        .unwrap();
    // A well-formed token this store does not know is somebody's secret too.
    let stranger = TokenFormat::default().generate().unwrap();
    let mut secrets: Vec<String> = [&main, &doomed, &brief]
        .iter()
        .map(|t| t.token.expose_secret().to_owned())
        .collect();
    secrets.push(stranger.expose_secret().to_owned());
    for t in [&main, &doomed, &brief] {
        out.push(format!("{t:?}"));
        out.push(format!("{t:#?}"));
        out.push(format!("{} {:?} {:#?}", t.token, t.token, t.token));
        out.push(format!("{:?} {:#?}", t.record, t.record));
        out.push(format!("{:?}", t.token.hash()));
        out.push(format!("{}", t.record.id));
    }
    out.push(format!("{:?}", tokens.list(&1).await.unwrap()));
    out.push(format!("{tokens:?}"));
    out.push(format!("{:?}", tokens.store()));
    out.push(format!("{:?}", tokens.registry()));

    // The server: the handler prints what it is given; the hook prints each refusal.
    let seen = out.clone();
    let handler = move |token: AccessToken, req: Request| {
        let seen = seen.clone();
        async move {
            seen.push(format!("{token:?} {token:#?}"));
            seen.push(format!("{:?}", token.record()));
            seen.push(format!("{req:?}"));
            seen.push(format!("{:?}", req.headers()));
            "ok"
        }
    };
    let hooked = out.clone();
    let hook = move |r: &Rejection<'_>| {
        hooked.push(format!("{r:?} {:?}", r.challenge()));
        http::Response::new(Body::from(r.kind().to_string()))
    };
    let layer = tokens.layer().rejection_body(hook);
    let scopes = RequireScopesLayer::all(["orders:read", "orders:create"]);
    out.push(format!("{layer:?}"));
    out.push(format!("{scopes:?}"));
    out.push(format!(
        "{:?}",
        layer.layer(tower::service_fn(|()| async { Ok::<_, ()>(()) }))
    ));
    let app = Router::new()
        .route("/user", get(handler.clone()))
        .route("/orders", get(handler.clone()).layer(scopes))
        .layer(layer.clone());
    let addr = serve(app).await;
    let unwired = serve(Router::new().route("/user", any(handler))).await;

    // Use, and be refused.
    let secret = main.token.expose_secret();
    let expect = |reply: Reply, status: StatusCode| {
        assert_eq!(reply.status, status, "{reply:?}");
        record_reply(&out, &reply);
    };
    expect(bearer(addr, "/user", secret).await, StatusCode::OK);
    expect(bearer(addr, "/orders", secret).await, StatusCode::FORBIDDEN);
    expect(
        bearer(addr, "/user", stranger.expose_secret()).await,
        StatusCode::UNAUTHORIZED,
    );
    let typo = {
        let mut b = secret.as_bytes().to_vec();
        b[20] = if b[20] == b'x' { b'y' } else { b'x' };
        String::from_utf8(b).unwrap()
    };
    expect(bearer(addr, "/user", &typo).await, StatusCode::UNAUTHORIZED);
    expect(
        bearer(addr, "/user", &format!("ghp_{}", &secret[4..])).await,
        StatusCode::UNAUTHORIZED,
    );
    expect(
        bearer(addr, "/user", &secret[..secret.len() - 1]).await,
        StatusCode::UNAUTHORIZED,
    );
    expect(
        bearer(addr, "/user", &format!("{secret} extra")).await,
        StatusCode::BAD_REQUEST,
    );
    let twice = format!("Bearer {secret}");
    expect(
        send(
            addr,
            "/user",
            &[
                ("authorization", twice.as_bytes()),
                ("authorization", twice.as_bytes()),
            ],
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    // Query tokens are off: the query is not looked at, so this is a request without
    // credentials; the URL (and the token in it) must not be logged either.
    expect(
        send(addr, &format!("/user?access_token={secret}"), &[]).await,
        StatusCode::UNAUTHORIZED,
    );
    expect(
        bearer(unwired, "/user", secret).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    );
    tokens.store().set(Fault::Fail);
    expect(
        bearer(addr, "/user", secret).await,
        StatusCode::SERVICE_UNAVAILABLE,
    );
    let store_error = tokens.store().find(&main.token.hash()).await.unwrap_err();
    error_chain(&out, &store_error);
    tokens.store().set(Fault::Pass);

    // Revoked and expired.
    tokens.revoke(&1, doomed.record.id).await.unwrap();
    expect(
        bearer(addr, "/user", doomed.token.expose_secret()).await,
        StatusCode::UNAUTHORIZED,
    );
    clock.advance(Duration::minutes(1));
    expect(
        bearer(addr, "/user", brief.token.expose_secret()).await,
        StatusCode::UNAUTHORIZED,
    );

    // The uses are written back (last_used_at), off the request path.
    out.push(format!("uses written: {}", layer.flush().await));

    // Errors from the facade and the format.
    let errors = [
        tokens.create(1, "x", ["orders:delete"]).await.unwrap_err(),
        tokens.create(1, "", ["user:read"]).await.unwrap_err(),
        tokens
            .create_with(1, CreateToken::new("x").expires_in(Duration::seconds(-1)))
            .await
            .unwrap_err(),
        tokens.revoke(&2, main.record.id).await.unwrap_err(),
    ];
    for err in &errors {
        error_chain(&out, err);
    }
    let format = TokenFormat::default();
    for bad in [
        typo.clone(),
        format!("ghp_{}", &secret[4..]),
        secret[1..].to_owned(),
    ] {
        let err = format.parse(&bad).unwrap_err();
        error_chain(&out, &err);
    }

    // Revoke everything.
    assert!(tokens.revoke_all(&1).await.unwrap() >= 1);
    expect(
        bearer(addr, "/user", secret).await,
        StatusCode::UNAUTHORIZED,
    );
    out.push(format!("{:#?}", tokens.list(&1).await.unwrap()));

    // The capture did capture: the crate's events are all there.
    let text = out.text();
    for event in [
        "personal access token created",
        "personal access token revoked",
        "bearer token rejected offline",
        "request rejected by PatLayer",
        "reason=UnknownToken",
        "token lacks required scopes",
        "the token store could not answer",
        "AccessToken extractor used without PatLayer",
        "AccessToken {",
        "Sensitive",
        "InsufficientScope",
    ] {
        assert!(text.contains(event), "{event:?} missing from:\n{text}");
    }
    for secret in &secrets {
        assert_absent(&text, secret, &prefix);
    }
}
