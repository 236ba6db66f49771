"""Signal handlers only set flags: TERM/INT stop (twice: cut the grace short), HUP reloads."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Protocol


class Stoppable(Protocol):
    """What the handlers act on."""

    def request_stop(self, reason: str = ...) -> None: ...
    def request_reload(self) -> None: ...


def install(target: Stoppable) -> None:
    """Route SIGTERM, SIGINT and SIGHUP to the daemon's flags."""

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        target.request_stop(signal.Signals(signum).name)

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        target.request_reload()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
