//! Hashers for the maps the request path probes (`benches/stack.rs`'s floor copies
//! `PrefixHasher`: change both together): keys that are uniform random bytes already
//! (token hashes, SHA-256 digests), and keys fixed when the map is built (the scope map's
//! paths).

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

/// Builds [`WordHasher`]s.
pub(crate) type WordState = BuildHasherDefault<WordHasher>;

/// A fast, unkeyed hash for maps whose keys are fixed when they are built (the scope
/// map's paths): eight bytes at a time, one multiplication each. A request's path is only
/// ever looked up, never inserted, so however a client picks it, it meets the buckets of
/// the configured paths as they are; no bucket grows.
#[derive(Default)]
pub(crate) struct WordHasher(u64);

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word) ^ (bytes.len() as u64))
            .wrapping_mul(K);
    }

    fn write_u8(&mut self, byte: u8) {
        // `str`'s `Hash` ends with a 0xff byte: fold it in cheaply.
        self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn word_hashes_tell_paths_apart() {
        let state = WordState::default();
        let paths = [
            "/orders.v1.Orders/ListOrders",
            "/orders.v1.Orders/ListOrderz",
            "/orders.v1.Orders/",
            "/orders.v1.Orders",
            "/",
            "",
            "/a",
            "/a\0",
        ];
        let hashes: std::collections::HashSet<u64> =
            paths.iter().map(|p| state.hash_one(p)).collect();
        assert_eq!(hashes.len(), paths.len());
    }
}
