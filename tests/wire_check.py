"""Wire-leak checks for protocol tests: record every frame, decode it, look for secrets.

Usage::

    from tests.wire_check import Recorder, assert_no_leak

    rec = Recorder()                       # a tap: rec(src, dst, key, payload)
    run_parties(..., tap=rec)
    assert_no_leak(rec.frames, {"labels": y, "ids": ids, "feature age": X[:, 0]})

Why not a byte search: a column searched as its float64 bytes passes unseen when it is
sent as a Python list (the codec tags each value), as float32 or int8, or as a subset of
rows. So every frame is decoded (:func:`veil.codec.decode`, or ``decode=``) and every
decoded value is walked: scalars, str, bytes, lists/tuples/dicts (keys too), numpy
arrays of every dtype (flattened, and column by column), :class:`veil.codec.IntArray`
and protobuf messages. Raw ``bytes`` values are also read as int8/uint8/int16/int32/
int64/float32/float64 arrays at every byte offset (both byte orders for 8-byte words).

What counts as a leak of each secret:

* **ids** (a sequence of str or bytes): a decoded str/bytes equal to an id; a str token
  equal to an id; any str/bytes/int/array bytes *containing* an id of at least
  ``_MIN_CONTAINED_ID`` bytes; any 8-byte window of an id's SHA-256, SHA-512, SHA-1,
  MD5, BLAKE2b or SHA3-256 digest, in either byte order, in any decoded bytes, str
  (also read as hex), int, integer array or IntArray. One hit is a leak. Blinded or
  encrypted ids (ECDH points, OPRF outputs) do not match and pass.
* **numbers** (features, labels, residuals, scores; any numeric array or list):
  - single values: a secret value is *distinctive* when it is not a small integer
    (|v| > 255 or not an integer). A decoded float64 equal to a distinctive value or to
    its float32 rounding, a decoded float32 equal to its float32 rounding, or a decoded
    integer (int, integer array, IntArray) equal to an integer-valued distinctive value
    is a hit. The secret leaks when ``min_hits`` distinct values hit (default 3, fewer
    if the secret has fewer distinctive values), so chance collisions with a count or
    two do not fail a test; the message lists the hits.
  - runs: any decoded sequence (array, column, list, dict values, raw bytes view) that
    contains ``min_run`` or more consecutive values equal to consecutive rows of the
    secret, or of the secret restricted to a named row subset (``subsets=``), with the
    secret taken as float64, float32, float16, truncated or rounded to integers. This
    catches labels as int8/bool/float32, a batch of rows, a whole column in any dtype.
    A run is reported only when it is also unlikely by chance: the sum of -log2 of each
    matched value's frequency in the secret, less log2 of the number of alignments,
    must reach ``min_bits`` (default 24). For balanced 0/1 labels over n rows that means
    about 24 + log2(n) rows; for real-valued data, ``min_run`` rows.

Options: ``allow`` (a predicate over frame keys exempting frames the test knows are
public; explicit by design), ``min_hits``, ``min_run``, ``min_bits``, ``subsets``
(name -> row indices) and ``decode`` (payload -> value, for non-codec frames such as
the interconnection protobufs; it may return a protobuf message). A frame that
``decode`` cannot decode is itself a failure, and so is a call that checks no frame.

Failures raise AssertionError naming the frame key, src->dst, the secret, the path of
the value inside the decoded frame and what was found.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from veil.codec import IntArray
from veil.codec import decode as codec_decode

_MIN_CONTAINED_ID = 6  # ids shorter than this are matched only whole (as a value or token)
_DIGESTS = ("sha256", "sha512", "sha1", "md5", "blake2b", "sha3_256")
_EXACT_FLOAT = 2.0**53
_MAX_REPORT = 20
_TOKEN = re.compile(r"[\w\-.@:+/]+")
_HEX = re.compile(r"[0-9a-fA-F]{16,}")
# Values that cannot be a float64 (huge ints): a NaN payload no secret value ever has.
_PLACEHOLDER = np.frombuffer(b"\x01\xad\xde\x00\x00\x00\xf8\x7f", dtype="<f8")[0]
_CANON_NAN = np.float64("nan")


class Frame(NamedTuple):
    """One message as the tap saw it."""

    src: int
    dst: int
    key: str
    payload: bytes


class Recorder:
    """A transport tap that keeps every frame (thread-safe: gRPC taps run on threads)."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self._lock = threading.Lock()

    def __call__(self, src: int, dst: int, key: str, payload: bytes) -> None:
        with self._lock:
            self.frames.append(Frame(int(src), int(dst), str(key), bytes(payload)))

    def keys(self) -> list[str]:
        with self._lock:
            return [f.key for f in self.frames]


# ---------------------------------------------------------------------------- walking


class _Block(NamedTuple):
    path: str
    kind: str  # f64 | f32 | int: single-value checks too; anything else: runs only
    values: np.ndarray  # float64


@dataclass
class _Leaves:
    texts: list[tuple[str, str]] = field(default_factory=list)  # whole str values
    raw: list[tuple[str, bytes]] = field(default_factory=list)  # whole bytes values
    blobs: list[tuple[str, bytes]] = field(default_factory=list)  # scanned for ids/digests
    blocks: list[_Block] = field(default_factory=list)


def _is_scalar(v: object) -> bool:
    return isinstance(v, bool | int | float | np.bool_ | np.integer | np.floating)


def _int_blob(v: int) -> bytes | None:
    v = abs(v)
    n = (v.bit_length() + 7) // 8
    return v.to_bytes(n, "little") if n >= _MIN_CONTAINED_ID else None


def _ints_to_f64(values: Iterable[int]) -> np.ndarray:
    return np.array(
        [float(v) if -_EXACT_FLOAT <= v <= _EXACT_FLOAT else _PLACEHOLDER for v in values],
        dtype=np.float64,
    )


def _scalar_seq(items: Sequence[Any], path: str, out: _Leaves) -> None:
    """A list of numbers (or the values of a dict) as one block."""
    if all(isinstance(v, bool | np.bool_) for v in items):
        out.blocks.append(_Block(path, "bool", np.array(items, dtype=np.float64)))
        return
    ints = [int(v) for v in items if isinstance(v, int | np.integer) and not isinstance(v, bool)]
    if len(ints) == len(items):
        out.blocks.append(_Block(path, "int", _ints_to_f64(ints)))
    else:
        vals = [
            float(v) if not isinstance(v, int) or abs(v) <= _EXACT_FLOAT else _PLACEHOLDER
            for v in items
        ]
        kind = "f32" if all(isinstance(v, np.float32) for v in items) else "f64"
        out.blocks.append(_Block(path, kind, np.array(vals, dtype=np.float64)))
    for v in ints:
        b = _int_blob(v)
        if b is not None:
            out.blobs.append((path, b))


def _walk_array(a: np.ndarray, path: str, out: _Leaves) -> None:
    k = a.dtype.kind
    if k in "SU":
        items = a.ravel().tolist()
        for i, s in enumerate(items):
            (out.texts if k == "U" else out.raw).append((f"{path}[{i}]", s))
        joined = b"\0".join(s.encode("utf-8") for s in items) if k == "U" else b"\0".join(items)
        out.blobs.append((path, joined))
        return
    if k == "c":
        _walk_array(np.ascontiguousarray(a.real), f"{path}.real", out)
        _walk_array(np.ascontiguousarray(a.imag), f"{path}.imag", out)
        return
    if k == "b":
        kind = "bool"
    elif k in "iu":
        kind = "int"
        out.blobs.append((path, np.ascontiguousarray(a).tobytes()))
    elif a.dtype.itemsize == 4:
        kind = "f32"
    elif a.dtype.itemsize == 2:
        kind = "f16"
    else:
        kind = "f64"
    flat = a.ravel()
    if k in "iu" and a.dtype.itemsize == 8:  # (u)int64 beyond 2**53 cannot be a float
        big = np.abs(flat.astype(np.float64)) > _EXACT_FLOAT
        vals = np.where(big, _PLACEHOLDER, flat.astype(np.float64))
    else:
        vals = flat.astype(np.float64)
    out.blocks.append(_Block(path, kind, vals))
    if a.ndim >= 2 and a.shape[-1] > 1:
        cols = vals.reshape(-1, a.shape[-1])
        for j in range(a.shape[-1]):
            out.blocks.append(_Block(f"{path}[..., {j}]", kind, np.ascontiguousarray(cols[:, j])))


def _walk_seq(items: Sequence[Any], path: str, out: _Leaves, depth: int) -> None:
    if not items:
        return
    if all(_is_scalar(v) for v in items):
        _scalar_seq(items, path, out)
        return
    first = items[0]
    if (
        isinstance(first, list | tuple)
        and first
        and all(
            isinstance(r, list | tuple) and len(r) == len(first) and all(_is_scalar(v) for v in r)
            for r in items
        )
    ):  # a table as a list of rows: also look at each column
        for j in range(len(first)):
            _scalar_seq([r[j] for r in items], f"{path}[:][{j}]", out)
    if isinstance(first, Mapping) and all(
        isinstance(r, Mapping) and r.keys() == first.keys() for r in items
    ):  # records: also look at each field as a column
        for k in first:
            col = [r[k] for r in items]
            if all(_is_scalar(v) for v in col):
                _scalar_seq(col, f"{path}[:][{k!r}]", out)
    for i, v in enumerate(items):
        _walk(v, f"{path}[{i}]", out, depth + 1)


def _walk(v: Any, path: str, out: _Leaves, depth: int = 0) -> None:
    if depth > 200:
        raise AssertionError(f"wire_check: value nested too deeply at {path}")
    if v is None:
        return
    if _is_scalar(v):
        _scalar_seq([v], path, out)
    elif isinstance(v, str):
        out.texts.append((path, v))
        out.blobs.append((path, v.encode("utf-8")))
        for m in _HEX.finditer(v):
            h = m.group()
            for off in (0, 1):
                s = h[off : off + (len(h) - off) // 2 * 2]
                out.blobs.append((f"{path} (as hex)", bytes.fromhex(s)))
    elif isinstance(v, bytes | bytearray | memoryview):
        b = bytes(v)
        out.raw.append((path, b))
        out.blobs.append((path, b))
        _raw_views(b, path, out)
    elif isinstance(v, np.ndarray):
        _walk_array(v, path, out)
    elif isinstance(v, IntArray):
        out.blocks.append(_Block(path, "int", _ints_to_f64(int(x) for x in v.values)))
        out.blobs.append((path, v.to_bytes()))
    elif isinstance(v, Mapping):
        keys = list(v.keys())
        vals = list(v.values())
        for k in keys:
            _walk(k, f"{path}<key>", out, depth + 1)
        if vals and all(_is_scalar(x) for x in vals):
            _scalar_seq(vals, f"{path}.values()", out)
        else:
            for k, x in zip(keys, vals, strict=True):
                _walk(x, f"{path}[{k!r}]", out, depth + 1)
    elif hasattr(v, "ListFields"):  # a protobuf message
        for fd, x in v.ListFields():
            _walk(x, f"{path}.{fd.name}", out, depth + 1)
    elif isinstance(v, Sequence) or (hasattr(v, "__len__") and hasattr(v, "__iter__")):
        _walk_seq(list(v), path, out, depth)
    else:
        raise AssertionError(f"wire_check: cannot inspect {type(v).__name__} at {path}")


_RAW_VIEWS = (
    ("u1", "raw uint8", "raw"),
    ("i1", "raw int8", "raw"),
    ("<i2", "raw int16", "raw"),
    ("<i4", "raw int32", "raw"),
    ("<f4", "raw float32", "raw"),
    ("<i8", "raw int64", "int"),
    (">i8", "raw int64 big-endian", "int"),
    ("<f8", "raw float64", "f64"),
    (">f8", "raw float64 big-endian", "f64"),
)


def _raw_views(b: bytes, path: str, out: _Leaves) -> None:
    """Read raw bytes as arrays of each common dtype at every offset."""
    for dt, label, kind in _RAW_VIEWS:
        size = np.dtype(dt).itemsize
        for off in range(size):
            n = (len(b) - off) // size
            if n <= 0:
                continue
            a = np.frombuffer(b, dtype=dt, count=n, offset=off)
            with np.errstate(all="ignore"):
                vals = a.astype(np.float64)
            if kind == "int" and size == 8:
                vals = np.where(np.abs(vals) > _EXACT_FLOAT, _PLACEHOLDER, vals)
            where = f"{path} ({label} at byte offset {off})" if size > 1 else f"{path} ({label})"
            out.blocks.append(_Block(where, kind, vals))


# ---------------------------------------------------------------------------- secrets


def _windows_u64(u8: np.ndarray, width: int) -> np.ndarray:
    """Little-endian integer of every ``width``-byte window (width <= 8)."""
    n = len(u8) - width + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    acc = np.zeros(n, dtype=np.uint64)
    for j in range(width):
        acc |= u8[j : j + n].astype(np.uint64) << np.uint64(8 * j)
    return acc


def _lookup(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Indices i of ``keys`` that occur in the sorted ``table``."""
    if len(table) == 0 or len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    pos = np.minimum(np.searchsorted(table, keys), len(table) - 1)
    return np.flatnonzero(table[pos] == keys)


class _Ids:
    def __init__(self, name: str, ids: Sequence[str | bytes]) -> None:
        self.name = name
        self.ids = [x if isinstance(x, bytes) else str(x).encode("utf-8") for x in ids]
        self.exact = set(self.ids)
        self.exact_str = {x.decode("utf-8", "replace") for x in self.ids}
        long_ids = sorted({x for x in self.ids if len(x) >= _MIN_CONTAINED_ID})
        self.by_prefix: dict[int, list[bytes]] = {}
        for x in long_ids:
            key = int.from_bytes(x[:_MIN_CONTAINED_ID], "little")
            self.by_prefix.setdefault(key, []).append(x)
        self.prefixes = np.array(sorted(self.by_prefix), dtype=np.uint64)
        wins: list[int] = []
        owner: list[tuple[int, str, int]] = []
        for i, x in enumerate(self.ids):
            for algo in _DIGESTS:
                d = hashlib.new(algo, x).digest()
                for off in range(len(d) - 7):
                    wins.append(int.from_bytes(d[off : off + 8], "little"))
                    owner.append((i, algo, off))
        order = np.argsort(np.array(wins, dtype=np.uint64), kind="stable")
        self.digest_windows = np.array(wins, dtype=np.uint64)[order]
        self.digest_owner = [owner[int(i)] for i in order]

    def scan(self, frame: Frame, leaves: _Leaves, report: list[str]) -> None:
        def hit(path: str, what: str) -> None:
            report.append(
                f"secret {self.name!r} in frame {frame.key!r} ({frame.src}->{frame.dst}) "
                f"at {path}: {what}"
            )

        for path, s in leaves.texts:
            if s in self.exact_str:
                hit(path, f"the id {s!r} as a str")
            else:
                for tok in _TOKEN.findall(s):
                    if tok in self.exact_str and tok != s:
                        hit(path, f"the id {tok!r} as a token of a str")
                        break
        for path, b in leaves.raw:
            if b in self.exact:
                hit(path, f"the id {b!r} as bytes")
        if not leaves.blobs:
            return
        parts: list[bytes] = []
        starts: list[int] = []
        pos = 0
        for _, b in leaves.blobs:
            starts.append(pos)
            parts.append(b)
            pos += len(b) + 8
        big = (b"\0" * 8).join(parts)
        paths = [p for p, _ in leaves.blobs]

        def where(i: int) -> str:
            k = max(0, int(np.searchsorted(starts, i, side="right")) - 1)
            return f"{paths[k]} byte {i - starts[k]}"

        for reverse in (False, True):
            data = big[::-1] if reverse else big
            u8 = np.frombuffer(data, dtype=np.uint8)
            order = " (byte-reversed)" if reverse else ""

            def at(i: int, n: int, _rev: bool = reverse, _len: int = len(data)) -> int:
                return _len - i - n if _rev else i

            if len(self.prefixes) and not reverse:
                keys = _windows_u64(u8, _MIN_CONTAINED_ID)
                for i in _lookup(self.prefixes, keys):
                    for x in self.by_prefix[int(keys[i])]:
                        if data[i : i + len(x)] == x:
                            hit(where(int(i)), f"contains the id {x!r}")
                            break
            keys = _windows_u64(u8, 8)
            for i in _lookup(self.digest_windows, keys):
                j = int(np.searchsorted(self.digest_windows, keys[i]))
                idx, algo, off = self.digest_owner[j]
                hit(
                    where(at(int(i), 8)),
                    f"8 bytes of {algo}(id {self.ids[idx]!r}) from digest byte {off}{order}",
                )


class _Numbers:
    def __init__(
        self, name: str, values: np.ndarray, subsets: Mapping[str, np.ndarray], min_run: int
    ) -> None:
        self.name = name
        v = np.asarray(values)
        if v.dtype.kind not in "biuf":
            raise TypeError(f"wire_check: secret {name!r} has dtype {v.dtype}, not numeric")
        x = v.ravel().astype(np.float64) + 0.0  # + 0.0 turns -0.0 into 0.0
        self.n_rows = len(x)
        fin = np.isfinite(x)
        distinct = fin & ((np.abs(x) > 255) | (x != np.round(x)))
        d = x[distinct]
        self.n_distinctive = len(np.unique(d))
        self.d64 = np.unique(d)
        self.d32 = np.unique(d.astype(np.float32).astype(np.float64))
        self.dint = np.unique(d[d == np.round(d)])
        self.f64_table = np.union1d(self.d64, self.d32)
        # runs: (label, values) variants
        self.variants: list[tuple[str, np.ndarray, np.ndarray]] = []
        rowsets: list[tuple[str, np.ndarray]] = [("", x)]
        for sname, idx in subsets.items():
            if len(idx) and idx.max() < len(x) and idx.min() >= 0:
                rowsets.append((f" restricted to subset {sname!r}", x[idx]))
        seen: set[bytes] = set()
        with np.errstate(all="ignore"):
            for rs_label, r in rowsets:
                for how, conv in (
                    ("float64", r),
                    ("float32", r.astype(np.float32).astype(np.float64)),
                    ("float16", r.astype(np.float16).astype(np.float64)),
                    ("truncated to int", np.trunc(r)),
                    ("rounded to int", np.rint(r)),
                ):
                    c = _canon(conv + 0.0)  # + 0.0: one zero
                    if len(c) < min_run or c.tobytes() in seen:
                        continue
                    seen.add(c.tobytes())
                    _, inv, counts = np.unique(
                        c.view(np.uint64), return_inverse=True, return_counts=True
                    )
                    info = -np.log2(counts[inv] / len(c))
                    self.variants.append((f"as {how}{rs_label}", c, info))


def _canon(a: np.ndarray) -> np.ndarray:
    """float64 values with one bit pattern per NaN class (real NaN vs placeholder)."""
    a = np.array(a, dtype=np.float64)
    bits = a.view(np.uint64)
    ph = bits == np.float64(_PLACEHOLDER).view(np.uint64)
    a[np.isnan(a) & ~ph] = _CANON_NAN
    return a


_MULT = np.uint64(0x9E3779B97F4A7C15)


def _window_hashes(a: np.ndarray, L: int) -> np.ndarray:
    bits = a.view(np.uint64)
    mixed = (bits ^ (bits >> np.uint64(31))) * _MULT
    n = len(a) - L + 1
    h = np.zeros(n, dtype=np.uint64)
    for j in range(L):
        h = (h * np.uint64(1099511628211)) ^ mixed[j : j + n]
    return h


class _RunTable:
    def __init__(self, secrets: list[_Numbers], L: int) -> None:
        self.L = L
        self.entries: list[tuple[_Numbers, str, np.ndarray, np.ndarray]] = []
        hashes: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        offsets: list[np.ndarray] = []
        for s in secrets:
            for label, c, info in s.variants:
                k = len(self.entries)
                self.entries.append((s, label, c, info))
                h = _window_hashes(c, L)
                hashes.append(h)
                owners.append(np.full(len(h), k, dtype=np.int64))
                offsets.append(np.arange(len(h), dtype=np.int64))
        if hashes:
            h_all = np.concatenate(hashes)
            order = np.argsort(h_all, kind="stable")
            self.hashes = h_all[order]
            self.owner = np.concatenate(owners)[order]
            self.offset = np.concatenate(offsets)[order]
        else:
            self.hashes = np.zeros(0, dtype=np.uint64)

    def scan(self, block: _Block, min_bits: float) -> list[tuple[_Numbers, str]]:
        if len(self.hashes) == 0 or len(block.values) < self.L:
            return []
        with np.errstate(invalid="ignore"):
            v = _canon(block.values + 0.0)
        vb = v.view(np.uint64)
        h = _window_hashes(v, self.L)
        found: list[tuple[_Numbers, str]] = []
        covered = -1
        best: dict[int, int] = {}  # entry -> longest reported run, to keep messages short
        for i in _lookup(self.hashes, h).tolist():
            if i < covered:
                continue
            lo = int(np.searchsorted(self.hashes, h[i], side="left"))
            hi = int(np.searchsorted(self.hashes, h[i], side="right"))
            for t in range(lo, hi):
                k, a = int(self.owner[t]), int(self.offset[t])
                s, label, c, info = self.entries[k]
                cb = c.view(np.uint64)
                if not np.array_equal(vb[i : i + self.L], cb[a : a + self.L]):
                    continue
                n = self.L
                while i + n < len(vb) and a + n < len(cb) and vb[i + n] == cb[a + n]:
                    n += 1
                bits = float(info[a : a + n].sum()) - math.log2(len(c))
                if bits >= min_bits and n > best.get(k, 0):
                    best[k] = n
                    covered = i + n
                    found.append(
                        (
                            s,
                            f"{n} consecutive values equal rows {a}..{a + n - 1} of the secret "
                            f"{label} at {block.path}[{i}:{i + n}] (decoded {block.kind}; "
                            f"{bits:.0f} bits)",
                        )
                    )
                    break
        return found


# ---------------------------------------------------------------------------- the check


def _classify(
    name: str, secret: Any, subsets: Mapping[str, np.ndarray], min_run: int
) -> _Ids | _Numbers:
    if isinstance(secret, str | bytes):
        return _Ids(name, [secret])
    if isinstance(secret, np.ndarray):
        if secret.dtype.kind in "SU":
            return _Ids(name, secret.ravel().tolist())
        if secret.dtype.kind == "O":
            secret = secret.ravel().tolist()
        else:
            return _Numbers(name, secret, subsets, min_run)
    items = list(secret) if isinstance(secret, Iterable) else [secret]
    if not items:
        raise ValueError(f"wire_check: secret {name!r} is empty; a check of nothing proves nothing")
    if all(isinstance(x, str | bytes) for x in items):
        return _Ids(name, items)
    return _Numbers(name, np.asarray(items), subsets, min_run)


def assert_no_leak(
    frames: Iterable[Frame | tuple[int, int, str, bytes]],
    secrets: Mapping[str, Any],
    *,
    allow: Callable[[str], bool] | None = None,
    min_hits: int = 3,
    min_run: int = 16,
    min_bits: float = 24.0,
    subsets: Mapping[str, Sequence[int] | np.ndarray] | None = None,
    decode: Callable[[bytes], Any] | None = None,
) -> None:
    """Raise AssertionError if any secret, in any encoding, is in any recorded frame.

    See the module docstring for what counts as a leak and what each option means.
    """
    if not secrets:
        raise ValueError("wire_check: no secrets given; a check of nothing proves nothing")
    if min_hits < 1 or min_run < 2:
        raise ValueError("wire_check: min_hits must be >= 1 and min_run >= 2")
    subs = {k: np.asarray(v, dtype=np.int64).ravel() for k, v in (subsets or {}).items()}
    checks = [_classify(name, s, subs, min_run) for name, s in secrets.items()]
    for sname, ix in subs.items():
        if not any(isinstance(c, _Numbers) and c.n_rows > ix.max(initial=-1) for c in checks):
            raise ValueError(f"wire_check: subset {sname!r} fits no numeric secret's rows")
    ids = [c for c in checks if isinstance(c, _Ids)]
    nums = [c for c in checks if isinstance(c, _Numbers)]
    runs = _RunTable(nums, min_run)
    dec = decode if decode is not None else codec_decode
    report: list[str] = []
    hits: dict[str, dict[float, str]] = {s.name: {} for s in nums}
    checked = 0
    for raw_frame in frames:
        frame = Frame(*raw_frame)
        if allow is not None and allow(frame.key):
            continue
        checked += 1
        try:
            value = dec(frame.payload)
        except Exception as e:
            report.append(
                f"frame {frame.key!r} ({frame.src}->{frame.dst}) does not decode "
                f"({type(e).__name__}: {e}); an undecodable frame cannot be checked"
            )
            continue
        leaves = _Leaves()
        _walk(value, "msg", leaves)
        for c in ids:
            c.scan(frame, leaves, report)
        for block in leaves.blocks:
            for s in nums:
                table = {"f64": s.f64_table, "f32": s.d32, "int": s.dint}.get(block.kind)
                if table is None or len(table) == 0:
                    continue
                for i in _lookup(table, block.values):
                    val = float(block.values[i])
                    hits[s.name].setdefault(
                        val,
                        f"{val!r} at {block.path}[{i}] in frame {frame.key!r} "
                        f"({frame.src}->{frame.dst})",
                    )
            for s, what in runs.scan(block, min_bits):
                report.append(
                    f"secret {s.name!r} in frame {frame.key!r} ({frame.src}->{frame.dst}): {what}"
                )
    for s in nums:
        need = min(min_hits, s.n_distinctive)
        found = hits[s.name]
        if need and len(found) >= need:
            listed = "; ".join(list(found.values())[:5])
            report.append(
                f"secret {s.name!r}: {len(found)} distinct values cross the wire "
                f"(min_hits={min_hits}), e.g. {listed}"
            )
    if checked == 0:
        report.append("no frame was checked: the tap saw nothing, or `allow` exempted all")
    if report:
        more = f"\n  ... and {len(report) - _MAX_REPORT} more" if len(report) > _MAX_REPORT else ""
        raise AssertionError(
            "wire leak check failed:\n  " + "\n  ".join(report[:_MAX_REPORT]) + more
        )
