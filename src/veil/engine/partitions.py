"""Data larger than memory: a directory of Parquet files read in partitions, each
partition's work sent to the engine, the results streamed back in input order.

A party's table may be one Parquet file or a directory of them as Spark writes it
(``part-00000-....parquet`` ...; names starting with ``_`` or ``.``, such as
``_SUCCESS`` and checksums, are skipped). :func:`parquet_partitions` yields it as
frames of at most ``rows`` rows, files in name order, rows in file order, reading one
partition at a time; :func:`stream` sends each to an :class:`~veil.engine.Engine` with
at most ``window`` in flight, so memory holds ``window`` partitions and their results,
whatever the row count.

:func:`score_partitions` is batch scoring; :func:`blind_partitions` is ECDH-PSI's
``[k]H(id)`` over a table's id column (the per-id work of a PSI party).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from veil.crypto import ecc
from veil.engine.base import Engine
from veil.engine.tasks import hash_blind
from veil.errors import ConfigError

DEFAULT_ROWS = 1 << 16
PARQUET_SUFFIXES = (".parquet", ".pq")


def parquet_files(path: str | Path) -> list[Path]:
    """The Parquet files of ``path`` (one file, or a directory of them), in name order."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise ConfigError("data", f"no such file or directory '{p}'", "give a Parquet file or dir")
    files = sorted(
        f
        for f in p.iterdir()
        if f.is_file() and f.name.lower().endswith(PARQUET_SUFFIXES) and f.name[0] not in "_."
    )
    if not files:
        raise ConfigError("data", f"no Parquet files in '{p}'", "write part-*.parquet files there")
    return files


def parquet_partitions(
    path: str | Path, columns: Sequence[str] | None = None, rows: int = DEFAULT_ROWS
) -> Iterator[pd.DataFrame]:
    """``path``'s rows as frames of at most ``rows`` rows, read one at a time."""
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ConfigError("rows", f"must be a positive integer, got {rows!r}", "e.g. 65536")
    cols = list(columns) if columns is not None else None
    for f in parquet_files(path):
        pf = pq.ParquetFile(f)
        if cols is not None:
            missing = [c for c in cols if c not in pf.schema_arrow.names]
            if missing:
                raise ConfigError("columns", f"{f.name} has no column {missing[0]!r}", "")
        for batch in pf.iter_batches(batch_size=rows, columns=cols):
            yield batch.to_pandas()


def stream(
    engine: Engine,
    fn: Callable[[pd.DataFrame], object],
    partitions: Iterable[pd.DataFrame],
    window: int | None = None,
) -> Iterator[object]:
    """``fn(partition)`` for each partition on ``engine``, results in partition order."""
    return engine.map_ordered(fn, partitions, window=window)


def _score(
    predict: Callable[[np.ndarray], np.ndarray], columns: list[str], df: pd.DataFrame
) -> np.ndarray:
    return np.asarray(predict(df[columns].to_numpy(np.float64)))


def score_partitions(
    engine: Engine,
    predict: Callable[[np.ndarray], np.ndarray],
    partitions: Iterable[pd.DataFrame],
    columns: Sequence[str],
    *,
    window: int | None = None,
) -> Iterator[np.ndarray]:
    """Batch scoring: ``predict(X)`` of each partition's ``columns`` (float64), in order.
    ``predict`` must pickle (a module-level function, or a model's bound method)."""
    fn = functools.partial(_score, predict, list(columns))
    return engine.map_ordered(fn, partitions, window=window)


def _blind(scalar: bytes, id_col: str, suite: ecc.Suite, df: pd.DataFrame) -> bytes:
    ids = df[id_col].astype(str).tolist()
    return hash_blind(scalar, [x.encode("utf-8") for x in ids], suite)


def blind_partitions(
    engine: Engine,
    partitions: Iterable[pd.DataFrame],
    id_col: str,
    scalar: bytes,
    *,
    suite: ecc.Suite = ecc.DEFAULT_SUITE,
    window: int | None = None,
) -> Iterator[bytes]:
    """ECDH-PSI's ``[scalar]H(id)`` of each partition's ids, 32-byte points concatenated,
    in order (the scalar goes only to this party's own engine)."""
    fn = functools.partial(_blind, scalar, id_col, suite)
    return engine.map_ordered(fn, partitions, window=window)
