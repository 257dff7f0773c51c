"""SecureBoost: lossless vs the plaintext reference, accuracy vs XGBoost, wire, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tests.ml.sbt_data import DATA, vertical
from tests.wire_check import Frame, Recorder, assert_no_leak
from veil import codec
from veil.codec import IntArray
from veil.errors import ConfigError
from veil.ml.secureboost import (
    HEScheme,
    LabelHolderModel,
    Objective,
    PartnerModel,
    SBTParams,
    core,
    fit_plain,
    grow,
    load,
    run_label_holder,
    run_partner,
    run_predict_label_holder,
    run_predict_partner,
    save,
)
from veil.net.local import run_parties
from veil.policy import DEFAULT_POLICY, TEST_POLICY, SecurityPolicy

SMALL_KEYS = {"key_bits": 768}  # under TEST_POLICY; OU needs |p| > 232


def names(prefix: str, k: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(k)]


def train(
    blocks: list[np.ndarray],
    y: np.ndarray,
    p: SBTParams,
    tap: Any = None,
    *,
    policy: SecurityPolicy = TEST_POLICY,
    **kw: Any,
) -> dict[str, Any]:
    """Federated training: party A holds the labels and blocks[0], B, C, ... the rest."""
    parties = ["A", *[chr(ord("B") + i) for i in range(len(blocks) - 1)]]
    valid = kw.pop("valid", None)
    targets: dict[str, Callable[[Any], Any]] = {
        "A": lambda s: run_label_holder(
            s,
            blocks[0],
            y,
            names("a", blocks[0].shape[1]),
            p,
            valid_x=None if valid is None else valid[0][0],
            valid_y=None if valid is None else valid[1],
            policy=policy,
        )
    }
    roles = {"label_holder": "A"}
    for i, q in enumerate(parties[1:], start=1):
        roles[f"partner{i}"] = q
        targets[q] = lambda s, i=i: run_partner(
            s,
            blocks[i],
            names(f"{chr(ord('a') + i)}", blocks[i].shape[1]),
            p,
            valid_x=None if valid is None else valid[0][i],
            policy=policy,
        )
    return run_parties(targets, roles=roles, tap=tap, timeout=300)


def predict(models: dict[str, Any], blocks: list[np.ndarray], tap: Any = None) -> np.ndarray:
    parties = sorted(models)
    targets: dict[str, Callable[[Any], Any]] = {
        "A": lambda s: run_predict_label_holder(s, models["A"], blocks[0])
    }
    roles = {"label_holder": "A"}
    for i, q in enumerate(parties[1:], start=1):
        roles[f"partner{i}"] = q
        targets[q] = lambda s, i=i, q=q: run_predict_partner(s, models[q], blocks[i])
    return np.asarray(run_parties(targets, roles=roles, tap=tap)["A"])


def structure(trees: Any) -> list[list[tuple[int, int, int, float]]]:
    return [[(nd.party, nd.left, nd.right, nd.weight) for nd in t] for t in trees]


@pytest.fixture(scope="module")
def breast() -> dict[str, np.ndarray]:
    d = vertical("breast")
    rng = np.random.default_rng(1)
    d["xb"] = d["xb"].copy()
    d["xb"][rng.random(d["xb"].shape) < 0.05] = np.nan  # exercise the default direction
    return d


# -- losslessness -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("hide", "he"), [(False, HEScheme.OU), (True, HEScheme.OU), (False, HEScheme.PAILLIER)]
)
def test_federated_trees_equal_plaintext_reference(
    breast: dict[str, np.ndarray], hide: bool, he: HEScheme
):
    n = 160
    xa, xb, y = breast["xa"][:n], breast["xb"][:n], breast["y"][:n]
    p = SBTParams(
        n_trees=2,
        max_depth=3,
        subsample=0.9,
        colsample=0.8,
        max_bin=16,
        hide_instance_space=hide,
        he=he,
        **SMALL_KEYS,
    )
    fed = train([xa, xb], y, p)
    ref = fit_plain([xa, xb], y, p)
    assert structure(fed["A"].trees) == structure(ref.ensemble.trees)
    assert any(nd.party == 1 for t in fed["A"].trees for nd in t)  # the partner did split
    assert [r.__dict__ for r in fed["B"].records] == [r.__dict__ for r in ref.records[1]]
    scores = predict(fed, [breast["xa_te"], breast["xb_te"]])
    np.testing.assert_allclose(scores, ref.predict([breast["xa_te"], breast["xb_te"]]), 1e-12)


def test_three_parties_regression_equal_reference():
    g = pd.read_csv(DATA / "motor_hetero_guest.csv")[:150]
    h1 = pd.read_csv(DATA / "motor_hetero_host_1.csv")[:150]
    h2 = pd.read_csv(DATA / "motor_hetero_host_2.csv")[:150]
    y = g["motor_speed"].to_numpy()
    blocks = [
        g.drop(columns=["idx", "motor_speed"]).to_numpy(),
        h1.drop(columns=["idx"]).to_numpy(),
        h2.drop(columns=["idx"]).to_numpy(),
    ]
    p = SBTParams(objective=Objective.REGRESSION, n_trees=2, max_depth=2, max_bin=8, **SMALL_KEYS)
    fed = train(blocks, y, p)
    ref = fit_plain(blocks, y, p)
    assert structure(fed["A"].trees) == structure(ref.ensemble.trees)
    np.testing.assert_allclose(predict(fed, blocks), ref.predict(blocks), 1e-12)
    mse0 = np.mean((y - y.mean()) ** 2)
    assert np.mean((predict(fed, blocks) - y) ** 2) < 0.8 * mse0


# -- accuracy vs XGBoost (the reference is what federated training equals) ----------
@pytest.mark.parametrize(
    ("name", "depth", "tol"), [("breast", 3, 0.01), ("default_credit", 5, 0.005)]
)
def test_auc_close_to_xgboost(name: str, depth: int, tol: float):
    xgb = pytest.importorskip("xgboost")
    d = vertical(name)
    p = SBTParams(n_trees=10, max_depth=depth, learning_rate=0.3, max_bin=32)
    ours = fit_plain([d["xa"], d["xb"]], d["y"], p).predict([d["xa_te"], d["xb_te"]])
    clf = xgb.XGBClassifier(
        n_estimators=10,
        max_depth=depth,
        learning_rate=0.3,
        max_bin=32,
        tree_method="hist",
        reg_lambda=1.0,
        min_child_weight=1.0,
        n_jobs=1,
    )
    clf.fit(np.hstack([d["xa"], d["xb"]]), d["y"])
    ref = clf.predict_proba(np.hstack([d["xa_te"], d["xb_te"]]))[:, 1]
    ours_auc, xgb_auc = roc_auc_score(d["y_te"], ours), roc_auc_score(d["y_te"], ref)
    assert abs(ours_auc - xgb_auc) <= tol, (ours_auc, xgb_auc)


# -- what crosses the wire ------------------------------------------------------------
@pytest.mark.parametrize("hide", [False, True])
def test_no_feature_label_gradient_or_score_crosses_the_wire(
    breast: dict[str, np.ndarray], hide: bool, monkeypatch: pytest.MonkeyPatch
):
    n = 120
    xa, xb, y = breast["xa"][:n], breast["xb"][:n], breast["y"][:n]
    seen: dict[str, np.ndarray] = {}  # every tree's g, h (float and fixed point) and margin

    def grad_hess(yy: np.ndarray, margin: np.ndarray, *a: Any) -> tuple[np.ndarray, np.ndarray]:
        g, h = core.grad_hess(yy, margin, *a)
        t = sum(k.startswith("margin") for k in seen)
        seen.update({f"margin {t}": margin.copy(), f"g {t}": g, f"h {t}": h})
        return g, h

    def quantise(self: core.GHCodec, g: np.ndarray, h: np.ndarray) -> tuple[Any, Any]:
        gi, hi = quantise0(self, g, h)
        t = sum(k.startswith("gi") for k in seen)
        seen.update({f"gi {t}": gi.copy(), f"hi {t}": hi.copy()})
        return gi, hi

    quantise0 = core.GHCodec.quantise
    monkeypatch.setattr(grow, "grad_hess", grad_hess)
    monkeypatch.setattr(core.GHCodec, "quantise", quantise)
    rec = Recorder()
    p = SBTParams(n_trees=2, max_depth=2, max_bin=8, hide_instance_space=hide, **SMALL_KEYS)
    fed = train([xa, xb], y, p, tap=rec)
    scores = predict(fed, [xa, xb], tap=rec)
    assert len(seen) == 2 * 5
    secrets: dict[str, Any] = {"labels": y, "scores": scores, **seen}
    secrets.update({f"feature a{j}": xa[:, j] for j in range(xa.shape[1])})
    secrets.update({f"feature b{j}": xb[:, j] for j in range(xb.shape[1])})
    assert_no_leak(rec.frames, secrets)
    # the check is live: the same frames plus one carrying the labels as int8 fail it
    canary = Frame(0, 1, "canary", codec.encode({"y": y.astype(np.int8)}))
    with pytest.raises(AssertionError, match="'labels' in frame 'canary'"):
        assert_no_leak([*rec.frames, canary], secrets)
    # and the gradients did travel, encrypted: ciphertexts are never small numbers
    n_ct = 0
    for f in rec.frames:
        for v in codec.decode(f.payload).values():
            for arr in v if isinstance(v, list) else [v]:
                if isinstance(arr, IntArray):
                    # 1 = Enc(0) for a pack of empty bins, sent only to the key holder
                    # (who learns the bins are empty when it decrypts them anyway)
                    vals = [c for c in arr.values if not (c == 1 and "/hist:" in f.key)]
                    assert min(vals, default=2**257) > 2**256, f.key
                    n_ct += len(arr)
    assert n_ct > n


# -- options --------------------------------------------------------------------------
def test_early_stopping_keeps_best_trees_and_models_round_trip(
    breast: dict[str, np.ndarray], tmp_path: Path
):
    n = 150
    blocks, y = [breast["xa"][:n], breast["xb"][:n]], breast["y"][:n]
    valid = ([breast["xa_te"][:60], breast["xb_te"][:60]], breast["y_te"][:60])
    p = SBTParams(
        n_trees=12,
        max_depth=3,
        learning_rate=1.0,
        early_stopping_rounds=2,
        class_weight=(1.0, 2.0),
        max_bin=8,
        **SMALL_KEYS,
    )
    fed = train(blocks, y, p, valid=valid)
    ref = fit_plain(blocks, y, p, valid_blocks=valid[0], valid_y=valid[1])
    kept = len(fed["A"].trees)
    assert kept < 12 and kept == len(ref.ensemble.trees)
    assert int(np.argmin(fed["A"].valid_loss)) + 1 == kept
    assert all(r.tree < kept for r in fed["B"].records)
    save(fed["A"], tmp_path / "a.json")
    save(fed["B"], tmp_path / "b.json")
    loaded = {"A": load(tmp_path / "a.json"), "B": load(tmp_path / "b.json")}
    assert isinstance(loaded["A"], LabelHolderModel) and isinstance(loaded["B"], PartnerModel)
    test = [breast["xa_te"][60:], breast["xb_te"][60:]]
    np.testing.assert_allclose(predict(loaded, test), ref.predict(test), 1e-12)
    assert "pickle" not in (tmp_path / "a.json").read_text()


def test_importance_shows_each_party_only_its_own_names(breast: dict[str, np.ndarray]):
    n = 120
    p = SBTParams(n_trees=2, max_depth=3, max_bin=8, **SMALL_KEYS)
    fed = train([breast["xa"][:n], breast["xb"][:n]], breast["y"][:n], p)
    lh, partner = fed["A"].importance(), fed["B"].importance()
    assert set(partner) == set(names("b", breast["xb"].shape[1]))
    assert not any(k.startswith("b") for k in lh)
    n_partner_splits = sum(nd.party == 1 for t in fed["A"].trees for nd in t)
    assert sum(v["split"] for v in partner.values()) == n_partner_splits
    assert lh["<B>"]["split"] == n_partner_splits
    assert sum(v["gain"] for v in partner.values()) == pytest.approx(lh["<B>"]["gain"])


# -- bad input -------------------------------------------------------------------------
def _bad(blocks: list[Any], y: Any, match: str, **kw: Any) -> None:
    p = SBTParams(n_trees=1, max_depth=2, **SMALL_KEYS)
    with pytest.raises(ConfigError, match=match):
        train(blocks, y, p, **kw)


def test_bad_input_is_named(breast: dict[str, np.ndarray]):
    xa, xb, y = breast["xa"][:50], breast["xb"][:50], breast["y"][:50]
    text = xb.astype(object)
    text[3, 2] = "high"
    _bad([xa, text], y, r"partner\.B\.features\.b2: is not numeric")
    gap = xb.copy()
    gap[:, 4] = np.nan
    _bad([xa, gap], y, r"features\.b4: is missing in every row")
    _bad([xa, np.ones_like(xb)], y, r"partner\.B\.features: no usable feature")
    _bad([xa, xb[:49]], y, r"partner\.B\.rows")
    _bad([xa, xb], y * 3, r"label_holder\.y: is not binary")
    # the default policy (every job's) refuses a 1024-bit key on both sides
    with pytest.raises(ConfigError, match=r"secureboost\.key_bits: 1024-bit ou key is below"):
        train([xa, xb], y, SBTParams(n_trees=1, key_bits=1024), policy=DEFAULT_POLICY)
    with pytest.raises(ConfigError, match="max_depth"):
        SBTParams(max_depth=0)


def test_public_facade_exports_what_it_lists():
    import veil.ml.secureboost as sbt

    assert all(hasattr(sbt, name) for name in sbt.__all__)
    assert {"run_label_holder", "run_partner", "fit_plain", "SBTParams"} <= set(sbt.__all__)
