"""The systemd units under a real systemd: READY, STATUS, reload, stop, crash and watchdog restarts, instances.

A private systemd (tests/systemd_live.py) boots on an overlay of this machine's root, and
`scripts/start_job_cron.sh prod` installs the units as shipped, with a venv, the env file and
config.json, against a database of the test server. Two settings are shortened to keep the run
short, the way an operator would change them: the env file sets the shutdown grace to
GRACE_SECONDS, and one test sets WatchdogSec=WATCHDOG_SECONDS in a drop-in. The tests run in file
order on one systemd; each starts from the units it needs and puts back what it changed.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from tests.factories import insert_job, job
from tests.systemd_live import LiveSystemd, unavailable

pytestmark = [pytest.mark.acceptance, pytest.mark.systemd, pytest.mark.timeout(240)]
Conn = psycopg.Connection[dict[str, Any]]
T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
UNIT = "job_cron.service"
INSTANCES = ("job_cron@1.service", "job_cron@2.service")
ETC = "/etc/job_cron"
DROPINS = "/etc/systemd/system"
GRACE_SECONDS = 6
WATCHDOG_SECONDS = 6
# the daemon's default, left as shipped: a rescue sooner than this is the rescue at start
STALE_AFTER_SECONDS = 60
RESTART_SECONDS = 5  # RestartSec of the units
TIMEOUT_STOP_SECONDS = 45  # TimeoutStopSec of the units


def url(dsn: str, dbname: str, port: int | None = None) -> str:
    """A postgresql:// URL for dbname on the server of dsn (the env file is also sourced by sh)."""
    p = conninfo_to_dict(dsn)
    host = str(p.get("host") or "127.0.0.1")
    password = f":{quote(str(p['password']), safe='')}" if p.get("password") else ""
    user = quote(str(p.get("user") or "postgres"), safe="")
    return f"postgresql://{user}{password}@{host}:{port or p.get('port') or 5432}/{quote(dbname, safe='')}"


@pytest.fixture(scope="module")
def databases(pg_admin_dsn: str) -> Iterator[dict[str, str]]:
    """Two empty databases: the queue the units serve, and one that is never migrated."""
    names = {role: f"jobcron_live_{role}_{uuid.uuid4().hex[:8]}" for role in ("queue", "unmigrated")}
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        for name in names.values():
            admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {role: url(pg_admin_dsn, name) for role, name in names.items()}
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            for name in names.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def booted() -> Iterator[LiveSystemd]:
    """A private systemd, booted."""
    reason = unavailable()
    if reason:
        pytest.skip(f"no live systemd on this machine: {reason}")
    live = LiveSystemd(REPO)
    try:
        live.boot()
        yield live
    finally:
        live.shutdown()


@pytest.fixture(scope="module")
def install_log(booted: LiveSystemd, databases: dict[str, str]) -> str:
    """`start_job_cron.sh prod` run inside, as the docs say; then a short grace in the env file."""
    done = booted.run(
        "sh",
        "-c",
        "cd /srv/jobcron && scripts/start_job_cron.sh prod",
        env={"DATABASE_URL": databases["queue"]},
    )
    env = booted.path(f"{ETC}/job_cron.env")
    env.write_text(env.read_text() + f"JOB_CRON_DAEMON_SHUTDOWN_GRACE_SECONDS={GRACE_SECONDS}\n")
    booted.systemctl("restart", UNIT)
    return done.stdout + done.stderr


@pytest.fixture
def sd(booted: LiveSystemd, install_log: str) -> LiveSystemd:
    """The private systemd with the units installed and job_cron.service running."""
    return booted


@pytest.fixture(scope="module")
def db(databases: dict[str, str]) -> Iterator[Conn]:
    """A connection to the queue the units serve."""
    with psycopg.connect(databases["queue"], autocommit=True, row_factory=dict_row) as conn:
        yield conn


def wait_for(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """The first true value of probe(), polled until timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last: {value!r})")
        time.sleep(0.2)


def only_running(sd: LiveSystemd, *units: str) -> None:
    """These units active, every other job_cron unit stopped."""
    others = [u for u in (UNIT, *INSTANCES) if u not in units]
    sd.systemctl("stop", *others)
    sd.systemctl("start", *units)
    for unit in units:
        assert sd.prop(unit, "ActiveState") == "active", sd.show(unit)


def enqueue(db: Conn, job_type: str = "sleep", seconds: float | None = None, user: str | None = None) -> str:
    metadata = {} if seconds is None else {"seconds": seconds}
    return insert_job(db, job_type=job_type, metadata=metadata, user_id=user)


def wait_job(db: Conn, job_id: str, timeout: float = 30, **want: Any) -> dict[str, Any]:
    def matches() -> dict[str, Any] | None:
        row = job(db, job_id)
        return row if all(row[k] == v for k, v in want.items()) else None

    return wait_for(f"job {job_id} with {want}", matches, timeout)


def events(sd: LiveSystemd, unit: str, name: str) -> list[dict[str, Any]]:
    """The daemon's JSON log lines of one event, from the unit's journal."""
    found = []
    for entry in sd.journal(unit):
        message = entry.get("MESSAGE")
        if isinstance(message, str) and message.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                line = json.loads(message)
                if line.get("event") == name:
                    found.append(line)
    return found


def drop_in(sd: LiveSystemd, unit: str, name: str, text: str) -> None:
    sd.write(f"{DROPINS}/{unit}.d/{name}.conf", f"[Service]\n{text}\n")
    sd.systemctl("daemon-reload")


def remove_drop_in(sd: LiveSystemd, unit: str, name: str) -> None:
    sd.path(f"{DROPINS}/{unit}.d/{name}.conf").unlink(missing_ok=True)
    sd.systemctl("daemon-reload")


class Relay:
    """A TCP port that refuses connections until open(), then forwards each one to the database server."""

    def __init__(self, dsn: str) -> None:
        parts = conninfo_to_dict(dsn)
        self.target = (str(parts.get("host") or "127.0.0.1"), int(parts.get("port") or 5432))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._server: socket.socket | None = None
        self._relayed: list[socket.socket] = []  # closed by close(), whether their pumps ended or not

    def open(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for sock in self._relayed:
            sock.close()

    def _accept(self, server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = server.accept()
                upstream = socket.create_connection(self.target)
                self._relayed += [client, upstream]
                for src, dst in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def test_prod_installs_the_units_and_the_daemon_runs_idle_under_a_stable_worker_id(
    sd: LiveSystemd, install_log: str, db: Conn
) -> None:
    log = install_log
    assert (
        "installed /etc/systemd/system/job_cron.service" in log
        and "installing jobcron into /opt/jobcron" in log
    )
    state = sd.show(UNIT, "ActiveState", "SubState", "StatusText", "ExecMainStartTimestampMonotonic")
    assert (state["ActiveState"], state["SubState"], state["StatusText"]) == ("active", "running", "idle"), (
        state
    )
    host = sd.run("hostname").stdout.strip()
    # JOB_CRON_WORKER_ID=%H-%N: the same id after every restart of the unit
    workers = db.execute("SELECT id, state FROM job_workers").fetchall()
    assert workers == [{"id": f"{host}-job_cron", "state": "idle"}]


def test_ready_comes_only_once_the_database_answers(sd: LiveSystemd, db: Conn, pg_admin_dsn: str) -> None:
    relay = Relay(pg_admin_dsn)
    queue = db.info.dbname
    sd.systemctl("stop", UNIT, *INSTANCES)
    sd.write(f"{ETC}/relay.env", f"DATABASE_URL={url(pg_admin_dsn, queue, relay.port)}\n", 0o600)
    # a second EnvironmentFile: its DATABASE_URL wins over the first one's
    drop_in(sd, UNIT, "relay", f"EnvironmentFile={ETC}/relay.env")
    try:
        sd.systemctl("start", "--no-block", UNIT)
        wait_for("Status: db unavailable", lambda: sd.prop(UNIT, "StatusText") == "db unavailable", 20)
        time.sleep(2)
        state = sd.show(UNIT, "ActiveState", "SubState")
        assert (state["ActiveState"], state["SubState"]) == ("activating", "start"), state
        opened = time.monotonic()
        relay.open()
        wait_for("active once the database answers", lambda: sd.prop(UNIT, "ActiveState") == "active", 20)
        # systemd's monotonic timestamps and time.monotonic() read the same clock
        active_at = int(sd.prop(UNIT, "ActiveEnterTimestampMonotonic")) / 1e6
        assert active_at >= opened
        assert sd.prop(UNIT, "StatusText") == "idle"
    finally:
        sd.systemctl("stop", UNIT)
        relay.close()
        remove_drop_in(sd, UNIT, "relay")
    only_running(sd, UNIT)


def test_status_names_the_running_job_and_reload_rereads_the_config_in_place(
    sd: LiveSystemd, db: Conn
) -> None:
    only_running(sd, UNIT)
    job_id = enqueue(db, seconds=6)
    wait_for(
        "Status: running job", lambda: sd.prop(UNIT, "StatusText") == f"running job {job_id} (sleep)", 20
    )
    pid = sd.prop(UNIT, "MainPID")
    config = sd.path(f"{ETC}/config.json")
    shipped = config.read_text()
    edited = json.loads(shipped)
    edited.setdefault("scheduler_settings", {})["max_retries"] = 7
    config.write_text(json.dumps(edited))
    try:
        sd.systemctl("reload", UNIT)
        reloaded = wait_for("config_reloaded in the journal", lambda: events(sd, UNIT, "config_reloaded"), 15)
        assert reloaded[-1]["config"]["scheduler_settings"]["max_retries"] == 7
        assert sd.show(UNIT, "ActiveState", "MainPID") == {"ActiveState": "active", "MainPID": pid}
        row = wait_job(db, job_id, status="completed")
        assert row["attempts"] == 1  # the job ran on across the reload
    finally:
        config.write_text(shipped)
    sd.systemctl("reload", UNIT)


def test_stop_during_a_job_lets_it_finish_and_exits_0(sd: LiveSystemd, db: Conn) -> None:
    only_running(sd, UNIT)
    job_id = enqueue(db, seconds=3)
    wait_job(db, job_id, 20, status="processing")
    began = time.monotonic()
    sd.systemctl("stop", UNIT)
    took = time.monotonic() - began
    assert job(db, job_id)["status"] == "completed"
    state = sd.show(UNIT, "Result", "ExecMainStatus")
    assert state == {"Result": "success", "ExecMainStatus": "0"}, state
    assert took < GRACE_SECONDS


def test_a_job_longer_than_the_grace_is_put_back_uncharged_and_the_stop_exits_0(
    sd: LiveSystemd, db: Conn
) -> None:
    only_running(sd, UNIT)
    job_id = enqueue(db, seconds=300)
    wait_job(db, job_id, 20, status="processing")
    began = time.monotonic()
    try:
        sd.systemctl("stop", UNIT)
        took = time.monotonic() - began
        row = job(db, job_id)
        assert (row["status"], row["attempts"], row["retry_count"]) == ("pending", 0, 0), row
        assert "interrupted" in row["error_message"]
        state = sd.show(UNIT, "Result", "ExecMainStatus")
        assert (state["Result"], state["ExecMainStatus"]) == ("success", "0"), state
        # the grace, then the job child stopped and the job put back: well before systemd's SIGKILL
        assert GRACE_SECONDS <= took < TIMEOUT_STOP_SECONDS - 10, took
    finally:
        db.execute("DELETE FROM processing_jobs WHERE id = %s", (job_id,))


def test_a_killed_daemon_is_restarted_and_rescues_its_job_at_once(sd: LiveSystemd, db: Conn) -> None:
    only_running(sd, UNIT)
    job_id = enqueue(db, seconds=8)
    worker = wait_job(db, job_id, 20, status="processing")["locked_by"]
    before = sd.show(UNIT, "MainPID", "NRestarts")
    killed = time.monotonic()
    sd.systemctl("kill", "--kill-who=main", "--signal=SIGKILL", UNIT)
    # the restarted daemon, under the same worker id, takes the job back at start (charged: attempt 2)
    row = wait_job(db, job_id, STALE_AFTER_SECONDS / 2, attempts=2)
    rescued_after = time.monotonic() - killed
    assert RESTART_SECONDS <= rescued_after < STALE_AFTER_SECONDS / 2
    assert row["locked_by"] == worker
    after = sd.show(UNIT, "MainPID", "NRestarts", "ActiveState")
    assert after["MainPID"] != before["MainPID"] and int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    assert any(job_id in e["job_ids"] for e in events(sd, UNIT, "jobs_rescued_at_start"))
    done = wait_job(db, job_id, 30, status="completed")
    assert done["errors"][-1]["type"] == "WorkerLost"


def test_the_watchdog_kills_a_hung_daemon_and_systemd_starts_it_again(sd: LiveSystemd) -> None:
    sd.systemctl("stop", *INSTANCES)
    drop_in(sd, UNIT, "watchdog", f"WatchdogSec={WATCHDOG_SECONDS}")
    try:
        sd.systemctl("restart", UNIT)
        before = sd.show(UNIT, "MainPID", "NRestarts")
        # idle for longer than WatchdogSec: the idle loop keeps pinging
        time.sleep(WATCHDOG_SECONDS * 1.5)
        assert sd.show(UNIT, "MainPID", "NRestarts") == before
        sd.run("kill", "-STOP", before["MainPID"])
        wait_for(
            "a new daemon after the watchdog kill",
            lambda: sd.prop(UNIT, "MainPID") not in ("0", before["MainPID"]),
            WATCHDOG_SECONDS + RESTART_SECONDS + 20,
        )
        messages = [str(e.get("MESSAGE")) for e in sd.journal(UNIT)]
        assert any(f"Watchdog timeout (limit {WATCHDOG_SECONDS}s)" in m for m in messages), messages[-10:]
        wait_for("active again", lambda: sd.prop(UNIT, "ActiveState") == "active", 20)
        assert int(sd.prop(UNIT, "NRestarts")) == int(before["NRestarts"]) + 1
    finally:
        remove_drop_in(sd, UNIT, "watchdog")
    sd.systemctl("restart", UNIT)


def test_two_template_instances_run_jobs_side_by_side_and_a_killed_one_rescues_its_job_at_once(
    sd: LiveSystemd, db: Conn
) -> None:
    sd.systemctl("stop", UNIT)
    sd.systemctl("enable", "--now", *INSTANCES)
    try:
        host = sd.run("hostname").stdout.strip()
        a, b = enqueue(db, seconds=4, user="ua"), enqueue(db, seconds=4, user="ub")
        holders = {wait_job(db, j, 20, status="processing")["locked_by"] for j in (a, b)}
        assert holders == {f"{host}-1", f"{host}-2"}
        for j in (a, b):
            wait_job(db, j, 20, status="completed")
        c = enqueue(db, seconds=6, user="uc")
        worker = wait_job(db, c, 20, status="processing")["locked_by"]
        instance = f"job_cron@{worker.rsplit('-', 1)[1]}.service"
        killed = time.monotonic()
        sd.systemctl("kill", "--kill-who=main", "--signal=SIGKILL", instance)
        # put back by the restarted instance at its start; either instance may then claim it
        wait_job(db, c, STALE_AFTER_SECONDS / 2, attempts=2)
        assert time.monotonic() - killed < STALE_AFTER_SECONDS / 2
        assert any(c in e["job_ids"] for e in events(sd, instance, "jobs_rescued_at_start"))
        wait_job(db, c, 30, status="completed")
    finally:
        sd.systemctl("disable", "--now", *INSTANCES)


def test_exit_codes_2_and_3_fail_the_unit_instead_of_restarting_it(
    sd: LiveSystemd, databases: dict[str, str]
) -> None:
    sd.systemctl("stop", UNIT, *INSTANCES)
    config_error, old_schema = INSTANCES
    drop_in(sd, config_error, "bad", "Environment=JOB_CRON_DAEMON_STALE_AFTER_SECONDS=-1")
    sd.write(f"{ETC}/unmigrated.env", f"DATABASE_URL={databases['unmigrated']}\n", 0o600)
    drop_in(sd, old_schema, "unmigrated", f"EnvironmentFile={ETC}/unmigrated.env")
    try:
        sd.systemctl("start", "--no-block", config_error, old_schema)
        for unit in (config_error, old_schema):
            wait_for(f"{unit} ended", lambda u=unit: sd.prop(u, "ActiveState") == "failed", 30)
        # a restart would come RestartSec after the exit: wait past it
        time.sleep(RESTART_SECONDS + 2)
        for unit, code in ((config_error, "2"), (old_schema, "3")):
            state = sd.show(unit, "ActiveState", "Result", "ExecMainStatus", "NRestarts")
            assert state == {
                "ActiveState": "failed",
                "Result": "exit-code",
                "ExecMainStatus": code,
                "NRestarts": "0",
            }, (unit, state)
        said = {unit: " ".join(str(e.get("MESSAGE")) for e in sd.journal(unit)) for unit in INSTANCES}
        assert "stale_after_seconds" in said[config_error]
        assert "job_cron migrate" in said[old_schema]
    finally:
        remove_drop_in(sd, config_error, "bad")
        remove_drop_in(sd, old_schema, "unmigrated")
        sd.systemctl("reset-failed", *INSTANCES, check=False)
