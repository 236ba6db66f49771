-- Who enqueued a job or registered a file: the role that inserted the row (current_user at the INSERT,
-- so a login role that was granted the enqueuer group role is recorded under its own name). The
-- application cannot choose it: roles.sql grants no INSERT on the column. With row-level security on
-- (deploy/sql/roles.sql -v row_security=on), an enqueuing role sees only the jobs, files and insights
-- of the rows it enqueued; the daemon's role sees all.
--
-- Rows that existed before this migration keep NULL: nobody recorded who made them.
ALTER TABLE processing_jobs ADD COLUMN enqueued_by text;
ALTER TABLE processing_jobs ALTER COLUMN enqueued_by SET DEFAULT current_user;
ALTER TABLE files ADD COLUMN enqueued_by text;
ALTER TABLE files ALTER COLUMN enqueued_by SET DEFAULT current_user;
