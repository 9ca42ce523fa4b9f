//! What the API reads and writes: the token and scope views (never the hash), the
//! creation request, checked field by field so that a 422 names every problem, and the
//! refusals, one row per case.

use http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    lifecycle::MAX_NAME_LEN,
    record::TokenRecord,
    scope::{Scope, ScopeRegistry},
};

/// One token as the API shows it.
#[derive(Serialize)]
pub(crate) struct TokenView<'a> {
    id: String,
    name: &'a str,
    scopes: Vec<&'a str>,
    created_at: String,
    last_used_at: Option<String>,
    expires_at: String,
    status: &'static str,
}

impl<'a> TokenView<'a> {
    pub(crate) fn new<U>(record: &'a TokenRecord<U>, now: OffsetDateTime) -> Self {
        let status = if record.revoked {
            "revoked"
        } else if record.is_expired_at(now) {
            "expired"
        } else {
            "active"
        };
        Self {
            id: record.id.to_string(),
            name: &record.name,
            scopes: record.scopes.iter().map(|s| s.as_str()).collect(),
            created_at: rfc3339(record.created_at),
            last_used_at: record.last_used_at.map(rfc3339),
            expires_at: rfc3339(record.expires_at),
            status,
        }
    }
}

/// The answer to a creation: the record and, this once, the token.
#[derive(Serialize)]
pub(crate) struct Created<'a> {
    pub(crate) token: TokenView<'a>,
    pub(crate) plaintext: &'a str,
}

/// One scope of the registry.
#[derive(Serialize)]
pub(crate) struct ScopeView<'a> {
    id: &'a str,
    description: &'a str,
    default: bool,
}

pub(crate) fn scopes(registry: &ScopeRegistry) -> Vec<ScopeView<'_>> {
    registry
        .scopes()
        .map(|(scope, description)| ScopeView {
            id: scope.as_str(),
            description,
            default: registry.defaults().contains(scope.as_str()),
        })
        .collect()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// One thing wrong with a request's input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Problem {
    pub(crate) field: &'static str,
    pub(crate) message: String,
}

impl Problem {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Why the API refused a request: one row per case, each deciding the status, the broad
/// class (`error`) and the precise reason (`code`) in one place. The same three keys as
/// [`Rejection::to_json`](crate::reject::Rejection::to_json), so an application serving
/// both answers in one dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PageRejection {
    NotFound,
    TokenNotFound,
    MethodNotAllowed,
    TokenNotAccepted,
    CrossOrigin,
    UnsupportedMediaType,
    NotSignedIn,
    PayloadTooLarge,
    MalformedBody,
    MalformedJson,
    InvalidInput,
    StoreUnavailable,
    Internal,
}

impl PageRejection {
    #[cfg(test)]
    pub(crate) const ALL: [Self; 13] = [
        Self::NotFound,
        Self::TokenNotFound,
        Self::MethodNotAllowed,
        Self::TokenNotAccepted,
        Self::CrossOrigin,
        Self::UnsupportedMediaType,
        Self::NotSignedIn,
        Self::PayloadTooLarge,
        Self::MalformedBody,
        Self::MalformedJson,
        Self::InvalidInput,
        Self::StoreUnavailable,
        Self::Internal,
    ];

    /// `(status, error, code, message)`: the message is the default one, which some
    /// callers make more precise.
    pub(crate) fn row(self) -> (StatusCode, &'static str, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::NotFound => (S::NOT_FOUND, "not_found", "not_found", "no such page"),
            Self::TokenNotFound => (
                S::NOT_FOUND,
                "not_found",
                "token_not_found",
                "you have no token with this id",
            ),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "invalid_request",
                "method_not_allowed",
                "this path does not take this method",
            ),
            Self::TokenNotAccepted => (
                S::FORBIDDEN,
                "forbidden",
                "token_not_accepted",
                "a personal access token cannot manage tokens: sign in instead",
            ),
            Self::CrossOrigin => (
                S::FORBIDDEN,
                "forbidden",
                "cross_origin",
                "the request does not come from this application's own pages",
            ),
            Self::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "unsupported_media_type",
                "send the request as application/json",
            ),
            Self::NotSignedIn => (
                S::UNAUTHORIZED,
                "unauthenticated",
                "not_signed_in",
                "sign in to manage your tokens",
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
            Self::InvalidInput => (
                S::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "invalid_input",
                "the token was not created: see problems",
            ),
            Self::StoreUnavailable => (
                S::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "store_unavailable",
                "the token store is unavailable; try again",
            ),
            Self::Internal => (
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "internal",
                "internal error",
            ),
        }
    }

    pub(crate) fn status(self) -> StatusCode {
        self.row().0
    }

    /// `{"error", "code", "message"}`, and `problems` when given (a 422).
    pub(crate) fn body(self, message: Option<&str>, problems: Option<&[Problem]>) -> String {
        let (_, error, code, default) = self.row();
        let mut body = json!({
            "error": error,
            "code": code,
            "message": message.unwrap_or(default),
        });
        if let Some(problems) = problems {
            body["problems"] = json!(problems);
        }
        body.to_string()
    }
}

/// A creation request that passed every check.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CreateInput {
    pub(crate) name: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) days: Option<u32>,
}

/// Checks `{name, scopes, expires_in_days}` against the registry and the longest
/// lifetime, collecting every problem rather than stopping at the first.
pub(crate) fn create_input(
    value: Value,
    registry: &ScopeRegistry,
    max_days: u32,
) -> Result<CreateInput, Vec<Problem>> {
    let Value::Object(mut object) = value else {
        return Err(vec![Problem::new(
            "body",
            "expected a JSON object: {\"name\", \"scopes\", \"expires_in_days\"}",
        )]);
    };
    let mut problems = Vec::new();
    let name = name(object.remove("name"), &mut problems);
    let scopes = scope_list(object.remove("scopes"), registry, &mut problems);
    let days = days(object.remove("expires_in_days"), max_days, &mut problems);
    unknown_fields(&object, &mut problems);
    match (name, problems.is_empty()) {
        (Some(name), true) => Ok(CreateInput { name, scopes, days }),
        _ => Err(problems),
    }
}

fn name(value: Option<Value>, problems: &mut Vec<Problem>) -> Option<String> {
    let name = match value {
        Some(Value::String(name)) => name,
        None | Some(Value::Null) => {
            problems.push(Problem::new("name", "a name is required"));
            return None;
        }
        Some(_) => {
            problems.push(Problem::new("name", "the name must be a string"));
            return None;
        }
    };
    let before = problems.len();
    if name.trim().is_empty() {
        problems.push(Problem::new("name", "the name must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        problems.push(Problem::new(
            "name",
            format!(
                "the name is {} bytes long; at most {MAX_NAME_LEN} are allowed",
                name.len()
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        problems.push(Problem::new(
            "name",
            "the name must not contain control characters (line breaks, tabs…)",
        ));
    }
    (problems.len() == before).then_some(name)
}

fn scope_list(
    value: Option<Value>,
    registry: &ScopeRegistry,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            problems.push(Problem::new(
                "scopes",
                "the scopes must be an array of scope names",
            ));
            return Vec::new();
        }
    };
    let mut scopes = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(scope) = item else {
            problems.push(Problem::new(
                "scopes",
                format!("each scope must be a string, not {item}"),
            ));
            continue;
        };
        if Scope::new(&scope).is_err() {
            problems.push(Problem::new(
                "scopes",
                format!("{scope:?} is not a valid scope name"),
            ));
        } else if !registry.is_defined(&scope) {
            problems.push(Problem::new(
                "scopes",
                format!("{scope:?} is not a scope this application defines"),
            ));
        } else {
            scopes.push(scope);
        }
    }
    scopes
}

fn days(value: Option<Value>, max_days: u32, problems: &mut Vec<Problem>) -> Option<u32> {
    let value = match value {
        None | Some(Value::Null) => return None,
        Some(value) => value,
    };
    let Some(days) = value.as_u64().or_else(|| {
        // `30.0` is thirty days; `30.5` is not a whole number of days.
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
            .map(|f| f as u64)
    }) else {
        problems.push(Problem::new(
            "expires_in_days",
            "the expiry must be a whole number of days",
        ));
        return None;
    };
    if days == 0 {
        problems.push(Problem::new(
            "expires_in_days",
            "a token must live at least 1 day",
        ));
        return None;
    }
    if days > u64::from(max_days) {
        problems.push(Problem::new(
            "expires_in_days",
            format!("a token may live at most {max_days} days; {days} were asked for"),
        ));
        return None;
    }
    u32::try_from(days).ok()
}

fn unknown_fields(object: &Map<String, Value>, problems: &mut Vec<Problem>) {
    for key in object.keys() {
        problems.push(Problem::new(
            "body",
            format!("unknown field {key:?}: expected name, scopes and expires_in_days"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn registry() -> ScopeRegistry {
        ScopeRegistry::new()
            .scope("user:read", "Retrieve the user info")
            .scope("orders:create", "Place orders")
            .default_scopes(["user:read"])
    }

    fn check(v: Value) -> Result<CreateInput, Vec<Problem>> {
        create_input(v, &registry(), 365)
    }

    fn fields(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.field).collect()
    }

    #[test]
    fn every_refusal_has_its_own_code_and_a_class() {
        let mut codes = std::collections::HashSet::new();
        for refusal in PageRejection::ALL {
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
            assert!(!message.is_empty());
            let body: Value = serde_json::from_str(&refusal.body(None, None)).unwrap();
            assert_eq!(
                body,
                json!({"error": error, "code": code, "message": message})
            );
        }
        let body = PageRejection::InvalidInput
            .body(None, Some(&[Problem::new("name", "a name is required")]));
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body["problems"],
            json!([{"field": "name", "message": "a name is required"}])
        );
        let body: Value =
            serde_json::from_str(&PageRejection::MalformedJson.body(Some("not JSON: EOF"), None))
                .unwrap();
        assert_eq!(body["message"], "not JSON: EOF");
    }

    #[test]
    fn a_good_request_passes() {
        assert_eq!(
            check(json!({"name": "laptop", "scopes": ["orders:create"], "expires_in_days": 30})),
            Ok(CreateInput {
                name: "laptop".into(),
                scopes: vec!["orders:create".into()],
                days: Some(30),
            })
        );
        assert_eq!(
            check(json!({"name": "ci", "expires_in_days": 365.0})),
            Ok(CreateInput {
                name: "ci".into(),
                scopes: vec![],
                days: Some(365),
            })
        );
    }

    #[test]
    fn every_problem_is_named() {
        let problems = check(json!({
            "name": " ",
            "scopes": ["orders:create", "orders:delete", "bad scope", 7],
            "expires_in_days": 366,
            "admin": true,
        }))
        .unwrap_err();
        assert_eq!(
            fields(&problems),
            [
                "name",
                "scopes",
                "scopes",
                "scopes",
                "expires_in_days",
                "body"
            ]
        );
        let text = format!("{problems:?}");
        for needle in ["orders:delete", "bad scope", "366", "365", "admin"] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
    }

    #[test]
    fn names_and_days_are_bounded() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let problems = check(json!({"name": long})).unwrap_err();
        assert!(problems[0].message.contains("256"), "{problems:?}");
        assert!(check(json!({"name": "x".repeat(MAX_NAME_LEN)})).is_ok());
        assert_eq!(
            fields(&check(json!({"name": "a\nb"})).unwrap_err()),
            ["name"]
        );
        assert_eq!(fields(&check(json!({})).unwrap_err()), ["name"]);
        assert_eq!(fields(&check(json!({"name": 5})).unwrap_err()), ["name"]);
        for days in [json!(0), json!(-1), json!(1.5), json!("30")] {
            let problems = check(json!({"name": "n", "expires_in_days": days})).unwrap_err();
            assert_eq!(fields(&problems), ["expires_in_days"], "{days}");
        }
        assert_eq!(fields(&check(json!(["name"])).unwrap_err()), ["body"]);
        assert_eq!(
            fields(&check(json!({"name": "n", "scopes": "user:read"})).unwrap_err()),
            ["scopes"]
        );
    }
}
