"""The workflow registry: job_type -> callable, from built-ins, config and the `jobcron.workflows` entry points."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from jobcron.errors import ConfigError, WorkflowNotFound
from jobcron.workflows.base import Workflow, WorkflowContext
from jobcron.workflows.builtin import noop, sleep

ENTRY_POINT_GROUP = "jobcron.workflows"


def _analysis(ctx: WorkflowContext) -> Any:
    # imported on first use so that daemons that never analyse files don't pay for it
    from jobcron.workflows.analysis import analysis

    return analysis(ctx)


def _webhook(ctx: WorkflowContext) -> Any:
    from jobcron.workflows.webhook import deliver

    return deliver(ctx)


# jobcron.webhook delivers the outbox of notifications.webhooks (migration 0010)
BUILTINS: dict[str, Workflow] = {
    "noop": noop,
    "sleep": sleep,
    "analysis": _analysis,
    "jobcron.webhook": _webhook,
}


def load_target(name: str, target: str) -> Workflow:
    """Import "module:function" for a configured job type, with a clear error naming it."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"workflows.{name}: cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:  # the module is there but fails to run: a syntax error, a missing setting
        raise ConfigError(
            f"workflows.{name}: importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"workflows.{name}: {target!r} is not a callable")
    return fn  # type: ignore[no-any-return]


class Registry:
    """Resolves a job_type to its workflow; configured names override entry points, which override built-ins."""

    def __init__(self, configured: Mapping[str, str], *, use_entry_points: bool = True) -> None:
        self._workflows: dict[str, Workflow] = dict(BUILTINS)
        if use_entry_points:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                self._workflows[ep.name] = _lazy_entry_point(ep.name, ep.value)
        for name, target in configured.items():
            self._workflows[name] = load_target(name, target)

    def get(self, job_type: str) -> Workflow:
        """The workflow for a job type, or WorkflowNotFound naming it."""
        try:
            return self._workflows[job_type]
        except KeyError:
            known = ", ".join(sorted(self._workflows))
            raise WorkflowNotFound(f"unknown job_type {job_type!r} (registered: {known})") from None

    def names(self) -> list[str]:
        """Registered job types."""
        return sorted(self._workflows)


def _lazy_entry_point(name: str, target: str) -> Callable[[WorkflowContext], Any]:
    loaded: list[Workflow] = []

    def call(ctx: WorkflowContext) -> Any:
        if not loaded:
            loaded.append(load_target(name, target))
        return loaded[0](ctx)

    return call
