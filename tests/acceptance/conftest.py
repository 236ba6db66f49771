"""Fixtures for the tests that run real `job_cron run` processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.acceptance.daemon import Daemon


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons a test starts; each is killed at the end if it is still running."""
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()
