"""Schedules fire exactly once per occurrence, with a controllable clock and racing daemons."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from jobcron import store
from jobcron.schedules.firing import DUPLICATE, FAILED, FIRED, INVALID, PLANNED, SKIPPED, fire_due, first_run
from jobcron.schedules.rules import ScheduleSpec

Conn = psycopg.Connection[dict[str, Any]]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def add(conn: Conn, name: str, spec: ScheduleSpec, now: datetime = T0, **template: Any) -> int:
    fields: dict[str, Any] = {
        "name": name,
        "job_type": "noop",
        "metadata": {"from": name},
        "user_id": None,
        "priority": 0,
        "file_id": None,
        "business_description": None,
        "timeout_seconds": None,
        "max_retries": None,
        "kind": spec.kind,
        "run_at": spec.run_at,
        "interval_seconds": spec.interval_seconds,
        "time_of_day": spec.time_of_day,
        "weekdays": list(spec.weekdays) if spec.weekdays else None,
        "day_of_month": spec.day_of_month,
        "cron_expression": spec.cron_expression,
        "timezone": spec.timezone,
        "start_at": spec.start_at,
        "end_at": spec.end_at,
        "max_executions": spec.max_executions,
        "enabled": True,
        "next_run_at": first_run(spec, now),
        **template,
    }
    return store.schedule_insert(conn, fields)


def jobs_of(conn: Conn, schedule_id: int) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT id, job_type, metadata, priority, schedule_id FROM processing_jobs WHERE schedule_id = %s "
        "ORDER BY seq",
        (schedule_id,),
    ).fetchall()


def occurrences(conn: Conn, schedule_id: int) -> list[datetime]:
    return sorted(e["occurrence_at"] for e in store.schedule_executions(conn, schedule_id, 1000))


def tick(conn: Conn, start: datetime, stop: datetime, step: timedelta) -> None:
    """Check for due schedules at every step from start to stop, as a daemon would."""
    now = start
    while now <= stop:
        fire_due(conn, "w", now=now)
        now += step


def test_interval_fires_once_per_occurrence_and_records_it(conn: Conn) -> None:
    sid = add(conn, "every-5m", ScheduleSpec(kind="interval", interval_seconds=300, start_at=T0))
    assert fire_due(conn, "w", now=T0 - timedelta(seconds=1)) == []
    [fired] = fire_due(conn, "w1", now=T0)
    assert (fired.outcome, fired.occurrence_at, fired.next_run_at) == (FIRED, T0, T0 + timedelta(minutes=5))
    assert fire_due(conn, "w", now=T0 + timedelta(seconds=10)) == []  # same occurrence: nothing more
    assert len(fire_due(conn, "w2", now=T0 + timedelta(minutes=5))) == 1
    jobs = jobs_of(conn, sid)
    assert [j["metadata"] for j in jobs] == [{"from": "every-5m"}] * 2
    row = store.schedule_get(conn, "every-5m")
    assert row is not None and row["execution_count"] == 2 and row["enabled"]
    assert row["last_run_at"] == T0 + timedelta(minutes=5)
    assert row["next_run_at"] == T0 + timedelta(minutes=10)
    executions = store.schedule_executions(conn, sid)
    assert [(e["fired_by"], e["job_status"]) for e in executions] == [("w2", "pending"), ("w1", "pending")]
    assert {e["job_id"] for e in executions} == {j["id"] for j in jobs}


def test_every_kind_fires_its_occurrences(conn: Conn) -> None:
    day = timedelta(days=1)
    ids = {
        "once": add(conn, "once", ScheduleSpec(kind="once", run_at=T0 + timedelta(hours=30))),
        "daily": add(
            conn, "daily", ScheduleSpec(kind="daily", time_of_day=time(9), timezone="Europe/Berlin")
        ),
        "weekly": add(
            conn, "weekly", ScheduleSpec(kind="weekly", time_of_day=time(7, 45), weekdays=(1, 3))
        ),  # Mon, Wed
        "monthly": add(conn, "monthly", ScheduleSpec(kind="monthly", time_of_day=time(0, 5), day_of_month=2)),
        "cron": add(conn, "cron", ScheduleSpec(kind="cron", cron_expression="0 */6 * * *")),
    }
    tick(conn, T0, T0 + 7 * day, timedelta(minutes=15))
    got = {k: [o.astimezone(UTC).strftime("%d %H:%M") for o in occurrences(conn, v)] for k, v in ids.items()}
    assert got["once"] == ["02 18:00"]
    assert got["daily"] == [f"{d:02d} 08:00" for d in range(2, 9)]  # 09:00 CET
    assert got["weekly"] == ["02 07:45", "04 07:45"]
    assert got["monthly"] == ["02 00:05"]
    assert len(got["cron"]) == 4 * 7 + 1 and got["cron"][:2] == ["01 12:00", "01 18:00"]
    for name, sid in ids.items():
        assert len(jobs_of(conn, sid)) == len(got[name])
    once = store.schedule_get(conn, "once")
    assert once is not None and not once["enabled"] and once["next_run_at"] is None


def test_daily_across_both_dst_transitions_in_berlin(conn: Conn) -> None:
    """A 02:30 job runs exactly once on the spring-forward day and once on the fall-back day."""
    spec = ScheduleSpec(kind="daily", time_of_day=time(2, 30), timezone="Europe/Berlin")
    for start in (datetime(2026, 3, 27, 12, tzinfo=UTC), datetime(2026, 10, 23, 12, tzinfo=UTC)):
        sid = add(conn, f"0230-{start.month}", spec, now=start)
        tick(conn, start, start + timedelta(days=4), timedelta(minutes=10))
        local = [o.astimezone(BERLIN).strftime("%m-%d %H:%M%z") for o in occurrences(conn, sid)]
        assert len(jobs_of(conn, sid)) == 4
        if start.month == 3:
            assert local == ["03-28 02:30+0100", "03-29 03:30+0200", "03-30 02:30+0200", "03-31 02:30+0200"]
        else:
            assert local == ["10-24 02:30+0200", "10-25 02:30+0200", "10-26 02:30+0100", "10-27 02:30+0100"]


def test_hourly_cron_across_fall_back_runs_every_real_hour(conn: Conn) -> None:
    start = datetime(2026, 10, 24, 21, 30, tzinfo=UTC)  # 23:30 CEST
    sid = add(
        conn,
        "hourly",
        ScheduleSpec(kind="cron", cron_expression="0 * * * *", timezone="Europe/Berlin"),
        start,
    )
    tick(conn, start, start + timedelta(hours=26), timedelta(minutes=10))
    local_days = [o.astimezone(BERLIN).date().isoformat() for o in occurrences(conn, sid)]
    assert local_days.count("2026-10-25") == 25  # 02:00 twice: it is a wildcard hour


def test_max_executions_and_end_date_disable_the_schedule(conn: Conn) -> None:
    add(conn, "three", ScheduleSpec(kind="interval", interval_seconds=60, start_at=T0, max_executions=3))
    add(
        conn,
        "ends",
        ScheduleSpec(kind="interval", interval_seconds=60, start_at=T0, end_at=T0 + timedelta(seconds=90)),
    )
    tick(conn, T0, T0 + timedelta(minutes=6), timedelta(minutes=1))
    three = store.schedule_get(conn, "three")
    ends = store.schedule_get(conn, "ends")
    assert three is not None and three["execution_count"] == 3 and not three["enabled"]
    assert ends is not None and ends["execution_count"] == 2 and not ends["enabled"]
    assert three["next_run_at"] is None and ends["next_run_at"] is None


def test_pause_skips_occurrences_and_resume_restarts_from_the_next_one(conn: Conn) -> None:
    spec = ScheduleSpec(kind="interval", interval_seconds=60, start_at=T0)
    sid = add(conn, "pausable", spec)
    fire_due(conn, "w", now=T0)
    store.schedule_set_enabled(conn, sid, False, None)
    tick(conn, T0, T0 + timedelta(minutes=10), timedelta(minutes=1))
    assert len(jobs_of(conn, sid)) == 1  # nothing while paused
    resumed_at = T0 + timedelta(minutes=10, seconds=30)
    store.schedule_set_enabled(conn, sid, True, first_run(spec, resumed_at, 1))
    assert fire_due(conn, "w", now=resumed_at) == []  # no catch-up of the paused minutes
    tick(conn, resumed_at, T0 + timedelta(minutes=13), timedelta(seconds=30))
    assert occurrences(conn, sid) == [T0] + [T0 + timedelta(minutes=m) for m in (11, 12, 13)]


def test_catch_up_after_downtime_runs_once_for_the_latest_missed_occurrence(conn: Conn) -> None:
    sid = add(conn, "daily", ScheduleSpec(kind="daily", time_of_day=time(9), timezone="Europe/Berlin"))
    every = add(conn, "every-minute", ScheduleSpec(kind="cron", cron_expression="* * * * *"))
    back = T0 + timedelta(days=10, hours=1, seconds=20)  # all daemons were down for ten days
    fired = {f.name: f for f in fire_due(conn, "w", now=back)}
    assert fired["daily"].occurrence_at == datetime(2026, 3, 11, 8, 0, tzinfo=UTC)  # 09:00 CET
    assert fired["every-minute"].occurrence_at == back.replace(second=0)
    assert fired["every-minute"].next_run_at == back.replace(second=0) + timedelta(minutes=1)
    assert fire_due(conn, "w", now=back) == []
    assert len(jobs_of(conn, sid)) == 1 and len(jobs_of(conn, every)) == 1


def test_catch_up_window_skips_occurrences_that_are_too_late(conn: Conn) -> None:
    sid = add(conn, "daily", ScheduleSpec(kind="daily", time_of_day=time(9), timezone="UTC"))
    late = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    [skipped] = fire_due(conn, "w", now=late, catch_up_seconds=600)
    assert skipped.outcome == SKIPPED and skipped.next_run_at == datetime(2026, 3, 3, 9, tzinfo=UTC)
    [fired] = fire_due(conn, "w", now=datetime(2026, 3, 3, 9, 5, tzinfo=UTC), catch_up_seconds=600)
    assert fired.outcome == FIRED
    assert occurrences(conn, sid) == [datetime(2026, 3, 3, 9, tzinfo=UTC)]


def test_the_unique_occurrence_stops_a_second_job_even_without_the_row_lock(conn: Conn) -> None:
    sid = add(conn, "s", ScheduleSpec(kind="interval", interval_seconds=60, start_at=T0))
    fire_due(conn, "w", now=T0)
    # a stale writer puts the schedule back on an occurrence that was fired already
    conn.execute("UPDATE job_schedules SET next_run_at = %s WHERE id = %s", (T0, sid))
    [again] = fire_due(conn, "w", now=T0 + timedelta(seconds=5))
    assert again.outcome == DUPLICATE and again.next_run_at == T0 + timedelta(minutes=1)
    assert len(jobs_of(conn, sid)) == 1
    row = store.schedule_get(conn, "s")
    assert row is not None and row["execution_count"] == 1


def test_a_broken_schedule_does_not_block_the_others(conn: Conn) -> None:
    good = add(conn, "good", ScheduleSpec(kind="interval", interval_seconds=60, start_at=T0))
    refused = add(conn, "refused", ScheduleSpec(kind="interval", interval_seconds=60, start_at=T0))
    bad = add(
        conn, "bad", ScheduleSpec(kind="cron", cron_expression="* * * * *"), now=T0 - timedelta(minutes=1)
    )
    # edited by hand into what the queue or the rules refuse
    conn.execute("UPDATE job_schedules SET max_retries = 5000 WHERE id = %s", (refused,))
    conn.execute("UPDATE job_schedules SET cron_expression = '99 * * * *' WHERE id = %s", (bad,))
    outcomes = {f.name: f for f in fire_due(conn, "w", now=T0)}
    assert outcomes["good"].outcome == FIRED
    assert outcomes["refused"].outcome == FAILED and "max_retries" in (outcomes["refused"].error or "")
    assert outcomes["bad"].outcome == INVALID and "invalid cron" in (outcomes["bad"].error or "")
    assert len(jobs_of(conn, good)) == 1 and jobs_of(conn, refused) == [] and jobs_of(conn, bad) == []
    refused_row = store.schedule_get(conn, "refused")
    bad_row = store.schedule_get(conn, "bad")
    assert refused_row is not None and refused_row["enabled"]
    assert refused_row["next_run_at"] == T0 + timedelta(minutes=1)  # tries again at the next occurrence
    assert bad_row is not None and not bad_row["enabled"]


def race(dsn: str, now: datetime, daemons: int = 4) -> dict[str, int]:
    """Daemons (threads, each on its own connection) fire due schedules at once; jobs fired by each."""
    barrier = threading.Barrier(daemons)
    errors: list[BaseException] = []
    fired_by: dict[str, int] = {}

    def daemon(name: str) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as own:
                barrier.wait()
                # small batches interleave the daemons more
                while batch := fire_due(own, name, now=now, limit=7):
                    fired_by[name] = fired_by.get(name, 0) + sum(f.outcome == FIRED for f in batch)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=daemon, args=(f"w{i}",)) for i in range(daemons)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    return fired_by


def test_four_daemons_racing_over_100_due_schedules_enqueue_exactly_100(conn: Conn, dsn: str) -> None:
    for i in range(100):
        add(conn, f"s{i}", ScheduleSpec(kind="interval", interval_seconds=60, start_at=T0))
    participants: set[str] = set()
    for round_ in range(4):
        fired_by = race(dsn, T0 + timedelta(minutes=round_))
        assert sum(fired_by.values()) == 100
        participants.update(name for name, n in fired_by.items() if n)
        total = conn.execute("SELECT count(*) AS n FROM processing_jobs").fetchone()
        assert total == {"n": 100 * (round_ + 1)}
        per_schedule = conn.execute(
            "SELECT count(DISTINCT execution_count) AS counts, min(execution_count) AS n FROM job_schedules"
        ).fetchone()
        assert per_schedule == {"counts": 1, "n": round_ + 1}
    assert len(participants) >= 2  # the daemons really did share the work
    dup = conn.execute(
        "SELECT count(*) AS n FROM (SELECT schedule_id, occurrence_at FROM schedule_executions "
        "GROUP BY 1, 2 HAVING count(*) > 1) d"
    ).fetchone()
    assert dup == {"n": 0}


def test_a_schedule_inserted_with_plain_sql_is_planned_and_fires_in_the_same_pass(conn: Conn) -> None:
    conn.execute(
        "INSERT INTO job_schedules (name, job_type, kind, interval_seconds) VALUES ('app-made', 'noop', 'interval', 60)"
    )
    outcomes = [(f.name, f.outcome) for f in fire_due(conn, "w", now=T0)]
    assert outcomes == [("app-made", PLANNED), ("app-made", FIRED)]
    row = store.schedule_get(conn, "app-made")
    assert row is not None and row["enabled"] and row["next_run_at"] == T0 + timedelta(minutes=1)
    assert row["execution_count"] == 1
    fire_due(conn, "w", now=T0 + timedelta(minutes=1))
    assert len(jobs_of(conn, row["id"])) == 2  # from then on an ordinary schedule


def test_a_plain_sql_schedule_that_cannot_be_planned_is_disabled_with_the_reason(conn: Conn) -> None:
    conn.execute(
        "INSERT INTO job_schedules (name, job_type, kind, cron_expression) VALUES ('typo', 'noop', 'cron', '99 * * * *')"
    )
    conn.execute(
        "INSERT INTO job_schedules (name, job_type, kind, time_of_day, timezone) "
        "VALUES ('nowhere', 'noop', 'daily', '08:00', 'Mars/Olympus')"
    )
    conn.execute(
        "INSERT INTO job_schedules (name, job_type, kind, run_at) VALUES ('past', 'noop', 'once', %s)",
        (T0 - timedelta(days=1),),
    )
    found = {f.name: f for f in fire_due(conn, "w", now=T0)}
    assert {name: f.outcome for name, f in found.items()} == {
        "typo": INVALID,
        "nowhere": INVALID,
        "past": INVALID,
    }
    assert "invalid cron" in (found["typo"].error or "")
    assert "Mars/Olympus" in (found["nowhere"].error or "")
    assert "no occurrence from now on" in (found["past"].error or "")
    rows = conn.execute("SELECT name, enabled FROM job_schedules ORDER BY name").fetchall()
    assert all(not r["enabled"] for r in rows)
    assert conn.execute("SELECT count(*) AS n FROM processing_jobs").fetchone() == {"n": 0}


def test_four_daemons_plan_and_fire_100_plain_sql_schedules_exactly_once(conn: Conn, dsn: str) -> None:
    conn.execute(
        "INSERT INTO job_schedules (name, job_type, kind, interval_seconds) "
        "SELECT 'app-' || i, 'noop', 'interval', 60 FROM generate_series(1, 100) i"
    )
    fired_by = race(dsn, T0)
    assert sum(fired_by.values()) == 100
    per_schedule = conn.execute(
        "SELECT min(execution_count) AS lo, max(execution_count) AS hi, count(*) FILTER (WHERE next_run_at IS NULL) AS unplanned "
        "FROM job_schedules"
    ).fetchone()
    assert per_schedule == {"lo": 1, "hi": 1, "unplanned": 0}
