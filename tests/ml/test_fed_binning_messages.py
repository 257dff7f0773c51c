"""Federated binning and selection peer messages: a malformed one raises ProtocolError
naming the tag and the field (a missing field, a wrong type, an oversized array).

Each case runs the protocol for real with one party altering one message it sends
(:mod:`tests.ml.tamper`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.ml.conftest import HE
from tests.ml.tamper import Mutation, Tamper, drop, grow, put
from veil.errors import ProtocolError
from veil.ml import fed_binning, select
from veil.ml.binning import BinMethod, BinningOptions
from veil.ml.fed_binning import FedBinningOptions, Tag
from veil.net.local import run_parties

ROLES = {"label_holder": "bank", "partner": "bureau"}
OPTS = FedBinningOptions(
    BinningOptions(BinMethod.CHI_MERGE, n_bins=3, fine_bins=6, min_bin_size=30), share_woe=True
)


def _run(
    credit: tuple[pd.DataFrame, pd.DataFrame], crypto: HE, *, lh: Any = None, partner: Any = None
) -> dict[str, Any]:
    g, h = credit[0].iloc[:300], credit[1].iloc[:300]
    gx = {c: g[c].to_numpy() for c in ("x0", "x1")}
    hx = {c: h[c].to_numpy() for c in ("x0", "x1", "x2")}
    wrap_a = lh or (lambda s: s)
    wrap_b = partner or (lambda s: s)
    return run_parties(
        {
            "bank": lambda s: fed_binning.run_label_holder(
                wrap_a(s), g["y"].to_numpy(), gx, OPTS, **crypto.holder()
            ),
            "bureau": lambda s: fed_binning.run_partner(
                wrap_b(s), hx, OPTS.binning, reveal_names=True, **crypto.partner()
            ),
        },
        roles=ROLES,
    )


CASES: list[tuple[str, Tag, Mutation, str]] = [
    ("bank", Tag.PUBLIC_KEY, drop("pk"), "pk.pk: missing"),
    ("bank", Tag.PUBLIC_KEY, put("pk", "key"), "pk.pk: is a str, expected a dict"),
    ("bank", Tag.PUBLIC_KEY, drop("pk.n"), "pk.pk: is malformed"),
    ("bank", Tag.ENC_LABELS, drop("labels"), "enc_labels.labels: missing"),
    ("bank", Tag.ENC_LABELS, put("labels", [1, 0]), "enc_labels.labels: is a list"),
    ("bank", Tag.ENC_LABELS, grow("labels.ct"), "enc_labels.labels: is malformed"),
    ("bureau", Tag.BIN_SUMS, drop("features"), "bin_sums.features: missing"),
    ("bureau", Tag.BIN_SUMS, drop("features.1.has_missing"), r"features\[1\].has_missing"),
    ("bureau", Tag.BIN_SUMS, put("features.0.counts", np.ones(6)), r"\.features\[0\].counts: is a"),
    ("bureau", Tag.BIN_SUMS, put("names", "x0"), "bin_sums.names: is a str"),
    ("bureau", Tag.BIN_SUMS, drop("names"), "bin_sums.names: missing"),
    ("bureau", Tag.BIN_SUMS, grow("features.0.counts", 50), r"\.features\[0\].counts: has \d+ e"),
    ("bureau", Tag.BIN_SUMS, grow("features.0.events.ct"), r"\.features\[0\].events: is malf"),
    ("bureau", Tag.BIN_SUMS, grow("names"), "bin_sums.names: has 4 entries, expected 3"),
    ("bank", Tag.WOE, drop("features"), "woe.features: missing"),
    ("bank", Tag.WOE, drop("features.2.starts"), r"woe.features\[2\].starts: missing"),
    ("bank", Tag.WOE, put("features.0.iv", "high"), r"woe.features\[0\].iv: is a str"),
    ("bank", Tag.WOE, grow("features"), "woe.features: has 4 entries, expected 3"),
    ("bank", Tag.WOE, grow("features.1.woe"), r"woe.features\[1\].woe: has"),
    ("bank", Tag.WOE, grow("features.1.starts", 20), r"woe.features\[1\].starts: has"),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_malformed_binning_message_is_a_protocol_error(
    credit: tuple[pd.DataFrame, pd.DataFrame], crypto: HE, case: tuple[str, Tag, Mutation, str]
) -> None:
    sender, tag, mutate, expected = case

    def tamper(s: Any) -> Any:
        return Tamper(s, tag, mutate)

    kw = {"lh": tamper} if sender == "bank" else {"partner": tamper}
    with pytest.raises(ProtocolError, match=expected):
        _run(credit, crypto, **kw)


def test_bin_counts_must_cover_every_row(
    credit: tuple[pd.DataFrame, pd.DataFrame], crypto: HE
) -> None:
    def shift(msg: Any) -> Any:
        msg["features"][0]["counts"] = msg["features"][0]["counts"] + 1
        return msg

    with pytest.raises(ProtocolError, match=r"\.features\[0\].counts: sums to \d+ rows, expected"):
        _run(credit, crypto, partner=lambda s: Tamper(s, Tag.BIN_SUMS, shift))


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (drop("keep"), "keep.keep: missing"),
        (put("keep", "x0"), "keep.keep: is a str"),
        (grow("keep", 5), "keep.keep: has 6 entries, at most 3"),
        (put("keep", [7]), "keep.keep: holds 7, above 2"),
    ],
)
def test_malformed_selection_is_a_protocol_error(mutate: Mutation, expected: str) -> None:
    z = np.zeros(2, dtype=np.int64)
    stats = [fed_binning.BinStats("bureau", 0, "bureau:f0", z, z, np.zeros(2), 0.5, False)]
    binning = fed_binning.LabelHolderBinning({}, stats)
    with pytest.raises(ProtocolError, match=expected):
        run_parties(
            {
                "bank": lambda s: select.run_label_holder(
                    Tamper(s, select.Tag.KEEP, mutate), binning
                ),
                "bureau": lambda s: select.run_partner(s, ["x0", "x1", "x2"]),
            },
            roles=ROLES,
        )
