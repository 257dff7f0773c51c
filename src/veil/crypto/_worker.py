"""Local worker processes for CPU-bound HE kernels, without multiprocessing or pickle.

Each worker is ``python -m veil.crypto._worker`` talking over its stdin/stdout pipes in
length-prefixed :mod:`veil.codec` frames (big integers as fixed-width ``IntArray``).
Unlike ``multiprocessing`` (spawn/forkserver re-import the caller's ``__main__``; fork of
a threaded parent can deadlock) this works from any script, notebook or thread. Nothing
here leaves the machine. Workers cache fixed-base tables between tasks.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

import numpy as np
from gmpy2 import mpz

from veil.codec import MIN_INT_WIDTH, IntArray, decode, encode
from veil.crypto import _kernels as kern
from veil.crypto._fixedbase import FixedBase, from_spec

_LEN = struct.Struct("<Q")


def pack_ints(values: Any, m: Any) -> IntArray:
    """Residues mod ``m`` (ints or mpz) for the pipe, at ``m``'s byte width."""
    return IntArray(list(values), max(MIN_INT_WIDTH, (int(m).bit_length() + 7) // 8))


def unpack_ints(arr: IntArray) -> list[Any]:
    return [mpz(v) for v in arr.values]


def _write(stream: IO[bytes], value: Any) -> None:
    data = encode(value)
    stream.write(_LEN.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError("worker pipe closed")
    (n,) = _LEN.unpack(head)
    return decode(stream.read(n))


# -- worker side -----------------------------------------------------------------------
_TABLES: dict[tuple[Any, ...], FixedBase] = {}
_MAX_TABLES = 4


def _table(spec: list[Any]) -> FixedBase:
    key = tuple(spec)
    table = _TABLES.pop(key, None)
    if table is None:
        table = from_spec(key)
    _TABLES[key] = table  # most recently used last
    while len(_TABLES) > _MAX_TABLES:  # bound memory when a process sees many keys
        del _TABLES[next(iter(_TABLES))]
    return table


def _op_random_pow(spec: list[Any], count: int) -> Any:
    table = _table(spec)
    out = table.pow_digits(table.random_digits(count))
    return pack_ints(out, table.modulus)


def _op_fixed_pow(spec: list[Any], exps: IntArray) -> Any:
    table = _table(spec)
    return pack_ints(table.pow_ints(exps.values), table.modulus)


def _op_group_product(cts: IntArray, groups: np.ndarray, n_groups: int, m: int) -> Any:
    out = kern.group_product_columns(unpack_ints(cts), groups, n_groups, mpz(m))
    return pack_ints(out, m)


def _op_multi_exp(bases: IntArray, cols: Any, m: int) -> Any:
    bs, mm = unpack_ints(bases), mpz(m)
    if isinstance(cols, np.ndarray):
        cols = cols.astype(np.int64)
    return pack_ints([kern.signed_multi_exp(bs, c, mm) for c in cols], m)


_OPS: dict[str, Callable[..., Any]] = {
    "random_pow": _op_random_pow,
    "fixed_pow": _op_fixed_pow,
    "group_product": _op_group_product,
    "multi_exp": _op_multi_exp,
}


def main() -> None:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            task = _read(inp)
        except EOFError:
            return
        try:
            result = {"ok": _OPS[task["op"]](*task["args"])}
        except Exception as e:  # reported to the caller, which raises
            result = {"error": f"{type(e).__name__}: {e}"}
        _write(out, result)


# -- caller side -----------------------------------------------------------------------
class Worker:
    """One worker process; ``call`` is serialised by a lock (one task at a time)."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "veil.crypto._worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        self._lock = threading.Lock()

    def call(self, op: str, *args: Any) -> Any:
        with self._lock:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            _write(self._proc.stdin, {"op": op, "args": list(args)})
            reply = _read(self._proc.stdout)
        if "error" in reply:
            raise RuntimeError(f"HE worker failed: {reply['error']}")
        return reply["ok"]

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()


if __name__ == "__main__":
    main()
