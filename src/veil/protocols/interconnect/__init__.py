"""Interconnection mode (PPCA 9-2023): ECDH-PSI with any platform on the standard wire.

Public API::

    from veil.protocols.interconnect import IcPsiOptions, run_interconnect_psi
    from veil.protocols.interconnect.wire import IcGrpcTransport, LinkConfig, TlsFiles

``run_interconnect_psi(transport, items, IcPsiOptions(rank=R, result_to_rank=-1))``
returns an :class:`IcPsiResult` whose ``indices`` are this party's intersected items.
"""

from veil.protocols.interconnect.handshake import HandshakeRefused
from veil.protocols.interconnect.party import IcPsiOptions, IcPsiResult, run_interconnect_psi
from veil.protocols.interconnect.suite import SUITES

__all__ = [
    "SUITES",
    "HandshakeRefused",
    "IcPsiOptions",
    "IcPsiResult",
    "run_interconnect_psi",
]
