//! [`PassportFormat`]: Laravel Passport's personal access tokens, RS256 JWTs, verified
//! offline with the application's public key.

use std::{error::Error, fmt, path::Path};

use base64ct::{Base64UrlUnpadded, Encoding};
use rsa::{
    RsaPublicKey,
    pkcs1::DecodeRsaPublicKey,
    pkcs1v15::{Signature, VerifyingKey},
    pkcs8::DecodePublicKey,
    signature::Verifier,
};
use serde_json::Value;
use sha2::Sha256;
use time::OffsetDateTime;

/// The longest JWT read: Passport's are about 800 bytes with a few scopes.
pub const MAX_JWT_LEN: usize = 8192;

/// How Passport's tokens are checked before any store is asked: an RS256 signature by the
/// application's key (`storage/oauth-public.key`, or `PASSPORT_PUBLIC_KEY`), `nbf` and `exp`.
///
/// Any other `alg` than `RS256` is refused before anything else (no `none`, no HS256 signed
/// with the public key); dates may be integers, floats (Passport writes microseconds) or
/// numeric strings (tokens minted by lcobucci/jwt 4.0); `aud` may be a string or an array.
/// What the row says (revoked, its user, its client) is the store's to check.
pub struct PassportFormat {
    key: VerifyingKey<Sha256>,
    leeway: i64,
    inherited_scopes: bool,
}

impl fmt::Debug for PassportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PassportFormat")
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

/// What a verified Passport token says. Never the token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassportClaims {
    /// The row in `oauth_access_tokens` (its `id`).
    pub jti: String,
    /// The user, as the token names it (`sub`); the row's `user_id` must be the same.
    pub sub: String,
    /// The client the token was issued through (`aud`): a row of `oauth_clients`.
    pub client_id: String,
    /// The scopes the token was signed with.
    pub scopes: Vec<String>,
    /// When it expires (`exp`).
    pub expires_at: OffsetDateTime,
}

/// Why a bearer with a JWT's shape is not a Passport token this format accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PassportError {
    /// Not three base64url parts, or a part that is not JSON.
    Malformed,
    /// The header names another algorithm than RS256.
    Algorithm,
    /// The signature does not verify with the key.
    Signature,
    /// A claim is missing or of the wrong type (`jti`, `sub`, `aud`, `exp`, `scopes`).
    Claims,
    /// Not valid yet (`nbf` is in the future).
    NotYetValid,
    /// Expired (`exp` has passed).
    Expired,
}

impl fmt::Display for PassportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "not a JWT",
            Self::Algorithm => "the JWT's algorithm is not RS256",
            Self::Signature => "the JWT's signature does not verify",
            Self::Claims => "the JWT lacks a claim Passport writes",
            Self::NotYetValid => "the JWT is not valid yet",
            Self::Expired => "the JWT has expired",
        })
    }
}

impl Error for PassportError {}

/// A public key [`PassportFormat::from_pem`] could not read.
#[derive(Debug)]
pub struct InvalidPublicKey(String);

impl fmt::Display for InvalidPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid Passport public key: {}", self.0)
    }
}

impl Error for InvalidPublicKey {}

impl PassportFormat {
    /// Verifies with the RSA public key in `pem`: SPKI (`-----BEGIN PUBLIC KEY-----`, what
    /// `passport:keys` writes) or PKCS#1 (`-----BEGIN RSA PUBLIC KEY-----`). Literal `\n`
    /// sequences are read as line breaks, as `PASSPORT_PUBLIC_KEY` often holds them.
    ///
    /// # Errors
    ///
    /// [`InvalidPublicKey`] when neither form reads.
    pub fn from_pem(pem: &str) -> Result<Self, InvalidPublicKey> {
        let pem = pem.trim().replace("\\n", "\n");
        let key = RsaPublicKey::from_public_key_pem(&pem)
            .or_else(|_| RsaPublicKey::from_pkcs1_pem(&pem))
            .map_err(|e| InvalidPublicKey(e.to_string()))?;
        Ok(Self {
            key: VerifyingKey::new(key),
            leeway: 0,
            inherited_scopes: false,
        })
    }

    /// Reads the PEM file at `path` (`storage/oauth-public.key`).
    ///
    /// # Errors
    ///
    /// [`InvalidPublicKey`] naming the path when it cannot be read or holds no key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, InvalidPublicKey> {
        let path = path.as_ref();
        let pem = std::fs::read_to_string(path)
            .map_err(|e| InvalidPublicKey(format!("{}: {e}", path.display())))?;
        Self::from_pem(&pem)
    }

    /// Whether a Passport token's scope grants the scopes below it, as
    /// `Passport::$withInheritedScopes` makes Laravel do: `orders` grants `orders:read`, and
    /// `orders:read` grants `orders:read:status` (`:` separates the levels). Off by default,
    /// as in Passport. A Sanctum ability never does (Sanctum compares names exactly).
    pub fn inherited_scopes(mut self, on: bool) -> Self {
        self.inherited_scopes = on;
        self
    }

    pub(crate) fn inherits_scopes(&self) -> bool {
        self.inherited_scopes
    }

    /// Seconds of clock skew allowed on `nbf` and `exp` (default 0, as Passport).
    pub fn leeway(mut self, seconds: u32) -> Self {
        self.leeway = i64::from(seconds);
        self
    }

    /// Whether `bearer` has a JWT's shape: three base64url parts, the first starting as a
    /// JSON object does (`eyJ`), at most [`MAX_JWT_LEN`] bytes. Nothing is decoded.
    pub fn is_shaped(bearer: &[u8]) -> bool {
        bearer.len() <= MAX_JWT_LEN
            && bearer.starts_with(b"eyJ")
            && bearer.iter().filter(|&&b| b == b'.').count() == 2
            && bearer
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }

    /// Verifies `bearer` at `now`: the algorithm first, then the signature, then the
    /// claims and the dates.
    ///
    /// # Errors
    ///
    /// [`PassportError`] saying which check failed.
    pub fn verify(
        &self,
        bearer: &[u8],
        now: OffsetDateTime,
    ) -> Result<PassportClaims, PassportError> {
        let text = std::str::from_utf8(bearer).map_err(|_| PassportError::Malformed)?;
        let mut parts = text.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(PassportError::Malformed);
        };
        let header = json(header)?;
        if header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err(PassportError::Algorithm);
        }
        let signature =
            Base64UrlUnpadded::decode_vec(signature).map_err(|_| PassportError::Malformed)?;
        let signature =
            Signature::try_from(signature.as_slice()).map_err(|_| PassportError::Signature)?;
        let signed = &text[..header_len(text)];
        self.key
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| PassportError::Signature)?;
        let claims = json(payload)?;
        let now = now.unix_timestamp();
        if let Some(nbf) = claims.get("nbf") {
            let nbf = seconds(nbf).ok_or(PassportError::Claims)?;
            if nbf > now + self.leeway {
                return Err(PassportError::NotYetValid);
            }
        }
        let exp = claims
            .get("exp")
            .and_then(seconds)
            .ok_or(PassportError::Claims)?;
        if now >= exp + self.leeway {
            return Err(PassportError::Expired);
        }
        let text_claim = |name| match claims.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let jti = text_claim("jti").ok_or(PassportError::Claims)?;
        let sub = text_claim("sub").ok_or(PassportError::Claims)?;
        let client_id = match claims.get("aud") {
            Some(Value::Array(all)) => all.first().and_then(Value::as_str).map(str::to_owned),
            _ => text_claim("aud"),
        }
        .ok_or(PassportError::Claims)?;
        let scopes = match claims.get("scopes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(all)) => all
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or(PassportError::Claims)?,
            Some(_) => return Err(PassportError::Claims),
        };
        let expires_at =
            OffsetDateTime::from_unix_timestamp(exp).map_err(|_| PassportError::Claims)?;
        Ok(PassportClaims {
            jti,
            sub,
            client_id,
            scopes,
            expires_at,
        })
    }
}

/// The length of `header.payload`, what the signature covers.
fn header_len(jwt: &str) -> usize {
    jwt.rfind('.').unwrap_or(jwt.len())
}

/// A base64url part decoded as a JSON object.
fn json(part: &str) -> Result<Value, PassportError> {
    let bytes = Base64UrlUnpadded::decode_vec(part).map_err(|_| PassportError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(PassportError::Malformed),
    }
}

/// A NumericDate as Passport's libraries wrote them: an integer, a float with microseconds,
/// or a numeric string; whole seconds (a fraction is cut, never rounded up).
fn seconds(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(whole)),
        Value::String(s) => s
            .parse::<i64>()
            .ok()
            .or_else(|| s.parse::<f64>().ok().and_then(whole)),
        _ => None,
    }
}

fn whole(f: f64) -> Option<i64> {
    // Within ±2^53: every such float is an exact integer part.
    (f.is_finite() && f.abs() < 9.0e15).then(|| f.floor() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_read_as_every_passport_wrote_them() {
        for (value, want) in [
            (serde_json::json!(1616497508), Some(1616497508)),
            (serde_json::json!(1616497508.795617), Some(1616497508)),
            (serde_json::json!("1616497508"), Some(1616497508)),
            (serde_json::json!("1616497508.795617"), Some(1616497508)),
            (serde_json::json!("soon"), None),
            (serde_json::json!(null), None),
            (serde_json::json!(1e300), None),
        ] {
            assert_eq!(seconds(&value), want, "{value}");
        }
    }

    #[test]
    fn only_a_jwt_shape_is_read() {
        assert!(PassportFormat::is_shaped(
            b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"
        ));
        for bad in [
            &b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0"[..],
            b"eyJ.a.b.c",
            b"abc.def.ghi",
            b"eyJ a.b.c",
            b"pat_xxxxxxxx",
        ] {
            assert!(!PassportFormat::is_shaped(bad), "{bad:?}");
        }
    }
}
