//! What the API reads and writes: the token and scope views (never the hash), the
//! creation and rotation requests, checked field by field so that a 422 names every
//! problem (without repeating more than a few characters of what was sent), and the
//! refusals, one row per case.

use http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    lifecycle::{MAX_ROTATION_OVERLAP, check_name, excerpt},
    record::TokenRecord,
    scope::{Scope, ScopeRegistry},
};

/// The most characters of someone's input a message repeats.
const ECHO: usize = 40;

/// The most problems one 422 lists; more are counted in one last problem.
pub(crate) const MAX_PROBLEMS: usize = 10;

/// What a token's view depends on besides the record: the time, the page's warning
/// window, and the facade's idle lifetime.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ViewContext {
    pub(crate) now: OffsetDateTime,
    pub(crate) warning: Duration,
    pub(crate) idle: Option<Duration>,
}

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
    expires_in_seconds: Option<i64>,
    expires_soon: bool,
    rotated_from: Option<String>,
    rotated_to: Option<String>,
}

impl<'a> TokenView<'a> {
    pub(crate) fn new<U>(record: &'a TokenRecord<U>, context: ViewContext) -> Self {
        let now = context.now;
        let idle = context.idle.is_some_and(|idle| {
            now >= record
                .last_used_at
                .unwrap_or(record.created_at)
                .max(record.created_at)
                + idle
        });
        let status = if record.revoked {
            "revoked"
        } else if record.is_expired_at(now) {
            "expired"
        } else if idle {
            "idle_expired"
        } else {
            "active"
        };
        let left = (status == "active").then(|| (record.expires_at - now).whole_seconds());
        Self {
            id: record.id.to_string(),
            name: &record.name,
            scopes: record.scopes.iter().map(|s| s.as_str()).collect(),
            created_at: rfc3339(record.created_at),
            last_used_at: record.last_used_at.map(rfc3339),
            expires_at: rfc3339(record.expires_at),
            status,
            expires_in_seconds: left,
            expires_soon: left.is_some_and(|left| left <= context.warning.whole_seconds()),
            rotated_from: record.rotated_from.map(|id| id.to_string()),
            rotated_to: record.rotated_to.map(|id| id.to_string()),
        }
    }
}

/// The answer to a creation: the record and, this once, the token.
#[derive(Serialize)]
pub(crate) struct Created<'a> {
    pub(crate) token: TokenView<'a>,
    pub(crate) plaintext: &'a str,
}

/// The answer to a rotation: the successor and, this once, its token, and the old token
/// as the rotation left it.
#[derive(Serialize)]
pub(crate) struct RotatedView<'a> {
    pub(crate) token: TokenView<'a>,
    pub(crate) plaintext: &'a str,
    pub(crate) previous: TokenView<'a>,
}

/// One scope the user may grant.
#[derive(Serialize)]
pub(crate) struct ScopeView<'a> {
    id: &'a str,
    description: &'a str,
    default: bool,
}

/// What the page says of the wildcard, which the registry does not describe.
pub(crate) const WILDCARD_DESCRIPTION: &str = "Every scope, including ones added later";

/// The scopes a user may grant, in the registry's order, with their descriptions.
pub(crate) fn scopes<'a>(
    registry: &'a ScopeRegistry,
    grantable: &'a [Scope],
) -> Vec<ScopeView<'a>> {
    grantable
        .iter()
        .map(|scope| ScopeView {
            id: scope.as_str(),
            description: registry
                .description(scope.as_str())
                .unwrap_or(WILDCARD_DESCRIPTION),
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
    TokenLimit,
    InvalidQuery,
    AlreadyRotated,
    TokenInactive,
    StoreUnavailable,
    Internal,
}

impl PageRejection {
    #[cfg(test)]
    pub(crate) const ALL: [Self; 17] = [
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
        Self::TokenLimit,
        Self::InvalidQuery,
        Self::AlreadyRotated,
        Self::TokenInactive,
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
            Self::TokenLimit => (
                S::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "token_limit",
                "you have the most active tokens allowed: revoke one to create another",
            ),
            Self::InvalidQuery => (
                S::BAD_REQUEST,
                "invalid_request",
                "invalid_query",
                "the query string is not one this path takes",
            ),
            Self::AlreadyRotated => (
                S::CONFLICT,
                "conflict",
                "already_rotated",
                "this token was rotated already",
            ),
            Self::TokenInactive => (
                S::CONFLICT,
                "conflict",
                "token_inactive",
                "this token is revoked or expired: generate a new one instead",
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

    /// `{"error", "code", "message"}`, and `problems` when given (a 422): at most
    /// [`MAX_PROBLEMS`], and one more counting the rest.
    pub(crate) fn body(self, message: Option<&str>, problems: Option<&[Problem]>) -> String {
        let (_, error, code, default) = self.row();
        let mut body = json!({
            "error": error,
            "code": code,
            "message": message.unwrap_or(default),
        });
        if let Some(problems) = problems {
            let shown = &problems[..problems.len().min(MAX_PROBLEMS)];
            let mut listed = json!(shown);
            if problems.len() > shown.len()
                && let Value::Array(items) = &mut listed
            {
                items.push(json!(Problem::new(
                    "body",
                    format!("and {} more problems", problems.len() - shown.len())
                )));
            }
            body["problems"] = listed;
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

/// Checks `{name, scopes, expires_in_days}` against the registry, what the user may
/// grant, and the longest lifetime, collecting every problem rather than stopping at the
/// first.
pub(crate) fn create_input(
    value: Value,
    registry: &ScopeRegistry,
    grantable: &[Scope],
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
    let scopes = scope_list(object.remove("scopes"), registry, grantable, &mut problems);
    let days = days(object.remove("expires_in_days"), max_days, &mut problems);
    unknown_fields(&object, "name, scopes and expires_in_days", &mut problems);
    match (name, problems.is_empty()) {
        (Some(name), true) => Ok(CreateInput { name, scopes, days }),
        _ => Err(problems),
    }
}

/// Checks `{overlap_seconds}` (absent: zero, the old token stops at once).
pub(crate) fn rotate_input(value: Value) -> Result<Duration, Vec<Problem>> {
    let Value::Object(mut object) = value else {
        return Err(vec![Problem::new(
            "body",
            "expected a JSON object: {\"overlap_seconds\"}",
        )]);
    };
    let mut problems = Vec::new();
    let max = MAX_ROTATION_OVERLAP.whole_seconds();
    let overlap = match object.remove("overlap_seconds") {
        None | Some(Value::Null) => Some(0),
        Some(value) => match whole_number(&value) {
            Some(seconds) if seconds <= max as u64 => Some(seconds as i64),
            Some(_) => {
                problems.push(Problem::new(
                    "overlap_seconds",
                    format!(
                        "the overlap may be at most {max} seconds ({} days)",
                        max / 86_400
                    ),
                ));
                None
            }
            None => {
                problems.push(Problem::new(
                    "overlap_seconds",
                    "the overlap must be a whole number of seconds, 0 or more",
                ));
                None
            }
        },
    };
    unknown_fields(&object, "overlap_seconds", &mut problems);
    match (overlap, problems.is_empty()) {
        (Some(seconds), true) => Ok(Duration::seconds(seconds)),
        _ => Err(problems),
    }
}

/// A non-negative whole number, written as an integer or as a float without a fraction.
fn whole_number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
            .map(|f| f as u64)
    })
}

/// The kind of a JSON value, to say what was sent instead of repeating it.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
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
    match check_name(&name) {
        Ok(()) => Some(name),
        Err(invalid) => {
            problems.push(Problem::new("name", invalid.to_string()));
            None
        }
    }
}

fn scope_list(
    value: Option<Value>,
    registry: &ScopeRegistry,
    grantable: &[Scope],
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
    let mut scopes = Vec::with_capacity(items.len().min(64));
    for item in items {
        let Value::String(scope) = item else {
            problems.push(Problem::new(
                "scopes",
                format!("each scope must be a string, not {}", kind(&item)),
            ));
            continue;
        };
        let shown = excerpt(&scope, ECHO);
        if Scope::new(&scope).is_err() {
            problems.push(Problem::new(
                "scopes",
                format!("{shown:?} is not a valid scope name"),
            ));
        } else if !registry.is_defined(&scope) {
            problems.push(Problem::new(
                "scopes",
                format!("{shown:?} is not a scope this application defines"),
            ));
        } else if !grantable.iter().any(|g| g.as_str() == scope) {
            problems.push(Problem::new(
                "scopes",
                format!("you may not grant {shown:?}"),
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
    // `30.0` is thirty days; `30.5` is not a whole number of days.
    let Some(days) = whole_number(&value) else {
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

fn unknown_fields(object: &Map<String, Value>, expected: &str, problems: &mut Vec<Problem>) {
    for key in object.keys() {
        problems.push(Problem::new(
            "body",
            format!(
                "unknown field {:?}: expected {expected}",
                excerpt(key, ECHO)
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::lifecycle::MAX_NAME_LEN;

    fn registry() -> ScopeRegistry {
        ScopeRegistry::new()
            .scope("user:read", "Retrieve the user info")
            .scope("orders:create", "Place orders")
            .default_scopes(["user:read"])
    }

    fn check(v: Value) -> Result<CreateInput, Vec<Problem>> {
        let registry = registry();
        let grantable: Vec<Scope> = registry.scopes().map(|(s, _)| s.clone()).collect();
        create_input(v, &registry, &grantable, 365)
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
        for name in ["a\u{202E}b", "\u{200B}\u{200D}"] {
            assert_eq!(
                fields(&check(json!({ "name": name })).unwrap_err()),
                ["name"]
            );
        }
    }

    #[test]
    fn only_grantable_scopes_pass() {
        let registry = registry();
        let grantable = vec![Scope::new("user:read").unwrap()];
        let problems = create_input(
            json!({"name": "n", "scopes": ["user:read", "orders:create"]}),
            &registry,
            &grantable,
            365,
        )
        .unwrap_err();
        assert_eq!(fields(&problems), ["scopes"]);
        assert_eq!(problems[0].message, r#"you may not grant "orders:create""#);
    }

    #[test]
    fn input_is_never_echoed_at_length() {
        let long = "x".repeat(10_000);
        let problems = check(json!({
            "name": "n",
            "scopes": [long.clone(), format!("{long}:"), {"a": long.clone()}],
            long.clone(): 1,
        }))
        .unwrap_err();
        assert_eq!(problems.len(), 4);
        for problem in &problems {
            assert!(problem.message.len() < 120, "{problem:?}");
        }
        let many: Vec<String> = (0..500).map(|i| format!("nope:{i}")).collect();
        let problems = check(json!({"name": "n", "scopes": many})).unwrap_err();
        assert_eq!(problems.len(), 500);
        let body = PageRejection::InvalidInput.body(None, Some(&problems));
        let listed: Value = serde_json::from_str(&body).unwrap();
        let listed = listed["problems"].as_array().unwrap();
        assert_eq!(listed.len(), MAX_PROBLEMS + 1);
        assert_eq!(listed[MAX_PROBLEMS]["message"], "and 490 more problems");
        assert!(body.len() < 1500, "{}", body.len());
    }

    #[test]
    fn rotations_take_an_overlap_in_seconds() {
        assert_eq!(rotate_input(json!({})), Ok(Duration::ZERO));
        assert_eq!(
            rotate_input(json!({"overlap_seconds": 3600})),
            Ok(Duration::hours(1))
        );
        for bad in [json!(-1), json!(1.5), json!("60"), json!(30 * 86_400 + 1)] {
            let problems = rotate_input(json!({ "overlap_seconds": bad })).unwrap_err();
            assert_eq!(fields(&problems), ["overlap_seconds"], "{bad}");
        }
        assert_eq!(
            fields(&rotate_input(json!({"overlap": 60})).unwrap_err()),
            ["body"]
        );
    }
}
