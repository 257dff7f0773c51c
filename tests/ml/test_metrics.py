from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from veil.ml import metrics


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.25).astype(int)
    s = rng.normal(size=2000) + 0.8 * y
    s[:200] = np.round(s[:200], 1)  # some ties
    return y, s


def test_auc_roc_and_ks_match_sklearn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = scored
    assert metrics.auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    mf, mt, _ = metrics.roc_curve(y, s)
    np.testing.assert_allclose(mf, fpr)
    np.testing.assert_allclose(mt, tpr)
    k, _ = metrics.ks(y, s)
    assert k == pytest.approx(np.max(tpr - fpr))


def test_confusion_matches_sklearn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = scored
    p = 1 / (1 + np.exp(-s))
    cm = metrics.confusion(y, p, 0.6)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, (p >= 0.6).astype(int)))


def test_lift_and_gain(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = scored
    rows = metrics.lift_table(y, s)
    assert len(rows) == 10 and sum(r.rows for r in rows) == 2000
    assert rows[-1].cum_gain == pytest.approx(1.0) and rows[-1].cum_lift == pytest.approx(1.0)
    assert rows[0].lift > 1.5 > rows[-1].lift
    top = np.argsort(-s, kind="mergesort")[:200]
    assert rows[0].events == y[top].sum()


def test_psi() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=5000), rng.normal(size=5000)
    assert metrics.psi(a, b) < 0.01
    assert metrics.psi(a, b + 1.0) > 0.25
    # Hand-computed: shares 0.5/0.5 -> 0.8/0.2 over a two-bin split.
    e = np.r_[np.zeros(50), np.ones(50)]
    act = np.r_[np.zeros(80), np.ones(20)]
    want = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert metrics.psi(e, act, n_bins=2) == pytest.approx(want)
