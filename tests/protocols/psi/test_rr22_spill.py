"""RR22-PSI with ``spill_dir``: a party's digests in files, one protocol bucket in memory.

Spilling must not change a result's bytes (nor the wire: a spilling party runs against
an in-memory one), and must leave its folder empty, also when a party fails mid-run.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.protocols.psi.test_ecdh import BANK, PARTNER, check_both, overlapping_sets
from veil.errors import ProtocolError
from veil.net import Session, run_parties
from veil.protocols.psi import Protocol, PsiParams, PsiResult, run_psi
from veil.protocols.psi import buckets as psi_buckets
from veil.protocols.psi import rr22 as rr22_psi
from veil.protocols.psi.ecdh import IdChunks


@pytest.fixture
def fixed_coins(monkeypatch: pytest.MonkeyPatch) -> None:
    """rr22's own coins (hashing seed, OKVS seeds, padding, the sender's shuffle) made
    fixed, so that two runs must give the same bytes (the VOLE's coins do not reach the
    result)."""
    fake = types.SimpleNamespace(token_bytes=lambda k: np.random.default_rng(k).bytes(k))
    monkeypatch.setattr(rr22_psi, "secrets", fake)
    shuffle = lambda k: np.random.default_rng(k).permutation(k)  # noqa: E731
    monkeypatch.setattr(rr22_psi, "secure_permutation", shuffle)


def _pair(
    a: Sequence[str] | IdChunks,
    b: Sequence[str] | IdChunks,
    spill: dict[str, str | None],
) -> dict[str, PsiResult]:
    def role(ids: Sequence[str] | IdChunks, folder: str | None) -> Callable[[Session], PsiResult]:
        p = PsiParams(result_to=(BANK, PARTNER), protocol=Protocol.RR22, spill_dir=folder)
        return lambda s: run_psi(s, ids, p)

    return run_parties({BANK: role(a, spill.get(BANK)), PARTNER: role(b, spill.get(PARTNER))})


def _chunked(ids: list[str]) -> IdChunks:
    return IdChunks(ids[lo : lo + 37] for lo in range(0, len(ids), 37))


def _empty(folder: Path) -> bool:
    return not any(folder.iterdir())


@pytest.mark.usefixtures("fixed_coins")
@pytest.mark.parametrize(
    ("target", "spillers", "stream"),
    [  # B > 1 (a small bucket target) and B = 1; either party spilling, or both
        (200, (BANK,), False),
        (200, (PARTNER,), True),
        (200, (BANK, PARTNER), True),
        (rr22_psi.BUCKET_TARGET, (PARTNER,), False),
    ],
)
def test_spill_gives_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    target: int,
    spillers: tuple[str, ...],
    stream: bool,
) -> None:
    """From a list or a stream with repeats across chunks: byte-identical indices for
    both roles, spilling or not; the folder is empty afterwards."""
    monkeypatch.setattr(rr22_psi, "BUCKET_TARGET", target)
    a, b = overlapping_sets(3000, 2000, 700, seed=51)
    a, b = a + a[::5], b + b[::3]
    buckets = psi_buckets.bucket_count(len(set(a)), len(set(b)), 40, target)
    assert (buckets > 1) == (target == 200)
    want = _pair(a, b, {})
    check_both(want, a, b)
    ids = (_chunked(a), _chunked(b)) if stream else (a, b)
    got = _pair(*ids, dict.fromkeys(spillers, str(tmp_path)))
    for party, n_input in ((BANK, len(a)), (PARTNER, len(b))):
        g, w = got[party], want[party]
        assert g.indices is not None and w.indices is not None
        assert g.indices.dtype == w.indices.dtype == np.int64
        assert g.indices.tobytes() == w.indices.tobytes(), party
        assert (g.size, g.n_input, g.n_distinct, g.peer_n_distinct) == (
            w.size,
            n_input,
            w.n_distinct,
            w.peer_n_distinct,
        )
    assert _empty(tmp_path)


@pytest.mark.parametrize("stream", [True, False])
def test_spilled_ids_are_grouped_as_in_memory(tmp_path: Path, stream: bool) -> None:
    """hold_ids with a folder: same distinct count, shard offsets and buckets (digests
    and input positions) as in memory; the files (one per shard for a stream, one in
    all for a list this short) are there until read, then gone."""
    a = [f"id{i % 700}" for i in range(2000)]  # repeats
    key = bytes(range(16))
    mem = psi_buckets.hold_ids(a, key, None)
    with psi_buckets.hold_ids(_chunked(a) if stream else a, key, str(tmp_path)) as held:
        (store,) = tmp_path.iterdir()
        files = len(list(store.iterdir()))
        assert files > 100 if stream else files == 1
        assert held.n_input == mem.n_input == 2000 and len(held) == len(mem) == 700
        assert held.offsets.tolist() == mem.offsets.tolist()
        for b in range(4):
            (dm, rm), (ds, rs) = mem.bucket(b, 4), held.bucket(b, 4)
            assert dm.tobytes() == ds.tobytes() and rm.tobytes() == rs.tobytes()
        assert _empty(store)  # every file read once, then removed
    assert _empty(tmp_path)


@pytest.mark.parametrize("spiller", [BANK, PARTNER])
def test_folder_is_emptied_when_the_peer_fails_mid_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, spiller: str
) -> None:
    """The other party fails mid-run (the receiver at its first match, after its second
    bucket; the sender at its first bucket) while the spiller's files are on disk (its
    9000 ids in 4 files, B = 8: a file holds two buckets)."""
    monkeypatch.setattr(rr22_psi, "BUCKET_TARGET", 2000)
    seen: list[int] = []

    def failing(*args: object, **kw: object) -> np.ndarray:
        seen.extend(len(list(d.iterdir())) for d in tmp_path.iterdir())
        raise RuntimeError("the peer failed")

    # the non-spilling party fails: BANK is the receiver (it calls _match_bucket),
    # PARTNER the sender (it calls _sender_bucket)
    where = "_sender_bucket" if spiller == BANK else "_match_bucket"
    monkeypatch.setattr(rr22_psi, where, failing)
    big, small = overlapping_sets(9000, 1200, 300, seed=52)
    assert psi_buckets.bucket_count(9000, 1200, 40, 2000) == 8
    with pytest.raises(RuntimeError, match="the peer failed"):
        _pair(*((big, small) if spiller == BANK else (small, big)), {spiller: str(tmp_path)})
    assert seen and seen[0] > 0  # the spiller's files were there when the peer failed
    assert _empty(tmp_path)


def test_folder_is_emptied_when_the_spiller_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(rr22_psi, "BUCKET_TARGET", 100)
    monkeypatch.setattr(rr22_psi.buckets, "bound", lambda n, b, s: max(n // b // 2, 1))
    seen: list[int] = []
    check = rr22_psi._bucket_starts

    def spy(*args: Any) -> np.ndarray:
        seen.append(sum(len(list(d.iterdir())) for d in tmp_path.iterdir()))
        return check(*args)

    monkeypatch.setattr(rr22_psi, "_bucket_starts", spy)
    a, b = overlapping_sets(600, 500, 100, seed=53)
    with pytest.raises(ProtocolError, match="more than its bound"):
        _pair(a, b, {BANK: str(tmp_path), PARTNER: str(tmp_path)})
    assert seen and max(seen) > 0  # a spilled file was there when the check failed
    assert _empty(tmp_path)
