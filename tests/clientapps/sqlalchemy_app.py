"""A SQLAlchemy 2 application that enqueues through jobcron.contrib.sqlalchemy.

`run(conninfo)` does what an application would: it enqueues a job with a file and one without
metadata through the ORM, waits for each with jobcron.wait on the session's psycopg connection,
reads result and insights back through the ORM, and returns what it saw. `latencies(conninfo, n)`
times n noop jobs from the commit of `session.add()` to wait() returning. Tests and the bench use it.
"""

from __future__ import annotations

import time
from typing import Any

from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import URL, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import jobcron
from jobcron.contrib.sqlalchemy import File, Job, ServerOwnedColumn


def engine_for(conninfo: str) -> Engine:
    """An engine on the psycopg 3 dialect (`postgresql+psycopg://user@host:port/db`) for a libpq string."""
    p = conninfo_to_dict(conninfo)
    url = URL.create(
        "postgresql+psycopg",
        username=p.get("user"),
        password=p.get("password"),
        host=p.get("host"),
        port=int(p["port"]) if p.get("port") else None,
        database=p.get("dbname"),
    )
    return create_engine(url)


def driver_connection(session: Session) -> Any:
    """The psycopg connection under a session: what jobcron.enqueue, get_job and wait take."""
    return session.connection().connection.driver_connection


def run(conninfo: str, job_type: str = "with_insights") -> dict[str, Any]:
    engine = engine_for(conninfo)
    out: dict[str, Any] = {}
    try:
        with Session(engine) as session:
            report = File(file_path="/data/q3.csv", original_name="q3.csv", user_id="ann")
            job = Job(job_type=job_type, file=report, user_id="ann", params={"k": 1})
            bare = Job(job_type="noop", params=None)
            session.add_all([job, bare])
            session.flush()  # the INSERTs; their RETURNING filled in the server's columns
            out["created"] = {
                "id": str(job.id),
                "status": job.status,
                "attempts": job.attempts,
                "enqueued_by": job.enqueued_by,
                "file_status": report.status,
                "bare_metadata": bare.params,
            }
            session.commit()
            conn = driver_connection(session)
            done = jobcron.wait(conn, job.id, timeout=30)
            jobcron.wait(conn, bare.id, timeout=30)
            session.expire_all()
            again = session.get(Job, job.id)
            assert again is not None
            out["finished"] = {
                "wait_status": done.status,
                "status": again.status,
                "finished": again.finished,
                "result": again.result,
                "insights": sorted(i.insight_type or "" for i in again.insights),
                "visible_jobs": sorted(str(i) for i in session.scalars(select(Job.id))),
            }
            try:
                Job(job_type="noop", status="completed")
            except ServerOwnedColumn as exc:
                out["server_owned_refused"] = str(exc)
            session.rollback()
    finally:
        engine.dispose()
    return out


def latencies(conninfo: str, samples: int) -> list[float]:
    """ms from the ORM's commit of a new noop job to wait() returning it finished, per job."""
    engine = engine_for(conninfo)
    found = []
    try:
        with Session(engine) as session:
            for _ in range(samples):
                began = time.perf_counter()
                job = Job(job_type="noop")
                session.add(job)
                session.commit()
                jobcron.wait(driver_connection(session), job.id, timeout=10)
                found.append((time.perf_counter() - began) * 1000)
                session.rollback()
                time.sleep(0.02)
    finally:
        engine.dispose()
    return found
