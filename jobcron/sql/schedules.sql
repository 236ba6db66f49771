-- Schedules: firing (every daemon, exactly once per occurrence) and management.

-- name: schedules_due_locked
-- Due, enabled schedules, locked so that racing daemons take different ones (use inside a transaction).
SELECT s.*, coalesce(%(now)s::timestamptz, now()) AS db_now
FROM job_schedules s
WHERE s.enabled AND s.next_run_at <= coalesce(%(now)s::timestamptz, now())
ORDER BY s.next_run_at
LIMIT %(limit)s::int
FOR UPDATE SKIP LOCKED;

-- name: schedules_unplanned_locked
-- Enabled schedules nobody planned: inserted with plain SQL, without next_run_at (every other path
-- sets it, and disables a schedule that has no next run). Locked like the due ones.
SELECT s.*, coalesce(%(now)s::timestamptz, now()) AS db_now
FROM job_schedules s
WHERE s.enabled AND s.next_run_at IS NULL
ORDER BY s.id
LIMIT %(limit)s::int
FOR UPDATE SKIP LOCKED;

-- name: schedule_execution_insert
-- Record one occurrence; the unique (schedule_id, occurrence_at) makes a second firing a no-op.
INSERT INTO schedule_executions (schedule_id, occurrence_at, fired_by)
VALUES (%(schedule_id)s::bigint, %(occurrence_at)s::timestamptz, %(fired_by)s::text)
ON CONFLICT (schedule_id, occurrence_at) DO NOTHING
RETURNING id;

-- name: schedule_execution_link_job
-- Link an execution to the job it enqueued, and the job to its schedule.
WITH job AS (
    UPDATE processing_jobs
    SET schedule_id = (SELECT e.schedule_id FROM schedule_executions e WHERE e.id = %(id)s::bigint)
    WHERE id = %(job_id)s::uuid
)
UPDATE schedule_executions SET job_id = %(job_id)s::uuid WHERE id = %(id)s::bigint;

-- name: schedule_advance
-- Move a schedule past an occurrence: next run, count, last run; disable it when there is no next run.
UPDATE job_schedules
SET next_run_at = %(next_run_at)s::timestamptz,
    last_run_at = coalesce(%(last_run_at)s::timestamptz, last_run_at),
    execution_count = execution_count + %(fired)s::int,
    enabled = enabled AND %(next_run_at)s::timestamptz IS NOT NULL,
    updated_at = now()
WHERE id = %(id)s::bigint;

-- name: schedule_insert
-- Create a schedule.
INSERT INTO job_schedules (name, job_type, metadata, user_id, priority, file_id, business_description,
                           timeout_seconds, max_retries, kind, run_at, interval_seconds, time_of_day,
                           weekdays, day_of_month, cron_expression, timezone, start_at, end_at,
                           max_executions, enabled, next_run_at)
VALUES (%(name)s, %(job_type)s, %(metadata)s::jsonb, %(user_id)s, %(priority)s, %(file_id)s::uuid,
        %(business_description)s, %(timeout_seconds)s, %(max_retries)s, %(kind)s, %(run_at)s::timestamptz,
        %(interval_seconds)s, %(time_of_day)s::time, %(weekdays)s::smallint[], %(day_of_month)s,
        %(cron_expression)s, %(timezone)s, %(start_at)s::timestamptz, %(end_at)s::timestamptz,
        %(max_executions)s, %(enabled)s, %(next_run_at)s::timestamptz)
RETURNING id;

-- name: schedule_update
-- Replace a schedule's definition (template and timing) and its next run.
UPDATE job_schedules
SET job_type = %(job_type)s, metadata = %(metadata)s::jsonb, user_id = %(user_id)s, priority = %(priority)s,
    file_id = %(file_id)s::uuid, business_description = %(business_description)s,
    timeout_seconds = %(timeout_seconds)s, max_retries = %(max_retries)s, kind = %(kind)s,
    run_at = %(run_at)s::timestamptz, interval_seconds = %(interval_seconds)s,
    time_of_day = %(time_of_day)s::time, weekdays = %(weekdays)s::smallint[],
    day_of_month = %(day_of_month)s, cron_expression = %(cron_expression)s, timezone = %(timezone)s,
    start_at = %(start_at)s::timestamptz, end_at = %(end_at)s::timestamptz,
    max_executions = %(max_executions)s, next_run_at = %(next_run_at)s::timestamptz,
    enabled = %(enabled)s, updated_at = now()
WHERE id = %(id)s::bigint
RETURNING id;

-- name: schedule_get
-- One schedule by id or name (an id wins over a name that looks like one).
SELECT * FROM job_schedules WHERE id::text = %(key)s::text OR name = %(key)s::text
ORDER BY (id::text = %(key)s::text) DESC LIMIT 1;

-- name: schedule_get_locked
-- One schedule by id, locked against a daemon firing it while it is being changed.
SELECT * FROM job_schedules WHERE id = %(id)s::bigint FOR UPDATE;

-- name: schedule_list
-- Every schedule, soonest first, with the status of its latest job.
SELECT s.*, latest.job_status AS last_job_status
FROM job_schedules s
LEFT JOIN LATERAL (
    SELECT j.status AS job_status
    FROM schedule_executions e LEFT JOIN processing_jobs j ON j.id = e.job_id
    WHERE e.schedule_id = s.id
    ORDER BY e.occurrence_at DESC
    LIMIT 1
) latest ON true
ORDER BY s.enabled DESC, s.next_run_at NULLS LAST, s.id;

-- name: schedule_execution_tally
-- How a schedule's executions ended, by job status ('pruned' when retention removed the job).
SELECT coalesce(j.status, 'pruned') AS job_status, count(*)::int AS n
FROM schedule_executions e LEFT JOIN processing_jobs j ON j.id = e.job_id
WHERE e.schedule_id = %(id)s::bigint
GROUP BY 1 ORDER BY 1;

-- name: schedule_set_enabled
-- Pause (no next run) or resume (from the given next run) a schedule.
UPDATE job_schedules
SET enabled = %(enabled)s::bool,
    next_run_at = CASE WHEN %(enabled)s::bool THEN %(next_run_at)s::timestamptz END,
    updated_at = now()
WHERE id = %(id)s::bigint RETURNING id;

-- name: schedule_delete
-- Remove a schedule and its execution records (jobs it enqueued stay).
DELETE FROM job_schedules WHERE id = %(id)s::bigint RETURNING id;

-- name: schedule_executions
-- A schedule's latest executions with the status of each job.
SELECT e.occurrence_at, e.fired_at, e.fired_by, e.job_id, j.status AS job_status
FROM schedule_executions e LEFT JOIN processing_jobs j ON j.id = e.job_id
WHERE e.schedule_id = %(id)s::bigint
ORDER BY e.occurrence_at DESC
LIMIT %(limit)s::int;

-- name: schedules_due
-- The "due schedules" list a scheduling page shows: enabled schedules whose next run has come.
SELECT id, name, job_type, kind, next_run_at FROM job_schedules
WHERE enabled AND next_run_at <= coalesce(%(now)s::timestamptz, now())
ORDER BY next_run_at;
