"""One party of a two-party interconnection-mode ECDH-PSI, start to finish.

Link up (mesh connect) -> handshake (rank 0 decides, rank 1 proposes) -> ECDH-PSI body
-> ``FIN`` exchange. Works against any implementation of the standard wire, including
SecretFlow's (see ``docs/interconnection.md``), over any :class:`Transport` whose keys
reach the peer unchanged (:class:`veil.net.grpc_transport.GrpcTransport` for gRPC).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from veil.errors import ConfigError, NetworkError
from veil.net.session import Session
from veil.net.transport import Transport
from veil.protocols.interconnect import handshake as hs
from veil.protocols.interconnect.channel import IcChannel, connect_mesh, send_fin, wait_fin
from veil.protocols.interconnect.ecdh import BodyOptions, run_ecdh_body
from veil.protocols.interconnect.suite import suite_named
from veil.protocols.interconnect.vocab import ALL_RANKS, HANDSHAKE_VERSION, ROOT_CHANNEL
from veil.protocols.psi import common as psi

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IcPsiOptions:
    """How this party runs the interconnection PSI.

    ``result_to_rank``: -1 = both parties learn the intersection, else that rank only.
    ``handshake=False`` skips the handshake (SecretFlow's ``-disable_handshake=1``).
    ``handshake_version`` exists so tests can propose a version the peer must refuse.
    ``link_id`` is the key prefix (yacl's link id, ``root`` for SecretFlow); a job step
    uses its own so that two steps never share keys.
    """

    rank: int
    result_to_rank: int = ALL_RANKS
    curve: str = "25519"
    handshake: bool = True
    timeout: float = 120.0
    connect_timeout: float = 60.0
    fin_timeout: float = 10.0
    handshake_version: int = HANDSHAKE_VERSION
    body: BodyOptions = field(default_factory=BodyOptions)
    link_id: str = ROOT_CHANNEL

    def __post_init__(self) -> None:
        if self.rank not in (0, 1):
            raise ConfigError("rank", f"{self.rank} is not 0 or 1", "two-party PSI has ranks 0, 1")
        if self.result_to_rank not in (ALL_RANKS, 0, 1):
            raise ConfigError(
                "result_to_rank",
                f"{self.result_to_rank} is not -1, 0 or 1",
                "use -1 for both parties or the rank that gets the intersection",
            )
        suite_named(self.curve)
        if not self.link_id or ":" in self.link_id:
            raise ConfigError("link_id", f"'{self.link_id}' must be non-empty, without ':'")
        if self.body.batch_size < 1:
            raise ConfigError("batch_size", "must be at least 1")
        if not 1 <= self.body.dual_bytes <= 32:
            raise ConfigError("dual_bytes", "must be between 1 and 32")
        t = self.body.threads
        if t is not None and (not isinstance(t, int) or t < 1):
            raise ConfigError("threads", f"must be a positive integer or None, got {t!r}")


@dataclass(frozen=True)
class IcPsiResult:
    """What one party gets.

    ``indices``: input positions of the common ids, one per distinct id (its first
    occurrence), in an order both receivers share; None when this party gets no result.
    ``peer_item_num``: the count the peer declared in the handshake (-1 unknown).
    """

    indices: np.ndarray | None
    all_rows: np.ndarray | None
    n_input: int
    n_distinct: int
    peer_item_num: int
    fin_received: bool

    def rows(self) -> list[int]:
        """Every input position whose id is common (duplicates included), ascending."""
        if self.all_rows is None:
            raise ConfigError("result_to_rank", "this party did not get the intersection")
        return [int(i) for i in self.all_rows]


def run_interconnect_psi(
    transport: Transport,
    ids: Iterable[str] | Sequence[str],
    opts: IcPsiOptions,
    progress: Callable[[str, float], None] | None = None,
) -> IcPsiResult:
    """Run this party's side against rank ``1 - opts.rank`` on ``transport``.

    ``ids`` are strings (hashed as UTF-8, as the reference peer hashes its CSV field).
    """
    if not isinstance(opts, IcPsiOptions):
        raise ConfigError("opts", f"expected IcPsiOptions, got {type(opts).__name__}")
    if transport.rank != opts.rank:
        raise ConfigError("rank", f"transport is rank {transport.rank}, options say {opts.rank}")
    raw = psi.encode_ids(ids)
    distinct = psi.first_occurrences(raw)
    order = distinct[psi.secure_permutation(len(distinct))]
    peer = 1 - opts.rank
    suite = suite_named(opts.curve)
    fin_ok = False
    connect_mesh(transport, [peer], opts.connect_timeout)
    try:
        root = IcChannel(transport, opts.link_id, opts.timeout)
        peer_items = -1
        if opts.handshake:
            terms = hs.Terms(suite, len(order), opts.result_to_rank, opts.handshake_version)
            decide = opts.rank == 0
            agreed = hs.decide(root, peer, terms) if decide else hs.propose(root, 0, terms)
            peer_items = agreed.peer_item_num
        idx = run_ecdh_body(
            root, peer, raw, order, suite,
            result_to_rank=opts.result_to_rank, opts=opts.body, progress=progress,
        )  # fmt: skip
    finally:
        try:
            send_fin(transport, [peer])
            fin_ok = wait_fin(transport, [peer], opts.fin_timeout)
        except NetworkError as e:
            _log.warning("FIN exchange with rank %d failed: %s", peer, e)
    if not fin_ok:
        _log.warning("rank %d sent no FIN within %.0f s", peer, opts.fin_timeout)
    rows = None
    if idx is not None:
        common = {raw[i] for i in idx}
        rows = np.flatnonzero(np.fromiter((x in common for x in raw), bool, len(raw)))
    return IcPsiResult(idx, rows, len(raw), len(order), peer_items, fin_ok)


def run_psi_interconnect(
    session: Session, ids: Sequence[str], params: psi.PsiParams
) -> psi.PsiResult:
    """The native ``psi`` step's contract over the interconnection protocol (two parties).

    For job files (``psi: {interconnect: true}``): same inputs and result type as
    :func:`veil.protocols.psi.run_psi`, keys scoped under the session's scope.
    """
    if len(session.parties) != 2:
        raise ConfigError("parties", f"PSI needs exactly two parties, got {session.parties}")
    rt = tuple(params.result_to)
    for p in rt:
        if p not in session.parties:
            raise ConfigError("result_to", f"'{p}' is not a party of this job {session.parties}")
    rtr = ALL_RANKS if len(set(rt)) == 2 else session.parties.index(rt[0])
    opts = IcPsiOptions(
        rank=session.rank, result_to_rank=rtr, timeout=session.timeout,
        connect_timeout=session.timeout, link_id=f"{session.scope}/interconnect",
        body=BodyOptions(batch_size=params.batch_size, threads=params.threads),
    )  # fmt: skip
    res = run_interconnect_psi(session.transport, ids, opts)
    size = None if res.indices is None else len(res.indices)
    peer_n = res.peer_item_num if res.peer_item_num >= 0 else 0
    return psi.PsiResult(res.indices, size, res.n_input, res.n_distinct, peer_n)
