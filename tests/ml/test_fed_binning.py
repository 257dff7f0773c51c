from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.ml.conftest import HE
from tests.ml.test_binning import plain_iv
from tests.wire_check import assert_no_leak
from veil import codec
from veil.errors import ConfigError
from veil.ml import fed_binning
from veil.ml.binning import BinMethod, BinningOptions, fine_bins, regroup
from veil.ml.fed_binning import FedBinningOptions
from veil.net.local import run_parties

ROLES = {"label_holder": "bank", "partner": "bureau"}


def _run(
    g: pd.DataFrame,
    h: pd.DataFrame,
    opts: FedBinningOptions,
    crypto: HE,
    *,
    reveal: bool = False,
    tap: Any = None,
) -> dict[str, Any]:
    gx = {c: g[c].to_numpy() for c in g.columns if c.startswith("x")}
    hx = {c: h[c].to_numpy() for c in h.columns if c.startswith("x")}
    return run_parties(
        {
            "bank": lambda s: fed_binning.run_label_holder(
                s, g["y"].to_numpy(), gx, opts, **crypto.holder()
            ),
            "bureau": lambda s: fed_binning.run_partner(
                s, hx, opts.binning, reveal_names=reveal, **crypto.partner()
            ),
        },
        roles=ROLES,
        tap=tap,
    )


@pytest.mark.parametrize("method", [BinMethod.QUANTILE, BinMethod.MONOTONIC, BinMethod.CHI_MERGE])
def test_partner_iv_equals_plaintext_with_same_bins(
    credit: tuple[pd.DataFrame, pd.DataFrame], crypto: HE, method: BinMethod
) -> None:
    g, h = credit
    opts = FedBinningOptions(
        BinningOptions(method, n_bins=5, fine_bins=10, min_bin_size=60), share_woe=True
    )
    frames: list[tuple[int, int, str, bytes]] = []
    out = _run(g, h, opts, crypto, tap=lambda *f: frames.append(f))
    bank, bureau = out["bank"], out["bureau"]
    y = g["y"].to_numpy()
    partner_stats = [b for b in bank.stats if b.party == "bureau"]
    assert len(partner_stats) == 10
    for st, (name, bins) in zip(partner_stats, bureau.items(), strict=True):
        assert st.name == st.key == f"bureau:f{st.index}"  # names hidden by default
        woe, iv = plain_iv(bins.transform(h[name]), y)
        assert abs(st.iv - iv) < 1e-6
        assert bins.iv is not None and abs(bins.iv - iv) < 1e-6
        np.testing.assert_allclose(bins.woe_transform(h[name]), woe[bins.transform(h[name])])
        assert (bins.counts >= 60).all()
    for name, b in bank.own.items():
        _, iv = plain_iv(b.transform(g[name]), y)
        assert abs(b.iv - iv) < 1e-6
    # What crossed the wire: bureau -> bank is one small message of bin totals,
    # independent of the row count; no label or raw feature value anywhere.
    up = [f for f in frames if f[0] == 1]
    assert [f[2].split("/")[1].split(":")[0] for f in up] == ["bin_sums"]
    assert len(up[0][3]) < 10 * 10 * 300
    secrets: dict[str, Any] = {"labels": y}
    secrets.update({f"bank {c}": g[c].to_numpy() for c in g.columns if c.startswith("x")})
    secrets.update({f"bureau {c}": h[c].to_numpy() for c in h.columns if c.startswith("x")})
    assert_no_leak(frames, secrets)
    canary = (1, 0, "canary", codec.encode([h["x3"].to_numpy().astype(np.float32)]))
    with pytest.raises(AssertionError, match="'bureau x3' in frame 'canary'"):
        assert_no_leak([*frames, canary], secrets)


def test_names_revealed_only_when_allowed_and_woe_not_shared_by_default(
    credit: tuple[pd.DataFrame, pd.DataFrame], crypto: HE
) -> None:
    g, h = credit
    g, h = g.iloc[:800], h.iloc[:800]
    out = _run(g, h, FedBinningOptions(BinningOptions(n_bins=4)), crypto, reveal=True)
    names = [b.name for b in out["bank"].stats if b.party == "bureau"]
    assert names == [c for c in h.columns if c.startswith("x")]
    assert "bureau:x0" in out["bank"].iv() and "bank:x0" in out["bank"].iv()
    assert all(b.woe is None and b.iv is None for b in out["bureau"].values())


def test_without_share_woe_the_merge_plan_stays_with_the_label_holder(
    credit: tuple[pd.DataFrame, pd.DataFrame], crypto: HE
) -> None:
    g, h = credit
    binning = BinningOptions(BinMethod.CHI_MERGE, n_bins=4, fine_bins=10, min_bin_size=60)
    out = _run(g, h, FedBinningOptions(binning), crypto)
    y = g["y"].to_numpy()
    merged = 0
    for st in (b for b in out["bank"].stats if b.party == "bureau"):
        name = f"x{st.index}"
        fine = out["bureau"][name]  # the partner's label-free bins, no WOE
        np.testing.assert_array_equal(fine.edges, fine_bins(name, h[name], binning).edges)
        assert fine.woe is None and st.starts is not None
        final = regroup(fine, st.starts)  # the label holder's bins of that feature
        np.testing.assert_array_equal(final.counts, st.counts)
        _, iv = plain_iv(final.transform(h[name]), y)
        assert abs(st.iv - iv) < 1e-6
        merged += final.n_bins < fine.n_bins
    assert merged  # the plan did merge bins the partner never learned of


def test_three_parties_with_ou(credit: tuple[pd.DataFrame, pd.DataFrame], crypto: HE) -> None:
    g, h = credit
    g, h = g.iloc[:1000], h.iloc[:1000]
    opts = FedBinningOptions(BinningOptions(n_bins=4, min_bin_size=50), he="ou", key_bits=1024)
    h1 = {c: h[c].to_numpy() for c in ("x0", "x1", "x2", "x3", "x4")}
    h2 = {c: h[c].to_numpy() for c in ("x5", "x6", "x7", "x8", "x9")}
    out = run_parties(
        {
            "bank": lambda s: fed_binning.run_label_holder(
                s, g["y"].to_numpy(), {"x0": g["x0"].to_numpy()}, opts, policy=crypto.policy
            ),
            "p1": lambda s: fed_binning.run_partner(s, h1, opts.binning, **crypto.partner()),
            "p2": lambda s: fed_binning.run_partner(s, h2, opts.binning, **crypto.partner()),
        },
        roles={"label_holder": "bank"},
    )
    stats = out["bank"].stats
    assert [b.party for b in stats] == ["bank"] + ["p1"] * 5 + ["p2"] * 5
    y = g["y"].to_numpy()
    for st in stats[6:]:
        bins = out["p2"][f"x{5 + st.index}"]
        _, iv = plain_iv(bins.transform(h[f"x{5 + st.index}"]), y)
        assert abs(st.iv - iv) < 1e-6


def test_row_mismatch_and_bad_columns_are_clear_errors(
    credit: tuple[pd.DataFrame, pd.DataFrame], crypto: HE
) -> None:
    g, h = credit
    with pytest.raises(ConfigError, match=r"label holder has 500 rows, this party 400"):
        _run(g.iloc[:500], h.iloc[:400], FedBinningOptions(), crypto)
    h2 = h.iloc[:500].copy()
    h2["x3"] = 7.0
    with pytest.raises(ConfigError, match=r"'x3'.*constant"):
        _run(g.iloc[:500], h2, FedBinningOptions(), crypto)
    g2 = g.iloc[:500].copy()
    g2["y"] = 2 * g2["y"]
    with pytest.raises(ConfigError, match=r"^y: is not binary"):
        _run(g2, h.iloc[:500], FedBinningOptions(), crypto)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_full_default_credit_iv_within_1e6(crypto: HE) -> None:
    """Acceptance: all 30,000 rows, every feature of both parties."""
    from tests.ml.conftest import DATA

    g = pd.read_csv(DATA / "default_credit_hetero_guest.csv")
    h = pd.read_csv(DATA / "default_credit_hetero_host.csv")
    opts = FedBinningOptions(BinningOptions(BinMethod.MONOTONIC, n_bins=8), share_woe=True)
    out = _run(g, h, opts, crypto)
    y = g["y"].to_numpy()
    by_party = {"bank": (out["bank"].own, g), "bureau": (out["bureau"], h)}
    stats = out["bank"].stats
    assert len(stats) == 23
    for st in stats:
        bins_of, frame = by_party[st.party]
        name = list(bins_of)[st.index]
        _, iv = plain_iv(bins_of[name].transform(frame[name]), y)
        assert abs(st.iv - iv) < 1e-6
