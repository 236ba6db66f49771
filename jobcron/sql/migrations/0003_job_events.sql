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
-- Cost on the hot paths. A row trigger collects, a statement trigger sends. The row trigger's WHEN is
-- evaluated by the server without calling any function, so a claim (pending -> processing) and a
-- heartbeat (no status change) collect nothing, and their statement trigger reads one setting and
-- returns. The collected events live in transaction-local settings (set_config(..., true)): they are
-- undone with a rolled-back savepoint like the rows they describe, and gone at the transaction's end.
-- (Transition tables, REFERENCING OLD/NEW TABLE, were measured first: three queries on them per
-- statement cost the one-daemon drain of noop jobs about 24%.)
-- Settings: jobcron.events (the events, one per line, the first 500), jobcron.events_seen (how many),
-- jobcron.events_<status> (how many ended in each status, for the overflow summary).

-- One job's event, as listeners receive it (jsonb text: no raw newline, so one per line).
CREATE FUNCTION jobcron_job_event(j processing_jobs) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('id', j.id, 'status', j.status, 'job_type', j.job_type,
                              'user_id', CASE WHEN octet_length(to_json(j.user_id)::text) <= 256
                                              THEN j.user_id END,
                              'attempt', j.attempts)::text
$$;

CREATE FUNCTION jobcron_collect_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    seen integer := coalesce(nullif(current_setting('jobcron.events_seen', true), ''), '0')::integer + 1;
    per_status text := 'jobcron.events_' || NEW.status;
BEGIN
    PERFORM set_config('jobcron.events_seen', seen::text, true);
    PERFORM set_config(per_status,
                       (coalesce(nullif(current_setting(per_status, true), ''), '0')::integer + 1)::text, true);
    -- past 500 the statement sends a summary: counting is enough
    IF seen <= 500 THEN
        PERFORM set_config('jobcron.events',
                           coalesce(current_setting('jobcron.events', true), '') || jobcron_job_event(NEW) || E'\n',
                           true);
    END IF;
    RETURN NULL;
END;
$$;

-- Send what this statement collected: {"events": [...]} notifications, each under the 8000-byte payload
-- limit (an event is at most about 1,000 bytes: a job_type of 100 characters escaped to 6 bytes each at
-- the worst, user_id at most 256), or the overflow summary; then clear the collection.
CREATE FUNCTION jobcron_send_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    seen integer := coalesce(nullif(current_setting('jobcron.events_seen', true), ''), '0')::integer;
    event text;
    body text := '';
    status text;
    statuses jsonb := '{}';
BEGIN
    IF seen = 0 THEN
        RETURN NULL;
    END IF;
    -- a database, role or session that wants no events (ALTER DATABASE ... SET jobcron.send_events = off)
    -- skips the NOTIFY, which is what a record pays for them
    IF coalesce(current_setting('jobcron.send_events', true), '') NOT IN ('off', 'false') THEN
        IF seen > 500 THEN
            FOREACH status IN ARRAY ARRAY['pending', 'completed', 'failed', 'cancelled'] LOOP
                IF coalesce(nullif(current_setting('jobcron.events_' || status, true), ''), '0') <> '0' THEN
                    statuses := statuses || jsonb_build_object(status, current_setting('jobcron.events_' || status)::integer);
                END IF;
            END LOOP;
            PERFORM pg_notify('jobcron_events',
                              jsonb_build_object('overflow', true, 'count', seen, 'statuses', statuses)::text);
        ELSE
            FOREACH event IN ARRAY string_to_array(rtrim(current_setting('jobcron.events'), E'\n'), E'\n') LOOP
                IF body <> '' AND octet_length(body) + octet_length(event) > 7900 THEN
                    PERFORM pg_notify('jobcron_events', '{"events":[' || body || ']}');
                    body := '';
                END IF;
                body := CASE WHEN body = '' THEN event ELSE body || ',' || event END;
            END LOOP;
            PERFORM pg_notify('jobcron_events', '{"events":[' || body || ']}');
        END IF;
    END IF;
    PERFORM set_config('jobcron.events', '', true), set_config('jobcron.events_seen', '0', true),
            set_config('jobcron.events_pending', '0', true), set_config('jobcron.events_completed', '0', true),
            set_config('jobcron.events_failed', '0', true), set_config('jobcron.events_cancelled', '0', true);
    RETURN NULL;
END;
$$;

CREATE TRIGGER processing_jobs_collect_events
    AFTER UPDATE ON processing_jobs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status <> 'processing')
    EXECUTE FUNCTION jobcron_collect_event();

CREATE TRIGGER processing_jobs_notify_events
    AFTER UPDATE ON processing_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobcron_send_events();
