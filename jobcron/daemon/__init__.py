"""The daemon: the loop, the running job, the periodic duties, execution inline and in a job process.

`serve()` is the one place that puts a daemon together: config -> worker (its state, main connection,
housekeeper and watchdog threads, listener) -> metrics -> signal handlers -> sd_notify -> the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobcron.config import Config
from jobcron.errors import ConfigError

if TYPE_CHECKING:
    from jobcron.daemon.worker import Worker


@dataclass(frozen=True)
class ServeOptions:
    """What `job_cron run`'s flags ask of a daemon beyond its config."""

    worker_id: str | None = None
    max_jobs: int | None = None
    once: bool = False
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"
    health_port: int | None = None
    health_addr: str = "127.0.0.1"


def serve(config: Config, options: ServeOptions, reload_config: Callable[[], Config] | None = None) -> int:
    """Run one daemon until it stops; its exit code. ConfigError for what the operator must fix."""
    from jobcron.daemon import signals
    from jobcron.daemon.sdnotify import Notifier
    from jobcron.daemon.worker import Worker

    notifier = Notifier()
    worker = Worker(
        config,
        worker_id=options.worker_id,
        max_jobs=options.max_jobs,
        once=options.once,
        reload_config=reload_config,
        notifier=notifier,
    )
    if options.metrics_port is not None:
        _serve_metrics(worker, options.metrics_port, options.metrics_addr)
    if options.health_port is not None:
        _serve_probes(worker, options.health_port, options.health_addr)
    restore_signals = signals.install(worker)
    try:
        return worker.run()
    finally:
        restore_signals()
        notifier.close()


def _serve_probes(worker: Worker, port: int, addr: str) -> None:
    from jobcron.daemon.probes import LIVENESS_SECONDS, Probes, serve_routes

    probes = Probes(worker)
    try:
        serve_routes(addr, port, probes.routes(), "jobcron-probes")
    except OSError as exc:
        raise ConfigError(f"--health-port: cannot listen on {addr}:{port}: {exc.strerror or exc}") from None
    worker.liveness_seconds = LIVENESS_SECONDS


def _serve_metrics(worker: Worker, port: int, addr: str) -> None:
    try:
        from jobcron.daemon.maintenance import Every
        from jobcron.daemon.metrics import SAMPLE_SECONDS, Metrics
        from jobcron.daemon.metrics import serve as serve_http
    except ImportError:
        raise ConfigError(
            "--metrics-port needs the prometheus-client package: pip install 'jobcron[metrics]'"
        ) from None
    metrics = Metrics(worker.registry.names())
    try:
        serve_http(metrics, port, addr)
    except OSError as exc:
        raise ConfigError(f"--metrics-port: cannot listen on {addr}:{port}: {exc.strerror or exc}") from None
    worker.use_metrics(metrics)
    worker.maintenance.add_duty(Every("metrics_sample", SAMPLE_SECONDS, metrics.sample))


__all__ = ["ServeOptions", "serve"]
