"""jobcron: a PostgreSQL-backed job daemon (`job_cron`)."""

from __future__ import annotations

__version__ = "0.1.0"

# typing is not imported at run time: `import jobcron` must stay cheap for applications
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from jobcron.client import enqueue, enqueue_many
    from jobcron.results import get_job, wait

__all__ = ["__version__", "enqueue", "enqueue_many", "get_job", "wait"]


def __getattr__(name: str) -> Any:
    """`jobcron.enqueue`, `enqueue_many`, `get_job` and `wait`, imported on first use so `import jobcron` stays cheap."""
    if name in ("enqueue", "enqueue_many"):
        from jobcron import client

        return getattr(client, name)
    if name in ("get_job", "wait"):
        from jobcron import results

        return getattr(results, name)
    raise AttributeError(f"module 'jobcron' has no attribute {name!r}")
