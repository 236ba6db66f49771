"""Job dependencies against a real PostgreSQL: waiting, release, cascade, races, follow-up jobs."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import jobcron
from jobcron import client
from jobcron.admin import jobs as admin_jobs
from jobcron.admin import status as admin_status
from jobcron.config import Config
from jobcron.daemon.worker import Worker
from jobcron.errors import InvalidInput, UnknownParent
from tests import workflows
from tests.factories import insert_job, job, status_counts

Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture
def config(make_config: Any) -> Config:
    cfg: Config = make_config(workflows=workflows.ALL, scheduler_settings={"retry_failed_jobs": False})
    return cfg


def drain(worker: Worker, conn: Conn) -> list[str]:
    """Run jobs until none is claimable; the ids of the jobs that ran, in the order they started."""
    while worker.run_once():
        pass
    rows = conn.execute(
        "SELECT id FROM processing_jobs WHERE started_at IS NOT NULL ORDER BY started_at, seq"
    ).fetchall()
    return [str(r["id"]) for r in rows]


def releases(conn: Conn) -> None:
    """Record every waiting -> pending move in a table of the test's own (released_log)."""
    conn.execute("CREATE TABLE released_log (job_id uuid, at timestamptz DEFAULT clock_timestamp())")
    conn.execute(
        "CREATE FUNCTION log_release() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "INSERT INTO released_log (job_id) VALUES (NEW.id); RETURN NULL; END $$"
    )
    conn.execute(
        "CREATE TRIGGER zz_log_release AFTER UPDATE OF status ON processing_jobs FOR EACH ROW "
        "WHEN (OLD.status = 'waiting' AND NEW.status = 'pending') EXECUTE FUNCTION log_release()"
    )


def test_a_chain_runs_in_order_and_a_waiting_job_is_never_claimed(conn: Conn, config: Config) -> None:
    a = jobcron.enqueue(conn, "noop")
    b = jobcron.enqueue(conn, "noop", depends_on=[a])
    c = jobcron.enqueue(conn, "noop", depends_on=[b, a, b])  # repeats are dropped
    assert job(conn, b)["status"] == "waiting" and job(conn, b)["waiting_on"] == 1
    assert job(conn, c)["status"] == "waiting" and job(conn, c)["waiting_on"] == 2
    assert sorted(job(conn, c)["depends_on"]) == sorted(uuid.UUID(x) for x in (a, b))
    worker = Worker(config)
    assert drain(worker, conn) == [a, b, c]
    assert status_counts(conn) == {"completed": 3}
    shown = admin_jobs.show_job(conn, b)
    assert [p["id"] for p in shown["parents"]] == [a] and [k["id"] for k in shown["children"]] == [c]
    assert shown["parents"][0]["settled"] is True


def test_the_parents_completion_and_the_childs_claim_share_one_transaction(
    conn: Conn, config: Config
) -> None:
    parent = jobcron.enqueue(conn, "noop")
    child = jobcron.enqueue(conn, "noop", depends_on=[parent])
    worker = Worker(config)
    # one run_once records the parent and claims the next job in the same commit: the child
    assert worker.run_once() is True
    row = job(conn, child)
    assert row["status"] == "processing", row["status"]
    assert worker.run_once() is True  # runs the child it holds
    assert worker.run_once() is False
    assert job(conn, child)["status"] == "completed"


def test_status_counts_waiting_jobs_and_they_stay_out_of_the_claim(conn: Conn, config: Config) -> None:
    gate = insert_job(conn, job_type="slow", metadata={"seconds": 0})
    for _ in range(5):
        jobcron.enqueue(conn, "noop", depends_on=[gate])
    report = admin_status.collect_status(conn, config)
    assert report["counts"]["waiting"] == 5 and report["counts"]["pending"] == 1
    plan = conn.execute(
        "EXPLAIN (FORMAT JSON) SELECT id FROM processing_jobs WHERE status = 'waiting'"
    ).fetchone()
    assert plan is not None and "processing_jobs_waiting_idx" in str(plan)


def test_a_missing_parent_is_refused_naming_it(conn: Conn) -> None:
    ghost = "01900000-0000-7000-8000-000000000000"
    with pytest.raises(UnknownParent, match=f"depends_on: job {ghost} does not exist"):
        jobcron.enqueue(conn, "noop", depends_on=[ghost])
    with pytest.raises(InvalidInput, match=r"depends_on\[1\]: not a job id"):
        jobcron.enqueue(conn, "noop", depends_on=[ghost, "nope"])
    with pytest.raises(InvalidInput, match="more than the limit of 1000"):
        jobcron.enqueue(conn, "noop", depends_on=[str(uuid.uuid4()) for _ in range(1001)])
    with pytest.raises(InvalidInput, match="run_anyway: only means something with depends_on"):
        jobcron.enqueue(conn, "noop", run_anyway=True)
    # plain SQL from another application is refused the same way, and nothing is left behind
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="does not exist"):
        conn.execute(
            "INSERT INTO processing_jobs (job_type, depends_on) VALUES ('noop', ARRAY[%s]::uuid[])", (ghost,)
        )
    assert status_counts(conn) == {}


def test_a_parent_that_already_ended_counts_at_once(conn: Conn) -> None:
    done = insert_job(conn, status="completed", completed_at=datetime.now(UTC))
    failed = insert_job(conn, status="failed", completed_at=datetime.now(UTC))
    assert job(conn, jobcron.enqueue(conn, "noop", depends_on=[done]))["status"] == "pending"
    cancelled = job(conn, jobcron.enqueue(conn, "noop", depends_on=[done, failed]))
    assert cancelled["status"] == "cancelled"
    assert cancelled["error_message"] == f"cancelled: parent job {failed} ended failed"
    anyway = job(conn, jobcron.enqueue(conn, "noop", depends_on=[failed], run_anyway=True))
    assert anyway["status"] == "pending"


def test_a_failure_cascades_through_three_levels(conn: Conn, config: Config) -> None:
    root = jobcron.enqueue(conn, "permanent")
    level1 = jobcron.enqueue(conn, "noop", depends_on=[root])
    level2 = jobcron.enqueue(conn, "noop", depends_on=[level1])
    level3 = jobcron.enqueue(conn, "noop", depends_on=[level2])
    cleanup = jobcron.enqueue(conn, "noop", depends_on=[level2], run_anyway=True)
    after_cleanup = jobcron.enqueue(conn, "noop", depends_on=[cleanup])
    assert drain(Worker(config), conn) == [root, cleanup, after_cleanup]
    assert job(conn, root)["status"] == "failed"
    assert job(conn, level1)["error_message"] == f"cancelled: parent job {root} ended failed"
    assert job(conn, level2)["error_message"] == f"cancelled: parent job {level1} ended cancelled"
    assert job(conn, level3)["error_message"] == f"cancelled: parent job {level2} ended cancelled"
    for cancelled in (level1, level2, level3):
        assert job(conn, cancelled)["status"] == "cancelled"
        assert job(conn, cancelled)["started_at"] is None
    assert job(conn, cleanup)["status"] == "completed" and job(conn, after_cleanup)["status"] == "completed"


def test_a_chain_of_a_thousand_cancels_in_one_statement(conn: Conn) -> None:
    head = insert_job(conn, job_type="noop")
    conn.execute(
        """
        DO $$ DECLARE prev uuid := %s; cur uuid; BEGIN
          FOR i IN 1..1000 LOOP
            INSERT INTO processing_jobs (job_type, depends_on) VALUES ('noop', ARRAY[prev]) RETURNING id INTO cur;
            prev := cur;
          END LOOP; END $$
        """.replace("%s", f"'{head}'")
    )
    # far deeper than the trigger stack would allow if each level were a nested trigger
    conn.execute(
        "UPDATE processing_jobs SET status = 'cancelled', completed_at = now() WHERE id = %s", (head,)
    )
    assert status_counts(conn) == {"cancelled": 1001}


def test_operator_cancel_of_a_waiting_job_cancels_its_dependants(conn: Conn) -> None:
    gate = insert_job(conn, job_type="noop")
    waiting = jobcron.enqueue(conn, "noop", depends_on=[gate])
    below = jobcron.enqueue(conn, "noop", depends_on=[waiting])
    assert admin_jobs.cancel_job(conn, waiting, by="tester")["action"] == "cancelled"
    assert job(conn, waiting)["error_message"] == "cancelled by tester before it ran"
    assert job(conn, below)["status"] == "cancelled"
    assert job(conn, gate)["status"] == "pending"


def test_deleting_an_unfinished_parent_cancels_its_dependants(conn: Conn) -> None:
    gate = insert_job(conn, job_type="noop")
    child = jobcron.enqueue(conn, "noop", depends_on=[gate])
    conn.execute("DELETE FROM processing_jobs WHERE id = %s", (gate,))
    row = job(conn, child)
    assert row["status"] == "cancelled"
    assert row["error_message"] == f"cancelled: parent job {gate} was deleted before it ended"


def test_a_waiting_job_holds_its_dedup_key(conn: Conn) -> None:
    gate = insert_job(conn, job_type="noop")
    first, created = client.enqueue_one(conn, {"job_type": "noop", "depends_on": [gate], "dedup_key": "k"})
    again, created_again = client.enqueue_one(conn, {"job_type": "noop", "dedup_key": "k"})
    assert created and not created_again and again == first


def test_enqueue_many_takes_depends_on_on_both_copy_paths(conn: Conn) -> None:
    gate = insert_job(conn, job_type="noop")
    rows = [
        {"job_type": "noop", "depends_on": [gate]},
        {"job_type": "noop", "depends_on": gate, "run_anyway": "true"},  # one id as text, a CSV boolean
        {"job_type": "noop", "dedup_key": "staged", "depends_on": [gate]},  # the staging table's path
    ]
    assert jobcron.enqueue_many(conn, rows) == 3
    assert status_counts(conn) == {"pending": 1, "waiting": 3}
    anyway = conn.execute("SELECT count(*) AS n FROM processing_jobs WHERE run_anyway").fetchone()
    assert anyway is not None and anyway["n"] == 1
    links = conn.execute(
        "SELECT count(*) AS n FROM job_dependencies WHERE parent_id = %s", (gate,)
    ).fetchone()
    assert links is not None and links["n"] == 3


def _finish(dsn: str, job_id: str, started: threading.Event | None = None) -> None:
    with psycopg.connect(dsn, autocommit=True) as other:
        if started is not None:
            started.set()
        other.execute(
            "UPDATE processing_jobs SET status = 'completed', completed_at = now() WHERE id = %s", (job_id,)
        )


def _enqueue_into(inserter: Conn, parent: str, result: dict[str, str]) -> None:
    result["id"] = jobcron.enqueue(inserter, "noop", depends_on=[parent])


def _end_together(dsn: str, job_id: str, barrier: threading.Barrier, errors: list[BaseException]) -> None:
    try:
        with psycopg.connect(dsn) as other:
            other.execute("SELECT 1")
            barrier.wait(5)
            other.execute(
                "UPDATE processing_jobs SET status = 'completed', completed_at = now() WHERE id = %s",
                (job_id,),
            )
    except BaseException as exc:  # reported by the test
        errors.append(exc)


@pytest.mark.parametrize("first", ["insert", "finish"])
def test_an_insert_racing_its_parents_end_is_never_left_waiting(dsn: str, conn: Conn, first: str) -> None:
    """The dependant's insert and its parent's end, each one holding its transaction open while the other runs."""
    for _ in range(5):
        parent = insert_job(conn, job_type="noop")
        with psycopg.connect(dsn, row_factory=dict_row) as inserter:
            if first == "insert":
                child = jobcron.enqueue(inserter, "noop", depends_on=[parent])  # open transaction
                done = threading.Thread(target=_finish, args=(dsn, parent))
                done.start()
                time.sleep(0.2)
                assert done.is_alive(), "the parent's end should wait for the open insert"
                inserter.commit()
                done.join(10)
            else:
                with psycopg.connect(dsn) as finisher:
                    finisher.execute(
                        "UPDATE processing_jobs SET status = 'completed', completed_at = now() WHERE id = %s",
                        (parent,),
                    )  # open transaction, not yet committed
                    result: dict[str, str] = {}
                    insert = threading.Thread(target=_enqueue_into, args=(inserter, parent, result))
                    insert.start()
                    time.sleep(0.2)
                    assert insert.is_alive(), "the insert should wait for the parent's end to commit"
                    finisher.commit()
                    insert.join(10)
                inserter.commit()
                child = result["id"]
        assert job(conn, child)["status"] == "pending", first


def test_parents_ending_together_release_the_child_exactly_once(dsn: str, conn: Conn) -> None:
    releases(conn)
    for _ in range(10):
        parents = [insert_job(conn, job_type="noop") for _ in range(8)]
        child = jobcron.enqueue(conn, "noop", depends_on=parents)
        barrier = threading.Barrier(8)
        errors: list[BaseException] = []

        threads = [threading.Thread(target=_end_together, args=(dsn, p, barrier, errors)) for p in parents]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert not errors
        row = job(conn, child)
        assert row["status"] == "pending" and row["waiting_on"] == 0
        n = conn.execute("SELECT count(*) AS n FROM released_log WHERE job_id = %s", (child,)).fetchone()
        assert n is not None and n["n"] == 1


def test_follow_up_jobs_are_enqueued_with_the_result(conn: Conn, config: Config, tmp_path: Path) -> None:
    followups = [
        {"job_type": "noop", "metadata": {"step": 2}},
        {"job_type": "noop", "user_id": "other", "priority": 5, "dedup_key": "f-1"},
    ]
    parent = jobcron.enqueue(conn, "spawn", user_id="u1", metadata={"followups": followups})
    worker = Worker(config)
    assert worker.run_once() is True
    children = conn.execute(
        "SELECT j.job_type, j.user_id, j.metadata, j.priority, j.dedup_key, d.settled FROM job_dependencies d "
        "JOIN processing_jobs j ON j.id = d.child_id WHERE d.parent_id = %s ORDER BY j.priority",
        (parent,),
    ).fetchall()
    assert [(c["user_id"], c["metadata"], c["priority"], c["settled"]) for c in children] == [
        ("u1", {"step": 2}, 0, True),  # the user is inherited unless given
        ("other", {}, 5, True),
    ]
    shown = admin_jobs.show_job(conn, parent)
    assert shown["children_total"] == 2 and shown["result"] == {"spawned": 2}


def test_a_bad_follow_up_fails_the_job_and_enqueues_nothing(conn: Conn, config: Config) -> None:
    parent = jobcron.enqueue(
        conn, "spawn", metadata={"followups": [{"job_type": "noop"}, {"job_type": "noop", "priority": 5000}]}
    )
    Worker(config).run_once()
    row = job(conn, parent)
    assert row["status"] == "failed"
    assert "followups[1] ('noop'): priority: must be between -1000 and 1000" in row["error_message"]
    assert status_counts(conn) == {"failed": 1}


def test_follow_ups_of_a_lost_lease_are_not_enqueued(conn: Conn, config: Config) -> None:
    parent = jobcron.enqueue(conn, "spawn", metadata={"followups": [{"job_type": "noop"}]})
    worker = Worker(config)
    claimed = worker.claim()
    assert claimed is not None
    # an operator's reset took the job from this worker while it ran: its record must write nothing
    conn.execute("UPDATE processing_jobs SET status = 'pending', lease_token = NULL WHERE id = %s", (parent,))
    worker.record(claimed, worker.execute(claimed), claim_next=False)
    assert status_counts(conn) == {"pending": 1}


def test_a_bulk_end_of_thousands_of_jobs_holds_a_bounded_number_of_locks(dsn: str, conn: Conn) -> None:
    conn.execute("INSERT INTO processing_jobs (job_type) SELECT 'noop' FROM generate_series(1, 5000)")
    with psycopg.connect(dsn, row_factory=dict_row) as bulk:
        bulk.execute(
            "UPDATE processing_jobs SET status = 'cancelled', completed_at = now() WHERE status = 'pending'"
        )
        held = bulk.execute(
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ).fetchone()
        bulk.commit()
    # no lock beyond the rows it changed: the server's lock table is shared and small
    assert held is not None and held["n"] == 0
    assert status_counts(conn) == {"cancelled": 5000}


def test_a_parent_ended_under_repeatable_read_never_leaves_its_dependant_waiting(
    dsn: str, conn: Conn
) -> None:
    """The dependant's insert writes its parents' rows: a snapshot that predates it cannot end the
    parent unseen, it gets a serialization failure to retry."""
    parent = insert_job(conn, job_type="noop")
    with psycopg.connect(dsn) as ender, psycopg.connect(dsn, row_factory=dict_row) as inserter:
        ender.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        ender.execute("SELECT 1")  # the snapshot is taken
        child = jobcron.enqueue(inserter, "noop", depends_on=[parent])
        inserter.commit()
        with pytest.raises(psycopg.errors.SerializationFailure):
            ender.execute(
                "UPDATE processing_jobs SET status = 'completed', completed_at = now() WHERE id = %s",
                (parent,),
            )
        ender.rollback()
        ender.execute(
            "UPDATE processing_jobs SET status = 'completed', completed_at = now() WHERE id = %s", (parent,)
        )
        ender.commit()
    assert job(conn, child)["status"] == "pending"


def test_a_parent_and_its_waiting_child_deleted_in_one_statement(conn: Conn) -> None:
    parent = insert_job(conn, job_type="noop")
    child = jobcron.enqueue(conn, "noop", depends_on=[parent])
    other = jobcron.enqueue(conn, "noop", depends_on=[parent])
    conn.execute("DELETE FROM processing_jobs WHERE id IN (%s, %s)", (parent, child))
    assert job(conn, other)["status"] == "cancelled"
    assert status_counts(conn) == {"cancelled": 1}


def test_a_temporary_table_cannot_stand_in_for_jobcron_s_in_the_owner_s_functions(conn: Conn) -> None:
    parent = insert_job(conn, job_type="noop")
    conn.execute("CREATE TEMP TABLE job_dependencies (parent_id uuid, child_id uuid, settled boolean)")
    child = jobcron.enqueue(conn, "noop", depends_on=[parent])
    assert conn.execute("SELECT count(*) AS n FROM pg_temp.job_dependencies").fetchone() == {"n": 0}
    links = conn.execute(
        "SELECT count(*) AS n FROM public.job_dependencies WHERE child_id = %s", (child,)
    ).fetchone()
    assert links == {"n": 1}
