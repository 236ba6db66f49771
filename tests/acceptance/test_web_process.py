"""`job_cron tokens` and a real `job_cron web` process: a token made on the command line opens the API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.acceptance.daemon import REPO
from tests.ops_cli import run

pytestmark = pytest.mark.acceptance
pytest.importorskip("fastapi", reason="the test extra installs the web stack")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(url: str, token: str | None = None) -> tuple[int, Any]:
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_tokens_are_shown_once_listed_without_secrets_and_revoked(dsn: str) -> None:
    made = run(dsn, "tokens", "create", "ops", "--role", "admin")
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("jc_") and len(token) > 40
    again = run(dsn, "tokens", "create", "ops")
    assert again.exit_code == 1 and "revoke it first" in again.output
    listed = run(dsn, "tokens", "list", "--json")
    assert token not in listed.output and json.loads(listed.stdout)[0]["name"] == "ops"
    assert run(dsn, "tokens", "create", "x", "--role", "root").exit_code == 2
    assert run(dsn, "tokens", "revoke", "ops").exit_code == 0
    assert run(dsn, "tokens", "revoke", "ops").exit_code == 1


def test_job_cron_web_serves_the_api_to_a_token(dsn: str) -> None:
    token = run(dsn, "tokens", "create", "ops", "--role", "viewer").stdout.strip().splitlines()[-1]
    port = free_port()
    env = {**os.environ, "DATABASE_URL": dsn, "PYTHONPATH": str(REPO)}
    env.pop("POSTGRES_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobcron", "web", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                code, body = get(f"{base}/api/status")
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "job_cron web did not answer in 30 s"
                time.sleep(0.2)
        assert code == 401 and "credentials needed" in body["error"]
        code, body = get(f"{base}/api/status", token)
        assert code == 200 and body["queue"]["pending_jobs"] == 0
        proc.send_signal(signal.SIGTERM)
        # a graceful stop: uvicorn finishes the requests, then ends by the signal it caught (which
        # systemd counts as a clean exit), or with 0
        assert proc.wait(15) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        logged = proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    assert token not in logged  # a secret never reaches the logs
