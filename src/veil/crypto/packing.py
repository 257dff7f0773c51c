"""Ciphertext compression: fold several packed ciphertexts into one before decryption.

After a histogram (``group_sum``) each packed ciphertext holds a few slots (e.g. the
gradient and hessian sums of one bin) but spends a whole plaintext. ``compress`` shifts
``k`` of them into one plaintext, ``C = sum_j c_j * 2**(j * slots * slot_bits)`` computed
homomorphically by Horner's rule (``C = C**(2**shift) * c_j``), so the key holder decrypts
``k`` times fewer ciphertexts and ``k`` times fewer bytes cross the wire -- the
"cipher compression" of FATE and SecretFlow SecureBoost. Slot bounds are unchanged, so
compression cannot overflow; decryption of the result uses the full plaintext space.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from gmpy2 import mpz

from veil.crypto import encoding as enc
from veil.crypto._kernels import objects
from veil.crypto.backend import HEBackend, default_backend
from veil.errors import ConfigError

if TYPE_CHECKING:
    from veil.crypto.encrypted import EncryptedArray
    from veil.crypto.kernels import BigInt


def fold_chunks(
    chunks: Sequence[Sequence[BigInt]],
    shift_bits: int,
    m: BigInt,
    backend: HEBackend | None = None,
) -> list[mpz]:
    """For each chunk ``[c_0 .. c_{k-1}]`` the ciphertext ``prod_j c_j ** (2**(j * shift_bits))``
    mod ``m``, i.e. Enc(sum_j m_j << (j * shift_bits)), by Horner's rule
    (``acc = acc**(2**shift) * c_j``); each Horner step raises all live chunks at once,
    on ``backend`` (None: :func:`~veil.crypto.backend.default_backend`)."""
    if not chunks:
        return []
    be = default_backend() if backend is None else backend
    shift = 1 << shift_bits
    acc = [c[-1] for c in chunks]
    for depth in range(2, max(len(c) for c in chunks) + 1):  # shorter chunks are done
        live = [i for i, c in enumerate(chunks) if len(c) >= depth]
        raised = be.powmod_base_list([acc[i] for i in live], shift, m)
        for i, r in zip(live, raised, strict=True):
            acc[i] = r * chunks[i][-depth] % m
    return acc


def compress(c: EncryptedArray) -> tuple[np.ndarray, enc.PackSpec, np.ndarray] | None:
    """Pack ``k = capacity // slots`` rows of a packed array into each ciphertext.

    Returns the parts of the compressed array (ciphertexts, layout, terms) for
    :meth:`EncryptedArray.compress` to assemble, or ``None`` when nothing folds. The result
    has ``ceil(len(c) / k)`` ciphertexts of ``k * slots`` slots; decrypt it with
    ``sk.decrypt_packed(out, slots=c.pack.slots, rows=len(c))`` to get ``c``'s layout back.
    """
    if c.pack is None or c.terms is None or c.ndim != 1:
        raise ConfigError("c", "is not a 1-D packed array", "use pk.encrypt_packed(...)")
    spec = c.pack
    k = (c.pk.plain_bits // spec.slot_bits) // spec.slots
    if k <= 1 or len(c) <= 1:
        return None
    k = min(k, len(c))
    rows = len(c)
    groups = -(-rows // k)
    pad = groups * k - rows
    cts = list(c.ct)
    acc = fold_chunks(
        [cts[i : i + k] for i in range(0, rows, k)],
        spec.slots * spec.slot_bits,
        c.pk.ct_modulus,
        c.pk.backend,
    )
    ct = objects(acc)
    terms = np.concatenate([c.terms, np.zeros((pad, spec.slots), dtype=np.int64)])
    new = enc.PackSpec(spec.slots * k, spec.slot_bits, spec.frac_bits, spec.offset, spec.max_terms)
    return ct, new, terms.reshape(groups, k * spec.slots)
