-- Job dependencies: a job may name the jobs it waits for in `depends_on` (an array of ids, at most 1000),
-- from jobcron.enqueue(..., depends_on=[...]), `job_cron enqueue --after ID`, bulk input, the HTTP API or
-- another application's plain INSERT. Such a job is inserted as 'waiting' while any parent is unfinished:
-- a waiting job is in none of the claim's indexes (they hold status = 'pending' only), so a thousand
-- waiting jobs cost a claim nothing. The statement that finishes its last parent makes it 'pending', in
-- the parent's own transaction (the daemon that records the parent may claim the child in the same
-- commit). When a parent ends failed or cancelled (or is deleted unfinished), its waiting dependants end
-- 'cancelled' with an error naming the parent, down the whole graph, unless a dependant was inserted
-- with run_anyway = true: that one only stops waiting for that parent.
--
-- Parents must exist when the dependant is inserted (else: "depends_on: job ... does not exist"), so no
-- cycle can ever form. A parent that has already ended counts at once: completed is satisfied, failed
-- or cancelled cancels the new job (unless run_anyway).
--
-- job_dependencies holds one row per (parent, child): the children of a finishing job are found through
-- its primary key, and `settled` says the parent's end has been counted for the child (exactly once:
-- the row is updated from false to true under the row lock, whatever number of writers race).
-- waiting_on counts the parents not yet settled. Two parents finishing at the same instant on two
-- daemons both update the child's row; the second waits for the first and decrements what it left, so
-- the count reaches zero once and the child is released once.
--
-- A dependant being inserted and its parent ending at the same instant meet on the parent's row: the
-- insert writes each parent row (a no-op UPDATE: the lock a status change takes) before it reads
-- their statuses, and holds those locks until it commits; a parent's end is an UPDATE (or DELETE) of
-- that row. So either the insert waits and then reads the parent as ended, or the end waits for the
-- insert's commit and its trigger then sees the link. Under REPEATABLE READ or SERIALIZABLE either
-- side gets a serialization failure to retry instead of a stale read. Only the named parents are
-- held, and only by an insert that names them (a parent's heartbeat waits for such an insert's
-- commit; the rescue skips a locked row).
--
-- The trigger functions are SECURITY DEFINER (owned by the migrating role; search_path pinned below to
-- pg_catalog, jobcron's schema, then pg_temp last, so that no session's temporary table can stand in
-- for one of jobcron's): an enqueuing role needs no grant on job_dependencies and no UPDATE right.
ALTER TABLE processing_jobs
    ADD COLUMN depends_on uuid[],
    ADD COLUMN run_anyway boolean NOT NULL DEFAULT false,
    ADD COLUMN waiting_on integer NOT NULL DEFAULT 0;

ALTER TABLE processing_jobs
    DROP CONSTRAINT processing_jobs_status_valid,
    ADD CONSTRAINT processing_jobs_status_valid
        CHECK (status IN ('waiting', 'pending', 'processing', 'completed', 'failed', 'cancelled')),
    ADD CONSTRAINT processing_jobs_waiting_has_parents CHECK (status <> 'waiting' OR waiting_on > 0),
    ADD CONSTRAINT processing_jobs_depends_on_size
        CHECK (depends_on IS NULL OR cardinality(depends_on) <= 1000);

-- a waiting job holds its dedup_key as a pending one does
DROP INDEX processing_jobs_dedup_uniq;
CREATE UNIQUE INDEX processing_jobs_dedup_uniq
    ON processing_jobs (dedup_key)
    WHERE dedup_key IS NOT NULL AND status IN ('waiting', 'pending', 'processing');
-- waiting jobs, counted by `status` and listed by the operator views
CREATE INDEX processing_jobs_waiting_idx ON processing_jobs (created_at) WHERE status = 'waiting';

CREATE TABLE job_dependencies (
    parent_id uuid NOT NULL REFERENCES processing_jobs (id) ON DELETE CASCADE,
    child_id  uuid NOT NULL REFERENCES processing_jobs (id) ON DELETE CASCADE,
    settled   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX job_dependencies_child_idx ON job_dependencies (child_id);

-- Before a job with depends_on is inserted: parents deduplicated and checked, the job's starting status.
CREATE FUNCTION jobcron_depends_on_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    parents uuid[];
    known integer;
    unfinished integer;
    ended_id uuid;
    ended_status text;
    missing uuid;
BEGIN
    parents := ARRAY(SELECT DISTINCT p FROM unnest(NEW.depends_on) AS p WHERE p IS NOT NULL ORDER BY p);
    IF cardinality(parents) = 0 THEN
        NEW.depends_on := NULL;
        RETURN NEW;
    END IF;
    IF cardinality(parents) > 1000 THEN
        RAISE EXCEPTION 'depends_on: % jobs, more than the limit of 1000', cardinality(parents)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'processing_jobs_depends_on_size';
    END IF;
    NEW.depends_on := parents;
    -- from here until commit no parent can end unseen (see the header): its row is locked by this write
    WITH l AS (
        UPDATE processing_jobs j SET updated_at = j.updated_at
        WHERE j.id = ANY (parents)
        RETURNING j.id, j.status
    )
    SELECT count(*)::integer,
           count(*) FILTER (WHERE l.status NOT IN ('completed', 'failed', 'cancelled'))::integer,
           (array_agg(l.id ORDER BY l.id) FILTER (WHERE l.status IN ('failed', 'cancelled')))[1]
    INTO known, unfinished, ended_id
    FROM l;
    IF known < cardinality(parents) THEN
        SELECT p INTO missing FROM unnest(parents) AS p
        WHERE NOT EXISTS (SELECT 1 FROM processing_jobs j WHERE j.id = p) LIMIT 1;
        RAISE EXCEPTION 'depends_on: job % does not exist', missing
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'job_dependencies_parent_id_fkey',
                  HINT = 'a job can depend only on jobs that exist when it is inserted';
    END IF;
    IF NEW.status NOT IN ('pending', 'waiting') THEN
        RETURN NEW;  -- inserted as finished by its writer: the links are only a record
    END IF;
    IF ended_id IS NOT NULL AND NOT NEW.run_anyway THEN
        SELECT status INTO ended_status FROM processing_jobs WHERE id = ended_id;
        NEW.status := 'cancelled';
        NEW.completed_at := now();
        NEW.waiting_on := 0;
        NEW.error_message := format('cancelled: parent job %s ended %s', ended_id, ended_status);
    ELSIF unfinished > 0 THEN
        NEW.status := 'waiting';
        NEW.waiting_on := unfinished;
    ELSE
        NEW.status := 'pending';
        NEW.waiting_on := 0;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER processing_jobs_depends_on_check
    BEFORE INSERT ON processing_jobs
    FOR EACH ROW
    WHEN (NEW.depends_on IS NOT NULL)
    EXECUTE FUNCTION jobcron_depends_on_check();

-- After the insert: one link per parent; parents already ended are settled (their rows are still locked).
CREATE FUNCTION jobcron_depends_on_link() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO job_dependencies (parent_id, child_id, settled)
    SELECT j.id, NEW.id, j.status IN ('completed', 'failed', 'cancelled') OR NEW.status <> 'waiting'
    FROM processing_jobs j
    WHERE j.id = ANY (NEW.depends_on);
    RETURN NULL;
END;
$$;

CREATE TRIGGER processing_jobs_depends_on_link
    AFTER INSERT ON processing_jobs
    FOR EACH ROW
    WHEN (NEW.depends_on IS NOT NULL)
    EXECUTE FUNCTION jobcron_depends_on_link();

-- A job ended (how: completed, failed, cancelled, or deleted while unfinished): count it for its waiting
-- children, and when it did not complete, cancel those that did not ask to run anyway and, level by
-- level, their own waiting children. A loop, not a recursion: a chain of a thousand waiting jobs is
-- cancelled in a thousand small statements at one trigger depth, not a thousand nested triggers (the
-- stack would not hold them). While the loop runs, the same trigger fired for the jobs it cancels
-- returns at once (nested, with jobcron.settling set): the loop settles their children itself.
CREATE FUNCTION jobcron_settle_children(parent uuid, how text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    frontier uuid[] := ARRAY[parent];
    why text := CASE how WHEN 'completed' THEN NULL
                         WHEN 'deleted' THEN 'was deleted before it ended'
                         ELSE 'ended ' || how END;
    kids uuid[];
    counts integer[];
    vias text[];
    released integer := 0;
    moved integer;
BEGIN
    IF why IS NOT NULL THEN
        -- the jobs this cascade cancels fire the same trigger: they return at once (see above)
        PERFORM set_config('jobcron.settling', 'on', true);
    END IF;
    LOOP
        -- the links out of this level, settled once under their row locks; per child: how many, and
        -- the parent to name
        WITH settled AS (
            UPDATE job_dependencies d SET settled = true
            WHERE d.parent_id = ANY (frontier) AND NOT d.settled
            RETURNING d.parent_id, d.child_id
        )
        SELECT array_agg(child_id ORDER BY child_id), array_agg(n ORDER BY child_id),
               array_agg(via ORDER BY child_id)
        INTO kids, counts, vias
        FROM (SELECT child_id, count(*)::integer AS n, min(parent_id::text) AS via
              FROM settled GROUP BY child_id) AS per_child;
        EXIT WHEN kids IS NULL;
        -- each child by its primary key: `(c.status || '')` keeps the planner off the partial index of
        -- waiting jobs, which a stale plan would read whole for every parent that ends (children x
        -- waiting jobs)
        WITH changed AS (
            UPDATE processing_jobs c
            SET waiting_on = greatest(c.waiting_on - p.n, 0),
                status = CASE WHEN why IS NOT NULL AND NOT c.run_anyway THEN 'cancelled'
                              WHEN c.waiting_on - p.n <= 0 THEN 'pending'
                              ELSE 'waiting' END,
                completed_at = CASE WHEN why IS NOT NULL AND NOT c.run_anyway THEN now() END,
                error_message = CASE WHEN why IS NOT NULL AND NOT c.run_anyway
                                     THEN format('cancelled: parent job %s %s', p.via, why)
                                     ELSE c.error_message END,
                -- released: due from now (or from its own later run_at), so that the queue's age
                -- says how long it waited to run, not how long its parents ran
                scheduled_at = CASE WHEN c.waiting_on - p.n <= 0 AND (why IS NULL OR c.run_anyway)
                                    THEN greatest(c.scheduled_at, now()) ELSE c.scheduled_at END,
                updated_at = now()
            FROM unnest(kids, counts, vias) AS p(child_id, n, via)
            WHERE c.id = p.child_id AND (c.status || '') = 'waiting'
            RETURNING c.id, c.status
        )
        SELECT array_agg(id ORDER BY id) FILTER (WHERE status = 'cancelled'),
               count(*) FILTER (WHERE status = 'pending')::integer
        INTO frontier, moved
        FROM changed;
        released := released + moved;
        EXIT WHEN frontier IS NULL;
        -- below the first level every settled parent was cancelled by this cascade (whose UPDATE took
        -- their row locks: a dependant of theirs inserted meanwhile is either seen now or waited for)
        why := 'ended cancelled';
    END LOOP;
    IF why IS NOT NULL THEN
        PERFORM set_config('jobcron.settling', '', true);
    END IF;
    -- idle daemons look at once; not for the one job a daemon's own record releases, which it claims
    -- in the same transaction (finish_and_claim says so with jobcron.claims_next)
    IF released > 1 OR (released = 1 AND coalesce(current_setting('jobcron.claims_next', true), '') <> 'on') THEN
        PERFORM pg_notify('jobcron_jobs', 'released');
    END IF;
END;
$$;

-- Every job that ends passes here: one probe of the links' primary key (the ending statement holds the
-- job's row: see the header); most jobs have no dependant and stop there.
CREATE FUNCTION jobcron_job_ended() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    job_id uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END;
BEGIN
    IF pg_trigger_depth() > 1 AND current_setting('jobcron.settling', true) = 'on' THEN
        RETURN OLD;  -- fired by a cascade in progress, which settles this job's children itself
    END IF;
    IF EXISTS (SELECT 1 FROM job_dependencies d WHERE d.parent_id = job_id AND NOT d.settled) THEN
        PERFORM jobcron_settle_children(job_id, CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE NEW.status END);
    END IF;
    RETURN OLD;  -- ignored after an UPDATE; lets a DELETE proceed
END;
$$;

CREATE TRIGGER processing_jobs_job_ended
    AFTER UPDATE OF status ON processing_jobs
    FOR EACH ROW
    WHEN (OLD.status NOT IN ('completed', 'failed', 'cancelled')
          AND NEW.status IN ('completed', 'failed', 'cancelled'))
    EXECUTE FUNCTION jobcron_job_ended();

-- another application deleting a job that has not ended: its dependants must not wait for it for good.
-- AFTER the row is gone (a parent and its child deleted by one statement: the child is skipped), and
-- named to fire before the foreign key's cascade that deletes the links (triggers of one event fire in
-- name order, and the key's are "RI_ConstraintTrigger_...": "A" sorts first)
CREATE TRIGGER "A_processing_jobs_job_deleted"
    AFTER DELETE ON processing_jobs
    FOR EACH ROW
    WHEN (OLD.status NOT IN ('completed', 'failed', 'cancelled'))
    EXECUTE FUNCTION jobcron_job_ended();

-- Job events (migration 0003): a release (waiting -> pending) is not one. It is the parent's end
-- that listeners learn of, and the child's own end when it comes; a chain would otherwise send two
-- events per link. A cascade's cancellations are events (cancelled, as any other).
DROP TRIGGER processing_jobs_collect_events ON processing_jobs;
CREATE TRIGGER processing_jobs_collect_events
    AFTER UPDATE ON processing_jobs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status <> 'processing'
          AND NOT (OLD.status = 'waiting' AND NEW.status = 'pending'))
    EXECUTE FUNCTION jobcron_collect_event();

DO $migration$
DECLARE
    home text := quote_ident(current_schema());
BEGIN
    EXECUTE format('ALTER FUNCTION jobcron_depends_on_check() SET search_path = pg_catalog, %s, pg_temp', home);
    EXECUTE format('ALTER FUNCTION jobcron_depends_on_link() SET search_path = pg_catalog, %s, pg_temp', home);
    -- every statement of these is a probe by primary key; a plan cached while the table was small
    -- must not become a scan of it per inserted dependant (quadratic in one INSERT ... SELECT)
    ALTER FUNCTION jobcron_depends_on_check() SET enable_seqscan = off;
    ALTER FUNCTION jobcron_depends_on_link() SET enable_seqscan = off;
    EXECUTE format('ALTER FUNCTION jobcron_settle_children(uuid, text) SET search_path = pg_catalog, %s, pg_temp', home);
    -- called by the trigger functions only
    REVOKE EXECUTE ON FUNCTION jobcron_settle_children(uuid, text) FROM PUBLIC;
    EXECUTE format('ALTER FUNCTION jobcron_job_ended() SET search_path = pg_catalog, %s, pg_temp', home);
END
$migration$;
