"""The daemon's signal handlers set its flags, and the handlers before them come back afterwards."""

from __future__ import annotations

import os
import signal

from jobcron.daemon import signals


class Target:
    def __init__(self) -> None:
        self.stops: list[str] = []
        self.reloads = 0

    def request_stop(self, reason: str = "signal") -> None:
        self.stops.append(reason)

    def request_reload(self) -> None:
        self.reloads += 1


def test_signals_reach_the_flags_and_the_old_handlers_are_restored() -> None:
    before = {sig: signal.getsignal(sig) for sig in signals.HANDLED}
    target = Target()
    restore = signals.install(target)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGTERM)
        assert target.reloads == 1 and target.stops == ["SIGTERM"]
    finally:
        restore()
    assert {sig: signal.getsignal(sig) for sig in signals.HANDLED} == before
