"""How FedAvg's sums are taken: by secure aggregation (keys set up once for every sum
of the training, :mod:`veil.protocols.secagg`), or, with ``secure_aggregation: false``,
by each bank sending its vector in the clear. One small object per side."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from veil.ml.horizontal.messages import Tag, Update
from veil.ml.horizontal.models import FloatArray
from veil.ml.horizontal.options import FedAvgOptions
from veil.net.session import Session
from veil.policy import SecurityPolicy
from veil.protocols import secagg
from veil.protocols.secagg import AGGREGATOR

Vector = FloatArray | Callable[[], FloatArray]


def planned_sums(opts: FedAvgOptions) -> int:
    """Sums a training takes at most: scaling, one per round, the last model's score."""
    return int(opts.standardize) + opts.rounds + (1 if opts.early_stopping else 0)


class BankSums:
    """A bank's side: :meth:`add` contributes to the next sum."""

    def __init__(self, session: Session, opts: FedAvgOptions, policy: SecurityPolicy) -> None:
        self.s, self.secure, self.n = session.sub("sums"), opts.secure_aggregation, 0
        self.keys: secagg.ClientKeys | None = None
        self.sending: secagg.Posted | None = None  # the plain update, maybe still going out
        if self.secure:
            n, params = planned_sums(opts), opts.secagg_params()
            self.keys = secagg.setup_client(self.s, n, params, policy=policy)

    def add(self, vec: Vector, dim: int, next_dim: int | None = None) -> None:
        """Contribute ``vec`` (a function is called once the masks are ready) to a sum
        of ``dim`` values; the next sum will have ``next_dim``. Returns before the
        aggregator has the sum: its next message says whether the sum completed."""
        if self.keys is not None:
            secagg.contribute(self.s, self.keys, vec, dim, next_dim=next_dim, confirm=False)
            return
        v = np.asarray(vec() if callable(vec) else vec, dtype=np.float64)
        s = self.s.sub(f"sum{self.n}")
        self.sending = secagg.post(s, {s.party_of(AGGREGATOR): Update(v).pack()}, Tag.UPDATE)
        self.n += 1

    def reply(self, s: Session, tag: str) -> object:
        """The aggregator's next message after :meth:`add` (it says how the sum went);
        raises the error of this bank's last message instead if that did not go out."""
        sending = self.sending or (self.keys.sending if self.keys is not None else None)
        self.sending = None
        if self.keys is not None:
            self.keys.sending = None
        agg = s.party_of(AGGREGATOR)
        return s.recv(agg, tag) if sending is None else secagg.recv_after(sending, s, agg, tag)


class AggregatorSums:
    """The aggregator's side: :meth:`total` takes the next sum over the live banks."""

    def __init__(
        self,
        session: Session,
        opts: FedAvgOptions,
        banks: Sequence[str],
        *,
        own: bool,
        policy: SecurityPolicy,
    ) -> None:
        self.s, self.n = session.sub("sums"), 0
        self.live = list(banks)
        self.state: secagg.AggregatorState | None = None
        if opts.secure_aggregation:
            n, params = planned_sums(opts), opts.secagg_params()
            self.state = secagg.setup_aggregator(
                self.s, n, params, clients=banks, own=own, policy=policy
            )
            self.live = [b for b in banks if b not in self.state.out]

    def total(self, dim: int, own: Vector | None) -> FloatArray:
        """The sum of the live banks' vectors (and ``own``); :attr:`live` is updated.

        The banks learn the outcome from the aggregator's next message (the scaling or
        the next model), which must go to :attr:`live`, or, if this raised
        :class:`RoundAborted`, say why to :attr:`waiting`."""
        if self.state is not None:
            res = secagg.aggregate(self.s, self.state, dim, own, confirm=False)
            self.live = [b for b in res.survivors if b not in res.dropped]
            return res.total
        s = self.s.sub(f"sum{self.n}")
        self.n += 1
        total = np.zeros(dim)
        for b in self.live:
            total += Update.unpack(s.recv(b, Tag.UPDATE), dim).v
        if own is not None:
            total += np.asarray(own() if callable(own) else own, dtype=np.float64)
        return total

    @property
    def waiting(self) -> list[str]:
        """The banks waiting for the aggregator's next message after the last sum."""
        return list(self.state.waiting) if self.state is not None else self.live

    def close(self) -> None:
        """Wait for the last messages of secure aggregation to reach the banks."""
        if self.state is not None:
            secagg.finish(self.state)
