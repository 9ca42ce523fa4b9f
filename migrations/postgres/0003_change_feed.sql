-- tower-pat: the change feed, PostgreSQL dialect (after 0002).
--
-- Placeholders as in 0001: {table} (and {user_id_type}, unused here). `PostgresStore::migrate`
-- runs this file after 0002, in the same transaction and under the same advisory lock;
-- `PostgresStore::install_change_feed` runs it alone, for a table made some other way.
-- Running it again changes nothing but the function's body (`CREATE OR REPLACE`); the
-- triggers are created only when missing, so a restart takes no lock on the table.
--
-- Whoever changes a token row (this crate, an admin's `UPDATE`, a `DELETE` from another
-- program), the triggers announce the ids of the rows it changed on the channel
-- 'tower_pat:{table}', which `PostgresStore::listen` hears on every instance:
--   - every DELETE;
--   - every UPDATE that changes what a cached record is checked for: `revoked`,
--     `expires_at`, `rotated_to`, `scopes`, `user_id`, `token_hash`, `client_id` or `id`.
--     The bookkeeping the store writes on its own (`last_used_at`, `expiry_notice`,
--     `updated_at` alone) announces nothing.
-- Each notification carries at most 200 ids, space-separated (6,600 bytes, under
-- PostgreSQL's 8,000-byte payload limit); a statement that changes more sends several.
-- Notifications are sent when, and only when, the transaction commits.
--
-- The triggers are statement-level, with transition tables: one trigger call per
-- statement, however many rows it changes. Like every ordinary trigger they do not fire
-- under `session_replication_role = replica` (logical replication's apply workers, or a
-- superuser who sets it); `ALTER TABLE … ENABLE ALWAYS TRIGGER …` makes them fire there too.

CREATE OR REPLACE FUNCTION "{table}_change_feed"() RETURNS trigger
LANGUAGE plpgsql AS $feed$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('tower_pat:{table}', string_agg(changed.id, ' '))
        FROM (SELECT o.id, (row_number() OVER () - 1) / 200 AS batch FROM tower_pat_old AS o) AS changed
        GROUP BY changed.batch;
    ELSE
        PERFORM pg_notify('tower_pat:{table}', string_agg(changed.id, ' '))
        FROM (
            SELECT o.id, (row_number() OVER () - 1) / 200 AS batch
            FROM tower_pat_old AS o LEFT JOIN tower_pat_new AS n ON n.id = o.id
            WHERE n.id IS NULL
               OR (o.revoked, o.expires_at, o.rotated_to, o.scopes, o.user_id, o.token_hash, o.client_id)
                  IS DISTINCT FROM
                  (n.revoked, n.expires_at, n.rotated_to, n.scopes, n.user_id, n.token_hash, n.client_id)
        ) AS changed
        GROUP BY changed.batch;
    END IF;
    RETURN NULL;
END
$feed$;

DO $install$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = '"{table}"'::regclass AND tgname = 'tower_pat_feed_update') THEN
        CREATE TRIGGER tower_pat_feed_update AFTER UPDATE ON "{table}"
            REFERENCING OLD TABLE AS tower_pat_old NEW TABLE AS tower_pat_new
            FOR EACH STATEMENT EXECUTE FUNCTION "{table}_change_feed"();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = '"{table}"'::regclass AND tgname = 'tower_pat_feed_delete') THEN
        CREATE TRIGGER tower_pat_feed_delete AFTER DELETE ON "{table}"
            REFERENCING OLD TABLE AS tower_pat_old
            FOR EACH STATEMENT EXECUTE FUNCTION "{table}_change_feed"();
    END IF;
END
$install$;
