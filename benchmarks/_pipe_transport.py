"""Run parties as separate OS processes joined by pipes (benchmarks only).

Threads of one Python process share one interpreter lock, so two parties in
threads cannot use two cores. Here each party is a forked process with a
:class:`PipeTransport` (length-prefixed key + payload frames over a duplex pipe,
read into a :class:`veil.net.transport.Mailbox` by a reader thread); results come
back to the parent as JSON strings.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

import psutil

from veil.net.session import Session
from veil.net.transport import Mailbox, TrafficStats, Transport

_ABORT = b"\x00veil-abort"


class PipeTransport(Transport):
    """One party's end of a full mesh of pipes."""

    def __init__(self, rank: int, conns: Mapping[int, Connection]) -> None:
        self.rank = rank
        self.stats = TrafficStats()
        self.conns = dict(conns)
        self.box = Mailbox()
        self._locks = {r: threading.Lock() for r in conns}
        for r, c in self.conns.items():
            threading.Thread(target=self._read, args=(r, c), daemon=True).start()

    def _read(self, src: int, conn: Connection) -> None:
        while True:
            try:
                frame = conn.recv_bytes()
            except (EOFError, OSError):
                return
            if frame.startswith(_ABORT):
                self.box.abort(src, frame[len(_ABORT) :].decode(errors="replace"))
                continue
            (n,) = struct.unpack_from("<I", frame)
            self.box.put(frame[4 : 4 + n].decode(), frame[4 + n :])

    def send(self, dst: int, key: str, payload: bytes) -> None:
        k = key.encode()
        self.stats.sent(dst, len(payload))
        with self._locks[dst]:
            self.conns[dst].send_bytes(struct.pack("<I", len(k)) + k + payload)

    def recv(self, src: int, key: str, timeout: float, peer_name: str = "") -> bytes:
        data = self.box.take(key, src, timeout, peer_name)
        self.stats.received(src, len(data))
        return data

    def abort(self, reason: str) -> None:
        for r, c in self.conns.items():
            try:
                with self._locks[r]:
                    c.send_bytes(_ABORT + reason.encode())
            except OSError:
                pass


def _cpu() -> float:
    """CPU seconds of this process and its live children (the HE engine's workers)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for ch in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(ch.cpu_times()[:2])
    return float(total)


def run_processes(
    targets: Mapping[str, Callable[[Session], Any]],
    roles: Mapping[str, str],
    timeout: float = 900.0,
) -> dict[str, dict[str, Any]]:
    """Run each party in its own forked process; each returns a JSON-able value.

    Returns ``{party: {"result": ..., "wall_s", "cpu_s", "bytes_sent"}}``.
    """
    names: Sequence[str] = list(targets)
    ctx = mp.get_context("fork")
    ends: dict[tuple[int, int], Connection] = {}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a, b = ctx.Pipe(duplex=True)
            ends[(i, j)], ends[(j, i)] = a, b
    q = ctx.Queue()

    def child(rank: int) -> None:
        conns = {j: ends[(rank, j)] for j in range(len(names)) if j != rank}
        t = PipeTransport(rank, conns)
        s = Session(t, names, names[rank], roles, timeout=timeout)
        t0, c0 = time.perf_counter(), _cpu()
        try:
            res = targets[names[rank]](s)
            err = None
        except BaseException as e:
            t.abort(f"{type(e).__name__}: {e}")
            res, err = None, f"{type(e).__name__}: {e}"
        cpu = _cpu() - c0
        out = {
            "result": res,
            "error": err,
            "wall_s": time.perf_counter() - t0,
            "cpu_s": cpu,
            "bytes_sent": t.stats.totals().bytes_sent,
        }
        q.put((names[rank], json.dumps(out)))

    procs = [ctx.Process(target=child, args=(r,), daemon=True) for r in range(len(names))]
    for p in procs:
        p.start()
    results = {}
    for _ in procs:
        name, raw = q.get(timeout=timeout)
        results[name] = json.loads(raw)
    for p in procs:
        p.join()
    errors = [r["error"] for r in results.values() if r["error"]]
    if errors:
        raise RuntimeError("; ".join(errors))
    return results
