from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tests.ml.conftest import HE
from tests.ml.test_fed_binning import ROLES, _run
from veil.errors import ConfigError
from veil.ml import scorecard
from veil.ml.binning import BinMethod, BinningOptions
from veil.ml.fed_binning import FedBinningOptions
from veil.ml.scorecard import ScorecardOptions
from veil.net.local import run_parties


def test_scaling_constants() -> None:
    o = ScorecardOptions(600, 20, 50)
    assert o.factor == pytest.approx(28.8539, abs=1e-4)
    assert o.offset == pytest.approx(487.1229, abs=1e-4)
    with pytest.raises(ConfigError, match=r"scorecard\.pdo"):
        ScorecardOptions(pdo=0)


def test_joint_score_equals_plaintext_lr_on_woe(
    credit: tuple[pd.DataFrame, pd.DataFrame], crypto: HE
) -> None:
    g, h = credit
    opts = FedBinningOptions(
        BinningOptions(BinMethod.MONOTONIC, n_bins=5, fine_bins=10, min_bin_size=60),
        share_woe=True,
    )
    out = _run(g, h, opts, crypto)
    gb, hb = out["bank"].own, out["bureau"]
    gcols, hcols = list(gb), list(hb)
    X = np.column_stack(
        [gb[c].woe_transform(g[c]) for c in gcols] + [hb[c].woe_transform(h[c]) for c in hcols]
    )
    lr = LogisticRegression(C=1e4, max_iter=2000).fit(X, g["y"])
    coef = lr.coef_[0]
    so = ScorecardOptions(600, 20, 50)
    bank_card = scorecard.build(
        gb, dict(zip(gcols, coef[: len(gcols)], strict=True)), so, intercept=lr.intercept_[0]
    )
    bureau_card = scorecard.build(hb, dict(zip(hcols, coef[len(gcols) :], strict=True)), so)
    gx = {c: g[c].to_numpy() for c in gcols}
    hx = {c: h[c].to_numpy() for c in hcols}
    frames: list[Any] = []
    res = run_parties(
        {
            "bank": lambda s: scorecard.run_label_holder(s, bank_card, gx),
            "bureau": lambda s: scorecard.run_partner(s, bureau_card, hx),
        },
        roles=ROLES,
        tap=lambda *f: frames.append(f),
    )
    want = so.offset - so.factor * lr.decision_function(X)
    np.testing.assert_allclose(res["bank"], want, rtol=0, atol=1e-8)
    # Higher score = lower risk; score 600 at odds 50:1, +20 points doubles the odds.
    p_bad = lr.predict_proba(X)[:, 1]
    odds = (1 - p_bad) / p_bad
    np.testing.assert_allclose(res["bank"], 600 + 20 * np.log2(odds / 50), atol=1e-6)
    assert [f[0] for f in frames] == [1]  # only the partner's row sums cross
    # Riskier bin (positive WOE, positive coefficient) earns fewer points.
    f0 = bank_card.features[0]
    if f0.coef > 0:
        assert f0.points[np.argmax(f0.bins.woe)] == f0.points.min()
    assert all(len(row) == 3 for row in f0.table())


def test_standardized_clipped_model_is_reproduced_exactly() -> None:
    """A hetero_lr-style part (scaled, clipped WOE) gives points summing to its score."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(-x))).astype(int)
    from veil.ml.binning import bin_feature

    b = bin_feature("x", x, y, BinningOptions(n_bins=6, min_bin_size=100))
    w = b.woe_transform(x)
    part = scorecard.LinearPart(
        ("x",), np.array([0.8]), -1.2, np.array([w.mean()]), np.array([w.std() / 3]), clip=1.5
    )
    card = scorecard.build({"x": b}, part, ScorecardOptions())
    z = 0.8 * np.clip((w - w.mean()) / (w.std() / 3), -1.5, 1.5) - 1.2
    o = ScorecardOptions()
    np.testing.assert_allclose(card.score({"x": x}), o.offset - o.factor * z, atol=1e-9)
    with pytest.raises(ConfigError, match=r"model feature 'q'"):
        scorecard.build({"x": b}, {"q": 1.0})
