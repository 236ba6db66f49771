"""jobcron: a PostgreSQL-backed job daemon (`job_cron`)."""

from __future__ import annotations

__version__ = "0.1.0"
