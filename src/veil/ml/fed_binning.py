"""Federated binning with WOE and IV for every feature of every party.

Follows FATE's hetero feature binning (guest encrypts labels, hosts sum them per
bin) and the WOE/IV practice of Siddiqi, *Credit Risk Scorecards* (2006).
Rows are aligned (PSI) and in the same order on every party; each role function
receives only the rows to fit on (the training rows of the split).

Roles: ``label_holder`` (holds the 0/1 label and its own features) and one or
more ``partner`` parties (features only). Messages: :class:`Tag`, with one typed
schema each in :mod:`veil.ml.fed_binning_messages`.

Flow, per partner:
  1. label holder -> partner  PUBLIC_KEY, ENC_LABELS: Enc(y_i) for every
     row (Paillier or OU)
  2. partner: cuts every feature into label-free bins (quantile / equal-width,
     ``fine_bins`` for the optimal methods), merges bins under ``min_bin_size``
     rows, sums the ciphertexts per bin (``group_sum``) and re-randomises the
     sums (the label holder made every Enc(y_i) and could otherwise test which
     rows a product covers)
     partner -> label holder  BIN_SUMS: per feature the row count per bin,
     Enc(events per bin), and the feature names only if the partner allows it
     (``reveal_names``)
  3. label holder decrypts only the per-bin totals; for chi-merge / monotonic
     binning it merges adjacent bins on those counts and keeps that merge plan
     label holder -> partner  WOE: with ``share_woe`` off, nothing but "no WOE"
     (a constant); with ``share_woe`` on, per feature the WOE and IV of every
     final bin and, for chi-merge / monotonic only, the group starts (which of
     the partner's bins were merged) that it needs to apply that WOE
  The label holder bins its own features in plaintext with the same code.

What each party learns:
  - label holder: for each partner feature the row count and event count of
    every (fine) bin (each bin has >= ``min_bin_size`` rows); not which rows are
    in a bin, the partner's edges, values, or (unless revealed) feature names.
    Bin order is known (bins are sorted by value).
  - partner, ``share_woe`` off (the default): nothing that depends on the labels,
    for every method. It receives the public key, semantically secure Enc(y_i)
    (all sums stay encrypted) and a constant reply. Its own bins stay the
    label-free ones it cut: for quantile / equal-width these are the final bins,
    for chi-merge / monotonic the fine bins before merging (the merged bins are
    a function of the labels; the label holder keeps that plan).
  - partner, ``share_woe`` on: for each own feature the WOE and IV of every final
    bin, which it needs to WOE-transform its columns for the next step. With its
    bin counts the WOE gives the event count of every final bin (one unknown,
    the total event count, is fixed by the WOE values themselves).
    For chi-merge / monotonic it also learns the merged bin boundaries, which
    depend on the labels: chi-merge joins the adjacent bins whose event rates are
    most alike; monotonic pooling reveals the direction of the event-rate trend
    and that every pooled run of fine bins broke it. No design avoids this while
    the partner applies WOE to its own values in the clear: values that share a
    WOE value are exactly a merged bin. With quantile / equal-width the
    boundaries are label-free; only the WOE/IV are label-dependent.
    Bins of >= ``min_bin_size`` rows keep single labels out of reach of one bin,
    but a partner could difference overlapping bins of two of its features (e.g.
    rows 1-50 and 1-51) to learn a label; leave ``share_woe`` off (WOE only on
    the label holder's side) where that matters. No noise is added.
    ``tests/ml/test_binning_leak.py`` runs these inferences as a curious partner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from veil.crypto.he import HEPublicKey, HEScheme, HESecretKey
from veil.errors import ConfigError, ProtocolError
from veil.ml import he_keys
from veil.ml.binning import (
    BinningOptions,
    Bins,
    FloatArray,
    IntArr,
    bin_feature,
    fine_bins,
    optimal_starts,
    regroup,
    woe_iv,
)
from veil.ml.fed_binning_messages import (
    BinSums,
    EncLabels,
    FeatureSums,
    FeatureWoe,
    KeyMsg,
    Tag,
    WoeMsg,
)
from veil.ml.labels import check_labels
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy

__all__ = [
    "LABEL_HOLDER",
    "BinStats",
    "FedBinningOptions",
    "LabelHolderBinning",
    "Tag",
    "anonymous_id",
    "run_label_holder",
    "run_partner",
]

LABEL_HOLDER = "label_holder"


@dataclass(frozen=True)
class FedBinningOptions:
    """Options of the federated binning step (the label holder's decide)."""

    binning: BinningOptions = field(default_factory=BinningOptions)
    he: HEScheme = HEScheme.PAILLIER
    key_bits: int = 2048
    share_woe: bool = False

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "he", HEScheme(self.he))
        except ValueError:
            raise ConfigError(
                "binning.he", f"unknown scheme '{self.he}'", "use 'paillier' or 'ou'"
            ) from None


@dataclass(frozen=True)
class BinStats:
    """What the label holder knows of one feature's final bins.

    ``starts``: for a partner's feature under chi-merge / monotonic binning, the
    merge plan over the partner's fine bins (index of the first fine bin of every
    final bin); it stays with the label holder unless WOE is shared.
    """

    party: str
    index: int
    name: str
    counts: IntArr
    events: IntArr
    woe: FloatArray
    iv: float
    named: bool = True  # False: ``name`` is an anonymous id such as ``bureau:f3``
    starts: IntArr | None = None

    @property
    def key(self) -> str:
        """Unique display name across parties: ``party:name`` or the anonymous id."""
        return f"{self.party}:{self.name}" if self.named else self.name


@dataclass(frozen=True)
class LabelHolderBinning:
    """The label holder's result: its own bins and the stats of every feature."""

    own: dict[str, Bins]
    stats: list[BinStats]

    def iv(self) -> dict[str, float]:
        """IV keyed by :attr:`BinStats.key`."""
        return {b.key: b.iv for b in self.stats}


def anonymous_id(party: str, index: int) -> str:
    """How a partner's feature is called when its name is not revealed."""
    return f"{party}:f{index}"


def _columns(features: Mapping[str, npt.ArrayLike], n_rows: int | None) -> dict[str, Any]:
    if not features:
        raise ConfigError("features", "no feature columns given", "pass at least one column")
    cols = {str(k): np.asarray(v) for k, v in features.items()}
    for name, col in cols.items():
        if n_rows is not None and len(col) != n_rows:
            raise ConfigError(f"column '{name}'", f"has {len(col)} rows, expected {n_rows}")
    return cols


def run_label_holder(
    s: Session,
    y: npt.ArrayLike,
    features: Mapping[str, npt.ArrayLike],
    opts: FedBinningOptions = FedBinningOptions(),
    *,
    partners: Sequence[str] | None = None,
    keys: tuple[HEPublicKey, HESecretKey] | None = None,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> LabelHolderBinning:
    """Bin own features in plaintext and every partner's under encrypted labels.

    ``keys`` (a ``(public, secret)`` pair of ``opts.he``) skips key generation;
    either way the key must meet ``policy`` (tests pass ``veil.policy.TEST_POLICY``).
    """
    labels = check_labels(y, "y")
    cols = _columns(features, len(labels))
    own = {name: bin_feature(name, col, labels, opts.binning) for name, col in cols.items()}
    stats = [
        BinStats(s.me, i, b.name, b.counts, b.events, b.woe, b.iv)  # type: ignore[arg-type]
        for i, b in enumerate(own.values())
    ]
    peers = list(partners) if partners is not None else s.peers()
    if peers:
        if keys is None:
            keys = he_keys.generate_keypair(opts.he, opts.key_bits, policy, "binning.key_bits")
        pk, sk = keys
        policy.check_key_bits(str(pk.scheme), int(pk.bits), "binning.key_bits")
        key_msg = KeyMsg(pk).to_wire()
        enc = EncLabels(pk.encrypt(labels)).to_wire()
        for p in peers:
            s.send(p, Tag.PUBLIC_KEY, key_msg)
            s.send(p, Tag.ENC_LABELS, enc)
        for p in peers:
            stats.extend(_finish_partner(s, p, pk=pk, sk=sk, n_rows=len(labels), opts=opts))
    return LabelHolderBinning(own, stats)


def _finish_partner(
    s: Session, partner: str, *, pk: Any, sk: Any, n_rows: int, opts: FedBinningOptions
) -> list[BinStats]:
    b = opts.binning
    msg = BinSums.from_wire(
        s.recv(partner, Tag.BIN_SUMS), pk, n_rows=n_rows, max_bins=b.initial_bins + 1
    )
    out: list[BinStats] = []
    plans: list[FeatureWoe] = []
    for i, f in enumerate(msg.features):
        where = f"{partner}: {Tag.BIN_SUMS}: field 'features[{i}]"
        counts = f.counts
        if len(counts) > 1 and np.any(counts < b.min_bin_size):
            raise ProtocolError(f"{where}.counts' has bins under min_bin_size={b.min_bin_size}")
        events = np.asarray(np.rint(sk.decrypt(f.events)), dtype=np.int64)
        if events.shape != counts.shape or np.any(events < 0) or np.any(events > counts):
            raise ProtocolError(f"{where}.events' does not fit its counts")
        starts = optimal_starts(counts, f.has_missing, events, b)
        if starts is not None:
            counts = np.add.reduceat(counts, starts)
            events = np.add.reduceat(events, starts)
        woe, iv = woe_iv(events, counts)
        named = msg.names is not None
        name = msg.names[i] if msg.names is not None else anonymous_id(partner, i)
        out.append(BinStats(partner, i, name, counts, events, woe, iv, named, starts))
        plans.append(FeatureWoe(starts, woe, iv))
    s.send(partner, Tag.WOE, _woe_reply(plans, opts).to_wire())
    return out


def _woe_reply(plans: list[FeatureWoe], opts: FedBinningOptions) -> WoeMsg:
    """What a partner gets back: every plan (WOE, IV, merge starts) only if WOE is
    shared, else nothing label-dependent."""
    return WoeMsg(plans if opts.share_woe else None)


def run_partner(
    s: Session,
    features: Mapping[str, npt.ArrayLike],
    binning: BinningOptions | None = None,
    *,
    reveal_names: bool = False,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> dict[str, Bins]:
    """Bin own features and help the label holder compute their WOE/IV.

    ``binning`` must equal the label holder's options (the job passes the same
    block to both). Returns this party's :class:`Bins`: with WOE and the final
    bins only if the label holder shares WOE, else its label-free bins (see the
    module docstring). ``policy``: the smallest HE key accepted from the label
    holder.
    """
    binning = binning or BinningOptions()
    holder = s.party_of(LABEL_HOLDER)
    cols = _columns(features, None)
    n = {len(c) for c in cols.values()}
    if len(n) != 1:
        raise ConfigError("features", f"columns have different lengths {sorted(n)}")
    n_rows = n.pop()
    if n_rows == 0:
        raise ConfigError("features", "this party has zero rows", "check the PSI/split output")
    fines = [fine_bins(name, col, binning) for name, col in cols.items()]
    pk = KeyMsg.from_wire(s.recv(holder, Tag.PUBLIC_KEY), policy).pk
    enc = EncLabels.from_wire(s.recv(holder, Tag.ENC_LABELS), pk).labels
    if len(enc) != n_rows:
        raise ConfigError(
            "rows",
            f"label holder has {len(enc)} rows, this party {n_rows}",
            "run PSI and the split first so both hold the same aligned rows",
        )
    sums = [
        FeatureSums(
            fine.counts,
            fine.has_missing_bin,
            # Fresh randomness: the label holder made every Enc(y_i) and could
            # otherwise test which rows a product of them covers.
            enc.group_sum(fine.transform(col), fine.n_bins).rerandomize(),
        )
        for fine, col in zip(fines, cols.values(), strict=True)
    ]
    names = list(cols) if reveal_names else None
    s.send(holder, Tag.BIN_SUMS, BinSums(sums, names).to_wire())
    reply = WoeMsg.from_wire(s.recv(holder, Tag.WOE), fines)
    if reply.features is None:  # WOE not shared: keep the label-free bins
        return {fine.name: Bins(*_fine_fields(fine)) for fine in fines}
    out: dict[str, Bins] = {}
    for fine, f in zip(fines, reply.features, strict=True):
        final = regroup(fine, f.starts)
        out[fine.name] = Bins(*_fine_fields(final), woe=f.woe, iv=f.iv)
    return out


def _fine_fields(f: Any) -> tuple[str, FloatArray, IntArr, bool, int]:
    return f.name, f.edges, f.counts, f.has_missing_bin, f.missing_bin
