-- Parked jobs: a pending job the claim passed over because it cannot run now (its user is at the
-- per-user limit, or its type is paused) leaves the claim's indexes until that changes, so a head of
-- the queue full of such jobs costs each claim nothing, however many users or daemons there are.
-- Parking is only a hint to the claim: the limit itself is still held by the slot index.

ALTER TABLE processing_jobs ADD COLUMN parked boolean NOT NULL DEFAULT false;

-- The claim's indexes hold only jobs that are not parked. A user's queue in the priority order is
-- indexed on (-priority), so that "ahead of this job" is one row comparison an index can range over.
-- Advisory lock keys: 4242005 (one daemon at a time re-checks parked jobs; see unpark_runnable).
DROP INDEX processing_jobs_claim_priority_idx;
DROP INDEX processing_jobs_claim_fifo_idx;
DROP INDEX processing_jobs_user_queue_idx;
DROP INDEX processing_jobs_user_queue_priority_idx;
CREATE INDEX processing_jobs_claim_fifo_idx
    ON processing_jobs (scheduled_at, seq) WHERE status = 'pending' AND NOT parked;
CREATE INDEX processing_jobs_claim_priority_idx
    ON processing_jobs (priority DESC, scheduled_at, seq) WHERE status = 'pending' AND NOT parked;
-- Each user's own queue: how many of its jobs are ahead of a given one (the claim), a user's jobs
-- for the operator views. Jobs without a user are never limited and stay out of these.
CREATE INDEX processing_jobs_user_queue_idx
    ON processing_jobs (user_id, scheduled_at, seq)
    WHERE status = 'pending' AND NOT parked AND user_id IS NOT NULL;
CREATE INDEX processing_jobs_user_queue_priority_idx
    ON processing_jobs (user_id, (-priority), scheduled_at, seq)
    WHERE status = 'pending' AND NOT parked AND user_id IS NOT NULL;
-- Parked jobs by user, in both queue orders: a user's next parked job is found in one probe.
CREATE INDEX processing_jobs_parked_idx
    ON processing_jobs (user_id, scheduled_at, seq) WHERE status = 'pending' AND parked;
CREATE INDEX processing_jobs_parked_priority_idx
    ON processing_jobs (user_id, (-priority), scheduled_at, seq) WHERE status = 'pending' AND parked;

-- A job of a user stopped running or left the queue: that user's next job in either queue order (the
-- daemons' order is a setting the database does not know) goes back to the claim's indexes if a claim
-- parked it, and idle daemons are woken for it. A trigger, so that every way a job ends counts: the
-- daemon's record, a rescue, an operator's command or an application's own UPDATE or DELETE.
-- Its statements run after the row's update and see what committed before it: a claim parking this
-- user's jobs at the same instant holds a share lock on the running row, so either the ending waits
-- for that claim and then sees its parked rows here, or the claim sees the job ended and parks nothing.
-- The planner settings pin each statement to its index probes whatever the statistics say (a plan
-- cached while the table was nearly empty must not become a scan of a million rows).
CREATE FUNCTION jobcron_unpark_next() RETURNS trigger
LANGUAGE plpgsql
SET enable_seqscan TO off SET enable_hashjoin TO off SET enable_mergejoin TO off
AS $$
DECLARE
    unparked integer;
BEGIN
    -- most users have nothing parked: one probe, and nothing else to do
    IF NOT EXISTS (SELECT 1 FROM processing_jobs q
                   WHERE q.status = 'pending' AND q.parked AND q.user_id = OLD.user_id) THEN
        RETURN NULL;
    END IF;
    -- both next jobs read on one snapshot: where the orders agree, one job comes back, not two
    UPDATE processing_jobs SET parked = false
    WHERE id = ANY (ARRAY[(SELECT q.id FROM processing_jobs q
                           WHERE q.status = 'pending' AND q.parked AND q.user_id = OLD.user_id
                           ORDER BY q.scheduled_at, q.seq LIMIT 1),
                          (SELECT q.id FROM processing_jobs q
                           WHERE q.status = 'pending' AND q.parked AND q.user_id = OLD.user_id
                           ORDER BY (-q.priority), q.scheduled_at, q.seq LIMIT 1)]);
    GET DIAGNOSTICS unparked = ROW_COUNT;
    -- a job that was out of every claim's sight can run: idle daemons look at once (a next job that
    -- was never parked needs no call: the daemon recording this one claims in the same transaction)
    IF unparked > 0 THEN
        PERFORM pg_notify('jobcron_jobs', 'unparked');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER processing_jobs_unpark_after_update
    AFTER UPDATE OF status ON processing_jobs
    FOR EACH ROW
    WHEN (OLD.user_id IS NOT NULL
          AND ((OLD.status = 'processing' AND NEW.status <> 'processing')
               OR (OLD.status = 'pending' AND NEW.status NOT IN ('pending', 'processing'))))
    EXECUTE FUNCTION jobcron_unpark_next();

CREATE TRIGGER processing_jobs_unpark_after_delete
    AFTER DELETE ON processing_jobs
    FOR EACH ROW
    WHEN (OLD.user_id IS NOT NULL AND OLD.status IN ('pending', 'processing'))
    EXECUTE FUNCTION jobcron_unpark_next();

-- A type resumed: its parked jobs go back at once. A claim parking them at the same instant holds a
-- share lock on the pause row, so the DELETE waits for it and this statement then sees its rows.
CREATE FUNCTION jobcron_unpark_resumed() RETURNS trigger
LANGUAGE plpgsql
SET enable_seqscan TO off SET enable_hashjoin TO off SET enable_mergejoin TO off
AS $$
BEGIN
    UPDATE processing_jobs SET parked = false
    WHERE status = 'pending' AND parked AND (job_type = OLD.job_type OR OLD.job_type = '*');
    RETURN NULL;
END;
$$;

CREATE TRIGGER job_pauses_unpark_after_delete
    AFTER DELETE ON job_pauses
    FOR EACH ROW
    EXECUTE FUNCTION jobcron_unpark_resumed();

-- A running job whose cancel was requested and that is put back as pending by other means than the
-- daemon (seed 003's emergency reset: UPDATE ... SET status = 'pending' WHERE status = 'processing')
-- ends cancelled: claims pass over cancel-requested rows, and the operator's statement must not be
-- refused for it.
CREATE FUNCTION jobcron_cancel_instead_of_pending() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.status := 'cancelled';
    NEW.completed_at := coalesce(NEW.completed_at, now());
    NEW.error_message := coalesce(NEW.error_message, 'cancelled: put back as pending after a cancel request');
    RETURN NEW;
END;
$$;

CREATE TRIGGER processing_jobs_cancel_instead_of_pending
    BEFORE UPDATE ON processing_jobs
    FOR EACH ROW
    WHEN (NEW.status = 'pending' AND NEW.cancel_requested)
    EXECUTE FUNCTION jobcron_cancel_instead_of_pending();

-- Running jobs per user are counted through processing_jobs_running_user_idx. The rescue's index of
-- heartbeats covered the same rows with the same predicate, so that a plan made while the table's
-- statistics said "empty" could count a user's running jobs by reading every heartbeat: its predicate
-- now names its own column, which a count by user does not imply.
DROP INDEX processing_jobs_heartbeat_idx;
CREATE INDEX processing_jobs_heartbeat_idx
    ON processing_jobs (heartbeat_at) WHERE status = 'processing' AND heartbeat_at IS NOT NULL;
