"""ECDH-PSI body in interconnection mode [Huberman-Franklin-Hogg 1999; PPCA 9-2023].

Both parties run the same role; ``result_to_rank`` says who learns the intersection.
Each party sends its *distinct* ids in a secret random order (the wire does not care;
the reference peer sends its file order, duplicates included).
Flow, three concurrent streams per party (as SecretFlow's libpsi runs them):
  1. mask self:  send ``enc`` batches k·H(x) (≤4096 points of 32 bytes) on the root
     channel, then an empty batch (count 0, is_last_batch) that ends the stream;
  2. mask peer:  for each ``enc`` batch of the peer, compute k·(k'·H(y)), keep its last
     12 bytes, and if the peer gets the result send them back as a ``dual.enc`` batch on
     the sub-channel ``root-0`` (same batch index), then an empty batch;
  3. receive dual (if this party gets the result): the peer's ``dual.enc`` batches of our
     own points, in our order; an item is in the intersection when its 12 bytes are among
     the peer items' 12 bytes computed in step 2.
Whatever truncation the handshake advertised, dual ciphertexts are cut to 12 bytes,
because the reference peer does so (96 bits: false-match chance ≈ n·m/2^96).

What each party learns: the other's number of (distinct, for Veil) ids; a result
receiver learns which of its ids are common, in an order that hides the peer's
positions; the other party learns nothing more. Ids and plain hashes never cross
the wire: only k·H(x) and 12-byte truncations of k·k'·H(x).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from veil.crypto import ecc
from veil.errors import ProtocolError
from veil.protocols import psi
from veil.protocols.interconnect.channel import IcChannel
from veil.protocols.interconnect.proto import ecdh_psi_pb2
from veil.protocols.interconnect.suite import IcSuite
from veil.protocols.interconnect.vocab import ALL_RANKS, BATCH_SIZE, DUAL_ENC_BYTES, BatchType


@dataclass(frozen=True)
class BodyOptions:
    """Knobs of the ECDH-PSI body; defaults are what the reference peer uses.
    ``threads=None`` lets X25519 use every core."""

    batch_size: int = BATCH_SIZE
    dual_bytes: int = DUAL_ENC_BYTES
    threads: int | None = None


def _send_batches(
    ch: IcChannel, dst: int, kind: BatchType, batches: Iterator[tuple[int, bytes]]
) -> None:
    """Send ``EcdhPsiCipherBatch`` messages of (count, packed points), then the empty one."""
    idx = 0
    for count, packed in batches:
        if count == 0:
            continue
        msg = ecdh_psi_pb2.EcdhPsiCipherBatch(
            type=kind, batch_index=idx, is_last_batch=False, count=count, ciphertext=packed
        )
        ch.send(dst, msg.SerializeToString())
        idx += 1
    end = ecdh_psi_pb2.EcdhPsiCipherBatch(type=kind, batch_index=idx, is_last_batch=True, count=0)
    ch.send(dst, end.SerializeToString())


def _recv_batches(
    ch: IcChannel, src: int, kind: BatchType, width: int
) -> Iterator[tuple[int, bytes]]:
    """Yield (count, packed points) until the empty batch; check type, index and size.

    ``is_last_batch`` on a batch that holds points is ignored: the reference peer ends
    a stream only with an empty batch.
    """
    expect = 0
    while True:
        buf = ch.recv(src)
        try:
            b = ecdh_psi_pb2.EcdhPsiCipherBatch.FromString(buf)
        except Exception:
            raise ProtocolError(
                f"{ch.id}: peer sent something that is not an EcdhPsiCipherBatch"
            ) from None
        if b.type != kind:
            raise ProtocolError(f"{ch.id}: expected a '{kind}' batch, got '{b.type}'")
        if b.batch_index != expect:
            raise ProtocolError(f"{ch.id}: expected batch {expect}, got {b.batch_index}")
        if b.count == 0:
            return
        if b.count < 0 or len(b.ciphertext) != b.count * width:
            raise ProtocolError(
                f"{ch.id}: '{kind}' batch {expect} holds {len(b.ciphertext)} bytes for "
                f"{b.count} points of {width} bytes"
            )
        yield b.count, b.ciphertext
        expect += 1


def _run_concurrently(jobs: list[Callable[[], None]], name: str) -> BaseException | None:
    """Run ``jobs`` in daemon threads; return the first error as soon as one fails."""
    errors: queue.Queue[BaseException | None] = queue.Queue()

    def wrap(job: Callable[[], None]) -> None:
        try:
            job()
            errors.put(None)
        except BaseException as e:
            errors.put(e)

    for j in jobs:
        threading.Thread(target=wrap, args=(j,), name=name, daemon=True).start()
    for _ in jobs:
        e = errors.get()
        if e is not None:
            return e
    return None


def run_ecdh_body(
    ch: IcChannel,
    peer: int,
    raw: Sequence[bytes],
    order: np.ndarray,
    suite: IcSuite,
    *,
    result_to_rank: int,
    opts: BodyOptions = BodyOptions(),
    progress: Callable[[str, float], None] | None = None,
) -> np.ndarray | None:
    """Run this party's side on ids ``raw`` sent in the order ``order`` (distinct ids,
    shuffled); return the input positions of the common ids, sorted by their dual
    ciphertext (an order both receivers share), or None when this party gets no result."""
    me = ch.rank
    self_gets = result_to_rank in (ALL_RANKS, me)
    peer_gets = result_to_rank in (ALL_RANKS, peer)
    dual_ch = ch.spawn()
    es = suite.ecc_suite
    width, dual_w, bs = suite.point_bytes, opts.dual_bytes, opts.batch_size
    scalar = ecc.new_scalar(es)
    n = len(order)
    peer_duals: list[bytes] = []
    own_duals: list[bytes] = []

    with ecc.ScalarMultiplier(opts.threads) as mul:

        def mask_self() -> None:
            def gen() -> Iterator[tuple[int, bytes]]:
                for i in range(0, n, bs):
                    idx = order[i : i + bs]
                    points = ecc.hash_to_points([raw[j] for j in idx], es)
                    yield len(idx), b"".join(mul(scalar, points))
                    if progress:
                        progress("enc", min(1.0, (i + bs) / max(n, 1)))

            _send_batches(ch, peer, BatchType.ENC, gen())

        def mask_peer() -> None:
            def gen() -> Iterator[tuple[int, bytes]]:
                for count, packed in _recv_batches(ch, peer, BatchType.ENC, width):
                    dual = ecc.truncate(mul(scalar, ecc.split_points(packed, width)), dual_w, es)
                    if self_gets:
                        peer_duals.append(dual)
                    yield count, dual

            if peer_gets:
                _send_batches(dual_ch, peer, BatchType.DUAL_ENC, gen())
            else:
                for _ in gen():
                    pass

        def recv_dual() -> None:
            for _, packed in _recv_batches(dual_ch, peer, BatchType.DUAL_ENC, dual_w):
                own_duals.append(packed)

        jobs = [mask_self, mask_peer] + ([recv_dual] if self_gets else [])
        err = _run_concurrently(jobs, f"ic-psi-{me}")
    if err is not None:
        ch.transport.abort(f"interconnection PSI failed: {err}")
        raise err
    if not self_gets:
        return None
    mine = b"".join(own_duals)
    if len(mine) != n * dual_w:
        raise ProtocolError(f"peer returned {len(mine) // dual_w} dual ciphertexts for our {n}")
    hits = psi.match_duals(mine, b"".join(peer_duals), dual_w)
    return np.asarray(order[hits], dtype=np.int64)
