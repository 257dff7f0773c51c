"""Datasets by name: ``veil dataset add``. Jobs name datasets, never paths.

The node copies the file into ``DIR/datasets/<sha256>.<ext>`` so the registered
content cannot change under a job, and records its schema, row count and hash.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pandas as pd

from veil.errors import ConfigError
from veil.node.config import NodeConfig
from veil.node.model import Dataset, Event
from veil.node.store import Store

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read(path: Path) -> tuple[str, pd.DataFrame]:
    low = path.name.lower()
    try:
        if low.endswith((".parquet", ".pq")):
            return "parquet", pd.read_parquet(path)
        if low.endswith((".csv", ".csv.gz")):
            return "csv", pd.read_csv(path, dtype=str)
    except (OSError, ValueError) as e:
        raise ConfigError(
            "FILE", f"cannot read '{path}': {e}", "give a CSV or Parquet file"
        ) from None
    raise ConfigError("FILE", f"'{path.name}' is neither CSV nor Parquet", "use .csv or .parquet")


def add_dataset(
    store: Store,
    cfg: NodeConfig,
    name: str,
    file: str | Path,
    *,
    id_col: str,
    label_col: str | None = None,
    actor: str = "user:cli",
) -> Dataset:
    """Register ``file`` as dataset ``name``; ConfigError for anything wrong with it."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError("NAME", f"'{name}' is not a dataset name", "use letters, digits, _.-")
    src = Path(file)
    if not src.is_file():
        raise ConfigError("FILE", f"no such file '{src}'", "check the path")
    if store.dataset(name) is not None:
        raise ConfigError("NAME", f"dataset '{name}' exists", "choose another name")
    fmt, df = _read(src)
    cols = [str(c) for c in df.columns]
    for what, col in (("--id", id_col), ("--label", label_col)):
        if col is not None and col not in cols:
            raise ConfigError(
                what, f"no column '{col}' in {src.name}", "use one of " + ", ".join(cols)
            )
    if label_col == id_col:
        raise ConfigError("--label", "is the id column", "name the label column")
    ids = df[id_col]
    if ids.isna().any() or (ids.astype(str).str.strip() == "").any():
        raise ConfigError("--id", f"column '{id_col}' has empty ids", "fill or drop those rows")
    if fmt == "csv":
        dtypes = [str(t) for t in pd.read_csv(src, nrows=1000).dtypes]
    else:
        dtypes = [str(t) for t in df.dtypes]
    digest = file_sha256(src)
    dst_dir = cfg.dir / "datasets"
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / f"{digest}.{fmt}"
    if not dst.exists():
        tmp = dst.with_suffix(".tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)
    ds = Dataset(
        name=name,
        path=str(dst),
        format=fmt,
        id_col=id_col,
        label_col=label_col,
        columns=tuple(cols),
        dtypes=tuple(dtypes),
        rows=len(df),
        sha256=digest,
    )
    schema = json.dumps([list(ds.columns), list(ds.dtypes)]).encode("utf-8")
    detail = {
        "name": name,
        "rows": ds.rows,
        "sha256": digest,
        "schema_hash": hashlib.sha256(schema).hexdigest(),
        "columns": len(cols),
    }
    with store.change(Event("dataset.added", actor=actor, detail=detail)) as tx:
        tx.put_dataset(ds)
    return ds
