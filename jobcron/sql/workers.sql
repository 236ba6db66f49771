-- Daemon rows (job_workers), the worker-id lock, and the pauses daemons read.

-- name: worker_id_lock
-- Hold a worker id for this session: two live daemons under one id would rescue and release each other's jobs.
SELECT pg_try_advisory_lock(4242004, hashtext(%(worker_id)s::text)) AS held;

-- name: worker_register
-- Announce this daemon in job_workers.
INSERT INTO job_workers (id, host, pid, state, version)
VALUES (%(id)s, %(host)s, %(pid)s, %(state)s, %(version)s)
ON CONFLICT (id) DO UPDATE
SET host = EXCLUDED.host, pid = EXCLUDED.pid, state = EXCLUDED.state, version = EXCLUDED.version,
    started_at = now(), last_seen_at = now(), current_job_id = NULL;

-- name: worker_heartbeat
-- Refresh this daemon's row: last seen, state, current job.
UPDATE job_workers SET last_seen_at = now(), state = %(state)s, current_job_id = %(current_job_id)s
WHERE id = %(id)s;

-- name: worker_unregister
-- Remove this daemon's row on a clean exit.
DELETE FROM job_workers WHERE id = %(id)s;

-- name: ops_pauses
-- Paused job types ('*' = all) with when and by whom (daemons read the types, operators the rest).
SELECT job_type, paused_at, paused_by FROM job_pauses ORDER BY job_type;

-- name: pause_all_if_absent
-- auto_start_processing false: a cold start (no other daemon alive) pauses claiming until `job_cron resume`; a daemon restarting into a running fleet leaves it be.
INSERT INTO job_pauses (job_type, paused_by)
SELECT '*', %(worker_id)s::text
WHERE NOT EXISTS (SELECT 1 FROM job_workers w
                  WHERE w.id <> %(worker_id)s::text
                    AND w.last_seen_at >= now() - make_interval(secs => %(alive_within_seconds)s::float8))
ON CONFLICT (job_type) DO NOTHING
RETURNING job_type;
