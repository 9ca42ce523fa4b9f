-- tower-pat: the change feed, MySQL / MariaDB dialect (after 0002).
--
-- Placeholders as in 0001: {table} (and {user_id_type}, unused here). `MySqlStore::migrate`
-- runs this file after 0002, under the same named lock; `MySqlStore::install_change_feed`
-- runs it alone, for a table made some other way. MySQL before 8.0.29 has no
-- `CREATE TRIGGER IF NOT EXISTS`: both run each `CREATE TRIGGER` only when the table has no
-- trigger of that name yet (`information_schema`), so running them again changes nothing.
-- A migration tool of your own must run each statement once. Creating triggers takes the
-- TRIGGER privilege (and, with binary logging on, SUPER or
-- `log_bin_trust_function_creators`).
--
-- MySQL has no notifications. Whoever changes a token row (this crate, an admin's
-- `UPDATE`, another program), the triggers append the row's id to `{table}_changes` in
-- the writer's transaction; `MySqlStore::follow_changes` reads what is new there on every
-- instance, every 250 ms by default, evicts those ids from its cache, and deletes rows
-- older than a minute as it goes. Recorded:
--   - every DELETE;
--   - every UPDATE that changes what a cached record is checked for: `revoked`,
--     `expires_at`, `rotated_to`, `scopes`, `user_id`, `token_hash`, `client_id` or `id`.
--     The bookkeeping the store writes on its own (`last_used_at`, `expiry_notice`,
--     `updated_at` alone) records nothing.
-- A `TRUNCATE` fires no trigger (as in every database): nothing records it.
--
--   id          AUTO_INCREMENT: taken when the change is made, so a transaction that
--               commits late shows an id below ones already read; the poller reads again
--               the last 10 seconds' worth of ids for this
--   token_id    the changed token's id (its value before the change)
--   changed_at  when, UTC: what pruning goes by

CREATE TABLE IF NOT EXISTS `{table}_changes` (
    id         BIGINT NOT NULL AUTO_INCREMENT,
    token_id   VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    changed_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    KEY changed_at_idx (changed_at)
) ENGINE = InnoDB;

CREATE TRIGGER `{table}_feed_update` AFTER UPDATE ON `{table}` FOR EACH ROW
    INSERT INTO `{table}_changes` (token_id, changed_at)
    SELECT OLD.id, UTC_TIMESTAMP(6) FROM DUAL
    WHERE NOT (OLD.id <=> NEW.id
               AND OLD.revoked <=> NEW.revoked
               AND OLD.expires_at <=> NEW.expires_at
               AND OLD.rotated_to <=> NEW.rotated_to
               AND OLD.scopes <=> NEW.scopes
               AND OLD.user_id <=> NEW.user_id
               AND OLD.token_hash <=> NEW.token_hash
               AND OLD.client_id <=> NEW.client_id);

CREATE TRIGGER `{table}_feed_delete` AFTER DELETE ON `{table}` FOR EACH ROW
    INSERT INTO `{table}_changes` (token_id, changed_at) VALUES (OLD.id, UTC_TIMESTAMP(6));
