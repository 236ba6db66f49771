"""`job_cron demo`: one command on a fresh machine, from nothing to processed sample jobs."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import click

from jobcron import logs
from jobcron.cli.common import EXIT_ERROR, CliState, fail, handled, load_or_exit
from jobcron.cli.render import echo
from jobcron.daemon import signals
from jobcron.dev.demo import DEFAULT_JOB_TYPE, DEFAULT_STATE_DIR, SAMPLES_DIR, DemoOptions, run_demo


@click.command("demo")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE_DIR,
    show_default=True,
    help="Folder of the embedded PostgreSQL (used only without DATABASE_URL); kept between runs.",
)
@click.option("--reset", is_flag=True, help="Delete the embedded state first and start from scratch.")
@click.option("--keep-running", is_flag=True, help="Go on as a daemon after the samples, until Ctrl-C.")
@click.option(
    "--job-type", default=DEFAULT_JOB_TYPE, show_default=True, help="Workflow to run on each sample."
)
@click.option(
    "--samples",
    "samples_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=SAMPLES_DIR,
    help="Folder of data files to enqueue (default: the bundled samples).",
)
@click.option("--interval", type=click.FloatRange(min=0.01), default=None, help="Polling fallback, seconds.")
@click.option("--max-jobs", type=click.IntRange(min=1), default=None, help="Stop after N jobs.")
@click.option("--worker-id", envvar="JOB_CRON_WORKER_ID", default=None, help="Name in job_workers.")
@click.option("--no-listen", is_flag=True, default=False, help="Poll only (for transaction-mode poolers).")
@click.pass_obj
def demo_cmd(
    state: CliState,
    state_dir: Path,
    reset: bool,
    keep_running: bool,
    job_type: str,
    samples_dir: Path,
    interval: float | None,
    max_jobs: int | None,
    worker_id: str | None,
    no_listen: bool,
) -> None:
    """Process the sample files with a real worker and show what was found.

    Without DATABASE_URL / POSTGRES_URL an embedded PostgreSQL runs in --state-dir.
    """
    daemon: dict[str, Any] = {"interval_seconds": interval}
    if no_listen:
        daemon["listen"] = False
    # the workflow may read only the sample folder
    processing = {"file_root": str(samples_dir.resolve())}
    config = load_or_exit(state, daemon=daemon, job_processing=processing)
    if not keep_running and "level" not in state.overrides.get("logging", {}):
        # the summary is the output of a one-off run; routine log lines would bury it
        config = dataclasses.replace(config, logging=dataclasses.replace(config.logging, level="warning"))
        logs.configure(config.logging.level, config.logging.format)
    options = DemoOptions(
        state_dir=state_dir,
        reset=reset,
        keep_running=keep_running,
        job_type=job_type,
        samples_dir=samples_dir,
        max_jobs=max_jobs,
        worker_id=worker_id,
    )
    with handled(config):
        try:
            code = run_demo(config, options, echo, install_signals=signals.install)
        except KeyboardInterrupt:
            # Ctrl-C before the worker took over the signals (the server start); the server is stopped
            fail("interrupted before the daemon started", EXIT_ERROR)
        sys.exit(code)
