"""Property tests: whatever config.json or JOB_CRON_* holds, the answer is a config or exit 2 naming the
key; never a traceback, and `config show` never shows the database password.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobcron.cli import cli
from jobcron.config import ENV_TABLE, SECTIONS, Config, load_config
from jobcron.errors import ConfigError

BOUNDED = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
KEYS = {section: [f.name for f in dataclasses.fields(cls)] for section, cls in SECTIONS.items()}
odd_text = st.one_of(
    st.sampled_from(["", " ", "inline", "process", "priority", "debug", "json", "\udcff", "9" * 400, "NaN"]),
    st.text(max_size=12),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    odd_text,
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=6,
)
section_bodies = st.one_of(
    values,
    st.dictionaries(
        st.one_of(st.sampled_from(sorted({k for ks in KEYS.values() for k in ks})), odd_text), values
    ),
)
documents = st.one_of(
    values,
    st.dictionaries(
        st.one_of(st.sampled_from([*SECTIONS, "workflows", "_comment"]), odd_text), section_bodies
    ),
)


def loads_or_config_error(path: str | None, environ: dict[str, str]) -> None:
    try:
        assert isinstance(load_config(path, environ), Config)
    except ConfigError as exc:
        assert str(exc).strip(), "an empty error message names nothing"


def write(folder: str, document: Any) -> str:
    path = Path(folder) / "config.json"
    try:
        path.write_text(json.dumps(document), encoding="utf-8", errors="surrogateescape")
    except (UnicodeEncodeError, ValueError):
        path.write_text(json.dumps(document, ensure_ascii=True))
    return str(path)


@given(document=documents)
@BOUNDED
def test_any_config_file_loads_or_names_the_problem(document: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        loads_or_config_error(write(folder, document), {})


@given(raw=st.one_of(st.binary(max_size=60), st.text(max_size=60).map(str.encode)))
@BOUNDED
def test_a_config_file_that_is_not_json_at_all(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.json"
        path.write_bytes(raw)
        loads_or_config_error(str(path), {})


@given(
    environ=st.dictionaries(
        st.sampled_from(sorted(ENV_TABLE)), odd_text.filter(lambda t: "\x00" not in t), max_size=4
    )
)
@BOUNDED
def test_any_environment_loads_or_names_the_variable(environ: dict[str, str]) -> None:
    try:
        load_config(None, environ)
    except ConfigError as exc:
        named = {name for name in environ} | {".".join(ENV_TABLE[name]) for name in environ}
        assert any(name in str(exc) for name in named), str(exc)


@given(document=documents)
@BOUNDED
def test_config_check_exits_0_or_2_with_one_line(document: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, document)
        result = CliRunner().invoke(cli, ["--config", path, "config", "check"], env={"DATABASE_URL": None})
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert result.output.startswith("job_cron: error: ") and result.output.count("\n") == 1, result.output


PASSWORD = "Zq7-sEcReT-pw"
url_parts = st.fixed_dictionaries(
    {
        "user": st.sampled_from(["app", "a.b", "u-1"]),
        "host": st.sampled_from(["db", "10.0.0.1", "[::1]", "db.example.com", "[::1", "h:x"]),
        "port": st.sampled_from(["", ":5432", ":99999", ":abc", ":"]),
        "tail": st.sampled_from(["/jobs", "/jobs?sslmode=require", "", "/a@b", "/db?password=" + PASSWORD]),
        "password": st.sampled_from([PASSWORD, PASSWORD + "@x", PASSWORD + ":y"]),
    }
)


@given(parts=url_parts)
@BOUNDED
def test_config_show_never_shows_the_password(parts: dict[str, str]) -> None:
    url = f"postgresql://{parts['user']}:{parts['password']}@{parts['host']}{parts['port']}{parts['tail']}"
    with tempfile.TemporaryDirectory() as folder, contextlib.chdir(folder):  # no ./config.json
        result = CliRunner().invoke(cli, ["config", "show"], env={"DATABASE_URL": url})
    assert "Traceback" not in result.output and result.exception is None, repr(result.exception)
    assert PASSWORD not in result.output, result.output
    assert re.search(r'"url": "postgresql://[^"]*\*\*\*', result.output), result.output
