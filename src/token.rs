//! The token format: generation, offline validation and hashing.
//!
//! A token reads `<prefix><random><checksum>`:
//!
//! - `prefix`: configurable, `pat_` by default, made of `[A-Za-z0-9_]` so that the whole
//!   token is selected by a double-click and fits RFC 6750's `b64token`;
//! - `random`: 33 base62 characters drawn uniformly from the operating system's CSPRNG
//!   (33 × log2(62) ≈ 196 bits);
//! - `checksum`: the CRC32 of the random part, as 6 base62 characters, so that a secret
//!   scanner, or [`PatLayer`](crate::PatLayer), can reject a mistyped token, or noise,
//!   without asking a database (the scheme GitHub uses for its tokens). The checksum is
//!   public: anyone can make a checksum-valid token, and each such made-up token costs
//!   one lookup in the store. It keeps typos away from the database; it is not a secret.
//!
//! Only the SHA-256 of a token ([`TokenHash`]) is ever stored. The plaintext lives in a
//! [`PlaintextToken`], which redacts itself in `Debug` and `Display`.
//!
//! ```
//! use tower_pat::token::TokenFormat;
//!
//! let format = TokenFormat::default();
//! let token = format.generate().unwrap();
//! assert_eq!(format!("{token}"), "pat_[redacted]");
//!
//! let hash = format.parse(token.expose_secret()).unwrap();
//! assert_eq!(hash, token.hash());
//! assert!(format.parse("pat_not-a-token").is_err());
//! ```

use std::{borrow::Cow, error::Error, fmt};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Characters of randomness in a token.
pub const RANDOM_LEN: usize = 33;
/// Characters of checksum in a token.
pub const CHECKSUM_LEN: usize = 6;
/// The longest prefix [`TokenFormat::new`] accepts.
pub const MAX_PREFIX_LEN: usize = 16;
/// The prefix of [`TokenFormat::default`].
pub const DEFAULT_PREFIX: &str = "pat_";

/// How tokens look: the prefix, and the fixed layout after it.
///
/// Cheap to clone. Two layers that must accept the same tokens need the same format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFormat {
    prefix: Cow<'static, str>,
}

impl Default for TokenFormat {
    fn default() -> Self {
        Self {
            prefix: Cow::Borrowed(DEFAULT_PREFIX),
        }
    }
}

impl TokenFormat {
    /// A format with the given prefix (`ghp_`-style; 1 to 16 characters of `[A-Za-z0-9_]`).
    ///
    /// # Errors
    ///
    /// [`InvalidPrefix`] when the prefix is empty, too long, or has another character.
    pub fn new(prefix: impl Into<Cow<'static, str>>) -> Result<Self, InvalidPrefix> {
        let prefix = prefix.into();
        let ok = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX_LEN
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if ok {
            Ok(Self { prefix })
        } else {
            Err(InvalidPrefix {
                prefix: prefix.into_owned(),
            })
        }
    }

    /// The prefix every token of this format starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The length of every token of this format, in bytes (= characters).
    pub fn token_len(&self) -> usize {
        self.prefix.len() + RANDOM_LEN + CHECKSUM_LEN
    }

    /// Draws a new token from the operating system's CSPRNG.
    ///
    /// # Errors
    ///
    /// [`RandomError`] when the operating system cannot provide randomness.
    pub fn generate(&self) -> Result<PlaintextToken, RandomError> {
        let mut out = String::with_capacity(self.token_len());
        out.push_str(&self.prefix);
        let mut random = [0u8; RANDOM_LEN];
        let mut filled = 0;
        let mut pool = [0u8; 64];
        while filled < RANDOM_LEN {
            getrandom::fill(&mut pool).map_err(RandomError::new)?;
            // Rejection sampling: 248 = 4 × 62, so `b % 62` is uniform for b < 248.
            for b in pool {
                if b < 248 && filled < RANDOM_LEN {
                    random[filled] = ALPHABET[usize::from(b % 62)];
                    filled += 1;
                }
            }
        }
        let checksum = encode_checksum(crc32fast::hash(&random));
        // Both arrays hold ASCII from `ALPHABET` only.
        out.extend(random.iter().map(|&b| char::from(b)));
        out.extend(checksum.iter().map(|&b| char::from(b)));
        Ok(PlaintextToken(out))
    }

    /// Checks a presented token offline (length, prefix, charset, checksum) and returns
    /// the hash to look up. A token that fails is not worth looking up; one that passes
    /// may still be made up (the checksum is public) and costs a lookup.
    ///
    /// # Errors
    ///
    /// [`MalformedToken`] saying which check failed (the message never repeats the input).
    pub fn parse(&self, presented: &str) -> Result<TokenHash, MalformedToken> {
        self.parse_bytes(presented.as_bytes())
    }

    /// [`parse`](Self::parse) on raw bytes, as they come in a header (non-ASCII bytes fail
    /// the charset check).
    ///
    /// # Errors
    ///
    /// [`MalformedToken`] saying which check failed.
    pub fn parse_bytes(&self, presented: &[u8]) -> Result<TokenHash, MalformedToken> {
        self.check_bytes(presented)?;
        Ok(TokenHash::of_bytes(presented))
    }

    /// The offline checks of [`parse`](Self::parse), without hashing.
    ///
    /// # Errors
    ///
    /// [`MalformedToken`] saying which check failed.
    pub fn check(&self, presented: &str) -> Result<(), MalformedToken> {
        self.check_bytes(presented.as_bytes())
    }

    /// Whether `bytes` has the length and the prefix of this format: what must hold before
    /// a presented token is hashed and looked up. The charset and the checksum
    /// ([`check_bytes`](Self::check_bytes)) are needed only before a store is asked to
    /// wait for a lookup: a token found in a store that answers at once is real.
    #[inline]
    pub(crate) fn is_shaped(&self, bytes: &[u8]) -> bool {
        bytes.len() == self.token_len() && bytes.starts_with(self.prefix.as_bytes())
    }

    pub(crate) fn check_bytes(&self, bytes: &[u8]) -> Result<(), MalformedToken> {
        if bytes.len() != self.token_len() {
            return Err(MalformedToken::Length);
        }
        let (prefix, rest) = bytes.split_at(self.prefix.len());
        if prefix != self.prefix.as_bytes() {
            return Err(MalformedToken::Prefix);
        }
        // A fixed-size array, one pass without early exit or table: the compiler
        // vectorizes it.
        let Ok(rest) = <&[u8; RANDOM_LEN + CHECKSUM_LEN]>::try_from(rest) else {
            return Err(MalformedToken::Length);
        };
        if rest
            .iter()
            .fold(0u8, |bad, &b| bad | u8::from(!is_base62(b)))
            != 0
        {
            return Err(MalformedToken::Charset);
        }
        let (random, checksum) = rest.split_at(RANDOM_LEN);
        if encode_checksum(crc32fast::hash(random)) == checksum {
            Ok(())
        } else {
            Err(MalformedToken::Checksum)
        }
    }
}

/// Whether `b` is in [`ALPHABET`]: three range checks, no branches.
#[inline]
fn is_base62(b: u8) -> bool {
    (b.wrapping_sub(b'0') < 10) | (b.wrapping_sub(b'A') < 26) | (b.wrapping_sub(b'a') < 26)
}

fn encode_checksum(mut crc: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(crc % 62) as usize];
        crc /= 62;
    }
    out
}

/// A token's plaintext: exists once, in what [`Tokens::create`](crate::Tokens::create)
/// returns, and is shown to the user then.
///
/// `Debug` and `Display` print the prefix and `[redacted]`; the secret comes out only
/// through [`expose_secret`](Self::expose_secret). Equality is constant-time.
#[derive(Clone)]
pub struct PlaintextToken(String);

impl PartialEq for PlaintextToken {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for PlaintextToken {}

impl PlaintextToken {
    /// The token itself, to show the user once (or to send as a bearer token).
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Consumes the value and returns the token itself.
    pub fn into_secret(self) -> String {
        self.0
    }

    /// The SHA-256 of the token: what a store keeps.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }

    fn visible_prefix(&self) -> &str {
        let end = self.0.len().saturating_sub(RANDOM_LEN + CHECKSUM_LEN);
        self.0.get(..end).unwrap_or("")
    }
}

impl fmt::Debug for PlaintextToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlaintextToken({}[redacted])", self.visible_prefix())
    }
}

impl fmt::Display for PlaintextToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[redacted]", self.visible_prefix())
    }
}

/// The SHA-256 of a token: the only form of a token a store keeps.
///
/// Equality is constant-time. `Debug` shows the first four bytes in hex, enough to tell
/// hashes apart in a log, not enough to matter.
#[derive(Clone, Copy)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes a token (its full text, prefix included).
    pub fn of(token: &str) -> Self {
        Self::of_bytes(token.as_bytes())
    }

    pub(crate) fn of_bytes(token: &[u8]) -> Self {
        Self(Sha256::digest(token).into())
    }

    /// A hash from its 32 bytes (as read back from a database).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters (for a text column).
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        // Writing to a `String` cannot fail.
        let _ = write_hex(&mut s, &self.0);
        s
    }

    /// Parses 64 hex digits (either case).
    ///
    /// # Errors
    ///
    /// [`InvalidHash`] when the input is not 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, InvalidHash> {
        parse_hex(hex).map(Self).ok_or(InvalidHash)
    }
}

/// Writes `bytes` as lowercase hex: how token hashes and token ids are shown.
pub(crate) fn write_hex(out: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.write_char(char::from(HEX[usize::from(b >> 4)]))?;
        out.write_char(char::from(HEX[usize::from(b & 0xf)]))?;
    }
    Ok(())
}

/// Reads exactly `N` bytes of hex (either case); `None` for anything else.
pub(crate) fn parse_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    let digits = hex.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let value = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (slot, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *slot = value(pair[0])? << 4 | value(pair[1])?;
    }
    Some(out)
}

/// Constant-time: no early exit, whatever the bytes.
// The four 64-bit words are folded with XOR and OR and `subtle` judges the result:
// byte-wise `subtle` costs several times more, and a map probe compares on every request.
impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        let diff = self
            .0
            .chunks_exact(8)
            .zip(other.0.chunks_exact(8))
            .fold(0u64, |acc, (a, b)| {
                let a = u64::from_ne_bytes(a.try_into().unwrap_or([0; 8]));
                let b = u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
                acc | (a ^ b)
            });
        diff.ct_eq(&0).into()
    }
}

impl Eq for TokenHash {}

impl std::hash::Hash for TokenHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        write!(f, "TokenHash({}…)", &hex[..8])
    }
}

/// Why a presented token was rejected offline. The message never contains the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MalformedToken {
    /// Not the length of a token of this format.
    Length,
    /// Does not start with the format's prefix.
    Prefix,
    /// A character outside base62 (non-ASCII included).
    Charset,
    /// The checksum does not match: mistyped, truncated or made up.
    Checksum,
}

impl fmt::Display for MalformedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Length => "token has the wrong length",
            Self::Prefix => "token has the wrong prefix",
            Self::Charset => "token has a character outside its alphabet",
            Self::Checksum => "token checksum does not match",
        })
    }
}

impl Error for MalformedToken {}

/// A prefix [`TokenFormat::new`] refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidPrefix {
    prefix: String,
}

impl fmt::Display for InvalidPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid token prefix {:?}: use 1 to {MAX_PREFIX_LEN} characters of [A-Za-z0-9_]",
            self.prefix
        )
    }
}

impl Error for InvalidPrefix {}

/// Text that is not a 64-digit hex SHA-256.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidHash;

impl fmt::Display for InvalidHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a 64-digit hex SHA-256")
    }
}

impl Error for InvalidHash {}

/// The operating system could not provide randomness.
#[derive(Debug)]
pub struct RandomError {
    source: getrandom::Error,
}

impl RandomError {
    pub(crate) fn new(source: getrandom::Error) -> Self {
        Self { source }
    }
}

impl fmt::Display for RandomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the operating system's random number generator failed")
    }
}

impl Error for RandomError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_have_fixed_length() {
        let format = TokenFormat::default();
        for _ in 0..200 {
            let t = format.generate().unwrap();
            let s = t.expose_secret();
            assert_eq!(s.len(), 4 + 33 + 6);
            assert!(s.starts_with("pat_"));
            assert!(s[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
            assert_eq!(format.parse(s).unwrap(), t.hash());
        }
    }

    #[test]
    fn base62_check_matches_the_alphabet() {
        for b in 0..=255u8 {
            assert_eq!(is_base62(b), ALPHABET.contains(&b), "{b}");
        }
    }

    #[test]
    fn tokens_are_distinct() {
        let format = TokenFormat::default();
        let a = format.generate().unwrap();
        let b = format.generate().unwrap();
        assert_ne!(a, b);
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn parse_rejects_each_kind_of_garbage() {
        let format = TokenFormat::default();
        let good = format.generate().unwrap().into_secret();
        assert_eq!(format.parse("pat_short"), Err(MalformedToken::Length));
        let wrong_prefix = format!("ghp_{}", &good[4..]);
        assert_eq!(format.parse(&wrong_prefix), Err(MalformedToken::Prefix));
        let mut dashed = good.clone().into_bytes();
        dashed[10] = b'-';
        let dashed = String::from_utf8(dashed).unwrap();
        assert_eq!(format.parse(&dashed), Err(MalformedToken::Charset));
        // A two-byte character keeps the byte length only if it replaces two bytes.
        let non_ascii = format!("{}é{}", &good[..10], &good[12..]);
        assert_eq!(non_ascii.len(), good.len());
        assert_eq!(format.parse(&non_ascii), Err(MalformedToken::Charset));
        let mut typo = good.clone().into_bytes();
        typo[12] = if typo[12] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(format.parse(&typo), Err(MalformedToken::Checksum));
    }

    #[test]
    fn plaintext_never_shows_in_debug_or_display() {
        let t = TokenFormat::default().generate().unwrap();
        let secret = t.expose_secret().to_owned();
        for shown in [format!("{t}"), format!("{t:?}"), format!("{t:#?}")] {
            assert!(!shown.contains(&secret[4..]), "{shown}");
            assert!(shown.contains("[redacted]"));
        }
    }

    #[test]
    fn prefixes_are_validated() {
        assert!(TokenFormat::new("ghp_").is_ok());
        assert!(TokenFormat::new("").is_err());
        assert!(TokenFormat::new("my-app_").is_err());
        assert!(TokenFormat::new("x".repeat(17)).is_err());
        let err = TokenFormat::new("a.b").unwrap_err().to_string();
        assert!(err.contains("\"a.b\""), "{err}");
        let custom = TokenFormat::new("acme_").unwrap();
        let t = custom.generate().unwrap();
        assert!(custom.parse(t.expose_secret()).is_ok());
        assert_eq!(
            TokenFormat::default().parse(t.expose_secret()),
            Err(MalformedToken::Length)
        );
    }

    #[test]
    fn hash_hex_round_trips() {
        let h = TokenHash::of("pat_x");
        assert_eq!(TokenHash::from_hex(&h.to_hex()).unwrap(), h);
        assert_eq!(TokenHash::from_hex(&h.to_hex().to_uppercase()).unwrap(), h);
        assert!(TokenHash::from_hex("zz").is_err());
        assert!(TokenHash::from_hex(&"g".repeat(64)).is_err());
    }
}
