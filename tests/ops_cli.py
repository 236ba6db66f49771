"""Run `job_cron` commands in-process against a test database, from a folder without a config.json."""

from __future__ import annotations

import contextlib
import json
import tempfile
from typing import Any

from click.testing import CliRunner, Result

from jobcron.cli import cli


def run(dsn: str, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Invoke the CLI; exceptions propagate (a traceback is a failure, never an answer)."""
    runner = CliRunner()
    with tempfile.TemporaryDirectory() as folder, contextlib.chdir(folder):
        return runner.invoke(
            cli,
            ["--log-format", "json", *args],
            env={"DATABASE_URL": dsn, "POSTGRES_URL": None, **(env or {})},
            input=input,
            catch_exceptions=False,
        )


def run_json(dsn: str, *args: str) -> Any:
    """Invoke a command with --json and parse its output (exit code 0 expected)."""
    result = run(dsn, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
