"""The ``gram`` protocol of vertical LR: equals its algorithm in the clear, shares and
steps carry nothing sensitive, and it is chosen only where it applies."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.wire_check import assert_no_leak
from veil import codec
from veil.crypto.he import HEScheme
from veil.errors import ConfigError
from veil.ml.lr import LROptions, PartyData, resolve_protocol
from veil.ml.lr import _gram_shares as gram_shares
from veil.ml.lr._gram_shares import (
    bounds,
    cross_label_holder,
    cross_partner,
    encrypt_rows,
    layout,
    rounded,
    scale_bits,
)
from veil.ml.lr._homomorphic import keygen
from veil.ml.lr._math import fixed_batches, fixed_partition, sigmoid, step
from veil.policy import TEST_POLICY

from .common import FAST, NAMES, arrays, blocks, coefs, min_rows, plain_blocks, predict, train
from .test_train import tapped_run, valid_losses_at_best


def opts(**kw: Any) -> LROptions:
    return LROptions(**{**FAST, "protocol": "gram", **kw})


def fit_gram_plain(
    Xs: list[np.ndarray], y: np.ndarray, o: LROptions, least: int
) -> list[np.ndarray]:
    """The gram protocol in the clear: fixed batches, cross Gram blocks of features rounded
    to ``feature_bits`` (each party's whole block on one scale), own blocks exact."""
    R = [
        np.ldexp(rounded(X, scale_bits(X, o.feature_bits)), -scale_bits(X, o.feature_bits))
        for X in Xs
    ]
    ws = [np.zeros(X.shape[1]) for X in Xs]
    for epoch in range(o.epochs):
        lr = o.learning_rate_at(epoch)
        for _, idx in fixed_batches(len(y), o.batch_size, epoch, o.seed, least):
            L, P, Lr, Pr = Xs[0][idx], Xs[1][idx], R[0][idx], R[1][idx]
            g_l = 0.25 * (L.T @ L @ ws[0] + Lr.T @ Pr @ ws[1]) + L.T @ (0.5 - y[idx])
            g_p = 0.25 * (P.T @ P @ ws[1] + Pr.T @ Lr @ ws[0]) + Pr.T @ (0.5 - y[idx])
            pen = len(ws[0]) - (1 if o.fit_intercept else 0)
            ws[0] = step(ws[0], g_l / len(idx), lr, o, pen)
            ws[1] = step(ws[1], g_p / len(idx), lr, o, len(ws[1]))
    return ws


@pytest.mark.parametrize(
    "kw",
    [
        {"epochs": 2, "batch_size": 120},
        {"epochs": 2, "batch_size": 0, "penalty": "l1", "alpha": 0.01},
        # 240 rows in batches of 100: the 40-row rest joins the second batch (100 + 140)
        {"epochs": 1, "batch_size": 100, "feature_bits": 12, "fit_intercept": False},
        {"epochs": 1, "batch_size": 0, "feature_bits": 32},
    ],
)
def test_gram_matches_its_plaintext_algorithm(small: list[PartyData], kw: dict[str, Any]) -> None:
    o = opts(**kw)
    out = train(small, o)
    assert small[0].y is not None
    ref = fit_gram_plain(plain_blocks(small, o), small[0].y, o, min_rows(small, o))
    for name, w in zip(NAMES, ref, strict=False):
        model, report = out[name]
        assert report.epochs_run == o.epochs
        np.testing.assert_allclose(coefs(model), w, atol=1e-8)
        assert not np.allclose(w, 0)


def test_gram_with_a_one_column_partner(lr_credit: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    g, h = lr_credit
    lh = PartyData.from_frame(g.iloc[:150].reset_index(drop=True), label="y")
    pt = PartyData.from_frame(h.iloc[:150].reset_index(drop=True), features=["x0"])
    o = opts(epochs=2, batch_size=75)
    out = train([lh, pt], o)
    assert lh.y is not None
    ref = fit_gram_plain(plain_blocks([lh, pt], o), lh.y, o, min_rows([lh, pt], o))
    for name, w in zip(NAMES, ref, strict=False):
        np.testing.assert_allclose(coefs(out[name][0]), w, atol=1e-8)


def test_gram_sends_nothing_sensitive(small: list[PartyData]) -> None:
    o = opts(epochs=1, batch_size=120)
    rec, scaled, secret = tapped_run(small, o)
    for p, X in enumerate(scaled):  # the rounded integer features of the cross products
        K = rounded(X, scale_bits(X, o.feature_bits))
        secret |= {f"{NAMES[p]} rounded {j}": K[:, j] for j in range(K.shape[1] - (p == 0))}
    parts = fixed_partition(len(small[0].ids), 120, o.seed, 64)
    assert_no_leak(rec.frames, secret, subsets={f"batch {b}": i for b, i in enumerate(parts)})
    steps: list[int] = []
    for _, _, key, payload in rec.frames:
        value = codec.decode(payload)
        if "/gram_" in key:  # no plaintext vector at all: ciphertexts and masked integers
            assert not [a for a in arrays(value) if a.dtype.kind in "fi" and a.size > 1], key
        if "/gram_step:" in key:
            steps += value["part"]
    # Each plain part of a step carries a fresh mask of 2^stat_sec times its bound (zero
    # only where the coefficients are still all zero, which is public).
    assert len(steps) == 2 * (14 + 10)
    assert all(v == 0 or abs(v).bit_length() > TEST_POLICY.stat_sec for v in steps)
    assert sum(v != 0 for v in steps) >= 14 + 10


def test_gram_early_stopping_then_joint_prediction(
    lr_credit: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    g, h = lr_credit
    tr, va = blocks(g, h, np.arange(160)), blocks(g, h, np.arange(160, 260))
    out = train(tr, opts(epochs=4, batch_size=0, patience=1, learning_rate=5.0), valid=va)
    report = out["bank"][1]
    assert report.valid_loss and report.best_epoch == int(np.argmin(report.valid_loss))
    assert out["bureau"][1].best_epoch == report.best_epoch
    got, want = valid_losses_at_best(tr, va, out)
    assert got == pytest.approx(want, abs=1e-6)
    models = [out[n][0] for n in NAMES[:2]]
    z = sum(m.partial_score(d.X) for m, d in zip(models, va, strict=True))
    np.testing.assert_allclose(predict(va, models), sigmoid(z), atol=1e-8)


def test_protocol_is_chosen_where_it_applies() -> None:
    assert resolve_protocol(LROptions(), 1) == "gram"
    assert resolve_protocol(LROptions(), 2) == "he"
    assert resolve_protocol(LROptions(class_weight="balanced"), 1) == "he"
    assert resolve_protocol(LROptions(protocol="he"), 1) == "he"  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="protocol"):
        resolve_protocol(LROptions(protocol="gram"), 2)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="protocol"):
        resolve_protocol(LROptions(protocol="gram", class_weight="balanced"), 1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="protocol"):
        LROptions(protocol="ss")  # type: ignore[arg-type]


def test_explicit_gram_with_two_partners_is_refused(
    lr_credit: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    g, h = lr_credit
    data = blocks(g, h, np.arange(80), split3=True)
    with pytest.raises(Exception, match="gram needs exactly one partner"):
        train(data, opts(epochs=1, batch_size=0))


@pytest.mark.parametrize("n", [50, 75, 130, 300])
@pytest.mark.parametrize("pinned", [False, True])
def test_shares_add_up_exactly(n: int, pinned: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """S_L + S_P = A and s_L + s_P = 2^f_P 2c exactly, for batch sizes whose masks are
    below, around and above 2^63. ``pinned``: masks alternate between just above 2^63
    and small negatives, which numpy turns into float64 (losing the low bits) unless the
    share matrix is built with dtype=object -- 64-130-row batches drew such masks in
    about a quarter of the batches."""
    pk, sk = keygen(HEScheme.OU, 1024, TEST_POLICY)
    rng = np.random.default_rng(n)
    sec, fb = TEST_POLICY.stat_sec, 8
    if pinned:
        flip = iter([True, False] * 1000)
        big = (1 << 63) + 12345  # within the mask bound from 66 rows on

        def pinned_mask(bound: int) -> int:
            return min(bound, big) if next(flip) else -5

        monkeypatch.setattr(gram_shares, "random_mask", pinned_mask)
    for n_cols in (1, 10):
        KL = rng.integers(-(1 << fb), 1 << fb, (n, 14))
        KP = rng.integers(-(1 << fb), 1 << fb, (n, n_cols))
        y = rng.integers(0, 2, n).astype(np.float64)
        lay = layout(pk, n_cols, n, fb, sec)
        rows = encrypt_rows(pk, KP, lay, 1 << fb)
        cts, S_L, s_L = cross_label_holder(rows, KL, y, lay, fb=fb, stat_sec=sec)
        S_P, s_P = cross_partner(sk, cts, lay, F_L=14, n=n, fb=fb, stat_sec=sec)
        assert ((KL.T @ KP).astype(object) == (S_L + S_P)).all()
        assert [a + b for a, b in zip(s_L, s_P, strict=True)] == (KP.T @ (1 - 2 * y)).astype(
            int
        ).tolist()


def test_slots_never_overflow() -> None:
    """Masked share slots hold any sum of the batch; the layout fits the plaintext."""
    pk, _ = keygen(HEScheme.OU, 1024, TEST_POLICY)
    sec = TEST_POLICY.stat_sec
    for n, fb, cols in ((120, 8, 10), (2048, 8, 10), (4096, 16, 30)):
        lay = layout(pk, cols, n, fb, sec)
        assert lay.per_ct * lay.slot <= pk.plain_bits - 2
        assert bounds(n, fb, sec)[1] < 1 << (lay.slot - 2)
        assert lay.n_ct * lay.per_ct >= cols
