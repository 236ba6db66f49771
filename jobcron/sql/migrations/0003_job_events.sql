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
-- Cost on the hot paths: a statement-level trigger runs once per UPDATE statement. A claim or a
-- heartbeat (every row it wrote is 'processing') leaves after one look at its own one-row transition
-- table; the daemon's record of one job runs one query whose plan is made once per session. Only
-- statements of more than 64 rows take the long way: their joins run through EXECUTE, planned for the
-- sizes at hand rather than with a plan cached while the tables held one row, and with the planner
-- settings of an ordinary session whatever the caller's (the daemon's own connection turns hash joins
-- off: a join of two 20,000-row transition tables then took 50 s instead of under one).

-- One job's event, as listeners receive it.
CREATE FUNCTION jobcron_job_event(j processing_jobs) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('id', j.id, 'status', j.status, 'job_type', j.job_type,
                              'user_id', CASE WHEN octet_length(to_json(j.user_id)::text) <= 256
                                              THEN j.user_id END,
                              'attempt', j.attempts)::text
$$;

-- Send events as {"events": [...]} notifications under the 8000-byte payload limit; returns how many.
-- A notification holds the events that start in its 6,500 bytes, and an event is at most about 1,000
-- bytes (a job_type of 100 characters, each escaped to 6 bytes at the worst; user_id at most 256), so
-- none reaches 8,000.
CREATE FUNCTION jobcron_send_events(events text[]) RETURNS integer
LANGUAGE sql VOLATILE AS $$
    SELECT count(*)::integer
    FROM (SELECT pg_notify('jobcron_events', '{"events":[' || string_agg(e.event, ',' ORDER BY e.n) || ']}')
          FROM (SELECT x.event, x.n,
                       (sum(octet_length(x.event) + 1) OVER (ORDER BY x.n) - octet_length(x.event) - 1)
                           / 6500 AS part
                FROM unnest(events) WITH ORDINALITY AS x(event, n)) AS e
          GROUP BY e.part) AS sent
$$;

CREATE FUNCTION jobcron_notify_events() RETURNS trigger
LANGUAGE plpgsql
SET enable_hashjoin TO on SET enable_mergejoin TO on SET enable_seqscan TO on
AS $$
DECLARE
    written bigint;
    candidates bigint;
    events text[];
    body text;
    moved bigint;
    statuses jsonb;
BEGIN
    SELECT count(*), count(*) FILTER (WHERE n.status <> 'processing')
    INTO written, candidates
    FROM jobcron_events_new n;
    IF candidates = 0 THEN
        RETURN NULL;  -- a claim, a heartbeat
    END IF;
    IF written <= 64 THEN
        -- the daemon's record, a rescue, an operator's command on a few jobs: never an overflow, and
        -- mostly one event, sent as it is (jobcron_send_events is a query planned at every call)
        SELECT array_agg(jobcron_job_event(n) ORDER BY n.id) INTO events
        FROM jobcron_events_new n JOIN jobcron_events_old o ON o.id = n.id
        WHERE n.status <> o.status AND n.status <> 'processing';
        IF events IS NULL THEN
            RETURN NULL;
        END IF;
        body := array_to_string(events, ',');
        IF octet_length(body) < 7950 THEN
            PERFORM pg_notify('jobcron_events', '{"events":[' || body || ']}');
        ELSE
            PERFORM jobcron_send_events(events);
        END IF;
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT coalesce(sum(c.n), 0), jsonb_object_agg(c.status, c.n)
             FROM (SELECT n.status, count(*) AS n
                   FROM jobcron_events_new n JOIN jobcron_events_old o ON o.id = n.id
                   WHERE n.status <> o.status AND n.status <> ''processing''
                   GROUP BY n.status) AS c'
        INTO moved, statuses;
    IF moved > 500 THEN
        PERFORM pg_notify('jobcron_events',
                          jsonb_build_object('overflow', true, 'count', moved, 'statuses', statuses)::text);
    ELSIF moved > 0 THEN
        EXECUTE 'SELECT jobcron_send_events(ARRAY(
                     SELECT jobcron_job_event(n)
                     FROM jobcron_events_new n JOIN jobcron_events_old o ON o.id = n.id
                     WHERE n.status <> o.status AND n.status <> ''processing''
                     ORDER BY n.id))';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER processing_jobs_notify_events
    AFTER UPDATE ON processing_jobs
    REFERENCING OLD TABLE AS jobcron_events_old NEW TABLE AS jobcron_events_new
    FOR EACH STATEMENT EXECUTE FUNCTION jobcron_notify_events();
