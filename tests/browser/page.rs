//! The token page in a real browser: headless Chromium, driven over WebDriver, against
//! the demo application (`examples/demo`) served on loopback. (One test here needs no
//! browser: the demo refusing another site's sign-in form.)
//!
//! Needs `chromedriver` and Chromium (Debian: `apt-get install chromium chromium-driver`).
//! `TOWER_PAT_CHROMEDRIVER` names the chromedriver binary; without it the test says it
//! was skipped, and why, and passes. `TOWER_PAT_CHROMIUM` names the browser when
//! chromedriver would not find it by itself. `.ci/run` sets both.
//!
//! The test saves screenshots of the page, 1280 and 390 pixels wide, in
//! `<target dir>/screenshots/`.

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

/// The demo's sign-in and sign-out forms sit behind tower-http's CSRF protection: another
/// site's form is refused before a password is checked or a session touched (no browser
/// needed for this one).
#[tokio::test]
async fn the_demo_refuses_another_sites_sign_in() {
    let (addr, _demo) = serve_demo().await;
    let (_, name, password) = app::USERS[0];
    let form = format!("username={name}&password={password}");
    let post = |path: &str, site: &str| {
        http::Request::post(format!("http://{addr}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("sec-fetch-site", site)
            .body(http_body_util::Full::new(hyper::body::Bytes::from(
                form.clone(),
            )))
            .expect("a request")
    };
    for path in ["/login", "/logout"] {
        for site in ["cross-site", "same-site"] {
            let reply = common::request(post(path, site)).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path} {site}");
            let body: Value = serde_json::from_str(&reply.body).expect("JSON");
            assert_eq!(body["code"], "cross_origin", "{path} {site}");
            assert!(reply.headers.get("set-cookie").is_none(), "{path} {site}");
        }
    }
    // The demo's own form signs in.
    let reply = common::request(post("/login", "same-origin")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers["location"], app::TOKEN_PAGE);
    assert!(reply.headers.get("set-cookie").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_page_in_a_real_browser() {
    let Some(chromedriver) = std::env::var_os(CHROMEDRIVER_VAR).filter(|v| !v.is_empty()) else {
        say(&format!(
            "the_token_page_in_a_real_browser: skipped: {CHROMEDRIVER_VAR} is not set (it names \
             the chromedriver binary; Debian: apt-get install chromium chromium-driver, then \
             {CHROMEDRIVER_VAR}=/usr/bin/chromedriver)"
        ));
        return;
    };
    let (addr, demo) = serve_demo().await;
    let driver = Chromedriver::start(Path::new(&chromedriver));
    let profile = TempDir::new("chromium-profile");
    let client = browser(&driver, &profile.0).await;

    let outcome = AssertUnwindSafe(drive(&client, addr)).catch_unwind().await;
    // The browser goes whatever happened, then the failure, if any, is told.
    let _ = client.close().await;
    drop(driver);
    demo.layer.flush().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn drive(c: &Client, addr: SocketAddr) {
    let base = format!("http://{addr}");
    let (_, name, password) = app::USERS[0];
    sign_in(c, &base, name, password).await;
    until(
        c,
        "the empty list",
        "return !document.getElementById('tp-empty').hidden",
    )
    .await;

    // The defaults come pre-checked: Passport's user:read and orders:create.
    let checked = js(
        c,
        "return Array.from(document.querySelectorAll('input[name=scopes]:checked')).map(e => e.value);",
    )
    .await;
    assert_eq!(checked, json!(["user:read", "orders:create"]));
    let expiry = js(
        c,
        "return Array.from(document.querySelectorAll('#tp-expiry option')).map(o => o.value);",
    )
    .await;
    assert_eq!(expiry, json!(["30", "90", "365"]));

    // A token with two scopes: all GET /api/orders needs, and not user:read.
    let orders = generate(c, "orders token", &["orders:read", "orders:create"], "30").await;
    assert!(orders.starts_with("pat_"), "the page shows a token");
    let curl = c
        .find(Locator::Id("tp-curl"))
        .await
        .expect("the curl line")
        .text()
        .await
        .expect("its text");
    assert!(
        curl.contains(&orders) && curl.contains(&format!("{base}/api/user")),
        "the curl line holds the token and the API's URL: {curl}"
    );
    assert_eq!(
        api_status(addr, "/api/orders", &orders).await,
        StatusCode::OK
    );
    assert_eq!(
        api_status(addr, "/api/user", &orders).await,
        StatusCode::FORBIDDEN,
        "the token lacks user:read"
    );
    let row = js(
        c,
        "const r = document.querySelector('#tp-tokens tr'); return [r.querySelector('.tp-token-name').textContent, r.dataset.status, Array.from(r.querySelectorAll('.tp-chip')).map(e => e.textContent)];",
    )
    .await;
    assert_eq!(
        row,
        json!(["orders token", "active", ["orders:create", "orders:read"]])
    );

    // The copy button does something a person can see.
    c.find(Locator::Id("tp-copy"))
        .await
        .expect("the copy button")
        .click()
        .await
        .expect("copying");
    until(
        c,
        "the copy button's answer",
        "return ['Copied', 'Press Ctrl+C'].includes(document.getElementById('tp-copy').textContent)",
    )
    .await;

    // After a reload the token is gone for good: not in the page, not in its source.
    c.refresh().await.expect("reloading");
    page_loaded(c).await;
    let source = c.source().await.expect("the page source");
    assert!(
        !source.contains(&orders),
        "the plaintext is gone after a reload"
    );
    assert_eq!(
        js(c, "return [document.getElementById('tp-reveal').hidden, document.getElementById('tp-secret').textContent];").await,
        json!([true, ""])
    );

    // What a user typed is text, never markup.
    let evil = "<script>alert(1)</script>";
    let second = generate(c, evil, &["user:read"], "90").await;
    assert!(second.starts_with("pat_"));
    assert!(
        matches!(c.get_alert_text().await, Err(CmdError::Standard(ref e)) if e.error() == "no such alert"),
        "no alert was opened"
    );
    // Tokens made in the same second list in id order, so look for the name among all.
    assert_eq!(
        js(
            c,
            &format!(
                "return [document.querySelectorAll('#tp-tokens script').length, Array.from(document.querySelectorAll('#tp-tokens .tp-token-name')).some(e => e.textContent === {})];",
                json!(evil)
            ),
        )
        .await,
        json!([0, true]),
        "the name shows as the characters typed"
    );
    c.find(Locator::Id("tp-done"))
        .await
        .expect("the done button")
        .click()
        .await
        .expect("dismissing the token");

    // Revoke the first token from the page, after the confirmation.
    let id = row_id(c, "orders token").await;
    c.find(Locator::Css(&format!("tr[data-id='{id}'] .tp-revoke")))
        .await
        .expect("its revoke button")
        .click()
        .await
        .expect("asking to revoke");
    assert_eq!(
        api_status(addr, "/api/orders", &orders).await,
        StatusCode::OK,
        "nothing is revoked before the confirmation"
    );
    c.find(Locator::Css(&format!("tr[data-id='{id}'] .tp-revoke-yes")))
        .await
        .expect("the confirmation")
        .click()
        .await
        .expect("revoking");
    until(
        c,
        "the revoked row",
        &format!("const r = document.querySelector(\"tr[data-id='{id}']\"); return !!r && r.dataset.status === 'revoked' && r.textContent.includes('Revoked');"),
    )
    .await;
    assert_eq!(
        api_status(addr, "/api/orders", &orders).await,
        StatusCode::UNAUTHORIZED,
        "a revoked token no longer works"
    );
    assert_eq!(
        api_status(addr, "/api/user", &second).await,
        StatusCode::OK,
        "the other token still does"
    );

    // One more token, for the screenshots to show the page as a person sees it just
    // after generating one.
    generate(c, "CI deploy", &["user:read", "orders:create"], "365").await;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    for width in [1280, 390] {
        let path = dir.join(format!("token-page-{width}.png"));
        screenshot(c, width, &path).await;
        say(&format!("screenshot: {}", path.display()));
    }

    refusals(c).await;
}

/// The page reads the API's refusals (`{"error", "code", "message"}`): a 422 lists each
/// problem the server named, and `not_signed_in` tells the person to sign in again.
async fn refusals(c: &Client) {
    // A scope the application does not define, slipped into the form: only the server
    // can refuse it.
    c.refresh().await.expect("reloading");
    page_loaded(c).await;
    js(
        c,
        "const box = document.querySelector('input[name=scopes]'); box.value = 'orders:delete'; box.checked = true; return null;",
    )
    .await;
    let field = c
        .find(Locator::Id("tp-name"))
        .await
        .expect("the name field");
    field.send_keys("refused").await.expect("typing the name");
    c.find(Locator::Id("tp-generate"))
        .await
        .expect("the generate button")
        .click()
        .await
        .expect("generating");
    until(
        c,
        "the server's problems under the form",
        "const e = document.getElementById('tp-errors'); return !e.hidden && e.textContent.includes('\"orders:delete\" is not a scope this application defines');",
    )
    .await;
    assert_eq!(
        js(c, "return document.getElementById('tp-reveal').hidden;").await,
        json!(true),
        "no token was shown"
    );

    // Signed out behind the page's back (the session cookie gone): the next call is
    // refused `not_signed_in`, and the page says so, with the way back to sign in.
    c.delete_all_cookies().await.expect("deleting the cookies");
    c.find(Locator::Id("tp-revoke-all"))
        .await
        .expect("the revoke-all button")
        .click()
        .await
        .expect("asking to revoke all");
    c.find(Locator::Id("tp-confirm-all-yes"))
        .await
        .expect("the confirmation")
        .click()
        .await
        .expect("revoking all");
    until(
        c,
        "the signed-out notice",
        "const n = document.getElementById('tp-notice'); return !n.hidden && n.textContent.startsWith('You are signed out') && !!n.querySelector('a[href=\"/\"]');",
    )
    .await;
}
