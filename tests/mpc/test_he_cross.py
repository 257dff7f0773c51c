"""Direct shares of data products under HE (veil.mpc.he_cross): exact, bounded, checked."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.mpc.helpers import COMPUTE
from tests.wire_check import Recorder, assert_no_leak
from veil.codec import IntArray
from veil.errors import ConfigError, ProtocolError
from veil.mpc.he_cross import Layout, Link, Tag, cross_shares, gram_shares
from veil.mpc.he_keys import exchange_keys
from veil.mpc.ring import to_signed
from veil.net.local import run_parties
from veil.policy import TEST_POLICY

rng = np.random.default_rng(7)
N, W0, W1, BITS = 90, 3, 4, 12
X0 = rng.integers(-(2**BITS) + 1, 2**BITS, (N, W0))
X1 = rng.integers(-(2**BITS) + 1, 2**BITS, (N, W1))
Y = rng.choice([-1, 1], size=(N, 1))  # 1 - 2y
ROWS = [np.sort(rng.choice(N, 40, replace=False)), np.arange(N), np.arange(0), np.arange(N)]
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
        lambda s, i, keys: cross_shares(Link(s, i, COMPUTE, keys), (A, B)[i], lay, ROWS),
    )
    for k, rows in enumerate(ROWS):
        total = got[COMPUTE[0]][k] + got[COMPUTE[1]][k]
        assert total.shape == (widths[0], widths[1])
        np.testing.assert_array_equal(to_signed(total), A[rows].T @ B[rows])
    for p in COMPUTE:  # the same product twice: fresh masks, so other shares
        assert not np.array_equal(got[p][1], got[p][3])


def test_gram_shares_with_extra_columns_are_exact_mod_2_64() -> None:
    lay = Layout((W0 + 1, W1), (BITS, BITS), N, TEST_POLICY.stat_sec)

    def body(s: Any, i: int, keys: Any) -> Any:
        X = X0 if i == 0 else X1
        extra = Y if i == 0 else None
        return gram_shares(Link(s, i, COMPUTE, keys), X, lay, ROWS, n_extra=1, extra=extra)

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
        cross_shares(Link(None, 1, COMPUTE, None), bad, lay, ROWS, ["a", "b", "income", "d"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="slot"):  # a layout no key holds
        Layout((1, 1), (600, 600), N, 40).slots(_keys().pk)


def test_the_parties_take_turns_encrypting_where_it_costs_about_the_same() -> None:
    pk = _keys().pk  # 1024-bit Paillier: 13 slots of 74 bits
    even = Layout((10, 9), (BITS, BITS), 100, 40).encryptors((pk, pk), [100] * 6)
    assert set(even) == {0, 1} and 2 <= even.count(1) <= 4
    lopsided = Layout((40, 1), (BITS, BITS), 100, 40).encryptors((pk, pk), [100] * 6)
    # 4 ciphertexts a row and 1 exponent row beat 1 ciphertext and 40 exponent rows
    assert lopsided == [0] * 6
    assert Layout((20, 12), (BITS, BITS), 100, 40).encryptors((pk, pk), [100]) == [1]


class _Peer:
    """A peer that answers every receive with ``reply`` and swallows every send."""

    def __init__(self, reply: object) -> None:
        self.reply = reply
        self.box: dict[str, object] = {}

    def send(self, to: str, tag: str, value: object) -> None:
        self.box[tag] = value

    def recv(self, frm: str, tag: str, timeout: float | None = None) -> object:
        return self.box[tag] if tag == "he_triple_key" else self.reply


def _keys() -> Any:
    """Party 0's keys, its own public key standing in for the peer's."""
    return exchange_keys(
        _Peer(None), 0, COMPUTE, scheme="paillier", key_bits=1024, policy=TEST_POLICY
    )


@pytest.mark.parametrize("role", ["u", "v"])
@pytest.mark.parametrize("bad", ["missing", "list", "short", "zero", "narrow"])
def test_malformed_messages_name_tag_and_field(role: str, bad: str) -> None:
    lay = Layout((W0, W1), (BITS, BITS), N, TEST_POLICY.stat_sec)
    keys = _keys()
    v = lay.encryptors((keys.pk, keys.pk), [len(ROWS[0])])[0]
    party = 1 - v if role == "u" else v
    n = len(ROWS[0]) if role == "u" else lay.widths[1 - v]  # one slot group either way
    width = keys.pk.ct_bytes
    msg = {
        "missing": {},
        "list": {"ct": [5] * n},
        "short": {"ct": IntArray([5] * (n - 1), width)},
        "zero": {"ct": IntArray([0] * n, width)},
        "narrow": {"ct": IntArray([5] * n, width - 1)},
    }[bad]
    tag = Tag.OPERAND if role == "u" else Tag.PRODUCT
    with pytest.raises(ProtocolError, match=rf"{tag}\.ct"):
        cross_shares(Link(_Peer(msg), party, COMPUTE, keys), (X0, X1)[party], lay, ROWS[:1])


def test_no_data_crosses_the_wire() -> None:
    rec = Recorder()
    lay = Layout((W0 + 1, W1), (BITS, BITS), N, TEST_POLICY.stat_sec)

    def body(s: Any, i: int, keys: Any) -> Any:
        X = X0 if i == 0 else X1
        extra = Y if i == 0 else None
        return gram_shares(Link(s, i, COMPUTE, keys), X, lay, ROWS[:2], n_extra=1, extra=extra)

    _run("ou", body, tap=rec)
    secrets: dict[str, Any] = {"y": Y.ravel()}
    for name, X in (("alice", X0), ("bob", X1)):
        for j in range(X.shape[1]):
            secrets[f"{name} col {j}"] = X[:, j]
    XJ = np.hstack([X0, X1])
    secrets["gram"] = (XJ.T @ XJ).ravel()
    assert_no_leak(rec.frames, secrets)
    keys = " ".join(f.key for f in rec.frames)
    assert str(Tag.OPERAND) in keys and str(Tag.PRODUCT) in keys
