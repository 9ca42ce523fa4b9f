//! Rejections for gRPC clients: trailers-only answers (HTTP 200, `content-type:
//! application/grpc`, `grpc-status`, `grpc-message`), as the gRPC over HTTP/2 protocol
//! has a call fail before any message.

use http::{HeaderMap, HeaderValue, Response, header::CONTENT_TYPE};

use super::{Rejection, RejectionKind};

/// The gRPC status codes the crate answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrpcCode {
    /// 16.
    Unauthenticated = 16,
    /// 7.
    PermissionDenied = 7,
    /// 14.
    Unavailable = 14,
    /// 13.
    Internal = 13,
}

/// Whether a request is gRPC (`content-type: application/grpc`, `+proto`, `-web`, …).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The trailers-only answer to `rejection`; an `insufficient_scope` names what the method
/// requires.
pub(crate) fn grpc_rejection<B: Default>(rejection: &Rejection<'_>) -> Response<B> {
    let kind = rejection.kind();
    match (kind, rejection.requirement()) {
        (RejectionKind::InsufficientScope, Some(requirement)) => {
            grpc_response(kind, &format!("insufficient scope: requires {requirement}"))
        }
        _ => grpc_response(kind, kind.message()),
    }
}

/// A trailers-only gRPC answer with the status of `kind` and `message`.
pub(crate) fn grpc_response<B: Default>(kind: RejectionKind, message: &str) -> Response<B> {
    let mut res = Response::new(B::default());
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(kind.grpc_code() as u16));
    if let Ok(v) = HeaderValue::try_from(percent_encode(message)) {
        headers.insert("grpc-message", v);
    }
    res
}

/// The percent-encoding gRPC asks of `grpc-message`: bytes outside `%x20-7E`, and `%`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("a b%c\u{e9}"), "a b%25c%C3%A9");
    }

    #[test]
    fn grpc_content_types_are_recognised() {
        let mut headers = HeaderMap::new();
        assert!(!is_grpc(&headers));
        for (ct, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("application/grpc-web", true),
            ("application/json", false),
        ] {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_grpc(&headers), grpc, "{ct}");
        }
    }
}
