//! The demo application: sign-in with a real session, the token page, and an API guarded
//! by personal access tokens, shaped after Laravel Passport's documentation. `main.rs`
//! serves it; the browser test (`tests/browser/`) drives the very same application.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    num::NonZeroU32,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
};

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};
use axum::{
    Extension, Form, Json, Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, DefaultBodyLimit, Path, State},
    http::{HeaderValue, Response, StatusCode, header},
    response::{IntoResponse, Redirect},
    routing::{get, post},
};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use serde::Deserialize;
use serde_json::{Value, json};
use time::Duration;
use tokio::sync::Semaphore;
use tower_http::csrf::{CsrfLayer, ProtectionError};
use tower_pat::{
    AccessToken, PatLayer, SqliteStore, Tokens,
    manage::TokenPage,
    reject::Rejection,
    scope::{ScopeRegistry, Scopes},
};
use tower_sessions::{MemoryStore as SessionStore, Session, SessionManagerLayer};

/// The demo's users: id, name and password. Only their argon2 hashes are kept. Alice is
/// the administrator: she may grant every scope, `orders:admin` included; Bob may grant
/// the others ([`grantable`]).
pub const USERS: [(i64, &str, &str); 2] = [(1, "alice", "wonderland"), (2, "bob", "builder")];

/// The administrator among [`USERS`].
pub const ADMIN: i64 = 1;

/// The most live tokens a demo user may hold.
pub const MAX_TOKENS_PER_USER: u32 = 20;

/// The most orders a demo user may place (each user's list stays bounded).
pub const MAX_ORDERS_PER_USER: usize = 100;

/// The longest item name an order may carry, in characters.
pub const MAX_ITEM_CHARS: usize = 100;

/// The largest `POST /api/orders` body, in bytes; a larger one is answered 413.
pub const MAX_ORDER_BODY: usize = 4 * 1024;

/// How many argon2 verifications run at once. Each holds 19 MiB (argon2's default
/// memory cost), so sign-ins cost at most this many times that, however many arrive.
pub const HASHES_AT_ONCE: usize = 2;

/// Sign-in attempts a client address may make at once, before [`SIGN_IN_PERIOD_SECS`]
/// paces it.
pub const SIGN_IN_BURST: u32 = 10;

/// Then one attempt per this many seconds, per client address; the others are answered
/// 429 with `Retry-After`, without hashing anything.
pub const SIGN_IN_PERIOD_SECS: u64 = 6;

/// Where the token page is mounted.
pub const TOKEN_PAGE: &str = "/settings/tokens";

/// The session key holding the signed-in user's id.
const USER_KEY: &str = "user_id";

/// The scopes of Passport's documentation (`tokensCan`), and its `defaultScopes`, with one
/// for the administrator.
pub fn registry() -> ScopeRegistry {
    ScopeRegistry::new()
        .scope("user:read", "Retrieve the user info")
        .scope("orders:create", "Place orders")
        .scope("orders:read", "List orders")
        .scope("orders:read:status", "Check order status")
        .scope("orders:admin", "See every user's orders")
        .default_scopes(["user:read", "orders:create"])
}

/// What each user may grant a token: the administrator every scope, anyone else every
/// scope but `orders:admin`.
pub fn grantable(user: &i64) -> Scopes {
    let registry = registry();
    let names = registry
        .scopes()
        .map(|(scope, _)| scope.as_str())
        .filter(|name| *user == ADMIN || *name != "orders:admin");
    Scopes::try_from_iter(names).expect("the registry's own scopes")
}

/// The application, and the token layer to flush when the server stops.
pub struct Demo {
    /// Every route.
    pub router: Router,
    /// The layer guarding `/api`: [`PatLayer::flush`] writes the last uses on shutdown.
    // Not every binary that builds this module reads every field.
    #[allow(dead_code)]
    pub layer: PatLayer<SqliteStore<i64>>,
    /// The facade behind the page and the API.
    // Not every binary that builds this module reads every field.
    #[allow(dead_code)]
    pub tokens: Tokens<SqliteStore<i64>>,
    users: Arc<Users>,
}

impl Demo {
    /// The most argon2 verifications that ran at once since the demo started (at most
    /// [`HASHES_AT_ONCE`]).
    // Read by the tests, not by `main.rs`.
    #[allow(dead_code)]
    pub fn hashes_at_once_peak(&self) -> usize {
        self.users.peak.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    users: Arc<Users>,
    orders: Arc<Mutex<Vec<Order>>>,
}

struct Users {
    accounts: Vec<Account>,
    /// Verified against when the name is unknown, so that an unknown name takes as long
    /// as a wrong password.
    decoy: String,
    /// [`HASHES_AT_ONCE`] permits: a verification runs only holding one.
    hashing: Semaphore,
    /// Verifications running now, and the most that ever ran at once.
    running: AtomicUsize,
    peak: AtomicUsize,
    /// Sign-in attempts per client address.
    attempts: DefaultKeyedRateLimiter<IpAddr>,
}

struct Account {
    id: i64,
    name: &'static str,
    password_hash: String,
}

#[derive(Clone, Debug)]
struct Order {
    id: u64,
    user_id: i64,
    item: String,
    quantity: u32,
    status: &'static str,
}

impl Order {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "item": self.item,
            "quantity": self.quantity,
            "status": self.status,
        })
    }
}

fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes a password with default parameters")
        .to_string()
}

impl Users {
    fn new() -> Self {
        Self {
            accounts: USERS
                .iter()
                .map(|(id, name, password)| Account {
                    id: *id,
                    name,
                    password_hash: hash_password(password),
                })
                .collect(),
            decoy: hash_password("no user has this password"),
            hashing: Semaphore::new(HASHES_AT_ONCE),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            attempts: RateLimiter::keyed(
                Quota::with_period(std::time::Duration::from_secs(SIGN_IN_PERIOD_SECS))
                    .expect("a period longer than zero")
                    .allow_burst(NonZeroU32::new(SIGN_IN_BURST).expect("a burst above zero")),
            ),
        }
    }

    /// Takes one sign-in attempt from `client`'s allowance: `Err(seconds)` to wait when
    /// it has none left.
    fn attempt(&self, client: IpAddr) -> Result<(), u64> {
        // Addresses whose allowance is full again are forgotten, so the table stays
        // small whatever the number of clients.
        if self.attempts.len() > 10_000 {
            self.attempts.retain_recent();
        }
        self.attempts.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            wait.as_secs() + 1
        })
    }

    /// [`Users::verify`] off the async threads, at most [`HASHES_AT_ONCE`] at a time.
    async fn verify_bounded(self: Arc<Self>, name: String, password: String) -> Option<i64> {
        let _permit = self.hashing.acquire().await.ok()?;
        let now = self.running.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        let users = Arc::clone(&self);
        let verified = tokio::task::spawn_blocking(move || users.verify(&name, &password))
            .await
            .ok()
            .flatten();
        self.running.fetch_sub(1, Ordering::Relaxed);
        verified
    }

    /// The id of the user with this name and password.
    fn verify(&self, name: &str, password: &str) -> Option<i64> {
        let account = self.accounts.iter().find(|a| a.name == name);
        let hash = account.map_or(self.decoy.as_str(), |a| a.password_hash.as_str());
        let parsed = PasswordHash::new(hash).ok()?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        account.filter(|_| ok).map(|a| a.id)
    }

    fn name(&self, id: i64) -> Option<&'static str> {
        self.accounts.iter().find(|a| a.id == id).map(|a| a.name)
    }
}

/// The demo's token facade over `store`: the page, the API, the leak endpoint and the
/// command line (`demo tokens …`) share its rules. A year at most: the page offers 30, 90
/// and 365 days. Each user grants what `grantable` allows, and holds at most 20 live
/// tokens.
pub fn tokens(store: SqliteStore<i64>) -> Tokens<SqliteStore<i64>> {
    Tokens::new(store, registry())
        .max_lifetime(Duration::days(365))
        .grantable(grantable)
        .max_tokens_per_user(MAX_TOKENS_PER_USER)
}

/// Builds the demo over `store` (hashing the demo users' passwords takes a moment).
pub fn demo(store: SqliteStore<i64>) -> Demo {
    let tokens = tokens(store);
    let users = Arc::new(Users::new());
    let state = AppState {
        users: Arc::clone(&users),
        orders: Arc::new(Mutex::new(vec![
            order(1001, 1, "coffee beans", 2, "shipped"),
            order(1002, 1, "grinder", 1, "pending"),
            order(1003, 2, "kettle", 1, "pending"),
        ])),
    };

    // JSON refusals, with the RFC 6750 challenge the crate adds. Uses are written back
    // every 10 s instead of every minute, so that "Last used" on the page moves while you
    // try the API (a production API keeps the default).
    let layer = tokens
        .layer()
        .rejection_body(json_refusal)
        .last_used_interval(Some(Duration::seconds(10)));

    // Passport's routes, each with its scope check.
    let api = Router::new()
        .route(
            "/api/user",
            get(current_user).route_layer(tokens.require_all(["user:read"])),
        )
        .route(
            "/api/orders",
            get(list_orders)
                .route_layer(tokens.require_all(["orders:read", "orders:create"]))
                .merge(
                    post(create_order)
                        .route_layer(tokens.require_all(["orders:create"]))
                        .layer(DefaultBodyLimit::max(MAX_ORDER_BODY)),
                ),
        )
        .route(
            "/api/orders/{id}/status",
            get(order_status)
                .route_layer(tokens.require_any(["orders:read", "orders:read:status"])),
        )
        .route(
            "/api/admin/orders",
            get(every_order).route_layer(tokens.require_all(["orders:admin"])),
        )
        .layer(layer.clone());

    // The token page: the user is whoever the session says.
    let page = TokenPage::new(tokens.clone(), TOKEN_PAGE)
        .title("Personal access tokens")
        .current_user(|parts| {
            let session = parts.extensions.get::<Session>().cloned();
            async move { session?.get::<i64>(USER_KEY).await.ok().flatten() }
        })
        .sign_in_url("/")
        .example_url("/api/user")
        // Ten at a time, so that "Load more" shows with a few tokens.
        .page_size(10)
        .link("\u{2190} Demo home", "/");

    // Sessions in memory: HttpOnly, SameSite=Strict and a fresh id at sign-in. `Secure`
    // is off only because the demo serves plain HTTP on loopback; turn it on anywhere else.
    let sessions = SessionManagerLayer::new(SessionStore::default())
        .with_name("demo_session")
        .with_secure(false);

    // Signing in and out are forms: tower-http's CSRF protection refuses another site's
    // (the session cookie is SameSite too; this is the second line).
    let forms = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route_layer(
            CsrfLayer::new().with_rejection_response(|_: ProtectionError| {
                json_error(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "cross_origin",
                    "another site's form cannot sign you in or out",
                )
            }),
        );

    let router = Router::new()
        .route("/", get(home))
        .merge(forms)
        .nest_service(TOKEN_PAGE, page)
        .merge(api)
        .fallback(not_found)
        .layer(sessions)
        .with_state(state);
    Demo {
        router,
        layer,
        tokens,
        users,
    }
}

fn order(id: u64, user_id: i64, item: &str, quantity: u32, status: &'static str) -> Order {
    Order {
        id,
        user_id,
        item: item.to_owned(),
        quantity,
        status,
    }
}

fn json_refusal(r: &Rejection<'_>) -> Response<Body> {
    let mut res = Response::new(Body::from(r.to_json()));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The demo's own refusals, in the shape of the token layer's and the token page's:
/// `error` a broad class, `code` the precise reason, `message` for people.
fn json_error(
    status: StatusCode,
    error: &str,
    code: &str,
    message: &str,
) -> axum::response::Response {
    let body = json!({ "error": error, "code": code, "message": message });
    (status, Json(body)).into_response()
}

async fn not_found() -> axum::response::Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "not_found",
        "no such route",
    )
}

// ---- The API ----

/// `GET /api/user` (`user:read`): who the token belongs to, and what the token is.
async fn current_user(State(state): State<AppState>, token: AccessToken) -> Json<Value> {
    let scopes: Vec<&str> = token.scopes().iter().map(|s| s.as_str()).collect();
    Json(json!({
        "id": token.user_id(),
        "name": state.users.name(*token.user_id()),
        "token": { "id": token.id().to_string(), "name": token.name(), "scopes": scopes },
    }))
}

/// `GET /api/orders` (all of `orders:read`, `orders:create`).
async fn list_orders(State(state): State<AppState>, token: AccessToken) -> Json<Value> {
    let orders = state.orders.lock().unwrap_or_else(PoisonError::into_inner);
    let mine: Vec<Value> = orders
        .iter()
        .filter(|o| o.user_id == *token.user_id())
        .map(Order::json)
        .collect();
    Json(json!({ "orders": mine }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrder {
    item: String,
    #[serde(default = "one")]
    quantity: u32,
}

fn one() -> u32 {
    1
}

/// `POST /api/orders` (`orders:create`): `{"item", "quantity"}`, or no body for a sample.
async fn create_order(
    State(state): State<AppState>,
    token: AccessToken,
    body: Bytes,
) -> axum::response::Response {
    let new = if body.iter().all(u8::is_ascii_whitespace) {
        NewOrder {
            item: "coffee beans".to_owned(),
            quantity: 1,
        }
    } else {
        match serde_json::from_slice::<NewOrder>(&body) {
            Ok(new)
                if !new.item.trim().is_empty()
                    && new.item.chars().count() <= MAX_ITEM_CHARS
                    && new.quantity > 0 =>
            {
                new
            }
            _ => {
                return json_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request",
                    "invalid_order",
                    "expected {\"item\": a name of at most 100 characters, \"quantity\": a positive number}",
                );
            }
        }
    };
    let mut orders = state.orders.lock().unwrap_or_else(PoisonError::into_inner);
    let placed = orders
        .iter()
        .filter(|o| o.user_id == *token.user_id())
        .count();
    if placed >= MAX_ORDERS_PER_USER {
        return json_error(
            StatusCode::CONFLICT,
            "conflict",
            "too_many_orders",
            "you have placed 100 orders, the most the demo keeps",
        );
    }
    let id = orders.iter().map(|o| o.id).max().unwrap_or(1000) + 1;
    let created = Order {
        id,
        user_id: *token.user_id(),
        item: new.item,
        quantity: new.quantity,
        status: "pending",
    };
    let body = json!({ "order": created.json() });
    orders.push(created);
    (StatusCode::CREATED, Json(body)).into_response()
}

/// `GET /api/admin/orders` (`orders:admin`, which only the administrator may grant).
async fn every_order(State(state): State<AppState>) -> Json<Value> {
    let orders = state.orders.lock().unwrap_or_else(PoisonError::into_inner);
    let all: Vec<Value> = orders
        .iter()
        .map(|o| {
            let mut order = o.json();
            order["user_id"] = json!(o.user_id);
            order
        })
        .collect();
    Json(json!({ "orders": all }))
}

/// `GET /api/orders/{id}/status` (any of `orders:read`, `orders:read:status`).
async fn order_status(
    State(state): State<AppState>,
    token: AccessToken,
    Path(id): Path<u64>,
) -> axum::response::Response {
    let orders = state.orders.lock().unwrap_or_else(PoisonError::into_inner);
    match orders
        .iter()
        .find(|o| o.id == id && o.user_id == *token.user_id())
    {
        Some(o) => Json(json!({ "id": o.id, "status": o.status })).into_response(),
        None => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "order_not_found",
            "you have no such order",
        ),
    }
}

// ---- Sign-in ----

/// A page of the demo, styled by the token page's stylesheet, under a strict policy.
fn page(status: StatusCode, title: &str, body: &str) -> axum::response::Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{title}</title>\n<link rel=\"stylesheet\" href=\"{TOKEN_PAGE}/page.css\">\n</head>\n\
<body>\n<main class=\"tp\">\n{body}</main>\n</body>\n</html>\n"
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        html,
    )
        .into_response()
}

async fn signed_in(session: &Session) -> Option<i64> {
    session.get::<i64>(USER_KEY).await.ok().flatten()
}

/// `GET /`: the sign-in form, or where to go once signed in.
async fn home(State(state): State<AppState>, session: Session) -> axum::response::Response {
    match signed_in(&session)
        .await
        .and_then(|id| state.users.name(id))
    {
        Some(name) => page(StatusCode::OK, "tower-pat demo", &signed_in_body(name)),
        None => page(
            StatusCode::OK,
            "Sign in · tower-pat demo",
            &sign_in_body(None),
        ),
    }
}

fn signed_in_body(name: &str) -> String {
    format!(
        "<header class=\"tp-header\"><h1>tower-pat demo</h1>\
<p class=\"tp-lead\">Signed in as <strong>{name}</strong>.</p></header>\n\
<section class=\"tp-card\"><h2>Personal access tokens</h2>\
<p>Generate a token with the scopes you choose, then call the API with it.</p>\
<p><a class=\"tp-button tp-primary\" href=\"{TOKEN_PAGE}\">Manage your tokens</a></p></section>\n\
<section class=\"tp-card\"><h2>The API</h2><table class=\"tp-table\"><thead><tr>\
<th scope=\"col\">Route</th><th scope=\"col\">Needs</th></tr></thead><tbody>\
<tr><td data-label=\"Route\"><code>GET /api/user</code></td><td data-label=\"Needs\"><code>user:read</code></td></tr>\
<tr><td data-label=\"Route\"><code>POST /api/orders</code></td><td data-label=\"Needs\"><code>orders:create</code></td></tr>\
<tr><td data-label=\"Route\"><code>GET /api/orders</code></td><td data-label=\"Needs\">all of <code>orders:read</code>, <code>orders:create</code></td></tr>\
<tr><td data-label=\"Route\"><code>GET /api/orders/1001/status</code></td><td data-label=\"Needs\">any of <code>orders:read</code>, <code>orders:read:status</code></td></tr>\
<tr><td data-label=\"Route\"><code>GET /api/admin/orders</code></td><td data-label=\"Needs\"><code>orders:admin</code> (only alice may grant it)</td></tr>\
</tbody></table></section>\n\
<form class=\"tp-form\" method=\"post\" action=\"/logout\">\
<button class=\"tp-button\" type=\"submit\">Sign out</button></form>\n"
    )
}

fn sign_in_body(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<div class=\"tp-errors\" role=\"alert\">{e}</div>"))
        .unwrap_or_default();
    let users: String = USERS
        .iter()
        .map(|(_, name, password)| {
            format!("<li><code>{name}</code> / <code>{password}</code></li>")
        })
        .collect();
    format!(
        "<header class=\"tp-header\"><h1>tower-pat demo</h1>\
<p class=\"tp-lead\">Sign in to generate personal access tokens.</p></header>\n\
<section class=\"tp-card\"><h2>Sign in</h2>{error}\
<form class=\"tp-form\" method=\"post\" action=\"/login\">\
<label class=\"tp-field\"><span class=\"tp-label\">Name</span>\
<input type=\"text\" name=\"username\" id=\"username\" autocomplete=\"username\" required></label>\
<label class=\"tp-field\"><span class=\"tp-label\">Password</span>\
<input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"current-password\" required></label>\
<p><button class=\"tp-button tp-primary\" type=\"submit\" id=\"sign-in\">Sign in</button></p></form>\
<p class=\"tp-muted\">Demo users (name / password):</p><ul>{users}</ul></section>\n"
    )
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// `POST /login`: takes an attempt from the client's allowance, checks the password
/// (argon2, off the async threads, a bounded number at once), renews the session id, and
/// goes to the token page.
async fn login(
    State(state): State<AppState>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    session: Session,
    Form(credentials): Form<Credentials>,
) -> axum::response::Response {
    // Served without connection info, every client shares one allowance: stricter, never
    // looser.
    let client = client.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.0.ip());
    if let Err(wait) = state.users.attempt(client) {
        let mut res = json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "sign_in_throttled",
            "too many sign-in attempts from your address; wait and try again",
        );
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return res;
    }
    let verified = Arc::clone(&state.users)
        .verify_bounded(credentials.username, credentials.password)
        .await;
    let Some(id) = verified else {
        return page(
            StatusCode::UNAUTHORIZED,
            "Sign in · tower-pat demo",
            &sign_in_body(Some("Wrong name or password.")),
        );
    };
    // A new session id at sign-in: an id planted before cannot ride along.
    if session.cycle_id().await.is_err() || session.insert(USER_KEY, id).await.is_err() {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "session_unavailable",
            "the session store failed",
        );
    }
    Redirect::to(TOKEN_PAGE).into_response()
}

/// `POST /logout`: ends the session.
async fn logout(session: Session) -> axum::response::Response {
    let _ = session.flush().await;
    Redirect::to("/").into_response()
}

/// `GET /metrics`: what the crate counted (feature `metrics`; see `tower_pat::metrics`),
/// in Prometheus' text format. A real deployment serves it on an address of its own, not
/// next to the API.
// The browser test includes this file and serves no /metrics.
#[allow(dead_code)]
pub fn metrics(prometheus: metrics_exporter_prometheus::PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let text = prometheus.render();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
        }),
    )
}
