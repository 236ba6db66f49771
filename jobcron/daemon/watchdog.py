"""The daemon's third thread: systemd's watchdog and stop notice, apart from every database call.

The housekeeper heartbeats the running job on a connection of its own, and another application's lock
on that row or table holds the statement, and so the thread, for up to the lock timeout. A watchdog
pinged from there went silent for as long, and a healthy daemon was killed. This thread never touches
the database: it pings every WatchdogSec/3 while the housekeeper's rule says the loop is alive
(`Housekeeper.loop_alive`), sends STOPPING=1 as soon as a stop begins, and once the stop's deadline has
passed interrupts a statement that still waits, so that a lock nobody times out cannot hold a stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from jobcron.daemon.sdnotify import Notifier

TICK_SECONDS = 0.1


class Watchdog(threading.Thread):
    """Pings, stop notice and the stop deadline, on timers of its own."""

    def __init__(
        self,
        notifier: Notifier,
        *,
        alive: Callable[[float], bool],
        stopping: Callable[[], bool],
        overdue: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(name="jobcron-watchdog", daemon=True)
        self.notifier = notifier
        self.alive = alive
        self.stopping = stopping
        self.overdue = overdue
        self.halt = threading.Event()
        self.poke = threading.Event()
        self._next_ping = 0.0
        self._stop_announced = False

    def run(self) -> None:
        """Tick until halted."""
        while not self.halt.is_set():
            self.tick(time.monotonic())
            self.poke.wait(TICK_SECONDS)
            self.poke.clear()

    def tick(self, now: float) -> None:
        """One look: announce a stop, ping when due and alive, enforce the stop deadline."""
        if not self._stop_announced and self.stopping():
            # at once, not after the running job's grace period
            self._stop_announced = True
            self.notifier.stopping()
        interval = self.notifier.watchdog_seconds
        if interval is not None and now >= self._next_ping:
            if self.alive(now):
                self.notifier.watchdog()
            self._next_ping = now + interval / 3
        if self.overdue is not None:
            self.overdue(now)
