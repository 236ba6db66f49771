"""The demo's pieces that need no server: --reset's safety, the summary, sample discovery."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from jobcron.dev.demo import JobReport, describe_insight, render, reset_state, sample_files
from jobcron.errors import JobCronError


def state_folder(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    (state / "pgdata" / "base").mkdir(parents=True)
    (state / "server.log").write_text("log\n")
    (state / "embedded.lock").touch()
    return state


def test_reset_deletes_an_idle_state_folder(tmp_path: Path) -> None:
    state = state_folder(tmp_path)
    assert reset_state(state) is True
    assert not state.exists()
    assert reset_state(state) is False  # nothing there: nothing to do


def test_reset_refuses_a_folder_in_use(tmp_path: Path) -> None:
    state = state_folder(tmp_path)
    with (state / "embedded.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(JobCronError, match="in use by another process"):
            reset_state(state)
    assert (state / "pgdata").is_dir()


def test_reset_refuses_a_folder_that_is_not_demo_state(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work\n")
    with pytest.raises(JobCronError, match="does not look like a demo state folder"):
        reset_state(home)
    assert (home / "thesis.tex").exists()


def test_samples_skip_readme_and_hidden_files(tmp_path: Path) -> None:
    for name in ("b.csv", "a.json", "README.md", ".hidden"):
        (tmp_path / name).write_text("x\n")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in sample_files(tmp_path)] == ["a.json", "b.csv"]
    (tmp_path / "a.json").unlink()
    (tmp_path / "b.csv").unlink()
    with pytest.raises(JobCronError, match="no sample files"):
        sample_files(tmp_path)


def test_insight_lines_are_short_and_say_what() -> None:
    row = {"insight_type": "trend", "confidence_score": 0.93, "content": {"summary": "revenue rising"}}
    assert describe_insight(row) == "trend (93%): revenue rising"
    long = {"insight_type": None, "confidence_score": None, "content": {"values": list(range(200))}}
    line = describe_insight(long)
    assert line.startswith("insight: {") and len(line) == 100 and line.endswith("…")


def test_summary_prefers_the_workflow_highlights() -> None:
    reports = [
        JobReport("1", "sales.csv", "completed", 0.25, None, ["first", "second"], ["a", "b", "c"]),
        JobReport("2", "bad.csv", "failed", 0.01, "analysis: bad.csv has no data rows", [], []),
    ]
    text = render(reports)
    assert text.splitlines() == [
        "sales.csv: completed in 0.25 s, 3 insights",
        "    - first",
        "    - second",
        "bad.csv: failed in 0.01 s",
        "    error: analysis: bad.csv has no data rows",
        "1/2 jobs completed, 3 insights",
    ]
