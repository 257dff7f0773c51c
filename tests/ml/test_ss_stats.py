"""Cross-party statistics: Pearson and VIF equal numpy's on the joined table, each party
learns only what reveal_to grants, nothing else crosses the wire, bad input is refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.paths import DATA
from tests.wire_check import Recorder, assert_no_leak
from veil.errors import ConfigError
from veil.ml import ss_stats
from veil.ml.ss_stats import StatsOptions, run_dealer, run_party
from veil.net.local import run_parties
from veil.policy import TEST_POLICY


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    g = pd.read_csv(DATA / "default_credit_hetero_guest.csv", nrows=2000).drop(columns=["y"])
    h = pd.read_csv(DATA / "default_credit_hetero_host.csv", nrows=2000)
    h = h.rename(columns={c: f"h{c}" for c in h.columns if c != "id"})
    rng = np.random.default_rng(0)
    t = pd.DataFrame({"id": g["id"]})
    t["spend"] = g["x5"] * 3.0 + h["hx2"] + rng.normal(size=len(g)) * 0.5  # collinear
    t["age"] = rng.integers(20, 70, len(g)).astype(float)
    return {"bank": g, "bureau": h, "telco": t}


def run(tables: dict[str, pd.DataFrame], opts: StatsOptions, tap: Any = None) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    for p in opts.parties:
        df = tables[p]
        names = [c for c in df.columns if c != "id"]
        targets[p] = lambda s, df=df, names=names: run_party(
            s, df["id"].tolist(), names, df[names].to_numpy(float), opts, policy=TEST_POLICY
        )
    if opts.dealer:
        targets[opts.dealer] = lambda s: run_dealer(s, opts)
    return run_parties(targets, parties=list(targets), tap=tap, timeout=600)


def joined(tables: dict[str, pd.DataFrame], parties: tuple[str, ...]) -> np.ndarray:
    return np.hstack([tables[p].drop(columns=["id"]).to_numpy(float) for p in parties])


@pytest.mark.parametrize("dealer", ["dealer", None])
def test_pearson_and_vif_equal_numpy_and_reveal_as_granted(
    tables: dict[str, pd.DataFrame], dealer: str | None
) -> None:
    parties = ("bank", "bureau", "telco")
    reveal = {"bank": ("summary", "correlation", "vif"), "bureau": ("vif",)}
    opts = StatsOptions(parties, reveal, dealer=dealer, he="paillier", key_bits=1024)
    out = run(tables, opts)
    X = joined(tables, parties)
    R = np.corrcoef(X, rowvar=False)
    vif = np.diag(np.linalg.inv(R))
    bank = out["bank"]
    assert bank.correlation is not None and bank.vif is not None
    np.testing.assert_allclose(bank.correlation, R, atol=1e-4)
    np.testing.assert_allclose(list(bank.vif.values()), vif, atol=1e-3)
    assert max(vif) > 5  # the collinear column makes the VIF check meaningful
    assert bank.columns[0] == "bank.x0" and bank.columns[-1] == "telco.age"
    for p in parties:  # summaries of every party's columns at bank, as pandas computes them
        df = tables[p].drop(columns=["id"])
        for col in df.columns:
            got = bank.summary[p][col]
            assert got["count"] == len(df)
            assert got["mean"] == pytest.approx(df[col].mean(), abs=1e-12)
            assert got["variance"] == pytest.approx(df[col].var(), rel=1e-12)
            assert got["quantiles"]["0.5"] == pytest.approx(df[col].quantile(0.5), abs=1e-12)
    bureau, telco = out["bureau"], out["telco"]
    assert bureau.correlation is None and set(bureau.summary) == {"bureau"}
    assert bureau.vif == bank.vif
    assert telco.correlation is None and telco.vif is None and set(telco.summary) == {"telco"}


def test_no_column_crosses_the_wire(tables: dict[str, pd.DataFrame]) -> None:
    small = {p: t.iloc[:400] for p, t in tables.items()}
    parties = ("bank", "bureau")
    rec = Recorder()
    run(small, StatsOptions(parties, {"bank": ("correlation",)}, dealer="dealer"), tap=rec)
    secrets = {}
    for p in parties:
        df = small[p].drop(columns=["id"])
        for c in df.columns:
            x = df[c].to_numpy(float)
            secrets[f"{p} {c}"] = x
            secrets[f"{p} {c} z"] = (x - x.mean()) / x.std()
    assert_no_leak(rec.frames, secrets)


def test_bad_input(tables: dict[str, pd.DataFrame]) -> None:
    with pytest.raises(ConfigError, match="also a data party"):
        StatsOptions(("bank", "bureau"), {}, dealer="bureau")
    with pytest.raises(ConfigError, match="correlation"):
        StatsOptions(("bank", "bureau"), {"bank": ("vif",)})
    with pytest.raises(ConfigError, match="unknown"):
        StatsOptions(("bank", "bureau"), {"bank": ("median",)})
    short = dict(tables, bureau=tables["bureau"].iloc[:1500])
    with pytest.raises(ConfigError, match="other rows"):
        run(short, StatsOptions(("bank", "bureau"), {"bank": ("summary",)}, dealer="dealer"))
    empty = dict(tables, bureau=tables["bureau"].iloc[:0])
    with pytest.raises(ConfigError, match="no rows"):
        run(empty, StatsOptions(("bank", "bureau"), {"bank": ("summary",)}, dealer="dealer"))
    gap = dict(tables, telco=tables["telco"].assign(age=np.nan))
    with pytest.raises(ConfigError, match=r"telco\.age.*missing"):
        run(gap, StatsOptions(("bank", "telco"), {"bank": ("correlation",)}, dealer="dealer"))
    assert ss_stats.frac_bits_for(30000) == 23
