"""Helpers for the horizontal-learning tests: the shipped default_credit horizontal
split, and a FedAvg federation run in one process."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from veil.ml.horizontal import BankData, FedAvgOptions, train_aggregator, train_client
from veil.net import Session, run_parties
from veil.protocols.secagg import AGGREGATOR

EXAMPLES_DATA = Path(__file__).resolve().parents[3] / "examples" / "data"
BANKS = ("guest", "host_1", "host_2")
HUB = "hub"


@cache
def credit(part: str) -> pd.DataFrame:
    """One table of the default_credit horizontal split (guest, host_1, host_2, test)."""
    return pd.read_csv(EXAMPLES_DATA / f"default_credit_homo_{part}.csv.gz")


def bank_data(frames: Mapping[str, pd.DataFrame]) -> dict[str, BankData]:
    return {n: BankData.from_frame(f, "y", id_column="id", who=n) for n, f in frames.items()}


def federate(
    data: Mapping[str, BankData],
    opts: FedAvgOptions,
    *,
    aggregator: str = HUB,
    transport: str = "memory",
    tap: Any = None,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """Train with ``data``'s banks; ``aggregator`` is a data-less hub or one of them."""
    banks = [b for b in data if b != aggregator]
    targets: dict[str, Any] = {b: (lambda s, b=b: train_client(s, data[b], opts)) for b in banks}

    def agg(s: Session) -> Any:
        return train_aggregator(s, opts, banks=banks, data=data.get(aggregator))

    targets[aggregator] = agg
    parties = ([] if aggregator in data else [aggregator]) + list(data) + list(extra)
    return run_parties(
        targets,
        parties=parties,
        roles={AGGREGATOR: aggregator},
        transport=transport,
        timeout=60,
        tap=tap,
    )


def small_banks(n: int = 3, rows: int = 300, seed: int = 0) -> dict[str, pd.DataFrame]:
    """``n`` small synthetic bank tables with the same columns (id, y, a, b, c)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        X = rng.normal(size=(rows, 3)) + 0.2 * i
        y = (X @ [1.0, -0.5, 0.3] + rng.normal(size=rows) > 0.5).astype(int)
        df = pd.DataFrame(X, columns=["a", "b", "c"])
        df.insert(0, "y", y)
        df.insert(0, "id", [f"b{i}-{j}" for j in range(rows)])
        out[f"bank{i}"] = df
    return out
