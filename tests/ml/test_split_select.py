from __future__ import annotations

import numpy as np
import pytest

from veil.errors import ConfigError
from veil.ml import select, split
from veil.ml.fed_binning import BinStats, LabelHolderBinning
from veil.ml.split import SplitOptions
from veil.net.local import run_parties

ROLES = {"label_holder": "bank", "partner": "bureau"}


def test_split_is_shared_reproducible_and_stratified() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(1000) < 0.22).astype(int)
    opts = SplitOptions(test_size=0.3, seed=7, stratify=True)
    out = run_parties(
        {
            "bank": lambda s: split.run_label_holder(s, y, opts),
            "bureau": lambda s: split.run_partner(s, 1000),
        },
        roles=ROLES,
    )
    a, b = out["bank"], out["bureau"]
    assert (a.test_mask == b.test_mask).all()
    assert a.test_mask.sum() == round(0.3 * (y == 0).sum()) + round(0.3 * (y == 1).sum())
    assert abs(y[a.test_idx].mean() - y[a.train_idx].mean()) < 0.005
    assert (split.draw_split(y, opts).test_mask == a.test_mask).all()
    assert not (split.draw_split(y, SplitOptions(seed=8)).test_mask == a.test_mask).all()
    assert sorted(np.r_[a.train_idx, a.test_idx].tolist()) == list(range(1000))


def test_split_errors() -> None:
    with pytest.raises(ConfigError, match=r"split\.test_size"):
        SplitOptions(test_size=1.5)
    y = np.array([0, 1] * 50)
    with pytest.raises(ConfigError, match=r"label holder has 100 rows, this party 90"):
        run_parties(
            {
                "bank": lambda s: split.run_label_holder(s, y),
                "bureau": lambda s: split.run_partner(s, 90),
            },
            roles=ROLES,
        )


def _stats(party: str, ivs: list[float], named: bool) -> list[BinStats]:
    z = np.zeros(2, dtype=np.int64)
    return [
        BinStats(party, i, f"c{i}" if named else f"f{i}", z, z, np.zeros(2), iv)
        for i, iv in enumerate(ivs)
    ]


def test_select_threshold_topk_across_parties() -> None:
    stats = _stats("bank", [0.3, 0.01, 0.05], True) + _stats("bureau", [0.5, 0.02, 0.001], False)
    binning = LabelHolderBinning({}, stats)
    names = ["age", "limit", "pay0"]
    out = run_parties(
        {
            "bank": lambda s: select.run_label_holder(
                s, binning, select.SelectOptions(min_iv=0.02, top_k=3)
            ),
            "bureau": lambda s: select.run_partner(s, names),
        },
        roles=ROLES,
    )
    sel = out["bank"]
    assert [(b.party, b.name) for b in sel.kept] == [
        ("bureau", "f0"),
        ("bank", "c0"),
        ("bank", "c2"),
    ]
    assert out["bureau"] == ["age"]
    assert sel.kept_of("bank") == ["c0", "c2"]
    with pytest.raises(ConfigError, match=r"select\.min_iv.*keeps no feature"):
        select.choose(stats, select.SelectOptions(min_iv=0.9))
