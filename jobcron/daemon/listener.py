"""LISTEN on a connection of its own and wake the main loop the moment a job is inserted.

The listening connection is never used for anything else: psycopg serialises a connection, so a
thread blocked in notifies() would stall any query issued on the same connection by another thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from psycopg import sql

from jobcron.config import Config
from jobcron.db import DB_UNAVAILABLE, connect

CHANNELS = ("jobcron_jobs", "jobcron_cancel", "jobcron_control")
NOTIFIES_TIMEOUT = 0.5


class Listener(threading.Thread):
    """Turns notifications into events: new job -> wake, cancel -> callback, pause change -> callback."""

    def __init__(
        self,
        config: Config,
        wake: threading.Event,
        log: Any,
        *,
        on_cancel: Callable[[str], None],
        on_control: Callable[[], None],
    ) -> None:
        super().__init__(name="jobcron-listener", daemon=True)
        self.config = config
        self.wake = wake
        self.log = log
        self.on_cancel = on_cancel
        self.on_control = on_control
        self.halt = threading.Event()

    def run(self) -> None:
        """Listen until halted, reconnecting with backoff when the server goes away."""
        backoff = 0.1
        while not self.halt.is_set():
            try:
                with connect(self.config, purpose="listen") as conn:
                    for channel in CHANNELS:
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    backoff = 0.1
                    # anything inserted while we were not listening: look once
                    self.wake.set()
                    while not self.halt.is_set():
                        for note in conn.notifies(timeout=NOTIFIES_TIMEOUT):
                            self._dispatch(note.channel, note.payload)
            except DB_UNAVAILABLE as exc:
                if self.halt.is_set():
                    return  # a clean stop: the server (the dev mode's own) may go before this thread does
                self.log.debug("listen_reconnecting", error=str(exc).strip()[:200])
                self.halt.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:  # never let the listener die silently: the poll interval still works
                self.log.error("listener_failed", error=repr(exc)[:500])
                self.halt.wait(1.0)

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == "jobcron_jobs":
            self.wake.set()
        elif channel == "jobcron_cancel":
            self.on_cancel(payload)
        elif channel == "jobcron_control":
            self.on_control()
