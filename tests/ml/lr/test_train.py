"""Vertical LR (``he`` protocol): the encrypted run equals the same algorithm in the
clear, nothing sensitive crosses the wire, early stopping on the encrypted validation
loss, joint prediction, model files, and bad input."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.wire_check import Recorder, assert_no_leak
from veil import codec
from veil.crypto import encoding
from veil.errors import ConfigError
from veil.ml.labels import sample_weights
from veil.ml.lr import (
    LROptions,
    PartyData,
    load_model,
    save_model,
    train_label_holder,
    train_partner,
    write_predictions,
)
from veil.ml.lr._math import batches, sigmoid, step
from veil.net.local import run_parties
from veil.policy import DEFAULT_POLICY, TEST_POLICY

from .common import (
    NAMES,
    arrays,
    blocks,
    coefs,
    min_rows,
    opts,
    plain_blocks,
    predict,
    taylor_loss,
    train,
)


def rounded(A: np.ndarray, bits: int) -> np.ndarray:
    """A batch block as ``[[d]] @ X`` sees it: rounded to ``bits`` bits of its largest |x|."""
    ints, f = encoding.encode_multiplier(A, bits=bits)
    return ints.astype(np.float64) / 2.0**f


def fit_rounded(Xs: Sequence[np.ndarray], y: np.ndarray, o: LROptions, least: int) -> list[Any]:
    """The federated run in the clear, term by term as each party forms its gradient:
    the terms that cross under encryption see features rounded to ``o.feature_bits``
    (the label holder's scaled by the class weights), the party's own terms do not."""
    ws = [np.zeros(X.shape[1]) for X in Xs]
    sw = sample_weights(y, o.class_weight)
    weighted = o.class_weight is not None
    for epoch in range(o.epochs):
        lr = o.learning_rate_at(epoch)
        for idx in batches(len(y), o.batch_size, epoch, o.seed, least):
            s = sw[idx]
            u = [0.25 * (X[idx] @ w) for X, w in zip(Xs, ws, strict=True)]
            d_l = s * (u[0] + 0.5 - y[idx])
            XL = Xs[0][idx]
            grads = [
                XL.T @ d_l + sum(rounded(XL * s[:, None], o.feature_bits).T @ v for v in u[1:])
            ]
            for p in range(1, len(Xs)):
                Xp = Xs[p][idx]
                others = sum(u[q] for q in range(1, len(Xs)) if q != p)
                if weighted:
                    grads.append(rounded(Xp, o.feature_bits).T @ (d_l + s * (u[p] + others)))
                else:
                    grads.append(rounded(Xp, o.feature_bits).T @ (d_l + others) + Xp.T @ u[p])
            for p, g in enumerate(grads):
                pen = len(g) - (1 if p == 0 and o.fit_intercept else 0)
                ws[p] = step(ws[p], g / len(idx), lr, o, pen)
    return ws


ATOL = 1e-7  # residuals and scores cross as 40-bit fixed point: errors near 2^-40 per row


@pytest.mark.parametrize(
    "kw",
    [
        {"epochs": 2, "batch_size": 120},
        {"epochs": 2, "batch_size": 100},  # 240 rows: 100 + 140 (a 40-row rest merged)
        {"epochs": 2, "batch_size": 0, "penalty": "l1", "alpha": 0.01, "schedule": "decay"},
        {"epochs": 1, "batch_size": 120, "class_weight": "balanced"},
        {"epochs": 1, "batch_size": 120, "feature_bits": 16},
    ],
)
def test_two_party_matches_plaintext_algorithm(small: list[PartyData], kw: dict[str, Any]) -> None:
    o = opts(**kw)
    out = train(small, o)
    assert small[0].y is not None
    ref = fit_rounded(plain_blocks(small, o), small[0].y, o, min_rows(small, o))
    for name, w in zip(NAMES, ref, strict=False):
        model, report = out[name]
        assert report.epochs_run == o.epochs
        np.testing.assert_allclose(coefs(model), w, atol=ATOL)
        assert not np.allclose(w, 0)


def test_short_last_batch_is_merged() -> None:
    """The reviewer's case: batch 2048 on 2,050 rows is one batch, not 2048 + 2."""
    for e in range(3):
        sizes = [len(b) for b in batches(2050, 2048, e, 7, 64)]
        assert sizes == [2050]
        assert sorted(np.concatenate(batches(2050, 2048, e, 7, 64)).tolist()) == list(range(2050))
    assert [len(b) for b in batches(2050, 2048, 0, 7, 2)] == [2048, 2]  # a weak rule would not
    assert [len(b) for b in batches(300, 100, 0, 7, 64)] == [100, 100, 100]


@pytest.mark.parametrize("class_weight", [{0: 1.0, 1: 2.0}, None])
def test_three_parties_match_plaintext_algorithm(
    lr_credit: tuple[pd.DataFrame, pd.DataFrame], class_weight: dict[int, float] | None
) -> None:
    g, h = lr_credit
    data = blocks(g, h, np.arange(160), split3=True)
    o = opts(epochs=2, batch_size=80, class_weight=class_weight)
    out = train(data, o)
    assert data[0].y is not None
    ref = fit_rounded(plain_blocks(data, o), data[0].y, o, min_rows(data, o))
    for name, w in zip(NAMES, ref, strict=True):
        np.testing.assert_allclose(coefs(out[name][0]), w, atol=ATOL)
    models = [out[n][0] for n in NAMES]
    scores = predict(data, models)
    z = sum(m.partial_score(d.X) for m, d in zip(models, data, strict=True))
    np.testing.assert_allclose(scores, sigmoid(z), atol=1e-8)


def tapped_run(
    data: list[PartyData], o: LROptions, valid: list[PartyData] | None = None
) -> tuple[Recorder, list[np.ndarray], dict[str, np.ndarray]]:
    """Train with every frame recorded: (the recorder, the scaled blocks, the secrets no
    frame may hold: the labels and every raw and scaled feature column, also of the
    validation rows)."""
    rec = Recorder()
    train(data, o, valid, tap=rec)
    lh = data[0]
    assert lh.y is not None
    scaled = plain_blocks(data, o)
    secrets_: dict[str, np.ndarray] = {"labels": lh.y}
    for p, d in enumerate(data):
        for j, name in enumerate(d.feature_names):
            secrets_[f"{NAMES[p]} {name}"] = d.X[:, j]
            secrets_[f"{NAMES[p]} {name} scaled"] = scaled[p][:, j]
    for p, d in enumerate(valid or []):
        if d.y is not None:
            secrets_["valid labels"] = d.y
        for j, name in enumerate(d.feature_names):
            secrets_[f"valid {NAMES[p]} {name}"] = d.X[:, j]
    return rec, scaled, secrets_


def test_nothing_sensitive_crosses_the_wire(small: list[PartyData]) -> None:
    """Training with early stopping: no label, feature, residual or score (training or
    validation, any batch, any dtype) in any frame; no plaintext float vector at all."""
    tr, va = [d.take(np.arange(160)) for d in small], [d.take(np.arange(160, 240)) for d in small]
    o = opts(epochs=1, batch_size=80, patience=1)
    rec, scaled, secrets_ = tapped_run(tr, o, va)
    lh = tr[0]
    assert lh.y is not None and va[0].y is not None
    # The batches, residuals and partial scores of the tapped run (same seed, in the clear).
    w = [np.zeros(X.shape[1]) for X in scaled]
    subsets = {}
    for k, idx in enumerate(batches(len(lh.y), o.batch_size, 0, o.seed, 64)):
        zs = [X[idx] @ wi for X, wi in zip(scaled, w, strict=True)]
        d = 0.25 * sum(zs) + 0.5 - lh.y[idx]
        subsets[f"batch {k}"] = idx
        secrets_ |= {f"residuals {k}": d, f"L residual part {k}": 0.25 * zs[0] + 0.5 - lh.y[idx]}
        if k:  # batch 0 runs at w = 0: its scores are public zeros
            secrets_ |= {f"L scores {k}": zs[0], f"P scores {k}": zs[1]}
        w = [
            wi - o.learning_rate * (X[idx].T @ d / len(idx) + o.alpha * wi * pen)
            for X, wi, pen in zip(scaled, w, [np.append(np.ones(13), 0), 1.0], strict=True)
        ]
    # The validation scores and the label holder's encrypted vector of the epoch's end.
    Xv = [(v.X - t.X.mean(0)) / t.X.std(0) for v, t in zip(va, tr, strict=True)]
    Xv = [np.clip(X, -o.clip, o.clip) for X in Xv]
    zv = [Xv[0] @ w[0][:-1] + w[0][-1], Xv[1] @ w[1]]
    secrets_ |= {"valid L scores": zv[0], "valid P scores": zv[1]}
    secrets_["valid a"] = 0.5 - va[0].y + 0.25 * zv[0]
    assert_no_leak(rec.frames, secrets_, subsets=subsets)
    replies: list[int] = []
    fracs: set[int] = set()
    for _, _, key, payload in rec.frames:
        value = codec.decode(payload)
        # No plaintext float vector crosses the wire during training at all.
        assert not [a for a in arrays(value) if a.dtype.kind == "f" and a.size > 1], key
        if "/unmasked:" in key and ".e0b1/" in key:  # batch 1 has w != 0 but masks dominate
            replies += value["values"]
        if "/masked_grad:" in key:
            fracs.add(value["ct"]["frac_bits"])
    assert any("/valid_loss:" in f.key for f in rec.frames)  # the validation ran
    # Decrypted gradients travel only masked: in real units each is far above any
    # gradient of this data (|g| < 1e3 summed over a batch), by about 2^stat_sec.
    assert len(replies) == 14 + 10
    scale = 2.0 ** max(fracs)
    big = 1e3 * 2 ** (TEST_POLICY.stat_sec // 2)
    assert sum(abs(v) / scale > big for v in replies) >= len(replies) - 2


@pytest.mark.parametrize("transport", ["memory", "grpc"])
def test_predict_model_files_and_csv(
    small: list[PartyData], tmp_path: Path, transport: str
) -> None:
    o = opts(epochs=1, batch_size=0)
    out = train(small, o, transport=transport)
    models = [load_model(save_model(out[n][0], tmp_path / f"{n}.json")) for n in NAMES[:2]]
    assert b"pickle" not in (tmp_path / "bank.json").read_bytes()
    assert "x0" in (tmp_path / "bureau.json").read_text()
    assert LROptions.from_mapping(models[0].options) == o  # the options round-trip
    scores = predict(small, models, transport)
    z = sum(m.partial_score(d.X) for m, d in zip(models, small, strict=True))
    np.testing.assert_allclose(scores, sigmoid(z), atol=1e-8)
    p = write_predictions(
        tmp_path / "out" / "predictions.csv",
        small[0].ids,
        scores,
        small[0].y,
        ["train"] * len(scores),
    )
    df = pd.read_csv(p)
    assert list(df.columns) == ["id", "score", "label", "set"]
    assert len(df) == len(small[0].ids)


def valid_losses_at_best(
    data: list[PartyData], valid: list[PartyData], out: dict[str, Any]
) -> tuple[float, float]:
    """(the label holder's reported loss of the best epoch, the Taylor loss of the
    returned models on the validation rows computed in the clear)."""
    report = out["bank"][1]
    models = [out[n][0] for n in NAMES[: len(data)]]
    z = sum(m.partial_score(d.X) for m, d in zip(models, valid, strict=True))
    assert valid[0].y is not None
    return report.valid_loss[report.best_epoch], taylor_loss(valid[0].y, z)


def test_early_stopping_keeps_best_epoch(lr_credit: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    g, h = lr_credit
    tr = blocks(g, h, np.arange(160))
    va = blocks(g, h, np.arange(160, 260))
    o = opts(epochs=4, batch_size=0, patience=1, learning_rate=5.0)
    out = train(tr, o, valid=va)
    report = out["bank"][1]
    assert len(report.valid_loss) == report.epochs_run
    assert report.best_epoch == int(np.argmin(report.valid_loss))
    assert out["bureau"][1].best_epoch == report.best_epoch
    got, want = valid_losses_at_best(tr, va, out)
    assert got == pytest.approx(want, abs=1e-6)
    with pytest.raises(ConfigError, match="patience"):
        train(tr, o)


def test_three_party_validation_loss(lr_credit: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """The encrypted loss chains through both partners and equals the clear one."""
    g, h = lr_credit
    tr = blocks(g, h, np.arange(160), split3=True)
    va = blocks(g, h, np.arange(160, 240), split3=True)
    out = train(tr, opts(epochs=2, batch_size=80, patience=2), valid=va)
    got, want = valid_losses_at_best(tr, va, out)
    assert got == pytest.approx(want, abs=1e-6)


def test_model_from_another_run_is_refused(small: list[PartyData]) -> None:
    # Trainings are reproducible (same options and data: the same model, the same id), so
    # "another run" is one with other options.
    a, b = train(small, opts(epochs=1, batch_size=0)), train(small, opts(epochs=2, batch_size=0))
    with pytest.raises(ConfigError, match="another training run"):
        predict(small, [a["bank"][0], b["bureau"][0]])


def _with(d: PartyData, **kw: Any) -> PartyData:
    fields = {"ids": d.ids, "X": d.X, "feature_names": d.feature_names, "y": d.y, **kw}
    return PartyData(**fields)


def test_bad_input_is_named(small: list[PartyData]) -> None:
    lh, partner = small
    o = opts(epochs=1)
    with pytest.raises(ConfigError, match="label"):
        train([_with(lh, y=None), partner], o)
    assert lh.y is not None
    with pytest.raises(ConfigError, match="not binary"):
        train([_with(lh, y=lh.y * 2), partner], o)
    X = partner.X.copy()
    X[:, 3] = 1.5
    with pytest.raises(ConfigError, match=r"bureau.*x3.*constant"):
        train([lh, _with(partner, X=X)], o)
    X[:, 3] = np.nan
    with pytest.raises(ConfigError, match=r"x3.*entirely missing"):
        train([lh, _with(partner, X=X)], o)
    with pytest.raises(ConfigError, match="rows differ"):
        train([lh, partner.take(np.arange(1, len(partner.ids)))], o)
    with pytest.raises(ConfigError, match="label column 'y' is missing"):
        PartyData.from_frame(pd.DataFrame({"id": [1], "x": [0.0]}), label="y")
    with pytest.raises(ConfigError, match=r"hetero_lr\.key_bits.*2048"):
        train(small, o, policy=DEFAULT_POLICY)  # 1024-bit keys under the real policy
    with pytest.raises(ConfigError, match=r"hetero_lr\.he"):
        LROptions(scheme="rsa")  # type: ignore[arg-type]
    assert LROptions.from_mapping({"he": "paillier"}).scheme == "paillier"
    with pytest.raises(ConfigError, match=r"hetero_lr\.scheme.*unknown option"):
        LROptions.from_mapping({"scheme": "ou"})


def test_small_batches_are_refused(small: list[PartyData]) -> None:
    """Below max(64, 4 x widest block) rows, every party refuses before any data moves."""
    for bs in (8, 10, 63):
        with pytest.raises(ConfigError, match=r"hetero_lr\.batch_size.*below 64") as e:
            train(small, opts(epochs=1, batch_size=bs))
        assert "batch_size: 64" in e.value.fix
    wide = dataclasses.replace(TEST_POLICY, batch_rows_per_feature=6)  # 6 x 14 = 84
    with pytest.raises(ConfigError, match=r"hetero_lr\.batch_size.*below 84"):
        train(small, opts(epochs=1, batch_size=80), policy=wide)
    few = [d.take(np.arange(60)) for d in small]  # fewer rows than one batch
    with pytest.raises(ConfigError, match=r"only 60 training rows"):
        train(few, opts(epochs=1, batch_size=0))
    tr, va = [d.take(np.arange(200)) for d in small], [d.take(np.arange(200, 240)) for d in small]
    with pytest.raises(ConfigError, match=r"hetero_lr\.validation.*only 40"):
        train(tr, opts(epochs=1, batch_size=100, patience=1), valid=va)


def test_options_must_agree(small: list[PartyData]) -> None:
    def lh(s: Any) -> Any:
        return train_label_holder(s, small[0], opts(epochs=1), policy=TEST_POLICY)

    def pt(s: Any) -> Any:
        return train_partner(s, small[1], opts(epochs=2), policy=TEST_POLICY)

    with pytest.raises(ConfigError, match="options differ"):
        run_parties({"bank": lh, "bureau": pt}, roles={"label_holder": "bank"})
