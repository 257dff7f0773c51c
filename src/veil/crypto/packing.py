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

from typing import TYPE_CHECKING

import numpy as np

from veil.crypto import _parallel as par
from veil.crypto import encoding as enc
from veil.errors import ConfigError

if TYPE_CHECKING:
    from veil.crypto.encrypted import EncryptedArray


def compress(c: EncryptedArray) -> EncryptedArray:
    """Pack ``k = capacity // slots`` rows of a packed array into each ciphertext.

    The result has ``ceil(len(c) / k)`` ciphertexts of ``k * slots`` slots; decrypt it with
    ``sk.decrypt_packed(out, slots=c.pack.slots, rows=len(c))`` to get ``c``'s layout back.
    """
    from veil.crypto.encrypted import EncryptedArray

    if c.pack is None or c.terms is None or c.ndim != 1:
        raise ConfigError("c", "is not a 1-D packed array", "use pk.encrypt_packed(...)")
    spec = c.pack
    k = (c.pk.plain_bits // spec.slot_bits) // spec.slots
    if k <= 1 or len(c) <= 1:
        return c
    k = min(k, len(c))
    rows = len(c)
    groups = -(-rows // k)
    pad = groups * k - rows
    m = c.pk.ct_modulus
    cts = list(c.ct)
    shift = 1 << (spec.slots * spec.slot_bits)
    # column j holds row g*k + j; start from the most significant (last) column
    cols = [cts[j::k] for j in range(k)]
    acc = cols[k - 1] + [None] * (groups - len(cols[k - 1]))
    for j in range(k - 2, -1, -1):
        live = [i for i, a in enumerate(acc) if a is not None]
        powed = par.powmod_base_list([acc[i] for i in live], shift, m)
        for i, a in zip(live, powed, strict=True):
            acc[i] = a
        for i, x in enumerate(cols[j]):
            acc[i] = x if acc[i] is None else acc[i] * x % m
    ct = np.empty(groups, dtype=object)
    ct[:] = acc
    terms = np.concatenate([c.terms, np.zeros((pad, spec.slots), dtype=np.int64)])
    new = enc.PackSpec(spec.slots * k, spec.slot_bits, spec.frac_bits, spec.offset, spec.max_terms)
    return EncryptedArray(
        c.pk, ct, 0, False, 0, pack=new, terms=terms.reshape(groups, k * spec.slots)
    )
