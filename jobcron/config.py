"""Configuration: frozen dataclasses, validated at load; defaults < file < environment < CLI flags."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from jobcron.errors import ConfigError, JsonRefused
from jobcron.jsontext import parse_json

ENV_PREFIX = "JOB_CRON_"
# Environment names that are not config keys but are read elsewhere (the CLI's own flags).
ENV_RESERVED = frozenset({"JOB_CRON_CONFIG", "JOB_CRON_WORKER_ID"})
DEFAULT_CONFIG_PATH = "config.json"

QUEUE_ORDERS = ("first_in_first_out", "priority")
EXECUTION_MODES = ("inline", "process")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "console", "json")


def _opt(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] | None = None,
    secret: bool = False,
    pattern: tuple[str, str] | None = None,
) -> Any:
    """A dataclass field with its validation bounds kept beside the default (pattern: regex, what it means)."""
    meta = {"lo": lo, "hi": hi, "choices": choices, "secret": secret, "pattern": pattern}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the queue lives."""

    url: str | None = _opt(None, secret=True)
    connect_timeout_seconds: int = _opt(5, lo=1, hi=300)
    application_name: str = _opt("job_cron")
    # false behind a transaction-mode pooler that cannot keep prepared statements or startup options
    prepared_statements: bool = _opt(True)
    # how long any statement of the daemon or of a command waits for a lock another session holds
    # (a migration's LOCK TABLE, a row another application keeps locked) before the server ends it;
    # the daemon then retries it like an outage, a command gives up; 0: wait as long as it takes
    lock_timeout_seconds: float = _opt(5, lo=0, hi=3600)
    # the schema jobcron's tables live in (null: the server's search_path, normally public)
    schema: str | None = _opt(
        None,
        pattern=(r"[a-z_][a-z0-9_]{0,62}", "a lower-case SQL identifier (letters, digits, _; at most 63)"),
    )


@dataclass(frozen=True)
class SchedulerSettings:
    """The `scheduler_settings` section that existing config files have: same keys, meanings and defaults."""

    interval_minutes: float = _opt(2, lo=0.001, hi=1440)
    max_concurrent_jobs_per_user: int = _opt(1, lo=1, hi=1000)
    job_timeout_minutes: float = _opt(30, lo=0.01, hi=10080)
    retry_failed_jobs: bool = _opt(True)
    max_retries: int = _opt(3, lo=0, hi=1000)
    cleanup_completed_jobs_days: float = _opt(7, lo=0, hi=36500)


@dataclass(frozen=True)
class JobProcessing:
    """The `job_processing` section that existing config files have, plus how and where jobs run."""

    single_job_per_user: bool = _opt(True)
    queue_priority: str = _opt("first_in_first_out", choices=QUEUE_ORDERS)
    auto_start_processing: bool = _opt(True)
    max_processing_time_minutes: float = _opt(60, lo=0.01, hi=10080)
    execution_mode: str = _opt("process", choices=EXECUTION_MODES)
    execution_mode_by_type: dict[str, str] = field(default_factory=dict)
    memory_limit_mb: int | None = _opt(None, lo=16, hi=1_048_576)
    file_root: str | None = _opt(None)
    max_metadata_bytes: int = _opt(65536, lo=2, hi=100_000_000)
    analysis_max_rows: int = _opt(10_000_000, lo=1, hi=10_000_000_000)
    analysis_max_bytes: int = _opt(2 * 1024**3, lo=1, hi=1024**4)


@dataclass(frozen=True)
class DaemonSettings:
    """The loop's timers; `interval_seconds`, when set, overrides `interval_minutes`."""

    interval_seconds: float | None = _opt(None, lo=0.01, hi=86400)
    listen: bool = _opt(True)
    heartbeat_interval_seconds: float = _opt(5, lo=0.05, hi=3600)
    stale_after_seconds: float = _opt(60, lo=0.2, hi=86400)
    rescue_interval_seconds: float = _opt(15, lo=0.05, hi=86400)
    worker_heartbeat_seconds: float = _opt(10, lo=0.05, hi=3600)
    shutdown_grace_seconds: float = _opt(30, lo=0, hi=86400)
    cancel_grace_seconds: float = _opt(5, lo=0, hi=3600)
    retention_interval_seconds: float = _opt(300, lo=0.05, hi=86400)
    retention_batch_size: int = _opt(1000, lo=1, hi=100_000)
    schedule_check_seconds: float = _opt(1, lo=0.05, hi=3600)
    # null: after downtime a schedule always runs once for its latest missed occurrence; N: only if
    # that occurrence is at most N seconds late (older ones are skipped)
    schedule_catch_up_seconds: float | None = _opt(None, lo=0, hi=366 * 86400)
    # `run --once` (a cron job, a CI step) gives up on an unreachable database after this long, with
    # exit 1; a plain `run` waits as long as it takes (under systemd, TimeoutStartSec bounds the start)
    once_db_wait_seconds: float = _opt(60, lo=0, hi=86400)


@dataclass(frozen=True)
class RetrySettings:
    """In-process (tenacity) and durable (back to pending) retry policy."""

    in_process_attempts: int = _opt(3, lo=1, hi=100)
    in_process_backoff_seconds: float = _opt(0.2, lo=0, hi=3600)
    in_process_backoff_max_seconds: float = _opt(5, lo=0, hi=3600)
    durable_backoff_seconds: float = _opt(10, lo=0, hi=86400)
    durable_backoff_max_seconds: float = _opt(3600, lo=0, hi=7 * 86400)


@dataclass(frozen=True)
class LoggingSettings:
    """Log level and renderer (`auto`: console on a terminal, JSON lines otherwise)."""

    level: str = _opt("info", choices=LOG_LEVELS)
    format: str = _opt("auto", choices=LOG_FORMATS)


@dataclass(frozen=True)
class TelemetrySettings:
    """[telemetry]: OpenTelemetry spans per job (jobcron.telemetry), off by default."""

    otel: bool = _opt(False)
    # the metadata key an enqueuer stores its W3C trace context under
    trace_metadata_key: str = _opt("trace_context")


WEBHOOK_EVENTS = ("job.completed", "job.failed", "job.cancelled", "job.retried", "schedule.failed")
_WEBHOOK_KEYS = (
    "name",
    "url",
    "events",
    "job_types",
    "secret",
    "secret_env",
    "timeout_seconds",
    "max_retries",
)
MIN_SECRET_LENGTH = 16


@dataclass(frozen=True)
class Webhook:
    """One `notifications.webhooks` entry: where to POST which events, signed with its secret.

    The name identifies it in the database (the subscriptions and each delivery job name it; the URL
    and the secret stay in the config of the daemons that deliver). Default: the URL's host and a hash of
    the URL, stable while the URL is.
    """

    name: str
    url: str
    events: tuple[str, ...]
    secret: str = field(repr=False)
    job_types: tuple[str, ...] | None = None
    timeout_seconds: float = 10.0
    max_retries: int = 8


@dataclass(frozen=True)
class NotificationSettings:
    """[notifications]: webhooks for job and schedule events (docs/notifications.md)."""

    webhooks: tuple[Webhook, ...] = ()


@dataclass(frozen=True)
class Config:
    """The effective configuration of one daemon or command."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    scheduler_settings: SchedulerSettings = field(default_factory=SchedulerSettings)
    job_processing: JobProcessing = field(default_factory=JobProcessing)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    workflows: dict[str, str] = field(default_factory=dict)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)

    @property
    def poll_interval_seconds(self) -> float:
        """How long an idle daemon waits between polls when no notification arrives."""
        if self.daemon.interval_seconds is not None:
            return self.daemon.interval_seconds
        return self.scheduler_settings.interval_minutes * 60

    @property
    def user_limit(self) -> int | None:
        """Jobs of one user that may run at once; None means unlimited."""
        if not self.job_processing.single_job_per_user:
            return None
        return self.scheduler_settings.max_concurrent_jobs_per_user

    def execution_mode_for(self, job_type: str) -> str:
        """The execution mode of a job type: its override, else the daemon's mode (webhook deliveries: inline,
        a short HTTP request of jobcron's own code is not worth a job process)."""
        default = "inline" if job_type == "jobcron.webhook" else self.job_processing.execution_mode
        return self.job_processing.execution_mode_by_type.get(job_type, default)


# the sections of plain keys; workflows and notifications have shapes of their own
SECTIONS: dict[str, type[Any]] = {
    f.name: typing.get_type_hints(Config)[f.name]
    for f in dataclasses.fields(Config)
    if f.name not in ("workflows", "notifications")
}
_WORKFLOW_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_WORKFLOW_NAME = re.compile(r"^[\w.-]{1,100}$")


def _base_types(hint: Any) -> tuple[type[Any], ...]:
    """The runtime types a type hint admits (None included for optionals)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        out: tuple[type[Any], ...] = ()
        for arg in typing.get_args(hint):
            out += _base_types(arg)
        return out
    if hint is type(None) or hint is None:
        return (type(None),)
    if origin is not None:
        return (origin,)
    return (hint,)


def _check_text(key: str, value: str, meta: Any) -> None:
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{key}: must be one of {', '.join(meta['choices'])}, got {value!r}")
    if meta.get("pattern") and not re.fullmatch(meta["pattern"][0], value):
        raise ConfigError(f"{key}: must be {meta['pattern'][1]}, got {value[:80]!r}")


def _check_value(key: str, value: Any, f: dataclasses.Field[Any], hint: Any) -> Any:
    """Validate one value against its field's type and bounds; return it normalised."""
    allowed = _base_types(hint)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{key}: must not be null")
    if isinstance(value, bool) and bool not in allowed:
        raise ConfigError(f"{key}: expected {_type_name(allowed)}, got a boolean")
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise ConfigError(f"{key}: must be a finite number, got an integer too large for one") from None
    if not isinstance(value, tuple(t for t in allowed if t is not type(None))):
        raise ConfigError(f"{key}: expected {_type_name(allowed)}, got {type(value).__name__} {value!r}")
    meta = f.metadata
    if isinstance(value, str):
        _check_text(key, value, meta)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        if meta.get("lo") is not None and value < meta["lo"]:
            raise ConfigError(f"{key}: must be >= {meta['lo']}, got {value!r}")
        if meta.get("hi") is not None and value > meta["hi"]:
            raise ConfigError(f"{key}: must be <= {meta['hi']}, got {value!r}")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(v, str) or v not in EXECUTION_MODES:
                raise ConfigError(f"{key}.{k}: must be one of {', '.join(EXECUTION_MODES)}, got {v!r}")
    return value


def _type_name(allowed: tuple[type[Any], ...]) -> str:
    names = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "object"}
    return " or ".join(names.get(t, "null") for t in allowed)


def _parse_env_value(key: str, raw: str, hint: Any) -> Any:
    """Turn an environment string into the field's type."""
    allowed = _base_types(hint)
    text = raw.strip()
    if type(None) in allowed and text.lower() in ("", "null", "none"):
        return None
    if bool in allowed:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected a boolean (true/false), got {raw!r}")
    if int in allowed:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {raw!r}") from None
    if float in allowed:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {raw!r}") from None
    if dict in allowed:
        try:
            return parse_json(text)
        except JsonRefused as exc:
            raise ConfigError(f"{key}: expected a JSON object: {exc.reason}") from None
    return raw


def _env_table() -> dict[str, tuple[str, str]]:
    """Environment variable name -> (section, key) for every config key."""
    table: dict[str, tuple[str, str]] = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            table[f"{ENV_PREFIX}{section}_{f.name}".upper()] = (section, f.name)
    # short aliases for the keys operators set most
    table["JOB_CRON_LOG_LEVEL"] = ("logging", "level")
    table["JOB_CRON_LOG_FORMAT"] = ("logging", "format")
    table["JOB_CRON_INTERVAL_SECONDS"] = ("daemon", "interval_seconds")
    return table


ENV_TABLE = _env_table()


def load_config(
    path: str | Path | None,
    environ: Mapping[str, str],
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Build the effective config from a file (None: defaults only), an environment and CLI overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_file(Path(path))
    notifications = _check_notifications(raw.get("notifications"), environ)
    sections, workflows = _file_sections({k: v for k, v in raw.items() if k != "notifications"})
    _apply_environment(sections, environ)
    for section, values in (overrides or {}).items():
        if section == "workflows":
            workflows.update(values)
            continue
        if section == "notifications":
            notifications = _check_notifications(values, environ)
            continue
        for key, value in values.items():
            if value is not None:
                sections.setdefault(section, {})[key] = value

    _anchor_file_root(sections, raw, path)
    built: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        built[section] = _build_section(section, cls, sections.get(section, {}))
    built["workflows"] = _check_workflows(workflows)
    built["notifications"] = notifications
    return Config(**built)


def _file_sections(raw: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The config file's sections and its workflows, checked for shape (values are checked later)."""
    sections: dict[str, dict[str, Any]] = {}
    workflows: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "workflows":
            if not isinstance(value, dict):
                raise ConfigError(f"workflows: expected an object, got {type(value).__name__}")
            workflows = dict(value)
            continue
        if name.startswith("_"):
            continue  # "_comment" keys document the file
        if name not in SECTIONS:
            known = ", ".join([*SECTIONS, "workflows", "notifications"])
            raise ConfigError(f"unknown section {name!r} (known: {known})")
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected an object, got {type(value).__name__}")
        sections[name] = {k: v for k, v in value.items() if not k.startswith("_")}
    return sections, workflows


def _apply_environment(sections: dict[str, dict[str, Any]], environ: Mapping[str, str]) -> None:
    """JOB_CRON_SECTION__KEY variables and DATABASE_URL / POSTGRES_URL over the file's values."""
    for env_name, raw_value in environ.items():
        if env_name in ("DATABASE_URL", "POSTGRES_URL"):
            continue
        if not env_name.startswith(ENV_PREFIX) or env_name in ENV_RESERVED:
            continue
        if env_name not in ENV_TABLE:
            raise ConfigError(f"unknown environment variable {env_name}")
        section, key = ENV_TABLE[env_name]
        hint = typing.get_type_hints(SECTIONS[section])[key]
        sections.setdefault(section, {})[key] = _parse_env_value(env_name, raw_value, hint)
    url = environ.get("DATABASE_URL") or environ.get("POSTGRES_URL")
    if url:
        sections.setdefault("database", {})["url"] = url


def _anchor_file_root(
    sections: dict[str, dict[str, Any]], raw: Mapping[str, Any], path: str | Path | None
) -> None:
    """A relative job_processing.file_root written in the config file is relative to that file's folder.

    The daemon's working directory depends on how it was started (systemd runs it in /); the
    file's folder does not. A value from the environment or a flag stays as given.
    """
    from_file = raw.get("job_processing", {})
    root = sections.get("job_processing", {}).get("file_root")
    if (
        path is None
        or not isinstance(from_file, dict)
        or not isinstance(root, str)
        or root != from_file.get("file_root")
        or Path(root).is_absolute()
    ):
        return
    sections["job_processing"]["file_root"] = str(Path(os.path.abspath(Path(path).parent / root)))


def _build_section(section: str, cls: type[Any], values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in by_name:
            raise ConfigError(f"unknown key {section}.{key} (known: {', '.join(by_name)})")
        kwargs[key] = _check_value(f"{section}.{key}", value, by_name[key], hints[key])
    return cls(**kwargs)


def _check_workflows(values: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, target in values.items():
        if not _WORKFLOW_NAME.match(name):
            raise ConfigError(f"workflows.{name}: job type names use letters, digits, '_', '.', '-'")
        if not isinstance(target, str) or not _WORKFLOW_TARGET.match(target):
            raise ConfigError(f'workflows.{name}: expected "module:function", got {target!r}')
        out[name] = target
    return out


def _check_notifications(value: Any, environ: Mapping[str, str]) -> NotificationSettings:
    """The notifications section: {"webhooks": [{url, events, job_types?, secret | secret_env, ...}]}."""
    if value is None:
        return NotificationSettings()
    if not isinstance(value, dict):
        raise ConfigError(f"notifications: expected an object, got {type(value).__name__}")
    unknown = [k for k in value if k != "webhooks" and not k.startswith("_")]
    if unknown:
        raise ConfigError(f"unknown key notifications.{unknown[0]} (known: webhooks)")
    entries = value.get("webhooks", [])
    if not isinstance(entries, list):
        raise ConfigError(f"notifications.webhooks: expected a list, got {type(entries).__name__}")
    hooks = tuple(_webhook(f"notifications.webhooks[{i}]", e, environ) for i, e in enumerate(entries))
    names = [h.name for h in hooks]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                f"notifications.webhooks: two webhooks are named {name!r}; give each its own name"
            )
    return NotificationSettings(webhooks=hooks)


def _webhook(where: str, entry: Any, environ: Mapping[str, str]) -> Webhook:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected an object, got {type(entry).__name__}")
    entry = {k: v for k, v in entry.items() if not k.startswith("_")}
    unknown = [k for k in entry if k not in _WEBHOOK_KEYS]
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]} (known: {', '.join(_WEBHOOK_KEYS)})")
    url = entry.get("url")
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        host = parts.hostname if parts else None
    except ValueError:
        parts = host = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        shown = str(url).split("?", 1)[0].split("#", 1)[0][:40]  # never a query string's token
        raise ConfigError(f"{where}.url: expected an http:// or https:// URL with a host, got {shown!r}")
    events = entry.get("events")
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise ConfigError(f"{where}.events: expected a list of events ({', '.join(WEBHOOK_EVENTS)})")
    bad = [e for e in events if e not in WEBHOOK_EVENTS]
    if bad:
        raise ConfigError(f"{where}.events: unknown event {bad[0]!r} (known: {', '.join(WEBHOOK_EVENTS)})")
    job_types = entry.get("job_types")
    if job_types is not None and (
        not isinstance(job_types, list)
        or not job_types
        or not all(isinstance(t, str) and _WORKFLOW_NAME.match(t) for t in job_types)
    ):
        raise ConfigError(f"{where}.job_types: expected a non-empty list of job type names")
    secret = _webhook_secret(where, entry, environ)
    name = entry.get("name")
    if name is None:
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:8]
        name = f"{host}-{digest}"
    if not isinstance(name, str) or not _WORKFLOW_NAME.match(name):
        raise ConfigError(f"{where}.name: letters, digits, '_', '.', '-' (1-100), got {str(name)[:80]!r}")
    timeout = entry.get("timeout_seconds", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0.1 <= timeout <= 300:
        raise ConfigError(f"{where}.timeout_seconds: a number from 0.1 to 300, got {timeout!r}")
    retries = entry.get("max_retries", 8)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
        raise ConfigError(f"{where}.max_retries: an integer from 0 to 100, got {retries!r}")
    return Webhook(
        name=name,
        url=url,
        events=tuple(dict.fromkeys(events)),
        secret=secret,
        job_types=None if job_types is None else tuple(job_types),
        timeout_seconds=float(timeout),
        max_retries=retries,
    )


def _webhook_secret(where: str, entry: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    """The signing secret, from `secret` or from the environment variable `secret_env` names."""
    if ("secret" in entry) == ("secret_env" in entry):
        raise ConfigError(
            f"{where}: give secret or secret_env (the name of an environment variable), one of them"
        )
    if "secret_env" in entry:
        env_name = entry["secret_env"]
        if not isinstance(env_name, str) or not env_name:
            raise ConfigError(f"{where}.secret_env: expected the name of an environment variable")
        secret = environ.get(env_name)
        if secret is None:
            raise ConfigError(f"{where}.secret_env: environment variable {env_name} is not set")
    else:
        secret = entry["secret"]
        if not isinstance(secret, str):
            raise ConfigError(f"{where}.secret: expected a string")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{where}: the secret is shorter than {MIN_SECRET_LENGTH} characters")
    return secret


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = parse_json(text)
    except JsonRefused as exc:
        where = "" if exc.lineno is None else f" at line {exc.lineno} column {exc.colno}"
        raise ConfigError(f"{path}: invalid JSON{where}: {exc.reason}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a JSON object")
    return data


def redact_url(url: str | None) -> str | None:
    """The URL with its password replaced by '***' (also a password=... keyword in a libpq string)."""
    if url is None:
        return None
    if "://" in url:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:  # a malformed port or host: still never show what sits before the '@'
            url = re.sub(r"(://[^/:@]*):[^/]*@", r"\1:***@", url)
        else:
            if parts.password is not None:
                user = parts.username or ""
                host = parts.hostname or ""
                if port:
                    host = f"{host}:{port}"
                netloc = f"{user}:***@{host}"
                url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        # a password may also be in the query string, with or without one before the '@'
        return re.sub(r"password=[^&]*", "password=***", url) if "password=" in url else url
    return re.sub(r"password\s*=\s*('[^']*'|\S+)", "password=***", url)


def webhook_url_shown(url: str) -> str:
    """A webhook URL as shown: scheme and host only (many services put the credential in the path)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    rest = "/***" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def config_as_dict(config: Config, *, redact: bool = True) -> dict[str, Any]:
    """The config as plain JSON-able data, secrets redacted."""
    data = dataclasses.asdict(config)
    if redact:
        data["database"]["url"] = redact_url(config.database.url)
        for hook in data["notifications"]["webhooks"]:
            hook["secret"] = "***"  # noqa: S105 - the redaction mark, not a secret
            hook["url"] = webhook_url_shown(hook["url"])
    return data
