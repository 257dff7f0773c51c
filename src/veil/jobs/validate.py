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

import pandas as pd

from veil.errors import ConfigError
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
    """Check the data of ``parties`` (this site's own); return warnings, raise ConfigError."""
    warnings: list[str] = []
    for name in parties:
        warnings += check_frame(
            spec.party(name), load_frame(spec.party(name)), needs_features(spec)
        )
    return warnings


def check_frame(p: PartySpec, df: pd.DataFrame, features: bool) -> list[str]:
    """Check party ``p``'s table ``df``; ``features``: whether steps use its columns."""
    field = f"parties.{p.name}"
    if p.data is None:  # a party without rows (an aggregator); a test file is its step's
        return []
    if len(df) == 0:
        raise ConfigError(
            f"{field}.data", f"'{p.data.name}' has no rows", "give a file with one row per id"
        )
    if features:
        if p.label is not None:
            check_labels(df[p.label].to_numpy(), f"{field}.label (column '{p.label}')")
        text = _text_columns(df, [c for c in df.columns if c not in (p.id, p.label)])
        if text:
            shown = "; ".join(f"'{c}' holds {v!r} (row {r})" for c, v, r in text[:3])
            raise ConfigError(
                f"{field}.data",
                f"{len(text)} feature column(s) of {p.data.name} are not numeric: {shown}",
                "encode them as numbers or drop them from the file (every column but the "
                "id and the label is a feature)",
            )
    dups = int(df[p.id].duplicated().sum())
    if dups > DUPLICATE_WARN * len(df):
        return [
            f"{field}: {dups:,} of {len(df):,} rows repeat an id ({dups / len(df):.0%}); "
            "only the first row of each id takes part"
        ]
    return []


def _text_columns(df: pd.DataFrame, columns: list[str]) -> list[tuple[str, Any, int]]:
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
            out.append((str(c), s.iloc[row], row + 1))
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
