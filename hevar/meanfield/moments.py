"""Gaussian moments of an activation, the two numbers mean-field theory is made of.

With u ~ N(0, 1):  V(q) = E[φ(√q u)²],  G(q) = E[φ'(√q u)²],  and V'(q) = E[z φ(z) φ'(z)]/q for
z ~ N(0, q) (Stein's lemma). Closed forms where the activation has them, else the composite
Gauss–Legendre rule of :mod:`hevar.meanfield.gaussian`; the limits at q = 0 and q = ∞ come from φ
and φ' themselves (:func:`limits`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from hevar.meanfield import gaussian
from hevar.meanfield.activations import Activation

Array = np.ndarray

# Relative accuracy assumed for V(q), with a margin: the quadrature agrees with 30-digit mpmath to
# ≤ 1e-15 over q in [1e-14, 1e14]; the worst closed form (elu/selu near q = 0.1) to ≤ 7e-15.
V_RTOL = 1e-14


@dataclass(frozen=True)
class Limits:
    """Values of the moments at the ends of the q axis, from φ and φ' themselves."""

    phi0: float  # φ(0); q = 0 is a fixed point of the σ_b² = 0 map iff this is 0
    g0: float  # G(0⁺) = (φ'(0⁻)² + φ'(0⁺)²)/2: χ₁ → s·g0 as q* → 0
    g_inf: float  # G(∞) = (φ'(-∞)² + φ'(+∞)²)/2 = lim V(q)/q for φ growing at most linearly
    v_inf: float  # V(∞) = (φ(-∞)² + φ(+∞)²)/2 (inf unless φ is bounded)


@functools.lru_cache(maxsize=128)
def limits(act: Activation) -> Limits:
    """The moments at the ends of the q axis, which decide the q* → 0 and q* → ∞ cases.

    G(0⁺) = (φ'(0⁻)² + φ'(0⁺)²)/2 because z = √q u is equally likely on either side of a kink at 0;
    G(∞) = (φ'(-∞)² + φ'(+∞)²)/2 because as q → ∞ almost all the mass sits where φ' has reached its
    limits, and for φ ~ a± z at ±∞ also V(q)/q → G(∞). Evaluated at z = ±1e-300 and ±1e300.

    Parameters
    ----------
    act : Activation

    Returns
    -------
    Limits
    """
    tiny, huge = np.array([-1e-300, 1e-300]), np.array([-1e300, 1e300])
    with np.errstate(over="ignore", invalid="ignore"):
        return Limits(
            phi0=float(act.phi(np.zeros(1))[0]),
            g0=float(np.mean(act.dphi(tiny) ** 2)),
            g_inf=float(np.mean(act.dphi(huge) ** 2)),
            v_inf=float(np.mean(act.phi(huge) ** 2)),
        )


def V(act: Activation, q: float | Array) -> Array:
    """V(q) = E[φ(√q u)²], u ~ N(0, 1).

    Closed form when the activation has one, else :func:`hevar.meanfield.gaussian.expect` (composite
    Gauss–Legendre split at the kinks; ≤ 1e-14 relative on q in [1e-6, 1e4]). q = 0 gives φ(0)²
    and q = inf the limit V(∞).

    Parameters
    ----------
    act : Activation
    q : float or array
        Pre-activation variance(s), ≥ 0.

    Returns
    -------
    array of float64, shape of ``q``
    """
    return _moment(act, q, act.V, lambda z: act.phi(z) ** 2, limits(act).v_inf if _has_inf(q) else math.nan)


def G(act: Activation, q: float | Array) -> Array:
    """G(q) = E[φ'(√q u)²], u ~ N(0, 1): closed form or quadrature as in :func:`V`.

    q = 0 gives the limit G(0⁺) = (φ'(0⁻)² + φ'(0⁺)²)/2 and q = inf the limit G(∞).
    """
    return _moment(act, q, act.G, lambda z: act.dphi(z) ** 2, limits(act).g_inf if _has_inf(q) else math.nan)


def _has_inf(q: float | Array) -> bool:
    return bool(np.any(np.isinf(q)))


def _moment(act: Activation, q: float | Array, closed, integrand, at_inf: float) -> Array:
    q = np.asarray(q, dtype=float)
    if q.size > 16:  # trajectories repeat q once settled: evaluate each distinct value once
        uniq, inverse = np.unique(q, return_inverse=True)
        if len(uniq) < q.size // 2:
            return _moment(act, uniq, closed, integrand, at_inf)[inverse].reshape(q.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        if closed is not None:
            out = np.asarray(closed(q), dtype=float)
        else:
            out = gaussian.expect(integrand, q, act.kinks)
    inf = np.isinf(q)
    return np.where(inf, at_inf, out) if np.any(inf) else out


def dV(act: Activation, q: float | Array) -> Array:
    """V'(q) = E[z φ(z) φ'(z)] / q for z ~ N(0, q) (Stein's lemma), q > 0.

    ``s·dV(q*)`` is the slope of the q-map at a fixed point: < 1 stable, > 1 unstable.

    Parameters
    ----------
    act : Activation
    q : float or array
        Variance(s), > 0.

    Returns
    -------
    array of float64, shape of ``q``
    """
    q = np.asarray(q, dtype=float)
    if act.homogeneous:
        return np.broadcast_to(V(act, 1.0), q.shape).astype(float)
    with np.errstate(over="ignore", invalid="ignore"):
        return gaussian.expect(lambda z: z * act.phi(z) * act.dphi(z), q, act.kinks) / q

