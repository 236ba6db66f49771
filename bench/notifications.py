"""Webhooks (migration 0010): what the outbox costs a finished job, and how fast daemons deliver.

`python -m bench --only notifications`:
- outbox cost: jobs/s of real inline daemons draining noop jobs in three states, interleaved run by
  run so each sees the same machine: the job-ended trigger off (`ALTER TABLE ... DISABLE TRIGGER`:
  what a drain cost before dependencies and webhooks), on with no webhook (what every user pays), and
  on with a webhook subscribed to every completed noop job (one outbox row per finished job; the
  deliveries are paused during the drain, so the figure is the outbox write alone). Reported as
  ratios and as microseconds per job.
- delivery: a burst of outbox rows delivered to a local receiver (a threaded HTTP server in this
  process answering 204) by 1 and by 4 daemons: deliveries/s, with the signature checked on every
  request the receiver gets.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import Result, Run, Server, connect, daemons, drain_rate, median, wait_until
from bench.workloads import Sizes, _config, _insert_noop

SECRET = "bench-secret-0123456789abcdef"  # noqa: S105 - a test key for a local receiver
DELIVERY = "jobcron.webhook"


class Receiver:
    """A local webhook receiver: counts requests and checks each signature."""

    def __init__(self) -> None:
        owner = self
        self.received = 0
        self.bad = 0
        self._lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                with owner._lock:
                    owner.received += 1
                    if not hmac.compare_digest(self.headers.get("X-Jobcron-Signature", ""), expected):
                        owner.bad += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _hook_config(url: str | None) -> dict[str, Any]:
    config = _config()
    if url is not None:
        config["notifications"] = {
            "webhooks": [
                {
                    "name": "bench",
                    "url": url,
                    "events": ["job.completed"],
                    "job_types": ["noop"],
                    "secret": SECRET,
                }
            ]
        }
    return config


def drain(server: Server, count: int, jobs: int, state: str, url: str, log_dir: Path) -> float:
    """Noop jobs/s of `count` daemons; state: trigger_off, no_webhook or outbox."""
    dsn = server.fresh()
    try:
        with connect(dsn) as conn:
            if state == "trigger_off":
                conn.execute("ALTER TABLE processing_jobs DISABLE TRIGGER processing_jobs_job_ended")
            # the deliveries wait: this measures writing the outbox, not sending it
            conn.execute("INSERT INTO job_pauses (job_type, paused_by) VALUES (%s, 'bench')", (DELIVERY,))
            config = _hook_config(url if state == "outbox" else None)
            with daemons(dsn, count, config, "--interval", "5", log_dir=log_dir) as group:
                group.wait_ready(conn)
                _insert_noop(conn, jobs)
                done_query = "SELECT count(*) = 0 FROM processing_jobs WHERE job_type = 'noop' AND status <> 'completed'"
                if not wait_until(conn, done_query, 600, 0.2):
                    raise RuntimeError(f"drain did not finish; see {group.logs[0]}")
                done, rate = drain_rate(conn, "job_type = 'noop' AND status = 'completed'")
                assert done == jobs, (done, jobs)
            made = conn.execute(
                "SELECT count(*) AS n FROM processing_jobs WHERE job_type = %s", (DELIVERY,)
            ).fetchone()
            assert made is not None and made["n"] == (jobs if state == "outbox" else 0), (state, made)
            return rate
    finally:
        server.drop(dsn)


def deliver(server: Server, count: int, jobs: int, receiver: Receiver, log_dir: Path) -> float:
    """Deliveries/s of `count` daemons: `jobs` outbox rows made while paused, then released at once."""
    dsn = server.fresh()
    try:
        with connect(dsn) as conn:
            conn.execute("INSERT INTO job_pauses (job_type, paused_by) VALUES (%s, 'bench')", (DELIVERY,))
            with daemons(dsn, count, _hook_config(receiver.url), "--interval", "5", log_dir=log_dir) as group:
                group.wait_ready(conn)
                _insert_noop(conn, jobs)
                ready = f"SELECT count(*) = {jobs} FROM processing_jobs WHERE job_type = '{DELIVERY}' AND status = 'pending'"
                if not wait_until(conn, ready, 600, 0.2):
                    raise RuntimeError(f"outbox not written; see {group.logs[0]}")
                before = receiver.received
                conn.execute("DELETE FROM job_pauses WHERE job_type = %s", (DELIVERY,))
                done_query = f"SELECT count(*) = 0 FROM processing_jobs WHERE job_type = '{DELIVERY}' AND status <> 'completed'"
                if not wait_until(conn, done_query, 600, 0.2):
                    raise RuntimeError(f"deliveries did not finish; see {group.logs[0]}")
                done, rate = drain_rate(conn, f"job_type = '{DELIVERY}' AND status = 'completed'")
                assert done == jobs and receiver.received - before == jobs, (done, receiver.received - before)
            return rate
    finally:
        server.drop(dsn)


def run_notifications(run: Run, server: Server, sizes: Sizes, log_dir: Path) -> None:
    """The outbox's cost per finished job and the delivery rate (see the module docstring)."""
    receiver = Receiver()
    try:
        jobs = sizes.drain_jobs
        repeats = max(3, sizes.repeats * 3)
        rates: dict[str, list[float]] = {"trigger_off": [], "no_webhook": [], "outbox": []}
        for i in range(repeats):
            states = list(rates) if i % 2 == 0 else list(reversed(rates))
            for state in states:
                rates[state].append(drain(server, 1, jobs, state, receiver.url, log_dir))
        off, bare, outbox = (median(rates[s]) for s in ("trigger_off", "no_webhook", "outbox"))
        for state, label in (
            ("trigger_off", "job-ended trigger off"),
            ("no_webhook", "trigger on, no webhook"),
            ("outbox", "one outbox row per job"),
        ):
            run.add(Result("notifications", f"1 daemon drain, {label}", median(rates[state]), "jobs/s"))
        run.add(
            Result(
                "notifications",
                "trigger with nothing to do / off",
                bare / off,
                "x",
                target=">= 0.9",
                passed=bare / off >= 0.9,
                note=f"{(1 / bare - 1 / off) * 1e6:+.0f} us per job; {repeats} runs each of {jobs} jobs",
            )
        )
        run.add(
            Result(
                "notifications",
                "outbox row per job / no webhook",
                outbox / bare,
                "x",
                note=f"{(1 / outbox - 1 / bare) * 1e6:+.0f} us per finished job for its outbox row",
            )
        )
        for count in (1, 4):
            got = [deliver(server, count, jobs, receiver, log_dir) for _ in range(max(1, sizes.repeats))]
            run.add(
                Result(
                    "notifications",
                    f"{count} daemon(s) deliver to a local receiver",
                    median(got),
                    "deliveries/s",
                    note=f"{jobs} deliveries each; {receiver.bad} bad signatures seen",
                )
            )
        assert receiver.bad == 0
    finally:
        receiver.close()
    time.sleep(0.1)
