"""jobcron's tables as SQLAlchemy 2 declarative models, and a filter for alembic.

    from jobcron.contrib.sqlalchemy import File, Job
    session.add(Job(job_type="analysis", user_id="u1", params={"year": 2026}))
    session.commit()   # job.id, job.status, job.created_at ... are the server's, read back by RETURNING

The models live on their own `Base` and `metadata`, never on the application's, so the
application's alembic autogenerate does not see them; for a database where jobcron's tables sit in
the application's schema, `include_object` keeps autogenerate from proposing to drop them.

Made to work under deploy/sql/roles.sql's least-privilege enqueuer role, which may insert only the
columns an application sets (jobcron/contrib/columns.py lists every column's kind):

- `id` comes from the server (`jobcron_uuid_v7()`, time-ordered); do not give one made by uuid4.
- The `metadata` column is the attribute `params` (Declarative reserves `metadata`). None or unset
  stores the server's default {}; never JSON `null`, which the schema refuses.
- Columns the server or the daemon writes (`status`, `attempts`, `result`, `enqueued_by`, ...) are
  never in an INSERT: SQLAlchemy leaves them out and reads them back in the INSERT's RETURNING.
  Setting one raises `ServerOwnedColumn`. The daemon's bookkeeping (`seq`, the lease) is not mapped.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    FetchedValue,
    ForeignKey,
    MetaData,
    Numeric,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from jobcron.contrib.columns import COLUMNS, SERVER, TABLES

__all__ = ["Base", "File", "Insight", "Job", "ServerOwnedColumn", "include_object", "metadata"]

metadata = MetaData()
_TIME = TIMESTAMP(timezone=True)
_JSON = JSONB(none_as_null=True)


class ServerOwnedColumn(AttributeError):
    """An application set a column that the server or the daemon writes."""


class Base(DeclarativeBase):
    """jobcron's own declarative base: its tables never join the application's MetaData."""

    metadata = metadata
    # the server's defaults come back in the INSERT's RETURNING, not in a second SELECT
    __mapper_args__ = {"eager_defaults": True}


def _server(*args: Any, **kwargs: Any) -> Any:
    """A column the server writes: never in an INSERT or UPDATE of the ORM, read back after one."""
    return mapped_column(*args, server_default=FetchedValue(), server_onupdate=FetchedValue(), **kwargs)


def _server_written(table: str) -> list[str]:
    return [name for name, kind in COLUMNS[table].items() if kind == SERVER]


def _refuse(self: Any, key: str, value: Any) -> Any:
    raise ServerOwnedColumn(
        f"{type(self).__name__}.{key} is written by the server, not by the application "
        "(jobcron/contrib/columns.py lists what an application may set)"
    )


class File(Base):
    """A file registered for analysis (`files`)."""

    __tablename__ = "files"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=text("jobcron_uuid_v7()"))
    file_path: Mapped[str] = mapped_column(String(500))
    original_name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = _server(String(20))
    created_at: Mapped[datetime] = _server(_TIME)
    updated_at: Mapped[datetime] = _server(_TIME)
    user_id: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    enqueued_by: Mapped[str | None] = _server(Text)

    jobs: Mapped[list[Job]] = relationship(back_populates="file")

    _owned = validates(*_server_written("files"))(_refuse)


class Job(Base):
    """A job (`processing_jobs`). `finished`: completed, failed or cancelled."""

    __tablename__ = "processing_jobs"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=text("jobcron_uuid_v7()"))
    file_id: Mapped[uuid.UUID | None] = mapped_column(UUID, ForeignKey("files.id"))
    job_type: Mapped[str] = mapped_column(String(100))
    business_description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = _server(String(20))
    params: Mapped[dict[str, Any] | None] = mapped_column(
        "metadata", _JSON, server_default=text("'{}'::jsonb")
    )
    retry_count: Mapped[int] = _server()
    created_at: Mapped[datetime] = _server(_TIME)
    started_at: Mapped[datetime | None] = _server(_TIME)
    completed_at: Mapped[datetime | None] = _server(_TIME)
    updated_at: Mapped[datetime] = _server(_TIME)
    error_message: Mapped[str | None] = _server(Text)
    user_id: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(server_default=text("0"))
    scheduled_at: Mapped[datetime] = mapped_column(_TIME, server_default=text("now()"))
    max_retries: Mapped[int | None] = mapped_column()
    attempts: Mapped[int] = _server()
    locked_by: Mapped[str | None] = _server(Text)
    heartbeat_at: Mapped[datetime | None] = _server(_TIME)
    timeout_seconds: Mapped[int | None] = mapped_column()
    cancel_requested: Mapped[bool] = _server()
    result: Mapped[Any] = _server(_JSON, nullable=True)
    errors: Mapped[list[Any]] = _server(_JSON)
    progress: Mapped[Any] = _server(_JSON, nullable=True)
    # unique only among pending and running jobs: the partial index processing_jobs_dedup_uniq
    dedup_key: Mapped[str | None] = mapped_column(Text)
    schedule_id: Mapped[int | None] = _server(BigInteger)
    enqueued_by: Mapped[str | None] = _server(Text)
    # the jobs this one waits for (they must exist at the insert; status is then 'waiting')
    depends_on: Mapped[list[uuid.UUID] | None] = mapped_column(ARRAY(UUID))
    run_anyway: Mapped[bool] = mapped_column(server_default=text("false"))
    waiting_on: Mapped[int] = _server()

    file: Mapped[File | None] = relationship(back_populates="jobs")
    insights: Mapped[list[Insight]] = relationship(back_populates="job")

    _owned = validates(*_server_written("processing_jobs"))(_refuse)

    @property
    def finished(self) -> bool:
        """Nothing will change it any more (a job waiting for a retry is pending, not finished)."""
        return self.status in ("completed", "failed", "cancelled")


class Insight(Base):
    """A finding of an `analysis` job (`insights`), written by the daemon with the job's result."""

    __tablename__ = "insights"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=text("jobcron_uuid_v7()"))
    job_id: Mapped[uuid.UUID | None] = mapped_column(UUID, ForeignKey("processing_jobs.id"))
    insight_type: Mapped[str | None] = mapped_column(String(100))
    content: Mapped[Any] = mapped_column(JSONB)
    confidence_score: Mapped[Decimal | None] = mapped_column(Numeric(3, 2))
    created_at: Mapped[datetime] = mapped_column(_TIME, server_default=text("now()"))
    file_id: Mapped[uuid.UUID | None] = mapped_column(UUID, ForeignKey("files.id"))

    job: Mapped[Job | None] = relationship(back_populates="insights")


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """For alembic's `context.configure(include_object=...)`: leave jobcron's tables to `job_cron migrate`.

    False for jobcron's tables and for their columns, indexes and constraints, so autogenerate in a
    database that holds both proposes nothing about them (without it, it proposes to drop them).
    """
    if type_ == "table":
        return name not in TABLES
    table = getattr(obj, "table", None)
    return getattr(table, "name", None) not in TABLES
