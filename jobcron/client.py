"""Enqueue jobs from Python: validated before the database sees them, inside the caller's transaction.

`jobcron.enqueue(conn, "analysis", user_id="u1", metadata={...})` and `jobcron.enqueue_many(conn, rows)`
take a psycopg 3 connection. They never commit on the caller's behalf: on a connection in a
transaction they use a savepoint, on an idle non-autocommit connection they leave the transaction open
for the caller to commit, and only an autocommit connection gets its own short transaction.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import PurePath
from typing import Any

import psycopg

from jobcron import store
from jobcron.drivers import require_sync
from jobcron.durations import parse_instant
from jobcron.errors import InvalidInput, JobCronError, JsonRefused
from jobcron.jsontext import parse_json
from jobcron.store.steps import Atomic, Work, run

FIELDS = (
    "job_type",
    "user_id",
    "metadata",
    "priority",
    "run_at",
    "max_retries",
    "timeout_seconds",
    "dedup_key",
    "file_id",
    "file_path",
    "business_description",
    "depends_on",
    "run_anyway",
)
ALIASES = {"scheduled_at": "run_at", "type": "job_type", "after": "depends_on"}
MAX_PARENTS = 1000
_BOOLEAN_WORDS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False, "": False}
KNOWN = frozenset(FIELDS) | frozenset(ALIASES)
DEFAULT_MAX_METADATA_BYTES = 65536
PRIORITY_RANGE = (-1000, 1000)
MAX_RETRIES_RANGE = (0, 1000)
TIMEOUT_RANGE = (1, 365 * 86400)
_JOB_TYPE = re.compile(r"[\w.-]{1,100}")
# one encoder for every row: json.dumps with options would build a new one per call
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)
_LIMITS = {"user_id": 200, "dedup_key": 500, "file_path": 500, "business_description": 100_000}


def _text(name: str, value: Any, *, numbers_ok: bool = False) -> str:
    if isinstance(value, str):
        if not value:
            raise InvalidInput(f"{name}: must not be empty")
        if len(value) > _LIMITS[name]:
            raise InvalidInput(f"{name}: longer than {_LIMITS[name]} characters")
        if "\x00" in value:
            raise InvalidInput(f"{name}: contains a NUL character")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                # a byte that was not UTF-8 in argv or a file arrives as a lone surrogate
                raise InvalidInput(f"{name}: not valid UTF-8 text") from None
        return value
    if numbers_ok and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidInput(f"{name}: expected a string, got {_kind(value)}")


def _integer(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InvalidInput(f"{name}: not an integer: {value!r}") from None
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name}: expected an integer, got {_kind(value)}")
    if not lo <= value <= hi:
        raise InvalidInput(f"{name}: must be between {lo} and {hi}, got {value}")
    return value


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", float: "a number"}
    if value is None:
        return "null"
    return names.get(type(value), "an integer" if isinstance(value, int) else type(value).__name__)


def metadata_text(value: Any, max_bytes: int) -> str:
    """The metadata as JSON text, or InvalidInput: it must be an object of plain JSON values within max_bytes."""
    if isinstance(value, str):
        try:
            value = parse_json(value)
        except JsonRefused as exc:
            raise InvalidInput(f"metadata: invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"metadata: must be a JSON object, got {_kind(value)}")
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"metadata: not plain JSON: {exc}") from None
    if "\\u0000" in text:
        raise InvalidInput("metadata: contains a NUL character (\\u0000), which PostgreSQL cannot store")
    try:
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput("metadata: not valid UTF-8 text (a lone surrogate such as \\ud800)") from None
    if size > max_bytes:
        raise InvalidInput(f"metadata: {size} bytes, more than the limit of {max_bytes}")
    return text


def run_at_value(value: Any) -> datetime:
    """A timezone-aware datetime from a datetime or an ISO 8601 string."""
    if isinstance(value, str):
        return parse_instant(value, "run_at")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInput("run_at: a datetime without a timezone is ambiguous across hosts; add tzinfo")
        return value
    raise InvalidInput(f"run_at: expected an ISO 8601 date-time, got {_kind(value)}")


def check_job_type(value: Any) -> str:
    """A job type name: letters, digits, '_', '.', '-' (as workflow names in config)."""
    if value is None:
        raise InvalidInput("job_type: missing (every job needs a job_type)")
    if not isinstance(value, str):
        raise InvalidInput(f"job_type: expected a string, got {_kind(value)}")
    if not _JOB_TYPE.fullmatch(value):
        if not value:
            raise InvalidInput("job_type: missing (every job needs a job_type)")
        raise InvalidInput(
            f"job_type: {value[:120]!r} is not a job type name (letters, digits, _ . -; 1-100)"
        )
    return value


def check_fields(fields: Mapping[str, Any], max_metadata_bytes: int) -> tuple[Any, ...]:
    """The fields as a tuple in FIELDS order (None = not given); InvalidInput names the bad field."""
    if not fields.keys() <= KNOWN:
        unknown = sorted(k for k in fields if k not in KNOWN)
        raise InvalidInput(f"unknown field {unknown[0]!r} (known: {', '.join(FIELDS)})")
    f = fields
    if "scheduled_at" in f or "type" in f or "after" in f:
        f = {ALIASES.get(k, k): v for k, v in fields.items()}
    get = f.get
    job_type = check_job_type(get("job_type"))
    depends_on, run_anyway = _dependencies(get("depends_on"), get("run_anyway"))
    user_id, metadata, priority, run_at, max_retries, timeout, dedup_key, file_id, file_path, description = (
        get("user_id"),
        get("metadata"),
        get("priority"),
        get("run_at"),
        get("max_retries"),
        get("timeout_seconds"),
        get("dedup_key"),
        get("file_id"),
        get("file_path"),
        get("business_description"),
    )
    # the common case (a string user, an object of parameters) stays on short paths
    if user_id is not None:
        user_id = _text("user_id", user_id, numbers_ok=True)
    if metadata is not None:
        metadata = metadata_text(metadata, max_metadata_bytes)
    if priority is not None and not (type(priority) is int and -1000 <= priority <= 1000):
        priority = _integer("priority", priority, *PRIORITY_RANGE)
    if run_at is not None:
        run_at = run_at_value(run_at)
    if max_retries is not None:
        max_retries = _integer("max_retries", max_retries, *MAX_RETRIES_RANGE)
    if timeout is not None:
        timeout = _integer("timeout_seconds", timeout, *TIMEOUT_RANGE)
    if dedup_key is not None:
        dedup_key = _text("dedup_key", dedup_key, numbers_ok=True)
    if file_path is not None:
        file_path = _text("file_path", file_path)
    if description is not None:
        description = _text("business_description", description)
    if file_id is not None:
        if file_path is not None:
            raise InvalidInput("file_id, file_path: give one of them, not both")
        try:
            file_id = str(uuid.UUID(str(file_id)))
        except ValueError:
            raise InvalidInput(f"file_id: not a UUID: {str(file_id)[:60]!r}") from None
    return (
        job_type,
        user_id,
        metadata,
        priority,
        run_at,
        max_retries,
        timeout,
        dedup_key,
        file_id,
        file_path,
        description,
        depends_on,
        run_anyway,
    )


def _dependencies(depends_on: Any, run_anyway: Any) -> tuple[list[str] | None, bool | None]:
    """depends_on and run_anyway checked (run_anyway: None unless true)."""
    if depends_on is None and run_anyway is None:
        return None, None  # the common case: one test
    parents = None if depends_on is None else parent_ids(depends_on)
    if run_anyway is None:
        return parents, None
    if isinstance(run_anyway, str) and run_anyway.strip().lower() in _BOOLEAN_WORDS:
        run_anyway = _BOOLEAN_WORDS[run_anyway.strip().lower()]  # a CSV column
    if not isinstance(run_anyway, bool):
        raise InvalidInput(f"run_anyway: expected true or false, got {_kind(run_anyway)}")
    if run_anyway and not parents:
        raise InvalidInput("run_anyway: only means something with depends_on")
    return parents, run_anyway or None


def parent_ids(value: Any) -> list[str] | None:
    """depends_on as a list of job ids (UUID text, repeats dropped, order kept); None when empty."""
    if isinstance(value, str):
        # one id, or several apart by spaces, commas or semicolons (a CSV column)
        value = [part for part in re.split(r"[\s,;]+", value) if part]
    if not isinstance(value, (list, tuple)):
        raise InvalidInput(f"depends_on: expected an array of job ids, got {_kind(value)}")
    ids: dict[str, None] = {}
    for index, item in enumerate(value):
        try:
            ids[str(uuid.UUID(str(item)))] = None
        except ValueError:
            raise InvalidInput(f"depends_on[{index}]: not a job id (UUID): {str(item)[:60]!r}") from None
    if len(ids) > MAX_PARENTS:
        raise InvalidInput(f"depends_on: {len(ids)} jobs, more than the limit of {MAX_PARENTS}")
    return list(ids) or None


def validate(
    fields: Mapping[str, Any], *, max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES
) -> dict[str, Any]:
    """Check one job's fields and return the given ones normalised (metadata as JSON text)."""
    checked = check_fields(fields, max_metadata_bytes)
    return {name: value for name, value in zip(FIELDS, checked, strict=True) if value is not None}


def _file_facts(path: str) -> tuple[str, int | None]:
    """The file's base name and, when it is readable here, its size."""
    try:
        size: int | None = os.stat(path).st_size
    except OSError:
        size = None  # the daemons may see a file system this host does not
    return PurePath(path).name or path, size


def enqueue(
    conn: psycopg.Connection[Any],
    job_type: str,
    *,
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
    **fields: Any,
) -> str:
    """Enqueue one job and return its id (with a dedup_key already pending or running: that job's id)."""
    return enqueue_one(conn, {"job_type": job_type, **fields}, max_metadata_bytes=max_metadata_bytes)[0]


# how often enqueue_one tries when the job holding its dedup_key finishes between insert and look-up
DEDUP_ATTEMPTS = 3


def enqueue_params(fields: Mapping[str, Any], max_metadata_bytes: int) -> dict[str, Any]:
    """One job's fields checked and turned into the parameters of store.enqueue_one_work."""
    job = validate(fields, max_metadata_bytes=max_metadata_bytes)
    params: dict[str, Any] = {
        "job_type": job["job_type"],
        "file_id": job.get("file_id"),
        "user_id": job.get("user_id"),
        "business_description": job.get("business_description"),
        "metadata": json.loads(job["metadata"]) if "metadata" in job else None,
        "priority": job.get("priority"),
        "scheduled_at": job.get("run_at"),
        "max_retries": job.get("max_retries"),
        "timeout_seconds": job.get("timeout_seconds"),
        "dedup_key": job.get("dedup_key"),
        "depends_on": job.get("depends_on"),
        "run_anyway": bool(job.get("run_anyway")),
    }
    if "file_path" in job:
        name, size = _file_facts(job["file_path"])
        params.update(file_path=job["file_path"], original_name=name, size_bytes=size)
    return params


def dedup_unresolved(params: Mapping[str, Any]) -> JobCronError:
    """The error when a dedup_key is taken but the job holding it cannot be found."""
    return JobCronError(
        f"dedup_key {params.get('dedup_key')!r}: taken by a pending or running job that this role cannot "
        "see (with row-level security on, another role's job may hold it: prefix keys with your "
        "application's name), or that kept finishing between insert and look-up"
    )


def enqueue_work(params: dict[str, Any]) -> Work[tuple[str, bool]]:
    """One job's insert as one atomic unit, tried again when the job holding its dedup_key finished meanwhile."""
    for _ in range(DEDUP_ATTEMPTS):
        found: tuple[str, bool] | None = yield Atomic(store.enqueue_one_work(params))
        if found is not None:
            return found
    raise dedup_unresolved(params)


def enqueue_one(
    conn: psycopg.Connection[Any],
    fields: Mapping[str, Any],
    *,
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
) -> tuple[str, bool]:
    """Enqueue one job: (id, created); created is False when its dedup_key was already pending or running."""
    conn = require_sync(conn, "jobcron.enqueue")
    return run(conn, enqueue_work(enqueue_params(fields, max_metadata_bytes)))


def time_ordered_ids() -> Iterator[str]:
    """Ids for one batch: UUIDv7 layout (millisecond time first), consecutive within the batch.

    New ids land at the right edge of the primary key index instead of on random pages, which makes
    a bulk insert cheaper; the random bits keep batches of concurrent producers apart.
    """
    ms = time.time_ns() // 1_000_000
    rand_a = int.from_bytes(os.urandom(2), "big") & 0xFFF
    head = f"{(ms << 16) | (0x7 << 12) | rand_a:016x}"
    # variant bits 10, then 62 random bits as the start of a counter that cannot overflow in a batch
    tail = (0b10 << 62) | (int.from_bytes(os.urandom(8), "big") & ((1 << 61) - 1))
    while True:
        yield f"{head}{tail:016x}"
        tail += 1


def copy_row(checked: tuple[Any, ...], ids: Iterator[str], now: str) -> tuple[Any, ...]:
    """A checked job as a row in store.ENQUEUE_COLUMNS order, defaults filled in.

    `now` is the database clock as ISO text: COPY passes text through, where a datetime would be
    converted anew for every row.
    """
    (
        job_type,
        user_id,
        metadata,
        priority,
        run_at,
        max_retries,
        timeout,
        dedup_key,
        file_id,
        file_path,
        desc,
        depends_on,
        run_anyway,
    ) = checked
    name = size = None
    if file_path is not None:
        name, size = _file_facts(file_path)
        file_id = str(uuid.uuid4())
    return (
        next(ids),
        job_type,
        user_id,
        "{}" if metadata is None else metadata,
        0 if priority is None else priority,
        now if run_at is None else run_at.isoformat(),
        max_retries,
        timeout,
        dedup_key,
        file_id,
        desc,
        file_path,
        name,
        size,
        None if depends_on is None else "{" + ",".join(depends_on) + "}",
        bool(run_anyway),
    )


def check_rows(rows: Iterable[Mapping[str, Any]], max_metadata_bytes: int) -> list[tuple[Any, ...]]:
    """Every row checked before the database sees any of them; an error names the row and the field."""
    checked: list[tuple[Any, ...]] = []
    for index, fields in enumerate(rows):
        if not isinstance(fields, Mapping):
            raise InvalidInput(f"rows[{index}]: expected a mapping of fields, got {_kind(fields)}")
        try:
            checked.append(check_fields(fields, max_metadata_bytes))
        except InvalidInput as exc:
            raise InvalidInput(f"rows[{index}]: {exc}") from None
    return checked


def enqueue_many_work(checked: list[tuple[Any, ...]]) -> Work[int]:
    """The COPY of checked rows, with time-ordered ids, as one atomic unit; how many were inserted."""
    if not checked:
        return 0
    ids = time_ordered_ids()
    rows = store.enqueue_stream_work(lambda now: (copy_row(c, ids, now.isoformat()) for c in checked))
    counts: tuple[int, int] = yield Atomic(rows)
    return counts[0]


def enqueue_many(
    conn: psycopg.Connection[Any],
    rows: Iterable[Mapping[str, Any]],
    *,
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
) -> int:
    """Enqueue many jobs with COPY, all or nothing; returns how many were inserted (dedup_key repeats are skipped).

    Every row is checked before the database sees any of them; an error names the row and the field.
    """
    conn = require_sync(conn, "jobcron.enqueue_many")
    return run(conn, enqueue_many_work(check_rows(rows, max_metadata_bytes)))


__all__ = [
    "DEDUP_ATTEMPTS",
    "FIELDS",
    "check_fields",
    "check_rows",
    "copy_row",
    "dedup_unresolved",
    "enqueue",
    "enqueue_many",
    "enqueue_many_work",
    "enqueue_one",
    "enqueue_params",
    "enqueue_work",
    "time_ordered_ids",
    "validate",
]
