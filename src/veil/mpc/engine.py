"""The online phase of two-party additive sharing: share inputs, open, multiply.

Two compute parties (index 0 and 1) hold additive shares over Z_2^64
(:mod:`veil.mpc.ring`) and consume Beaver triples from a
:class:`~veil.mpc.triples.TripleStore` in the order of their common
:class:`~veil.mpc.plan.Plan`. Papers: Beaver, "Efficient multiparty protocols using
circuit randomization", CRYPTO 1991 (multiplication from triples); Mohassel and Zhang,
"SecureML", IEEE S&P 2017 (matrix triples, a data matrix masked once and reused,
local probabilistic truncation). Other parties (input providers, output receivers)
use :func:`send_input` and :func:`receive_output`.

Messages (``Tag``): ``input_seed`` (16 bytes: the receiver's share is PRG(seed)),
``input_share`` (an input party's second share: ``x - PRG(seed)``), ``open`` (a
party's shares of masked values ``x - a``), ``output`` (a share sent to the party
that may learn the value).

What each party learns:
  - from ``share_input``: the receiving party gets a PRG seed whose stream is
    independent of ``x`` (computationally hiding, AES);
  - from ``constant``: a seed of public randomness (re-randomises public constants);
  - from every ``open`` inside :meth:`Engine.mul`, :meth:`Engine.matmul` and the masked
    products: ``x - a`` with ``a`` a fresh uniform triple part (or ``X - M`` once per
    masked matrix, ``M`` uniform): uniform words, independent of the data;
  - from :meth:`Engine.open` and :meth:`Engine.reveal_to` called by an application: the
    value itself, by design; each application lists what it opens.
The engine never sends a share that is not masked, except in ``reveal_to`` and
``open`` where the application asks for the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from veil.errors import ConfigError
from veil.mpc import ring
from veil.mpc.channel import Channel, expect_bytes, expect_words
from veil.mpc.plan import Kind, Spec
from veil.mpc.prg import PRG, SEED_BYTES, new_seed
from veil.mpc.ring import FixedPoint, Share
from veil.mpc.triples import TripleStore

__all__ = ["Engine", "Masked", "Tag", "receive_output", "send_input"]

_INPUT_STREAM = "input"


class Tag(StrEnum):
    """Messages of the online phase."""

    INPUT_SEED = "mpc_input_seed"  # owner -> party: seed of that party's share
    INPUT_SHARE = "mpc_input_share"  # input party -> party 1: x - PRG(seed)
    OPEN = "mpc_open"  # each compute party -> the other: masked shares
    OUTPUT = "mpc_output"  # compute party -> the party that learns a value: its share
    COMMON_SEED = "mpc_common_seed"  # party 0 -> party 1: seed of public randomness


@dataclass(frozen=True)
class Masked:
    """A fixed shared matrix ``X`` masked once: ``E = X - M`` is known to both compute
    parties, ``M`` (this party's share ``m``) is the plan's mask ``key``."""

    key: str
    E: Share
    m: Share


class Engine:
    """One compute party's side of the online phase."""

    def __init__(
        self,
        ch: Channel,
        parties: tuple[str, str],
        me: int,
        store: TripleStore,
        fp: FixedPoint,
    ) -> None:
        if me not in (0, 1) or store.party != me:
            raise ConfigError("me", f"compute party index {me} does not match its store")
        self.ch = ch
        self.parties = parties
        self.me = me
        self.peer = parties[1 - me]
        self.store = store
        self.fp = fp
        self.rounds = 0
        self.words_opened = 0
        self._common: PRG | None = None
        self._constants = 0

    # -- inputs and outputs ----------------------------------------------------------
    def share_input(self, x: Share) -> Share:
        """Share this party's ring array ``x``: the peer's share is PRG(seed), sent as
        the seed alone; this party keeps ``x - PRG(seed)``."""
        seed = new_seed()
        self.ch.send(self.peer, Tag.INPUT_SEED, seed)
        x = np.asarray(x, dtype=np.uint64)
        return x - PRG(seed).words(_INPUT_STREAM, x.shape)

    def receive_input(self, shape: tuple[int, ...], frm: str | None = None) -> Share:
        """This party's share of an array of ``shape`` input by ``frm`` (default: the
        peer): a seed (from the peer, or from an input party to party 0) or the masked
        array (from an input party to party 1)."""
        src = frm or self.peer
        if src != self.peer and self.me == 1:
            return expect_words(
                self.ch.recv(src, Tag.INPUT_SHARE), Tag.INPUT_SHARE, "x", tuple(shape)
            )
        seed = expect_bytes(self.ch.recv(src, Tag.INPUT_SEED), Tag.INPUT_SEED, "seed", SEED_BYTES)
        return PRG(seed).words(_INPUT_STREAM, tuple(shape))

    def open(self, *xs: Share) -> list[Share]:
        """Open shared arrays to both compute parties (one message each way)."""
        arrs = [np.asarray(x, dtype=np.uint64) for x in xs]
        mine = np.concatenate([a.ravel() for a in arrs]) if arrs else np.zeros(0, np.uint64)
        self.ch.send(self.peer, Tag.OPEN, mine)
        theirs = expect_words(self.ch.recv(self.peer, Tag.OPEN), Tag.OPEN, "shares", mine.shape)
        self.rounds += 1
        self.words_opened += len(mine)
        total = mine + theirs
        out, pos = [], 0
        for a in arrs:
            out.append(total[pos : pos + a.size].reshape(a.shape))
            pos += a.size
        return out

    def reveal_to(self, party: str, x: Share) -> Share | None:
        """Reveal a shared array to ``party`` only: it gets the value (returned here if
        ``party`` is this one), the other compute party sends its share and gets None.
        ``party`` may be an outside party (it calls :func:`receive_output`)."""
        x = np.asarray(x, dtype=np.uint64)
        if party == self.parties[self.me]:
            other = expect_words(self.ch.recv(self.peer, Tag.OUTPUT), Tag.OUTPUT, "share", x.shape)
            return x + other
        self.ch.send(party, Tag.OUTPUT, x)
        return None

    # -- local operations ------------------------------------------------------------
    def constant(self, c: Share) -> Share:
        """Random shares ``(c - r, r)`` of a public ring array, ``r`` from a PRG seed that
        party 0 sends once. Random (not ``(c, 0)``) because SecureML's truncation is
        correct only for a uniformly random share at party 1 (with a zero share, any
        negative value truncates wrongly). ``r`` is public between the two parties."""
        c = np.asarray(c, dtype=np.uint64)
        if self._common is None:
            if self.me == 0:
                seed = new_seed()
                self.ch.send(self.peer, Tag.COMMON_SEED, seed)
            else:
                msg = self.ch.recv(self.peer, Tag.COMMON_SEED)
                seed = expect_bytes(msg, Tag.COMMON_SEED, "seed", SEED_BYTES)
            self._common = PRG(seed)
        self._constants += 1
        r = self._common.words(f"const/{self._constants}", c.shape)
        return c - r if self.me == 0 else r

    def trunc(self, x: Share, bits: int | None = None) -> Share:
        """Divide by ``2^bits`` (default ``f``), SecureML's local truncation."""
        return ring.trunc(x, self.fp.frac_bits if bits is None else bits, self.me)

    def _shift(self, x: Share, shift: int | None) -> Share:
        return x if shift == 0 else self.trunc(x, shift)

    def scale(self, x: Share, c: float, sig_bits: int = 20) -> Share:
        """Multiply a fixed-point share by the public real ``c`` (then truncate)."""
        k, bits = self.fp.encode_public(c, sig_bits)
        return self.trunc(x * np.uint64(k % (1 << 64)), bits)

    # -- products --------------------------------------------------------------------
    # Products take ``shift``: the bits to truncate the result by (default ``f``, the
    # fraction bits of one operand; 0 keeps the sum of both operands' fraction bits).
    def mul(self, x: Share, y: Share, shift: int | None = None) -> Share:
        """Element-wise product (one round, one ``mul`` triple of ``x.size``)."""
        x, y = np.asarray(x, dtype=np.uint64), np.asarray(y, dtype=np.uint64)
        if x.shape != y.shape:
            raise ConfigError("y", f"shape {y.shape} differs from {x.shape}")
        t = self.store.take(Spec(Kind.MUL, (x.size,)))
        e, f = self.open(x.ravel() - t["a"], y.ravel() - t["b"])
        z = ring.beaver_mul(self.me, e, f, a=t["a"], b=t["b"], c=t["c"]).reshape(x.shape)
        return self._shift(z, shift)

    def matmul(self, X: Share, Y: Share, shift: int | None = None) -> Share:
        """Matrix product of two shared matrices (one round, one ``matmul`` triple)."""
        X, Y = np.asarray(X, dtype=np.uint64), np.asarray(Y, dtype=np.uint64)
        if X.ndim != 2 or Y.ndim != 2 or X.shape[1] != Y.shape[0]:
            raise ConfigError("Y", f"cannot multiply {X.shape} by {Y.shape}")
        t = self.store.take(Spec(Kind.MATMUL, (X.shape[0], X.shape[1], Y.shape[1])))
        E, F = self.open(X - t["a"], Y - t["b"])
        Z = ring.beaver_matmul(self.me, E, F, A=t["a"], B=t["b"], C=t["c"])
        return self._shift(Z, shift)

    def mask(self, key: str, x: Share) -> Masked:
        """Mask the shared matrix ``x`` with the plan's mask ``key`` and open ``E = x - M``
        once. In a block one party owns, its share of ``x`` is the data and of ``M`` the
        whole mask, the other's both zero: only the owner sends that block of ``E``."""
        m = self.store.mask(key)
        x = np.asarray(x, dtype=np.uint64)
        if x.shape != m.shape:
            raise ConfigError("x", f"shape {x.shape} does not match mask '{key}' {m.shape}")
        spec = self.store.plan.masks[key]
        mine = spec.columns_of(self.me)  # own blocks and shared ones
        theirs = spec.columns_of(1 - self.me)
        shared = np.intersect1d(mine, theirs)
        own = np.setdiff1d(mine, shared)
        other = np.setdiff1d(theirs, shared)
        diff = x - m
        self.ch.send(self.peer, Tag.OPEN, np.ascontiguousarray(diff[:, mine]).ravel())
        got = self.ch.recv(self.peer, Tag.OPEN)
        got = expect_words(got, Tag.OPEN, "shares", (len(x) * len(theirs),))
        self.rounds += 1
        self.words_opened += len(x) * len(mine)
        peer = got.reshape(len(x), len(theirs))
        E = np.zeros_like(diff)
        E[:, own] = diff[:, own]
        E[:, other] = peer[:, np.isin(theirs, other)]
        E[:, shared] = diff[:, shared] + peer[:, np.isin(theirs, shared)]
        return Masked(key, E, m)

    def masked_matmul(self, X: Masked, rowset: int, W: Share, shift: int | None = None) -> Share:
        """``X[rows] @ W`` for the plan's row subset ``rowset`` and a shared ``W``."""
        W = _as_2d(W)
        t = self.store.take(Spec(Kind.MASKED, (W.shape[1],), X.key, rowset))
        rows = self.store.plan.rowsets[rowset]
        (F,) = self.open(W - t["b"])
        Z = ring.beaver_matmul(self.me, X.E[rows], F, A=X.m[rows], B=t["b"], C=t["c"])
        return self._shift(Z, shift)

    def masked_tmatmul(self, X: Masked, rowset: int, D: Share, shift: int | None = None) -> Share:
        """``X[rows].T @ D`` for the plan's row subset ``rowset`` and a shared ``D``."""
        D = _as_2d(D)
        t = self.store.take(Spec(Kind.MASKED_T, (D.shape[1],), X.key, rowset))
        rows = self.store.plan.rowsets[rowset]
        (F,) = self.open(D - t["b"])
        Z = ring.beaver_matmul(self.me, X.E[rows].T, F, A=X.m[rows].T, B=t["b"], C=t["c"])
        return self._shift(Z, shift)

    def cross(self, X: Masked, Y: Masked, rowset: int = -1) -> Share:
        """``X[rows].T @ Y[rows]`` of two masked matrices (every row for ``rowset`` -1;
        ``X`` may be ``Y``: a Gram matrix). No round: both are already opened. Not
        truncated: the result carries the sum of both operands' fraction bits."""
        spec = Spec(Kind.CROSS, (), X.key, rowset, Y.key)
        t = self.store.take(spec)
        r = self.store.plan.rows_of(spec)
        return ring.beaver_matmul(self.me, X.E[r].T, Y.E[r], A=X.m[r].T, B=Y.m[r], C=t["c"])


def _as_2d(a: Share) -> Share:
    a = np.asarray(a, dtype=np.uint64)
    return a.reshape(-1, 1) if a.ndim == 1 else a


def send_input(ch: Channel, x: Share, parties: tuple[str, str]) -> None:
    """An input party (not a compute party) shares ``x``: a seed to party 0 (its share
    is PRG(seed)), ``x - PRG(seed)`` to party 1. Neither learns anything about ``x``."""
    seed = new_seed()
    x = np.asarray(x, dtype=np.uint64)
    ch.send(parties[0], Tag.INPUT_SEED, seed)
    ch.send(parties[1], Tag.INPUT_SHARE, x - PRG(seed).words(_INPUT_STREAM, x.shape))


def receive_output(ch: Channel, parties: tuple[str, str], shape: tuple[int, ...]) -> Share:
    """An outside party receives both compute parties' shares of a value revealed to it."""
    total = np.zeros(shape, dtype=np.uint64)
    for p in parties:
        total += expect_words(ch.recv(p, Tag.OUTPUT), Tag.OUTPUT, "share", tuple(shape))
    return total
