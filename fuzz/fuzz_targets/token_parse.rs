//! `TokenFormat::parse` / `parse_bytes` / `check` on arbitrary input: never panics, and accepts
//! exactly the strings the token grammar (prefix, 33 base62 characters, checksum) describes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_pat::token::TokenFormat;
use tower_pat_fuzz::{
    ALPHABET, hash_is_of, is_valid_prefix, is_valid_token, sha256, token_from_seed,
};

/// Compares the crate with the oracle on one string.
fn judge(format: &TokenFormat, s: &str) {
    let want = is_valid_token(format.prefix(), s);
    let checked = format.check(s);
    let parsed = format.parse(s);
    assert_eq!(checked.is_ok(), want, "check disagrees with the grammar");
    assert_eq!(parsed.is_ok(), want, "parse disagrees with the grammar");
    match (checked, parsed) {
        (Ok(()), Ok(hash)) => assert!(hash_is_of(&hash, s), "parse must hash the whole token"),
        (Err(a), Err(b)) => assert_eq!(a, b, "check and parse give different reasons"),
        _ => unreachable!(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let default = TokenFormat::default();
    match mode % 4 {
        // Arbitrary bytes, as a header carries them (`parse_bytes`), and as text: UTF-8
        // when they are, lossily decoded otherwise.
        0 => {
            let want = std::str::from_utf8(rest).is_ok_and(|s| is_valid_token(default.prefix(), s));
            match default.parse_bytes(rest) {
                Ok(hash) => {
                    assert!(want, "parse_bytes accepted {rest:?}");
                    assert_eq!(hash.as_bytes(), &sha256(rest));
                }
                Err(e) => {
                    assert!(!want, "parse_bytes refused a valid token");
                    if let Ok(s) = std::str::from_utf8(rest) {
                        assert_eq!(default.parse(s), Err(e), "parse and parse_bytes differ");
                    }
                }
            }
            match std::str::from_utf8(rest) {
                Ok(s) => judge(&default, s),
                Err(_) => judge(&default, &String::from_utf8_lossy(rest)),
            }
        }
        // A well-formed token built from the input: must parse.
        1 => {
            let token = token_from_seed("pat_", rest);
            judge(&default, &token);
            assert!(default.parse(&token).is_ok());
        }
        // A well-formed token with one byte replaced: must fail, unless nothing changed.
        2 => {
            let [pos, byte, seed @ ..] = rest else {
                return;
            };
            let token = token_from_seed("pat_", seed);
            let mut bytes = token.clone().into_bytes();
            let at = usize::from(*pos) % bytes.len();
            bytes[at] = *byte;
            let mutated = String::from_utf8_lossy(&bytes).into_owned();
            judge(&default, &mutated);
            if mutated != token {
                assert!(
                    default.parse(&mutated).is_err(),
                    "a one-character change kept the checksum valid"
                );
            }
            // Every alphabet character at `at` other than the original fails too.
            let original = token.as_bytes()[at];
            let c = ALPHABET[usize::from(*byte) % 62];
            if c != original {
                let mut bytes = token.into_bytes();
                bytes[at] = c;
                let s = String::from_utf8(bytes).expect("ASCII");
                assert!(default.parse(&s).is_err(), "single substitution accepted");
            }
        }
        // A custom prefix: `TokenFormat::new` accepts exactly the prefix grammar, and the
        // format then accepts exactly its own tokens.
        _ => {
            let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let prefix = String::from_utf8_lossy(&rest[..split]).into_owned();
            let tail = rest.get(split + 1..).unwrap_or(&[]);
            let made = TokenFormat::new(prefix.clone());
            assert_eq!(made.is_ok(), is_valid_prefix(&prefix), "prefix {prefix:?}");
            if let Ok(format) = made {
                assert_eq!(format.prefix(), prefix);
                assert_eq!(format.token_len(), prefix.len() + 39);
                let token = token_from_seed(&prefix, tail);
                judge(&format, &token);
                judge(&default, &token);
                judge(&format, &String::from_utf8_lossy(tail));
            }
        }
    }
});
