"""The `job_cron` command line: parse, load config, call one function, map errors to exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from jobcron import logs, migrate
from jobcron.cli.common import EXIT_CONFIG, CliState, fail, handled, load_or_exit, open_db
from jobcron.cli.demo import demo_cmd
from jobcron.cli.deploy import deploy_group
from jobcron.cli.jobs import enqueue_cmd, jobs_group
from jobcron.cli.ops import health_cmd, pause_cmd, resume_cmd, status_cmd, workers_cmd
from jobcron.cli.schedules import schedules_group
from jobcron.cli.web import tokens_group, web_cmd
from jobcron.config import DEFAULT_CONFIG_PATH, config_as_dict
from jobcron.daemon import ServeOptions, serve
from jobcron.errors import ConfigError
from jobcron.workflows import Registry


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    envvar="JOB_CRON_CONFIG",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"Config file (default: ./{DEFAULT_CONFIG_PATH} when it exists). Env: JOB_CRON_CONFIG.",
)
@click.option("--database-url", default=None, help="PostgreSQL URL; overrides DATABASE_URL / POSTGRES_URL.")
@click.option("--log-level", type=click.Choice(list(logs.LEVELS)), default=None, help="Log level.")
@click.option(
    "--log-format", type=click.Choice(["auto", "console", "json"]), default=None, help="Log renderer."
)
@click.version_option(package_name="jobcron")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: str | None,
    database_url: str | None,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """job_cron: process jobs stored in PostgreSQL."""
    explicit = config_path is not None
    if config_path is None and Path(DEFAULT_CONFIG_PATH).is_file():
        config_path = DEFAULT_CONFIG_PATH
    state = CliState(config_path, explicit)
    if database_url:
        state.overrides.setdefault("database", {})["url"] = database_url
    if log_level:
        state.overrides.setdefault("logging", {})["level"] = log_level
    if log_format:
        state.overrides.setdefault("logging", {})["format"] = log_format
    ctx.obj = state
    try:
        config = state.load()
    except ConfigError:
        # `config check` reports it; other commands fail when they load
        logs.configure(log_level or "info", log_format or "auto")
        return
    logs.configure(config.logging.level, config.logging.format)


# --- migrate -----------------------------------------------------------------------------------------


@cli.command("migrate")
@click.option("--check", is_flag=True, help="Exit 3 when the schema is behind; change nothing.")
@click.option("--print-sql", "print_sql", is_flag=True, help="Print the SQL that would run; change nothing.")
@click.pass_obj
def migrate_cmd(state: CliState, check: bool, print_sql: bool) -> None:
    """Apply the schema migrations (safe to run from several hosts at once)."""
    config = load_or_exit(state)
    # no lock timeout: the migrators' advisory lock and the DDL must wait for what they wait for
    with handled(config), open_db(config, "migrate", lock_timeout=False) as conn:
        if config.database.schema and not (print_sql or check):
            migrate.ensure_schema(conn, config.database.schema)
        if print_sql:
            click.echo(migrate.pending_sql(conn) or "-- schema is up to date")
            return
        if check:
            current = migrate.check(conn)
            click.echo(f"schema is current (version {max(current.applied, default=0)})")
            return
        applied = migrate.migrate(conn)
        for m in applied:
            click.echo(f"applied {m.version:04d}_{m.name}")
        click.echo("schema is up to date" if not applied else f"{len(applied)} migration(s) applied")


# --- config ------------------------------------------------------------------------------------------


@cli.group("config")
def config_group() -> None:
    """Show or validate the effective configuration."""


@config_group.command("show")
@click.pass_obj
def config_show(state: CliState) -> None:
    """Print the effective config as JSON, with the database password redacted."""
    config = load_or_exit(state)
    click.echo(json.dumps(config_as_dict(config), indent=2, sort_keys=True))


@config_group.command("check")
@click.pass_obj
def config_check(state: CliState) -> None:
    """Validate config.json and the environment; exit 2 naming the bad key."""
    if state.explicit_config and state.config_path and not Path(state.config_path).is_file():
        fail(f"config file not found: {state.config_path}", EXIT_CONFIG)
    config = load_or_exit(state)
    # a workflow that cannot be imported would stop `run` at start: say so now, naming the key
    with handled(config):
        Registry(config.workflows, use_entry_points=False)
    click.echo(f"config ok ({state.config_path or 'built-in defaults'})")


# --- run ---------------------------------------------------------------------------------------------


@cli.command("run")
@click.option("--interval", type=click.FloatRange(min=0.01), default=None, help="Polling fallback, seconds.")
@click.option("--max-jobs", type=click.IntRange(min=1), default=None, help="Stop after N jobs.")
@click.option("--once", is_flag=True, help="Process what is due, then exit.")
@click.option("--worker-id", envvar="JOB_CRON_WORKER_ID", default=None, help="Name in job_workers.")
@click.option("--no-listen", is_flag=True, default=False, help="Poll only (for transaction-mode poolers).")
@click.option(
    "--metrics-port", type=click.IntRange(1, 65535), default=None, help="Serve Prometheus /metrics."
)
@click.option("--metrics-addr", default="127.0.0.1", show_default=True, help="Address for --metrics-port.")
@click.option(
    "--health-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve /livez (the loop is alive) and /readyz (database and schema) for orchestrators.",
)
@click.option("--health-addr", default="127.0.0.1", show_default=True, help="Address for --health-port.")
@click.pass_obj
def run_cmd(
    state: CliState,
    interval: float | None,
    max_jobs: int | None,
    once: bool,
    worker_id: str | None,
    no_listen: bool,
    metrics_port: int | None,
    metrics_addr: str,
    health_port: int | None,
    health_addr: str,
) -> None:
    """Run the daemon: claim, run and record jobs until SIGTERM."""
    daemon_flags: dict[str, Any] = {"interval_seconds": interval}
    if no_listen:
        daemon_flags["listen"] = False
    config = load_or_exit(state, daemon=daemon_flags)
    options = ServeOptions(worker_id, max_jobs, once, metrics_port, metrics_addr, health_port, health_addr)
    # from here on every error is one line and a documented exit code: building the worker imports
    # the configured workflows, and a traceback there would be a crash loop under Restart=on-failure
    with handled(config):
        sys.exit(serve(config, options, reload_config=lambda: state.load(daemon=daemon_flags)))


cli.add_command(demo_cmd)
cli.add_command(schedules_group)
cli.add_command(status_cmd)
cli.add_command(jobs_group)
cli.add_command(enqueue_cmd)
cli.add_command(workers_cmd)
cli.add_command(pause_cmd)
cli.add_command(resume_cmd)
cli.add_command(health_cmd)
cli.add_command(tokens_group)
cli.add_command(web_cmd)
cli.add_command(deploy_group)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="job_cron")
