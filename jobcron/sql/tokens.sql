-- API tokens of the web surface (migration 0006). Values are always parameters.

-- name: token_insert
-- A new token: its name, role and the SHA-256 of its secret.
INSERT INTO jobcron_tokens (name, role, token_sha256)
VALUES (%(name)s::text, %(role)s::text, %(token_sha256)s::bytea)
RETURNING id, name, role, created_at;

-- name: token_list
-- Every token, live ones first, newest first.
SELECT id, name, role, created_at, last_used_at, revoked_at
FROM jobcron_tokens
ORDER BY revoked_at IS NOT NULL, created_at DESC, id DESC;

-- name: token_revoke
-- Revoke the live token of this name.
UPDATE jobcron_tokens SET revoked_at = now()
WHERE name = %(name)s::text AND revoked_at IS NULL
RETURNING id, name, role;

-- name: token_check
-- The live token with this SHA-256, marked used (at most once a minute, so a busy client costs no write per request).
WITH found AS (
    SELECT id, name, role, last_used_at FROM jobcron_tokens
    WHERE token_sha256 = %(token_sha256)s::bytea AND revoked_at IS NULL
), touched AS (
    UPDATE jobcron_tokens t SET last_used_at = now()
    FROM found f
    WHERE t.id = f.id AND (f.last_used_at IS NULL OR f.last_used_at < now() - interval '1 minute')
)
SELECT name, role FROM found;

-- name: session_insert
-- A session for the live token with this SHA-256 (none for an unknown or revoked one), valid for
-- %(seconds)s; expired sessions are deleted on the way, so the table holds only live ones.
WITH expired AS (
    DELETE FROM jobcron_sessions WHERE expires_at < now()
)
INSERT INTO jobcron_sessions (session_sha256, token_id, expires_at)
SELECT %(session_sha256)s::bytea, t.id, now() + make_interval(secs => %(seconds)s::float8)
FROM jobcron_tokens t
WHERE t.token_sha256 = %(token_sha256)s::bytea AND t.revoked_at IS NULL
RETURNING expires_at;

-- name: session_check
-- The name and role behind a live session whose token is live.
SELECT t.name, t.role
FROM jobcron_sessions s JOIN jobcron_tokens t ON t.id = s.token_id
WHERE s.session_sha256 = %(session_sha256)s::bytea AND s.expires_at > now() AND t.revoked_at IS NULL;

-- name: session_delete
-- Log out: the session is gone.
DELETE FROM jobcron_sessions WHERE session_sha256 = %(session_sha256)s::bytea;
