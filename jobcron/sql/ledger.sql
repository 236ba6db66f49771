-- The migrations ledger and the migrators' lock.

-- name: ledger_create
-- Create the migrations ledger if this database has none.
CREATE TABLE IF NOT EXISTS jobcron_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: ledger_exists
-- Whether the migrations ledger exists.
SELECT to_regclass('jobcron_migrations') IS NOT NULL AS present;

-- name: ledger_versions
-- Applied migrations, oldest first.
SELECT version, name, checksum, applied_at FROM jobcron_migrations ORDER BY version;

-- name: ledger_record
-- Record one applied migration.
INSERT INTO jobcron_migrations (version, name, checksum) VALUES (%(version)s, %(name)s, %(checksum)s);

-- name: migration_lock
-- Serialise migrators: one advisory lock per database, held for the session.
SELECT pg_advisory_lock(4242001);

-- name: migration_unlock
-- Release the migrators' advisory lock.
SELECT pg_advisory_unlock(4242001);

-- name: current_schema
-- The schema this session creates in and resolves unqualified names in first (NULL: its search_path names none that exists).
SELECT current_schema() AS schema;
