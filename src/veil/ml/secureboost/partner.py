"""The partner's side of vertical SecureBoost training (flow and vocabulary:
:mod:`veil.ml.secureboost.protocol`): serve the label holder's TREE / BUILD / SPLIT
requests on encrypted gradients, keep every split threshold private."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np

from veil.codec import IntArray
from veil.crypto import he as engine
from veil.crypto._kernels import objects
from veil.errors import ConfigError, ProtocolError
from veil.ml.secureboost import he
from veil.ml.secureboost.binning import Bins, apply_bins, as_features, fit_bins
from veil.ml.secureboost.grow import colsample
from veil.ml.secureboost.model import PartnerModel
from veil.ml.secureboost.params import SBTParams
from veil.ml.secureboost.plain import PlainSide, hist_groups, left_of_codes
from veil.ml.secureboost.protocol import (
    LABEL_HOLDER,
    Op,
    Tag,
    ciphertexts_of,
    pack_bits,
    params_wire,
    partner_parties,
)
from veil.net.session import Session


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
    if setup.get("params") != params_wire(p):
        theirs = setup.get("params") or {}
        diff = sorted(k for k, v in params_wire(p).items() if theirs.get(k) != v)
        raise ConfigError(f"{me}.params", f"differ from the label holder's: {diff}", "")
    pub = he.HEPublic.from_wire(setup["pk"], p.allow_small_keys)
    if pub.key_bits < p.key_bits - 1:
        raise ConfigError(f"{me}.key_bits", "label holder's key is too short", "")
    index = partner_parties(s).index(s.me) + 1
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
                cts = self.pub.check(ciphertexts_of({"ct": self.s.recv(self.lh, Tag.CT)}, "ct"))
                if len(cts) != len(part):
                    raise ProtocolError(f"{len(cts)} ciphertexts for {len(part)} rows")
                self.cts[part] = objects(cts)  # not the list: numpy would probe each
                node = np.full(self.n, -1, dtype=np.int64)
                node[part] = 0
                sums = self._sums(node, 1)
                acc = sums if not acc else self.pub.add(acc, sums)
            self.root = (rows, acc)

    def _build(self, msg: dict[str, Any]) -> None:
        nb = self.bins.n_bins[self.cols]
        keep = np.concatenate([np.arange(b) + j * self.max_bins for j, b in enumerate(nb)])
        per_node = len(self.cols) * self.max_bins
        if "ct" in msg:  # hidden instance space: one masked vector per node, all rows
            sums: list[Any] = []
            rows, groups, ng = hist_groups(
                self.bins.codes, self.cols, np.zeros(self.n, np.int64), [0], self.max_bins
            )
            for arr in msg["ct"]:
                sums += self.pub.group_sum(self.pub.check(arr.values), rows, groups, ng)
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
            lefts.append(pack_bits(left_of_codes(self.bins.codes[rows, rec.feature], int(b), dl)))
            vlefts.append(pack_bits(left_of_codes(self.vcodes[:, rec.feature], int(b), dl)))
            recs.append(len(plain.records) - 1)
        self.s.send(self.lh, Tag.PARTITION, {"records": recs, "left": lefts, "valid_left": vlefts})
