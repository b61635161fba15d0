"""Mean-field theory for pairs of inputs: the correlation map, its fixed point and depth scales.

Two inputs x¹, x² with equal second moments q⁰ = ‖x‖²/N₀ and correlation c⁰ = ⟨x¹, x²⟩/(N₀q⁰) go
through the same network (hevar's conventions: zˡ = Wˡφ(zˡ⁻¹) + bˡ, φ(z⁰) := x, constant width,
s = σ_w²·N). In the mean-field limit the pair of pre-activations (zˡᵢ(x¹), zˡᵢ(x²)) of one unit is a
centred Gaussian pair with variances qˡ (the same for both inputs) and correlation cˡ, and

    q¹ = s·q⁰ + σ_b²,                      qˡ⁺¹ = s·V(qˡ) + σ_b²,
    c¹ = (s·c⁰q⁰ + σ_b²)/q¹,               cˡ⁺¹ = (s·K(qˡ, qˡ, cˡ) + σ_b²)/qˡ⁺¹,

with K(q₁, q₂, c) = E[φ(u₁)φ(u₂)] (:mod:`hevar.meanfield.bivariate`). At the fixed point q* of the
q-map this is the *c-map* of Poole et al. (2016), c ↦ M(c) = (s·K(q*, q*, c) + σ_b²)/q*, with M(1) = 1.
Its slope, by Price's theorem ∂K/∂(covariance) = E[φ'(u₁)φ'(u₂)], is

    M'(c) = s·K'(q*, q*, c),     K'(q₁, q₂, c) = E[φ'(u₁)φ'(u₂)],

so M'(1) = s·G(q*) = χ₁. On c ∈ [0, 1], M is convex (M'' ∝ E[φ''(u₁)φ''(u₂)] ≥ 0 for c ≥ 0, by the
Hermite expansion) and M(0) = (s·E[φ]² + σ_b²)/q* ≥ 0. Hence:

- **ordered phase** (χ₁ < 1): c* = 1 is the only fixed point in [0, 1] and attracts; 1 - cˡ decays
  like χ_c^l with χ_c = χ₁;
- **chaotic phase** (χ₁ > 1): c = 1 repels and there is exactly one fixed point c* ∈ [0, 1), found
  by Brent's method on [0, 1 - δ]; |cˡ - c*| decays like χ_c^l with χ_c = s·K'(q*, q*, c*) < 1;
- **critical** (|χ₁ - 1| ≤ :data:`hevar.meanfield.theory.CRITICAL_TOL`): c* = 1, χ_c = 1, ξ_c = ∞.

The correlation depth scale is ξ_c = -1/ln χ_c (Schoenholz et al. 2017, eq. 9), and the length depth
scale ξ_q = -1/ln F'(q*) with F'(q*) = s·V'(q*) = χ₁ + s·E[φ''(√q* u)φ(√q* u)] the slope of the
q-map at q* (Schoenholz et al. 2017, eq. 6: |qˡ - q*| ~ exp(-l/ξ_q)); at q* = 0 it is s·G(0⁺).

**Where q* is 0 or ∞** (σ_b² = 0 with qˡ → 0, qˡ → ∞, or a positively homogeneous φ without bias)
the map at qˡ tends to that of the piecewise-linear ψ with φ's one-sided slopes at 0 (or at ±∞):
M(c) = E[ψ(u₁)ψ(u₂)]/E[ψ²] at unit variance, whose slope at c = 1 is G/V = 1. So χ_c = 1 and
ξ_c = ∞: correlations approach their limit only polynomially (for relu without bias, 1 - cˡ ~ 1/l²).
If ψ has two different slopes, c* = 1 (M convex with M(1) = M'(1) = 1 is above the diagonal); if ψ is
linear (tanh at σ_b² = 0 and σ_w²·N ≤ 1, a linear network without bias), M is the identity: cˡ freezes
at a value that depends on c⁰, and c* is nan.

References: Poole et al., "Exponential expressivity in deep neural networks through transient chaos"
(2016); Schoenholz et al., "Deep information propagation" (2017).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hevar.errors import UsageError
from hevar.meanfield import bivariate, theory
from hevar.meanfield.activations import Activation

Array = np.ndarray


# --- the maps ---------------------------------------------------------------------------------------


def c_map(act: Activation, c, s: float, sigma_b2: float, q: float) -> Array:
    """One layer of the correlation recursion at the (common) variance q of the two inputs' zˡ:

        c ↦ (s·K(q, q, c) + σ_b²) / (s·V(q) + σ_b²),

    which at a fixed point q = q* is Poole et al.'s c-map (s·K + σ_b²)/q*. For positively homogeneous φ,
    K(q, q, c) = q·K(1, 1, c) and q = inf is allowed (the bias drops out).

    Parameters
    ----------
    act : Activation
    c : float or array
        Correlation(s) cˡ in [-1, 1].
    s : float
        σ_w²·N.
    sigma_b2 : float
        σ_b².
    q : float
        qˡ, > 0 (or inf for homogeneous φ).

    Returns
    -------
    array of float64, shape of ``c``
    """
    c = np.asarray(c, dtype=float)
    if act.homogeneous:
        inv_q = 0.0 if math.isinf(q) else 1.0 / q
        k1 = bivariate.phi_phi(act, 1.0, 1.0, c)
        return (s * k1 + sigma_b2 * inv_q) / (s * float(theory.V(act, 1.0)) + sigma_b2 * inv_q)
    return (s * bivariate.phi_phi(act, q, q, c) + sigma_b2) / (s * float(theory.V(act, q)) + sigma_b2)


def c_map_slope(act: Activation, c, s: float, sigma_b2: float, q: float) -> Array:
    """dcˡ⁺¹/dcˡ = s·q·K'(q, q, c)/(s·V(q) + σ_b²): at q = q* this is s·K'(q*, q*, c), and χ_c at c*."""
    c = np.asarray(c, dtype=float)
    if act.homogeneous:
        inv_q = 0.0 if math.isinf(q) else 1.0 / q
        return s * bivariate.dphi_dphi(act, 1.0, 1.0, c) / (s * float(theory.V(act, 1.0)) + sigma_b2 * inv_q)
    return s * q * bivariate.dphi_dphi(act, q, q, c) / (s * float(theory.V(act, q)) + sigma_b2)


# --- fixed point and depth scales -------------------------------------------------------------------


@dataclass(frozen=True)
class CorrelationTerms:
    """The pair-of-inputs theory at one (σ_w²·N, σ_b²), constant width."""

    q_star: float  # fixed point of the q-map reached from q_in (0, finite or inf)
    chi1: float  # s·G(q*), the c-map's slope at c = 1
    c_star: float  # stable fixed point of the c-map: 1 (ordered/critical), in [0, 1) (chaotic), nan (identity map)
    chi_c: float  # slope of the c-map at c*: s·K'(q*, q*, c*) (= χ₁ when c* = 1; 1 where q* is 0 or ∞)
    xi_c: float  # -1/ln χ_c, correlation depth scale in layers (inf when χ_c = 1)
    xi_q: float  # -1/ln F'(q*), length depth scale in layers (nan where qˡ diverges)
    phase: str  # "ordered", "critical", "chaotic" from χ₁
    note: str = ""  # one sentence where q* is 0 or ∞ and the c-map is a limit


def correlation_terms(act: Activation, s: float, sigma_b2: float, q_in: float = 1.0) -> CorrelationTerms:
    """c*, χ_c, ξ_c and ξ_q at σ_w²·N = s, at the fixed point q* the network reaches from q_in.

    See the module docstring for the cases. In the chaotic phase c* is the root of M(c) - c on
    [0, 1 - δ], with δ = 1e-3 shrunk by tenfold steps until M(1 - δ) < 1 - δ (χ₁ - 1 ≳ 1e-11).

    Parameters
    ----------
    act : Activation
    s : float
        σ_w²·N, > 0.
    sigma_b2 : float
        σ_b², ≥ 0.
    q_in : float
        Input second moment q⁰ (it picks the basin of q*).

    Returns
    -------
    CorrelationTerms
    """
    chi1 = theory.chi1(act, s, sigma_b2, q_in)
    q_star = theory.q_fixed_point(act, s, sigma_b2, q_in)
    ph = theory.phase(chi1)
    xi_q = theory.depth_scale(_q_slope(act, s, sigma_b2, q_star))
    limit = q_star == 0 or math.isinf(q_star) or (act.homogeneous and sigma_b2 == 0)
    if limit:
        c_star, note = _limit_fixed_point(act, q_star, sigma_b2)
        return CorrelationTerms(q_star, chi1, c_star, 1.0, math.inf, xi_q, ph, note)
    if ph != "chaotic":
        chi_c = 1.0 if ph == "critical" else chi1
        xi_c = math.inf if ph == "critical" else theory.depth_scale(chi_c)
        return CorrelationTerms(q_star, chi1, 1.0, chi_c, xi_c, xi_q, ph)
    c_star = _chaotic_fixed_point(act, s, sigma_b2, q_star)
    chi_c = float(c_map_slope(act, c_star, s, sigma_b2, q_star))
    return CorrelationTerms(q_star, chi1, c_star, chi_c, theory.depth_scale(chi_c), xi_q, ph)


def _q_slope(act: Activation, s: float, sigma_b2: float, q_star: float) -> float:
    """F'(q*) = s·V'(q*); s·G(0⁺) at q* = 0; nan where qˡ diverges."""
    if math.isinf(q_star) or math.isnan(q_star):
        return math.nan
    if act.homogeneous:
        return s * float(theory.V(act, 1.0))
    if q_star == 0:
        return s * theory.limits(act).g0
    return s * float(theory.dV(act, q_star))


def _limit_fixed_point(act: Activation, q_star: float, sigma_b2: float) -> tuple[float, str]:
    """c* of the limiting piecewise-linear map where q* is 0 or ∞ (see the module docstring)."""
    if act.homogeneous:
        z, where = np.array([-1.0, 1.0]), "φ is positively homogeneous" + (" and σ_b² = 0" if sigma_b2 == 0 else
                                                                           " and qˡ → ∞, so σ_b² drops out")
    elif q_star == 0:
        z, where = np.array([-1e-300, 1e-300]), "qˡ → 0"
    else:
        z, where = np.array([-1e300, 1e300]), "qˡ → ∞"
    with np.errstate(over="ignore", invalid="ignore"):
        left, right = (float(v) for v in act.dphi(z))
    if left == right:
        return math.nan, (f"{where}: the c-map tends to the identity (φ is linear there), so cˡ freezes at a value "
                          f"set by c⁰; χ_c = 1, ξ_c = ∞.")
    return 1.0, (f"{where}: the c-map tends to that of a two-slope linear unit, with slope 1 at c* = 1: cˡ → 1 "
                 f"only polynomially; χ_c = 1, ξ_c = ∞.")


def _chaotic_fixed_point(act: Activation, s: float, sigma_b2: float, q_star: float) -> float:
    def gap(c: float) -> float:
        return float(c_map(act, c, s, sigma_b2, q_star)) - c

    lo = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        ends = gap(lo), gap(1 - 1e-3)
    if not all(map(math.isfinite, ends)):  # s·E[φφ] overflows (σ_w²·N near float64's limit): c* not resolved
        return math.nan
    if gap(lo) <= 0:  # M(0) = 0: odd φ without bias
        return 0.0
    delta = 1e-3
    while gap(1 - delta) >= 0:
        delta /= 10
        if delta < 1e-12:
            return 1.0  # χ₁ - 1 below resolution: indistinguishable from critical
    from scipy import optimize  # imported on first use: 0.3 s of start-up (issue 17)
    return float(optimize.brentq(gap, lo, 1 - delta, xtol=1e-15, rtol=1e-15, maxiter=200))


# --- trajectories -----------------------------------------------------------------------------------


def c_trajectory(act: Activation, s: float, sigma_b2: float, q0: float, c0: float, depth: int) -> Array:
    """cˡ for l = 1..L along the actual trajectory (qˡ not yet at q*), from two inputs with second
    moment q0 each and correlation c0.

        c¹ = (s·c0·q0 + σ_b²)/(s·q0 + σ_b²),   cˡ⁺¹ = (s·K(qˡ, qˡ, cˡ) + σ_b²)/(s·V(qˡ) + σ_b²)

    with qˡ from :func:`hevar.meanfield.theory.log_q_trajectory` (for homogeneous φ the ratio is taken
    with K and V at unit variance, so any depth is exact; otherwise entries past an overflow of qˡ are nan).

    Parameters
    ----------
    act : Activation
    s : float
        σ_w²·N (constant width).
    sigma_b2 : float
    q0 : float
        ‖x‖²/N₀ of each input, > 0.
    c0 : float
        Input correlation in [-1, 1].
    depth : int
        L.

    Returns
    -------
    array, shape (L,)
    """
    log_q = theory.log_q_trajectory(act, np.full(int(depth), float(s)), sigma_b2, q0)
    out = np.empty(int(depth))
    out[0] = (s * c0 * q0 + sigma_b2) / (s * q0 + sigma_b2)
    for l in range(1, int(depth)):
        q = math.exp(log_q[l - 1]) if log_q[l - 1] < 700 else math.inf
        if math.isinf(q) and not act.homogeneous:
            out[l:] = math.nan
            break
        out[l] = float(c_map(act, out[l - 1], s, sigma_b2, q))
    return out


# --- fitting ξ_c --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class XiFit:
    """A least-squares fit of ln|cˡ - c*| = a - l/ξ over the layers used."""

    xi: float  # fitted ξ_c in layers (-1/slope); nan with fewer than 3 usable layers
    slope: float  # d ln|cˡ - c*| / dl
    layers: Array  # the layers l used (1-based)


def fit_xi_c(layers, c_values, c_star: float, floor: float = 1e-9, ceiling: float = 0.1) -> XiFit:
    """Fit |cˡ - c*| ∝ exp(-l/ξ_c) over the layers where floor < |cˡ - c*| ≤ ceiling.

    The ceiling drops the first layers, where the c-map is not yet linear around c* (and qˡ may not have
    settled); the floor drops the layers where |cˡ - c*| has sunk into rounding (theory) or into the
    sampling noise and the O(1/N) finite-width offset of c* (measurement: pass a floor of a few standard
    errors or a few 1/N). Layers where cˡ - c* has the other sign than the majority are dropped too.
    To compare a measurement with the theory on the same layers, select them once and pass
    ``floor=0, ceiling=inf`` with those layers.

    Parameters
    ----------
    layers : array of int, shape (n,)
    c_values : array, shape (n,)
        cˡ at those layers.
    c_star : float
    floor, ceiling : float

    Returns
    -------
    XiFit
    """
    layers = np.asarray(layers, dtype=float)
    delta = np.asarray(c_values, dtype=float) - c_star
    sign = 1.0 if np.sum(delta > 0) >= np.sum(delta < 0) else -1.0
    use = np.isfinite(delta) & (sign * delta > floor) & (sign * delta <= ceiling)
    if np.sum(use) < 3 or not math.isfinite(c_star):
        return XiFit(math.nan, math.nan, layers[use].astype(int))
    slope = float(np.polyfit(layers[use], np.log(sign * delta[use]), 1)[0])
    xi = -1.0 / slope if slope != 0 else math.inf
    return XiFit(xi, slope, layers[use].astype(int))


def xi_c_jackknife(layers, c_seeds, c_star: float) -> tuple[float, float]:
    """ξ̂_c from the seed mean of cˡ over the given layers, and its jackknife standard error over seeds.

    Parameters
    ----------
    layers : array of int, shape (n,)
        The fit layers (chosen beforehand, e.g. by :func:`fit_xi_c` on the theory trajectory).
    c_seeds : array, shape (S, n)
        Per-seed cˡ (each the mean over that seed's pairs) at those layers.
    c_star : float

    Returns
    -------
    (xi_hat, se) : floats; se is nan for fewer than 2 seeds
    """
    c_seeds = np.asarray(c_seeds, dtype=float)
    S = c_seeds.shape[0]

    def fit(rows: Array) -> float:
        return fit_xi_c(layers, rows.mean(axis=0), c_star, floor=0.0, ceiling=math.inf).xi

    xi = fit(c_seeds)
    if S < 2:
        return xi, math.nan
    loo = np.array([fit(np.delete(c_seeds, i, axis=0)) for i in range(S)])
    se = math.sqrt((S - 1) / S * np.sum((loo - loo.mean()) ** 2))
    return xi, se


# --- the `hevar theory` terms -------------------------------------------------------------------------


def report_terms(act: Activation, s: float, sigma_b2: float, q_in: float = 1.0) -> dict[str, Any]:
    """The pair-of-inputs keys for ``hevar theory --json`` at σ_w²·N = s.

    Returns
    -------
    dict with keys ``c_star``, ``chi_c``, ``xi_c``, ``xi_q`` (floats; see :class:`CorrelationTerms`;
    nan where undefined) and ``c_note`` (the sentence explaining a limiting case, else "").
    """
    for name, value, ok, allowed in (("sigma_w2", s, s > 0, "(0, inf)"), ("sigma_b2", sigma_b2, sigma_b2 >= 0, "[0, inf)"),
                                     ("q_in", q_in, q_in > 0, "(0, inf)")):
        if not (math.isfinite(value) and ok):
            raise UsageError(f"The '{name}' parameter must be a float in the range {allowed}. Got {value:g} instead.",
                             param=name.replace("_", "-"))
    t = correlation_terms(act, float(s), float(sigma_b2), float(q_in))
    return dict(c_star=t.c_star, chi_c=t.chi_c, xi_c=t.xi_c, xi_q=t.xi_q, c_note=t.note)
