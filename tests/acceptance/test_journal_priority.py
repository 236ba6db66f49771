"""A real `job_cron run` whose stderr is the journal, as systemd sets it up: JOURNAL_STREAM names the
stream's device:inode, and each line carries its sd-daemon(3) priority prefix so that
`journalctl -p warning` finds warnings. Anywhere else the lines are unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.daemon import REPO, write_config
from tests.factories import insert_job

pytestmark = pytest.mark.acceptance


def run_once(dsn: str, tmp_path: Path, journal_of: Path | None) -> list[str]:
    """`job_cron run --once` with stderr into a file; JOURNAL_STREAM names journal_of's device:inode."""
    config = write_config(tmp_path / "config.json", job_processing={"execution_mode": "inline"})
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        env = {**os.environ, "DATABASE_URL": dsn, "PYTHONPATH": str(REPO)}
        env.pop("POSTGRES_URL", None)
        env.pop("JOURNAL_STREAM", None)
        if journal_of is not None:
            st = os.stat(journal_of)
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        subprocess.run(
            [sys.executable, "-m", "jobcron", "--config", str(config), "run", "--once"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            timeout=60,
            check=True,
        )
    return log.read_text().splitlines()


def test_lines_to_the_journal_carry_their_priority(dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        insert_job(conn, job_type="noop")
        insert_job(conn, job_type="no-such-workflow")
    lines = run_once(dsn, tmp_path, journal_of=tmp_path / "stderr.log")
    assert lines and all(line[:3] in ("<6>", "<4>") for line in lines), lines
    by_event = {json.loads(line[3:])["event"]: line[:3] for line in lines}
    assert by_event["worker_started"] == "<6>"
    assert by_event["job_completed"] == "<6>"
    assert by_event["job_failed"] == "<4>"  # a warning: `journalctl -p warning` shows it


def test_lines_elsewhere_are_unchanged(dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        insert_job(conn, job_type="no-such-workflow")
    # the variable inherited by a process whose stderr went elsewhere must not add prefixes
    other = tmp_path / "elsewhere"
    other.write_text("")
    lines = run_once(dsn, tmp_path, journal_of=other)
    assert any(json.loads(line)["event"] == "job_failed" for line in lines), lines
    assert not any(line.startswith("<") for line in lines), lines
