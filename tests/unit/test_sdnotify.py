"""The notify protocol on a real Unix datagram socket, and the watchdog's notion of a live loop."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from jobcron.config import load_config
from jobcron.housekeeper import Housekeeper
from jobcron.sdnotify import Notifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield str(path), sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    """Every datagram waiting on the socket."""
    got: list[str] = []
    sock.settimeout(0.2)
    try:
        while True:
            got.append(sock.recv(4096).decode())
    except TimeoutError:
        return got


def test_messages_reach_the_socket(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled and n.watchdog_seconds is None
    n.ready()
    n.status("running job 42 (noop)")
    n.reloading()
    n.stopping()
    ready, status, reloading, stopping = received(sock)
    assert ready == f"READY=1\nSTATUS=idle\nMAINPID={os.getpid()}"
    assert status == "STATUS=running job 42 (noop)"
    first, second = reloading.split("\n")
    assert first == "RELOADING=1"
    usec = int(second.removeprefix("MONOTONIC_USEC="))
    assert abs(usec / 1e6 - time.clock_gettime(time.CLOCK_MONOTONIC)) < 5
    assert stopping.split("\n")[0] == "STOPPING=1"


def test_without_a_socket_nothing_is_sent() -> None:
    n = Notifier({})
    assert not n.enabled
    assert n.send("READY=1") is False


def test_a_vanished_socket_never_raises(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert n.send("READY=1") is False


def test_watchdog_is_for_this_process_only() -> None:
    assert Notifier({"WATCHDOG_USEC": "3000000"}).watchdog_seconds == 3.0
    mine = Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_seconds == 3.0
    # the variables leak into the job child process: it must not ping for the daemon
    assert Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}).watchdog_seconds is None
    assert Notifier({"WATCHDOG_USEC": "soon"}).watchdog_seconds is None


def test_watchdog_pings_only_while_the_loop_ticks(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    keeper = Housekeeper(
        load_config(None, {}),
        "w1",
        structlog.get_logger(),
        notifier,
        on_grace_expired=lambda conn, running: None,
    )
    now = time.monotonic()
    keeper.loop_tick = now
    keeper._watchdog(now, None)
    assert received(sock) == ["WATCHDOG=1"]
    # within a third of the interval it does not ping again
    keeper._watchdog(now + 0.1, None)
    assert received(sock) == []
    # a loop that has not ticked for longer than WatchdogSec is hung: silence lets systemd restart it
    keeper._watchdog(now + 5, None)
    assert received(sock) == []
