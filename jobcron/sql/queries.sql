-- Runtime queries of the daemon and the CLI. Values are always parameters.
-- Time is a parameter where tests need to move it: coalesce(%(now)s::timestamptz, now()).

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

-- name: claim_job_fifo
-- Claim the oldest due pending job (strict FIFO), passing over paused types and users at their limit.
WITH fast AS (
    -- fast path: the first due jobs in queue order, read through the pending index. The filters
    -- run on these few rows only, so the plan is the same whatever the parameters (a generic plan,
    -- prepared once). Ordering by the head's own columns keeps the rows streaming, so the per-user
    -- test runs only on the rows actually looked at.
    SELECT j.id, j.user_id
    FROM (SELECT h.id, h.scheduled_at, h.seq
          FROM processing_jobs h
          WHERE h.status = 'pending' AND h.scheduled_at <= now()
          ORDER BY h.scheduled_at, h.seq
          LIMIT 32) AS head
    JOIN processing_jobs j ON j.id = head.id
    WHERE j.status = 'pending'
      AND NOT j.cancel_requested
      AND j.job_type <> ALL (%(paused_types)s::text[])
      -- a user at the limit is passed over (one probe of the running-jobs index), and so is a user
      -- another daemon is claiming for at this instant (a transaction-scoped advisory lock per
      -- user): racing claims for one user's last slot would only collide on the slot index, wait
      -- for each other and start over, while other users' jobs stood waiting
      AND CASE WHEN j.user_id IS NULL OR %(user_limit)s::int IS NULL THEN true
               WHEN (SELECT count(*) FROM processing_jobs r
                     WHERE r.status = 'processing' AND r.user_id = j.user_id) >= %(user_limit)s::int THEN false
               ELSE pg_try_advisory_xact_lock(4242003, hashtext(j.user_id))
          END
    ORDER BY head.scheduled_at, head.seq
    LIMIT 1
    FOR UPDATE OF j SKIP LOCKED
), deep AS (
    -- deep path, run only when the fast path found nothing (busy users, paused types, cancels or
    -- other claimers fill the head): one head job per user with a free slot, found by a loose scan
    -- that visits each user once, so a user with 10,000 queued jobs costs one probe, not 10,000
    WITH RECURSIVE users AS (
        SELECT min(p.user_id) AS user_id FROM processing_jobs p WHERE p.status = 'pending'
        UNION ALL
        SELECT (SELECT min(p.user_id) FROM processing_jobs p
                WHERE p.status = 'pending' AND p.user_id > u.user_id)
        FROM users u
        WHERE u.user_id IS NOT NULL
    ), heads AS (
        SELECT x.*
        FROM users u
        CROSS JOIN LATERAL (
            SELECT p.id, p.scheduled_at, p.seq
            FROM processing_jobs p
            -- no parameter in this scan: an unknown array parameter makes a generic plan expect
            -- almost no matching row and pick a sequential scan; paused types are tested below
            WHERE p.status = 'pending' AND p.user_id = u.user_id AND p.scheduled_at <= now()
              AND NOT p.cancel_requested
              -- a paused type is passed over here, not only at the lock step: a user whose next
              -- job is paused must still get their other jobs (the pauses are read once per
              -- statement; a filter, not a join, so the scan still streams in queue order; inside
              -- a CASE the planner gives it a neutral estimate and keeps the ordered index scan)
              AND CASE WHEN p.job_type = ANY (ARRAY(SELECT jp.job_type FROM job_pauses jp)) THEN false ELSE true END
            ORDER BY p.user_id, p.scheduled_at, p.seq
            LIMIT 1) AS x
        WHERE u.user_id IS NOT NULL
          AND (%(user_limit)s::int IS NULL
               OR (SELECT count(*) FROM processing_jobs r
                   WHERE r.status = 'processing' AND r.user_id = u.user_id) < %(user_limit)s::int)
        UNION ALL
        -- jobs without a user are never limited; a few, in case others are being claimed right now
        SELECT x.*
        FROM (SELECT p.id, p.scheduled_at, p.seq
              FROM processing_jobs p
              WHERE p.status = 'pending' AND p.user_id IS NULL AND p.scheduled_at <= now()
                AND NOT p.cancel_requested
                AND CASE WHEN p.job_type = ANY (ARRAY(SELECT jp.job_type FROM job_pauses jp)) THEN false ELSE true END
              -- a paused type is passed over here, not only at the lock step: a user whose next
              -- job is paused must still get their other jobs (the pauses are read once per
              -- statement; a filter, not a join, so the scan still streams in queue order; inside
              -- a CASE the planner gives it a neutral estimate and keeps the ordered index scan)
              AND CASE WHEN p.job_type = ANY (ARRAY(SELECT jp.job_type FROM job_pauses jp)) THEN false ELSE true END
              -- led by user_id so that the per-user index serves it: its NULL group is in queue
              -- order, whereas the queue index would walk past every busy user's job first
              ORDER BY p.user_id, p.scheduled_at, p.seq
              LIMIT 8) AS x
    )
    SELECT j.id, j.user_id
    -- the heads, best first, as an array: the lock step is then primary-key probes in that order,
    -- never a walk along the queue index, whatever the planner guesses about the heads
    FROM unnest(ARRAY(SELECT heads.id FROM heads ORDER BY heads.scheduled_at, heads.seq))
             WITH ORDINALITY AS best(id, rank)
    JOIN processing_jobs j ON j.id = best.id
    WHERE j.status = 'pending'
      AND CASE WHEN j.job_type = ANY (%(paused_types)s::text[]) THEN false
               WHEN j.user_id IS NULL OR %(user_limit)s::int IS NULL THEN true
               ELSE pg_try_advisory_xact_lock(4242003, hashtext(j.user_id))
          END
    ORDER BY best.rank
    LIMIT 1
    FOR UPDATE OF j SKIP LOCKED
), candidate AS (
    -- the deep path is pulled only if the fast path returned no row
    (SELECT id, user_id FROM fast) UNION ALL (SELECT id, user_id FROM deep) LIMIT 1
), slotted AS (
    -- the lowest free slot number of the job's user; NULL for jobs that are not limited
    SELECT c.id,
           CASE WHEN c.user_id IS NULL OR %(user_limit)s::int IS NULL THEN NULL
                ELSE (SELECT min(s.n) FROM generate_series(1, %(user_limit)s::int) AS s(n)
                      WHERE NOT EXISTS (SELECT 1 FROM processing_jobs r
                                        WHERE r.status = 'processing' AND r.user_id = c.user_id
                                          AND r.user_slot = s.n))
           END AS slot,
           c.user_id IS NOT NULL AND %(user_limit)s::int IS NOT NULL AS limited
    FROM candidate c
)
UPDATE processing_jobs j
SET status = 'processing',
    -- capped: a row another application wrote with attempts = 2^31-1 must not make every claim fail
    attempts = least(j.attempts, 2147483646) + 1,
    started_at = now(),
    locked_by = %(worker_id)s,
    locked_at = now(),
    heartbeat_at = now(),
    lease_token = gen_random_uuid(),
    user_slot = s.slot,
    updated_at = now()
FROM slotted s
-- a limited job with no free slot (a racing claim took it) is left for the next cycle; the unique
-- index on (user_id, user_slot) over running jobs is what makes the limit hold whatever the race
WHERE j.id = s.id AND (NOT s.limited OR s.slot IS NOT NULL)
-- metadata as text and created_at only when Python can hold it: this row is committed as ours, so
-- a value the client cannot load (JSON nested past the parser's depth, an infinite or year-10000
-- timestamp from another application) must fail the job, not the daemon
RETURNING j.id, j.job_type, j.file_id, j.user_id, j.business_description, j.metadata::text AS metadata,
          j.retry_count, j.max_retries, j.attempts, j.timeout_seconds, j.lease_token,
          CASE WHEN j.created_at BETWEEN '0001-01-02' AND '9999-12-30' THEN j.created_at END AS created_at,
          j.started_at, j.priority, j.cancel_requested,
          octet_length(j.metadata::text) AS metadata_bytes;

-- name: claim_job_priority
-- Claim the highest-priority due pending job, FIFO within a priority, passing over paused types and users at their limit.
WITH fast AS (
    -- fast path: the first due jobs in queue order, read through the pending index. The filters
    -- run on these few rows only, so the plan is the same whatever the parameters (a generic plan,
    -- prepared once). Ordering by the head's own columns keeps the rows streaming, so the per-user
    -- test runs only on the rows actually looked at.
    SELECT j.id, j.user_id
    FROM (SELECT h.id, h.priority, h.scheduled_at, h.seq
          FROM processing_jobs h
          WHERE h.status = 'pending' AND h.scheduled_at <= now()
          ORDER BY h.priority DESC, h.scheduled_at, h.seq
          LIMIT 32) AS head
    JOIN processing_jobs j ON j.id = head.id
    WHERE j.status = 'pending'
      AND NOT j.cancel_requested
      AND j.job_type <> ALL (%(paused_types)s::text[])
      -- a user at the limit is passed over (one probe of the running-jobs index), and so is a user
      -- another daemon is claiming for at this instant (a transaction-scoped advisory lock per
      -- user): racing claims for one user's last slot would only collide on the slot index, wait
      -- for each other and start over, while other users' jobs stood waiting
      AND CASE WHEN j.user_id IS NULL OR %(user_limit)s::int IS NULL THEN true
               WHEN (SELECT count(*) FROM processing_jobs r
                     WHERE r.status = 'processing' AND r.user_id = j.user_id) >= %(user_limit)s::int THEN false
               ELSE pg_try_advisory_xact_lock(4242003, hashtext(j.user_id))
          END
    ORDER BY head.priority DESC, head.scheduled_at, head.seq
    LIMIT 1
    FOR UPDATE OF j SKIP LOCKED
), deep AS (
    -- deep path, run only when the fast path found nothing (busy users, paused types, cancels or
    -- other claimers fill the head): one head job per user with a free slot, found by a loose scan
    -- that visits each user once, so a user with 10,000 queued jobs costs one probe, not 10,000
    WITH RECURSIVE users AS (
        SELECT min(p.user_id) AS user_id FROM processing_jobs p WHERE p.status = 'pending'
        UNION ALL
        SELECT (SELECT min(p.user_id) FROM processing_jobs p
                WHERE p.status = 'pending' AND p.user_id > u.user_id)
        FROM users u
        WHERE u.user_id IS NOT NULL
    ), heads AS (
        SELECT x.*
        FROM users u
        CROSS JOIN LATERAL (
            SELECT p.id, p.priority, p.scheduled_at, p.seq
            FROM processing_jobs p
            -- no parameter in this scan: an unknown array parameter makes a generic plan expect
            -- almost no matching row and pick a sequential scan; paused types are tested below
            WHERE p.status = 'pending' AND p.user_id = u.user_id AND p.scheduled_at <= now()
              AND NOT p.cancel_requested
              -- a paused type is passed over here, not only at the lock step: a user whose next
              -- job is paused must still get their other jobs (the pauses are read once per
              -- statement; a filter, not a join, so the scan still streams in queue order; inside
              -- a CASE the planner gives it a neutral estimate and keeps the ordered index scan)
              AND CASE WHEN p.job_type = ANY (ARRAY(SELECT jp.job_type FROM job_pauses jp)) THEN false ELSE true END
            ORDER BY p.user_id, p.priority DESC, p.scheduled_at, p.seq
            LIMIT 1) AS x
        WHERE u.user_id IS NOT NULL
          AND (%(user_limit)s::int IS NULL
               OR (SELECT count(*) FROM processing_jobs r
                   WHERE r.status = 'processing' AND r.user_id = u.user_id) < %(user_limit)s::int)
        UNION ALL
        -- jobs without a user are never limited; a few, in case others are being claimed right now
        SELECT x.*
        FROM (SELECT p.id, p.priority, p.scheduled_at, p.seq
              FROM processing_jobs p
              WHERE p.status = 'pending' AND p.user_id IS NULL AND p.scheduled_at <= now()
                AND NOT p.cancel_requested
                AND CASE WHEN p.job_type = ANY (ARRAY(SELECT jp.job_type FROM job_pauses jp)) THEN false ELSE true END
              -- a paused type is passed over here, not only at the lock step: a user whose next
              -- job is paused must still get their other jobs (the pauses are read once per
              -- statement; a filter, not a join, so the scan still streams in queue order; inside
              -- a CASE the planner gives it a neutral estimate and keeps the ordered index scan)
              AND CASE WHEN p.job_type = ANY (ARRAY(SELECT jp.job_type FROM job_pauses jp)) THEN false ELSE true END
              -- led by user_id so that the per-user index serves it: its NULL group is in queue
              -- order, whereas the queue index would walk past every busy user's job first
              ORDER BY p.user_id, p.priority DESC, p.scheduled_at, p.seq
              LIMIT 8) AS x
    )
    SELECT j.id, j.user_id
    -- the heads, best first, as an array: the lock step is then primary-key probes in that order,
    -- never a walk along the queue index, whatever the planner guesses about the heads
    FROM unnest(ARRAY(SELECT heads.id FROM heads ORDER BY heads.priority DESC, heads.scheduled_at, heads.seq))
             WITH ORDINALITY AS best(id, rank)
    JOIN processing_jobs j ON j.id = best.id
    WHERE j.status = 'pending'
      AND CASE WHEN j.job_type = ANY (%(paused_types)s::text[]) THEN false
               WHEN j.user_id IS NULL OR %(user_limit)s::int IS NULL THEN true
               ELSE pg_try_advisory_xact_lock(4242003, hashtext(j.user_id))
          END
    ORDER BY best.rank
    LIMIT 1
    FOR UPDATE OF j SKIP LOCKED
), candidate AS (
    -- the deep path is pulled only if the fast path returned no row
    (SELECT id, user_id FROM fast) UNION ALL (SELECT id, user_id FROM deep) LIMIT 1
), slotted AS (
    -- the lowest free slot number of the job's user; NULL for jobs that are not limited
    SELECT c.id,
           CASE WHEN c.user_id IS NULL OR %(user_limit)s::int IS NULL THEN NULL
                ELSE (SELECT min(s.n) FROM generate_series(1, %(user_limit)s::int) AS s(n)
                      WHERE NOT EXISTS (SELECT 1 FROM processing_jobs r
                                        WHERE r.status = 'processing' AND r.user_id = c.user_id
                                          AND r.user_slot = s.n))
           END AS slot,
           c.user_id IS NOT NULL AND %(user_limit)s::int IS NOT NULL AS limited
    FROM candidate c
)
UPDATE processing_jobs j
SET status = 'processing',
    -- capped: a row another application wrote with attempts = 2^31-1 must not make every claim fail
    attempts = least(j.attempts, 2147483646) + 1,
    started_at = now(),
    locked_by = %(worker_id)s,
    locked_at = now(),
    heartbeat_at = now(),
    lease_token = gen_random_uuid(),
    user_slot = s.slot,
    updated_at = now()
FROM slotted s
-- a limited job with no free slot (a racing claim took it) is left for the next cycle; the unique
-- index on (user_id, user_slot) over running jobs is what makes the limit hold whatever the race
WHERE j.id = s.id AND (NOT s.limited OR s.slot IS NOT NULL)
-- metadata as text and created_at only when Python can hold it: this row is committed as ours, so
-- a value the client cannot load (JSON nested past the parser's depth, an infinite or year-10000
-- timestamp from another application) must fail the job, not the daemon
RETURNING j.id, j.job_type, j.file_id, j.user_id, j.business_description, j.metadata::text AS metadata,
          j.retry_count, j.max_retries, j.attempts, j.timeout_seconds, j.lease_token,
          CASE WHEN j.created_at BETWEEN '0001-01-02' AND '9999-12-30' THEN j.created_at END AS created_at,
          j.started_at, j.priority, j.cancel_requested,
          octet_length(j.metadata::text) AS metadata_bytes;

-- name: claim_commit_async
-- Let this transaction (a claim on its own) commit without waiting for the WAL flush; a claim lost in a crash only leaves its job pending.
SELECT set_config('synchronous_commit', 'off', true);

-- name: finish_job
-- Record an attempt's outcome (completed, failed, cancelled, or pending for a retry) if this worker still holds the lease.
WITH done AS (
    UPDATE processing_jobs
    -- a job going back to pending while a cancel was requested is cancelled instead: claims pass
    -- over cancel-requested rows, so it would otherwise wait there for good
    SET status = CASE WHEN %(status)s::text = 'pending' AND cancel_requested THEN 'cancelled'
                      ELSE %(status)s::text END,
        completed_at = CASE WHEN %(status)s::text = 'pending' AND NOT cancel_requested THEN NULL
                            ELSE now() END,
        scheduled_at = CASE WHEN %(status)s::text = 'pending'
                            THEN now() + make_interval(secs => %(delay_seconds)s::float8)
                            ELSE scheduled_at END,
        retry_count = retry_count + %(retry_increment)s::int,
        -- an attempt interrupted by shutdown is not charged
        attempts = attempts - %(uncharge)s::int,
        result = %(result)s::jsonb,
        error_message = coalesce(%(error_message)s::text, error_message),
        errors = CASE WHEN %(error)s::jsonb IS NULL THEN errors
                      ELSE errors || jsonb_build_array(%(error)s::jsonb) END,
        heartbeat_at = NULL,
        user_slot = NULL,
        updated_at = now()
    WHERE id = %(id)s::uuid AND lease_token = %(lease_token)s::uuid AND status = 'processing'
    RETURNING id, file_id, status, user_id
), stored AS (
    -- insights are written only when the lease-guarded update above succeeded: exactly once
    INSERT INTO insights (job_id, file_id, insight_type, content, confidence_score)
    SELECT d.id, d.file_id, x.insight_type, x.content, x.confidence_score
    FROM done d,
         jsonb_to_recordset(coalesce(%(insights)s::jsonb, '[]'::jsonb))
             AS x(insight_type text, content jsonb, confidence_score numeric)
    WHERE d.status = 'completed'
    RETURNING 1
), file_marked AS (
    UPDATE files f
    SET status = CASE d.status WHEN 'completed' THEN 'analysed'
                               WHEN 'failed' THEN 'failed'
                               ELSE 'uploaded' END,
        updated_at = now()
    FROM done d
    WHERE f.id = d.file_id AND d.status <> 'pending'
    RETURNING 1
), slot_freed AS (
    -- the user's next job became claimable: wake idle daemons now, not at their next poll
    SELECT pg_notify('jobcron_jobs', 'slot')
    FROM done d
    WHERE d.user_id IS NOT NULL
      AND EXISTS (SELECT 1 FROM processing_jobs p WHERE p.status = 'pending' AND p.user_id = d.user_id)
)
SELECT (SELECT count(*) FROM done) AS recorded,
       (SELECT count(*) FROM stored) AS insights_stored,
       (SELECT count(*) FROM slot_freed) AS woken;

-- name: mark_file_processing
-- Mark a claimed job's file row as being processed.
UPDATE files SET status = 'processing', updated_at = now() WHERE id = %(file_id)s AND status <> 'processing';

-- name: job_lease_state
-- Where a job stands relative to a lease: used after a write whose outcome is unknown.
SELECT status, lease_token = %(lease_token)s AS ours FROM processing_jobs WHERE id = %(id)s;

-- name: get_file
-- The file row a job points at.
SELECT id, file_path, original_name, status FROM files WHERE id = %(id)s;

-- name: heartbeat_job
-- Refresh the running job's heartbeat; no row means the lease was lost. cancel_force: the latest cancel request said "force".
UPDATE processing_jobs SET heartbeat_at = now()
WHERE id = %(id)s AND lease_token = %(lease_token)s AND status = 'processing'
RETURNING cancel_requested,
          -- the cancel command records each request in errors; a daemon that missed the NOTIFY sees "force" here
          CASE WHEN cancel_requested
               THEN coalesce((SELECT (e.value ->> 'force')::bool
                              FROM jsonb_array_elements(errors) WITH ORDINALITY AS e(value, n)
                              WHERE e.value ->> 'type' = 'CancelRequested'
                              ORDER BY e.n DESC LIMIT 1), false)
               ELSE false END AS cancel_force;

-- name: release_worker_jobs
-- Put back, uncharged, jobs locked by this worker that it does not hold (a claim whose commit was not seen); keep_ids: the jobs it holds (running, being recorded, claimed next).
UPDATE processing_jobs
-- a cancel requested meanwhile is honoured: claims pass over cancel-requested rows, so putting one
-- back as pending would leave it there for good
SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'pending' END,
    completed_at = CASE WHEN cancel_requested THEN now() END,
    attempts = greatest(attempts - 1, 0), heartbeat_at = NULL,
    -- the lease is void: a late write of this worker must find nothing that looks like its own
    lease_token = NULL,
    user_slot = NULL, updated_at = now()
WHERE status = 'processing' AND locked_by = %(worker_id)s
  AND NOT (id = ANY (%(keep_ids)s::uuid[]))
RETURNING id, user_id;

-- name: worker_id_lock
-- Hold a worker id for this session: two live daemons under one id would rescue and release each other's jobs.
SELECT pg_try_advisory_lock(4242004, hashtext(%(worker_id)s::text)) AS held;

-- name: rescue_stale_jobs
-- Jobs whose worker stopped heartbeating, or that ran past the ceiling: back to pending (an attempt) or failed.
WITH stale AS (
    -- FOR UPDATE returns the newest version of each row it locks: everything the decision needs is
    -- taken from here, never re-read at the statement's snapshot (a cancel committed meanwhile counts)
    SELECT id, locked_by, heartbeat_at, attempts, retry_count, max_retries, cancel_requested,
           heartbeat_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(stale_after_seconds)s::float8)
               OR locked_by = %(restarted_worker)s::text AS lost,
           started_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(max_processing_seconds)s::float8)
               AS overdue
    FROM processing_jobs
    WHERE status = 'processing'
      AND (heartbeat_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(stale_after_seconds)s::float8)
           OR started_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(max_processing_seconds)s::float8)
           -- a daemon starting under the id of one that died (systemd restarts, stable ids) rescues
           -- that run's jobs at once and charges them: a job that crashes its daemon must use up
           -- its attempts rather than crash it forever
           OR locked_by = %(restarted_worker)s::text)
    FOR UPDATE SKIP LOCKED
), decided AS (
    SELECT s.*,
           s.overdue OR s.cancel_requested OR NOT %(retry_failed_jobs)s::bool
               OR s.retry_count >= coalesce(s.max_retries, %(default_max_retries)s::int) AS give_up
    FROM stale s
)
UPDATE processing_jobs j
SET status = CASE WHEN d.give_up AND d.cancel_requested THEN 'cancelled'
                  WHEN d.give_up THEN 'failed' ELSE 'pending' END,
    completed_at = CASE WHEN d.give_up THEN coalesce(%(now)s::timestamptz, now()) ELSE NULL END,
    retry_count = j.retry_count + CASE WHEN d.give_up THEN 0 ELSE 1 END,
    scheduled_at = CASE WHEN d.give_up THEN j.scheduled_at ELSE coalesce(%(now)s::timestamptz, now()) END,
    error_message = CASE WHEN d.overdue
                         THEN 'exceeded max_processing_time (' || %(max_processing_seconds)s::text || ' s) on worker ' || j.locked_by
                         ELSE 'worker lost: no heartbeat from ' || j.locked_by || ' since ' || j.heartbeat_at::text END,
    errors = j.errors || jsonb_build_array(jsonb_build_object(
        'attempt', j.attempts,
        'type', CASE WHEN d.overdue THEN 'MaxProcessingTimeExceeded' ELSE 'WorkerLost' END,
        'message', CASE WHEN d.overdue
                        THEN 'exceeded max_processing_time (' || %(max_processing_seconds)s::text || ' s)'
                        ELSE 'worker lost: no heartbeat since ' || j.heartbeat_at::text END,
        'worker', j.locked_by,
        'rescued_by', %(worker_id)s::text,
        'at', coalesce(%(now)s::timestamptz, now()))),
    heartbeat_at = NULL,
    -- the lost worker's lease is void: its late write finds nothing that looks like its own
    lease_token = NULL,
    user_slot = NULL,
    updated_at = now()
FROM decided d
WHERE j.id = d.id
RETURNING j.id, j.status, d.locked_by, d.overdue, j.user_id;

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

-- name: paused_types
-- Job types whose claiming is paused ('*' pauses all).
SELECT job_type FROM job_pauses ORDER BY job_type;

-- name: insert_job
-- Enqueue one job; a duplicate dedup_key of a job still to run returns nothing.
INSERT INTO processing_jobs (job_type, file_id, user_id, business_description, metadata, priority,
                             scheduled_at, max_retries, timeout_seconds, dedup_key, schedule_id)
VALUES (%(job_type)s, %(file_id)s, %(user_id)s, %(business_description)s,
        coalesce(%(metadata)s::jsonb, '{}'::jsonb), coalesce(%(priority)s, 0),
        coalesce(%(scheduled_at)s::timestamptz, now()), %(max_retries)s, %(timeout_seconds)s,
        %(dedup_key)s, %(schedule_id)s)
ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL AND status IN ('pending', 'processing') DO NOTHING
RETURNING id;

-- name: insert_file
-- Register a file row for a job to read.
INSERT INTO files (file_path, original_name, user_id, size_bytes)
VALUES (%(file_path)s, %(original_name)s, %(user_id)s, %(size_bytes)s)
RETURNING id;

-- name: get_job
-- Everything about one job.
SELECT id, file_id, job_type, business_description, status, metadata, retry_count, max_retries,
       attempts, created_at, started_at, completed_at, updated_at, error_message, user_id, priority,
       scheduled_at, locked_by, locked_at, heartbeat_at, timeout_seconds, cancel_requested, result,
       errors, dedup_key, schedule_id
FROM processing_jobs WHERE id = %(id)s;

-- name: count_by_status
-- How many jobs are in each status.
SELECT status, count(*) AS n FROM processing_jobs GROUP BY status;

-- name: next_due_in
-- Seconds until the earliest pending job scheduled in the future becomes due (NULL if none).
-- epochs subtracted as numbers: a row scheduled at 'infinity' gives Infinity, where subtracting the
-- timestamps would raise an error in every idle daemon
SELECT extract(epoch FROM min(scheduled_at))::float8 - extract(epoch FROM now())::float8 AS seconds
FROM processing_jobs WHERE status = 'pending' AND scheduled_at > now();

-- name: notify_jobs
-- Wake every listening daemon (jobs became claimable without an INSERT, e.g. rescued).
SELECT pg_notify('jobcron_jobs', %(reason)s::text);

-- name: user_active_jobs
-- A user's running and pending jobs (seed 000's get_user_active_jobs).
SELECT id, job_type, status, priority, scheduled_at, started_at, locked_by
FROM processing_jobs
WHERE user_id = %(user_id)s::text AND status IN ('pending', 'processing')
ORDER BY status DESC, scheduled_at, seq
LIMIT %(limit)s::int;

-- name: users_with_pending_jobs
-- Users with pending jobs and how many run now (seed 000's get_all_users_with_pending_jobs).
SELECT user_id,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'processing') AS running
FROM processing_jobs
WHERE user_id IS NOT NULL AND status IN ('pending', 'processing')
GROUP BY user_id
HAVING count(*) FILTER (WHERE status = 'pending') > 0
ORDER BY pending DESC, user_id
LIMIT %(limit)s::int;

-- name: prune_finished_jobs
-- Delete one batch of finished jobs older than the retention; one daemon at a time (advisory lock). Insights keep their rows.
WITH lock AS (
    SELECT pg_try_advisory_xact_lock(4242002) AS got
), victims AS (
    SELECT id FROM processing_jobs
    WHERE status IN ('completed', 'failed', 'cancelled')
      AND completed_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(keep_seconds)s::float8)
      AND (SELECT got FROM lock)
    ORDER BY completed_at
    LIMIT %(batch)s::int
    FOR UPDATE SKIP LOCKED
)
DELETE FROM processing_jobs j USING victims v WHERE j.id = v.id
RETURNING j.id;

-- name: pause_all_if_absent
-- auto_start_processing false: a cold start (no other daemon alive) pauses claiming until `job_cron resume`; a daemon restarting into a running fleet leaves it be.
INSERT INTO job_pauses (job_type, paused_by)
SELECT '*', %(worker_id)s::text
WHERE NOT EXISTS (SELECT 1 FROM job_workers w
                  WHERE w.id <> %(worker_id)s::text
                    AND w.last_seen_at >= now() - make_interval(secs => %(alive_within_seconds)s::float8))
ON CONFLICT (job_type) DO NOTHING
RETURNING job_type;
