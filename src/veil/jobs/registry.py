"""The step registry: ``@register("name")`` makes a step usable in job files.

A step is one function run by every party, ``step(ctx, params) -> outputs``,
plus an optional validator that checks its parameters in the parent before any
party starts. Adding a step is one new module in :mod:`veil.jobs.steps`; every
module there is imported on first use. Modules outside Veil can register steps
too: name them, comma-separated, in the ``VEIL_STEP_MODULES`` environment
variable (workers inherit it).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from veil.errors import ConfigError

if TYPE_CHECKING:
    from veil.jobs.context import StepContext
    from veil.jobs.spec import JobSpec

StepFn = Callable[["StepContext", Mapping[str, object]], dict[str, object]]
Validator = Callable[[Mapping[str, object], "JobSpec", str], Mapping[str, object]]
PLUGINS_ENV = "VEIL_STEP_MODULES"


@dataclass(frozen=True)
class StepDef:
    """A registered step: its name, the function every party runs, its validator."""

    name: str
    run: StepFn
    validate: Validator
    doc: str


_STEPS: dict[str, StepDef] = {}
_loaded: list[bool] = []  # non-empty once the built-in step modules are imported
_plugins: set[str] = set()  # the VEIL_STEP_MODULES entries imported so far
_lock = threading.Lock()


def _accept_any(params: Mapping[str, object], job: JobSpec, field: str) -> Mapping[str, object]:
    return params


def register(name: str, *, validate: Validator | None = None) -> Callable[[StepFn], StepFn]:
    """Register the decorated function as step ``name``.

    ``validate(params, job, field)`` returns the normalised parameters (JSON-able)
    or raises :class:`ConfigError` naming ``field`` + the key; it runs in the
    parent and again in every worker.
    """

    def deco(fn: StepFn) -> StepFn:
        old = _STEPS.get(name)
        if old is not None and old.run is not fn:
            where = f"{old.run.__module__}.{old.run.__qualname__}"
            raise ValueError(f"step '{name}' is already registered by {where}")
        _STEPS[name] = StepDef(name, fn, validate or _accept_any, (fn.__doc__ or "").strip())
        return fn

    return deco


def load_steps() -> None:
    """Import the built-in step modules (once) and those named in ``VEIL_STEP_MODULES``
    now (a module named after the first call is imported on the next)."""
    with _lock:
        if not _loaded:
            from veil.jobs import steps

            for mod in pkgutil.iter_modules(steps.__path__):
                importlib.import_module(f"{steps.__name__}.{mod.name}")
            _loaded.append(True)
        for name in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
            if name in _plugins:
                continue
            try:
                importlib.import_module(name)
            except ImportError as e:
                raise ConfigError(
                    PLUGINS_ENV, f"cannot import step module '{name}': {e}", "fix the module name"
                ) from None
            _plugins.add(name)


def has_validator(step: StepDef) -> bool:
    """Whether ``step`` registered a validator (one that knows its parameters)."""
    return step.validate is not _accept_any


def step_names() -> tuple[str, ...]:
    """Names of every registered step, sorted."""
    load_steps()
    return tuple(sorted(_STEPS))


def get(name: str) -> StepDef:
    """The step registered as ``name``."""
    load_steps()
    try:
        return _STEPS[name]
    except KeyError:
        raise ConfigError("step", f"unknown step '{name}'", f"use one of {step_names()}") from None
