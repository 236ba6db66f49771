-- The whole data model: queue, files, insights, schedules, workers, pauses.
-- Column names of the hand-rolled systems this replaces are kept so their SQL keeps working.

-- Time-ordered UUIDs (the version 7 layout: 48 bits of Unix milliseconds, then random bits). A job's
-- primary-key entry lands next to those of jobs created at the same time instead of on a random
-- page, so the few index pages a draining queue touches stay hot however many rows the table keeps;
-- with random ids every status change dirties (and logs a full image of) some random old page.
CREATE FUNCTION jobcron_uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

CREATE TABLE files (
    id            uuid PRIMARY KEY DEFAULT jobcron_uuid_v7(),
    file_path     varchar(500) NOT NULL,
    original_name varchar(255),
    status        varchar(20) NOT NULL DEFAULT 'uploaded',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    user_id       text,
    size_bytes    bigint,
    CONSTRAINT files_status_valid
        CHECK (status IN ('uploaded', 'processing', 'analysed', 'failed')),
    CONSTRAINT files_path_not_empty CHECK (length(file_path) > 0)
);

CREATE TABLE job_schedules (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                 text NOT NULL,
    -- the job template
    job_type             varchar(100) NOT NULL,
    metadata             jsonb NOT NULL DEFAULT '{}'::jsonb,
    user_id              text,
    priority             integer NOT NULL DEFAULT 0,
    file_id              uuid REFERENCES files (id) ON DELETE SET NULL,
    business_description text,
    timeout_seconds      integer,
    max_retries          integer,
    -- when to run it
    kind                 text NOT NULL,
    run_at               timestamptz,
    interval_seconds     integer,
    time_of_day          time,
    weekdays             smallint[],
    day_of_month         smallint,
    cron_expression      text,
    timezone             text NOT NULL DEFAULT 'UTC',
    start_at             timestamptz,
    end_at               timestamptz,
    max_executions       integer,
    execution_count      integer NOT NULL DEFAULT 0,
    enabled              boolean NOT NULL DEFAULT true,
    next_run_at          timestamptz,
    last_run_at          timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_schedules_name_unique UNIQUE (name),
    CONSTRAINT job_schedules_kind_valid
        CHECK (kind IN ('once', 'interval', 'daily', 'weekly', 'monthly', 'cron')),
    CONSTRAINT job_schedules_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT job_schedules_once_has_run_at CHECK (kind <> 'once' OR run_at IS NOT NULL),
    CONSTRAINT job_schedules_interval_positive
        CHECK (kind <> 'interval' OR interval_seconds > 0),
    CONSTRAINT job_schedules_daily_has_time
        CHECK (kind NOT IN ('daily', 'weekly', 'monthly') OR time_of_day IS NOT NULL),
    CONSTRAINT job_schedules_weekly_has_days
        CHECK (kind <> 'weekly' OR cardinality(weekdays) > 0),
    CONSTRAINT job_schedules_monthly_day_valid
        CHECK (kind <> 'monthly' OR day_of_month BETWEEN 1 AND 31),
    CONSTRAINT job_schedules_cron_has_expression
        CHECK (kind <> 'cron' OR cron_expression IS NOT NULL),
    CONSTRAINT job_schedules_end_after_start
        CHECK (end_at IS NULL OR start_at IS NULL OR end_at > start_at),
    CONSTRAINT job_schedules_max_executions_positive
        CHECK (max_executions IS NULL OR max_executions > 0),
    CONSTRAINT job_schedules_timeout_positive
        CHECK (timeout_seconds IS NULL OR timeout_seconds > 0),
    CONSTRAINT job_schedules_priority_range CHECK (priority BETWEEN -1000 AND 1000)
);

-- Due schedules are found through this index on every daemon cycle.
CREATE INDEX job_schedules_due_idx ON job_schedules (next_run_at) WHERE enabled;

CREATE TABLE processing_jobs (
    id                   uuid PRIMARY KEY DEFAULT jobcron_uuid_v7(),
    file_id              uuid REFERENCES files (id) ON DELETE SET NULL,
    job_type             varchar(100) NOT NULL,
    business_description text,
    status               varchar(20) NOT NULL DEFAULT 'pending',
    metadata             jsonb DEFAULT '{}'::jsonb,
    retry_count          integer NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    completed_at         timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    error_message        text,
    -- added by jobcron; every one has a default so the plain INSERT above stays valid
    seq                  bigint GENERATED ALWAYS AS IDENTITY,
    user_id              text,
    priority             integer NOT NULL DEFAULT 0,
    scheduled_at         timestamptz NOT NULL DEFAULT now(),
    max_retries          integer,
    attempts             integer NOT NULL DEFAULT 0,
    locked_by            text,
    locked_at            timestamptz,
    heartbeat_at         timestamptz,
    lease_token          uuid,
    user_slot            smallint,
    timeout_seconds      integer,
    cancel_requested     boolean NOT NULL DEFAULT false,
    result               jsonb,
    errors               jsonb NOT NULL DEFAULT '[]'::jsonb,
    dedup_key            text,
    schedule_id          bigint REFERENCES job_schedules (id) ON DELETE SET NULL,
    CONSTRAINT processing_jobs_status_valid
        CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    CONSTRAINT processing_jobs_job_type_not_empty CHECK (length(job_type) > 0),
    CONSTRAINT processing_jobs_metadata_object
        CHECK (metadata IS NULL OR jsonb_typeof(metadata) = 'object'),
    CONSTRAINT processing_jobs_errors_array CHECK (jsonb_typeof(errors) = 'array'),
    CONSTRAINT processing_jobs_retry_count_non_negative CHECK (retry_count >= 0),
    CONSTRAINT processing_jobs_max_retries_range
        CHECK (max_retries IS NULL OR max_retries BETWEEN 0 AND 1000),
    CONSTRAINT processing_jobs_attempts_non_negative CHECK (attempts >= 0),
    CONSTRAINT processing_jobs_priority_range CHECK (priority BETWEEN -1000 AND 1000),
    CONSTRAINT processing_jobs_timeout_positive
        CHECK (timeout_seconds IS NULL OR timeout_seconds > 0),
    CONSTRAINT processing_jobs_user_id_not_empty CHECK (user_id IS NULL OR length(user_id) > 0),
    -- a processing job always carries a complete lease
    CONSTRAINT processing_jobs_processing_has_lease
        CHECK (status <> 'processing'
               OR (lease_token IS NOT NULL AND locked_by IS NOT NULL
                   AND started_at IS NOT NULL AND heartbeat_at IS NOT NULL)),
    -- a cancel request belongs to a running job (a pending one is cancelled at once): a pending row
    -- carrying one would be passed over by every claim and never finish
    CONSTRAINT processing_jobs_pending_not_cancel_requested
        CHECK (status <> 'pending' OR NOT cancel_requested),
    -- a finished job always says when it finished
    CONSTRAINT processing_jobs_finished_has_time
        CHECK (status NOT IN ('completed', 'failed', 'cancelled') OR completed_at IS NOT NULL)
);

-- Claim paths: only pending rows are indexed, so finished rows never slow the claim.
CREATE INDEX processing_jobs_claim_priority_idx
    ON processing_jobs (priority DESC, scheduled_at, seq) WHERE status = 'pending';
CREATE INDEX processing_jobs_claim_fifo_idx
    ON processing_jobs (scheduled_at, seq) WHERE status = 'pending';
-- Rescue scans only running rows.
CREATE INDEX processing_jobs_heartbeat_idx
    ON processing_jobs (heartbeat_at) WHERE status = 'processing';
-- Per-user limit: a numbered slot per running job; two running jobs of one user can never
-- hold the same slot, so the limit holds by construction.
CREATE UNIQUE INDEX processing_jobs_user_slot_uniq
    ON processing_jobs (user_id, user_slot)
    WHERE status = 'processing' AND user_slot IS NOT NULL;
-- Deduplication applies to jobs that are still to run or running.
CREATE UNIQUE INDEX processing_jobs_dedup_uniq
    ON processing_jobs (dedup_key)
    WHERE dedup_key IS NOT NULL AND status IN ('pending', 'processing');
-- Operator listings and retention.
CREATE INDEX processing_jobs_created_idx ON processing_jobs (created_at);
CREATE INDEX processing_jobs_finished_idx
    ON processing_jobs (completed_at) WHERE status IN ('completed', 'failed', 'cancelled');
CREATE INDEX processing_jobs_file_idx ON processing_jobs (file_id) WHERE file_id IS NOT NULL;
-- Each user's own queue (jobs without a user sort last, as NULL): the claim's deep path reads one
-- head job per user from it, and the loose scan over it visits each user once, never each job.
CREATE INDEX processing_jobs_user_queue_idx
    ON processing_jobs (user_id, scheduled_at, seq) WHERE status = 'pending';
CREATE INDEX processing_jobs_user_queue_priority_idx
    ON processing_jobs (user_id, priority DESC, scheduled_at, seq) WHERE status = 'pending';
-- Running jobs per user: a handful of rows, read by the per-user limit and the operator views.
CREATE INDEX processing_jobs_running_user_idx
    ON processing_jobs (user_id) WHERE status = 'processing';

CREATE TABLE insights (
    id               uuid PRIMARY KEY DEFAULT jobcron_uuid_v7(),
    -- insights are business results: they outlive the pruning of their job
    job_id           uuid REFERENCES processing_jobs (id) ON DELETE SET NULL,
    insight_type     varchar(100),
    content          jsonb NOT NULL,
    confidence_score numeric(3, 2),
    created_at       timestamptz NOT NULL DEFAULT now(),
    file_id          uuid REFERENCES files (id) ON DELETE SET NULL,
    CONSTRAINT insights_confidence_range
        CHECK (confidence_score IS NULL OR confidence_score BETWEEN 0 AND 1)
);
CREATE INDEX insights_job_idx ON insights (job_id);
CREATE INDEX insights_file_idx ON insights (file_id);

CREATE TABLE schedule_executions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule_id   bigint NOT NULL REFERENCES job_schedules (id) ON DELETE CASCADE,
    occurrence_at timestamptz NOT NULL,
    job_id        uuid REFERENCES processing_jobs (id) ON DELETE SET NULL,
    fired_at      timestamptz NOT NULL DEFAULT now(),
    fired_by      text,
    -- one job per occurrence, however many daemons race to fire it
    CONSTRAINT schedule_executions_once UNIQUE (schedule_id, occurrence_at)
);
CREATE INDEX schedule_executions_job_idx ON schedule_executions (job_id);

CREATE TABLE job_workers (
    id             text PRIMARY KEY,
    host           text NOT NULL,
    pid            integer NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    current_job_id uuid,
    state          text NOT NULL DEFAULT 'starting',
    version        text,
    CONSTRAINT job_workers_state_valid
        CHECK (state IN ('starting', 'idle', 'running', 'paused', 'stopping'))
);

-- Claiming paused across every daemon: job_type '*' pauses all types.
CREATE TABLE job_pauses (
    job_type  varchar(100) PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now(),
    paused_by text
);

-- One notification per INSERT statement (not per row), so a bulk insert cannot flood listeners.
CREATE FUNCTION jobcron_notify_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobcron_jobs', 'inserted');
    RETURN NULL;
END;
$$;

CREATE TRIGGER processing_jobs_notify_insert
    AFTER INSERT ON processing_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobcron_notify_inserted();

-- A cancel request reaches the daemon running the job at once, on whichever host it runs.
CREATE FUNCTION jobcron_notify_cancel() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobcron_cancel', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER processing_jobs_notify_cancel
    AFTER UPDATE OF cancel_requested ON processing_jobs
    FOR EACH ROW
    WHEN (NEW.cancel_requested AND NOT OLD.cancel_requested AND NEW.status = 'processing')
    EXECUTE FUNCTION jobcron_notify_cancel();

-- Pausing and resuming reaches every daemon at once.
CREATE FUNCTION jobcron_notify_pause() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobcron_control', 'pauses');
    RETURN NULL;
END;
$$;

CREATE TRIGGER job_pauses_notify
    AFTER INSERT OR UPDATE OR DELETE ON job_pauses
    FOR EACH STATEMENT EXECUTE FUNCTION jobcron_notify_pause();
