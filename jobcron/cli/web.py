"""`job_cron tokens create|list|revoke` and `job_cron web`: the web surface's credentials and server."""

from __future__ import annotations

import click

from jobcron.admin import tokens as admin_tokens
from jobcron.cli.common import CliState, emit, fail, handled, invalid_input_exits, load_or_exit, open_db
from jobcron.terminal import printable


@click.group("tokens")
def tokens_group() -> None:
    """API tokens for `job_cron web` (viewer reads, admin acts)."""


@tokens_group.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(admin_tokens.ROLES), default="viewer", show_default=True)
@click.pass_obj
def tokens_create(state: CliState, name: str, role: str) -> None:
    """Make a token; it is printed once, on the last line, and only its hash is kept."""
    config = load_or_exit(state)
    with handled(config), invalid_input_exits(), open_db(config, "tokens") as conn:
        row, token = admin_tokens.create(conn, name, role)
    click.echo(f"token {printable(row['name'])} ({row['role']}) created; it is shown only now:", err=True)
    click.echo(token)


@tokens_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def tokens_list(state: CliState, as_json: bool) -> None:
    """Every token: name, role, created, last used, revoked (never the token)."""
    config = load_or_exit(state)
    with handled(config), open_db(config, "tokens") as conn:
        rows = admin_tokens.list_all(conn)
    data = [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items() if k != "id"}
        for r in rows
    ]

    def render(items: list[dict[str, object]]) -> str:
        lines = [f"{'NAME':24} {'ROLE':7} {'CREATED':26} {'LAST USED':26} REVOKED"]
        for t in items:
            lines.append(
                f"{printable(str(t['name'])):24} {t['role']!s:7} {t['created_at']!s:26} "
                f"{t['last_used_at'] or '-'!s:26} {t['revoked_at'] or '-'}"
            )
        return "\n".join(lines)

    emit(data, as_json, render)


@tokens_group.command("revoke")
@click.argument("name")
@click.pass_obj
def tokens_revoke(state: CliState, name: str) -> None:
    """Revoke the live token of NAME: requests carrying it get 401 from now on."""
    config = load_or_exit(state)
    with handled(config), open_db(config, "tokens") as conn:
        row = admin_tokens.revoke(conn, name)
    click.echo(f"token {printable(row['name'])} revoked")


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.pass_obj
def web_cmd(state: CliState, host: str, port: int) -> None:
    """Serve the HTTP API (and its OpenAPI page at /docs); needs `pip install 'jobcron[web]'`."""
    config = load_or_exit(state)
    try:
        from jobcron.web import serve
    except ImportError as exc:
        fail(f"job_cron web needs the web extra: pip install 'jobcron[web]' ({exc.name} is missing)", 2)
    with handled(config):
        serve(config, host, port)
