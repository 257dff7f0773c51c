"""Small checks for step validators, so each error names the field and the fix."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from veil.errors import ConfigError

if TYPE_CHECKING:
    from veil.jobs.spec import JobSpec


def check_keys(params: Mapping[str, object], allowed: Iterable[str], field: str) -> None:
    """Reject keys not in ``allowed`` (typos must not be ignored silently)."""
    from veil.jobs.spec import suggest

    allowed = tuple(allowed)
    for k in params:
        if k not in allowed:
            fix = suggest(str(k), allowed) if allowed else "this step takes no parameters"
            raise ConfigError(f"{field}.{k}", "unknown parameter", fix)


def party_list(
    value: object, job: JobSpec, field: str, *, default: object = None
) -> tuple[str, ...]:
    """A non-empty list of distinct party names of ``job`` (a single name is accepted)."""
    from veil.jobs.spec import one_of, suggest

    if value is None:
        value = default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(field, "must be a list of party names", one_of(job.party_names))
    out = []
    for v in value:
        if not isinstance(v, str) or v not in job.party_names:
            raise ConfigError(field, f"unknown party '{v}'", suggest(str(v), job.party_names))
        if v in out:
            raise ConfigError(field, f"party '{v}' is listed twice", "list each party once")
        out.append(v)
    return tuple(out)


def positive_int(value: object, field: str, *, default: int | None = None) -> int | None:
    """A positive integer, or ``default`` when absent."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(field, f"must be a positive integer, got {value!r}", "e.g. 4096")
    return value


def label_holder_of(
    params: Mapping[str, object], job: JobSpec, field: str, *, need_label: bool = True
) -> str:
    """The party holding the label: ``params['label_holder']`` or the one party with a label.

    ``need_label=False`` (scoring new rows) accepts a named label holder without a label column.
    """
    from veil.jobs.spec import one_of

    named = params.get("label_holder")
    if named is not None:
        if named not in job.party_names:
            raise ConfigError(
                f"{field}.label_holder", f"unknown party '{named}'", one_of(job.party_names)
            )
        if need_label and job.party(named).label is None:
            raise ConfigError(
                f"{field}.label_holder",
                f"party '{named}' has no label column",
                f"add 'label:' to parties.{named}",
            )
        return str(named)
    with_label = [p.name for p in job.parties if p.label is not None]
    if len(with_label) != 1:
        raise ConfigError(
            f"{field}.label_holder",
            f"{len(with_label)} parties have a label column {with_label}",
            "give exactly one party a 'label:' column or set label_holder",
        )
    return with_label[0]


class Checked:
    """Parameters a validator has normalised, read back with their types by the step.

    ``validate`` stores JSON-able values; the step reads each one here with the type it
    needs. A value of another type means the validator and its step disagree: a
    :class:`ConfigError` naming the key, never a value of the wrong type passed on.
    """

    def __init__(self, params: Mapping[str, object], field: str = "params") -> None:
        self.params, self.field = params, field

    def _bad(self, key: str, want: str) -> ConfigError:
        v = self.params.get(key)
        return ConfigError(f"{self.field}.{key}", f"expected {want}, got {v!r}", "fix the step")

    def get_int(self, key: str) -> int:
        v = self.params.get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self._bad(key, "an integer")
        return v

    def opt_int(self, key: str) -> int | None:
        return None if self.params.get(key) is None else self.get_int(key)

    def get_float(self, key: str, default: float | None = None) -> float:
        """A number; ``default`` if the key is absent and a default is given."""
        if default is not None and key not in self.params:
            return default
        v = self.params.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self._bad(key, "a number")
        return float(v)

    def opt_float(self, key: str) -> float | None:
        return None if self.params.get(key) is None else self.get_float(key)

    def get_bool(self, key: str) -> bool:
        v = self.params.get(key)
        if not isinstance(v, bool):
            raise self._bad(key, "true or false")
        return v

    def get_str(self, key: str) -> str:
        v = self.params.get(key)
        if not isinstance(v, str):
            raise self._bad(key, "a string")
        return v

    def opt_str(self, key: str) -> str | None:
        return None if self.params.get(key) is None else self.get_str(key)

    def strs(self, key: str) -> tuple[str, ...]:
        v = self.params.get(key)
        if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
            raise self._bad(key, "a list of strings")
        return tuple(str(x) for x in v)

    def ints(self, key: str) -> tuple[int, ...]:
        v = self.params.get(key)
        if not isinstance(v, list | tuple) or any(
            isinstance(x, bool) or not isinstance(x, int) for x in v
        ):
            raise self._bad(key, "a list of integers")
        return tuple(int(x) for x in v)

    def floats(self, key: str) -> tuple[float, ...]:
        v = self.params.get(key)
        if not isinstance(v, list | tuple) or any(
            isinstance(x, bool) or not isinstance(x, int | float) for x in v
        ):
            raise self._bad(key, "a list of numbers")
        return tuple(float(x) for x in v)

    def mapping(self, key: str) -> dict[str, object]:
        v = self.params.get(key)
        if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
            raise self._bad(key, "a mapping")
        return dict(v)


def sitting_out(params: Mapping[str, object]) -> list[str]:
    """The parties without data that a step's validator set aside (``sit_out``): they
    take no part in the step (an SS-LR dealer in psi and split)."""
    v = params.get("sit_out")
    return [str(p) for p in v] if isinstance(v, list) else []
