"""Direct shares of data products under HE (veil.mpc.he_cross): exact, bounded, checked."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from tests.mpc.helpers import COMPUTE
from tests.wire_check import Recorder, assert_no_leak
from veil.errors import ConfigError, ProtocolError
from veil.mpc import he_cross
from veil.mpc.he_cross import Layout, Tag, cross_shares, gram_shares
from veil.mpc.he_triples import exchange_keys
from veil.mpc.ring import to_signed
from veil.net.local import run_parties
from veil.policy import TEST_POLICY

rng = np.random.default_rng(7)
N, W0, W1, BITS = 90, 3, 4, 12
X0 = rng.integers(-(2**BITS) + 1, 2**BITS, (N, W0))
X1 = rng.integers(-(2**BITS) + 1, 2**BITS, (N, W1))
Y = rng.choice([-1, 1], size=(N, 1))  # 1 - 2y
ROWS = [np.sort(rng.choice(N, 40, replace=False)), np.arange(N), np.arange(0)]
X0[ROWS[1][:2]] = [-(2**BITS) + 1] * W0  # extremes: the offset keeps slots non-negative
X1[ROWS[1][:2]] = [2**BITS - 1] * W1


def _run(scheme: str, body: Any, tap: Any = None) -> dict[str, Any]:
    def role(i: int) -> Any:
        def run(s: Any) -> Any:
            keys = exchange_keys(s, i, COMPUTE, scheme=scheme, key_bits=1024, policy=TEST_POLICY)
            return body(s, i, keys)

        return run

    return run_parties({p: role(i) for i, p in enumerate(COMPUTE)}, tap=tap, timeout=120)


@pytest.mark.parametrize("scheme", ["paillier", "ou"])
@pytest.mark.parametrize("widths", [(W0, W1), (W0 + 5, 1)])  # both orientations
def test_cross_shares_reconstruct_the_exact_product(scheme: str, widths: tuple[int, int]) -> None:
    A = np.hstack([X0, X0, X0])[:, : widths[0]]
    B = X1[:, : widths[1]]
    lay = Layout(widths, (BITS, BITS), N, TEST_POLICY.stat_sec)
    got = _run(
        scheme,
        lambda s, i, keys: cross_shares(s, i, COMPUTE, keys, (A, B)[i], lay, ROWS),
    )
    for k, rows in enumerate(ROWS):
        total = got[COMPUTE[0]][k] + got[COMPUTE[1]][k]
        assert total.shape == (widths[0], widths[1])
        np.testing.assert_array_equal(to_signed(total), A[rows].T @ B[rows])


def test_gram_shares_with_extra_columns_are_exact_mod_2_64() -> None:
    lay = Layout((W0 + 1, W1), (BITS, BITS), N, TEST_POLICY.stat_sec)

    def body(s: Any, i: int, keys: Any) -> Any:
        X = X0 if i == 0 else X1
        extra = Y if i == 0 else None
        return gram_shares(s, i, COMPUTE, keys, X, lay, ROWS, n_extra=1, extra=extra)

    got = _run("paillier", body)
    XJ = np.hstack([X0, X1])
    for k, rows in enumerate(ROWS):
        (g0, h0), (g1, h1) = got[COMPUTE[0]][k], got[COMPUTE[1]][k]
        np.testing.assert_array_equal(to_signed(g0 + g1), XJ[rows].T @ XJ[rows])
        np.testing.assert_array_equal(to_signed(h0 + h1), XJ[rows].T @ Y[rows])
        if len(rows):  # re-randomised: party 1's share is not its local block
            assert not np.array_equal(to_signed(g1[W0:, W0:]), X1[rows].T @ X1[rows])


def test_data_outside_the_agreed_bound_is_refused_naming_the_column() -> None:
    bad = X1.copy()
    bad[5, 2] = 2**BITS
    lay = Layout((W0, W1), (BITS, BITS), N, TEST_POLICY.stat_sec)
    with pytest.raises(ConfigError, match=r"cross\[bob\]\.income.*outside the agreed bound"):
        cross_shares(None, 1, COMPUTE, None, bad, lay, ROWS, ["a", "b", "income", "d"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="slot"):  # a layout no key holds
        Layout((1, 1), (400, 400), N, 40).slots(_keys().pk)


def _keys() -> Any:
    class Loop:  # one party talking to itself: enough to make keys
        box: dict[str, Any] = {}

        def send(self, to: str, tag: str, value: object) -> None:
            self.box[tag] = value

        def recv(self, frm: str, tag: str, timeout: float | None = None) -> object:
            return self.box[tag]

    return exchange_keys(Loop(), 0, COMPUTE, scheme="paillier", key_bits=1024, policy=TEST_POLICY)


@pytest.mark.parametrize(
    ("field", "bad"),
    [("ct", "missing"), ("ct", [1, 2]), ("ct", "short"), ("ct", "zero")],
)
def test_malformed_messages_name_tag_and_field(field: str, bad: object) -> None:
    lay = Layout((W0, W1), (BITS, BITS), N, TEST_POLICY.stat_sec)
    keys = _keys()
    peer_side = dataclasses.replace(keys, peer_pk=keys.pk)
    v = lay.encryptor((keys.pk, keys.pk))
    u = 1 - v
    from veil.codec import IntArray

    good = IntArray([5] * (len(ROWS[0]) * 1), keys.pk.ct_bytes)
    msg: dict[str, object] = {
        "missing": {},
        "short": {field: IntArray([5], keys.pk.ct_bytes)},
        "zero": {field: IntArray([0] * len(good), keys.pk.ct_bytes)},
    }.get(bad, {field: bad}) if isinstance(bad, str) else {field: bad}

    class Peer:
        def send(self, to: str, tag: str, value: object) -> None:
            pass

        def recv(self, frm: str, tag: str, timeout: float | None = None) -> object:
            return msg

    mine = (X0, X1)[u]
    with pytest.raises(ProtocolError, match=rf"{Tag.OPERAND}\.{field}"):
        cross_shares(Peer(), u, COMPUTE, peer_side, mine, lay, ROWS[:1])


def test_no_data_crosses_the_wire_and_masks_are_fresh() -> None:
    rec = Recorder()
    lay = Layout((W0 + 1, W1), (BITS, BITS), N, TEST_POLICY.stat_sec)

    def body(s: Any, i: int, keys: Any) -> Any:
        X = X0 if i == 0 else X1
        return gram_shares(
            s, i, COMPUTE, keys, X, lay, ROWS[:2], n_extra=1, extra=Y if i == 0 else None
        )

    _run("ou", body, tap=rec)
    secrets: dict[str, Any] = {"y": Y.ravel()}
    for name, X in (("alice", X0), ("bob", X1)):
        for j in range(X.shape[1]):
            secrets[f"{name} col {j}"] = X[:, j]
    XJ = np.hstack([X0, X1])
    secrets["gram"] = (XJ.T @ XJ).ravel()
    assert_no_leak(rec.frames, secrets)
    assert {f.key.split(":")[0].rsplit("/", 1)[-1] for f in rec.frames} >= {
        str(Tag.OPERAND),
        str(Tag.PRODUCT),
    } or any(str(Tag.PRODUCT) in f.key for f in rec.frames)
    assert he_cross.ENCRYPTION_COST > 0
