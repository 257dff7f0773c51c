"""SecureBoost peer messages: a malformed one raises ProtocolError naming tag and field.

Each case trains (or predicts) for real with one party altering one message it
sends (:mod:`tests.ml.tamper`): a missing field, a wrong type, an oversized array.
The receiver must refuse it with :class:`ProtocolError` (never KeyError or
TypeError), and the message must name the tag and the field.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.ml.sbt_data import vertical
from tests.ml.tamper import Mutation, Tamper, drop, grow, put
from veil.codec import IntArray
from veil.errors import ProtocolError
from veil.messages import Fields
from veil.ml.secureboost import (
    SBTParams,
    Tag,
    run_label_holder,
    run_partner,
    run_predict_label_holder,
    run_predict_partner,
)
from veil.ml.secureboost.messages import Hello, NBins, read_step
from veil.net.local import run_parties
from veil.policy import TEST_POLICY

N = 60
ROLES = {"label_holder": "A", "partner1": "B"}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    d = vertical("breast")
    return {"xa": d["xa"][:N], "xb": d["xb"][:N], "y": d["y"][:N]}


def _params(hide: bool = False) -> SBTParams:
    return SBTParams(n_trees=2, max_depth=2, max_bin=8, key_bits=768, hide_instance_space=hide)


def _train(d: dict[str, np.ndarray], p: SBTParams, *, lh: Any = None, partner: Any = None) -> Any:
    wrap_a = lh or (lambda s: s)
    wrap_b = partner or (lambda s: s)
    na = [f"a{i}" for i in range(d["xa"].shape[1])]
    nb = [f"b{i}" for i in range(d["xb"].shape[1])]
    return run_parties(
        {
            "A": lambda s: run_label_holder(wrap_a(s), d["xa"], d["y"], na, p, policy=TEST_POLICY),
            "B": lambda s: run_partner(wrap_b(s), d["xb"], nb, p, policy=TEST_POLICY),
        },
        roles=ROLES,
        timeout=60,
    )


# (sender, tag, op, mutation, expected "tag.x: ..." in the error)
TRAINING: list[tuple[str, Tag, str | None, Mutation, str]] = [
    ("B", Tag.HELLO, None, drop("rows"), "hello.rows: missing"),
    ("B", Tag.HELLO, None, put("valid_rows", "0"), "hello.valid_rows: is a str"),
    ("B", Tag.HELLO, None, put("features", 10**9), "hello.features: is 1000000000"),
    ("A", Tag.SETUP, None, drop("pk"), "setup.pk: missing"),
    ("A", Tag.SETUP, None, put("params", [1]), "setup.params: is a list"),
    ("A", Tag.SETUP, None, drop("pk.G"), "setup.pk: is malformed"),
    ("A", Tag.STEP, "tree", drop("slot"), "step.slot: missing"),
    ("A", Tag.STEP, "tree", drop("rows"), "step.rows: missing"),
    ("A", Tag.STEP, "tree", put("t", 1.0), "step.t: is a float"),
    ("A", Tag.STEP, "tree", grow("rows", N), "step.rows: has 120 entries, at most 60"),
    ("A", Tag.STEP, "build", drop("node_of"), "step.node_of: missing"),
    ("A", Tag.STEP, "build", put("node_of", "all"), "step.node_of: is a str"),
    ("A", Tag.STEP, "build", grow("node_of"), "step.node_of: has 61 entries, expected 60"),
    ("A", Tag.STEP, "split", drop("bins"), "step.bins: missing"),
    ("A", Tag.STEP, "split", put("slots", np.zeros(1)), "step.slots: is a 1-D float64"),
    ("A", Tag.STEP, "split", grow("rows"), "step.rows: has 2 entries, expected 1"),
    ("A", Tag.STEP, "split", grow("rows.0", N), "step.rows\\[0\\]: has"),
    ("A", Tag.STEP, "done", drop("trees"), "step.trees: missing"),
    ("A", Tag.STEP, "done", put("gains", "x"), "step.gains: is a str"),
    ("A", Tag.STEP, "done", grow("records", 50), "step.records: has"),
    ("A", Tag.STEP, None, put("op", "steal"), "step.op: is 'steal'"),
    ("A", Tag.CT, None, drop("ct"), "ct.ct: missing"),
    ("A", Tag.CT, None, put("ct", [1, 2]), "ct.ct: is a list, expected ciphertexts"),
    ("A", Tag.CT, None, grow("ct"), "ct.ct: has 61 entries, expected 60"),
    ("B", Tag.NBINS, None, drop("n_bins"), "nbins.n_bins: missing"),
    ("B", Tag.NBINS, None, put("n_bins", 8), "nbins.n_bins: is a int"),
    ("B", Tag.NBINS, None, grow("n_bins"), "nbins.n_bins: has"),
    ("B", Tag.HIST, None, drop("ct"), "hist.ct: missing"),
    ("B", Tag.HIST, None, put("ct", b"\x01"), "hist.ct: is a bytes"),
    ("B", Tag.HIST, None, grow("ct", 5), "hist.ct: has"),
    ("B", Tag.PARTITION, None, drop("records"), "partition.records: missing"),
    ("B", Tag.PARTITION, None, put("left", {}), "partition.left: is a dict"),
    ("B", Tag.PARTITION, None, grow("left.0", 3), "partition.left\\[0\\]: has"),
    ("B", Tag.PARTITION, None, grow("valid_left"), "partition.valid_left: has 2"),
]


@pytest.mark.parametrize(
    "case", TRAINING, ids=[f"{c[1]}-{c[2] or ''}-{i}" for i, c in enumerate(TRAINING)]
)
def test_malformed_training_message_is_a_protocol_error(
    data: dict[str, np.ndarray], case: tuple[str, Tag, str | None, Mutation, str]
) -> None:
    sender, tag, op, mutate, expected = case

    def tamper(s: Any) -> Any:
        return Tamper(s, tag, mutate, op)

    kw = {"lh": tamper} if sender == "A" else {"partner": tamper}
    with pytest.raises(ProtocolError, match=expected):
        _train(data, _params(), **kw)


def test_hidden_instance_space_build_is_checked(data: dict[str, np.ndarray]) -> None:
    with pytest.raises(ProtocolError, match=r"step\.ct: has 2 entries, expected 1"):
        _train(data, _params(hide=True), lh=lambda s: Tamper(s, Tag.STEP, grow("ct"), "build"))
    bad = put("ct.0", IntArray([5], 96))
    with pytest.raises(ProtocolError, match=r"step\.ct\[0\]: has 1 entries, expected 60"):
        _train(data, _params(hide=True), lh=lambda s: Tamper(s, Tag.STEP, bad, "build"))


PREDICTION: list[tuple[Mutation, str]] = [
    (drop("rows"), "route.rows: missing"),
    (put("left", np.zeros(3)), "route.left: is a ndarray, expected a list"),
    (grow("left", 4), "route.left: has"),
    (grow("left.0", 2), "route.left\\[0\\]: has"),
]


@pytest.mark.parametrize(("mutate", "expected"), PREDICTION)
def test_malformed_route_is_a_protocol_error(
    data: dict[str, np.ndarray], mutate: Mutation, expected: str
) -> None:
    models = _train(data, _params())
    assert any(nd.party == 1 for t in models["A"].trees for nd in t)  # B has records
    with pytest.raises(ProtocolError, match=expected):
        run_parties(
            {
                "A": lambda s: run_predict_label_holder(s, models["A"], data["xa"]),
                "B": lambda s: run_predict_partner(
                    Tamper(s, Tag.ROUTE, mutate), models["B"], data["xb"]
                ),
            },
            roles=ROLES,
        )


def test_schemas_refuse_non_dicts_and_booleans_for_ints() -> None:
    with pytest.raises(ProtocolError, match=r"hello: expected a mapping, got list"):
        Hello.from_wire([1, 2, 3])
    with pytest.raises(ProtocolError, match=r"hello\.rows: is a bool"):
        Hello.from_wire({"rows": True, "valid_rows": 0, "features": 1})
    with pytest.raises(ProtocolError, match=r"nbins\.n_bins: holds 9, above 8"):
        NBins.from_wire({"n_bins": np.array([2, 9])}, slots=2, max_bin=8)
    kw: dict[str, Any] = {
        "n_rows": 10, "n_trees": 2, "plain_bits": 600, "hidden": False,
        "n_bins": np.array([3, 4]), "n_records": 0,
    }  # fmt: skip
    with pytest.raises(ProtocolError, match=r"step\.bins: holds a bin beyond"):
        split = {"op": "split", "slots": np.array([1]), "bins": np.array([4]),
                 "default_left": np.array([0]), "rows": [np.array([1, 2])]}  # fmt: skip
        read_step(split, **kw)
    with pytest.raises(ProtocolError, match=r"step.k: is 100, expected 1\.\.12"):
        read_step({"op": "tree", "t": 0, "slot": 50, "k": 100}, **kw)
    assert Fields("x", {"a": None}).is_set("a") is False
    with pytest.raises(ProtocolError, match=r"x\.b: missing"):
        Fields("x", {"a": None}).is_set("b")
