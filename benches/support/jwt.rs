//! The peer the benches measure against: middleware that verifies a JWT access token with
//! jsonwebtoken, the way applications that pick JWTs over opaque tokens do it. It takes
//! the bearer token from `Authorization`, verifies signature, `exp`, `nbf`, `iss` and
//! `aud`, decodes the claims, checks the scope the route needs, and puts the claims in the
//! request's extensions (a 401 or 403 otherwise, with an empty body).
//!
//! The token is a typical access token of an identity provider: issuer, subject,
//! audience, issued-at, not-before, expiry, a token id, a client id and two scopes.
//! RS256 uses a throwaway 2048-bit key pair kept beside this file, made for the bench.

#![allow(dead_code)]

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::{SystemTime, UNIX_EPOCH},
};

use futures_util::future::{Either, Ready, ready};
use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tower::{Layer, Service};

const ISSUER: &str = "https://id.example.com/";
const AUDIENCE: &str = "https://api.example.com";
const SECRET: &[u8] = b"a 256-bit secret for the HS256 benchmark, not used anywhere else";
const RSA_PRIVATE: &[u8] = include_bytes!("rs256-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("rs256-public.pem");

/// The claims of the access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
}

/// A signed access token valid for an hour, and the layer that verifies it.
pub fn token_and_layer(alg: Algorithm) -> (String, JwtLayer) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = Claims {
        iss: ISSUER.into(),
        sub: "auth0|5f7c8ec7c33c6c004bbafe82".into(),
        aud: AUDIENCE.into(),
        iat: now,
        nbf: now,
        exp: now + 3600,
        jti: "2b6f0cc9-04c3-4a1f-9e4d-0a3a1e0e6c21".into(),
        client_id: "s6BhdRkqt3".into(),
        scope: "orders:read user:read".into(),
    };
    let (encoding, decoding) = match alg {
        Algorithm::HS256 => (
            EncodingKey::from_secret(SECRET),
            DecodingKey::from_secret(SECRET),
        ),
        Algorithm::RS256 => (
            EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("the bench's RSA private key"),
            DecodingKey::from_rsa_pem(RSA_PUBLIC).expect("the bench's RSA public key"),
        ),
        other => panic!("no key for {other:?}"),
    };
    let token = jsonwebtoken::encode(&Header::new(alg), &claims, &encoding).expect("sign");
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.validate_nbf = true;
    let layer = JwtLayer {
        key: Arc::new(decoding),
        validation: Arc::new(validation),
        scope: "orders:read",
    };
    (token, layer)
}

/// Verifies the bearer JWT of every request.
#[derive(Clone)]
pub struct JwtLayer {
    key: Arc<DecodingKey>,
    validation: Arc<Validation>,
    scope: &'static str,
}

impl<S> Layer<S> for JwtLayer {
    type Service = Jwt<S>;

    fn layer(&self, inner: S) -> Jwt<S> {
        Jwt {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`JwtLayer`] makes.
#[derive(Clone)]
pub struct Jwt<S> {
    inner: S,
    layer: JwtLayer,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Jwt<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response<ResB>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let refuse = |status| {
            let mut res = Response::new(ResB::default());
            *res.status_mut() = status;
            Either::Right(ready(Ok(res)))
        };
        let Some(token) = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return refuse(StatusCode::UNAUTHORIZED);
        };
        let claims =
            match jsonwebtoken::decode::<Claims>(token, &self.layer.key, &self.layer.validation) {
                Ok(data) => data.claims,
                Err(_) => return refuse(StatusCode::UNAUTHORIZED),
            };
        if !claims.scope.split(' ').any(|s| s == self.layer.scope) {
            return refuse(StatusCode::FORBIDDEN);
        }
        req.extensions_mut().insert(claims);
        Either::Left(self.inner.call(req))
    }
}
