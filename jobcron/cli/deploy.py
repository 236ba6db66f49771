"""`job_cron deploy`: the deployment files the package carries (the repository's deploy/), printed or
installed, so that a pip-installed jobcron and `scripts/start_job_cron.sh prod` install the same files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import click

from jobcron.cli.common import CliState, load_or_exit
from jobcron.db import scrub, without_password

# name -> the file inside jobcron/deploy
FILES = {
    "systemd": "systemd/job_cron.service",
    "systemd-instance": "systemd/job_cron@.service",
    "systemd-web": "systemd/job_cron-web.service",
    "roles": "sql/roles.sql",
    "env": "job_cron.env.example",
    "config": "config.json",
    "compose": "docker/compose.yaml",
    "dockerfile": "docker/Dockerfile",
}
UNITS = ("systemd", "systemd-instance", "systemd-web")
# where the units say the venv is; rewritten to the venv that runs this command
UNIT_VENV = "/opt/jobcron/"


def deploy_file(name: str) -> Traversable:
    """A deploy file of the installed package."""
    return resources.files("jobcron").joinpath("deploy", *FILES[name].split("/"))


def text_of(name: str, venv: str | None = None) -> str:
    """A deploy file's text; a unit's paths point into `venv` (default: the venv running jobcron)."""
    text = deploy_file(name).read_text(encoding="utf-8")
    if name in UNITS:
        text = text.replace(UNIT_VENV, f"{(venv or sys.prefix).rstrip('/')}/")
    return text


@click.group("deploy")
def deploy_group() -> None:
    """The deployment files this jobcron carries: units, roles SQL, env example, config, containers."""


@deploy_group.command("list")
def deploy_list() -> None:
    """Each file's name for `deploy show`, and where it is in the package."""
    for name, path in FILES.items():
        click.echo(f"{name:<17} {deploy_file(name)}  ({path})")


@deploy_group.command("show")
@click.argument("name", type=click.Choice(list(FILES)))
@click.option("--venv", default=None, help="Units: the venv their ExecStart runs from (default: this one).")
def deploy_show(name: str, venv: str | None) -> None:
    """Print one file (pipe `show roles` to psql; `show systemd` has this venv's job_cron in ExecStart)."""
    click.echo(text_of(name, venv), nl=False)


@deploy_group.command("install")
@click.option(
    "--prefix", default="/", show_default=True, help="Root to install under (a staging folder, or /)."
)
@click.option("--venv", default=None, help="The venv the units run job_cron from (default: this one).")
def deploy_install(prefix: str, venv: str | None) -> None:
    """Install the systemd units, /etc/job_cron/job_cron.env (0600, never overwritten; DATABASE_URL of
    this environment goes into it, never to the terminal) and /etc/job_cron/config.json (never
    overwritten) under PREFIX."""
    root = Path(prefix)
    venv = venv or sys.prefix
    if not os.path.isabs(venv):
        raise click.UsageError(f"--venv: expected an absolute path, got {venv!r}")
    units = root / "etc" / "systemd" / "system"
    etc = root / "etc" / "job_cron"
    units.mkdir(parents=True, exist_ok=True, mode=0o755)
    etc.mkdir(parents=True, exist_ok=True, mode=0o755)
    for name in UNITS:
        target = units / Path(FILES[name]).name
        _write(target, text_of(name, venv), 0o644)
        click.echo(f"installed {target}")
    env = etc / "job_cron.env"
    if env.exists():
        click.echo(f"kept {env} (it may hold secrets; never overwritten)")
    else:
        text = text_of("env")
        url = os.environ.get("DATABASE_URL")
        if url:
            text = "".join(
                f"DATABASE_URL={url}\n" if line.startswith("DATABASE_URL=") else line
                for line in text.splitlines(keepends=True)
            )
        _write(env, text, 0o600)
        click.echo(f"installed {env} (mode 0600)")
    config = etc / "config.json"
    if config.exists():
        click.echo(f"kept {config}")
    else:
        _write(config, text_of("config"), 0o644)
        click.echo(f"installed {config}")


@deploy_group.command("roles")
@click.option("--worker-role", default="jobcron_worker", show_default=True, help="The daemon's group role.")
@click.option(
    "--enqueuer-role", default="jobcron_enqueuer", show_default=True, help="Applications' group role."
)
@click.option(
    "--row-security", is_flag=True, help="Each enqueuing login role sees only the jobs it enqueued."
)
@click.pass_obj
def deploy_roles(state: CliState, worker_role: str, enqueuer_role: str, row_security: bool) -> None:
    """Apply the package's roles SQL to the configured database with psql, as the owner of the tables
    (the role that ran `job_cron migrate`); idempotent, run it again after every migration."""
    config = load_or_exit(state)
    psql = shutil.which("psql")
    if psql is None:
        raise click.ClickException(
            "psql not found: install PostgreSQL's client, or pipe `job_cron deploy show roles` into psql "
            "on a host that has it"
        )
    url = config.database.url
    if not url:
        raise click.UsageError("no database: set DATABASE_URL (the owner's) or --database-url")
    variables = {
        "worker_role": worker_role,
        "enqueuer_role": enqueuer_role,
        "schema": config.database.schema or "public",
        "row_security": "on" if row_security else "off",
    }
    dsn, password = without_password(url)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    with resources.as_file(deploy_file("roles")) as script:
        args = [psql, "-X", "-q", "-d", dsn, "-f", str(script)]
        for name, value in variables.items():
            args += ["-v", f"{name}={value}"]
        done = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise click.ClickException("roles SQL failed: " + scrub(done.stderr.strip(), url)[-1500:])
    click.echo(
        f"roles applied: {worker_role} (the daemon), {enqueuer_role} (applications), "
        f"row security {variables['row_security']}; grant them to login roles (GRANT {worker_role} TO ...)"
    )


def _write(path: Path, text: str, mode: int) -> None:
    """Write through a temporary file created with its final mode (a secret is never world-readable)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


__all__ = ["FILES", "deploy_group", "text_of"]
