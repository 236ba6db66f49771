"""The named-query loader."""

from __future__ import annotations

import re

import pytest

from jobcron.errors import SqlNotFound
from jobcron.sql import (
    ADVISORY_LOCKS,
    MIGRATIONS_DIR,
    SQL_DIR,
    compact,
    expand_fragments,
    expand_queue_orders,
    fragments,
    parse_queries,
    queries,
    sql,
)


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


def test_fragments_are_expanded_and_each_is_used() -> None:
    loaded = queries()
    for query in loaded.values():
        assert "/*@" not in query.text, f"{query.name} keeps a fragment marker"
    for name, fragment in fragments().items():
        assert fragment.description, f"fragment {name} has no description"
        assert name not in loaded
        # a fragment inside a query written for both queue orders is expanded with it
        forms = [f.text for f in expand_queue_orders(fragment)]
        assert any(form in q.text for form in forms for q in loaded.values()), (
            f"fragment {name} is used by no query"
        )
    assert fragments()["rescue_outcome"].text in loaded["rescue_stale_jobs"].text
    assert fragments()["rescue_outcome"].text in loaded["ops_reset_stale"].text


def test_unknown_fragment_is_a_clear_error() -> None:
    query = parse_queries("-- name: a\n-- A.\nSELECT /*@nope*/;")["a"]
    with pytest.raises(SqlNotFound, match="unknown fragment 'nope'"):
        expand_fragments(query, {})


_SQL_FILES = sorted([*SQL_DIR.glob("*.sql"), *MIGRATIONS_DIR.glob("*.sql")])
# a literal in jobcron's key range, and the first argument of any advisory-lock call
_KEY_LITERAL = re.compile(r"\b4242\d{3}\b")
_ADVISORY_CALL = re.compile(r"pg_(?:try_)?advisory_(?:xact_)?(?:un)?lock(?:_shared)?\s*\(\s*([^,)\s]+)", re.I)


def test_advisory_lock_keys_are_the_listed_ones() -> None:
    assert _SQL_FILES and any(p.parent == MIGRATIONS_DIR for p in _SQL_FILES)
    used: set[int] = set()
    for path in _SQL_FILES:
        text = path.read_text(encoding="utf-8")
        code = compact(text)  # comments may name a key (the migrations say which they take)
        for match in _ADVISORY_CALL.finditer(code):
            assert match.group(1).isdigit(), f"{path.name}: advisory key {match.group(1)!r} is not a literal"
            assert int(match.group(1)) in ADVISORY_LOCKS, (
                f"{path.name}: advisory key {match.group(1)} is not listed"
            )
        for literal in _KEY_LITERAL.findall(text):
            assert int(literal) in ADVISORY_LOCKS, f"{path.name}: {literal} is not a listed advisory key"
        used.update(int(k) for k in _KEY_LITERAL.findall(code))
    assert used == set(ADVISORY_LOCKS), f"listed but unused: {sorted(set(ADVISORY_LOCKS) - used)}"
