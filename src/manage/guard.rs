//! The checks a request passes before anyone is asked who the user is: no personal access
//! token on it, from the application's own origin (tower-http's CSRF protection, and a
//! rule of our own for reads), and JSON where it has a body.

use http::{
    HeaderMap,
    header::{AUTHORIZATION, CONTENT_TYPE, ORIGIN},
    request::Parts,
};
use tower_http::csrf::{Csrf, CsrfLayer};
use tower_layer::Layer;

use crate::record::admission;

const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// Whether the request carries a personal access token in any form: a `Bearer`
/// `Authorization` header, an `access_token` query parameter, or an
/// [`AccessToken`](crate::AccessToken) a `PatLayer` in front resolved. Such a request
/// is never taken for the signed-in user's.
///
/// Broader than the layer's credential parser (`auth/credentials.rs`), which decides
/// which credential a request presents: here a `Bearer` value that parser would reject, or
/// a query parameter it would not read, still counts, since a page for people must refuse
/// anything a script may have sent as a credential.
pub(crate) fn carries_token(parts: &Parts) -> bool {
    let header = parts
        .headers
        .get_all(AUTHORIZATION)
        .iter()
        .any(|v| is_bearer(v.as_bytes()));
    let query = parts.uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("access_token"))
    });
    let resolved = admission(&parts.extensions).is_some_and(|a| a.scopes.is_some());
    header || query || resolved
}

/// `Bearer`, in any case, alone or followed by whitespace.
fn is_bearer(value: &[u8]) -> bool {
    const SCHEME: &[u8] = b"bearer";
    let value = value.trim_ascii_start();
    value.len() >= SCHEME.len()
        && value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME)
        && value
            .get(SCHEME.len())
            .is_none_or(|b| b.is_ascii_whitespace())
}

/// Where a request may come from. A request that changes something passes tower-http's
/// [`CsrfLayer`] (Go's cross-origin protection: `Sec-Fetch-Site`, else `Origin` against
/// the request's host, and the allowed origins); a read of the API must not come from
/// another site's page where the browser says it does (`Sec-Fetch-Site`), unless from an
/// allowed origin.
#[derive(Clone, Debug, Default)]
pub(crate) struct SameOrigin {
    /// The allowed origins, as a browser writes them in `Origin`.
    allowed: Vec<String>,
    csrf: CsrfLayer,
}

impl SameOrigin {
    /// Allows `origins` besides the request's own, each brought to the form a browser
    /// sends (see [`normalize_origin`]); `Err` names the first that is not an origin.
    pub(crate) fn new<I>(origins: I) -> Result<Self, String>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut allowed = Vec::new();
        let mut csrf = CsrfLayer::new();
        for origin in origins {
            let given = origin.as_ref();
            let origin = normalize_origin(given).ok_or_else(|| given.to_owned())?;
            csrf = csrf
                .add_trusted_origin(&origin)
                .map_err(|_| given.to_owned())?;
            allowed.push(origin);
        }
        Ok(Self { allowed, csrf })
    }

    /// The allowed origins, as compared.
    pub(crate) fn allowed(&self) -> &[String] {
        &self.allowed
    }

    /// `inner` behind tower-http's check: a refused request is answered 403 with the
    /// [`ProtectionError`](tower_http::csrf::ProtectionError) in the response's
    /// extensions, and `inner` never sees it.
    pub(crate) fn guard<S>(&self, inner: S) -> Csrf<S> {
        self.csrf.layer(inner)
    }

    /// Whether a read comes from another site's page: `Sec-Fetch-Site` is there and
    /// neither `same-origin` nor `none` (the person typed the address), and `Origin` is
    /// none of the allowed ones.
    ///
    /// tower-http checks only requests that change something. A read is refused too,
    /// because the answer is the user's data: a page of another site that includes the
    /// API as a script or image gets the bytes into its own process in browsers without
    /// cross-origin read blocking, or times and sizes them. The page's own script always
    /// reads from its own origin, so this costs it nothing.
    pub(crate) fn cross_site_read(&self, headers: &HeaderMap) -> bool {
        let cross_site = headers
            .get(SEC_FETCH_SITE)
            .is_some_and(|site| !matches!(site.as_bytes(), b"same-origin" | b"none" | b""));
        let allowed = headers.get(ORIGIN).is_some_and(|origin| {
            self.allowed
                .iter()
                .any(|allowed| allowed.as_bytes() == origin.as_bytes())
        });
        cross_site && !allowed
    }
}

/// `"HTTPS://App.Example:443"` → `"https://app.example"`: lowercase, the default port
/// dropped, as a browser writes `Origin` (tower-http compares it byte for byte); `None`
/// unless it is an HTTP(S) origin with a host, an optional port and nothing else
/// (`"null"` included).
fn normalize_origin(origin: &str) -> Option<String> {
    let lower = origin.to_ascii_lowercase();
    let (scheme, authority) = lower.split_once("://")?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    if authority.is_empty() || authority.contains(['@', '/', '?', '#', '\\']) {
        return None;
    }
    let parsed: http::uri::Authority = authority.parse().ok()?;
    if parsed.host().is_empty() {
        return None;
    }
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    Some(format!("{scheme}://{authority}"))
}

/// What a request's `Content-Type` says about its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    /// `application/json`, with or without parameters.
    Json,
    /// No `Content-Type` at all.
    Unlabelled,
    /// Anything else (a form, text, another JSON-like type).
    Other,
}

pub(crate) fn body_kind(headers: &HeaderMap) -> Body {
    let mut all = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (all.next(), all.next()) else {
        return if headers.contains_key(CONTENT_TYPE) {
            Body::Other
        } else {
            Body::Unlabelled
        };
    };
    let Ok(value) = value.to_str() else {
        return Body::Other;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Body::Json
    } else {
        Body::Other
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_in_any_case_is_a_token() {
        for v in ["Bearer x", "bearer x", "BEARER", "  Bearer\tx"] {
            assert!(is_bearer(v.as_bytes()), "{v:?}");
        }
        for v in ["Basic abc", "Bearerx", "Bear", ""] {
            assert!(!is_bearer(v.as_bytes()), "{v:?}");
        }
    }

    #[test]
    fn allowed_origins_are_kept_as_browsers_write_them() {
        let guard =
            SameOrigin::new(["HTTPS://Front.Example:443", "http://127.0.0.1:8080"]).unwrap();
        assert_eq!(
            guard.allowed(),
            ["https://front.example", "http://127.0.0.1:8080"]
        );
        for bad in [
            "front.example",
            "https://front.example/",
            "https://user@front.example",
            "ftp://front.example",
            "null",
            "https://",
        ] {
            assert_eq!(SameOrigin::new([bad]).unwrap_err(), bad);
        }
    }

    #[test]
    fn reads_from_another_site_are_refused_unless_allowed() {
        let guard = SameOrigin::new(["https://front.example"]).unwrap();
        for site in ["cross-site", "same-site", "SAME-ORIGIN", "nonsense"] {
            let h = headers(&[("sec-fetch-site", site)]);
            assert!(guard.cross_site_read(&h), "{site}");
        }
        for site in ["same-origin", "none", ""] {
            let h = headers(&[("sec-fetch-site", site)]);
            assert!(!guard.cross_site_read(&h), "{site:?}");
        }
        // Without Sec-Fetch-Site (an older browser, or no browser): not refused here.
        assert!(!guard.cross_site_read(&headers(&[])));
        assert!(!guard.cross_site_read(&headers(&[("origin", "https://evil.example")])));
        // An allowed origin reads from another site; another origin does not.
        let front = headers(&[
            ("sec-fetch-site", "same-site"),
            ("origin", "https://front.example"),
        ]);
        assert!(!guard.cross_site_read(&front));
        let evil = headers(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ]);
        assert!(guard.cross_site_read(&evil));
    }

    #[test]
    fn only_json_is_json() {
        assert_eq!(
            body_kind(&headers(&[(
                "content-type",
                "application/json; charset=utf-8"
            )])),
            Body::Json
        );
        assert_eq!(
            body_kind(&headers(&[("content-type", "Application/JSON")])),
            Body::Json
        );
        assert_eq!(body_kind(&headers(&[])), Body::Unlabelled);
        for ct in [
            "application/x-www-form-urlencoded",
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/json-patch+json",
        ] {
            assert_eq!(
                body_kind(&headers(&[("content-type", ct)])),
                Body::Other,
                "{ct}"
            );
        }
        let twice = headers(&[
            ("content-type", "application/json"),
            ("content-type", "text/plain"),
        ]);
        assert_eq!(body_kind(&twice), Body::Other);
    }
}
