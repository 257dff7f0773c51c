"""The messages of SecureBoost training and prediction: tags and typed schemas.

One frozen dataclass per message (per step for ``STEP``), each with ``to_wire``
(a codec-ready dict) and ``from_wire``, which checks every field against what the
receiver knows (row counts, slots, bins) and raises
:class:`~veil.errors.ProtocolError` naming the tag and the field on a missing
field, a wrong type or an oversized array. The flow is in
:mod:`veil.ml.secureboost.protocol`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from veil.codec import IntArray
from veil.crypto.he import HEPublicKey
from veil.errors import ProtocolError
from veil.messages import Fields
from veil.ml import he_keys
from veil.policy import SecurityPolicy

IntArr = npt.NDArray[np.int64]
Bits = npt.NDArray[np.bool_]

MAX_FEATURES = 100_000
"""Most usable features one partner may report (a sanity bound on received sizes)."""


class Tag(StrEnum):
    """Every message of SecureBoost training and prediction."""

    HELLO = "hello"  # partner -> label holder: row counts, usable features
    SETUP = "setup"  # label holder -> partner: public key, parameters
    STEP = "step"  # label holder -> partner: TREE / BUILD / SPLIT / DONE
    CT = "ct"  # label holder -> partner: a chunk of the tree's row ciphertexts
    NBINS = "nbins"  # partner -> label holder: bins per slot of this tree
    HIST = "hist"  # partner -> label holder: packed encrypted bin sums
    PARTITION = "partition"  # partner -> label holder: record ids and left bits
    ROUTE = "route"  # prediction, partner -> label holder: each record's left bits


class Op(StrEnum):
    """What a STEP asks of the partner."""

    TREE = "tree"
    BUILD = "build"
    SPLIT = "split"
    DONE = "done"


def pack_bits(mask: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Booleans as the packed bits the schemas carry."""
    return np.packbits(np.asarray(mask, dtype=bool))


@dataclass(frozen=True)
class Hello:
    """HELLO: the partner's training and validation rows, and its usable features."""

    rows: int
    valid_rows: int
    features: int

    def to_wire(self) -> dict[str, object]:
        return {"rows": self.rows, "valid_rows": self.valid_rows, "features": self.features}

    @classmethod
    def from_wire(cls, msg: object) -> Hello:
        f = Fields(Tag.HELLO, msg)
        return cls(
            f.get_int("rows", lo=0),
            f.get_int("valid_rows", lo=0),
            f.get_int("features", lo=1, hi=MAX_FEATURES),
        )


@dataclass(frozen=True)
class Setup:
    """SETUP: the public key (which must meet the receiver's policy) and the
    parameters, which must equal the partner's."""

    pk: HEPublicKey
    params: dict[str, Any]

    def to_wire(self) -> dict[str, object]:
        return {"pk": self.pk.to_wire(), "params": self.params}

    @classmethod
    def from_wire(cls, msg: object, policy: SecurityPolicy) -> Setup:
        f = Fields(Tag.SETUP, msg)
        raw, params = f.get_dict("pk"), f.get_dict("params")
        try:
            pk = he_keys.public_key_from_wire(raw, policy)
        except ProtocolError as e:
            raise f.wrap("pk", e) from None
        return cls(pk, params)


@dataclass(frozen=True)
class TreeStep:
    """STEP tree: tree ``t`` starts; (G, H) pairs take ``slot`` bits, ``k`` per
    ciphertext; ``rows`` (sampled rows, None when the instance space is hidden)
    arrive in CT chunks of ``chunk``."""

    t: int
    slot: int
    k: int
    rows: IntArr | None = None
    chunk: int = 0

    def to_wire(self) -> dict[str, object]:
        out: dict[str, Any] = {"op": str(Op.TREE), "t": self.t, "slot": self.slot, "k": self.k}
        if self.rows is not None:
            out["rows"], out["chunk"] = self.rows.astype(np.int32), self.chunk
        return out

    @classmethod
    def read(
        cls, f: Fields, *, n_rows: int, n_trees: int, plain_bits: int, hidden: bool
    ) -> TreeStep:
        t = f.get_int("t", lo=0, hi=n_trees - 1)
        slot = f.get_int("slot", lo=2, hi=plain_bits)
        k = f.get_int("k", lo=1, hi=plain_bits // slot)
        if hidden:
            return cls(t, slot, k)
        rows = f.int_array("rows", max_size=n_rows, lo=0, hi=n_rows - 1)
        return cls(t, slot, k, rows, f.get_int("chunk", lo=1))


@dataclass(frozen=True)
class BuildStep:
    """STEP build: histograms of ``nodes`` nodes. Either ``node_of`` (each row's
    node among them, -1 for none) or, with the instance space hidden, ``ct``: per
    node Enc(packed g, h) of every row, zero outside the node."""

    nodes: int
    node_of: IntArr | None = None
    ct: list[IntArray] | None = None

    def to_wire(self) -> dict[str, object]:
        out: dict[str, Any] = {"op": str(Op.BUILD), "nodes": self.nodes}
        if self.ct is not None:
            out["ct"] = self.ct
        else:
            assert self.node_of is not None
            out["node_of"] = self.node_of.astype(np.int32)
        return out

    @classmethod
    def read(cls, f: Fields, *, n_rows: int, hidden: bool) -> BuildStep:
        nodes = f.get_int("nodes", lo=1, hi=max(n_rows, 1))
        if hidden:
            raw = f.get_list("ct", size=nodes)
            cts = [f.element("ct", i, v).ciphertexts("", size=n_rows) for i, v in enumerate(raw)]
            return cls(nodes, ct=cts)
        return cls(nodes, node_of=f.int_array("node_of", size=n_rows, lo=-1, hi=nodes - 1))


@dataclass(frozen=True)
class SplitStep:
    """STEP split: for each split its slot, bin and missing direction, and (unless
    the instance space is hidden) the rows of its node."""

    slots: IntArr
    bins: IntArr
    default_left: IntArr
    rows: list[IntArr]

    def to_wire(self) -> dict[str, object]:
        return {
            "op": str(Op.SPLIT),
            "slots": self.slots.astype(np.int32),
            "bins": self.bins.astype(np.int32),
            "default_left": self.default_left.astype(np.uint8),
            "rows": [r.astype(np.int32) for r in self.rows],
        }

    @classmethod
    def read(cls, f: Fields, *, n_rows: int, n_bins: IntArr, hidden: bool) -> SplitStep:
        """``n_bins``: bins of each of this tree's slots."""
        slots = f.int_array("slots", max_size=max(n_rows, 1), lo=0, hi=len(n_bins) - 1)
        n = slots.size
        bins = f.int_array("bins", size=n, lo=0)
        if n and np.any(bins >= n_bins[slots]):
            raise f.error("bins", "holds a bin beyond its slot's bins")
        dl = f.int_array("default_left", size=n, lo=0, hi=1)
        raw = f.get_list("rows", size=0 if hidden else n)
        rows = [
            f.element("rows", i, v).int_array("", max_size=n_rows, lo=0, hi=n_rows - 1)
            for i, v in enumerate(raw)
        ]
        return cls(slots, bins, dl, rows)


@dataclass(frozen=True)
class DoneStep:
    """STEP done: trees kept (early stopping) and the gain of each of the partner's
    split records (for its feature importance)."""

    trees: int
    records: IntArr
    gains: npt.NDArray[np.float64]

    def to_wire(self) -> dict[str, object]:
        return {
            "op": str(Op.DONE),
            "trees": self.trees,
            "records": self.records.astype(np.int64),
            "gains": [float(g) for g in self.gains],
        }

    @classmethod
    def read(cls, f: Fields, *, n_trees: int, n_records: int) -> DoneStep:
        trees = f.get_int("trees", lo=0, hi=n_trees)
        recs = f.int_array("records", max_size=n_records, lo=0, hi=n_records - 1)
        return cls(trees, recs, f.float_array("gains", size=recs.size))


Step = TreeStep | BuildStep | SplitStep | DoneStep


def read_step(
    msg: object,
    *,
    n_rows: int,
    n_trees: int,
    plain_bits: int,
    hidden: bool,
    n_bins: IntArr,
    n_records: int,
) -> Step:
    """A STEP message as its typed step (what the partner knows bounds every field)."""
    f = Fields(Tag.STEP, msg)
    op = f.get_str("op")
    if op == Op.TREE:
        return TreeStep.read(
            f, n_rows=n_rows, n_trees=n_trees, plain_bits=plain_bits, hidden=hidden
        )
    if op == Op.BUILD:
        return BuildStep.read(f, n_rows=n_rows, hidden=hidden)
    if op == Op.SPLIT:
        return SplitStep.read(f, n_rows=n_rows, n_bins=n_bins, hidden=hidden)
    if op == Op.DONE:
        return DoneStep.read(f, n_trees=n_trees, n_records=n_records)
    raise f.error("op", f"is {op!r}, expected one of {[o.value for o in Op]}")


@dataclass(frozen=True)
class Ciphertexts:
    """CT (a chunk of row ciphertexts) and HIST (packed bin sums)."""

    ct: IntArray

    def to_wire(self) -> dict[str, object]:
        return {"ct": self.ct}

    @classmethod
    def from_wire(cls, tag: Tag, msg: object, *, size: int) -> Ciphertexts:
        return cls(Fields(tag, msg).ciphertexts("ct", size=size))


@dataclass(frozen=True)
class NBins:
    """NBINS: bins of each slot the partner offers in this tree."""

    n_bins: IntArr

    def to_wire(self) -> dict[str, object]:
        return {"n_bins": self.n_bins.astype(np.int64)}

    @classmethod
    def from_wire(cls, msg: object, *, slots: int, max_bin: int) -> NBins:
        return cls(Fields(Tag.NBINS, msg).int_array("n_bins", size=slots, lo=2, hi=max_bin))


@dataclass(frozen=True)
class Partition:
    """PARTITION: per split the partner's record id, which of the node's rows go
    left and which validation rows go left (sent as packed bits)."""

    records: IntArr
    left: list[Bits]
    valid_left: list[Bits]

    def to_wire(self) -> dict[str, object]:
        return {
            "records": self.records.astype(np.int64),
            "left": [pack_bits(b) for b in self.left],
            "valid_left": [pack_bits(b) for b in self.valid_left],
        }

    @classmethod
    def from_wire(cls, msg: object, *, sizes: list[int], n_valid: int) -> Partition:
        """``sizes``: the rows of each requested split, in request order."""
        f = Fields(Tag.PARTITION, msg)
        recs = f.int_array("records", size=len(sizes), lo=0)
        left = f.get_list("left", size=len(sizes))
        vleft = f.get_list("valid_left", size=len(sizes))
        return cls(
            recs,
            [
                f.element("left", i, v).bits("", n)
                for i, (v, n) in enumerate(zip(left, sizes, strict=True))
            ],
            [f.element("valid_left", i, v).bits("", n_valid) for i, v in enumerate(vleft)],
        )


@dataclass(frozen=True)
class Route:
    """ROUTE (prediction): the partner's row count and, per split record (in record
    order), which rows go left (sent as packed bits)."""

    rows: int
    left: list[Bits]

    def to_wire(self) -> dict[str, object]:
        return {"rows": self.rows, "left": [pack_bits(b) for b in self.left]}

    @classmethod
    def from_wire(cls, msg: object, *, n_records: int) -> Route:
        f = Fields(Tag.ROUTE, msg)
        rows = f.get_int("rows", lo=0)
        left = f.get_list("left", size=n_records)
        return cls(rows, [f.element("left", i, v).bits("", rows) for i, v in enumerate(left)])
