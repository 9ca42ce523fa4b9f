//! A hasher for keys that are uniform random bytes already: token hashes (SHA-256
//! digests) and token ids (128 random bits).

use std::hash::{BuildHasherDefault, Hasher};

/// Builds [`PrefixHasher`]s.
pub(crate) type PrefixState = BuildHasherDefault<PrefixHasher>;

/// Takes the first eight bytes of each write, without hashing again: the keys are
/// uniform already. An attacker can grind presented tokens whose digests share a bucket,
/// but lookups insert nothing, and the stored keys (digests of random tokens, random ids)
/// are out of their reach, so no bucket grows.
#[derive(Default)]
pub(crate) struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
    }
}
