-- API tokens of the web surface (`job_cron tokens create NAME --role viewer|admin`, `job_cron web`).
-- Only a token's SHA-256 is stored: the token itself is printed once, when it is made. A viewer reads,
-- an admin also acts (enqueue, cancel, retry, purge, safety, pause). A revoked token stays listed.
CREATE TABLE jobcron_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL,
    role         text NOT NULL,
    token_sha256 bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    CONSTRAINT jobcron_tokens_role_valid CHECK (role IN ('viewer', 'admin')),
    CONSTRAINT jobcron_tokens_name_not_empty CHECK (length(name) BETWEEN 1 AND 100),
    CONSTRAINT jobcron_tokens_hash_unique UNIQUE (token_sha256)
);
-- one live token per name; a revoked name may be used again
CREATE UNIQUE INDEX jobcron_tokens_live_name_uniq ON jobcron_tokens (name) WHERE revoked_at IS NULL;
