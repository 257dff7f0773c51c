"""Two-party secret sharing over Z_2^64: ring arithmetic, seeded PRGs, Beaver triples
(from a dealer or made under HE), the online engine and sigmoid approximations.

Layout: :mod:`~veil.mpc.ring` (pure share arithmetic, fixed point, truncation),
:mod:`~veil.mpc.prg` (AES-CTR streams from 16-byte seeds), :mod:`~veil.mpc.plan`
(the offline plan of triples and masks), :mod:`~veil.mpc.triples` (triple stores, the
dealer), :mod:`~veil.mpc.he_triples` (triples without a dealer, under Paillier/OU),
:mod:`~veil.mpc.engine` (share, open, multiply over a session) and
:mod:`~veil.mpc.nonlinear` (sigmoid). This package sits below :mod:`veil.net`: it talks
through any object with ``send``/``recv`` (:class:`~veil.mpc.channel.Channel`).
"""
