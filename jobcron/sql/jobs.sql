-- The daemon's job cycle: claim, record, heartbeat, release, rescue, wake-ups and retention.
-- Values are always parameters. Time is a parameter where tests need to move it:
-- coalesce(%(now)s::timestamptz, now()).

-- fragment: user_jobs_ahead
-- The jobs of me's user ahead of it in queue order that hold it back (alias me: the job judged): pending, not parked, due, of a type not paused, at most the limit of them; sorted as the user queue's index is, so that this index is the one read.
SELECT 1 FROM processing_jobs a
WHERE a.status = 'pending' AND NOT a.parked
  AND a.user_id = me.user_id AND a.scheduled_at <= now()
  AND ROW(/*KEY(a)*/) < ROW(/*KEY(me)*/)
  AND CASE WHEN a.job_type = ANY (ARRAY(SELECT jp.job_type FROM job_pauses jp)) THEN false ELSE true END
ORDER BY a.user_id, /*KEY(a)*/
LIMIT %(user_limit)s::int

-- name: claim_job
-- Claim the first due pending job in queue order that may run now (type not paused, user below the limit); park the head's blocked jobs when none may.
-- Written once for both queue orders (jobcron/sql expands it): /*ORDER(x)*/ is the order's sort key of
-- x, /*KEY(x)*/ the same key as values that compare in queue order.
-- Every read of processing_jobs below is an index probe with a condition and no join: a generic plan
-- is made once, often while the queue is empty, and must stay this plan whatever the statistics say.
WITH win AS (
    -- the window: the first 32 due jobs in queue order that no other daemon holds, read through the
    -- claim's index (finished and parked jobs are not in it, so its cost does not grow with them) and
    -- locked as they are read. A CTE runs only as far as its readers read: the pick below reads one
    -- row at a time and stops at its pick, so a job is judged, and locked, only when every job before
    -- it was passed over.
    SELECT w.*,
           CASE WHEN w.job_type = ANY (ARRAY(SELECT jp.job_type FROM job_pauses jp)) THEN 'paused'
                WHEN w.running IS NULL OR w.running + w.ahead < %(user_limit)s::int THEN 'runnable'
                ELSE 'blocked' END AS verdict
    FROM (SELECT me.id, me.user_id, me.job_type, me.priority, me.scheduled_at, me.seq,
                 -- a limited job may run while its user's running jobs and its user's jobs ahead of it
                 -- in the queue are fewer than the limit: every daemon judging on the same snapshot
                 -- picks among the same first jobs of each user, so racing claims take different jobs
                 -- and different slots instead of colliding on one
                 CASE WHEN me.user_id IS NOT NULL AND %(user_limit)s::int IS NOT NULL THEN
                     (SELECT count(*) FROM processing_jobs r
                      WHERE r.status = 'processing' AND r.user_id = me.user_id)
                 END AS running,
                 CASE WHEN me.user_id IS NOT NULL AND %(user_limit)s::int IS NOT NULL THEN
                     -- (the jobs ahead are in the window too, so this reads 32 entries at the most)
                     (SELECT count(*) FROM (/*@user_jobs_ahead*/) AS x)
                 END AS ahead
          FROM processing_jobs me
          WHERE me.status = 'pending' AND NOT me.parked AND me.scheduled_at <= now()
          ORDER BY /*ORDER(me)*/
          LIMIT 32
          FOR UPDATE SKIP LOCKED) AS w
), picked AS (
    -- the first runnable job of the window. No ORDER BY: a CTE is read in the order it made its rows,
    -- which is queue order, and a sort here would read (and lock) the whole window first
    SELECT w.id, w.user_id, w.ahead
    FROM win w
    WHERE w.verdict = 'runnable'
    LIMIT 1
), parked AS (
    -- nothing in the window may run: its blocked jobs are parked (out of the claim's indexes) so that
    -- the next claim looks further, and the job that ends a user's run or a pause brings them back
    -- (triggers). Each reason is confirmed under a share lock first: a running job of that user, or a
    -- job of that user ahead of it, that ends (or is claimed) at this instant is either seen changed
    -- here (and nothing is parked), or waits for this statement and then unparks. Counting the jobs
    -- ahead from the snapshot alone parked a job behind one that was claimed and ended meanwhile, and
    -- no trigger was left to bring it back.
    UPDATE processing_jobs
    SET parked = true
    WHERE id = ANY (ARRAY(
        SELECT me.id
        FROM win me
        WHERE NOT EXISTS (SELECT 1 FROM picked)
          AND me.verdict <> 'runnable'
          AND CASE WHEN me.verdict = 'paused'
                   THEN EXISTS (SELECT 1 FROM job_pauses jp WHERE jp.job_type = me.job_type
                                FOR SHARE SKIP LOCKED)
                   ELSE (SELECT count(*) FROM (SELECT 1 FROM processing_jobs r
                                               WHERE r.status = 'processing' AND r.user_id = me.user_id
                                               FOR SHARE SKIP LOCKED) AS held)
                        + (SELECT count(*) FROM (/*@user_jobs_ahead*/ FOR SHARE SKIP LOCKED) AS held_ahead)
                        >= %(user_limit)s::int
              END))
    RETURNING id
), slotted AS MATERIALIZED (
    -- the job's slot: the first free slot number of its user after those its jobs ahead will take;
    -- NULL for jobs that are not limited
    SELECT c.id,
           CASE WHEN c.user_id IS NULL OR %(user_limit)s::int IS NULL THEN NULL
                ELSE (SELECT s.n FROM generate_series(1, %(user_limit)s::int) AS s(n)
                      WHERE NOT EXISTS (SELECT 1 FROM processing_jobs r
                                        WHERE r.status = 'processing' AND r.user_id = c.user_id
                                          AND r.user_slot = s.n)
                      ORDER BY s.n
                      OFFSET c.ahead LIMIT 1)
           END AS slot,
           c.user_id IS NOT NULL AND %(user_limit)s::int IS NOT NULL AS limited
    FROM picked c
), claimed AS (
    UPDATE processing_jobs j
    SET status = 'processing',
        -- capped: a row another application wrote with attempts = 2^31-1 must not make every claim fail
        attempts = least(j.attempts, 2147483646) + 1,
        -- the statement's own time, not its transaction's: a claim that shares a transaction with the
        -- record of the job before it must not seem to start before that record (per-user intervals
        -- measured from these columns never overlap past the limit)
        started_at = statement_timestamp(),
        locked_by = %(worker_id)s,
        locked_at = statement_timestamp(),
        heartbeat_at = now(),
        lease_token = gen_random_uuid(),
        user_slot = (SELECT s.slot FROM slotted s),
        updated_at = now()
    -- a limited job with no free slot (a racing claim took it) is left for the next cycle; the unique
    -- index on (user_id, user_slot) over running jobs is what makes the limit hold whatever the race
    WHERE j.id = (SELECT s.id FROM slotted s WHERE NOT s.limited OR s.slot IS NOT NULL)
    -- metadata only when it is within the limit (a larger value is never shipped to the daemon: the
    -- job fails on its size), and created_at only when Python can hold it: this row is committed as
    -- ours, so a value the client cannot load (JSON nested past the parser's depth, an infinite or
    -- year-10000 timestamp from another application) must fail the job, not the daemon
    RETURNING j.id, j.job_type, j.file_id, j.user_id, j.business_description,
              CASE WHEN octet_length(j.metadata::text) <= %(max_metadata_bytes)s::int
                   THEN j.metadata::text END AS metadata,
              j.retry_count, j.max_retries, j.attempts, j.timeout_seconds, j.lease_token,
              CASE WHEN j.created_at BETWEEN '0001-01-02' AND '9999-12-30' THEN j.created_at END AS created_at,
              j.started_at, j.priority, j.cancel_requested,
              octet_length(j.metadata::text) AS metadata_bytes
)
-- always one row: the claimed job (NULL columns when none) and how many jobs were parked
SELECT c.*, (SELECT count(*) FROM parked) AS parked
FROM (VALUES (0)) AS one (n)
LEFT JOIN claimed c ON true;

-- name: unpark_runnable
-- Parked jobs that may run now (type not paused, user below the limit): back into the claim's indexes; a safety net behind the triggers (a limit raised, a pause row edited by hand). One daemon at a time (advisory lock).
WITH lock AS (
    SELECT pg_try_advisory_xact_lock(4242005) AS got
), runnable AS (
    SELECT q.id
    FROM processing_jobs q
    WHERE q.status = 'pending' AND q.parked AND (SELECT got FROM lock)
      AND CASE WHEN q.job_type = ANY (ARRAY(SELECT jp.job_type FROM job_pauses jp)) THEN false
               WHEN q.user_id IS NULL OR %(user_limit)s::int IS NULL THEN true
               -- the user's running jobs and its jobs ahead of this one (parked or not, of a type not paused)
               -- below the limit; the two counts of jobs ahead differ only in `parked`, so that each
               -- probes its own partial index (one count over both would find no index to probe)
               ELSE (SELECT count(*) FROM processing_jobs r
                     WHERE r.status = 'processing' AND r.user_id = q.user_id)
                    + (SELECT count(*) FROM (SELECT 1 FROM processing_jobs a
                                             WHERE a.status = 'pending' AND NOT a.parked
                                               AND a.user_id = q.user_id
                                               AND ROW(/*KEY(a)*/) < ROW(/*KEY(q)*/)
                                               AND CASE WHEN a.job_type = ANY (ARRAY(SELECT jp.job_type FROM job_pauses jp))
                                                        THEN false ELSE true END
                                             ORDER BY a.user_id, /*KEY(a)*/
                                             LIMIT %(user_limit)s::int) AS x)
                    + (SELECT count(*) FROM (SELECT 1 FROM processing_jobs a
                                             WHERE a.status = 'pending' AND a.parked
                                               AND a.user_id = q.user_id
                                               AND ROW(/*KEY(a)*/) < ROW(/*KEY(q)*/)
                                               AND CASE WHEN a.job_type = ANY (ARRAY(SELECT jp.job_type FROM job_pauses jp))
                                                        THEN false ELSE true END
                                             ORDER BY a.user_id, /*KEY(a)*/
                                             LIMIT %(user_limit)s::int) AS y)
                    < %(user_limit)s::int
          END
    LIMIT %(batch)s::int
    FOR UPDATE SKIP LOCKED
)
UPDATE processing_jobs p
SET parked = false
FROM runnable r
WHERE p.id = r.id
RETURNING p.id;

-- name: claim_commit_async
-- Let this transaction (a claim on its own) commit without waiting for the WAL flush; a claim lost in a crash only leaves its job pending.
SELECT set_config('synchronous_commit', 'off', true);

-- name: claims_next_mark
-- This transaction records a job and claims the next: a job its record releases (depends_on) needs no wake-up of other daemons (migration 0009).
SELECT set_config('jobcron.claims_next', 'on', true);

-- name: finish_job
-- Record an attempt's outcome (completed, failed, cancelled, or pending for a retry) if this worker still holds the lease.
WITH done AS (
    UPDATE processing_jobs
    -- a job going back to pending while a cancel was requested is cancelled instead: claims pass
    -- over cancel-requested rows, so it would otherwise wait there for good
    SET status = CASE WHEN %(status)s::text = 'pending' AND cancel_requested THEN 'cancelled'
                      ELSE %(status)s::text END,
        completed_at = CASE WHEN %(status)s::text = 'pending' AND NOT cancel_requested THEN NULL
                            ELSE statement_timestamp() END,
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
        -- the lease ends here, and the row says who ended it: a token derived from the lease (see
        -- store.recorded_lease) that no other writer produces, so a later look can tell this record
        -- from an operator's reset that left the lease's own token behind
        lease_token = %(recorded_lease)s::uuid,
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
), followed AS (
    -- follow-up jobs the workflow returned: enqueued with the result, exactly once (a dedup_key
    -- already waiting, pending or running skips one)
    INSERT INTO processing_jobs (job_type, user_id, metadata, priority, scheduled_at, max_retries,
                                 timeout_seconds, dedup_key, business_description)
    SELECT x.job_type, x.user_id, coalesce(x.metadata, '{}'::jsonb), coalesce(x.priority, 0),
           coalesce(x.scheduled_at, now()), x.max_retries, x.timeout_seconds, x.dedup_key,
           x.business_description
    FROM done d,
         jsonb_to_recordset(coalesce(%(followups)s::jsonb, '[]'::jsonb))
             AS x(job_type text, user_id text, metadata jsonb, priority integer, scheduled_at timestamptz,
                  max_retries integer, timeout_seconds integer, dedup_key text, business_description text)
    WHERE d.status = 'completed'
    ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL AND status IN ('waiting', 'pending', 'processing')
    DO NOTHING
    RETURNING id
), followed_linked AS (
    -- each follow-up is a child of this job, settled already: `jobs show` lists it on both sides
    INSERT INTO job_dependencies (parent_id, child_id, settled)
    SELECT d.id, f.id, true FROM done d, followed f
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
)
-- a job of a user that ends frees a slot: a trigger brings that user's next job back if it was parked
-- and wakes idle daemons for it (migration 0002)
SELECT (SELECT count(*) FROM done) AS recorded,
       (SELECT count(*) FROM stored) AS insights_stored,
       (SELECT count(*) FROM followed_linked) AS followups_enqueued;

-- name: mark_file_processing
-- Mark a claimed job's file row as being processed.
UPDATE files SET status = 'processing', updated_at = now() WHERE id = %(file_id)s AND status <> 'processing';

-- name: job_lease_state
-- Where a job stands relative to a lease: used after a write whose outcome is unknown. ours: the last
-- write was this lease's record (finish_job leaves recorded_lease); a reset or a rescue never does.
SELECT status, lease_token = %(recorded_lease)s::uuid AS ours FROM processing_jobs WHERE id = %(id)s;

-- name: get_file
-- The file row a job points at.
SELECT id, file_path, original_name, status FROM files WHERE id = %(id)s;

-- name: heartbeat_job
-- Refresh the running job's heartbeat (and its progress, when given); no row means the lease was lost.
-- cancel_force: the latest cancel request said "force". A progress write is also told to listeners of
-- `jobcron_progress` as {"id", "fraction", "message", "attempt"} (delivered at commit, as every NOTIFY).
WITH beat AS (
    UPDATE processing_jobs
    SET heartbeat_at = now(),
        -- the workflow's latest ctx.progress(), when it reported one since the last heartbeat
        progress = CASE WHEN %(fraction)s::float8 IS NULL THEN progress
                        ELSE jsonb_build_object('fraction', %(fraction)s::float8, 'message', %(message)s::text,
                                                'attempt', attempts, 'at', now()) END
    WHERE id = %(id)s AND lease_token = %(lease_token)s AND status = 'processing'
    RETURNING id, attempts, cancel_requested,
              -- the cancel command records each request in errors; a daemon that missed the NOTIFY sees "force" here
              CASE WHEN cancel_requested
                   THEN coalesce((SELECT (e.value ->> 'force')::bool
                                  FROM jsonb_array_elements(errors) WITH ORDINALITY AS e(value, n)
                                  WHERE e.value ->> 'type' = 'CancelRequested'
                                  ORDER BY e.n DESC LIMIT 1), false)
                   ELSE false END AS cancel_force
)
SELECT cancel_requested, cancel_force,
       CASE WHEN %(fraction)s::float8 IS NOT NULL
            THEN pg_notify('jobcron_progress',
                           jsonb_build_object('id', id, 'fraction', %(fraction)s::float8,
                                              'message', left(%(message)s::text, 200), 'attempt', attempts)::text)
       END::text AS told
FROM beat;

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

-- fragment: rescue_give_up
-- Whether a rescued or reset job ends here rather than going back to pending (alias s: its row as locked): cancel requested, retries off, or its retries spent.
s.cancel_requested OR NOT %(retry_failed_jobs)s::bool
    OR s.retry_count >= coalesce(s.max_retries, %(default_max_retries)s::int)

-- fragment: rescue_outcome
-- The SET list a rescue and an operator's reset share (j: the job, d: its decided row with give_up): back to pending charged with a retry, or failed/cancelled; the old worker's lease void.
status = CASE WHEN d.give_up AND d.cancel_requested THEN 'cancelled'
              WHEN d.give_up THEN 'failed' ELSE 'pending' END,
completed_at = CASE WHEN d.give_up THEN coalesce(%(now)s::timestamptz, now()) ELSE NULL END,
retry_count = j.retry_count + CASE WHEN d.give_up THEN 0 ELSE 1 END,
scheduled_at = CASE WHEN d.give_up THEN j.scheduled_at ELSE coalesce(%(now)s::timestamptz, now()) END,
heartbeat_at = NULL,
-- the lost worker's lease is void: its late write finds nothing that looks like its own
lease_token = NULL,
user_slot = NULL,
updated_at = now()

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
      AND (((heartbeat_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(stale_after_seconds)s::float8)
             -- a daemon starting under the id of one that died (systemd restarts, stable ids) rescues
             -- that run's jobs at once and charges them: a job that crashes its daemon must use up
             -- its attempts rather than crash it forever
             OR locked_by = %(restarted_worker)s::text)
            -- never a job the rescuing daemon holds (runs, records, or claimed next): after an outage
            -- longer than stale_after_seconds its heartbeat is old, yet its run is alive and will be
            -- recorded; rescuing it would run it a second time. Other daemons still may, by the lease.
            -- Nor, outside the start, one of its own it does not hold: a claim or a record whose
            -- commit it never saw (a failover); its main loop puts those back uncharged as it
            -- reconnects (release_worker_jobs), where a rescue would charge an attempt for work that
            -- may have succeeded (measured: a job with no retries left ended failed after a failover)
            AND NOT (locked_by = %(worker_id)s::text
                     AND (id = ANY (%(held_ids)s::uuid[]) OR %(restarted_worker)s::text IS NULL)))
           -- the ceiling holds for every job: failing it runs nothing twice
           OR started_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(max_processing_seconds)s::float8))
    FOR UPDATE SKIP LOCKED
), decided AS (
    SELECT s.*,
           s.overdue OR /*@rescue_give_up*/ AS give_up
    FROM stale s
)
UPDATE processing_jobs j
SET /*@rescue_outcome*/,
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
        'at', coalesce(%(now)s::timestamptz, now())))
FROM decided d
WHERE j.id = d.id
RETURNING j.id, j.status, d.locked_by, d.overdue, j.user_id;

-- name: next_due_in
-- Seconds until the earliest pending job scheduled in the future becomes due (NULL if none).
-- epochs subtracted as numbers: a row scheduled at 'infinity' gives Infinity, where subtracting the
-- timestamps would raise an error in every idle daemon
-- (parked jobs are due already: only the claim's index is read)
SELECT extract(epoch FROM min(scheduled_at))::float8 - extract(epoch FROM now())::float8 AS seconds
FROM processing_jobs WHERE status = 'pending' AND NOT parked AND scheduled_at > now();

-- name: notify_jobs
-- Wake every listening daemon (jobs became claimable without an INSERT, e.g. rescued).
SELECT pg_notify('jobcron_jobs', %(reason)s::text);

-- name: db_now
-- The database clock (or the given time): every age, schedule and run-at is measured against it, never a host's clock.
SELECT coalesce(%(now)s::timestamptz, now()) AS now

-- name: prune_finished_jobs
-- Delete one batch of finished jobs of the given statuses older than the cutoff (retention and the operator's purge). exclusive: one daemon at a time (advisory lock; the others delete nothing). Insights keep their rows (job_id becomes NULL).
WITH lock AS (
    SELECT CASE WHEN %(exclusive)s::bool THEN pg_try_advisory_xact_lock(4242002) ELSE true END AS got
), victims AS (
    SELECT id FROM processing_jobs
    WHERE status = ANY (%(statuses)s::text[]) AND status IN ('completed', 'failed', 'cancelled')
      AND completed_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(older_than_seconds)s::float8)
      AND (SELECT got FROM lock)
    ORDER BY completed_at
    LIMIT %(batch)s::int
    FOR UPDATE SKIP LOCKED
)
DELETE FROM processing_jobs j USING victims v WHERE j.id = v.id

