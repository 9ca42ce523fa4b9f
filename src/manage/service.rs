//! [`TokenPage`] as a `tower::Service`: routing, the checks in order, and the answers.

use std::{
    convert::Infallible,
    error::Error,
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{
    HeaderValue, Method, Request, Response, StatusCode,
    header::{self, HeaderName},
    request::Parts,
};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde::Serialize;
use serde_json::json;
use time::Duration;
use tower_http::csrf::ProtectionError;
use tower_service::Service;

use super::{
    TokenPage,
    guard::{self, Body},
    json::{self, PageRejection, Problem, TokenView, ViewContext},
    page::{self, Expiry},
};
use crate::{
    CreateToken, TokenError,
    lifecycle::MAX_PAGE_SIZE,
    record::TokenId,
    store::{Cursor, ManageTokens, StoreError},
};

/// The body of every answer of [`TokenPage`]: the whole body at once.
pub type PageBody = Full<Bytes>;

/// The future [`TokenPage`] answers with; it never fails.
pub struct ResponseFuture {
    inner: BoxFuture<'static, Response<PageBody>>,
}

impl Future for ResponseFuture {
    type Output = Result<Response<PageBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx).map(Ok)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<St, B> Service<Request<B>> for TokenPage<St>
where
    St: ManageTokens,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    type Response = Response<PageBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        ResponseFuture {
            inner: Box::pin(async move { this.answer(req).await }),
        }
    }
}

/// What a path names, relative to the base path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    Page,
    Stylesheet,
    Script,
    Scopes,
    Tokens,
    Token(String),
    Rotate(String),
}

impl Route {
    fn of(path: &str) -> Option<Self> {
        Some(match path {
            "" | "/" => Self::Page,
            "/page.css" => Self::Stylesheet,
            "/page.js" => Self::Script,
            "/scopes" => Self::Scopes,
            "/tokens" => Self::Tokens,
            _ => {
                let rest = path.strip_prefix("/tokens/")?;
                let (id, rotate) = match rest.strip_suffix("/rotate") {
                    Some(id) => (id, true),
                    None => (rest, false),
                };
                if id.is_empty() || id.contains('/') {
                    return None;
                }
                if rotate {
                    Self::Rotate(id.to_owned())
                } else {
                    Self::Token(id.to_owned())
                }
            }
        })
    }

    /// The methods the route takes, as the `Allow` header lists them.
    fn allow(&self) -> &'static str {
        match self {
            Self::Tokens => "GET, HEAD, POST, DELETE",
            Self::Token(_) => "DELETE",
            Self::Rotate(_) => "POST",
            _ => "GET, HEAD",
        }
    }

    fn allows(&self, method: &Method) -> bool {
        match self {
            Self::Tokens => matches!(
                *method,
                Method::GET | Method::HEAD | Method::POST | Method::DELETE
            ),
            Self::Token(_) => method == Method::DELETE,
            Self::Rotate(_) => method == Method::POST,
            _ => matches!(*method, Method::GET | Method::HEAD),
        }
    }

    fn is_api(&self) -> bool {
        matches!(
            self,
            Self::Scopes | Self::Tokens | Self::Token(_) | Self::Rotate(_)
        )
    }
}

/// What the page does behind tower-http's CSRF check, as the service the check wraps.
struct Checked<St: ManageTokens> {
    page: TokenPage<St>,
    route: Route,
}

impl<St, B> Service<Request<B>> for Checked<St>
where
    St: ManageTokens,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    type Response = Response<PageBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<PageBody>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let page = self.page.clone();
        let route = self.route.clone();
        Box::pin(async move { Ok(page.checked(route, req).await) })
    }
}

impl<St: ManageTokens> TokenPage<St> {
    async fn answer<B>(self, req: Request<B>) -> Response<PageBody>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let Some(route) = Route::of(parts.uri.path()) else {
            return reject(PageRejection::NotFound);
        };
        if !route.allows(&parts.method) {
            let mut res = reject_with(
                PageRejection::MethodNotAllowed,
                &format!("this path takes {}", route.allow()),
            );
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(route.allow()));
            return res;
        }
        if guard::carries_token(&parts) {
            return reject(PageRejection::TokenNotAccepted);
        }
        let read = matches!(parts.method, Method::GET | Method::HEAD);
        if read && route.is_api() && self.options.same_origin.cross_site_read(&parts.headers) {
            return reject(PageRejection::CrossOrigin);
        }

        // tower-http's CSRF check decides on everything else; the page shapes its refusal.
        let same_origin = self.options.same_origin.clone();
        let mut guarded = same_origin.guard(Checked { page: self, route });
        let req = Request::from_parts(parts, body);
        let Ok(()) =
            std::future::poll_fn(|cx| Service::<Request<B>>::poll_ready(&mut guarded, cx)).await;
        let Ok(res) = guarded.call(req).await;
        match res.extensions().get::<ProtectionError>().cloned() {
            Some(refused) => {
                tracing::debug!(reason = %refused, "token page: a cross-origin request was refused");
                let mut res = reject(PageRejection::CrossOrigin);
                res.extensions_mut().insert(refused);
                res
            }
            None => res,
        }
    }

    /// The rest of the way, for a request tower-http's check let through: the assets,
    /// the media type, the user, and the answer.
    async fn checked<B>(self, route: Route, req: Request<B>) -> Response<PageBody>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        match route {
            Route::Stylesheet => return asset(page::STYLESHEET, "text/css; charset=utf-8"),
            Route::Script => return asset(page::SCRIPT, "text/javascript; charset=utf-8"),
            _ => {}
        }
        let body_kind = guard::body_kind(&parts.headers);
        let refused_media = match parts.method {
            Method::POST => body_kind != Body::Json,
            Method::DELETE => body_kind == Body::Other,
            _ => false,
        };
        if refused_media {
            return reject(PageRejection::UnsupportedMediaType);
        }

        let Some(user) = (self.options.user)(&parts).await else {
            return match route {
                Route::Page => self.signed_out(),
                _ => reject(PageRejection::NotSignedIn),
            };
        };

        match (route, parts.method.clone()) {
            (Route::Page, _) => self.page(&user).await,
            (Route::Scopes, _) => {
                let grantable = self.tokens.grantable_scopes(&user).await;
                ok_json(
                    StatusCode::OK,
                    &json::scopes(self.tokens.registry(), &grantable),
                )
            }
            (Route::Tokens, Method::POST) => self.create(user, &parts, body).await,
            (Route::Tokens, Method::DELETE) => self.revoke_all(&user).await,
            (Route::Tokens, _) => self.list(&user, &parts).await,
            (Route::Token(id), _) => self.revoke(&user, &id).await,
            (Route::Rotate(id), _) => self.rotate(&user, &id, &parts, body).await,
            (Route::Stylesheet | Route::Script, _) => reject(PageRejection::NotFound),
        }
    }

    fn expiry(&self) -> Expiry {
        Expiry::new(
            self.tokens.default_lifetime(),
            self.tokens.longest_lifetime(),
        )
    }

    fn view_context(&self) -> ViewContext {
        ViewContext {
            now: self.tokens.shared_clock().now(),
            warning: self.options.expiry_warning,
            idle: self.tokens.longest_idle(),
        }
    }

    async fn page(&self, user: &St::UserId) -> Response<PageBody> {
        let grantable = self.tokens.grantable_scopes(user).await;
        let html = page::render(
            &self.options,
            self.tokens.registry(),
            &grantable,
            &self.expiry(),
        );
        html_response(StatusCode::OK, html)
    }

    fn signed_out(&self) -> Response<PageBody> {
        match self
            .options
            .sign_in_url
            .as_deref()
            .and_then(|url| HeaderValue::from_str(url).ok())
        {
            Some(location) => {
                let mut res = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
                res.headers_mut().insert(header::LOCATION, location);
                res
            }
            None => html_response(StatusCode::UNAUTHORIZED, page::signed_out(&self.options)),
        }
    }

    /// One page of the user's tokens, newest first: `?limit=` (1 to [`MAX_PAGE_SIZE`],
    /// default the page size) and `?after=` (the cursor of the page before). More
    /// to come: a `Link: <…>; rel="next"` header names the next page.
    async fn list(&self, user: &St::UserId, parts: &Parts) -> Response<PageBody> {
        let query = match ListQuery::parse(parts.uri.query(), self.options.page_size) {
            Ok(query) => query,
            Err(message) => return reject_with(PageRejection::InvalidQuery, message),
        };
        match self
            .tokens
            .list_page(user, query.after.as_ref(), query.limit)
            .await
        {
            Ok(page) => {
                let context = self.view_context();
                let views: Vec<TokenView<'_>> = page
                    .records
                    .iter()
                    .map(|r| TokenView::new(r, context))
                    .collect();
                let mut res = ok_json(StatusCode::OK, &views);
                if let Some(next) = page.next {
                    let link = format!(
                        "<{}/tokens?after={next}&limit={}>; rel=\"next\"",
                        self.options.prefix(),
                        query.limit
                    );
                    if let Ok(value) = HeaderValue::from_str(&link) {
                        res.headers_mut().insert(header::LINK, value);
                    }
                }
                res
            }
            Err(e) => failure(&e),
        }
    }

    /// The body as JSON, or the refusal that says why not (too large, unreadable, not
    /// JSON).
    async fn read_json<B>(
        &self,
        parts: &Parts,
        body: B,
    ) -> Result<serde_json::Value, Response<PageBody>>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn Error + Send + Sync>>,
    {
        let limit = self.options.body_limit;
        let too_large = || {
            reject_with(
                PageRejection::PayloadTooLarge,
                &format!("the body may be at most {limit} bytes"),
            )
        };
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        let bytes = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => return Err(too_large()),
            Err(_) => return Err(reject(PageRejection::MalformedBody)),
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            reject_with(
                PageRejection::MalformedJson,
                &format!("the body is not JSON: {e}"),
            )
        })
    }

    async fn create<B>(&self, user: St::UserId, parts: &Parts, body: B) -> Response<PageBody>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn Error + Send + Sync>>,
    {
        let value = match self.read_json(parts, body).await {
            Ok(value) => value,
            Err(refused) => return refused,
        };
        let grantable = self.tokens.grantable_scopes(&user).await;
        let input = match json::create_input(
            value,
            self.tokens.registry(),
            &grantable,
            self.expiry().max_days,
        ) {
            Ok(input) => input,
            Err(problems) => return invalid(&problems),
        };
        let mut request = CreateToken::new(input.name).scopes(input.scopes);
        if let Some(days) = input.days {
            request = request.expires_in(Duration::days(i64::from(days)));
        }
        match self.tokens.create_with(user, request).await {
            Ok(created) => {
                let body = json::Created {
                    token: TokenView::new(&created.record, self.view_context()),
                    plaintext: created.token.expose_secret(),
                };
                ok_json(StatusCode::CREATED, &body)
            }
            Err(e) => self.refused(&e),
        }
    }

    async fn rotate<B>(
        &self,
        user: &St::UserId,
        id: &str,
        parts: &Parts,
        body: B,
    ) -> Response<PageBody>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn Error + Send + Sync>>,
    {
        // Malformed, unknown and another user's: one answer, so ids cannot be probed.
        let Ok(id) = id.parse::<TokenId>() else {
            return reject(PageRejection::TokenNotFound);
        };
        let value = match self.read_json(parts, body).await {
            Ok(value) => value,
            Err(refused) => return refused,
        };
        let overlap = match json::rotate_input(value) {
            Ok(overlap) => overlap,
            Err(problems) => return invalid(&problems),
        };
        match self.tokens.rotate(user, id, overlap).await {
            Ok(rotated) => {
                let context = self.view_context();
                let body = json::RotatedView {
                    token: TokenView::new(&rotated.record, context),
                    plaintext: rotated.token.expose_secret(),
                    previous: TokenView::new(&rotated.previous, context),
                };
                ok_json(StatusCode::CREATED, &body)
            }
            Err(e) => self.refused(&e),
        }
    }

    /// The answer to a facade error of a creation or a rotation.
    fn refused(&self, e: &TokenError) -> Response<PageBody> {
        match e {
            // The checks above run first; these are the facade's own word on the same.
            TokenError::Name(e) => invalid(&[Problem::new("name", e.to_string())]),
            e @ (TokenError::Scope(_) | TokenError::NotGrantable(_)) => {
                invalid(&[Problem::new("scopes", e.to_string())])
            }
            e @ TokenError::Lifetime { .. } => {
                invalid(&[Problem::new("expires_in_days", e.to_string())])
            }
            e @ TokenError::Overlap { .. } => {
                invalid(&[Problem::new("overlap_seconds", e.to_string())])
            }
            e @ TokenError::Limit { .. } => {
                let message = e.to_string();
                let refusal = PageRejection::TokenLimit;
                respond(
                    refusal.status(),
                    "application/json",
                    refusal.body(
                        Some(&message),
                        Some(&[Problem::new("tokens", message.clone())]),
                    ),
                )
            }
            TokenError::NotFound(_) => reject(PageRejection::TokenNotFound),
            e @ TokenError::AlreadyRotated { .. } => {
                reject_with(PageRejection::AlreadyRotated, &e.to_string())
            }
            TokenError::Inactive(_) => reject(PageRejection::TokenInactive),
            e => failure(e),
        }
    }

    async fn revoke(&self, user: &St::UserId, id: &str) -> Response<PageBody> {
        // Malformed, unknown and another user's: one answer, so ids cannot be probed.
        let Ok(id) = id.parse::<TokenId>() else {
            return reject(PageRejection::TokenNotFound);
        };
        match self.tokens.revoke(user, id).await {
            Ok(_) => respond(StatusCode::NO_CONTENT, "application/json", Bytes::new()),
            Err(TokenError::NotFound(_)) => reject(PageRejection::TokenNotFound),
            Err(e) => failure(&e),
        }
    }

    async fn revoke_all(&self, user: &St::UserId) -> Response<PageBody> {
        match self.tokens.revoke_all(user).await {
            Ok(count) => ok_json(StatusCode::OK, &json!({ "revoked": count })),
            Err(e) => failure(&e),
        }
    }
}

/// What `GET {base}/tokens` reads of its query string.
#[derive(Debug, PartialEq, Eq)]
struct ListQuery {
    after: Option<Cursor>,
    limit: u32,
}

impl ListQuery {
    /// `limit` and `after`; anything else, or a bad value, is refused naming it (never
    /// repeating it).
    fn parse(query: Option<&str>, page_size: u32) -> Result<Self, &'static str> {
        let mut parsed = Self {
            after: None,
            limit: page_size,
        };
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "limit" => {
                    parsed.limit = value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                        .ok_or("limit must be a whole number from 1 to 100")?;
                }
                "after" => {
                    parsed.after = Some(value.parse::<Cursor>().map_err(
                        |_| "after must be a cursor this list gave (Link: rel=\"next\")",
                    )?);
                }
                _ => return Err("this list takes only limit and after"),
            }
        }
        Ok(parsed)
    }
}

/// An answer with the headers every answer carries.
fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<PageBody> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

fn html_response(status: StatusCode, html: String) -> Response<PageBody> {
    let mut res = respond(status, "text/html; charset=utf-8", html);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(page::CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    res
}

fn asset(text: &'static str, content_type: &'static str) -> Response<PageBody> {
    respond(StatusCode::OK, content_type, text)
}

fn ok_json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<PageBody> {
    match serde_json::to_vec(value) {
        Ok(body) => respond(status, "application/json", body),
        Err(e) => {
            tracing::error!(error = %e, "token page: an answer could not be written as JSON");
            reject(PageRejection::Internal)
        }
    }
}

/// A refusal with its row's message.
fn reject(refusal: PageRejection) -> Response<PageBody> {
    respond(
        refusal.status(),
        "application/json",
        refusal.body(None, None),
    )
}

/// A refusal with a more precise message than its row's.
fn reject_with(refusal: PageRejection, message: &str) -> Response<PageBody> {
    respond(
        refusal.status(),
        "application/json",
        refusal.body(Some(message), None),
    )
}

/// 422, naming every problem.
fn invalid(problems: &[Problem]) -> Response<PageBody> {
    let refusal = PageRejection::InvalidInput;
    respond(
        refusal.status(),
        "application/json",
        refusal.body(None, Some(problems)),
    )
}

/// The store or the system failed: logged, and answered without detail.
fn failure(e: &TokenError) -> Response<PageBody> {
    match e {
        TokenError::Store(e) => store_failure(e),
        e => {
            tracing::error!(error = %e, "token page: a token could not be created");
            reject(PageRejection::Internal)
        }
    }
}

fn store_failure(e: &StoreError) -> Response<PageBody> {
    tracing::warn!(error = %e, "token page: the token store failed");
    reject(PageRejection::StoreUnavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manage::DEFAULT_PAGE_SIZE;

    #[test]
    fn list_queries() {
        assert_eq!(
            ListQuery::parse(None, DEFAULT_PAGE_SIZE),
            Ok(ListQuery {
                after: None,
                limit: DEFAULT_PAGE_SIZE
            })
        );
        let cursor = Cursor::new(
            time::OffsetDateTime::UNIX_EPOCH,
            TokenId::from_bytes([1; 16]),
        );
        assert_eq!(
            ListQuery::parse(Some(&format!("limit=3&after={cursor}")), DEFAULT_PAGE_SIZE),
            Ok(ListQuery {
                after: Some(cursor),
                limit: 3
            })
        );
        for bad in [
            "limit=0",
            "limit=101",
            "limit=x",
            "after=nope",
            "page=2",
            "limit",
        ] {
            assert!(
                ListQuery::parse(Some(bad), DEFAULT_PAGE_SIZE).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn routes() {
        assert_eq!(
            Route::of("/tokens/abc/rotate"),
            Some(Route::Rotate("abc".into()))
        );
        assert_eq!(Route::of("/tokens//rotate"), None);
        assert_eq!(Route::of("/tokens/a/b/rotate"), None);
        assert!(Route::Rotate("a".into()).allows(&Method::POST));
        assert!(!Route::Rotate("a".into()).allows(&Method::DELETE));
        assert_eq!(Route::of("/"), Some(Route::Page));
        assert_eq!(Route::of(""), Some(Route::Page));
        assert_eq!(Route::of("/tokens"), Some(Route::Tokens));
        assert_eq!(Route::of("/tokens/abc"), Some(Route::Token("abc".into())));
        for none in [
            "/tokens/",
            "/tokens/a/b",
            "/token",
            "/x",
            "/page.css/x",
            "//",
        ] {
            assert_eq!(Route::of(none), None, "{none}");
        }
        assert!(Route::Tokens.allows(&Method::DELETE));
        assert!(!Route::Token("a".into()).allows(&Method::GET));
        assert!(!Route::Page.allows(&Method::POST));
    }
}
