"""Batch helpers of the multi-party PSI (:mod:`.multiparty`): fixed-width rows of
points, scalar multiplication of a batch over threads, batched receives, and a step run
beside the main one on a background thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np

from veil import messages as msg
from veil.crypto import ecc, ristretto
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
