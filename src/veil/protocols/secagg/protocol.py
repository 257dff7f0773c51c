"""Secure aggregation with dropouts: the aggregator learns the sum of the banks' vectors
and nothing else [Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving
Machine Learning", CCS 2017; Bell et al., "Secure Single-Server Aggregation with
(Poly)Logarithmic Overhead", CCS 2020 (SecAgg+)]. Semi-honest parties.

Roles: ``client`` (each bank, many) and ``aggregator`` (one). Every message goes
through the aggregator (a star), as in both papers. Role functions: ``run_client`` /
``run_aggregator`` for one sum; for many (a training), ``setup_client`` then
``contribute`` per sum, and ``setup_aggregator`` then ``aggregate`` per sum and
``finish``.

Flow (n banks; k neighbours each; threshold t = k + 1 - d where d is the number of
banks that may drop, ``dropout_threshold``). Setup, once for S sums (Bonawitz's first
rounds, with fresh, independent keys for every sum made in advance, so that a training
round costs only the online messages):
  0. A -> B  SETUP: B's Shamir holder index, its neighbours in a random Harary graph
             H(k, n) (SecAgg+; k = n - 1 is the complete graph of SecAgg), t, S.
  1. B -> A  KEYS: fresh X25519 public keys: one to encrypt shares, one per sum for masks.
     A -> B  PEER_KEYS: the neighbours' public keys.
  2. B -> A  SHARES: B draws a self-mask seed b_B,j per sum j and Shamir-shares every
             b_B,j and every mask secret key t-of-(k+1) among itself and its neighbours;
             each neighbour's shares are encrypted for it (X25519 + XSalsa20-Poly1305).
     A -> B  PEER_SHARES: the boxes addressed to B.
Each sum j (its messages scoped ``sum{j}``):
  3. B -> A  MASKED: y_B = q(x_B) + PRG(b_B,j) + sum_V ±PRG(s_BV,j)  in Z_{2^64}, over
             the neighbours V still taking part (+ if B's holder index is lower).
  4. A -> B  UNMASK: which of B's neighbours dropped in this sum, which sent y.
     B -> A  REVEAL: its shares of the dropped neighbours' sum-j mask keys and of the
             survivors' sum-j self-mask seeds (never both for one bank and sum).
  5. A       reconstructs each survivor's b_j and each dropped bank's sum-j mask key
             from t shares, removes every mask left, and gets sum q(x) of the survivors.
     A -> B  RESULT: how many banks are in the sum; or, with ``confirm=False`` (FedAvg),
             nothing: the caller's next message (FedAvg's next model) carries it.
A bank that drops takes no further part (its later keys stay unused). If more than d
banks have dropped, or a secret has fewer than t shares, the sum aborts: every bank
still present is told why and raises :class:`RoundAborted`, so does the aggregator; no
sum is returned.

Latency. Steps 3-4 are Bonawitz's rounds 2-4 and cannot be merged: a bank may reveal
its shares of a neighbour's self-mask seed only once the aggregator has committed, in
UNMASK, to that neighbour having sent y (else an aggregator that says a live bank
dropped would get both its mask key and its seed, and so its update); and the sum,
so the next round's model, needs the REVEALs. So a sum costs one round trip more than
sending updates in the clear. Nothing else is on its path: every key and share is
exchanged at setup; a bank makes the next sum's masks while the aggregator unmasks
(:func:`~.client.contribute`); messages are posted without waiting for the network's
acknowledgement, the reply being the proof of arrival (:mod:`.sending`); and with
``confirm=False`` there is no RESULT. None of this changes what a message holds, when
it may be sent, or to whom, so what each party learns (below) is unchanged.

What each party learns:
  - the aggregator: per sum, the sum of the surviving banks' quantised vectors; which
    banks dropped in which phase, the public keys, the graph it drew. Each masked vector
    on its own is uniform in Z_{2^64}^dim. A dropped bank's update stays hidden: its
    self-mask seed of that sum is never reconstructed; keys differ from sum to sum.
  - a bank: its neighbours' public keys and their encrypted shares for it, which
    neighbours dropped, and how many banks are in the sum. Nothing of any update.
  Any t - 1 parties besides the aggregator (t > (k+1)/2 is enforced) learn nothing of
  a bank's secrets from their shares.

Quantisation (see :mod:`veil.protocols.secagg.masks`): fixed point with ``frac_bits``
fractional bits (default 24): the sum is exact up to n * 2^-25 per coordinate.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from veil.errors import ConfigError, VeilError
from veil.protocols.secagg import masks

AGGREGATOR = "aggregator"
T = TypeVar("T")


class RoundAborted(VeilError):
    """A secure-aggregation round lost more banks than it may; nothing was aggregated."""


@dataclass(frozen=True)
class SecAggParams:
    """Options of a round (set by the aggregator; a bank checks ``frac_bits``).

    ``neighbours``: k, each bank's neighbours (None: :func:`default_neighbours`).
    ``dropout_threshold``: d, the most banks that may drop (None: the most that keeps
    the threshold t = k + 1 - d above (k + 1) / 2). ``phase_timeout``: seconds the
    aggregator waits for each phase after the first before counting a bank as dropped
    (None: the session's timeout).
    """

    neighbours: int | None = None
    dropout_threshold: int | None = None
    frac_bits: int = masks.DEFAULT_FRAC_BITS
    phase_timeout: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.frac_bits <= 40:
            raise ConfigError("frac_bits", f"must be in 0..40, got {self.frac_bits}", "e.g. 24")
        if self.phase_timeout is not None and not self.phase_timeout > 0:
            raise ConfigError("phase_timeout", "must be positive seconds")


DEFAULT_PARAMS = SecAggParams()


@dataclass(frozen=True)
class Plan:
    """Who shares with whom: the neighbour graph, holder indices, the threshold."""

    clients: tuple[str, ...]
    graph: dict[str, tuple[str, ...]]
    threshold: int
    max_drops: int

    def index(self, name: str) -> int:
        """The Shamir holder index (1-based) of a bank."""
        return self.clients.index(name) + 1


@dataclass(frozen=True)
class AggregateResult:
    """The aggregator's outcome: the sum of the survivors' vectors and who dropped."""

    total: npt.NDArray[np.float64]
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]


def default_neighbours(n: int) -> int:
    """k for n banks: every other bank up to 12, then 2 * ceil(log2 n) + 4 (SecAgg+)."""
    return min(n - 1, 2 * math.ceil(math.log2(max(n, 2))) + 4)


def make_plan(clients: Sequence[str], params: SecAggParams) -> Plan:
    """The round's graph and threshold, or a ConfigError naming the bad option."""
    names = tuple(clients)
    n = len(names)
    if n < 2 or len(set(names)) != n:
        raise ConfigError(
            "secure_aggregation",
            f"needs at least two distinct banks besides the aggregator, got {n}",
            "add a bank, or set secure_aggregation: false",
        )
    k = default_neighbours(n) if params.neighbours is None else params.neighbours
    if not (0 < k < n and (k == n - 1 or k % 2 == 0)):
        raise ConfigError("neighbours", f"{k} for {n} banks", f"use an even k < {n}, or {n - 1}")
    most = math.ceil((k + 1) / 2) - 1
    d = most if params.dropout_threshold is None else params.dropout_threshold
    if not 0 <= d <= most:
        raise ConfigError(
            "dropout_threshold",
            f"{d} dropouts among {k + 1} share holders would let fewer than a majority "
            "reconstruct a bank's secrets",
            f"use 0..{most}",
        )
    order = list(names)
    secrets.SystemRandom().shuffle(order)  # the Harary graph over a secret relabelling
    pos = {c: i for i, c in enumerate(order)}
    graph = {}
    for c in names:
        if k == n - 1:
            nb = [v for v in names if v != c]
        else:
            i = pos[c]
            nb = [order[(i + j) % n] for j in range(-k // 2, k // 2 + 1) if j != 0]
        graph[c] = tuple(sorted(nb, key=names.index))
    return Plan(names, graph, k + 1 - d, d)
