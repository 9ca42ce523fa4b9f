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
//! - **SQLite** (`migrations/sqlite/0003_change_feed.sql`), which has no notifications:
//!   row-level triggers append the changed ids to `<table>_changes` (an autoincrement id,
//!   the token id, when); every instance reads the rows after the last one it read, every
//!   interval, evicts them, and deletes rows older than a minute as it goes
//!   (`store/poller.rs`, with the statements of [`ChangeTable`]).
//! - **MySQL and MariaDB** (`migrations/mysql/0003_change_feed.sql`): the same, with
//!   `AUTO_INCREMENT` ids; as those are taken at the insert, not at the commit, the poller
//!   reads the last ten seconds' ids again (a change whose transaction stays open longer
//!   than that after it ran may be missed, and then only the TTL bounds it).
//!
//! A change is every `DELETE`, and every `UPDATE` of what a cached record is checked for:
//! `revoked`, `expires_at`, `rotated_to`, `scopes`, `user_id`, `token_hash`, `client_id`
//! or the id itself. What the store writes on its own as tokens are used or noticed
//! (`last_used_at`, `expiry_notice`, `updated_at` alone) is no change.

#[cfg(all(feature = "cache", any(feature = "sqlite", feature = "mysql")))]
use sqlx::SqlStr;

#[cfg(all(feature = "cache", any(feature = "sqlite", feature = "mysql")))]
use super::sql::statement;

/// The PostgreSQL change feed, with `{table}` to fill in: a function and two triggers.
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: &str = include_str!("../../migrations/postgres/0003_change_feed.sql");

/// The MySQL / MariaDB change feed, with `{table}` to fill in: the change table and two
/// triggers, one statement each (no `IF NOT EXISTS` on MySQL's triggers: the store runs a
/// `CREATE TRIGGER` only when the table has no trigger of that name).
#[cfg(feature = "mysql")]
pub(crate) const MYSQL: &str = include_str!("../../migrations/mysql/0003_change_feed.sql");

/// The SQLite change feed, with `{table}` to fill in: the change table and two triggers.
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: &str = include_str!("../../migrations/sqlite/0003_change_feed.sql");

/// The change table of a token table: `<table>_changes`.
#[cfg(all(feature = "cache", any(feature = "sqlite", feature = "mysql")))]
pub(crate) fn change_table(table: &str) -> String {
    format!("{table}_changes")
}

/// What a poller runs on a change table, built once when it starts.
#[cfg(all(feature = "cache", any(feature = "sqlite", feature = "mysql")))]
#[derive(Debug)]
pub(crate) struct ChangeTable {
    /// `<table>_changes`, for messages.
    pub(crate) name: String,
    /// The last row's id, 0 when there is none.
    pub(crate) latest: SqlStr,
    /// `id, token_id` of the rows after an id (the first parameter), by id, at most a
    /// number of them (the second).
    pub(crate) read: SqlStr,
    /// Deletes the rows older than a number of seconds (the one parameter), by the
    /// database's clock.
    pub(crate) prune: SqlStr,
}

#[cfg(all(feature = "cache", any(feature = "sqlite", feature = "mysql")))]
impl ChangeTable {
    /// The statements for the change table of `table`, which has passed the store's
    /// table name check (it holds no quote).
    #[cfg(feature = "sqlite")]
    pub(crate) fn sqlite(table: &str) -> Self {
        let name = change_table(table);
        Self {
            latest: statement(format!(r#"SELECT COALESCE(MAX(id), 0) FROM "{name}""#)),
            read: statement(format!(
                r#"SELECT id, token_id FROM "{name}" WHERE id > ?1 ORDER BY id LIMIT ?2"#
            )),
            prune: statement(format!(
                r#"DELETE FROM "{name}" WHERE changed_at < CAST(strftime('%s', 'now') AS INTEGER) - ?1"#
            )),
            name,
        }
    }

    /// The statements for the change table of `table`, which has passed the store's
    /// table name check (it holds no quote).
    #[cfg(feature = "mysql")]
    pub(crate) fn mysql(table: &str) -> Self {
        let name = change_table(table);
        Self {
            latest: statement(format!(
                "SELECT CAST(COALESCE(MAX(id), 0) AS SIGNED) FROM `{name}`"
            )),
            read: statement(format!(
                "SELECT id, CAST(token_id AS CHAR) FROM `{name}` WHERE id > ? ORDER BY id LIMIT ?"
            )),
            prune: statement(format!(
                "DELETE FROM `{name}` WHERE changed_at < UTC_TIMESTAMP(6) - INTERVAL ? SECOND"
            )),
            name,
        }
    }
}

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
        const { assert!((32 + 1) * IDS_PER_NOTIFICATION < 8000) };
    }
}
