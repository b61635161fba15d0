"""Predicted spectrum of the input–output Jacobian: free probability for products of random matrices.

J = ∂zᴸ/∂x = Wᴸ Dᴸ⁻¹ ⋯ D¹ W¹ (L weight layers, L - 1 derivative layers: hevar's input is not
activated; see :mod:`hevar.engine.jacobian`), constant width N, Wˡ with per-entry variance s/N,
Dˡ = diag φ'(zˡ), zˡ ~ N(0, qˡ) along the mean-field trajectory. The squared singular values λ of J
are the eigenvalues of JJᵀ. Following Pennington, Schoenholz & Ganguli (2017, 2018), as N → ∞ the
factors are asymptotically free, so the S-transform of JJᵀ is the product of the factors' S-transforms:

    S_JJᵀ(w) = ∏_{l=1}^{L} S_{WˡᵀWˡ}(w) · ∏_{l=1}^{L-1} S_{(Dˡ)²}(w).

**Moments.** For a factor with mean m₁ and second moment m₂ of its spectrum, S(w) = (1/m₁)(1 - v·w + O(w²))
with v = m₂/m₁² - 1 (invert ψ(y) = m₁y + m₂y² + … and use S = χ(w)(1+w)/w). The first two orders of a
product of S-transforms give, exactly in the free limit,

    mean λ          m₁ = ∏ m₁(factor) = s^L · ∏_{l=1}^{L-1} G(qˡ)   (= s·∏_{l=1}^{L-1} χ_l with χ_l = s·G(qˡ)),
    relative var    v  = m₂/m₁² - 1 = Σ v(factor) = L·v_W + Σ_{l=1}^{L-1} ( E[φ'(zˡ)⁴]/G(qˡ)² - 1 ),

with v_W = 1 for i.i.d. entries of any distribution of finite fourth moment (WᵀW/(s) is
Marchenko–Pastur with ratio 1: m₁ = 1, m₂ = 2) and v_W = 0 for (scaled) orthogonal Wˡ. So each layer
adds s²E[φ'⁴]/χ_l² - 1 from φ' and 1 more for Gaussian weights; the variance σ²_λ = v·m₁². For a
linear Gaussian network v = L, m₂ = L + 1 at m₁ = 1 (the Fuss–Catalan moments); for relu v = 2L - 1
(Gaussian) and L - 1 (orthogonal), since (Dˡ)² is Bernoulli(½) with v = 1. The mean m₁ is also exact at
finite N for relu without bias and any symmetric weight distribution (flipping the sign of row i of Wˡ
flips Dˡᵢᵢ and leaves the rest), whereas v has O(L²/N) finite-width corrections.

**Density.** With ψ(y) = Σ_k m_k y^k and S as above, the Stieltjes transform g(z) = E[1/(z - λ)] is
g = (1 + w)/z where w solves z·w·S(w) = 1 + w, and the density is ρ(λ) = -Im w(λ + i0)/(πλ). For
piecewise-linear φ this is a polynomial equation (:func:`density`):

- linear, Gaussian:   λ w = s^L (1 + w)^{L+1}                       (Fuss–Catalan);
- relu, Gaussian:     λ w = s^L (1 + w)² (½ + w)^{L-1};
- relu, orthogonal:   λ w (1 + w)^{L-2} = s^L (½ + w)^{L-1}          (L ≥ 2);
- linear, orthogonal: every λ = s^L (a point mass);

using S_W(w) = 1/(s(1 + w)) (Gaussian), 1/s (orthogonal) and S_{D²}(w) = (1 + w)/(½ + w) for relu. For
relu with L ≥ 2 half of the λ are exactly 0 (each Dˡ zeroes half the units), an atom of mass ½ that
:func:`density` returns separately from the continuous part.

References: Pennington, Schoenholz & Ganguli, "Resurrecting the sigmoid in deep learning through
dynamical isometry" (2017) and "The emergence of spectral universality in deep networks" (2018).
"""

from __future__ import annotations

import math

import numpy as np

from hevar.meanfield import gaussian, theory
from hevar.meanfield.activations import Activation

Array = np.ndarray

IID_DISTS = ("normal", "uniform", "truncnormal", "truncnormal_keras")  # v_W = 1: Marchenko–Pastur
ORTHOGONAL_DISTS = ("orthogonal",)  # v_W = 0


def weight_relative_variance(dist: str) -> float:
    """v_W = m₂/m₁² - 1 of the spectrum of WᵀW as N → ∞: 1 for i.i.d. entries, 0 for orthogonal."""
    if dist in IID_DISTS:
        return 1.0
    if dist in ORTHOGONAL_DISTS:
        return 0.0
    raise ValueError(f"unknown weight distribution {dist!r}")


def dphi_moments(act: Activation, q) -> tuple[Array, Array]:
    """(G(q), E[φ'(z)⁴]) for z ~ N(0, q), elementwise (quadrature cut at the kinks; homogeneous φ at q = 1)."""
    q = np.asarray(q, dtype=float)
    if act.homogeneous:
        q = np.ones_like(q)
    g2 = theory.G(act, q)
    g4 = gaussian.expect(lambda z: act.dphi(z) ** 4, q, act.kinks)
    return np.asarray(g2, dtype=float), np.asarray(g4, dtype=float)


def predicted_moments(act: Activation, s: float, sigma_b2: float, depth: int, dist: str = "normal",
                      q_in: float = 1.0) -> dict[str, float]:
    """Free-probability mean and relative variance of the squared singular values of J (constant width).

    Parameters
    ----------
    act : Activation
    s : float
        σ_w²·N (the realised per-entry variance times N; for ``truncnormal`` the caller multiplies by
        :func:`hevar.engine.init.variance_ratio`).
    sigma_b2 : float
    depth : int
        L, the number of weight layers.
    dist : str
        Weight distribution (:data:`IID_DISTS` or ``orthogonal``).
    q_in : float
        Input second moment.

    Returns
    -------
    dict with ``log_mean`` (ln m₁ = L ln s + Σ ln G(qˡ)), ``normalized_var`` (v = m₂/m₁² - 1),
    ``var_from_weights`` (L·v_W), ``var_from_dphi`` (Σ_l E[φ'⁴]/G² - 1) and ``log_var`` (ln σ²_λ =
    ln v + 2 ln m₁), all floats.
    """
    L = int(depth)
    log_q = theory.log_q_trajectory(act, np.full(L, float(s)), sigma_b2, q_in)
    if L > 1:
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # G(qˡ) = 0 (tanh's qˡ → ∞): ln m₁ = -inf
            g2, g4 = dphi_moments(act, np.exp(log_q[:-1]))
            log_g = float(np.sum(np.log(g2)))
            from_dphi = float(np.sum(g4 / (g2 * g2) - 1))
    else:
        log_g, from_dphi = 0.0, 0.0
    from_weights = L * weight_relative_variance(dist)
    v = from_weights + from_dphi
    log_mean = L * math.log(s) + log_g
    return dict(log_mean=log_mean, normalized_var=v, var_from_weights=from_weights, var_from_dphi=from_dphi,
                log_var=(math.log(v) if v > 0 else -math.inf) + 2 * log_mean)


def _factors(kind: str, dist: str, s: float, L: int) -> tuple[float, list, list]:
    """The equation for w as z·∏(w - a)^p = C·∏(w - b)^q: (ln C, [(a, p)], [(b, q)]) (module docstring)."""
    log_c = L * math.log(s)
    if kind == "linear" and dist in IID_DISTS:
        return log_c, [(0.0, 1)], [(-1.0, L + 1)]
    if kind == "relu" and dist in IID_DISTS:
        return log_c, [(0.0, 1)], [(-1.0, 2), (-0.5, L - 1)]
    if kind == "relu" and dist in ORTHOGONAL_DISTS:
        return log_c, [(0.0, 1), (-1.0, L - 2)], [(-0.5, L - 1)]
    raise ValueError(f"no polynomial density for {kind} with {dist} weights")


def _newton(z: complex, w: complex, log_c: float, top: list, bottom: list, maxiter: int = 80) -> complex:
    """Solve h(w) = ln z + Σ p ln(w - a) - ln C - Σ q ln(w - b) = 0 (mod 2πi) by Newton from w.

    In logarithms because near λ → 0 the roots cluster at w = -½ with multiplicity L - 1, where the
    expanded polynomial loses about 1/(L-1) of its digits (its companion-matrix roots scatter by ε^(1/(L-1)));
    the factored form keeps full precision there.
    """
    for _ in range(maxiter):
        h = np.log(z) + sum(p * np.log(w - a) for a, p in top) - log_c - sum(q * np.log(w - b) for b, q in bottom)
        h = complex(h.real, math.remainder(h.imag, 2 * math.pi))
        d = sum(p / (w - a) for a, p in top) - sum(q / (w - b) for b, q in bottom)
        step = h / d
        gap = min(abs(w - a) for a, _ in top + bottom)
        if abs(step) > 0.5 * gap:  # do not jump over a singular point of h
            step *= 0.5 * gap / abs(step)
        w -= step
        if abs(step) <= 1e-14 * (1 + abs(w)):
            break
    return w


def density(kind: str, dist: str, s: float, depth: int, lam: Array) -> tuple[Array, list[tuple[float, float]]]:
    """The N → ∞ density of the squared singular values λ of J for a linear or relu network.

    Parameters
    ----------
    kind : {"linear", "relu"}
    dist : str
        Weight distribution (:data:`IID_DISTS` or ``orthogonal``).
    s : float
        σ_w²·N.
    depth : int
        L.
    lam : array
        Points λ > 0 where the continuous density is evaluated.

    Returns
    -------
    rho : array, shape of ``lam``
        The continuous part ρ(λ) (0 outside the support).
    atoms : list of (position, mass)
        Point masses: (0, ½) for relu with L ≥ 2; for relu with orthogonal weights at L = 2 also
        (s², ½) (JJᵀ = s²·W²D²W²ᵀ/N-scaled has eigenvalues s² and 0 only); (s^L, 1) for a linear
        orthogonal network; (s, 1) for relu at L = 1 with orthogonal weights. The masses and the
        integral of ρ add up to 1.
    """
    lam = np.asarray(lam, dtype=float)
    L = int(depth)
    if dist in ORTHOGONAL_DISTS and (kind == "linear" or L == 1):
        return np.zeros_like(lam), [(s ** L, 1.0)]
    if kind == "relu" and dist in ORTHOGONAL_DISTS and L == 2:
        return np.zeros_like(lam), [(0.0, 0.5), (s * s, 0.5)]
    rho = _tracked_density(kind, dist, s, L, lam)
    return rho, ([(0.0, 0.5)] if kind == "relu" and L >= 2 else [])


def _tracked_density(kind: str, dist: str, s: float, L: int, lam: Array, points_per_decade: int = 200) -> Array:
    """ρ(λ) = -Im g(λ + iε)/π with g = (1 + w)/z, following the physical root w by continuity.

    Far above the support the physical root is w = ψ(1/z) ≈ m₁/z; from there λ is lowered on a log grid
    with z = λ(1 + iε), ε = 1e-9, solving at each step by Newton's method (:func:`_newton`) from the
    previous root; the points of ``lam`` are on the path, so ρ is evaluated there, not interpolated.
    (Choosing at each λ independently, say the root with the largest |Im w|, picks unphysical branches for L ≥ 2.)
    """
    positive = lam[lam > 0]
    out = np.zeros(lam.shape)
    if positive.size == 0:
        return out
    top = math.log(1e3 * fuss_catalan_edge(L, s))
    bottom = math.log(positive.min()) - 0.1
    n = max(2, int((top - bottom) / math.log(10) * points_per_decade))
    t = np.unique(np.concatenate([np.linspace(top, bottom, n), np.log(positive)]))[::-1]  # descending
    z = np.exp(t) * (1 + 1e-9j)
    log_c, top_factors, bottom_factors = _factors(kind, dist, s, L)
    w = np.empty(t.size, dtype=complex)
    # Far above the support w = ψ(1/z) ≈ m₁/z, and m₁ = C·∏(-b)^q/∏(-a)^p over the factors with a ≠ 0.
    log_m1 = (log_c + sum(q * math.log(-b) for b, q in bottom_factors)
              - sum(p * math.log(-a) for a, p in top_factors if a != 0))
    prev = complex(math.exp(log_m1) / z[0])
    for i in range(t.size):
        prev = _newton(complex(z[i]), prev, log_c, top_factors, bottom_factors)
        w[i] = prev
    # ρ = -Im w/(πλ) from g = (1 + w)/λ at real λ; outside the support Im w is only the regulariser's
    # O(ε·|w|) (a 1/λ tail that would dominate the high moments), so it is set to 0 below 1e-6·|w|.
    lam_path = np.exp(t)
    rho = np.where(-w.imag > 1e-6 * np.abs(w), -w.imag / (math.pi * lam_path), 0.0)
    out[lam > 0] = np.interp(np.log(positive), t[::-1], rho[::-1])
    return out


def fuss_catalan_edge(depth: int, s: float = 1.0) -> float:
    """The largest λ of a product of L square Gaussian matrices of variance s/N: s^L (L+1)^{L+1}/L^L."""
    L = int(depth)
    return s ** L * (L + 1) ** (L + 1) / L ** L
