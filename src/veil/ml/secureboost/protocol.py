"""Vertical SecureBoost training, one function per role.

Cheng, Fan, Jin, Liu, Chen, Papadopoulos, Yang: "SecureBoost: A Lossless
Federated Learning Framework", IEEE Intelligent Systems 36(6), 2021.

Roles: ``label_holder`` (has y and some features; drives, holds the HE key) and
one or more ``partner`` parties (features only). Rows are already aligned (PSI).

Messages: :class:`~veil.ml.secureboost.messages.Tag` (``STEP`` carries an
:class:`~veil.ml.secureboost.messages.Op`), one typed schema each in
:mod:`veil.ml.secureboost.messages`, checked on receipt.

Set-up: partner -> label holder HELLO (rows, validation rows, number of usable
features); label holder -> partner SETUP (public key, parameters).
Flow, per tree:
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
import numpy.typing as npt

from veil.codec import IntArray
from veil.crypto import he as engine
from veil.crypto.encoding import split_slots
from veil.errors import ConfigError
from veil.ml.labels import check_labels, sample_weights
from veil.ml.secureboost import gh_crypto
from veil.ml.secureboost.binning import apply_bins, as_features, fit_bins
from veil.ml.secureboost.core import GHCodec
from veil.ml.secureboost.grow import Hist, SplitRequest, boost, colsample_size
from veil.ml.secureboost.messages import (
    BuildStep,
    Ciphertexts,
    DoneStep,
    Hello,
    NBins,
    Partition,
    Setup,
    SplitStep,
    Tag,
    TreeStep,
)
from veil.ml.secureboost.model import LabelHolderModel
from veil.ml.secureboost.params import Objective, SBTParams
from veil.ml.secureboost.plain import PlainSide
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy

__all__ = ["LABEL_HOLDER", "PARTNER", "Tag", "params_wire", "partner_parties", "run_label_holder"]

LABEL_HOLDER, PARTNER = "label_holder", "partner"
CT_CHUNK = 4096  # rows per CT message: the partner's root histogram overlaps encryption


def params_wire(p: SBTParams) -> dict[str, Any]:
    """The parameters as SETUP carries them (both parties must hold equal ones)."""
    d = dataclasses.asdict(p)
    d["class_weight"] = list(p.class_weight) if p.class_weight else None
    return {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in d.items()}


class RemoteSide:
    """A partner, as the label holder's tree grower sees it (see the module flow)."""

    def __init__(
        self,
        s: Session,
        party: str,
        *,
        keys: gh_crypto.HEKeys,
        p: SBTParams,
        n_valid: int,
        features: int,
    ) -> None:
        self.s, self.party, self.keys, self.p = s, party, keys, p
        self.n_valid = n_valid
        self.slots = colsample_size(features, p)  # slots the partner offers per tree
        self.gains: dict[int, float] = {}

    def begin_tree(
        self, t: int, gi: np.ndarray, hi: np.ndarray, rows: np.ndarray, codec: GHCodec
    ) -> None:
        self.t, self.codec, self.rows = t, codec, rows
        self.per_ct = max(1, self.keys.public.plain_bits // codec.slot)
        self.packed = codec.pack_rows(gi, hi)  # zeros outside the sample
        hide = self.p.hide_instance_space
        step = TreeStep(t, codec.slot, self.per_ct, None if hide else rows, CT_CHUNK)
        self.s.send(self.party, Tag.STEP, step.to_wire())
        for a in range(0, 0 if hide else len(rows), CT_CHUNK):
            cts = self.keys.encrypt([self.packed[r] for r in rows[a : a + CT_CHUNK]])
            self.s.send(self.party, Tag.CT, Ciphertexts(IntArray(cts, self.width)).to_wire())
        if not hide and t + 1 < self.p.n_trees:
            # the next tree's randomisers, made while the partner builds histograms
            self.keys.precompute_async(len(rows))
        msg = self.s.recv(self.party, Tag.NBINS)
        self.nb = NBins.from_wire(msg, slots=self.slots, max_bin=self.p.max_bin).n_bins

    @property
    def width(self) -> int:
        return self.keys.public.width

    def n_bins(self) -> np.ndarray:
        return self.nb

    def histograms(self, in_hist: np.ndarray, build: list[int]) -> list[Hist]:
        if self.p.hide_instance_space:
            cts = []
            for nid in build:
                vals = [
                    v if k == nid else 0 for v, k in zip(self.packed, in_hist.tolist(), strict=True)
                ]
                cts.append(IntArray(self.keys.encrypt(vals), self.width))
            step = BuildStep(len(build), ct=cts)
        else:
            slot_of = np.full(
                int(max(in_hist.max(initial=0), max(build, default=0))) + 2, -1, np.int32
            )
            slot_of[build] = np.arange(len(build), dtype=np.int32)
            # in_hist -1 (not sampled) hits the last -1
            step = BuildStep(len(build), node_of=slot_of[in_hist])
        self.s.send(self.party, Tag.STEP, step.to_wire())
        nb, mb = self.nb, int(self.nb.max(initial=1))
        need = len(build) * int(nb.sum())
        reply = Ciphertexts.from_wire(
            Tag.HIST, self.s.recv(self.party, Tag.HIST), size=-(-need // self.per_ct)
        )
        hist_cts = self.keys.public.check(reply.ct.values)
        sums = self.keys.decrypt(hist_cts, self.per_ct * self.codec.slot)
        flat = [v for t in sums for v in split_slots(t, self.codec.slot, self.per_ct)]
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
        step = SplitStep(
            np.array([r.slot for r in reqs], dtype=np.int64),
            np.array([r.bin for r in reqs], dtype=np.int64),
            np.array([r.default_left for r in reqs], dtype=np.int64),
            [] if hide else [r.rows for r in reqs],
        )
        self.s.send(self.party, Tag.STEP, step.to_wire())
        sizes = [len(self.packed) if hide else len(r.rows) for r in reqs]
        reply = Partition.from_wire(
            self.s.recv(self.party, Tag.PARTITION), sizes=sizes, n_valid=self.n_valid
        )
        return [
            (int(rec), lb[rq.rows] if hide else lb, vb)
            for rq, rec, lb, vb in zip(
                reqs, reply.records, reply.left, reply.valid_left, strict=True
            )
        ]


def _labels(y: Any, n: int, objective: Objective, field: str) -> np.ndarray:
    """The label column as float64: 0/1 for binary, finite numbers for regression."""
    raw = np.asarray(y).ravel()
    if raw.shape[0] != n:
        raise ConfigError(field, f"{raw.shape[0]} labels for {n} rows", "")
    if objective == Objective.BINARY:
        return check_labels(raw, field).astype(np.float64)
    try:
        yv = raw.astype(np.float64)
    except (TypeError, ValueError):
        raise ConfigError(field, "is not numeric", "encode the target as numbers") from None
    if np.isnan(yv).any():
        raise ConfigError(field, "has missing labels", "drop those rows")
    return yv


def run_label_holder(
    s: Session,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    feature_names: Sequence[str],
    p: SBTParams,
    *,
    valid_x: npt.ArrayLike | None = None,
    valid_y: npt.ArrayLike | None = None,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> LabelHolderModel:
    """Train; return the label holder's model (trees, leaf weights, its own splits).

    The HE key (``p.he``, ``p.key_bits``) must meet ``policy``."""
    policy.check_key_bits(str(p.he), p.key_bits, "secureboost.key_bits")
    xa = as_features(x, feature_names, "label_holder")
    yv = _labels(y, xa.shape[0], p.objective, "label_holder.y")
    vx = as_features(valid_x, feature_names, "label_holder.valid") if valid_x is not None else None
    vy = None if valid_y is None else np.asarray(valid_y, dtype=np.float64).ravel()
    nv = 0 if vx is None else vx.shape[0]
    if (vx is None) != (vy is None) or (vy is not None and vy.shape[0] != nv):
        raise ConfigError("label_holder.valid_y", "give valid_x and valid_y of equal rows", "")
    partners = [q for q in s.parties if q != s.me and q in partner_parties(s)]
    if not partners:
        raise ConfigError("roles.partner", "no partner party", "bind at least one partner")
    engine.warm_up()  # HE worker processes start while the key is made
    keys = gh_crypto.HEKeys(p.he, p.key_bits, policy)  # while partners bin
    if not p.hide_instance_space:  # the first tree's randomisers, while partners set up
        keys.precompute_async(len(partners) * math.ceil(p.subsample * xa.shape[0]))
    hellos = {q: Hello.from_wire(s.recv(q, Tag.HELLO)) for q in partners}
    for q, hello in hellos.items():
        if hello.rows != xa.shape[0] or hello.valid_rows != nv:
            raise ConfigError(
                f"partner.{q}.rows",
                f"{hello.rows} rows ({hello.valid_rows} validation) but the label holder"
                f" has {xa.shape[0]} ({nv})",
                "align both tables on the PSI result in the same order",
            )
    setup = Setup(keys.public.pk, params_wire(p)).to_wire()
    for q in partners:
        s.send(q, Tag.SETUP, setup)
    bins = fit_bins(xa, p.max_bin)
    vcodes = apply_bins(vx if vx is not None else xa[:0], bins.edges)
    own = PlainSide(0, bins, vcodes, p)
    remotes = [
        RemoteSide(s.sub(f"p{i}"), q, keys=keys, p=p, n_valid=nv, features=hellos[q].features)
        for i, q in enumerate(partners)
    ]
    ens, keep = boost(
        [own, *remotes],
        yv,
        sample_weights(yv, p.class_weight, "secureboost.class_weight"),
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
        recs = sorted(g)
        done = DoneStep(keep, np.array(recs, dtype=np.int64), np.array([g[k] for k in recs]))
        r.s.send(r.party, Tag.STEP, done.to_wire())
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
