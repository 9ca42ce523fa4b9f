//! The tower-pat demo: sign in, generate personal access tokens on a page, call an API
//! with them, revoke them.
//!
//! ```text
//! cargo run --all-features --example demo            # serves http://127.0.0.1:3000
//! PORT=8080 cargo run --all-features --example demo  # another port (0 picks a free one)
//! ```
//!
//! - `GET /`: sign in as one of the demo users it prints (a real session from
//!   tower-sessions; passwords checked against argon2 hashes).
//! - `GET /settings/tokens`: the token page from `tower_pat::manage`: generate a token
//!   with the scopes you pick, see it once with a `curl` line to paste, regenerate it
//!   (the old one working on for an hour or a day, if you like), revoke it. Alice is the
//!   administrator and may grant every scope; Bob may grant all but `orders:admin`, and
//!   the page shows him only those. Each may hold 20 live tokens.
//! - The API, from Passport's documentation, answering JSON, and refusing with JSON and
//!   an RFC 6750 challenge:
//!
//! | route | needs |
//! |---|---|
//! | `GET /api/user` | `user:read` |
//! | `POST /api/orders` | `orders:create` |
//! | `GET /api/orders` | all of `orders:read`, `orders:create` |
//! | `GET /api/orders/{id}/status` | any of `orders:read`, `orders:read:status` |
//! | `GET /api/admin/orders` | `orders:admin` (only alice may grant it) |
//!
//! `GET /metrics` serves what the crate counted (feature `metrics`) in Prometheus' text
//! format, through `metrics-exporter-prometheus`.
//!
//! Tokens live in a SQLite file in the temporary directory (`TOWER_PAT_DEMO_DB` names
//! another), so they outlive a restart; sessions live in memory, so a restart signs
//! everyone out.
//!
//! # The command line
//!
//! The demo embeds `tower_pat::cli`, as an application does: `demo tokens <command>`
//! runs against the same database (`TOWER_PAT_DEMO_DB`) with the demo's scopes and
//! rules. The demo users' ids are 1 (alice, the administrator) and 2 (bob).
//!
//! ```text
//! cargo run --all-features --example demo -- tokens --help
//! TOKEN=$(cargo run -q --all-features --example demo -- tokens create --user 1 --name ci --scopes user:read --expires-in 30d)
//! curl -i -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/api/user
//! cargo run -q --all-features --example demo -- tokens list --user 1
//! cargo run -q --all-features --example demo -- tokens revoke --user 1 --id <ID>
//! cargo run -q --all-features --example demo -- tokens prune --older-than 30d
//! ```
//!
//! # Leaked tokens
//!
//! With `TOWER_PAT_DEMO_SCANNING_KEY` naming a PEM public key file and
//! `TOWER_PAT_DEMO_SCANNING_KEY_ID` the identifier it is published under, the demo
//! mounts `tower_pat::leaks` at `POST /github/secret-scanning`: a report signed with
//! that key revokes the real tokens it names. Unset, the endpoint is not mounted (the
//! startup log says so).

mod app;

use std::{env, error::Error, net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tower_pat::{
    SqliteStore,
    cli::{CliError, TokensCommand},
    leaks::{KeySet, LeakReports},
};

/// Where the leak endpoint is mounted.
const LEAK_PATH: &str = "/github/secret-scanning";

/// The tower-pat demo: with no command, serves the demo site.
#[derive(Parser)]
#[command(name = "demo")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the demo's tokens (its users: 1 is alice, 2 is bob).
    #[command(subcommand)]
    Tokens(TokensCommand),
}

/// The database file: `TOWER_PAT_DEMO_DB`, or one in the temporary directory.
fn database() -> PathBuf {
    env::var_os("TOWER_PAT_DEMO_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|| env::temp_dir().join("tower-pat-demo-site.sqlite3"))
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Some(Command::Tokens(command)) => tokens(command).await,
        None => match serve().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `demo tokens …`: no log on the console, so that standard output holds only what the
/// command prints, and a failure is one line on standard error. No migration either:
/// `migrate` is a command of its own.
async fn tokens(command: TokensCommand) -> ExitCode {
    let store = match SqliteStore::<i64>::open(database()).await {
        Ok(store) => store,
        Err(e) => return CliError::unreachable(e).report(),
    };
    command.run(&app::tokens(store)).await
}

/// The verifying key of the leak endpoint, from the files the environment names: `None`
/// when neither variable is set.
fn scanning_key() -> Result<Option<(String, KeySet)>, Box<dyn Error>> {
    let file = env::var_os("TOWER_PAT_DEMO_SCANNING_KEY");
    let id = env::var("TOWER_PAT_DEMO_SCANNING_KEY_ID").ok();
    let (file, id) = match (file, id) {
        (None, None) => return Ok(None),
        (Some(file), Some(id)) => (PathBuf::from(file), id),
        _ => {
            return Err(
                "set both TOWER_PAT_DEMO_SCANNING_KEY (a PEM public key file) and \
                 TOWER_PAT_DEMO_SCANNING_KEY_ID (its identifier), or neither"
                    .into(),
            );
        }
    };
    let pem = std::fs::read_to_string(&file)
        .map_err(|e| format!("TOWER_PAT_DEMO_SCANNING_KEY={}: {e}", file.display()))?;
    let keys = KeySet::from_pem(id.clone(), &pem)
        .map_err(|e| format!("TOWER_PAT_DEMO_SCANNING_KEY={}: {e}", file.display()))?;
    Ok(Some((id, keys)))
}

async fn serve() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .init();

    let port: u16 = match env::var("PORT") {
        Ok(p) => p.parse().map_err(|e| format!("PORT={p:?}: {e}"))?,
        Err(_) => 3000,
    };
    let db = database();
    let store = SqliteStore::<i64>::open(&db).await?;
    store.migrate().await?;
    // Prometheus' exporter, installed before the demo builds its layer and cache (they
    // take their counters from it); `GET /metrics` serves what it counted.
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let mut demo = app::demo(store);
    // Tokens that expired, or were revoked, more than 30 days ago go (an audit event
    // says how many).
    demo.tokens.prune(time::Duration::days(30)).await?;

    // GitHub's secret scanning reports leaks here, signed: outside the sessions and the
    // token layer (the signature is the authentication).
    let scanning = scanning_key()?;
    if let Some((_, keys)) = &scanning {
        let leaks = LeakReports::new(demo.tokens.audit_source("leak"), keys.clone());
        demo.router = demo.router.route_service(LEAK_PATH, leaks);
    }

    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let url = format!("http://{}", listener.local_addr()?);

    println!("tower-pat demo");
    println!();
    println!("  Open {url}/ and sign in as one of:");
    for (id, name, password) in app::USERS {
        let role = if id == app::ADMIN {
            "  (administrator: may grant orders:admin)"
        } else {
            ""
        };
        println!("    {name:<8} password: {password}{role}");
    }
    println!();
    println!(
        "  The token page is {url}{}: generate a token, copy it, then try",
        app::TOKEN_PAGE
    );
    println!("    curl -i -H \"Authorization: Bearer $TOKEN\" {url}/api/user");
    println!("    curl -i -H \"Authorization: Bearer $TOKEN\" {url}/api/orders");
    println!("    curl -i -X POST -H \"Authorization: Bearer $TOKEN\" {url}/api/orders");
    println!("    curl -i -H \"Authorization: Bearer $TOKEN\" {url}/api/orders/1001/status");
    println!(
        "    curl -i -H \"Authorization: Bearer $TOKEN\" {url}/api/admin/orders   # alice's tokens only"
    );
    println!();
    println!("  Tokens are kept in {}", db.display());
    println!(
        "  Manage them from the command line: cargo run --all-features --example demo -- tokens --help"
    );
    match &scanning {
        Some((id, _)) => println!("  Leak reports: POST {url}{LEAK_PATH} (GitHub key {id:?})"),
        None => println!(
            "  Leak reports: {LEAK_PATH} is not mounted (set TOWER_PAT_DEMO_SCANNING_KEY and \
             TOWER_PAT_DEMO_SCANNING_KEY_ID)"
        ),
    }
    println!("  What the crate counted (feature `metrics`): curl {url}/metrics");
    println!();
    println!("Listening on {url} (Ctrl-C to stop)");

    // With each connection's address, which the sign-in throttle keys on.
    axum::serve(
        listener,
        demo.router
            .merge(app::metrics(prometheus))
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    // The last uses recorded in memory, written before the process goes.
    demo.layer.flush().await;
    Ok(())
}
