"""Batch helpers of the multi-party PSI (:mod:`.multiparty`): fixed-width rows of
points, hashing and scalar multiplication of a batch over threads, batched receives,
matching in a shared order, and a step run beside the main one on a background thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np

from veil import messages as msg
from veil.crypto import ecc, ristretto
from veil.errors import ProtocolError
from veil.net.session import Session

P = ristretto.POINT_BYTES


def rows(data: bytes, width: int) -> np.ndarray:
    """``data`` as a read-only (count, width) array of bytes (no copy)."""
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, width)


def join_halves(a: bytes, b: bytes) -> bytes:
    """Rows ``a_i || b_i`` of two batches of 32-byte points (ciphertexts (A, B))."""
    return np.concatenate((rows(a, P), rows(b, P)), axis=1).tobytes()


def mult(mul: ecc.ScalarMultiplier, k: bytes, points: bytes) -> bytes:
    """``[k]P`` for each 32-byte point of ``points``, spread over the threads."""

    def part(lo: int, hi: int) -> bytes:
        return ristretto.scalar_mult(k, points[lo * P : hi * P])

    return b"".join(mul.map(part, len(points) // P))


def hash_points(mul: ecc.ScalarMultiplier, items: list[bytes], chunk: int = 1 << 14) -> np.ndarray:
    """H(x) of each id (ristretto255), as (count, 32) rows, ``chunk`` ids per thread task
    (no list of a million small points is ever built)."""
    out = np.empty((len(items), P), dtype=np.uint8)

    def part(lo: int, hi: int, base: int) -> None:
        for i in range(base + lo, base + hi, chunk):
            j = min(i + chunk, base + hi)
            out[i:j] = rows(b"".join(ecc.hash_to_points(items[i:j], ecc.RISTRETTO255)), P)

    step = chunk * mul.threads
    for base in range(0, len(items), step):
        mul.map(part, min(step, len(items) - base), base)
    return out


def sorted_result(mul: ecc.ScalarMultiplier, k: bytes, points: bytes) -> tuple[bytes, bytes]:
    """``[k]P`` for each point, sorted, and the points themselves in that same order."""
    kp = rows(mult(mul, k, points), P)
    order = np.argsort(kp.view(f"S{P}").reshape(-1), kind="stable")
    return kp[order].tobytes(), rows(points, P)[order].tobytes()


def match_in_order(own: bytes, targets: bytes) -> np.ndarray:
    """The position in ``own`` of each 32-byte value of ``targets``, in ``targets``' order;
    every target must be there (the common set is part of every set)."""
    mine = np.frombuffer(own, dtype=f"S{P}")
    want = np.frombuffer(targets, dtype=f"S{P}")
    srt = np.argsort(mine, kind="stable")
    pos = np.minimum(np.searchsorted(mine[srt], want), max(len(mine) - 1, 0))
    if len(want) and (not len(mine) or not np.array_equal(mine[srt][pos], want)):
        raise ProtocolError("result.values: a common value matches none of this party's ids")
    return srt[pos] if len(want) else np.zeros(0, dtype=np.int64)


def recv_batches(
    session: Session, src: str, tag: str, *, count: int, batch: int, width: int, wait: float
) -> Iterator[np.ndarray]:
    """``count`` rows of ``width`` bytes from ``src``, as the sender cut them: messages of
    ``batch`` rows, the last one shorter; each one's size is checked."""
    for lo in range(0, count, batch):
        k = min(batch, count - lo)
        yield rows(msg.recv(session, src, tag, msg.Blob(k * width), wait), width)


class Background:
    """``fn()`` on a daemon thread; :meth:`result` waits for it and re-raises its error.
    A daemon, so a failing run is not held up by a step blocked on a dead peer."""

    def __init__(self, fn: Callable[[], bytes]) -> None:
        self._out: bytes = b""
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], bytes]) -> None:
        try:
            self._out = fn()
        except BaseException as e:
            self._error = e

    def result(self) -> bytes:
        """What ``fn`` returned, once it has."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._out
