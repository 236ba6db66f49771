-- Job events: every statement that ends an attempt or a job tells listeners of channel
-- `jobcron_events` which jobs it moved, so an application can wait for its job instead of polling.
-- A trigger, so that every writer counts: the daemon's record, a rescue, an operator's command, an
-- application's own UPDATE. NOTIFY is transactional: the events are delivered when the statement's
-- transaction commits, and never when it rolls back.
--
-- An event is a change of status to anything but 'processing' (a claim is not an event):
--   completed, failed, cancelled        the job finished (from running, or cancelled while pending)
--   pending, from processing            the attempt ended and the job waits again: a durable retry, a
--                                       rescue, a shutdown's put-back, an operator's reset
--   pending, from failed/cancelled      an operator retried a finished job
-- Each is {"id", "status", "job_type", "user_id", "attempt"} (attempt: the attempts column after the
-- change; user_id is null in the event when its JSON text is longer than 256 bytes: read the row).
--
-- One statement, one batch: the payload is {"events": [...]}, split over as many notifications as
-- keep each under PostgreSQL's 8000-byte limit (about 60 events each). A statement that moves more
-- than 500 jobs sends one {"overflow": true, "count": n, "statuses": {"cancelled": n, ...}} instead:
-- a listener that cares re-reads the rows. The interface is documented in docs/clients.md.
--
-- Cost on the hot paths: a statement-level trigger runs once per UPDATE statement, and a claim or a
-- heartbeat (every row it wrote is 'processing') leaves after one look at its own one-row
-- transition table. The planner settings are those of an ordinary session whatever the caller's
-- (the daemon's own connection turns hash joins off, and a join of two 5,000-row transition tables
-- must not become a nested loop); the join runs through EXECUTE so that each is planned for the
-- sizes at hand, never a plan cached while the tables held one row.
CREATE FUNCTION jobcron_notify_events() RETURNS trigger
LANGUAGE plpgsql
SET enable_hashjoin TO on SET enable_mergejoin TO on SET enable_seqscan TO on
AS $$
DECLARE
    moved bigint;
    statuses jsonb;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM jobcron_events_new n WHERE n.status <> 'processing') THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT coalesce(sum(c.n), 0), jsonb_object_agg(c.status, c.n)
             FROM (SELECT n.status, count(*) AS n
                   FROM jobcron_events_new n JOIN jobcron_events_old o ON o.id = n.id
                   WHERE n.status <> o.status AND n.status <> ''processing''
                   GROUP BY n.status) AS c'
        INTO moved, statuses;
    IF moved = 0 THEN
        RETURN NULL;
    ELSIF moved > 500 THEN
        PERFORM pg_notify('jobcron_events',
                          jsonb_build_object('overflow', true, 'count', moved, 'statuses', statuses)::text);
        RETURN NULL;
    END IF;
    -- events packed in order of their start offset: a notification holds the events that start in
    -- its 6,500 bytes, and an event is at most about 1,000 bytes, so none reaches 8,000
    EXECUTE 'SELECT count(*)
             FROM (SELECT pg_notify(''jobcron_events'',
                                    ''{"events":['' || string_agg(p.event, '','' ORDER BY p.id) || '']}'')
                   FROM (SELECT e.id, e.event,
                                (sum(octet_length(e.event) + 1) OVER (ORDER BY e.id ROWS UNBOUNDED PRECEDING)
                                 - octet_length(e.event) - 1) / 6500 AS part
                         FROM (SELECT n.id,
                                      jsonb_build_object(''id'', n.id, ''status'', n.status, ''job_type'', n.job_type,
                                                        ''user_id'', CASE WHEN octet_length(to_json(n.user_id)::text) <= 256
                                                                          THEN n.user_id END,
                                                        ''attempt'', n.attempts)::text AS event
                               FROM jobcron_events_new n JOIN jobcron_events_old o ON o.id = n.id
                               WHERE n.status <> o.status AND n.status <> ''processing'') AS e) AS p
                   GROUP BY p.part) AS sent';
    RETURN NULL;
END;
$$;

CREATE TRIGGER processing_jobs_notify_events
    AFTER UPDATE ON processing_jobs
    REFERENCING OLD TABLE AS jobcron_events_old NEW TABLE AS jobcron_events_new
    FOR EACH STATEMENT EXECUTE FUNCTION jobcron_notify_events();
