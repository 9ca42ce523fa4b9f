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

mod app;

use std::{env, error::Error, net::SocketAddr, path::PathBuf};

use tokio::net::TcpListener;
use tower_pat::SqliteStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .init();

    let port: u16 = match env::var("PORT") {
        Ok(p) => p.parse().map_err(|e| format!("PORT={p:?}: {e}"))?,
        Err(_) => 3000,
    };
    let db = env::var_os("TOWER_PAT_DEMO_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|| env::temp_dir().join("tower-pat-demo-site.sqlite3"));
    let store = SqliteStore::<i64>::open(&db).await?;
    store.migrate().await?;
    // Prometheus' exporter, installed before the demo builds its layer and cache (they
    // take their counters from it); `GET /metrics` serves what it counted.
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let demo = app::demo(store);
    // Tokens that expired, or were revoked, more than 30 days ago go (an audit event
    // says how many).
    demo.tokens.prune(time::Duration::days(30)).await?;

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
