"""The notify protocol on a real Unix datagram socket, and the watchdog's notion of a live loop."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobcron.daemon.sdnotify import Notifier
from jobcron.daemon.state import DaemonState
from jobcron.daemon.watchdog import Watchdog


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


Notifiers = Callable[[dict[str, str]], Notifier]


@pytest.fixture
def notifiers() -> Iterator[Notifiers]:
    """Notifiers whose sockets are closed when the test ends."""
    made: list[Notifier] = []

    def make(environ: dict[str, str]) -> Notifier:
        made.append(Notifier(environ))
        return made[-1]

    yield make
    for notifier in made:
        notifier.close()


def test_messages_reach_the_socket(notify_socket: tuple[str, socket.socket], notifiers: Notifiers) -> None:
    path, sock = notify_socket
    n = notifiers({"NOTIFY_SOCKET": path})
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


def test_a_vanished_socket_never_raises(tmp_path: Path, notifiers: Notifiers) -> None:
    n = notifiers({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert n.send("READY=1") is False


def test_watchdog_is_for_this_process_only() -> None:
    assert Notifier({"WATCHDOG_USEC": "3000000"}).watchdog_seconds == 3.0
    mine = Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_seconds == 3.0
    # the variables leak into the job child process: it must not ping for the daemon
    assert Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}).watchdog_seconds is None
    assert Notifier({"WATCHDOG_USEC": "soon"}).watchdog_seconds is None


def _alive(notifier: Notifier, state: DaemonState, db_wait_seconds: float = 0.0) -> Callable[[float], bool]:
    # the daemon's rule, as Worker wires it: WatchdogSec from the notifier, the server's own limits
    return lambda now: state.loop_alive(now, notifier.watchdog_seconds, db_wait_seconds)


def test_watchdog_pings_only_while_the_loop_ticks(
    notify_socket: tuple[str, socket.socket], notifiers: Notifiers
) -> None:
    path, sock = notify_socket
    notifier = notifiers({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    keeper = DaemonState()
    dog = Watchdog(notifier, alive=_alive(notifier, keeper), stopping=lambda: False)
    now = time.monotonic()
    keeper.loop_tick = now
    dog.tick(now)
    assert received(sock) == ["WATCHDOG=1"]
    # within a third of the interval it does not ping again
    dog.tick(now + 0.1)
    assert received(sock) == []
    # a loop that has not ticked for longer than WatchdogSec is hung: silence lets systemd restart it
    dog.tick(now + 5)
    assert received(sock) == []


def test_a_loop_waiting_for_a_statement_stays_alive_until_the_server_must_have_ended_it(
    notify_socket: tuple[str, socket.socket],
    notifiers: Notifiers,
) -> None:
    # a lock timeout longer than WatchdogSec: a statement waiting for another session's lock is the loop
    # waiting, not a hung loop, for as long as the server lets it wait (connect + lock timeout)
    path, sock = notify_socket
    notifier = notifiers({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    keeper = DaemonState()
    dog = Watchdog(notifier, alive=_alive(notifier, keeper, db_wait_seconds=2 + 10), stopping=lambda: False)
    now = time.monotonic()
    keeper.loop_tick = keeper.loop_db_since = now
    dog.tick(now + 11)
    assert received(sock) == ["WATCHDOG=1"]
    dog.tick(now + 14)  # past 2 + 10 + WatchdogSec: the statement should have ended long ago
    assert received(sock) == []
    keeper.loop_db_since = None  # it returned; the loop ticks again
    keeper.loop_tick = now + 15
    dog.tick(now + 15)
    assert received(sock) == ["WATCHDOG=1"]


def test_stopping_is_announced_once_without_waiting_for_the_next_ping(
    notify_socket: tuple[str, socket.socket],
    notifiers: Notifiers,
) -> None:
    path, sock = notify_socket
    notifier = notifiers({"NOTIFY_SOCKET": path})
    stop = threading.Event()
    dog = Watchdog(notifier, alive=lambda now: True, stopping=stop.is_set)
    dog.tick(time.monotonic())
    assert received(sock) == []
    stop.set()
    dog.tick(time.monotonic())
    dog.tick(time.monotonic())
    assert received(sock) == ["STOPPING=1\nSTATUS=stopping"]
