"""Occurrence rules: every kind, time zones and DST, start/end/max, validation, descriptions."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobcron.config import load_config
from jobcron.errors import ConfigError, ScheduleError
from jobcron.schedules.rules import (
    ScheduleSpec,
    describe,
    latest_due,
    next_occurrence,
    validate,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def run(spec: ScheduleSpec, after: datetime, n: int) -> list[datetime]:
    """The next n occurrences after `after` (fewer when the schedule ends)."""
    out: list[datetime] = []
    t: datetime | None = after
    while len(out) < n and t is not None:
        t = next_occurrence(spec, t, len(out))
        if t is not None:
            out.append(t)
    return out


def wall(instants: list[datetime], tz: ZoneInfo) -> list[str]:
    return [i.astimezone(tz).strftime("%m-%d %H:%M%z") for i in instants]


def test_once() -> None:
    spec = ScheduleSpec(kind="once", run_at=T0)
    assert run(spec, T0 - timedelta(days=1), 5) == [T0]
    assert next_occurrence(spec, T0) is None
    assert next_occurrence(spec, T0, inclusive=True) == T0
    assert latest_due(spec, T0 + timedelta(days=3)) == T0
    assert latest_due(spec, T0 - timedelta(seconds=1)) is None


def test_interval_is_anchored_at_start_or_aligned_to_the_epoch() -> None:
    anchored = ScheduleSpec(kind="interval", interval_seconds=600, start_at=T0 + timedelta(seconds=7))
    assert run(anchored, T0, 3) == [T0 + timedelta(seconds=s) for s in (7, 607, 1207)]
    aligned = ScheduleSpec(kind="interval", interval_seconds=900)
    assert wall(run(aligned, T0 + timedelta(minutes=1), 3), ZoneInfo("UTC")) == [
        "03-01 12:15+0000",
        "03-01 12:30+0000",
        "03-01 12:45+0000",
    ]
    assert latest_due(aligned, T0 + timedelta(minutes=44)) == T0 + timedelta(minutes=30)


def test_interval_counts_elapsed_time_across_dst() -> None:
    spec = ScheduleSpec(kind="interval", interval_seconds=3600, timezone="Europe/Berlin")
    got = run(spec, datetime(2026, 3, 28, 23, 30, tzinfo=UTC), 4)
    assert [b - a for a, b in itertools.pairwise(got)] == [timedelta(hours=1)] * 3
    assert wall(got, BERLIN) == [
        "03-29 01:00+0100",
        "03-29 03:00+0200",
        "03-29 04:00+0200",
        "03-29 05:00+0200",
    ]


def test_daily_weekly_monthly_in_local_time() -> None:
    daily = ScheduleSpec(kind="daily", time_of_day=time(9, 0), timezone="Europe/Berlin")
    assert wall(run(daily, T0, 2), BERLIN) == ["03-02 09:00+0100", "03-03 09:00+0100"]
    weekly = ScheduleSpec(
        kind="weekly", time_of_day=time(18, 30), weekdays=(1, 5), timezone="America/New_York"
    )
    # 2026-03-01 is a Sunday: Monday, Friday, Monday
    assert wall(run(weekly, T0, 3), NEW_YORK) == ["03-02 18:30-0500", "03-06 18:30-0500", "03-09 18:30-0400"]
    monthly = ScheduleSpec(kind="monthly", time_of_day=time(6, 0), day_of_month=31, timezone="UTC")
    got = [d.date().isoformat() for d in run(monthly, datetime(2028, 1, 15, tzinfo=UTC), 4)]
    assert got == ["2028-01-31", "2028-02-29", "2028-03-31", "2028-04-30"]  # short months: their last day


def test_cron_five_and_six_fields_and_macros() -> None:
    assert run(ScheduleSpec(kind="cron", cron_expression="*/15 * * * *"), T0, 2) == [
        T0 + timedelta(minutes=15),
        T0 + timedelta(minutes=30),
    ]
    seconds = ScheduleSpec(kind="cron", cron_expression="*/20 * * * * *")  # seconds first
    assert run(seconds, T0, 3) == [T0 + timedelta(seconds=s) for s in (20, 40, 60)]
    hourly = ScheduleSpec(kind="cron", cron_expression="@hourly", timezone="Asia/Kolkata")  # +05:30
    assert run(hourly, T0, 1) == [T0 + timedelta(minutes=30)]


def test_spring_forward_a_skipped_local_time_runs_once() -> None:
    # Berlin: 2026-03-29 02:00 -> 03:00; New York: 2026-03-08 02:00 -> 03:00
    daily = ScheduleSpec(kind="daily", time_of_day=time(2, 30), timezone="Europe/Berlin")
    got = run(daily, datetime(2026, 3, 27, 12, tzinfo=UTC), 4)
    assert wall(got, BERLIN) == [
        "03-28 02:30+0100",
        "03-29 03:30+0200",
        "03-30 02:30+0200",
        "03-31 02:30+0200",
    ]
    cron = ScheduleSpec(kind="cron", cron_expression="30 2 * * *", timezone="America/New_York")
    got = run(cron, datetime(2026, 3, 6, 12, tzinfo=UTC), 4)
    assert wall(got, NEW_YORK) == [
        "03-07 02:30-0500",
        "03-08 03:00-0400",
        "03-09 02:30-0400",
        "03-10 02:30-0400",
    ]


def test_fall_back_a_repeated_local_time_runs_once() -> None:
    # Berlin: 2026-10-25 03:00 -> 02:00; New York: 2026-11-01 02:00 -> 01:00
    daily = ScheduleSpec(kind="daily", time_of_day=time(2, 30), timezone="Europe/Berlin")
    got = run(daily, datetime(2026, 10, 23, 12, tzinfo=UTC), 3)
    assert wall(got, BERLIN) == ["10-24 02:30+0200", "10-25 02:30+0200", "10-26 02:30+0100"]
    cron = ScheduleSpec(kind="cron", cron_expression="30 1 * * *", timezone="America/New_York")
    got = run(cron, datetime(2026, 10, 30, 12, tzinfo=UTC), 3)
    assert wall(got, NEW_YORK) == ["10-31 01:30-0400", "11-01 01:30-0400", "11-02 01:30-0500"]
    due = latest_due(cron, datetime(2026, 11, 1, 7, 0, tzinfo=UTC))  # 02:00 EST, after the repeat
    assert due == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # the first 01:30, not the second


def test_wildcard_cron_runs_every_real_hour_through_dst() -> None:
    hourly = ScheduleSpec(kind="cron", cron_expression="0 * * * *", timezone="Europe/Berlin")
    fall = run(hourly, datetime(2026, 10, 24, 22, 0, tzinfo=UTC) - timedelta(seconds=1), 30)
    assert sum(1 for t in fall if t.astimezone(BERLIN).date().isoformat() == "2026-10-25") == 25
    spring = run(hourly, datetime(2026, 3, 28, 23, 0, tzinfo=UTC) - timedelta(seconds=1), 30)
    assert sum(1 for t in spring if t.astimezone(BERLIN).date().isoformat() == "2026-03-29") == 23


def test_start_end_and_max_executions() -> None:
    spec = ScheduleSpec(
        kind="interval", interval_seconds=60, start_at=T0, end_at=T0 + timedelta(minutes=3), max_executions=10
    )
    assert run(spec, T0 - timedelta(hours=1), 10) == [
        T0 + timedelta(minutes=m) for m in range(4)
    ]  # end inclusive
    capped = ScheduleSpec(kind="cron", cron_expression="* * * * *", max_executions=2)
    assert len(run(capped, T0, 10)) == 2
    assert next_occurrence(capped, T0, count=2) is None
    daily = ScheduleSpec(kind="daily", time_of_day=time(9), start_at=datetime(2026, 6, 1, tzinfo=UTC))
    assert run(daily, T0, 1) == [datetime(2026, 6, 1, 9, tzinfo=UTC)]
    assert latest_due(daily, datetime(2026, 5, 30, tzinfo=UTC)) is None
    ended = ScheduleSpec(kind="daily", time_of_day=time(9), end_at=datetime(2026, 3, 5, 12, tzinfo=UTC))
    assert latest_due(ended, datetime(2026, 4, 1, tzinfo=UTC)) == datetime(2026, 3, 5, 9, tzinfo=UTC)


SPECS = [
    ScheduleSpec(kind="interval", interval_seconds=90, start_at=T0 + timedelta(seconds=13)),
    ScheduleSpec(kind="daily", time_of_day=time(2, 30), timezone="Europe/Berlin"),
    ScheduleSpec(kind="weekly", time_of_day=time(1, 15), weekdays=(2, 7), timezone="America/New_York"),
    ScheduleSpec(kind="monthly", time_of_day=time(23, 59), day_of_month=30, timezone="Pacific/Auckland"),
    ScheduleSpec(kind="cron", cron_expression="30 2 * * *", timezone="Europe/Berlin"),
    ScheduleSpec(kind="cron", cron_expression="*/7 1-3 * * *", timezone="America/New_York"),
    ScheduleSpec(kind="cron", cron_expression="0 0 29 2 *", timezone="UTC"),
]


@settings(max_examples=150, deadline=None)
@given(
    spec=st.sampled_from(SPECS),
    t=st.datetimes(min_value=datetime(2026, 3, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
)
def test_latest_due_and_next_occurrence_agree(spec: ScheduleSpec, t: datetime) -> None:
    """No occurrence lies between the latest due one and the next one; both round-trip."""
    due = latest_due(spec, t)
    following = next_occurrence(spec, t)
    assert following is not None and following > t
    if due is not None:
        assert due <= t
        assert next_occurrence(spec, due) == following
        assert next_occurrence(spec, due, inclusive=True) == due


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ScheduleSpec(kind="cron", cron_expression="61 * * * *"), "invalid cron expression"),
        (ScheduleSpec(kind="cron", cron_expression="* * *"), "expected 5 fields"),
        (ScheduleSpec(kind="cron", cron_expression="0 0 30 2 *"), "never matches"),
        (ScheduleSpec(kind="cron", cron_expression="H * * * *"), "H and R fields"),
        (ScheduleSpec(kind="daily", time_of_day=time(9), timezone="Mars/Olympus"), "unknown time zone"),
        (ScheduleSpec(kind="daily"), "needs time_of_day"),
        (ScheduleSpec(kind="daily", time_of_day=time(9), cron_expression="* * * * *"), "does not apply"),
        (ScheduleSpec(kind="weekly", time_of_day=time(9), weekdays=(0,)), "weekdays are 1"),
        (ScheduleSpec(kind="monthly", time_of_day=time(9), day_of_month=32), "day_of_month"),
        (ScheduleSpec(kind="interval", interval_seconds=0), "interval must be"),
        (ScheduleSpec(kind="once", run_at=datetime(2026, 3, 1)), "needs a time zone offset"),
        (ScheduleSpec(kind="hourly"), "unknown kind"),
        (
            ScheduleSpec(kind="interval", interval_seconds=60, start_at=T0, end_at=T0 - timedelta(days=1)),
            "must be after start",
        ),
        (ScheduleSpec(kind="interval", interval_seconds=60, max_executions=0), "max_executions"),
    ],
)
def test_invalid_definitions_name_the_problem(spec: ScheduleSpec, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        validate(spec)


def test_descriptions() -> None:
    assert describe(ScheduleSpec(kind="interval", interval_seconds=5400)) == "every 1h30m"
    weekly = ScheduleSpec(kind="weekly", time_of_day=time(9), weekdays=(5, 1), timezone="Europe/Berlin")
    assert describe(weekly) == "weekly on mon,fri at 09:00 (Europe/Berlin)"


def test_catch_up_window_is_a_config_key() -> None:
    assert load_config(None, {}).daemon.schedule_catch_up_seconds is None
    env = {"JOB_CRON_DAEMON_SCHEDULE_CATCH_UP_SECONDS": "600"}
    assert load_config(None, env).daemon.schedule_catch_up_seconds == 600.0
    with pytest.raises(ConfigError, match=r"daemon\.schedule_catch_up_seconds"):
        load_config(None, {}, {"daemon": {"schedule_catch_up_seconds": -1}})
