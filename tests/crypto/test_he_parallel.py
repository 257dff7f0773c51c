"""The multi-core paths (threads and worker processes) give the serial results."""

from __future__ import annotations

import numpy as np
import pytest

from veil.crypto import _native
from veil.crypto import _parallel as par
from veil.crypto.he import get_workers, set_workers
from veil.errors import ConfigError


@pytest.fixture
def two_workers(monkeypatch):
    before = get_workers()
    monkeypatch.setattr(par, "MIN_RANDOMISERS", 1)
    monkeypatch.setattr(par, "MIN_PRODUCTS", 1)
    monkeypatch.setattr(par, "MIN_POWMODS", 1)
    set_workers(2)
    yield
    set_workers(before)


def test_parallel_kernels_match_numpy(keys, two_workers):
    pk, sk = keys
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    c = pk.encrypt(x)  # randomisers from worker processes
    np.testing.assert_allclose(sk.decrypt(c), x, atol=2**-40)  # threaded decryption
    groups = rng.integers(-1, 5, size=40)
    want = np.array([x[groups == g].sum() for g in range(5)])
    np.testing.assert_allclose(sk.decrypt(c.group_sum(groups, 5)), want, atol=1e-9)
    np.testing.assert_allclose(sk.decrypt(c.sum()), [x.sum()], atol=1e-9)
    G = rng.integers(-1, 4, size=(40, 3))  # three histograms at once: split by feature
    want = np.array([[x[G[:, f] == b].sum() for b in range(4)] for f in range(3)]).ravel()
    np.testing.assert_allclose(sk.decrypt(c.group_sum(G, 4)), want, atol=1e-9)
    X1 = rng.normal(size=(40, 1))  # few columns: rows split across workers
    np.testing.assert_allclose(sk.decrypt(c @ X1), x @ X1, atol=1e-8)
    X6 = rng.integers(-9, 9, size=(40, 6))  # many columns: columns split
    np.testing.assert_allclose(sk.decrypt(c @ X6), x @ X6, atol=1e-8)
    np.testing.assert_allclose(sk.decrypt(c * -0.75), x * -0.75, atol=1e-9)


def test_set_workers_rejects_nonsense():
    with pytest.raises(ConfigError, match="workers"):
        set_workers(0)


@pytest.fixture
def python_kernels(monkeypatch):
    """The pure-Python kernels, which spread work over worker processes (the C kernel
    uses threads instead)."""
    monkeypatch.setenv("VEIL_NATIVE", "0")
    _native.reset()
    yield
    monkeypatch.delenv("VEIL_NATIVE")
    _native.reset()


@pytest.mark.parametrize("native", [True, False])
def test_parallel_kernels_both_paths(keys, two_workers, native, monkeypatch):
    if not native:
        monkeypatch.setenv("VEIL_NATIVE", "0")
    _native.reset()
    try:
        test_parallel_kernels_match_numpy(keys, None)
    finally:
        monkeypatch.delenv("VEIL_NATIVE", raising=False)
        _native.reset()


def test_dead_workers_fall_back_to_one_core(keys, two_workers, python_kernels, monkeypatch):
    pk, sk = keys
    c = pk.encrypt(np.arange(20))

    def broken(*_args):
        raise OSError("cannot start worker")

    monkeypatch.setattr(par, "_on_worker", broken)
    with pytest.warns(UserWarning, match="one core"):  # group products use the processes
        s = c.group_sum(np.arange(20) % 3, 3)
    assert get_workers() == 1
    np.testing.assert_array_equal(sk.decrypt(s), [63, 70, 57])
    np.testing.assert_array_equal(sk.decrypt(pk.encrypt(np.arange(20))), np.arange(20))
