"""Durations and instants as operators type them, and the ids of a bulk enqueue."""

from __future__ import annotations

import uuid

import pytest

from jobcron.client import time_ordered_ids
from jobcron.durations import (
    format_duration,
    format_exact,
    parse_duration,
    parse_instant,
    parse_since,
    parse_whole_seconds,
)
from jobcron.errors import InvalidInput, JsonRefused
from jobcron.jsontext import parse_json


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("1h30m", 5400),
        ("7d", 604800),
        ("2w", 1209600),
        ("250ms", 0.25),
        (" 1.5h ", 5400),
        # what a schedule's --every took before the grammars were one: spaces anywhere, any case
        ("1 h 30 m", 5400),
        ("1H30M", 5400),
        ("1 5m", 900),
        ("0.1h", 360),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5m", "5 minutes", "1y", "h"])
def test_bad_durations_name_the_flag(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^--older-than: not a duration"):
        parse_duration(text, "--older-than")


def test_whole_seconds_are_positive_and_whole() -> None:
    assert parse_whole_seconds("1h30m") == 5400
    assert parse_whole_seconds("45") == 45
    assert parse_whole_seconds("2d") == 172800
    assert parse_whole_seconds("1.5h") == 5400
    assert parse_whole_seconds("2000ms") == 2
    for bad, message in (
        ("", "not a duration"),
        ("5 minutes", "not a duration"),
        ("-1m", "not a duration"),
        ("0s", "must be positive"),
        ("1.5s", "not a whole number of seconds"),
        ("250ms", "not a whole number of seconds"),
    ):
        with pytest.raises(InvalidInput, match=rf"^--every: .*{message}"):
            parse_whole_seconds(bad, "--every")


def test_exact_form_reads_back() -> None:
    for seconds in (1, 59, 60, 5400, 86400, 90061, 7 * 86400):
        assert parse_whole_seconds(format_exact(seconds)) == seconds
    assert [format_exact(s) for s in (0, 5400, 90061)] == ["0s", "1h30m", "1d1h1m1s"]


def test_json_refusals_say_where_and_catch_the_huge_integer() -> None:
    assert parse_json('{"a": 1}') == {"a": 1}
    with pytest.raises(JsonRefused) as bad:
        parse_json('{"a": }')
    assert (bad.value.reason, bad.value.colno, bad.value.pos) == ("Expecting value", 7, 6)
    assert str(bad.value) == "Expecting value at column 7"
    with pytest.raises(JsonRefused) as huge:
        parse_json("1" * 5000)
    assert huge.value.pos is None and str(huge.value) == huge.value.reason
    assert "digits" in huge.value.reason


def test_instants_need_a_timezone() -> None:
    assert parse_instant("2030-01-02T03:04:05Z").utcoffset() is not None
    with pytest.raises(InvalidInput, match="has no timezone"):
        parse_instant("2030-01-02T03:04:05", "--since")
    at, ago = parse_since("2030-01-02T00:00:00+01:00")
    assert at is not None and ago is None
    assert parse_since("1h") == (None, 3600)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (None, 0.25, 5.25, 42, 185, 7800, 270000)] == [
        "-",
        "250ms",
        "5.2s",
        "42s",
        "3m 05s",
        "2h 10m",
        "3d 3h",
    ]


def test_bulk_ids_are_valid_increasing_and_distinct_between_batches() -> None:
    first = time_ordered_ids()
    batch = [next(first) for _ in range(1000)]
    assert batch == sorted(batch) and len(set(batch)) == 1000
    assert all(uuid.UUID(i).version == 7 for i in batch[:10])
    other = next(time_ordered_ids())
    assert other not in batch
