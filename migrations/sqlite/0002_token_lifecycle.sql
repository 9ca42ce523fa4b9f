-- tower-pat: the token lifecycle columns, SQLite dialect (after 0001).
--
-- Placeholders as in 0001: {table} and {user_id_type}. `SqliteStore::migrate` runs this
-- file after 0001, in the same transaction. SQLite has no `ADD COLUMN IF NOT EXISTS`:
-- `migrate` runs each `ALTER TABLE … ADD COLUMN <name>` below only when the table has no
-- column of that name yet (it reads `pragma_table_info`), so a table made by 0001, rows
-- and all, is brought up to date, and running it again changes nothing. A migration
-- tool of your own must run each statement once.
--
--   rotated_from   the token this one replaced (a rotation made it), or NULL
--   rotated_to     the token that replaced this one, or NULL; set once, by the rotation
--   expiry_notice  the shortest expiry-notice threshold, in seconds, already claimed for
--                  this token (`claim_expiry_notices`), or NULL: a notice is claimed
--                  once per threshold

ALTER TABLE "{table}" ADD COLUMN rotated_from TEXT
    CHECK (rotated_from IS NULL OR (length(rotated_from) = 32 AND rotated_from NOT GLOB '*[^0-9a-f]*'));
ALTER TABLE "{table}" ADD COLUMN rotated_to TEXT
    CHECK (rotated_to IS NULL OR (length(rotated_to) = 32 AND rotated_to NOT GLOB '*[^0-9a-f]*'));
ALTER TABLE "{table}" ADD COLUMN expiry_notice INTEGER
    CHECK (expiry_notice IS NULL OR expiry_notice >= 0);

-- expiring_within and claim_expiry_notices: live tokens by expiry, ties by id (the
-- cursor), across users.
CREATE INDEX IF NOT EXISTS "{table}_expiring_idx" ON "{table}" (expires_at, id)
    WHERE revoked = 0 AND rotated_to IS NULL;
