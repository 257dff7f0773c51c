"""ECDH-PSI keeping its per-id state in files (``spill_dir``): the same wire and the same
result as in memory, bucket files really used, and nothing left behind."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pytest

from tests.wire_check import Recorder
from veil.crypto import ecc
from veil.net import Session, run_parties
from veil.protocols.psi import PsiParams, PsiResult, ecdh, run_psi, spill
from veil.protocols.psi.ecdh import IdChunks

BANK, PARTNER = "bank", "partner"


@pytest.fixture
def fixed_scalar(monkeypatch: pytest.MonkeyPatch) -> None:
    """One scalar for every run, so two runs' values and result orders can be compared."""
    k = ecc.new_scalar(ecc.DEFAULT_SUITE)
    monkeypatch.setattr(ecdh.ecc, "new_scalar", lambda suite=ecc.DEFAULT_SUITE: k)


def _ids(seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    common = [f"c{rng.getrandbits(48)}" for _ in range(700)]
    bank = common + [f"b{i}" for i in range(1300)] + common[:50]  # 50 repeats
    partner = [f"p{i}" for i in range(900)] + common + ["p3", "p3"]
    rng.shuffle(bank)
    rng.shuffle(partner)
    return bank, partner


def _pair(
    bank: Iterable[str] | Sequence[str],
    partner: Iterable[str] | Sequence[str],
    spill_dirs: tuple[str | None, str | None],
    tap: Recorder | None = None,
    batch_size: int = 256,
) -> dict[str, PsiResult]:
    def party(ids: Iterable[str] | Sequence[str], sd: str | None):  # type: ignore[no-untyped-def]
        params = PsiParams((BANK, PARTNER), batch_size=batch_size, spill_dir=sd)
        return lambda s: run_psi(s, ids, params)

    return run_parties(
        {BANK: party(bank, spill_dirs[0]), PARTNER: party(partner, spill_dirs[1])},
        tap=tap,  # type: ignore[arg-type]
    )


def _same(a: dict[str, PsiResult], b: dict[str, PsiResult]) -> None:
    for p in (BANK, PARTNER):
        assert a[p].indices is not None and b[p].indices is not None
        assert a[p].indices.dtype == b[p].indices.dtype
        assert a[p].indices.tobytes() == b[p].indices.tobytes()
        assert (a[p].n_input, a[p].n_distinct, a[p].peer_n_distinct) == (
            b[p].n_input,
            b[p].n_distinct,
            b[p].peer_n_distinct,
        )


@pytest.mark.usefixtures("fixed_scalar")
def test_spilling_gives_the_same_frames_and_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spill, "FLUSH_ROWS", 300)  # several flushes per store
    monkeypatch.setattr(spill, "BUCKET_ROWS", 64)  # 2^5 buckets, several ids in each
    bank, partner = _ids(1)
    folders: list[Path] = []
    real_read = spill.BucketStore.read

    def read(self: spill.BucketStore, b: int) -> np.ndarray:
        if self.folder is not None and self.folder not in folders:
            folders.append(self.folder)
        return real_read(self, b)

    monkeypatch.setattr(spill.BucketStore, "read", read)
    in_memory, on_disk, mixed = Recorder(), Recorder(), Recorder()
    a = _pair(bank, partner, (None, None), in_memory)
    assert folders == []
    b = _pair(bank, partner, (str(tmp_path), str(tmp_path)), on_disk)
    assert len(folders) == 6  # both parties: own values, own duals, peer's duals
    c = _pair(bank, IdChunks([partner[:500], partner[500:]]), (str(tmp_path), None), mixed)
    _same(a, b)
    _same(a, c)
    assert a[BANK].indices is not None and a[PARTNER].indices is not None
    common = set(bank) & set(partner)
    assert {bank[i] for i in a[BANK].indices} == common
    assert [bank[i] for i in a[BANK].indices] == [partner[i] for i in a[PARTNER].indices]
    for i in a[BANK].indices:
        assert bank.index(bank[i]) == i  # each common id at its first occurrence
    frames = [(f.src, f.dst, f.key, f.payload) for f in in_memory.frames]
    assert sorted(frames) == sorted((f.src, f.dst, f.key, f.payload) for f in on_disk.frames)
    assert sorted(frames) == sorted((f.src, f.dst, f.key, f.payload) for f in mixed.frames)
    assert list(tmp_path.iterdir()) == []  # every bucket file and folder removed


def test_failed_peer_leaves_no_files(tmp_path: Path) -> None:
    def crashing(s: Session) -> None:
        s.recv(BANK, "hello")
        raise RuntimeError("partner died midway")

    params = PsiParams((BANK,), spill_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="died midway"):
        run_parties(
            {BANK: lambda s: run_psi(s, [str(i) for i in range(3000)], params), PARTNER: crashing},
            timeout=30,
        )
    assert list(tmp_path.iterdir()) == []


def test_sender_only_and_unequal_batches_spill(tmp_path: Path) -> None:
    bank, partner = _ids(2)
    res = run_parties(
        {
            BANK: lambda s: run_psi(
                s, bank, PsiParams((BANK,), batch_size=100, spill_dir=str(tmp_path))
            ),
            PARTNER: lambda s: run_psi(
                s, partner, PsiParams((BANK,), batch_size=333, spill_dir=str(tmp_path))
            ),
        }
    )
    assert res[PARTNER].indices is None
    got = res[BANK].indices
    assert got is not None and {bank[i] for i in got} == set(bank) & set(partner)
    assert list(tmp_path.iterdir()) == []
