"""The chaos run: real daemons on a private PostgreSQL, killed, stopped and restarted while they work.

`ChaosRun(settings).run()` starts a private server (jobcron.dev.embedded.EmbeddedServer, its own port, in
a folder of its own), N `job_cron run` processes and an enqueuer, then for `seconds` a chaos loop:
SIGKILL or SIGTERM a random daemon and start it again (under the same --worker-id half the time, as
systemd does, else under a new one), cancel a random job now and then, and restart the server at
evenly spaced moments (alternately a clean `pg_ctl stop -m fast` and a SIGKILL of the postmaster,
i.e. a crash with recovery). Then it lets the daemons drain the queue, stops them and hands
everything it recorded to tests.chaos.check, which asserts the promises and computes the figures.

Workflows run inline on purpose: a SIGKILLed daemon takes its running job down with it at that
instant, so "a killed worker's job ended when its process died" is a fact the checker can use. (In
process mode the job runs in a child process that a SIGKILL of the daemon does not reach.)
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from jobcron import migrate
from jobcron.dev.embedded import EmbeddedServer

REPO = Path(__file__).resolve().parents[2]
Conn = psycopg.Connection[dict[str, Any]]


@dataclass
class ChaosSettings:
    """How big and how rough a chaos run is."""

    workdir: Path
    daemons: int = 4
    jobs: int = 5000
    seconds: float = 600.0
    server_restarts: int = 2
    users: int = 20
    user_limit: int = 2
    # seconds between two daemon faults (SIGKILL or SIGTERM), drawn uniformly
    fault_every: tuple[float, float] = (2.0, 6.0)
    cancel_every: float = 5.0
    drain_timeout: float = 300.0
    # heartbeats resume within a few seconds of a server restart; a job is rescued only after this
    stale_after_seconds: float = 15.0
    seed: int | None = None
    verbose: bool = True


@dataclass
class Proc:
    """One `job_cron run` process: when it started, the signals it got, when and how it ended."""

    pid: int
    slot: int
    worker_id: str
    log: Path
    started: float
    popen: subprocess.Popen[bytes]
    signals: list[tuple[str, float, float]] = field(default_factory=list)  # (name, mono, epoch)
    exited_mono: float | None = None
    exited_epoch: float | None = None
    returncode: int | None = None


@dataclass
class Recorded:
    """Everything the run observed, for the checker."""

    settings: ChaosSettings
    plan: dict[str, dict[str, Any]]
    procs: dict[int, Proc]
    events: list[dict[str, Any]]
    cancel_attempted: set[str]
    exec_log: Path
    dsn: str
    started_mono: float
    chaos_end_mono: float
    last_fault_mono: float
    last_fault_epoch: float
    backlog_at_last_fault: int
    drained_mono: float
    drained: bool
    finished_mono: float


def daemon_config(settings: ChaosSettings) -> dict[str, Any]:
    """The daemons' config.json: small timers so that rescues happen within the run."""
    return {
        "workflows": {"chaos": "tests.chaos.workflows:chaos"},
        "scheduler_settings": {
            "max_concurrent_jobs_per_user": settings.user_limit,
            "max_retries": 3,
            # keep every finished job: the checker reads them all at the end
            "cleanup_completed_jobs_days": 0,
        },
        "job_processing": {
            "execution_mode": "inline",
            "queue_priority": "priority",
            "single_job_per_user": True,
            "max_processing_time_minutes": 10,
        },
        "daemon": {
            "interval_seconds": 1,
            "heartbeat_interval_seconds": 0.5,
            "stale_after_seconds": settings.stale_after_seconds,
            "rescue_interval_seconds": 1,
            "worker_heartbeat_seconds": 1,
            "shutdown_grace_seconds": 3,
            "cancel_grace_seconds": 1,
        },
        "retry": {"in_process_attempts": 1, "durable_backoff_seconds": 0.5, "durable_backoff_max_seconds": 2},
        "logging": {"level": "info", "format": "json"},
    }


def make_plan(settings: ChaosSettings, rng: random.Random) -> list[dict[str, Any]]:
    """The jobs: mixed durations, users (one heavy), priorities and designed outcomes."""
    users = [f"u{i:02d}" for i in range(settings.users)]
    jobs = []
    for _ in range(settings.jobs):
        roll = rng.random()
        seconds = (
            rng.uniform(0.005, 0.05)
            if roll < 0.75
            else rng.uniform(0.1, 0.6)
            if roll < 0.95
            else rng.uniform(1.5, 4.0)
        )
        pick = rng.random()
        user = None if pick < 0.1 else users[0] if pick < 0.25 else rng.choice(users)
        design = rng.choices(
            ["never", "flaky", "always", "permanent", "unknown_type"], weights=[80, 8, 5, 5, 2]
        )[0]
        metadata: dict[str, Any] = {"seconds": round(seconds, 3), "fail": design}
        if design == "flaky":
            metadata["failures"] = rng.choice([1, 2])
        jobs.append(
            {
                "id": str(uuid.uuid4()),
                "job_type": "chaos_unregistered" if design == "unknown_type" else "chaos",
                "user_id": user,
                "priority": rng.randint(-3, 3),
                # a designed-to-succeed job must not run out of attempts because chaos killed it a few times
                "max_retries": 1 if design == "always" else 20,
                "metadata": metadata,
            }
        )
    return jobs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChaosRun:
    """Runs one chaos experiment and returns what it recorded."""

    def __init__(self, settings: ChaosSettings) -> None:
        self.s = settings
        self.rng = random.Random(settings.seed)
        self.workdir = settings.workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.exec_log = self.workdir / "executions.jsonl"
        self.events_path = self.workdir / "chaos.jsonl"
        self.config_path = self.workdir / "config.json"
        self.server = EmbeddedServer(self.workdir / "pg", port=_free_port())
        self.lock = threading.Lock()
        self.procs: dict[int, Proc] = {}
        self.slots: list[Proc | None] = [None] * settings.daemons
        self.busy: set[int] = set()
        self.generation = [0] * settings.daemons
        self.events: list[dict[str, Any]] = []
        self.cancel_attempted: set[str] = set()
        self.inserted: list[str] = []
        self.enqueue_done = threading.Event()
        self.actions: list[threading.Thread] = []
        self.t0 = time.monotonic()
        self.last_fault = (time.monotonic(), time.time())

    # --- bookkeeping ----------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Progress on stdout (script mode)."""
        if self.s.verbose:
            print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", flush=True)

    def event(self, kind: str, **data: Any) -> dict[str, Any]:
        """Append to the chaos log (memory and chaos.jsonl)."""
        item = {"kind": kind, "mono": time.monotonic(), "epoch": time.time(), **data}
        with self.lock:
            self.events.append(item)
            with self.events_path.open("a") as fh:
                fh.write(json.dumps(item) + "\n")
        return item

    def fault(self) -> None:
        """Note the moment of a fault (for 'time to drain after the last fault')."""
        with self.lock:
            self.last_fault = (time.monotonic(), time.time())

    # --- database -------------------------------------------------------------------------------------

    def connect(self, timeout: float = 60.0) -> Conn:
        """A connection, waiting through a server restart."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return psycopg.connect(
                    self.server.dsn, autocommit=True, row_factory=dict_row, connect_timeout=5
                )
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def query(self, sql: str, params: Any = None, timeout: float = 60.0) -> list[dict[str, Any]]:
        """One read-only query, retried across a server restart."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.connect(timeout) as conn:
                    return conn.execute(sql, params).fetchall()
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # --- daemons --------------------------------------------------------------------------------------

    def start_daemon(self, slot: int, *, same_id: bool) -> Proc:
        """Start (or restart) the daemon of a slot, under its stable id or a new one."""
        if not same_id:
            self.generation[slot] += 1
        worker_id = f"chaos-{slot}" + (f"-g{self.generation[slot]}" if self.generation[slot] else "")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JOB_CRON_", "PG"))}
        env.update(
            DATABASE_URL=self.server.dsn,
            PYTHONPATH=str(REPO),
            JOB_CRON_LOG_FORMAT="json",
            JOBCRON_CHAOS_EXEC_LOG=str(self.exec_log),
        )
        env.pop("POSTGRES_URL", None)
        log = self.workdir / "logs" / f"{worker_id}-{len(self.procs)}.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jobcron",
                    "--config",
                    str(self.config_path),
                    "run",
                    "--worker-id",
                    worker_id,
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        proc = Proc(popen.pid, slot, worker_id, log, time.monotonic(), popen)
        with self.lock:
            self.procs[popen.pid] = proc
            self.slots[slot] = proc
        threading.Thread(target=self._reap, args=(proc,), daemon=True).start()
        self.event("daemon_started", slot=slot, pid=proc.pid, worker_id=worker_id, same_id=same_id)
        return proc

    def _reap(self, proc: Proc) -> None:
        # a thread blocked in waitpid notes the exit within microseconds: the checker uses the time
        code = proc.popen.wait()
        proc.exited_mono, proc.exited_epoch, proc.returncode = time.monotonic(), time.time(), code
        self.event("daemon_exited", slot=proc.slot, pid=proc.pid, worker_id=proc.worker_id, returncode=code)

    def send(self, proc: Proc, sig: signal.Signals) -> None:
        """Signal a daemon and note it (before sending: the job it runs may end at once)."""
        proc.signals.append((sig.name, time.monotonic(), time.time()))
        self.event("signal", signal=sig.name, slot=proc.slot, pid=proc.pid, worker_id=proc.worker_id)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        self.fault()

    def _kill_and_restart(self, proc: Proc) -> None:
        try:
            self.send(proc, signal.SIGKILL)
            proc.popen.wait(30)
            time.sleep(self.rng.uniform(0.0, 1.5))
            self.start_daemon(proc.slot, same_id=self.rng.random() < 0.5)
        finally:
            with self.lock:
                self.busy.discard(proc.slot)

    def _stop_and_restart(self, proc: Proc) -> None:
        try:
            self.send(proc, signal.SIGTERM)
            try:
                proc.popen.wait(30)  # grace 3 s; a slow reconnect can add a few seconds
            except subprocess.TimeoutExpired:
                self.event("sigterm_ignored", slot=proc.slot, pid=proc.pid)
                self.send(proc, signal.SIGKILL)
                proc.popen.wait(30)
            time.sleep(self.rng.uniform(0.0, 1.0))
            self.start_daemon(proc.slot, same_id=self.rng.random() < 0.5)
        finally:
            with self.lock:
                self.busy.discard(proc.slot)

    def daemon_fault(self) -> None:
        """SIGKILL (60 %) or SIGTERM (40 %) a random idle-handed daemon, restarting it in the background."""
        with self.lock:
            candidates = [
                p for p in self.slots if p is not None and p.slot not in self.busy and p.popen.poll() is None
            ]
            if not candidates:
                return
            proc = self.rng.choice(candidates)
            self.busy.add(proc.slot)
        target = self._kill_and_restart if self.rng.random() < 0.6 else self._stop_and_restart
        thread = threading.Thread(target=target, args=(proc,), daemon=True)
        thread.start()
        self.actions.append(thread)

    def server_fault(self, n: int) -> None:
        """Restart the server: cleanly (even n) or by SIGKILL of the postmaster and crash recovery (odd n)."""
        kind = "server_restart" if n % 2 == 0 else "server_crash"
        began = self.event(kind + "_begin")
        self.fault()
        if kind == "server_restart":
            self.server.restart()
        else:
            self.server.kill()
            self.server.start()
        self.fault()
        self.event(kind, seconds=round(time.monotonic() - began["mono"], 3))
        self.say(f"{kind.replace('_', ' ')} done in {time.monotonic() - began['mono']:.1f}s")

    def cancel_one(self) -> None:
        """Cancel a random enqueued job through the operator function (pending: at once; running: via its daemon)."""
        from jobcron.admin import jobs as admin_jobs
        from jobcron.db import connect_dsn
        from jobcron.errors import JobCronError

        with self.lock:
            if not self.inserted:
                return
            job_id = self.rng.choice(self.inserted)
            self.cancel_attempted.add(
                job_id
            )  # before the call: a call cut by a restart may still have landed
        try:
            with connect_dsn(self.server.dsn) as conn:
                done = admin_jobs.cancel_job(conn, job_id, by="chaos")
            self.event("cancel", job_id=job_id, action=done["action"])
        except (JobCronError, psycopg.Error) as exc:
            self.event("cancel_refused", job_id=job_id, error=str(exc)[:120])

    # --- jobs -----------------------------------------------------------------------------------------

    def enqueue(self, plan: list[dict[str, Any]]) -> None:
        """Insert the plan over the chaos time (a quarter at once, the rest evenly), riding out restarts."""
        head = len(plan) // 4
        spread = self.s.seconds
        rest = len(plan) - head
        sent = 0
        conn: Conn | None = None
        while sent < len(plan):
            if sent < head:
                due = head
            else:
                elapsed = time.monotonic() - self.chaos_start
                due = head + min(rest, int(rest * elapsed / spread) + 1)
            batch = plan[sent:due]
            if not batch:
                time.sleep(0.1)
                continue
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = self.connect()
                # explicit ids: a batch whose commit we did not see is simply sent again
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO processing_jobs (id, job_type, user_id, priority, max_retries, metadata)"
                        " VALUES (%(id)s, %(job_type)s, %(user_id)s, %(priority)s, %(max_retries)s, %(metadata)s)"
                        " ON CONFLICT (id) DO NOTHING",
                        [{**j, "metadata": Jsonb(j["metadata"])} for j in batch],
                    )
            except psycopg.OperationalError:
                conn = None
                time.sleep(0.2)
                continue
            with self.lock:
                self.inserted.extend(j["id"] for j in batch)
            sent = due
            time.sleep(0.1)
        if conn is not None:
            conn.close()
        self.enqueue_done.set()

    def unfinished(self) -> int:
        """Jobs not yet in a final status (pending, processing) or not yet inserted."""
        rows = self.query(
            "SELECT count(*) AS n FROM processing_jobs WHERE status IN ('pending', 'processing')"
        )
        with self.lock:
            missing = self.s.jobs - len(self.inserted)
        return int(rows[0]["n"]) + missing

    # --- the run --------------------------------------------------------------------------------------

    def __enter__(self) -> ChaosRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill any daemon still running and stop the server (after the checker has read the database)."""
        for proc in list(self.procs.values()):
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait(10)
        self.server.stop()

    def run(self) -> Recorded:
        """Set up, run the chaos, drain, stop the daemons; return what was recorded (the server keeps running)."""
        self.t0 = time.monotonic()
        self.server.start()
        self.say(f"private PostgreSQL on port {self.server.port} in {self.workdir / 'pg'}")
        with psycopg.connect(self.server.dsn, autocommit=True, row_factory=dict_row) as conn:
            migrate.migrate(conn)
        self.config_path.write_text(json.dumps(daemon_config(self.s), indent=2))
        return self._run(make_plan(self.s, self.rng))

    def _run(self, plan: list[dict[str, Any]]) -> Recorded:
        s = self.s
        for slot in range(s.daemons):
            self.start_daemon(slot, same_id=True)
        deadline = time.monotonic() + 90
        while self.query("SELECT count(*) AS n FROM job_workers WHERE state = 'idle'")[0]["n"] < s.daemons:
            if time.monotonic() > deadline:
                raise RuntimeError(f"daemons not ready in 90s; see {self.workdir / 'logs'}")
            time.sleep(0.2)
        self.say(f"{s.daemons} daemons ready; chaos for {s.seconds:g}s over {s.jobs} jobs")
        self.chaos_start = time.monotonic()
        enqueuer = threading.Thread(target=self.enqueue, args=(plan,), daemon=True)
        enqueuer.start()
        server_at = [
            self.chaos_start + s.seconds * (k + 1) / (s.server_restarts + 1) for k in range(s.server_restarts)
        ]
        next_fault = self.chaos_start + self.rng.uniform(*s.fault_every)
        next_cancel = self.chaos_start + self.rng.uniform(0.5, 1.5) * s.cancel_every
        next_report = self.chaos_start + 30
        end = self.chaos_start + s.seconds
        restarts = 0
        while (now := time.monotonic()) < end:
            if server_at and now >= server_at[0]:
                server_at.pop(0)
                self.server_fault(restarts)
                restarts += 1
            elif now >= next_fault:
                self.daemon_fault()
                next_fault = now + self.rng.uniform(*s.fault_every)
            elif now >= next_cancel:
                self.cancel_one()
                next_cancel = now + self.rng.uniform(0.5, 1.5) * s.cancel_every
            elif now >= next_report:
                self.say(f"{self.unfinished()} job(s) unfinished, {self._counts()}")
                next_report = now + 30
            time.sleep(0.05)
        chaos_end = time.monotonic()
        for thread in self.actions:
            thread.join(60)
        with self.lock:
            last_fault = self.last_fault
        backlog = self.unfinished()
        self.say(f"chaos over ({self._counts()}); {backlog} job(s) unfinished at the last fault; draining")
        enqueuer.join(120)
        drain_deadline = time.monotonic() + s.drain_timeout
        drained = False
        while time.monotonic() < drain_deadline:
            if self.enqueue_done.is_set() and self.unfinished() == 0:
                drained = True
                break
            time.sleep(0.1)
        drained_mono = time.monotonic()
        self.say("drained" if drained else f"NOT drained after {s.drain_timeout:g}s")
        for proc in [p for p in self.slots if p is not None]:
            if proc.popen.poll() is None:
                # the end of the run, not a fault: noted apart from the chaos signals
                proc.signals.append(("final_SIGTERM", time.monotonic(), time.time()))
                self.event("final_stop", slot=proc.slot, pid=proc.pid)
                proc.popen.send_signal(signal.SIGTERM)
        for proc in [p for p in self.slots if p is not None]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(30)
        time.sleep(0.2)  # let the reaper threads note the exits
        return Recorded(
            settings=s,
            plan={j["id"]: j for j in plan},
            procs=self.procs,
            events=self.events,
            cancel_attempted=self.cancel_attempted,
            exec_log=self.exec_log,
            dsn=self.server.dsn,
            started_mono=self.chaos_start,
            chaos_end_mono=chaos_end,
            last_fault_mono=last_fault[0],
            last_fault_epoch=last_fault[1],
            backlog_at_last_fault=backlog,
            drained_mono=drained_mono,
            drained=drained,
            finished_mono=time.monotonic(),
        )

    def _counts(self) -> str:
        kinds = [e["kind"] if e["kind"] != "signal" else e["signal"] for e in self.events]
        return (
            f"{kinds.count('SIGKILL')} SIGKILL, {kinds.count('SIGTERM')} SIGTERM, "
            f"{kinds.count('server_restart') + kinds.count('server_crash')} server restart(s)"
        )
