//! The demo application: sign-in with a real session, the token page, and an API guarded
//! by personal access tokens, shaped after Laravel Passport's documentation. `main.rs`
//! serves it; the browser test (`tests/browser/`) drives the very same application.

use std::sync::{Arc, Mutex, PoisonError};

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};
use axum::{
    Form, Json, Router,
    body::{Body, Bytes},
    extract::{Path, State},
    http::{HeaderValue, Response, StatusCode, header},
    response::{IntoResponse, Redirect},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use time::Duration;
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
    pub layer: PatLayer<SqliteStore<i64>>,
    /// The facade behind the page and the API.
    // `tests/browser/` builds this module too, and does not read it.
    #[allow(dead_code)]
    pub tokens: Tokens<SqliteStore<i64>>,
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
        }
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
    let state = AppState {
        users: Arc::new(Users::new()),
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
                .merge(post(create_order).route_layer(tokens.require_all(["orders:create"]))),
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
            Ok(new) if !new.item.trim().is_empty() && new.quantity > 0 => new,
            _ => {
                return json_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request",
                    "invalid_order",
                    "expected {\"item\": a name, \"quantity\": a positive number}",
                );
            }
        }
    };
    let mut orders = state.orders.lock().unwrap_or_else(PoisonError::into_inner);
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

/// `POST /login`: checks the password (argon2, off the async threads), renews the
/// session id, and goes to the token page.
async fn login(
    State(state): State<AppState>,
    session: Session,
    Form(credentials): Form<Credentials>,
) -> axum::response::Response {
    let users = Arc::clone(&state.users);
    let verified = tokio::task::spawn_blocking(move || {
        users.verify(&credentials.username, &credentials.password)
    })
    .await
    .ok()
    .flatten();
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
