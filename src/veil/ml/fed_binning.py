"""Federated binning with WOE and IV for every feature of every party.

Follows FATE's hetero feature binning (guest encrypts labels, hosts sum them per
bin) and the WOE/IV practice of Siddiqi, *Credit Risk Scorecards* (2006).
Rows are aligned (PSI) and in the same order on every party; each role function
receives only the rows to fit on (the training rows of the split).

Roles: ``label_holder`` (holds the 0/1 label and its own features) and one or
more ``partner`` parties (features only).

Flow, per partner:
  1. label holder -> partner  public key, Enc(y_i) for every row (Paillier or OU)
  2. partner: cuts every feature into label-free bins (quantile / equal-width,
     ``fine_bins`` for the optimal methods), merges bins under ``min_bin_size``
     rows, sums the ciphertexts per bin (``group_sum``) and re-randomises the
     sums (the label holder made every Enc(y_i) and could otherwise test which
     rows a product covers)
     partner -> label holder  per feature: row count per bin, Enc(events per bin),
     and the feature names only if the partner allows it (``reveal_names``)
  3. label holder decrypts only the per-bin totals; for chi-merge / monotonic
     binning it merges adjacent bins on those counts
     label holder -> partner  per feature: group starts (which adjacent bins to
     merge), and the WOE and IV per final bin only if ``share_woe`` is set
  The label holder bins its own features in plaintext with the same code.

What each party learns:
  - label holder: for each partner feature the row count and event count of
    every bin (each bin has >= ``min_bin_size`` rows); not which rows are in a
    bin, the partner's edges, values, or (unless revealed) feature names. Bin
    order is known (bins are sorted by value).
  - partner: nothing about the labels from steps 1-2 (semantically secure
    ciphertexts, all sums stay encrypted). With ``share_woe`` it learns the WOE
    of each of its own bins, which it needs to WOE-transform its columns for the
    next step; with the bin counts that is the event count of every bin. Bins of
    >= ``min_bin_size`` rows keep single labels out of reach of one bin, but a
    partner could difference overlapping bins of two of its features (e.g. rows
    1-50 and 1-51) to learn a label; leave ``share_woe`` off (WOE only on the
    label holder's side) where that matters. No noise is added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from veil.crypto import he
from veil.crypto.he import HEScheme
from veil.errors import ConfigError, ProtocolError
from veil.ml.binning import (
    BinningOptions,
    Bins,
    FloatArray,
    IntArr,
    bin_feature,
    check_labels,
    fine_bins,
    optimal_starts,
    regroup,
    woe_iv,
)
from veil.net.session import Session

LABEL_HOLDER = "label_holder"


class Tag(StrEnum):
    """Every message of federated binning."""

    PUBLIC_KEY = "pk"
    ENC_LABELS = "enc_labels"
    BIN_SUMS = "bin_sums"
    MERGES = "merges"


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
    """What the label holder knows of one feature's final bins."""

    party: str
    index: int
    name: str
    counts: IntArr
    events: IntArr
    woe: FloatArray
    iv: float

    @property
    def label(self) -> str:
        """``party:name`` as reports show it (``bureau:f3`` for an unrevealed column)."""
        return f"{self.party}:{self.name}"


@dataclass(frozen=True)
class LabelHolderBinning:
    """The label holder's result: its own bins and the stats of every feature."""

    own: dict[str, Bins]
    stats: list[BinStats]

    def iv(self) -> dict[tuple[str, str], float]:
        """IV keyed by (party, feature name or anonymous id)."""
        return {(b.party, b.name): b.iv for b in self.stats}


def _policy_kw(policy: Any) -> dict[str, Any]:
    return {} if policy is None else {"policy": policy}


def anonymous_id(party: str, index: int) -> str:
    """How a partner's feature is called when its name is not revealed (``f3``)."""
    del party  # the id is per partner: BinStats.label adds the party
    return f"f{index}"


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
    keys: tuple[Any, Any] | None = None,
    policy: Any = None,
) -> LabelHolderBinning:
    """Bin own features in plaintext and every partner's under encrypted labels.

    ``keys`` (a ``(public, secret)`` pair of ``opts.he``) skips key generation;
    ``policy`` is the HE key policy (default: the library's, >= 2048 bits; tests
    pass ``veil.crypto.he.TEST_POLICY``).
    """
    labels = check_labels(y)
    cols = _columns(features, len(labels))
    own = {name: bin_feature(name, col, labels, opts.binning) for name, col in cols.items()}
    stats = [
        BinStats(s.me, i, b.name, b.counts, b.events, b.woe, b.iv)  # type: ignore[arg-type]
        for i, b in enumerate(own.values())
    ]
    peers = list(partners) if partners is not None else s.peers()
    if peers:
        if keys is None:
            keys = he.generate_keypair(opts.he.value, opts.key_bits, **_policy_kw(policy))
        pk, sk = keys
        enc = pk.encrypt(labels).to_wire()
        for p in peers:
            s.send(p, Tag.PUBLIC_KEY, pk.to_wire())
            s.send(p, Tag.ENC_LABELS, enc)
        for p in peers:
            stats.extend(_finish_partner(s, p, pk=pk, sk=sk, opts=opts))
    return LabelHolderBinning(own, stats)


def _finish_partner(
    s: Session, partner: str, *, pk: Any, sk: Any, opts: FedBinningOptions
) -> list[BinStats]:
    msg = s.recv(partner, Tag.BIN_SUMS)
    try:
        feats = list(msg["features"])
        names = msg["names"]
    except (KeyError, TypeError):
        raise ProtocolError(f"{partner}: malformed {Tag.BIN_SUMS} message") from None
    if names is not None and len(names) != len(feats):
        raise ProtocolError(f"{partner}: {len(names)} names for {len(feats)} features")
    out: list[BinStats] = []
    replies: list[dict[str, Any]] = []
    for i, f in enumerate(feats):
        counts = np.asarray(f["counts"], dtype=np.int64)
        has_missing = bool(f["has_missing"])
        if counts.ndim != 1 or len(counts) == 0:
            raise ProtocolError(f"{partner}: feature {i} has no bins")
        if len(counts) > 1 and np.any(counts < opts.binning.min_bin_size):
            raise ProtocolError(f"{partner}: feature {i} has bins under min_bin_size")
        events = np.rint(sk.decrypt(he.EncryptedArray.from_wire(pk, f["events"])))
        events = np.asarray(events, dtype=np.int64)
        if events.shape != counts.shape or np.any(events < 0) or np.any(events > counts):
            raise ProtocolError(f"{partner}: feature {i} bin sums do not fit its counts")
        starts = optimal_starts(counts, has_missing, events, opts.binning)
        if starts is not None:
            counts = np.add.reduceat(counts, starts)
            events = np.add.reduceat(events, starts)
        woe, iv = woe_iv(events, counts)
        name = str(names[i]) if names is not None else anonymous_id(partner, i)
        out.append(BinStats(partner, i, name, counts, events, woe, iv))
        reply: dict[str, Any] = {"starts": None if starts is None else starts}
        if opts.share_woe:
            reply.update(woe=woe, iv=iv)
        replies.append(reply)
    s.send(partner, Tag.MERGES, replies)
    return out


def run_partner(
    s: Session,
    features: Mapping[str, npt.ArrayLike],
    binning: BinningOptions | None = None,
    *,
    reveal_names: bool = False,
    policy: Any = None,
) -> dict[str, Bins]:
    """Bin own features and help the label holder compute their WOE/IV.

    ``binning`` must equal the label holder's options (the job passes the same
    block to both). Returns this party's :class:`Bins`, with WOE only if the
    label holder shares it. ``policy``: the smallest HE key accepted from the
    label holder (default: the library's).
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
    pk = he.public_key_from_wire(s.recv(holder, Tag.PUBLIC_KEY), **_policy_kw(policy))
    enc = he.EncryptedArray.from_wire(pk, s.recv(holder, Tag.ENC_LABELS))
    if len(enc) != n_rows:
        raise ConfigError(
            "rows",
            f"label holder has {len(enc)} rows, this party {n_rows}",
            "run PSI and the split first so both hold the same aligned rows",
        )
    sums = []
    for fine, col in zip(fines, cols.values(), strict=True):
        groups = fine.transform(col)
        sums.append(
            {
                "counts": fine.counts,
                "has_missing": fine.has_missing_bin,
                # Fresh randomness: the label holder made every Enc(y_i) and could
                # otherwise test which rows a product of them covers.
                "events": enc.group_sum(groups, fine.n_bins).rerandomize().to_wire(),
            }
        )
    names = list(cols) if reveal_names else None
    s.send(holder, Tag.BIN_SUMS, {"features": sums, "names": names})
    replies = s.recv(holder, Tag.MERGES)
    if not isinstance(replies, list) or len(replies) != len(fines):
        raise ProtocolError(f"{holder}: expected {len(fines)} merge plans")
    out: dict[str, Bins] = {}
    for fine, r in zip(fines, replies, strict=True):
        final = regroup(fine, r["starts"])
        woe = r.get("woe")
        if woe is not None:
            woe = np.asarray(woe, dtype=np.float64)
            if woe.shape != final.counts.shape:
                raise ProtocolError(f"{holder}: WOE of '{fine.name}' has the wrong length")
        out[fine.name] = Bins(
            final.name,
            final.edges,
            final.counts,
            final.has_missing_bin,
            final.missing_bin,
            woe=woe,
            iv=None if r.get("iv") is None else float(r["iv"]),
        )
    return out
