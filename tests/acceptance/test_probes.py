"""`job_cron run --health-port`: /livez and /readyz of one real daemon process, and 404 for every other
path, also on the metrics port."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobcron.daemon.probes import Probes
from jobcron.daemon.worker import Worker
from tests.acceptance.daemon import Daemon, write_config
from tests.webhook_receiver import free_port

pytestmark = pytest.mark.acceptance


def get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            body = answer.read()
            status = answer.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode()


def test_probes_and_metrics_answer_their_paths_only(
    dsn: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    health, metrics = free_port(), free_port()
    config = write_config(tmp_path / "c.json", job_processing={"execution_mode": "inline"})
    d = Daemon(
        dsn, config, "--health-port", str(health), "--metrics-port", str(metrics), "--worker-id", "probed"
    )
    try:
        d.wait_event("worker_started", timeout=30)
        status, body = get(health, "/livez")
        assert status == 200 and body["status"] == "alive" and body["worker_id"] == "probed"
        assert get(health, "/readyz") == (200, {"status": "ready", "worker_id": "probed"})
        assert get(health, "/metrics")[0] == 404
        status, body = get(health, "/")
        assert status == 404 and body["paths"] == ["/livez", "/readyz"]
        assert (
            get(metrics, "/metrics")[0] == 200 and "jobcron_jobs_claimed_total" in get(metrics, "/metrics")[1]
        )
        assert get(metrics, "/anything")[0] == 404
        assert get(metrics, "/livez")[0] == 404
        # a schema this daemon does not know: unready with the reason, still live
        conn.execute("INSERT INTO jobcron_migrations (version, name, checksum) VALUES (999, 'future', 'x')")
        status, body = get(health, "/readyz")
        assert status == 503 and body["status"] == "not_ready"
        assert "database has migrations this jobcron does not know ([999])" in body["reason"]
        assert get(health, "/livez")[0] == 200
        conn.execute("DELETE FROM jobcron_migrations WHERE version = 999")
        assert get(health, "/readyz")[0] == 200
    finally:
        d.stop_cleanly()


def test_the_health_port_must_be_free(dsn: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "c.json", job_processing={"execution_mode": "inline"})
        d = Daemon(dsn, config, "--health-port", str(port))
        try:
            assert d.wait_exit(timeout=30) == 2
            assert f"--health-port: cannot listen on 127.0.0.1:{port}" in "\n".join(d.raw)
        finally:
            d.stop()


def test_livez_follows_the_watchdog_rule_and_readyz_names_an_outage(make_config: Any) -> None:
    worker = Worker(make_config())
    probes = Probes(worker)
    worker.state.tick()
    assert probes.livez()[0] == 200
    worker.state.loop_tick = time.monotonic() - probes.window - 1  # the loop stopped ticking
    status, _, body = probes.livez()
    assert status == 503 and json.loads(body)["status"] == "stalled"
    assert probes.readyz()[0] == 200
    probes.close()
    down = Worker(
        make_config(
            database={"url": f"postgresql://nobody@127.0.0.1:{free_port()}/x", "connect_timeout_seconds": 1}
        )
    )
    unreachable = Probes(down)
    status, _, body = unreachable.readyz()
    unreachable.close()
    assert status == 503 and json.loads(body)["reason"].startswith("database unavailable: ")
