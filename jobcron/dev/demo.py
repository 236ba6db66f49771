"""The first run: a database (embedded when none is configured), sample jobs, a real worker, a summary."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.util
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobcron import migrate, store
from jobcron.config import Config, redact_url
from jobcron.daemon.sdnotify import Notifier
from jobcron.daemon.worker import Worker
from jobcron.db import connect
from jobcron.errors import ConfigError, JobCronError, MigrationError, SchemaOutOfDate
from jobcron.models import ClaimedJob
from jobcron.terminal import printable
from jobcron.workflows import Registry

DEFAULT_STATE_DIR = Path(".state/demo-pg")
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "data" / "samples"
DEFAULT_JOB_TYPE = "analysis"
# what an embedded state folder holds (docs/embedded.md); --reset deletes nothing else
_STATE_MARKERS = ("pgdata", "pgdata.init", "server.log", "embedded.lock")
_TEXT_KEYS = ("summary", "headline", "title", "message", "text", "description", "finding")
_LINE_WIDTH = 100
LINES_PER_FILE = 5
ENQUEUE_EXAMPLE = "INSERT INTO processing_jobs (job_type) VALUES ('noop')"

Out = Callable[[str], None]


@dataclass(frozen=True)
class DemoOptions:
    """What `job_cron demo` was asked to do."""

    state_dir: Path = DEFAULT_STATE_DIR
    reset: bool = False
    keep_running: bool = False
    job_type: str = DEFAULT_JOB_TYPE
    samples_dir: Path = SAMPLES_DIR
    max_jobs: int | None = None
    worker_id: str | None = None


@dataclass
class JobReport:
    """What one sample job did."""

    job_id: str
    file_name: str
    status: str
    seconds: float | None
    error: str | None
    # the workflow's own ranking (`result.highlights`), when it gives one
    highlights: list[str] = field(default_factory=list)
    insights: list[str] = field(default_factory=list)


def sample_files(folder: Path) -> list[Path]:
    """The bundled data files (a README or hidden file is not a sample)."""
    if not folder.is_dir():
        raise JobCronError(f"no sample folder at {folder}")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.upper().startswith("README")
    )
    if not files:
        raise JobCronError(f"no sample files in {folder}")
    return files


def reset_state(state_dir: Path) -> bool:
    """Delete an embedded state folder that no process is using; True when something was deleted."""
    if not state_dir.exists():
        return False
    entries = {p.name for p in state_dir.iterdir()}
    if entries and not entries.intersection(_STATE_MARKERS):
        # a mistyped --state-dir must never wipe an unrelated folder
        raise JobCronError(f"--reset: {state_dir} does not look like a demo state folder; not deleting it")
    lock = state_dir / "embedded.lock"
    if lock.exists():
        with lock.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JobCronError(f"--reset: {state_dir} is in use by another process") from None
    shutil.rmtree(state_dir)
    return True


@contextlib.contextmanager
def database(config: Config, options: DemoOptions, out: Out) -> Iterator[Config]:
    """The configured database, else an embedded server in the state folder (stopped on exit)."""
    if config.database.url:
        if options.reset:
            raise ConfigError("--reset only wipes the embedded demo state; unset DATABASE_URL to use it")
        out(f"database: {redact_url(config.database.url)} (from the configuration; nothing embedded)")
        yield config
        return
    from jobcron.dev.embedded import EmbeddedServer

    if options.reset and reset_state(options.state_dir):
        out(f"reset: deleted {options.state_dir}")
    fresh = not (options.state_dir / "pgdata").is_dir()
    began = time.monotonic()
    server = EmbeddedServer(options.state_dir)
    dsn = server.start()
    took = time.monotonic() - began
    what = "created" if fresh else "reused"
    out(f"database: embedded PostgreSQL in {options.state_dir} ({what}, ready in {took:.1f} s): {dsn}")
    try:
        yield dataclasses.replace(config, database=dataclasses.replace(config.database, url=dsn))
    finally:
        server.stop()


def enqueue_samples(config: Config, files: list[Path], job_type: str) -> dict[str, str]:
    """Register each file (once) and enqueue one job for it; returns job id -> file name."""
    jobs: dict[str, str] = {}
    with connect(config, purpose="demo") as conn:
        for path in files:
            file_path = str(path.resolve())
            file_id = store.demo_file_by_path(conn, file_path)
            if file_id is None:
                file_id = store.insert_file(conn, file_path, path.name, None, path.stat().st_size)
            job_id = store.insert_job(
                conn, job_type=job_type, file_id=file_id, business_description=f"demo: {path.name}"
            )
            if job_id is not None:
                jobs[job_id] = path.name
    return jobs


def collect(config: Config, jobs: dict[str, str]) -> list[JobReport]:
    """Read back the outcome and insights of the demo's jobs."""
    ids = list(jobs)
    with connect(config, purpose="demo") as conn:
        outcomes = store.demo_job_outcomes(conn, ids)
        insights = store.demo_insights(conn, ids)
    reports = {
        str(r["id"]): JobReport(
            job_id=str(r["id"]),
            file_name=r["original_name"] or jobs[str(r["id"])],
            status=r["status"],
            seconds=r["seconds"],
            error=r["error_message"],
            highlights=_highlights(r["result"]),
        )
        for r in outcomes
    }
    for row in insights:
        reports[str(row["job_id"])].insights.append(describe_insight(row))
    return sorted(reports.values(), key=lambda r: r.file_name)


def _highlights(result: Any) -> list[str]:
    items = result.get("highlights") if isinstance(result, dict) else None
    if not isinstance(items, list):
        return []
    return [_shorten(str(item), _LINE_WIDTH) for item in items if item]


def describe_insight(row: dict[str, Any]) -> str:
    """One short line for an insight row: its type, confidence and the gist of its content."""
    content = row["content"]
    gist: str | None = None
    if isinstance(content, dict):
        gist = next((str(content[k]) for k in _TEXT_KEYS if isinstance(content.get(k), str)), None)
    if gist is None:
        gist = json.dumps(content, default=str, separators=(", ", ": "))
    confidence = row["confidence_score"]
    label = str(row["insight_type"] or "insight")
    if confidence is not None:
        label += f" ({float(confidence):.0%})"
    return _shorten(f"{label}: {gist}", _LINE_WIDTH)


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render(reports: list[JobReport]) -> str:
    """The human summary printed at the end of the demo."""
    lines: list[str] = []
    for r in reports:
        took = f" in {r.seconds:.2f} s" if r.seconds is not None else ""
        found = f", {len(r.insights)} insights" if r.status == "completed" else ""
        lines.append(f"{printable(r.file_name)}: {r.status}{took}{found}")
        if r.error:
            lines.append(f"    error: {_shorten(r.error, _LINE_WIDTH)}")
        shown = (r.highlights or r.insights)[:LINES_PER_FILE]
        lines.extend(f"    - {text}" for text in shown)
    done = sum(r.status == "completed" for r in reports)
    total_insights = sum(len(r.insights) for r in reports)
    lines.append(f"{done}/{len(reports)} jobs completed, {total_insights} insights")
    return "\n".join(lines)


def run_demo(
    config: Config,
    options: DemoOptions,
    out: Out,
    *,
    install_signals: Callable[[Worker], object] | None = None,
) -> int:
    """The whole first run; 0 when every sample job completed (or the daemon was stopped cleanly)."""
    registered = Registry(config.workflows).names()
    if options.job_type not in registered:
        raise ConfigError(
            f"--job-type: no workflow {options.job_type!r} is registered (registered: {', '.join(registered)})"
        )
    files = sample_files(options.samples_dir)
    began = time.monotonic()
    embedded = not config.database.url
    with database(config, options, out) as config:
        try:
            with connect(config, purpose="migrate", lock_timeout=False) as conn:
                applied = migrate.migrate(conn)
        except (MigrationError, SchemaOutOfDate) as exc:
            if not embedded:
                raise
            # a state folder left by another version of jobcron: it is the demo's own to wipe
            raise type(exc)(f"{exc}; the demo state is from another version: rerun with --reset") from None
        out(f"schema: {len(applied)} migration(s) applied" if applied else "schema: up to date")
        jobs = enqueue_samples(config, files, options.job_type)
        out(f"enqueued {len(jobs)} {options.job_type} job(s), one per file in {options.samples_dir}")
        worker = Worker(
            config,
            worker_id=options.worker_id,
            max_jobs=options.max_jobs,
            once=not options.keep_running,
            notifier=Notifier(),
        )
        worker.on_job_start = lambda job: _announce(out, job, jobs)
        if options.keep_running:
            # a daemon that goes on: each file's findings as its job ends, not only at Ctrl-C
            worker.on_job_recorded = lambda job, _outcome: _findings(out, config, job, jobs)
        if install_signals is not None:
            install_signals(worker)
        if options.keep_running:
            url = redact_url(config.database.url) or ""
            out(
                f"daemon running as {worker.worker_id}; enqueue more with\n"
                f"  psql '{url}' -c \"{ENQUEUE_EXAMPLE}\"\n"
                f"{dashboard_hint(url)}"
                "Ctrl-C stops it cleanly"
            )
        code = worker.run()
        reports = collect(config, jobs)
    out(render(reports))
    out(f"demo finished in {time.monotonic() - began:.1f} s")
    if code != 0:
        return code
    stopped_early = options.keep_running or options.max_jobs is not None
    return 0 if stopped_early or all(r.status == "completed" for r in reports) else 1


def dashboard_hint(url: str) -> str:
    """How to watch this database in a browser, from another terminal, with this install's job_cron."""
    job_cron = Path(sys.executable).with_name("job_cron")
    command = str(job_cron) if job_cron.exists() else "job_cron"
    needs = "" if importlib.util.find_spec("fastapi") else " (after pip install 'jobcron[web]')"
    return (
        f"watch and steer it in a browser{needs}, from another terminal:\n"
        f"  export DATABASE_URL='{url}'\n"
        f"  {command} tokens create me --role admin   # the token is the last line\n"
        f"  {command} web                            # open http://127.0.0.1:8080 and log in with it\n"
    )


def _findings(out: Out, config: Config, job: ClaimedJob, jobs: dict[str, str]) -> None:
    """One sample's report, as soon as its job has ended (a retry is not an end)."""
    if job.id not in jobs:
        return
    (report,) = collect(config, {job.id: jobs[job.id]})
    if report.status in ("completed", "failed", "cancelled"):
        out(render([report]).rsplit("\n", 1)[0])  # without the totals line: that comes at the end


def _announce(out: Out, job: ClaimedJob, jobs: dict[str, str]) -> None:
    name = jobs.get(job.id)
    out(f"running {job.job_type} on {name}" if name else f"running {job.job_type} job {job.id}")
