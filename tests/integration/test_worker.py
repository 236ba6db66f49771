"""The claim-run-record cycle against a real database, driven through Worker.run_once()."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import structlog.testing

from jobcron import store
from jobcron.config import Config
from jobcron.daemon.worker import Worker
from tests import workflows
from tests.factories import insert_file, insert_job, job, status_counts

Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture
def config(make_config: Any) -> Config:
    cfg: Config = make_config(
        workflows=workflows.ALL,
        retry={"in_process_attempts": 2, "in_process_backoff_seconds": 0.0, "durable_backoff_seconds": 5},
    )
    return cfg


def drain(worker: Worker) -> int:
    n = 0
    while worker.run_once():
        n += 1
    return n


def test_noop_job_completes(conn: Conn, config: Config) -> None:
    job_id = insert_job(conn, job_type="noop")
    worker = Worker(config)
    assert worker.run_once() is True
    assert worker.run_once() is False
    row = job(conn, job_id)
    assert row["status"] == "completed"
    assert row["completed_at"] is not None and row["started_at"] is not None
    assert row["attempts"] == 1 and row["retry_count"] == 0
    assert row["locked_by"] == worker.worker_id


def test_fifo_and_priority_orders(conn: Conn, make_config: Any) -> None:
    low = insert_job(conn, job_type="noop", priority=0)
    high = insert_job(conn, job_type="noop", priority=10)
    fifo = Worker(make_config())
    claimed = fifo.claim()
    assert claimed is not None and claimed.id == low
    conn.execute("UPDATE processing_jobs SET status='pending', lease_token=NULL WHERE id=%s", (low,))
    by_priority = Worker(make_config(job_processing={"queue_priority": "priority"}))
    claimed = by_priority.claim()
    assert claimed is not None and claimed.id == high


def test_future_and_cancelled_jobs_are_not_claimed(conn: Conn, config: Config) -> None:
    insert_job(conn, job_type="noop", scheduled_at=datetime.now(UTC) + timedelta(hours=1))
    insert_job(conn, job_type="noop", status="cancelled", completed_at=datetime.now(UTC))
    assert Worker(config).claim() is None
    # a pending row can't carry a cancel request at all: the schema refuses it
    with pytest.raises(psycopg.errors.CheckViolation, match="processing_jobs_pending_not_cancel_requested"):
        insert_job(conn, job_type="noop", cancel_requested=True)


def test_insights_and_result_are_recorded_once(conn: Conn, config: Config) -> None:
    path = insert_file(conn, "/data/x.csv")
    job_id = insert_job(conn, job_type="with_insights", file_id=path)
    Worker(config).run_once()
    row = job(conn, job_id)
    assert row["status"] == "completed"
    assert row["result"] == {"job": job_id}
    insights = conn.execute(
        "SELECT insight_type, confidence_score, file_id FROM insights WHERE job_id=%s ORDER BY 1", (job_id,)
    ).fetchall()
    assert [(i["insight_type"], float(i["confidence_score"])) for i in insights] == [
        ("detail", 0.5),
        ("summary", 0.9),
    ]
    assert all(str(i["file_id"]) == path for i in insights)
    file_status = conn.execute("SELECT status FROM files WHERE id=%s", (path,)).fetchone()
    assert file_status is not None and file_status["status"] == "analysed"


def test_error_becomes_durable_retry_then_failed(conn: Conn, config: Config) -> None:
    job_id = insert_job(conn, job_type="boom", max_retries=1)
    worker = Worker(config)
    before = datetime.now(UTC)
    assert worker.run_once()
    row = job(conn, job_id)
    assert row["status"] == "pending" and row["retry_count"] == 1
    assert row["scheduled_at"] >= before + timedelta(seconds=2.4)  # half the 5 s backoff at least
    assert "boom: something broke" in row["error_message"]
    assert worker.run_once() is False  # not due yet
    conn.execute("UPDATE processing_jobs SET scheduled_at = now() WHERE id=%s", (job_id,))
    assert worker.run_once()
    row = job(conn, job_id)
    assert row["status"] == "failed" and row["retry_count"] == 1 and row["attempts"] == 2
    assert [e["type"] for e in row["errors"]] == ["ValueError", "ValueError"]
    assert all(e["worker"] == worker.worker_id and "Traceback" in e["traceback"] for e in row["errors"])


def test_retry_disabled_fails_at_once(conn: Conn, make_config: Any) -> None:
    job_id = insert_job(conn, job_type="boom")
    Worker(make_config(workflows=workflows.ALL, scheduler_settings={"retry_failed_jobs": False})).run_once()
    assert job(conn, job_id)["status"] == "failed"


@pytest.mark.parametrize(
    ("job_type", "metadata", "message"),
    [
        ("permanent", {}, "permanent: the input can never work"),
        ("no_such_type", {}, "unknown job_type 'no_such_type'"),
        ("needs_key", {}, "metadata.key is required"),
        ("unserialisable", {}, "not JSON-serialisable"),
    ],
)
def test_permanent_errors_fail_at_once(
    conn: Conn, config: Config, job_type: str, metadata: dict[str, Any], message: str
) -> None:
    job_id = insert_job(conn, job_type=job_type, metadata=metadata)
    ok_id = insert_job(conn, job_type="noop")
    worker = Worker(config)
    assert drain(worker) == 2
    row = job(conn, job_id)
    assert row["status"] == "failed" and row["retry_count"] == 0
    assert message in row["error_message"]
    assert job(conn, ok_id)["status"] == "completed"


def test_null_metadata_is_an_empty_object(conn: Conn, config: Config) -> None:
    job_id = insert_job(conn, job_type="noop", metadata=None)
    Worker(config).run_once()
    assert job(conn, job_id)["status"] == "completed"


def test_huge_metadata_fails_clearly(conn: Conn, make_config: Any) -> None:
    job_id = insert_job(conn, job_type="noop", metadata={"blob": "x" * 5000})
    Worker(make_config(job_processing={"max_metadata_bytes": 1000})).run_once()
    row = job(conn, job_id)
    assert row["status"] == "failed" and "max_metadata_bytes" in row["error_message"]


def test_transient_errors_are_retried_in_process(conn: Conn, config: Config, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    job_id = insert_job(conn, job_type="flaky", metadata={"counter": str(counter), "failures": 1})
    Worker(config).run_once()
    row = job(conn, job_id)
    assert row["status"] == "completed" and row["attempts"] == 1 and row["result"] == {"calls": 2}


def test_late_writer_with_lost_lease_writes_nothing(conn: Conn, config: Config) -> None:
    job_id = insert_job(conn, job_type="noop")
    worker = Worker(config)
    claimed = worker.claim()
    assert claimed is not None
    # another worker rescued and re-claimed it meanwhile
    conn.execute(
        "UPDATE processing_jobs SET lease_token = gen_random_uuid(), locked_by='other' WHERE id=%s", (job_id,)
    )
    worker.record(claimed, worker.execute(claimed), claim_next=False)
    row = job(conn, job_id)
    assert row["status"] == "processing" and row["locked_by"] == "other"
    assert conn.execute("SELECT count(*) AS n FROM insights").fetchone() == {"n": 0}


def test_rescue_stale_jobs_with_a_moved_clock(conn: Conn) -> None:
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    retried = insert_job(
        conn, job_type="noop", status="processing", heartbeat_at=long_ago, started_at=long_ago
    )
    exhausted = insert_job(
        conn, job_type="noop", status="processing", heartbeat_at=long_ago, started_at=long_ago, retry_count=3
    )
    fresh = insert_job(conn, job_type="noop", status="processing")
    rows = store.rescue_stale_jobs(
        conn,
        worker_id="rescuer",
        stale_after_seconds=60,
        max_processing_seconds=3600,
        retry_failed_jobs=True,
        default_max_retries=3,
    )
    assert {str(r["id"]) for r in rows} == {retried, exhausted}
    assert job(conn, retried)["status"] == "pending" and job(conn, retried)["retry_count"] == 1
    assert job(conn, exhausted)["status"] == "failed"
    assert "worker lost" in job(conn, exhausted)["error_message"]
    assert job(conn, retried)["errors"][-1]["type"] == "WorkerLost"
    assert job(conn, fresh)["status"] == "processing"
    # the same call with the clock moved 2 minutes on rescues the fresh one too
    later = datetime.now(UTC) + timedelta(minutes=2)
    rows = store.rescue_stale_jobs(
        conn,
        worker_id="rescuer",
        stale_after_seconds=60,
        max_processing_seconds=3600,
        retry_failed_jobs=True,
        default_max_retries=3,
        now=later,
    )
    assert [str(r["id"]) for r in rows] == [fresh]


def test_rescue_over_max_processing_time_fails_regardless_of_heartbeat(conn: Conn) -> None:
    started = datetime.now(UTC) - timedelta(hours=2)
    job_id = insert_job(
        conn, job_type="noop", status="processing", started_at=started, heartbeat_at=datetime.now(UTC)
    )
    rows = store.rescue_stale_jobs(
        conn,
        worker_id="r",
        stale_after_seconds=60,
        max_processing_seconds=3600,
        retry_failed_jobs=True,
        default_max_retries=3,
    )
    assert rows and rows[0]["overdue"]
    row = job(conn, job_id)
    assert row["status"] == "failed" and "max_processing_time" in row["error_message"]


def test_rerun_after_rescue_leaves_one_insight_set(conn: Conn, config: Config) -> None:
    job_id = insert_job(conn, job_type="with_insights")
    crashed = Worker(config)
    claimed = crashed.claim()
    assert claimed is not None
    conn.execute("UPDATE processing_jobs SET heartbeat_at = now() - interval '1 hour' WHERE id=%s", (job_id,))
    store.rescue_stale_jobs(
        conn,
        worker_id="r",
        stale_after_seconds=60,
        max_processing_seconds=7200,
        retry_failed_jobs=True,
        default_max_retries=3,
    )
    assert Worker(config).run_once()
    # the crashed worker comes back to life and tries to record: its lease is gone
    crashed.record(claimed, crashed.execute(claimed), claim_next=False)
    n = conn.execute("SELECT count(*) AS n FROM insights WHERE job_id=%s", (job_id,)).fetchone()
    assert n == {"n": 2}
    assert job(conn, job_id)["status"] == "completed"


def test_eight_workers_claim_each_job_exactly_once(conn: Conn, config: Config, dsn: str) -> None:
    conn.execute("INSERT INTO processing_jobs (job_type) SELECT 'noop' FROM generate_series(1, 2000)")
    workers = [Worker(config, worker_id=f"w{i}") for i in range(8)]
    counts: dict[str, int] = {}
    errors: list[BaseException] = []

    def run(worker: Worker) -> None:
        try:
            counts[worker.worker_id] = drain(worker)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert sum(counts.values()) == 2000
    assert sum(1 for c in counts.values() if c > 0) >= 2  # the work really was shared
    stats = conn.execute(
        "SELECT count(*) AS n, min(attempts) AS lo, max(attempts) AS hi FROM processing_jobs WHERE status='completed'"
    ).fetchone()
    assert stats == {"n": 2000, "lo": 1, "hi": 1}


def test_max_jobs_and_once(conn: Conn, config: Config) -> None:
    for _ in range(5):
        insert_job(conn, job_type="noop")
    worker = Worker(config, max_jobs=3, once=True)
    assert worker.run() == 0
    assert worker.jobs_done == 3
    counts = status_counts(conn)
    assert counts == {"completed": 3, "pending": 2}
    assert conn.execute("SELECT count(*) AS n FROM job_workers").fetchone() == {"n": 0}


def test_paused_types_are_skipped(conn: Conn, config: Config) -> None:
    paused = insert_job(conn, job_type="with_insights")
    other = insert_job(conn, job_type="noop")
    conn.execute("INSERT INTO job_pauses (job_type) VALUES ('with_insights')")
    worker = Worker(config)
    worker.state.paused = ("with_insights",)
    assert drain(worker) == 1
    assert job(conn, paused)["status"] == "pending" and job(conn, other)["status"] == "completed"


def test_dedup_key_refuses_a_second_pending_job(conn: Conn) -> None:
    first = store.insert_job(conn, job_type="noop", dedup_key="report-2026-11")
    assert first is not None
    assert store.insert_job(conn, job_type="noop", dedup_key="report-2026-11") is None
    conn.execute("UPDATE processing_jobs SET status='completed', completed_at=now() WHERE id=%s", (first,))
    assert store.insert_job(conn, job_type="noop", dedup_key="report-2026-11") is not None


def test_unknown_lease_state_after_a_lost_commit_is_not_lease_lost(conn: Conn, config: Config) -> None:
    job_id = insert_job(conn, job_type="noop")
    worker = Worker(config)
    claimed = worker.claim()
    assert claimed is not None
    outcome = worker.execute(claimed)
    assert store.finish(conn, claimed, outcome)  # the write landed but its answer was "lost"
    state = store.job_lease_state(conn, job_id, claimed.lease_token)
    assert state == {"status": "completed", "ours": True}
    assert store.job_lease_state(conn, job_id, str(uuid.uuid4())) == {"status": "completed", "ours": False}


def test_nan_result_fails_at_once_with_a_clear_error(conn: Conn, config: Config) -> None:
    job_id = insert_job(conn, job_type="nan_result")
    Worker(config).run_once()
    row = job(conn, job_id)
    assert row["status"] == "failed" and row["retry_count"] == 0
    assert "not JSON-serialisable" in row["error_message"]


def test_a_put_back_job_with_a_cancel_requested_ends_cancelled(conn: Conn, config: Config) -> None:
    # a claim whose commit was not seen, cancelled meanwhile: releasing it must not strand it as pending
    stranded = insert_job(conn, status="processing", locked_by="w-lost", cancel_requested=True)
    assert store.release_worker_jobs(conn, "w-lost", []) == [stranded]
    row = job(conn, stranded)
    assert row["status"] == "cancelled" and row["completed_at"] is not None


def test_a_restarted_worker_id_rescues_and_charges_its_earlier_runs_jobs(conn: Conn, config: Config) -> None:
    # systemd restarts a crashed daemon under the same id: the job it died running is charged an attempt
    left = insert_job(conn, status="processing", locked_by="host-1", attempts=1, max_retries=0)
    retried = insert_job(conn, status="processing", locked_by="host-1", attempts=1)
    other = insert_job(conn, status="processing", locked_by="host-2", attempts=1)
    worker = Worker(config, worker_id="host-1")
    worker.start()
    try:
        assert job(conn, left)["status"] == "failed"
        after = job(conn, retried)
        assert after["status"] == "pending" and after["retry_count"] == 1
        assert after["errors"][-1]["type"] == "WorkerLost"
        assert (
            job(conn, other)["status"] == "processing"
        )  # another daemon's job is left to the heartbeat rule
    finally:
        worker.shutdown()


def test_daemon_works_without_prepared_statements(conn: Conn, make_config: Any) -> None:
    # behind a transaction-mode pooler: no startup options, nothing prepared
    cfg: Config = make_config(database={"prepared_statements": False})
    job_id = insert_job(conn, job_type="noop")
    worker = Worker(cfg)
    assert worker.run_once()
    assert job(conn, job_id)["status"] == "completed"
    c = worker.db.connection()
    assert c.prepare_threshold is None
    assert c.execute("SHOW plan_cache_mode").fetchone() == {"plan_cache_mode": "auto"}


def test_a_lone_claim_commits_without_waiting_for_the_flush_but_a_record_waits(conn: Conn, dsn: str) -> None:
    # the setting is local to the claim's implicit transaction; the connection's default stays on
    insert_job(conn, job_type="noop")
    with psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as c:
        # on, as a production server has it: a throwaway test cluster (tests/pgserver.py) or any server
        # behind JOBCRON_TEST_DSN may default to off, and then the test would prove nothing
        c.execute("SET synchronous_commit = on")
        with c.pipeline():
            c.execute("SELECT set_config('synchronous_commit', 'off', true)")
            inside = c.execute("SHOW synchronous_commit")
        assert inside.fetchone() == {"synchronous_commit": "off"}
        assert c.execute("SHOW synchronous_commit").fetchone() == {"synchronous_commit": "on"}
        claimed = store.claim(c, store.ClaimParams(worker_id="w")).job
        assert claimed is not None
        assert c.execute("SHOW synchronous_commit").fetchone() == {"synchronous_commit": "on"}


def test_a_reconnect_while_recording_keeps_the_job_being_recorded(conn: Conn, config: Config) -> None:
    # the main connection dies while the job runs: the reconnect must put back only claims whose answer
    # was lost, never the job whose result is about to be written
    job_id = insert_job(conn, job_type="with_insights")
    worker = Worker(config)

    def kill_connection(_job: Any) -> None:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE '%%:worker'"
        )

    worker.on_job_start = kill_connection
    assert worker.run_once()
    row = job(conn, job_id)
    assert row["status"] == "completed" and row["attempts"] == 1 and row["result"] == {"job": job_id}
    insights = conn.execute("SELECT count(*) AS n FROM insights WHERE job_id = %s", (job_id,)).fetchone()
    assert insights == {"n": 2}  # one set of the workflow's two insights


def test_a_rescued_jobs_late_record_is_a_lost_lease(conn: Conn, config: Config) -> None:
    job_id = insert_job(conn, job_type="noop")
    claimed = store.claim(conn, store.ClaimParams(worker_id="slow-worker")).job
    assert claimed is not None
    later = datetime.now(UTC) + timedelta(hours=1)
    store.rescue_stale_jobs(
        conn,
        worker_id="rescuer",
        stale_after_seconds=60,
        max_processing_seconds=7200,
        retry_failed_jobs=True,
        default_max_retries=3,
        now=later,
    )
    # the rescue voided the lease: the old worker's write finds nothing, and nothing looks like its own
    assert store.job_lease_state(conn, job_id, claimed.lease_token) == {"status": "pending", "ours": None}


def test_two_daemons_cannot_run_under_one_worker_id(conn: Conn, config: Config) -> None:
    from jobcron.errors import WorkerIdTaken

    first = Worker(config, worker_id="dup")
    first.start()
    try:
        with pytest.raises(WorkerIdTaken, match="'dup'"):
            Worker(config, worker_id="dup").start()
    finally:
        first.shutdown()
    again = Worker(config, worker_id="dup")  # the id is free once its daemon stopped
    again.start()
    again.shutdown()


def test_a_paused_head_job_does_not_hold_back_the_users_other_jobs(conn: Conn) -> None:
    # more paused jobs of one user than the claim's first look covers, then one of another type
    for _ in range(40):
        insert_job(conn, job_type="paused_kind", user_id="u1")
    wanted = insert_job(conn, job_type="noop", user_id="u1")
    conn.execute("INSERT INTO job_pauses (job_type) VALUES ('paused_kind')")
    for order, parked_first in (("first_in_first_out", 32), ("priority", 0)):
        params = store.ClaimParams(worker_id="w", order=order, user_limit=1)
        first = store.claim(conn, params)
        # the first look finds only paused jobs and parks them; the next one looks further (and in the
        # second round the 8 paused jobs left in the window do not hold their user's job back)
        assert first.parked == parked_first
        claimed = first.job or store.claim(conn, params).job
        assert claimed is not None and claimed.id == wanted
        conn.execute(
            "UPDATE processing_jobs SET status = 'pending', lease_token = NULL, user_slot = NULL, heartbeat_at = NULL WHERE id = %s",
            (wanted,),
        )


def test_a_stopped_worker_leaves_no_housekeeper_to_register_it_again(conn: Conn, config: Config) -> None:
    # the housekeeper's worker heartbeat re-inserts a missing job_workers row: one still running after
    # the shutdown unregistered the worker brought a stopped daemon back to life in `job_cron workers`
    insert_job(conn, job_type="noop")
    worker = Worker(config, once=True)
    assert worker.run() == 0
    assert not worker.maintenance.is_alive() and not worker.watchdog.is_alive()
    worker.maintenance.worker_row(conn)  # a heartbeat that was already under way
    assert conn.execute("SELECT count(*) AS n FROM job_workers").fetchone() == {"n": 0}


# the emergency reset some runbooks give (running jobs back to pending), as an operator pastes it into psql
BLIND_RESET = "UPDATE processing_jobs SET status = 'pending', started_at = NULL WHERE status = 'processing'"


@pytest.mark.parametrize("last_job", [True, False], ids=["the daemon's last job", "claiming on"])
def test_a_run_whose_job_an_operator_reset_records_nothing_and_says_so(
    conn: Conn, config: Config, last_job: bool
) -> None:
    # the reset leaves the run's lease token on the now-pending row: that must not pass for the run's
    # own record whose answer was lost
    job_id = insert_job(conn, job_type="with_insights")
    with structlog.testing.capture_logs() as logs:
        worker = Worker(config, max_jobs=1 if last_job else None)
        worker.on_job_start = lambda _job: conn.execute(BLIND_RESET)
        assert worker.run_once()
    events = [e["event"] for e in logs]
    assert "lease_lost" in events and "job_completed" not in events, events
    assert conn.execute("SELECT count(*) AS n FROM insights").fetchone() == {"n": 0}
    if last_job:  # nothing claimed after it: the job waits for the next daemon, not charged by this run's end
        assert job(conn, job_id)["status"] == "pending" and job_id not in worker.state.held
        return
    # the claim that shared the record's transaction took the reset job again: it is held, as the next job
    row = job(conn, job_id)
    assert row["status"] == "processing" and row["attempts"] == 2
    assert worker.next_job is not None and worker.next_job.id == job_id
    assert job_id in worker.state.held
    worker.on_job_start = None
    assert worker.run_once()
    assert job(conn, job_id)["status"] == "completed"
    assert conn.execute("SELECT count(*) AS n FROM insights").fetchone() == {"n": 2}
    assert job_id not in worker.state.held


def test_a_record_leaves_a_mark_only_the_lease_holder_can_leave(conn: Conn, config: Config) -> None:
    recorded = insert_job(conn, job_type="noop")
    reset = insert_job(conn, job_type="noop")
    params = store.ClaimParams(worker_id="w")
    first = store.claim(conn, params).job
    second = store.claim(conn, params).job
    assert first is not None and first.id == recorded and second is not None and second.id == reset
    outcome = Worker(config).execute(first)
    assert store.finish(conn, first, outcome)
    conn.execute(BLIND_RESET)
    assert store.job_lease_state(conn, recorded, first.lease_token) == {"status": "completed", "ours": True}
    assert store.job_lease_state(conn, reset, second.lease_token) == {"status": "pending", "ours": False}
    # and the heartbeat of the reset run finds its lease gone, before and after a new claim
    assert store.heartbeat_job(conn, reset, second.lease_token) is None
    again = store.claim(conn, params).job
    assert again is not None and again.id == reset
    assert store.heartbeat_job(conn, reset, second.lease_token) is None
    assert store.job_lease_state(conn, reset, second.lease_token) == {"status": "processing", "ours": False}


def test_a_daemon_never_rescues_a_job_it_holds(conn: Conn, make_config: Any) -> None:
    # an outage longer than stale_after_seconds: the heartbeat of the job this daemon runs could not be
    # written, and its own rescue comes back first
    config: Config = make_config(workflows=workflows.ALL, daemon={"stale_after_seconds": 1})
    job_id = insert_job(conn, job_type="with_insights")
    other = insert_job(conn, status="processing", locked_by="gone-worker")
    stale = "UPDATE processing_jobs SET heartbeat_at = now() - interval '1 hour' WHERE status = 'processing'"
    worker = Worker(config, worker_id="holder")
    rescued: list[str] = []

    def outage_longer_than_stale_after(_job: Any) -> None:
        conn.execute(stale)
        rescued.extend(worker.maintenance.rescue(conn))

    worker.on_job_start = outage_longer_than_stale_after
    assert worker.run_once()
    assert rescued == [other]  # a dead daemon's job is still rescued
    row = job(conn, job_id)
    assert row["status"] == "completed" and row["attempts"] == 1 and row["retry_count"] == 0
    assert conn.execute("SELECT count(*) AS n FROM insights WHERE job_id = %s", (job_id,)).fetchone() == {
        "n": 2
    }


# the rescue's settings for the tests that call it directly
RESCUE_RULES: dict[str, Any] = {
    "stale_after_seconds": 60,
    "max_processing_seconds": 7200,
    "retry_failed_jobs": True,
    "default_max_retries": 3,
}


def test_another_daemon_still_rescues_a_held_job_whose_heartbeat_is_old(conn: Conn) -> None:
    # the exception is for the holder alone: for everyone else a stale heartbeat is a lost worker
    job_id = insert_job(conn, status="processing", locked_by="holder")
    conn.execute(
        "UPDATE processing_jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", (job_id,)
    )
    assert store.rescue_stale_jobs(conn, worker_id="holder", held_ids=[job_id], **RESCUE_RULES) == []
    rows = store.rescue_stale_jobs(conn, worker_id="other", held_ids=[job_id], **RESCUE_RULES)
    assert [str(r["id"]) for r in rows] == [job_id]


def test_a_daemon_leaves_its_own_unheld_jobs_to_its_uncharged_release(conn: Conn) -> None:
    # after a failover: a job whose claim or record this daemon never saw commit is still processing
    # under its own id. Its main loop puts it back uncharged as it reconnects; its own rescue must not
    # charge an attempt first (a job with no retries left would end failed for work that succeeded)
    job_id = insert_job(conn, status="processing", locked_by="holder", max_retries=0)
    conn.execute(
        "UPDATE processing_jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", (job_id,)
    )
    assert store.rescue_stale_jobs(conn, worker_id="holder", held_ids=[], **RESCUE_RULES) == []
    released = store.release_worker_jobs(conn, "holder", [])
    assert released == [job_id]
    row = job(conn, job_id)
    assert row["status"] == "pending" and row["attempts"] == 0 and row["errors"] == []
    # at start, the jobs of an earlier run under this id are rescued and charged, as before
    conn.execute(
        "UPDATE processing_jobs SET status = 'processing', locked_by = 'holder', lease_token = gen_random_uuid(),"
        " started_at = now(), locked_at = now(), heartbeat_at = now(), attempts = 1 WHERE id = %s",
        (job_id,),
    )
    rows = store.rescue_stale_jobs(
        conn, worker_id="holder", held_ids=[], restarted_worker="holder", **RESCUE_RULES
    )
    assert [str(r["id"]) for r in rows] == [job_id]
