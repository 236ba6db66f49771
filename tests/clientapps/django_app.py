"""A Django 5 application that enqueues through jobcron.contrib.django, run as its own process.

`python -m tests.clientapps.django_app CONNINFO [--samples N]` configures Django for the database
and role in CONNINFO, enqueues a job with a file and one without metadata through the ORM, waits for
each with jobcron.wait on the connection Django holds, reads result and insights back through the
ORM, and prints one JSON object with what it saw. With --samples N it also times N noop jobs from
`create()` to wait() returning. Tests and the bench run it; each run is a fresh process because
Django's settings are configured once per process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from psycopg.conninfo import conninfo_to_dict


def configure(conninfo: str) -> None:
    """Django settings for one database, as an application would write them."""
    import django
    from django.conf import settings

    params = conninfo_to_dict(conninfo)
    settings.configure(
        INSTALLED_APPS=["jobcron.contrib.django"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": params.get("dbname"),
                "USER": params.get("user", ""),
                "PASSWORD": params.get("password", ""),
                "HOST": params.get("host", ""),
                "PORT": params.get("port", ""),
                "OPTIONS": {k: v for k, v in params.items() if k == "options"},
            }
        },
        USE_TZ=True,
        TIME_ZONE="UTC",
    )
    django.setup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("conninfo")
    parser.add_argument("--samples", type=int, default=0)
    parser.add_argument("--job-type", default="with_insights")
    args = parser.parse_args(argv)
    configure(args.conninfo)

    from django.core.management import call_command
    from django.db import connection

    import jobcron
    from jobcron.contrib.django.models import File, Job

    out: dict[str, Any] = {}
    try:
        # Django's psycopg 3 connection, in autocommit (Django's default): what jobcron.wait takes
        connection.ensure_connection()
        conn = connection.connection
        report = File.objects.create(file_path="/data/q3.csv", original_name="q3.csv", user_id="ann")
        job = Job.objects.create(job_type=args.job_type, file=report, user_id="ann", metadata={"k": 1})
        bare = Job.objects.create(job_type="noop", metadata=None)
        out["created"] = {
            "id": str(job.id),
            "status": job.status,
            "attempts": job.attempts,
            "enqueued_by": job.enqueued_by,
            "file_status": report.status,
            "bare_metadata": bare.metadata,
        }
        done = jobcron.wait(conn, job.id, timeout=30)
        jobcron.wait(conn, bare.id, timeout=30)
        job.refresh_from_db()
        out["finished"] = {
            "wait_status": done.status,
            "status": job.status,
            "finished": job.finished,
            "result": job.result,
            "insights": sorted(i.insight_type or "" for i in job.insights.all()),
            "visible_jobs": sorted(str(i) for i in Job.objects.values_list("id", flat=True)),
        }
        try:
            Job(job_type="noop", status="completed")
        except TypeError as exc:
            out["server_owned_refused"] = str(exc)
        buffer = _Capture()
        call_command("makemigrations", "jobcron", "--check", "--dry-run", stdout=buffer)
        out["makemigrations"] = buffer.text.strip()
        latencies = []
        for _ in range(args.samples):
            began = time.perf_counter()
            sample = Job.objects.create(job_type="noop")
            jobcron.wait(conn, sample.id, timeout=10)
            latencies.append((time.perf_counter() - began) * 1000)
            time.sleep(0.02)
        out["latencies_ms"] = latencies
    finally:
        from django.db import connections

        connections.close_all()
    json.dump(out, sys.stdout, default=str)
    return 0


class _Capture:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())
