"""The Ray engine on a loopback cluster (head + one worker node): the same job gives
the same bytes as the local engine; a lost worker's task is retried; a lost head stops
the work with a clear error."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.engine.conftest import RayCluster, cluster_env, start_cluster
from tests.engine.test_engine import write_parts
from veil.crypto import ecc
from veil.engine import LocalEngine, install
from veil.engine.partitions import parquet_partitions, score_partitions
from veil.jobs import RunOptions, load_job, run_job
from veil.ml.secureboost import (
    PlainModel,
    SBTParams,
    fit_plain,
    run_label_holder,
    run_partner,
    run_predict_label_holder,
    run_predict_partner,
)
from veil.net.local import run_parties
from veil.policy import TEST_POLICY
from veil.protocols.psi import Protocol, PsiParams, kernels, run_psi
from veil.protocols.psi.kernels import LocalPointKernels

ray_engine = pytest.importorskip("veil.engine.ray_engine", exc_type=ImportError)


@pytest.fixture(scope="module")
def engine(ray_cluster: RayCluster) -> Iterator[Any]:
    """A RayEngine that sends every HE batch to the cluster, however small."""
    eng = ray_engine.RayEngine(ray_cluster.client, min_batch=1)
    assert eng.workers == 2  # head + worker node, one CPU each
    yield eng
    eng.close()


def test_psi_kernels_and_intersection_match_local(engine: Any) -> None:
    rng = np.random.default_rng(5)
    universe = [f"cust-{i}" for i in rng.permutation(3000)]
    bank, partner = universe[:1800], list(rng.permutation(universe[1000:2600]))
    scalar = ecc.new_scalar()
    raw = [x.encode() for x in bank]
    local = LocalPointKernels(2)
    remote = engine.point_kernels(None)
    enc = local.hash_blind(scalar, raw, ecc.DEFAULT_SUITE)
    assert remote.hash_blind(scalar, raw, ecc.DEFAULT_SUITE) == enc
    assert remote.blind_truncate(scalar, enc, 11, ecc.DEFAULT_SUITE) == local.blind_truncate(
        scalar, enc, 11, ecc.DEFAULT_SUITE
    )
    local.close()

    params = PsiParams(result_to=("bank", "partner"), batch_size=512)

    def psi() -> dict[str, list[str]]:
        out = run_parties(
            {
                "bank": lambda s: run_psi(s, bank, params, policy=TEST_POLICY),
                "partner": lambda s: run_psi(s, partner, params, policy=TEST_POLICY),
            },
            timeout=120,
        )
        got = {"bank": [bank[i] for i in out["bank"].indices]}
        got["partner"] = [partner[i] for i in out["partner"].indices]
        assert got["bank"] == got["partner"]  # aligned row for row
        return {k: sorted(v) for k, v in got.items()}

    want = psi()
    before = engine.tasks_run
    with install(engine):
        assert psi() == want
    assert engine.tasks_run > before  # the kernels did run on the cluster
    assert want["bank"] == sorted(set(bank) & set(partner))


def test_kkrt_kernels_and_intersection_match_local(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ray_engine, "MIN_ROWS_PER_TASK", 256)  # small batches still split
    rng = np.random.default_rng(8)
    rows = rng.integers(0, 256, size=(3000, 64), dtype=np.uint8)
    bins = rng.permutation(5000)[:3000].astype(np.int64)
    tags = rng.integers(0, 256, size=(3000, 15), dtype=np.uint8)
    idx = rng.integers(0, 3, size=3000).astype(np.uint8)
    key = kernels.OprfSenderKey(bytes(range(16)), rows[0].copy(), 11, b"veil-kkrt-oprf")
    local, remote = kernels.LocalPointKernels(), engine.point_kernels(None)
    for fn, args in (
        (kernels.oprf_receiver_values, lambda a, b: (rows[a:b], bins[a:b], 11, b"p")),
        (kernels.oprf_sender_values, lambda a, b: (key, tags[a:b], idx[a:b], rows[a:b], bins[a:b])),
    ):
        (whole,) = local.map_chunks(fn, [args(0, 3000)])
        cuts = remote.split(3000)
        assert len(cuts) == 2  # one chunk per worker
        assert b"".join(remote.map_chunks(fn, [args(a, b) for a, b in cuts])) == whole

    universe = [f"cust-{i}" for i in rng.permutation(4000)]
    bank, partner = universe[:2500], list(rng.permutation(universe[1500:3500]))
    params = PsiParams(result_to=("bank", "partner"), protocol=Protocol.KKRT)

    def psi() -> list[str]:
        out = run_parties(
            {
                "bank": lambda s: run_psi(s, bank, params, policy=TEST_POLICY),
                "partner": lambda s: run_psi(s, partner, params, policy=TEST_POLICY),
            },
            timeout=120,
        )
        got = [bank[i] for i in out["bank"].indices]
        assert got == [partner[i] for i in out["partner"].indices]  # aligned row for row
        return sorted(got)

    want = psi()
    before = engine.tasks_run
    with install(engine):
        assert psi() == want
    assert engine.tasks_run > before  # both parties' KKRT kernels ran on the cluster
    assert want == sorted(set(bank) & set(partner))


def _data(n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    xa, xb = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    y = ((xa[:, 0] + xb[:, 1] + 0.3 * rng.normal(size=n)) > 0).astype(np.float64)
    return xa, xb, y


SBT = SBTParams(n_trees=2, max_depth=2, max_bin=8, subsample=0.9, key_bits=768)


def _train_and_score(xa: np.ndarray, xb: np.ndarray, y: np.ndarray) -> tuple[Any, np.ndarray]:
    fed = run_parties(
        {
            "A": lambda s: run_label_holder(s, xa, y, ["a0", "a1"], SBT, policy=TEST_POLICY),
            "B": lambda s: run_partner(s, xb, ["b0", "b1"], SBT, policy=TEST_POLICY),
        },
        roles={"label_holder": "A", "partner1": "B"},
        timeout=300,
    )
    scores = run_parties(
        {
            "A": lambda s: run_predict_label_holder(s, fed["A"], xa),
            "B": lambda s: run_predict_partner(s, fed["B"], xb),
        },
        roles={"label_holder": "A", "partner1": "B"},
    )["A"]
    trees = [[(nd.party, nd.left, nd.right, nd.weight) for nd in t] for t in fed["A"].trees]
    return (trees, [r.__dict__ for r in fed["B"].records]), np.asarray(scores)


def test_secureboost_trees_and_scores_match_local(engine: Any) -> None:
    xa, xb, y = _data()
    want_model, want_scores = _train_and_score(xa, xb, y)
    before = engine.tasks_run
    with install(engine):
        got_model, got_scores = _train_and_score(xa, xb, y)
    assert engine.tasks_run > before  # encryption, decryption and histograms went out
    assert got_model == want_model
    assert got_scores.tobytes() == want_scores.tobytes()


def score_blocks(model: PlainModel, na: int, X: np.ndarray) -> np.ndarray:
    """Batch scoring of a two-block model over rows of both blocks' columns."""
    return model.predict([X[:, :na], X[:, na:]])


def test_batch_scores_over_parquet_partitions_match_local(engine: Any, tmp_path: Path) -> None:
    xa, xb, y = _data(400)
    model = fit_plain([xa, xb], y, SBT)
    cols = ["a0", "a1", "b0", "b1"]
    frame = pd.DataFrame(np.hstack([xa, xb]), columns=cols)
    folder = write_parts(tmp_path / "rows", frame, 4)
    predict: Callable[[np.ndarray], np.ndarray] = functools.partial(score_blocks, model, 2)
    local = LocalEngine(workers=2)
    want = list(score_partitions(local, predict, parquet_partitions(folder, rows=64), cols))
    local.close()
    got = list(score_partitions(engine, predict, parquet_partitions(folder, rows=64), cols))
    assert [g.tobytes() for g in got] == [w.tobytes() for w in want]
    assert np.concatenate(got).tobytes() == model.predict([xa, xb]).tobytes()


def die_once(marker: str, x: int) -> int:
    """Kill this worker process the first time (as a crashed machine would)."""
    if not os.path.exists(marker):
        Path(marker).write_text("died")
        os._exit(1)
    return 2 * x


def test_a_lost_worker_task_is_retried(engine: Any, tmp_path: Path) -> None:
    marker = str(tmp_path / "died")
    assert engine.run(die_once, [(marker, 21)]) == [42]
    assert Path(marker).read_text() == "died"  # the first attempt did die


def _psi_job(folder: Path, engine_url: str | None) -> Path:
    rng = np.random.default_rng(3)
    ids = [f"c{i:04d}" for i in rng.permutation(600)]
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": ids[:400], "y": rng.integers(0, 2, 400)}).to_csv(
        folder / "bank.csv", index=False
    )
    pd.DataFrame({"id": ids[250:], "x": rng.normal(size=350)}).to_csv(
        folder / "partner.csv", index=False
    )
    bank: dict[str, str] = {"data": "bank.csv", "id": "id", "label": "y"}
    if engine_url is not None:
        bank["engine"] = engine_url
    job = {
        "name": "engine-psi",
        "parties": {"bank": bank, "partner": {"data": "partner.csv", "id": "id"}},
        "steps": [{"psi": {"result_to": ["bank", "partner"], "batch_size": 128}}],
    }
    (folder / "job.yaml").write_text(yaml.safe_dump(job, sort_keys=False))
    return folder / "job.yaml"


@pytest.mark.slow  # three veil runs, each a process per party
def test_job_with_a_ray_engine_party_writes_the_same_bytes(
    ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", cluster_env()["PYTHONPATH"])
    outs = {}
    for name, url in (("local", None), ("ray", f"ray://{ray_cluster.client}")):
        job = _psi_job(tmp_path / name, url)
        res = run_job(load_job(job), tmp_path / name / "out", RunOptions(timeout=120))
        assert res.ok, res.error
        outs[name] = {
            p: (tmp_path / name / "out" / p / "psi.csv").read_bytes() for p in ("bank", "partner")
        }
    assert outs["ray"] == outs["local"]
    # The worker really installs the engine: an unreachable cluster stops the job.
    job = _psi_job(tmp_path / "down", "ray://127.0.0.1:9")
    res = run_job(load_job(job), tmp_path / "down" / "out", RunOptions(timeout=60))
    assert not res.ok and "cannot reach the Ray cluster at ray://127.0.0.1:9" in str(res.error)


LOST_HEAD = textwrap.dedent(
    """
    import sys
    from veil.crypto import ecc
    from veil.engine.ray_engine import EngineLost, RayEngine
    eng = RayEngine(sys.argv[1])
    k = eng.point_kernels(None)
    s = ecc.new_scalar()
    ids = [str(i).encode() for i in range(2000)]
    k.hash_blind(s, ids, ecc.DEFAULT_SUITE)
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        k.hash_blind(s, ids, ecc.DEFAULT_SUITE)
    except EngineLost as e:
        print("lost:", e, flush=True)
    """
)


@pytest.mark.slow
def test_a_lost_head_fails_with_a_clear_message(ray_cluster: RayCluster) -> None:
    cluster = start_cluster(workers=0, env=cluster_env())
    with tempfile.TemporaryFile("w+") as err:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", LOST_HEAD, cluster.client],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,  # a failed start says why in the assertion below
                text=True,
                env=cluster_env(),
            )
            assert proc.stdout is not None and proc.stdin is not None
            first = proc.stdout.readline().strip()
            if first != "ready":
                proc.kill()
                proc.wait(30)
                err.seek(0)
                first += " " + err.read()[-2000:]
            assert first == "ready"
            cluster.nodes[0].stop()
            t0 = time.monotonic()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, out
            assert out.startswith("lost: the Ray cluster at ray://")
            assert "restart the cluster" in out
            assert time.monotonic() - t0 < 90
        finally:
            cluster.stop()
