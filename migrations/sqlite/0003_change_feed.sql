-- tower-pat: the change feed, SQLite dialect (after 0002).
--
-- Placeholders as in 0001: {table} (and {user_id_type}, unused here). `SqliteStore::migrate`
-- runs this file after 0002, in the same transaction; `SqliteStore::install_change_feed`
-- runs it alone, for a table made some other way. Every statement is `IF NOT EXISTS`:
-- running it again changes nothing.
--
-- SQLite has no notifications. Whoever changes a token row (this crate, an admin's
-- `UPDATE` in the sqlite3 shell, another program), the triggers append the row's id to
-- "{table}_changes"; `SqliteStore::follow_changes` reads what is new there on every
-- instance, every 250 ms by default, evicts those ids from its cache, and deletes rows
-- older than a minute as it goes. Recorded:
--   - every DELETE;
--   - every UPDATE that changes what a cached record is checked for: `revoked`,
--     `expires_at`, `rotated_to`, `scopes`, `user_id`, `token_hash`, `client_id` or `id`.
--     The bookkeeping the store writes on its own (`last_used_at`, `expiry_notice`,
--     `updated_at` alone) records nothing.
-- A change is recorded in the writer's own transaction: it is read if, and only if, it
-- commits. The triggers run in the writer's SQLite, so they use nothing newer than
-- SQLite 3.8.3 (2014).
--
--   id          in commit order (writes to one SQLite file take turns), never reused
--   token_id    the changed token's id (its value before the change)
--   changed_at  when, in Unix seconds (the writer's clock): what pruning goes by

CREATE TABLE IF NOT EXISTS "{table}_changes" (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id   TEXT NOT NULL,
    changed_at INTEGER NOT NULL
);

CREATE TRIGGER IF NOT EXISTS "{table}_feed_update" AFTER UPDATE ON "{table}"
    WHEN OLD.id IS NOT NEW.id
      OR OLD.revoked IS NOT NEW.revoked
      OR OLD.expires_at IS NOT NEW.expires_at
      OR OLD.rotated_to IS NOT NEW.rotated_to
      OR OLD.scopes IS NOT NEW.scopes
      OR OLD.user_id IS NOT NEW.user_id
      OR OLD.token_hash IS NOT NEW.token_hash
      OR OLD.client_id IS NOT NEW.client_id
BEGIN
    INSERT INTO "{table}_changes" (token_id, changed_at)
        VALUES (OLD.id, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER IF NOT EXISTS "{table}_feed_delete" AFTER DELETE ON "{table}"
BEGIN
    INSERT INTO "{table}_changes" (token_id, changed_at)
        VALUES (OLD.id, CAST(strftime('%s', 'now') AS INTEGER));
END;
