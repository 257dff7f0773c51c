"""Private set intersection: one entry point, one module per protocol.

- :mod:`.ecdh`: two-party ECDH-PSI (default; on ristretto255, or the interconnection
  suite; the interconnection wire itself is :mod:`veil.protocols.interconnect`).
- :mod:`.multiparty`: ECDH-PSI among three or more parties (only the intersection of
  all sets is revealed, no pairwise intersection), with :mod:`.multiparty_steps` and
  :mod:`.batches`.
- :mod:`.kkrt`: two-party KKRT-PSI from OT extension (faster, Veil to Veil), built on
  :mod:`.cuckoo` and :mod:`.ot`.
- :mod:`.rr22`: two-party RR22-PSI from VOLE and an OKVS (the fastest, Veil to Veil),
  built on :mod:`.vole`, :mod:`.okvs` and :mod:`.aeshash`.
- :mod:`.common`: the parameters, result type, input handling and HELLO they share;
  every received message is checked by :mod:`veil.messages`.

:func:`run_psi` plays this party's role of the protocol ``params`` name. ``result_to``
means the same in every protocol: each party it names ends with the intersection, all
in the same order; the others learn only what the protocol's docstring lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from veil.errors import ConfigError
from veil.net.session import Session
from veil.policy import DEFAULT_POLICY, SecurityPolicy
from veil.protocols.psi import ecdh, kkrt, multiparty, rr22
from veil.protocols.psi.common import (
    Protocol,
    PsiParams,
    PsiResult,
    check_params,
    encode_ids,
    first_occurrences,
    match_duals,
    secure_permutation,
    truncate_bytes,
)

__all__ = [
    "Protocol",
    "PsiParams",
    "PsiResult",
    "encode_ids",
    "first_occurrences",
    "match_duals",
    "run_psi",
    "secure_permutation",
    "truncate_bytes",
]


def run_psi(
    session: Session,
    ids: Iterable[str] | Sequence[str],
    params: PsiParams,
    *,
    policy: SecurityPolicy = DEFAULT_POLICY,
) -> PsiResult:
    """Entry point for a job step: this party's role in the protocol ``params.protocol``,
    as ``params.result_to`` says. Two parties run :mod:`.ecdh`, :mod:`.kkrt` or
    :mod:`.rr22`; three or more run :mod:`.multiparty`."""
    if len(session.parties) > 2:
        if params.protocol != Protocol.ECDH:
            raise ConfigError(
                "protocol",
                f"{params.protocol} runs between two parties, this job has {len(session.parties)}",
                "use protocol ecdh for three or more parties",
            )
        return multiparty.run_party(session, ids, params, policy=policy)
    check_params(session, params, policy)
    if params.protocol == Protocol.KKRT:
        return kkrt.run_psi(session, ids, params, policy=policy)
    if params.protocol == Protocol.RR22:
        return rr22.run_psi(session, ids, params, policy=policy)
    if session.me in params.result_to:
        return ecdh.run_receiver(session, ids, params, policy=policy)
    return ecdh.run_sender(session, ids, params, policy=policy)
