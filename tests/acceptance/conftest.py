"""Fixtures for the tests that run real `job_cron run` processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.daemon import Daemon, NotifySocket


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons a test starts; each is killed at the end if it is still running."""
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    """The systemd side of the notify protocol: every datagram a daemon sends, with its arrival time."""
    s = NotifySocket(tmp_path / "notify")
    yield s
    s.close()
