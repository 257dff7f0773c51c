"""Issue 14's early-stopping attack against the default protocol (``hetero_lr`` with no
``protocol``: secret-sharing LR without a third party, HE triples).

Before the fix the label holder received the partner's validation scores every epoch; a
dozen epochs span the partner's validation features, which a linear fit on a few known
rows then recovers for every row (:mod:`tests.ml.lr.test_attacks`). SS-LR computes the
validation loss on shares (:mod:`veil.ml.ss_lr_epochs`). Here the label holder takes
every vector of validation length it holds: in every frame it receives (decoded, read
row-major and column-major), in every share it computes and every triple share it
takes (what it decrypted); the same linear fit on them must recover the partner's
validation features no better than from nothing. Weakened, in the same test: the frames
the old protocol sent, rebuilt from the partner's real per-epoch coefficients.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.wire_check import Recorder, assert_no_leak
from veil import codec
from veil.ml.ss_lr import SSLROptions
from veil.ml.ss_lr_epochs import EpochEnd
from veil.mpc.engine import Engine
from veil.mpc.triples import TripleStore

from .common import arrays, blocks, train
from .test_attacks import feature_recovery_r2

EPOCHS = 14


def vectors(a: Any, n: int) -> Iterator[np.ndarray]:
    """Every way to read ``n`` per-row values out of an array: its columns when it has
    ``n`` rows, and its consecutive runs of ``n`` values (ring words read as signed)."""
    a = np.asarray(a)
    if a.dtype.kind not in "iuf" or a.size < n:
        return
    flat = (a.view(np.int64) if a.dtype == np.uint64 else a).astype(np.float64).ravel()
    if a.ndim == 2 and a.shape[0] == n:
        yield from flat.reshape(a.shape).T
    for i in range(0, flat.size - n + 1, n):
        yield flat[i : i + n]


def test_early_stopping_on_shares_gives_the_label_holder_no_validation_features(
    lr_credit: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    g, h = lr_credit
    tr, va = blocks(g, h, np.arange(200)), blocks(g, h, np.arange(200, 300))
    n_v, raw = va[1].n_rows, va[1].X
    o = SSLROptions.from_mapping(
        {"protocol": "auto", "epochs": EPOCHS, "batch_size": 0, "patience": 20,
         "learning_rate": 2.0, "schedule": "constant", "key_bits": 1024, "seed": 3}
    )  # fmt: skip
    assert o.dealer is None  # the job default: no third party
    lock = threading.Lock()
    held: list[np.ndarray] = []  # every array the label holder computes or takes
    w_shares: dict[int, list[np.ndarray]] = {0: [], 1: []}

    def keep(a: Any) -> None:
        with lock:
            held.extend(arrays(a))

    for name in ("open", "masked_matmul", "masked_tmatmul", "matmul", "mul", "scale", "trunc"):
        orig = getattr(Engine, name)

        def method(self: Engine, *a: Any, _o: Any = orig, **kw: Any) -> Any:
            out = _o(self, *a, **kw)
            if self.me == 0:
                keep(out)
            return out

        monkeypatch.setattr(Engine, name, method)
    take = TripleStore.take

    def take_parts(self: TripleStore, spec: Any) -> Any:
        out = take(self, spec)
        if self.party == 0:
            keep(list(out.values()))
        return out

    monkeypatch.setattr(TripleStore, "take", take_parts)
    end = EpochEnd.__call__

    def epoch_end(self: EpochEnd, w: Any, w_before: Any) -> Any:
        with lock:
            w_shares[self.e.me].append(np.asarray(w).copy())  # the truth, for the weakened run
        return end(self, w, w_before)

    monkeypatch.setattr(EpochEnd, "__call__", epoch_end)
    rec = Recorder()
    out = train(tr, o, va, tap=rec, timeout=300)
    assert len(out["bank"][1].valid_loss) == EPOCHS  # the loss was computed every epoch
    received = [a for f in rec.frames if f.dst == 0 for a in arrays(codec.decode(f.payload))]
    readable = [v for a in [*received, *held] for v in vectors(a, n_v)]
    assert len(readable) > 100  # it holds many vectors of validation length: masked words
    # Shipped: all of them together predict the partner's features no better than nothing.
    r2 = feature_recovery_r2(readable, raw, known=30)
    best_single = max(feature_recovery_r2([v], raw, known=30) for v in readable)
    print(f"{len(readable)} vectors: pooled R2 {r2:.3f}, best single {best_single:.3f}")
    assert r2 < 0.05 and best_single < 0.05, (r2, best_single)
    # Weakened (the old protocol): each epoch's report carried X_P,valid w_P in the clear.
    width_l = tr[0].X.shape[1] + 1
    Xv = np.clip((raw - tr[1].X.mean(0)) / tr[1].X.std(0), -o.clip, o.clip)
    per_epoch = [
        (a + b).view(np.int64).astype(np.float64).ravel()[width_l:] / 2.0**o.frac_bits
        for a, b in zip(w_shares[0], w_shares[1], strict=True)
    ]
    assert len(per_epoch) == EPOCHS
    old = [(1, 0, "epoch_report", codec.encode({"valid": Xv @ w})) for w in per_epoch]
    leaked = [v for f in old for a in arrays(codec.decode(f[3])) for v in vectors(a, n_v)]
    assert feature_recovery_r2(leaked, raw, known=30) > 0.9
    scores = {f"partner valid scores {e}": Xv @ w for e, w in enumerate(per_epoch)}
    features = {f"partner valid {n}": raw[:, j] for j, n in enumerate(va[1].feature_names)}
    assert_no_leak(rec.frames, {**scores, **features})
    with pytest.raises(AssertionError, match="partner valid scores"):
        assert_no_leak(old, scores)
