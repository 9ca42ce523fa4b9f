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
    json::{self, PageRejection, Problem, TokenView},
    page::{self, Expiry},
};
use crate::{
    CreateToken, TokenError,
    record::TokenId,
    store::{ManageTokens, StoreError},
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
                let id = path.strip_prefix("/tokens/")?;
                if id.is_empty() || id.contains('/') {
                    return None;
                }
                Self::Token(id.to_owned())
            }
        })
    }

    /// The methods the route takes, as the `Allow` header lists them.
    fn allow(&self) -> &'static str {
        match self {
            Self::Tokens => "GET, HEAD, POST, DELETE",
            Self::Token(_) => "DELETE",
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
            _ => matches!(*method, Method::GET | Method::HEAD),
        }
    }

    fn is_api(&self) -> bool {
        matches!(self, Self::Scopes | Self::Tokens | Self::Token(_))
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
            let mut res = refuse_with(
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
            (Route::Page, _) => self.page(),
            (Route::Scopes, _) => ok_json(StatusCode::OK, &json::scopes(self.tokens.registry())),
            (Route::Tokens, Method::POST) => self.create(user, &parts, body).await,
            (Route::Tokens, Method::DELETE) => self.revoke_all(&user).await,
            (Route::Tokens, _) => self.list(&user).await,
            (Route::Token(id), _) => self.revoke(&user, &id).await,
            (Route::Stylesheet | Route::Script, _) => reject(PageRejection::NotFound),
        }
    }

    fn expiry(&self) -> Expiry {
        Expiry::new(
            self.tokens.default_lifetime(),
            self.tokens.longest_lifetime(),
        )
    }

    fn page(&self) -> Response<PageBody> {
        let html = page::render(&self.options, self.tokens.registry(), &self.expiry());
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

    async fn list(&self, user: &St::UserId) -> Response<PageBody> {
        match self.tokens.list(user).await {
            Ok(records) => {
                let now = self.tokens.shared_clock().now();
                let views: Vec<TokenView<'_>> =
                    records.iter().map(|r| TokenView::new(r, now)).collect();
                ok_json(StatusCode::OK, &views)
            }
            Err(e) => failure(&e),
        }
    }

    async fn create<B>(&self, user: St::UserId, parts: &Parts, body: B) -> Response<PageBody>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn Error + Send + Sync>>,
    {
        let limit = self.options.body_limit;
        let too_large = || {
            refuse_with(
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
            return too_large();
        }
        let bytes = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => return too_large(),
            Err(_) => {
                return reject(PageRejection::MalformedBody);
            }
        };
        let value: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                return refuse_with(
                    PageRejection::MalformedJson,
                    &format!("the body is not JSON: {e}"),
                );
            }
        };
        let input = match json::create_input(value, self.tokens.registry(), self.expiry().max_days)
        {
            Ok(input) => input,
            Err(problems) => return invalid(&problems),
        };
        let mut request = CreateToken::new(input.name).scopes(input.scopes);
        if let Some(days) = input.days {
            request = request.expires_in(Duration::days(i64::from(days)));
        }
        match self.tokens.create_with(user, request).await {
            Ok(created) => {
                let now = self.tokens.shared_clock().now();
                let body = json::Created {
                    token: TokenView::new(&created.record, now),
                    plaintext: created.token.expose_secret(),
                };
                ok_json(StatusCode::CREATED, &body)
            }
            // The checks above run first; these are the facade's own word on the same.
            Err(TokenError::Name) => invalid(&[Problem::new("name", TokenError::Name.to_string())]),
            Err(e @ TokenError::Scope(_)) => invalid(&[Problem::new("scopes", e.to_string())]),
            Err(e @ TokenError::Lifetime { .. }) => {
                invalid(&[Problem::new("expires_in_days", e.to_string())])
            }
            Err(e) => failure(&e),
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
fn refuse_with(refusal: PageRejection, message: &str) -> Response<PageBody> {
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

    #[test]
    fn routes() {
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
