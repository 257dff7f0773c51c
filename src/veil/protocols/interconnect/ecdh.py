"""ECDH-PSI body in interconnection mode [Huberman-Franklin-Hogg 1999; PPCA 9-2023].

Both parties run the same role; ``result_to_rank`` says who learns the intersection.
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
because the reference peer does so (96 bits: collision chance ≈ n·m/2^96).

What each party learns: the other's set size; the result receiver(s) learn the
intersection; the other party learns nothing more. Ids never cross the wire.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from veil.errors import ProtocolError
from veil.protocols.interconnect.channel import IcChannel
from veil.protocols.interconnect.proto import ecdh_psi_pb2
from veil.protocols.interconnect.suite import EcdhCipher
from veil.protocols.interconnect.vocab import ALL_RANKS, BATCH_SIZE, DUAL_ENC_BYTES, BatchType


@dataclass(frozen=True)
class BodyOptions:
    """Knobs of the ECDH-PSI body; defaults are what the reference peer uses."""

    batch_size: int = BATCH_SIZE
    dual_bytes: int = DUAL_ENC_BYTES


def _send_batches(ch: IcChannel, dst: int, kind: BatchType, batches: Any, width: int) -> int:
    """Send ``EcdhPsiCipherBatch`` messages, then the empty last one; return batch count."""
    idx = 0
    for points in batches:
        if not points:
            continue
        msg = ecdh_psi_pb2.EcdhPsiCipherBatch(
            type=kind,
            batch_index=idx,
            is_last_batch=False,
            count=len(points),
            ciphertext=b"".join(p[-width:] for p in points),
        )
        ch.send(dst, msg.SerializeToString())
        idx += 1
    end = ecdh_psi_pb2.EcdhPsiCipherBatch(type=kind, batch_index=idx, is_last_batch=True, count=0)
    ch.send(dst, end.SerializeToString())
    return idx


def _recv_batches(ch: IcChannel, src: int, kind: BatchType, width: int | None) -> Any:
    """Yield (batch_index, [points]) until the empty batch; check type, index and size."""
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
            raise ProtocolError(f"{ch.id}: expected '{kind}' batch, got '{b.type}'")
        if b.batch_index != expect:
            raise ProtocolError(f"{ch.id}: expected batch {expect}, got {b.batch_index}")
        if b.count == 0:
            return
        w = width or len(b.ciphertext) // b.count
        if w == 0 or len(b.ciphertext) != b.count * w:
            raise ProtocolError(
                f"{ch.id}: batch {expect} holds {len(b.ciphertext)} bytes for {b.count} points"
            )
        data = b.ciphertext
        yield expect, [data[i : i + w] for i in range(0, len(data), w)]
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
    items: Sequence[bytes],
    cipher: EcdhCipher,
    result_to_rank: int,
    *,
    opts: BodyOptions = BodyOptions(),
    progress: Callable[[str, float], None] | None = None,
) -> list[int] | None:
    """Run this party's side; return indices of ``items`` in the intersection, or None
    when this party does not get the result."""
    me = ch.rank
    self_gets = result_to_rank in (ALL_RANKS, me)
    peer_gets = result_to_rank in (ALL_RANKS, peer)
    dual_ch = ch.spawn()
    width = cipher.suite.point_bytes
    n = len(items)
    bs = opts.batch_size

    def mask_self() -> None:
        def gen() -> Any:
            for i in range(0, n, bs):
                yield cipher.hash_and_mask(items[i : i + bs])
                if progress:
                    progress("enc", min(1.0, (i + bs) / max(n, 1)))

        _send_batches(ch, peer, BatchType.ENC, gen(), width)

    peer_duals: set[bytes] = set()
    lock = threading.Lock()

    def mask_peer() -> None:
        def gen() -> Any:
            for _, pts in _recv_batches(ch, peer, BatchType.ENC, width):
                dual = [d[-opts.dual_bytes :] for d in cipher.mask(pts)]
                if self_gets:
                    with lock:
                        peer_duals.update(dual)
                yield dual

        if peer_gets:
            _send_batches(dual_ch, peer, BatchType.DUAL_ENC, gen(), opts.dual_bytes)
        else:
            for _ in gen():
                pass

    own_duals: list[bytes] = []

    def recv_dual() -> None:
        for _, pts in _recv_batches(dual_ch, peer, BatchType.DUAL_ENC, None):
            own_duals.extend(pts)

    jobs = [mask_self, mask_peer] + ([recv_dual] if self_gets else [])
    err = _run_concurrently(jobs, f"ic-psi-{me}")
    if err is not None:
        ch.transport.abort(f"interconnection PSI failed: {err}")
        raise err
    if not self_gets:
        return None
    if len(own_duals) != n:
        raise ProtocolError(f"peer returned {len(own_duals)} dual ciphertexts for our {n} items")
    w = min((len(d) for d in own_duals), default=opts.dual_bytes)
    theirs = peer_duals if w == opts.dual_bytes else {d[-w:] for d in peer_duals}
    return [i for i, d in enumerate(own_duals) if d[-w:] in theirs]
