"""The container's install steps without a container engine: the wheel installed in a fresh venv by a user
who is not root, its entry point, its deploy files, and the image's HEALTHCHECK command against a real
daemon. What only a container engine can check (the image build, compose) is listed in docs/deployment.md."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.acceptance.daemon import REPO
from tests.processes import reap
from tests.roles import Roles
from tests.webhook_receiver import free_port

pytestmark = pytest.mark.acceptance
NOBODY = 65534


def as_user() -> list[str]:
    """Run as nobody when this test runs as root, as the image runs as a user of its own."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop to an unprivileged user")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK CMD of the Dockerfile, as the image runs it."""
    text = (REPO / "deploy" / "docker" / "Dockerfile").read_text()
    match = re.search(r"HEALTHCHECK [^\n]*\\\n\s*CMD (\[.*\])", text)
    assert match, "the Dockerfile has a HEALTHCHECK CMD [...]"
    return list(json.loads(match.group(1)))


def base_python() -> str:
    """A Python 3.11+ outside any venv that an unprivileged user can run (root's own may sit in /root)."""
    for candidate in ("/usr/bin/python3", shutil.which("python3") or "", sys.executable):
        if candidate and os.access(candidate, os.X_OK):
            ok = subprocess.run(
                [*as_user(), candidate, "-c", "import sys, venv; sys.exit(sys.version_info < (3, 11))"],
                capture_output=True,
            )
            if ok.returncode == 0:
                return candidate
    pytest.skip("no Python 3.11+ that an unprivileged user may run")


@pytest.fixture
def tmp_path(tmp_path: Path) -> Iterator[Path]:
    """A folder outside pytest's (which is private to root): the unprivileged user works in it."""
    folder = Path(tempfile.mkdtemp(prefix="jobcron-wheel-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_wheel_in_a_fresh_venv_runs_installs_its_units_and_passes_the_healthcheck(
    dsn: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("jobcron-*.whl")
    for path in (tmp_path, home, wheels):
        path.chmod(0o777)
    wheel.chmod(0o644)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "PIP_CACHE_DIR": str(home / "pip-cache"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    venv = home / "venv"
    user = as_user()

    def sh(
        *cmd: str, timeout: float = 300, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*user, *cmd],
            env={**env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=home,
        )

    made = sh(base_python(), "-m", "venv", str(venv))
    assert made.returncode == 0, made.stderr
    installed = sh(str(venv / "bin/pip"), "install", "--quiet", f"{wheel}[metrics]", timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    job_cron = str(venv / "bin/job_cron")
    assert sh(job_cron, "--help").returncode == 0

    # the deploy files, from the installed package
    stage = home / "stage"
    done = sh(job_cron, "deploy", "install", "--prefix", str(stage), extra={"DATABASE_URL": dsn})
    assert done.returncode == 0, done.stderr
    unit = (stage / "etc/systemd/system/job_cron.service").read_text()
    assert f"ExecStart={venv}/bin/job_cron run\n" in unit
    env_file = stage / "etc/job_cron/job_cron.env"
    assert env_file.stat().st_mode & 0o777 == 0o600 and f"DATABASE_URL={dsn}\n" in env_file.read_text()
    roles = sh(job_cron, "deploy", "show", "roles")
    assert roles.returncode == 0 and roles.stdout == (REPO / "deploy/sql/roles.sql").read_text()
    assert (
        sh(job_cron, "deploy", "show", "dockerfile").stdout == (REPO / "deploy/docker/Dockerfile").read_text()
    )

    # the entry point against a real database, and the image's health check against the running daemon
    url = make_conninfo(dsn)
    assert conninfo_to_dict(url)["dbname"]
    migrated = sh(job_cron, "migrate", extra={"DATABASE_URL": url})
    assert migrated.returncode == 0, migrated.stderr
    # the least-privilege roles, from the installed package, in one command (roles are cluster-wide:
    # names of this test's own, dropped at the end)
    roles = Roles(dsn)
    try:
        applied = sh(
            job_cron,
            "deploy",
            "roles",
            "--worker-role",
            roles.names["worker"],
            "--enqueuer-role",
            roles.names["enqueuer"],
            extra={"DATABASE_URL": url},
        )
        assert applied.returncode == 0, applied.stderr
        assert f"roles applied: {roles.names['worker']}" in applied.stdout
        with psycopg.connect(dsn) as check:
            granted = check.execute(
                "SELECT has_table_privilege(%s, 'processing_jobs', 'UPDATE'),"
                " has_table_privilege(%s, 'processing_jobs', 'UPDATE')",
                (roles.names["worker"], roles.names["enqueuer"]),
            ).fetchone()
        assert granted == (True, False)
    finally:
        roles.drop()
    port = free_port()
    healthcheck = [str(venv / "bin/python") if c == "python" else c for c in healthcheck_command()]
    healthcheck = [c.replace("8081", str(port)) for c in healthcheck]
    daemon = subprocess.Popen(
        [*user, job_cron, "run", "--health-port", str(port)],
        env={**env, "DATABASE_URL": url, "JOB_CRON_LOG_FORMAT": "json"},
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            probe = sh(*healthcheck, timeout=10)
            if probe.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert probe.returncode == 0, probe.stderr[-1000:]
    finally:
        daemon.terminate()
        assert daemon.wait(30) == 0
        reap(daemon)
    # and the same check fails when nothing answers
    assert sh(*healthcheck, timeout=10).returncode != 0
