"""structlog set-up, called once by the CLI: console on a terminal, JSON lines otherwise."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

from jobcron.terminal import printable

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# Keys whose values must never reach a log line wholesale.
SECRET_KEYS = frozenset({"password", "dsn", "database_url", "metadata", "token", "access_token", "secret"})
# sd-daemon(3) priority prefixes by structlog method; the journal files each line under its priority
SYSLOG_PRIORITIES = {
    "debug": 7,
    "info": 6,
    "warning": 4,
    "warn": 4,
    "error": 3,
    "exception": 3,
    "critical": 2,
    "fatal": 2,
}


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in SECRET_KEYS.intersection(event):
        event[key] = "***"
    return event


class _ConsoleRenderer:
    """structlog's console renderer, with control characters from job rows shown as escapes.

    A `job_type` or error text holding ESC [ 2 J must not clear the terminal of the operator watching
    the daemon. structlog quotes a value holding a space or a newline with repr() (which escapes), and
    prints others and the event as they are: those pass through `printable`, the event with its
    newlines too, so that one event stays one line (a traceback keeps its lines). The JSON renderer
    needs none of this: JSON escapes control characters itself.
    """

    def __init__(self) -> None:
        self._render = structlog.dev.ConsoleRenderer(colors=False)

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> str:
        if isinstance(event.get("event"), str):
            event["event"] = printable(event["event"])
        return printable(self._render(logger, method, event), keep_newlines=True)


def journal_stream(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """Whether the stream is systemd's journal: JOURNAL_STREAM names its device:inode (systemd.exec(5)).

    A process that merely inherited the variable, its stderr redirected elsewhere, does not match.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # a closed or in-memory stream has no device
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def _syslog_priority(_: Any, method: str, line: str) -> str:
    """Prefix each line with its <N> priority, so that `journalctl -p warning` finds warnings."""
    prefix = f"<{SYSLOG_PRIORITIES.get(method, 6)}>"
    return "\n".join(prefix + part for part in line.split("\n"))


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog for the process; safe to call again (SIGHUP changes the level)."""
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    if use_json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors.append(_ConsoleRenderer())
    if journal_stream(stream):
        processors.append(_syslog_priority)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**bind: Any) -> Any:
    """A logger with the given fields bound."""
    return structlog.get_logger(**bind)
