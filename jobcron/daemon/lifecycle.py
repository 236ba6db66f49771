"""What happens when a daemon starts, reloads and stops: announce, helper threads, shutdown, grace.

The loop itself is worker.py; these steps run around it (and, for the grace, on the housekeeper's
thread).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from jobcron import __version__, logs, migrate, store
from jobcron.config import Config, config_as_dict
from jobcron.daemon.listener import Listener
from jobcron.daemon.maintenance import host_pid
from jobcron.daemon.outcomes import interrupted_outcome
from jobcron.daemon.state import Running
from jobcron.db import DATABASE_ERROR, DB_UNAVAILABLE, Connection, DatabaseRefused, retrying
from jobcron.errors import WorkerIdTaken

if TYPE_CHECKING:
    from jobcron.daemon.worker import Worker

EXIT_CLEAN = 0


def start(worker: Worker) -> bool:
    """Connect, check the schema, announce the worker and start the helper threads.

    While the server cannot be reached this waits (warning now and then), up to
    daemon.once_db_wait_seconds under --once; a refusal no retry can change (credentials, database
    name, startup options) raises DatabaseRefused at once. False: stopped before the server answered.
    """
    try:
        for attempt in retrying(
            worker.state.stop, on_retry=worker.db.on_retry, deadline=worker.db.deadline, refusals=False
        ):
            with attempt:
                announce(worker, worker.db.connection())
    except DatabaseRefused:
        raise
    except DB_UNAVAILABLE:
        if worker.stopping:
            return False
        raise
    if worker.db.outage is not None:
        worker.db.back()
    worker.db.lost = False  # the start's connection took the id and rescued: nothing to resync
    start_threads(worker)
    return True


def announce(worker: Worker, conn: Connection) -> None:
    """The start's database steps; each may run again on a new connection after a failure."""
    migrate.check(conn)
    # two live daemons under one id would rescue and release each other's jobs: refuse to start
    # (behind a transaction-mode pooler a session lock cannot be held: documented instead)
    if worker.config.database.prepared_statements and not store.worker_id_lock(conn, worker.worker_id):
        raise WorkerIdTaken(
            f"another daemon is running as worker id {worker.worker_id!r}; give each daemon its own --worker-id"
        )
    store.worker_register(conn, worker.worker_id, *host_pid(), "idle", __version__)
    sync_webhooks(worker, conn)
    # jobs an earlier run under this id left processing died with it: rescued now and charged
    # an attempt, so a job that kills its daemon cannot make it crash-loop forever
    rescued = worker.maintenance.rescue(conn, restarted_worker=worker.worker_id)
    if rescued:
        worker.log.warning("jobs_rescued_at_start", job_ids=rescued)
    if not worker.config.job_processing.auto_start_processing:
        # auto_start_processing false: processing does not start by itself when the system starts;
        # a daemon restarting into a live fleet must not pause what an operator resumed
        alive_within = 3 * worker.config.daemon.worker_heartbeat_seconds
        if store.pause_all_if_absent(conn, worker.worker_id, alive_within):
            worker.log.warning("worker_started_paused", hint="run `job_cron resume` to start processing")
    worker.state.paused = tuple(store.paused_types(conn))


def sync_webhooks(worker: Worker, conn: Connection) -> None:
    """The database's webhook subscriptions become this daemon's notifications.webhooks (its config wins:
    every daemon of a database should share one notifications section)."""
    hooks = [
        {
            "name": h.name,
            "events": list(h.events),
            "job_types": None if h.job_types is None else list(h.job_types),
            "max_retries": h.max_retries,
        }
        for h in worker.config.notifications.webhooks
    ]
    with conn.transaction():
        before = {row["name"] for row in store.webhooks_listed(conn)}
        changed = store.webhooks_sync(conn, hooks)
    if changed:
        dropped = sorted(before - {h["name"] for h in hooks})
        worker.log.info("webhooks_synced", webhooks=[h["name"] for h in hooks], dropped=dropped)


def start_threads(worker: Worker) -> None:
    worker.state.activity = "idle"
    worker.executor.warm_up()
    worker.maintenance.start()
    worker.watchdog.start()
    if worker.config.daemon.listen:
        worker.listener = Listener(
            worker.config,
            worker.state.wake,
            worker.log,
            on_cancel=worker.maintenance.lease.cancel_requested,
            on_control=lambda: control_changed(worker),
        )
        worker.listener.start()
    worker.log.info(
        "worker_started",
        config=loggable_config(worker.config),
        workflows=worker.registry.names(),
        listen=worker.config.daemon.listen,
    )
    worker.notifier.ready("idle")


def control_changed(worker: Worker) -> None:
    worker.state.pauses_dirty.set()
    worker.state.poke.set()
    worker.state.wake.set()


def reload(worker: Worker) -> None:
    worker.state.reload.clear()
    if worker.reload_config is None:
        return
    worker.notifier.reloading()
    try:
        new = worker.reload_config()
    except Exception as exc:  # a bad edit must not stop a running daemon
        worker.log.error("config_reload_failed", error=str(exc))
        # without READY=1 systemd would show the unit as reloading forever
        worker.notifier.ready("idle (config reload failed, old config kept)")
        return
    worker.config = worker.db.config = new
    worker.maintenance.reconfigure(new)
    worker.executor.configure(new)
    worker.executor.close()  # a job process with the new settings
    logs.configure(new.logging.level, new.logging.format)
    worker.executor.warm_up()
    worker.log.info("config_reloaded", config=loggable_config(new))
    worker.notifier.ready("idle")


def shutdown(worker: Worker) -> None:
    """Stop the threads, put back a prefetched job, remove the worker row."""
    worker.notifier.stopping()
    if worker.listener is not None:
        worker.listener.halt.set()
    worker.maintenance.halt.set()
    worker.state.poke.set()
    worker.close_job_process()
    if worker.maintenance.is_alive():
        # its statement in flight ends within the lock timeout (past the stop deadline the watchdog
        # cancels it); a halted housekeeper never registers the worker row again
        d = worker.config.database
        worker.maintenance.join(d.connect_timeout_seconds + d.lock_timeout_seconds + 1)
    try:
        worker.db.run(lambda conn: release_and_unregister(worker, conn), must_finish=True)
    except DATABASE_ERROR as exc:
        worker.log.error("unregister_failed", error=str(exc).strip()[:200])
    worker.db.drop()
    worker.watchdog.halt.set()
    worker.watchdog.poke.set()
    if worker.watchdog.is_alive():
        worker.watchdog.join(1.0)
    worker.log.info("worker_stopped", jobs_done=worker.jobs_done, exit_code=EXIT_CLEAN)


def release_and_unregister(worker: Worker, conn: Connection) -> None:
    worker.put_back_next(conn)
    store.worker_unregister(conn, worker.worker_id)


def end_at_grace(worker: Worker, conn: Connection | None, running: Running) -> None:
    """The shutdown grace ended with an inline job still running: put it back and end the process.

    Runs on the housekeeper's thread, on its connection: a thread cannot be killed, so ending the
    process is the interruption, once the job and the one claimed next are put back uncharged.
    """
    log = worker.log
    log.warning("shutdown_grace_expired", job_id=running.job.id)
    outcome = interrupted_outcome(running.job, worker.worker_id, "shutdown grace period expired")
    if conn is not None:
        try:
            store.finish(conn, running.job, outcome)
            worker.put_back_next(conn)
            store.worker_unregister(conn, worker.worker_id)
        except DATABASE_ERROR as exc:
            log.error("put_back_failed", error=str(exc).strip()[:200])
    log.info("job_interrupted", job_id=running.job.id)
    log.info("worker_stopped", jobs_done=worker.jobs_done, exit_code=EXIT_CLEAN)
    worker.notifier.stopping()
    os._exit(EXIT_CLEAN)


def loggable_config(config: Config) -> dict[str, Any]:
    data = config_as_dict(config)
    return {k: data[k] for k in ("database", "scheduler_settings", "job_processing", "daemon")}
