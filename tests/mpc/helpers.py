"""Run two compute parties (and a dealer or an input party) over the in-memory transport."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from veil.mpc.engine import Engine
from veil.mpc.he_triples import he_store
from veil.mpc.plan import Plan
from veil.mpc.ring import FixedPoint
from veil.mpc.triples import dealer_store, run_dealer
from veil.net.local import Tap, run_parties
from veil.policy import TEST_POLICY

COMPUTE = ("alice", "bob")
DEALER = "dealer"
MODES = ("dealer", "he")


def engine(s: Any, me: int, plan: Plan, mode: str, fp: FixedPoint) -> Engine:
    if mode == "dealer":
        store = dealer_store(s, me, COMPUTE, DEALER, plan)
    else:  # 1024-bit Paillier test keys: 5 slots per ciphertext, fast enough for tests
        store = he_store(s, me, COMPUTE, plan, scheme="paillier", key_bits=1024, policy=TEST_POLICY)
    return Engine(s, COMPUTE, me, store, fp)


def run_two(
    mode: str,
    plan: Callable[[], Plan],
    body: Callable[[Engine], Any],
    *,
    fp: FixedPoint | None = None,
    extra: dict[str, Callable[[Any], Any]] | None = None,
    tap: Tap | None = None,
) -> dict[str, Any]:
    """``body(engine)`` on both compute parties; a dealer in dealer mode; ``extra`` roles."""
    fixed = fp or FixedPoint(16)
    targets: dict[str, Callable[[Any], Any]] = {
        name: (lambda s, i=i: body(engine(s, i, plan(), mode, fixed)))
        for i, name in enumerate(COMPUTE)
    }
    names = [*COMPUTE]
    if mode == "dealer":
        targets[DEALER] = lambda s: run_dealer(s, COMPUTE)
        names.append(DEALER)
    for k, fn in (extra or {}).items():
        targets[k] = fn
        names.append(k)
    return run_parties(targets, parties=names, tap=tap, timeout=120)
