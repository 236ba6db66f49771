"""`job_cron demo`: the first run against an embedded server (state kept, --reset, Ctrl-C) or a configured one."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobcron.workflows import Registry
from tests.processes import reap

pytestmark = pytest.mark.acceptance

REPO = Path(__file__).resolve().parents[2]


def demo_env(dsn: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOB_CRON_")}
    env.pop("POSTGRES_URL", None)
    env.pop("DATABASE_URL", None)
    env["PYTHONPATH"] = str(REPO)
    if dsn is not None:
        env["DATABASE_URL"] = dsn
    return env


def demo(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobcron", "demo", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def state_root() -> Iterator[Path]:
    """A folder for embedded state outside pytest's tmp tree.

    Run as root, the server runs as another OS user, and every pytest session resets its tmp root
    to mode 0700, which would lock that user out of a server in mid-test.
    """
    folder = Path(tempfile.mkdtemp(prefix="jobcron-demo-test-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    folder = tmp_path / "samples"
    folder.mkdir()
    (folder / "orders.csv").write_text("region,revenue\nNorth,10\nSouth,12\n")
    (folder / "tickets.jsonl").write_text('{"agent": "a", "hours": 3}\n')
    (folder / "README.md").write_text("not a sample\n")
    return folder


def test_demo_on_an_embedded_server(state_root: Path, samples: Path) -> None:
    state = state_root / "state"
    args = ("--job-type", "noop", "--samples", str(samples), "--state-dir", str(state))
    env = demo_env()

    first = demo(env, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "embedded PostgreSQL" in first.stdout and "(created," in first.stdout
    assert "running noop on orders.csv" in first.stdout
    assert "orders.csv: completed" in first.stdout and "tickets.jsonl: completed" in first.stdout
    assert "2/2 jobs completed" in first.stdout and "README" not in first.stdout

    # the state survives (same cluster, schema already there); keep running until Ctrl-C, which
    # stops the daemon and the server cleanly
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobcron", "demo", *args, "--keep-running"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            # each file's findings come as its job ends, before any Ctrl-C
            if "tickets.jsonl: completed" in line:
                break
        # drain stderr so the daemon never blocks on a full pipe
        threading.Thread(target=proc.stderr.read if proc.stderr else None, daemon=True).start()
        text = "".join(lines)
        assert "(reused," in text and "schema: up to date" in text and "daemon running as" in text
        assert "orders.csv: completed" in text
        # the server kept its port: the DATABASE_URL of the first run still works
        port = re.search(r"127\.0\.0\.1:(\d+)/jobcron", first.stdout)
        assert port and f"127.0.0.1:{port.group(1)}/jobcron" in text
        # --reset never pulls the state from under a running server
        busy = demo(env, *args, "--reset")
        assert busy.returncode == 1
        assert "is in use by another process" in busy.stderr
        # a second demo while this one runs says how to use the running server
        again = demo(env, *args)
        assert again.returncode == 1
        assert (
            f"export DATABASE_URL='postgresql://postgres@127.0.0.1:{port.group(1)}/jobcron'" in again.stderr
        )
        proc.send_signal(signal.SIGINT)
        out = proc.stdout.read()
        assert proc.wait(60) == 0
        # the job running at Ctrl-C finishes within the grace period
        assert "2/2 jobs completed" in out
    finally:
        reap(proc)
    assert not (state / "pgdata" / "postmaster.pid").exists()  # the server was stopped


def test_demo_uses_database_url_and_starts_nothing(dsn: str, tmp_path: Path, samples: Path) -> None:
    state = tmp_path / "state"
    args = ("--job-type", "noop", "--samples", str(samples), "--state-dir", str(state))
    done = demo(demo_env(dsn), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing embedded" in done.stdout and "2/2 jobs completed" in done.stdout
    assert not state.exists()

    wiped = demo(demo_env(dsn), *args, "--reset")
    assert wiped.returncode == 2
    assert wiped.stderr.startswith("job_cron: error: --reset only wipes the embedded demo state")


def test_demo_refuses_an_unknown_job_type(tmp_path: Path, samples: Path) -> None:
    done = demo(
        demo_env(), "--job-type", "nope", "--samples", str(samples), "--state-dir", str(tmp_path / "s")
    )
    assert done.returncode == 2
    assert "no workflow 'nope' is registered" in done.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
@pytest.mark.skipif("analysis" not in Registry({}).names(), reason="the analysis workflow is not available")
def test_demo_analyses_the_bundled_samples(state_root: Path) -> None:
    done = demo(demo_env(), "--state-dir", str(state_root / "state"), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.splitlines()[-2]
    completed, _, insights = summary.partition(" jobs completed, ")
    done_count, total = completed.split("/")
    assert done_count == total and int(total) >= 1
    assert int(insights.split()[0]) > 0
