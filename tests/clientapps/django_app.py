"""A Django 5 application that enqueues through jobcron.contrib.django, run as its own process.

`python -m tests.clientapps.django_app CONNINFO [--samples N] [--other ID]` configures Django for the
database and role in CONNINFO, enqueues a job with a file and one without metadata through the ORM
(and two more with bulk_create), waits for each with jobcron.wait on the connection Django holds,
reads result and insights back through the ORM, tries what the models refuse, and prints one JSON
object with what it saw. --other ID: what this login sees of another login's job. With --samples N
it also times N jobs from `create()` to wait() returning. `--migrate`: run Django's `migrate` for the
app instead (as the tables' owner) and report the SQL it ran. Tests and the bench run it; each run is
a fresh process because Django's settings are configured once per process.
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
    parser.add_argument("--other", default=None)
    parser.add_argument("--migrate", action="store_true")
    args = parser.parse_args(argv)
    configure(args.conninfo)
    if args.migrate:
        return migrate()

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
        out["bulk"] = bulk_created(conn)
        out["refused"] = refused(job)
        out["server_owned_refused"] = out["refused"]["init"]
        if args.other:
            out["other"] = seen_of(conn, args.other)
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


def bulk_created(conn: Any) -> dict[str, Any]:
    """Files and jobs made with bulk_create: each gets the id the INSERT returned, and runs."""
    import jobcron
    from jobcron.contrib.django.models import File, Job

    files = File.objects.bulk_create([File(file_path="/data/a.csv"), File(file_path="/data/b.csv")])
    jobs = Job.objects.bulk_create([Job(job_type="noop", file=f, priority=i) for i, f in enumerate(files)])
    return {
        "file_ids": [str(f.id) for f in files],
        "job_file_ids": [str(j.file_id) for j in jobs],
        "statuses": [j.status for j in jobs],
        "waited": [jobcron.wait(conn, j.id, timeout=30).status for j in jobs],
    }


def refused(job: Any) -> dict[str, str]:
    """What the models refuse, each with its message: a server-written column named, an unsaved file."""
    from jobcron.contrib.django.models import File, Job

    attempts = {
        "init": lambda: Job(job_type="noop", status="completed"),
        "update": lambda: Job.objects.filter(id=job.id).update(status="cancelled"),
        "update_fields": lambda: job.save(update_fields=["result"]),
        "unsaved_file": lambda: Job.objects.create(job_type="noop", file=File(file_path="/data/never.csv")),
    }
    found = {}
    before = Job.objects.count()
    for name, attempt in attempts.items():
        try:
            attempt()
            found[name] = "accepted"
        except (TypeError, ValueError) as exc:
            found[name] = f"{type(exc).__name__}: {exc}"
    found["rows_added"] = str(Job.objects.count() - before)
    return found


def seen_of(conn: Any, other: str) -> dict[str, Any]:
    """What this login sees of a job another login enqueued (row-level security hides all of it)."""
    import jobcron
    from jobcron.contrib.django.models import Insight, Job
    from jobcron.errors import JobNotFound

    try:
        jobcron.get_job(conn, other)
        get_job = "found"
    except JobNotFound:
        get_job = "JobNotFound"
    return {
        "filter": Job.objects.filter(id=other).exists(),
        "insights": Insight.objects.filter(job_id=other).count(),
        "get_job": get_job,
    }


def migrate() -> int:
    """Django's `migrate` and `sqlmigrate` for the app; the statements migrate ran, as JSON."""
    from django.core.management import call_command
    from django.db import connection, connections

    ran: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        ran.append(sql)
        return execute(sql, params, many, context)

    try:
        with connection.execute_wrapper(record):
            call_command("migrate", "jobcron", verbosity=0)
        buffer = _Capture()
        call_command("sqlmigrate", "jobcron", "0001", stdout=buffer)
    finally:
        connections.close_all()
    json.dump({"ran": ran, "sqlmigrate": buffer.text}, sys.stdout)
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
