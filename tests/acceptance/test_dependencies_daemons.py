"""Job dependencies with real daemon processes: a fan-in finished by eight daemons at once, a daemon killed
between a parent's end and its child's claim or while the parent runs, follow-up jobs in process mode."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import jobcron
from tests.acceptance.daemon import FAST, Daemon, write_config
from tests.factories import job

pytestmark = pytest.mark.acceptance
Conn = psycopg.Connection[dict[str, Any]]
FLEET = 8
PARENTS = 200

# "after" is tests.workflows:record under a type of its own: it can be paused without pausing the parents
WORKFLOWS = {
    "record": "tests.workflows:record",
    "slow": "tests.workflows:slow",
    "spawn": "tests.workflows:spawn",
    "after": "tests.workflows:record",
}


def start(daemons: list[Daemon], dsn: str, tmp_path: Path, name: str, mode: str = "inline") -> Daemon:
    """One daemon, started and idle; fast heartbeats and rescues."""
    config = write_config(
        tmp_path / f"{name}.json",
        job_processing={"execution_mode": mode},
        scheduler_settings={"cleanup_completed_jobs_days": 0},
        daemon={**FAST, "interval_seconds": 5},
        workflows=WORKFLOWS,
        logging={"level": "info"},
    )
    d = Daemon(dsn, config, "--worker-id", name)
    daemons.append(d)
    d.wait_event("worker_started", timeout=60)
    return d


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout} s: {what}")
        time.sleep(0.05)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_fan_in_finished_by_eight_daemons_at_once_runs_its_child_once(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    fleet = [start(daemons, dsn, tmp_path, f"fan{i}") for i in range(FLEET)]
    until(
        lambda: (
            conn.execute("SELECT count(*) AS n FROM job_workers WHERE state = 'idle'").fetchone()["n"]
            == FLEET
        ),
        30,
        "every daemon idle",
    )
    for rep in range(3):  # the same fleet, three times over
        parents_log, child_log = tmp_path / f"parents{rep}.log", tmp_path / f"child{rep}.log"
        # one commit: the 200 parents appear together, and the child waits on all of them
        with psycopg.connect(dsn, row_factory=dict_row) as writer:
            parents = [
                jobcron.enqueue(writer, "record", metadata={"log": str(parents_log), "seconds": 0.01})
                for _ in range(PARENTS)
            ]
            child = jobcron.enqueue(writer, "record", metadata={"log": str(child_log)}, depends_on=parents)
            writer.commit()
        assert jobcron.wait(conn, child, timeout=60).status == "completed"
        row = job(conn, child)
        assert row["waiting_on"] == 0 and row["attempts"] == 1
        assert len(lines(child_log)) == 1, lines(child_log)  # released once, run once
        assert len(lines(parents_log)) == PARENTS
        done = conn.execute(
            "SELECT count(*) AS n, count(DISTINCT locked_by) AS daemons, max(attempts) AS most,"
            " max(completed_at) - min(completed_at) AS spread FROM processing_jobs WHERE id = ANY(%s::uuid[])",
            (parents,),
        ).fetchone()
        assert done["n"] == PARENTS and done["most"] == 1
        assert done["daemons"] >= 4, done  # the parents really ended on many daemons at the same time
        links = conn.execute(
            "SELECT count(*) AS n, bool_and(settled) AS settled FROM job_dependencies WHERE child_id = %s",
            (child,),
        ).fetchone()
        assert links == {"n": PARENTS, "settled": True}
        # the child started after the last parent ended, never before
        last = conn.execute(
            "SELECT max(completed_at) AS t FROM processing_jobs WHERE id = ANY(%s::uuid[])", (parents,)
        ).fetchone()["t"]
        assert row["started_at"] >= last
    for d in fleet:
        d.stop_cleanly()


def test_a_daemon_killed_between_a_parents_end_and_its_childs_claim_loses_nothing(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    child_log = tmp_path / "child.log"
    first = start(daemons, dsn, tmp_path, "first")
    # the child's type is paused: released by the parent's record, it stays pending, unclaimed
    conn.execute("INSERT INTO job_pauses (job_type, paused_by) VALUES ('after', 'test')")
    with psycopg.connect(dsn, row_factory=dict_row) as writer:
        parent = jobcron.enqueue(writer, "noop")
        child = jobcron.enqueue(writer, "after", metadata={"log": str(child_log)}, depends_on=[parent])
        writer.commit()
    assert jobcron.wait(conn, parent, timeout=20).status == "completed"
    until(lambda: job(conn, child)["status"] == "pending", 10, "the child released")
    time.sleep(0.5)  # the daemon has had every chance to take it
    assert job(conn, child)["status"] == "pending" and job(conn, child)["started_at"] is None
    first.signal(signal.SIGKILL)
    first.wait_exit()
    assert job(conn, child)["status"] == "pending"
    fresh = start(daemons, dsn, tmp_path, "fresh")
    conn.execute("DELETE FROM job_pauses WHERE job_type = 'after'")
    assert jobcron.wait(conn, child, timeout=20).status == "completed"
    row = job(conn, child)
    assert row["locked_by"] == "fresh" and row["attempts"] == 1 and row["waiting_on"] == 0
    assert len(lines(child_log)) == 1
    fresh.stop_cleanly()


def test_a_daemon_killed_while_the_parent_runs_the_parent_is_rescued_and_the_child_runs_once(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    parent_log, child_log = tmp_path / "parent.log", tmp_path / "child.log"
    victim = start(daemons, dsn, tmp_path, "victim")
    with psycopg.connect(dsn, row_factory=dict_row) as writer:
        parent = jobcron.enqueue(writer, "slow", metadata={"log": str(parent_log), "seconds": 30})
        child = jobcron.enqueue(writer, "after", metadata={"log": str(child_log)}, depends_on=[parent])
        writer.commit()
    until(lambda: len(lines(parent_log)) == 1, 20, "the parent running")
    victim.signal(signal.SIGKILL)
    victim.wait_exit()
    assert job(conn, parent)["status"] == "processing" and job(conn, child)["status"] == "waiting"
    # its second run need not last 30 s too (metadata is read at each claim)
    conn.execute(
        "UPDATE processing_jobs SET metadata = metadata || '{\"seconds\": 0.2}' WHERE id = %s", (parent,)
    )
    rescuer = start(daemons, dsn, tmp_path, "rescuer")  # another id: it rescues once the heartbeat is stale
    assert jobcron.wait(conn, child, timeout=30).status == "completed"
    p = job(conn, parent)
    assert p["status"] == "completed" and p["attempts"] == 2 and p["retry_count"] == 1
    assert p["errors"][0]["type"] == "WorkerLost" and p["errors"][0]["worker"] == "victim"
    assert p["locked_by"] == "rescuer"
    assert len(lines(parent_log)) == 2  # ran on the victim, then again on the rescuer
    c = job(conn, child)
    assert c["attempts"] == 1 and c["waiting_on"] == 0 and c["started_at"] >= p["completed_at"]
    assert len(lines(child_log)) == 1
    rescuer.stop_cleanly()


def test_follow_ups_in_process_mode_are_linked_to_their_parent_and_run(
    conn: Conn, dsn: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    spawn_log, follow_log = tmp_path / "spawn.log", tmp_path / "follow.log"
    d = start(daemons, dsn, tmp_path, "proc", mode="process")
    followups = [{"job_type": "after", "metadata": {"log": str(follow_log), "step": n}} for n in (1, 2, 3)]
    parent = jobcron.enqueue(
        conn, "spawn", user_id="u1", metadata={"log": str(spawn_log), "followups": followups}
    )
    assert jobcron.wait(conn, parent, timeout=20).status == "completed"
    children = conn.execute(
        "SELECT j.id, j.job_type, j.user_id, j.metadata->>'step' AS step, d.settled FROM job_dependencies d"
        " JOIN processing_jobs j ON j.id = d.child_id WHERE d.parent_id = %s ORDER BY step",
        (parent,),
    ).fetchall()
    assert [(c["job_type"], c["user_id"], c["step"], c["settled"]) for c in children] == [
        ("after", "u1", str(n), True) for n in (1, 2, 3)
    ]
    for c in children:
        assert jobcron.wait(conn, c["id"], timeout=20).status == "completed"
        assert job(conn, c["id"])["attempts"] == 1
    assert job(conn, parent)["result"] == {"spawned": 3}
    ran = lines(follow_log)
    assert sorted(line.split()[0] for line in ran) == sorted(str(c["id"]) for c in children)
    # each ran in the job process, not in the daemon itself
    pids = {int(line.split()[1]) for line in [*ran, *lines(spawn_log)]}
    assert d.proc.pid not in pids
    d.stop_cleanly()
