-- tower-pat: the token lifecycle columns, PostgreSQL dialect (after 0001).
--
-- Placeholders as in 0001: {table} and {user_id_type}. `PostgresStore::migrate` runs this
-- file after 0001, in the same transaction and under the same advisory lock; every
-- statement is idempotent (`IF NOT EXISTS`), so a table made by 0001, rows and all, is
-- brought up to date, and running it again changes nothing.
--
--   rotated_from   the token this one replaced (a rotation made it), or NULL
--   rotated_to     the token that replaced this one, or NULL; set once, by the rotation
--   expiry_notice  the shortest expiry-notice threshold, in seconds, already claimed for
--                  this token (`claim_expiry_notices`), or NULL: a notice is claimed
--                  once per threshold

ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS rotated_from TEXT COLLATE "C"
    CONSTRAINT "{table}_rotated_from_check" CHECK (rotated_from ~ '^[0-9a-f]{32}$');
ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS rotated_to TEXT COLLATE "C"
    CONSTRAINT "{table}_rotated_to_check" CHECK (rotated_to ~ '^[0-9a-f]{32}$');
ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS expiry_notice BIGINT
    CONSTRAINT "{table}_expiry_notice_check" CHECK (expiry_notice >= 0);

-- expiring_within and claim_expiry_notices: live tokens by expiry, ties by id (the
-- cursor), across users.
CREATE INDEX IF NOT EXISTS "{table}_expiring_idx" ON "{table}" (expires_at, id)
    WHERE NOT revoked AND rotated_to IS NULL;
