//! The keys GitHub signs its reports with, and the check of one report's signature.

use std::{
    collections::HashMap,
    error::Error,
    fmt,
    sync::{Arc, PoisonError, RwLock},
};

use base64ct::{Base64, Encoding};
use p256::{
    ecdsa::{Signature, VerifyingKey, signature::Verifier},
    pkcs8::DecodePublicKey,
};
use serde::Deserialize;

/// The longest key identifier accepted, in bytes (GitHub's are 64 hex digits).
pub(crate) const MAX_IDENTIFIER_LEN: usize = 256;

/// The public keys that may sign a report, by `key_identifier`: the keys GitHub publishes
/// at `https://api.github.com/meta/public_keys/secret_scanning`.
///
/// A shared handle: clones see the same keys, and [`replace`](Self::replace) swaps them
/// for every clone at once, so an application that refreshes GitHub's document (on a
/// timer, or when a report names a key it does not know) hands the service one clone and
/// keeps another. Fetching the document is the application's part; the crate makes no
/// outbound request.
///
/// Every key of a document is accepted, `is_current` or not: a report names the key that
/// signed it, and GitHub's own samples verify with whichever key is named.
///
/// ```
/// use tower_pat::leaks::KeySet;
///
/// // A document shaped like GitHub's (this key is GitHub's documented sample key).
/// let document = r#"{"public_keys": [{
///     "key_identifier": "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a",
///     "key": "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9MJJHnMfn2+H4xL4YaPDA4RpJqUq\nkCmRCBnYERxZanmcpzQSXs1X/AljlKkbJ8qpVIW4clayyef9gWhFbNHWAA==\n-----END PUBLIC KEY-----\n",
///     "is_current": true
/// }]}"#;
/// let keys = KeySet::from_github_json(document)?;
/// assert!(keys.contains("90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a"));
///
/// // The service holds a clone; a refresh reaches it.
/// let held_by_the_service = keys.clone();
/// keys.replace(KeySet::new());
/// assert!(held_by_the_service.is_empty());
/// # Ok::<_, tower_pat::leaks::KeyError>(())
/// ```
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Arc<RwLock<Arc<Keys>>>,
}

/// One snapshot of the keys.
#[derive(Default)]
struct Keys {
    by_id: HashMap<String, Key>,
}

#[derive(Clone)]
struct Key {
    verifying: VerifyingKey,
    current: bool,
}

/// GitHub's document: `{"public_keys": [{"key_identifier", "key", "is_current"}]}`.
#[derive(Deserialize)]
struct Document {
    public_keys: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    key_identifier: String,
    key: String,
    #[serde(default)]
    is_current: bool,
}

impl KeySet {
    /// A set with no key: every report is refused (`unknown_key`) until
    /// [`replace`](Self::replace) gives it some.
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys of the JSON document GitHub serves at
    /// `https://api.github.com/meta/public_keys/secret_scanning`:
    /// `{"public_keys": [{"key_identifier", "key", "is_current"}]}`, each `key` a PEM
    /// `PUBLIC KEY` (an ECDSA P-256 SubjectPublicKeyInfo). Other fields are ignored.
    ///
    /// # Errors
    ///
    /// [`KeyError`] when the text is not such a document, holds no key, holds a key that
    /// is not a P-256 public key in PEM, an empty or over-long identifier, or an
    /// identifier twice; nothing is kept then.
    pub fn from_github_json(document: &str) -> Result<Self, KeyError> {
        let document: Document = serde_json::from_str(document)
            .map_err(|e| KeyError::Document(format!("line {}, column {}", e.line(), e.column())))?;
        if document.public_keys.is_empty() {
            return Err(KeyError::Empty);
        }
        let mut by_id = HashMap::with_capacity(document.public_keys.len());
        for entry in document.public_keys {
            let key = Key {
                verifying: parse_pem(&entry.key_identifier, &entry.key)?,
                current: entry.is_current,
            };
            if by_id.insert(entry.key_identifier.clone(), key).is_some() {
                return Err(KeyError::Duplicate(entry.key_identifier));
            }
        }
        Ok(Self::of(Keys { by_id }))
    }

    /// One key, from its PEM `PUBLIC KEY` (an ECDSA P-256 SubjectPublicKeyInfo), under
    /// the identifier reports name it by (the `Github-Public-Key-Identifier` header).
    ///
    /// # Errors
    ///
    /// [`KeyError::Key`] when `pem` is not a P-256 public key in PEM;
    /// [`KeyError::Identifier`] when the identifier is empty, longer than 256 bytes, or
    /// has a character a header cannot carry.
    pub fn from_pem(key_identifier: impl Into<String>, pem: &str) -> Result<Self, KeyError> {
        let key_identifier = key_identifier.into();
        let key = Key {
            verifying: parse_pem(&key_identifier, pem)?,
            current: true,
        };
        Ok(Self::of(Keys {
            by_id: HashMap::from([(key_identifier, key)]),
        }))
    }

    fn of(keys: Keys) -> Self {
        Self {
            keys: Arc::new(RwLock::new(Arc::new(keys))),
        }
    }

    /// Takes the keys `keys` holds now, for this handle and every clone of it: a report
    /// that arrives after this call is checked against them. A refresh that failed to
    /// parse leaves the old keys in place (the error comes before the call).
    ///
    /// ```
    /// # use tower_pat::leaks::KeySet;
    /// # const PEM: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9MJJHnMfn2+H4xL4YaPDA4RpJqUq\nkCmRCBnYERxZanmcpzQSXs1X/AljlKkbJ8qpVIW4clayyef9gWhFbNHWAA==\n-----END PUBLIC KEY-----\n";
    /// /// Stands in for the application's HTTP client; this time GitHub answered badly.
    /// fn fetch_github_document() -> String {
    ///     r#"{"message": "API rate limit exceeded"}"#.to_owned()
    /// }
    ///
    /// let keys = KeySet::from_pem("key-1", PEM)?;
    /// match KeySet::from_github_json(&fetch_github_document()) {
    ///     Ok(fresh) => keys.replace(fresh),
    ///     Err(e) => eprintln!("keeping the old keys: {e}"),
    /// }
    /// assert_eq!(keys.key_identifiers(), ["key-1"]);
    /// # Ok::<_, tower_pat::leaks::KeyError>(())
    /// ```
    pub fn replace(&self, keys: KeySet) {
        let fresh = keys.snapshot();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    }

    fn snapshot(&self) -> Arc<Keys> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.snapshot().by_id.len()
    }

    /// Whether there is no key (every report is refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a key has this identifier.
    pub fn contains(&self, key_identifier: &str) -> bool {
        self.snapshot().by_id.contains_key(key_identifier)
    }

    /// The identifiers, sorted.
    pub fn key_identifiers(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.snapshot().by_id.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The key named `key_identifier`, if there is one. Identifiers and keys are public:
    /// a map lookup, not a constant-time search.
    pub(crate) fn get(&self, key_identifier: &str) -> Option<VerifyingKey> {
        self.snapshot()
            .by_id
            .get(key_identifier)
            .map(|k| k.verifying)
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.snapshot();
        let mut ids: Vec<(&String, bool)> =
            keys.by_id.iter().map(|(id, k)| (id, k.current)).collect();
        ids.sort();
        let mut list = f.debug_list();
        for (id, current) in ids {
            list.entry(&format_args!(
                "{id}{}",
                if current { " (current)" } else { "" }
            ));
        }
        list.finish()
    }
}

fn parse_pem(key_identifier: &str, pem: &str) -> Result<VerifyingKey, KeyError> {
    let id_ok = !key_identifier.is_empty()
        && key_identifier.len() <= MAX_IDENTIFIER_LEN
        && key_identifier.bytes().all(|b| b.is_ascii_graphic());
    if !id_ok {
        return Err(KeyError::Identifier(key_identifier.to_owned()));
    }
    VerifyingKey::from_public_key_pem(pem.trim()).map_err(|_| KeyError::Key {
        key_identifier: key_identifier.to_owned(),
    })
}

/// A report's signature, decoded from its header: base64 of an ASN.1 DER ECDSA
/// signature. Signatures are public data.
pub(crate) fn decode_signature(header: &str) -> Option<Signature> {
    let der = Base64::decode_vec(header.trim()).ok()?;
    Signature::from_der(&der).ok()
}

/// Whether `signature` is `key`'s ECDSA P-256 / SHA-256 signature of `body`, the raw bytes
/// as they came. A signature with a high `s` (which Go's signer, GitHub's, makes half the
/// time) verifies like its low-`s` twin.
pub(crate) fn verifies(key: &VerifyingKey, body: &[u8], signature: &Signature) -> bool {
    let signature = signature.normalize_s().unwrap_or(*signature);
    key.verify(body, &signature).is_ok()
}

/// Why keys could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// Not a JSON document of the shape GitHub serves (where it went wrong).
    Document(String),
    /// The document lists no key.
    Empty,
    /// An identifier is empty, longer than 256 bytes, or has a character outside visible
    /// ASCII.
    Identifier(String),
    /// The key of this identifier is not an ECDSA P-256 public key in PEM.
    Key {
        /// The identifier of the key that could not be read.
        key_identifier: String,
    },
    /// Two keys have this identifier.
    Duplicate(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Document(at) => write!(
                f,
                "not GitHub's key document {{\"public_keys\": [{{\"key_identifier\", \"key\", \"is_current\"}}]}} ({at})"
            ),
            Self::Empty => f.write_str("the key document lists no key"),
            Self::Identifier(id) => write!(
                f,
                "invalid key identifier {id:?}: use 1 to {MAX_IDENTIFIER_LEN} visible ASCII characters"
            ),
            Self::Key { key_identifier } => write!(
                f,
                "key {key_identifier:?} is not an ECDSA P-256 public key in PEM"
            ),
            Self::Duplicate(id) => write!(f, "key identifier {id:?} is listed twice"),
        }
    }
}

impl Error for KeyError {}

#[cfg(test)]
mod tests {
    use p256::{
        ecdsa::{SigningKey, signature::Signer},
        pkcs8::{EncodePublicKey, LineEnding},
    };

    use super::*;

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    fn pem(key: &SigningKey) -> String {
        key.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    }

    #[test]
    fn a_document_like_githubs_parses() {
        let (a, b) = (signing_key(1), signing_key(2));
        let document = serde_json::json!({
            "public_keys": [
                {"key_identifier": "aa11", "key": pem(&a), "is_current": false},
                {"key_identifier": "bb22", "key": pem(&b), "is_current": true, "extra": 1},
            ]
        })
        .to_string();
        let keys = KeySet::from_github_json(&document).unwrap();
        assert_eq!(keys.key_identifiers(), ["aa11", "bb22"]);
        assert_eq!(keys.get("aa11"), Some(*a.verifying_key()));
        assert_eq!(keys.get("bb22"), Some(*b.verifying_key()));
        assert_eq!(keys.get("cc33"), None);
        assert_eq!(format!("{keys:?}"), r#"[aa11, bb22 (current)]"#);
    }

    #[test]
    fn bad_documents_are_refused_naming_why() {
        let good = pem(&signing_key(1));
        let cases = [
            ("not json".to_owned(), "line 1, column 2"),
            (r#"{"keys": []}"#.to_owned(), "public_keys"),
            (r#"{"public_keys": []}"#.to_owned(), "no key"),
            (
                serde_json::json!({"public_keys": [{"key_identifier": "x", "key": "nope"}]})
                    .to_string(),
                "key \"x\"",
            ),
            (
                serde_json::json!({"public_keys": [{"key_identifier": "", "key": good}]})
                    .to_string(),
                "invalid key identifier",
            ),
            (
                serde_json::json!({"public_keys": [
                    {"key_identifier": "x", "key": good},
                    {"key_identifier": "x", "key": good},
                ]})
                .to_string(),
                "twice",
            ),
        ];
        for (document, needle) in cases {
            let err = KeySet::from_github_json(&document).unwrap_err().to_string();
            assert!(err.contains(needle), "{document}: {err}");
        }
        // An Ed25519 key (RFC 8410's example) is a public key, not a P-256 one.
        let ed25519 = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
        assert_eq!(
            KeySet::from_pem("k", ed25519).unwrap_err(),
            KeyError::Key {
                key_identifier: "k".into()
            }
        );
        assert!(matches!(
            KeySet::from_pem("a b", &good),
            Err(KeyError::Identifier(_))
        ));
    }

    #[test]
    fn githubs_documented_sample_verifies() {
        // The sample request of GitHub's partner program documentation, as published.
        let keys = KeySet::from_pem(
            "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a",
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9MJJHnMfn2+H4xL4YaPDA4RpJqUq\nkCmRCBnYERxZanmcpzQSXs1X/AljlKkbJ8qpVIW4clayyef9gWhFbNHWAA==\n-----END PUBLIC KEY-----",
        )
        .unwrap();
        let key = keys
            .get("90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a")
            .unwrap();
        let body = br#"[{"token":"some_token","type":"some_type","url":"some_url"}]"#;
        let signature = decode_signature(
            "MEUCIQDKZokqnCjrRtw0tni+2Ltvl/uiMJ1EGumEsp1BsNr32AIgQY1YXD2nlj+XNfGK4rBfkMJ1JDOQcYXxa2sY8FNkrKc=",
        )
        .unwrap();
        assert!(verifies(&key, body, &signature));
        assert!(!verifies(&key, &body[1..], &signature));
    }

    #[test]
    fn high_s_signatures_verify_and_others_do_not() {
        let key = signing_key(3);
        let body = b"[]";
        let low: Signature = key.sign(body);
        assert!(low.normalize_s().is_none(), "RustCrypto signs with a low s");
        // The same signature with s replaced by n - s: what Go's signer may send.
        let (r, s) = low.split_scalars();
        let high = Signature::from_scalars(r, -*s).unwrap();
        assert!(high.normalize_s().is_some());
        let vk = *key.verifying_key();
        assert!(verifies(&vk, body, &low));
        assert!(verifies(&vk, body, &high));
        assert!(!verifies(&vk, b"[ ]", &high));
        // As it comes in a header.
        let header = Base64::encode_string(high.to_der().as_bytes());
        let decoded = decode_signature(&header).unwrap();
        assert!(verifies(&vk, body, &decoded));
        assert!(!verifies(signing_key(4).verifying_key(), body, &low));
    }

    #[test]
    fn signature_headers_decode_or_not() {
        let sig: Signature = signing_key(5).sign(b"x");
        let header = Base64::encode_string(sig.to_der().as_bytes());
        assert_eq!(decode_signature(&header), Some(sig));
        assert_eq!(decode_signature(&format!(" {header} ")), Some(sig));
        for bad in ["", "!!!", "AAAA", &Base64::encode_string(&sig.to_bytes())] {
            assert_eq!(decode_signature(bad), None, "{bad}");
        }
    }
}
