"""Gaussian expectations E[f(√q u)], u ~ N(0, 1), for the mean-field theory.

Two integrators, one fast and one independent:

:func:`expect` (the one the theory uses)
    A fixed composite Gauss–Legendre rule in u, vectorised over q. The line |u| ≤ ``U_MAX`` is cut
    into panels at

    - u = 0, ±1, ±2, ±3.5, ±5, ±7.5, ±10 (the scale of the Gaussian weight),
    - z = ±2ᵏ for k = -1..5, i.e. u = ±2ᵏ/√q (the scale of the activation: tanh at q = 1e4 is a
      step of width 0.01 in u, which a rule that only knows the Gaussian scale cannot see),
    - z = 0 and every declared kink (a jump in f or in one of its derivatives),

    and each panel gets ``NODES`` Gauss–Legendre nodes. Cutting at the kinks is what makes kinked
    integrands exact to rounding: plain Gauss–Hermite converges badly across a kink (a 301-node rule
    gives about 0.464 for E[1{u>0}] = 0.5). The panels between z = 2ᵏ and 2ᵏ⁺¹ are geometric, so a
    function whose complex singularities lie about π/2 from the real axis (tanh, sigmoid, softplus)
    is resolved near 0, where it matters; farther out it is exponentially close to its asymptote.
    The tails |u| > 10 are dropped: the Gaussian weight there is below e⁻⁵⁰ ≈ 2e-22 of its peak, so
    for any f growing at most polynomially (degree ≲ 4) the relative truncation error is < 1e-17.

    Measured: relative error ≤ 1.1e-15 against :func:`expect_adaptive` for V and G of every built-in
    activation at 301 log-spaced q in [1e-6, 1e4] (10 nodes per panel would give 1.5e-13, 8 give
    5e-11); tests/test_gaussian.py asserts 1e-10 there and 1e-13 against the closed forms. Cost: 324 evaluations of f per q (27
    panels × 12 nodes, plus 12 per kink); ≈ 30 µs for a scalar q (NumPy call overhead) and 4–20 µs per
    q when vectorised (2 shared cores; the spread is the machine's load).

:func:`expect_adaptive` (the reference)
    QUADPACK (``scipy.integrate.quad``) in z on pieces split at the kinks and at several scales, with
    infinite end pieces. Slow (milliseconds per q); used by the tests as the independent oracle and
    available for user-defined activations whose features the fixed rule might miss.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import numpy as np

Array = np.ndarray

NODES = 12  # Gauss–Legendre nodes per panel (10 gives ~1e-13, 12 reaches rounding)
U_MAX = 10.0  # |u| beyond this is dropped (Gaussian weight < 2e-22 of the peak)
Z_SCALES = 2.0 ** np.arange(-1, 6)  # activation feature scales in z: 0.5 .. 32
_CHUNK = 64  # q values per block: temporaries of ~20k float64 stay in cache (4x faster than 2048)

_GL_X, _GL_W = np.polynomial.legendre.leggauss(NODES)
_U_CUTS = np.array([-10, -7.5, -5, -3.5, -2, -1, 0, 1, 2, 3.5, 5, 7.5, 10.0])
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def expect(f: Callable[[Array], Array], q: float | Array, kinks: Sequence[float] = ()) -> Array:
    """E[f(z)] for z ~ N(0, q), elementwise over ``q``, by the composite rule described above.

    Parameters
    ----------
    f : callable
        Vectorised function of z; called with float64 arrays of shape (m, k) and must return the
        same shape. It must be finite wherever the Gaussian weight is not negligible.
    q : float or array
        Variance(s) of z, ≥ 0. At q = 0 the value is the limit q → 0⁺, (f(0⁻) + f(0⁺))/2, which is f(0)
        for continuous f and the mean of the one-sided values at a jump. Negative, infinite or nan q
        gives nan (limits at q = inf are the caller's: see :func:`hevar.meanfield.theory.V`).
    kinks : sequence of float
        Points in z where f or a derivative jumps; panels are cut there.

    Returns
    -------
    array of float64, shape of ``q``
    """
    qs = np.asarray(q, dtype=float)
    base = _scale_cuts(tuple(float(k) for k in kinks))
    if qs.size == 1 and 0 < qs.flat[0] < math.inf:  # the trajectory's case: skip the bookkeeping
        return _expect_block(f, qs.reshape(1), base).reshape(qs.shape)
    flat = qs.reshape(-1)
    out = np.full(flat.shape, np.nan)
    pos = np.flatnonzero((flat > 0) & np.isfinite(flat))
    for start in range(0, len(pos), _CHUNK):
        idx = pos[start:start + _CHUNK]
        out[idx] = _expect_block(f, flat[idx], base)
    zero = np.flatnonzero(flat == 0)
    if len(zero):
        tiny = np.array([[-1e-300, 1e-300]])
        out[zero] = float(np.mean(f(tiny)))
    return out.reshape(qs.shape)


@functools.lru_cache(maxsize=64)
def _scale_cuts(kinks: tuple[float, ...]) -> Array:
    """Cuts in z (divided by √q later): the activation scales, 0 and the kinks."""
    return np.concatenate([-Z_SCALES, Z_SCALES, np.asarray(kinks, dtype=float), [0.0]])


def _expect_block(f: Callable[[Array], Array], q: Array, z_cuts: Array) -> Array:
    m, n_fixed = len(q), len(_U_CUTS)
    sd = np.sqrt(q)[:, None]
    cuts = np.empty((m, n_fixed + len(z_cuts)))
    cuts[:, :n_fixed] = _U_CUTS
    np.clip(z_cuts / sd, -U_MAX, U_MAX, out=cuts[:, n_fixed:])
    cuts.sort(axis=1)
    half = 0.5 * (cuts[:, 1:] - cuts[:, :-1])  # (m, panels); zero-width panels contribute nothing
    mid = 0.5 * (cuts[:, 1:] + cuts[:, :-1])
    u = (mid[:, :, None] + half[:, :, None] * _GL_X).reshape(m, -1)
    w = (half[:, :, None] * _GL_W).reshape(m, -1)
    w *= np.exp(-0.5 * u * u)
    u *= sd
    return np.einsum("ij,ij->i", w, f(u)) * _INV_SQRT_2PI


def expect_adaptive(f: Callable[[Array], Array], q: float | Array, kinks: Sequence[float] = (),
                    epsrel: float = 1e-13) -> Array:
    """E[f(z)] for z ~ N(0, q) by adaptive QUADPACK quadrature: slow, independent of :func:`expect`.

    The z-axis is split at the kinks, at 0, at ±1 and ±10 (activation scales) and at ±√q, ±4√q
    (Gaussian scales); each finite piece is integrated with ``quad`` to relative accuracy ``epsrel``
    and the two end pieces with QUADPACK's infinite-interval rule.

    Parameters
    ----------
    f : callable
        Vectorised function of z (called with float64 arrays of shape (1,)).
    q : float or array
        Variance(s) of z, > 0 (q = 0 gives f(0)).
    kinks : sequence of float
        Points in z where f or a derivative is not smooth.
    epsrel : float
        Relative tolerance requested from QUADPACK on each piece.
    """
    qs = np.asarray(q, dtype=float)
    out = np.empty(qs.shape)
    for idx, qv in np.ndenumerate(qs):
        out[idx] = _adaptive_one(f, float(qv), tuple(sorted(kinks)), epsrel)
    return out


def _adaptive_one(f: Callable[[Array], Array], q: float, kinks: tuple[float, ...], epsrel: float) -> float:
    if q == 0.0:
        return float(f(np.zeros(1))[0])
    sd = math.sqrt(q)
    norm = 1.0 / (sd * math.sqrt(2 * math.pi))

    def integrand(z: float) -> float:
        return float(f(np.array([z]))[0]) * norm * math.exp(-0.5 * z * z / q)

    from scipy import integrate  # here, not at the top: the import is 0.3 s a plain sweep never needs

    cuts = sorted(set(kinks) | {0.0, -1.0, 1.0, -10.0, 10.0, -sd, sd, -4 * sd, 4 * sd})
    opts = dict(epsabs=0.0, epsrel=epsrel, limit=400)
    total = integrate.quad(integrand, -math.inf, cuts[0], **opts)[0]
    for a, b in zip(cuts[:-1], cuts[1:]):
        total += integrate.quad(integrand, a, b, **opts)[0]
    total += integrate.quad(integrand, cuts[-1], math.inf, **opts)[0]
    return total
