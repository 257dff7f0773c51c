"""Per-id state of a PSI party kept in buckets, in memory or in files: no protocol.

A party with more ids than memory keeps its fixed-width records (e.g. a blinded value
and the id's input position) in 2^bits buckets chosen by a pseudorandom prefix of the
value, one file per bucket in a private temporary folder, and later works on one bucket
at a time; equal values fall into one bucket, so de-duplication and matching are
bucket-local and the memory of a run is that of one bucket (and a write buffer), not
of the whole set. With ``folder=None`` the same buckets are held in memory, so both
ways run one algorithm and give the same bytes.

Files: records are appended in the order added (so a bucket keeps input order), a
bucket is rewritten with a temporary file and a rename, and the folder is removed on
:meth:`BucketStore.close` (also on error, as a context manager).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

import numpy as np

from veil.errors import ConfigError

FLUSH_ROWS = 1 << 20  # records buffered before they are written to their buckets' files
MAX_BITS = 16
BUCKET_ROWS = 1 << 12  # records per bucket that bits_for aims at


def bits_for(count: int | None, most: int) -> int:
    """Bucket bits for about ``count`` records (None: unknown, e.g. streamed): enough for
    BUCKET_ROWS records per bucket, at most ``most``."""
    if count is None:
        return most
    return max(0, min(most, math.ceil(math.log2(max(count, 1) / BUCKET_ROWS))))


def prefix_buckets(values: np.ndarray, bits: int) -> np.ndarray:
    """The bucket of each fixed-width byte string: its first ``bits`` bits (big-endian),
    so buckets in ascending order hold the values in ascending byte order."""
    if bits == 0:
        return np.zeros(len(values), dtype=np.int64)
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(len(values), -1)
    if raw.shape[1] < 2:
        raise ValueError("values must be at least 2 bytes wide")
    head = (raw[:, 0].astype(np.int64) << 8) | raw[:, 1]
    return head >> (16 - bits)


class BucketStore:
    """Records of one numpy ``dtype`` in ``2**bits`` buckets (see the module docstring)."""

    def __init__(
        self,
        dtype: np.dtype,
        bits: int,
        folder: str | os.PathLike[str] | None,
        *,
        flush_rows: int | None = None,
    ) -> None:
        if not 0 <= bits <= MAX_BITS:
            raise ValueError(f"bits must be in 0..{MAX_BITS}, got {bits}")
        self.dtype = np.dtype(dtype)
        self.bits = bits
        self.buckets = 1 << bits
        self._counts = np.zeros(self.buckets, dtype=np.int64)
        self._flush_rows = max(int(flush_rows or FLUSH_ROWS), 1)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_rows = 0
        self._held: list[list[np.ndarray]] | None = None
        self._dir: Path | None = None
        if folder is None:
            self._held = [[] for _ in range(self.buckets)]
        else:
            base = Path(folder)
            if not base.is_dir():
                raise ConfigError(
                    "spill_dir", f"{str(base)!r} is not a folder", "give an existing folder"
                )
            self._dir = Path(tempfile.mkdtemp(prefix="veil-psi-", dir=base))

    @property
    def folder(self) -> Path | None:
        """The private folder of the bucket files (None when held in memory)."""
        return self._dir

    def add(self, records: np.ndarray, buckets: np.ndarray) -> None:
        """Append ``records`` (of this store's dtype), the i-th to bucket ``buckets[i]``."""
        if records.dtype != self.dtype or len(records) != len(buckets):
            raise ValueError("records must be of the store's dtype, one bucket each")
        if len(records) == 0:
            return
        self._pending.append((records, np.asarray(buckets, dtype=np.int64)))
        self._pending_rows += len(records)
        # in memory, records go to their buckets at once (no buffer: one copy of the set)
        if self._held is not None or self._pending_rows >= self._flush_rows:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records to their buckets (stable: input order is kept)."""
        if not self._pending:
            return
        records, where = (
            self._pending[0]
            if len(self._pending) == 1
            else (
                np.concatenate([r for r, _ in self._pending]),
                np.concatenate([b for _, b in self._pending]),
            )
        )
        self._pending, self._pending_rows = [], 0
        order = np.argsort(where.astype(np.uint16), kind="stable")  # radix: bits <= 16
        counts = np.bincount(where, minlength=self.buckets)
        starts = np.zeros(self.buckets + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        records = records[order]
        del order, where
        for b in np.flatnonzero(counts).tolist():
            part = records[starts[b] : starts[b + 1]]
            if self._held is not None:
                self._held[b].append(part.copy())  # so the buffer is freed now
            else:
                with open(self._path(b), "ab") as f:
                    f.write(part.tobytes())
        self._counts += counts

    def count(self, b: int) -> int:
        """Records in bucket ``b`` (after :meth:`flush`)."""
        return int(self._counts[b])

    def __len__(self) -> int:
        return int(self._counts.sum()) + self._pending_rows

    def read(self, b: int) -> np.ndarray:
        """Every record of bucket ``b``, in the order added (call :meth:`flush` first)."""
        if self._held is not None:
            parts = self._held[b]
            if len(parts) != 1:
                parts[:] = [np.concatenate(parts)] if parts else [np.empty(0, self.dtype)]
            return parts[0]
        if not self._counts[b]:
            return np.empty(0, dtype=self.dtype)
        return np.fromfile(self._path(b), dtype=self.dtype)

    def write(self, b: int, records: np.ndarray) -> None:
        """Replace bucket ``b`` by ``records`` (e.g. its distinct records, sorted)."""
        if records.dtype != self.dtype:
            raise ValueError("records must be of the store's dtype")
        if self._held is not None:
            self._held[b] = [records]
        else:
            tmp = self._path(b) + ".tmp"
            records.tofile(tmp)
            os.replace(tmp, self._path(b))
        self._counts[b] = len(records)

    def drop(self, b: int) -> None:
        """Forget bucket ``b`` (done with it): frees its memory or its file."""
        if self._held is not None:
            self._held[b] = []
        elif self._dir is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._path(b))

    def close(self) -> None:
        """Forget everything; remove the folder."""
        self._pending, self._held = [], None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> BucketStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _path(self, b: int) -> str:
        # a str, not a Path: pathlib interns every name it parses, thousands per run
        assert self._dir is not None
        return os.path.join(self._dir, f"{b:05d}.bin")
