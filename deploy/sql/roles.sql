-- Least-privilege roles for jobcron: what the daemon needs, and what an application that enqueues needs.
--
--   psql "$OWNER_URL" -v worker_role=jobcron_worker -v enqueuer_role=jobcron_enqueuer -f deploy/sql/roles.sql
--
-- Run it as the owner of the jobcron tables (the role that ran `job_cron migrate`), in the database
-- that holds them, after every migration (a new table needs its grants). It is idempotent: each run
-- revokes what the two roles had on jobcron's tables and grants exactly the list below again.
-- Variables (all optional): worker_role (default jobcron_worker), enqueuer_role (default
-- jobcron_enqueuer), schema (default public), row_security (default off; on: each login role of the
-- enqueuer role sees only the jobs, files and insights it enqueued, the worker role sees all). A role that does not exist is created NOLOGIN: give it
-- to login roles with `GRANT jobcron_worker TO daemon_login;` (or ALTER ROLE ... LOGIN PASSWORD ...).
--
-- Neither role may create, alter or drop anything: they get no CREATE on the schema, and only the
-- owner can ALTER or DROP its tables. PostgreSQL 14 and older let every role create in the public
-- schema; there, also run `REVOKE CREATE ON SCHEMA public FROM PUBLIC;`.

\set ON_ERROR_STOP on
\if :{?worker_role}
\else
    \set worker_role jobcron_worker
\endif
\if :{?enqueuer_role}
\else
    \set enqueuer_role jobcron_enqueuer
\endif
\if :{?schema}
\else
    \set schema public
\endif
\if :{?row_security}
\else
    \set row_security off
\endif

BEGIN;
SET LOCAL search_path = :"schema";

SELECT format('CREATE ROLE %I NOLOGIN', r) FROM unnest(ARRAY[:'worker_role', :'enqueuer_role']) AS r
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec

-- start from nothing on jobcron's objects, so a re-run after a change grants exactly this file
REVOKE ALL ON jobcron_migrations, processing_jobs, files, insights, job_schedules, schedule_executions,
              job_workers, job_pauses, jobcron_tokens, jobcron_sessions, job_dependencies,
              jobcron_webhooks
    FROM :"worker_role", :"enqueuer_role";
REVOKE ALL ON ALL SEQUENCES IN SCHEMA :"schema" FROM :"worker_role", :"enqueuer_role";
GRANT USAGE ON SCHEMA :"schema" TO :"worker_role", :"enqueuer_role";

-- The worker role: exactly what `job_cron run` does.
-- schema check at start
GRANT SELECT ON jobcron_migrations TO :"worker_role";
-- claim, heartbeat, record, rescue, release (UPDATE); retention (DELETE); schedules enqueue (INSERT)
GRANT SELECT, INSERT, UPDATE, DELETE ON processing_jobs TO :"worker_role";
-- a job's file: read it, mark it processing / analysed / failed
GRANT SELECT, UPDATE ON files TO :"worker_role";
-- results, written in the transaction that completes the job; never read back by the daemon
GRANT INSERT ON insights TO :"worker_role";
-- a result's follow-up jobs are linked to their job in that transaction (the links of depends_on, and
-- releasing or cancelling dependants, are written by trigger functions that run as their owner)
GRANT SELECT, INSERT ON job_dependencies TO :"worker_role";
-- webhook subscriptions: written from its config at start; read by the outbox of a schedule's failure
GRANT SELECT, INSERT, UPDATE, DELETE ON jobcron_webhooks TO :"worker_role";
-- a schedule's failure writes the webhook outbox in the firing's transaction
GRANT EXECUTE ON FUNCTION jobcron_webhook_outbox(text, text, jsonb) TO :"worker_role";
-- firing schedules: lock the due ones, advance them, record each occurrence once
GRANT SELECT, UPDATE ON job_schedules TO :"worker_role";
GRANT SELECT, INSERT, UPDATE ON schedule_executions TO :"worker_role";
-- its own row in job_workers (register, heartbeat, remove at exit)
GRANT SELECT, INSERT, UPDATE, DELETE ON job_workers TO :"worker_role";
-- pauses: read them; add the global one at start when auto_start_processing is false; a claim about to
-- park a paused type's jobs share-locks its pause row, which PostgreSQL allows only with an UPDATE grant
-- (on one column: paused_at, which the daemon never writes)
GRANT SELECT, INSERT ON job_pauses TO :"worker_role";
GRANT UPDATE (paused_at) ON job_pauses TO :"worker_role";
-- LISTEN/NOTIFY, advisory locks and gen_random_uuid() need no grant.

-- The enqueuer role: insert jobs and files, read them back with their results and insights.
-- Only the columns an application may set: it cannot insert a job as running, finished or with a result,
-- nor say who enqueued it (enqueued_by defaults to the inserting role). An ORM that names only these
-- columns and lets the server fill the rest (jobcron.contrib.sqlalchemy, jobcron.contrib.django) works.
GRANT INSERT (id, job_type, file_id, user_id, business_description, metadata, priority, scheduled_at,
              max_retries, timeout_seconds, dedup_key, depends_on, run_anyway)
    ON processing_jobs TO :"enqueuer_role";
-- Every column but the lease: an ORM reads back the server's defaults (RETURNING status, attempts, ...)
-- and a caller its job's status, result and error history. The lease token is what a daemon proves its
-- ownership of a running job with; nobody else needs it.
SELECT format('GRANT SELECT (%s) ON processing_jobs TO %I',
              string_agg(quote_ident(attname), ', ' ORDER BY attnum), :'enqueuer_role')
FROM pg_attribute
WHERE attrelid = 'processing_jobs'::regclass AND attnum > 0 AND NOT attisdropped AND attname <> 'lease_token'
\gexec
GRANT INSERT (id, file_path, original_name, user_id, size_bytes) ON files TO :"enqueuer_role";
GRANT SELECT ON files, insights TO :"enqueuer_role";

-- Row-level security (row_security=on): policies per role, named after it, so that roles.sql run for two
-- pairs of roles keeps both. The table owner (migrations, the operator's CLI) is not subject to them.
SELECT format('DROP POLICY IF EXISTS %I ON %I', p.policyname, p.tablename)
FROM pg_policies p
WHERE p.schemaname = :'schema' AND p.tablename IN ('processing_jobs', 'files', 'insights')
  AND p.policyname IN ('jobcron_all_' || :'worker_role', 'jobcron_own_' || :'enqueuer_role')
\gexec
\if :row_security
    SELECT format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t),
           format('CREATE POLICY %I ON %I TO %I USING (true) WITH CHECK (true)',
                  'jobcron_all_' || :'worker_role', t, :'worker_role')
    FROM unnest(ARRAY['processing_jobs', 'files', 'insights']) AS t
    \gexec
    -- its own jobs and files: those it inserted (enqueued_by is current_user's name at the INSERT)
    SELECT format('CREATE POLICY %I ON %I TO %I USING (enqueued_by = current_user) '
                  'WITH CHECK (enqueued_by = current_user)', 'jobcron_own_' || :'enqueuer_role', t,
                  :'enqueuer_role')
    FROM unnest(ARRAY['processing_jobs', 'files']) AS t
    \gexec
    -- the insights of its own jobs (the subquery is itself under processing_jobs' policy)
    SELECT format('CREATE POLICY %I ON insights TO %I USING '
                  '(EXISTS (SELECT 1 FROM processing_jobs j WHERE j.id = insights.job_id))',
                  'jobcron_own_' || :'enqueuer_role', :'enqueuer_role')
    \gexec
\else
    -- off: without policies left (another pair of roles may still use them) the tables are open again
    SELECT format('ALTER TABLE %I DISABLE ROW LEVEL SECURITY', t)
    FROM unnest(ARRAY['processing_jobs', 'files', 'insights']) AS t
    WHERE NOT EXISTS (SELECT 1 FROM pg_policies p WHERE p.schemaname = :'schema' AND p.tablename = t)
    \gexec
\endif

COMMIT;
