//! Records the benches fill their stores with: tokens whose plaintext is never presented,
//! so that a lookup of the presented one searches among many.

#![allow(dead_code)]

use time::OffsetDateTime;
use tower_pat::{TokenRecord, record::TokenId, scope::Scopes, token::TokenHash};

/// `n` active records of 1 000 users, each with the scopes `scopes`.
pub fn records(n: usize, scopes: &[&str]) -> Vec<TokenRecord<i64>> {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let scopes = Scopes::try_from_iter(scopes).unwrap();
    (0..n)
        .map(|i| {
            let id = TokenId::random().unwrap();
            TokenRecord::new(
                id,
                (i % 1000) as i64,
                TokenHash::of(&id.to_string()),
                now,
                now + time::Duration::days(365),
            )
            .with_name(format!("token {i}"))
            .with_scopes(scopes.clone())
        })
        .collect()
}
