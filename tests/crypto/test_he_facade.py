"""The public HE surface others code against: names, shapes of the two scheme modules."""

from __future__ import annotations

from veil.crypto import he, ou, paillier
from veil.crypto.encrypted import EncryptedArray

API = {
    "DEFAULT_POLICY",
    "TEST_POLICY",
    "EncryptedArray",
    "KeyPolicy",
    "PublicKey",
    "SecretKey",
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


def test_encrypted_array_surface():
    for meth in (
        "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__neg__",
        "__getitem__", "__len__", "__matmul__", "sum", "group_sum", "matmul", "compress",
        "rerandomize", "to_wire", "from_wire", "shape",
    ):  # fmt: skip
        assert hasattr(EncryptedArray, meth), meth
