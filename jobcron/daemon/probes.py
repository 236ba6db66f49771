"""Per-process probes for orchestrators (`job_cron run --health-port P`), and the HTTP server they share
with `--metrics-port`: known paths only, 404 for the rest.

- `GET /livez`: 200 while the loop is alive by the systemd watchdog's rule (it ticked within the
  liveness window, or it runs a job whose lease it holds, or it waits for a statement the server ends
  by itself); 503 with the reason otherwise. The window is WatchdogSec under systemd, else
  LIVENESS_SECONDS; the idle loop wakes at least three times per window, so an idle daemon stays live.
- `GET /readyz`: 200 when the database answers and the schema is current; 503 with the reason as
  JSON otherwise ({"status": "not_ready", "reason": "..."}), also while the daemon is stopping. It
  uses a connection of its own (opened on demand, kept, reopened after an error), each check bounded
  by `database.connect_timeout_seconds` and a statement timeout of READY_TIMEOUT_SECONDS.

`health` (the CLI) judges the whole fleet through the database; these judge one process, and need no
database for liveness: an outage makes a daemon unready, never dead (restarting it would not help).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobcron import migrate
from jobcron.db import DATABASE_ERROR, Connection, connect, scrub
from jobcron.errors import JobCronError

if TYPE_CHECKING:
    from jobcron.daemon.worker import Worker

LIVENESS_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 3.0

# path -> () -> (status, content type, body)
Route = Callable[[], tuple[int, str, bytes]]


def _json(status: int, data: dict[str, Any]) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(data, sort_keys=True).encode("utf-8")


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, Route] = {}
    server_version = "jobcron"
    sys_version = ""
    timeout = 10  # a client that connects and sends nothing does not keep a thread for good

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, *, with_body: bool) -> None:
        route = self.routes.get(self.path.split("?", 1)[0])
        if route is None:
            status, kind, body = _json(
                404, {"error": f"not found: {self.path[:100]}", "paths": sorted(self.routes)}
            )
        else:
            try:
                status, kind, body = route()
            except Exception as exc:  # a probe must answer, whatever went wrong behind it
                status, kind, body = _json(500, {"error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes come every few seconds: they are not worth a log line


def serve_routes(
    addr: str, port: int, routes: dict[str, Route], name: str
) -> http.server.ThreadingHTTPServer:
    """Serve these paths on a daemon thread; OSError when the port cannot be had."""
    handler = type("Handler", (_Handler,), {"routes": dict(routes)})
    server = http.server.ThreadingHTTPServer((addr, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server


class Probes:
    """/livez and /readyz for one daemon."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    @property
    def window(self) -> float:
        """Seconds the loop may go without a tick before it counts as stalled."""
        return self.worker.notifier.watchdog_seconds or LIVENESS_SECONDS

    def livez(self) -> tuple[int, str, bytes]:
        """200 while the loop is alive (the watchdog's rule), else 503."""
        now = time.monotonic()
        age = round(now - self.worker.state.loop_tick, 3)
        facts = {
            "worker_id": self.worker.worker_id,
            "loop_tick_age_seconds": age,
            "window_seconds": self.window,
        }
        if self.worker.loop_alive(now, self.window):
            return _json(200, {"status": "alive", **facts})
        return _json(503, {"status": "stalled", "reason": f"the loop has not ticked for {age:.0f}s", **facts})

    def readyz(self) -> tuple[int, str, bytes]:
        """200 when the database answers and the schema is current, else 503 with the reason."""
        if self.worker.stopping:
            return _json(503, {"status": "not_ready", "reason": "stopping"})
        with self._lock:
            reason = self._check()
        if reason is None:
            return _json(200, {"status": "ready", "worker_id": self.worker.worker_id})
        return _json(503, {"status": "not_ready", "reason": reason})

    def _check(self) -> str | None:
        config = self.worker.config
        try:
            if self._conn is None or self._conn.closed:
                self._conn = connect(config, purpose="probe", statement_timeout_seconds=READY_TIMEOUT_SECONDS)
            migrate.check(self._conn)
            return None
        except JobCronError as exc:
            return scrub(str(exc), config.database.url)
        except DATABASE_ERROR as exc:
            self._drop()
            return "database unavailable: " + scrub(" ".join(str(exc).split()), config.database.url)[:300]

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection: nothing to report
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        """Close the readiness connection."""
        with self._lock:
            self._drop()

    def routes(self) -> dict[str, Route]:
        """The paths this server answers."""
        return {"/livez": self.livez, "/readyz": self.readyz}


__all__ = ["LIVENESS_SECONDS", "Probes", "serve_routes"]
