"""A synthetic anti-money-laundering data set: transactions with rare laundering
patterns, and the per-account features a bank's monitoring would compute from them.

Every bank simulates 90 days of its accounts' transactions. Ordinary behaviour:
retail accounts get salaries and pay bills, cards and friends; business accounts
receive many small customer payments (a legitimate fan-in), pay suppliers and deposit
cash. A small share of accounts (``laundering_rate``, about 1-2 %) also run one of four
laundering typologies described by the FATF ("Money Laundering and Terrorist Financing
Typologies") and simulated in IBM's AMLSim (Weber et al., KDD workshop 2018):

- ``structuring`` (smurfing): many cash deposits just below the reporting threshold
  (10,000) within a few weeks, then wired away;
- ``fan_in``: many distinct senders pay into the account within days, and the money
  leaves in a few large (often cross-border) wires;
- ``fan_out``: one or two large inflows are split among many distinct recipients;
- ``rapid_movement`` (pass-through layering): money leaves within hours of arriving,
  cycle after cycle, often at night and across borders.

Intensities vary (some launderers are subtle) and ordinary accounts sometimes look
suspicious (a cash business near the threshold, a merchant with many payers), so the
task is realistic: imperfect, with rare positives. Banks differ in size, customer mix
and laundering rate (non-IID), which is what federated training has to cope with.

:func:`account_features` turns transactions into one row per account: counts and
log amounts in and out, flow-through ratio, cash share, deposits near the threshold,
distinct payers and transfer payees, median hours money is held, largest daily amounts, night and
cross-border shares, account age, KYC risk and the business flag; the label is
``is_laundering``. Deterministic for a given seed. ``examples/make_aml.py`` writes
the example's tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

THRESHOLD = 10_000.0  # cash reporting threshold
DAYS = 90
PATTERNS = ("structuring", "fan_in", "fan_out", "rapid_movement")
COLUMNS = ("account", "time", "amount", "incoming", "channel", "counterparty", "cross_border")


@dataclass(frozen=True)
class BankProfile:
    """One bank: how many accounts, its share of businesses, its laundering rate, which
    typologies its launderers favour (weights in :data:`PATTERNS` order), how
    international its customers are and how many ordinary accounts have a quirk that
    looks suspicious."""

    name: str
    accounts: int
    business_share: float = 0.15
    laundering_rate: float = 0.015
    patterns: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)
    cross_border: float = 0.03
    quirky: float = 0.15


class _Tx:
    """Transactions being collected, column by column."""

    def __init__(self) -> None:
        self.cols: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}

    def add(self, account: int, time: np.ndarray, amount: np.ndarray, *how: object) -> None:
        """``how`` = (incoming, channel, counterparties, cross_border flags)."""
        incoming, channel, counterparty, cross_border = how
        n = time.size
        vals = (np.full(n, account), time, amount, np.full(n, incoming), np.full(n, channel),
                counterparty, cross_border)  # fmt: skip
        for c, v in zip(COLUMNS, vals, strict=True):
            self.cols[c].append(np.asarray(v))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({c: np.concatenate(v) for c, v in self.cols.items()})


def transactions(profile: BankProfile, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(transactions, accounts) of one bank. ``time`` is in days from the start;
    counterparties are integers (other banks' customers included)."""
    rng = np.random.default_rng([seed, *profile.name.encode()])
    n = profile.accounts
    business = rng.random(n) < profile.business_share
    launder = rng.random(n) < profile.laundering_rate
    mix = np.asarray(profile.patterns, dtype=float)
    pattern = np.where(launder, rng.choice(PATTERNS, size=n, p=mix / mix.sum()), "")
    quirk = np.where(~launder & (rng.random(n) < profile.quirky), rng.choice(QUIRKS, size=n), "")
    accounts = pd.DataFrame({
        "account": [f"{profile.name}-{i:06d}" for i in range(n)],
        "is_business": business.astype(int),
        "age_days": np.where(launder & (rng.random(n) < 0.4), rng.integers(20, 720, n),
                             rng.integers(30, 7000, n)),
        "kyc_risk": np.where(launder, rng.choice(3, n, p=[0.6, 0.3, 0.1]),
                             rng.choice(3, n, p=[0.75, 0.2, 0.05])),
        "is_laundering": launder.astype(int),
        "pattern": pattern,
        "quirk": quirk,
    })  # fmt: skip
    tx = _Tx()
    for i in range(n):
        thin = bool(launder[i] and rng.random() < 0.4)  # a mule account: little else
        _ordinary(tx, i, bool(business[i]), profile, rng, thin=thin)
        if quirk[i]:
            _quirk(tx, i, str(quirk[i]), rng)
        if launder[i]:
            _launder(tx, i, str(pattern[i]), rng)
    return tx.frame(), accounts


QUIRKS = ("forwarder", "night_owl", "online_seller", "expat", "cash_saver")


def _cp(rng: np.random.Generator, pool: int, size: int) -> np.ndarray:
    """Counterparties drawn from a personal pool of ``pool`` regular contacts."""
    base = rng.integers(0, 10**9)
    return base + rng.integers(0, max(pool, 1), size)


def _times(rng: np.random.Generator, k: int, lo: float = 7.0, hi: float = 22.0) -> np.ndarray:
    """``k`` moments over the period, at hours between ``lo`` and ``hi``."""
    return rng.uniform(0, DAYS, k).astype(int) + rng.uniform(lo, hi, k) / 24


def _ordinary(
    tx: _Tx, i: int, business: bool, p: BankProfile, rng: np.random.Generator, *, thin: bool
) -> None:
    def xb(size: int, scale: float = 1.0) -> np.ndarray:
        return rng.random(size) < p.cross_border * scale

    act = 0.3 if thin else 1.0
    if business:
        k = rng.poisson(act * rng.uniform(30, 250))  # customer payments: a legitimate fan-in
        tx.add(i, _times(rng, k), rng.lognormal(np.log(120), 1.0, k), True, "card",
               _cp(rng, 5 * k + 10, k), xb(k))  # fmt: skip
        k = rng.poisson(act * rng.uniform(8, 30))
        tx.add(i, _times(rng, k, 8, 18), rng.lognormal(np.log(2500), 0.9, k), False, "wire",
               _cp(rng, 12, k), xb(k, 3))  # fmt: skip
        k = rng.poisson(act * rng.uniform(0, 15))  # cash takings, now and then near the threshold
        tx.add(i, _times(rng, k, 9, 17), np.minimum(rng.lognormal(np.log(3000), 0.8, k), 60000),
               True, "cash", np.full(k, -1), np.zeros(k, bool))  # fmt: skip
        k = rng.poisson(6 * act)
        tx.add(i, _times(rng, k), rng.lognormal(np.log(4000), 0.6, k), False, "wire",
               _cp(rng, 3, k), np.zeros(k, bool))  # fmt: skip
        return
    m = int(rng.integers(0, 2)) if thin else 3
    tx.add(i, np.arange(m) * 30 + rng.uniform(0, 3, m) + 0.4, rng.lognormal(np.log(3200), 0.5) *
           np.ones(m), True, "wire", _cp(rng, 1, m), np.zeros(m, bool))  # fmt: skip
    k = rng.poisson(act * rng.uniform(10, 70))
    tx.add(i, _times(rng, k, 6, 24), rng.lognormal(np.log(45), 1.0, k), False, "card",
           _cp(rng, 60, k), xb(k, 0.5))  # fmt: skip
    k = rng.poisson(10 * act)
    tx.add(i, _times(rng, k, 8, 20), rng.lognormal(np.log(180), 0.8, k), False, "wire",
           _cp(rng, 6, k), np.zeros(k, bool))  # fmt: skip
    for incoming in (True, False):
        k = rng.poisson(3)
        tx.add(i, _times(rng, k), rng.lognormal(np.log(200), 1.2, k), incoming, "wire",
               _cp(rng, 10, k), xb(k))  # fmt: skip
    k = rng.poisson(0.8)
    tx.add(i, _times(rng, k, 9, 17), rng.lognormal(np.log(400), 1.2, k), True, "cash",
           np.full(k, -1), np.zeros(k, bool))  # fmt: skip


def _quirk(tx: _Tx, i: int, quirk: str, rng: np.random.Generator) -> None:
    """Ordinary behaviour that resembles a typology (the false positives of monitoring)."""
    if quirk == "forwarder":  # collects a flat's rent or family money and passes it on
        k = int(rng.integers(2, 8))
        t = _times(rng, k)
        amt = rng.uniform(400, 4000, k)
        tx.add(i, t, amt, True, "wire", _cp(rng, 4, k), rng.random(k) < 0.2)
        tx.add(i, t + rng.uniform(0.02, 1.5, k), amt * rng.uniform(0.95, 1.0, k), False, "wire",
               _cp(rng, 2, k), rng.random(k) < 0.2)  # fmt: skip
    elif quirk == "night_owl":  # shift worker
        k = rng.poisson(30)
        tx.add(i, _times(rng, k, 0, 5), rng.lognormal(np.log(40), 1.0, k), False, "card",
               _cp(rng, 30, k), np.zeros(k, bool))  # fmt: skip
    elif quirk == "online_seller":  # many small payers
        k = rng.poisson(rng.uniform(15, 80))
        tx.add(i, _times(rng, k, 0, 24), rng.lognormal(np.log(60), 0.8, k), True, "wire",
               _cp(rng, 10 * k + 1, k), rng.random(k) < 0.1)  # fmt: skip
    elif quirk == "expat":  # remittances home
        k = rng.poisson(8)
        tx.add(i, _times(rng, k), rng.lognormal(np.log(800), 0.7, k), False, "wire",
               _cp(rng, 3, k), np.ones(k, bool))  # fmt: skip
    else:  # cash_saver: brings savings to the bank in a few large deposits
        k = int(rng.integers(1, 5))
        tx.add(i, _times(rng, k, 9, 17), THRESHOLD * rng.uniform(0.3, 1.3, k), True, "cash",
               np.full(k, -1), np.zeros(k, bool))  # fmt: skip


def _launder(tx: _Tx, i: int, pattern: str, rng: np.random.Generator) -> None:
    start = rng.uniform(0, DAYS - 30)
    level = 0.05 + 0.95 * rng.beta(1.2, 3.0)  # how blatant; most launderers are subtle
    if pattern == "structuring":
        k = max(2, round(14 * level))
        t = start + np.sort(rng.uniform(0, 7 + 40 * (1 - level), k))
        amt = THRESHOLD * rng.uniform(0.6, 0.995, k)
        tx.add(i, t, amt, True, "cash", np.full(k, -1), np.zeros(k, bool))
        m = int(rng.integers(1, 4))
        tx.add(i, t[-1] + rng.uniform(0.2, 8, m), np.full(m, amt.sum() * 0.9 / m), False,
               "wire", _cp(rng, 2, m), rng.random(m) < 0.4)  # fmt: skip
    elif pattern == "fan_in":
        k = max(4, round(45 * level))
        t = start + rng.uniform(0, 3 + 25 * (1 - level), k)
        amt = rng.uniform(150, 2500, k)
        tx.add(i, t, amt, True, "wire", _cp(rng, 10**6, k), rng.random(k) < 0.15)
        m = int(rng.integers(1, 4))
        tx.add(i, t.max() + rng.uniform(0.1, 6, m), np.full(m, amt.sum() * 0.92 / m), False,
               "wire", _cp(rng, 2, m), rng.random(m) < 0.5)  # fmt: skip
    elif pattern == "fan_out":
        m = int(rng.integers(1, 3))
        total = rng.uniform(8_000, 80_000) * level
        t0 = start + rng.uniform(0, 2, m)
        tx.add(i, t0, np.full(m, total / m), True, "wire", _cp(rng, 2, m), rng.random(m) < 0.4)
        k = max(4, round(35 * level))
        tx.add(i, t0.max() + rng.uniform(0.05, 3 + 20 * (1 - level), k),
               rng.dirichlet(np.ones(k)) * total * 0.95, False, "wire", _cp(rng, 10**6, k),
               rng.random(k) < 0.1)  # fmt: skip
    else:  # rapid_movement
        k = max(2, round(12 * level))
        t = start + np.sort(rng.uniform(0, 40, k))
        night = rng.random(k) < 0.5 * level
        t = np.where(night, np.floor(t) + rng.uniform(0, 5, k) / 24, t)
        amt = rng.lognormal(np.log(5000), 0.7, k)
        tx.add(i, t, amt, True, "wire", _cp(rng, 5, k), rng.random(k) < 0.4)
        tx.add(i, t + rng.uniform(0.02, 0.2 + 3 * (1 - level), k), amt * rng.uniform(0.9, 0.99, k),
               False, "wire", _cp(rng, 5, k), rng.random(k) < 0.5)  # fmt: skip


def account_features(tx: pd.DataFrame, accounts: pd.DataFrame) -> pd.DataFrame:
    """One row per account: the monitoring features and the label (see the module
    docstring). Counts are integers, everything else floats, with no missing values."""
    n = len(accounts)
    idx = np.arange(n)
    acc = tx["account"].to_numpy()
    inc = tx["incoming"].to_numpy(bool)
    amt = tx["amount"].to_numpy(float)
    cash = (tx["channel"] == "cash").to_numpy()
    hour = (tx["time"].to_numpy() % 1) * 24

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(acc[mask], minlength=n)

    def total(mask: np.ndarray) -> np.ndarray:
        return np.bincount(acc[mask], weights=amt[mask], minlength=n)

    t_in, t_out = total(inc), total(~inc)
    n_tx = np.maximum(count(np.ones_like(inc)), 1)
    # distinct payers (any channel) and distinct payees of transfers (card merchants aside)
    known = tx[(tx["counterparty"] >= 0) & (tx["incoming"] | (tx["channel"] != "card"))]
    n_cp = known.groupby(["account", "incoming"])["counterparty"].nunique().unstack(fill_value=0)
    uniq: pd.DataFrame = n_cp.reindex(index=idx, columns=[True, False], fill_value=0)
    day = np.floor(tx["time"].to_numpy()).astype(int)
    daily = pd.DataFrame({"a": acc, "d": day, "in": inc, "x": amt}).groupby(["a", "in", "d"])["x"]
    top = daily.sum().groupby(level=[0, 1]).max().unstack(fill_value=0)
    peak: pd.DataFrame = top.reindex(index=idx, columns=[True, False], fill_value=0.0)
    return pd.DataFrame({
        "account": accounts["account"],
        "n_in": count(inc),
        "n_out": count(~inc),
        "log_amount_in": np.log1p(t_in),
        "log_amount_out": np.log1p(t_out),
        "flow_through": np.minimum(t_in, t_out) / np.maximum(np.maximum(t_in, t_out), 1.0),
        "n_cash_deposits": count(inc & cash),
        "cash_share_in": total(inc & cash) / np.maximum(t_in, 1.0),
        "n_near_threshold": count(inc & cash & (amt >= 0.8 * THRESHOLD) & (amt < THRESHOLD)),
        "n_payers": uniq[True].to_numpy().astype(int),
        "n_payees": uniq[False].to_numpy().astype(int),
        "log_hold_hours": np.log1p(_hold_hours(tx, n)),
        "log_peak_day_in": np.log1p(peak[True].to_numpy()),
        "log_peak_day_out": np.log1p(peak[False].to_numpy()),
        "night_share": count(hour < 5) / n_tx,
        "cross_border_share": count(tx["cross_border"].to_numpy(bool)) / n_tx,
        "log_age_days": np.log(accounts["age_days"].to_numpy(float)),
        "kyc_risk": accounts["kyc_risk"].to_numpy().astype(int),
        "is_business": accounts["is_business"].to_numpy().astype(int),
        "is_laundering": accounts["is_laundering"].to_numpy().astype(int),
    })  # fmt: skip


def _hold_hours(tx: pd.DataFrame, n: int) -> np.ndarray:
    """Per account, the median hours between an outgoing payment and the latest
    incoming one before it (how long money stays); 90 days if never."""
    t = tx[["account", "time", "incoming"]].sort_values("time")
    ins = t[t["incoming"]].rename(columns={"time": "t_in"})[["account", "t_in"]]
    outs = t[~t["incoming"]][["account", "time"]]
    m = pd.merge_asof(outs, ins, left_on="time", right_on="t_in", by="account")
    m["h"] = ((m["time"] - m["t_in"]) * 24).fillna(DAYS * 24)
    med = m.groupby("account")["h"].median()
    out = np.full(n, DAYS * 24.0)
    out[med.index.to_numpy()] = med.to_numpy()
    return out


def make_bank(profile: BankProfile, seed: int = 0) -> pd.DataFrame:
    """The per-account table of one bank."""
    tx, accounts = transactions(profile, seed)
    return account_features(tx, accounts)


DEFAULT_BANKS = (  # a retail bank, a business bank, an international one: non-IID
    BankProfile("bank_a", 5000, 0.08, 0.012, (0.5, 0.1, 0.1, 0.3)),
    BankProfile("bank_b", 3500, 0.35, 0.020, (0.15, 0.45, 0.3, 0.1)),
    BankProfile("bank_c", 4000, 0.15, 0.015, (0.1, 0.2, 0.3, 0.4), cross_border=0.08),
)
TEST_BANK = BankProfile("test", 6000, 0.18, 0.015, cross_border=0.05)
"""The pooled test set: another sample of the market, every typology alike."""
