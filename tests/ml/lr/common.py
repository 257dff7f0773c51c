"""Helpers the vertical LR tests share: data blocks, runs of the role functions under
the test policy, the scaled blocks the protocol trains on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tests.paths import DATA
from veil.ml import ss_lr
from veil.ml.lr import (
    LROptions,
    PartyData,
    PartyModel,
    predict_label_holder,
    predict_partner,
    train_label_holder,
    train_partner,
)
from veil.ml.lr._math import clip_block
from veil.ml.ss_lr import SSLROptions
from veil.net.local import run_parties
from veil.policy import TEST_POLICY, SecurityPolicy

NAMES = ["bank", "bureau", "telco"]
FAST: dict[str, Any] = {"scheme": "ou", "key_bits": 1024, "seed": 7, "protocol": "he"}

Tap = Callable[[int, int, str, bytes], None]


def load_credit() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The default_credit vertical split: guest (id, y, x0..x12) and host (id, x0..x9)."""
    g = pd.read_csv(DATA / "default_credit_hetero_guest.csv")
    h = pd.read_csv(DATA / "default_credit_hetero_host.csv")
    assert (g["id"].to_numpy() == h["id"].to_numpy()).all()
    return g, h


def blocks(
    g: pd.DataFrame,
    h: pd.DataFrame,
    rows: np.ndarray | slice,
    split3: bool = False,
    *,
    first: int = 5,
) -> list[PartyData]:
    """Label holder block first, then one partner block (or two: a three-way split, the
    first ``first`` host columns and the rest)."""
    lh = PartyData.from_frame(g.iloc[rows].reset_index(drop=True), label="y")
    hh = h.iloc[rows].reset_index(drop=True)
    if not split3:
        return [lh, PartyData.from_frame(hh)]
    cols = [c for c in hh.columns if c != "id"]
    return [
        lh,
        PartyData.from_frame(hh, features=cols[:first]),
        PartyData.from_frame(hh, features=cols[first:]),
    ]


def opts(**kw: Any) -> LROptions:
    return LROptions(**{**FAST, **kw})


def min_rows(data: Sequence[PartyData], o: LROptions, policy: SecurityPolicy = TEST_POLICY) -> int:
    """The smallest batch a run of ``data`` uses (block widths, intercept included)."""
    widths = [
        len(d.feature_names) + (1 if i == 0 and o.fit_intercept else 0) for i, d in enumerate(data)
    ]
    return policy.min_batch(max(widths))


def train(
    data: Sequence[PartyData],
    o: LROptions | SSLROptions,
    valid: Sequence[PartyData] | None = None,
    *,
    tap: Tap | None = None,
    transport: str = "memory",
    policy: SecurityPolicy = TEST_POLICY,
    timeout: float = 120,
) -> dict[str, Any]:
    """Run training with ``data[0]`` at the label holder: ``veil.ml.lr``'s role functions
    for ``LROptions``, ``veil.ml.ss_lr``'s for ``SSLROptions`` (with its dealer, if it
    names one, as a further party)."""
    names = NAMES[: len(data)]
    ss = isinstance(o, SSLROptions)
    lh = ss_lr.train_label_holder if ss else train_label_holder
    partner = ss_lr.train_partner if ss else train_partner
    targets: dict[str, Any] = {}
    for i, name in enumerate(names):
        fn = lh if i == 0 else partner
        v = None if valid is None else valid[i]
        targets[name] = lambda s, fn=fn, d=data[i], v=v: fn(s, d, o, v, policy=policy)
    if isinstance(o, SSLROptions) and o.dealer:
        targets[o.dealer] = lambda s: ss_lr.run_dealer(s, o)
    return run_parties(
        targets, roles={"label_holder": "bank"}, tap=tap, timeout=timeout, transport=transport
    )


def predict(
    data: Sequence[PartyData], models: Sequence[PartyModel], transport: str = "memory"
) -> np.ndarray:
    names = NAMES[: len(data)]
    targets: dict[str, Any] = {}
    for i, name in enumerate(names):
        fn = predict_label_holder if i == 0 else predict_partner
        targets[name] = lambda s, fn=fn, d=data[i], m=models[i]: fn(s, d, m)
    out = run_parties(targets, roles={"label_holder": "bank"}, transport=transport)
    return np.asarray(out["bank"])


def plain_blocks(data: Sequence[PartyData], o: LROptions) -> list[np.ndarray]:
    """Each party's block scaled and clipped as the protocol does, intercept last at L."""
    out = []
    for i, d in enumerate(data):
        X = clip_block((d.X - d.X.mean(0)) / d.X.std(0), o.clip)
        if i == 0 and o.fit_intercept:
            X = np.hstack([X, np.ones((len(X), 1))])
        out.append(X)
    return out


def coefs(m: PartyModel) -> np.ndarray:
    return m.coef if m.intercept is None else np.append(m.coef, m.intercept)


def taylor_loss(y: np.ndarray, z: np.ndarray) -> float:
    """The validation loss early stopping uses: second-order Taylor log-loss per row."""
    return float(np.mean(np.log(2.0) + (0.5 - y) * z + z * z / 8))


def arrays(v: Any) -> list[np.ndarray]:
    """Every numpy array inside a decoded message (or any nest of dicts, lists, tuples)."""
    if isinstance(v, np.ndarray):
        return [v]
    if isinstance(v, dict):
        return [a for x in v.values() for a in arrays(x)]
    if isinstance(v, list | tuple):
        return [a for x in v for a in arrays(x)]
    return []
