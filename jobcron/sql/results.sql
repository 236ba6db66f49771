-- What an application reads back about its own job (jobcron.get_job, jobcron.wait). Values are
-- always parameters.

-- name: result_job
-- One job as its caller sees it: where it stands and, once finished, what it produced.
SELECT id, job_type, status, result, error_message, attempts, retry_count, max_retries,
       created_at, scheduled_at, started_at, completed_at
FROM processing_jobs
WHERE id = %(id)s::uuid;

-- name: result_insights
-- The insights a job stored, in the order they were written.
SELECT id, insight_type, content, confidence_score, created_at
FROM insights
WHERE job_id = %(id)s::uuid
ORDER BY created_at, id;

-- name: wait_listen
-- A wait's connection hears of endings from here on (before its first read of the job, so none is missed).
LISTEN jobcron_events;

-- name: wait_unlisten
-- The wait is over: a connection that listens and is not read holds back the server's notification queue.
UNLISTEN jobcron_events;
