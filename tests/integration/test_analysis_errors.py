"""Bad files and paths fail an `analysis` job at once, with a message that says what is wrong."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobcron.config import Config
from jobcron.daemon.worker import Worker
from tests.factories import insert_file, insert_job, job

Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "uploads"
    folder.mkdir()
    return folder


@pytest.fixture
def config(make_config: Any, root: Path) -> Config:
    cfg: Config = make_config(job_processing={"file_root": str(root)})
    return cfg


def fails(conn: Conn, config: Config, path: str, *, file_id: str | None = "insert") -> str:
    """Run one analysis job on path; assert it failed at once (no retry) and return its error message."""
    if file_id == "insert":
        file_id = insert_file(conn, path)
    job_id = insert_job(conn, job_type="analysis", file_id=file_id, max_retries=3)
    assert Worker(config).run_once()
    row = job(conn, job_id)
    assert row["status"] == "failed" and row["retry_count"] == 0 and row["attempts"] == 1
    assert conn.execute("SELECT count(*) AS n FROM insights").fetchone() == {"n": 0}
    if file_id is not None:
        status = conn.execute("SELECT status FROM files WHERE id = %s", (file_id,)).fetchone()
        assert status == {"status": "failed"}
    message: str = row["error_message"]
    assert "Traceback" not in message
    return message


def write(root: Path, name: str, data: bytes | str) -> str:
    (root / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return name


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.csv", b"", "empty.csv is empty"),
        ("blank.csv", b"\n\n  \r\n", "empty (only whitespace)"),
        ("photo.csv", b"\x89PNG\r\n\x1a\n" + bytes(200), "is binary: a PNG image"),
        ("book.xlsx", b"PK\x03\x04" + bytes(200), "a ZIP archive (an .xlsx workbook is one"),
        ("nul.csv", b"a,b\n1,\x002\n", "is binary (it contains NUL bytes)"),
        (
            "mixed.csv",
            b"a,b\n1,caf\xe9\n2,\x01\x02\n",
            "is neither UTF-8 nor Latin-1 text (control byte 0x01 on line 3",
        ),
        ("quote.csv", 'a,b\n1,2\n3,"x"y\n', "malformed CSV at line 3: ',' expected after '\"'"),
        ("ragged.csv", "a,b,c\n1,2,3\n4,5\n6,7,8\n", "malformed CSV at line 3: expected 3 fields, found 2"),
        ("open_quote.csv", 'a,b\n1,"never closed\n2,3\n', "malformed CSV at line 3: unexpected end of data"),
        (
            "broken.json",
            '[\n {"a": 1},\n {"a": 2},\n {"a": 3,,}\n]\n',
            "malformed JSON at line 4: Expecting property name",
        ),
        ("unclosed.json", '[\n {"a": 1},\n {"a": 2}\n', "the array is not closed with ']'"),
        ("numbers.json", "[1, 2, 3]", "expected an object as record 1, found a number"),
        ("object.json", '"just a string"', "a JSON file must be an array of objects or JSON lines"),
        ("pretty.json", '{\n  "a": 1\n}\n', "a JSON file must be an array of objects or JSON lines"),
        (
            "lines.jsonl",
            '{"a": 1}\n{"a": 2}\n{"a": 3\n{"a": 4}\n',
            "malformed JSON lines at line 3 column 8: Expecting ',' delimiter",
        ),
        (
            "list.jsonl",
            '{"a": 1}\n[1, 2]\n',
            "malformed JSON lines at line 2: expected an object, found an array",
        ),
        ("header.csv", "region,revenue\n", "has a header but no data rows"),
        ("empty_array.json", "[]", "has no records"),
        ("nothing.csv", "a,b\nNA,\nnull,-\n,n/a\n", "has no usable columns: every value is empty"),
        ("nothing.json", '[{"a": null}, {"b": ""}, {}]', "has no usable columns"),
    ],
    ids=lambda v: v if isinstance(v, str) and "." in v and len(v) < 20 else "",
)
def test_bad_file_fails_with_a_clear_message(
    conn: Conn, config: Config, root: Path, name: str, data: bytes | str, message: str
) -> None:
    assert message in fails(conn, config, write(root, name, data))


def test_missing_file(conn: Conn, config: Config) -> None:
    assert "analysis: file not found: gone.csv" in fails(conn, config, "gone.csv")


def test_a_folder_is_not_a_file(conn: Conn, config: Config, root: Path) -> None:
    (root / "folder.csv").mkdir()
    assert "folder.csv is not a regular file" in fails(conn, config, "folder.csv")


def test_job_without_a_file(conn: Conn, config: Config) -> None:
    assert "the job has no file" in fails(conn, config, "", file_id=None)


def test_max_rows_and_max_bytes_protect_the_daemon(conn: Conn, make_config: Any, root: Path) -> None:
    name = write(root, "big.csv", "n,v\n" + "".join(f"{i},{i * 2}\n" for i in range(50)))
    few_rows = make_config(job_processing={"file_root": str(root), "analysis_max_rows": 49})
    assert "more than 49 rows (job_processing.analysis_max_rows)" in fails(conn, few_rows, name)
    size = (root / name).stat().st_size
    few_bytes = make_config(job_processing={"file_root": str(root), "analysis_max_bytes": size - 1})
    assert f"is {size} bytes, over job_processing.analysis_max_bytes ({size - 1})" in fails(
        conn, few_bytes, name
    )
    enough = make_config(
        job_processing={"file_root": str(root), "analysis_max_rows": 50, "analysis_max_bytes": size}
    )
    job_id = insert_job(conn, job_type="analysis", file_id=insert_file(conn, name))
    Worker(enough).run_once()
    assert job(conn, job_id)["status"] == "completed"


def test_a_missing_root_setting_is_a_permanent_error(conn: Conn, make_config: Any, root: Path) -> None:
    name = write(root, "ok.csv", "a\n1\n")
    message = fails(conn, make_config(), name)
    assert "job_processing.file_root is not set" in message
    gone = make_config(job_processing={"file_root": str(root / "nope")})
    assert "is not a folder" in fails(conn, gone, name)


# --- the root is a fence: `..`, absolute paths and symlinks may not leave it -------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.csv"
    secret.write_text("user,password\nadmin,hunter2\n")
    return secret


def test_dotdot_cannot_leave_the_root(conn: Conn, config: Config, outside: Path) -> None:
    message = fails(conn, config, "../secret.csv")
    assert "file_path '../secret.csv' resolves outside job_processing.file_root" in message
    assert "hunter2" not in message


def test_an_absolute_path_outside_the_root_is_refused(conn: Conn, config: Config, outside: Path) -> None:
    assert "resolves outside job_processing.file_root" in fails(conn, config, str(outside))


def test_a_symlink_out_of_the_root_is_refused(conn: Conn, config: Config, root: Path, outside: Path) -> None:
    os.symlink(outside, root / "link.csv")
    (root / "sub").mkdir()
    os.symlink(outside.parent, root / "sub" / "up")
    assert "resolves outside job_processing.file_root" in fails(conn, config, "link.csv")
    assert "resolves outside job_processing.file_root" in fails(conn, config, "sub/up/secret.csv")


def test_paths_that_stay_inside_the_root_are_fine(conn: Conn, config: Config, root: Path) -> None:
    (root / "2024").mkdir()
    write(root, "2024/data.csv", "region,revenue\nNorth,10\nSouth,20\nNorth,5\n")
    os.symlink(root / "2024" / "data.csv", root / "latest.csv")
    for path in ("2024/data.csv", "latest.csv", "2024/../latest.csv", str(root / "2024" / "data.csv")):
        job_id = insert_job(conn, job_type="analysis", file_id=insert_file(conn, path))
        Worker(config).run_once()
        row = job(conn, job_id)
        assert row["status"] == "completed", (path, row["error_message"])
        assert row["result"]["rows"] == 3
