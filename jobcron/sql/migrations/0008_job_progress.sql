-- A running job's progress, as its workflow reports it with ctx.progress(fraction, message): written by
-- the daemon with the job's heartbeat (at most about once a second, never a write per call), kept
-- after the job ends. {"fraction": 0.0..1.0, "message": text or null, "attempt": n, "at": timestamptz}:
-- the attempt tells a retried job's new progress from its last attempt's.
ALTER TABLE processing_jobs ADD COLUMN progress jsonb;
