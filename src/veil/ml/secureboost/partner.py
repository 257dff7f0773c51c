"""The partner's side of vertical SecureBoost training (flow: :mod:`veil.ml.secureboost.protocol`,
messages: :mod:`veil.ml.secureboost.messages`): serve the label holder's TREE / BUILD /
SPLIT requests on encrypted gradients, keep every split threshold private."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from veil.codec import IntArray
from veil.crypto import he as engine
from veil.errors import ConfigError
from veil.ml.secureboost import gh_crypto
from veil.ml.secureboost.binning import Bins, apply_bins, as_features, fit_bins
from veil.ml.secureboost.grow import colsample
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
    read_step,
)
from veil.ml.secureboost.model import PartnerModel
from veil.ml.secureboost.params import SBTParams
from veil.ml.secureboost.plain import PlainSide, hist_groups, left_of_codes
from veil.ml.secureboost.protocol import LABEL_HOLDER, params_wire, partner_parties
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy

__all__ = ["run_partner"]


def run_partner(
    s: Session,
    x: npt.ArrayLike,
    feature_names: Sequence[str],
    p: SBTParams,
    *,
    valid_x: npt.ArrayLike | None = None,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> PartnerModel:
    """Serve the label holder's requests; return this partner's model (its split records).

    The label holder's public key must meet ``policy`` and ``p.key_bits``."""
    me = f"partner.{s.me}"
    policy.check_key_bits(str(p.he), p.key_bits, "secureboost.key_bits")
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
    s.send(lh, Tag.HELLO, Hello(xb.shape[0], vx.shape[0], int(usable.size)).to_wire())
    setup = Setup.from_wire(s.recv(lh, Tag.SETUP), policy)
    if setup.params != params_wire(p):
        diff = sorted(k for k, v in params_wire(p).items() if setup.params.get(k) != v)
        raise ConfigError(f"{me}.params", f"differ from the label holder's: {diff}", "")
    pub = gh_crypto.HEPublic(setup.pk)
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
        pub: gh_crypto.HEPublic,
        bins: Bins,
        vcodes: np.ndarray,
        p: SBTParams,
        index: int,
    ) -> None:
        self.s, self.lh, self.pub, self.bins, self.vcodes, self.p = s, lh, pub, bins, vcodes, p
        self.n = bins.codes.shape[0]
        self.max_bins = int(bins.n_bins.max())
        self.index = index
        self.cols = np.zeros(0, dtype=np.int64)

    def serve(self, names: list[str]) -> PartnerModel:
        plain = PlainSide(self.index, self.bins, self.vcodes, self.p)
        while True:
            step = read_step(
                self.s.recv(self.lh, Tag.STEP),
                n_rows=self.n,
                n_trees=self.p.n_trees,
                plain_bits=self.pub.plain_bits,
                hidden=self.p.hide_instance_space,
                n_bins=self.bins.n_bins[self.cols],
                n_records=len(plain.records),
            )
            if isinstance(step, TreeStep):
                self._tree(step, plain)
            elif isinstance(step, BuildStep):
                self._build(step)
            elif isinstance(step, SplitStep):
                self._split(step, plain)
            else:
                return self._done(step, names, plain)

    def _done(self, step: DoneStep, names: list[str], plain: PlainSide) -> PartnerModel:
        gains = {int(k): float(v) for k, v in zip(step.records, step.gains, strict=True)}
        return PartnerModel.from_records(self.p, names, plain.records, step.trees, gains)

    def _tree(self, step: TreeStep, plain: PlainSide) -> None:
        t = step.t
        usable = np.flatnonzero(self.bins.n_bins > 1)
        cols = usable[colsample(len(usable), self.p, self.index, t)]
        perm = np.array(sorted(range(len(cols)), key=lambda _: secrets.randbits(64)))
        self.cols = cols[perm] if len(cols) else cols
        plain.cols, plain.t = self.cols, t
        self.slot, self.k = step.slot, step.k
        self.s.send(self.lh, Tag.NBINS, NBins(self.bins.n_bins[self.cols]).to_wire())
        self.cts = np.empty(self.n, dtype=object)
        self.root: tuple[np.ndarray, list[Any]] | None = None
        if step.rows is not None:  # the root histogram, chunk by chunk as the ciphertexts land
            rows, size = step.rows, step.chunk
            acc: list[Any] = []
            for a in range(0, len(rows), size):
                part = rows[a : a + size]
                msg = Ciphertexts.from_wire(Tag.CT, self.s.recv(self.lh, Tag.CT), size=len(part))
                cts = self.pub.check(msg.ct.values)
                self.cts[part] = gh_crypto.as_objects(cts)  # not the list: numpy would probe
                node = np.full(self.n, -1, dtype=np.int64)
                node[part] = 0
                sums = self._sums(node, 1)
                acc = sums if not acc else self.pub.add(acc, sums)
            self.root = (rows, acc)

    def _build(self, step: BuildStep) -> None:
        nb = self.bins.n_bins[self.cols]
        keep = np.concatenate([np.arange(b) + j * self.max_bins for j, b in enumerate(nb)])
        per_node = len(self.cols) * self.max_bins
        n_nodes = step.nodes
        if step.ct is not None:  # hidden instance space: one masked vector per node, all rows
            sums: list[Any] = []
            rows, groups, ng = hist_groups(
                self.bins.codes, self.cols, np.zeros(self.n, np.int64), [0], self.max_bins
            )
            for arr in step.ct:
                sums += self.pub.group_sum(self.pub.check(arr.values), rows, groups, ng)
        else:
            assert step.node_of is not None
            node_of = step.node_of
            root, self.root = self.root, None
            if root is not None and n_nodes == 1 and np.array_equal(node_of[root[0]], 0 * root[0]):
                in_root = np.count_nonzero(node_of == 0) == len(root[0])
                sums = root[1] if in_root else self._sums(node_of, n_nodes)
            else:
                sums = self._sums(node_of, n_nodes)
        picked = [sums[i * per_node + j] for i in range(n_nodes) for j in keep.tolist()]
        packed = self.pub.pack(picked, self.slot, self.k)
        self.s.send(self.lh, Tag.HIST, Ciphertexts(IntArray(packed, self.pub.width)).to_wire())

    def _sums(self, node_of: np.ndarray, n_nodes: int) -> list[Any]:
        """Encrypted (node, slot, bin) sums of the rows with ``node_of`` in 0..n_nodes-1."""
        rows, groups, ng = hist_groups(
            self.bins.codes, self.cols, node_of, list(range(n_nodes)), self.max_bins
        )
        return self.pub.group_sum(self.cts, rows, groups, ng)

    def _split(self, step: SplitStep, plain: PlainSide) -> None:
        recs, lefts, vlefts = [], [], []
        hide = self.p.hide_instance_space
        for i, (slot, b, dl) in enumerate(
            zip(step.slots.tolist(), step.bins.tolist(), step.default_left.tolist(), strict=True)
        ):
            rec = plain.add_record(int(self.cols[slot]), b, bool(dl))
            rows = np.arange(self.n) if hide else step.rows[i]
            lefts.append(left_of_codes(self.bins.codes[rows, rec.feature], b, bool(dl)))
            vlefts.append(left_of_codes(self.vcodes[:, rec.feature], b, bool(dl)))
            recs.append(len(plain.records) - 1)
        reply = Partition(np.array(recs, dtype=np.int64), lefts, vlefts)
        self.s.send(self.lh, Tag.PARTITION, reply.to_wire())
