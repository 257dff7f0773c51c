"""ECDH-PSI over ids that stream in chunks (a Parquet folder's partitions): the same
intersection as a list, positions in the whole input, and memory that holds
fixed-width values rather than the ids."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from veil.engine.partitions import parquet_partitions
from veil.errors import ConfigError
from veil.net.local import run_parties
from veil.policy import TEST_POLICY
from veil.protocols.psi import PsiParams, run_psi
from veil.protocols.psi.ecdh import IdChunks


def chunks(lo: int, hi: int, size: int) -> Iterator[list[str]]:
    for a in range(lo, hi, size):
        yield [f"customer-{j:012d}" for j in range(a, min(a + size, hi))]


def test_streamed_parquet_ids_give_the_lists_intersection(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    universe = [f"id-{i:05d}" for i in rng.permutation(3000)]
    a_ids = universe[:1500] + universe[:40]  # repeats in a later partition
    b_ids = list(rng.permutation(universe[1000:2500]))
    folder = tmp_path / "a"
    folder.mkdir()
    for i in range(4):
        part = a_ids[i * 400 : (i + 1) * 400]
        pd.DataFrame({"id": part}).to_parquet(folder / f"part-{i:05d}.parquet", index=False)
    params = PsiParams(result_to=("a", "b"), batch_size=256)

    def streamed(s: object) -> object:
        parts = parquet_partitions(folder, ["id"], rows=128)
        ids = IdChunks(p["id"].tolist() for p in parts)
        return run_psi(s, ids, params, policy=TEST_POLICY)  # type: ignore[arg-type]

    res = run_parties({"a": streamed, "b": lambda s: run_psi(s, b_ids, params, policy=TEST_POLICY)})
    plain = run_parties(
        {
            "a": lambda s: run_psi(s, a_ids, params, policy=TEST_POLICY),
            "b": lambda s: run_psi(s, b_ids, params, policy=TEST_POLICY),
        }
    )
    got = [a_ids[i] for i in res["a"].indices]
    assert sorted(got) == sorted(universe[1000:1500])
    assert sorted(res["a"].indices.tolist()) == sorted(plain["a"].indices.tolist())
    assert all(i < 1500 for i in res["a"].indices)  # first occurrences, whole-input positions
    assert (res["a"].n_input, res["a"].n_distinct) == (1540, 1500)
    # both receivers list the common ids in the same order
    assert got == [b_ids[i] for i in res["b"].indices]


def test_a_bad_id_in_a_later_chunk_names_its_position_in_the_whole_input() -> None:
    bad = IdChunks([["a", "b"], ["c", None, "d"]])  # type: ignore[list-item]
    params = PsiParams(result_to=("a",))
    with pytest.raises(ConfigError, match="id at position 3 is null"):
        run_parties(
            {
                "a": lambda s: run_psi(s, bad, params, policy=TEST_POLICY),
                "b": lambda s: run_psi(s, ["x"], params, policy=TEST_POLICY),
            }
        )


def test_streamed_ecdh_holds_fixed_width_values_not_ids() -> None:
    """Python-traced peak memory of both parties per id: a list of ids costs several
    hundred bytes an id (strings, bytes, a dedup index); streamed, the ids are held a
    chunk at a time and the rest is 32-byte values and 8-byte positions."""
    per_id = _traced_peak(8_000, None) / 8_000  # both parties together
    assert per_id < 250, f"{per_id:.0f} bytes per id"  # ~145 measured; a list: ~710


def _traced_peak(n: int, spill_dir: str | None) -> int:
    params = PsiParams(result_to=("a",), batch_size=512, spill_dir=spill_dir)
    tracemalloc.start()
    try:
        out = run_parties(
            {
                "a": lambda s: run_psi(s, IdChunks(chunks(0, n, 512)), params, policy=TEST_POLICY),
                "b": lambda s: run_psi(
                    s, IdChunks(chunks(n // 2, n + n // 2, 512)), params, policy=TEST_POLICY
                ),
            }
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out["a"].size == n // 2
    return peak


def test_spilled_ecdh_memory_does_not_grow_with_the_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``spill_dir`` the per-id state is in bucket files: from 3,000 to 12,000 ids
    per party the traced peak of both parties grows by about the receiver's result (8
    bytes per common id, 4 per id), not by the ~145 bytes per id held in memory."""
    from veil.protocols.psi import spill

    monkeypatch.setattr(spill, "FLUSH_ROWS", 1024)  # a write buffer far below n
    small, big = (_traced_peak(n, str(tmp_path)) for n in (3_000, 12_000))
    growth = (big - small) / 9_000
    assert growth < 16, f"{growth:.0f} bytes per id"
    held = (_traced_peak(12_000, None) - small) / 9_000  # the same run in memory
    assert held > 60, f"in memory: {held:.0f} bytes per id"  # the test can tell them apart
    assert list(tmp_path.iterdir()) == []
