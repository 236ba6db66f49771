"""Named queries, loaded once from the `.sql` files beside this module."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jobcron.errors import SqlNotFound

SQL_DIR = Path(__file__).parent
MIGRATIONS_DIR = SQL_DIR / "migrations"
_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$")


@dataclass(frozen=True)
class Query:
    """One named query: its name, one-line description and text (as written, comments included)."""

    name: str
    description: str
    text: str

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
    """Split SQL text into named queries: `-- name: x`, then `-- description`, then the statement."""
    queries: dict[str, Query] = {}
    name: str | None = None
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
        queries[name] = Query(name, " ".join(description).strip(), text)

    for line in source.splitlines():
        match = _NAME.match(line)
        if match:
            flush()
            name, description, body = match.group(1), [], []
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
    merged: dict[str, Query] = {}
    for path in sorted(SQL_DIR.glob("*.sql")):
        for name, query in parse_queries(path.read_text(encoding="utf-8"), path.name).items():
            if name in merged:
                raise SqlNotFound(f"{path.name}: query {name!r} is already defined in another file")
            merged[name] = query
    return merged


def sql(name: str) -> str:
    """The executable text of a named query (compacted once, then cached)."""
    try:
        return _executable()[name]
    except KeyError:
        raise SqlNotFound(f"no SQL query named {name!r}") from None


@cache
def _executable() -> dict[str, str]:
    return {name: query.executable for name, query in queries().items()}
