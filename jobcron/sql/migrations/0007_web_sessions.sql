-- Dashboard sessions (`job_cron web`'s login form): a token is exchanged for a random session secret,
-- and the browser holds only that. Only its SHA-256 is stored. A session ends when it expires, when its
-- user logs out (the row is deleted) or when its token is revoked (checked on every request).
CREATE TABLE jobcron_sessions (
    session_sha256 bytea PRIMARY KEY,
    token_id       bigint NOT NULL REFERENCES jobcron_tokens (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX jobcron_sessions_expires_idx ON jobcron_sessions (expires_at);
