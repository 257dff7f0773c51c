"""Sigmoid approximations over shares: products and public constants only.

A logistic regression needs ``sigmoid(z)`` of a shared score. Exact evaluation needs
secure comparison or exponentiation; like SecureML (Mohassel and Zhang, IEEE S&P 2017)
and SecretFlow's SS-LR we use an approximation built from multiplications:

``linear``   ``0.5 + z/4``, the first-order Taylor form at 0 (the residual of Veil's HE
             vertical LR). No product, no round. With standardised features winsorised
             at 3 it reaches scikit-learn's AUC on default_credit within 0.005.
``minimax3`` ``0.5 + a1 z + a3 z^3``, near-minimax on [-6, 6]: max error 0.057 there.
             Two rounds, two ``mul`` triples of the score's size. Truncating
             ``z^3`` at |z| = 6 is a value of 2^(7.8 + 2f) bits: failure probability
             2^(-55 + 2f) per score (SecureML's bound), 2^-23 at f = 16.
``minimax5`` ``0.5 + a1 z + a3 z^3 + a5 z^5``, near-minimax on [-8, 8]: max error 0.041.
             Three rounds, three ``mul`` triples; ``z^5`` at |z| = 8 is 2^(15 + 2f)
             bits: failure 2^(-48 + 2f) per score, so use f <= 14 if scores reach 8.
Odd polynomials grow without bound outside their interval (a score of 12 under
``minimax3`` maps to -1.5); ``linear`` does too, more slowly. A piecewise-linear
sigmoid would need secure comparison, which :mod:`veil.mpc` does not offer.

What a party learns: nothing (Beaver products open only masked values).
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from veil.mpc.engine import Engine
from veil.mpc.plan import Plan
from veil.mpc.ring import Share

__all__ = ["COEFFS", "Sigmoid", "mul_triples", "plan_sigmoid", "sigmoid", "sigmoid_plain"]


class Sigmoid(StrEnum):
    """Which approximation (see the module docstring)."""

    LINEAR = "linear"
    MINIMAX3 = "minimax3"
    MINIMAX5 = "minimax5"


COEFFS: dict[Sigmoid, tuple[float, ...]] = {
    Sigmoid.LINEAR: (0.25,),
    # Odd near-minimax fits of sigmoid(z) - 0.5 (Lawson's iteratively reweighted least
    # squares on 4001 points), coefficients of z, z^3, z^5.
    Sigmoid.MINIMAX3: (0.18179832280003655, -0.0030063128938942205),
    Sigmoid.MINIMAX5: (0.19659156147279752, -0.004820628244621649, 4.381948176928313e-05),
}


def mul_triples(kind: Sigmoid) -> int:
    """``mul`` triples (of the score's size) one evaluation consumes."""
    kind = Sigmoid(kind)
    return 0 if kind is Sigmoid.LINEAR else len(COEFFS[kind])


def plan_sigmoid(plan: Plan, kind: Sigmoid, n: int) -> None:
    """Add the triples of one evaluation on ``n`` scores to ``plan``."""
    for _ in range(mul_triples(kind)):
        plan.mul(n)


def sigmoid_plain(z: np.ndarray, kind: Sigmoid) -> np.ndarray:
    """The same approximation in the clear (for tests and for comparison)."""
    c = COEFFS[Sigmoid(kind)]
    z = np.asarray(z, dtype=np.float64)
    return np.asarray(0.5 + sum(a * z ** (2 * i + 1) for i, a in enumerate(c)))


def sigmoid(eng: Engine, z: Share, kind: Sigmoid) -> Share:
    """Shares of the approximate sigmoid of the shared fixed-point scores ``z``.

    The odd powers ``z^3 = z^2 z`` and ``z^5 = z^3 z^2`` are products (one round each),
    then each is multiplied by its public coefficient (20 significant bits): more
    accurate in fixed point than Horner's rule, whose partial sums are small numbers
    (``a3 + a5 z^2`` is about 0.003) carried at 2^-f precision."""
    kind = Sigmoid(kind)
    c = COEFFS[kind]
    out = eng.constant(eng.fp.encode(np.full(z.shape, 0.5))) + eng.scale(z, c[0])
    if kind is Sigmoid.LINEAR:
        return out
    y = eng.mul(z, z)
    power = z
    for a in c[1:]:
        power = eng.mul(power, y)
        out = out + eng.scale(power, a)
    return out
