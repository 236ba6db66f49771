"""`python -m bench [--full] [--only drain,latency,...]`: measure jobcron against the database's own limits."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.events import run_events
from bench.extra import run_analysis, run_ops
from bench.harness import RESULTS, Run, Server
from bench.notifications import run_notifications
from bench.pipelines import run_pipelines
from bench.users import run_users
from bench.web import run_web
from bench.workloads import FULL, QUICK, WORKLOADS

WORKLOADS = {
    **WORKLOADS,
    "users": run_users,
    "ops": run_ops,
    "analysis": run_analysis,
    "events": run_events,
    "web": run_web,
    "notifications": run_notifications,
    "pipelines": run_pipelines,
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen workloads, print a table, write JSON; exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--full", action="store_true", help="full sizes (about 15 minutes); default: quick (under 2)"
    )
    parser.add_argument("--only", default=",".join(WORKLOADS), help=f"comma list of {', '.join(WORKLOADS)}")
    parser.add_argument(
        "--json", type=Path, default=None, help="where to write results (default bench/results/)"
    )
    args = parser.parse_args(argv)
    chosen = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(unknown)}")
    mode = "full" if args.full else "quick"
    sizes = FULL if args.full else QUICK
    server = Server()
    run = Run(mode=mode, server=server.source)
    log_dir = RESULTS / "logs"
    began = time.monotonic()
    print(f"bench: {mode} mode on the {server.source} server; daemon logs in {log_dir}")
    try:
        for name in chosen:
            print(f"[{name}]")
            WORKLOADS[name](run, server, sizes, log_dir)
    finally:
        server.close()
        run.seconds = round(time.monotonic() - began, 1)
        path = args.json or RESULTS / f"latest-{mode}.json"
        run.write(path)
    judged = [r for r in run.results if r.passed is not None]
    missed = [r for r in judged if not r.passed]
    print(
        f"bench: {len(judged) - len(missed)}/{len(judged)} targets met in {run.seconds:.0f} s; results in {path}"
    )
    for r in missed:
        print(f"  MISSED {r.workload}: {r.name} = {r.value:.2f} {r.unit} (target {r.target})")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
