"""Signal handlers only set flags: TERM/INT stop (twice: cut the grace short), HUP reloads."""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Protocol

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Stoppable(Protocol):
    """What the handlers act on."""

    def request_stop(self, reason: str = ...) -> None: ...
    def request_reload(self) -> None: ...


def install(target: Stoppable) -> Callable[[], None]:
    """Route SIGTERM, SIGINT and SIGHUP to the daemon's flags; returns what puts the previous handlers back."""
    previous = {sig: signal.getsignal(sig) for sig in HANDLED}

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        target.request_stop(signal.Signals(signum).name)

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        target.request_reload()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
