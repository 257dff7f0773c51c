"""Vertical LR accuracy on default_credit against scikit-learn on the joined table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from veil.ml.lr import (
    LROptions,
    PartyData,
    predict_label_holder,
    predict_partner,
    taylor_fit_plain,
    train_label_holder,
    train_partner,
)
from veil.ml.lr._math import clip_block
from veil.ml.metrics import auc
from veil.net.local import run_parties
from veil.policy import DEFAULT_POLICY, TEST_POLICY

from .common import DATA

BAR = 0.005  # the acceptance bar: |AUC - scikit-learn's AUC| <= 0.005


@pytest.fixture(scope="module")
def joined() -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray, float]:
    g = pd.read_csv(DATA / "default_credit_hetero_guest.csv")
    h = pd.read_csv(DATA / "default_credit_hetero_host.csv")
    y = g["y"].to_numpy()
    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, random_state=42, stratify=y)
    tr, te = np.sort(tr), np.sort(te)
    X = np.hstack([g.drop(columns=["id", "y"]).to_numpy(), h.drop(columns=["id"]).to_numpy()])
    sk = LogisticRegression(max_iter=1000).fit(X[tr], y[tr])
    return g, h, tr, te, auc(y[te], sk.decision_function(X[te]))


@pytest.mark.parametrize("fixed", [False, True])
def test_default_options_reach_sklearn_auc_in_the_clear(
    joined: tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray, float], fixed: bool
) -> None:
    """The algorithm hetero_lr runs (Taylor residual, clipped features), in plaintext,
    with the batches of the ``he`` protocol or the fixed ones of ``gram``."""
    g, h, tr, te, sk_auc = joined
    o = LROptions()
    y = g["y"].to_numpy().astype(float)
    blocks = []
    for X in (g.drop(columns=["id", "y"]).to_numpy(), h.drop(columns=["id"]).to_numpy()):
        m, s = X[tr].mean(0), X[tr].std(0)
        blocks.append(clip_block((X - m) / s, o.clip))
    blocks[0] = np.hstack([blocks[0], np.ones((len(y), 1))])
    least = DEFAULT_POLICY.min_batch(max(b.shape[1] for b in blocks))
    for seed in range(6):  # batch orders differ per run; the bar must hold for each
        os = dataclasses.replace(o, seed=seed)
        w = taylor_fit_plain([b[tr] for b in blocks], y[tr], os, min_rows=least, fixed=fixed)
        a = auc(y[te], blocks[0][te] @ w[0] + blocks[1][te] @ w[1])
        assert abs(a - sk_auc) <= BAR, (seed, a, sk_auc)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["gram", "he"])
def test_encrypted_training_reaches_sklearn_auc(
    joined: tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray, float], protocol: str
) -> None:
    """Full default_credit, 10 epochs, OU (1024-bit test keys: the numerics do not
    depend on the key size, only the run time does), both protocols."""
    g, h, tr, te, sk_auc = joined
    o = LROptions(scheme="ou", key_bits=1024, protocol=protocol)  # type: ignore[arg-type]
    lh, pt = PartyData.from_frame(g, label="y"), PartyData.from_frame(h)
    out = run_parties(
        {
            "bank": lambda s: train_label_holder(s, lh.take(tr), o, policy=TEST_POLICY),
            "bureau": lambda s: train_partner(s, pt.take(tr), o, policy=TEST_POLICY),
        },
        roles={"label_holder": "bank"},
        timeout=1800,
    )
    scores = run_parties(
        {
            "bank": lambda s: predict_label_holder(s, lh.take(te), out["bank"][0]),
            "bureau": lambda s: predict_partner(s, pt.take(te), out["bureau"][0]),
        },
        roles={"label_holder": "bank"},
    )["bank"]
    assert lh.y is not None
    a = auc(lh.y[te], scores)
    assert abs(a - sk_auc) <= BAR, (a, sk_auc)
