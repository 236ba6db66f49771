"""The event stream: one LISTEN connection for the whole web process, every client fed from it.

`event: jobs` carries each jobcron_events payload (jobs that finished or went back to pending),
`event: queue` each jobcron_jobs one (jobs were inserted or a slot freed), `event: progress` each
jobcron_progress one (a running job's ctx.progress, at most about once a second per job); claims send
nothing.

The first client starts the listener; each client gets a bounded queue of payloads. A client that
reads too slowly loses the oldest payloads and is told so (`event: lagged`), never slowing the others.
The stream sends a comment every KEEPALIVE seconds so proxies keep it open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg

KEEPALIVE = 15.0
QUEUE_SIZE = 1000
CHANNEL_EVENTS = {"jobcron_events": "jobs", "jobcron_jobs": "queue", "jobcron_progress": "progress"}


class EventHub:
    """One listening connection, fanned out to every subscriber."""

    def __init__(self, dsn: str, params: dict[str, Any]) -> None:
        self._dsn = dsn
        self._params = {
            **params,
            "application_name": params.get("application_name", "job_cron:web") + "-events",
        }
        self._clients: set[asyncio.Queue[str | None]] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def clients(self) -> int:
        """How many streams are open."""
        return len(self._clients)

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True, **self._params
                ) as conn:
                    await conn.execute("LISTEN jobcron_events")
                    await conn.execute("LISTEN jobcron_jobs")
                    await conn.execute("LISTEN jobcron_progress")
                    self._publish('{"listening": true}', event="ready")
                    async for notify in conn.notifies():
                        # jobcron_events: jobs that moved (docs/clients.md); jobcron_jobs: new jobs
                        self._publish(notify.payload, CHANNEL_EVENTS.get(notify.channel, "queue"))
            except psycopg.Error:
                self._publish('{"listening": false}', event="reconnecting")
                await asyncio.sleep(1.0)  # the database is away: try again, the clients stay connected

    def _publish(self, payload: str, event: str = "jobs") -> None:
        frame = f"event: {event}\ndata: {payload}\n\n"
        for queue in self._clients:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                frame_lagged = 'event: lagged\ndata: {"lagged": true}\n\n'
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(frame_lagged)
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(frame)

    async def stream(self) -> AsyncIterator[str]:
        """What one client receives until it disconnects."""
        queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_SIZE)
        self._clients.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._listen())
        try:
            yield ": connected\n\n"
            while True:
                try:
                    frame = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if frame is None:
                    return
                yield frame
        finally:
            self._clients.discard(queue)

    async def close(self) -> None:
        """End every stream and the listener."""
        for queue in self._clients:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
