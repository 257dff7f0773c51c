"""The online engine over both triple sources, against float64 numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.mpc.helpers import COMPUTE, DEALER, MODES, run_two
from veil.errors import ConfigError, ProtocolError
from veil.mpc import nonlinear
from veil.mpc.engine import Engine, receive_output, send_input
from veil.mpc.plan import SHARED, Plan
from veil.mpc.ring import FixedPoint
from veil.mpc.triples import dealer_store

FP = FixedPoint(16)
rng = np.random.default_rng(5)
N, D0, D1, D2 = 60, 3, 2, 2
X0, X1, X2 = rng.normal(size=(N, D0)), rng.normal(size=(N, D1)), rng.normal(size=(N, D2))
XJ = np.hstack([X0, X1, X2])
ROWS = [np.sort(rng.choice(N, 25, replace=False)), np.arange(N)]
x, y = rng.normal(size=40) * 3, rng.normal(size=40) * 3
A, B = rng.normal(size=(4, 6)), rng.normal(size=(6, 3))
W = rng.normal(size=(D0 + D1 + D2, 2))


def plan() -> Plan:
    p = Plan()
    p.add_mask("X", N, [(D0, 0), (D1, 1), (D2, SHARED)])
    p.add_mask("L", N, [(D0, 0)])
    p.add_mask("P", N, [(D1, 1)])
    for r in ROWS:
        p.add_rowset(r)
    p.mul(40)
    p.matmul(4, 6, 3)
    p.new_phase()
    for r in range(len(ROWS)):
        p.masked("X", r, 2)
        p.masked_t("X", r, 2)
    p.cross("L", "P")
    p.new_phase()
    nonlinear.plan_sigmoid(p, nonlinear.Sigmoid.MINIMAX3, 40)
    return p


def compute(e: Engine) -> list[np.ndarray]:
    me = e.me
    xs = e.share_input(FP.encode(x)) if me == 0 else e.receive_input((40,))
    ys = e.receive_input((40,)) if me == 0 else e.share_input(FP.encode(y))
    x2 = e.receive_input((N, D2), frm="carol")  # an input party's block
    out = [e.mul(xs, ys), e.matmul(e.constant(FP.encode(A)), e.constant(FP.encode(B)))]
    blk = np.zeros((N, D0 + D1 + D2), dtype=np.uint64)
    if me == 0:
        blk[:, :D0] = FP.encode(X0)
    else:
        blk[:, D0 : D0 + D1] = FP.encode(X1)
    blk[:, D0 + D1 :] = x2
    M = e.mask("X", blk)
    ws = e.constant(FP.encode(W))
    for r in range(len(ROWS)):
        z = e.masked_matmul(M, r, ws)
        out += [z, e.masked_tmatmul(M, r, z)]
    out.append(e.cross(e.mask("L", blk[:, :D0]), e.mask("P", blk[:, D0 : D0 + D1])))
    out.append(nonlinear.sigmoid(e, e.scale(xs, 0.5), nonlinear.Sigmoid.MINIMAX3))
    opened = e.open(*out)
    e.reveal_to("carol", out[0])
    return opened


def carol(s: Any) -> np.ndarray:
    send_input(s, FP.encode(X2), COMPUTE)
    return receive_output(s, COMPUTE, (40,))


@pytest.mark.parametrize("mode", MODES)
def test_every_operation_matches_numpy(mode: str) -> None:
    res = run_two(mode, plan, compute, extra={"carol": carol})
    got = res[COMPUTE[0]]
    assert all(np.array_equal(a, b) for a, b in zip(got, res[COMPUTE[1]], strict=True))
    d = [FP.decode(v) for v in got]
    tol = 1e-3
    np.testing.assert_allclose(d[0], x * y, atol=tol)
    np.testing.assert_allclose(d[1], A @ B, atol=tol)
    for i, r in enumerate(ROWS):
        z = XJ[r] @ W
        np.testing.assert_allclose(d[2 + 2 * i], z, atol=tol)
        np.testing.assert_allclose(d[3 + 2 * i], XJ[r].T @ z, atol=5e-3)
    # not truncated: only the inputs' rounding (2^-17 each) accumulates
    bound = (np.abs(X0).T @ np.ones((N, D1)) + np.ones((D0, N)) @ np.abs(X1)) * 2.0**-17
    assert np.all(np.abs(FP.decode(got[6], 32) - X0.T @ X1) <= bound + N * 2.0**-34)
    approx = nonlinear.sigmoid_plain(x / 2, nonlinear.Sigmoid.MINIMAX3)
    np.testing.assert_allclose(d[7], approx, atol=tol)
    np.testing.assert_allclose(FP.decode(res["carol"]), x * y, atol=tol)


@pytest.mark.parametrize("kind", list(nonlinear.Sigmoid))
def test_sigmoid_approximations(kind: nonlinear.Sigmoid) -> None:
    z = np.linspace(-5.5, 5.5, 101)
    exact = 1 / (1 + np.exp(-z))
    approx = nonlinear.sigmoid_plain(z, kind)
    if kind is not nonlinear.Sigmoid.LINEAR:
        assert np.max(np.abs(approx - exact)) < 0.06

    def p() -> Plan:
        q = Plan()
        nonlinear.plan_sigmoid(q, kind, len(z))
        return q

    def body(e: Engine) -> np.ndarray:
        zs = e.constant(FP.encode(z))
        return e.open(nonlinear.sigmoid(e, zs, kind))[0]

    got = FP.decode(run_two("dealer", p, body)[COMPUTE[0]])
    np.testing.assert_allclose(got, approx, atol=5e-4)


def test_out_of_order_triples_and_plan_mismatch_are_protocol_errors() -> None:
    def body(e: Engine) -> None:
        e.matmul(e.constant(FP.encode(A)), e.constant(FP.encode(B)))  # plan says mul first

    with pytest.raises(ProtocolError, match="requested"):
        run_two("dealer", plan, body)

    calls = iter([plan(), Plan()])

    def differing() -> Plan:
        return next(calls)

    with pytest.raises(ProtocolError, match="plan"):
        run_two("dealer", differing, lambda e: None)


def test_malformed_messages_name_tag_and_field() -> None:
    def body(e: Engine) -> Any:
        if e.me == 0:
            e.ch.send(e.peer, "mpc_open", np.zeros(3, dtype=np.float64))
            return None
        return e.open(np.zeros(3, dtype=np.uint64))

    with pytest.raises(ProtocolError, match=r"mpc_open\.shares"):
        run_two("dealer", plan, body)

    def seed_body(e: Engine) -> Any:
        if e.me == 0:
            e.ch.send(e.peer, "mpc_input_seed", b"short")
            return None
        return e.receive_input((3,))

    with pytest.raises(ProtocolError, match=r"mpc_input_seed\.seed"):
        run_two("dealer", plan, seed_body)


def test_a_dealer_that_is_a_compute_party_is_refused() -> None:
    with pytest.raises(ConfigError, match="dealer"):
        dealer_store(None, 0, COMPUTE, COMPUTE[1], plan())  # type: ignore[arg-type]
    assert DEALER not in COMPUTE


@pytest.mark.parametrize("mode", MODES)
def test_gram_of_a_masked_matrix_over_row_subsets(mode: str) -> None:
    def p() -> Plan:
        q = Plan()
        q.add_mask("X", N, [(D0, 0), (D1, 1), (D2, SHARED)])
        for r in ROWS:
            q.add_rowset(r)
        q.cross("X", "X", 0)
        q.cross("X", "X", 1)
        return q

    def body(e: Engine) -> list[np.ndarray]:
        x2 = e.share_input(FP.encode(X2)) if e.me == 0 else e.receive_input((N, D2))
        blk = np.zeros((N, D0 + D1 + D2), dtype=np.uint64)
        own = slice(0, D0) if e.me == 0 else slice(D0, D0 + D1)
        blk[:, own] = FP.encode(XJ[:, own])
        blk[:, D0 + D1 :] = x2
        M = e.mask("X", blk)
        # truncated: correct only if party 1's share is random in every block, the
        # blocks only one party's local product fills (its own Gram block) included
        return e.open(e.trunc(e.cross(M, M, 0)), e.cross(M, M, 1))

    got = run_two(mode, p, body)[COMPUTE[0]]
    np.testing.assert_allclose(FP.decode(got[0]), XJ[ROWS[0]].T @ XJ[ROWS[0]], atol=5e-4)
    np.testing.assert_allclose(FP.decode(got[1], 32), XJ.T @ XJ, atol=5e-4)
