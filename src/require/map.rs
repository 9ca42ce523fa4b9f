//! [`ScopeMapLayer`]: the requirements of a whole server in one table, by path.

use std::{
    collections::HashMap,
    error::Error,
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{ResponseFuture, Rule, accepted_scopes, check};
use crate::{
    hashers::WordState,
    scope::{Requirement, ScopeError, ScopeRegistry},
};

/// Requirements by path, for a server whose methods share one service stack: a tonic
/// server (`/package.Service/Method`), or a hyper server without a router (HTTP paths).
///
/// - An exact path maps to a requirement ([`route`](Self::route)) or to "any valid token"
///   ([`authenticated`](Self::authenticated)).
/// - A path ending in `/*` covers everything below it: `/orders.v1.Admin/*` every method
///   of a gRPC service, `/admin/*` every HTTP path starting with `/admin/`. An exact
///   entry wins over a prefix, and a longer prefix over a shorter one.
/// - Anything unmapped is **denied** (403 / `PERMISSION_DENIED`) unless
///   [`unmapped(Unmapped::Authenticated)`](Self::unmapped) lets any valid token through.
///
/// Built once and checked then: a malformed path, a path mapped twice, an invalid scope,
/// or — with [`registry`](Self::registry) — an undefined one is an error naming it (a
/// panic for the non-`try_` methods). Looked up per request without allocating: one hash
/// lookup for an exact path (an unkeyed word-at-a-time hash: the table's keys are fixed at
/// startup, so a client's choice of path cannot grow a bucket), one more per `/` for
/// prefixes. Paths are compared as sent
/// (no percent-decoding or normalization), as a tonic server or a `match` on
/// `req.uri().path()` compares them; an odd spelling of a path is unmapped, so denied.
///
/// It sits behind [`PatLayer`](crate::PatLayer), which answers a missing or bad token
/// before the map is consulted:
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response, StatusCode, header::{AUTHORIZATION, CONTENT_TYPE}};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_pat::{MemoryStore, Requirement, Tokens, require::ScopeMapLayer, scope::ScopeRegistry};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let registry = ScopeRegistry::new()
///     .scope("orders:read", "See orders")
///     .scope("orders:create", "Place orders");
/// let tokens = Tokens::new(MemoryStore::<i64>::new(), registry);
/// let map = ScopeMapLayer::grpc()
///     .registry(tokens.registry())
///     .route("/orders.v1.Orders/ListOrders", Requirement::all(["orders:read"]))
///     .route("/orders.v1.Orders/CreateOrder", Requirement::all(["orders:create"]));
/// let svc = ServiceBuilder::new()
///     .layer(tokens.layer())
///     .layer(map)
///     .service(service_fn(|_: Request<String>| async {
///         Ok::<_, Infallible>(Response::new(String::new()))
///     }));
///
/// let reader = tokens.create(1, "reader", ["orders:read"]).await.unwrap();
/// let call = |method: &str| {
///     Request::post(format!("/orders.v1.Orders/{method}"))
///         .header(CONTENT_TYPE, "application/grpc")
///         .header(AUTHORIZATION, format!("Bearer {}", reader.token.expose_secret()))
///         .body(String::new())
///         .unwrap()
/// };
/// let res = svc.clone().oneshot(call("ListOrders")).await.unwrap();
/// assert_eq!(res.headers().get("grpc-status"), None);
/// let res = svc.oneshot(call("CreateOrder")).await.unwrap();
/// assert_eq!(res.headers()["grpc-status"], "7"); // PERMISSION_DENIED
/// assert_eq!(res.headers()["grpc-message"], "insufficient scope: requires orders:create");
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct ScopeMapLayer {
    table: Arc<Table>,
}

/// What an unmapped path gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unmapped {
    /// Refused with 403 / `PERMISSION_DENIED`: the default.
    #[default]
    Deny,
    /// Let through with any valid token.
    Authenticated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Grpc,
    Http,
}

#[derive(Clone, Debug)]
struct Table {
    protocol: Protocol,
    exact: HashMap<Box<str>, Entry, WordState>,
    /// Keyed by the prefix up to and including its last `/` (`/admin/*` → `/admin/`).
    prefixes: HashMap<Box<str>, Entry, WordState>,
    unmapped: Unmapped,
    registry: Option<ScopeRegistry>,
    scope_headers: bool,
    /// `X-Accepted-OAuth-Scopes` of an unmapped path (none), when the headers are on.
    unmapped_accepted: Option<HeaderValue>,
}

#[derive(Clone, Debug)]
struct Entry {
    requirement: Option<Requirement>,
    /// `X-Accepted-OAuth-Scopes`, when the headers are on.
    accepted: Option<HeaderValue>,
}

impl Entry {
    fn rule(&self) -> Rule<'_> {
        match &self.requirement {
            Some(requirement) => Rule::Require(requirement),
            None => Rule::Authenticated,
        }
    }
}

impl ScopeMapLayer {
    /// A map of gRPC method paths: `/package.Service/Method`, or `/package.Service/*` for
    /// every method of a service.
    pub fn grpc() -> Self {
        Self::new(Protocol::Grpc)
    }

    /// A map of HTTP paths: exact (`/orders`, `/orders/summary`), or a prefix ending in
    /// `/*` (`/admin/*`).
    pub fn http() -> Self {
        Self::new(Protocol::Http)
    }

    fn new(protocol: Protocol) -> Self {
        Self {
            table: Arc::new(Table {
                protocol,
                exact: HashMap::default(),
                prefixes: HashMap::default(),
                unmapped: Unmapped::Deny,
                registry: None,
                scope_headers: false,
                unmapped_accepted: None,
            }),
        }
    }

    fn table(&mut self) -> &mut Table {
        Arc::make_mut(&mut self.table)
    }

    /// Maps `path` to `requirement`.
    ///
    /// # Panics
    ///
    /// When the path is malformed or mapped already, or a scope is undefined in the
    /// registry; the message names them (see [`try_route`](Self::try_route)).
    #[track_caller]
    pub fn route(self, path: &str, requirement: Requirement) -> Self {
        match self.try_route(path, requirement) {
            Ok(value) => value,
            Err(e) => panic!("{e}"),
        }
    }

    /// Maps `path` to `requirement`.
    ///
    /// # Errors
    ///
    /// [`MapError`] naming the path: malformed, mapped already, or a scope undefined in
    /// the [`registry`](Self::registry).
    pub fn try_route(self, path: &str, requirement: Requirement) -> Result<Self, MapError> {
        self.insert(path, Some(requirement))
    }

    /// Maps `path` to "any valid token, whatever its scopes".
    ///
    /// # Panics
    ///
    /// When the path is malformed or mapped already; the message names it.
    #[track_caller]
    pub fn authenticated(self, path: &str) -> Self {
        match self.try_authenticated(path) {
            Ok(value) => value,
            Err(e) => panic!("{e}"),
        }
    }

    /// Maps `path` to "any valid token, whatever its scopes".
    ///
    /// # Errors
    ///
    /// [`MapError`] naming the path: malformed or mapped already.
    pub fn try_authenticated(self, path: &str) -> Result<Self, MapError> {
        self.insert(path, None)
    }

    fn insert(mut self, path: &str, requirement: Option<Requirement>) -> Result<Self, MapError> {
        let table = self.table();
        let key = table.protocol.check(path)?;
        if let (Some(registry), Some(requirement)) = (&table.registry, &requirement) {
            registry
                .check(requirement)
                .map_err(|error| MapError::Scope {
                    path: path.to_owned(),
                    error,
                })?;
        }
        let accepted = table
            .scope_headers
            .then(|| accepted_scopes(requirement.as_ref()));
        let entry = Entry {
            requirement,
            accepted,
        };
        let slot = match key {
            Key::Exact => &mut table.exact,
            Key::Prefix(_) => &mut table.prefixes,
        };
        let key = match key {
            Key::Exact => path,
            Key::Prefix(prefix) => prefix,
        };
        if slot.contains_key(key) {
            return Err(MapError::Duplicate(path.to_owned()));
        }
        slot.insert(Box::from(key), entry);
        Ok(self)
    }

    /// Checks every requirement, those mapped already and those mapped later, against
    /// `registry`: a scope it does not define is an error naming the path and the scope.
    ///
    /// # Panics
    ///
    /// When a requirement mapped already names an undefined scope (see
    /// [`try_registry`](Self::try_registry)).
    #[track_caller]
    pub fn registry(self, registry: &ScopeRegistry) -> Self {
        match self.try_registry(registry) {
            Ok(value) => value,
            Err(e) => panic!("{e}"),
        }
    }

    /// Checks every requirement against `registry`, now and when mapped later.
    ///
    /// # Errors
    ///
    /// [`MapError::Scope`] for a requirement mapped already that names an undefined scope.
    pub fn try_registry(mut self, registry: &ScopeRegistry) -> Result<Self, MapError> {
        let table = self.table();
        for (path, entry) in table.exact.iter().chain(&table.prefixes) {
            if let Some(requirement) = &entry.requirement {
                registry
                    .check(requirement)
                    .map_err(|error| MapError::Scope {
                        path: path.to_string(),
                        error,
                    })?;
            }
        }
        table.registry = Some(registry.clone());
        Ok(self)
    }

    /// What unmapped paths get: [`Unmapped::Deny`] (the default) or
    /// [`Unmapped::Authenticated`].
    pub fn unmapped(mut self, unmapped: Unmapped) -> Self {
        self.table().unmapped = unmapped;
        self
    }

    /// Adds GitHub's `X-OAuth-Scopes` and `X-Accepted-OAuth-Scopes` to the answer, on
    /// success and on 403. Off by default.
    pub fn scope_headers(mut self, on: bool) -> Self {
        let table = self.table();
        table.scope_headers = on;
        table.unmapped_accepted = on.then(|| accepted_scopes(None));
        for entry in table.exact.values_mut().chain(table.prefixes.values_mut()) {
            entry.accepted = on.then(|| accepted_scopes(entry.requirement.as_ref()));
        }
        self
    }

    /// The rule a request for `path` meets: its requirement, "authenticated" (mapped so,
    /// or unmapped with [`Unmapped::Authenticated`]), or "deny" (unmapped).
    pub fn rule_for(&self, path: &str) -> Rule<'_> {
        self.table.rule_for(path).0
    }
}

impl Table {
    /// The rule of `path`, with its `X-Accepted-OAuth-Scopes` when the headers are on.
    #[inline]
    fn rule_for(&self, path: &str) -> (Rule<'_>, Option<&HeaderValue>) {
        match self.lookup(path) {
            Some(entry) => (entry.rule(), entry.accepted.as_ref()),
            None => match self.unmapped {
                Unmapped::Deny => (Rule::Deny, self.unmapped_accepted.as_ref()),
                Unmapped::Authenticated => (Rule::Authenticated, self.unmapped_accepted.as_ref()),
            },
        }
    }

    #[inline]
    fn lookup(&self, path: &str) -> Option<&Entry> {
        if let Some(entry) = self.exact.get(path) {
            return Some(entry);
        }
        if self.prefixes.is_empty() {
            return None;
        }
        // The longest prefix first: each `/` from the right ends a candidate.
        let mut end = path.len();
        while let Some(slash) = path[..end].rfind('/') {
            if let Some(entry) = self.prefixes.get(&path[..=slash]) {
                return Some(entry);
            }
            end = slash;
        }
        None
    }
}

/// How a path is stored.
enum Key<'a> {
    Exact,
    /// The prefix, up to and including its last `/`.
    Prefix(&'a str),
}

impl Protocol {
    /// Checks `path` for a map of this kind.
    fn check(self, path: &str) -> Result<Key<'_>, MapError> {
        let malformed = |expected| MapError::Path {
            path: path.to_owned(),
            expected,
        };
        match self {
            Self::Grpc => {
                const EXPECTED: &str = "`/package.Service/Method` or `/package.Service/*`";
                let rest = path.strip_prefix('/').ok_or_else(|| malformed(EXPECTED))?;
                let (service, method) = rest.split_once('/').ok_or_else(|| malformed(EXPECTED))?;
                if !service.split('.').all(is_identifier) {
                    return Err(malformed(EXPECTED));
                }
                match method {
                    "*" => Ok(Key::Prefix(&path[..path.len() - 1])),
                    method if is_identifier(method) => Ok(Key::Exact),
                    _ => Err(malformed(EXPECTED)),
                }
            }
            Self::Http => {
                const EXPECTED: &str = "a path like `/orders` or a prefix like `/orders/*`: \
                     visible ASCII without `?`, `#` or empty segments, `*` only as the last one";
                let rest = path.strip_prefix('/').ok_or_else(|| malformed(EXPECTED))?;
                let visible = path
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
                if !visible {
                    return Err(malformed(EXPECTED));
                }
                let (body, prefix) = match rest.strip_suffix('*') {
                    Some(body) if body.is_empty() || body.ends_with('/') => (body, true),
                    Some(_) => return Err(malformed(EXPECTED)),
                    None => (rest, false),
                };
                // Inner segments are never empty; a trailing `/` is a path of its own.
                let inner = body.strip_suffix('/').unwrap_or(body);
                if body.contains('*') || (!inner.is_empty() && inner.split('/').any(str::is_empty))
                {
                    return Err(malformed(EXPECTED));
                }
                if prefix {
                    Ok(Key::Prefix(&path[..path.len() - 1]))
                } else {
                    Ok(Key::Exact)
                }
            }
        }
    }
}

/// A protobuf identifier: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl<S> Layer<S> for ScopeMapLayer {
    type Service = ScopeMap<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ScopeMap {
            inner,
            table: Arc::clone(&self.table),
        }
    }
}

/// The service [`ScopeMapLayer`] makes.
#[derive(Clone)]
pub struct ScopeMap<S> {
    inner: S,
    table: Arc<Table>,
}

impl<S: fmt::Debug> fmt::Debug for ScopeMap<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeMap")
            .field("inner", &self.inner)
            .field(
                "paths",
                &(self.table.exact.len() + self.table.prefixes.len()),
            )
            .field("unmapped", &self.table.unmapped)
            .finish()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ScopeMap<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Default + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let (rule, accepted) = self.table.rule_for(req.uri().path());
        let verdict = check(rule, accepted, req.headers(), req.extensions());
        ResponseFuture::new(verdict, || self.inner.call(req))
    }
}

/// A map that could not be built. The message names the path.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapError {
    /// Not a path of the map's kind.
    Path {
        /// The path given.
        path: String,
        /// What the map expects.
        expected: &'static str,
    },
    /// The path is mapped already.
    Duplicate(String),
    /// A scope of the path's requirement is not defined in the registry.
    Scope {
        /// The path.
        path: String,
        /// What is wrong with the scope (it names it).
        error: ScopeError,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path { path, expected } => {
                write!(f, "scope map: malformed path {path:?}: expected {expected}")
            }
            Self::Duplicate(path) => write!(f, "scope map: {path:?} is mapped twice"),
            Self::Scope { path, error } => write!(f, "scope map: {path:?}: {error}"),
        }
    }
}

impl Error for MapError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Scope { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(protocol: Protocol, path: &str) -> Result<Option<String>, MapError> {
        protocol.check(path).map(|key| match key {
            Key::Exact => None,
            Key::Prefix(p) => Some(p.to_owned()),
        })
    }

    #[test]
    fn grpc_paths_are_checked() {
        for ok in [
            "/orders.v1.Orders/ListOrders",
            "/Greeter/SayHello",
            "/a_b.C1/_m",
        ] {
            assert_eq!(keys(Protocol::Grpc, ok), Ok(None), "{ok}");
        }
        assert_eq!(
            keys(Protocol::Grpc, "/orders.v1.Orders/*"),
            Ok(Some("/orders.v1.Orders/".into()))
        );
        for bad in [
            "orders.v1.Orders/List",
            "/orders.v1.Orders",
            "/orders.v1.Orders/",
            "/orders..Orders/List",
            "/orders.v1.Orders/List/x",
            "/orders.v1.Orders/Li st",
            "/1orders/List",
            "/*",
            "/orders.v1.Orders/Li*",
        ] {
            let err = keys(Protocol::Grpc, bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn http_paths_are_checked() {
        for ok in ["/", "/orders", "/orders/", "/orders/summary", "/a-b/c.d"] {
            assert_eq!(keys(Protocol::Http, ok), Ok(None), "{ok}");
        }
        assert_eq!(keys(Protocol::Http, "/admin/*"), Ok(Some("/admin/".into())));
        assert_eq!(keys(Protocol::Http, "/*"), Ok(Some("/".into())));
        for bad in [
            "",
            "orders",
            "/orders?x=1",
            "/or ders",
            "//orders",
            "/a//b",
            "/admin*",
            "/a/*/b",
            "/é",
        ] {
            assert!(keys(Protocol::Http, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lookup_prefers_exact_then_the_longest_prefix() {
        let map = ScopeMapLayer::http()
            .route("/*", Requirement::all(["root"]))
            .route("/admin/*", Requirement::all(["admin"]))
            .route("/admin/users/*", Requirement::all(["users"]))
            .route("/admin/users/me", Requirement::all(["me"]))
            .authenticated("/health");
        let scope = |path: &str| match map.rule_for(path) {
            Rule::Require(r) => r.to_string(),
            Rule::Authenticated => "token".into(),
            Rule::Deny => "deny".into(),
        };
        assert_eq!(scope("/admin/users/me"), "me");
        assert_eq!(scope("/admin/users/you"), "users");
        assert_eq!(scope("/admin/x"), "admin");
        assert_eq!(scope("/admin"), "root");
        assert_eq!(scope("/health"), "token");
        assert_eq!(scope("/"), "root");
        let grpc = ScopeMapLayer::grpc().route("/p.S/*", Requirement::all(["s"]));
        assert!(matches!(grpc.rule_for("/p.S/M"), Rule::Require(_)));
        assert_eq!(grpc.rule_for("/p.T/M"), Rule::Deny);
        assert_eq!(grpc.rule_for("/p.Sx/M"), Rule::Deny);
        let open = grpc.unmapped(Unmapped::Authenticated);
        assert_eq!(open.rule_for("/p.T/M"), Rule::Authenticated);
    }

    #[test]
    fn duplicates_and_undefined_scopes_are_named() {
        let err = ScopeMapLayer::http()
            .route("/a", Requirement::all(["x"]))
            .try_route("/a", Requirement::all(["y"]))
            .unwrap_err();
        assert_eq!(err, MapError::Duplicate("/a".into()));
        let registry = ScopeRegistry::new().scope("orders:read", "See orders");
        let err = ScopeMapLayer::grpc()
            .registry(&registry)
            .try_route("/o.O/List", Requirement::all(["orders:raed"]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"scope map: "/o.O/List": undefined scope "orders:raed": define it in the ScopeRegistry"#
        );
        let err = ScopeMapLayer::grpc()
            .route("/o.O/List", Requirement::all(["orders:raed"]))
            .try_registry(&registry)
            .unwrap_err();
        assert!(matches!(err, MapError::Scope { .. }), "{err}");
    }
}
