//! The admin command line (`tower_pat::cli`): in-process over a real SQLite file and a
//! loopback server, then as an operator runs it, through the demo binary's `tokens`
//! subcommand beside the running demo (create → use over HTTP → list → revoke →
//! refused), with a signed leak report to the demo's endpoint revoking a token.

use crate::common::{self, db::TempDb};

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration as StdDuration, Instant},
};

use axum::{Router, routing::get};
use clap::Parser;
use http::StatusCode;
use time::Duration;
use tower_pat::{
    AccessToken, SqliteStore, Tokens,
    audit::{Audit, AuditEvent, AuditKind, AuditSink, SinkError},
    cli::{CliError, CliErrorKind, TokensCommand},
    clock::ManualClock,
};

/// An application's command line with the token commands under `tokens`.
#[derive(Parser)]
struct App {
    #[command(subcommand)]
    tokens: TokensCommand,
}

/// Runs `tokens <args>` in-process: what it printed, or how it failed.
async fn run(tokens: &Tokens<SqliteStore<i64>>, args: &[&str]) -> Result<String, CliError> {
    let app = App::try_parse_from(std::iter::once("app").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut out = Vec::new();
    app.tokens.execute(tokens, &mut out).await?;
    Ok(String::from_utf8(out).expect("UTF-8 output"))
}

async fn api(tokens: &Tokens<SqliteStore<i64>>) -> SocketAddr {
    async fn me(token: AccessToken) -> String {
        format!("user {}", token.user_id())
    }
    common::serve(
        Router::new()
            .route("/me", get(me))
            .route_layer(tokens.require_all(["user:read"]))
            .layer(tokens.layer()),
    )
    .await
}

#[tokio::test]
async fn create_use_list_revoke_prune_in_process() {
    let db = TempDb::new();
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let store = SqliteStore::<i64>::open(db.path()).await.unwrap();
    let tokens = Tokens::new(store, common::registry()).clock(clock.clone());

    // No table yet: the message says what to do.
    let e = run(&tokens, &["list", "--user", "7"]).await.unwrap_err();
    assert_eq!(e.kind(), CliErrorKind::MissingTable);
    assert!(e.to_string().contains("run the `migrate` command"), "{e}");
    assert!(!e.to_string().contains('\n'));
    assert!(
        run(&tokens, &["schema"])
            .await
            .unwrap()
            .contains("CREATE TABLE")
    );
    assert_eq!(
        run(&tokens, &["migrate"]).await.unwrap(),
        "the token table is up to date\n"
    );

    // Create: the plaintext and a line break, nothing else.
    let out = run(
        &tokens,
        &[
            "create",
            "--user",
            "7",
            "--name",
            "ci",
            "--scopes",
            "user:read,orders:read",
            "--expires-in",
            "30d",
        ],
    )
    .await
    .unwrap();
    let token = out.strip_suffix('\n').expect("one line");
    assert!(token.starts_with("pat_") && !token.contains(char::is_whitespace));

    let addr = api(&tokens).await;
    let reply = common::bearer(addr, "/me", token).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "user 7")
    );

    // List, as text and as JSON: the token's id and scopes, never its secret nor hash.
    let record = tokens.list(&7).await.unwrap().remove(0);
    let hash = record.token_hash.to_hex();
    for args in [
        &["list", "--user", "7"][..],
        &["list", "--user", "7", "--json"],
        &["list"],
        &["list", "--json"],
        &["expiring", "--within", "31d", "--json"],
    ] {
        let out = run(&tokens, args).await.unwrap();
        assert!(out.contains(&record.id.to_string()), "{args:?}: {out}");
        assert!(out.contains("orders:read"), "{args:?}: {out}");
        assert!(!out.contains(token), "{args:?} shows the token");
        assert!(!out.contains(&hash), "{args:?} shows the hash");
    }
    let listed: serde_json::Value = serde_json::from_str(
        &run(&tokens, &["list", "--user", "7", "--json"])
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(listed[0]["state"], "active");
    assert_eq!(listed[0]["user_id"], "7");
    // Not within 29 days.
    let soon = run(&tokens, &["expiring", "--within", "29d", "--json"])
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&soon).unwrap(),
        serde_json::json!([])
    );

    // Revoke: refused at once; again is not an error.
    let id = record.id.to_string();
    assert_eq!(
        run(&tokens, &["revoke", "--user", "7", "--id", &id])
            .await
            .unwrap(),
        format!("revoked token {id}\n")
    );
    assert_eq!(
        common::bearer(addr, "/me", token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        run(&tokens, &["revoke", "--user", "7", "--id", &id])
            .await
            .unwrap(),
        format!("token {id} was revoked already\n")
    );
    // Another user's id is unknown to this one.
    let e = run(&tokens, &["revoke", "--user", "8", "--id", &id])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), CliErrorKind::NotFound);
    assert_eq!(e.to_string(), format!("user 8 has no token {id}"));

    // Prune: kept for the retention, gone after it.
    assert_eq!(
        run(&tokens, &["prune", "--older-than", "1d"])
            .await
            .unwrap(),
        "pruned 0 tokens\n"
    );
    clock.advance(Duration::days(2));
    assert_eq!(
        run(&tokens, &["prune", "--older-than", "1d"])
            .await
            .unwrap(),
        "pruned 1 token\n"
    );
    assert_eq!(
        run(&tokens, &["list", "--user", "7"]).await.unwrap(),
        "no tokens\n"
    );
}

/// Keeps the kind and source of every audit event.
#[derive(Clone, Default)]
struct Trail(Arc<Mutex<Vec<(AuditKind, String)>>>);

#[tower_pat::async_trait]
impl AuditSink<i64> for Trail {
    async fn record(&self, event: &AuditEvent<i64>) -> Result<(), SinkError> {
        let entry = (event.kind, event.source.to_string());
        self.0.lock().unwrap().push(entry);
        Ok(())
    }
}

#[tokio::test]
async fn rotate_and_revoke_all() {
    let store = SqliteStore::<i64>::open(":memory:").await.unwrap();
    store.migrate().await.unwrap();
    let trail = Trail::default();
    let tokens =
        Tokens::new(store, common::registry()).audit(Audit::builder().sink(trail.clone()).build());
    let addr = api(&tokens).await;
    let old = tokens.create(3, "deploy", ["user:read"]).await.unwrap();
    let id = old.record.id.to_string();

    let new = run(
        &tokens,
        &["rotate", "--user", "3", "--id", &id, "--overlap", "10m"],
    )
    .await
    .unwrap();
    let new = new.trim_end();
    // Both work during the overlap.
    assert_eq!(
        common::bearer(addr, "/me", new).await.status,
        StatusCode::OK
    );
    assert_eq!(
        common::bearer(addr, "/me", old.token.expose_secret())
            .await
            .status,
        StatusCode::OK
    );
    let e = run(&tokens, &["rotate", "--user", "3", "--id", &id])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), CliErrorKind::Refused);
    assert!(e.to_string().contains("rotated already"), "{e}");

    // --json: the plaintext once, with the ids a script needs.
    let json = run(
        &tokens,
        &[
            "rotate",
            "--user",
            "3",
            "--id",
            &new_id(&tokens).await,
            "--json",
        ],
    )
    .await
    .unwrap();
    let rotated: serde_json::Value = serde_json::from_str(&json).unwrap();
    let newest = rotated["token"].as_str().unwrap().to_owned();
    assert!(newest.starts_with("pat_"));
    assert_eq!(rotated["previous"]["state"], "revoked"); // no overlap: stopped at once
    assert_eq!(rotated["rotated_from"], rotated["previous"]["id"]);
    assert_eq!(
        common::bearer(addr, "/me", new).await.status,
        StatusCode::UNAUTHORIZED
    );
    let created = run(
        &tokens,
        &["create", "--user", "3", "--name", "script", "--json"],
    )
    .await
    .unwrap();
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    assert_eq!(created["scopes"], serde_json::json!(["user:read"])); // the defaults
    assert_eq!(
        common::bearer(addr, "/me", created["token"].as_str().unwrap())
            .await
            .status,
        StatusCode::OK
    );

    assert_eq!(
        run(&tokens, &["revoke-all", "--user", "3"]).await.unwrap(),
        "revoked 3 tokens of user 3\n"
    );
    for token in [newest.as_str(), old.token.expose_secret()] {
        assert_eq!(
            common::bearer(addr, "/me", token).await.status,
            StatusCode::UNAUTHORIZED
        );
    }

    // What the command line changed is in the audit trail, as done by `cli`.
    let cli = |trail: &Trail| {
        trail
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, source)| source == tower_pat::cli::AUDIT_SOURCE)
            .map(|(kind, _)| *kind)
            .collect::<Vec<_>>()
    };
    let want = [
        AuditKind::Rotated,
        AuditKind::Rotated,
        AuditKind::Created,
        AuditKind::RevokedAll,
    ];
    for _ in 0..100 {
        if cli(&trail).len() >= want.len() {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert_eq!(cli(&trail), want);
}

/// The id of user 3's newest token not rotated yet.
async fn new_id(tokens: &Tokens<SqliteStore<i64>>) -> String {
    let records = tokens.list(&3).await.unwrap();
    let record = records.iter().find(|r| r.rotated_to.is_none()).unwrap();
    record.id.to_string()
}

#[tokio::test]
async fn refusals_name_what_is_wrong() {
    let store = SqliteStore::<i64>::open(":memory:").await.unwrap();
    store.migrate().await.unwrap();
    let tokens = Tokens::new(store, common::registry());

    let e = run(
        &tokens,
        &[
            "create",
            "--user",
            "1",
            "--name",
            "x",
            "--scopes",
            "orders:delete",
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), CliErrorKind::Scope);
    assert!(e.to_string().contains("\"orders:delete\""), "{e}");

    let e = run(&tokens, &["create", "--user", "alice", "--name", "x"])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), CliErrorKind::Usage);
    assert!(e.to_string().contains("\"alice\""), "{e}");

    // Clap refuses malformed ids and durations before anything runs.
    assert!(App::try_parse_from(["app", "revoke", "--user", "1", "--id", "nope"]).is_err());
    assert!(App::try_parse_from(["app", "prune", "--older-than", "30"]).is_err());
    assert!(tokens.list(&1).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_or_unmigrated_postgres_says_so() {
    // Nothing listens on port 1.
    let e = tower_pat::PostgresStore::<i64>::connect_with(
        "postgres://postgres@127.0.0.1:1/test",
        StdDuration::from_millis(300),
    )
    .await
    .map_err(CliError::unreachable)
    .unwrap_err();
    assert_eq!(e.kind(), CliErrorKind::Unreachable);
    assert!(
        e.to_string().starts_with("cannot reach the token database"),
        "{e}"
    );

    common::db::with_postgres(|url, table| async move {
        let store = tower_pat::PostgresStore::<i64>::connect(&url)
            .await
            .unwrap()
            .with_table(&table);
        let tokens = Tokens::new(store, common::registry());
        let mut out = Vec::new();
        let list = App::parse_from(["app", "list", "--user", "1"]).tokens;
        let e = list.execute(&tokens, &mut out).await.unwrap_err();
        assert_eq!(e.kind(), CliErrorKind::MissingTable, "{e}");
        assert!(e.to_string().contains("`migrate`"), "{e}");

        let migrate = App::parse_from(["app", "migrate"]).tokens;
        migrate.execute(&tokens, &mut out).await.unwrap();
        list.execute(&tokens, &mut out).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn an_unmigrated_mysql_says_so() {
    common::db::with_mysql(|url, table| async move {
        let store = tower_pat::store::MySqlStore::<i64>::connect(&url)
            .await
            .unwrap()
            .with_table(&table);
        let tokens = Tokens::new(store, common::registry());
        let mut out = Vec::new();
        let list = App::parse_from(["app", "list", "--user", "1"]).tokens;
        let e = list.execute(&tokens, &mut out).await.unwrap_err();
        assert_eq!(e.kind(), CliErrorKind::MissingTable, "{e}");
        assert!(e.to_string().contains("`migrate`"), "{e}");

        let migrate = App::parse_from(["app", "migrate"]).tokens;
        migrate.execute(&tokens, &mut out).await.unwrap();
        list.execute(&tokens, &mut out).await.unwrap();
    })
    .await;
}

// ---- The demo binary ----

/// The demo example cargo built beside this test binary (`cargo test` builds examples).
fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let demo = dir.join("examples").join("demo");
    assert!(
        demo.exists(),
        "{} is missing: cargo build --all-features --example demo",
        demo.display()
    );
    demo
}

/// `demo tokens <args>` against `db`: exit success, standard output, standard error.
fn demo_tokens(db: &Path, args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(demo_binary())
        .arg("tokens")
        .args(args)
        .env("TOWER_PAT_DEMO_DB", db)
        .env_remove("TOWER_PAT_DEMO_SCANNING_KEY")
        .env_remove("TOWER_PAT_DEMO_SCANNING_KEY_ID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the demo binary");
    // A command ends within seconds; one that does not is killed, and the test fails.
    let deadline = Instant::now() + StdDuration::from_secs(60);
    while child.try_wait().expect("wait for the demo").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`demo tokens {args:?}` did not finish within 60 s");
        }
        std::thread::sleep(StdDuration::from_millis(10));
    }
    let out = child.wait_with_output().expect("the demo's output");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A failure: a non-zero exit, nothing on standard output, one line on standard error.
fn demo_fails(db: &Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = demo_tokens(db, args);
    assert!(!ok, "{args:?} succeeded: {stdout}");
    assert_eq!(stdout, "", "{args:?}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

/// The demo server, stopped when dropped.
struct DemoServer {
    child: Child,
    addr: SocketAddr,
    banner: String,
}

impl DemoServer {
    fn start(db: &Path, scanning: Option<(&Path, &str)>) -> Self {
        let mut command = Command::new(demo_binary());
        command
            .env("PORT", "0")
            .env("TOWER_PAT_DEMO_DB", db)
            .env_remove("TOWER_PAT_DEMO_SCANNING_KEY")
            .env_remove("TOWER_PAT_DEMO_SCANNING_KEY_ID")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some((key, id)) = scanning {
            command
                .env("TOWER_PAT_DEMO_SCANNING_KEY", key)
                .env("TOWER_PAT_DEMO_SCANNING_KEY_ID", id);
        }
        let mut child = command.spawn().expect("start the demo");
        // Read on a thread of its own, to the end, so that the demo never blocks on a
        // full pipe and the test gives up on a demo that never says it listens.
        let (lines, banner_lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut banner = String::new();
        let addr = loop {
            let Ok(line) = banner_lines.recv_timeout(StdDuration::from_secs(60)) else {
                let _ = child.kill();
                panic!("the demo did not start listening:\n{banner}");
            };
            banner.push_str(&line);
            banner.push('\n');
            if let Some(url) = line.strip_prefix("Listening on http://") {
                break url.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        Self {
            child,
            addr,
            banner,
        }
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_demo_binary_creates_lists_revokes_and_prunes() {
    let db = TempDb::new();

    // A fresh file: no table yet, and the message says to migrate.
    let stderr = demo_fails(db.path(), &["list", "--user", "1"]);
    assert!(stderr.contains("run the `migrate` command"), "{stderr}");
    // A directory that does not exist: unreachable.
    let stderr = demo_fails(Path::new("/nonexistent/tower-pat/demo.sqlite3"), &["list"]);
    assert!(
        stderr.contains("cannot reach the token database"),
        "{stderr}"
    );

    let (ok, stdout, _) = demo_tokens(db.path(), &["migrate"]);
    assert!(ok, "{stdout}");
    let server = DemoServer::start(db.path(), None);
    assert!(
        server
            .banner
            .contains("/github/secret-scanning is not mounted"),
        "{}",
        server.banner
    );

    // TOKEN=$(demo tokens create …)
    let (ok, stdout, stderr) = demo_tokens(
        db.path(),
        &[
            "create",
            "--user",
            "1",
            "--name",
            "cli",
            "--scopes",
            "user:read",
            "--expires-in",
            "30d",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stderr, "");
    let token = stdout.strip_suffix('\n').expect("one line");
    assert!(token.starts_with("pat_") && !token.contains('\n'));
    let reply = common::bearer(server.addr, "/api/user", token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains("alice"), "{}", reply.body);

    // List: the id to revoke, never the secret.
    let (ok, listed, _) = demo_tokens(db.path(), &["list", "--user", "1", "--json"]);
    assert!(ok);
    assert!(!listed.contains(token));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let (ok, table, _) = demo_tokens(db.path(), &["list", "--user", "1"]);
    assert!(
        ok && table.contains(&id) && !table.contains(token),
        "{table}"
    );

    // The errors an operator meets: one line each.
    let stderr = demo_fails(
        db.path(),
        &[
            "create",
            "--user",
            "2",
            "--name",
            "x",
            "--scopes",
            "orders:admin",
        ],
    );
    assert!(
        stderr.contains("may not grant scope \"orders:admin\""),
        "{stderr}"
    );
    let stderr = demo_fails(
        db.path(),
        &[
            "create",
            "--user",
            "1",
            "--name",
            "x",
            "--scopes",
            "orders:delete",
        ],
    );
    assert!(
        stderr.contains("undefined scope \"orders:delete\""),
        "{stderr}"
    );
    let stderr = demo_fails(db.path(), &["revoke", "--user", "2", "--id", &id]);
    assert_eq!(stderr, format!("error: user 2 has no token {id}\n"));

    // Revoke: the running server refuses it at once.
    let (ok, stdout, _) = demo_tokens(db.path(), &["revoke", "--user", "1", "--id", &id]);
    assert!(ok);
    assert_eq!(stdout, format!("revoked token {id}\n"));
    let reply = common::bearer(server.addr, "/api/user", token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // Pruned only after the retention.
    let (ok, stdout, _) = demo_tokens(db.path(), &["prune", "--older-than", "30d"]);
    assert!(ok);
    assert_eq!(stdout, "pruned 0 tokens\n");
}

/// A signed report, as GitHub sends it, to the demo's endpoint: the token the command
/// line made is revoked and the running server refuses it.
#[cfg(feature = "leaks")]
#[tokio::test]
async fn a_signed_leak_report_to_the_demo_revokes_the_token() {
    use base64ct::{Base64, Encoding};
    use http::Request;
    use http_body_util::Full;
    use hyper::body::Bytes;
    use p256::{
        ecdsa::{Signature, SigningKey, signature::Signer},
        elliptic_curve::rand_core::OsRng,
        pkcs8::{EncodePublicKey, LineEnding},
    };

    let db = TempDb::new();
    let github = SigningKey::random(&mut OsRng);
    let pem_file = TempDb::new();
    std::fs::write(
        pem_file.path(),
        github
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    assert!(demo_tokens(db.path(), &["migrate"]).0);
    let server = DemoServer::start(db.path(), Some((pem_file.path(), "demo-key-1")));
    assert!(
        server.banner.contains("POST http://") && server.banner.contains("demo-key-1"),
        "{}",
        server.banner
    );

    let (ok, stdout, stderr) = demo_tokens(
        db.path(),
        &["create", "--user", "2", "--name", "pushed by mistake"],
    );
    assert!(ok, "{stderr}");
    let token = stdout.trim_end().to_owned();
    assert_eq!(
        common::bearer(server.addr, "/api/user", &token)
            .await
            .status,
        StatusCode::OK
    );

    let body = format!(
        r#"[{{"token":"{token}","type":"demo_pat","url":"https://github.com/octo/app/blob/1/.env","source":"content"}}]"#
    );
    let post = |signature: String| {
        Request::post(format!("http://{}/github/secret-scanning", server.addr))
            .header("content-type", "application/json")
            .header("github-public-key-identifier", "demo-key-1")
            .header("github-public-key-signature", signature)
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap()
    };
    // Signed by another key: refused, nothing revoked.
    let stranger: Signature = SigningKey::random(&mut OsRng).sign(body.as_bytes());
    let reply = common::request(post(Base64::encode_string(stranger.to_der().as_bytes()))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(
        common::bearer(server.addr, "/api/user", &token)
            .await
            .status,
        StatusCode::OK
    );

    let signature: Signature = github.sign(body.as_bytes());
    let reply = common::request(post(Base64::encode_string(signature.to_der().as_bytes()))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let feedback: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(feedback[0]["label"], "true_positive");
    assert_eq!(feedback[0]["token_type"], "demo_pat");

    assert_eq!(
        common::bearer(server.addr, "/api/user", &token)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let (ok, listed, _) = demo_tokens(db.path(), &["list", "--user", "2", "--json"]);
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["state"], "revoked");
}
