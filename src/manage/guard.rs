//! The checks a request passes before anyone is asked who the user is: no personal access
//! token on it, from the application's own origin, and JSON where it has a body.

use http::{
    HeaderMap, HeaderValue, Uri,
    header::{AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN},
    request::Parts,
};

use crate::record::admission;

const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// Whether the request carries a personal access token in any form: a `Bearer`
/// `Authorization` header, an `access_token` query parameter, or an
/// [`AccessToken`](crate::AccessToken) a `PatLayer` in front resolved. Such a request
/// is never taken for the signed-in user's.
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

/// Whether the request comes from the application's own origin (or one it allows).
///
/// `Sec-Fetch-Site` decides where a browser sent it: only `same-origin` passes. A browser
/// that does not send it sends `Origin` on every state-changing request, whose host must
/// then be the request's `Host`. An origin in `allowed` passes either way. A request
/// with neither header is no browser's: it passes a safe method, and is refused a
/// state-changing one (`state_changing`), which fails closed.
pub(crate) fn same_origin(
    headers: &HeaderMap,
    uri: &Uri,
    allowed: &[String],
    state_changing: bool,
) -> bool {
    let (Some(origin), Some(fetch_site)) =
        (single(headers, ORIGIN), single(headers, SEC_FETCH_SITE))
    else {
        // The same header twice: no browser sends that.
        return false;
    };
    let origin = match origin {
        Some(v) => match v.to_str() {
            Ok(s) => Some(s),
            Err(_) => return false,
        },
        None => None,
    };
    if let Some(origin) = origin.and_then(normalize_origin)
        && allowed.contains(&origin)
    {
        return true;
    }
    match (fetch_site, origin) {
        (Some(site), _) => site.as_bytes() == b"same-origin",
        (None, Some(origin)) => origin_is_host(origin, headers, uri),
        (None, None) => !state_changing,
    }
}

/// `Some(None)` when the header is absent, `Some(Some(v))` when present once, `None` when
/// repeated.
fn single(
    headers: &HeaderMap,
    name: impl http::header::AsHeaderName,
) -> Option<Option<&HeaderValue>> {
    let mut all = headers.get_all(name).iter();
    let first = all.next();
    if all.next().is_some() {
        return None;
    }
    Some(first)
}

/// Whether `origin`'s host and port are the request's own (`Host`, or the URI's
/// authority in HTTP/2). The scheme is not compared: a server behind a TLS-terminating
/// proxy sees plain HTTP, and the port tells the schemes apart on one host anyway.
fn origin_is_host(origin: &str, headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(origin) = normalize_origin(origin) else {
        return false;
    };
    let host = match headers.get(HOST) {
        Some(h) => match h.to_str() {
            Ok(h) => h.to_ascii_lowercase(),
            Err(_) => return false,
        },
        None => match uri.authority() {
            Some(a) => a.as_str().to_ascii_lowercase(),
            None => return false,
        },
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host = host.strip_suffix(default_port).unwrap_or(&host);
    authority == host
}

/// `"HTTPS://App.Example:443"` → `"https://app.example"`: lowercase, the default port
/// dropped; `None` unless it is an HTTP(S) origin with a host, an optional port and
/// nothing else (`"null"` included).
pub(crate) fn normalize_origin(origin: &str) -> Option<String> {
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

    fn uri() -> Uri {
        Uri::from_static("/tokens")
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
    fn sec_fetch_site_decides_when_present() {
        let allowed = [];
        let same = headers(&[("sec-fetch-site", "same-origin"), ("host", "a.example")]);
        assert!(same_origin(&same, &uri(), &allowed, true));
        for site in ["cross-site", "same-site", "none", "SAME-ORIGIN"] {
            let h = headers(&[
                ("sec-fetch-site", site),
                ("origin", "http://a.example"),
                ("host", "a.example"),
            ]);
            assert!(!same_origin(&h, &uri(), &allowed, true), "{site}");
        }
    }

    #[test]
    fn origin_is_compared_with_host_without_sec_fetch_site() {
        let allowed = [];
        let ok = headers(&[
            ("origin", "http://127.0.0.1:3000"),
            ("host", "127.0.0.1:3000"),
        ]);
        assert!(same_origin(&ok, &uri(), &allowed, true));
        let default_port = headers(&[("origin", "https://A.example"), ("host", "a.example:443")]);
        assert!(same_origin(&default_port, &uri(), &allowed, true));
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:3001",
            "null",
            "http://127.0.0.1:3000/path",
            "http://user@127.0.0.1:3000",
        ] {
            let h = headers(&[("origin", origin), ("host", "127.0.0.1:3000")]);
            assert!(!same_origin(&h, &uri(), &allowed, true), "{origin}");
        }
    }

    #[test]
    fn allowed_origins_pass_and_repeats_fail() {
        let allowed = [normalize_origin("https://front.example").unwrap()];
        let h = headers(&[
            ("origin", "https://front.example"),
            ("sec-fetch-site", "same-site"),
            ("host", "api.example"),
        ]);
        assert!(same_origin(&h, &uri(), &allowed, true));
        let twice = headers(&[
            ("origin", "https://front.example"),
            ("origin", "https://front.example"),
        ]);
        assert!(!same_origin(&twice, &uri(), &allowed, true));
    }

    #[test]
    fn no_browser_headers_pass_only_safe_methods() {
        let h = headers(&[("host", "a.example")]);
        assert!(same_origin(&h, &uri(), &[], false));
        assert!(!same_origin(&h, &uri(), &[], true));
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
