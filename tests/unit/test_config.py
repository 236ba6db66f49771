"""load_config: precedence, every error path, redaction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobcron.config import ENV_TABLE, config_as_dict, load_config, redact_url
from jobcron.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


def test_defaults_keep_seed_000_meanings() -> None:
    config = load_config(None, {})
    s = config.scheduler_settings
    assert (s.interval_minutes, s.max_concurrent_jobs_per_user, s.job_timeout_minutes) == (2, 1, 30)
    assert (s.retry_failed_jobs, s.max_retries, s.cleanup_completed_jobs_days) == (True, 3, 7)
    p = config.job_processing
    assert (p.single_job_per_user, p.queue_priority, p.auto_start_processing) == (
        True,
        "first_in_first_out",
        True,
    )
    assert p.max_processing_time_minutes == 60
    assert config.poll_interval_seconds == 120
    assert config.user_limit == 1


def test_repository_config_json_is_valid() -> None:
    config = load_config(REPO / "config.json", {})
    assert config.scheduler_settings.interval_minutes == 2


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    path = write(tmp_path, {"scheduler_settings": {"max_retries": 5, "interval_minutes": 3}})
    assert load_config(path, {}).scheduler_settings.max_retries == 5
    env = {"JOB_CRON_SCHEDULER_SETTINGS_MAX_RETRIES": "7"}
    assert load_config(path, env).scheduler_settings.max_retries == 7
    flags = {"scheduler_settings": {"max_retries": 9}}
    config = load_config(path, env, flags)
    assert config.scheduler_settings.max_retries == 9
    assert config.scheduler_settings.interval_minutes == 3


def test_database_url_from_env_and_postgres_url_fallback() -> None:
    assert load_config(None, {"POSTGRES_URL": "postgresql://a@h/db"}).database.url == "postgresql://a@h/db"
    both = {"DATABASE_URL": "postgresql://first@h/db", "POSTGRES_URL": "postgresql://second@h/db"}
    assert load_config(None, both).database.url == "postgresql://first@h/db"


def test_single_job_per_user_false_means_unlimited() -> None:
    config = load_config(None, {}, {"job_processing": {"single_job_per_user": False}})
    assert config.user_limit is None
    config = load_config(None, {}, {"scheduler_settings": {"max_concurrent_jobs_per_user": 3}})
    assert config.user_limit == 3


def test_interval_seconds_overrides_minutes() -> None:
    config = load_config(None, {"JOB_CRON_INTERVAL_SECONDS": "0.5"})
    assert config.poll_interval_seconds == 0.5


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"scheduler_settings": {"interval_minute": 2}}, "scheduler_settings.interval_minute"),
        ({"bogus_section": {}}, "bogus_section"),
        ({"scheduler_settings": {"max_retries": "3"}}, "scheduler_settings.max_retries"),
        ({"scheduler_settings": {"max_retries": 2.5}}, "scheduler_settings.max_retries"),
        ({"scheduler_settings": {"max_retries": True}}, "scheduler_settings.max_retries"),
        ({"scheduler_settings": {"max_retries": -1}}, "scheduler_settings.max_retries"),
        ({"scheduler_settings": {"interval_minutes": 0}}, "scheduler_settings.interval_minutes"),
        ({"scheduler_settings": {"retry_failed_jobs": "yes"}}, "scheduler_settings.retry_failed_jobs"),
        ({"job_processing": {"queue_priority": "lifo"}}, "job_processing.queue_priority"),
        ({"job_processing": {"execution_mode_by_type": {"x": "thread"}}}, "execution_mode_by_type.x"),
        ({"job_processing": {"file_root": 5}}, "job_processing.file_root"),
        ({"database": {"url": None, "connect_timeout_seconds": 0}}, "database.connect_timeout_seconds"),
        ({"logging": {"level": "loud"}}, "logging.level"),
        ({"scheduler_settings": None}, "scheduler_settings"),
        ({"scheduler_settings": {"max_retries": None}}, "scheduler_settings.max_retries"),
        ({"workflows": {"report": "no_colon"}}, "workflows.report"),
        ({"workflows": {"bad name!": "m:f"}}, "workflows.bad name!"),
        ({"workflows": []}, "workflows"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, data: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load_config(write(tmp_path, data), {})
    assert fragment in str(info.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.json", {})
    broken = tmp_path / "broken.json"
    broken.write_text('{"scheduler_settings": {\n  "max_retries": 3,,\n}}')
    with pytest.raises(ConfigError, match="line 2"):
        load_config(broken, {})
    listed = write(tmp_path, [1, 2])
    with pytest.raises(ConfigError, match="top level"):
        load_config(listed, {})


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"JOB_CRON_SCHEDULER_SETTINGS_MAX_RETRIES": "many"}, "JOB_CRON_SCHEDULER_SETTINGS_MAX_RETRIES"),
        ({"JOB_CRON_DAEMON_LISTEN": "maybe"}, "JOB_CRON_DAEMON_LISTEN"),
        ({"JOB_CRON_NOT_A_KEY": "1"}, "JOB_CRON_NOT_A_KEY"),
        ({"JOB_CRON_DAEMON_STALE_AFTER_SECONDS": "-4"}, "daemon.stale_after_seconds"),
    ],
)
def test_bad_environment_names_the_variable_or_key(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env)
    assert fragment in str(info.value)


def test_every_key_has_an_environment_name() -> None:
    config = config_as_dict(load_config(None, {}))
    for section, values in config.items():
        if section in ("workflows", "notifications"):
            continue  # a list of webhooks has no variable of its own (a secret comes from secret_env)
        for key in values:
            assert f"JOB_CRON_{section}_{key}".upper() in ENV_TABLE


def test_load_is_pure(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://u:pw@h/db"}
    before = dict(env)
    load_config(write(tmp_path, {}), env)
    assert env == before


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://user:s3cr3t@db:5432/app", "postgresql://user:***@db:5432/app"),
        ("postgresql://user@db/app", "postgresql://user@db/app"),
        ("host=db user=u password=s3cr3t dbname=app", "host=db user=u password=*** dbname=app"),
        (
            "postgresql://db/app?password=s3cr3t&sslmode=require",
            "postgresql://db/app?password=***&sslmode=require",
        ),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_config_show_redacts() -> None:
    config = load_config(None, {"DATABASE_URL": "postgresql://u:hunter2@h/db"})
    assert "hunter2" not in json.dumps(config_as_dict(config))


def test_relative_file_root_in_the_file_is_relative_to_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "config.json"
    path.write_text(json.dumps({"job_processing": {"file_root": "data/uploads"}}))
    assert load_config(path, {}).job_processing.file_root == str(folder / "data" / "uploads")
    # from the environment it stays as given (relative to where the daemon runs)
    env = {"JOB_CRON_JOB_PROCESSING_FILE_ROOT": "uploads"}
    assert load_config(path, env).job_processing.file_root == "uploads"
    path.write_text(json.dumps({"job_processing": {"file_root": "/srv/uploads"}}))
    assert load_config(path, {}).job_processing.file_root == "/srv/uploads"


def test_prepared_statements_switch(tmp_path: Path) -> None:
    assert load_config(None, {}).database.prepared_statements is True
    env = {"JOB_CRON_DATABASE_PREPARED_STATEMENTS": "false"}
    assert load_config(None, env).database.prepared_statements is False
