"""Chaos in CI: 4 daemons, 400 jobs, 40 s of SIGKILL/SIGTERM and two server restarts; every promise holds.

The long run is `scripts/chaos.py` (10 minutes, 5,000 jobs); this is the same machinery, bounded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.check import check
from tests.chaos.run import ChaosRun, ChaosSettings

pytestmark = pytest.mark.acceptance


@pytest.mark.timeout(180)
def test_chaos_keeps_every_promise(server_dir: Path) -> None:
    settings = ChaosSettings(
        workdir=server_dir / "chaos",
        daemons=4,
        jobs=400,
        seconds=40,
        server_restarts=2,
        users=8,
        fault_every=(1.5, 3.5),
        cancel_every=4,
        drain_timeout=60,
        stale_after_seconds=10,
        seed=11,
        verbose=False,
    )
    with ChaosRun(settings) as chaos:
        recorded = chaos.run()
        report = check(recorded)
    print(report.render())
    assert not report.violations, report.render()
    figures = report.figures
    # the run was rough enough to mean something: kills, stops, both kinds of server restart, runs cut short
    assert figures["SIGKILLs"] >= 3 and figures["SIGTERMs"] >= 2, report.render()
    assert figures["server restarts"] == "2 (1 clean, 1 crash)", report.render()
    assert sum(figures["interrupted executions"].values()) >= 1, report.render()
    # the limit was reached (so the check could have failed), never passed
    assert figures["most runs of one user at once"] == "2 (limit 2)", report.render()
    assert figures["executions"] >= figures["completions"]
