"""The messages of federated binning (:mod:`veil.ml.fed_binning`): tags and typed schemas.

Each schema is a frozen dataclass with ``to_wire`` (a codec-ready dict) and
``from_wire`` (checks every field on receipt). A missing field, a wrong type or an
oversized array raises :class:`~veil.errors.ProtocolError` naming the tag and the
field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from veil.crypto.encrypted import EncryptedArray
from veil.crypto.he import HEPublicKey
from veil.errors import ConfigError, ProtocolError
from veil.messages import Fields
from veil.ml import he_keys
from veil.ml.binning import FineBins, FloatArray, IntArr, regroup
from veil.policy import SecurityPolicy

__all__ = [
    "MAX_FEATURES",
    "BinSums",
    "EncLabels",
    "FeatureSums",
    "FeatureWoe",
    "KeyMsg",
    "Tag",
    "WoeMsg",
]

MAX_FEATURES = 100_000
"""Most features one partner may report (a sanity bound on a received list)."""


class Tag(StrEnum):
    """Every message of federated binning."""

    PUBLIC_KEY = "pk"  # label holder -> partner
    ENC_LABELS = "enc_labels"  # label holder -> partner
    BIN_SUMS = "bin_sums"  # partner -> label holder
    WOE = "woe"  # label holder -> partner


def _encrypted(f: Fields, name: str, pk: HEPublicKey, size: int | None = None) -> EncryptedArray:
    raw = f.get_dict(name)
    try:
        arr = EncryptedArray.from_wire(pk, raw)
    except ProtocolError as e:
        raise f.wrap(name, e) from None
    if len(arr.shape) != 1:
        raise f.error(name, f"has shape {arr.shape}, expected one dimension")
    if size is not None and len(arr) != size:
        raise f.error(name, f"has {len(arr)} ciphertexts, expected {size}")
    return arr


@dataclass(frozen=True)
class KeyMsg:
    """PUBLIC_KEY: the label holder's public key."""

    pk: HEPublicKey

    def to_wire(self) -> dict[str, object]:
        return {"pk": self.pk.to_wire()}

    @classmethod
    def from_wire(cls, msg: object, policy: SecurityPolicy) -> KeyMsg:
        f = Fields(Tag.PUBLIC_KEY, msg)
        raw = f.get_dict("pk")
        try:
            return cls(he_keys.public_key_from_wire(raw, policy))
        except ProtocolError as e:
            raise f.wrap("pk", e) from None


@dataclass(frozen=True)
class EncLabels:
    """ENC_LABELS: Enc(y_i) for every row."""

    labels: EncryptedArray

    def to_wire(self) -> dict[str, object]:
        return {"labels": self.labels.to_wire()}

    @classmethod
    def from_wire(cls, msg: object, pk: HEPublicKey) -> EncLabels:
        return cls(_encrypted(Fields(Tag.ENC_LABELS, msg), "labels", pk))


@dataclass(frozen=True)
class FeatureSums:
    """One feature in BIN_SUMS: rows per bin, whether the last bin is the missing
    values' own, and Enc(events per bin)."""

    counts: IntArr
    has_missing: bool
    events: EncryptedArray

    def to_wire(self) -> dict[str, object]:
        return {"counts": self.counts, "has_missing": self.has_missing,
                "events": self.events.to_wire()}  # fmt: skip


@dataclass(frozen=True)
class BinSums:
    """BIN_SUMS: per-bin totals of every partner feature, names if revealed."""

    features: list[FeatureSums]
    names: list[str] | None

    def to_wire(self) -> dict[str, object]:
        return {"features": [f.to_wire() for f in self.features], "names": self.names}

    @classmethod
    def from_wire(cls, msg: object, pk: HEPublicKey, *, n_rows: int, max_bins: int) -> BinSums:
        """Every feature has 1..``max_bins`` bins whose counts sum to ``n_rows``."""
        f = Fields(Tag.BIN_SUMS, msg)
        feats = []
        for i, raw in enumerate(f.get_list("features", max_size=MAX_FEATURES)):
            g = f.item("features", i, raw)
            counts = g.int_array("counts", max_size=max_bins, lo=0)
            if int(counts.sum()) != n_rows:
                raise g.error("counts", f"sums to {int(counts.sum())} rows, expected {n_rows}")
            has_missing = g.get_bool("has_missing")
            if counts.size < 1 + has_missing:
                raise g.error("counts", f"has {counts.size} bins, too few")
            feats.append(FeatureSums(counts, has_missing, _encrypted(g, "events", pk, counts.size)))
        names = None
        if f.is_set("names"):
            sent = f.get_list("names", size=len(feats))
            names = [n for n in sent if isinstance(n, str)]
            if len(names) != len(sent):
                raise f.error("names", "holds a value that is not a str")
        return cls(feats, names)


@dataclass(frozen=True)
class FeatureWoe:
    """One feature in WOE: group starts over the partner's bins (chi-merge /
    monotonic only, else None), and the WOE and IV of the final bins."""

    starts: IntArr | None
    woe: FloatArray
    iv: float

    def to_wire(self) -> dict[str, object]:
        return {"starts": self.starts, "woe": self.woe, "iv": self.iv}


@dataclass(frozen=True)
class WoeMsg:
    """WOE: ``features`` is None when WOE is not shared (nothing label-dependent)."""

    features: list[FeatureWoe] | None

    def to_wire(self) -> dict[str, object]:
        return {"features": None if self.features is None else [f.to_wire() for f in self.features]}

    @classmethod
    def from_wire(cls, msg: object, fines: Sequence[FineBins]) -> WoeMsg:
        """One entry per feature in ``fines`` (the partner's bins, in the order sent)."""
        f = Fields(Tag.WOE, msg)
        if not f.is_set("features"):
            return cls(None)
        out = []
        for i, (raw, fine) in enumerate(
            zip(f.get_list("features", size=len(fines)), fines, strict=True)
        ):
            g = f.item("features", i, raw)
            starts = None
            n_final = fine.n_bins
            if g.is_set("starts"):
                starts = g.int_array("starts", max_size=fine.n_bins, lo=0, hi=fine.n_bins - 1)
                try:
                    n_final = regroup(fine, starts).n_bins
                except ConfigError as e:
                    raise g.wrap("starts", e) from None
            out.append(FeatureWoe(starts, g.float_array("woe", size=n_final), g.get_float("iv")))
        return cls(out)
