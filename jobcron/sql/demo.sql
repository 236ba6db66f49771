-- The first-run demo: reuse sample file rows, read back what the jobs found.

-- name: demo_file_by_path
-- The newest files row for a path, so repeated demo runs reuse their file rows.
SELECT id FROM files WHERE file_path = %(file_path)s ORDER BY created_at DESC LIMIT 1;

-- name: demo_job_outcomes
-- Status, timing, result and error of the given jobs, with their file's name.
SELECT j.id, j.status, j.attempts, j.error_message, j.result, f.original_name,
       extract(epoch FROM j.completed_at - j.started_at)::float8 AS seconds
FROM processing_jobs j
LEFT JOIN files f ON f.id = j.file_id
WHERE j.id = ANY(%(ids)s::uuid[]);

-- name: demo_insights
-- The insight rows the given jobs wrote, most confident first.
SELECT job_id, insight_type, content, confidence_score
FROM insights
WHERE job_id = ANY(%(ids)s::uuid[])
ORDER BY job_id, confidence_score DESC NULLS LAST, insight_type, id;
