"""Fixtures for the tests that run real `job_cron run` processes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.daemon import Daemon, NotifySocket
from tests.roles import Roles


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


@pytest.fixture
def role_set(dsn: str) -> Iterator[Roles]:
    """roles.sql's roles under unique names for the test's database, dropped afterwards."""
    if shutil.which("psql") is None:
        pytest.skip("psql is needed to run deploy/sql/roles.sql")
    made = Roles(dsn)
    try:
        yield made
    finally:
        made.drop()
