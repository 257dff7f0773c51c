"""ECDH-PSI body in interconnection mode [Huberman-Franklin-Hogg 1999; PPCA 9-2023].

Both parties run the same role; ``result_to_rank`` says who learns the intersection.
Each party sends its *distinct* ids in a secret random order (the wire does not care;
the reference peer sends its file order, duplicates included).
Flow, three streams per party (SecretFlow's libpsi runs them in three threads; Veil
interleaves 1 and 2 in one loop, as native psi does, and reads 3 at the end):
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

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from veil.crypto import ecc
from veil.errors import ProtocolError
from veil.protocols.interconnect.channel import IcChannel
from veil.protocols.interconnect.proto import ecdh_psi_pb2
from veil.protocols.interconnect.suite import IcSuite
from veil.protocols.interconnect.vocab import ALL_RANKS, BATCH_SIZE, DUAL_ENC_BYTES, BatchType
from veil.protocols.psi import common as psi


@dataclass(frozen=True)
class BodyOptions:
    """Knobs of the ECDH-PSI body; defaults are what the reference peer uses.
    ``threads=None`` lets X25519 use every core."""

    batch_size: int = BATCH_SIZE
    dual_bytes: int = DUAL_ENC_BYTES
    threads: int | None = None


class _BatchSender:
    """One outgoing ``EcdhPsiCipherBatch`` stream: numbered batches, then the empty one."""

    def __init__(self, ch: IcChannel, dst: int, kind: BatchType) -> None:
        self.ch, self.dst, self.kind, self.index = ch, dst, kind, 0

    def send(self, count: int, packed: bytes) -> None:
        msg = ecdh_psi_pb2.EcdhPsiCipherBatch(
            type=self.kind, batch_index=self.index, is_last_batch=False, count=count,
            ciphertext=packed,
        )  # fmt: skip
        self.ch.send(self.dst, msg.SerializeToString())
        self.index += 1

    def finish(self) -> None:
        end = ecdh_psi_pb2.EcdhPsiCipherBatch(
            type=self.kind, batch_index=self.index, is_last_batch=True, count=0
        )
        self.ch.send(self.dst, end.SerializeToString())


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

    enc_out = _BatchSender(ch, peer, BatchType.ENC)
    dual_out = _BatchSender(dual_ch, peer, BatchType.DUAL_ENC) if peer_gets else None
    peer_in = _recv_batches(ch, peer, BatchType.ENC, width)
    nb = -(-n // bs)
    try:
        with ecc.ScalarMultiplier(opts.threads, es) as mul:
            # Interleaved like native psi: own batch i out, peer batch i in. Neither side
            # waits for the other before sending, so this cannot deadlock, and the
            # peer's dual.enc stream waits in the mailbox until step 3.
            i, own_done, peer_done = 0, n == 0, False
            if own_done:
                enc_out.finish()
            while not (own_done and peer_done):
                if not own_done:
                    idx = order[i * bs : (i + 1) * bs]
                    points = ecc.hash_to_points([raw[j] for j in idx], es)
                    enc_out.send(len(idx), b"".join(mul(scalar, points)))
                    i += 1
                    if i == nb:
                        enc_out.finish()
                        own_done = True
                    if progress:
                        progress("enc", i / nb)
                if not peer_done:
                    got = next(peer_in, None)
                    if got is None:
                        peer_done = True
                        if dual_out:
                            dual_out.finish()
                        continue
                    count, packed = got
                    dual = ecc.truncate(mul(scalar, ecc.split_points(packed, width)), dual_w, es)
                    if self_gets:
                        peer_duals.append(dual)
                    if dual_out:
                        dual_out.send(count, dual)
        if self_gets:
            for _, packed in _recv_batches(dual_ch, peer, BatchType.DUAL_ENC, dual_w):
                own_duals.append(packed)
    except BaseException as e:
        ch.transport.abort(f"interconnection PSI failed: {e}")
        raise
    if not self_gets:
        return None
    mine = b"".join(own_duals)
    if len(mine) != n * dual_w:
        raise ProtocolError(f"peer returned {len(mine) // dual_w} dual ciphertexts for our {n}")
    hits = psi.match_duals(mine, b"".join(peer_duals), dual_w)
    return np.asarray(order[hits], dtype=np.int64)
