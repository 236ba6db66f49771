"""The web process (`job_cron web`) on a big table: page and API times, status rate, the event stream's fan-out, RSS.

`python -m bench --only web` (quick) or `--full`, against a real `job_cron web` subprocess on a port
of its own and a fresh database holding 1,000,000 finished and 10,000 pending jobs (bench.ops's
table, in both modes: it loads in about 30 s):
- pages: GET / (overview) and GET /jobs with the login cookie, GET /api/jobs?limit=50 with a bearer
  token; p50 and p95 of sequential requests on one keep-alive connection, round trip on loopback.
- status: requests/s of GET /api/status from a few threads, each on its own keep-alive connection.
- events: 50 clients on GET /api/events; each sample completes one job by SQL (the trigger NOTIFYs
  jobcron_events) and times its arrival at every client; pg_stat_activity shows the process still
  holds one LISTEN connection for all of them.
- RSS of the web process: idle after start, with the 50 streams open, and at the end.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

from bench import ops
from bench.harness import REPO, Conn, Result, Run, Server, check, connect, percentile, rss_mb
from bench.workloads import Sizes, _config

HOST = "127.0.0.1"
FINISHED = 1_000_000  # both modes: bench.ops.build loads it in about 30 s
PAGE_REQUESTS = 200
PAGE_WARMUP = 5
PAGE_TARGET_MS = 100.0
STATUS_CLIENTS = 8
STATUS_SECONDS = 5.0
STREAMS = 50
TIMEOUT = 30.0
# the application_name of the web process's connections (jobcron.db.connect_args, jobcron.web.events)
WEB_APP = "job_cron:web"
LISTENER_APP = "job_cron:web-events"


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def make_token(dsn: str, name: str) -> str:
    """An admin token made the operator's way: `job_cron tokens create`, whose last stdout line is the token."""
    done = subprocess.run(
        [sys.executable, "-m", "jobcron", "tokens", "create", name, "--role", "admin"],
        cwd=REPO,
        env=_env(dsn),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip().splitlines()[-1]


def _env(dsn: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": dsn, "PYTHONPATH": str(REPO), "JOB_CRON_LOG_FORMAT": "json"}
    env.pop("POSTGRES_URL", None)
    return env


class WebProcess:
    """One real `job_cron web` on a port of its own."""

    def __init__(self, dsn: str, log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:6]
        config_path = log_dir / f"config-web-{tag}.json"
        config_path.write_text(json.dumps(_config()))
        self.log = log_dir / f"web-{tag}.log"
        self.port = free_port()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "jobcron", "--config", str(config_path)),
                    *("web", "--host", HOST, "--port", str(self.port)),
                ],
                cwd=REPO,
                env=_env(dsn),
                stdout=subprocess.DEVNULL,
                stderr=out,
            )

    @property
    def pid(self) -> int:
        """Process id (uvicorn serves in this process: no workers, no reloader)."""
        return self.proc.pid

    def connection(self) -> http.client.HTTPConnection:
        """A new keep-alive connection to the process."""
        return http.client.HTTPConnection(HOST, self.port, timeout=TIMEOUT)

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the login page answers: the lifespan has opened the pool by then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"job_cron web exited with {self.proc.returncode}; see {self.log}")
            conn = self.connection()
            try:
                conn.request("GET", "/login")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.1)
        raise RuntimeError(f"job_cron web not answering in {timeout} s; see {self.log}")

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM and a clean exit; SIGKILL if it does not come."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None


def login(web: WebProcess, token: str) -> str:
    """The `Cookie` header value the dashboard's login form sets for this token."""
    conn = web.connection()
    try:
        body = urllib.parse.urlencode({"token": token, "csrf": "login"})
        conn.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
        answer = conn.getresponse()
        answer.read()
        cookie = next(
            (
                c.split(";", 1)[0]
                for c in answer.headers.get_all("Set-Cookie") or []
                if "jobcron_session=" in c
            ),
            None,
        )
        if answer.status != 303 or cookie is None:
            raise RuntimeError(f"login refused: HTTP {answer.status}")
        return cookie
    finally:
        conn.close()


def timed_gets(web: WebProcess, path: str, headers: dict[str, str], count: int) -> list[float]:
    """ms of `count` sequential GETs on one keep-alive connection, after a few unmeasured ones."""
    conn = web.connection()
    times: list[float] = []
    try:
        for i in range(PAGE_WARMUP + count):
            began = time.perf_counter()
            conn.request("GET", path, headers=headers)
            answer = conn.getresponse()
            answer.read()
            elapsed = (time.perf_counter() - began) * 1000
            if answer.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {answer.status}; see {web.log}")
            if i >= PAGE_WARMUP:
                times.append(elapsed)
    finally:
        conn.close()
    return times


def status_rate(web: WebProcess, headers: dict[str, str]) -> tuple[float, int, list[float]]:
    """Requests/s of GET /api/status from STATUS_CLIENTS threads for STATUS_SECONDS; errors; latencies (ms)."""
    done: list[int] = [0] * STATUS_CLIENTS
    errors: list[int] = [0] * STATUS_CLIENTS
    times: list[list[float]] = [[] for _ in range(STATUS_CLIENTS)]
    start = threading.Barrier(STATUS_CLIENTS + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        conn = web.connection()
        try:
            start.wait()
            while time.perf_counter() < deadline[0]:
                began = time.perf_counter()
                conn.request("GET", "/api/status", headers=headers)
                answer = conn.getresponse()
                answer.read()
                times[i].append((time.perf_counter() - began) * 1000)
                if answer.status == 200:
                    done[i] += 1
                else:
                    errors[i] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(STATUS_CLIENTS)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + STATUS_SECONDS
    began = time.perf_counter()
    start.wait()
    for t in threads:
        t.join(STATUS_SECONDS + TIMEOUT)
    elapsed = time.perf_counter() - began
    return sum(done) / elapsed, sum(errors), [ms for per in times for ms in per]


class Stream:
    """One client of GET /api/events, reading frames in a thread and noting when each job's event arrived."""

    def __init__(self, web: WebProcess, headers: dict[str, str], arrived: threading.Condition) -> None:
        self.conn = web.connection()
        self.conn.request("GET", "/api/events", headers=headers)
        self.sock = self.conn.sock  # kept: shutting it down is what wakes the reading thread
        self.answer = self.conn.getresponse()
        if self.answer.status != 200:
            raise RuntimeError(f"GET /api/events: HTTP {self.answer.status}")
        self.connected = threading.Event()
        self.ready = threading.Event()
        self.seen: dict[str, float] = {}
        self._arrived = arrived
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event = b""
        while True:
            try:
                line = self.answer.readline()
            except (OSError, http.client.HTTPException, ValueError):
                return
            if not line:
                return
            now = time.perf_counter()
            if line.startswith(b": connected"):
                self.connected.set()
            elif line.startswith(b"event: "):
                event = line[7:].strip()
                if event == b"ready":
                    self.ready.set()
            elif line.startswith(b"data: ") and event == b"jobs":
                # `event: queue` carries plain words ("inserted"); `event: jobs` the trigger's JSON
                payload = json.loads(line[6:])
                if isinstance(payload, dict):
                    for event in payload.get("events", []):
                        self.seen[event["id"]] = now
                    with self._arrived:
                        self._arrived.notify_all()

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)  # before close(): closing under a blocked read races http.client's own close
        self.conn.close()


def web_backends(conn: Conn) -> dict[str, set[int]]:
    """Backend pids of the web process in this database, the listener apart from the pool."""
    rows = conn.execute(
        "SELECT pid, application_name, query FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE %s",
        (WEB_APP + "%",),
    ).fetchall()
    listeners = {r["pid"] for r in rows if r["application_name"] == LISTENER_APP}
    listening = {
        r["pid"] for r in rows if r["application_name"] == LISTENER_APP and r["query"].startswith("LISTEN")
    }
    return {"all": {r["pid"] for r in rows}, "listeners": listeners, "listening": listening}


def event_latencies(
    conn: Conn, streams: list[Stream], arrived: threading.Condition, samples: int
) -> tuple[list[float], list[float]]:
    """ms from the completing UPDATE to each client reading its event; and to the last of all clients."""
    every: list[float] = []
    last: list[float] = []
    for _ in range(samples):
        row = conn.execute("INSERT INTO processing_jobs (job_type) VALUES ('noop') RETURNING id").fetchone()
        assert row is not None
        job_id = str(row["id"])
        began = time.perf_counter()
        conn.execute(
            "UPDATE processing_jobs SET status = 'completed', attempts = 1, started_at = now(), "
            "completed_at = now(), updated_at = now() WHERE id = %s",
            (job_id,),
        )
        with arrived:
            if not arrived.wait_for(lambda j=job_id: all(j in s.seen for s in streams), TIMEOUT):
                missing = sum(1 for s in streams if job_id not in s.seen)
                raise RuntimeError(f"{missing} of {len(streams)} streams did not get job {job_id}")
        got = [(s.seen.pop(job_id) - began) * 1000 for s in streams]
        every.extend(got)
        last.append(max(got))
    return every, last


def _pages(run: Run, web: WebProcess, cookie: str, bearer: dict[str, str], table: str) -> None:
    for label, path, headers in (
        ("GET / (overview)", "/", {"Cookie": cookie}),
        ("GET /jobs (page)", "/jobs", {"Cookie": cookie}),
        ("GET /api/jobs?limit=50", "/api/jobs?limit=50", bearer),
    ):
        times = timed_gets(web, path, headers, PAGE_REQUESTS)
        p95 = percentile(times, 95)
        run.add(Result("web", f"{label} p50", percentile(times, 50), "ms", note=table))
        run.add(
            Result(
                "web",
                f"{label} p95",
                p95,
                "ms",
                f"<= {PAGE_TARGET_MS:g}",
                check(p95, "<=", PAGE_TARGET_MS),
                f"{PAGE_REQUESTS} sequential requests, one keep-alive connection; {table}",
            )
        )


def _events(run: Run, web: WebProcess, conn: Conn, bearer: dict[str, str], samples: int) -> None:
    before = web_backends(conn)
    arrived = threading.Condition()
    streams: list[Stream] = []
    try:
        streams.append(Stream(web, bearer, arrived))
        # the first client starts the listener; it says so with `event: ready`
        if not streams[0].ready.wait(TIMEOUT):
            raise RuntimeError(f"the event stream never became ready; see {web.log}")
        one = web_backends(conn)
        streams.extend(Stream(web, bearer, arrived) for _ in range(STREAMS - 1))
        for s in streams:
            if not s.connected.wait(TIMEOUT):
                raise RuntimeError(f"an event stream did not connect; see {web.log}")
        many = web_backends(conn)
        run.add(Result("web", f"RSS with {STREAMS} event streams open", rss_mb(web.pid), "MB"))
        every, last = event_latencies(conn, streams, arrived, samples)
        after = web_backends(conn)
    finally:
        for s in streams:
            s.close()
    single = (
        len(many["listeners"]) == 1
        and many["listeners"] == one["listeners"] == after["listeners"]
        and many["listening"] == many["listeners"]
    )
    run.add(
        Result(
            "web",
            f"LISTEN connections for {STREAMS} event streams",
            len(many["listeners"]),
            "conns",
            "== 1",
            single,
            f"backends of the web process: {len(before['all'])} before any stream, {len(one['all'])} "
            f"with 1, {len(many['all'])} with {STREAMS} (pool at most 4 + the listener); listener pids "
            f"{sorted(one['listeners'])} with 1, {sorted(many['listeners'])} with {STREAMS}",
        )
    )
    deliveries = f"{samples} jobs completed by SQL x {STREAMS} clients"
    for q in (50, 95):
        run.add(
            Result(
                "web",
                f"event delivery to {STREAMS} clients, p{q}",
                percentile(every, q),
                "ms",
                note=deliveries,
            )
        )
    run.add(
        Result(
            "web",
            f"event delivery to the last of {STREAMS}, p95",
            percentile(last, 95),
            "ms",
            note=f"per job, the slowest client; p50 {percentile(last, 50):.2f} ms",
        )
    )


def run_web(run: Run, server: Server, sizes: Sizes, log_dir: Path) -> None:
    """Pages and API at 1,000,000 finished jobs, /api/status req/s, 50 event streams, RSS."""
    samples = 100 if sizes.repeats == 1 else 300
    dsn = server.fresh()
    web: WebProcess | None = None
    try:
        with connect(dsn) as conn:
            built = ops.build(conn, finished=FINISHED)
            table = f"{FINISHED:,} finished + {ops.PENDING:,} pending"
            # the figures below are CPU-bound on a small machine: say how busy it was
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            run.add(
                Result(
                    "web",
                    "load the table (INSERT ... SELECT, VACUUM ANALYZE)",
                    built,
                    "s",
                    note=f"{table}; load average {load} on {os.cpu_count()} CPUs",
                )
            )
            token = make_token(dsn, "bench-web")
            bearer = {"Authorization": f"Bearer {token}"}
            web = WebProcess(dsn, log_dir)
            web.wait_ready()
            time.sleep(0.5)  # let start-up settle before reading the idle figure
            run.add(Result("web", "RSS idle after start", rss_mb(web.pid), "MB"))
            _pages(run, web, login(web, token), bearer, table)
            rate, errors, times = status_rate(web, bearer)
            run.add(
                Result(
                    "web",
                    f"GET /api/status, {STATUS_CLIENTS} keep-alive clients",
                    rate,
                    "req/s",
                    note=f"{STATUS_SECONDS:g} s, {errors} errors, p50 {percentile(times, 50):.1f} ms, "
                    f"p95 {percentile(times, 95):.1f} ms; {table}",
                )
            )
            _events(run, web, conn, bearer, samples)
            run.add(Result("web", "RSS after the above", rss_mb(web.pid), "MB"))
    finally:
        if web is not None:
            web.stop()
        server.drop(dsn)
