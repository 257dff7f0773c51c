"""The engine without Ray: URLs, job-file and CLI validation, the import probe, the
local engine's ordered streaming over a directory of Parquet files."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from veil.crypto import ecc
from veil.engine import LocalEngine, install, open_engine, parse_engine
from veil.engine.partitions import blind_partitions, parquet_files, parquet_partitions
from veil.errors import ConfigError
from veil.jobs.cli_run import options_from_args
from veil.jobs.spec import load_job
from veil.protocols.psi import kernels

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("url", "kind", "address"),
    [
        ("local", "local", None),
        (None, "local", None),
        ("ray://10.0.0.5:10001", "ray", "10.0.0.5:10001"),
    ],
)
def test_engine_urls(url: str | None, kind: str, address: str | None) -> None:
    spec = parse_engine(url)
    assert (spec.kind, spec.address) == (kind, address)


@pytest.mark.parametrize(
    "bad", ["ray", "ray://host", "ray://:10001", "ray://h:0", "ray://h:99999", "spark://h:1", 7]
)
def test_bad_engine_url_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="engine"):
        parse_engine(bad)


def _job(tmp_path: Path, engine: object) -> Path:
    pd.DataFrame({"id": ["a", "b"], "y": [0, 1]}).to_csv(tmp_path / "bank.csv", index=False)
    pd.DataFrame({"id": ["a", "c"]}).to_csv(tmp_path / "partner.csv", index=False)
    job = {
        "name": "j",
        "parties": {
            "bank": {"data": "bank.csv", "id": "id", "label": "y", "engine": engine},
            "partner": {"data": "partner.csv", "id": "id"},
        },
        "steps": [{"psi": {"result_to": ["bank"]}}],
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_job_file_engine_is_per_party_and_validated(tmp_path: Path) -> None:
    spec = load_job(_job(tmp_path, "ray://127.0.0.1:10001"))
    assert spec.party("bank").engine == "ray://127.0.0.1:10001"
    assert spec.party("partner").engine is None
    with pytest.raises(ConfigError, match=r"parties\.bank\.engine"):
        load_job(_job(tmp_path, "ray:/nowhere"))


def _args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "address": [],
        "party": None,
        "ca": None,
        "cert": None,
        "key": None,
        "tls": None,
        "listen": None,
        "timeout": 5.0,
        "engine": None,
    }
    return argparse.Namespace(**(base | kw))


def test_cli_engine_needs_party_and_a_valid_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--engine need --party"):
        options_from_args(_args(engine="ray://h:1"))
    files = {k: tmp_path / k for k in ("ca", "cert", "key")}
    with pytest.raises(ConfigError, match="--engine"):
        options_from_args(_args(party="bank", engine="ray:h", **files))
    opts = options_from_args(_args(party="bank", engine="ray://h:10001", **files))
    assert opts.engine == "ray://h:10001"


PROBE = """
import sys
import veil, veil.cli, veil.engine, veil.engine.partitions, veil.jobs.worker
from veil.jobs.engines import installed_engine
with installed_engine("local"):
    pass
with veil.engine.install("local"):
    pass
assert "ray" not in sys.modules, sorted(m for m in sys.modules if m.startswith("ray"))
sys.modules["ray"] = None  # as if Ray were not installed
try:
    veil.engine.open_engine("ray://127.0.0.1:1")
except veil.errors.ConfigError as e:
    assert "pip install 'veil[ray]'" in str(e), e
else:
    raise AssertionError("no ConfigError without Ray")
print("ok")
"""


def test_without_ray_nothing_imports_it() -> None:
    r = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_install_swaps_the_psi_kernels_and_restores_them() -> None:
    eng = LocalEngine(workers=2)
    before = kernels.open_point_kernels(None)
    before.close()
    with install(eng) as got:
        assert got is eng
        k = kernels.open_point_kernels(3)
        assert isinstance(k, kernels.LocalPointKernels)
        k.close()
    assert type(kernels.open_point_kernels(None)) is type(before)
    eng.close()
    assert isinstance(open_engine("local"), LocalEngine)


def write_parts(folder: Path, frame: pd.DataFrame, n_files: int) -> Path:
    """A Spark-like directory: part files, a _SUCCESS marker and a checksum file."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), n_files)):
        frame.iloc[part].to_parquet(folder / f"part-{i:05d}-x.snappy.parquet", index=False)
    (folder / "_SUCCESS").write_text("")
    (folder / ".part-00000-x.snappy.parquet.crc").write_text("crc")
    return folder


def test_parquet_directory_streams_in_order_with_bounded_window(tmp_path: Path) -> None:
    ids = [f"id-{i}" for i in range(1000)]
    folder = write_parts(tmp_path / "bank", pd.DataFrame({"id": ids, "x": range(1000)}), 3)
    assert [f.name[:10] for f in parquet_files(folder)] == [
        "part-00000",
        "part-00001",
        "part-00002",
    ]
    parts = list(parquet_partitions(folder, ["id"], rows=128))
    assert max(len(p) for p in parts) == 128 and len(parts) > 3
    assert [x for p in parts for x in p["id"]] == ids
    scalar = ecc.new_scalar()
    pulled: list[int] = []

    def source() -> object:
        for i, p in enumerate(parquet_partitions(folder, ["id"], rows=100)):
            pulled.append(i)
            yield p

    eng = LocalEngine(workers=2)
    out = []
    for i, blob in enumerate(blind_partitions(eng, source(), "id", scalar, window=3)):
        assert len(pulled) <= i + 3 + 1  # never more than the window read ahead
        out.append(blob)
    eng.close()
    want = kernels.hash_blind(scalar, [x.encode() for x in ids], ecc.DEFAULT_SUITE)
    assert b"".join(out) == want
    with pytest.raises(ConfigError, match="no Parquet files"):
        parquet_files(tmp_path)


def test_loopback_nodes_keep_one_idle_worker_per_driver_per_cpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two parties on one loopback cluster: each node is told to keep a worker per
    driver per CPU (else Ray kills one party's idle worker whenever the other's starts),
    and gets the object store asked for; one driver leaves Ray's default alone."""
    from veil.engine import loopback

    started: list[tuple[list[str], dict[str, str]]] = []

    def fake_start(args: list[str], log: Path, env: dict[str, str]) -> loopback.RayNode:
        started.append((args, dict(env)))
        return loopback.RayNode(subprocess.Popen(["true"], start_new_session=True), log)

    monkeypatch.setattr(loopback, "_start_node", fake_start)
    monkeypatch.setattr(loopback, "_wait_started", lambda node: None)
    base = {"PATH": "/bin"}
    cluster = loopback.start_cluster(
        2, head_cpus=0, worker_cpus=3, env=base, drivers=2, object_store_bytes=300 << 20
    )
    cluster.stop()
    assert len(started) == 3
    limits = [env.get("RAY_num_workers_soft_limit") for _, env in started]
    assert limits == ["2", "6", "6"]
    assert all(f"--object-store-memory={300 << 20}" in args for args, _ in started)
    assert all(env["PATH"] == "/bin" for _, env in started)

    started.clear()
    loopback.start_cluster(1, env=base).stop()
    assert all("RAY_num_workers_soft_limit" not in env for _, env in started)
    assert all(f"--object-store-memory={loopback.OBJECT_STORE_BYTES}" in a for a, _ in started)
    with pytest.raises(ValueError, match="drivers"):
        loopback.node_env(base, 0, 1)
