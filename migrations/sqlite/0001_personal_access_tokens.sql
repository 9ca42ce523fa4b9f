-- tower-pat: the personal access token table, SQLite dialect.
--
-- `SqliteStore::migrate` runs this file after filling in two placeholders:
--   {table}         the table name (default `personal_access_tokens`; letters, digits
--                   and `_` only), also the prefix of every index name;
--   {user_id_type}  the SQL type of the user id (`INTEGER` for `i64`, `TEXT` for `String`,
--                   `BLOB` for `uuid::Uuid`).
-- `SqliteStore::schema_sql` returns the filled-in text, for your own migration tool.
-- Every statement is idempotent: running the file again changes nothing.
--
-- Columns follow Laravel Passport's token row, plus `token_hash` and `last_used_at`:
--   id            the token id: 32 lowercase hex digits (128 random bits)
--   scopes        space-delimited scope names (RFC 6749 form): 'orders:read user:read';
--                 the empty string for none
--   token_hash    SHA-256 of the token, 32 bytes: the only form of the token at rest
--   revoked       0 or 1
--   *_at          Unix time in whole seconds, UTC; read one with
--                 `datetime(expires_at, 'unixepoch')`

CREATE TABLE IF NOT EXISTS "{table}" (
    id           TEXT    NOT NULL PRIMARY KEY
                         CHECK (length(id) = 32 AND id NOT GLOB '*[^0-9a-f]*'),
    user_id      {user_id_type} NOT NULL,
    client_id    TEXT,
    name         TEXT    NOT NULL,
    scopes       TEXT    NOT NULL DEFAULT '',
    token_hash   BLOB    NOT NULL
                         CHECK (typeof(token_hash) = 'blob' AND length(token_hash) = 32),
    revoked      INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    CONSTRAINT "{table}_token_hash_key" UNIQUE (token_hash)
);

-- find: by hash, through the UNIQUE constraint's index.
-- get, revoke, delete, touch: by id, through the primary key.
-- list (oldest first), revoke, revoke_all, delete: by user.
CREATE INDEX IF NOT EXISTS "{table}_user_idx" ON "{table}" (user_id, created_at, id);

-- prune: expired tokens ...
CREATE INDEX IF NOT EXISTS "{table}_expires_idx" ON "{table}" (expires_at);

-- ... and revoked ones, by when they were revoked.
CREATE INDEX IF NOT EXISTS "{table}_revoked_idx" ON "{table}" (updated_at) WHERE revoked = 1;
