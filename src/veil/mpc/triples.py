"""Where Beaver triples and matrix masks come from: a triple store per compute party,
and the dealer that fills it.

Beaver (CRYPTO 1991): a product of two shared values costs one opening of masked
inputs when the parties hold shares of a random triple ``c = a * b``. Matrix triples
and the reuse of one mask for a fixed data matrix follow SecureML (Mohassel and Zhang,
IEEE S&P 2017). The triples a computation consumes are listed in a :class:`~veil.mpc.plan.Plan`.

:class:`TripleStore` hands a compute party its shares, spec by spec, in plan order.
Its random parts (``a``, ``b``, its mask shares) are words of a seeded PRG
(:mod:`veil.mpc.prg`); only the ``c`` parts differ by source:

* **dealer** (:func:`dealer_store`, :func:`run_dealer`): a third node that sees no data.
  It sends each compute party one 16-byte seed; both derive their ``a``, ``b`` and mask
  shares from it, party 0 also its ``c`` share; party 1 receives, per plan phase, one
  message with its ``c`` shares (``c - c0``). The dealer can produce every phase before
  the data are final (it needs only the plan).
* **two parties, no dealer** (:mod:`veil.mpc.he_triples`): each party draws its own seed
  and the cross terms of ``c`` are computed under Paillier / OU encryption.

Messages (dealer mode): P0 -> D ``plan``; P1 -> D ``plan_digest``; D -> Pi ``seed``;
D -> P1 ``correction`` (one per phase).
What each party learns: the dealer learns the plan (shapes, batch row positions, step
count), never a data value, share or opened value. A compute party learns its own
shares: uniform words (the dealer's ``c - c0`` is uniform to party 1 because ``c0`` is
a PRG stream it cannot compute). A dealer colluding with a compute party learns
everything that party's peer shares: the usual trusted-dealer assumption.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from veil.errors import ConfigError, ProtocolError
from veil.mpc.channel import Channel, expect_bytes, expect_field, expect_words
from veil.mpc.plan import Kind, Plan, Spec
from veil.mpc.prg import PRG, SEED_BYTES, new_seed
from veil.mpc.ring import Share

__all__ = ["DealerReport", "Tag", "TripleStore", "dealer_store", "full_product", "run_dealer"]


class Tag(StrEnum):
    """Messages between the compute parties and the dealer."""

    PLAN = "mpc_plan"  # P0 -> D: the plan
    PLAN_DIGEST = "mpc_plan_digest"  # P1 -> D: its plan's digest
    SEED = "mpc_seed"  # D -> Pi: seed of Pi's correlated randomness
    CORRECTION = "mpc_correction"  # D -> P1: its c shares of one phase


class TripleStore:
    """One compute party's triples and masks, consumed in plan order.

    ``prg`` draws this party's random parts; :meth:`_c` (overridden per source) gives
    its ``c`` shares. Requests out of plan order raise :class:`ProtocolError` (the two
    parties' computations have diverged).
    """

    def __init__(self, party: int, plan: Plan, prg: PRG) -> None:
        if party not in (0, 1):
            raise ConfigError("party", f"compute party index must be 0 or 1, got {party}")
        self.party = party
        self.plan = plan
        self._prg = prg
        self._flat = plan.flat()
        self._next = 0
        self._masks: dict[str, Share] = {}

    @property
    def used(self) -> int:
        """Triples consumed so far."""
        return self._next

    def mask(self, key: str) -> Share:
        """This party's share of mask ``key`` (zeros in blocks the other party owns)."""
        if key not in self._masks:
            self._masks[key] = mask_share(self._prg, self.plan, key, self.party)
        return self._masks[key]

    def take(self, spec: Spec) -> dict[str, Share]:
        """This party's parts of the next triple, which must be ``spec``."""
        if self._next >= len(self._flat) or self._flat[self._next][1] != spec:
            want = self._flat[self._next][1] if self._next < len(self._flat) else "none"
            raise ProtocolError(f"triple {self._next}: requested {spec}, the plan has {want}")
        index = self._next
        self._next += 1
        shapes = self.plan.shapes(spec)
        parts = {k: random_part(self._prg, index, k, s) for k, s in shapes.items() if k != "c"}
        parts["c"] = self._c(index, self._flat[index][0], spec, shapes["c"])
        return parts

    def _c(self, index: int, phase: int, spec: Spec, shape: tuple[int, ...]) -> Share:
        raise NotImplementedError


def random_part(prg: PRG, index: int, part: str, shape: tuple[int, ...]) -> Share:
    """Party's share of part ``a`` or ``b`` of triple ``index`` (a PRG stream)."""
    return prg.words(f"t{index}/{part}", shape)


def mask_share(prg: PRG, plan: Plan, key: str, party: int) -> Share:
    """Party's share of mask ``key``: PRG words in its own and shared blocks, else 0."""
    m = plan.masks[key]
    out = np.zeros((m.rows, m.width), dtype=np.uint64)
    start = 0
    for j, (w, owner) in enumerate(m.blocks):
        if owner == party or owner < 0:
            out[:, start : start + w] = prg.words(f"m/{key}/{j}", (m.rows, w))
        start += w
    return out


def full_product(plan: Plan, spec: Spec, parts: dict[str, Share], masks: dict[str, Share]) -> Share:
    """The ``c`` a triple must have, from its full ``a``/``b`` and full masks."""
    if spec.kind is Kind.MUL:
        return parts["a"] * parts["b"]
    if spec.kind is Kind.MATMUL:
        return parts["a"] @ parts["b"]
    rows = plan.rows_of(spec)
    if spec.kind is Kind.CROSS:
        return masks[spec.mask][rows].T @ masks[spec.other][rows]
    M = masks[spec.mask][rows]
    return M @ parts["b"] if spec.kind is Kind.MASKED else M.T @ parts["b"]


class _DealerStore(TripleStore):
    def __init__(self, party: int, plan: Plan, seed: bytes, ch: Channel, dealer: str) -> None:
        super().__init__(party, plan, PRG(seed))
        self._ch = ch
        self._dealer = dealer
        self._phase = -1
        self._pending: list[Share] = []

    def _c(self, index: int, phase: int, spec: Spec, shape: tuple[int, ...]) -> Share:
        if self.party == 0:
            return self._prg.words(f"t{index}/c", shape)
        while self._phase < phase:  # party 1: this phase's corrections from the dealer
            self._phase += 1
            self._pending = self._receive(self._phase)
        return self._pending.pop(0)

    def _receive(self, phase: int) -> list[Share]:
        specs = self.plan.phases[phase]
        sizes = [self.plan.shapes(s)["c"] for s in specs]
        total = sum(int(np.prod(s)) for s in sizes)
        msg = self._ch.recv(self._dealer, Tag.CORRECTION)
        flat = expect_words(msg, Tag.CORRECTION, "c", (total,))
        out, pos = [], 0
        for s in sizes:
            n = int(np.prod(s))
            out.append(flat[pos : pos + n].reshape(s))
            pos += n
        return out


def dealer_store(
    ch: Channel, party: int, parties: tuple[str, str], dealer: str, plan: Plan
) -> TripleStore:
    """Set up compute party ``party``'s store with ``dealer``: send the plan (party 0) or
    its digest (party 1), receive this party's seed."""
    if dealer in parties:
        raise ConfigError("dealer", f"'{dealer}' is a compute party", "name a third party")
    if party == 0:
        ch.send(dealer, Tag.PLAN, plan.to_wire())
    else:
        ch.send(dealer, Tag.PLAN_DIGEST, plan.digest())
    msg = ch.recv(dealer, Tag.SEED)
    seed = expect_bytes(expect_field(msg, Tag.SEED, "seed"), Tag.SEED, "seed", SEED_BYTES)
    if expect_field(msg, Tag.SEED, "digest") != plan.digest():
        raise ProtocolError(f"{Tag.SEED}.digest: the dealer holds another plan")
    return _DealerStore(party, plan, seed, ch, dealer)


@dataclass(frozen=True)
class DealerReport:
    """What the dealer did: phases and words of corrections sent to party 1."""

    phases: int
    words_sent: int


def run_dealer(ch: Channel, parties: tuple[str, str]) -> DealerReport:
    """The dealer's role: receive the plan, check both parties hold it, send each its
    seed, then one message of party 1's ``c`` shares per phase."""
    p0, p1 = parties
    plan = Plan.from_wire(ch.recv(p0, Tag.PLAN), Tag.PLAN)
    digest = ch.recv(p1, Tag.PLAN_DIGEST)
    if digest != plan.digest():
        raise ProtocolError(f"{Tag.PLAN_DIGEST}: party 1's plan differs from party 0's")
    seeds = (new_seed(), new_seed())
    for name, seed in zip(parties, seeds, strict=True):
        ch.send(name, Tag.SEED, {"seed": seed, "digest": digest})
    prgs = (PRG(seeds[0]), PRG(seeds[1]))
    masks = {
        k: mask_share(prgs[0], plan, k, 0) + mask_share(prgs[1], plan, k, 1) for k in plan.masks
    }
    index = sent = 0
    for specs in plan.phases:  # one message per phase, sent as soon as it is ready
        out = []
        for spec in specs:
            shapes = plan.shapes(spec)
            parts = {
                k: random_part(prgs[0], index, k, s) + random_part(prgs[1], index, k, s)
                for k, s in shapes.items()
                if k != "c"
            }
            c = full_product(plan, spec, parts, masks)
            out.append((c - prgs[0].words(f"t{index}/c", shapes["c"])).ravel())
            index += 1
        words = np.concatenate(out) if out else np.zeros(0, dtype=np.uint64)
        ch.send(p1, Tag.CORRECTION, words)
        sent += len(words)
    return DealerReport(len(plan.phases), sent)
