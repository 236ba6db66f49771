"""Run `job_cron web` as a real subprocess on a free port of 127.0.0.1, and read its API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from jobcron.dev.host import free_port
from tests.acceptance.daemon import REPO
from tests.processes import reap


def get(url: str, token: str | None = None) -> tuple[int, Any]:
    """GET a JSON answer from the local server: (status, body), an HTTP error included."""
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


class WebServer:
    """A `job_cron web` process, answering HTTP once constructed (unless ready=False); stderr to a file.

    A file, not a pipe: nobody reads stderr while the server runs, and what it writes over a long
    run (a browser test, the screenshots' demo) would fill a pipe and stall the server.
    """

    def __init__(self, dsn: str, log: Path, *, ready: bool = True) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "DATABASE_URL": dsn, "PYTHONPATH": str(REPO)}
        env.pop("POSTGRES_URL", None)
        with log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jobcron", "web", "--port", str(self.port)],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
            )
        if ready:
            try:
                self.wait_answering()
            except BaseException:
                self.stop()
                raise

    def wait_answering(self, timeout: float = 30.0) -> None:
        """Until the server answers HTTP (ready=False: the caller starts something else meanwhile)."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while True:
            try:
                get(f"{self.base}/api/status")
                return
            except (urllib.error.URLError, ConnectionError):
                assert self.proc.poll() is None, f"job_cron web ended:\n{self.logged()}"
                assert time.monotonic() < deadline, f"job_cron web did not answer in {timeout} s"
                pause.wait(0.2)

    def logged(self) -> str:
        """Everything the process wrote to stderr so far."""
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, and the exit code once it has ended."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Make sure the process is gone (test teardown)."""
        reap(self.proc)
