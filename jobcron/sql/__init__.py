"""Named queries, loaded once from the `.sql` files beside this module."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jobcron.errors import SqlNotFound

SQL_DIR = Path(__file__).parent
MIGRATIONS_DIR = SQL_DIR / "migrations"
_NAME = re.compile(r"^--\s*(name|fragment):\s*([a-z_][a-z0-9_]*)\s*$")

# Every advisory-lock key jobcron takes, in one place (tests/unit/test_sql_loader.py fails on any other
# key in a .sql file or a migration, and on a key listed here that nothing uses). Keys are
# per database; another application's keys must stay clear of 4242000-4242999.
ADVISORY_LOCKS = {
    # migration_lock / migration_unlock: one migrator at a time, held for the session
    4242001: "migrations",
    # prune_finished_jobs with exclusive: one daemon at a time deletes finished jobs (retention)
    4242002: "retention",
    # (4242003 was the claim's per-user lock, gone since the claim counts slots; keep it unused)
    # worker_id_lock: two keys (4242004, hashtext(worker id)), held for the daemon's session
    4242004: "worker id",
    # unpark_runnable: one daemon at a time re-checks parked jobs (migration 0002)
    4242005: "unpark",
}

# A fragment (`-- fragment: x`, then a description, then SQL) is text written once and shared by
# several queries: /*@x*/ in a query becomes the fragment's text at load time. Fragments are not
# queries themselves; their names are unique with the queries' across files.
_FRAGMENT_MARK = re.compile(r"/\*@([a-z_][a-z0-9_]*)\*/")

# A query written once for both queue orders is loaded as NAME_fifo and NAME_priority: /*ORDER(x)*/
# becomes that order's sort key of alias x, /*KEY(x)*/ the same key as values that compare in queue
# order (the priority order's key negates the priority, so that "before in queue order" is one row
# comparison an index can range over).
QUEUE_ORDERS = {
    "fifo": {"ORDER": "{t}.scheduled_at, {t}.seq", "KEY": "{t}.scheduled_at, {t}.seq"},
    "priority": {
        "ORDER": "{t}.priority DESC, {t}.scheduled_at, {t}.seq",
        "KEY": "(-{t}.priority), {t}.scheduled_at, {t}.seq",
    },
}
_ORDER_MARK = re.compile(r"/\*(ORDER|KEY)\(([a-z_][a-z0-9_]*)\)\*/")


@dataclass(frozen=True)
class Query:
    """One named query: its name, one-line description and text (as written, comments included)."""

    name: str
    description: str
    text: str
    fragment: bool = False

    @property
    def executable(self) -> str:
        """The text sent to the server: comments and indentation removed (see `compact`)."""
        return compact(self.text)


def compact(text: str) -> str:
    """SQL without `--` comments, indentation or blank lines.

    The comments are for readers of the .sql files; the server never needs them, and psycopg
    caches the conversion of a query only while it is short (4 KiB), which the long claim
    queries are not with their comments. Quoted literals are kept intact.
    """
    lines = []
    for line in text.splitlines():
        kept: list[str] = []
        quoted = False
        i = 0
        while i < len(line):
            ch = line[i]
            if ch == "'":
                quoted = not quoted
            elif not quoted and line.startswith("--", i):
                break
            kept.append(ch)
            i += 1
        code = "".join(kept).strip()
        if code:
            lines.append(code)
    return "\n".join(lines)


def parse_queries(source: str, origin: str = "<string>") -> dict[str, Query]:
    """Split SQL text into named queries: `-- name: x`, then `-- description`, then the statement.

    Fragments (`-- fragment: x`) come back too, marked `fragment`.
    """
    queries: dict[str, Query] = {}
    name: str | None = None
    fragment = False
    description: list[str] = []
    body: list[str] = []

    def flush() -> None:
        if name is None:
            return
        text = "\n".join(body).strip().rstrip(";").strip()
        if not text:
            raise SqlNotFound(f"{origin}: query {name!r} has no SQL")
        if name in queries:
            raise SqlNotFound(f"{origin}: query {name!r} is defined twice")
        queries[name] = Query(name, " ".join(description).strip(), text, fragment)

    for line in source.splitlines():
        match = _NAME.match(line)
        if match:
            flush()
            fragment, name, description, body = match.group(1) == "fragment", match.group(2), [], []
            continue
        if name is None:
            continue
        if not body and line.startswith("--"):
            description.append(line.lstrip("-").strip())
        else:
            body.append(line)
    flush()
    return queries


@cache
def queries() -> dict[str, Query]:
    """Every named query of every `.sql` file here; names are unique across files."""
    parsed: list[tuple[str, Query]] = []
    seen: dict[str, str] = {}
    for path in sorted(SQL_DIR.glob("*.sql")):
        for query in parse_queries(path.read_text(encoding="utf-8"), path.name).values():
            if query.name in seen:
                raise SqlNotFound(f"{path.name}: {query.name!r} is already defined in {seen[query.name]}")
            seen[query.name] = path.name
            parsed.append((path.name, query))
    fragments = {q.name: q.text for _, q in parsed if q.fragment}
    merged: dict[str, Query] = {}
    for origin, query in parsed:
        if query.fragment:
            continue
        for expanded in expand_queue_orders(expand_fragments(query, fragments, origin)):
            if expanded.name in merged:
                raise SqlNotFound(f"{origin}: query {expanded.name!r} is already defined in another file")
            merged[expanded.name] = expanded
    return merged


def expand_fragments(query: Query, fragments: dict[str, str], origin: str = "<string>") -> Query:
    """The query with each /*@x*/ replaced by fragment x's text."""

    def text(match: re.Match[str]) -> str:
        try:
            return fragments[match.group(1)]
        except KeyError:
            raise SqlNotFound(
                f"{origin}: query {query.name!r} uses unknown fragment {match.group(1)!r}"
            ) from None

    if not _FRAGMENT_MARK.search(query.text):
        return query
    return Query(query.name, query.description, _FRAGMENT_MARK.sub(text, query.text))


@cache
def fragments() -> dict[str, Query]:
    """Every fragment of every `.sql` file here."""
    found: dict[str, Query] = {}
    for path in sorted(SQL_DIR.glob("*.sql")):
        found.update(
            (q.name, q)
            for q in parse_queries(path.read_text(encoding="utf-8"), path.name).values()
            if q.fragment
        )
    return found


def expand_queue_orders(query: Query) -> list[Query]:
    """The query itself, or, when it is written for both queue orders, one query per order."""
    if not _ORDER_MARK.search(query.text):
        return [query]
    expanded = []
    for order, forms in QUEUE_ORDERS.items():

        def key(match: re.Match[str], forms: dict[str, str] = forms) -> str:
            return forms[match.group(1)].format(t=match.group(2))

        expanded.append(Query(f"{query.name}_{order}", query.description, _ORDER_MARK.sub(key, query.text)))
    return expanded


def sql(name: str) -> str:
    """The executable text of a named query (compacted once, then cached)."""
    try:
        return _executable()[name]
    except KeyError:
        raise SqlNotFound(f"no SQL query named {name!r}") from None


@cache
def _executable() -> dict[str, str]:
    return {name: query.executable for name, query in queries().items()}
