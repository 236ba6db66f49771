"""The Django app of jobcron's models."""

from __future__ import annotations

from django.apps import AppConfig


class JobcronConfig(AppConfig):
    """`jobcron.contrib.django`: unmanaged models of processing_jobs, files and insights."""

    name = "jobcron.contrib.django"
    label = "jobcron"
    verbose_name = "jobcron"
    default_auto_field = "django.db.models.BigAutoField"
