"""Secure aggregation (SecAgg / SecAgg+): banks add vectors so that the aggregator
learns only their sum, even when some banks drop out. The protocol, what each party
learns and the papers are in :mod:`veil.protocols.secagg.protocol`; the primitives in
:mod:`~veil.protocols.secagg.shamir` and :mod:`~veil.protocols.secagg.masks`; sending
without waiting for acknowledgements in :mod:`~veil.protocols.secagg.sending`."""

from veil.protocols.secagg.aggregator import (
    AggregatorState,
    aggregate,
    finish,
    run_aggregator,
    setup_aggregator,
)
from veil.protocols.secagg.client import (
    ClientKeys,
    ClientResult,
    contribute,
    run_client,
    setup_client,
)
from veil.protocols.secagg.messages import Tag
from veil.protocols.secagg.protocol import (
    AGGREGATOR,
    AggregateResult,
    Plan,
    RoundAborted,
    SecAggParams,
    default_neighbours,
    make_plan,
)
from veil.protocols.secagg.sending import Posted, broadcast, post, recv_after

__all__ = [
    "AGGREGATOR",
    "AggregateResult",
    "AggregatorState",
    "ClientKeys",
    "ClientResult",
    "Plan",
    "Posted",
    "RoundAborted",
    "SecAggParams",
    "Tag",
    "aggregate",
    "broadcast",
    "contribute",
    "default_neighbours",
    "finish",
    "make_plan",
    "post",
    "recv_after",
    "run_aggregator",
    "run_client",
    "setup_aggregator",
    "setup_client",
]
