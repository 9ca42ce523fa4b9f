//! The token page and its JSON API (feature `manage`): a Tower service an application
//! mounts behind its own sign-in, where a signed-in user lists, generates, regenerates
//! (rotates) and revokes their personal access tokens.
//!
//! ```
//! use axum::{Router, body::Body, middleware::map_request};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//! use tower_pat::{MemoryStore, Tokens, manage::{TokenPage, SignedIn}, scope::ScopeRegistry};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let registry = ScopeRegistry::new()
//!     .scope("orders:read", "See orders")
//!     .scope("orders:create", "Place orders")
//!     .default_scopes(["orders:read"]);
//! let tokens = Tokens::new(MemoryStore::<i64>::new(), registry);
//!
//! let app = Router::new()
//!     .nest_service("/settings/tokens", TokenPage::new(tokens.clone(), "/settings/tokens"))
//!     // Stands in for the application's sign-in, which puts the user there.
//!     .layer(map_request(|mut req: Request<Body>| async move {
//!         req.extensions_mut().insert(SignedIn(7_i64));
//!         req
//!     }));
//!
//! let req = Request::post("/settings/tokens/tokens")
//!     .header("content-type", "application/json")
//!     .header("sec-fetch-site", "same-origin")
//!     .body(Body::from(r#"{"name":"laptop","scopes":["orders:read"],"expires_in_days":30}"#))
//!     .unwrap();
//! let res = app.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::CREATED);
//! assert_eq!(res.headers()["cache-control"], "no-store");
//! assert_eq!(tokens.list(&7).await.unwrap().len(), 1);
//!
//! // The same request from another site's page is refused, and stores nothing.
//! let req = Request::post("/settings/tokens/tokens")
//!     .header("content-type", "application/json")
//!     .header("sec-fetch-site", "cross-site")
//!     .body(Body::from(r#"{"name":"evil"}"#))
//!     .unwrap();
//! let res = app.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
//! let refusal: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!((&refusal["error"], &refusal["code"]), (&"forbidden".into(), &"cross_origin".into()));
//! assert_eq!(tokens.list(&7).await.unwrap().len(), 1);
//! # });
//! ```
//!
//! # Routes
//!
//! Paths are relative to where the service is mounted (the base path, `/settings/tokens`
//! above), as [`Router::nest_service`] hands them over. Served by itself (plain hyper),
//! mount it at the root with base path `/`, or strip the prefix first.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET {base}/` | the page: HTML, with its stylesheet and script below |
//! | `GET {base}/page.css`, `GET {base}/page.js` | the page's stylesheet and script |
//! | `GET {base}/scopes` | the scopes the user may grant ([`Tokens::grantable`]): `[{"id", "description", "default"}]`, in registration order |
//! | `GET {base}/tokens` | one page of the user's tokens, newest first: `[{"id", "name", "scopes", "created_at", "last_used_at", "expires_at", "status", "expires_in_seconds", "expires_soon", "rotated_from", "rotated_to"}]`; never the hash. `?limit=` (1 to 100, default [`page_size`](TokenPage::page_size)) and `?after=`; when there is more, a `Link: <{base}/tokens?after=…&limit=…>; rel="next"` header names the next page |
//! | `POST {base}/tokens` | `{"name", "scopes", "expires_in_days"}` → 201 `{"token": {…as above}, "plaintext": "pat_…"}`: with a rotation's, the only answer that ever holds a plaintext |
//! | `POST {base}/tokens/{id}/rotate` | `{"overlap_seconds"}` → 201 `{"token": {…the successor}, "plaintext": "pat_…", "previous": {…the old token}}` ([`Tokens::rotate`]: the old token keeps working for the overlap, 0 by default, at most 30 days) |
//! | `DELETE {base}/tokens/{id}` | 204; an id the user does not own, or that does not exist, is the same 404, and nothing changes |
//! | `DELETE {base}/tokens` | revokes every token of the user: 200 `{"revoked": n}` |
//!
//! `scopes` may be empty or absent (the registry's defaults the user may grant);
//! `expires_in_days` may be absent (the facade's default lifetime). Times are RFC 3339,
//! UTC. `status` is `active`, `expired`, `revoked`, or `idle_expired` (unused for longer
//! than [`Tokens::idle_lifetime`]); an active token has `expires_in_seconds`, and
//! `expires_soon` when that is within [`expiry_warning`](TokenPage::expiry_warning); a
//! rotated token names its successor in `rotated_to` (it works until its `expires_at`,
//! the end of its overlap), and a successor its predecessor in `rotated_from`.
//!
//! Rejections are JSON `{"error", "code", "message"}`, the three keys of
//! [`Rejection::to_json`](crate::reject::Rejection::to_json), so an application that
//! answers its API's refusals with that gets one dialect from both: `error` is a broad
//! class a client can branch on, `code` the precise reason, both stable; `message` is for
//! people and may change. (The page itself answers a signed-out user with a short HTML
//! page, or a redirect to [`sign_in_url`](TokenPage::sign_in_url).)
//!
//! | case | status | `error` | `code` |
//! |---|---|---|---|
//! | unknown path | 404 | `not_found` | `not_found` |
//! | a token id the user does not have (unknown, another user's, malformed) | 404 | `not_found` | `token_not_found` |
//! | method the path does not take | 405, with `Allow` | `invalid_request` | `method_not_allowed` |
//! | a body that is not `application/json` | 415 | `invalid_request` | `unsupported_media_type` |
//! | body over [`body_limit`](TokenPage::body_limit) | 413 | `invalid_request` | `payload_too_large` |
//! | a body that cannot be read | 400 | `invalid_request` | `malformed_body` |
//! | not JSON | 400 | `invalid_request` | `malformed_json` |
//! | a query string `GET {base}/tokens` does not take (a bad `limit`, a cursor it did not give) | 400 | `invalid_request` | `invalid_query` |
//! | empty, over-long or unreadable name (bidirectional controls, nothing visible), undefined scope or one the user may not grant, expiry above the maximum, overlap out of bounds… | 422, with `"problems": [{"field", "message"}]`, one per problem (at most 10, and one counting the rest; a message repeats at most 40 characters of what was sent) | `invalid_request` | `invalid_input` |
//! | the user has the most live tokens allowed ([`Tokens::max_tokens_per_user`]) | 422, with `problems`, naming the limit | `invalid_request` | `token_limit` |
//! | rotating a token rotated before (the message names the successor) | 409 | `conflict` | `already_rotated` |
//! | rotating a revoked or expired token | 409 | `conflict` | `token_inactive` |
//! | nobody signed in | 401 | `unauthenticated` | `not_signed_in` |
//! | a personal access token on the request | 403 | `forbidden` | `token_not_accepted` |
//! | another site's request (`Sec-Fetch-Site` / `Origin`) | 403 | `forbidden` | `cross_origin` |
//! | the store failed | 503 | `store_unavailable` | `store_unavailable` |
//! | the system failed (no randomness, say) | 500 | `internal` | `internal` |
//!
//! `invalid_request` and `store_unavailable` mean what they mean in
//! [`Rejection::to_json`](crate::reject::Rejection::to_json); the page adds `not_found`,
//! `unauthenticated`, `forbidden`, `conflict` and `internal`.
//!
//! Every answer carries `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`;
//! the page carries a strict `Content-Security-Policy` (scripts, styles and requests from
//! its own origin only, no inline script or style, Trusted Types required, no framing).
//!
//! # Who the user is
//!
//! The application's sign-in decides: by default the service reads a [`SignedIn<U>`]
//! from the request's extensions, which the application's middleware puts there;
//! [`current_user`](TokenPage::current_user) takes a function instead (reading a
//! tower-sessions `Session`, say). Nobody signed in: 401.
//!
//! A personal access token is never an identity here: a request carrying one (an
//! `Authorization: Bearer` header, an `access_token` query parameter, or an
//! [`AccessToken`](crate::AccessToken) a [`PatLayer`](crate::PatLayer) in front put
//! there) is refused with 403 whoever is signed in, so a leaked token cannot mint new
//! tokens or revoke others.
//!
//! # Cross-site requests
//!
//! The API is meant for the page, on the application's own origin. No CSRF token is
//! needed:
//!
//! - A request that changes something (`POST`, `DELETE`) passes tower-http's
//!   [`CsrfLayer`](tower_http::csrf::CsrfLayer), Go's cross-origin protection:
//!   `Sec-Fetch-Site: same-origin` or `none` passes, any other `Sec-Fetch-Site` is
//!   refused; without it, an `Origin` must name the request's own host (byte for byte,
//!   the port included). An origin named in
//!   [`allowed_origins`](TokenPage::allowed_origins) passes either way. A request with
//!   neither header passes, because it is no browser's on another site's behalf: what a
//!   browser sends across sites unasked is a form, and the body must be
//!   `application/json`, which no form can send; a JSON body or a `DELETE` from another
//!   site waits for a CORS preflight the page never grants.
//! - A read of the API (`GET` or `HEAD` of `scopes`, `tokens`) is refused when
//!   `Sec-Fetch-Site` says another site's page sent it (anything but `same-origin` or
//!   `none`), unless from an allowed origin: the answer is the user's data, which
//!   another site's `<script src>` would otherwise pull into its own process in browsers
//!   without cross-origin read blocking. The page itself and its assets open from
//!   anywhere (a link from another site).
//!
//! Both refusals are 403 `cross_origin`; tower-http's
//! [`ProtectionError`](tower_http::csrf::ProtectionError) rides in the response's
//! extensions for the layers around the service. A proxy in front must pass `Host` and
//! `Origin` through unchanged, or list the public origin in `allowed_origins`.
//!
//! # The session cookie
//!
//! The service trusts the application's session, so the session cookie must be:
//!
//! - `HttpOnly` (a script cannot read it),
//! - `SameSite=Lax` or `Strict` (another site's request does not carry it: a second line
//!   behind the origin check),
//! - `Secure` whenever the application is served anywhere but loopback (it travels over
//!   HTTPS only),
//! - and a session id renewed at sign-in (`Session::cycle_id` in tower-sessions).
//!
//! tower-sessions' `SessionManagerLayer` sets `HttpOnly`, `SameSite=Strict` and `Secure`
//! by default.
//!
//! [`Router::nest_service`]: https://docs.rs/axum/0.8/axum/struct.Router.html#method.nest_service

use std::{error::Error, fmt, future::Future, sync::Arc};

use futures_util::future::BoxFuture;
use http::request::Parts;
use time::Duration;

use crate::{
    audit::{SOURCE_APP, SOURCE_PAGE},
    lifecycle::Tokens,
    store::ManageTokens,
};

mod guard;
mod json;
mod page;
mod service;

pub use service::{PageBody, ResponseFuture};

/// The longest request body the API reads unless configured: 16 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024;

/// How many tokens one page of `GET {base}/tokens` holds unless `?limit=` says otherwise.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// How close to its expiry a token is marked "expires soon" on the page unless configured
/// ([`TokenPage::expiry_warning`]): 7 days.
pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::days(7);

/// The page's title unless configured.
pub const DEFAULT_TITLE: &str = "Personal access tokens";

/// The signed-in user, as the application's sign-in puts it into a request's extensions
/// for [`TokenPage`] to find (unless [`TokenPage::current_user`] says otherwise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIn<U>(pub U);

type UserFn<U> = Arc<dyn Fn(&Parts) -> BoxFuture<'static, Option<U>> + Send + Sync>;

/// The token page and its JSON API over a [`Tokens`] facade: a
/// `tower::Service<http::Request<B>>` for any request body `B`, answering
/// [`PageBody`]. See the [module documentation](self) for the routes and the rules.
///
/// Cheap to clone.
pub struct TokenPage<St: ManageTokens> {
    pub(crate) tokens: Tokens<St>,
    pub(crate) options: Arc<PageOptions<St::UserId>>,
}

pub(crate) struct PageOptions<U> {
    pub(crate) base: String,
    pub(crate) title: String,
    pub(crate) user: UserFn<U>,
    pub(crate) same_origin: guard::SameOrigin,
    pub(crate) body_limit: usize,
    pub(crate) example_url: Option<String>,
    pub(crate) sign_in_url: Option<String>,
    pub(crate) links: Vec<(String, String)>,
    pub(crate) expiry_warning: Duration,
    pub(crate) page_size: u32,
}

impl<U> Clone for PageOptions<U> {
    fn clone(&self) -> Self {
        Self {
            base: self.base.clone(),
            title: self.title.clone(),
            user: Arc::clone(&self.user),
            same_origin: self.same_origin.clone(),
            body_limit: self.body_limit,
            example_url: self.example_url.clone(),
            sign_in_url: self.sign_in_url.clone(),
            links: self.links.clone(),
            expiry_warning: self.expiry_warning,
            page_size: self.page_size,
        }
    }
}

impl<St: ManageTokens> Clone for TokenPage<St> {
    fn clone(&self) -> Self {
        Self {
            tokens: self.tokens.clone(),
            options: Arc::clone(&self.options),
        }
    }
}

impl<St: ManageTokens> fmt::Debug for TokenPage<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPage")
            .field("base_path", &self.options.base_or_root())
            .field("title", &self.options.title)
            .field("allowed_origins", &self.options.same_origin.allowed())
            .field("body_limit", &self.options.body_limit)
            .field("expiry_warning", &self.options.expiry_warning)
            .field("page_size", &self.options.page_size)
            .finish_non_exhaustive()
    }
}

impl<U> PageOptions<U> {
    /// The base path as the page's URLs start with it: `""` for the root.
    pub(crate) fn prefix(&self) -> &str {
        &self.base
    }

    fn base_or_root(&self) -> &str {
        if self.base.is_empty() {
            "/"
        } else {
            &self.base
        }
    }
}

impl<St: ManageTokens> TokenPage<St> {
    /// The page and API for the tokens of `tokens`, mounted at `base_path` (where the
    /// browser reaches it: `"/settings/tokens"`, or `"/"` at the root), reading the user
    /// from a [`SignedIn<U>`] extension.
    ///
    /// # Panics
    ///
    /// When `base_path` is not an absolute path of letters, digits, `-`, `.`, `_`, `~`
    /// and `/` (see [`try_new`](Self::try_new)).
    #[track_caller]
    pub fn new(tokens: Tokens<St>, base_path: &str) -> Self {
        match Self::try_new(tokens, base_path) {
            Ok(value) => value,
            Err(e) => panic!("{e}"),
        }
    }

    /// The page and API for the tokens of `tokens`, mounted at `base_path`. The facade's
    /// audit events name the page as their source (`page`), unless the facade names
    /// another ([`Tokens::audit_source`]).
    ///
    /// # Errors
    ///
    /// [`InvalidPageOption::BasePath`] naming `base_path` when it does not start with `/`, has an empty
    /// or `.`/`..` segment, or a character other than ASCII letters, digits, `-`, `.`,
    /// `_`, `~` and `/`. A trailing `/` is dropped.
    pub fn try_new(tokens: Tokens<St>, base_path: &str) -> Result<Self, InvalidPageOption> {
        let base = normalize_base(base_path)
            .ok_or_else(|| InvalidPageOption::BasePath(base_path.to_owned()))?;
        let user: UserFn<St::UserId> = Arc::new(|parts: &Parts| {
            let user = parts
                .extensions
                .get::<SignedIn<St::UserId>>()
                .map(|s| s.0.clone());
            Box::pin(std::future::ready(user))
        });
        let tokens = if tokens.source() == SOURCE_APP {
            tokens.audit_source(SOURCE_PAGE)
        } else {
            tokens
        };
        Ok(Self {
            tokens,
            options: Arc::new(PageOptions {
                base,
                title: DEFAULT_TITLE.to_owned(),
                user,
                same_origin: guard::SameOrigin::default(),
                body_limit: DEFAULT_BODY_LIMIT,
                example_url: None,
                sign_in_url: None,
                links: Vec::new(),
                expiry_warning: DEFAULT_EXPIRY_WARNING,
                page_size: DEFAULT_PAGE_SIZE,
            }),
        })
    }

    fn options_mut(&mut self) -> &mut PageOptions<St::UserId> {
        Arc::make_mut(&mut self.options)
    }

    /// Finds the signed-in user with `f` instead of the [`SignedIn<U>`] extension: `f`
    /// gets the request's head and answers the user, or `None` for nobody (401). The
    /// future it returns must own what it needs (clone the session out of the
    /// extensions first).
    ///
    /// ```
    /// use tower_pat::{MemoryStore, Tokens, manage::TokenPage, scope::ScopeRegistry};
    ///
    /// /// What an application's sign-in middleware leaves in the extensions.
    /// #[derive(Clone)]
    /// struct CurrentUser { id: i64 }
    ///
    /// let tokens = Tokens::new(MemoryStore::<i64>::new(), ScopeRegistry::new());
    /// let page = TokenPage::new(tokens, "/settings/tokens").current_user(|parts| {
    ///     let user = parts.extensions.get::<CurrentUser>().map(|u| u.id);
    ///     async move { user }
    /// });
    /// ```
    ///
    /// With tower-sessions, clone the `Session` out of the extensions and read it in the
    /// future; a session store that fails reads as nobody signed in:
    ///
    /// ```
    /// # use tower_pat::{MemoryStore, Tokens, manage::TokenPage, scope::ScopeRegistry};
    /// # let tokens = Tokens::new(MemoryStore::<i64>::new(), ScopeRegistry::new());
    /// use tower_sessions::Session;
    ///
    /// let page = TokenPage::new(tokens, "/settings/tokens").current_user(|parts| {
    ///     let session = parts.extensions.get::<Session>().cloned();
    ///     async move { session?.get::<i64>("user_id").await.ok().flatten() }
    /// });
    /// ```
    pub fn current_user<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<St::UserId>> + Send + 'static,
    {
        self.options_mut().user = Arc::new(move |parts: &Parts| Box::pin(f(parts)));
        self
    }

    /// The page's title (default [`DEFAULT_TITLE`]).
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.options_mut().title = title.into();
        self
    }

    /// Origins, besides the request's own host, whose pages may call the API (a front
    /// end on another host, or a proxy that rewrites `Host`): `scheme://host[:port]`.
    /// Each is kept as a browser writes it in `Origin` (lowercase, without the scheme's
    /// default port: `HTTPS://Front.Example:443` is `https://front.example`) and compared
    /// with the request's `Origin` byte for byte, as tower-http's
    /// [`CsrfLayer::add_trusted_origin`](tower_http::csrf::CsrfLayer::add_trusted_origin)
    /// does. Replaces the origins allowed before.
    ///
    /// # Panics
    ///
    /// When an origin is not `http://` or `https://` followed by a host and an optional
    /// port (see [`try_allowed_origins`](Self::try_allowed_origins)).
    #[track_caller]
    pub fn allowed_origins<I>(self, origins: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        match self.try_allowed_origins(origins) {
            Ok(value) => value,
            Err(e) => panic!("{e}"),
        }
    }

    /// Origins, besides the request's own host, whose pages may call the API.
    ///
    /// # Errors
    ///
    /// [`InvalidPageOption::Origin`] naming the first origin that is not `http://` or `https://`
    /// followed by a host and an optional port, with no path.
    pub fn try_allowed_origins<I>(mut self, origins: I) -> Result<Self, InvalidPageOption>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.options_mut().same_origin =
            guard::SameOrigin::new(origins).map_err(InvalidPageOption::Origin)?;
        Ok(self)
    }

    /// The longest request body read (default [`DEFAULT_BODY_LIMIT`]); a longer one is
    /// answered 413 before it is parsed.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.options_mut().body_limit = bytes;
        self
    }

    /// A URL of the application's API that the page puts in a ready-to-paste `curl` line
    /// under a token just created (`/api/user`, say; a path is made absolute with the
    /// page's origin).
    pub fn example_url(mut self, url: impl Into<String>) -> Self {
        self.options_mut().example_url = Some(url.into());
        self
    }

    /// Where the page sends a browser nobody is signed in on (a 303 redirect); without
    /// it, the page answers 401 with a short HTML page.
    pub fn sign_in_url(mut self, url: impl Into<String>) -> Self {
        self.options_mut().sign_in_url = Some(url.into());
        self
    }

    /// Adds a link to the page's header (back to the application, say), in the order
    /// added.
    pub fn link(mut self, label: impl Into<String>, href: impl Into<String>) -> Self {
        self.options_mut().links.push((label.into(), href.into()));
        self
    }

    /// Marks a token "expires in N days" on the page (and `expires_soon` in the API)
    /// once it expires within `window` (default [`DEFAULT_EXPIRY_WARNING`], 7 days).
    pub fn expiry_warning(mut self, window: Duration) -> Self {
        self.options_mut().expiry_warning = window;
        self
    }

    /// How many tokens one page of the list holds: the default of `GET {base}/tokens`
    /// without `?limit=`, and what the page shows before its "Load more" button (default
    /// [`DEFAULT_PAGE_SIZE`]; 1 to [`MAX_PAGE_SIZE`](crate::lifecycle::MAX_PAGE_SIZE)).
    pub fn page_size(mut self, tokens: u32) -> Self {
        self.options_mut().page_size = tokens.clamp(1, crate::lifecycle::MAX_PAGE_SIZE);
        self
    }

    /// The facade the service works through.
    pub fn tokens(&self) -> &Tokens<St> {
        &self.tokens
    }
}

/// `"/settings/tokens/"` → `"/settings/tokens"`, `"/"` → `""`; `None` when not a clean
/// absolute path.
fn normalize_base(path: &str) -> Option<String> {
    let rest = path.strip_prefix('/')?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Some(String::new());
    }
    let clean = rest.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    });
    clean.then(|| format!("/{rest}"))
}

/// A [`TokenPage`] option that was refused: which option, and the value given, which the
/// message names.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidPageOption {
    /// The base path of [`TokenPage::try_new`] is not a clean absolute path.
    BasePath(String),
    /// An origin of [`TokenPage::try_allowed_origins`] is not `http(s)://host[:port]`.
    Origin(String),
}

impl fmt::Display for InvalidPageOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BasePath(path) => write!(
                f,
                "invalid base path {path:?}: expected an absolute path of ASCII letters, digits, '-', '.', '_', '~' and '/'"
            ),
            Self::Origin(origin) => write!(
                f,
                "invalid origin {origin:?}: expected http:// or https:// followed by a host and an optional port, nothing more"
            ),
        }
    }
}

impl Error for InvalidPageOption {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryStore, scope::ScopeRegistry};

    #[test]
    fn base_paths_are_normalized_or_refused() {
        assert_eq!(normalize_base("/").as_deref(), Some(""));
        assert_eq!(
            normalize_base("/settings/tokens/").as_deref(),
            Some("/settings/tokens")
        );
        assert_eq!(
            normalize_base("/a-b/c_d.e~f").as_deref(),
            Some("/a-b/c_d.e~f")
        );
        for bad in [
            "", "settings", "//x", "/a//b", "/a/../b", "/a/./b", "/a b", "/a\"b", "/a<b", "/é",
            "/a?b",
        ] {
            assert_eq!(normalize_base(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_bad_base_path_is_named() {
        let tokens = Tokens::new(MemoryStore::<i64>::new(), ScopeRegistry::new());
        for bad in ["tokens", "/a/../b", "/a b"] {
            let err = TokenPage::try_new(tokens.clone(), bad).unwrap_err();
            assert_eq!(err, InvalidPageOption::BasePath(bad.to_owned()));
            let message = err.to_string();
            assert!(
                message.starts_with(&format!(
                    "invalid base path {bad:?}: expected an absolute path"
                )),
                "{message}"
            );
        }
    }

    #[test]
    fn a_bad_origin_is_named() {
        let tokens = Tokens::new(MemoryStore::<i64>::new(), ScopeRegistry::new());
        for bad in [
            "https://x.example/path",
            "ftp://x.example",
            "null",
            "https://",
        ] {
            let err = TokenPage::new(tokens.clone(), "/t")
                .try_allowed_origins(["https://ok.example", bad])
                .unwrap_err();
            assert_eq!(err, InvalidPageOption::Origin(bad.to_owned()));
            let message = err.to_string();
            assert!(
                message.starts_with(&format!(
                    "invalid origin {bad:?}: expected http:// or https://"
                )),
                "{message}"
            );
        }
    }
}
