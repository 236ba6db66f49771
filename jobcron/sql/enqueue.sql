-- Enqueueing jobs: one at a time, and in bulk by COPY through a staging table.

-- name: insert_file
-- Register a file row for a job to read.
INSERT INTO files (file_path, original_name, user_id, size_bytes)
VALUES (%(file_path)s, %(original_name)s, %(user_id)s, %(size_bytes)s)
RETURNING id;

-- name: ops_enqueue_one
-- Enqueue one job (by the application, the CLI or a schedule); with a dedup_key already pending or running, return that job instead (created false).
-- Only the columns the enqueuer role may insert (deploy/sql/roles.sql): a schedule's job gets its
-- schedule_id from schedule_execution_link_job.
WITH inserted AS (
    INSERT INTO processing_jobs (job_type, file_id, user_id, business_description, metadata, priority,
                                 scheduled_at, max_retries, timeout_seconds, dedup_key, depends_on,
                                 run_anyway)
    VALUES (%(job_type)s, %(file_id)s, %(user_id)s, %(business_description)s,
            coalesce(%(metadata)s::jsonb, '{}'::jsonb), coalesce(%(priority)s::int, 0),
            coalesce(%(scheduled_at)s::timestamptz, now()), %(max_retries)s, %(timeout_seconds)s,
            %(dedup_key)s, %(depends_on)s::uuid[], coalesce(%(run_anyway)s::bool, false))
    ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL AND status IN ('waiting', 'pending', 'processing')
    DO NOTHING
    RETURNING id
)
SELECT id, true AS created FROM inserted
UNION ALL
SELECT id, false AS created FROM processing_jobs
WHERE %(dedup_key)s::text IS NOT NULL AND dedup_key = %(dedup_key)s::text
  AND status IN ('waiting', 'pending', 'processing') AND NOT EXISTS (SELECT 1 FROM inserted)
LIMIT 1;

-- name: ops_enqueue_stage_create
-- A private staging table for one bulk enqueue (COPY lands here, then one INSERT ... SELECT).
CREATE TEMP TABLE jobcron_enqueue_stage (
    n                    bigint,
    id                   uuid,
    file_path            text,
    original_name        text,
    size_bytes           bigint,
    job_type             text,
    user_id              text,
    metadata             jsonb,
    priority             integer,
    scheduled_at         timestamptz,
    max_retries          integer,
    timeout_seconds      integer,
    dedup_key            text,
    file_id              uuid,
    business_description text,
    depends_on           uuid[],
    run_anyway           boolean
) ON COMMIT DROP;

-- name: ops_enqueue_stage_drop
-- Drop the staging table (the caller's transaction may enqueue again before it commits).
DROP TABLE IF EXISTS jobcron_enqueue_stage;

-- name: ops_enqueue_direct_copy
-- Stream validated jobs straight into the queue (the fast path: no dedup_key, no file to register).
COPY processing_jobs (id, job_type, user_id, metadata, priority, scheduled_at, max_retries,
                      timeout_seconds, dedup_key, file_id, business_description, depends_on, run_anyway)
FROM STDIN;

-- name: ops_enqueue_stage_copy
-- Stream validated rows into the staging table (n keeps the input order).
COPY jobcron_enqueue_stage (n, id, job_type, user_id, metadata, priority, scheduled_at, max_retries,
                            timeout_seconds, dedup_key, file_id, business_description, file_path,
                            original_name, size_bytes, depends_on, run_anyway) FROM STDIN;

-- name: ops_enqueue_stage_files
-- Register the files rows of staged jobs that named a file path (before the jobs: they reference them).
INSERT INTO files (id, file_path, original_name, user_id, size_bytes)
SELECT file_id, file_path, original_name, user_id, size_bytes
FROM jobcron_enqueue_stage
WHERE file_path IS NOT NULL;

-- name: ops_enqueue_from_stage
-- Move staged rows into the queue in input order; a dedup_key already pending or running (or repeated in the batch) is skipped.
INSERT INTO processing_jobs (id, job_type, user_id, metadata, priority, scheduled_at, max_retries,
                             timeout_seconds, dedup_key, file_id, business_description, depends_on,
                             run_anyway)
SELECT id, job_type, user_id, metadata, priority, scheduled_at, max_retries, timeout_seconds, dedup_key,
       file_id, business_description, depends_on, coalesce(run_anyway, false)
FROM jobcron_enqueue_stage
ORDER BY n
ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL AND status IN ('waiting', 'pending', 'processing')
DO NOTHING;

-- name: ops_enqueue_orphan_files
-- Remove files rows registered for staged jobs that a dedup_key skipped.
DELETE FROM files f
USING jobcron_enqueue_stage s
WHERE f.id = s.file_id AND s.file_path IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM processing_jobs j WHERE j.file_id = f.id);
