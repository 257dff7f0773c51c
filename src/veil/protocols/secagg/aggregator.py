"""The aggregator's role in secure aggregation (the flow is in :mod:`.protocol`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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

T = TypeVar("T")


def run_aggregator(
    session: Session,
    dim: int,
    params: SecAggParams = DEFAULT_PARAMS,
    *,
    clients: Sequence[str] | None = None,
    own: npt.ArrayLike | None = None,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> AggregateResult:
    """Aggregator role: the sum of the banks' vectors (of ``clients``, default every
    other party), plus ``own`` when the aggregator is a bank itself."""
    del policy
    plan = make_plan(list(clients) if clients is not None else session.peers(), params)
    return _Round(session, plan, dim, params, own).run()


class _Round:
    """One round at the aggregator: the banks still present and what they sent."""

    def __init__(
        self,
        s: Session,
        plan: Plan,
        dim: int,
        params: SecAggParams,
        own: npt.ArrayLike | None,
    ) -> None:
        self.s, self.plan, self.dim, self.fb = s, plan, dim, params.frac_bits
        self.timeout = params.phase_timeout or s.timeout
        self.n_terms = len(plan.clients) + (own is not None)
        self.own = None
        if own is not None:
            own_v = np.asarray(own, dtype=np.float64).ravel()
            if own_v.size != dim:
                raise ConfigError("own", f"has {own_v.size} values, expected {dim}")
            self.own = masks.quantize(own_v, self.fb, self.n_terms, f"'{s.me}' own update")
        self.dropped: dict[str, str] = {}  # bank -> phase it dropped in

    def run(self) -> AggregateResult:
        p, s = self.plan, self.s
        for c in p.clients:
            nb = {v: p.index(v) for v in p.graph[c]}
            setup = Setup(p.index(c), nb, p.threshold, self.dim, self.fb, self.n_terms)
            s.send(c, Tag.SETUP, setup.pack())
        keys = self._gather(p.clients, Tag.KEYS, Keys.unpack, s.timeout)
        self._check(Tag.PEER_KEYS, keys, lambda r: PeerKeys({}, r).pack())
        for c in keys:
            s.send(c, Tag.PEER_KEYS, PeerKeys({v: keys[v] for v in p.graph[c] if v in keys}).pack())

        def shares_of(v: Any) -> Shares:
            return Shares.unpack(v, Tag.SHARES)

        shares = self._gather(list(keys), Tag.SHARES, shares_of, self.timeout)
        self._check(Tag.PEER_SHARES, shares, lambda r: Shares({}, r).pack())
        for c, sh in shares.items():
            expected = {v for v in p.graph[c] if v in keys}
            if set(sh.boxes) != expected:
                raise ProtocolError(f"{Tag.SHARES}.boxes: '{c}' did not share with its neighbours")
        for c in shares:
            boxes = {v: shares[v].boxes[c] for v in p.graph[c] if v in shares}
            s.send(c, Tag.PEER_SHARES, Shares(boxes).pack())

        def masked_of(v: Any) -> Masked:
            return Masked.unpack(v, self.dim)

        masked = self._gather(list(shares), Tag.MASKED, masked_of, self.timeout)
        self._check(Tag.UNMASK, masked, lambda r: Unmask([], [], r).pack())
        for c in masked:
            near = [v for v in p.graph[c] if v in shares]
            um = Unmask(
                [v for v in near if v not in masked], [v for v in near if v in masked] + [c]
            )
            s.send(c, Tag.UNMASK, um.pack())
        reveals = self._gather(list(masked), Tag.REVEAL, Reveal.unpack, self.timeout)
        self._check(Tag.RESULT, reveals, lambda r: Result(0, r).pack())
        try:
            total = self._unmask(keys, shares, masked, reveals)
        except RoundAborted as e:
            self._abort(Tag.RESULT, reveals, str(e), lambda r: Result(0, r).pack())
        for c in reveals:
            s.send(c, Tag.RESULT, Result(len(masked)).pack())
        return AggregateResult(
            masks.dequantize(total, self.fb), tuple(sorted(masked)), tuple(sorted(self.dropped))
        )

    def _gather(
        self, banks: Sequence[str], tag: Tag, unpack: Callable[[Any], T], timeout: float
    ) -> dict[str, T]:
        """Each bank's ``tag`` message that arrives before the deadline; the others drop."""
        deadline = time.monotonic() + timeout
        got: dict[str, T] = {}
        for c in banks:
            try:
                got[c] = unpack(self.s.recv(c, tag, max(deadline - time.monotonic(), 1e-3)))
            except (PeerTimeout, PeerAborted):
                self.dropped[c] = str(tag)
        return got

    def _check(self, reply: Tag, present: dict[str, Any], aborted: Callable[[str], Any]) -> None:
        if len(self.dropped) <= self.plan.max_drops:
            return
        n = len(self.plan.clients)
        reason = (
            f"secure aggregation round aborted: {len(self.dropped)} of {n} banks dropped "
            f"({', '.join(f'{b} at {ph}' for b, ph in sorted(self.dropped.items()))}) but at "
            f"most {self.plan.max_drops} may (dropout_threshold); nothing was aggregated"
        )
        self._abort(reply, present, reason, aborted)

    def _abort(
        self, reply: Tag, present: dict[str, Any], reason: str, aborted: Callable[[str], Any]
    ) -> NoReturn:
        for c in present:
            self.s.send(c, reply, aborted(reason))
        raise RoundAborted(reason)

    def _unmask(
        self,
        keys: dict[str, Keys],
        shares: dict[str, Shares],
        masked: dict[str, Masked],
        reveals: dict[str, Reveal],
    ) -> masks.Ring:
        p = self.plan
        total = np.zeros(self.dim, dtype=np.uint64)
        for c, m in masked.items():
            total += m.y
            seed = self._recover(c, "seeds", reveals, include_self=True)
            total -= masks.expand(seed.to_bytes(masks.KEY_BYTES, "little"), self.dim)
        for v in shares:
            if v in masked:
                continue
            sk = self._recover(v, "mask_keys", reveals, include_self=False)
            sk_b = sk.to_bytes(masks.KEY_BYTES, "little")
            if masks.KeyPair(sk_b).public != keys[v].mask:
                raise ProtocolError(f"{Tag.REVEAL}.mask_keys: shares of '{v}' give a wrong key")
            for u in p.graph[v]:
                if u in masked:
                    pm = masks.expand(masks.pair_seed(sk_b, keys[v].mask, keys[u].mask), self.dim)
                    total = total - pm if p.index(u) < p.index(v) else total + pm
        if self.own is not None:
            total += self.own
        return total

    def _recover(
        self, owner: str, kind: str, reveals: dict[str, Reveal], include_self: bool
    ) -> int:
        holders = [*([owner] if include_self else []), *self.plan.graph[owner]]
        pts = []
        for h in holders:
            r = reveals.get(h)
            raw = getattr(r, kind).get(owner) if r is not None else None
            if raw is None:
                continue
            try:
                pts.append((self.plan.index(h), shamir.from_bytes(raw)))
            except ValueError as e:
                raise ProtocolError(f"{Tag.REVEAL}.{kind}[{owner}]: {e}") from None
        if len(pts) < self.plan.threshold:
            raise RoundAborted(
                f"secure aggregation round aborted: only {len(pts)} of the {self.plan.threshold}"
                f" shares needed to unmask '{owner}' arrived; nothing was aggregated"
            )
        value = shamir.combine(pts, self.plan.threshold)
        if value >> (8 * masks.KEY_BYTES):
            raise ProtocolError(f"{Tag.REVEAL}.{kind}[{owner}]: shares do not give a 32-byte key")
        return value
