"""The named-query loader."""

from __future__ import annotations

import pytest

from jobcron.errors import SqlNotFound
from jobcron.sql import compact, parse_queries, queries, sql


def test_parses_names_descriptions_and_bodies() -> None:
    parsed = parse_queries(
        "-- header comment\n-- name: one\n-- First query.\nSELECT 1;\n\n-- name: two\n-- Second.\nSELECT\n  2;\n"
    )
    assert list(parsed) == ["one", "two"]
    assert parsed["one"].description == "First query."
    assert parsed["one"].text == "SELECT 1"
    assert parsed["two"].text == "SELECT\n  2"


def test_duplicate_and_empty_queries_are_errors() -> None:
    with pytest.raises(SqlNotFound, match="twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;")
    with pytest.raises(SqlNotFound, match="no SQL"):
        parse_queries("-- name: a\n-- nothing here\n")


def test_shipped_queries_load_and_are_described() -> None:
    loaded = queries()
    assert "claim_job_fifo" in loaded
    for query in loaded.values():
        assert query.description, f"{query.name} has no description"


def test_unknown_query_is_a_clear_error() -> None:
    with pytest.raises(SqlNotFound, match="no SQL query named 'nope'"):
        sql("nope")


def test_compact_drops_comments_but_not_quoted_dashes() -> None:
    text = "SELECT a, -- why a\n    'x -- y' AS b  -- trailing\n-- whole line\n\n  FROM t"
    assert compact(text) == "SELECT a,\n'x -- y' AS b\nFROM t"


def test_long_queries_fit_psycopgs_statement_cache() -> None:
    # psycopg converts a query once and caches it only below 4 KiB: the hot ones must fit
    for name in ("claim_job_fifo", "claim_job_priority", "finish_job", "heartbeat_job"):
        assert len(sql(name).encode()) < 4096, name
