"""The exception hierarchy of jobcron."""

from __future__ import annotations


class JobCronError(Exception):
    """Base of every error jobcron raises on purpose."""


class ConfigError(JobCronError):
    """The configuration is invalid; the message names the key."""


class SchemaOutOfDate(JobCronError):
    """The database schema is behind (or ahead of) this version of jobcron."""


class MigrationError(JobCronError):
    """A migration file is missing, altered or failed to apply."""


class SqlNotFound(JobCronError):
    """A named query does not exist in the SQL files."""


class PermanentError(JobCronError):
    """A workflow error that retrying cannot fix: the job fails at once."""


class TransientError(JobCronError):
    """A workflow error worth retrying."""


class JobCancelled(JobCronError):
    """The job was cancelled while it ran."""


class WorkflowNotFound(PermanentError):
    """No workflow is registered for the job's job_type."""


class InvalidJob(PermanentError):
    """The job row is not what its workflow needs (metadata, file)."""


class LeaseLost(JobCronError):
    """This worker no longer holds the job: another worker or an operator took it over."""


class InvalidInput(JobCronError, ValueError):
    """Input from an operator or an application is invalid; the message names the field (and line)."""


class JobNotFound(JobCronError):
    """No job has the given id."""


class WorkerIdTaken(JobCronError):
    """Another live daemon runs under the same worker id."""


class DatabaseUnavailable(JobCronError):
    """The database stayed unreachable for longer than the command may wait (`run --once`)."""


class WaitTimeout(JobCronError, TimeoutError):
    """`jobcron.wait` gave up: the job did not finish in time. `job` is how it stood last."""

    def __init__(self, message: str, job: object = None) -> None:
        super().__init__(message)
        self.job = job
