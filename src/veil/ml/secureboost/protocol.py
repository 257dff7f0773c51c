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
import secrets
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import numpy as np

from veil.crypto import he as engine
from veil.errors import ConfigError, ProtocolError
from veil.ml.secureboost import he
from veil.ml.secureboost.binning import Bins, apply_bins, as_features, fit_bins
from veil.ml.secureboost.core import GHCodec, split_slots
from veil.ml.secureboost.grow import Hist, SplitRequest, boost, colsample
from veil.ml.secureboost.model import LabelHolderModel, PartnerModel
from veil.ml.secureboost.params import SBTParams
from veil.ml.secureboost.plain import (
    PlainSide,
    hist_groups,
    left_of_codes,
    sample_weights,
)
from veil.net.codec import IntArray
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


def _params_wire(p: SBTParams) -> dict[str, Any]:
    d = dataclasses.asdict(p)
    d["class_weight"] = list(p.class_weight) if p.class_weight else None
    return {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in d.items()}


def _bits(mask: np.ndarray) -> np.ndarray:
    return np.packbits(mask.astype(bool))


def _unbits(b: Any, n: int) -> np.ndarray:
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
            slot_of = {nid: i for i, nid in enumerate(build)}
            msg["node_of"] = np.array([slot_of.get(k, -1) for k in in_hist.tolist()], np.int32)
        self.s.send(self.party, Tag.STEP, msg)
        reply = self.s.recv(self.party, Tag.HIST)
        cts = self.keys.public.check(_ints(reply, "ct"))
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
            left = _unbits(lb, n_bits)[rq.rows] if hide else _unbits(lb, n_bits)
            out.append((int(rec), left, _unbits(vb, self.n_valid)))
        return out


def _ints(msg: Any, key: str) -> list[int]:
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
    partners = [q for q in s.parties if q != s.me and q in _partner_parties(s)]
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
        s.send(q, Tag.SETUP, {"pk": keys.public.to_wire(), "params": _params_wire(p)})
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


def _partner_parties(s: Session) -> list[str]:
    """Parties bound to a role named ``partner*``, in the job's party order."""
    bound = {party for role, party in s.roles.items() if role.startswith(PARTNER)}
    return [q for q in s.parties if q in bound]


def run_partner(
    s: Session, x: Any, feature_names: Sequence[str], p: SBTParams, *, valid_x: Any = None
) -> PartnerModel:
    """Serve the label holder's requests; return this partner's model (its split records)."""
    me = f"partner.{s.me}"
    engine.warm_up()  # HE worker processes start while this party bins its features
    xb = as_features(x, feature_names, me)
    vx = as_features(valid_x, feature_names, f"{me}.valid") if valid_x is not None else xb[:0]
    bins = fit_bins(xb, p.max_bin)
    usable = np.flatnonzero(bins.n_bins > 1)
    if usable.size == 0:
        raise ConfigError(
            f"{me}.features",
            "no usable feature (every column is constant)",
            "give this partner at least one varying column or leave it out of the job",
        )
    lh = s.party_of(LABEL_HOLDER)
    s.send(lh, Tag.HELLO, {"rows": xb.shape[0], "valid_rows": vx.shape[0]})
    setup = s.recv(lh, Tag.SETUP)
    if setup.get("params") != _params_wire(p):
        theirs = setup.get("params") or {}
        diff = sorted(k for k, v in _params_wire(p).items() if theirs.get(k) != v)
        raise ConfigError(f"{me}.params", f"differ from the label holder's: {diff}", "")
    pub = he.HEPublic.from_wire(setup["pk"], p.allow_small_keys)
    if pub.key_bits < p.key_bits - 1:
        raise ConfigError(f"{me}.key_bits", "label holder's key is too short", "")
    index = _partner_parties(s).index(s.me) + 1
    vcodes = apply_bins(vx, bins.edges)
    server = _PartnerState(
        s.sub(f"p{index - 1}"), lh, pub=pub, bins=bins, vcodes=vcodes, p=p, index=index
    )
    return server.serve(list(feature_names))


class _PartnerState:
    """The partner's side of one training run: ciphertexts and private split records."""

    def __init__(
        self,
        s: Session,
        lh: str,
        *,
        pub: he.HEPublic,
        bins: Bins,
        vcodes: np.ndarray,
        p: SBTParams,
        index: int,
    ) -> None:
        self.s, self.lh, self.pub, self.bins, self.vcodes, self.p = s, lh, pub, bins, vcodes, p
        self.n = bins.codes.shape[0]
        self.max_bins = int(bins.n_bins.max())
        self.index = index

    def serve(self, names: list[str]) -> PartnerModel:
        plain = PlainSide(self.index, self.bins, self.vcodes, self.p)
        while True:
            msg = self.s.recv(self.lh, Tag.STEP)
            op = msg.get("op") if isinstance(msg, dict) else None
            if op == Op.TREE:
                self._tree(msg, plain)
            elif op == Op.BUILD:
                self._build(msg)
            elif op == Op.SPLIT:
                self._split(msg, plain)
            elif op == Op.DONE:
                keep = int(msg["trees"])
                gains = {int(k): float(v) for k, v in msg["gains"]}
                return PartnerModel.from_records(self.p, names, plain.records, keep, gains)
            else:
                raise ProtocolError(f"unexpected step {op!r} from the label holder")

    def _tree(self, msg: dict[str, Any], plain: PlainSide) -> None:
        t = int(msg["t"])
        usable = np.flatnonzero(self.bins.n_bins > 1)
        cols = usable[colsample(len(usable), self.p, self.index, t)]
        perm = np.array(sorted(range(len(cols)), key=lambda _: secrets.randbits(64)))
        self.cols = cols[perm] if len(cols) else cols
        plain.cols, plain.t = self.cols, t
        self.slot, self.k = int(msg["slot"]), int(msg["k"])
        self.s.send(self.lh, Tag.NBINS, self.bins.n_bins[self.cols].astype(np.int64))
        self.cts = np.empty(self.n, dtype=object)
        self.root: tuple[np.ndarray, list[Any]] | None = None
        if "rows" in msg:  # the root histogram, chunk by chunk as the ciphertexts land
            rows, size = np.asarray(msg["rows"], dtype=np.int64), int(msg["chunk"])
            if size < 1 or (rows.size and not 0 <= rows.min() <= rows.max() < self.n):
                raise ProtocolError("tree rows or chunk size out of range")
            acc: list[Any] = []
            for a in range(0, len(rows), size):
                part = rows[a : a + size]
                cts = self.pub.check(_ints({"ct": self.s.recv(self.lh, Tag.CT)}, "ct"))
                if len(cts) != len(part):
                    raise ProtocolError(f"{len(cts)} ciphertexts for {len(part)} rows")
                self.cts[part] = cts
                node = np.full(self.n, -1, dtype=np.int64)
                node[part] = 0
                sums = self._sums(node, 1)
                acc = sums if not acc else self.pub.add(acc, sums)
            self.root = (rows, acc)

    def _build(self, msg: dict[str, Any]) -> None:
        nb = self.bins.n_bins[self.cols]
        keep = np.concatenate([np.arange(b) + j * self.max_bins for j, b in enumerate(nb)])
        per_node = len(self.cols) * self.max_bins
        if "ct" in msg:  # hidden instance space: one masked vector per node
            sums: list[Any] = []
            for arr in msg["ct"]:
                cts = self.pub.check(arr.values)
                rows, groups, ng = hist_groups(
                    self.bins.codes, self.cols, np.zeros(self.n, np.int64), [0], self.max_bins
                )
                sums += self.pub.group_sum(cts, rows, groups, ng)
            n_nodes = len(msg["ct"])
        else:
            node_of = np.asarray(msg["node_of"], dtype=np.int64)
            n_nodes = int(msg["nodes"])
            root, self.root = self.root, None
            if root is not None and n_nodes == 1 and np.array_equal(node_of[root[0]], 0 * root[0]):
                in_root = np.count_nonzero(node_of == 0) == len(root[0])
                sums = root[1] if in_root else self._sums(node_of, n_nodes)
            else:
                sums = self._sums(node_of, n_nodes)
        picked = [sums[i * per_node + j] for i in range(n_nodes) for j in keep.tolist()]
        packed = self.pub.pack(picked, self.slot, self.k)
        self.s.send(self.lh, Tag.HIST, {"ct": IntArray(packed, self.pub.width)})

    def _sums(self, node_of: np.ndarray, n_nodes: int) -> list[Any]:
        """Encrypted (node, slot, bin) sums of the rows with ``node_of`` in 0..n_nodes-1."""
        rows, groups, ng = hist_groups(
            self.bins.codes, self.cols, node_of, list(range(n_nodes)), self.max_bins
        )
        return self.pub.group_sum(self.cts, rows, groups, ng)

    def _split(self, msg: dict[str, Any], plain: PlainSide) -> None:
        recs, lefts, vlefts = [], [], []
        hide = self.p.hide_instance_space
        for i, (slot, b, dl) in enumerate(msg["splits"]):
            if not 0 <= slot < len(self.cols):
                raise ProtocolError(f"split slot {slot} out of range")
            rec = plain.add_record(int(self.cols[slot]), int(b), bool(dl))
            rows = np.arange(self.n) if hide else np.asarray(msg["rows"][i], dtype=np.int64)
            lefts.append(_bits(left_of_codes(self.bins.codes[rows, rec.feature], int(b), dl)))
            vlefts.append(_bits(left_of_codes(self.vcodes[:, rec.feature], int(b), dl)))
            recs.append(len(plain.records) - 1)
        self.s.send(self.lh, Tag.PARTITION, {"records": recs, "left": lefts, "valid_left": vlefts})
