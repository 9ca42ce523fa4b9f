//! [`SanctumFormat`]: the shape of a Laravel Sanctum personal access token.

use crate::token::TokenHash;

/// The shortest secret a Sanctum token carries after its `|` (40 random characters, since
/// Sanctum 2.6).
pub const MIN_SECRET_LEN: usize = 40;

/// The longest secret [`SanctumFormat`] accepts unless configured: 80 random characters
/// (Sanctum ≤ 2.5), a prefix and an 8-digit checksum, with room to spare.
pub const DEFAULT_MAX_SECRET_LEN: usize = 160;

/// The shape of the Sanctum tokens a Laravel application issued, every generation of them:
/// `{id}|{prefix}{40 random}{8 hex checksum}` (Sanctum ≥ 3.3), the same with the
/// 3.2.6 checksum, `{id}|{40 random}` (2.6–3.2.5), `{id}|{80 random}` (2.3–2.5) and a bare
/// `{80 random}` (≤ 2.2).
///
/// A token that has this shape is looked up by the SHA-256 of what follows the first `|`
/// (the whole token without one): Sanctum's `token` column. Its checksum is never judged:
/// Sanctum itself does not, and a table can hold tokens from before checksums, or with the
/// one release's other CRC, so a checksum is advice, not a verdict. The row id before the
/// `|`, when there is one, must be the id of the row found.
///
/// ```
/// use tower_pat::laravel::SanctumFormat;
///
/// let format = SanctumFormat::new();
/// let secret = "a".repeat(40);
/// assert!(format.parse(format!("7|{secret}").as_bytes()).is_some());
/// assert!(format.parse(b"7|short").is_none());
/// assert!(format.parse(format!("x7|{secret}").as_bytes()).is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SanctumFormat {
    max_secret_len: usize,
    bare: bool,
}

impl Default for SanctumFormat {
    fn default() -> Self {
        Self {
            max_secret_len: DEFAULT_MAX_SECRET_LEN,
            bare: true,
        }
    }
}

/// A bearer with the shape of a Sanctum token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SanctumToken {
    /// The row id before the `|`, if there was one.
    pub id: Option<u64>,
    /// SHA-256 of the secret: the `token` column's value.
    pub key: TokenHash,
}

impl SanctumFormat {
    /// Every generation of Sanctum tokens, bare ones (no `id|`, Sanctum ≤ 2.2) included.
    pub fn new() -> Self {
        Self::default()
    }

    /// The longest secret (what follows the `|`) accepted, in bytes (default
    /// [`DEFAULT_MAX_SECRET_LEN`]; at least [`MIN_SECRET_LEN`]): raise it for a long
    /// `sanctum.token_prefix`.
    pub fn max_secret_len(mut self, len: usize) -> Self {
        self.max_secret_len = len.max(MIN_SECRET_LEN);
        self
    }

    /// Whether a token without `id|` (Sanctum ≤ 2.2, 80 random characters) is accepted
    /// (default on). Off, every Sanctum token must name its row.
    pub fn bare_tokens(mut self, on: bool) -> Self {
        self.bare = on;
        self
    }

    /// Reads `bearer` as a Sanctum token: `None` unless it has the shape of one — an id
    /// of 1 to 19 digits (no sign, no leading zero), a `|`, and a secret of
    /// [`MIN_SECRET_LEN`] to [`max_secret_len`](Self::max_secret_len) characters from
    /// `[A-Za-z0-9_-]`; or, with [bare tokens](Self::bare_tokens), such a secret alone.
    pub fn parse(&self, bearer: &[u8]) -> Option<SanctumToken> {
        let (id, secret) = match bearer.iter().position(|&b| b == b'|') {
            Some(bar) => (Some(parse_id(&bearer[..bar])?), &bearer[bar + 1..]),
            None if self.bare => (None, bearer),
            None => return None,
        };
        let shaped = (MIN_SECRET_LEN..=self.max_secret_len).contains(&secret.len())
            && secret
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        shaped.then(|| SanctumToken {
            id,
            key: TokenHash::of_bytes(secret),
        })
    }
}

/// A row id: 1 to 19 decimal digits without a leading zero, within `u64`.
fn parse_id(digits: &[u8]) -> Option<u64> {
    let plain = !digits.is_empty()
        && digits.len() <= 19
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.len() == 1);
    if !plain {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(n: usize) -> String {
        "aB3".repeat(n).chars().take(n).collect()
    }

    #[test]
    fn every_generation_is_read_and_keyed_by_its_secret() {
        let format = SanctumFormat::new();
        let checksummed = format!("{}{}", secret(40), "a1b2c3d4");
        for (token, id, hashed) in [
            (format!("7|{checksummed}"), Some(7), checksummed.clone()),
            (
                format!("12|laravel_sanctum_{checksummed}"),
                Some(12),
                format!("laravel_sanctum_{checksummed}"),
            ),
            (format!("3|{}", secret(40)), Some(3), secret(40)),
            (format!("3|{}", secret(80)), Some(3), secret(80)),
            (secret(80), None, secret(80)),
        ] {
            let read = format.parse(token.as_bytes()).expect(&token);
            assert_eq!(read.id, id, "{token}");
            assert_eq!(read.key, TokenHash::of(&hashed), "{token}");
        }
    }

    #[test]
    fn what_is_not_shaped_like_one_is_not_read() {
        let format = SanctumFormat::new();
        let s = secret(40);
        for bad in [
            format!("|{s}"),
            format!("07|{s}"),
            format!("+7|{s}"),
            format!("-7|{s}"),
            format!("7a|{s}"),
            format!("{}|{s}", "9".repeat(20)),
            format!("99999999999999999999|{s}"),
            "7|".to_owned(),
            format!("7|{}", secret(39)),
            format!("7|{}", secret(161)),
            format!("7|{}|x", secret(40)),
            format!("7|{} ", secret(40)),
            format!("7|{}é", secret(40)),
            secret(39),
        ] {
            assert!(format.parse(bad.as_bytes()).is_none(), "{bad:?}");
        }
        assert!(
            SanctumFormat::new()
                .bare_tokens(false)
                .parse(secret(80).as_bytes())
                .is_none()
        );
        assert!(
            SanctumFormat::new()
                .max_secret_len(200)
                .parse(format!("1|{}", secret(200)).as_bytes())
                .is_some()
        );
    }
}
