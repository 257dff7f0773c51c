"""Check each party's own data before any party connects, so a bad file never costs a PSI.

:func:`check_data` reads a party's table and refuses, with a :class:`ConfigError`
naming the party, the column and the fix: a file with no rows; when the job does
more than align rows (any step but ``psi``), a label column that is not 0/1 (the
one rule, :func:`veil.ml.labels.check_labels`) and feature columns that are not
numbers. It warns (the run goes on) when most ids of a file repeat. Nothing of
the data leaves the party: at most the verdict and its reason do.

:func:`step_warnings` turns step outputs into warnings (an empty or tiny
intersection), and :func:`check_rows` stops a step that cannot run on zero rows.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import pandas as pd

from veil.errors import ConfigError
from veil.jobs import sources
from veil.jobs.spec import JobSpec, PartySpec, load_frame
from veil.ml.labels import check_labels

ROWS_ONLY_STEPS = frozenset({"psi"})  # steps that use the ids only, never features or labels
# also run at a party without data (split: to sit it out; hetero_lr: an SS-LR dealer)
NO_DATA_STEPS = frozenset({"fedavg", "evaluate", "split", "hetero_lr"})
DUPLICATE_WARN = 0.10  # warn when more than this share of a file's rows repeat an id
TINY_INTERSECTION = 100  # warn when fewer rows are shared


def needs_features(spec: JobSpec) -> bool:
    """Whether any step of ``spec`` uses features or labels (more than aligning rows)."""
    return any(s.name not in ROWS_ONLY_STEPS for s in spec.steps)


def check_data(spec: JobSpec, parties: Collection[str]) -> list[str]:
    """Check the data of ``parties`` (this site's own); return warnings, raise ConfigError.
    A Parquet folder or SQL table is checked partition by partition (bounded memory)."""
    warnings: list[str] = []
    for name in parties:
        p = spec.party(name)
        if p.data is not None and sources.is_partitioned(p.data):
            warnings += check_partitions(p, needs_features(spec))
        else:
            warnings += check_frame(p, load_frame(p), needs_features(spec))
    return warnings


def check_frame(p: PartySpec, df: pd.DataFrame, features: bool) -> list[str]:
    """Check party ``p``'s table ``df``; ``features``: whether steps use its columns."""
    if p.data is None:  # a party without rows (an aggregator); a test file is its step's
        return []
    _check_part(p, df, features, 0)
    dups = int(df[p.id].duplicated().sum())
    return _duplicates(p, dups, len(df))


def check_partitions(p: PartySpec, features: bool) -> list[str]:
    """:func:`check_frame` of a table read in partitions; repeated ids are counted on
    8-byte hashes of the ids (a numpy array, not the ids)."""
    assert p.data is not None
    field = f"parties.{p.name}.data"
    cols = None if features else [p.id]
    rows, hashes = 0, []
    for part in sources.partitions(p.data, cols, p.id, field):
        _check_part(p, part, features, rows)
        ids = part[p.id].astype(str)
        hashes.append(pd.util.hash_array(ids.to_numpy(dtype=object)))
        rows += len(part)
    if rows == 0:
        _check_part(p, pd.DataFrame(), features, 0)
    dups = rows - len(np.unique(np.concatenate(hashes))) if hashes else 0
    return _duplicates(p, dups, rows)


def _check_part(p: PartySpec, df: pd.DataFrame, features: bool, offset: int) -> None:
    field = f"parties.{p.name}"
    assert p.data is not None
    if len(df) == 0 and offset == 0:
        raise ConfigError(
            f"{field}.data", f"'{p.data.name}' has no rows", "give a file with one row per id"
        )
    if features:
        if p.label is not None:
            check_labels(df[p.label].to_numpy(), f"{field}.label (column '{p.label}')")
        text = _text_columns(df, [c for c in df.columns if c not in (p.id, p.label)], offset)
        if text:
            shown = "; ".join(f"'{c}' holds {v!r} (row {r})" for c, v, r in text[:3])
            raise ConfigError(
                f"{field}.data",
                f"{len(text)} feature column(s) of {p.data.name} are not numeric: {shown}",
                "encode them as numbers or drop them from the file (every column but the "
                "id and the label is a feature)",
            )


def _duplicates(p: PartySpec, dups: int, rows: int) -> list[str]:
    if dups > DUPLICATE_WARN * rows:
        return [
            f"parties.{p.name}: {dups:,} of {rows:,} rows repeat an id ({dups / rows:.0%}); "
            "only the first row of each id takes part"
        ]
    return []


def _text_columns(
    df: pd.DataFrame, columns: list[str], offset: int = 0
) -> list[tuple[str, Any, int]]:
    """``(column, first non-number, its data row)`` of each column holding text."""
    out = []
    for c in columns:
        s = df[c]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            continue
        present = s.notna() & (s.astype(str).str.strip() != "")
        bad = present & pd.to_numeric(s, errors="coerce").isna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            out.append((str(c), s.iloc[row], offset + row + 1))
    return out


def step_warnings(step: str, outputs: Mapping[str, object]) -> list[str]:
    """Warnings about one party's outputs of step ``step`` (an empty or tiny intersection,
    or a ``warning`` the step gave itself)."""
    own = outputs.get("warning")
    if isinstance(own, str) and own:
        return [own]
    size = outputs.get("intersection_size")
    if isinstance(size, bool) or not isinstance(size, int):
        return []
    if size == 0:
        return [f"step '{step}': the intersection is empty (the parties share no id)"]
    if size < TINY_INTERSECTION:
        return [f"step '{step}': the intersection is tiny ({size} shared ids)"]
    return []


def check_rows(step: str, index: int, n_rows: int, aligned: bool) -> None:
    """Refuse to run step ``step`` (not a rows-only one) on zero rows."""
    if n_rows or step in ROWS_ONLY_STEPS:
        return
    if not aligned and step in NO_DATA_STEPS:  # a party without data (empty files are
        return  # refused before connecting): an aggregator
    if aligned:
        raise ConfigError(
            f"steps[{index}].{step}",
            "intersection is empty: the parties share no id, nothing to run on",
            "check that both parties' id columns hold the same ids (same format)",
        )
    raise ConfigError(f"steps[{index}].{step}", "no rows to run on", "check the data file")
