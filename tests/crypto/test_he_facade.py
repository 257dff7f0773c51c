"""The public HE surface others code against: names, shapes of the two scheme modules."""

from __future__ import annotations

import subprocess
import sys

import veil.crypto
import veil.policy
from veil.crypto import he, ou, paillier
from veil.crypto.encrypted import EncryptedArray

API = {
    "DEFAULT_POLICY",
    "TEST_POLICY",
    "EncryptedArray",
    "PublicKey",
    "SecretKey",
    "SecurityPolicy",
    "concatenate",
    "generate_keypair",
}


def test_schemes_have_the_same_shape():
    assert set(paillier.__all__) == API == set(ou.__all__)
    for mod in (paillier, ou):
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod.__name__}.{name}"
        assert mod.EncryptedArray is EncryptedArray
        for meth in ("encrypt", "encrypt_packed", "pack_spec", "precompute", "to_wire"):
            assert callable(getattr(mod.PublicKey, meth))
        for meth in ("decrypt", "decrypt_packed"):
            assert callable(getattr(mod.SecretKey, meth))
        assert callable(mod.PublicKey.from_wire)


def test_he_facade_names_resolve():
    for name in he.__all__:
        assert hasattr(he, name), name
    assert he.get_scheme("paillier") is paillier and he.get_scheme(he.HEScheme.OU) is ou


def test_one_policy_object():
    """The HE modules re-export veil.policy's policies: the very same objects."""
    for mod in (he, paillier, ou):
        assert mod.DEFAULT_POLICY is veil.policy.DEFAULT_POLICY
        assert mod.TEST_POLICY is veil.policy.TEST_POLICY
    assert he.KeyPolicy is veil.policy.SecurityPolicy  # the old name, while callers move


def test_crypto_package_lists_its_public_api():
    for name in veil.crypto.__all__:
        assert getattr(veil.crypto, name) is not None, name
    assert veil.crypto.EncryptedArray is EncryptedArray
    assert veil.crypto.generate_keypair is he.generate_keypair
    assert set(dir(veil.crypto)) >= set(veil.crypto.__all__)


IMPORT_PROBE = """
import atexit, sys, threading
registered = []
real = atexit.register
atexit.register = lambda f, *a, **k: (registered.append(f), real(f, *a, **k))[1]
before = threading.active_count()
import veil.crypto
from veil.crypto import he, paillier, ou, backend, kernels, encrypted, packing
assert threading.active_count() == before, "a thread started at import"
ours = [f for f in registered if getattr(f, "__module__", "").startswith("veil")]
assert ours == [], f"exit hooks registered at import: {ours}"
assert backend._state.backend is None, "the default backend was made at import"
assert "veil.crypto._gmpkernel" not in sys.modules, "the C kernel was loaded at import"
higher = ("veil.net", "veil.protocols", "veil.ml", "veil.jobs", "veil.mpc")
bad = sorted(m for m in sys.modules if m.startswith(higher))
assert not bad, f"crypto imported higher layers: {bad}"
print("ok")
"""


def test_importing_crypto_starts_and_registers_nothing():
    """In a fresh interpreter: no thread, no exit hook, no default backend, no C kernel
    and no module of a higher layer comes with ``import veil.crypto`` and its modules."""
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_encrypted_array_surface():
    for meth in (
        "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__neg__",
        "__getitem__", "__len__", "__matmul__", "sum", "group_sum", "matmul", "compress",
        "rerandomize", "to_wire", "from_wire", "shape",
    ):  # fmt: skip
        assert hasattr(EncryptedArray, meth), meth
