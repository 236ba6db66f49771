"""A TCP server that answers every PostgreSQL connection attempt with one ErrorResponse.

It speaks just enough of the protocol (SSL/GSS negotiation refused, the startup packet read) to send
the same bytes a server or a pooler sends when it refuses a connection, so the client's handling of
a given SQLSTATE can be tested where the real cause (a pooler, a server starting up) is not at hand.
"""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


class RefusingServer:
    """Listens on 127.0.0.1 (a free port) and refuses each connection with (sqlstate, message)."""

    def __init__(self, sqlstate: str, message: str) -> None:
        self.sqlstate = sqlstate
        self.message = message
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RefusingServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._sock.close()

    def url(self, user: str = "app", dbname: str = "app") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return  # closed
            with client:
                self.connections += 1
                try:
                    self._refuse(client)
                except OSError:
                    continue

    def _refuse(self, client: socket.socket) -> None:
        while True:
            length, code = struct.unpack("!ii", _read(client, 8))
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                client.sendall(b"N")  # no encryption here: the client goes on in plain text
                continue
            _read(client, length - 8)  # the startup packet: user, database, options...
            break
        fields = b"".join(
            key + value.encode() + b"\0"
            for key, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", self.sqlstate), (b"M", self.message))
        )
        body = fields + b"\0"
        client.sendall(b"E" + struct.pack("!i", len(body) + 4) + body)


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionResetError("client went away")
        data += chunk
    return data
