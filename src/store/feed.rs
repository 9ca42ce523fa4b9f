//! The change feed: how every writer's change to a token table reaches the caches of every
//! instance, whoever the writer is (this crate, an admin's plain SQL, another program).
//!
//! The database itself records the changes, with triggers on the table, so nothing depends
//! on the writer's cooperation:
//!
//! - **PostgreSQL** (`migrations/postgres/0003_change_feed.sql`): statement-level triggers
//!   with transition tables send the changed ids with `pg_notify` on the store's channel,
//!   at most 200 per notification (32 hex digits and a space each: 6,600 bytes, under
//!   PostgreSQL's 8,000-byte payload limit); the revocation listener (`store/listener.rs`)
//!   evicts them.
//!
//! A change is every `DELETE`, and every `UPDATE` of what a cached record is checked for:
//! `revoked`, `expires_at`, `rotated_to`, `scopes`, `user_id`, `token_hash`, `client_id`
//! or the id itself. What the store writes on its own as tokens are used or noticed
//! (`last_used_at`, `expiry_notice`, `updated_at` alone) is no change.

/// The PostgreSQL change feed, with `{table}` to fill in: a function and two triggers.
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: &str = include_str!("../../migrations/postgres/0003_change_feed.sql");

#[cfg(test)]
mod tests {
    #[cfg(feature = "postgres")]
    #[test]
    fn the_postgres_feed_batches_as_documented() {
        use super::*;
        const IDS_PER_NOTIFICATION: usize = 200;
        let batch = format!("(row_number() OVER () - 1) / {IDS_PER_NOTIFICATION} AS batch");
        assert_eq!(POSTGRES.matches(&batch).count(), 2, "{POSTGRES}");
        assert!(POSTGRES.contains("'tower_pat:{table}'"));
        assert!((32 + 1) * IDS_PER_NOTIFICATION < 8000);
    }
}
