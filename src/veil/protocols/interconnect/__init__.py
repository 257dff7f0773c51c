"""Interconnection mode (PPCA 9-2023): ECDH-PSI with any platform on the standard wire.

Public API::

    from veil.net.grpc_transport import GrpcConfig, GrpcTransport  # the standard wire
    from veil.protocols.interconnect import IcPsiOptions, run_interconnect_psi

``run_interconnect_psi(transport, ids, IcPsiOptions(rank=R, result_to_rank=-1))``
returns an :class:`IcPsiResult`: ``indices`` (first occurrences of common ids, in an
order both receivers share) and ``rows()`` (every input row of a common id).
``run_psi_interconnect(session, ids, PsiParams(...))`` is the same with the native
``run_psi`` contract (used by the job step ``psi: {interconnect: true}``).
"""

from veil.protocols.interconnect.handshake import HandshakeRefused
from veil.protocols.interconnect.party import (
    IcPsiOptions,
    IcPsiResult,
    run_interconnect_psi,
    run_psi_interconnect,
)
from veil.protocols.interconnect.suite import SUITES

__all__ = [
    "SUITES",
    "HandshakeRefused",
    "IcPsiOptions",
    "IcPsiResult",
    "run_interconnect_psi",
    "run_psi_interconnect",
]
