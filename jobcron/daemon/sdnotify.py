"""The systemd notify protocol (READY, STATUS, WATCHDOG, STOPPING) over NOTIFY_SOCKET; a no-op without it."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


class Notifier:
    """Sends sd_notify datagrams when systemd asked for them (NOTIFY_SOCKET set)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace socket
        self._address = address
        self._sock: socket.socket | None = None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        valid_pid = pid is None or pid == str(os.getpid())
        self.watchdog_seconds: float | None = (
            int(usec) / 1e6 if usec and usec.isdigit() and valid_pid else None
        )

    @property
    def enabled(self) -> bool:
        """True when there is a socket to talk to."""
        return self._address is not None

    def send(self, message: str) -> bool:
        """Send one datagram; errors are swallowed because notification must never stop the daemon."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode("utf-8"), self._address)
            return True
        except OSError:
            return False

    def ready(self, status: str = "idle") -> None:
        """The daemon is connected, schema-checked and claiming."""
        self.send(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")

    def status(self, text: str) -> None:
        """A one-line status shown by `systemctl status`."""
        self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        """The loop is alive."""
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        """Shutdown has begun."""
        self.send("STOPPING=1\nSTATUS=stopping")

    def reloading(self) -> None:
        """A SIGHUP reload is in progress; READY=1 must follow, whether the reload worked or not."""
        # systemd >= 253 wants the monotonic time of the reload request beside RELOADING=1
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
