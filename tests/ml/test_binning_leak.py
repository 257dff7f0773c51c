"""What a curious partner can infer about the labels from federated binning.

The partner runs the protocol honestly, records everything it receives and then
attacks (see "What each party learns" in :mod:`veil.ml.fed_binning`):

- distinguishing: run the protocol on the same features with two label vectors;
  anything the partner receives that differs between them (ciphertexts aside:
  they are semantically secure) depends on the labels;
- plan confirmation: given candidate label vectors, recompute the merge plans each
  would give (the partner knows its fine bins and the public algorithm) and keep
  the candidates that match what it received for every feature;
- event counts: from the WOE of its bins and their row counts, solve for the
  event count of every bin.

With ``share_woe`` off nothing label-dependent reaches the partner, for every
method. With it on the WOE gives every bin's event count, and chi-merge /
monotonic boundaries depend on the labels. A weakened label holder that sends
the plan with ``share_woe`` off (the behaviour before this was fixed) is caught.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.ml.conftest import HE
from tests.ml.test_fed_binning import _run
from veil import codec
from veil.codec import IntArray
from veil.ml import fed_binning
from veil.ml.binning import BinMethod, BinningOptions, Bins, fine_bins, optimal_starts, woe_iv
from veil.ml.fed_binning import FedBinningOptions
from veil.ml.fed_binning_messages import FeatureWoe, WoeMsg

N = 800
PARTNER_RANK = 1  # parties in order bank, bureau
OPTIMAL = [BinMethod.CHI_MERGE, BinMethod.MONOTONIC]


def _opaque(v: Any) -> Any:
    """A received value with ciphertexts replaced by their count (they hide their
    plaintexts: semantic security) and arrays by lists, for comparing two runs."""
    if isinstance(v, IntArray):
        return ("ciphertexts", len(v))
    if isinstance(v, dict):
        return {k: _opaque(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_opaque(x) for x in v]
    if isinstance(v, np.ndarray):
        return (str(v.dtype), v.tolist())
    return v


def partner_view(
    credit: tuple[pd.DataFrame, pd.DataFrame], y: np.ndarray, opts: FedBinningOptions, crypto: HE
) -> tuple[list[tuple[str, Any]], dict[str, Bins]]:
    """Every message the partner receives (tag, content) and the bins it ends with."""
    g, h = credit[0].iloc[:N].assign(y=y), credit[1].iloc[:N]
    frames: list[tuple[int, int, str, bytes]] = []
    out = _run(g, h, opts, crypto, tap=lambda *f: frames.append(f))
    view = [
        (key.split("/")[-1].split(":")[0], codec.decode(payload))
        for _src, dst, key, payload in frames
        if dst == PARTNER_RANK
    ]
    return view, out["bureau"]


def assert_label_independent(v0: list[tuple[str, Any]], v1: list[tuple[str, Any]]) -> None:
    """The distinguishing attack: the two views must be equal up to ciphertexts."""
    assert len(v0) == len(v1)
    for (t0, m0), (t1, m1) in zip(v0, v1, strict=True):
        assert t0 == t1
        assert _opaque(m0) == _opaque(m1), f"message '{t0}' depends on the labels"


def confirm_plan(
    h: pd.DataFrame, received: list[Any], candidates: list[np.ndarray], opts: BinningOptions
) -> list[list[int]]:
    """Plan confirmation: per feature, the candidates whose labels give the received
    merge starts (the partner recomputes each plan from its own fine bins)."""
    names = [c for c in h.columns if c.startswith("x")]
    out = []
    for name, plan in zip(names, received, strict=True):
        col = h[name].to_numpy()[:N]
        fine = fine_bins(name, col, opts)
        got = np.asarray(plan["starts"])
        ok = []
        for c, y in enumerate(candidates):
            ev = np.bincount(fine.transform(col), weights=y, minlength=fine.n_bins)
            mine = optimal_starts(fine.counts, fine.has_missing_bin, ev, opts)
            if mine is not None and np.array_equal(mine, got):
                ok.append(c)
        out.append(ok)
    return out


def events_from_woe(woe: np.ndarray, counts: np.ndarray) -> np.ndarray | None:
    """Event count of every bin from its WOE and row count: try each total event
    count E; WOE_k = ln(e_k/E / ((c_k - e_k)/(T - E))) fixes e_k given E."""
    total = int(counts.sum())
    for e_tot in range(1, total):
        r = np.exp(woe) * e_tot / (total - e_tot)
        ev = np.rint(counts * r / (1 + r))
        if ev.sum() == e_tot and np.allclose(woe_iv(ev, counts)[0], woe, atol=1e-9):
            return ev.astype(np.int64)
    return None


@pytest.fixture(scope="module")
def labels(credit: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[np.ndarray, np.ndarray]:
    """The true labels and a decoy: the same labels shuffled over the rows."""
    y = credit[0]["y"].to_numpy()[:N]
    return y, np.random.default_rng(7).permutation(y)


def _opts(method: BinMethod, share_woe: bool) -> FedBinningOptions:
    return FedBinningOptions(
        BinningOptions(method, n_bins=4, fine_bins=10, min_bin_size=40), share_woe=share_woe
    )


@pytest.mark.parametrize("method", list(BinMethod))
def test_without_share_woe_partner_receives_nothing_label_dependent(
    credit: tuple[pd.DataFrame, pd.DataFrame],
    crypto: HE,
    labels: tuple[np.ndarray, np.ndarray],
    method: BinMethod,
) -> None:
    opts = _opts(method, share_woe=False)
    v0, bins0 = partner_view(credit, labels[0], opts, crypto)
    v1, bins1 = partner_view(credit, labels[1], opts, crypto)
    assert [t for t, _ in v0] == ["pk", "enc_labels", "woe"]
    assert v0[2][1] == {"features": None}  # a constant: no WOE, no merge plan
    assert_label_independent(v0, v1)
    # the partner keeps the label-free bins it cut itself (fine bins for the optimal methods)
    h = credit[1].iloc[:N]
    for name, b in bins0.items():
        fine = fine_bins(name, h[name], opts.binning)
        np.testing.assert_array_equal(b.edges, fine.edges)
        np.testing.assert_array_equal(b.edges, bins1[name].edges)
        assert b.woe is None and b.iv is None


@pytest.mark.parametrize("method", [BinMethod.QUANTILE, *OPTIMAL])
def test_weakened_holder_sending_the_plan_without_share_woe_is_caught(
    credit: tuple[pd.DataFrame, pd.DataFrame],
    crypto: HE,
    labels: tuple[np.ndarray, np.ndarray],
    method: BinMethod,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deliberately weakened: the label holder sends its plans with share_woe off
    (before the fix it sent the merge starts). The same attacks must then succeed."""

    def leaky(plans: list[FeatureWoe], opts: FedBinningOptions) -> WoeMsg:
        return WoeMsg(plans)

    monkeypatch.setattr(fed_binning, "_woe_reply", leaky)
    opts = _opts(method, share_woe=False)
    v0, _ = partner_view(credit, labels[0], opts, crypto)
    v1, _ = partner_view(credit, labels[1], opts, crypto)
    with pytest.raises(AssertionError, match="message 'woe' depends on the labels"):
        assert_label_independent(v0, v1)
    if method in OPTIMAL:  # the plan alone singles out the true labels among candidates
        matches = confirm_plan(credit[1], v0[2][1]["features"], list(labels), opts.binning)
        assert all(0 in m for m in matches)  # the true labels always fit
        assert set.intersection(*map(set, matches)) == {0}, matches  # the decoy does not


@pytest.mark.parametrize("method", list(BinMethod))
def test_share_woe_reveals_event_counts_and_optimal_boundaries(
    credit: tuple[pd.DataFrame, pd.DataFrame],
    crypto: HE,
    labels: tuple[np.ndarray, np.ndarray],
    method: BinMethod,
) -> None:
    """As the module docstring says: with share_woe the WOE gives the event count of
    every final bin; chi-merge / monotonic boundaries depend on the labels,
    quantile / equal-width boundaries do not."""
    opts = _opts(method, share_woe=True)
    y = labels[0]
    v0, bins0 = partner_view(credit, y, opts, crypto)
    _, bins1 = partner_view(credit, labels[1], opts, crypto)
    h = credit[1].iloc[:N]
    for name, b in bins0.items():
        assert b.woe is not None
        ev = events_from_woe(b.woe, b.counts)
        truth = np.bincount(b.transform(h[name]), weights=y, minlength=len(b.counts))
        np.testing.assert_array_equal(ev, truth)
        if method is BinMethod.MONOTONIC:  # the trend's direction is in the plan
            d = np.diff(ev[: len(ev) - b.has_missing_bin] / b.counts[: len(ev) - b.has_missing_bin])
            assert (d >= 0).all() or (d <= 0).all()
    same = [np.array_equal(b.edges, bins1[n].edges) for n, b in bins0.items()]
    if method in OPTIMAL:
        assert not all(same)  # merged boundaries are a function of the labels
        plans = v0[2][1]["features"]
        assert all(p["starts"] is not None for p in plans)
    else:
        assert all(same)  # label-free cut points
        assert all(p["starts"] is None for p in v0[2][1]["features"])
