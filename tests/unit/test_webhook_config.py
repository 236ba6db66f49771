"""notifications.webhooks: every entry checked at load, with an error naming the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobcron.config import config_as_dict, load_config
from jobcron.errors import ConfigError
from jobcron.workflows.webhook import body_bytes, signature

SECRET = "0123456789abcdef-secret"
GOOD = {"url": "https://hooks.example.com/jobcron", "events": ["job.failed"], "secret": SECRET}


def load(tmp_path: Path, *hooks: dict[str, Any], environ: dict[str, str] | None = None) -> Any:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"notifications": {"webhooks": list(hooks)}}))
    return load_config(path, environ or {})


def test_a_good_entry_loads_with_defaults(tmp_path: Path) -> None:
    (hook,) = load(tmp_path, GOOD).notifications.webhooks
    assert hook.name.startswith("hooks.example.com-") and hook.events == ("job.failed",)
    assert hook.timeout_seconds == 10.0 and hook.max_retries == 8 and hook.job_types is None
    assert SECRET not in repr(hook)
    again = load(tmp_path, GOOD).notifications.webhooks[0]
    assert again.name == hook.name  # stable: delivery jobs name it


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": "ftp://x/y"}, r"webhooks\[0\]\.url: expected an http:// or https:// URL"),
        ({"url": "http:///nohost"}, r"webhooks\[0\]\.url"),
        ({"events": []}, r"webhooks\[0\]\.events: expected a list"),
        ({"events": ["job.exploded"]}, "unknown event 'job.exploded'"),
        ({"job_types": ["bad type!"]}, r"webhooks\[0\]\.job_types"),
        ({"secret": "short"}, "shorter than 16 characters"),
        ({"secret_env": "X"}, "give secret or secret_env"),
        ({"timeout_seconds": 0}, "timeout_seconds: a number from 0.1 to 300"),
        ({"max_retries": -1}, "max_retries: an integer from 0 to 100"),
        ({"colour": "red"}, r"unknown key notifications\.webhooks\[0\]\.colour"),
        ({"name": "two words"}, r"webhooks\[0\]\.name"),
    ],
)
def test_bad_entries_name_the_key(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, {**GOOD, **change})


def test_the_secret_may_come_from_the_environment(tmp_path: Path) -> None:
    entry = {k: v for k, v in GOOD.items() if k != "secret"} | {"secret_env": "HOOK_SECRET"}
    with pytest.raises(ConfigError, match="environment variable HOOK_SECRET is not set"):
        load(tmp_path, entry)
    (hook,) = load(tmp_path, entry, environ={"HOOK_SECRET": SECRET}).notifications.webhooks
    assert hook.secret == SECRET


def test_two_webhooks_of_one_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="two webhooks are named 'a'"):
        load(tmp_path, {**GOOD, "name": "a"}, {**GOOD, "name": "a"})


def test_config_show_redacts_the_secret(tmp_path: Path) -> None:
    shown = config_as_dict(load(tmp_path, {**GOOD, "url": "https://u:pw@hooks.example.com/x"}))
    hook = shown["notifications"]["webhooks"][0]
    assert hook["secret"] == "***" and "pw" not in hook["url"] and SECRET not in json.dumps(shown)


def test_the_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = body_bytes({"b": 1, "a": "é"})
    assert body == '{"a":"é","b":1}'.encode()
    # the value a receiver computes with: printf '%s' BODY | openssl dgst -sha256 -hmac SECRET
    assert (
        signature("key", b"hello")
        == "sha256=9307b3b915efb5171ff14d8cb55fbcc798c6c0ef1456d66ded1a6aa723a58b7b"
    )


def test_a_webhook_url_is_shown_without_its_path_or_query(tmp_path: Path) -> None:
    url = "https://hooks.slack.com/services/T000/B000/XXXXSECRET?token=abc"
    shown = config_as_dict(load(tmp_path, {**GOOD, "url": url}))["notifications"]["webhooks"][0]["url"]
    assert shown == "https://hooks.slack.com/***"
    with pytest.raises(ConfigError) as bad:
        load(tmp_path, {**GOOD, "url": "ftp://x/y?token=abc"})
    assert "token" not in str(bad.value)


def test_psql_gets_the_password_through_its_environment() -> None:
    from jobcron.db import without_password

    dsn, password = without_password("postgresql://owner:S3cret@db.example.com:5433/app?sslmode=require")
    assert password == "S3cret" and "S3cret" not in dsn
    assert "host=db.example.com" in dsn and "port=5433" in dsn and "sslmode=require" in dsn
