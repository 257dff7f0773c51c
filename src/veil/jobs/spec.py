"""The job file: which parties take part, where their data lives, which steps run.

A job file is YAML, kept stable as steps are added::

    name: psi-demo
    parties:
      bank:    {data: data/bank.csv, id: id, label: y}   # CSV or Parquet; label optional
      partner: {data: {sql: sqlite:///partner.db, table: customers}, id: id}
      telco:   {data: data/telco_parquet/, id: id}       # a folder of part-*.parquet
    steps:
      - psi: {result_to: [bank, partner]}

Data paths are relative to the job file. :func:`load_job` parses the file into
frozen dataclasses and rejects every mistake with a :class:`ConfigError` that
names the field and the fix, before any party starts.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pandas as pd
import yaml

from veil.errors import ConfigError
from veil.jobs import registry, seeds
from veil.jobs import sources as src
from veil.jobs.engines import LOCAL, parse_engine

PARTY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")  # also a certificate name
RESERVED_NAMES = ("ca",)  # its certificate would clash with the CA's file (ca.crt)
JOB_KEYS = ("name", "parties", "steps")
PARTY_KEYS = ("data", "id", "label", "test", "engine")


@dataclass(frozen=True)
class PartySpec:
    """One party of the job: its name, its data and the id/label columns.

    ``data``: a CSV or Parquet file, a folder of Parquet files, or a SQL table
    (:mod:`veil.jobs.sources`); None for a party without rows (an aggregator); ``test``
    is an optional file of held-out rows with the same columns, scored by ``evaluate``;
    ``engine`` where this party runs its kernels (``ray://HOST:PORT``; None: this
    machine), its own choice: the other parties neither see nor check it
    (:mod:`veil.jobs.engines`)."""

    name: str
    data: src.Data | None
    id: str
    label: str | None = None
    test: Path | None = None
    engine: str | None = None


@dataclass(frozen=True)
class StepSpec:
    """One step: its registered name and its validated parameters."""

    name: str
    params: Mapping[str, object]
    index: int
    derived_seed: bool = False  # True: ``params['seed']`` was derived from the job, not given

    @property
    def field(self) -> str:
        """Where this step sits in the job file, for error messages."""
        return f"steps[{self.index}].{self.name}"


@dataclass(frozen=True)
class JobSpec:
    """A parsed, validated job file."""

    name: str
    path: Path
    parties: tuple[PartySpec, ...]
    steps: tuple[StepSpec, ...]

    @property
    def party_names(self) -> tuple[str, ...]:
        """Party names in job-file order (this order is the wire rank)."""
        return tuple(p.name for p in self.parties)

    def party(self, name: str) -> PartySpec:
        """The spec of party ``name``."""
        for p in self.parties:
            if p.name == name:
                return p
        raise ConfigError("party", f"unknown party '{name}'", one_of(self.party_names))


def one_of(choices: Iterable[object]) -> str:
    """The usual fix text: ``use one of a, b, c``."""
    return "use one of " + ", ".join(str(c) for c in choices)


def suggest(word: str, choices: Iterable[object]) -> str:
    """A fix text that proposes the closest choice, then lists them all."""
    names = [str(c) for c in choices]
    close = difflib.get_close_matches(word, names, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return hint + one_of(names)


def load_job(path: str | Path, *, check_data: bool | Collection[str] = True) -> JobSpec:
    """Read and validate the job file at ``path``.

    With ``check_data`` every party's data file (or only those of the parties
    named in it) is opened to check that the id and label columns exist and that
    no id is empty.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError("job", f"no job file at '{path}'", "check the path given to veil run")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(e, "problem", None) or "not valid YAML"
        raise ConfigError(
            "job", f"{path.name} is not valid YAML{where}: {problem}", "fix the YAML syntax"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError("job", f"{path.name} is not UTF-8 text", "save it as UTF-8") from None
    return parse_job(raw, path, check_data=check_data)


def parse_job(raw: object, path: Path, *, check_data: bool | Collection[str] = True) -> JobSpec:
    """Validate an already-parsed job document (``path`` anchors relative data paths)."""
    if not isinstance(raw, dict):
        raise ConfigError(
            "job", "the job file must be a mapping with name, parties and steps", "see README"
        )
    _no_unknown_keys(raw, JOB_KEYS, "job")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("name", "missing or not a string", "add e.g. 'name: psi-demo'")
    parties = _parse_parties(raw.get("parties"), path.parent, check_data)
    spec = JobSpec(name=name, path=path.resolve(), parties=parties, steps=())
    steps = _parse_steps(raw.get("steps"), spec)
    return JobSpec(name=name, path=spec.path, parties=parties, steps=steps)


def _no_unknown_keys(d: Mapping[str, Any], allowed: tuple[str, ...], field: str) -> None:
    for k in d:
        if k not in allowed:
            raise ConfigError(f"{field}.{k}", "unknown key", suggest(str(k), allowed))


def _parse_parties(
    raw: Any, base: Path, check_data: bool | Collection[str]
) -> tuple[PartySpec, ...]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            "parties", "missing or empty", "list each party: 'bank: {data: bank.csv, id: id}'"
        )
    if len(raw) < 2:
        raise ConfigError("parties", "a job needs at least two parties", "add the other party")
    out = []
    for pname, body in raw.items():
        field = f"parties.{pname}"
        if not isinstance(pname, str) or not PARTY_NAME.match(pname):
            raise ConfigError(
                field, "bad party name", "use letters, digits, '_' or '-', starting with a letter"
            )
        if pname.lower() in RESERVED_NAMES:
            raise ConfigError(field, f"'{pname}' is reserved", "give the party another name")
        if not isinstance(body, dict):
            raise ConfigError(field, "must be a mapping", "write '{data: FILE, id: COLUMN}'")
        _no_unknown_keys(body, PARTY_KEYS, field)
        id_col, label = body.get("id"), body.get("label")
        data = src.parse_data(body.get("data"), base, f"{field}.data")
        if data is None:  # a party without rows (e.g. an aggregator), maybe with a test file
            id_col = "id" if id_col is None else id_col
            if label is not None and body.get("test") is None:
                raise ConfigError(f"{field}.label", "a party without data or test has no label")
        if not isinstance(id_col, str) or not id_col:
            raise ConfigError(f"{field}.id", "missing", "name the id column, e.g. 'id: id'")
        if label is not None and (not isinstance(label, str) or not label):
            raise ConfigError(f"{field}.label", "must be a column name", "or leave it out")
        if label == id_col:
            raise ConfigError(f"{field}.label", "is the id column", "name the label column")
        p = PartySpec(
            name=pname,
            data=data,
            id=id_col,
            label=label,
            test=_test_path(body.get("test"), base, field),
            engine=_engine(body.get("engine"), f"{field}.engine"),
        )
        if check_data is True or (not isinstance(check_data, bool) and pname in check_data):
            check_party_data(p, field)
        out.append(p)
    return tuple(out)


def _parse_steps(raw: Any, job: JobSpec) -> tuple[StepSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("steps", "missing or empty", "list the steps, e.g. '- psi: {...}'")
    known = registry.step_names()
    parsed: list[tuple[str, dict[str, Any], Mapping[str, Any]]] = []
    for i, entry in enumerate(raw):
        item = {entry: None} if isinstance(entry, str) else entry
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(
                f"steps[{i}]", "must be one step name with its parameters", "write '- psi: {...}'"
            )
        ((sname, params),) = item.items()
        if not isinstance(sname, str) or sname not in known:
            raise ConfigError(f"steps[{i}]", f"unknown step '{sname}'", suggest(str(sname), known))
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ConfigError(
                f"steps[{i}].{sname}", "parameters must be a mapping", "write '{key: value}'"
            )
        checked = registry.get(sname).validate(params, job, f"steps[{i}].{sname}")
        parsed.append((sname, params, checked))
    digest = seeds.job_digest(job.name, job.party_names, [(n, c) for n, _, c in parsed])
    out = []
    for i, (sname, params, checked) in enumerate(parsed):
        field, seed = f"steps[{i}].{sname}", seeds.step_seed(digest, i)
        seeded = seeds.with_seed(sname, params, checked, job=job, field=field, seed=seed)
        final = checked if seeded is None else seeded
        out.append(
            StepSpec(sname, MappingProxyType(dict(final)), i, derived_seed=seeded is not None)
        )
    return tuple(out)


def check_party_data(p: PartySpec, field: str) -> None:
    """Check that ``p``'s data exists (file, Parquet folder or SQL table) and has non-empty
    ids and the label column (and its test file the same columns)."""
    if p.data is None:
        if p.test is not None:
            cols = src.columns(_existing(p.test, f"{field}.test"), f"{field}.test")
            if p.label is not None and p.label not in cols:
                problem = f"no column '{p.label}' in {p.test.name}"
                raise ConfigError(f"{field}.label", problem, suggest(p.label, cols))
        return
    where = f"{field}.data"
    src.check_exists(p.data, where)
    cols = src.columns(p.data, where)
    _check_columns(p, cols, field)
    seen = 0
    for part in src.partitions(p.data, [p.id], p.id, where):
        _check_ids(part[p.id], field, seen)
        seen += len(part)
    if p.test is not None:
        test_cols = src.columns(_existing(p.test, f"{field}.test"), f"{field}.test")
        for c in cols:
            if c not in test_cols:
                problem = f"column '{c}' of {p.data.name} is missing from {p.test.name}"
                raise ConfigError(f"{field}.test", problem, "give the test file the same columns")
        for c in test_cols:
            if c not in cols:
                problem = f"column '{c}' of {p.test.name} is not in {p.data.name}"
                raise ConfigError(f"{field}.test", problem, "give the test file the same columns")


def _check_columns(p: PartySpec, cols: list[str], field: str) -> None:
    assert p.data is not None
    if p.id not in cols:
        raise ConfigError(
            f"{field}.id", f"no column '{p.id}' in {p.data.name}", suggest(p.id, cols)
        )
    if p.label is not None and p.label not in cols:
        raise ConfigError(
            f"{field}.label", f"no column '{p.label}' in {p.data.name}", suggest(p.label, cols)
        )


def _check_ids(ids: pd.Series, field: str, offset: int = 0) -> None:
    bad = ids.isna() | (ids.astype(str).str.strip() == "")
    if bad.any():
        first = int(bad.to_numpy().nonzero()[0][0])
        raise ConfigError(
            f"{field}.id",
            f"{int(bad.sum())} empty id(s), first at data row {offset + first + 1}",
            "fill or drop the rows without an id",
        )


def load_frame(p: PartySpec) -> pd.DataFrame:
    """Read party ``p``'s whole table, ids as strings; checks columns and ids again.

    A party without data gets an empty table. The table's ``attrs[PARTY_ATTR]`` is ``p``
    (steps find the party's test file there: :func:`load_test`)."""
    field = f"parties.{p.name}"
    if p.data is None:
        return empty_frame(p)
    src.check_exists(p.data, f"{field}.data")
    df = src.read(p.data, None, p.id, f"{field}.data")
    _check_columns(p, [str(c) for c in df.columns], field)
    _check_ids(df[p.id], field)
    df[p.id] = df[p.id].astype(str)
    df.attrs[PARTY_ATTR] = p
    return df


PARTY_ATTR = "veil_party"


def empty_frame(p: PartySpec) -> pd.DataFrame:
    """A table of no rows for party ``p`` (a party without data, or one whose table
    is not read yet: :func:`streamed_table`)."""
    empty = pd.DataFrame({p.id: pd.Series([], dtype=str)})
    empty.attrs[PARTY_ATTR] = p
    return empty


def streamed_table(first_step: str, p: PartySpec) -> src.Table | None:
    """``p``'s table, not read, when a first ``psi`` step can stream it (a Parquet folder
    or SQL table): the step reads only the rows of the intersection (None: read it)."""
    if first_step != "psi" or p.data is None or not src.is_partitioned(p.data):
        return None
    return src.Table(p.data, p.id, f"parties.{p.name}.data")


def load_test(frame: pd.DataFrame) -> pd.DataFrame | None:
    """The test file of the party whose table is ``frame`` (None if it names none)."""
    p = frame.attrs.get(PARTY_ATTR)
    if not isinstance(p, PartySpec) or p.test is None:
        return None
    field = f"parties.{p.name}.test"
    df = src.read(_existing(p.test, field), None, p.id, field)
    if p.id in df.columns:
        _check_ids(df[p.id], field)
        df[p.id] = df[p.id].astype(str)
    return df


def _existing(path: Path, field: str) -> Path:
    if not path.is_file():
        raise ConfigError(field, f"no such file '{path}'", "paths are relative to the job file")
    if not path.name.lower().endswith(src.CSV_SUFFIXES + src.PARQUET_SUFFIXES):
        problem = f"'{path.name}' is neither CSV nor Parquet"
        raise ConfigError(field, problem, "use .csv or .parquet")
    return path


def _test_path(raw: Any, base: Path, field: str) -> Path | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f"{field}.test", "must be a file path", "or leave it out")
    return (base / raw).resolve()


def _engine(raw: Any, field: str) -> str | None:
    if raw is None:
        return None
    spec = parse_engine(raw, field)
    return None if spec.kind == LOCAL else spec.url
