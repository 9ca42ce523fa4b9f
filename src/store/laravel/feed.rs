//! The change feed of a Laravel application's token tables: what makes a revocation written
//! by Laravel itself (a deleted Sanctum row, `revoked = 1` on a Passport row, a revoked
//! client) reach this crate's caches, as the feed of the crate's own tables does
//! (`store/feed.rs`).
//!
//! - **PostgreSQL**: statement-level triggers on the three tables send the changed tokens'
//!   ids (as [`TokenId`]s: the Sanctum row's number, or the hash of the Passport `jti`,
//!   computed in SQL) with `pg_notify` on [`LARAVEL_CHANNEL`], at most 200 per notification;
//!   the revocation listener evicts them.
//! - **MySQL/MariaDB and SQLite**: row-level triggers append `s:<row id>` (Sanctum) or
//!   `p:<jti>` (Passport) to [`LARAVEL_CHANGES`], which the change poller reads every 250 ms.
//!
//! A change is every `DELETE`; every `UPDATE` of what a token is judged by (Sanctum:
//! `token`, `abilities`, `expires_at`, the owner; Passport: `revoked`, `scopes`, `user_id`,
//! `client_id`); and any `UPDATE` or `DELETE` of a Passport client, which announces all its
//! tokens. Laravel's own bookkeeping (`last_used_at`, `updated_at`) is none.

#[cfg(all(feature = "cache", any(feature = "mysql", feature = "sqlite")))]
use std::time::Duration;

use super::{Db, LaravelPool, LaravelStore, on_pool, sql};
#[cfg(feature = "cache")]
use crate::store::cache::Evictor;
#[cfg(all(feature = "cache", any(feature = "mysql", feature = "sqlite")))]
use crate::{
    record::TokenId,
    store::{feed::ChangeTable, poller::PoolChanges},
};
use crate::{record::UserId, store::StoreError};

/// The PostgreSQL channel the triggers on a Laravel application's tables notify.
pub const LARAVEL_CHANNEL: &str = "tower_pat:laravel";

/// The change table the triggers on a Laravel application's tables append to, on MySQL,
/// MariaDB and SQLite.
pub const LARAVEL_CHANGES: &str = "tower_pat_laravel_changes";

/// What a Sanctum row's id becomes in PostgreSQL: the hex of [`TokenId::from_integer`].
const PG_SANCTUM_ID: &str = "lpad(to_hex(o.id), 32, '0')";

/// What a Passport row's id becomes in PostgreSQL: the hex of [`TokenId::from_text`].
const PG_PASSPORT_ID: &str =
    "encode(substring(sha256(convert_to('tower-pat id:' || o.id, 'UTF8')) from 1 for 16), 'hex')";

/// The kind of table a trigger watches.
#[derive(Clone, Copy)]
enum Watched {
    Sanctum,
    Passport,
    Clients,
}

impl<U> LaravelStore<U> {
    /// The columns of the Sanctum table whose change is a change of the token.
    fn sanctum_columns(&self) -> Vec<&'static str> {
        let mut columns = vec!["token", "abilities", "tokenable_type", "tokenable_id"];
        if self.sanctum_expires_column {
            columns.push("expires_at");
        }
        columns
    }

    /// The SQL that installs the change feed on the application's tables (what
    /// [`install_change_feed`](Self::install_change_feed) runs), one statement per item,
    /// to read or to run by hand. Passport's tables are left out when the install has none.
    pub fn change_feed_sql(&self) -> Vec<String> {
        let mut watched = vec![(Watched::Sanctum, self.sanctum_table.as_str())];
        if self.passport.is_some() {
            watched.push((Watched::Passport, self.tokens_table.as_str()));
            watched.push((Watched::Clients, self.clients_table.as_str()));
        }
        if self.pool.db() == Db::Postgres {
            watched
                .into_iter()
                .flat_map(|(kind, table)| self.postgres_feed(kind, table))
                .collect()
        } else {
            let mysql = self.pool.db() == Db::MySql;
            let mut statements = vec![if mysql {
                format!(
                    "CREATE TABLE IF NOT EXISTS {LARAVEL_CHANGES} (id BIGINT NOT NULL AUTO_INCREMENT, \
                     token_id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, \
                     changed_at DATETIME(6) NOT NULL, PRIMARY KEY (id), \
                     KEY changed_at_idx (changed_at)) ENGINE = InnoDB"
                )
            } else {
                format!(
                    "CREATE TABLE IF NOT EXISTS {LARAVEL_CHANGES} (id INTEGER PRIMARY KEY \
                     AUTOINCREMENT, token_id TEXT NOT NULL, changed_at INTEGER NOT NULL)"
                )
            }];
            for (kind, table) in watched {
                statements.extend(self.row_feed(kind, table, mysql));
            }
            statements
        }
    }

    /// PostgreSQL: a function and two statement-level triggers for `table`.
    fn postgres_feed(&self, kind: Watched, table: &str) -> Vec<String> {
        let (name, id, changed) = match kind {
            Watched::Sanctum => ("sanctum", PG_SANCTUM_ID, self.sanctum_columns()),
            Watched::Passport => (
                "passport",
                PG_PASSPORT_ID,
                vec!["revoked", "scopes", "user_id", "client_id"],
            ),
            Watched::Clients => ("clients", PG_PASSPORT_ID, Vec::new()),
        };
        let function = format!("tower_pat_laravel_{name}_feed");
        // The rows whose tokens changed, as `o` (ids before the change).
        let (deleted, updated) = match kind {
            Watched::Clients => {
                let tokens = format!(
                    "SELECT o.id FROM {} o WHERE CAST(o.client_id AS TEXT) IN \
                     (SELECT CAST(c.id AS TEXT) FROM old_rows c)",
                    self.tokens_table
                );
                (tokens.clone(), tokens)
            }
            _ => {
                let differs = changed
                    .iter()
                    .map(|c| format!("n.{c} IS DISTINCT FROM o.{c}"))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                (
                    "SELECT o.id FROM old_rows o".to_owned(),
                    format!(
                        "SELECT o.id FROM old_rows o LEFT JOIN new_rows n ON n.id = o.id \
                         WHERE n.id IS NULL OR {differs}"
                    ),
                )
            }
        };
        let notify = |rows: &str| {
            format!(
                "FOR batch IN SELECT string_agg(x.token_id, ' ') FROM (SELECT {id} AS token_id, \
                 (row_number() OVER () - 1) / 200 AS part FROM ({rows}) o) x GROUP BY x.part \
                 LOOP PERFORM pg_notify('{LARAVEL_CHANNEL}', batch); END LOOP;"
            )
        };
        vec![
            format!(
                "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $feed$ \
                 DECLARE batch text; BEGIN \
                 IF TG_OP = 'DELETE' THEN {} ELSE {} END IF; \
                 RETURN NULL; END $feed$",
                notify(&deleted),
                notify(&updated)
            ),
            format!("DROP TRIGGER IF EXISTS tower_pat_feed_delete ON {table}"),
            format!(
                "CREATE TRIGGER tower_pat_feed_delete AFTER DELETE ON {table} \
                 REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            ),
            format!("DROP TRIGGER IF EXISTS tower_pat_feed_update ON {table}"),
            format!(
                "CREATE TRIGGER tower_pat_feed_update AFTER UPDATE ON {table} \
                 REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows \
                 FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            ),
        ]
    }

    /// MySQL and SQLite: two row-level triggers on `table` appending to the change table.
    fn row_feed(&self, kind: Watched, table: &str, mysql: bool) -> Vec<String> {
        let now = if mysql {
            "UTC_TIMESTAMP(6)"
        } else {
            "CAST(strftime('%s', 'now') AS INTEGER)"
        };
        let tagged = |tag: &str, id: &str| {
            if mysql {
                format!("CONCAT('{tag}:', {id})")
            } else {
                format!("'{tag}:' || {id}")
            }
        };
        let changed = match kind {
            Watched::Sanctum => self.sanctum_columns(),
            Watched::Passport => vec!["revoked", "scopes", "user_id", "client_id"],
            Watched::Clients => Vec::new(),
        };
        // What one changed row appends, for each trigger.
        let rows = match kind {
            Watched::Clients => format!(
                "SELECT {}, {now} FROM {} WHERE client_id = OLD.id",
                tagged("p", "id"),
                self.tokens_table
            ),
            Watched::Sanctum => format!("SELECT {}, {now}", tagged("s", "OLD.id")),
            Watched::Passport => format!("SELECT {}, {now}", tagged("p", "OLD.id")),
        };
        let same = |c: &str| {
            if mysql {
                format!("OLD.{c} <=> NEW.{c}")
            } else {
                format!("OLD.{c} IS NEW.{c}")
            }
        };
        let unchanged = std::iter::once("id")
            .chain(changed.iter().copied())
            .map(same)
            .collect::<Vec<_>>()
            .join(" AND ");
        let insert = format!("INSERT INTO {LARAVEL_CHANGES} (token_id, changed_at) ");
        let (on_update, on_delete) = match kind {
            // Any change of a client announces its tokens.
            Watched::Clients => (format!("{insert}{rows}"), format!("{insert}{rows}")),
            _ if mysql => (
                format!("{insert}{rows} FROM DUAL WHERE NOT ({unchanged})"),
                format!("{insert}{rows}"),
            ),
            _ => (
                format!("{insert}{rows} WHERE NOT ({unchanged})"),
                format!("{insert}{rows}"),
            ),
        };
        let trigger = |event: &str, body: &str| {
            let name = format!("{table}_tower_pat_{}", event.to_ascii_lowercase());
            let create = if mysql {
                format!("CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW {body}")
            } else {
                format!("CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN {body}; END")
            };
            [format!("DROP TRIGGER IF EXISTS {name}"), create]
        };
        let mut statements = trigger("UPDATE", &on_update).to_vec();
        statements.extend(trigger("DELETE", &on_delete));
        statements
    }

    /// Installs the change feed on the application's tables ([`change_feed_sql`]): run it
    /// once (it replaces what it installed before), as a role that may create triggers
    /// (and, on MySQL/MariaDB, the change table; with binary logging on, MySQL wants
    /// `log_bin_trust_function_creators` or the `SUPER`/`TRIGGER` privilege).
    ///
    /// [`change_feed_sql`]: Self::change_feed_sql
    ///
    /// # Errors
    ///
    /// [`StoreError`] naming the statement that failed.
    pub async fn install_change_feed(&self) -> Result<(), StoreError>
    where
        U: UserId,
    {
        for statement in self.change_feed_sql() {
            let query = sql(statement.clone());
            on_pool!(&self.pool, |p| sqlx::query(query)
                .execute(p)
                .await
                .map(|_| ()))
            .map_err(|e| {
                StoreError::with_kind(
                    crate::store::StoreErrorKind::Backend,
                    format!("installing the Laravel change feed: {statement}"),
                )
                .with_source(e)
            })?;
        }
        Ok(())
    }
}

/// What [`LaravelStore::follow_changes`] started: it runs as long as the cache does.
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
#[derive(Debug)]
#[non_exhaustive]
pub enum ChangeFollower {
    /// PostgreSQL: the revocation listener on [`LARAVEL_CHANNEL`].
    #[cfg(feature = "postgres")]
    Listening(crate::store::postgres::RevocationListener),
    /// MySQL/MariaDB and SQLite: the poller of [`LARAVEL_CHANGES`].
    #[cfg(any(feature = "mysql", feature = "sqlite"))]
    Polling(crate::store::poller::ChangePoller),
}

#[cfg(feature = "cache")]
impl ChangeFollower {
    /// Stops following: the cache is then paused for good (nothing vouches for it).
    pub fn stop(&self) {
        match self {
            #[cfg(feature = "postgres")]
            Self::Listening(listener) => listener.stop(),
            #[cfg(any(feature = "mysql", feature = "sqlite"))]
            Self::Polling(poller) => poller.stop(),
        }
    }
}

/// How long after taking its `AUTO_INCREMENT` id a MySQL change may commit and still be
/// read (the poller reads that stretch again): as for the crate's own tables.
#[cfg(all(feature = "cache", feature = "mysql"))]
const MYSQL_LOOKBACK: Duration = Duration::from_secs(10);

/// The [`TokenId`] a change row names: `s:<row id>` or `p:<jti>`; anything else is passed
/// on as is, and the poller, which cannot read it, clears the cache.
#[cfg(all(feature = "cache", any(feature = "mysql", feature = "sqlite")))]
fn token_id(tagged: &str) -> String {
    match tagged.split_once(':') {
        Some(("s", id)) => id.trim().parse::<u64>().map_or_else(
            |_| tagged.to_owned(),
            |n| TokenId::from_integer(n).to_string(),
        ),
        Some(("p", jti)) => TokenId::from_text(jti).to_string(),
        _ => tagged.to_owned(),
    }
}

#[cfg(feature = "cache")]
impl<U: UserId> LaravelStore<U> {
    /// Evicts from a [`CachedStore`](crate::store::CachedStore) in front of this store
    /// every token that Laravel (or anyone) revokes, deletes or changes, as the tables'
    /// change feed ([`install_change_feed`](Self::install_change_feed)) announces it: on
    /// PostgreSQL by listening to [`LARAVEL_CHANNEL`] (typically within milliseconds; the
    /// cache paused whenever the listener is not provably connected), on MySQL/MariaDB and
    /// SQLite by reading [`LARAVEL_CHANGES`] every 250 ms (the propagation bound; the cache
    /// paused while it cannot read).
    ///
    /// ```no_run
    /// # async fn run(pool: sqlx::MySqlPool) -> Result<(), tower_pat::store::StoreError> {
    /// use tower_pat::store::{CachedStore, laravel::LaravelStore};
    ///
    /// let laravel = LaravelStore::<i64>::connect(pool).await?;
    /// laravel.install_change_feed().await?; // once, as a role that may create triggers
    /// let store = CachedStore::new(laravel.clone());
    /// laravel.follow_changes(store.evictor()).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the first connection, or the first read of the change table,
    /// fails (the feed is not installed, say).
    pub async fn follow_changes(&self, evictor: Evictor<U>) -> Result<ChangeFollower, StoreError> {
        match &self.pool {
            #[cfg(feature = "postgres")]
            LaravelPool::Postgres(pool) => crate::store::listener::listen_on(
                sqlx::postgres::PgConnectOptions::clone(&pool.connect_options()),
                LARAVEL_CHANNEL.to_owned(),
                evictor,
                crate::store::postgres::ListenOptions::default(),
            )
            .await
            .map(ChangeFollower::Listening),
            #[cfg(feature = "mysql")]
            LaravelPool::MySql(pool) => {
                let changes = PoolChanges {
                    pool: pool.clone(),
                    sql: ChangeTable::mysql("tower_pat_laravel"),
                    lookback: MYSQL_LOOKBACK,
                };
                follow_rows(changes, evictor).await
            }
            #[cfg(feature = "sqlite")]
            LaravelPool::Sqlite(pool) => {
                let changes = PoolChanges {
                    pool: pool.clone(),
                    sql: ChangeTable::sqlite("tower_pat_laravel"),
                    lookback: Duration::ZERO,
                };
                follow_rows(changes, evictor).await
            }
        }
    }
}

/// Polls the change table `changes`, its `s:`/`p:` rows read as [`TokenId`]s.
#[cfg(all(feature = "cache", any(feature = "mysql", feature = "sqlite")))]
async fn follow_rows<U: UserId, S: crate::store::poller::ChangeSource>(
    changes: S,
    evictor: Evictor<U>,
) -> Result<ChangeFollower, StoreError> {
    let translated = crate::store::poller::Translated {
        inner: changes,
        token_id,
    };
    crate::store::poller::start(translated, evictor, Default::default())
        .await
        .map(ChangeFollower::Polling)
}

#[cfg(all(test, feature = "cache", any(feature = "mysql", feature = "sqlite")))]
mod tests {
    use super::*;

    #[test]
    fn change_rows_name_the_token_ids_the_store_gives() {
        assert_eq!(token_id("s:7"), TokenId::from_integer(7).to_string());
        let jti = "2b1f8e653926184edffbb4afab16c786";
        assert_eq!(
            token_id(&format!("p:{jti}")),
            TokenId::from_text(jti).to_string()
        );
        assert_eq!(
            token_id("s:x"),
            "s:x",
            "unreadable: passed on, for the poller to judge"
        );
        assert_eq!(token_id("junk"), "junk");
    }
}
