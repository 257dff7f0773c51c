"""One party of a two-party interconnection-mode ECDH-PSI, start to finish.

Link up (mesh connect) -> handshake (rank 0 decides, rank 1 proposes) -> ECDH-PSI body
-> ``FIN`` exchange. Works against any implementation of the standard wire, including
SecretFlow's (see ``docs/interconnection.md``), over any :class:`Transport` whose keys
reach the peer unchanged (:mod:`veil.protocols.interconnect.wire` for gRPC).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from veil.errors import ConfigError, NetworkError
from veil.net.transport import Transport
from veil.protocols.interconnect import handshake as hs
from veil.protocols.interconnect.channel import IcChannel, connect_mesh, send_fin, wait_fin
from veil.protocols.interconnect.ecdh import BodyOptions, run_ecdh_body
from veil.protocols.interconnect.suite import EcdhCipher, suite_named
from veil.protocols.interconnect.vocab import ALL_RANKS, HANDSHAKE_VERSION, ROOT_CHANNEL

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IcPsiOptions:
    """How this party runs the interconnection PSI.

    ``result_to_rank``: -1 = both parties learn the intersection, else that rank only.
    ``handshake=False`` skips the handshake (SecretFlow's ``-disable_handshake=1``).
    ``handshake_version`` exists so tests can propose a version the peer must refuse.
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
        if self.body.batch_size < 1:
            raise ConfigError("batch_size", "must be at least 1")
        if not 1 <= self.body.dual_bytes <= 32:
            raise ConfigError("dual_bytes", "must be between 1 and 32")


@dataclass(frozen=True)
class IcPsiResult:
    """``indices``: positions of this party's items in the intersection (None when this
    party does not get the result); ``peer_item_num``: what the peer declared (-1 unknown)."""

    indices: list[int] | None
    peer_item_num: int
    fin_received: bool


def run_interconnect_psi(
    transport: Transport,
    items: Sequence[bytes],
    opts: IcPsiOptions,
    progress: Callable[[str, float], None] | None = None,
) -> IcPsiResult:
    """Run this party's side against rank ``1 - opts.rank`` on ``transport``."""
    if transport.rank != opts.rank:
        raise ConfigError("rank", f"transport is rank {transport.rank}, options say {opts.rank}")
    if not all(isinstance(x, bytes) for x in items):
        raise ConfigError("items", "items must be bytes", "encode ids with str.encode('utf-8')")
    peer = 1 - opts.rank
    suite = suite_named(opts.curve)
    fin_ok = False
    connect_mesh(transport, [peer], opts.connect_timeout)
    try:
        root = IcChannel(transport, ROOT_CHANNEL, opts.timeout)
        peer_items = -1
        if opts.handshake:
            terms = hs.Terms(suite, len(items), opts.result_to_rank, opts.handshake_version)
            decide = opts.rank == 0
            agreed = hs.decide(root, peer, terms) if decide else hs.propose(root, 0, terms)
            peer_items = agreed.peer_item_num
        cipher = EcdhCipher(suite, EcdhCipher.new_secret())
        idx = run_ecdh_body(
            root, peer, items, cipher, opts.result_to_rank, opts=opts.body, progress=progress
        )
    finally:
        try:
            send_fin(transport, [peer])
            fin_ok = wait_fin(transport, [peer], opts.fin_timeout)
        except NetworkError as e:
            _log.warning("FIN exchange with rank %d failed: %s", peer, e)
    if not fin_ok:
        _log.warning("rank %d sent no FIN within %.0f s", peer, opts.fin_timeout)
    return IcPsiResult(idx, peer_items, fin_ok)
