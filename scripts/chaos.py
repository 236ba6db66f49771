#!/usr/bin/env python3
"""Chaos run: M daemons over N jobs on a private PostgreSQL, killed and restarted for T seconds.

    .venv/bin/python scripts/chaos.py --daemons 4 --jobs 5000 --seconds 600

Prints progress, then the figures and the verdict (tests/chaos/check.py); exit 0 when every promise
held, 1 when one broke. Everything lands in --workdir (default .state/chaos-<time>): the daemons'
logs, chaos.jsonl (every signal and restart), executions.jsonl (every run of the workflow),
summary.json. The private server is stopped at the end; the shared server is never touched.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.chaos.check import check  # noqa: E402
from tests.chaos.run import ChaosRun, ChaosSettings  # noqa: E402


def main() -> int:
    """Parse the flags, run, check, print; the exit code is the verdict."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--daemons", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the chaos loop")
    parser.add_argument(
        "--server-restarts", type=int, default=None, help="default: one per 150 s of chaos, at least 2"
    )
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--user-limit", type=int, default=2)
    parser.add_argument("--fault-every", type=float, nargs=2, default=(2.0, 6.0), metavar=("MIN", "MAX"))
    parser.add_argument("--stale-after", type=float, default=15.0, help="daemon.stale_after_seconds")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--clean", action="store_true", help="remove the workdir when every promise held")
    args = parser.parse_args()
    if args.daemons < 1 or args.jobs < 1 or args.seconds <= 0:
        parser.error("--daemons, --jobs and --seconds must be positive")
    workdir = args.workdir or REPO / ".state" / f"chaos-{time.strftime('%Y%m%d-%H%M%S')}"
    settings = ChaosSettings(
        workdir=workdir,
        daemons=args.daemons,
        jobs=args.jobs,
        seconds=args.seconds,
        server_restarts=args.server_restarts
        if args.server_restarts is not None
        else max(2, int(args.seconds // 150)),
        users=args.users,
        user_limit=args.user_limit,
        fault_every=tuple(args.fault_every),
        stale_after_seconds=args.stale_after,
        drain_timeout=args.drain_timeout,
        seed=args.seed,
    )
    began = time.monotonic()
    with ChaosRun(settings) as chaos:
        recorded = chaos.run()
        report = check(recorded)
    report.figures["wall seconds"] = round(time.monotonic() - began, 1)
    print(f"\nchaos run: {' '.join(sys.argv[1:]) or '(defaults)'}")
    print(report.render())
    (workdir / "summary.json").write_text(
        json.dumps({"figures": report.figures, "violations": report.violations}, indent=2, default=str) + "\n"
    )
    print(f"details in {workdir}")
    if not report.violations and args.clean:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
