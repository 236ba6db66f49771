"""Webhooks: the outbox written with the status it reports, and delivery to a real local receiver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import structlog.testing

import jobcron
from jobcron import store
from jobcron.admin import jobs as admin_jobs
from jobcron.config import Config
from jobcron.daemon import lifecycle
from jobcron.daemon.worker import Worker
from tests import workflows
from tests.factories import insert_job, job, status_counts
from tests.webhook_receiver import Receiver, free_port

Conn = psycopg.Connection[dict[str, Any]]
SECRET = "s3cret-s3cret-s3cret-0123456789"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def hook_config(make_config: Any, url: str, **extra: Any) -> Config:
    hook = {"name": "ops", "url": url, "events": ["job.failed", "job.completed"], "secret": SECRET, **extra}
    cfg: Config = make_config(
        workflows=workflows.ALL,
        notifications={"webhooks": [hook]},
        retry={"in_process_attempts": 1, "durable_backoff_seconds": 30},
        scheduler_settings={"max_retries": 0},
    )
    return cfg


def deliveries(conn: Conn) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT * FROM processing_jobs WHERE job_type = 'jobcron.webhook' ORDER BY created_at, seq"
    ).fetchall()


def started(config: Config, conn: Conn) -> Worker:
    worker = Worker(config)
    lifecycle.sync_webhooks(worker, conn)
    return worker


def test_a_failure_is_delivered_once_with_a_valid_signature(
    conn: Conn, make_config: Any, receiver: Receiver
) -> None:
    config = hook_config(make_config, receiver.url)
    worker = started(config, conn)
    failing = jobcron.enqueue(conn, "permanent", user_id="u<1>")
    assert worker.run_once() and worker.run_once()  # the job, then its delivery
    assert not worker.run_once()
    assert len(receiver.received) == 1
    got = receiver.received[0]
    assert got.signed_by(SECRET) and not got.signed_by(SECRET + "x")
    assert got.path == "/hooks/jobcron?token=path-secret"
    body = got.json
    assert body["event"] == "job.failed" and got.headers["x-jobcron-event"] == "job.failed"
    assert body["delivery"] == got.headers["x-jobcron-delivery"] == str(deliveries(conn)[0]["id"])
    assert body["job"]["id"] == failing and body["job"]["status"] == "failed"
    assert body["job"]["user_id"] == "u<1>" and body["job"]["error"]
    assert {"created_at", "started_at", "completed_at", "attempts", "job_type"} <= set(body["job"])
    delivered = deliveries(conn)[0]
    assert delivered["status"] == "completed" and delivered["result"]["status"] == 200
    # deliveries raise no events of their own
    assert len(deliveries(conn)) == 1


def test_the_outbox_row_commits_or_rolls_back_with_the_status(
    dsn: str, conn: Conn, make_config: Any, receiver: Receiver
) -> None:
    started(hook_config(make_config, receiver.url), conn)
    job_id = insert_job(conn, job_type="noop")
    with psycopg.connect(dsn) as other:
        other.execute(
            "UPDATE processing_jobs SET status = 'failed', completed_at = now() WHERE id = %s", (job_id,)
        )
        other.rollback()
    assert deliveries(conn) == []
    conn.execute(
        "UPDATE processing_jobs SET status = 'failed', completed_at = now() WHERE id = %s", (job_id,)
    )
    made = deliveries(conn)
    assert len(made) == 1 and made[0]["metadata"]["event"] == "job.failed"
    assert made[0]["metadata"]["body"]["job"]["id"] == job_id


def test_events_and_job_types_filter_the_outbox(conn: Conn, make_config: Any, receiver: Receiver) -> None:
    started(
        hook_config(make_config, receiver.url, events=["job.cancelled", "job.retried"], job_types=["sleep"]),
        conn,
    )
    other_type = insert_job(conn, job_type="noop")
    admin_jobs.cancel_job(conn, other_type)
    assert deliveries(conn) == []
    mine = insert_job(conn, job_type="sleep")
    admin_jobs.cancel_job(conn, mine)
    assert [d["metadata"]["event"] for d in deliveries(conn)] == ["job.cancelled"]
    admin_jobs.retry_job(conn, mine)  # an operator's retry of a cancelled job
    assert [d["metadata"]["event"] for d in deliveries(conn)] == ["job.cancelled", "job.retried"]


def test_a_durable_retry_is_told_as_job_retried(conn: Conn, make_config: Any, receiver: Receiver) -> None:
    config = hook_config(make_config, receiver.url, events=["job.retried"])
    config = make_config(
        workflows=workflows.ALL,
        notifications={"webhooks": [{"url": receiver.url, "events": ["job.retried"], "secret": SECRET}]},
        retry={"in_process_attempts": 1},
        scheduler_settings={"max_retries": 2},
    )
    worker = started(config, conn)
    jobcron.enqueue(conn, "boom")
    worker.run_once()
    made = deliveries(conn)
    assert [d["metadata"]["event"] for d in made] == ["job.retried"]
    assert made[0]["metadata"]["body"]["job"]["retry_count"] == 1


def test_a_receiver_that_is_down_gets_the_delivery_later_once(conn: Conn, make_config: Any) -> None:
    port = free_port()
    down = Receiver(port=port)  # not started: connections are refused
    config = hook_config(make_config, down.url)
    worker = started(config, conn)
    jobcron.enqueue(conn, "permanent")
    worker.run_once()  # the job fails
    worker.run_once()  # its delivery finds nobody
    delivery = deliveries(conn)[0]
    assert delivery["status"] == "pending" and delivery["retry_count"] == 1
    assert "could not be reached" in delivery["error_message"] and "token" not in delivery["error_message"]
    assert not worker.run_once()  # backed off, not due yet
    up = Receiver(port=port).start()
    try:
        conn.execute("UPDATE processing_jobs SET scheduled_at = now() WHERE id = %s", (delivery["id"],))
        assert worker.run_once()
        assert not worker.run_once()
        assert len(up.received) == 1 and up.received[0].signed_by(SECRET)
        assert job(conn, str(delivery["id"]))["status"] == "completed"
    finally:
        up.stop()


def test_redirects_are_not_followed(conn: Conn, make_config: Any, receiver: Receiver) -> None:
    elsewhere = Receiver().start()
    try:
        receiver.status, receiver.location = 302, elsewhere.url
        worker = started(hook_config(make_config, receiver.url), conn)
        jobcron.enqueue(conn, "permanent")
        worker.run_once()
        worker.run_once()
        delivery = deliveries(conn)[0]
        assert delivery["status"] == "failed"
        assert "answered 302, a redirect; redirects are not followed" in delivery["error_message"]
        assert len(receiver.received) == 1 and elsewhere.received == []
    finally:
        elsewhere.stop()


def test_a_slow_receiver_times_out_and_is_retried(conn: Conn, make_config: Any, receiver: Receiver) -> None:
    receiver.delay = 2.0
    worker = started(hook_config(make_config, receiver.url, timeout_seconds=0.3), conn)
    jobcron.enqueue(conn, "permanent")
    worker.run_once()
    worker.run_once()
    delivery = deliveries(conn)[0]
    assert delivery["status"] == "pending" and "did not answer within 0.3s" in delivery["error_message"]


def test_a_4xx_fails_the_delivery_at_once(conn: Conn, make_config: Any, receiver: Receiver) -> None:
    receiver.status = 403
    worker = started(hook_config(make_config, receiver.url), conn)
    jobcron.enqueue(conn, "permanent")
    worker.run_once()
    worker.run_once()
    assert deliveries(conn)[0]["status"] == "failed"
    assert "answered 403; not retried" in deliveries(conn)[0]["error_message"]


def test_the_secret_never_reaches_logs_rows_or_config_show(
    conn: Conn, make_config: Any, receiver: Receiver
) -> None:
    from jobcron.config import config_as_dict

    config = hook_config(make_config, receiver.url)
    worker = started(config, conn)
    with structlog.testing.capture_logs() as logs:
        jobcron.enqueue(conn, "permanent")
        worker.run_once()
        worker.run_once()
    assert receiver.received
    assert SECRET not in str(logs)
    rows = conn.execute("SELECT * FROM processing_jobs").fetchall()
    hooks = conn.execute("SELECT * FROM jobcron_webhooks").fetchall()
    assert SECRET not in str(rows) and SECRET not in str(hooks) and receiver.url not in str(hooks)
    shown = config_as_dict(config)
    assert shown["notifications"]["webhooks"][0]["secret"] == "***" and SECRET not in str(shown)


def test_a_daemon_without_the_webhook_fails_the_delivery_naming_it(
    conn: Conn, make_config: Any, receiver: Receiver
) -> None:
    started(hook_config(make_config, receiver.url), conn)
    jobcron.enqueue(conn, "permanent")
    bare = Worker(make_config(workflows=workflows.ALL, scheduler_settings={"max_retries": 0}))
    bare.run_once()
    bare.run_once()
    assert (
        "webhook 'ops' is not in this daemon's notifications.webhooks" in deliveries(conn)[0]["error_message"]
    )


def test_starting_with_other_webhooks_replaces_the_subscriptions(
    conn: Conn, make_config: Any, receiver: Receiver
) -> None:
    started(hook_config(make_config, receiver.url), conn)
    assert [h["name"] for h in store.webhooks_listed(conn)] == ["ops"]
    started(make_config(), conn)
    assert store.webhooks_listed(conn) == []
    insert_job(conn, job_type="noop", status="failed", completed_at="2026-01-01T00:00:00Z")
    assert status_counts(conn) == {"failed": 1}


def test_a_failed_scheduled_job_and_a_failed_firing_are_schedule_failed(
    conn: Conn, make_config: Any, receiver: Receiver
) -> None:
    from jobcron.schedules import firing

    started(hook_config(make_config, receiver.url, events=["schedule.failed"]), conn)
    schedule = conn.execute(
        "INSERT INTO job_schedules (name, job_type, kind, interval_seconds, next_run_at) "
        "VALUES ('nightly', 'noop', 'interval', 60, now() - interval '1 second') RETURNING id"
    ).fetchone()
    assert schedule is not None
    job_id = insert_job(conn, job_type="noop", schedule_id=schedule["id"])
    conn.execute(
        "UPDATE processing_jobs SET status = 'failed', completed_at = now() WHERE id = %s", (job_id,)
    )
    made = deliveries(conn)
    assert [d["metadata"]["event"] for d in made] == ["schedule.failed"]
    assert made[0]["metadata"]["body"]["schedule"]["name"] == "nightly"
    # an occurrence the queue refuses (a priority out of range, written by hand)
    conn.execute("UPDATE job_schedules SET priority = 0, job_type = '' WHERE id = %s", (schedule["id"],))
    with conn.transaction():
        firings = firing.fire_due(conn, "tester")
    assert [f.outcome for f in firings] in ([firing.FAILED], [firing.INVALID])
    made = deliveries(conn)
    assert len(made) == 2 and made[1]["metadata"]["body"]["schedule"]["error"]


def test_only_the_outbox_makes_delivery_jobs(
    dsn: str, conn: Conn, make_config: Any, receiver: Receiver
) -> None:
    from tests.roles import Roles

    started(hook_config(make_config, receiver.url), conn)
    roles = Roles(dsn)
    try:
        roles.apply()
        app = roles.login("enqueuer")
        forged = (
            "INSERT INTO processing_jobs (job_type, metadata) VALUES ('jobcron.webhook',"
            ' \'{"webhook": "ops", "event": "job.failed", "body": {"forged": true}}\')'
        )
        with (
            psycopg.connect(app, autocommit=True) as forger,
            pytest.raises(psycopg.errors.InsufficientPrivilege, match="made by the webhook outbox only"),
        ):
            forger.execute(forged)
        worker = roles.login("worker")
        with psycopg.connect(worker, autocommit=True) as daemon_role:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                daemon_role.execute("INSERT INTO processing_jobs (job_type) VALUES ('jobcron.webhook')")
            # yet the daemon's role still writes the outbox, through the owner's function
            made = daemon_role.execute(
                "SELECT jobcron_webhook_outbox('job.failed', 'noop', '{}'::jsonb) AS n"
            ).fetchone()
            assert made == (1,)
    finally:
        roles.drop()
    assert [d["metadata"]["event"] for d in deliveries(conn)] == ["job.failed"]
