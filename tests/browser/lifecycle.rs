//! The token lifecycle on the demo's token page in a real browser (headless Chromium over
//! WebDriver, as `tests/browser.rs`): what each demo user may grant (alice every scope,
//! bob all but `orders:admin`), a token marked as expiring soon, Regenerate with an
//! overlap (the new token shown once, the old one working until the overlap ends), and
//! "Load more" for a long list. Screenshots of both users' pages, 1280 and 390 pixels
//! wide, go to `<target dir>/screenshots/lifecycle-*.png`.
//!
//! Needs `TOWER_PAT_CHROMEDRIVER` (and `TOWER_PAT_CHROMIUM` where chromedriver would not
//! find the browser); without it the test says it was skipped, and passes.

use crate::app;
use crate::common;

use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener as StdListener, TcpStream},
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use fantoccini::{Client, ClientBuilder, Locator, error::CmdError, wd::Capabilities};
use futures_util::FutureExt;
use http::StatusCode;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tower_pat::SqliteStore;

const CHROMEDRIVER_VAR: &str = "TOWER_PAT_CHROMEDRIVER";
const CHROMIUM_VAR: &str = "TOWER_PAT_CHROMIUM";

/// The flags that keep a headless Chromium quiet: no sandbox (containers), no GPU, and
/// nothing fetched in the background (there is no network to fetch from).
const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
];

/// chromedriver on a free loopback port, stopped when dropped.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Chromedriver {
    fn start(binary: &Path) -> Self {
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let driver = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of its own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("tower-pat-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes past the harness's capture, so a skip shows in a plain `cargo test`.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

async fn serve_demo() -> (SocketAddr, app::Demo) {
    let store = SqliteStore::<i64>::open(":memory:")
        .await
        .expect("an in-memory SQLite store");
    store.migrate().await.expect("migrations");
    let demo = app::demo(store);
    let addr = common::serve(demo.router.clone()).await;
    (addr, demo)
}

async fn browser(driver: &Chromedriver, profile: &Path) -> Client {
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.push("--window-size=1280,1000".to_owned());
    let mut options = json!({ "args": args });
    if let Some(binary) = std::env::var_os(CHROMIUM_VAR).filter(|b| !b.is_empty()) {
        options["binary"] = json!(binary.to_string_lossy());
    }
    let mut caps = Capabilities::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url())
        .await
        .expect("a WebDriver session with headless Chromium")
}

/// Evaluates `script` in the page (WebDriver's execute is not subject to the page's CSP).
async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
}

/// Waits, up to 10 s, until `script` returns `true`.
async fn until(c: &Client, what: &str, script: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if js(c, script).await == Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn page_loaded(c: &Client) {
    until(
        c,
        "the token list",
        "return document.getElementById('tp-loading').hidden === true",
    )
    .await;
}

async fn sign_in(c: &Client, base: &str, name: &str, password: &str) {
    c.goto(&format!("{base}/")).await.expect("the home page");
    c.find(Locator::Id("username"))
        .await
        .expect("the name field")
        .send_keys(name)
        .await
        .expect("typing");
    c.find(Locator::Id("password"))
        .await
        .expect("the password field")
        .send_keys(password)
        .await
        .expect("typing");
    c.find(Locator::Id("sign-in"))
        .await
        .expect("the sign-in button")
        .click()
        .await
        .expect("signing in");
    until(
        c,
        "the token page after sign-in",
        &format!(
            "return location.pathname === '{}' && !!document.getElementById('tp-create')",
            app::TOKEN_PAGE
        ),
    )
    .await;
    page_loaded(c).await;
}

/// Fills the form and generates a token; returns the plaintext the page shows.
async fn generate(c: &Client, name: &str, scopes: &[&str], days: &str) -> String {
    let field = c
        .find(Locator::Id("tp-name"))
        .await
        .expect("the name field");
    field.clear().await.expect("clearing the name");
    field.send_keys(name).await.expect("typing the name");
    for checkbox in c
        .find_all(Locator::Css("input[name='scopes']"))
        .await
        .expect("the scope checkboxes")
    {
        let value = checkbox
            .attr("value")
            .await
            .expect("a value")
            .unwrap_or_default();
        let wanted = scopes.contains(&value.as_str());
        if checkbox.is_selected().await.expect("checked?") != wanted {
            checkbox.click().await.expect("ticking a scope");
        }
    }
    c.find(Locator::Id("tp-expiry"))
        .await
        .expect("the expiry choice")
        .select_by_value(days)
        .await
        .expect("choosing the expiry");
    c.find(Locator::Id("tp-generate"))
        .await
        .expect("the generate button")
        .click()
        .await
        .expect("generating");
    until(
        c,
        "the new token",
        "return !document.getElementById('tp-reveal').hidden && document.getElementById('tp-secret').textContent !== ''",
    )
    .await;
    let secret = c
        .find(Locator::Id("tp-secret"))
        .await
        .expect("the token")
        .text()
        .await
        .expect("its text");
    // The list is reloaded after the token is shown.
    until(
        c,
        "the new row",
        &format!(
            "return Array.from(document.querySelectorAll('#tp-tokens .tp-token-name')).some(e => e.textContent === {})",
            json!(name)
        ),
    )
    .await;
    secret
}

/// The `data-id` of the newest row named `name`.
async fn row_id(c: &Client, name: &str) -> String {
    let script = format!(
        "const row = Array.from(document.querySelectorAll('#tp-tokens tr')).find(r => r.querySelector('.tp-token-name').textContent === {}); return row ? row.dataset.id : null;",
        json!(name)
    );
    js(c, &script)
        .await
        .as_str()
        .unwrap_or_else(|| panic!("no row named {name:?}"))
        .to_owned()
}

async fn api_status(addr: SocketAddr, path: &str, token: &str) -> StatusCode {
    common::bearer(addr, path, token).await.status
}

/// Resizes the window so that the page is `width` CSS pixels wide and shown whole, and
/// saves a screenshot.
async fn screenshot(c: &Client, width: u32, path: &Path) {
    let mut outer = (width, 1000);
    for _ in 0..3 {
        c.set_window_size(outer.0, outer.1).await.expect("resizing");
        let sizes = js(
            c,
            "return [window.innerWidth, window.outerWidth, window.innerHeight, window.outerHeight, document.documentElement.scrollHeight];",
        )
        .await;
        let n = |i: usize| sizes[i].as_u64().unwrap_or_default() as u32;
        let (inner_w, outer_w, inner_h, outer_h, page_h) = (n(0), n(1), n(2), n(3), n(4));
        let want = (
            width + outer_w.saturating_sub(inner_w),
            page_h + outer_h.saturating_sub(inner_h),
        );
        if inner_w == width && inner_h >= page_h {
            break;
        }
        outer = want;
    }
    let inner_w = js(c, "return window.innerWidth;").await;
    assert_eq!(
        inner_w,
        json!(width),
        "the browser would not be made {width} pixels wide"
    );
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(path, png).expect("saving the screenshot");
}

/// Where the screenshots go.
fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    dir
}

async fn screenshots(c: &Client, who: &str) {
    for width in [1280, 390] {
        let path = screenshot_dir().join(format!("lifecycle-{who}-{width}.png"));
        screenshot(c, width, &path).await;
        say(&format!("screenshot: {}", path.display()));
    }
    // Back to the width the rest of the test expects.
    c.set_window_size(1280, 1000).await.expect("resizing");
}

/// The scope checkboxes the page offers.
async fn offered_scopes(c: &Client) -> Value {
    js(
        c,
        "return Array.from(document.querySelectorAll('input[name=scopes]')).map(e => e.value);",
    )
    .await
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_lifecycle_in_a_real_browser() {
    let Some(chromedriver) = std::env::var_os(CHROMEDRIVER_VAR).filter(|v| !v.is_empty()) else {
        say(&format!(
            "the_token_lifecycle_in_a_real_browser: skipped: {CHROMEDRIVER_VAR} is not set (it \
             names the chromedriver binary; Debian: apt-get install chromium chromium-driver, \
             then {CHROMEDRIVER_VAR}=/usr/bin/chromedriver)"
        ));
        return;
    };
    let (addr, demo) = serve_demo().await;
    let driver = Chromedriver::start(Path::new(&chromedriver));
    let profile = TempDir::new("chromium-profile-lifecycle");
    let client = browser(&driver, &profile.0).await;

    let outcome = AssertUnwindSafe(drive_lifecycle(&client, addr, &demo))
        .catch_unwind()
        .await;
    let _ = client.close().await;
    drop(driver);
    demo.layer.flush().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn drive_lifecycle(c: &Client, addr: SocketAddr, demo: &app::Demo) {
    let base = format!("http://{addr}");
    let (alice, alice_name, alice_password) = app::USERS[0];
    let (bob, bob_name, bob_password) = app::USERS[1];
    assert_eq!(alice, app::ADMIN);

    // Alice, the administrator, may grant every scope.
    sign_in(c, &base, alice_name, alice_password).await;
    assert_eq!(
        offered_scopes(c).await,
        json!([
            "user:read",
            "orders:create",
            "orders:read",
            "orders:read:status",
            "orders:admin"
        ])
    );
    let admin = generate(c, "admin report", &["orders:admin"], "30").await;
    assert_eq!(
        api_status(addr, "/api/admin/orders", &admin).await,
        StatusCode::OK
    );
    c.find(Locator::Id("tp-done"))
        .await
        .expect("the done button")
        .click()
        .await
        .expect("dismissing the token");

    // A token that expires in three days is marked.
    demo.tokens
        .create_with(
            alice,
            tower_pat::CreateToken::new("expiring soon")
                .scopes(["user:read"])
                .expires_in(time::Duration::days(3)),
        )
        .await
        .expect("a short-lived token");
    let deploy = generate(c, "deploy", &["user:read", "orders:create"], "90").await;
    let deploy_id = row_id(c, "deploy").await;
    let soon = js(
        c,
        "const r = Array.from(document.querySelectorAll('#tp-tokens tr')).find(r => r.querySelector('.tp-token-name').textContent === 'expiring soon'); return r ? r.querySelector('.tp-soon').textContent : null;",
    )
    .await;
    let soon = soon.as_str().expect("the expiring token's warning");
    assert!(
        soon == "Expires in 2 days" || soon == "Expires in 3 days",
        "{soon}"
    );
    assert_eq!(
        js(
            c,
            "return document.querySelectorAll('#tp-tokens .tp-soon').length;"
        )
        .await,
        json!(1),
        "only that one is marked"
    );
    c.find(Locator::Id("tp-done"))
        .await
        .expect("the done button")
        .click()
        .await
        .expect("dismissing the token");

    // Regenerate "deploy", keeping the old one for an hour.
    click(c, &format!("tr[data-id='{deploy_id}'] .tp-rotate")).await;
    assert_eq!(
        api_status(addr, "/api/user", &deploy).await,
        StatusCode::OK,
        "nothing happens before the confirmation"
    );
    c.find(Locator::Css(&format!(
        "tr[data-id='{deploy_id}'] .tp-overlap-choice"
    )))
    .await
    .expect("the overlap choice")
    .select_by_value("3600")
    .await
    .expect("choosing an hour");
    screenshots(c, "alice-regenerate").await;
    click(c, &format!("tr[data-id='{deploy_id}'] .tp-rotate-yes")).await;
    until(
        c,
        "the regenerated token",
        "return !document.getElementById('tp-reveal').hidden && document.getElementById('tp-secret').textContent.startsWith('pat_');",
    )
    .await;
    let regenerated = c
        .find(Locator::Id("tp-secret"))
        .await
        .expect("the token")
        .text()
        .await
        .expect("its text");
    assert_ne!(regenerated, deploy);
    until(
        c,
        "the old row marked replaced",
        &format!(
            "const r = document.querySelector(\"tr[data-id='{deploy_id}']\"); return !!r && !!r.dataset.rotatedTo && r.textContent.includes('Replaced') && !r.querySelector('.tp-rotate');"
        ),
    )
    .await;
    let notice = js(
        c,
        "return document.getElementById('tp-notice').textContent;",
    )
    .await;
    assert!(
        notice.as_str().is_some_and(
            |n| n.starts_with("Regenerated \u{201c}deploy\u{201d}. The old token works until")
        ),
        "{notice}"
    );
    assert_eq!(api_status(addr, "/api/user", &deploy).await, StatusCode::OK);
    assert_eq!(
        api_status(addr, "/api/user", &regenerated).await,
        StatusCode::OK
    );
    assert_eq!(
        js(
            c,
            &format!("return Array.from(document.querySelectorAll('#tp-tokens tr')).filter(r => r.dataset.id !== '{deploy_id}' && r.querySelector('.tp-token-name').textContent === 'deploy' && r.textContent.includes('Regenerated from an earlier token') && !!r.querySelector('.tp-rotate')).length;"),
        )
        .await,
        json!(1),
        "the successor is listed, and may be regenerated in turn"
    );
    screenshots(c, "alice").await;
    c.find(Locator::Id("tp-done"))
        .await
        .expect("the done button")
        .click()
        .await
        .expect("dismissing the token");

    // A long list: ten rows, then "Load more".
    for i in 0..8 {
        demo.tokens
            .create(alice, format!("bulk {i}"), ["user:read"])
            .await
            .expect("a token");
    }
    c.refresh().await.expect("reloading");
    page_loaded(c).await;
    assert_eq!(
        js(c, "return [document.querySelectorAll('#tp-tokens tr').length, document.getElementById('tp-more').hidden];").await,
        json!([10, false])
    );
    screenshots(c, "alice-list").await;
    click(c, "#tp-more").await;
    until(
        c,
        "the next page",
        "return document.querySelectorAll('#tp-tokens tr').length === 12 && document.getElementById('tp-more').hidden;",
    )
    .await;
    // The cap: 20 live tokens at most (the replaced "deploy" no longer counts).
    let live = demo
        .tokens
        .list(&alice)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.rotated_to.is_none() && !r.revoked)
        .count();
    assert_eq!(live, 11);

    // Bob may not grant orders:admin: the page does not offer it, and the server refuses
    // it when slipped into the form.
    c.delete_all_cookies().await.expect("signing out");
    sign_in(c, &base, bob_name, bob_password).await;
    assert_eq!(
        offered_scopes(c).await,
        json!([
            "user:read",
            "orders:create",
            "orders:read",
            "orders:read:status"
        ])
    );
    let bobs = generate(c, "bob's laptop", &["orders:read", "orders:create"], "30").await;
    assert_eq!(api_status(addr, "/api/orders", &bobs).await, StatusCode::OK);
    assert_eq!(
        api_status(addr, "/api/admin/orders", &bobs).await,
        StatusCode::FORBIDDEN
    );
    c.find(Locator::Id("tp-done"))
        .await
        .expect("the done button")
        .click()
        .await
        .expect("dismissing the token");
    screenshots(c, "bob").await;
    js(
        c,
        "const box = document.querySelector('input[name=scopes]'); box.value = 'orders:admin'; box.checked = true; return null;",
    )
    .await;
    let field = c
        .find(Locator::Id("tp-name"))
        .await
        .expect("the name field");
    field.send_keys("sneaky").await.expect("typing the name");
    click(c, "#tp-generate").await;
    until(
        c,
        "the server's refusal under the form",
        "const e = document.getElementById('tp-errors'); return !e.hidden && e.textContent.includes('you may not grant \"orders:admin\"');",
    )
    .await;
    assert!(
        demo.tokens
            .list(&bob)
            .await
            .unwrap()
            .iter()
            .all(|r| !r.scopes.contains("orders:admin")),
        "bob holds no orders:admin token"
    );
    assert!(matches!(
        c.get_alert_text().await,
        Err(CmdError::Standard(ref e)) if e.error() == "no such alert"
    ));
}
