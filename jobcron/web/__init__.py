"""The web surface (`pip install 'jobcron[web]'`, `job_cron web`): an HTTP JSON API over the CLI's functions.

`create_app(config)` builds the ASGI application; `serve(config, host, port)` runs it with uvicorn.
docs/web.md documents the endpoints, the tokens and the choices made.
"""

from __future__ import annotations

from jobcron.config import Config


def serve(config: Config, host: str, port: int) -> None:
    """Run the web process until SIGTERM or Ctrl-C."""
    import uvicorn

    from jobcron.web.app import create_app

    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", access_log=False)


__all__ = ["serve"]
