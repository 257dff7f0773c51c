"""The step registry: built-in steps once, ``VEIL_STEP_MODULES`` whenever it names more."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.errors import ConfigError
from veil.jobs import registry

LATE = """
from veil.jobs.registry import register


@register("_late_probe")
def late(ctx, params):
    return {}
"""


def test_a_step_module_named_after_the_first_load_is_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)
    assert "psi" in registry.step_names()  # the built-in steps are loaded now
    assert "_late_probe" not in registry.step_names()
    (tmp_path / "late_probe_steps.py").write_text(LATE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(registry.PLUGINS_ENV, "late_probe_steps")
    assert registry.get("_late_probe").name == "_late_probe"


def test_a_step_module_that_cannot_be_imported_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.PLUGINS_ENV, "no_such_veil_steps_module")
    with pytest.raises(ConfigError, match="no_such_veil_steps_module"):
        registry.step_names()
