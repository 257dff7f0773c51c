"""Vertical SecureBoost training, one function per role.

Cheng, Fan, Jin, Liu, Chen, Papadopoulos, Yang: "SecureBoost: A Lossless
Federated Learning Framework", IEEE Intelligent Systems 36(6), 2021.

Roles: ``label_holder`` (has y and some features; drives, holds the HE key) and
one or more ``partner`` parties (features only). Rows are already aligned (PSI).

Flow, per tree (``scope tree{t}``):
  1. label holder -> partner  TREE, then CT chunks: Enc(h_i << w | g_i) for each
     sampled row (fixed-point g and h packed into one ciphertext); partner picks
     its colsample features, shuffles them into "slots", replies NBINS and sums
     each chunk into the root histogram as it lands (while the next is encrypted).
  2. per level, label holder -> partner BUILD: which rows are in the nodes to
     build (only the smaller child of each pair: the sibling is parent - child,
     subtracted by the label holder in the clear after decryption);
     partner -> label holder HIST: per (node, slot, bin) encrypted sums, several
     sums packed per ciphertext. The label holder decrypts only these sums.
  3. label holder finds the best split over every party; for a partner's split it
     sends SPLIT (node, slot, bin, missing direction); the partner records the
     threshold under a record id it keeps private and replies PARTITION: record
     id and which of the node's rows go left (and the validation rows' routing).
  4. after the last tree, DONE: trees kept (early stopping) and each of the
     partner's records' gain, for its feature importance.

What each party learns (basic mode):
  label holder: per node and partner slot, the (G, H) sums of each bin; which
    rows go left at each partner split (never the feature, threshold or values);
    the number of usable features and bins per slot of each partner.
  partner: the public key, ciphertexts, which rows reach every node it builds
    (the instance space) and the partition at each node, the splits it owns and
    their gain. Never g, h, y, leaf weights or other parties' features.
With ``hide_instance_space=True`` the label holder instead sends, for each node
to build, Enc(packed g, h) for every row with zeros outside the node, and the
partner answers a split with the routing of *all* rows on its threshold, so the
partner learns no node membership at all (only which of its thresholds were
chosen and their gain); the label holder then also learns that partition of all
rows. Cost: one encryption pass per built node instead of per tree.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import numpy as np

from veil.codec import IntArray
from veil.crypto import he as engine
from veil.crypto.encoding import split_slots
from veil.errors import ConfigError, ProtocolError
from veil.ml.secureboost import he
from veil.ml.secureboost.binning import apply_bins, as_features, fit_bins
from veil.ml.secureboost.core import GHCodec
from veil.ml.secureboost.grow import Hist, SplitRequest, boost
from veil.ml.secureboost.model import LabelHolderModel
from veil.ml.secureboost.params import SBTParams
from veil.ml.secureboost.plain import (
    PlainSide,
    sample_weights,
)
from veil.net.session import Session

LABEL_HOLDER, PARTNER = "label_holder", "partner"
CT_CHUNK = 4096  # rows per CT message: the partner's root histogram overlaps encryption


class Tag(StrEnum):
    """Every message of SecureBoost training."""

    HELLO = "hello"  # partner -> label holder: row counts
    SETUP = "setup"  # label holder -> partner: public key, parameters
    STEP = "step"  # label holder -> partner: TREE / BUILD / SPLIT / DONE
    CT = "ct"  # label holder -> partner: a chunk of the tree's row ciphertexts
    NBINS = "nbins"  # partner -> label holder: bins per slot of this tree
    HIST = "hist"  # partner -> label holder: packed encrypted bin sums
    PARTITION = "partition"  # partner -> label holder: record ids and left bits
    ROUTE = "route"  # prediction, partner -> label holder: each record's left bits


class Op(StrEnum):
    TREE = "tree"
    BUILD = "build"
    SPLIT = "split"
    DONE = "done"


def params_wire(p: SBTParams) -> dict[str, Any]:
    d = dataclasses.asdict(p)
    d["class_weight"] = list(p.class_weight) if p.class_weight else None
    return {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in d.items()}


def pack_bits(mask: np.ndarray) -> np.ndarray:
    return np.packbits(mask.astype(bool))


def unpack_bits(b: Any, n: int) -> np.ndarray:
    arr = np.asarray(b, dtype=np.uint8)
    if arr.ndim != 1 or arr.size != (n + 7) // 8:
        raise ProtocolError(f"expected {n} packed bits, got {arr.size} bytes")
    return np.unpackbits(arr, count=n).astype(bool)


class RemoteSide:
    """A partner, as the label holder's tree grower sees it (see the module flow)."""

    def __init__(
        self, s: Session, party: str, *, keys: he.HEKeys, p: SBTParams, n_valid: int
    ) -> None:
        self.s, self.party, self.keys, self.p = s, party, keys, p
        self.n_valid = n_valid
        self.gains: dict[int, float] = {}

    def begin_tree(
        self, t: int, gi: np.ndarray, hi: np.ndarray, rows: np.ndarray, codec: GHCodec
    ) -> None:
        self.t, self.codec, self.rows = t, codec, rows
        self.per_ct = max(1, self.keys.public.plain_bits // codec.slot)
        self.packed = codec.pack_rows(gi, hi)  # zeros outside the sample
        msg: dict[str, Any] = {"op": str(Op.TREE), "t": t, "slot": codec.slot, "k": self.per_ct}
        if not self.p.hide_instance_space:
            msg["rows"], msg["chunk"] = rows.astype(np.int32), CT_CHUNK
        self.s.send(self.party, Tag.STEP, msg)
        for a in range(0, 0 if self.p.hide_instance_space else len(rows), CT_CHUNK):
            cts = self.keys.encrypt([self.packed[r] for r in rows[a : a + CT_CHUNK]])
            self.s.send(self.party, Tag.CT, IntArray(cts, self.width))
        if not self.p.hide_instance_space and t + 1 < self.p.n_trees:
            # the next tree's randomisers, made while the partner builds histograms
            self.keys.precompute_async(len(rows))
        self.nb = np.asarray(self.s.recv(self.party, Tag.NBINS), dtype=np.int64)

    @property
    def width(self) -> int:
        return self.keys.public.width

    def n_bins(self) -> np.ndarray:
        return self.nb

    def histograms(self, in_hist: np.ndarray, build: list[int]) -> list[Hist]:
        msg: dict[str, Any] = {"op": str(Op.BUILD), "nodes": len(build)}
        if self.p.hide_instance_space:
            cts = []
            for nid in build:
                vals = [
                    v if k == nid else 0 for v, k in zip(self.packed, in_hist.tolist(), strict=True)
                ]
                cts.append(IntArray(self.keys.encrypt(vals), self.width))
            msg["ct"] = cts
        else:
            slot_of = np.full(
                int(max(in_hist.max(initial=0), max(build, default=0))) + 2, -1, np.int32
            )
            slot_of[build] = np.arange(len(build), dtype=np.int32)
            msg["node_of"] = slot_of[in_hist]  # in_hist -1 (not sampled) hits the last -1
        self.s.send(self.party, Tag.STEP, msg)
        reply = self.s.recv(self.party, Tag.HIST)
        cts = self.keys.public.check(ciphertexts_of(reply, "ct"))
        sums = self.keys.decrypt(cts, self.per_ct * self.codec.slot)
        flat = [v for t in sums for v in split_slots(t, self.codec.slot, self.per_ct)]
        nb, mb = self.nb, int(self.nb.max(initial=1))
        need = len(build) * int(nb.sum())
        if len(flat) < need:
            raise ProtocolError(f"{self.party} sent {len(flat)} bin sums, expected {need}")
        out, pos = [], 0
        for _ in build:
            hg = np.zeros((len(nb), mb), dtype=np.int64)
            hh = np.zeros((len(nb), mb), dtype=np.int64)
            for j, b in enumerate(nb.tolist()):
                for k in range(b):
                    hg[j, k], hh[j, k] = self.codec.unpack(flat[pos])
                    pos += 1
            out.append((hg, hh))
        return out

    def split(self, reqs: list[SplitRequest]) -> list[tuple[int, np.ndarray, np.ndarray]]:
        hide = self.p.hide_instance_space
        msg = {
            "op": str(Op.SPLIT),
            "splits": [[r.slot, r.bin, int(r.default_left)] for r in reqs],
            "rows": [] if hide else [r.rows.astype(np.int32) for r in reqs],
        }
        self.s.send(self.party, Tag.STEP, msg)
        reply = self.s.recv(self.party, Tag.PARTITION)
        recs, lefts, vlefts = reply["records"], reply["left"], reply["valid_left"]
        if not len(recs) == len(lefts) == len(vlefts) == len(reqs):
            raise ProtocolError(f"{self.party} answered {len(recs)} of {len(reqs)} splits")
        out = []
        for rq, rec, lb, vb in zip(reqs, recs, lefts, vlefts, strict=True):
            n_bits = len(self.packed) if hide else len(rq.rows)
            left = unpack_bits(lb, n_bits)[rq.rows] if hide else unpack_bits(lb, n_bits)
            out.append((int(rec), left, unpack_bits(vb, self.n_valid)))
        return out


def ciphertexts_of(msg: Any, key: str) -> list[int]:
    v = msg.get(key) if isinstance(msg, dict) else None
    if not isinstance(v, IntArray):
        raise ProtocolError(f"expected ciphertexts under '{key}'")
    return list(v.values)


def run_label_holder(
    s: Session,
    x: Any,
    y: Any,
    feature_names: Sequence[str],
    p: SBTParams,
    *,
    valid_x: Any = None,
    valid_y: Any = None,
) -> LabelHolderModel:
    """Train; return the label holder's model (trees, leaf weights, its own splits)."""
    xa = as_features(x, feature_names, "label_holder")
    yv = np.asarray(y, dtype=np.float64).ravel()
    if yv.shape[0] != xa.shape[0]:
        raise ConfigError("label_holder.y", f"{yv.shape[0]} labels for {xa.shape[0]} rows", "")
    if np.isnan(yv).any():
        raise ConfigError("label_holder.y", "has missing labels", "drop those rows")
    if p.objective == "binary" and not np.isin(yv, (0.0, 1.0)).all():
        raise ConfigError("label_holder.y", "binary objective needs 0/1 labels", "recode y")
    vx = as_features(valid_x, feature_names, "label_holder.valid") if valid_x is not None else None
    vy = None if valid_y is None else np.asarray(valid_y, dtype=np.float64).ravel()
    nv = 0 if vx is None else vx.shape[0]
    if (vx is None) != (vy is None) or (vy is not None and vy.shape[0] != nv):
        raise ConfigError("label_holder.valid_y", "give valid_x and valid_y of equal rows", "")
    partners = [q for q in s.parties if q != s.me and q in partner_parties(s)]
    if not partners:
        raise ConfigError("roles.partner", "no partner party", "bind at least one partner")
    engine.warm_up()  # HE worker processes start while the key is made
    keys = he.HEKeys(p.he, p.key_bits, p.allow_small_keys)  # while partners bin
    if not p.hide_instance_space:  # the first tree's randomisers, while partners set up
        keys.precompute_async(len(partners) * math.ceil(p.subsample * xa.shape[0]))
    for q in partners:
        hello = s.recv(q, Tag.HELLO)
        if int(hello["rows"]) != xa.shape[0] or int(hello["valid_rows"]) != nv:
            raise ConfigError(
                f"partner.{q}.rows",
                f"{hello['rows']} rows ({hello['valid_rows']} validation) but the label holder"
                f" has {xa.shape[0]} ({nv})",
                "align both tables on the PSI result in the same order",
            )
    for q in partners:
        s.send(q, Tag.SETUP, {"pk": keys.public.to_wire(), "params": params_wire(p)})
    bins = fit_bins(xa, p.max_bin)
    vcodes = apply_bins(vx if vx is not None else xa[:0], bins.edges)
    own = PlainSide(0, bins, vcodes, p)
    remotes = [
        RemoteSide(s.sub(f"p{i}"), q, keys=keys, p=p, n_valid=nv) for i, q in enumerate(partners)
    ]
    ens, keep = boost(
        [own, *remotes],
        yv,
        sample_weights(yv, p),
        p,
        valid_y=vy,
        on_tree=lambda t: s.progress("secureboost", (t + 1) / p.n_trees),
    )
    gains: list[dict[int, float]] = [{} for _ in remotes]
    for nodes in ens.trees:
        for nd in nodes:
            if nd.party > 0:
                gains[nd.party - 1][nd.record] = nd.gain
    for r, g in zip(remotes, gains, strict=True):
        r.s.send(
            r.party,
            Tag.STEP,
            {"op": str(Op.DONE), "trees": keep, "gains": [[k, v] for k, v in sorted(g.items())]},
        )
    return LabelHolderModel(
        params=p,
        base=ens.base,
        trees=ens.trees,
        parties=[s.me, *partners],
        feature_names=list(feature_names),
        records=[r for r in own.records if r.tree < keep],
        valid_loss=ens.valid_loss,
    )


def partner_parties(s: Session) -> list[str]:
    """Parties bound to a role named ``partner*``, in the job's party order."""
    bound = {party for role, party in s.roles.items() if role.startswith(PARTNER)}
    return [q for q in s.parties if q in bound]
