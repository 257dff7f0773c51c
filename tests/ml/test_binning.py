from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from veil.errors import ConfigError
from veil.ml.binning import (
    BinMethod,
    BinningOptions,
    bin_feature,
    chi_merge,
    fine_bins,
    merge_small,
    monotonic_merge,
    woe_iv,
)
from veil.ml.labels import check_labels

Y = "default.payment.next.month"


def plain_iv(bin_idx: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Independent WOE/IV from a pandas crosstab (FATE's 0.5 adjustment on empty cells)."""
    t = pd.crosstab(bin_idx, y).reindex(columns=[0, 1], fill_value=0).astype(float)
    e, n = t[1].to_numpy(), t[0].to_numpy()
    empty = (e == 0) | (n == 0)
    de = np.where(empty, e + 0.5, e) / e.sum()
    dn = np.where(empty, n + 0.5, n) / n.sum()
    woe = np.log(de / dn)
    return woe, float(((de - dn) * woe).sum())


def test_merge_small_reaches_min_size() -> None:
    starts = merge_small([5, 100, 3, 80, 60, 10], 50)
    sizes = np.add.reduceat([5, 100, 3, 80, 60, 10], starts)
    assert sizes.sum() == 258 and (sizes >= 50).all()
    assert starts[0] == 0 and (np.diff(starts) > 0).all()


def test_quantile_bins_are_balanced_and_transform_is_right_closed() -> None:
    x = np.arange(1000, dtype=float)
    fb = fine_bins("x", x, BinningOptions(n_bins=10, min_bin_size=1))
    assert fb.n_bins == 10
    assert fb.counts.min() >= 99 and fb.counts.max() <= 101
    assert (fb.transform(fb.edges) == np.arange(len(fb.edges))).all()


def test_equal_width_edges() -> None:
    x = np.r_[np.zeros(100), np.linspace(0, 10, 101)]
    fb = fine_bins("x", x, BinningOptions(BinMethod.EQUAL_WIDTH, n_bins=5, min_bin_size=1))
    np.testing.assert_allclose(fb.edges, [2, 4, 6, 8])


def test_missing_values_get_own_bin_or_join_largest() -> None:
    x = np.r_[np.arange(500, dtype=float), np.full(60, np.nan)]
    fb = fine_bins("x", x, BinningOptions(n_bins=5, min_bin_size=50))
    assert fb.has_missing_bin and fb.counts[-1] == 60 and fb.transform([np.nan])[0] == 5
    few = np.r_[np.arange(500, dtype=float), np.full(10, np.nan)]
    fb2 = fine_bins("x", few, BinningOptions(n_bins=5, min_bin_size=50))
    assert not fb2.has_missing_bin and fb2.counts.sum() == 510
    assert fb2.transform([np.nan])[0] == fb2.missing_bin >= 0


def test_small_bins_merged_on_skewed_data() -> None:
    x = np.r_[np.zeros(900), np.arange(1, 101, dtype=float)]
    fb = fine_bins("x", x, BinningOptions(n_bins=10, min_bin_size=50))
    assert (fb.counts >= 50).all() and fb.counts.sum() == 1000


def test_chi_merge_and_monotonic_merge() -> None:
    ev = np.array([5, 6, 30, 31, 10, 60, 62, 70])
    tot = np.full(8, 100)
    s = chi_merge(ev, tot, max_bins=4)
    assert len(s) == 4
    m = monotonic_merge(ev, tot, max_bins=6)
    rates = np.add.reduceat(ev, m) / np.add.reduceat(tot, m)
    assert len(m) <= 6
    assert (np.diff(rates) >= 0).all() or (np.diff(rates) <= 0).all()


@pytest.mark.parametrize("method", list(BinMethod))
def test_real_units_iv_matches_plaintext(uci: pd.DataFrame, method: BinMethod) -> None:
    y = uci[Y].to_numpy()
    opts = BinningOptions(method, n_bins=6, fine_bins=20, min_bin_size=300)
    for col in ("LIMIT_BAL", "AGE", "PAY_0", "BILL_AMT1"):
        b = bin_feature(col, uci[col], y, opts)
        idx = b.transform(uci[col])
        woe, iv = plain_iv(idx, y)
        assert b.iv == pytest.approx(iv, abs=1e-12)
        np.testing.assert_allclose(b.woe, woe)
        assert (b.counts >= 300).all() and len(b.counts) <= 10
        if method is BinMethod.MONOTONIC:
            d = np.diff(b.woe)
            assert (d >= 0).all() or (d <= 0).all()
    # PAY_0 (repayment status) is the strongest single predictor in this data.
    pay = bin_feature("PAY_0", uci["PAY_0"], y, opts)
    assert pay.iv > 0.5


def test_woe_sign_and_iv_zero_for_independent_bins() -> None:
    woe, iv = woe_iv([10, 10], [100, 100])
    assert iv == pytest.approx(0.0) and np.allclose(woe, 0)
    woe, _ = woe_iv([40, 10], [100, 100])
    assert woe[0] > 0 > woe[1]  # positive WOE = riskier bin


def test_bad_input_names_the_column() -> None:
    with pytest.raises(ConfigError, match=r"^label column 'y': is not binary"):
        check_labels([0, 1, 2], "label column 'y'")
    with pytest.raises(ConfigError, match=r"^y: has a single class"):
        check_labels([1, 1, 1], "y")
    with pytest.raises(ConfigError, match=r"'c'.*constant"):
        fine_bins("c", np.ones(100), BinningOptions())
    with pytest.raises(ConfigError, match=r"'m'.*missing on every row"):
        fine_bins("m", np.full(100, np.nan), BinningOptions())
    with pytest.raises(ConfigError, match=r"binning\.method"):
        BinningOptions(method="best")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"binning\.fine_bins"):
        BinningOptions(n_bins=10, fine_bins=5)
