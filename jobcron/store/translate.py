"""The driver boundary: psycopg's integrity errors turned into jobcron's, by the constraint the schema names.

Every store helper runs its statement inside `translate()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from jobcron.errors import (
    DuplicateKey,
    DuplicateName,
    RowRefused,
    SlotTaken,
    StoreError,
    UnknownParent,
    UnknownReference,
)

# Unique constraints (and unique indexes) by what taking them twice means; every other unique
# violation is a DuplicateKey.
_UNIQUE_MEANING: dict[str, type[StoreError]] = {
    "processing_jobs_user_slot_uniq": SlotTaken,
    "processing_jobs_dedup_uniq": DuplicateKey,
    "job_schedules_name_unique": DuplicateName,
}
_TRANSLATED: dict[tuple[type[StoreError], type[psycopg.Error]], type[StoreError]] = {}


def translated_class(exc: psycopg.Error) -> type[StoreError] | None:
    """The jobcron error a driver error stands for: only integrity errors naming a constraint."""
    if isinstance(exc, StoreError):
        return None  # translated already, by a translate() nested in this one
    if not isinstance(exc, psycopg.errors.IntegrityError):
        return None  # outages, lock timeouts, data errors: the callers' policies are about those as they are
    constraint = exc.diag.constraint_name
    if not constraint:
        return None
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return _UNIQUE_MEANING.get(constraint, DuplicateKey)
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        # raised by the depends_on trigger (migration 0009) under the links' constraint name
        return UnknownParent if constraint == "job_dependencies_parent_id_fkey" else UnknownReference
    if isinstance(exc, psycopg.errors.CheckViolation):
        return RowRefused
    return None


@contextmanager
def translate() -> Iterator[None]:
    """Turn the driver's integrity errors into jobcron's, by the constraint the schema names.

    Connection-level errors (OperationalError, InterfaceError) and data errors pass through
    unchanged: they are outages or bad values, and every retry or outage decision is about them.
    The error raised is of a class derived from both the jobcron class and the driver's own (with
    the driver's diagnostics), so that an `except psycopg.errors.UniqueViolation` or `except
    psycopg.Error` not yet moved to the jobcron classes decides as before.
    """
    try:
        yield
    except psycopg.Error as exc:
        base = translated_class(exc)
        if base is None:
            raise
        key = (base, type(exc))
        cls = _TRANSLATED.get(key)
        if cls is None:
            cls = _TRANSLATED[key] = type(base.__name__, key, {"__module__": base.__module__})
        new = cls(*exc.args, info=exc._info, encoding=exc._encoding, pgconn=exc._pgconn)  # type: ignore[call-arg]
        new.constraint = exc.diag.constraint_name
        raise new from exc
