"""The aggregator's role in secure aggregation (the flow is in :mod:`.protocol`): the
setup once (:func:`setup_aggregator`), then one :func:`aggregate` per sum;
:func:`run_aggregator` does both for a single sum."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError, PeerAborted, PeerTimeout, ProtocolError
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy
from veil.protocols.secagg import masks, shamir
from veil.protocols.secagg.messages import (
    Keys,
    Masked,
    PeerKeys,
    Result,
    Reveal,
    Setup,
    Shares,
    Tag,
    Unmask,
)
from veil.protocols.secagg.protocol import (
    DEFAULT_PARAMS,
    AggregateResult,
    Plan,
    RoundAborted,
    SecAggParams,
    make_plan,
)
from veil.protocols.secagg.sending import Posted, broadcast, post

T = TypeVar("T")
Vector = npt.ArrayLike | Callable[[], npt.ArrayLike]


@dataclass
class AggregatorState:
    """What the aggregator keeps between sums: the plan, the public keys, which banks
    completed the setup, which dropped (and where), and whether it adds its own vector."""

    plan: Plan
    sums: int
    frac_bits: int
    timeout: float
    n_terms: int
    keys: dict[str, Keys] = field(default_factory=dict)
    shared: list[str] = field(default_factory=list)  # banks whose shares went out
    dropped: dict[str, str] = field(default_factory=dict)  # bank -> where it dropped
    out: set[str] = field(default_factory=set)  # banks whose masks are gone for good
    used: int = 0
    pending: Posted | None = None  # the last sum's RESULT messages, still going out
    waiting: tuple[str, ...] = ()  # banks that revealed in the last sum (told its outcome)


def setup_aggregator(
    session: Session,
    sums: int,
    params: SecAggParams = DEFAULT_PARAMS,
    *,
    clients: Sequence[str] | None = None,
    own: bool = False,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> AggregatorState:
    """Aggregator role, setup: plan the graph, route keys and encrypted shares for
    ``sums`` sums of the banks ``clients`` (default every other party); ``own``: the
    aggregator is a bank too and adds its own vector to each sum."""
    del policy
    plan = make_plan(list(clients) if clients is not None else session.peers(), params)
    st = AggregatorState(
        plan, sums, params.frac_bits, params.phase_timeout or session.timeout,
        len(plan.clients) + own,
    )  # fmt: skip
    setups = {}
    for c in plan.clients:
        nb = {v: plan.index(v) for v in plan.graph[c]}
        setups[c] = Setup(plan.index(c), nb, plan.threshold, sums, st.frac_bits, st.n_terms).pack()
    broadcast(session, setups, Tag.SETUP)

    def keys_of(v: Any) -> Keys:
        return Keys.unpack(v, Tag.KEYS, sums)

    st.keys = _gather(session, st, plan.clients, Tag.KEYS, keys_of, timeout=session.timeout)
    _check(session, st, Tag.PEER_KEYS, st.keys, lambda r: PeerKeys({}, r).pack())
    peer_keys = {
        c: PeerKeys({v: st.keys[v] for v in plan.graph[c] if v in st.keys}).pack() for c in st.keys
    }
    broadcast(session, peer_keys, Tag.PEER_KEYS)

    def shares_of(v: Any) -> Shares:
        return Shares.unpack(v, Tag.SHARES)

    shares = _gather(session, st, list(st.keys), Tag.SHARES, shares_of, timeout=st.timeout)
    _check(session, st, Tag.PEER_SHARES, shares, lambda r: Shares({}, r).pack())
    for c, sh in shares.items():
        if set(sh.boxes) != {v for v in plan.graph[c] if v in st.keys}:
            raise ProtocolError(f"{Tag.SHARES}.boxes: '{c}' did not share with its neighbours")
    routed = {
        c: Shares({v: shares[v].boxes[c] for v in plan.graph[c] if v in shares}).pack()
        for c in shares
    }
    broadcast(session, routed, Tag.PEER_SHARES)
    st.shared = list(shares)
    st.out = set(plan.clients) - set(shares)
    return st


def aggregate(
    session: Session,
    st: AggregatorState,
    dim: int,
    own: Vector | None = None,
    *,
    confirm: bool = True,
) -> AggregateResult:
    """Aggregator role, one sum of ``dim`` values: the sum of the live banks' vectors
    (and ``own``; a function is called once the masked vectors are in). The banks'
    results go out in the background; :func:`finish` waits for the last ones.

    ``confirm=False`` (the banks' ``contribute`` too): no RESULT; the caller's next
    message to the banks in ``st.waiting`` must carry the outcome, also when this
    raises :class:`RoundAborted` after the reveals (FedAvg's next model does)."""
    finish(st)
    j = st.used
    if j >= st.sums:
        raise ConfigError("secure_aggregation", f"the keys were made for {st.sums} sums")
    if (own is not None) != (st.n_terms > len(st.plan.clients)):
        raise ConfigError("own", "give the aggregator's own vector at setup and every sum")
    st.used += 1
    s, p = session.sub(f"sum{j}"), st.plan
    expected = [c for c in st.shared if c not in st.out]
    silent = [c for c in expected if c in st.dropped]  # dropped after their last masked vector

    def masked_of(v: Any) -> Masked:
        return Masked.unpack(v, dim)

    live = [c for c in expected if c not in silent]
    st.waiting = ()
    masked = _gather(s, st, live, Tag.MASKED, masked_of, timeout=st.timeout)
    _check(s, st, Tag.UNMASK, masked, lambda r: Unmask([], [], r).pack())
    gone = [c for c in expected if c not in masked]  # their mask keys of this sum are needed
    unmask = {}
    for c in masked:
        near = [v for v in p.graph[c] if v in expected]
        um = Unmask([v for v in near if v in gone], [v for v in near if v in masked] + [c])
        unmask[c] = um.pack()
    sending = post(s, unmask, Tag.UNMASK)  # the reveals may come before the acks
    reveals = _gather(s, st, list(masked), Tag.REVEAL, Reveal.unpack, timeout=st.timeout)
    sending.wait()
    st.waiting = tuple(reveals)

    def result(r: str) -> Any:
        return Result(0, r).pack()

    _check(s, st, Tag.RESULT, reveals, result, tell=confirm)
    try:
        total = _unmask(st, j=j, dim=dim, masked=masked, gone=gone, reveals=reveals)
        if own is not None:
            vec = np.asarray(own() if callable(own) else own, dtype=np.float64).ravel()
            if vec.size != dim:
                raise ConfigError("own", f"has {vec.size} values, expected {dim}")
            total += masks.quantize(vec, st.frac_bits, st.n_terms, f"'{session.me}' update")
    except RoundAborted as e:
        if not confirm:
            raise
        _abort(s, Tag.RESULT, reveals, str(e), result)
    st.out |= set(gone)
    if confirm:  # the banks need not wait for their RESULT before the next step begins
        st.pending = post(s, dict.fromkeys(reveals, Result(len(masked)).pack()), Tag.RESULT)
    return AggregateResult(
        masks.dequantize(total, st.frac_bits), tuple(sorted(masked)), tuple(sorted(st.dropped))
    )


def finish(st: AggregatorState) -> None:
    """Wait until the last sum's results have reached the banks (call once at the end)."""
    if st.pending is not None:
        pending, st.pending = st.pending, None
        pending.wait()


def run_aggregator(
    session: Session,
    dim: int,
    params: SecAggParams = DEFAULT_PARAMS,
    *,
    clients: Sequence[str] | None = None,
    own: Vector | None = None,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> AggregateResult:
    """Aggregator role for a single sum: setup, then aggregate ``dim`` values."""
    st = setup_aggregator(session, 1, params, clients=clients, own=own is not None, policy=policy)
    result = aggregate(session, st, dim, own)
    finish(st)
    return result


def _gather(
    s: Session,
    st: AggregatorState,
    banks: Sequence[str],
    tag: Tag,
    unpack: Callable[[Any], T],
    *,
    timeout: float,
) -> dict[str, T]:
    """Each bank's ``tag`` message that arrives before the deadline; the others drop."""
    deadline = time.monotonic() + timeout
    got: dict[str, T] = {}
    for c in banks:
        try:
            got[c] = unpack(s.recv(c, tag, max(deadline - time.monotonic(), 1e-3)))
        except (PeerTimeout, PeerAborted):
            st.dropped[c] = str(tag)
    return got


def _check(
    s: Session,
    st: AggregatorState,
    reply: Tag,
    present: dict[str, Any],
    aborted: Callable[[str], Any],
    *,
    tell: bool = True,
) -> None:
    """Abort if more banks dropped than may; ``tell``: say why to those ``present``."""
    if len(st.dropped) <= st.plan.max_drops:
        return
    n = len(st.plan.clients)
    reason = (
        f"secure aggregation round aborted: {len(st.dropped)} of {n} banks dropped "
        f"({', '.join(f'{b} at {ph}' for b, ph in sorted(st.dropped.items()))}) but at "
        f"most {st.plan.max_drops} may (dropout_threshold); nothing was aggregated"
    )
    if not tell:
        raise RoundAborted(reason)
    _abort(s, reply, present, reason, aborted)


def _abort(
    s: Session, reply: Tag, present: dict[str, Any], reason: str, aborted: Callable[[str], Any]
) -> NoReturn:
    broadcast(s, dict.fromkeys(present, aborted(reason)), reply)
    raise RoundAborted(reason)


def _unmask(
    st: AggregatorState,
    *,
    j: int,
    dim: int,
    masked: dict[str, Masked],
    gone: list[str],
    reveals: dict[str, Reveal],
) -> masks.Ring:
    p = st.plan
    total = np.zeros(dim, dtype=np.uint64)
    for c, m in masked.items():
        total += m.y
        seed = _recover(st, c, "seeds", reveals, include_self=True)
        total -= masks.expand(seed.to_bytes(masks.KEY_BYTES, "little"), dim)
    for v in gone:
        sk = _recover(st, v, "mask_keys", reveals, include_self=False)
        sk_b = sk.to_bytes(masks.KEY_BYTES, "little")
        pk_v = st.keys[v].masks[j]
        if masks.KeyPair(sk_b).public != pk_v:
            raise ProtocolError(f"{Tag.REVEAL}.mask_keys: shares of '{v}' give a wrong key")
        for u in p.graph[v]:
            if u in masked:
                pm = masks.expand(masks.pair_seed(sk_b, pk_v, st.keys[u].masks[j]), dim)
                total = total - pm if p.index(u) < p.index(v) else total + pm
    return total


def _recover(
    st: AggregatorState, owner: str, kind: str, reveals: dict[str, Reveal], include_self: bool
) -> int:
    holders = [*([owner] if include_self else []), *st.plan.graph[owner]]
    pts = []
    for h in holders:
        r = reveals.get(h)
        raw = getattr(r, kind).get(owner) if r is not None else None
        if raw is None:
            continue
        try:
            pts.append((st.plan.index(h), shamir.from_bytes(raw)))
        except ValueError as e:
            raise ProtocolError(f"{Tag.REVEAL}.{kind}[{owner}]: {e}") from None
    if len(pts) < st.plan.threshold:
        raise RoundAborted(
            f"secure aggregation round aborted: only {len(pts)} of the {st.plan.threshold}"
            f" shares needed to unmask '{owner}' arrived; nothing was aggregated"
        )
    value = shamir.combine(pts, st.plan.threshold)
    if value >> (8 * masks.KEY_BYTES):
        raise ProtocolError(f"{Tag.REVEAL}.{kind}[{owner}]: shares do not give a 32-byte key")
    return value
