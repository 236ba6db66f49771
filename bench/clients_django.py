"""Insert -> the client knows it finished, for a Django application logged in as the enqueuer role.

`python -m bench.clients_django [--samples 200]`: a fresh database with deploy/sql/roles.sql's roles
(names unique to the run, dropped after), one idle daemon logged in as the worker role, and the
Django application of tests/clientapps/django_app.py logged in as an enqueuer login, a process of its
own: `Job.objects.create(job_type="noop")`, then `jobcron.wait()` on Django's psycopg connection
(a connection of its own per call), one job at a time; and, as the baseline, the same login with
plain psycopg (`jobcron.enqueue` + `jobcron.wait`). Each with row-level security off and on, in four
alternating rounds. p50, p99 and max in ms. `run_django(run, server, sizes, log_dir)` has the signature of the other
workloads, should `python -m bench` list it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import jobcron
from bench.harness import REPO, RESULTS, Result, Run, Server, connect, daemons, percentile
from bench.workloads import QUICK, Sizes, _config
from tests.roles import Roles


def django_latencies(app_dsn: str, samples: int) -> list[float]:
    """ms per job, create() to wait() returning, measured inside the Django application's process."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.clientapps.django_app",
            app_dsn,
            "--samples",
            str(samples),
            "--job-type",
            "noop",
        ],
        capture_output=True,
        text=True,
        timeout=60 + samples,
        cwd=REPO,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the Django application failed:\n{done.stderr[-3000:]}")
    latencies: list[float] = json.loads(done.stdout)["latencies_ms"]
    return latencies


def psycopg_latencies(app_dsn: str, samples: int) -> list[float]:
    """The same with jobcron.enqueue and jobcron.wait on a psycopg connection of the same login."""
    figures = []
    with connect(app_dsn) as conn:
        for _ in range(samples):
            began = time.perf_counter()
            jobcron.wait(conn, jobcron.enqueue(conn, "noop"), timeout=10)
            figures.append((time.perf_counter() - began) * 1000)
            time.sleep(0.02)  # as the Django application does between jobs
    return figures


def run_django(run: Run, server: Server, sizes: Sizes, log_dir: Path, samples: int | None = None) -> None:
    """p50/p99/max of enqueue -> known for Django and psycopg under the enqueuer, RLS off and on."""
    samples = samples or (200 if sizes.repeats == 1 else 500)
    rounds = 4  # off and on alternate, which one first too, so a drift of the machine favours neither
    ways = {"Django create + wait()": django_latencies, "psycopg enqueue + wait()": psycopg_latencies}
    figures: dict[tuple[str, str], list[float]] = {(w, s): [] for w in ways for s in ("off", "on")}
    dsn = server.fresh()
    roles = Roles(dsn)
    try:
        roles.apply()
        worker, app = roles.login("worker"), roles.login("enqueuer")
        with connect(dsn) as conn, daemons(worker, 1, _config(), "--interval", "5", log_dir=log_dir) as group:
            group.wait_ready(conn)
            for i in range(rounds):
                for security in ("off", "on") if i % 2 == 0 else ("on", "off"):
                    roles.apply(f"row_security={security}")
                    for how, measure in ways.items():
                        figures[how, security] += measure(app, samples // rounds)
    finally:
        roles.drop()
        server.drop(dsn)
    for (how, security), values in figures.items():
        label = f"enqueue -> known, {how}, enqueuer, RLS {security}"
        for q in (50, 99):
            run.add(Result("django", f"{label}, p{q}", percentile(values, q), "ms"))
        run.add(Result("django", f"{label}, max", max(values), "ms", note=f"{len(values)} jobs"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clients_django", description=__doc__)
    parser.add_argument("--samples", type=int, default=200, help="jobs per way and setting (default 200)")
    parser.add_argument("--json", type=Path, default=RESULTS / "clients-django.json")
    args = parser.parse_args(argv)
    server = Server()
    run = Run(mode="quick", server=server.source)
    began = time.monotonic()
    print(f"bench: Django client on the {server.source} server, {args.samples} jobs per way")
    try:
        run_django(run, server, QUICK, RESULTS / "logs", samples=args.samples)
    finally:
        server.close()
        run.seconds = round(time.monotonic() - began, 1)
        run.write(args.json)
    print(f"bench: {run.seconds:.0f} s; results in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
