"""SS-LR's epoch end on shares (:mod:`veil.ml.ss_lr_epochs`): early stopping on the
validation Taylor loss and ``tol`` equal the same rules in the clear, reveal only
scalars to the label holder, and refuse what they cannot do."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from tests.wire_check import Recorder, assert_no_leak
from veil.errors import ConfigError
from veil.ml.lr import PartyData
from veil.ml.ss_lr import (
    SSLROptions,
    partition,
    visit_order,
)
from veil.mpc.nonlinear import Sigmoid, sigmoid_plain

from .test_ss_lr import blocks, coefs, credit, train  # noqa: F401 (fixture)

ROWS = slice(0, 900)
VALID = slice(900, 1200)


def joint(data: Sequence[PartyData], ref: Sequence[PartyData], o: SSLROptions) -> np.ndarray:
    """The joint block as SS-LR trains on it: scaled with ``ref``'s (training) statistics."""
    out = []
    for i, (d, r) in enumerate(zip(data, ref, strict=True)):
        X = np.clip((d.X - r.X.mean(0)) / r.X.std(0), -o.clip, o.clip)
        out.append(np.hstack([X, np.ones((len(X), 1))]) if i == 0 else X)
    return np.hstack(out)


def plain_epochs(
    data: Sequence[PartyData], valid: Sequence[PartyData], o: SSLROptions
) -> tuple[list[np.ndarray], list[float], list[float]]:
    """The weights after each epoch, the validation Taylor loss and the step norms, in
    float64 (every epoch, no stopping)."""
    X, Xv = joint(data, data, o), joint(valid, data, o)
    y, yv = (np.asarray(d[0].y, dtype=float) for d in (data, valid))
    w = np.zeros(X.shape[1])
    pen = np.ones(X.shape[1])
    pen[data[0].X.shape[1]] = 0
    parts = partition(len(y), o.batch_size, o.seed or 0)
    ws, losses, norms = [], [], []
    for epoch in range(o.epochs):
        before = w.copy()
        lr = o.learning_rate_at(epoch)
        for k in visit_order(len(parts), o.seed or 0, epoch):
            r = parts[k]
            d = sigmoid_plain(X[r] @ w, Sigmoid(o.sigmoid)) - y[r]
            w = w - lr * (X[r].T @ d / len(r) + o.alpha * w * pen)
        z = Xv @ w
        ws.append(w.copy())
        losses.append(float(np.mean(np.log(2) + (0.5 - yv) * z + z * z / 8)))
        norms.append(float(np.linalg.norm(w - before)))
    return ws, losses, norms


@pytest.mark.parametrize(
    ("rows", "sigmoid", "split3"), [(300, "linear", False), (600, "minimax3", True)],
    ids=["gram-2", "z-3"],
)  # fmt: skip
def test_early_stopping_on_shares_equals_the_rule_in_the_clear(
    credit: tuple[pd.DataFrame, pd.DataFrame],  # noqa: F811
    rows: int,
    sigmoid: str,
    split3: bool,
) -> None:
    g, h = credit
    data = blocks(g, h, slice(0, rows), split3)
    valid = blocks(g, h, slice(rows, rows + 300), split3)
    # Few rows and a large constant step: the validation loss rises after a few epochs.
    full = SSLROptions(
        epochs=8, batch_size=rows // 3, seed=3, learning_rate=1.0, schedule="constant",
        sigmoid=sigmoid, dealer="dealer",
    )  # fmt: skip
    ws, losses, _ = plain_epochs(data, valid, full)
    best = int(np.argmin(losses))
    assert 0 < best < full.epochs - 2, losses  # the data make stopping matter
    assert min(abs(x - losses[best]) for i, x in enumerate(losses) if i != best) > 3e-3
    o = SSLROptions(**{**full.to_json(), "patience": 2})  # type: ignore[arg-type]
    out = train(data, o, valid)
    rep = out["bank"][1]
    np.testing.assert_allclose(rep.valid_loss, losses[: rep.epochs_run], atol=2e-3)
    assert rep.stopped_by == "early_stopping" and rep.epochs_run == best + 3
    assert rep.best_epoch == best and out["bureau"][1].best_epoch == best
    if split3:  # the further partner (an input party) is told where training stopped
        assert out["telco"][1].epochs_run == best + 3
        assert out["telco"][1].stopped_by == "early_stopping"
    got = np.concatenate(coefs(out, len(data)))
    np.testing.assert_allclose(got, ws[best], atol=3e-3)  # the best epoch's weights
    assert out["bureau"][1].valid_loss == []  # the partner learns no loss


def test_tol_stops_when_the_step_norm_falls_below_it(
    credit: tuple[pd.DataFrame, pd.DataFrame],  # noqa: F811
) -> None:
    g, h = credit
    data, valid = blocks(g, h, ROWS), blocks(g, h, VALID)
    o = SSLROptions(epochs=10, batch_size=300, seed=3, dealer="dealer")
    _, _, norms = plain_epochs(data, valid, o)
    tol = (norms[3] + norms[4]) / 2  # the clear-text rule stops after epoch 4 (0-based)
    assert norms[3] > tol > norms[4]
    out = train(data, SSLROptions(**{**o.to_json(), "tol": tol}))  # type: ignore[arg-type]
    rep = out["bank"][1]
    assert rep.stopped_by == "tol" and rep.epochs_run == 5, rep
    np.testing.assert_allclose(rep.step_norms, norms[:5], rtol=1e-2)
    assert out["bureau"][1].epochs_run == 5 and out["bureau"][1].step_norms == []


def test_he_triples_and_the_wire_carry_only_masked_words(
    credit: tuple[pd.DataFrame, pd.DataFrame],  # noqa: F811
) -> None:
    """No third party (HE triples): the loss still equals the clear one; no validation
    feature, label or per-epoch score vector crosses in any encoding."""
    g, h = credit
    data, valid = blocks(g, h, slice(0, 400)), blocks(g, h, slice(400, 600))
    o = SSLROptions(epochs=3, batch_size=200, seed=5, key_bits=1024, patience=5, tol=1e-6)
    rec = Recorder()
    out = train(data, o, valid, tap=rec)
    ws, losses, _ = plain_epochs(data, valid, o)
    np.testing.assert_allclose(out["bank"][1].valid_loss, losses, atol=2e-3)
    Xv = joint(valid, data, o)
    secrets = {f"valid scores {e}": Xv @ w for e, w in enumerate(ws)}
    secrets["valid labels"] = np.asarray(valid[0].y, dtype=float)
    for i, d in enumerate(valid):
        secrets |= {f"valid {i}.{n}": d.X[:, j] for j, n in enumerate(d.feature_names)}
    partner = Xv[:, data[0].X.shape[1] + 1 :] @ ws[-1][data[0].X.shape[1] + 1 :]
    secrets["partner valid scores"] = partner
    assert_no_leak(rec.frames, secrets)


def test_what_cannot_run_is_refused(credit: tuple[pd.DataFrame, pd.DataFrame]) -> None:  # noqa: F811
    g, h = credit
    data = blocks(g, h, ROWS)
    with pytest.raises(ConfigError, match=r"hetero_lr\.patience.*validation set"):
        train(data, SSLROptions(patience=1, dealer="dealer", batch_size=300))
    tiny = blocks(g, h, slice(900, 910))
    with pytest.raises(ConfigError, match=r"validation set has 10 rows, below the policy"):
        train(data, SSLROptions(patience=1, dealer="dealer", batch_size=300), tiny)
    with pytest.raises(ConfigError, match=r"hetero_lr\.penalty.*protocol: he"):
        SSLROptions(penalty="l1")


def test_a_rerun_with_the_same_seed_agrees_to_fixed_point_noise_only(
    credit: tuple[pd.DataFrame, pd.DataFrame],  # noqa: F811
) -> None:
    """What reproducibility SS-LR has: the same seed gives the same batches and model id,
    and coefficients equal up to the truncation noise of fresh random shares (so not
    byte for byte, unlike ``he``/``gram``)."""
    g, h = credit
    data = blocks(g, h, ROWS)
    o = SSLROptions(epochs=2, batch_size=300, seed=9, dealer="dealer")
    a, b = train(data, o), train(data, o)
    assert a["bank"][0].model_id == b["bank"][0].model_id == b["bureau"][0].model_id
    ca, cb = np.concatenate(coefs(a, 2)), np.concatenate(coefs(b, 2))
    np.testing.assert_allclose(ca, cb, atol=1e-3)
    assert np.max(np.abs(ca)) > 0.05


def test_a_malformed_epoch_decision_names_the_tag_and_field() -> None:
    from veil.errors import ProtocolError
    from veil.ml.ss_lr_epochs import EpochDecision

    assert EpochDecision.from_wire({"stop": True, "keep": False}).stop
    with pytest.raises(ProtocolError, match=r"ss_epoch\.keep"):
        EpochDecision.from_wire({"stop": True})
    with pytest.raises(ProtocolError, match=r"ss_epoch\.stop"):
        EpochDecision.from_wire({"stop": "yes", "keep": True})
    with pytest.raises(ProtocolError, match=r"ss_epoch"):
        EpochDecision.from_wire([True, False])
