"""A party's data as a Parquet folder (as Spark writes it) or a SQL table (SQLite,
PostgreSQL): parsed from the job file, checked with errors naming the field and the
fix, read whole or in bounded partitions."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.jobs import fake_steps
from tests.jobs.conftest import write_table
from veil.errors import ConfigError
from veil.jobs import RunOptions, load_job, run_job, sources
from veil.jobs.spec import load_frame
from veil.jobs.validate import check_data

ROOT = Path(__file__).resolve().parents[2]


def spark_folder(folder: Path, df: pd.DataFrame, parts: int = 3) -> Path:
    """``df`` written as Spark does: part files, ``_SUCCESS`` and hidden checksums."""
    folder.mkdir(parents=True)
    step = -(-len(df) // parts)
    for i in range(parts):
        chunk = df.iloc[i * step : (i + 1) * step]
        chunk.to_parquet(folder / f"part-{i:05d}-abc.snappy.parquet", index=False)
        (folder / f".part-{i:05d}-abc.snappy.parquet.crc").write_bytes(b"crc")
    (folder / "_SUCCESS").write_bytes(b"")
    return folder


def sqlite_table(path: Path, df: pd.DataFrame, table: str = "customers") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as con:
        df.to_sql(table, con, index=False)
    con.close()
    return path


def job_with(folder: Path, partner_data: object, **extra: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_table(folder / "bank.csv", [f"c{i}" for i in range(40)], label=True, seed=1)
    job = {
        "name": "sources",
        "parties": {
            "bank": {"data": "bank.csv", "id": "id", "label": "y"},
            "partner": {"data": partner_data, "id": "id", **extra},
        },
        "steps": ["psi"],
    }
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def partner_frame(n: int = 50) -> pd.DataFrame:
    return pd.DataFrame(
        {"id": [f"c{i:03d}" for i in range(20, 20 + n)], "x0": [0.5 * i for i in range(n)]}
    )


def test_spark_parquet_folder_is_read_in_order_and_in_bounded_partitions(tmp_path: Path) -> None:
    df = partner_frame()
    spark_folder(tmp_path / "job" / "partner_parquet", df)
    spec = load_job(job_with(tmp_path / "job", "partner_parquet"))
    p = spec.party("partner")
    assert sources.is_partitioned(p.data)
    pd.testing.assert_frame_equal(load_frame(p).drop(columns=[]), df, check_dtype=False)
    assert p.data is not None
    parts = list(sources.partitions(p.data, ["id"], "id", "f", rows=7))
    assert max(len(x) for x in parts) <= 7
    assert pd.concat(parts)["id"].tolist() == df["id"].tolist()
    assert check_data(spec, ["partner"]) == []


def test_sqlite_table_relative_to_the_job_file(tmp_path: Path) -> None:
    df = partner_frame()
    df["id"] = range(100, 150)  # integer ids become their text
    sqlite_table(tmp_path / "job" / "partner.db", df.sample(frac=1, random_state=3))
    spec = load_job(
        job_with(tmp_path / "job", {"sql": "sqlite:///partner.db", "table": "customers"})
    )
    p = spec.party("partner")
    assert isinstance(p.data, sources.SqlTable) and sources.is_partitioned(p.data)
    assert "partner.db" in p.data.name and "customers" in p.data.name
    frame = load_frame(p)
    assert frame["id"].tolist() == [str(i) for i in range(100, 150)]  # ordered by the id
    parts = list(sources.partitions(p.data, ["id"], "id", "f", rows=16))
    assert [len(x) for x in parts] == [16, 16, 16, 2]
    assert check_data(spec, ["partner"]) == []


@pytest.mark.parametrize(
    ("data", "extra", "needles"),
    [
        ("nowhere", {}, ["parties.partner.data: no such file or folder", "relative to the job"]),
        ("empty_dir", {}, ["parties.partner.data: folder", "holds no Parquet files", "Spark"]),
        ({"sql": "sqlite:///missing.db", "table": "t"}, {}, ["partner.data.sql: no SQLite file"]),
        (
            {"sql": "sqlite:///partner.db", "table": "customer"},
            {},
            ["data.table: no table 'customer'", "did you mean 'customers'"],
        ),
        (
            {"sql": "sqlite:///partner.db", "table": "customers"},
            {"id": "cust_id"},
            ["parties.partner.id: no column 'cust_id'", "use one of id, x0"],
        ),
        ({"sql": "mysql://h/db", "table": "t"}, {}, ["partner.data.sql: 'mysql' is not supported"]),
        ({"sql": "sqlite:///partner.db"}, {}, ["partner.data.table: missing"]),
        (
            {"sql": "sqlite:///partner.db", "table": "t", "where": "x"},
            {},
            ["partner.data.where: unknown key"],
        ),
        ("spark_dir", {"id": "idd"}, ["parties.partner.id: no column 'idd'", "did you mean 'id'"]),
    ],
)
def test_bad_sources_name_the_field_and_the_fix(
    tmp_path: Path, data: object, extra: dict[str, str], needles: list[str]
) -> None:
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "empty_dir").mkdir()
    (folder / "empty_dir" / "_SUCCESS").write_bytes(b"")
    spark_folder(folder / "spark_dir", partner_frame())
    sqlite_table(folder / "partner.db", partner_frame())
    with pytest.raises(ConfigError) as e:
        load_job(job_with(folder, data, **extra))
    for n in needles:
        assert n in str(e.value), str(e.value)


def test_partitioned_check_finds_empty_ids_and_repeats_across_partitions(tmp_path: Path) -> None:
    df = partner_frame(200)
    df.loc[150:, "id"] = df["id"][:50].to_numpy()  # 50 repeats, in another part file
    spark_folder(tmp_path / "job" / "dups", df, parts=4)
    spec = load_job(job_with(tmp_path / "job", "dups"))
    (warning,) = check_data(spec, ["partner"])
    assert "50 of 200 rows repeat an id" in warning
    bad = partner_frame(200)
    bad.loc[170, "id"] = ""
    spark_folder(tmp_path / "job2" / "bad", bad, parts=4)
    with pytest.raises(
        ConfigError, match=r"parties.partner.id: 1 empty id\(s\), first at data row 171"
    ):
        load_job(job_with(tmp_path / "job2", "bad"))


def test_postgres_table(tmp_path: Path, postgres_db: str) -> None:
    from sqlalchemy import create_engine

    df = partner_frame()
    engine = create_engine(postgres_db)
    df.to_sql("customers", engine, index=False)
    engine.dispose()
    plain = postgres_db.replace("postgresql+psycopg://", "postgresql://")  # the usual URL
    spec = load_job(job_with(tmp_path / "job", {"sql": plain, "table": "customers"}))
    p = spec.party("partner")
    assert load_frame(p)["id"].tolist() == df["id"].tolist()
    assert p.data is not None
    assert [len(x) for x in sources.partitions(p.data, ["id"], "id", "f", rows=20)] == [20, 20, 10]
    with pytest.raises(ConfigError, match=r"no table 'customer'.*did you mean 'customers'"):
        load_job(job_with(tmp_path / "job", {"sql": plain, "table": "customer"}))


@pytest.fixture
def fake_step_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers import the test-only steps too (and find the tests package)."""
    assert fake_steps.echo is not None  # registered in this process by the import
    monkeypatch.setenv("VEIL_STEP_MODULES", "tests.jobs.fake_steps")
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{path}" if path else str(ROOT))


@pytest.mark.parametrize("protocol", ["rr22", "ecdh"])
def test_psi_job_streams_a_sql_table_and_a_parquet_folder(
    tmp_path: Path, fake_step_env: None, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    """The receiver (a SQLite table with repeated ids) streams its ids and reads back only
    the intersection's rows; the sender (a Spark folder) is read whole before the next
    step needs it. Streamed ids keep their per-id state in bucket files under TMPDIR,
    which are gone afterwards."""
    spill = tmp_path / "tmpdir"
    spill.mkdir()
    monkeypatch.setenv("TMPDIR", str(spill))
    monkeypatch.setattr(tempfile, "tempdir", None)
    rng = np.random.default_rng(5)
    universe = [f"cust-{i:04d}" for i in rng.permutation(400)]
    common, only_bank, only_partner = universe[:120], universe[120:220], universe[220:300]
    folder = tmp_path / "job"
    folder.mkdir()
    bank = write_table(folder / "b.csv", common + only_bank, label=True, seed=3)
    bank = pd.concat([bank, bank.iloc[:5]], ignore_index=True)  # 5 repeated rows
    sqlite_table(folder / "bank.db", bank)
    partner = write_table(
        folder / "p.csv", list(rng.permutation(common + only_partner)), label=False
    )
    spark_folder(folder / "partner_parquet", partner, parts=4)
    job = {
        "name": "sources-run",
        "parties": {
            "bank": {
                "data": {"sql": "sqlite:///bank.db", "table": "customers"},
                "id": "id",
                "label": "y",
            },
            "partner": {"data": "partner_parquet", "id": "id"},
        },
        "steps": [
            {"psi": {"result_to": ["bank"], "batch_size": 64, "protocol": protocol}},
            "_echo",
        ],
    }
    (folder / "job.yaml").write_text(yaml.safe_dump(job, sort_keys=False))
    res = run_job(load_job(folder / "job.yaml"), folder / "out", RunOptions(timeout=60))
    assert res.ok, res.error
    psi, echo = res.report["steps"]
    assert psi["outputs"]["intersection_size"] == 120
    assert psi["outputs"]["n_input"] == {"bank": 225, "partner": 200}
    assert echo["outputs"]["rows"] == {"bank": 120, "partner": 200}
    got = pd.read_csv(folder / "out" / "bank" / "psi.csv", dtype={"id": str})
    assert list(got["id"]) == sorted(common)
    # (a SQL table is read in id order: which of two rows of one id is first is the
    # database's choice, so the repeated rows here are copies)
    want = bank.drop_duplicates("id").set_index("id").loc[got["id"]].reset_index()
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert [p for p in spill.iterdir() if p.name.startswith("veil-psi-")] == []
