"""Gaussian expectations E[f(√q u)], u ~ N(0, 1), for the mean-field theory.

Functions with a kink or a jump (φ' of relu is a step) defeat plain Gauss–Hermite quadrature: a
301-node rule gives about 0.464 for E[1{u>0}] = 0.5. Here the real line is split at the kinks (in
z = √q u) and each piece is integrated adaptively with QUADPACK (``scipy.integrate.quad``) against
the normal density in z.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy import integrate

Array = np.ndarray


def expect(f: Callable[[Array], Array], q: float | Array, kinks: Sequence[float] = ()) -> Array:
    """E[f(z)] for z ~ N(0, q), elementwise over ``q``.

    Parameters
    ----------
    f : callable
        Vectorised function of z (float64 arrays).
    q : float or array
        Variance(s) of z, > 0.
    kinks : sequence of float
        Points in z where f is not smooth; the integral is split there.
    """
    qs = np.asarray(q, dtype=float)
    out = np.empty(qs.shape)
    for idx, qv in np.ndenumerate(qs):
        out[idx] = _expect_one(f, float(qv), tuple(sorted(kinks)))
    return out


def _expect_one(f: Callable[[Array], Array], q: float, kinks: tuple[float, ...]) -> float:
    if q == 0.0:
        return float(f(np.zeros(1))[0])
    sd = math.sqrt(q)
    norm = 1.0 / (sd * math.sqrt(2 * math.pi))

    def integrand(z: float) -> float:
        return float(f(np.array([z]))[0]) * norm * math.exp(-0.5 * z * z / q)

    # Split at the kinks and at a few scales of the density so QUADPACK sees each feature.
    cuts = sorted(set(kinks) | {0.0, -sd, sd, -4 * sd, 4 * sd, -1.0, 1.0})
    total = integrate.quad(integrand, -math.inf, cuts[0], epsabs=0, epsrel=1e-13, limit=200)[0]
    for a, b in zip(cuts[:-1], cuts[1:]):
        if b > a:
            total += integrate.quad(integrand, a, b, epsabs=0, epsrel=1e-13, limit=200)[0]
    total += integrate.quad(integrand, cuts[-1], math.inf, epsabs=0, epsrel=1e-13, limit=200)[0]
    return total
