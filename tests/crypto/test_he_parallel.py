"""The backends: the multi-core paths (threads and worker processes) give the serial
results, a key runs on the backend it was given, and the default is made on demand."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from veil.crypto import _native, backend, ou, paillier
from veil.crypto.backend import HEBackend, LocalBackend, default_backend, set_default_backend
from veil.crypto.he import get_workers, public_key_from_wire, set_workers
from veil.crypto.packing import fold_chunks
from veil.errors import ConfigError
from veil.policy import TEST_POLICY


def eager(workers: int) -> LocalBackend:
    """A backend that spreads even tiny batches (so that small tests take the parallel
    paths)."""
    b = LocalBackend(workers)
    b.min_randomisers = b.min_products = b.min_powmods = b.min_mulmods = 1
    return b


class Counting(LocalBackend):
    """A local backend that records which batch methods ran (a stand-in for a scale-out
    backend that subclasses LocalBackend)."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.calls: list[str] = []
        self.min_randomisers = self.min_products = self.min_powmods = self.min_mulmods = 1

    def __getattribute__(self, name: str) -> Any:
        if name in {
            "powmod_base_list", "mulmod_list", "group_product_columns", "multi_exp_columns",
            "random_pow", "fixed_pow", "table_pow", "map_ranges",
        }:  # fmt: skip
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)


@pytest.fixture
def two_workers(keys: Any) -> Iterator[LocalBackend]:
    """The session keys, running on an eager two-core backend for one test."""
    pk, _ = keys
    with eager(2) as b:
        pk.backend = b
        try:
            yield b
        finally:
            pk.backend = None


def check_kernels(keys: Any) -> None:
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
    np.testing.assert_allclose(sk.decrypt(c + c), 2 * x, atol=1e-9)


def test_parallel_kernels_match_numpy(keys, two_workers):
    check_kernels(keys)


def test_workers_rejects_nonsense():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="workers"):
            LocalBackend(bad)  # type: ignore[arg-type]
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
        check_kernels(keys)
    finally:
        monkeypatch.delenv("VEIL_NATIVE", raising=False)
        _native.reset()


def test_dead_workers_fall_back_to_one_core(keys, two_workers, python_kernels, monkeypatch):
    pk, sk = keys
    c = pk.encrypt(np.arange(20))

    def broken(*_args):
        raise OSError("cannot start worker")

    monkeypatch.setattr(two_workers, "_on_worker", broken)
    with pytest.warns(UserWarning, match="one core"):  # group products use the processes
        s = c.group_sum(np.arange(20) % 3, 3)
    assert two_workers.workers == 1
    np.testing.assert_array_equal(sk.decrypt(s), [63, 70, 57])
    np.testing.assert_array_equal(sk.decrypt(pk.encrypt(np.arange(20))), np.arange(20))


@pytest.mark.parametrize("mod", [paillier, ou])
def test_keys_run_on_the_backend_they_were_given(mod):
    """Key generation, a peer's copy of the key and every array operation use the
    backend passed in, not the default."""
    with Counting(2) as b:
        pk, sk = mod.generate_keypair(1024, policy=TEST_POLICY, backend=b)
        assert pk.backend is b
        peer = public_key_from_wire(pk.to_wire(), TEST_POLICY, backend=b)
        assert peer.backend is b
        x = np.arange(-30, 30)
        c = peer.encrypt(x)
        total = (c + c).sum()
        np.testing.assert_array_equal(sk.decrypt(total), [2 * x.sum()])
        np.testing.assert_array_equal(sk.decrypt(c @ np.ones((60, 2))), [x.sum()] * 2)
        used = set(b.calls)
    assert {"mulmod_list", "group_product_columns", "multi_exp_columns"} <= used
    assert {"powmod_base_list"} <= used  # decryption
    assert used & {"random_pow", "map_ranges", "table_pow", "fixed_pow"}  # randomisers


def test_fold_chunks_takes_a_backend(paillier_keys):
    pk, sk = paillier_keys
    cts = list(pk.raw_encrypt(np.array([1, 2, 3, 4], dtype=object)))
    with Counting(2) as b:
        (packed,) = fold_chunks([cts], 16, pk.ct_modulus, b)
        assert "powmod_base_list" in b.calls
    res, _ = sk.raw_decrypt(np.array([packed], dtype=object), 1 << 80)
    assert res == [1 + (2 << 16) + (3 << 32) + (4 << 48)]  # c_j shifted by j * 16 bits


def test_default_backend_is_made_on_demand_and_replaceable(monkeypatch):
    monkeypatch.setattr(backend, "_state", backend._Default())
    monkeypatch.setenv("VEIL_HE_WORKERS", "3")
    assert backend._state.backend is None
    first = default_backend()
    assert isinstance(first, LocalBackend) and first.workers == 3 and get_workers() == 3
    assert default_backend() is first
    mine = LocalBackend(1)
    set_default_backend(mine)
    assert default_backend() is mine and get_workers() == 1
    set_workers(2)  # the old knob: a LocalBackend made (and owned) by the module
    assert get_workers() == 2 and default_backend() is not mine
    with pytest.raises(ConfigError, match="backend"):
        set_default_backend(object())  # type: ignore[arg-type]
    backend._state.close()


def test_workers_from_the_environment(monkeypatch):
    monkeypatch.setenv("VEIL_HE_WORKERS", "2")
    assert LocalBackend.from_env().workers == 2
    monkeypatch.setenv("VEIL_HE_WORKERS", "0")  # 0: all cores, as before
    assert LocalBackend.from_env().workers == (os.cpu_count() or 1)
    monkeypatch.setenv("VEIL_HE_WORKERS", "many")
    with pytest.raises(ConfigError, match="VEIL_HE_WORKERS"):
        LocalBackend.from_env()


def test_local_backend_closes_and_restarts():
    b = eager(2)
    assert isinstance(b, HEBackend)
    m = paillier.generate_keypair(1024, policy=TEST_POLICY)[0].ct_modulus
    assert b.mulmod_list([3] * 4, [5] * 4, m) == [15] * 4
    b.close()
    assert b._threads is None
    assert b.powmod_base_list([2] * 40, 10, m) == [1024] * 40  # starts again
    with b:
        pass
    assert b._threads is None


def test_a_key_refuses_a_non_backend(paillier_keys):
    pk, _ = paillier_keys
    with pytest.raises(ConfigError, match="backend"):
        pk.backend = "threads"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="backend"):
        paillier.generate_keypair(1024, policy=TEST_POLICY, backend=4)  # type: ignore[arg-type]
