-- jobcron in a schema of its own (database.schema, docs/clients.md "A schema of its own"): the
-- trigger functions find jobcron's objects in the schema they were installed in, whatever the
-- search_path of the session whose statement fires them. An application whose search_path does not
-- name jobcron's schema may still update a job (its own cancel, seed 003's emergency reset), and
-- must then neither fail ("relation processing_jobs does not exist") nor touch a table of the same
-- name in another schema. The table and function references in column defaults and trigger
-- definitions are bound when created; only names inside function bodies are looked up at call time:
--   jobcron_unpark_next, jobcron_unpark_resumed  read and update processing_jobs: their search_path
--                                                is pinned (they already set planner options, so
--                                                one more setting costs them nothing noticeable)
--   jobcron_collect_event                        calls jobcron_job_event: the call is qualified (it
--                                                runs for every finished job: no per-call setting)
DO $migration$
DECLARE
    home text := quote_ident(current_schema());
BEGIN
    EXECUTE format('ALTER FUNCTION jobcron_unpark_next() SET search_path = pg_catalog, %s', home);
    EXECUTE format('ALTER FUNCTION jobcron_unpark_resumed() SET search_path = pg_catalog, %s', home);
    EXECUTE format($function$
CREATE OR REPLACE FUNCTION jobcron_collect_event() RETURNS trigger
LANGUAGE plpgsql AS $body$
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
                           coalesce(current_setting('jobcron.events', true), '') || %s.jobcron_job_event(NEW) || E'\n',
                           true);
    END IF;
    RETURN NULL;
END;
$body$
$function$, home);
END
$migration$;
