"""Reproducible by default: a seed for every step that takes one and was not given one.

A step takes a seed when its validator accepts a ``seed`` parameter (and does not
fill one in itself). Where the job file gives none, the step gets one derived from
the job (SHA-256 of its name, party names and steps, as every site sees them) and
the step's index, so the same job on the same data gives the same model and scores,
run after run, at every site alike. Seeds drive only public choices (batch order,
splits, sampling); keys, masks and every other cryptographic secret stay fresh from
the OS generator. ``report.json`` says which seeds were derived.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from veil.errors import ConfigError
from veil.jobs import registry

if TYPE_CHECKING:
    from veil.jobs.spec import JobSpec

SEED_KEY = "seed"
DERIVED = "derived from the job (SHA-256 of its name, parties and steps) and the step index"


def job_digest(
    name: str, parties: Sequence[str], steps: Sequence[tuple[str, Mapping[str, object]]]
) -> bytes:
    """SHA-256 of what every site's job file must agree on (not data paths or columns)."""
    doc = {"name": name, "parties": sorted(parties), "steps": [[n, dict(p)] for n, p in steps]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).digest()


def step_seed(digest: bytes, index: int) -> int:
    """The seed of step ``index`` of the job with ``digest`` (31 bits, non-negative)."""
    h = hashlib.sha256(digest + b"/step/" + str(index).encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def with_seed(
    step: str,
    raw: Mapping[str, object],
    checked: Mapping[str, object],
    *,
    job: JobSpec,
    field: str,
    seed: int,
) -> Mapping[str, object] | None:
    """``checked`` with ``seed`` filled in if step ``step`` takes a seed and has none, else None."""
    sdef = registry.get(step)
    if not registry.has_validator(sdef) or checked.get(SEED_KEY) is not None:
        return None
    if raw.get(SEED_KEY) is not None:
        return None
    try:
        out = sdef.validate({**raw, SEED_KEY: seed}, job, field)
    except ConfigError:
        return None  # the step takes no seed
    return out if out.get(SEED_KEY) == seed else None
