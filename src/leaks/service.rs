//! [`LeakReports`] as a `tower::Service`: the checks in order, and the answers.

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
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde_json::json;
use tower_service::Service;

use super::{
    KEY_IDENTIFIER_HEADER, LeakReports, SIGNATURE_HEADER,
    keys::{MAX_IDENTIFIER_LEN, decode_signature, verifies},
    report::{self, NotAReport},
};
use crate::store::ManageTokens;

/// The body of every answer of [`LeakReports`]: the whole body at once.
pub type ReportBody = Full<Bytes>;

/// The future [`LeakReports`] answers with; it never fails.
pub struct ResponseFuture {
    inner: BoxFuture<'static, Response<ReportBody>>,
}

impl Future for ResponseFuture {
    type Output = Result<Response<ReportBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx).map(Ok)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<St, B> Service<Request<B>> for LeakReports<St>
where
    St: ManageTokens,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    type Response = Response<ReportBody>;
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

impl<St: ManageTokens> LeakReports<St> {
    async fn answer<B>(self, req: Request<B>) -> Response<ReportBody>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        if parts.method != Method::POST {
            let mut res = refuse(Refusal::MethodNotAllowed);
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return res;
        }

        // The signature's headers, the key and the signature's form are judged before the
        // body is read: a request that cannot be genuine costs no buffering.
        let (Some(key_id), Some(signature)) = (
            one_header(&parts.headers, KEY_IDENTIFIER_HEADER),
            one_header(&parts.headers, SIGNATURE_HEADER),
        ) else {
            return refuse(Refusal::MissingSignature);
        };
        let Some(signature) = decode_signature(signature) else {
            return refuse(Refusal::MalformedSignature);
        };
        let Some(key) = self.keys.get(key_id) else {
            // Anyone can send the header: an identifier no key could have is not logged.
            let key_identifier = if key_id.len() <= MAX_IDENTIFIER_LEN {
                key_id
            } else {
                "(too long to be one)"
            };
            tracing::warn!(
                key_identifier,
                "GitHub secret scanning: a report names a key this service does not have; \
                 refresh the KeySet from GitHub's key document"
            );
            return refuse(Refusal::UnknownKey);
        };

        let limit = self.options.body_limit;
        let too_large = || {
            refuse_with(
                Refusal::PayloadTooLarge,
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
        let body = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => return too_large(),
            Err(_) => return refuse(Refusal::MalformedBody),
        };

        // The raw bytes as they came, before any parsing.
        if !verifies(&key, &body, &signature) {
            tracing::warn!(
                key_identifier = key_id,
                "GitHub secret scanning: a report's signature does not verify"
            );
            return refuse(Refusal::InvalidSignature);
        }

        let candidates = match report::parse(&body) {
            Ok(candidates) => candidates,
            Err(NotAReport::Syntax { line, column }) => {
                return refuse_with(
                    Refusal::MalformedJson,
                    &format!("the body is not JSON (line {line}, column {column})"),
                );
            }
            Err(NotAReport::Shape { line, column }) => {
                return refuse_with(
                    Refusal::InvalidReport,
                    &format!(
                        "the body is not an array of {{\"token\", \"type\", \"url\", \"source\"}} \
                         objects (line {line}, column {column})"
                    ),
                );
            }
        };

        match report::judge(&self.tokens, &candidates, self.options.on_revoke.as_ref()).await {
            Ok((labels, tally)) => {
                tracing::info!(
                    candidates = candidates.len(),
                    revoked = tally.revoked,
                    already_revoked = tally.already_revoked,
                    unknown = tally.unknown,
                    malformed = tally.malformed,
                    "GitHub secret scanning: a report was judged"
                );
                match report::feedback(&candidates, &labels, self.options.feedback) {
                    Ok(body) => respond(StatusCode::OK, body),
                    Err(e) => {
                        tracing::error!(error = %e, "GitHub secret scanning: the feedback could not be written");
                        refuse(Refusal::Internal)
                    }
                }
            }
            Err((e, tally)) => {
                tracing::warn!(
                    error = %e,
                    candidates = candidates.len(),
                    judged = tally.revoked + tally.already_revoked + tally.unknown + tally.malformed,
                    revoked = tally.revoked,
                    "GitHub secret scanning: the token store failed while a report was judged"
                );
                refuse(Refusal::StoreUnavailable)
            }
        }
    }
}

/// The value of a header that came exactly once, as visible ASCII.
fn one_header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok().filter(|v| !v.is_empty())
}

/// Why the endpoint refused a request: one row per case, each deciding the status, the
/// broad class (`error`) and the precise reason (`code`) in one place, in the shape of
/// [`Rejection::to_json`](crate::reject::Rejection::to_json). Nothing is revoked in any
/// of these cases but the store failing, which stops a report part way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    MethodNotAllowed,
    MissingSignature,
    MalformedSignature,
    UnknownKey,
    InvalidSignature,
    PayloadTooLarge,
    MalformedBody,
    MalformedJson,
    InvalidReport,
    StoreUnavailable,
    Internal,
}

impl Refusal {
    #[cfg(test)]
    pub(crate) const ALL: [Self; 11] = [
        Self::MethodNotAllowed,
        Self::MissingSignature,
        Self::MalformedSignature,
        Self::UnknownKey,
        Self::InvalidSignature,
        Self::PayloadTooLarge,
        Self::MalformedBody,
        Self::MalformedJson,
        Self::InvalidReport,
        Self::StoreUnavailable,
        Self::Internal,
    ];

    /// `(status, error, code, message)`: the message is the default one, which some
    /// callers make more precise.
    pub(crate) fn row(self) -> (StatusCode, &'static str, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "invalid_request",
                "method_not_allowed",
                "GitHub's reports are POSTed",
            ),
            Self::MissingSignature => (
                S::BAD_REQUEST,
                "invalid_request",
                "missing_signature",
                "a report needs one Github-Public-Key-Identifier and one Github-Public-Key-Signature header",
            ),
            Self::MalformedSignature => (
                S::BAD_REQUEST,
                "invalid_request",
                "malformed_signature",
                "Github-Public-Key-Signature is not a base64 DER ECDSA signature",
            ),
            Self::UnknownKey => (
                S::FORBIDDEN,
                "forbidden",
                "unknown_key",
                "Github-Public-Key-Identifier names no key this service trusts",
            ),
            Self::InvalidSignature => (
                S::FORBIDDEN,
                "forbidden",
                "invalid_signature",
                "the signature does not verify for this body and key",
            ),
            Self::PayloadTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "payload_too_large",
                "the body is too large",
            ),
            Self::MalformedBody => (
                S::BAD_REQUEST,
                "invalid_request",
                "malformed_body",
                "the request body could not be read",
            ),
            Self::MalformedJson => (
                S::BAD_REQUEST,
                "invalid_request",
                "malformed_json",
                "the body is not JSON",
            ),
            Self::InvalidReport => (
                S::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "invalid_report",
                "the body is not an array of {\"token\", \"type\", \"url\", \"source\"} objects",
            ),
            Self::StoreUnavailable => (
                S::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "store_unavailable",
                "the token store is unavailable; send the report again",
            ),
            Self::Internal => (
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "internal",
                "internal error",
            ),
        }
    }

    /// `{"error", "code", "message"}`.
    pub(crate) fn body(self, message: Option<&str>) -> String {
        let (_, error, code, default) = self.row();
        json!({
            "error": error,
            "code": code,
            "message": message.unwrap_or(default),
        })
        .to_string()
    }
}

/// An answer with the headers every answer carries.
fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<ReportBody> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

fn refuse(refusal: Refusal) -> Response<ReportBody> {
    respond(refusal.row().0, refusal.body(None))
}

fn refuse_with(refusal: Refusal, message: &str) -> Response<ReportBody> {
    respond(refusal.row().0, refusal.body(Some(message)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::Value;

    use super::*;

    #[test]
    fn every_refusal_has_its_own_code_and_a_class() {
        let mut codes = HashSet::new();
        for refusal in Refusal::ALL {
            let (status, error, code, message) = refusal.row();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{refusal:?}"
            );
            assert!(codes.insert(code), "{code} twice");
            for word in [error, code] {
                assert!(
                    !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "{word:?}"
                );
            }
            let body: Value = serde_json::from_str(&refusal.body(None)).unwrap();
            assert_eq!(
                body,
                json!({"error": error, "code": code, "message": message})
            );
        }
    }

    #[test]
    fn a_header_counts_once_or_not_at_all() {
        let mut headers = HeaderMap::new();
        assert_eq!(one_header(&headers, SIGNATURE_HEADER), None);
        headers.append(SIGNATURE_HEADER, HeaderValue::from_static(""));
        assert_eq!(one_header(&headers, SIGNATURE_HEADER), None);
        headers.insert(SIGNATURE_HEADER, HeaderValue::from_static("abc"));
        assert_eq!(one_header(&headers, SIGNATURE_HEADER), Some("abc"));
        headers.append(SIGNATURE_HEADER, HeaderValue::from_static("abc"));
        assert_eq!(one_header(&headers, SIGNATURE_HEADER), None);
    }
}
