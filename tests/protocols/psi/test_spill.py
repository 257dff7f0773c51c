"""The bucket store behind bounded-memory PSI: same records in memory and in files."""

from __future__ import annotations

import numpy as np
import pytest

from veil.errors import ConfigError
from veil.protocols.psi.spill import BucketStore, prefix_buckets

REC = np.dtype([("v", "S8"), ("pos", "<i8")])


def _records(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty(n, dtype=REC)
    out["v"] = rng.integers(0, 256, size=(n, 8), dtype=np.uint8).view("S8").ravel()
    out["pos"] = np.arange(n)
    return out


def test_prefix_buckets_keep_byte_order() -> None:
    rec = _records(5000, 1)
    b = prefix_buckets(rec["v"], 6)
    assert b.min() >= 0 and b.max() < 64
    order = np.lexsort((rec["v"], b))  # by bucket, then value ...
    assert (rec["v"][order] == np.sort(rec["v"])).all()  # ... is by value
    assert (prefix_buckets(rec["v"], 0) == 0).all()


@pytest.mark.parametrize("on_disk", [False, True])
def test_buckets_keep_input_order_across_flushes(tmp_path, on_disk: bool) -> None:
    rec = _records(3000, 2)
    where = prefix_buckets(rec["v"], 4)
    with BucketStore(REC, 4, tmp_path if on_disk else None, flush_rows=700) as store:
        for lo in range(0, len(rec), 250):
            store.add(rec[lo : lo + 250], where[lo : lo + 250])
        store.flush()
        assert len(store) == 3000
        for b in range(16):
            got = store.read(b)
            want = rec[where == b]
            assert store.count(b) == len(want)
            assert (got == want).all()  # every record, in the order added
        if on_disk:
            folder = store.folder
            assert folder is not None and folder.parent == tmp_path
            assert len(list(folder.iterdir())) == int((np.bincount(where) > 0).sum())
        store.write(3, store.read(3)[:2])
        assert store.count(3) == 2 and len(store.read(3)) == 2
        store.drop(3)
    assert list(tmp_path.iterdir()) == []  # the private folder is gone


def test_folder_is_removed_on_error(tmp_path) -> None:
    with pytest.raises(RuntimeError), BucketStore(REC, 2, tmp_path, flush_rows=1) as store:
        store.add(_records(10, 3), np.zeros(10, dtype=np.int64))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_bad_input(tmp_path) -> None:
    with pytest.raises(ConfigError, match="spill_dir"):
        BucketStore(REC, 2, tmp_path / "missing")
    with BucketStore(REC, 2, None) as store, pytest.raises(ValueError, match="dtype"):
        store.add(np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="bits"):
        BucketStore(REC, 17, None)


def test_bits_for_aims_at_bucket_rows() -> None:
    from veil.protocols.psi.spill import BUCKET_ROWS, bits_for

    assert bits_for(None, 12) == 12  # unknown count (streamed): the most
    assert bits_for(0, 12) == bits_for(BUCKET_ROWS, 12) == 0
    assert bits_for(BUCKET_ROWS + 1, 12) == 1
    assert bits_for(10**9, 12) == 12
