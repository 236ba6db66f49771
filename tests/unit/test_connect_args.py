"""connect_args: what a connection is opened with, and what the URL keeps for itself."""

from __future__ import annotations

from jobcron.config import load_config
from jobcron.db import connect_args


def test_the_url_s_own_connect_timeout_is_kept() -> None:
    url = "postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write&connect_timeout=2"
    dsn, params = connect_args(load_config(None, {"DATABASE_URL": url}), "worker")
    assert "connect_timeout" not in params and "connect_timeout=2" in dsn
    _, plain = connect_args(load_config(None, {"DATABASE_URL": "postgresql://u@h/db"}), "worker")
    assert plain["connect_timeout"] == 5 and plain["application_name"] == "job_cron:worker"
