//! [`Rejector`]: how one `PatLayer` turns a rejection into a response — its realm, its
//! prebuilt challenges and the application's body hook — shared with every scope check
//! and extractor behind it.

use std::{fmt, sync::Arc};

use http::{HeaderMap, HeaderValue, Response, header::WWW_AUTHENTICATE};

use super::{
    Rejection, RejectionKind,
    body::RejectionBody,
    challenge::Challenges,
    grpc::{grpc_rejection, grpc_response, is_grpc},
};
use crate::scope::Requirement;

/// How the [`PatLayer`](crate::PatLayer) in front of a request answers rejections: its
/// realm and the body hook of
/// [`rejection_body`](crate::PatLayer::rejection_body). The axum extractor's rejection
/// carries one, so that it answers as the layer would. Cheap to clone.
#[derive(Clone)]
pub struct Rejector(Arc<Parts>);

struct Parts {
    realm: Box<str>,
    challenges: Challenges,
    body: RejectionBody,
}

impl Rejector {
    /// For a realm [`is_valid_realm`](super::challenge::is_valid_realm) accepted.
    pub(crate) fn new(realm: &str, body: RejectionBody) -> Self {
        Self(Arc::new(Parts {
            realm: Box::from(realm),
            challenges: Challenges::new(realm),
            body,
        }))
    }

    /// The realm of the challenge.
    pub fn realm(&self) -> &str {
        &self.0.realm
    }

    /// The answer to a rejected request: trailers-only for gRPC, else the hook's body
    /// with the status and the challenge of `kind`.
    pub(crate) fn reject<B: Default + 'static>(
        &self,
        kind: RejectionKind,
        requirement: Option<&Requirement>,
        headers: &HeaderMap,
    ) -> Response<B> {
        let parts = &*self.0;
        let rejection = Rejection::new(kind, &parts.realm, requirement);
        if is_grpc(headers) {
            return grpc_rejection(&rejection);
        }
        let mut res = parts.body.response(&rejection);
        let challenge = match parts.challenges.get(kind) {
            Some(v) => Some(v.clone()),
            None => rejection.challenge(),
        };
        stamp(&mut res, kind, challenge);
        res
    }
}

impl fmt::Debug for Rejector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejector")
            .field("realm", &self.0.realm)
            .field("body", &self.0.body)
            .finish()
    }
}

/// The answer when no `PatLayer` ran, so there is no realm and no hook: 500 with an empty
/// body, or `INTERNAL` for gRPC.
pub(crate) fn reject_without_layer<B: Default>(headers: &HeaderMap) -> Response<B> {
    let kind = RejectionKind::MissingLayer;
    if is_grpc(headers) {
        return grpc_response(kind, kind.message());
    }
    let mut res = Response::new(B::default());
    stamp(&mut res, kind, None);
    res
}

/// Sets what the crate decides, whatever the hook returned.
fn stamp<B>(res: &mut Response<B>, kind: RejectionKind, challenge: Option<HeaderValue>) {
    *res.status_mut() = kind.status();
    let headers = res.headers_mut();
    match challenge {
        Some(v) => {
            headers.insert(WWW_AUTHENTICATE, v);
        }
        None => {
            headers.remove(WWW_AUTHENTICATE);
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{StatusCode, header::CONTENT_TYPE};

    use super::*;

    #[test]
    fn the_crate_stamps_status_and_challenge_over_the_hook() {
        let body = RejectionBody::new(|_: &Rejection<'_>| {
            Response::builder()
                .status(StatusCode::OK)
                .header(WWW_AUTHENTICATE, "Basic")
                .body("hooked".to_owned())
                .unwrap()
        });
        let rejector = Rejector::new("api", body);
        let res: Response<String> =
            rejector.reject(RejectionKind::RevokedToken, None, &HeaderMap::new());
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.body(), "hooked");
        assert!(
            res.headers()[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("revoked")
        );
        let res: Response<String> =
            rejector.reject(RejectionKind::StoreUnavailable, None, &HeaderMap::new());
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().get(WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn grpc_requests_get_trailers_only_answers_without_the_hook() {
        let rejector = Rejector::new("api", RejectionBody::default());
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        let res: Response<String> = rejector.reject(RejectionKind::ExpiredToken, None, &headers);
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "16");
        let res: Response<String> = reject_without_layer(&headers);
        assert_eq!(res.headers()["grpc-status"], "13");
    }
}
