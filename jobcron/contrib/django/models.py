"""Unmanaged Django models of `processing_jobs`, `files` and `insights`.

An application creates jobs with `Job.objects.create(job_type="analysis", user_id="u1",
metadata={...})` and reads them back. Three rules make that work under the least-privilege enqueuer
role of deploy/sql/roles.sql, which may insert only the columns an application sets:

- Columns with a server default that the application may set (`id`, `metadata`, `priority`,
  `scheduled_at`) carry a `db_default`: left unset, Django sends `DEFAULT` and the server fills them
  (the id is time-ordered, from `jobcron_uuid_v7()`; never generate it with uuid4).
- Columns the server or the daemon writes (`status`, `attempts`, `result`, `enqueued_by`, ...) are
  *server-owned*: never part of an INSERT or an UPDATE, read back through `RETURNING` after a create,
  not editable in forms or the admin, and refused wherever they are named as something to write
  (`Job(status=...)`, `.update(status=...)`, `save(update_fields=["status"])` are TypeErrors); a
  `save()` after `job.status = ...` writes the application's columns only. PostgreSQL checks the
  column privilege even for `DEFAULT`, so they must not appear at all.
- The daemon's bookkeeping (`seq`, the lease, the user slot, `parked`) is not mapped.

jobcron/contrib/columns.py lists every column's kind; a test keeps these models, that list and the
migrations in step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.expressions import DatabaseDefault
from django.db.models.functions import Now


class JobcronUUID(models.Func):
    """`jobcron_uuid_v7()`: the server's time-ordered ids."""

    function = "jobcron_uuid_v7"
    template = "%(function)s()"
    output_field = models.UUIDField()


class ServerOwned:
    """A column the server writes: left out of every INSERT and UPDATE, read back after a create.

    Django leaves `generated` fields out of INSERT and UPDATE statements and returns `db_returning`
    ones from an INSERT; these columns are not generated in PostgreSQL's sense, but Django must treat
    them alike.
    """

    generated = True
    db_persist = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    @property
    def db_returning(self) -> bool:
        return True


class ServerText(ServerOwned, models.TextField):
    """A text column the server writes."""


class ServerChar(ServerOwned, models.CharField):
    """A varchar column the server writes."""


class ServerInteger(ServerOwned, models.IntegerField):
    """An integer column the server writes."""


class ServerBigInteger(ServerOwned, models.BigIntegerField):
    """A bigint column the server writes."""


class ServerBoolean(ServerOwned, models.BooleanField):
    """A boolean column the server writes."""


class ServerDateTime(ServerOwned, models.DateTimeField):
    """A timestamptz column the server writes."""


class ServerJSON(ServerOwned, models.JSONField):
    """A jsonb column the server writes."""


def _refuse_server_owned(model: type[models.Model], names: Iterable[str]) -> None:
    for name in names:
        field = model._meta._forward_fields_map.get(name)
        if isinstance(field, ServerOwned):
            raise TypeError(
                f"{model.__name__}.{name} is written by the server, not by the application "
                "(jobcron/contrib/columns.py lists what an application may set)"
            )


class SharedQuerySet(models.QuerySet):
    """Refuses an `update()` of a server-written column, which Django would silently leave out."""

    def update(self, **kwargs: Any) -> int:
        _refuse_server_owned(self.model, kwargs)
        return int(super().update(**kwargs))


class Shared(models.Model):
    """A model of a table shared with the daemon: refuses values for the columns the server writes."""

    objects = SharedQuerySet.as_manager()

    class Meta:
        abstract = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse_server_owned(type(self), kwargs)
        super().__init__(*args, **kwargs)

    def save(self, *args: Any, **kwargs: Any) -> None:
        _refuse_server_owned(type(self), kwargs.get("update_fields") or ())
        super().save(*args, **kwargs)

    def _is_pk_set(self, meta: Any = None) -> bool:
        # A new row's id is DatabaseDefault (the server's jobcron_uuid_v7()) until the INSERT returns
        # it, and Django 5.2 takes that for an id already set: bulk_create() would then drop the ids
        # its INSERT returned, and an unsaved File given to a Job would pass for saved (the job
        # stored with file_id NULL). Django fixed the first after 5.2 (ticket #36260); tests hold both.
        return not isinstance(self._get_pk_val(meta), DatabaseDefault) and bool(super()._is_pk_set(meta))

    def __eq__(self, other: object) -> Any:  # bool, or NotImplemented for what is not a model
        # Django compares ids, and two unsaved rows' DatabaseDefaults are equal: only saved rows are
        if isinstance(other, Shared) and not (self._is_pk_set() and other._is_pk_set()):
            return self is other
        return super().__eq__(other)

    __hash__ = models.Model.__hash__


class File(Shared):
    """A file registered for analysis (`files`)."""

    id = models.UUIDField(primary_key=True, db_default=JobcronUUID())
    file_path = models.CharField(max_length=500)
    original_name = models.CharField(max_length=255, null=True, blank=True)
    status = ServerChar(max_length=20)
    created_at = ServerDateTime()
    updated_at = ServerDateTime()
    user_id = models.TextField(null=True, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    enqueued_by = ServerText(null=True)

    class Meta:
        managed = False
        db_table = "files"
        app_label = "jobcron"

    def __str__(self) -> str:
        return str(self.original_name or self.file_path)


class Job(Shared):
    """A job (`processing_jobs`). `finished`: completed, failed or cancelled."""

    id = models.UUIDField(primary_key=True, db_default=JobcronUUID())
    file = models.ForeignKey(
        File, models.DO_NOTHING, null=True, blank=True, db_constraint=False, related_name="jobs"
    )
    job_type = models.CharField(max_length=100)
    business_description = models.TextField(null=True, blank=True)
    status = ServerChar(max_length=20)
    # SQL NULL is accepted (the daemon reads it as {}); left unset, the server stores {}
    metadata = models.JSONField(null=True, blank=True, db_default=models.Value({}, models.JSONField()))
    retry_count = ServerInteger()
    created_at = ServerDateTime()
    started_at = ServerDateTime(null=True)
    completed_at = ServerDateTime(null=True)
    updated_at = ServerDateTime()
    error_message = ServerText(null=True)
    user_id = models.TextField(null=True, blank=True)
    priority = models.IntegerField(db_default=0)
    scheduled_at = models.DateTimeField(db_default=Now())
    max_retries = models.IntegerField(null=True, blank=True)
    attempts = ServerInteger()
    locked_by = ServerText(null=True)
    heartbeat_at = ServerDateTime(null=True)
    timeout_seconds = models.IntegerField(null=True, blank=True)
    cancel_requested = ServerBoolean()
    result = ServerJSON(null=True)
    errors = ServerJSON()
    progress = ServerJSON(null=True)
    # unique only among pending and running jobs (a partial index): not unique=True
    dedup_key = models.TextField(null=True, blank=True)
    schedule_id = ServerBigInteger(null=True)
    enqueued_by = ServerText(null=True)
    # the jobs this one waits for (they must exist at the insert; status is then 'waiting')
    depends_on = ArrayField(models.UUIDField(), null=True, blank=True)
    run_anyway = models.BooleanField(db_default=False)
    waiting_on = ServerInteger()

    class Meta:
        managed = False
        db_table = "processing_jobs"
        app_label = "jobcron"

    def __str__(self) -> str:
        return f"{self.job_type} {self.id}"

    @property
    def finished(self) -> bool:
        """Nothing will change it any more (a job waiting for a retry is pending, not finished)."""
        return self.status in ("completed", "failed", "cancelled")


class Insight(Shared):
    """A finding of an `analysis` job (`insights`), written by the daemon with the job's result."""

    id = models.UUIDField(primary_key=True, db_default=JobcronUUID())
    job = models.ForeignKey(
        Job, models.DO_NOTHING, null=True, blank=True, db_constraint=False, related_name="insights"
    )
    insight_type = models.CharField(max_length=100, null=True, blank=True)
    content = models.JSONField()
    confidence_score = models.DecimalField(max_digits=3, decimal_places=2, null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    file = models.ForeignKey(
        File, models.DO_NOTHING, null=True, blank=True, db_constraint=False, related_name="insights"
    )

    class Meta:
        managed = False
        db_table = "insights"
        app_label = "jobcron"

    def __str__(self) -> str:
        return f"{self.insight_type}: {self.content}"
