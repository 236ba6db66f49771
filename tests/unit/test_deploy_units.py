"""The systemd units and the env file example: verified by systemd itself, and consistent with the daemon."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from jobcron.config import DaemonSettings, load_config

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "deploy" / "systemd"
ENV_EXAMPLE = REPO / "deploy" / "job_cron.env.example"
EXEC = "/opt/jobcron/bin/job_cron"
# exposure of `systemd-analyze security --offline=true` (0 = locked down, 10 = nothing restricted)
MAX_EXPOSURE = 2.0

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed on this machine"
)


def directives(unit: Path) -> dict[str, list[str]]:
    """Section.Key -> values, in order (systemd keys may repeat)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


def one(unit: Path, key: str) -> str:
    values = directives(unit)[key]
    assert len(values) == 1, f"{unit.name}: {key} set {len(values)} times"
    return values[0]


def seconds(value: str) -> float:
    """A systemd time span such as 45, 45s, 1min 30s."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts, value
    return sum(float(n) * units[u] for n, u in parts)


def fake_root(tmp_path: Path) -> Path:
    """A root with the units installed and stand-ins for the programs they run (verify checks those exist)."""
    root = tmp_path / "root"
    target = root / "etc/systemd/system"
    target.mkdir(parents=True)
    for unit in UNITS.glob("*.service"):
        shutil.copy(unit, target / unit.name)
    for program in (EXEC, "/bin/kill"):
        stub = root / program.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    return root


@needs_analyze
@pytest.mark.parametrize(
    "unit", ["job_cron.service", "job_cron@.service", "job_cron@2.service", "job_cron-web.service"]
)
def test_units_verify_clean(tmp_path: Path, unit: str) -> None:
    root = fake_root(tmp_path)
    done = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            f"--root={root}",
            "--recursive-errors=no",
            f"/etc/systemd/system/{unit}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify prints a warning (and may still exit 0) for an unknown key or a bad value
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done.stderr


@needs_analyze
def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    unit = root / "etc/systemd/system/job_cron.service"
    unit.write_text(unit.read_text().replace("KillMode=mixed", "KillMode=sometimes"))
    done = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "--recursive-errors=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "KillMode" in done.stderr or "kill mode" in done.stderr


@needs_analyze
@pytest.mark.parametrize("unit", ["job_cron.service", "job_cron@.service", "job_cron-web.service"])
def test_security_exposure_is_low(unit: str) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNITS / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match, done.stdout[-500:] + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout


@pytest.mark.parametrize("unit", ["job_cron.service", "job_cron@.service"])
def test_unit_matches_what_the_daemon_does(unit: str) -> None:
    path = UNITS / unit
    assert one(path, "Service.Type") == "notify"
    assert one(path, "Service.NotifyAccess") == "main"
    assert one(path, "Service.Restart") == "on-failure"
    # SIGTERM to the daemon only: it stops its own job child after the grace period
    assert one(path, "Service.KillMode") == "mixed"
    assert one(path, "Service.ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(path, "Service.EnvironmentFile") == "/etc/job_cron/job_cron.env"
    assert one(path, "Service.User") not in ("", "root", "0")
    assert one(path, "Service.ExecStart").split()[:2] == [EXEC, "run"]
    assert seconds(one(path, "Service.WatchdogSec")) >= 5
    # config errors (2) and an out-of-date schema (3) are not fixed by a restart
    assert set(one(path, "Service.RestartPreventExitStatus").split()) == {"2", "3"}


def test_stop_timeout_exceeds_the_shutdown_grace() -> None:
    grace = DaemonSettings().shutdown_grace_seconds
    for unit in ("job_cron.service", "job_cron@.service"):
        stop = seconds(one(UNITS / unit, "Service.TimeoutStopSec"))
        # the job's grace, then 2 s to terminate the job child, then putting the job back
        assert stop >= grace + 10, f"{unit}: TimeoutStopSec={stop} leaves no margin over grace {grace}"


def worker_id(unit: Path) -> str | None:
    """The worker id the unit gives the daemon, unexpanded: --worker-id beats JOB_CRON_WORKER_ID."""
    argv = one(unit, "Service.ExecStart").split()
    if "--worker-id" in argv:
        return argv[argv.index("--worker-id") + 1]
    env = dict(v.partition("=")[::2] for v in directives(unit).get("Service.Environment", []))
    return env.get("JOB_CRON_WORKER_ID")


@pytest.mark.parametrize("unit", ["job_cron.service", "job_cron@.service"])
def test_each_unit_gives_its_daemon_a_worker_id_that_survives_a_restart(unit: str) -> None:
    # a restart under the same id rescues the previous run's job at once (Worker.start); without one the
    # daemon picks host-pid-random and the job waits stale_after_seconds
    wid = worker_id(UNITS / unit)
    assert wid is not None, f"{unit} sets no worker id"
    # made of the host and the unit's own name only: no specifier that changes from one run to the next
    assert re.fullmatch(r"%H-%[Ni]", wid), wid


def test_template_differs_only_in_the_worker_identity() -> None:
    single = directives(UNITS / "job_cron.service")
    template = directives(UNITS / "job_cron@.service")
    assert template["Service.ExecStart"] == [f"{EXEC} run --worker-id %H-%i"]
    # the single unit passes its id through the environment, so the env file can override it; an
    # instance's id is on the command line, so the env file all instances share cannot give them one id
    assert single["Service.ExecStart"] == [f"{EXEC} run"]
    assert single["Service.Environment"] == [*template["Service.Environment"], "JOB_CRON_WORKER_ID=%H-%N"]
    assert "%i" in template["Unit.Description"][0]
    expected_differences = {
        "Unit.Description",
        "Service.Environment",
        "Service.ExecStart",
        "Service.SyslogIdentifier",
    }
    differing = {k for k in single.keys() | template.keys() if single.get(k) != template.get(k)}
    assert differing == expected_differences


def test_env_example_sets_only_known_keys() -> None:
    env: dict[str, str] = {}
    for raw in ENV_EXAMPLE.read_text().splitlines():
        # commented-out settings are suggestions: they must be valid too
        line = raw.lstrip("# ").strip()
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            env[match.group(1)] = match.group(2)
    assert "DATABASE_URL" in env and "JOB_CRON_DAEMON_LISTEN" in env
    env.pop("JOB_CRON_CONFIG")  # names a file that exists only on the target machine
    config = load_config(None, env)
    assert config.daemon.listen is False
    assert config.database.url == env["DATABASE_URL"]
    uncommented = [line for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"[A-Z]", line)]
    assert [line.split("=")[0] for line in uncommented] == ["DATABASE_URL"]


def test_the_web_unit_runs_the_web_command_with_the_daemon_s_environment() -> None:
    web = directives(UNITS / "job_cron-web.service")
    daemon = directives(UNITS / "job_cron.service")
    assert web["Service.ExecStart"] == [f"{EXEC} web --host 127.0.0.1 --port 8080"]
    for key in ("Service.EnvironmentFile", "Service.User", "Service.RestartPreventExitStatus"):
        assert web[key] == daemon[key], key
