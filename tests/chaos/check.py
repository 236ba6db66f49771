"""What a chaos run must show: no job lost, results recorded once, every re-run explained, the limit held.

`check(recorded)` reads the database, the executions file the workflow wrote and the chaos log of
signals and restarts, and returns a Report: `violations` (each one a sentence naming the job, the
process and the times) and `figures`. Nothing here trusts the daemons' own logs for the verdicts.
"""

from __future__ import annotations

import json
import signal
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.chaos.run import Proc, Recorded

DESIGNED_TO_FAIL = frozenset({"always", "permanent", "unknown_type"})
# an execution that ended this little before its daemon was SIGKILLed may not have been recorded
RECORD_WINDOW_SECONDS = 2.0
SIGNAL_SLACK_SECONDS = 0.5
# a record that failed in a server outage is retried after the reconnect backoff (at most ~5 s)
OUTAGE_RECORD_SECONDS = 15.0
MAX_LISTED = 15


@dataclass
class Execution:
    """One run of the workflow for one job, as the workflow recorded it."""

    job: str
    attempt: int
    pid: int
    user: str | None
    start_mono: float
    start_epoch: float
    end_mono: float | None = None
    end_epoch: float | None = None
    outcome: str | None = None  # None: the process died before the workflow ended
    why_interrupted: str | None = None


@dataclass
class Report:
    """The verdicts and the figures of one run."""

    violations: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, text: str) -> None:
        """Note one broken promise."""
        self.violations.append(text)

    def render(self) -> str:
        """The figures and the verdict, for a terminal or a test failure message."""
        width = max(len(k) for k in self.figures) if self.figures else 0
        lines = [f"  {k:<{width}}  {v}" for k, v in self.figures.items()]
        if self.violations:
            lines.append(f"VIOLATIONS ({len(self.violations)}):")
            lines += [f"  - {v}" for v in self.violations[:50]]
            if len(self.violations) > 50:
                lines.append(f"  ... and {len(self.violations) - 50} more")
        else:
            lines.append("no violations: no job lost, results recorded once, re-runs explained, limit held")
        return "\n".join(lines)


def read_executions(path: Path) -> list[Execution]:
    """Pair each `start` line with its `end` line (same job, pid and attempt, in order)."""
    executions: list[Execution] = []
    open_runs: dict[tuple[str, int, int], list[Execution]] = defaultdict(list)
    if not path.exists():
        return executions
    for raw in path.read_text().splitlines():
        line = json.loads(raw)
        key = (line["job"], line["pid"], line["attempt"])
        if line["ev"] == "start":
            run = Execution(
                line["job"], line["attempt"], line["pid"], line["user"], line["mono"], line["epoch"]
            )
            executions.append(run)
            open_runs[key].append(run)
        elif open_runs[key]:
            run = open_runs[key].pop(0)
            run.end_mono, run.end_epoch, run.outcome = line["mono"], line["epoch"], line["outcome"]
    return executions


def _signal_after(proc: Proc | None, since: float, names: tuple[str, ...]) -> tuple[str, float] | None:
    """The first of these signals the process got after `since` (a run's start or end).

    The chaos loop notes a signal just before sending it, so a run may start in the instant between
    the note and the delivery: a signal noted up to SIGNAL_SLACK_SECONDS earlier counts, as long as
    the run started before the process died.
    """
    if proc is None or (proc.exited_mono is not None and since > proc.exited_mono):
        return None
    for name, mono, _epoch in proc.signals:
        if name in names and mono >= since - SIGNAL_SLACK_SECONDS:
            return name, mono
    return None


def _server_outages(rec: Recorded) -> list[tuple[float, float]]:
    begins = [e["mono"] for e in rec.events if e["kind"].endswith("_begin")]
    ends = [e["mono"] for e in rec.events if e["kind"] in ("server_restart", "server_crash")]
    return list(zip(begins, ends, strict=False))


def was_recorded(run: Execution, row: dict[str, Any] | None, runs: list[Execution], rec: Recorded) -> bool:
    """Whether this run's outcome is the one the database holds (its success, or its failure in the history)."""
    if row is None or run.outcome is None:
        return False
    if run.outcome == "ok":
        res = row["result"] or {}
        return bool(
            row["status"] == "completed" and res.get("pid") == run.pid and res.get("start") == run.start_epoch
        )

    def worker(r: Execution) -> str | None:
        proc = rec.procs.get(r.pid)
        return proc.worker_id if proc else None

    # a failure's history entry is written moments after its run ended; a run put back uncharged and run
    # again by the same daemon has the same attempt, worker and type, so each entry goes to the run that
    # ended last before it
    for e in row["errors"]:
        if (e.get("attempt"), e.get("worker"), e.get("type")) != (run.attempt, worker(run), run.outcome):
            continue
        at = datetime.fromisoformat(e["at"]).timestamp()
        before = [
            r
            for r in runs
            if (r.attempt, worker(r), r.outcome) == (run.attempt, worker(run), run.outcome)
            and r.end_epoch is not None
            and r.end_epoch <= at + 0.05
        ]
        if before and max(before, key=lambda r: r.end_epoch or 0.0) is run:
            return True
    return False


def classify(run: Execution, rec: Recorded, cancelled: set[str], recorded: bool) -> str | None:
    """Why an execution did not count (None: its outcome is the one recorded, or it was cancelled)."""
    proc = rec.procs.get(run.pid)
    if run.outcome is None:
        hit = _signal_after(proc, run.start_mono, ("SIGKILL", "SIGTERM"))
        if hit is not None:
            return f"process {hit[0]}"
        return "vanished"  # the process died without the chaos loop touching it
    if run.outcome == "stopped":
        return "SIGTERM put back" if _signal_after(proc, run.start_mono, ("SIGTERM",)) else "stopped unasked"
    end = run.end_mono if run.end_mono is not None else run.start_mono
    outages = _server_outages(rec)
    if run.outcome == "cancelled":
        if run.job in cancelled:
            return None
        # the worker lost its lease (it was rescued while running): explained only by a server outage
        overlaps = any(b <= end and e >= run.start_mono for b, e in outages)
        return "lease lost in a server outage" if overlaps else "lease lost"
    if recorded:
        return None
    hit = _signal_after(proc, end, ("SIGKILL",))
    if hit is not None and hit[1] - end <= RECORD_WINDOW_SECONDS:
        return "SIGKILL before the record"
    if any(b - 1 <= end <= e + OUTAGE_RECORD_SECONDS for b, e in outages):
        return "record cut by a server restart"
    return "not recorded"


def designed_executions(job: dict[str, Any]) -> int:
    """How many executions the job needs when nothing goes wrong."""
    meta = job["metadata"]
    return {
        "never": 1,
        "flaky": int(meta.get("failures", 1)) + 1,
        "always": int(job["max_retries"]) + 1,
        "permanent": 1,
        "unknown_type": 0,
    }[meta["fail"]]


def log_events(rec: Recorded, names: tuple[str, ...]) -> dict[str, int]:
    """How often the daemons logged these events (all their logs together)."""
    counts: Counter[str] = Counter()
    for proc in rec.procs.values():
        if not proc.log.exists():
            continue
        for raw in proc.log.read_text().splitlines():
            for name in names:
                if f'"event": "{name}"' in raw:
                    counts[name] += 1
    return {name: counts[name] for name in names}


def _death(proc: Proc | None) -> float | None:
    return None if proc is None else proc.exited_mono


def user_peaks(runs: list[Execution], rec: Recorded) -> tuple[dict[str, int], list[str]]:
    """Most executions of one user at once, from the recorded start/end times, and any overlap past the limit."""
    by_user: dict[str, list[tuple[float, int, Execution]]] = defaultdict(list)
    problems: list[str] = []
    for run in runs:
        if run.user is None:
            continue
        end = run.end_mono if run.end_mono is not None else _death(rec.procs.get(run.pid))
        if end is None:
            problems.append(
                f"job {run.job}: execution on pid {run.pid} has no end and its process never died"
            )
            continue
        # ends sort before starts at the same instant: a slot handed over is not an overlap
        by_user[run.user] += [(run.start_mono, 1, run), (end, 0, run)]
    peaks: dict[str, int] = {}
    limit = rec.settings.user_limit
    for user, points in by_user.items():
        points.sort(key=lambda p: (p[0], p[1]))
        running: set[int] = set()
        peak = 0
        for _t, kind, run in points:
            if kind == 1:
                running.add(id(run))
                peak = max(peak, len(running))
                if len(running) > limit and len(problems) < MAX_LISTED:
                    problems.append(
                        f"user {user}: {len(running)} executions at once (limit {limit}), "
                        f"one of them job {run.job} attempt {run.attempt} on pid {run.pid}"
                    )
            else:
                running.discard(id(run))
        peaks[user] = peak
    return peaks, problems


def check(rec: Recorded) -> Report:
    """Read everything back and judge the run."""
    report = Report()
    with psycopg.connect(rec.dsn, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT id::text AS id, status, job_type, attempts, retry_count, result, cancel_requested,"
            " extract(epoch FROM completed_at)::float8 AS completed_epoch,"
            " (SELECT count(*) FROM insights i WHERE i.job_id = j.id) AS insights,"
            " (SELECT coalesce(jsonb_agg(e ->> 'type'), '[]') FROM jsonb_array_elements(j.errors) e) AS error_types,"
            " j.errors"
            " FROM processing_jobs j"
        ).fetchall()
        stray_insights = conn.execute(
            "SELECT count(*) AS n FROM insights i"
            " WHERE i.job_id IS NULL OR NOT EXISTS (SELECT 1 FROM processing_jobs j WHERE j.id = i.job_id)"
        ).fetchone()
    db = {r["id"]: r for r in rows}
    runs = read_executions(rec.exec_log)
    by_job: dict[str, list[Execution]] = defaultdict(list)
    for run in runs:
        by_job[run.job].append(run)
    cancelled = rec.cancel_attempted

    # no job lost: every planned job is there and finished as designed
    statuses: Counter[str] = Counter()
    for job_id, job in rec.plan.items():
        row = db.get(job_id)
        design = job["metadata"]["fail"]
        if row is None:
            report.add(f"job {job_id} ({design}) lost: not in processing_jobs")
            continue
        status = row["status"]
        statuses[status] += 1
        if status in ("pending", "processing"):
            report.add(f"job {job_id} ({design}) left {status} (attempts {row['attempts']})")
        elif status == "cancelled" and job_id not in cancelled:
            report.add(f"job {job_id} ({design}) cancelled though nobody cancelled it")
        elif status == "failed" and design not in DESIGNED_TO_FAIL and job_id not in cancelled:
            report.add(f"job {job_id} ({design}) failed: {row['error_types']}")
        elif status == "completed" and design in DESIGNED_TO_FAIL:
            report.add(f"job {job_id} designed to fail ({design}) completed")
    for job_id in db.keys() - rec.plan.keys():
        report.add(f"job {job_id} in the database was never enqueued")

    # results exactly once: one insight per completed job, none for the others, and it came from a real run
    for job_id, row in db.items():
        want = 1 if row["status"] == "completed" else 0
        if row["insights"] != want:
            report.add(
                f"job {job_id} ({row['status']}) has {row['insights']} insight row(s), expected {want}"
            )
        if row["status"] == "completed":
            res = row["result"] or {}
            match = [
                r
                for r in by_job.get(job_id, [])
                if r.pid == res.get("pid") and r.start_epoch == res.get("start") and r.outcome == "ok"
            ]
            if not match:
                report.add(f"job {job_id} completed with result {res} that no successful execution produced")
    if stray_insights and stray_insights["n"]:
        report.add(f"{stray_insights['n']} insight row(s) belong to no job")

    # executions >= completions, every extra one explained by a kill, a stop or a lost record
    reasons: Counter[str] = Counter()
    re_executions = 0
    for job_id, job in rec.plan.items():
        job_runs = by_job.get(job_id, [])
        row = db.get(job_id)
        for run in job_runs:
            recorded = was_recorded(run, row, job_runs, rec)
            run.why_interrupted = classify(run, rec, cancelled, recorded)
            if run.why_interrupted:
                reasons[run.why_interrupted] += 1
                if run.why_interrupted in ("vanished", "stopped unasked", "lease lost", "not recorded"):
                    report.add(f"job {job_id} attempt {run.attempt} on pid {run.pid}: {run.why_interrupted}")
            if row and row["completed_epoch"] and run.start_epoch > row["completed_epoch"]:
                report.add(f"job {job_id} ran again (pid {run.pid}) after it was finished")
        if row is None or (row["status"] == "completed" and not job_runs):
            if row is not None:
                report.add(f"job {job_id} completed without any execution")
            continue
        extra = len(job_runs) - designed_executions(job)
        if extra > 0:
            re_executions += extra
            explained = sum(1 for r in job_runs if r.why_interrupted)
            if extra > explained and job_id not in cancelled:
                report.add(
                    f"job {job_id} ({job['metadata']['fail']}) ran {len(job_runs)} times, {extra} more than "
                    f"designed, but only {explained} run(s) were interrupted"
                )

    # the per-user limit, from the recorded start and end times
    peaks, problems = user_peaks(runs, rec)
    for problem in problems:
        report.add(problem)

    # the daemons: a SIGTERM ends in exit 0; nothing dies unless the chaos loop killed it
    for proc in rec.procs.values():
        names = [s[0] for s in proc.signals]
        if proc.returncode is None:
            report.add(f"daemon pid {proc.pid} ({proc.worker_id}) never exited")
        elif "SIGKILL" in names:
            continue
        elif proc.returncode == -signal.SIGTERM and '"worker_started"' not in proc.log.read_text():
            continue  # SIGTERM before the daemon was up: Python's default action, nothing was claimed yet
        elif proc.returncode != 0:
            report.add(
                f"daemon pid {proc.pid} ({proc.worker_id}) exited {proc.returncode} after {names or 'no signal'}"
            )
        elif not names:
            report.add(f"daemon pid {proc.pid} ({proc.worker_id}) exited on its own")

    if not rec.drained:
        report.add(f"the queue did not drain within {rec.settings.drain_timeout:g}s after the chaos")

    signals = Counter(s[0] for p in rec.procs.values() for s in p.signals)
    kinds = Counter(e["kind"] for e in rec.events)
    error_types = Counter(t for r in db.values() for t in r["error_types"])
    completed_epochs = [r["completed_epoch"] for r in db.values() if r["completed_epoch"]]
    last_done = max(completed_epochs) if completed_epochs else rec.last_fault_epoch
    same_id = sum(1 for e in rec.events if e["kind"] == "daemon_started" and e["same_id"])
    report.figures = {
        "jobs": len(rec.plan),
        "final statuses": dict(sorted(statuses.items())),
        "designed": dict(sorted(Counter(j["metadata"]["fail"] for j in rec.plan.values()).items())),
        "daemons": rec.settings.daemons,
        "daemon starts": kinds["daemon_started"],
        "restarts under the same worker id": same_id - rec.settings.daemons,
        "SIGKILLs": signals["SIGKILL"],
        "SIGTERMs": signals["SIGTERM"],
        "server restarts": f"{kinds['server_restart'] + kinds['server_crash']} "
        f"({kinds['server_restart']} clean, {kinds['server_crash']} crash)",
        "cancels requested": len(cancelled),
        "executions": len(runs),
        "completions": statuses["completed"],
        "re-executions": re_executions,
        "interrupted executions": dict(sorted(reasons.items())),
        "daemon log events": log_events(
            rec, ("jobs_rescued", "jobs_rescued_at_start", "jobs_released", "lease_lost", "db_reconnected")
        ),
        "SIGTERMs that needed a SIGKILL": kinds["sigterm_ignored"],
        "rescues (WorkerLost)": error_types["WorkerLost"],
        "put back at SIGTERM (Interrupted)": error_types["Interrupted"],
        "most runs of one user at once": f"{max(peaks.values(), default=0)} (limit {rec.settings.user_limit})",
        "chaos seconds": round(rec.chaos_end_mono - rec.started_mono, 1),
        "unfinished at the last fault": rec.backlog_at_last_fault,
        "drain after the last fault (s)": round(max(0.0, last_done - rec.last_fault_epoch), 1),
        "violations": len(report.violations),
    }
    return report
