"""Inference attacks on vertical LR (issue 14): each attack recovers the secret from a
deliberately weakened configuration, and fails against the shipped one.

1. Small batches. A party learns its own batch gradient; with no more rows than columns
   it solves for the other side's per-row values: the partner for the residuals (hence
   the labels), the label holder for the partner's scores. Weakened: a policy with no
   batch minimum (``min_batch_rows=1, batch_rows_per_feature=0``).
2. Early stopping. Before the fix the label holder received the partner's validation
   scores every epoch; a dozen epochs span the partner's validation features, which a
   linear fit on a few known rows then recovers for every row. Weakened: those frames
   (what the old protocol sent), rebuilt from the partner's real per-epoch coefficients.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.wire_check import assert_no_leak
from veil import codec
from veil.crypto import encoding
from veil.crypto.he import EncryptedArray, HEPublicKey, HESecretKey
from veil.errors import ConfigError
from veil.ml.lr import PartyData
from veil.ml.lr import _setup as setup
from veil.ml.lr._gram import LabelHolderGram, PartnerGram
from veil.ml.lr._gram_shares import rounded, scale_bits
from veil.ml.lr._residuals import LabelHolderStep, PartnerStep
from veil.ml.lr._validation import PartnerEpochs
from veil.policy import TEST_POLICY

from .common import blocks, opts, plain_blocks, train

WEAK = dataclasses.replace(TEST_POLICY, name="weak", min_batch_rows=1, batch_rows_per_feature=0)
"""A deliberately weakened policy: batches of any size (what the attacks need)."""

Record = list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (rows, own w, own gradient)


@pytest.fixture
def views(monkeypatch: pytest.MonkeyPatch) -> dict[str, Record]:
    """Each party's own view of every batch: the rows, its coefficients, its gradient."""
    seen: dict[str, Record] = {"label_holder": [], "partner": []}
    for cls, who in (
        (LabelHolderStep, "label_holder"),
        (LabelHolderGram, "label_holder"),
        (PartnerStep, "partner"),
        (PartnerGram, "partner"),
    ):
        orig = cls.grad

        def grad(  # noqa: PLR0917 (the signature of Stepper.grad)
            self: Any, bs: Any, b: int, idx: Any, nxt: int, w: Any, *, _o: Any = orig, _w: str = who
        ) -> Any:
            g = _o(self, bs, b, idx, nxt, w)
            seen[_w].append((idx.copy(), w.copy(), g.copy()))
            return g

        monkeypatch.setattr(cls, "grad", grad)
    return seen


def cross_factor(X: np.ndarray, o: Any, proto: str) -> np.ndarray:
    """The batch block as the encrypted cross products see it (rounded like the
    protocol rounds it; the owner knows the rounding)."""
    if proto == "gram":
        f = scale_bits(X, o.feature_bits)
        return np.ldexp(rounded(X, f).astype(np.float64), -f)
    ints, f = encoding.encode_multiplier(X, bits=o.feature_bits)
    return ints.astype(np.float64) / 2.0**f


def partner_reads_residuals(view: Record, XP: np.ndarray, o: Any, n: int) -> np.ndarray:
    """The partner's least-squares reading of the residuals ``0.25 z_L + 0.5 - y`` of
    each row from its gradients of one epoch (NaN where never read)."""
    r = np.full(n, np.nan)
    proto = str(o.protocol)
    for idx, w, g in view:
        X = XP[idx]
        own = 0.25 * (X.T @ (X @ w))
        if proto == "gram":  # g = 0.25 X^T X w + X~^T (0.25 z~_L + 0.5 - y)
            r[idx] = np.linalg.lstsq(cross_factor(XP, o, proto)[idx].T, g - own, rcond=None)[0]
        else:  # g = X~^T (0.25 z_L + 0.5 - y) + X^T 0.25 z_P
            r[idx] = np.linalg.lstsq(cross_factor(X, o, proto).T, g - own, rcond=None)[0]
    return r


def run_label_attack(
    views: dict[str, Record], data: list[PartyData], o: Any, policy: Any
) -> tuple[float, float, float]:
    """(share of labels read right, share read by always guessing the majority class,
    share of residuals read to 0.05) after one epoch as the partner."""
    views["partner"].clear()
    views["label_holder"].clear()
    out = train(data, o, policy=policy)
    assert out["bank"][1].epochs_run == 1
    assert data[0].y is not None
    y = data[0].y
    XL, XP = plain_blocks(data, o)
    r = partner_reads_residuals(views["partner"], XP, o, len(y))
    assert not np.isnan(r).any()
    truth = np.full(len(y), np.nan)
    for (idx, _, _), (_, wl, _) in zip(views["partner"], views["label_holder"], strict=True):
        truth[idx] = 0.25 * (XL[idx] @ wl) + 0.5 - y[idx]
    guess = (r < 0).astype(float)
    base = max(y.mean(), 1 - y.mean())
    return float(np.mean(guess == y)), float(base), float(np.mean(np.abs(r - truth) < 0.05))


@pytest.mark.parametrize("proto", ["he", "gram"])
def test_small_batches_give_the_partner_labels_only_when_allowed(
    small: list[PartyData], views: dict[str, Record], proto: str
) -> None:
    # Weakened: batches of 8 rows, the partner has 10 columns -> it solves every batch.
    acc, base, exact = run_label_attack(
        views, small, opts(epochs=1, batch_size=8, protocol=proto), WEAK
    )
    assert acc > 0.95 and exact > 0.95, (acc, exact)
    # Shipped: the same request is refused ...
    with pytest.raises(ConfigError, match=r"hetero_lr\.batch_size.*below 64"):
        train(small, opts(epochs=1, batch_size=8, protocol=proto))
    # ... and at the smallest batch allowed the reading is worse than the base rate.
    acc, base, exact = run_label_attack(
        views, small, opts(epochs=1, batch_size=64, protocol=proto), TEST_POLICY
    )
    assert acc <= base and exact < 0.1, (acc, base, exact)


def test_a_short_last_batch_is_not_sent_alone(
    lr_credit: tuple[pd.DataFrame, pd.DataFrame], views: dict[str, Record]
) -> None:
    """Batch 2048 on 2,050 rows: weakened, a 2-row last batch gives both labels away."""
    g, h = lr_credit
    data = blocks(g, h, np.arange(2050))
    o = opts(epochs=1, batch_size=2048)
    assert data[0].y is not None
    y = data[0].y
    for policy, sizes in ((WEAK, [2048, 2]), (TEST_POLICY, [2050])):
        views["partner"].clear()
        train(data, o, policy=policy)
        assert [len(v[0]) for v in views["partner"]] == sizes
        idx, w, grad = views["partner"][-1]
        XP = plain_blocks(data, o)[1]
        r = np.linalg.lstsq(
            cross_factor(XP[idx], o, "he").T, grad - 0.25 * XP[idx].T @ (XP[idx] @ w), rcond=None
        )[0]
        read = (r < 0).astype(float) == y[idx]
        close = np.abs(r - (0.5 - y[idx])) < 0.05  # w_L = 0 in the first epoch's 1st batch
        if policy is WEAK:
            assert read.all() and len(idx) == 2
        else:
            assert close.mean() < 0.05


def test_small_batches_give_the_label_holder_scores_only_when_allowed(
    small: list[PartyData], views: dict[str, Record]
) -> None:
    """The label holder reads the partner's batch scores from its gradient (he protocol:
    ``g_L - own part = X~_L^T 0.25 z_P``); 10-row batches against 14 columns."""

    def attack(o: Any, policy: Any) -> tuple[float, float]:
        views["label_holder"].clear()
        views["partner"].clear()
        train(small, o, policy=policy)
        assert small[0].y is not None
        y = small[0].y
        XL, XP = plain_blocks(small, o)
        got, want = [], []
        for (idx, wl, g), (_, wp, _) in zip(views["label_holder"], views["partner"], strict=True):
            if not np.any(wp):
                continue  # the first batch: z_P = 0 (public)
            own = XL[idx].T @ (0.25 * (XL[idx] @ wl) + 0.5 - y[idx])
            u = np.linalg.lstsq(cross_factor(XL[idx], o, "he").T, g - own, rcond=None)[0]
            got.append(4 * u)
            want.append(XP[idx] @ wp)
        z_hat, z = np.concatenate(got), np.concatenate(want)
        tol = 1e-3 * float(np.std(z))
        return float(np.mean(np.abs(z_hat - z) < tol)), float(np.max(np.abs(z_hat - z)) / np.std(z))

    exact, worst = attack(opts(epochs=1, batch_size=10), WEAK)
    assert exact == 1.0 and worst < 1e-3, (exact, worst)
    with pytest.raises(ConfigError, match=r"batch_size.*below 64"):
        train(small, opts(epochs=1, batch_size=10))
    exact, worst = attack(opts(epochs=1, batch_size=64), TEST_POLICY)
    assert exact < 0.05, exact


# -- early stopping ---------------------------------------------------------------------
def readable_vectors(
    frames: list[tuple[int, int, str, bytes]], to: int, sk: HESecretKey, n: int
) -> list[np.ndarray]:
    """Every vector of ``n`` values the party of rank ``to`` can read in its frames:
    plaintext arrays and lists, and encrypted arrays under its own key, decrypted."""
    pk = sk.public_key
    out: list[np.ndarray] = []

    def walk(v: Any) -> Iterator[np.ndarray]:
        if isinstance(v, np.ndarray) and v.size == n:
            yield v.astype(np.float64).ravel()
        elif isinstance(v, dict) and "ct" in v and "scheme" in v:
            if v["scheme"] == pk.scheme and v.get("shape") == [n]:
                try:
                    yield sk.decrypt(EncryptedArray.from_wire(pk, v)).astype(np.float64)
                except Exception:  # under another party's key: unreadable here
                    return
        elif isinstance(v, dict):
            for x in v.values():
                yield from walk(x)
        elif isinstance(v, list):
            if len(v) == n and all(isinstance(x, int | float) for x in v):
                yield np.asarray(v, dtype=np.float64)
            else:
                for x in v:
                    yield from walk(x)

    for _, dst, _, payload in frames:
        if dst == to:
            out += list(walk(codec.decode(payload)))
    return out


def feature_recovery_r2(vectors: list[np.ndarray], X: np.ndarray, known: int) -> float:
    """Mean R^2, over the features, of a linear fit from the vectors to the raw features
    on the first ``known`` rows (side information), predicting the other rows."""
    n = X.shape[0]
    V = np.column_stack([np.ones(n), *vectors]) if vectors else np.ones((n, 1))
    scores = []
    for j in range(X.shape[1]):
        coef = np.linalg.lstsq(V[:known], X[:known, j], rcond=None)[0]
        pred, true = V[known:] @ coef, X[known:, j]
        scores.append(1 - np.sum((true - pred) ** 2) / np.sum((true - true.mean()) ** 2))
    return float(np.mean(scores))


def test_early_stopping_sends_no_per_row_scores(
    lr_credit: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    g, h = lr_credit
    tr, va = blocks(g, h, np.arange(200)), blocks(g, h, np.arange(200, 300))
    o = opts(epochs=14, batch_size=0, patience=20, learning_rate=2.0, schedule="constant")
    keys: dict[str, tuple[HEPublicKey, HESecretKey]] = {}
    keygen = setup.keygen

    def keep_keys(*a: Any) -> Any:
        pair = keygen(*a)
        keys[threading.current_thread().name] = pair
        return pair

    monkeypatch.setattr(setup, "keygen", keep_keys)
    per_epoch_w: list[np.ndarray] = []
    end = PartnerEpochs.__call__

    def partner_end(self: Any, epoch: int, es: Any, w: Any, moved: float) -> Any:
        per_epoch_w.append(w.copy())
        return end(self, epoch, es, w, moved)

    monkeypatch.setattr(PartnerEpochs, "__call__", partner_end)
    frames: list[tuple[int, int, str, bytes]] = []
    out = train(tr, o, valid=va, tap=lambda *f: frames.append(f))
    assert len(out["bank"][1].valid_loss) == 14  # the loss was computed every epoch
    sk_l = keys["party-bank"][1]
    n_v, raw = va[1].n_rows, va[1].X
    # Shipped: the label holder can read no vector of validation length at all.
    leaked = readable_vectors(frames, 0, sk_l, n_v)
    assert leaked == []
    assert len(readable_vectors(frames, 0, sk_l, 10)) == 14  # it does read: masked gradients
    assert feature_recovery_r2(leaked, raw, known=30) < 0.05
    # Weakened (the old protocol): each epoch's report carried X_P,valid w_P in the clear.
    Xv = (raw - tr[1].X.mean(0)) / tr[1].X.std(0)
    Xv = np.clip(Xv, -o.clip, o.clip)
    old = [
        (1, 0, "epoch_report", codec.encode({"converged": False, "valid": Xv @ w}))
        for w in per_epoch_w
    ]
    leaked = readable_vectors(old, 0, sk_l, n_v)
    assert len(leaked) == 14
    assert feature_recovery_r2(leaked, raw, known=30) > 0.9
    # The wire check sees the per-epoch scores in the old frames, and in none of the new.
    scores = {f"partner valid scores {e}": Xv @ w for e, w in enumerate(per_epoch_w)}
    features = {f"partner valid {n}": raw[:, j] for j, n in enumerate(va[1].feature_names)}
    assert_no_leak(frames, {**scores, **features})
    with pytest.raises(AssertionError, match="partner valid scores"):
        assert_no_leak(old, scores)
