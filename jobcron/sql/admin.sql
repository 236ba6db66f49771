-- Queries of the operator commands: status, jobs, workers, pauses, health.
-- Each one reads through a partial index or a bounded range, so its cost follows the number of
-- active jobs, not the millions of finished rows a busy system keeps.

-- name: ops_read_only_snapshot
-- One consistent, read-only snapshot for every query of a status report (one now() for all ages).
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;

-- name: ops_active_counts
-- Pending (due and scheduled later; parked ones included), waiting and processing counts, and how long the oldest due pending job has waited, each through its partial index (status, and the metrics' sample).
SELECT (SELECT count(*) FROM processing_jobs WHERE status = 'pending' AND NOT parked)
       + (SELECT count(*) FROM processing_jobs WHERE status = 'pending' AND parked) AS pending,
       (SELECT count(*) FROM processing_jobs
        WHERE status = 'pending' AND NOT parked AND scheduled_at > now()) AS pending_scheduled,
       (SELECT count(*) FROM processing_jobs WHERE status = 'pending' AND parked) AS pending_parked,
       (SELECT count(*) FROM processing_jobs WHERE status = 'processing') AS processing,
       -- jobs waiting for their parents (depends_on), through their own partial index
       (SELECT count(*) FROM processing_jobs WHERE status = 'waiting') AS waiting,
       -- epochs subtracted as numbers: a row due since '-infinity' gives Infinity, not an error
       (SELECT extract(epoch FROM now())::float8 - extract(epoch FROM min(scheduled_at))::float8
        FROM (SELECT min(scheduled_at) AS scheduled_at FROM processing_jobs
              WHERE status = 'pending' AND NOT parked AND scheduled_at <= now()
              UNION ALL
              SELECT min(scheduled_at) FROM processing_jobs
              WHERE status = 'pending' AND parked AND scheduled_at <= now()) AS heads) AS oldest_age_seconds;

-- name: ops_table_estimate
-- The table's size, its live rows as the statistics collector counts them, and the planner's status frequencies.
SELECT pg_relation_size(c.oid) AS bytes,
       c.reltuples::float8 AS reltuples,
       st.n_live_tup::float8 AS live_rows,
       s.most_common_vals::text::text[] AS status_values,
       s.most_common_freqs::float8[] AS status_freqs
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables st ON st.relid = c.oid
LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'status'
WHERE c.oid = 'processing_jobs'::regclass;

-- name: ops_finished_counts
-- Exact finished counts per status (a full scan: used only when the table is small or --exact is given).
SELECT status, count(*) AS n
FROM processing_jobs
WHERE status IN ('completed', 'failed', 'cancelled')
GROUP BY status;

-- name: ops_finished_since
-- Jobs finished in the last N seconds per status, through the partial index on completed_at.
SELECT count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled
FROM processing_jobs
WHERE status IN ('completed', 'failed', 'cancelled')
  AND completed_at >= now() - make_interval(secs => %(seconds)s::float8);

-- name: ops_oldest_pending
-- The due pending job that has waited longest: one probe of the FIFO claim index, and the oldest parked job.
-- Ages of an infinite time would raise "cannot subtract infinite timestamps": a row due since
-- '-infinity' has waited since it was created.
SELECT id, job_type, user_id, priority, created_at, scheduled_at,
       extract(epoch FROM now() - CASE WHEN isfinite(scheduled_at) THEN scheduled_at
                                       WHEN isfinite(created_at) THEN created_at END)::float8 AS age_seconds
FROM ((SELECT id, job_type, user_id, priority, created_at, scheduled_at, seq
       FROM processing_jobs
       WHERE status = 'pending' AND NOT parked AND scheduled_at <= now()
       ORDER BY scheduled_at, seq
       LIMIT 1)
      UNION ALL
      (SELECT id, job_type, user_id, priority, created_at, scheduled_at, seq
       FROM processing_jobs
       WHERE status = 'pending' AND parked AND scheduled_at <= now()
       ORDER BY scheduled_at, seq
       LIMIT 1)) AS oldest
ORDER BY scheduled_at, seq
LIMIT 1;

-- name: ops_running_jobs
-- Running jobs, longest first, with their worker and how long they have run.
SELECT id, job_type, user_id, locked_by AS worker, started_at, heartbeat_at, attempts, cancel_requested,
       progress,
       CASE WHEN isfinite(started_at) THEN extract(epoch FROM now() - started_at)::float8 END
           AS duration_seconds,
       CASE WHEN isfinite(heartbeat_at) THEN extract(epoch FROM now() - heartbeat_at)::float8 END
           AS heartbeat_age_seconds
FROM processing_jobs
WHERE status = 'processing'
ORDER BY started_at, id
LIMIT %(limit)s::int;

-- name: ops_busiest_users
-- Users with the most active (running + pending) jobs; each half reads its own partial index.
SELECT user_id, sum(running)::bigint AS running, sum(pending)::bigint AS pending
FROM (SELECT user_id, 0 AS running, count(*) AS pending
      FROM processing_jobs WHERE status = 'pending' AND NOT parked AND user_id IS NOT NULL GROUP BY user_id
      UNION ALL
      SELECT user_id, 0 AS running, count(*) AS pending
      FROM processing_jobs WHERE status = 'pending' AND parked AND user_id IS NOT NULL GROUP BY user_id
      UNION ALL
      SELECT user_id, count(*) AS running, 0 AS pending
      FROM processing_jobs WHERE status = 'processing' AND user_id IS NOT NULL GROUP BY user_id) a
GROUP BY user_id
ORDER BY sum(running) + sum(pending) DESC, user_id
LIMIT %(limit)s::int;

-- name: ops_workers
-- Every daemon row, alive or dead, with the job it runs now (from the jobs table, not its last report).
-- the state a daemon last reported lags by up to its heartbeat period; a job it holds says "running" now
SELECT w.id, w.host, w.pid,
       CASE WHEN r.id IS NOT NULL AND w.state IN ('idle', 'running') THEN 'running'
            WHEN r.id IS NULL AND w.state = 'running' THEN 'idle'
            ELSE w.state END AS state,
       w.version, w.started_at, w.last_seen_at,
       CASE WHEN isfinite(w.last_seen_at) THEN extract(epoch FROM now() - w.last_seen_at)::float8 END
           AS last_seen_seconds,
       w.last_seen_at >= now() - make_interval(secs => %(dead_after_seconds)s::float8) AS alive,
       r.id AS job_id, r.job_type, r.user_id AS job_user_id,
       CASE WHEN isfinite(r.started_at) THEN extract(epoch FROM now() - r.started_at)::float8 END
           AS job_seconds,
       coalesce(r.held, 0) AS jobs_held
FROM job_workers w
LEFT JOIN LATERAL (
    SELECT j.id, j.job_type, j.user_id, j.started_at, count(*) OVER () AS held
    FROM processing_jobs j
    WHERE j.status = 'processing' AND j.locked_by = w.id
    ORDER BY j.started_at DESC
    LIMIT 1
) r ON true
ORDER BY alive DESC, w.id;

-- name: ops_schedules_due
-- Enabled schedules whose next run has come, with the total count.
SELECT id, name, job_type, next_run_at,
       CASE WHEN isfinite(next_run_at) THEN extract(epoch FROM now() - next_run_at)::float8 END
           AS overdue_seconds,
       count(*) OVER () AS total
FROM job_schedules
WHERE enabled AND next_run_at <= now()
ORDER BY next_run_at
LIMIT %(limit)s::int;

-- name: ops_stale_count
-- Running jobs whose heartbeat is older than the stale threshold.
SELECT count(*) AS n,
       max(CASE WHEN isfinite(heartbeat_at) THEN extract(epoch FROM now() - heartbeat_at) END)::float8
           AS oldest_heartbeat_seconds
FROM processing_jobs
WHERE status = 'processing'
  AND heartbeat_at < now() - make_interval(secs => %(stale_after_seconds)s::float8);

-- name: ops_jobs_list
-- Jobs newest first, filtered; NULL filters are off (the planner folds them away for the given values).
SELECT id, job_type, status, user_id, priority, attempts, retry_count, max_retries,
       created_at, scheduled_at, started_at, completed_at, locked_by, cancel_requested,
       left(error_message, 200) AS error_message
FROM processing_jobs
WHERE (%(statuses)s::text[] IS NULL OR status = ANY (%(statuses)s::text[]))
  AND (%(user_id)s::text IS NULL OR user_id = %(user_id)s::text)
  AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
  AND (%(since_seconds)s::float8 IS NULL
       OR created_at >= now() - make_interval(secs => %(since_seconds)s::float8))
  -- keyset pagination: the page after (older than) the last row of the previous one
  AND (%(before_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(before_at)s::timestamptz, %(before_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s::int;

-- name: ops_job_show
-- Everything about one job, with its file and schedule and how many insights it produced.
-- metadata, result and errors come as JSON text with their size, the text only up to max_bytes: a
-- 50 MB value another application wrote is measured on the server, never shipped to the terminal.
SELECT j.id, j.status, j.job_type, j.user_id, j.priority, j.business_description,
       CASE WHEN octet_length(t.metadata) <= %(max_bytes)s::int THEN t.metadata END AS metadata,
       octet_length(t.metadata) AS metadata_bytes,
       j.attempts, j.retry_count, j.max_retries, j.timeout_seconds, j.dedup_key,
       j.created_at, j.scheduled_at, j.started_at, j.completed_at, j.updated_at,
       j.locked_by, j.locked_at, j.heartbeat_at, j.cancel_requested, j.error_message, j.progress,
       j.run_anyway, j.waiting_on,
       CASE WHEN octet_length(t.errors) <= %(max_bytes)s::int THEN t.errors END AS errors,
       octet_length(t.errors) AS errors_bytes,
       CASE WHEN octet_length(t.result) <= %(max_bytes)s::int THEN t.result END AS result,
       octet_length(t.result) AS result_bytes,
       j.seq,
       j.file_id, f.file_path, f.original_name, f.status AS file_status,
       j.schedule_id, s.name AS schedule_name,
       (SELECT count(*) FROM insights i WHERE i.job_id = j.id) AS insights,
       CASE WHEN isfinite(j.heartbeat_at) THEN extract(epoch FROM now() - j.heartbeat_at)::float8 END
           AS heartbeat_age_seconds,
       CASE WHEN isfinite(j.started_at) AND isfinite(coalesce(j.completed_at, now()))
            THEN extract(epoch FROM coalesce(j.completed_at, now()) - j.started_at)::float8 END AS run_seconds
FROM processing_jobs j
-- OFFSET 0 keeps the subquery from being folded into the select list: each value becomes text once
CROSS JOIN LATERAL (SELECT j.metadata::text AS metadata, j.result::text AS result,
                           j.errors::text AS errors OFFSET 0) t
LEFT JOIN files f ON f.id = j.file_id
LEFT JOIN job_schedules s ON s.id = j.schedule_id
WHERE j.id = %(id)s::uuid;

-- name: ops_job_relatives
-- A job's parents (the jobs it waits or waited for, and the job whose result enqueued it) and its children, at most `limit` of each in creation order, with the total of each; settled: the parent's end was counted for the child.
(SELECT 'parent' AS relation, j.id, j.job_type, j.status, d.settled, j.created_at,
        count(*) OVER () AS total
 FROM job_dependencies d JOIN processing_jobs j ON j.id = d.parent_id
 WHERE d.child_id = %(id)s::uuid
 ORDER BY j.created_at, j.id LIMIT %(limit)s::int)
UNION ALL
(SELECT 'child', j.id, j.job_type, j.status, d.settled, j.created_at, count(*) OVER ()
 FROM job_dependencies d JOIN processing_jobs j ON j.id = d.child_id
 WHERE d.parent_id = %(id)s::uuid
 ORDER BY j.created_at, j.id LIMIT %(limit)s::int);

-- name: ops_job_state
-- A job's status and lease facts (to explain why an action did not apply).
SELECT id, status, cancel_requested, locked_by, dedup_key,
       CASE WHEN isfinite(heartbeat_at) THEN extract(epoch FROM now() - heartbeat_at)::float8 END
           AS heartbeat_age_seconds
FROM processing_jobs WHERE id = %(id)s::uuid;

-- name: ops_job_cancel
-- Cancel: a pending or waiting job ends now (its dependants with it, by the trigger of migration 0009); a running one is asked to stop (the trigger NOTIFYs its daemon). The request is kept in errors so a heartbeat sees "force" too.
UPDATE processing_jobs
SET status = CASE WHEN status IN ('pending', 'waiting') THEN 'cancelled' ELSE status END,
    completed_at = CASE WHEN status IN ('pending', 'waiting') THEN now() ELSE completed_at END,
    error_message = CASE WHEN status IN ('pending', 'waiting') THEN 'cancelled by ' || %(by)s::text || ' before it ran'
                         ELSE error_message END,
    cancel_requested = true,
    errors = errors || jsonb_build_array(jsonb_build_object(
        'type', 'CancelRequested',
        'force', %(force)s::bool,
        'attempt', attempts,
        'message', CASE WHEN status IN ('pending', 'waiting') THEN 'cancelled before it ran'
                        WHEN %(force)s::bool THEN 'cancel requested (force): terminate at once'
                        ELSE 'cancel requested' END,
        'by', %(by)s::text,
        'at', now())),
    updated_at = now()
WHERE id = %(id)s::uuid AND status IN ('waiting', 'pending', 'processing')
RETURNING id, status, locked_by;

-- name: ops_notify_cancel
-- Tell the daemon running a job to cancel it ("ID" or "ID:force"); delivered at commit.
SELECT pg_notify('jobcron_cancel', %(payload)s::text);

-- name: ops_job_retry
-- A failed or cancelled job back to pending now with a fresh retry budget (retry_count 0, error_message cleared; attempts and the error history are kept).
WITH old AS (
    SELECT id, status, retry_count, file_id FROM processing_jobs
    WHERE id = %(id)s::uuid AND status IN ('failed', 'cancelled')
    FOR UPDATE
), retried AS (
    UPDATE processing_jobs j
    SET status = 'pending',
        retry_count = 0,
        cancel_requested = false,
        scheduled_at = now(),
        completed_at = NULL,
        result = NULL,
        -- the error history keeps every message; the last one belongs to the old attempt
        error_message = NULL,
        heartbeat_at = NULL,
        user_slot = NULL,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'type', 'RetriedByOperator',
            'attempt', j.attempts,
            'message', 'retried from ' || o.status || ' (retry_count ' || o.retry_count || ' reset to 0)',
            'by', %(by)s::text,
            'at', now())),
        updated_at = now()
    FROM old o
    WHERE j.id = o.id
    RETURNING j.id, o.status AS was, o.retry_count AS old_retry_count, j.attempts, j.file_id
), file_reset AS (
    -- the file's 'failed' mark belonged to the attempt that is being retried
    UPDATE files f SET status = 'uploaded', updated_at = now()
    FROM retried r
    WHERE f.id = r.file_id AND f.status = 'failed'
    RETURNING 1
)
SELECT id, was, old_retry_count, attempts, (SELECT count(*) FROM file_reset) AS files_reset FROM retried;

-- fragment: reset_stale_pick
-- The running jobs an operator's reset takes (its preview shows the same): heartbeat stale (or any, with include_alive), optionally started before a cutoff.
status = 'processing'
  AND (%(include_alive)s::bool
       OR heartbeat_at < now() - make_interval(secs => %(stale_after_seconds)s::float8))
  AND (%(older_than_seconds)s::float8 IS NULL
       OR started_at < now() - make_interval(secs => %(older_than_seconds)s::float8))

-- name: ops_stale_jobs
-- Running jobs an emergency reset would take: heartbeat stale (or any, when include_alive), optionally started before a cutoff.
SELECT id, job_type, user_id, locked_by AS worker, started_at, heartbeat_at, retry_count, max_retries,
       cancel_requested,
       CASE WHEN isfinite(started_at) THEN extract(epoch FROM now() - started_at)::float8 END
           AS running_seconds,
       CASE WHEN isfinite(heartbeat_at) THEN extract(epoch FROM now() - heartbeat_at)::float8 END
           AS heartbeat_age_seconds,
       heartbeat_at >= now() - make_interval(secs => %(stale_after_seconds)s::float8) AS alive
FROM processing_jobs
WHERE /*@reset_stale_pick*/
ORDER BY started_at;

-- name: ops_reset_stale
-- The emergency reset under the lease rules: like a rescue, back to pending (an attempt) or failed/cancelled; the old worker's lease is void.
WITH picked AS (
    -- FOR UPDATE returns the newest version of each row it locks: the decision is taken from here
    SELECT id, locked_by, heartbeat_at, retry_count, max_retries, cancel_requested,
           heartbeat_at >= now() - make_interval(secs => %(stale_after_seconds)s::float8) AS alive
    FROM processing_jobs
    WHERE /*@reset_stale_pick*/
    FOR UPDATE SKIP LOCKED
), decided AS (
    SELECT s.*, /*@rescue_give_up*/ AS give_up
    FROM picked s
)
UPDATE processing_jobs j
-- (now is NULL: the reset's time is the transaction's)
SET /*@rescue_outcome*/,
        error_message = CASE WHEN d.alive
                         THEN 'reset by ' || %(by)s::text || ' while ' || j.locked_by || ' still heartbeated'
                         ELSE 'reset by ' || %(by)s::text || ': no heartbeat from ' || j.locked_by
                              || ' since ' || j.heartbeat_at::text END,
    errors = j.errors || jsonb_build_array(jsonb_build_object(
        'attempt', j.attempts,
        'type', 'ResetByOperator',
        'message', CASE WHEN d.alive THEN 'reset while the worker still heartbeated'
                        ELSE 'reset: no heartbeat since ' || j.heartbeat_at::text END,
        'worker', j.locked_by,
        'by', %(by)s::text,
        'at', now()))
FROM decided d
WHERE j.id = d.id
RETURNING j.id, j.job_type, j.status, d.locked_by AS worker, d.alive;

-- name: ops_purge_count
-- How many finished jobs a purge would delete.
SELECT count(*) AS n
FROM processing_jobs
WHERE status = ANY (%(statuses)s::text[]) AND status IN ('completed', 'failed', 'cancelled')
  AND completed_at < now() - make_interval(secs => %(older_than_seconds)s::float8);

-- name: ops_pause
-- Pause claiming of a job type ('*' = all) on every daemon; the table's trigger tells them at once.
INSERT INTO job_pauses (job_type, paused_by) VALUES (%(job_type)s::text, %(by)s::text)
ON CONFLICT (job_type) DO NOTHING
RETURNING job_type;

-- name: ops_resume
-- Lift the pauses of the given job types.
DELETE FROM job_pauses WHERE job_type = ANY (%(job_types)s::text[]) RETURNING job_type;

-- name: ops_resume_all
-- Lift every pause.
DELETE FROM job_pauses RETURNING job_type;

-- name: ops_job_insights
-- The insights a job produced (business results; they outlive the job's pruning).
SELECT id, insight_type, confidence_score, created_at
FROM insights WHERE job_id = %(id)s::uuid
ORDER BY created_at, id
LIMIT %(limit)s::int;


-- name: ops_finished_by_minute
-- Jobs finished per minute over the last %(minutes)s minutes (0 is the current one), for the dashboard's
-- chart; the finished-jobs index bounds it to the window, whatever the table holds.
SELECT floor(extract(epoch FROM (now() - completed_at)) / 60)::int AS minutes_ago,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM processing_jobs
WHERE status IN ('completed', 'failed', 'cancelled')
  AND completed_at >= now() - make_interval(mins => %(minutes)s::int)
GROUP BY 1;
