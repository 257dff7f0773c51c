"""Where a party's rows come from, read whole or in partitions of bounded size.

A party's ``data:`` in the job file is one of:

- a CSV (``.csv``, ``.csv.gz``, ``.tsv``) or Parquet (``.parquet``, ``.pq``) file;
- a directory of Parquet files as Spark writes them (``part-00000-....parquet`` ...;
  ``_SUCCESS``, checksums and other names starting with ``_`` or ``.`` are skipped),
  read file by file in name order (:mod:`veil.engine.partitions`);
- a SQL table, ``{sql: URL, table: NAME}``: a SQLite file (``sqlite:///bank.db``,
  relative to the job file) or PostgreSQL (``postgresql://user@host/db``, read with
  psycopg through a server-side cursor); rows come in the order of the id column.

:func:`partitions` yields frames of at most ``rows`` rows, so memory holds one
partition whatever the table's size (ECDH-PSI streams its ids so); :func:`read` is the
whole table. Ids are always text (``007`` stays ``007`` in a CSV; numbers become their
decimal text). Every problem is a :class:`ConfigError` naming ``parties.P.data`` (or
``.id``/``.label``) and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from veil.engine.partitions import parquet_files, parquet_partitions
from veil.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
DEFAULT_ROWS = 1 << 16  # rows per partition
FIX_READ = "check that it is a readable CSV (with a header) or Parquet file"
FIX_SQL = "write '{sql: sqlite:///FILE.db, table: NAME}' or '{sql: postgresql://USER@HOST/DB, ...}'"
SQL_KEYS = ("sql", "table")
RELATIVE = "paths are relative to the job file"


@dataclass(frozen=True)
class SqlTable:
    """A table of a SQL database: ``url`` (SQLAlchemy form; a SQLite path is absolute
    here) and ``table`` (its name, optionally ``schema.table``)."""

    url: str
    table: str

    @property
    def name(self) -> str:
        """How messages name it (a password in the URL is never shown)."""
        from sqlalchemy.engine import make_url

        return f"table '{self.table}' of {make_url(self.url).render_as_string(hide_password=True)}"


Data = Path | SqlTable
"""A party's data: a file or Parquet directory (a path), or a SQL table."""


def parse_data(raw: object, base: Path, field: str) -> Data | None:
    """The ``data:`` entry of a party (None: no data); paths are relative to ``base``."""
    if raw is None:
        return None
    if isinstance(raw, str) and raw:
        return (base / raw).resolve()
    if not isinstance(raw, dict):
        raise ConfigError(field, "must be a file path, a folder or a SQL table", FIX_SQL)
    for k in raw:
        if k not in SQL_KEYS:
            raise ConfigError(f"{field}.{k}", "unknown key", "use 'sql' and 'table'")
    url, table = raw.get("sql"), raw.get("table")
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{field}.sql", "missing or not a URL", FIX_SQL)
    if not isinstance(table, str) or not table:
        raise ConfigError(f"{field}.table", "missing or not a table name", "name the table")
    return SqlTable(_sql_url(url, base, f"{field}.sql"), table)


def _sql_url(text: str, base: Path, field: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text)
    except ArgumentError:
        raise ConfigError(field, f"{text!r} is not a database URL", FIX_SQL) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")  # the driver Veil ships with
    if url.get_backend_name() == "sqlite":
        db = url.database
        if not db or db == ":memory:":
            raise ConfigError(field, "names no SQLite file", "write sqlite:///FILE.db")
        url = url.set(database=str((base / db).resolve()))
    elif url.get_backend_name() != "postgresql":
        raise ConfigError(field, f"{url.get_backend_name()!r} is not supported", FIX_SQL)
    return url.render_as_string(hide_password=False)


def describe(data: Data) -> str:
    """The name messages use: a file's or folder's name, or the SQL table."""
    return data.name


def is_partitioned(data: Data | None) -> bool:
    """Whether ``data`` is a Parquet directory or a SQL table (a source too big, maybe,
    to hold whole: PSI streams it)."""
    return isinstance(data, SqlTable) or (isinstance(data, Path) and data.is_dir())


def check_exists(data: Data, field: str) -> None:
    """Refuse a missing file or folder, a folder without Parquet files, a file of another
    format, an unreachable database or a table that is not there."""
    if isinstance(data, SqlTable):
        _sql_columns(data, field)
        return
    if data.is_dir():
        _parquet_files(data, field)
        return
    if not data.is_file():
        raise ConfigError(field, f"no such file or folder '{data}'", RELATIVE)
    _format(data, field)


def columns(data: Data, field: str) -> list[str]:
    """The column names of ``data``."""
    if isinstance(data, SqlTable):
        return _sql_columns(data, field)
    if data.is_dir():
        return _parquet_schema(_parquet_files(data, field)[0], field)
    if _format(data, field) == "parquet":
        return _parquet_schema(data, field)
    try:
        return list(pd.read_csv(data, nrows=0, sep=_sep(data)).columns)
    except (OSError, ValueError) as e:
        raise ConfigError(field, f"cannot read '{data}': {e}", FIX_READ) from None


def read(data: Data, cols: list[str] | None, id_col: str, field: str) -> pd.DataFrame:
    """The whole table (or its ``cols``), ids as read (see :func:`partitions`)."""
    if isinstance(data, Path) and data.is_file():
        try:
            if _format(data, field) == "parquet":
                return pd.read_parquet(data, columns=cols)
            return pd.read_csv(data, usecols=cols, dtype={id_col: str}, sep=_sep(data))
        except (OSError, ValueError) as e:
            raise ConfigError(field, f"cannot read '{data}': {e}", FIX_READ) from None
    parts = list(partitions(data, cols, id_col, field))
    if not parts:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in cols or columns(data, field)})
    return pd.concat(parts, ignore_index=True)


def partitions(
    data: Data, cols: list[str] | None, id_col: str, field: str, rows: int = DEFAULT_ROWS
) -> Iterator[pd.DataFrame]:
    """``data``'s rows (or its ``cols``) as frames of at most ``rows`` rows, read one at
    a time, in a fixed order (files in name order; a SQL table by its id column)."""
    if isinstance(data, SqlTable):
        yield from _sql_partitions(data, cols, id_col, field, rows)
    elif data.is_dir():
        _parquet_files(data, field)
        yield from parquet_partitions(data, cols, rows)
    elif _format(data, field) == "parquet":
        yield from parquet_partitions(data, cols, rows)
    else:
        try:
            with pd.read_csv(
                data, usecols=cols, dtype={id_col: str}, sep=_sep(data), chunksize=rows
            ) as reader:
                yield from reader
        except (OSError, ValueError) as e:
            raise ConfigError(field, f"cannot read '{data}': {e}", FIX_READ) from None


# -- files ---------------------------------------------------------------------------


def _format(path: Path, field: str) -> str:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise ConfigError(
        field,
        f"'{path.name}' is neither CSV nor Parquet",
        "use .csv or .parquet, a folder of .parquet files or a SQL table",
    )


def _sep(path: Path) -> str:
    return "\t" if path.name.lower().endswith(".tsv") else ","


def _parquet_files(folder: Path, field: str) -> list[Path]:
    try:
        return parquet_files(folder)
    except ConfigError:
        raise ConfigError(
            field,
            f"folder '{folder}' holds no Parquet files (part-*.parquet)",
            "give the folder Spark wrote (df.write.parquet), or a file",
        ) from None


def _parquet_schema(path: Path, field: str) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception as e:  # pyarrow raises its own error types
        raise ConfigError(field, f"cannot read '{path}': {e}", FIX_READ) from None


# -- SQL -----------------------------------------------------------------------------


def _engine(t: SqlTable, field: str) -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    url = make_url(t.url)
    if url.get_backend_name() == "sqlite":
        db = Path(url.database or "")
        if not db.is_file():  # SQLite would create an empty database
            raise ConfigError(f"{field}.sql", f"no SQLite file '{db}'", RELATIVE)
        url = url.set(database=f"file:{db}", query={"mode": "ro", "uri": "true"})  # read-only
    try:
        return create_engine(url, future=True)
    except Exception as e:  # a missing driver, a bad option
        raise ConfigError(f"{field}.sql", f"cannot open {t.name}: {e}", FIX_SQL) from None


def _suggest(word: str, names: list[str]) -> str:
    close = difflib.get_close_matches(word, names, n=1)
    return (f"did you mean '{close[0]}'? " if close else "") + "use one of " + ", ".join(names)


def _split_name(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return (schema or None), name


def _sql_columns(t: SqlTable, field: str) -> list[str]:
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    engine = _engine(t, field)
    schema, name = _split_name(t.table)
    try:
        insp = inspect(engine)
        tables = insp.get_table_names(schema=schema) + insp.get_view_names(schema=schema)
        if name not in tables:
            raise ConfigError(
                f"{field}.table",
                f"no table '{t.table}' in {t.name.split(' of ', 1)[1]}",
                _suggest(name, tables) if tables else "the database has no tables",
            )
        return [str(c["name"]) for c in insp.get_columns(name, schema=schema)]
    except SQLAlchemyError as e:
        reason = str(e).splitlines()[0]
        raise ConfigError(f"{field}.sql", f"cannot read {t.name}: {reason}", FIX_SQL) from None
    finally:
        engine.dispose()


def _sql_partitions(
    t: SqlTable, cols: list[str] | None, id_col: str, field: str, rows: int
) -> Iterator[pd.DataFrame]:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    known = _sql_columns(t, field)
    want = known if cols is None else cols
    for c in [*want, id_col]:
        if c not in known:
            raise ConfigError(field, f"{t.name} has no column '{c}'", "name a column it has")
    schema, name = _split_name(t.table)
    engine = _engine(t, field)
    q = engine.dialect.identifier_preparer.quote  # names are quoted, never pasted as SQL
    where = ".".join(q(x) for x in (schema, name) if x)
    query = text(f"SELECT {', '.join(q(c) for c in want)} FROM {where} ORDER BY {q(id_col)}")
    try:
        with engine.connect() as plain:
            conn = plain.execution_options(stream_results=True, max_row_buffer=rows)
            yield from pd.read_sql_query(query, conn, chunksize=rows)
    except SQLAlchemyError as e:
        reason = str(e).splitlines()[0]
        raise ConfigError(field, f"cannot read {t.name}: {reason}", FIX_SQL) from None
    finally:
        engine.dispose()


# -- a party's table, read when needed -------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A party's table not read into memory (a Parquet folder or SQL table): what the
    ``psi`` step streams its ids from, then reads only the rows of the intersection."""

    data: Data
    id: str
    field: str  # ``parties.P.data``, for errors

    def ids(self, rows: int = DEFAULT_ROWS) -> Iterator[list[str]]:
        """The ids as text, a partition at a time, in the table's order."""
        for part in partitions(self.data, [self.id], self.id, self.field, rows):
            yield part[self.id].astype(str).tolist()

    def take(self, positions: np.ndarray) -> pd.DataFrame:
        """The rows at ``positions`` (row numbers in the table's order), in that order,
        read partition by partition (memory: those rows and one partition)."""
        want = np.asarray(positions, dtype=np.int64)
        order = np.argsort(want, kind="stable")
        ranked = want[order]
        picked, seen = [], 0
        for part in partitions(self.data, None, self.id, self.field):
            a, b = np.searchsorted(ranked, [seen, seen + len(part)])
            if b > a:
                picked.append(part.iloc[ranked[a:b] - seen])
            seen += len(part)
        got = pd.concat(picked, ignore_index=True) if picked else pd.DataFrame()
        if len(got) != len(want):
            raise ConfigError(
                self.field,
                f"{describe(self.data)} has {seen} rows now, fewer than when the job read it",
                "run the job on data nobody changes while it runs (a snapshot)",
            )
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        out = got.iloc[back].reset_index(drop=True)
        out[self.id] = out[self.id].astype(str)
        return out
