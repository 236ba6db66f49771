"""scripts/start_job_cron.sh with real processes: dev, bg/status/stop, docker, prod into a temporary root."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.factories import insert_job
from tests.processes import reap

pytestmark = pytest.mark.acceptance

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "start_job_cron.sh"
Conn = psycopg.Connection[dict[str, Any]]


def script_env(tmp_path: Path, dsn: str | None, **extra: str) -> dict[str, str]:
    """The script's environment: this interpreter, pid files and logs under tmp_path, no stray settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOB_CRON_")}
    env.pop("POSTGRES_URL", None)
    env.pop("DATABASE_URL", None)
    env.update(
        JOBCRON_PYTHON=sys.executable,
        JOBCRON_RUN_DIR=str(tmp_path / "run"),
        JOBCRON_LOG_DIR=str(tmp_path / "logs"),
        JOBCRON_STOP_TIMEOUT="30",
        **extra,
    )
    if dsn is not None:
        env["DATABASE_URL"] = dsn
    return env


def run(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def statuses(conn: Conn) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) AS n FROM processing_jobs GROUP BY status").fetchall()
    return {r["status"]: r["n"] for r in rows}


def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck is not installed (apt-get install shellcheck)"
)
def test_shellcheck_is_clean() -> None:
    done = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dev_stops_after_max_jobs(dsn: str, conn: Conn, tmp_path: Path) -> None:
    for _ in range(3):
        insert_job(conn, job_type="noop")
    done = run(script_env(tmp_path, dsn), "dev", "--interval", "0.2", "--max-jobs", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert statuses(conn) == {"completed": 2, "pending": 1}
    # debug level, console renderer (not JSON)
    assert "job_claimed" in done.stderr and "max_jobs_reached" in done.stderr
    assert not done.stderr.lstrip().startswith("{")


def test_bg_status_stop_round_trip(dsn: str, conn: Conn, tmp_path: Path) -> None:
    env = script_env(tmp_path, dsn)
    try:
        # the `--daemon` of older start-up instructions is bg; a second, named instance is another worker on the same queue
        first = run(env, "dev", "--daemon", "--interval", "0.2")
        assert first.returncode == 0, first.stderr
        second = run(env, "bg", "--instance", "two", "--interval", "0.2")
        assert second.returncode == 0, second.stderr
        assert "already running" in run(env, "bg").stderr

        status = run(env, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "job_cron is running" in status.stdout and "job_cron (two) is running" in status.stdout
        assert "2 alive" in status.stdout  # `job_cron status` of the queue, both workers registered

        for _ in range(4):
            insert_job(conn, job_type="noop")
        wait_until(lambda: statuses(conn) == {"completed": 4})
        pids = [int((tmp_path / "run" / name).read_text()) for name in ("job_cron.pid", "job_cron-two.pid")]

        stop = run(env, "stop")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert stop.stdout.count("cleanly") == 2, stop.stdout
        for pid in pids:
            assert not _alive(pid)
        log = (tmp_path / "logs" / "job_cron-two.log").read_text().splitlines()
        assert json.loads(log[-1])["event"] == "worker_stopped"
        assert json.loads(log[-1])["worker_id"].endswith("-two")

        after = run(env, "status")
        assert after.returncode == 3 and "no job_cron started by this script is running" in after.stdout
        assert not list((tmp_path / "run").glob("*.pid"))
        assert run(env, "stop").returncode == 0  # stopping a stopped daemon is not an error
    finally:
        for pidfile in (tmp_path / "run").glob("*.pid"):
            _kill(int(pidfile.read_text()))


def test_bg_reports_a_daemon_that_dies_at_start(tmp_path: Path) -> None:
    env = script_env(tmp_path, "postgresql://postgres@127.0.0.1:1/nothing", JOB_CRON_LOG_LEVEL="verbose")
    done = run(env, "bg")
    assert done.returncode != 0
    # the daemon's own one-line error is shown, not just "it failed"
    assert "exited at start" in done.stderr and "logging.level" in done.stderr
    assert not list((tmp_path / "run").glob("*.pid"))


def test_docker_mode_execs_the_daemon(dsn: str, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(SCRIPT), "docker", "--interval", "0.2"],
        env=script_env(tmp_path, dsn),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = json.loads(proc.stderr.readline())  # JSON lines from the first one
        started = first
        while started.get("event") != "worker_started":
            started = json.loads(proc.stderr.readline())
        # exec: the script's pid is now the daemon's, so a container's SIGTERM reaches it directly
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"jobcron" in cmdline and b"run" in cmdline
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        reap(proc)


def test_prod_installs_into_a_prefix(tmp_path: Path) -> None:
    prefix = tmp_path / "root"
    env = script_env(tmp_path, "postgresql://app:s3cret-pw@db.internal:5432/app")
    done = run(env, "prod", "--prefix", str(prefix), "--skip-venv", "--workers", "3", "--venv", "/srv/jc")
    assert done.returncode == 0, done.stderr
    assert "s3cret-pw" not in done.stdout + done.stderr
    assert "systemctl was not called" in done.stdout
    assert "job_cron@1.service job_cron@2.service job_cron@3.service" in done.stdout

    units = prefix / "etc/systemd/system"
    single = (units / "job_cron.service").read_text()
    assert "ExecStart=/srv/jc/bin/job_cron run\n" in single and "/opt/jobcron" not in single
    assert (
        "ExecStart=/srv/jc/bin/job_cron run --worker-id %H-%i\n" in (units / "job_cron@.service").read_text()
    )
    env_file = prefix / "etc/job_cron/job_cron.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert "DATABASE_URL=postgresql://app:s3cret-pw@db.internal:5432/app\n" in env_file.read_text()
    config = json.loads((prefix / "etc/job_cron/config.json").read_text())
    assert "file_root" not in config["job_processing"]
    assert config["daemon"]["shutdown_grace_seconds"] == 30

    # a second install keeps the operator's env file and config
    env_file.write_text("DATABASE_URL=postgresql://edited/by-hand\n")
    again = run(
        script_env(tmp_path, None), "prod", "--prefix", str(prefix), "--skip-venv", "--venv", "/srv/jc"
    )
    assert again.returncode == 0 and "kept" in again.stdout
    assert env_file.read_text() == "DATABASE_URL=postgresql://edited/by-hand\n"

    if shutil.which("systemd-analyze"):
        # verify checks that the programs exist: stand-ins under the prefix
        for program in ("srv/jc/bin/job_cron", "bin/kill"):
            stub = prefix / program
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\n")
            stub.chmod(0o755)
        for unit in ("job_cron.service", "job_cron@2.service"):
            verify = subprocess.run(
                [
                    "systemd-analyze",
                    "verify",
                    f"--root={prefix}",
                    "--recursive-errors=no",
                    f"/etc/systemd/system/{unit}",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr


def test_unknown_mode_is_a_usage_error(tmp_path: Path) -> None:
    done = run(script_env(tmp_path, None), "sideways")
    assert done.returncode == 2 and "unknown mode 'sideways'" in done.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat_line = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return " Z " not in stat_line  # an exited daemon not reaped yet by PID 1 is gone


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
