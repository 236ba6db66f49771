-- Webhooks (config `notifications.webhooks`, docs/notifications.md): an outbox in the queue itself.
--
-- jobcron_webhooks holds the subscriptions only (name, events, job types, retries), written by each
-- daemon at start from its config; the URL and the signing secret never leave the config of the
-- daemons that deliver. When a job's status changes to one an event stands for, the statement that
-- changes it inserts one delivery job (job_type 'jobcron.webhook') per matching subscription, in its own
-- transaction: a status that rolls back sends nothing, one that commits cannot lose its delivery. The
-- daemons run delivery jobs as any other job (claimed once, retried with the durable backoff, rescued
-- after a crash) through the built-in workflow jobcron.webhook, which signs the body with the secret.
-- A delivery is at least once: a receiver dedupes on the body's "delivery" id.
--
-- Events (every writer counts: the daemon's record, a rescue, an operator, another application's UPDATE):
--   job.completed, job.failed, job.cancelled   the job's status became that
--   job.retried     back to pending for another attempt: a durable retry or a rescue (retry_count grew),
--                   or an operator's retry of a failed or cancelled job
--   schedule.failed a job a schedule created ended failed; or a schedule's occurrence could not be
--                   enqueued, or its definition cannot be computed (the daemon firing it inserts it)
-- Delivery jobs themselves raise no events. The body is a snapshot at the event:
--   {"event", "delivery", "at", "job": {"id", "job_type", "user_id", "status", "error", "attempts",
--    "retry_count", "created_at", "started_at", "completed_at", "schedule_id"}, "schedule"?: {...}}
CREATE TABLE jobcron_webhooks (
    name        text PRIMARY KEY,
    events      text[] NOT NULL,
    job_types   text[],
    max_retries integer NOT NULL DEFAULT 8,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT jobcron_webhooks_events_known CHECK (
        cardinality(events) > 0 AND events <@ ARRAY['job.completed', 'job.failed', 'job.cancelled',
                                                    'job.retried', 'schedule.failed']),
    CONSTRAINT jobcron_webhooks_max_retries_range CHECK (max_retries BETWEEN 0 AND 100)
);

-- A job's part of an event's body.
CREATE FUNCTION jobcron_webhook_job(j processing_jobs) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('id', j.id, 'job_type', j.job_type, 'user_id', j.user_id, 'status', j.status,
                              'error', j.error_message, 'attempts', j.attempts, 'retry_count', j.retry_count,
                              'created_at', j.created_at, 'started_at', j.started_at,
                              'completed_at', j.completed_at, 'schedule_id', j.schedule_id)
$$;

-- The outbox: one delivery job per subscription to `event` (for `job_type`, when it names types);
-- how many were made. It runs as the tables' owner, and only the owner may insert a delivery job
-- (below): a delivery's body is signed with the webhook's secret, so no other role may write one.
CREATE FUNCTION jobcron_webhook_outbox(event text, for_type text, body jsonb) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    made integer;
BEGIN
    INSERT INTO processing_jobs (id, job_type, metadata, max_retries, business_description)
    SELECT d.id, 'jobcron.webhook',
           jsonb_build_object('webhook', d.name, 'event', event,
                              'body', jsonb_build_object('event', event, 'delivery', d.id, 'at', now()) || body),
           d.max_retries, left(format('webhook %s to %s', event, d.name), 300)
    FROM (SELECT w.name, w.max_retries, jobcron_uuid_v7() AS id
          FROM jobcron_webhooks w
          WHERE event = ANY (w.events) AND (w.job_types IS NULL OR for_type = ANY (w.job_types))) AS d;
    GET DIAGNOSTICS made = ROW_COUNT;
    RETURN made;
END;
$$;

-- The one trigger function every job's end passes through (migration 0009) now also writes the outbox:
-- one SECURITY DEFINER call per status change, and one look at the (small) subscriptions table.
CREATE OR REPLACE FUNCTION jobcron_job_ended() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    job_id uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END;
    body jsonb;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.job_type <> 'jobcron.webhook' AND EXISTS (SELECT 1 FROM jobcron_webhooks) THEN
        body := jsonb_build_object('job', jobcron_webhook_job(NEW));
        PERFORM jobcron_webhook_outbox(CASE NEW.status WHEN 'pending' THEN 'job.retried'
                                                       ELSE 'job.' || NEW.status END,
                                       NEW.job_type, body);
        IF NEW.status = 'failed' AND NEW.schedule_id IS NOT NULL THEN
            PERFORM jobcron_webhook_outbox('schedule.failed', NEW.job_type,
                                           body || jsonb_build_object('schedule', jsonb_build_object(
                                               'id', NEW.schedule_id,
                                               'name', (SELECT s.name FROM job_schedules s WHERE s.id = NEW.schedule_id),
                                               'error', NEW.error_message)));
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.status = 'pending' THEN
        RETURN NULL;  -- a retry: the job has not ended, its dependants wait on
    END IF;
    IF pg_trigger_depth() > 1 AND current_setting('jobcron.settling', true) = 'on' THEN
        RETURN OLD;  -- fired by a cascade in progress, which settles this job's children itself
    END IF;
    IF EXISTS (SELECT 1 FROM job_dependencies d WHERE d.parent_id = job_id AND NOT d.settled) THEN
        PERFORM jobcron_settle_children(job_id, CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE NEW.status END);
    END IF;
    RETURN OLD;  -- ignored after an UPDATE; lets a DELETE proceed
END;
$$;

-- Delivery jobs are the outbox's alone: anyone else inserting one (an application with the enqueuer's
-- INSERT right, a workflow's follow-up) could have the daemon sign a body of its own making.
CREATE FUNCTION jobcron_webhook_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_user <> (SELECT pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID)
       AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'job_type jobcron.webhook: delivery jobs are made by the webhook outbox only'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'configure notifications.webhooks; the daemons write a delivery for each event';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER processing_jobs_webhook_guard
    BEFORE INSERT ON processing_jobs
    FOR EACH ROW
    WHEN (NEW.job_type = 'jobcron.webhook')
    EXECUTE FUNCTION jobcron_webhook_guard();

DROP TRIGGER processing_jobs_job_ended ON processing_jobs;
CREATE TRIGGER processing_jobs_job_ended
    AFTER UPDATE OF status ON processing_jobs
    FOR EACH ROW
    WHEN ((OLD.status NOT IN ('completed', 'failed', 'cancelled')
           AND NEW.status IN ('completed', 'failed', 'cancelled'))
          OR (NEW.status = 'pending' AND OLD.status NOT IN ('pending', 'waiting')
              AND (NEW.retry_count > OLD.retry_count OR OLD.status IN ('failed', 'cancelled'))))
    EXECUTE FUNCTION jobcron_job_ended();

DO $migration$
DECLARE
    home text := quote_ident(current_schema());
BEGIN
    EXECUTE format('ALTER FUNCTION jobcron_job_ended() SET search_path = pg_catalog, %s, pg_temp', home);
    -- its probes (links by parent, the subscriptions) by index whatever a session's plans cached while
    -- the tables were empty: a scan of every link ever made, per finished job, is what it must never do
    ALTER FUNCTION jobcron_job_ended() SET enable_seqscan = off;
    EXECUTE format('ALTER FUNCTION jobcron_webhook_outbox(text, text, jsonb) SET search_path = pg_catalog, %s, pg_temp', home);
    -- the daemons call it for a schedule's failure (deploy/sql/roles.sql grants the worker role)
    REVOKE EXECUTE ON FUNCTION jobcron_webhook_outbox(text, text, jsonb) FROM PUBLIC;
    -- the subscriptions are a handful of rows read whole: a seq scan, whatever the caller's planner
    -- settings (the daemon disables seq scans, which would cost this one as 1e10 and JIT-compile it)
    ALTER FUNCTION jobcron_webhook_outbox(text, text, jsonb) SET enable_seqscan = on;
    ALTER FUNCTION jobcron_webhook_outbox(text, text, jsonb) SET jit = off;
END
$migration$;
