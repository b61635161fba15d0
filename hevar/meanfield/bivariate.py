"""Bivariate Gaussian expectations E[f(u₁) g(u₂)] for the theory of pairs of inputs.

(u₁, u₂) is a centred Gaussian pair with variances q₁, q₂ and correlation c:

    Var u₁ = q₁,   Var u₂ = q₂,   E[u₁u₂] = c·√(q₁q₂),   c ∈ [-1, 1].

The correlation map of a network (Poole et al. 2016) needs the two kernels

    K(q₁, q₂, c)  = E[φ(u₁) φ(u₂)]      (the covariance of the next layer, up to s and σ_b²),
    K'(q₁, q₂, c) = E[φ'(u₁) φ'(u₂)]    (its derivative in the covariance, by Price's theorem),

so that c ↦ (s·K(q*, q*, c) + σ_b²)/q* and its slope s·K'(q*, q*, c) (see
:mod:`hevar.meanfield.correlations`). At c = 1 and q₁ = q₂ = q they are V(q) and G(q).

Closed forms (:func:`closed_kernel`), with θ = arccos c computed as atan2(√((1-c)(1+c)), c) so that
it keeps its digits as c → ±1:

- relu (the arc-cosine kernel of degree 1 and 0; Cho & Saul 2009):
  K = √(q₁q₂)/(2π)·(sin θ + (π - θ) c),   K' = P(u₁ > 0, u₂ > 0) = (π - θ)/(2π) = ¼ + arcsin(c)/(2π);
- leaky_relu with slope a, written φ = ((1+a)/2) z + ((1-a)/2)|z| and φ' = a + (1-a)·1{z>0}:
  K = ((1+a)/2)² c√(q₁q₂) + ((1-a)/2)² E|u₁||u₂|,  E|u₁||u₂| = (2√(q₁q₂)/π)(sin θ + (π/2 - θ) c),
  K' = a + (1-a)²·(π - θ)/(2π);
- linear: K = c√(q₁q₂), K' = 1;
- erf (the arcsine kernel; Williams 1997), with D = det(I + 2Σ) = 1 + 2q₁ + 2q₂ + 4q₁q₂(1 - c²):
  K = (2/π)·arcsin(2c√(q₁q₂)/√((1+2q₁)(1+2q₂))) = (2/π)·atan2(2c√(q₁q₂), √D),
  K' = (4/π)·E[exp(-u₁² - u₂²)] = (4/π)/√D.

Elsewhere, :func:`expect2` integrates numerically. With u, v independent standard normals,
u₁ = √q₁·u and u₂ = √q₂·(c·u + s·v), s = √(1 - c²), so

    E[f(u₁) g(u₂)] = E_u[ f(√q₁ u) · H(u) ],   H(u) = E_v[ g(√q₂ (c u + s v)) ].

Both integrals use the composite Gauss–Legendre panels of :mod:`hevar.meanfield.gaussian`
(``NODES`` per panel on |u|, |v| ≤ ``U_MAX``) with the cuts placed where each integrand has its
features:

- the inner rule in v, for each outer node u, is cut at the Gaussian's scales (the fixed u-cuts) and
  at v = (p/√q₂ - c u)/s for every feature p of g: its kinks, 0 and the activation scales ±2ᵏ
  (k = -1..5) — so a kink of g is a panel end and the inner integral is exact to rounding;
- the outer rule in u is cut at the Gaussian's scales, at the features of f mapped by 1/√q₁, at the
  features of g mapped by u = p/(c√q₂), and — because H is g's kink smoothed over a width s/|c| in
  u, a near-kink when c → ±1 — at u = p/(c√q₂) ± m·s/|c|, m = ½, 1, 2, 4, 8, around g's kinks and 0.

At c = ±1 exactly the pair is degenerate, u₂ = ±√(q₂/q₁)·u₁, and the 1-D rule
:func:`hevar.meanfield.gaussian.expect` is used with the kinks of both functions. A zero variance
is the limit q → 0⁺ at fixed c: f(√q₁ u) → f(0⁻) or f(0⁺) by the sign of u (the 1-D rule's convention).

Accuracy: ≤ 1e-12 absolute against the closed forms over q ∈ [1e-3, 1e3], c ∈ [-1, 1] including
1 - c = 1e-12 (tests/test_bivariate.py asserts 1e-10), and against nested adaptive QUADPACK for tanh,
elu and gelu. Cost: about 650 outer × 350 inner evaluations, 2–6 ms per (q₁, q₂, c).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from hevar.meanfield import gaussian
from hevar.meanfield.activations import Activation

Array = np.ndarray
Kernel2 = Callable[[Array, Array, Array], Array]

C_TOL = 1e-12  # |c| up to 1 + C_TOL is rounding and clipped to ±1; beyond it the result is nan
_NODES_X, _NODES_W = np.polynomial.legendre.leggauss(gaussian.NODES)
_U_CUTS = np.array([-10, -7.5, -5, -3.5, -2, -1, 0, 1, 2, 3.5, 5, 7.5, 10.0])
_SMOOTH_STEPS = np.array([0.5, 1.0, 2.0, 4.0, 8.0])  # offsets around g's kinks, in units of s/|c|
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# --- closed forms ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BivariateKernel:
    """The closed-form bivariate kernels of one activation (functions of broadcast q₁, q₂, c)."""

    phi_phi: Kernel2  # K(q₁, q₂, c) = E[φ(u₁) φ(u₂)]
    dphi_dphi: Kernel2  # K'(q₁, q₂, c) = E[φ'(u₁) φ'(u₂)]
    source: str  # where the formula comes from


def _theta(c: Array) -> Array:
    """arccos c, accurate near c = ±1 (where arccos loses half its digits)."""
    return np.arctan2(np.sqrt((1 - c) * (1 + c)), c)


def _relu_pp(q1, q2, c):
    th = _theta(c)
    return np.sqrt(q1 * q2) / (2 * math.pi) * (np.sin(th) + (math.pi - th) * c)


def _relu_dd(q1, q2, c):
    return (math.pi - _theta(c)) / (2 * math.pi) + 0 * q1 * q2


def _leaky(a: float) -> BivariateKernel:
    even, odd = ((1 - a) / 2) ** 2, ((1 + a) / 2) ** 2

    def pp(q1, q2, c):
        th = _theta(c)
        root = np.sqrt(q1 * q2)
        abs_abs = 2 * root / math.pi * (np.sin(th) + (math.pi / 2 - th) * c)
        return odd * c * root + even * abs_abs

    def dd(q1, q2, c):
        return a + (1 - a) ** 2 * (math.pi - _theta(c)) / (2 * math.pi) + 0 * q1 * q2

    return BivariateKernel(pp, dd, "leaky_relu = ((1+a)/2)z + ((1-a)/2)|z|: E[u₁u₂] and E|u₁||u₂|")


def _erf_det(q1, q2, c):
    return 1 + 2 * q1 + 2 * q2 + 4 * q1 * q2 * (1 - c) * (1 + c)  # det(I + 2Σ), no cancellation


def _erf_pp(q1, q2, c):
    return (2 / math.pi) * np.arctan2(2 * c * np.sqrt(q1 * q2), np.sqrt(_erf_det(q1, q2, c)))


def _erf_dd(q1, q2, c):
    return (4 / math.pi) / np.sqrt(_erf_det(q1, q2, c))


_PROBE = np.array([-3.0, -1.0, -0.25, 0.0, 0.5, 1.0, 2.5])


def _family_kernel(family: str, param: str) -> tuple[BivariateKernel, Callable, Callable] | None:
    """(kernel, reference φ, reference φ') for a family with a closed form, else None."""
    if family == "relu":
        return (BivariateKernel(_relu_pp, _relu_dd, "arc-cosine kernels of degree 1 and 0 (Cho & Saul 2009)"),
                lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float))
    if family == "leaky_relu":
        a = float(param)
        return (_leaky(a), lambda z: np.where(z > 0, z, a * z), lambda z: np.where(z > 0, 1.0, a))
    if family == "linear":
        return (BivariateKernel(lambda q1, q2, c: c * np.sqrt(q1 * q2), lambda q1, q2, c: 1 + 0 * (q1 * q2 * c),
                                "E[u₁u₂]"), lambda z: z, lambda z: np.ones_like(z))
    if family == "erf":
        from scipy import special

        return (BivariateKernel(_erf_pp, _erf_dd, "arcsine kernel (Williams 1997); det(I + 2Σ)^(-1/2)"),
                special.erf, lambda z: 2 / math.sqrt(math.pi) * np.exp(-z * z))
    return None


@functools.lru_cache(maxsize=128)
def closed_kernel(act: Activation) -> BivariateKernel | None:
    """The closed-form kernels of ``act`` if it is one of relu, leaky_relu, linear, erf, else None.

    The family is read from the activation's name and trusted only if the activation's own φ and φ'
    reproduce the family's on a probe (the engine's kernels are chosen the same way), so a renamed or
    user-defined function never borrows a formula that is not its own.
    """
    if act.user_defined:
        return None
    family, _, param = act.name.partition(":")
    try:
        found = _family_kernel(family, param)
    except ValueError:
        return None
    if found is None:
        return None
    kernel, phi, dphi = found
    z = _PROBE.copy()
    same = (np.allclose(act.phi(z.copy()), phi(z), rtol=1e-15, atol=0)
            and np.allclose(act.dphi(z.copy()), dphi(z), rtol=1e-15, atol=0))
    return kernel if same else None


# --- the numerical rule ---------------------------------------------------------------------------


def expect2(f: Callable[[Array], Array], g: Callable[[Array], Array], q1, q2, c,
            kinks_f: Sequence[float] = (), kinks_g: Sequence[float] = ()) -> Array:
    """E[f(u₁) g(u₂)] for the Gaussian pair (u₁, u₂) of variances q₁, q₂ and correlation c.

    Parameters
    ----------
    f, g : callable
        Vectorised functions of z (called with float64 arrays; must return the same shape).
    q1, q2 : float or array
        Variances, ≥ 0 (0 is the limit q → 0⁺ at fixed c).
    c : float or array
        Correlation in [-1, 1]; |c| ≤ 1 + 1e-12 is clipped, beyond that (or nan) the result is nan.
    kinks_f, kinks_g : sequence of float
        Points in z where f (or g) or a derivative is not smooth.

    Returns
    -------
    array of float64, the broadcast shape of q1, q2, c
    """
    q1, q2, c = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (q1, q2, c)))
    out = np.full(q1.shape, np.nan)
    kf = tuple(sorted(float(k) for k in kinks_f))
    kg = tuple(sorted(float(k) for k in kinks_g))
    for idx in np.ndindex(q1.shape):
        out[idx] = _expect2_one(f, g, float(q1[idx]), float(q2[idx]), float(c[idx]), kf, kg)
    return out


def _zero_variance_limit(f: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """f(√q z) as q → 0⁺, as a function of z: f(0⁻) for z < 0, f(0⁺) for z > 0."""
    left, right = (float(v) for v in np.asarray(f(np.array([-1e-300, 1e-300])), dtype=float))
    return lambda z: np.where(z > 0, right, left) + 0 * z


def _expect2_one(f, g, q1: float, q2: float, c: float, kf: tuple, kg: tuple) -> float:
    if not (abs(c) <= 1 + C_TOL) or not (q1 >= 0 and q2 >= 0) or math.isinf(q1) or math.isinf(q2):
        return math.nan
    c = min(1.0, max(-1.0, c))
    if q1 == 0:  # f(√q₁ u) → f(0^sign u): a step in u with its kink at 0
        f, q1, kf = _zero_variance_limit(f), 1.0, (0.0,)
    if q2 == 0:
        g, q2, kg = _zero_variance_limit(g), 1.0, (0.0,)
    if abs(c) == 1:
        ratio = c * math.sqrt(q2 / q1)  # u₂ = ratio·u₁
        # The 1-D rule cuts at f's scales by itself; g's features (kinks, 0, ±2ᵏ) are cut as kinks.
        g_features = np.concatenate([np.array(kg + (0.0,)), -gaussian.Z_SCALES, gaussian.Z_SCALES]) / ratio
        kinks = tuple(sorted(set(kf) | set(g_features.tolist())))
        return float(gaussian.expect(lambda z: f(z) * g(ratio * z), q1, kinks))
    sd1, sd2 = math.sqrt(q1), math.sqrt(q2)
    s = math.sqrt((1 - c) * (1 + c))
    scales = np.concatenate([-gaussian.Z_SCALES, gaussian.Z_SCALES])
    g_sharp = np.array(kg + (0.0,))  # g's kinks and its centre: H smooths them over s/|c|
    g_points = np.concatenate([g_sharp, scales])
    cuts = [_U_CUTS, np.concatenate([np.array(kf + (0.0,)), scales]) / sd1]
    if c != 0:
        centre = g_sharp / (c * sd2)
        width = s / abs(c)
        cuts += [g_points / (c * sd2), (centre[:, None] + width * np.concatenate([-_SMOOTH_STEPS, _SMOOTH_STEPS])).ravel()]
    u, wu = _panel_nodes(np.unique(np.clip(np.concatenate(cuts), -gaussian.U_MAX, gaussian.U_MAX))[None, :])
    u, wu = u[0], wu[0]
    # Inner rule in v for every outer node: cuts where g(√q₂(c u + s v)) has a feature; features
    # outside |v| ≤ U_MAX for every node would give empty panels and are dropped.
    feature_v = (g_points[None, :] / sd2 - c * u[:, None]) / s
    inside = np.any(np.abs(feature_v) < gaussian.U_MAX, axis=0)
    inner_cuts = np.concatenate([np.broadcast_to(_U_CUTS, (len(u), len(_U_CUTS))),
                                 np.clip(feature_v[:, inside], -gaussian.U_MAX, gaussian.U_MAX)], axis=1)
    v, wv = _panel_nodes(inner_cuts)
    inner = np.einsum("ij,ij->i", wv, g(sd2 * (c * u[:, None] + s * v)))
    return float(np.dot(wu, f(sd1 * u) * inner))


def _panel_nodes(cuts: Array) -> tuple[Array, Array]:
    """Gauss–Legendre nodes and Gaussian-weighted weights on the panels between sorted cuts, per row.

    ``cuts`` has shape (m, n); returns (m, (n-1)·NODES) nodes and weights, the weights including the
    standard normal density, so Σ w·h(u) ≈ E[h(u)]. Zero-width panels contribute nothing.
    """
    cuts = np.sort(cuts, axis=1)
    half = 0.5 * (cuts[:, 1:] - cuts[:, :-1])
    mid = 0.5 * (cuts[:, 1:] + cuts[:, :-1])
    m = cuts.shape[0]
    nodes = (mid[:, :, None] + half[:, :, None] * _NODES_X).reshape(m, -1)
    weights = (half[:, :, None] * _NODES_W).reshape(m, -1) * np.exp(-0.5 * nodes * nodes) * _INV_SQRT_2PI
    return nodes, weights


# --- the kernels the theory uses ------------------------------------------------------------------


def phi_phi(act: Activation, q1, q2, c) -> Array:
    """K(q₁, q₂, c) = E[φ(u₁) φ(u₂)]: the closed form where the activation has one, else :func:`expect2`."""
    kernel = closed_kernel(act)
    if kernel is not None:
        return _closed(kernel.phi_phi, q1, q2, c)
    return expect2(act.phi, act.phi, q1, q2, c, act.kinks, act.kinks)


def dphi_dphi(act: Activation, q1, q2, c) -> Array:
    """K'(q₁, q₂, c) = E[φ'(u₁) φ'(u₂)]: closed form or :func:`expect2`, as :func:`phi_phi`."""
    kernel = closed_kernel(act)
    if kernel is not None:
        return _closed(kernel.dphi_dphi, q1, q2, c)
    return expect2(act.dphi, act.dphi, q1, q2, c, act.kinks, act.kinks)


def _closed(kernel: Kernel2, q1, q2, c) -> Array:
    q1, q2, c = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (q1, q2, c)))
    bad = ~(np.abs(c) <= 1 + C_TOL) | ~(q1 >= 0) | ~(q2 >= 0)
    with np.errstate(invalid="ignore"):
        out = np.asarray(kernel(q1, q2, np.clip(c, -1.0, 1.0)), dtype=float)
    return np.where(bad, np.nan, out)
