-- tower-pat: the token lifecycle columns, MySQL dialect (after 0001).
--
-- Placeholders as in 0001: {table} and {user_id_type}. `MySqlStore::migrate` runs this
-- file after 0001, under the same named lock. MySQL has neither
-- `ADD COLUMN IF NOT EXISTS` nor `CREATE INDEX IF NOT EXISTS`: `migrate` runs each
-- `ALTER TABLE … ADD COLUMN <name>` below only when the table has no column of that name
-- yet, and the `CREATE INDEX` only when the table has no index of that name
-- (`information_schema`), so a table made by 0001, rows and all, is brought up to date,
-- and running it again changes nothing. A migration tool of your own must run each
-- statement once.
--
--   rotated_from   the token this one replaced (a rotation made it), or NULL
--   rotated_to     the token that replaced this one, or NULL; set once, by the rotation
--   expiry_notice  the shortest expiry-notice threshold, in seconds, already claimed for
--                  this token (`claim_expiry_notices`), or NULL: a notice is claimed
--                  once per threshold

ALTER TABLE `{table}` ADD COLUMN rotated_from CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
    ADD CONSTRAINT `{table}_rotated_from_check` CHECK (rotated_from REGEXP '^[0-9a-f]{32}$');
ALTER TABLE `{table}` ADD COLUMN rotated_to CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
    ADD CONSTRAINT `{table}_rotated_to_check` CHECK (rotated_to REGEXP '^[0-9a-f]{32}$');
ALTER TABLE `{table}` ADD COLUMN expiry_notice BIGINT NULL,
    ADD CONSTRAINT `{table}_expiry_notice_check` CHECK (expiry_notice >= 0);

-- expiring_within and claim_expiry_notices: tokens by expiry, ties by id (the cursor),
-- across users (MySQL has no partial index: the query skips the dead ones).
CREATE INDEX `{table}_expiring_idx` ON `{table}` (expires_at, id);
