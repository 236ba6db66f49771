"""Per-user limits: race-free under many daemons, fair to light users, a user's active jobs and the users with pending jobs."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from jobcron import store
from jobcron.config import Config
from jobcron.daemon.worker import Worker
from jobcron.workflows.base import WorkflowContext
from tests.factories import insert_job, job, status_counts

Conn = psycopg.Connection[dict[str, Any]]
SPANS: list[tuple[str, float, float]] = []
SPANS_LOCK = threading.Lock()


def timed(ctx: WorkflowContext) -> None:
    """Records its own start and end: the span inside which the user's slot is certainly held."""
    start = time.monotonic()
    time.sleep(float(ctx.metadata.get("seconds", 0.002)))
    end = time.monotonic()
    with SPANS_LOCK:
        SPANS.append((ctx.user_id or "", start, end))


def max_overlap(spans: list[tuple[str, float, float]]) -> dict[str, int]:
    """The high-water mark of concurrently running jobs per user."""
    events: dict[str, list[tuple[float, int]]] = {}
    for user, start, end in spans:
        events.setdefault(user, []).extend([(start, 1), (end, -1)])
    peaks: dict[str, int] = {}
    for user, items in events.items():
        level = peak = 0
        for _, delta in sorted(items, key=lambda e: (e[0], e[1])):  # ends before starts at a tie
            level += delta
            peak = max(peak, level)
        peaks[user] = peak
    return peaks


@pytest.mark.parametrize("limit", [1, 3])
def test_limit_holds_under_eight_daemons_with_skewed_load(conn: Conn, make_config: Any, limit: int) -> None:
    SPANS.clear()
    # the heavy user's jobs last long enough for its slots to fill up, so the limit is really tested
    heavy = [("heavy", 0.015)] * 200
    light = [(f"light{i}", 0.002) for i in range(20) for _ in range(5)]
    for user, seconds in heavy + light:  # the heavy user's jobs are all ahead in the queue
        insert_job(conn, job_type="timed", user_id=user, metadata={"seconds": seconds})
    config: Config = make_config(
        workflows={"timed": "tests.integration.test_user_limits:timed"},
        scheduler_settings={"max_concurrent_jobs_per_user": limit},
    )
    finished_at: dict[str, float] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def run(i: int) -> None:
        worker = Worker(config, worker_id=f"w{i}")
        # the test's own connection: the worker's is tuned for its index probes, not for counting
        with psycopg.connect(config.database.url or "", autocommit=True, row_factory=dict_row) as own:
            try:
                while not stop.is_set():
                    if not worker.run_once():
                        if status_counts(own).get("pending", 0) == 0:
                            return
                        time.sleep(0.001)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 90  # inside pytest's timeout: a stall fails with the queue's state
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stalled = any(t.is_alive() for t in threads)
    left = conn.execute(
        "SELECT user_id, status, parked, count(*) AS n FROM processing_jobs "
        "WHERE status IN ('pending', 'processing') GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    ).fetchall()
    stop.set()
    for t in threads:
        t.join(30)
    assert not stalled, f"the daemons stopped making progress with jobs left: {left}"
    assert not errors
    peaks = max_overlap(SPANS)
    assert max(peaks.values()) <= limit, peaks
    assert peaks["heavy"] == limit  # the limit was reached, so the test could have failed
    stats = conn.execute(
        "SELECT count(*) AS n, max(attempts) AS hi FROM processing_jobs WHERE status = 'completed'"
    ).fetchone()
    assert stats == {"n": 300, "hi": 1}
    for user, _start, end in SPANS:
        finished_at[user] = max(finished_at.get(user, 0.0), end)
    last_light = max(v for k, v in finished_at.items() if k.startswith("light"))
    assert last_light < finished_at["heavy"]  # light users were not stuck behind the heavy one
    assert conn.execute(
        "SELECT count(*) AS n FROM processing_jobs WHERE user_slot IS NOT NULL AND status = 'processing'"
    ).fetchone() == {"n": 0}


def test_seed_000_user_flow(conn: Conn, make_config: Any) -> None:
    config: Config = make_config()
    a, b = Worker(config, worker_id="a"), Worker(config, worker_id="b")
    job1 = insert_job(conn, job_type="noop", user_id="A", business_description="File1")
    job2 = insert_job(conn, job_type="noop", user_id="A", business_description="File2")
    job3 = insert_job(conn, job_type="noop", user_id="B", business_description="File3")
    first = a.claim()
    assert first is not None and first.id == job1  # Job1 processing
    second = b.claim()
    assert second is not None and second.id == job3  # Job2 waits; Job3 runs at once
    assert job(conn, job2)["status"] == "pending"
    assert b.claim() is None  # nothing else is allowed
    nxt = a.record(first, a.execute(first))  # Job1 completes ...
    assert nxt is not None and nxt.id == job2  # ... and Job2 starts in the same transaction
    assert job(conn, job2)["status"] == "processing"


def test_jobs_without_user_are_not_limited(conn: Conn, make_config: Any) -> None:
    config: Config = make_config()
    ids = [insert_job(conn, job_type="noop") for _ in range(3)]
    workers = [Worker(config, worker_id=f"w{i}") for i in range(3)]
    claimed = [w.claim() for w in workers]
    assert sorted(c.id for c in claimed if c) == sorted(ids)


def test_limit_off_lets_a_user_run_many(conn: Conn, make_config: Any) -> None:
    config: Config = make_config(job_processing={"single_job_per_user": False})
    for _ in range(3):
        insert_job(conn, job_type="noop", user_id="A")
    workers = [Worker(config, worker_id=f"w{i}") for i in range(3)]
    assert all(w.claim() is not None for w in workers)


def test_slot_index_refuses_a_second_slot_even_for_a_hand_written_update(conn: Conn) -> None:
    insert_job(conn, job_type="noop", user_id="A", status="processing", user_slot=1)
    other = insert_job(conn, job_type="noop", user_id="A")
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "UPDATE processing_jobs SET status='processing', lease_token=gen_random_uuid(), locked_by='x', "
            "started_at=now(), heartbeat_at=now(), user_slot=1 WHERE id=%s",
            (other,),
        )


def test_rescue_frees_the_slot(conn: Conn, make_config: Any) -> None:
    config: Config = make_config()
    stuck = insert_job(
        conn,
        job_type="noop",
        user_id="A",
        status="processing",
        user_slot=1,
        heartbeat_at="2000-01-01T00:00:00Z",
        started_at="2000-01-01T00:00:00Z",
    )
    waiting = insert_job(conn, job_type="noop", user_id="A")
    worker = Worker(config)
    assert worker.claim() is None
    store.rescue_stale_jobs(
        conn,
        worker_id="r",
        stale_after_seconds=60,
        max_processing_seconds=10**9,
        retry_failed_jobs=True,
        default_max_retries=3,
    )
    claimed = worker.claim()
    assert claimed is not None and claimed.id in (stuck, waiting)


def _parked(conn: Conn, user_id: str | None = None) -> int:
    row = conn.execute(
        "SELECT count(*) AS n FROM processing_jobs WHERE status = 'pending' AND parked"
        " AND (%(u)s::text IS NULL OR user_id = %(u)s::text)",
        {"u": user_id},
    ).fetchone()
    assert row is not None
    return int(row["n"])


def test_a_head_of_blocked_jobs_is_parked_and_its_next_job_returns_when_the_user_is_done(
    conn: Conn, make_config: Any
) -> None:
    heavy = [insert_job(conn, job_type="noop", user_id="H") for _ in range(100)]
    light = [insert_job(conn, job_type="noop", user_id=f"L{i}") for i in range(5)]
    config: Config = make_config()
    a, b = Worker(config, worker_id="a"), Worker(config, worker_id="b")
    first = a.claim()
    assert first is not None and first.id == heavy[0]
    # H is at its limit: b's looks find only H's jobs, park them window by window, and reach the light user
    second = b.claim()
    assert second is not None and second.id == light[0]
    assert _parked(conn, "H") == 96 and _parked(conn) == 96
    assert job(conn, heavy[1])["parked"] and not job(conn, light[1])["parked"]
    # H's job ends: its next job comes back (a trigger) and the recording daemon claims it at once
    nxt = a.record(first, a.execute(first))
    assert nxt is not None and nxt.id == heavy[1]
    assert _parked(conn, "H") == 95


def test_a_paused_type_at_the_head_is_parked_and_resuming_brings_it_back(
    conn: Conn, make_config: Any
) -> None:
    from jobcron.admin import jobs as admin_jobs

    paused = [insert_job(conn, job_type="report") for _ in range(40)]
    other = insert_job(conn, job_type="noop")
    admin_jobs.pause(conn, "report", by="test")
    worker = Worker(make_config())
    claimed = worker.claim()
    assert claimed is not None and claimed.id == other
    assert _parked(conn) == 32
    admin_jobs.resume(conn, "report")
    assert _parked(conn) == 0  # the resume's trigger put them back, in their place in the queue
    claimed = worker.claim()
    assert claimed is not None and claimed.id == paused[0]


def test_the_seed_003_emergency_reset_runs_after_a_cancel_request(conn: Conn, make_config: Any) -> None:
    from jobcron.admin import jobs as admin_jobs

    running = insert_job(conn, job_type="noop", user_id="A", status="processing", user_slot=1)
    other = insert_job(conn, job_type="noop", status="processing")
    admin_jobs.cancel_job(conn, running, by="test")
    # the operator's blind reset is not refused; the job whose cancel was asked for ends cancelled
    conn.execute(
        "UPDATE processing_jobs SET status = 'pending', started_at = NULL WHERE status = 'processing'"
    )
    row = job(conn, running)
    assert row["status"] == "cancelled" and row["completed_at"] is not None
    assert job(conn, other)["status"] == "pending"


def test_the_safety_net_unparks_what_a_raised_limit_allows(conn: Conn, make_config: Any) -> None:
    insert_job(conn, job_type="noop", user_id="A", status="processing", user_slot=1)
    waiting = [insert_job(conn, job_type="noop", user_id="A") for _ in range(40)]
    strict = Worker(make_config(), worker_id="strict")
    assert strict.claim() is None
    assert _parked(conn, "A") == 40
    # nothing ends, so no trigger fires: the periodic check brings back what the new limit lets run
    relaxed = Worker(make_config(scheduler_settings={"max_concurrent_jobs_per_user": 3}), worker_id="relaxed")
    with psycopg.connect(relaxed.config.database.url or "", autocommit=True, row_factory=dict_row) as own:
        assert relaxed.maintenance.unpark(own) == 2
    assert [job(conn, j)["parked"] for j in waiting[:3]] == [False, False, True]
    claimed = [relaxed.claim(), relaxed.claim(), relaxed.claim()]
    assert [c.id if c else None for c in claimed] == [waiting[0], waiting[1], None]
