"""What crosses the wire: no input in any encoding; masked words are uniform."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from tests.mpc import test_engine as te
from tests.mpc.helpers import MODES, run_two
from tests.wire_check import Recorder, assert_no_leak
from veil import codec
from veil.mpc.engine import Engine
from veil.mpc.plan import Plan
from veil.mpc.ring import FixedPoint

FP = FixedPoint(16)


@pytest.mark.parametrize("mode", MODES)
def test_no_input_crosses_the_wire(mode: str) -> None:
    rec = Recorder()
    run_two(mode, te.plan, te.compute, extra={"carol": te.carol}, tap=rec)
    secrets = {"x": te.x, "y": te.y, "x enc": FP.encode(te.x).view(np.int64)}
    for name, X in (("alice", te.X0), ("bob", te.X1), ("carol", te.X2)):
        for j in range(X.shape[1]):
            secrets[f"{name} col {j}"] = X[:, j]
            secrets[f"{name} col {j} enc"] = FP.encode(X[:, j]).view(np.int64)
    assert_no_leak(rec.frames, secrets)


def _words(frames: list, tag: str) -> np.ndarray:
    out = [codec.decode(f.payload) for f in frames if f.key.split(":")[0].endswith(tag)]
    assert out, f"no {tag} frame recorded"
    return np.concatenate([np.asarray(w, dtype=np.uint64).ravel() for w in out])


def _uniform(words: np.ndarray) -> float:
    """Smallest chi-square p-value over the 8 byte positions (256 bins each)."""
    b = words.view(np.uint8).reshape(-1, 8)
    return min(float(chisquare(np.bincount(b[:, i], minlength=256)).pvalue) for i in range(8))


@pytest.mark.parametrize("mode", MODES)
def test_shares_of_a_fixed_vector_are_uniform_on_the_wire(mode: str) -> None:
    """A constant vector is shared by an input party and squared twice: every word the
    compute parties open or receive (x - a, x - r, the dealer's corrections) must look
    uniform; the same statistic on the unmasked words would be zero."""
    n = 6000 if mode == "dealer" else 1000  # HE mul triples: one ciphertext per element
    v = np.full(n, 1.25)

    def plan() -> Plan:
        p = Plan()
        p.mul(n)
        p.mul(n)
        return p

    def body(e: Engine) -> None:
        xs = e.receive_input((n,), frm="carol")
        e.mul(e.mul(xs, xs), xs)

    def carol(s: object) -> None:
        from veil.mpc.engine import send_input

        send_input(s, FP.encode(v), ("alice", "bob"))  # type: ignore[arg-type]

    rec = Recorder()
    run_two(mode, plan, body, extra={"carol": carol}, tap=rec)
    opened = _words(rec.frames, "mpc_open")
    assert len(opened) == 2 * 2 * 2 * n  # two products, two masked operands, two parties
    assert _uniform(opened) > 1e-6
    assert _uniform(_words(rec.frames, "mpc_input_share")) > 1e-6
    if mode == "dealer":
        assert _uniform(_words(rec.frames, "mpc_correction")) > 1e-6
    assert _uniform(np.tile(FP.encode(v), 8)) < 1e-6  # the test can fail
