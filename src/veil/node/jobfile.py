"""Cross-node job files: ``veil run``'s job file with ``dataset: NAME`` per party.

::

    name: credit-risk
    parties:
      bank:   {dataset: bank_credit}      # party name = node name
      bureau: {dataset: bureau_credit}
    steps:
      - psi: {result_to: [bank, bureau]}

The proposal carries the exact text and its SHA-256; every node approves that hash.
When all have approved, each node writes a ``veil run`` job file for its own
worker (:func:`materialize`): its own party points at its registered copy of the
dataset; the other parties get their id/label column names from their votes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from veil.errors import ConfigError
from veil.jobs.spec import JobSpec, load_job
from veil.node.model import Dataset

ALLOWED = ("name", "parties", "steps")


@dataclass(frozen=True)
class NodeJob:
    """A parsed cross-node job file."""

    name: str
    datasets: dict[str, str]  # party -> dataset name
    steps: list[tuple[str, dict[str, Any]]]
    text: str
    sha256: str

    @property
    def parties(self) -> tuple[str, ...]:
        """Party names in file order."""
        return tuple(self.datasets)

    def recipients(self) -> set[str]:
        """Parties the steps name as receivers of outputs (``*_to``, ``label_holder``)."""
        out: set[str] = set()
        for kind, params in self.steps:
            named = False
            for k, v in params.items():
                if k.endswith("_to") or k == "label_holder":
                    named = True
                    out.update([v] if isinstance(v, str) else [str(x) for x in v or []])
            if kind == "psi" and not named:
                out.update(self.parties)  # psi's default: everyone learns the intersection
        return out


def check_steps(job: NodeJob) -> None:
    """Every step must be registered here (parameters are checked when the job starts)."""
    from veil.jobs import registry
    from veil.jobs.spec import suggest

    known = registry.step_names()
    for i, (kind, _) in enumerate(job.steps):
        if kind not in known:
            raise ConfigError(f"steps[{i}]", f"unknown step '{kind}'", suggest(kind, known))


def job_sha256(text: str) -> str:
    """The hash every party approves."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_node_job(text: str) -> NodeJob:
    """Check the shape of a cross-node job file (steps are checked again before running)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError("job", f"not valid YAML: {e}", "fix the YAML syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError("job", "must be a mapping with name, parties and steps", "see README")
    for k in raw:
        if k not in ALLOWED:
            raise ConfigError(f"job.{k}", "unknown key", "use name, parties, steps")
    name, parties, steps = raw.get("name"), raw.get("parties"), raw.get("steps")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("name", "missing or not a string", "add e.g. 'name: credit-risk'")
    if not isinstance(parties, dict) or len(parties) < 2:
        raise ConfigError("parties", "needs at least two parties", "bank: {dataset: NAME}")
    datasets: dict[str, str] = {}
    for p, body in parties.items():
        if not isinstance(body, dict) or set(body) != {"dataset"}:
            raise ConfigError(
                f"parties.{p}",
                "a node job names only a dataset per party",
                f"write '{p}: {{dataset: NAME}}' (data paths stay on each node)",
            )
        if not isinstance(body["dataset"], str):
            raise ConfigError(f"parties.{p}.dataset", "must be a name", "e.g. bank_credit")
        datasets[str(p)] = body["dataset"]
    if not isinstance(steps, list) or not steps:
        raise ConfigError("steps", "missing or empty", "list the steps, e.g. '- psi: {...}'")
    parsed: list[tuple[str, dict[str, Any]]] = []
    for i, entry in enumerate(steps):
        item = {entry: None} if isinstance(entry, str) else entry
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(f"steps[{i}]", "must be one step name with its parameters", "")
        ((kind, params),) = item.items()
        if params is not None and not isinstance(params, dict):
            raise ConfigError(f"steps[{i}].{kind}", "parameters must be a mapping", "")
        parsed.append((str(kind), dict(params or {})))
    return NodeJob(str(name), datasets, parsed, text, job_sha256(text))


def party_info(ds: Dataset) -> dict[str, Any]:
    """What a party tells the others about its dataset when it votes (no data)."""
    return {"id": ds.id_col, "label": ds.label_col}


def materialize(
    job: NodeJob, me: str, mine: Dataset, infos: Mapping[str, Mapping[str, Any]], out: Path
) -> JobSpec:
    """Write the ``veil run`` job file for ``me``'s worker to ``out`` and load it."""
    parties: dict[str, dict[str, Any]] = {}
    for p in job.parties:
        if p == me:
            body: dict[str, Any] = {"data": mine.path, "id": mine.id_col}
            label = mine.label_col
        else:
            info = infos.get(p, {})
            body = {"data": f"remote-{p}.csv", "id": str(info.get("id") or "id")}
            label = info.get("label")
        if label:
            body["label"] = str(label)
        parties[p] = body
    doc = {"name": job.name, "parties": parties, "steps": [{k: v} for k, v in job.steps]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_job(out, check_data=[me])
