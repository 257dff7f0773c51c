"""Pure cryptographic primitives (no I/O): HE schemes, curves, randomness.

Homomorphic encryption: ``from veil.crypto import paillier, ou`` (same shape) or
``veil.crypto.he.get_scheme(name)``; arrays are :class:`veil.crypto.encrypted.EncryptedArray`.
Submodules are imported on demand, so importing ``veil.crypto`` has no side effects.
"""
