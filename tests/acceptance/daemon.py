"""Run `job_cron run` as a real subprocess and read its JSON log lines."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.processes import reap

REPO = Path(__file__).resolve().parents[2]


def write_config(path: Path, **sections: dict[str, Any]) -> Path:
    """A config file for a test daemon."""
    path.write_text(json.dumps(sections))
    return path


def job_cron(*args: str, url: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One `job_cron` command as a process of its own, on `url`, with JSON logs and none of this
    environment's jobcron settings."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("JOB_CRON_", "POSTGRES_URL", "PGOPTIONS"))
    }
    return subprocess.run(
        [sys.executable, "-m", "jobcron", "--log-format", "json", *args],
        env={**base, "PYTHONPATH": str(REPO), "DATABASE_URL": url, **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


# daemon timers for tests that wait for heartbeats, rescues and worker rows: seconds, not minutes
FAST = {
    "heartbeat_interval_seconds": 0.2,
    "stale_after_seconds": 1.5,
    "rescue_interval_seconds": 0.3,
    "worker_heartbeat_seconds": 0.5,
}


class Daemon:
    """A `job_cron run` process whose stderr log lines are collected as they come."""

    def __init__(self, dsn: str, config: Path, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "PYTHONPATH": str(REPO),
            "JOB_CRON_LOG_FORMAT": "json",
            **(env or {}),
        }
        full_env.pop("POSTGRES_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobcron", "--config", str(config), "--log-level", "debug", "run", *args],
            cwd=REPO,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.raw.append(line)
                with contextlib.suppress(json.JSONDecodeError):
                    self.lines.append(json.loads(line))
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        """The first log line matching predicate, waiting for it to be written."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no matching log line in {timeout}s; log:\n{''.join(self.raw[-40:])}"
                    )
                self._cond.wait(min(left, 0.2))

    def wait_event(self, event: str, timeout: float = 20.0, **fields: Any) -> dict[str, Any]:
        """The first log line with this event name (and field values)."""
        return self.wait_for(
            lambda line: line.get("event") == event and all(line.get(k) == v for k, v in fields.items()),
            timeout,
        )

    def events(self, event: str) -> list[dict[str, Any]]:
        """Every log line with this event name so far."""
        with self._cond:
            return [line for line in self.lines if line.get("event") == event]

    def signal(self, sig: int) -> None:
        """Send a signal to the daemon."""
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the process to end and return its exit code."""
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop_cleanly(self) -> None:
        """SIGTERM, exit 0, and a log without an error or a privilege refused (killed if it hangs)."""
        try:
            self.signal(signal.SIGTERM)
            assert self.wait_exit() == 0
        finally:
            self.stop()
        log = "".join(self.raw)
        assert "permission denied" not in log and '"level": "error"' not in log, log[-3000:]

    def stop(self) -> None:
        """Make sure the process is gone and its pipes are closed (test teardown)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._reader.join(5)
        reap(self.proc)


class NotifySocket:
    """The systemd side: a datagram socket that records (time, message) as they arrive."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._halt.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self._cond:
                self.messages.append((time.monotonic(), data.decode()))
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = 30.0, after: float = 0.0) -> float:
        """When a message containing text arrived (after a given time)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, message in self.messages:
                    if at >= after and text in message:
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {text!r} in {timeout}s; got {[m for _, m in self.messages]}")
                self._cond.wait(min(left, 0.2))

    def times(self, text: str) -> list[float]:
        with self._cond:
            return [at for at, message in self.messages if message == text]

    def close(self) -> None:
        self._halt.set()
        self._thread.join(5)
        self.sock.close()


def worker_daemon(dsn: str, folder: Path, worker_id: str, *, ready: bool = True) -> Daemon:
    """A daemon with every test workflow, started and ready (the client tests' worker).

    ready=False: started only; the caller starts something else meanwhile, then waits for
    `worker_started` itself.
    """
    from tests import workflows

    d = Daemon(dsn, write_config(folder / "c.json", workflows=workflows.ALL), "--worker-id", worker_id)
    if ready:
        d.wait_event("worker_started", timeout=30)
    return d
