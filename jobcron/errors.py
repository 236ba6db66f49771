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


# defined here rather than next to their one raiser, so that every error has one home


class ScheduleError(JobCronError):
    """A schedule definition that cannot work; the message says why."""


class BulkInputError(InvalidInput):
    """Bad lines in a bulk input; nothing was enqueued."""

    def __init__(self, bad: list[tuple[int, str]], truncated: bool) -> None:
        self.bad = bad
        more = f" (and {len(bad) - 1} more bad line(s){', stopped counting' if truncated else ''})"
        suffix = more if len(bad) > 1 or truncated else ""
        super().__init__(f"line {bad[0][0]}: {bad[0][1]}{suffix}; nothing was enqueued")


class DataDirInUse(JobCronError):
    """Another live process runs the embedded server of this data folder."""


class JsonRefused(ValueError):
    """JSON text the parser refused (jsontext.parse_json); callers say which input it was.

    `reason` is the parser's message; lineno, colno and pos say where, when the syntax is at fault
    (None for valid syntax it still refuses, such as an integer of 5,000 digits). str() is the
    reason with " at column N" when there is one.
    """

    def __init__(
        self, reason: str, *, lineno: int | None = None, colno: int | None = None, pos: int | None = None
    ) -> None:
        self.reason, self.lineno, self.colno, self.pos = reason, lineno, colno, pos
        super().__init__(reason if colno is None else f"{reason} at column {colno}")


# refusals of schedule management (jobcron.schedules.manage)


class ScheduleNotFound(JobCronError):
    """No schedule has the given id or name."""


class ScheduleNameTaken(JobCronError):
    """Another schedule has that name already."""


class ScheduleFinished(JobCronError):
    """A schedule cannot be resumed: it has no occurrence left (ended, or ran its max executions)."""


class JobNotFound(JobCronError):
    """No job has the given id."""


class WorkerIdTaken(JobCronError):
    """Another live daemon runs under the same worker id."""


class DatabaseUnavailable(JobCronError):
    """The database stayed unreachable for longer than the command may wait (`run --once`)."""


class StoreError(JobCronError):
    """The database refused a row by one of the schema's named constraints (`constraint`).

    Raised by `jobcron.store.translate` from the driver's error, which is its `__cause__`. While some
    callers still catch the driver's classes, the object raised is also an instance of the driver's
    error it replaces (see `translate`), so those callers keep their behaviour; catch these classes.
    """

    constraint: str | None = None


class SlotTaken(StoreError):
    """Another daemon took the same per-user running slot at the same instant (a claim race: claim again)."""


class DuplicateKey(StoreError):
    """A job with the same dedup_key is pending or running already (or another unique key is taken)."""


class DuplicateName(StoreError):
    """A schedule with this name exists already."""


class UnknownReference(StoreError):
    """A row names another that does not exist (a file_id with no files row, a schedule that is gone)."""


class UnknownParent(UnknownReference):
    """A job's depends_on names a job that does not exist (the message names it)."""

    def __str__(self) -> str:
        # the server's own sentence ("depends_on: job ... does not exist"), without its context lines
        diag = getattr(self, "diag", None)
        primary = getattr(diag, "message_primary", None)
        return str(primary) if primary else super().__str__()


class RowRefused(StoreError):
    """A value a CHECK constraint refuses (a priority out of range, a template the schema rejects)."""


class WaitTimeout(JobCronError, TimeoutError):
    """`jobcron.wait` gave up: the job did not finish in time. `job` is how it stood last."""

    def __init__(self, message: str, job: object = None) -> None:
        super().__init__(message)
        self.job = job


class WrongConnection(JobCronError, TypeError):
    """An application passed something other than the psycopg 3 connection the API takes."""
