"""Property tests: whatever lands in `job_cron enqueue` (flags, --bulk lines), the answer is a job or exit 2
with one line naming the problem; never a traceback. In-process (click's CliRunner) for speed; the
examples are derandomized so that CI sees the same ones every run.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobcron.client import FIELDS
from tests.ops_cli import run

BOUNDED = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NASTY = [
    "",
    " ",
    "'",
    '"',
    "\\",
    "'; DROP TABLE processing_jobs; --",
    "%s",
    "%(job_type)s",
    "{}",
    "[]",
    "null",
    "\x00",
    "\udcff",  # what a non-UTF-8 byte in argv becomes
    "\ud800",
    "\u202e",
    "🙂",
    "1e999",
    "NaN",
    "-0",
    "9" * 5000,
    "2024-13-45T99:99:99Z",
    "10m",
    "x" * 600,
]
hostile_text = st.one_of(st.sampled_from(NASTY), st.text(max_size=30))
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FLAGS = {
    "--type": st.one_of(st.sampled_from(["noop", "analysis"]), hostile_text),
    "--user": hostile_text,
    "--file": hostile_text,
    "--file-id": st.one_of(st.uuids().map(str), hostile_text),
    "--priority": st.one_of(st.integers(-2000, 2000).map(str), hostile_text),
    "--run-at": st.one_of(st.sampled_from(["5m", "2030-01-01T00:00:00Z", "in 1h"]), hostile_text),
    "--metadata": st.one_of(json_values.map(lambda v: json.dumps(v)), hostile_text),
    "--dedup-key": hostile_text,
    "--max-retries": st.one_of(st.integers(-5, 2000).map(str), hostile_text),
    "--timeout": st.one_of(st.sampled_from(["30", "5m", "400d"]), hostile_text),
    "--description": hostile_text,
}


def stdin(text: str) -> bytes:
    """Text as the bytes a pipe would carry: a lone surrogate becomes bytes that are not UTF-8."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def assert_clean(result: Any, allowed: tuple[int, ...] = (0, 2)) -> None:
    """Exit 0, or exit 2 with an error line that says what is wrong; never a traceback."""
    output = result.output
    assert "Traceback" not in output, output
    assert result.exit_code in allowed, f"exit {result.exit_code}: {output}"
    if result.exit_code == 2:
        errors = [line for line in output.splitlines() if "error:" in line.lower()]
        assert errors, output
        assert all(len(line) > len("job_cron: error: ") for line in errors), output


@given(flags=st.dictionaries(st.sampled_from(sorted(FLAGS)), st.none(), max_size=6).flatmap(
    lambda chosen: st.fixed_dictionaries({flag: FLAGS[flag] for flag in chosen})
))  # fmt: skip
@BOUNDED
def test_enqueue_flags(dsn: str, flags: dict[str, str]) -> None:
    args = [part for flag, value in flags.items() for part in (flag, value)]
    result = run(dsn, "enqueue", *args)
    assert_clean(result)
    if result.exit_code == 0:
        assert re.match(r"(enqueued|not enqueued: job) [0-9a-f-]{36}", result.stdout), result.stdout


line_fields = st.dictionaries(
    st.one_of(st.sampled_from(FIELDS), st.text(max_size=6)), json_values, max_size=5
)
jsonl_lines = st.lists(
    st.one_of(
        line_fields.map(lambda d: json.dumps(d)),
        st.fixed_dictionaries({"job_type": st.just("noop")}, optional={"user_id": hostile_text}).map(
            json.dumps
        ),
        hostile_text,
    ),
    min_size=1,
    max_size=6,
)


@given(lines=jsonl_lines, skip_bad=st.booleans())
@BOUNDED
def test_bulk_json_lines(dsn: str, lines: list[str], skip_bad: bool) -> None:
    text = "\n".join(line.replace("\n", " ") for line in lines) + "\n"
    result = run(dsn, "enqueue", "--bulk", "-", *(["--skip-bad"] if skip_bad else []), input=stdin(text))
    assert_clean(result)
    if result.exit_code == 2:
        assert re.search(r"line \d+: ", result.output) or "--" in result.output, result.output


@given(
    header=st.lists(st.one_of(st.sampled_from(FIELDS), hostile_text), min_size=1, max_size=4),
    rows=st.lists(st.lists(hostile_text, min_size=0, max_size=5), max_size=4),
)
@BOUNDED
def test_bulk_csv(dsn: str, header: list[str], rows: list[list[str]]) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    result = run(dsn, "enqueue", "--bulk", "-", "--format", "csv", input=stdin(buffer.getvalue()))
    assert_clean(result)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--type", "noop", "--user", "\udcff"], "user_id"),
        (["--type", "noop", "--description", "caf\udce9"], "business_description"),
        (["--type", "noop", "--metadata", '{"a": "\\ud800"}'], "metadata"),
        (["--type", "noop", "--metadata", '{"a": ' + "1" * 5000 + "}"], "--metadata"),
        (["--type", "noop", "--priority", "9" * 5000], "--priority"),
    ],
    ids=[
        "surrogate user",
        "surrogate description",
        "lone surrogate in metadata",
        "huge integer",
        "huge priority",
    ],
)
def test_text_the_database_cannot_store_is_refused_by_name(dsn: str, args: list[str], named: str) -> None:
    result = run(dsn, "enqueue", *args)
    assert_clean(result, allowed=(2,))
    assert named in result.output, result.output


def test_a_bulk_file_that_is_not_utf8(dsn: str, tmp_path: Any) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(b'{"job_type": "noop"}\n{"job_type": "caf\xe9"}\n')
    result = run(dsn, "enqueue", "--bulk", str(path))
    assert_clean(result, allowed=(2,))
    assert "UTF-8" in result.output
    big = tmp_path / "big.jsonl"
    big.write_text('{"job_type": "noop", "priority": ' + "1" * 5000 + "}\n")
    result = run(dsn, "enqueue", "--bulk", str(big))
    assert_clean(result, allowed=(2,))
    assert "line 1" in result.output
