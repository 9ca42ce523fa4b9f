-- tower-pat: the personal access token table, MySQL dialect (MySQL 8.0.16+, MariaDB 10.6+).
--
-- `MySqlStore::migrate` runs this file after filling in two placeholders:
--   {table}         the table name (default `personal_access_tokens`; letters, digits
--                   and `_` only), also the prefix of every index and constraint name;
--   {user_id_type}  the SQL type of the user id (`BIGINT` for `i64`, `VARCHAR(255)` for
--                   `String`, `VARBINARY(255)` for `uuid::Uuid`).
-- `MySqlStore::schema_sql` returns the filled-in text, for your own migration tool.
-- The statement is idempotent (`IF NOT EXISTS`): running the file again changes nothing.
-- `migrate` holds a named lock (`GET_LOCK`) meanwhile, so instances starting together
-- take turns. Every index is declared in the table itself: MySQL has no
-- `CREATE INDEX IF NOT EXISTS`.
--
-- Columns follow Laravel Passport's token row, plus `token_hash` and `last_used_at`:
--   id            the token id: 32 lowercase hex digits (128 random bits)
--   scopes        space-delimited scope names (RFC 6749 form): 'orders:read user:read';
--                 the empty string for none
--   token_hash    SHA-256 of the token, 32 bytes: the only form of the token at rest
--   revoked       0 or 1 (`BOOLEAN` is `TINYINT(1)`)
--   *_at          `DATETIME(6)`, UTC, to the microsecond: the store writes and reads
--                 them as UTC whatever the session's `time_zone`
-- Text compares byte for byte (`utf8mb4_bin`): string user ids `Ann` and `ann` are two
-- users.

CREATE TABLE IF NOT EXISTS `{table}` (
    id           CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    user_id      {user_id_type} NOT NULL,
    client_id    TEXT,
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    token_hash   VARBINARY(32) NOT NULL,
    revoked      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   DATETIME(6) NOT NULL,
    updated_at   DATETIME(6) NOT NULL,
    expires_at   DATETIME(6) NOT NULL,
    last_used_at DATETIME(6) NULL,
    PRIMARY KEY (id),
    -- find: by hash.
    UNIQUE KEY `{table}_token_hash_key` (token_hash),
    -- list, revoke, revoke_all, delete, the per-user cap: by user.
    KEY `{table}_user_idx` (user_id, created_at, id),
    -- prune: expired tokens ...
    KEY `{table}_expires_idx` (expires_at),
    -- ... and revoked ones, by when they were revoked.
    KEY `{table}_revoked_idx` (revoked, updated_at),
    CONSTRAINT `{table}_id_check` CHECK (id REGEXP '^[0-9a-f]{32}$'),
    CONSTRAINT `{table}_hash_check` CHECK (octet_length(token_hash) = 32)
) ENGINE = InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
