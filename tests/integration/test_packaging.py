"""The sdist and the wheel, built for real: what they carry, and README links that work off the repository."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BLOB = "https://github.com/jobcron/jobcron/blob/main/"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--sdist",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out


def test_the_wheel_carries_the_package_its_data_and_the_deploy_files(dist: Path) -> None:
    (wheel,) = dist.glob("jobcron-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "jobcron/cli/__init__.py",
        "jobcron/py.typed",
        "jobcron/sql/jobs.sql",
        "jobcron/sql/migrations/0001_initial.sql",
        "jobcron/sql/migrations/0010_webhooks.sql",
        "jobcron/web/templates/base.html",
        "jobcron/deploy/systemd/job_cron.service",
        "jobcron/deploy/systemd/job_cron@.service",
        "jobcron/deploy/systemd/job_cron-web.service",
        "jobcron/deploy/sql/roles.sql",
        "jobcron/deploy/job_cron.env.example",
        "jobcron/deploy/config.json",
        "jobcron/deploy/docker/Dockerfile",
        "jobcron/deploy/docker/compose.yaml",
    ):
        assert needed in names, needed
    migrations = sorted(p.name for p in (REPO / "jobcron/sql/migrations").glob("*.sql"))
    assert sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("jobcron/sql/migrations/")) == migrations
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "bench/", "docs/")) for n in names)
    metadata = next(
        zipfile.ZipFile(wheel).read(n) for n in names if n.endswith(".dist-info/METADATA")
    ).decode()
    assert (
        "License-Expression: MIT" in metadata
        and "Project-URL: Source, https://github.com/jobcron/jobcron" in metadata
    )
    assert "Provides-Extra: dev" in metadata and "Classifier: Typing :: Typed" in metadata
    # the linters are the dev extra's, not the tests'
    test_extra = [line for line in metadata.splitlines() if 'extra == "test"' in line]
    assert test_extra and not any("ruff" in line or "mypy" in line for line in test_extra)


def test_the_sdist_builds_the_same_package(dist: Path) -> None:
    (sdist,) = dist.glob("jobcron-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("pyproject.toml", "README.md", "LICENSE", "jobcron/deploy/systemd/job_cron.service"):
        assert needed in names, needed


def test_readme_links_work_off_the_repository() -> None:
    text = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        assert link.startswith(("https://", "http://", "#")), (
            f"a relative link breaks on the package index: {link}"
        )
        if link.startswith(BLOB):
            path = link[len(BLOB) :].split("#", 1)[0]
            assert (REPO / path).exists(), f"README links to {path}, which is not in the repository"


def test_the_container_files_say_what_the_docs_say() -> None:
    dockerfile = (REPO / "deploy/docker/Dockerfile").read_text()
    final = dockerfile.split("\nFROM ")[-1]  # the last stage is the image
    assert final.startswith("python:3.12-slim\n")
    assert "USER jobcron" in final and 'ENTRYPOINT ["job_cron"]' in final
    assert "HEALTHCHECK" in final and "/livez" in final
    assert not re.search(r"gcc|build-essential|apt-get|COPY \. ", final), (
        "no build tools or source tree in the image"
    )
    compose = (REPO / "deploy/docker/compose.yaml").read_text()
    services = re.findall(r"^  (\w+):$", compose.split("\nvolumes:")[0], re.M)
    assert services == ["db", "migrate", "job_cron", "web"]
    assert 'command: ["migrate"]' in compose and "service_completed_successfully" in compose
    assert "--health-port" in compose and "stop_grace_period: 45s" in compose
