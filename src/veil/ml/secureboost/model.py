"""Per-party SecureBoost models: JSON files (never pickle) and feature importance.

The label holder's model holds the tree structure, leaf weights and its own
split records; a partner's model holds only its own split records (feature,
threshold, missing direction) keyed by the record ids the label holder knows.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from veil.crypto.he import HEScheme
from veil.errors import ConfigError
from veil.fileio import write_atomic
from veil.ml.secureboost.core import Node
from veil.ml.secureboost.params import Objective, SBTParams
from veil.ml.secureboost.plain import Record

FORMAT = "veil.secureboost/1"


def _params_json(p: SBTParams) -> dict[str, Any]:
    d = asdict(p)
    d["objective"], d["he"] = str(p.objective), str(p.he)
    d["class_weight"] = list(p.class_weight) if p.class_weight else None
    return d


def _params_from(d: dict[str, Any]) -> SBTParams:
    d = dict(d)
    d.pop("allow_small_keys", None)  # written by models saved before SecurityPolicy
    d["objective"], d["he"] = Objective(d["objective"]), HEScheme(d["he"])
    d["class_weight"] = tuple(d["class_weight"]) if d.get("class_weight") else None
    return SBTParams(**d)


def _rec_json(r: Record) -> dict[str, Any]:
    thr = r.threshold if r.threshold != float("inf") else "inf"
    return {"feature": r.feature, "threshold": thr, "default_left": r.default_left, "tree": r.tree}


def _rec_from(d: dict[str, Any]) -> Record:
    return Record(int(d["feature"]), float(d["threshold"]), bool(d["default_left"]), int(d["tree"]))


def _importance(
    names: list[str], records: list[Record], gains: dict[int, float]
) -> dict[str, dict[str, float]]:
    out = {n: {"split": 0.0, "gain": 0.0} for n in names}
    for i, r in enumerate(records):
        out[names[r.feature]]["split"] += 1
        out[names[r.feature]]["gain"] += gains.get(i, 0.0)
    return out


@dataclass
class LabelHolderModel:
    """Trees (structure + leaf weights) and the label holder's own split records."""

    params: SBTParams
    base: float
    trees: list[list[Node]]
    parties: list[str]
    feature_names: list[str]
    records: list[Record]
    valid_loss: list[float] = field(default_factory=list)

    def importance(self) -> dict[str, dict[str, float]]:
        """Split count and total gain per own feature; partners appear only as a total."""
        gains: dict[int, float] = {}
        other: dict[str, dict[str, float]] = {}
        for nodes in self.trees:
            for nd in nodes:
                if nd.party == 0:
                    gains[nd.record] = nd.gain
                elif nd.party > 0:
                    o = other.setdefault(f"<{self.parties[nd.party]}>", {"split": 0, "gain": 0})
                    o["split"] += 1
                    o["gain"] += nd.gain
        return {**_importance(self.feature_names, self.records, gains), **other}

    def to_json(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "role": "label_holder",
            "params": _params_json(self.params),
            "base": self.base,
            "parties": self.parties,
            "feature_names": self.feature_names,
            "trees": [[nd.to_json() for nd in t] for t in self.trees],
            "records": [_rec_json(r) for r in self.records],
            "valid_loss": self.valid_loss,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LabelHolderModel:
        _check(d, "label_holder")
        return cls(
            _params_from(d["params"]),
            float(d["base"]),
            [[Node(**nd) for nd in t] for t in d["trees"]],
            list(d["parties"]),
            list(d["feature_names"]),
            [_rec_from(r) for r in d["records"]],
            list(d.get("valid_loss", [])),
        )


@dataclass
class PartnerModel:
    """A partner's split records (private thresholds) and their gains."""

    params: SBTParams
    feature_names: list[str]
    records: list[Record]
    gains: dict[int, float]

    @classmethod
    def from_records(
        cls,
        p: SBTParams,
        names: list[str],
        records: list[Record],
        keep: int,
        gains: dict[int, float],
    ) -> PartnerModel:
        kept = [r for r in records if r.tree < keep]  # records are in tree order
        return cls(p, names, kept, {k: v for k, v in gains.items() if k < len(kept)})

    def importance(self) -> dict[str, dict[str, float]]:
        """Split count and total gain per own feature."""
        return _importance(self.feature_names, self.records, self.gains)

    def to_json(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "role": "partner",
            "params": _params_json(self.params),
            "feature_names": self.feature_names,
            "records": [_rec_json(r) for r in self.records],
            "gains": [[k, v] for k, v in sorted(self.gains.items())],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PartnerModel:
        _check(d, "partner")
        return cls(
            _params_from(d["params"]),
            list(d["feature_names"]),
            [_rec_from(r) for r in d["records"]],
            {int(k): float(v) for k, v in d["gains"]},
        )


def _check(d: dict[str, Any], role: str) -> None:
    if d.get("format") != FORMAT or d.get("role") != role:
        raise ConfigError(
            "model",
            f"not a SecureBoost {role} model (format {d.get('format')!r})",
            "load the file this party saved after training",
        )


def save(model: LabelHolderModel | PartnerModel, path: str | Path) -> None:
    """Write a model as JSON."""
    write_atomic(Path(path), json.dumps(model.to_json(), indent=1))


def load(path: str | Path) -> LabelHolderModel | PartnerModel:
    """Read a model written by :func:`save`."""
    d = json.loads(Path(path).read_text())
    return (
        LabelHolderModel.from_json(d)
        if d.get("role") == "label_holder"
        else (PartnerModel.from_json(d))
    )
