-- tower-pat: the personal access token table, PostgreSQL dialect.
--
-- `PostgresStore::migrate` runs this file after filling in two placeholders:
--   {table}         the table name (default `personal_access_tokens`; letters, digits
--                   and `_` only), also the prefix of every index and constraint name;
--   {user_id_type}  the SQL type of the user id (`INT8` for `i64`, `UUID` for
--                   `uuid::Uuid`, `TEXT` for `String`).
-- `PostgresStore::schema_sql` returns the filled-in text, for your own migration tool.
-- Every statement is idempotent: running the file again changes nothing. `migrate` holds
-- an advisory lock meanwhile, so instances starting together do not race.
--
-- Columns follow Laravel Passport's token row, plus `token_hash` and `last_used_at`:
--   id            the token id: 32 lowercase hex digits (128 random bits)
--   scopes        space-delimited scope names (RFC 6749 form): 'orders:read user:read';
--                 the empty string for none
--   token_hash    SHA-256 of the token, 32 bytes: the only form of the token at rest

CREATE TABLE IF NOT EXISTS "{table}" (
    id           TEXT COLLATE "C" NOT NULL,
    user_id      {user_id_type} NOT NULL,
    client_id    TEXT,
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL DEFAULT '',
    token_hash   BYTEA NOT NULL,
    revoked      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    CONSTRAINT "{table}_pkey" PRIMARY KEY (id),
    CONSTRAINT "{table}_token_hash_key" UNIQUE (token_hash),
    CONSTRAINT "{table}_id_check" CHECK (id ~ '^[0-9a-f]{32}$'),
    CONSTRAINT "{table}_hash_check" CHECK (octet_length(token_hash) = 32)
);

-- find: by hash, through the UNIQUE constraint's index.
-- get, revoke, delete, touch: by id, through the primary key.
-- list (oldest first), revoke, revoke_all, delete: by user.
CREATE INDEX IF NOT EXISTS "{table}_user_idx" ON "{table}" (user_id, created_at, id);

-- prune: expired tokens ...
CREATE INDEX IF NOT EXISTS "{table}_expires_idx" ON "{table}" (expires_at);

-- ... and revoked ones, by when they were revoked.
CREATE INDEX IF NOT EXISTS "{table}_revoked_idx" ON "{table}" (updated_at) WHERE revoked;
