"""`job_cron tokens` and a real `job_cron web` process: a token made on the command line opens the API."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.acceptance.web import WebServer, get
from tests.ops_cli import run

pytestmark = pytest.mark.acceptance
pytest.importorskip("fastapi", reason="the test extra installs the web stack")


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


def test_job_cron_web_serves_the_api_to_a_token(dsn: str, tmp_path: Path) -> None:
    token = run(dsn, "tokens", "create", "ops", "--role", "viewer").stdout.strip().splitlines()[-1]
    web = WebServer(dsn, tmp_path / "web.log")
    try:
        code, body = get(f"{web.base}/api/status")
        assert code == 401 and "credentials needed" in body["error"]
        code, body = get(f"{web.base}/api/status", token)
        assert code == 200 and body["queue"]["pending_jobs"] == 0
        # a graceful stop: uvicorn finishes the requests, then ends by the signal it caught (which
        # systemd counts as a clean exit), or with 0
        assert web.terminate() in (0, -signal.SIGTERM)
    finally:
        web.stop()
    assert token not in web.logged()  # a secret never reaches the logs
