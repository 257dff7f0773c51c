"""The synthetic AML generator: deterministic, complete, and each typology leaves the
trace in the features that monitoring looks for."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

from veil.data.aml_synth import (
    PATTERNS,
    BankProfile,
    account_features,
    make_bank,
    transactions,
)

PROFILE = BankProfile("t", 1000, business_share=0.2, laundering_rate=0.25)


@cache
def _bank(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    tx, accounts = transactions(PROFILE, seed)
    return tx, accounts, account_features(tx, accounts)


def test_tables_are_deterministic_complete_and_typed() -> None:
    a = _bank(1)[2]
    assert a.equals(make_bank(PROFILE, seed=1))
    assert not a.equals(make_bank(BankProfile("t", 1000, 0.2, 0.25, quirky=0.3), seed=1))
    assert len(a) == 1000 and a["account"].is_unique
    num = a.drop(columns=["account"])
    assert np.isfinite(num.to_numpy(dtype=float)).all()
    assert a["is_laundering"].isin([0, 1]).all()
    assert 0.2 < a["is_laundering"].mean() < 0.3
    ints = {"n_in", "n_out", "n_cash_deposits", "n_near_threshold", "n_payers", "n_payees"}
    assert {c for c in num.columns if num[c].dtype.kind == "i"} >= ints


def test_each_typology_shows_in_its_features() -> None:
    _, accounts, f = _bank(1)
    pat = accounts["pattern"]
    ordinary = f[pat == ""]
    assert set(pat[pat != ""]) == set(PATTERNS)

    def mean(p: str, col: str) -> float:
        return float(f.loc[pat == p, col].mean())

    assert mean("structuring", "n_near_threshold") > 5 * ordinary["n_near_threshold"].mean()
    assert mean("fan_in", "n_payers") > ordinary["n_payers"].median() + 5
    assert mean("fan_out", "n_payees") > ordinary["n_payees"].median()
    assert mean("rapid_movement", "log_hold_hours") < ordinary["log_hold_hours"].median()
    assert mean("rapid_movement", "flow_through") > ordinary["flow_through"].median()


def test_banks_differ_in_their_typologies() -> None:
    retail = BankProfile("r", 400, laundering_rate=0.2, patterns=(1.0, 0.0, 0.0, 0.0))
    _, acc = transactions(retail, seed=0)
    assert set(acc.loc[acc["is_laundering"] == 1, "pattern"]) == {"structuring"}
    assert isinstance(acc, pd.DataFrame)
