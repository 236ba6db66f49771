"""docs/pipelines.md, run as written: its workflows, config, receiver, shell steps and Python, with a real
daemon, a real receiver process and the `job_cron` command; the failure reaches the receiver signed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.acceptance.daemon import FAST, REPO, Daemon
from tests.processes import reap
from tests.webhook_receiver import free_port

pytestmark = pytest.mark.acceptance
DOC = (REPO / "docs" / "pipelines.md").read_text()
BLOCKS = dict(re.findall(r"<!-- pipeline: (\w+) -->\n```\w+\n(.*?)```", DOC, re.S))
SECRET = "0123456789abcdef0123456789abcdef"


def test_the_doc_has_the_blocks_this_test_runs() -> None:
    assert set(BLOCKS) == {"workflows", "config", "receiver", "cli", "python", "failure"}


def wait_for(
    conn: psycopg.Connection[dict[str, Any]], job_id: str, status: str, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute("SELECT * FROM processing_jobs WHERE id = %s", (job_id,)).fetchone()
        if row and row["status"] == status:
            return dict(row)
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not become {status}: {row and row['status']}")


def test_the_pipeline_of_the_doc(dsn: str, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "pipeline_jobs.py").write_text(BLOCKS["workflows"])
    config = json.loads(BLOCKS["config"].replace("8765", str(port)))
    config["daemon"] = FAST
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "data").mkdir()
    (tmp_path / "receiver.py").write_text(BLOCKS["receiver"].replace("8765", str(port)))
    env = {
        **os.environ,
        "JOBCRON_WEBHOOK_SECRET": SECRET,
        "DATABASE_URL": dsn,
        "JOB_CRON_CONFIG": str(tmp_path / "config.json"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("POSTGRES_URL", None)
    receiver = subprocess.Popen(
        [sys.executable, "receiver.py"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    heard: list[str] = []
    threading.Thread(target=lambda: heard.extend(iter(receiver.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    daemon = Daemon(
        dsn,
        tmp_path / "config.json",
        env={"JOBCRON_WEBHOOK_SECRET": SECRET, "PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}"},
    )
    try:
        daemon.wait_event("worker_started", timeout=30)
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            # the shell steps: the notify job waits behind the analysis, which waits behind the extract
            script = BLOCKS["cli"] + '\necho "ids $EXTRACT $ANALYSE $NOTIFY"\n'
            out = subprocess.run(
                ["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
            )
            assert out.returncode == 0, out.stderr
            extract, analyse, notify = re.findall(r"^ids (\S+) (\S+) (\S+)$", out.stdout, re.M)[0]
            assert "parents (1); waiting for 1" in out.stdout and f"{analyse} analysis waiting" in out.stdout
            assert re.search(r"status +waiting", out.stdout) and "waiting 2" in out.stdout
            done = wait_for(conn, notify, "completed")
            assert done["result"] == {"told": analyse}
            assert (tmp_path / "data" / "notified.txt").read_text() == f"report {analyse} is ready\n"
            analysed = wait_for(conn, analyse, "completed")
            assert analysed["started_at"] >= wait_for(conn, extract, "completed")["completed_at"]
            progress = conn.execute(
                "SELECT progress FROM processing_jobs WHERE id = %s", (extract,)
            ).fetchone()
            assert progress is not None and "rows written" in (progress["progress"] or {}).get("message", "")

            # the Python steps, in a process of their own
            python = subprocess.run(
                [sys.executable, "-c", f"url = {dsn!r}\n" + BLOCKS["python"]],
                cwd=tmp_path,
                env={**env, "PYTHONPATH": str(REPO)},
                capture_output=True,
                text=True,
                timeout=90,
            )
            assert python.returncode == 0, python.stderr
            assert python.stdout.startswith("completed {'told': ")

            # the failure: delivered to the receiver once, signed; the notify step cancelled with it
            failing = (
                BLOCKS["cli"].splitlines()[0] + "\n" + BLOCKS["failure"] + '\necho "ids $ANALYSE $NOTIFY"\n'
            )
            out = subprocess.run(
                ["bash", "-e", "-c", failing], cwd=tmp_path, env=env, capture_output=True, text=True
            )
            assert out.returncode == 0, out.stderr
            analyse, notify = re.findall(r"^ids (\S+) (\S+)$", out.stdout, re.M)[0]
            cancelled = wait_for(conn, notify, "cancelled")
            assert cancelled["error_message"] == f"cancelled: parent job {analyse} ended failed"
            deadline = time.monotonic() + 30
            while not heard and time.monotonic() < deadline:
                time.sleep(0.1)
            assert heard == ["valid job.failed analysis analysis: empty.csv has a header but no data rows\n"]
            delivery = conn.execute(
                "SELECT status, result FROM processing_jobs WHERE job_type = 'jobcron.webhook'"
            ).fetchall()
            assert [(d["status"], d["result"]["status"]) for d in delivery] == [("completed", 204)]
    finally:
        daemon.stop()
        receiver.terminate()
        reap(receiver)
    assert SECRET not in "\n".join(daemon.raw)
