//! A report's contents: the candidates GitHub found, the judgement of each (offline
//! format, then the store), and the feedback GitHub reads back.

use serde::{Deserialize, Serialize};
use serde_json::error::Category;

use super::{FeedbackToken, OnRevoke, Revocation};
use crate::{
    lifecycle::{TokenError, Tokens},
    store::{ManageTokens, Revoked, StoreError, StoreErrorKind, TokenStore},
    token::TokenHash,
};

/// One match: `{"token", "type", "url", "source"}`. `url` may be empty or absent (older
/// reports), `source` absent; other fields are ignored.
///
/// No `Debug`: it holds a token.
#[derive(Deserialize)]
pub(crate) struct Candidate {
    token: String,
    #[serde(rename = "type")]
    token_type: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// Why a body is not a report. Says where, never what: serde's own messages may quote
/// the input, a token among it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotAReport {
    /// Not JSON (or not UTF-8).
    Syntax { line: usize, column: usize },
    /// JSON, but not an array of match objects.
    Shape { line: usize, column: usize },
}

/// The whole body, all or nothing: a body that is not a report is refused before any
/// candidate is looked at.
pub(crate) fn parse(body: &[u8]) -> Result<Vec<Candidate>, NotAReport> {
    serde_json::from_slice(body).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        match e.classify() {
            Category::Data => NotAReport::Shape { line, column },
            Category::Io | Category::Syntax | Category::Eof => NotAReport::Syntax { line, column },
        }
    })
}

/// GitHub's two labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Label {
    /// A real token of this application (revoked now, or before).
    TruePositive,
    /// Not a token of this application: malformed, or unknown to the store.
    FalsePositive,
}

/// What happened to each candidate, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) malformed: usize,
    pub(crate) unknown: usize,
    pub(crate) revoked: usize,
    pub(crate) already_revoked: usize,
}

/// Judges every candidate in order: the offline format check, then the store for those
/// that pass; a real token not revoked yet is revoked. Stops at the first store failure
/// (what was revoked stays revoked; a report sent again finds those already revoked).
pub(crate) async fn judge<St: ManageTokens>(
    tokens: &Tokens<St>,
    candidates: &[Candidate],
    on_revoke: Option<&OnRevoke<St::UserId>>,
) -> Result<(Vec<Label>, Tally), (StoreError, Tally)> {
    let mut labels = Vec::with_capacity(candidates.len());
    let mut tally = Tally::default();
    for candidate in candidates {
        match judge_one(tokens, candidate, on_revoke, &mut tally).await {
            Ok(label) => labels.push(label),
            Err(e) => return Err((e, tally)),
        }
    }
    Ok((labels, tally))
}

async fn judge_one<St: ManageTokens>(
    tokens: &Tokens<St>,
    candidate: &Candidate,
    on_revoke: Option<&OnRevoke<St::UserId>>,
    tally: &mut Tally,
) -> Result<Label, StoreError> {
    // Garbage never reaches the store.
    let Ok(hash) = tokens.token_format().parse(&candidate.token) else {
        tally.malformed += 1;
        return Ok(Label::FalsePositive);
    };
    let Some(record) = tokens.store().find(&hash).await? else {
        tally.unknown += 1;
        return Ok(Label::FalsePositive);
    };
    if record.token_hash != hash {
        // As in the layer: a store answering for another hash is broken.
        return Err(StoreError::with_kind(
            StoreErrorKind::Corrupt,
            format!(
                "the token store answered a lookup with token {}, whose hash differs",
                record.id
            ),
        ));
    }
    if record.revoked {
        tally.already_revoked += 1;
        return Ok(Label::TruePositive);
    }
    match tokens.revoke(&record.user_id, record.id).await {
        Ok(Revoked::Revoked) => {
            tally.revoked += 1;
            let url = candidate.url.as_deref().unwrap_or("");
            let source = candidate.source.as_deref().unwrap_or("");
            tracing::warn!(
                token.id = %record.id,
                user.id = ?record.user_id,
                url,
                source,
                "GitHub secret scanning: a leaked personal access token was revoked"
            );
            if let Some(on_revoke) = on_revoke {
                on_revoke(&Revocation {
                    record: &record,
                    url,
                    source,
                    token_type: &candidate.token_type,
                });
            }
        }
        // Revoked (or deleted) in the meantime: real all the same.
        Ok(Revoked::AlreadyRevoked | Revoked::NotFound) | Err(TokenError::NotFound(_)) => {
            tally.already_revoked += 1;
        }
        Err(TokenError::Store(e)) => return Err(e),
        Err(e) => return Err(StoreError::new(e)),
    }
    Ok(Label::TruePositive)
}

/// One element of the answer: `{"token_raw" | "token_hash", "token_type", "label"}`.
#[derive(Serialize)]
struct Feedback<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    token_raw: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_hash: Option<String>,
    token_type: &'a str,
    label: Label,
}

/// GitHub's feedback array, one element per candidate, in the report's order.
pub(crate) fn feedback(
    candidates: &[Candidate],
    labels: &[Label],
    form: FeedbackToken,
) -> serde_json::Result<Vec<u8>> {
    let items: Vec<Feedback<'_>> = candidates
        .iter()
        .zip(labels)
        .map(|(candidate, &label)| {
            let (token_raw, token_hash) = match form {
                FeedbackToken::Raw => (Some(candidate.token.as_str()), None),
                FeedbackToken::Sha256 => (None, Some(TokenHash::of(&candidate.token).to_hex())),
            };
            Feedback {
                token_raw,
                token_hash,
                token_type: &candidate.token_type,
                label,
            }
        })
        .collect();
    serde_json::to_vec(&items)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn reports_parse_or_say_where_they_do_not() {
        let body = br#"[{"token":"a","type":"t","url":"https://x","source":"commit","new":1},
                        {"token":"b","type":"t","url":null},
                        {"token":"c","type":"t"}]"#;
        let candidates = parse(body).unwrap();
        assert_eq!(candidates.len(), 3);
        assert_eq!(candidates[0].url.as_deref(), Some("https://x"));
        assert_eq!(candidates[0].source.as_deref(), Some("commit"));
        assert_eq!(candidates[1].url, None);
        assert!(parse(b"[]").unwrap().is_empty());

        assert!(matches!(parse(b"[{"), Err(NotAReport::Syntax { .. })));
        assert!(matches!(parse(b""), Err(NotAReport::Syntax { .. })));
        assert!(matches!(parse(b"\xff"), Err(NotAReport::Syntax { .. })));
        for shape in [
            &br#"{"token":"a","type":"t"}"#[..],
            br#"["pat_secret"]"#,
            br#"[{"type":"t"}]"#,
            br#"[{"token":7,"type":"t"}]"#,
            br#"[{"token":"a","type":"t"}, 1]"#,
        ] {
            assert!(
                matches!(parse(shape), Err(NotAReport::Shape { .. })),
                "{}",
                String::from_utf8_lossy(shape)
            );
        }
    }

    #[test]
    fn feedback_is_githubs_shape_in_either_form() {
        let candidates =
            parse(br#"[{"token":"a","type":"t1"},{"token":"b","type":"t2"}]"#).unwrap();
        let labels = [Label::TruePositive, Label::FalsePositive];
        let raw: Value =
            serde_json::from_slice(&feedback(&candidates, &labels, FeedbackToken::Raw).unwrap())
                .unwrap();
        assert_eq!(
            raw,
            json!([
                {"token_raw": "a", "token_type": "t1", "label": "true_positive"},
                {"token_raw": "b", "token_type": "t2", "label": "false_positive"},
            ])
        );
        let hashed: Value =
            serde_json::from_slice(&feedback(&candidates, &labels, FeedbackToken::Sha256).unwrap())
                .unwrap();
        assert_eq!(
            hashed[0],
            json!({
                // SHA-256("a")
                "token_hash": "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb",
                "token_type": "t1",
                "label": "true_positive",
            })
        );
    }
}
