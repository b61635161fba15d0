"""Mean-field theory of signal propagation at initialization.

Conventions (hevar's throughout): layer l = 1..L computes zˡ = Wˡ φ(zˡ⁻¹) + bˡ with φ(z⁰) := x,
Wˡ of shape (N_l, N_{l-1}) with i.i.d. entries of raw variance σ_{w,l}², bˡ ~ N(0, σ_b²), inputs
x ~ N(0, q_in·I). With u ~ N(0, 1),

    V(q) = E[φ(√q u)²],      G(q) = E[φ'(√q u)²].

Forward (N is the fan-in N_{l-1}):
    q¹ = σ_{w,1}² N_0 q_in + σ_b²,     qˡ = σ_{w,l}² N_{l-1} V(qˡ⁻¹) + σ_b²   (l ≥ 2).

Backward (N is the fan-out N_{l+1}; Theorem 1.2 of the seed, the gradient-independence assumption):
    q̃ˡ = q̃ˡ⁺¹ · σ_{w,l+1}² N_{l+1} · G(qˡ).

Theorem 1.1 (independence of δˡ and φ(zˡ⁻¹)): the per-input weight-gradient squared norm is
    E‖∂J/∂Wˡ‖²_F ≈ N_l q̃ˡ · N_{l-1} E[φ(zˡ⁻¹)²],  with E[φ(z⁰)²] = q_in.

With constant width N the fan-in and fan-out agree and one number s = σ_w²·N sets both maps:
the *q-map* q ↦ F(q) = s·V(q) + σ_b², its fixed points q* = F(q*), and the gradient factor per layer
χ(q) = s·G(q), χ₁ = χ(q*). q̃ˡ changes by χ₁ per layer once qˡ has settled, so χ₁ < 1 is the
ordered phase (gradients vanish towards the input over the depth scale ξ = -1/ln χ₁), χ₁ > 1 the
chaotic phase (they explode over |ξ| layers) and χ₁ = 1 the critical line (ξ = ∞) that He
initialization puts ReLU networks on.

Trajectories are returned as natural logarithms so that depth-2000 nets do not overflow.

References: He et al., "Delving deep into rectifiers" (2015); Poole et al., "Exponential
expressivity in deep neural networks through transient chaos" (2016); Schoenholz et al., "Deep
information propagation" (2017); Klambauer et al., "Self-normalizing neural networks" (2017).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

from hevar.meanfield import gaussian
from hevar.meanfield.activations import Activation
from hevar.errors import UsageError

Array = np.ndarray

CRITICAL_TOL = 1e-6  # |χ₁ - 1| at or below this is reported as the critical phase
S_SCAN = np.geomspace(1e-2, 1e4, 181)  # σ_w²·N searched for χ₁ = 1 (30 points per decade)
_Q_GRID = np.geomspace(1e-14, 1e14, 281)  # q scanned for fixed points (10 points per decade)
_HUGE = 1e300  # q beyond this is treated as having overflowed to +inf
# Relative accuracy assumed for V(q), with a margin: the quadrature agrees with 30-digit mpmath to
# ≤ 1e-15 over q in [1e-14, 1e14]; the worst closed form (elu/selu near q = 0.1) to ≤ 7e-15.
V_RTOL = 1e-14


# --- Gaussian moments ------------------------------------------------------------------------------


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


def qmap(act: Activation, q: float | Array, s: float | Array, sigma_b2: float) -> Array:
    """The forward map F(q) = s·V(q) + σ_b², qˡ = F(qˡ⁻¹) (Poole et al. 2016, eq. 3).

    Parameters
    ----------
    act : Activation
    q : float or array
        qˡ⁻¹, the variance of the previous layer's pre-activations.
    s : float or array
        σ_w²·N with N the fan-in N_{l-1} (broadcasts against ``q``).
    sigma_b2 : float
        σ_b².

    Returns
    -------
    array of float64
    """
    return np.asarray(s, dtype=float) * V(act, q) + sigma_b2


def chi(act: Activation, q: float | Array, s: float | Array) -> Array:
    """The backward factor per layer χ(q) = s·G(q): q̃ˡ = χ(qˡ)·q̃ˡ⁺¹ (Theorem 1.2 of the seed).

    Parameters
    ----------
    act : Activation
    q : float or array
        qˡ, the forward variance at which φ' is evaluated.
    s : float or array
        σ_w²·N with N the fan-out N_{l+1} (the same number as the fan-in at constant width).

    Returns
    -------
    array of float64
    """
    return np.asarray(s, dtype=float) * G(act, q)


# --- trajectories ---------------------------------------------------------------------------------


def log_q_trajectory(act: Activation, s_in: Array, sigma_b2: float, q_in: float = 1.0) -> Array:
    """ln qˡ for l = 1..L along the forward recursion, from the input variance.

        q¹ = s₁·q_in + σ_b²,   qˡ = s_l·V(qˡ⁻¹) + σ_b²,   s_l = σ_{w,l}² N_{l-1} (fan-in).

    Parameters
    ----------
    act : Activation
    s_in : array, shape (L,)
        σ_{w,l}²·N_{l-1}, the fan-in-scaled weight variance of each layer.
    sigma_b2 : float
        Bias variance σ_b².
    q_in : float
        Input variance E[x²] (the input is not activated).

    Returns
    -------
    array, shape (L,)
        ln qˡ; +inf where the recursion overflows float64 (possible only for non-homogeneous φ:
        homogeneous ones run in logs), -inf where q reaches exactly 0.
    """
    s_in = np.asarray(s_in, dtype=float)
    out = np.empty(s_in.shape)
    log_b = np.log(sigma_b2) if sigma_b2 > 0 else -np.inf
    with np.errstate(divide="ignore"):
        log_q = np.logaddexp(np.log(s_in[0] * q_in), log_b)
    out[0] = log_q
    out[1:] = log_q_continue(act, log_q, s_in[1:], sigma_b2)
    return out


def log_q_continue(act: Activation, log_q_start: float, s_in: Array, sigma_b2: float) -> Array:
    """ln qˡ of n more layers qˡ = s_l·V(qˡ⁻¹) + σ_b², from ln q of the layer before them.

    The dense block's forward map over a run of layers (:class:`hevar.blocks.dense.Dense`);
    :func:`log_q_trajectory` is the input layer followed by this.

    Parameters
    ----------
    act : Activation
    log_q_start : float
        ln q of the layer feeding the first of them.
    s_in : array, shape (n,)
        σ_{w,l}²·N_{l-1} of each of the n layers.
    sigma_b2 : float

    Returns
    -------
    array, shape (n,)
    """
    s_in = np.asarray(s_in, dtype=float)
    out = np.empty(s_in.shape)
    log_b = np.log(sigma_b2) if sigma_b2 > 0 else -np.inf
    log_q = log_q_start
    if act.homogeneous:
        # V(q) = V(1)·q exactly, so the recursion can run in logs at any depth.
        log_v1 = float(np.log(V(act, 1.0)))
        with np.errstate(divide="ignore"):
            log_s = np.log(s_in)
        for l in range(len(s_in)):
            log_q = np.logaddexp(log_s[l] + log_v1 + log_q, log_b)
            out[l] = log_q
        return out
    v_of = _raw_v(act)
    q = float(np.exp(log_q))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for l in range(len(s_in)):
            q_next = float(s_in[l] * v_of(np.array([q]))[0] + sigma_b2) if q < _HUGE else math.inf
            if not q_next < _HUGE:
                q_next = math.inf
            # A settled trajectory under constant s stays put: fill the rest (depth 1000 in ~ms).
            if (q_next == q or abs(q_next - q) <= 4e-16 * q) and np.all(s_in[l:] == s_in[l]):
                out[l:] = math.log(q_next) if q_next > 0 else -math.inf
                return out
            q = q_next
            out[l] = math.log(q) if q > 0 else -math.inf
    return out


def _raw_v(act: Activation):
    """V for finite q > 0 without the wrapper's bookkeeping (the trajectory calls it per layer)."""
    if act.V is not None:
        return act.V
    phi, kinks = act.phi, act.kinks
    return lambda q: gaussian.expect(lambda z: phi(z) ** 2, q, kinks)


def log_q_tilde_trajectory(act: Activation, s_out: Array, log_q: Array, log_q_tilde_top: float) -> Array:
    """ln q̃ˡ for l = 1..L from the backward recursion q̃ˡ = q̃ˡ⁺¹·s_{l+1}·G(qˡ), started at q̃ᴸ.

    Parameters
    ----------
    act : Activation
    s_out : array, shape (L,)
        σ_{w,l+1}²·N_{l+1} for l = 1..L-1 (N_{l+1} is the fan-out of layer l); entry L is unused.
    log_q : array, shape (L,)
        ln qˡ of the forward pass along which G is evaluated.
    log_q_tilde_top : float
        ln q̃ᴸ (hevar starts the prediction at the measured top value; the report uses 0).

    Returns
    -------
    array, shape (L,)
    """
    L = len(log_q)
    out = np.empty(L)
    out[L - 1] = log_q_tilde_top
    if L > 1:
        g = G(act, np.exp(np.asarray(log_q[:-1], dtype=float)))
        with np.errstate(divide="ignore", invalid="ignore"):
            steps = np.log(np.asarray(s_out[:-1], dtype=float) * g)
        out[:-1] = log_q_tilde_top + np.cumsum(steps[::-1])[::-1]
    return out


def log_grad_norm2(act: Activation, widths: Array, log_q: Array, log_q_tilde: Array, q_in: float = 1.0) -> Array:
    """ln of Theorem 1.1's prediction E‖∂J/∂Wˡ‖² ≈ N_l q̃ˡ · N_{l-1} E[φ(zˡ⁻¹)²], l = 1..L.

    Parameters
    ----------
    widths : array, shape (L+1,)
        (N_0, ..., N_L).
    log_q, log_q_tilde : array, shape (L,)
        ln qˡ and ln q̃ˡ.
    q_in : float
        E[φ(z⁰)²] = E[x²], the input is not activated.
    """
    widths = np.asarray(widths, dtype=float)
    log_v_prev = np.empty(len(log_q))
    log_v_prev[0] = np.log(q_in)
    if len(log_q) > 1:
        if act.homogeneous:
            log_v_prev[1:] = np.log(V(act, 1.0)) + log_q[:-1]
        else:
            with np.errstate(divide="ignore"):
                log_v_prev[1:] = np.log(V(act, np.exp(log_q[:-1])))
    return np.log(widths[1:]) + log_q_tilde + np.log(widths[:-1]) + log_v_prev


# --- fixed points (constant width, s = σ_w²·N) ----------------------------------------------------


@dataclass(frozen=True)
class FixedPoint:
    """A fixed point q* = s·V(q*) + σ_b² of the forward map, or one of its limits q* = 0, ∞."""

    q: float  # q*; 0.0 for the σ_b² = 0 fixed point at the origin, inf for divergence
    slope: float  # F'(q*) = s·V'(q*); at q = inf, lim F(q)/q = s·G(∞)
    stable: bool  # attracts nearby q: slope < 1 (finite or 0); slope > 1 at q = inf (marginal: see below)
    chi1: float  # s·G(q*); at q = inf the limit s·G(∞)
    marginal: bool = False  # q = inf with s·G(∞) = 1 to rounding: F(q)/q → 1, q drifts without settling


@functools.lru_cache(maxsize=64)
def _grid_v(act: Activation) -> Array:
    return V(act, _Q_GRID)


def _log_ratio(act: Activation, q: Array, s: Array, sigma_b2: float, v: Array | None = None) -> Array:
    """r(q) = ln(F(q)/q): > 0 where the map pushes q up, < 0 where it pulls q down.

    Taken as the log of the ratio, not ln F - ln q: near a fixed point F/q ≈ 1 and its log is exact
    to an ulp, whereas ln F - ln q would carry ε·(|ln F| + |ln q|) ≈ 7e-15 at q = 1e14.
    """
    v = V(act, q) if v is None else v
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.log((s * v + sigma_b2) / q)


def _log_ratio_error(s: Array, v: Array, sigma_b2: float) -> Array:
    """A bound on the error of :func:`_log_ratio` at the same points (same broadcasting).

    F/q = (s·V + σ_b²)/q has relative error V_RTOL·s·V/F from V plus an ulp from each of the
    product, the sum and the quotient; the log near 1 adds one more. Where |r| is within this, its
    sign is rounding noise: where s·V(q)/q → 1 as q → ∞ (s = 1/G(∞), σ_b² = 0, e.g. gelu or softplus
    at s = 2), r sinks into it for q ≳ 1e6–1e10 and flips sign at random.
    """
    sv = np.asarray(s * v, dtype=float)
    total = sv + sigma_b2
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, sv / np.where(total > 0, total, 1.0), 1.0)
    return V_RTOL * share + 4 * np.finfo(float).eps


def _resolved_sign(act: Activation, q: Array, s: Array, sigma_b2: float, v: Array | None = None) -> Array:
    """The sign of r(q) where |r| exceeds its error bound, else 0 (undecided; nan is undecided too)."""
    v = V(act, q) if v is None else v
    r = _log_ratio(act, q, s, sigma_b2, v)
    err = _log_ratio_error(s, v, sigma_b2)
    return np.where(r > err, 1, np.where(r < -err, -1, 0))


def _refine(act: Activation, lo: Array, hi: Array, s: Array, sigma_b2: float) -> Array:
    """Roots of r in [lo, hi] (r(lo) ≥ 0 ≥ r(hi) or the reverse), vectorised, in t = ln q."""
    if lo.size == 0:
        return lo.copy()
    return np.exp(_illinois(lambda t, idx: _log_ratio(act, np.exp(t), s[idx], sigma_b2),
                            np.log(lo), np.log(hi)))


def _illinois(func, a: Array, b: Array, xtol: float = 1e-15, maxiter: int = 200) -> Array:
    """Vectorised regula falsi with the Illinois modification (superlinear, always bracketed).

    ``func(x, idx)`` evaluates the functions numbered ``idx`` at ``x``; [a, b] must bracket a sign
    change of each. Iterates until the bracket is below xtol·max(1, |x|) or an exact zero is hit.
    """
    a, b = a.astype(float).copy(), b.astype(float).copy()
    every = np.arange(a.size)
    fa, fb = func(a, every), func(b, every)
    x = np.where(fb == 0, b, a)
    active = (fa != 0) & (fb != 0)
    for _ in range(maxiter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        A, B, FA, FB = a[idx], b[idx], fa[idx], fb[idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            c = B - FB * (B - A) / (FB - FA)
        outside = ~((c > np.minimum(A, B)) & (c < np.maximum(A, B)))
        c[outside] = 0.5 * (A + B)[outside]
        fc = func(c, idx)
        flip = np.sign(fc) * np.sign(FB) < 0
        a[idx] = np.where(flip, B, A)
        fa[idx] = np.where(flip, FB, 0.5 * FA)  # Illinois: halve the end that stays
        b[idx], fb[idx], x[idx] = c, fc, c
        converged = (fc == 0) | (np.abs(b[idx] - a[idx]) <= xtol * np.maximum(1.0, np.abs(c))) | np.isnan(fc)
        active[idx[converged]] = False
    return x


def fixed_points(act: Activation, s: float, sigma_b2: float) -> tuple[FixedPoint, ...]:
    """All fixed points of q ↦ F(q) = s·V(q) + σ_b², with their stability, in increasing q.

    Finite fixed points are the sign changes of r(q) = ln(F(q)/q) on a grid of 10 points per decade in
    q ∈ [1e-14, 1e14], refined to rounding. A grid point counts only where |r| exceeds its error bound
    (V_RTOL relative in V plus a few ulps, see :func:`_log_ratio_error`); a sign change is between
    consecutive such points, with any undecided points between them inside the bracket. So every
    finite point listed is genuine, |F(q*) - q*| ≲ 1e-14·q*, but two fixed points closer than a grid
    step, or a tangency where |r| never leaves its error band, can be missed. Listed besides:

    - q* = 0 when it is one (σ_b² = 0 and φ(0) = 0); its slope is F'(0) = s·G(0⁺), χ₁ = s·G(0⁺);
    - q* = inf when F(q)/q → s·G(∞) > 1 beyond rounding, i.e. q diverges (attracting);
    - q* = inf with ``marginal`` True when s·G(∞) = 1 to rounding (s = 1/G(∞): gelu, silu, mish,
      softplus, elu at s = 2): r → 0 as q → ∞, so for large q it lies inside its error band and its
      sign, which the next order of V decides, cannot be resolved; no finite point is made up there.
      χ₁ → s·G(∞). ``stable`` is the last resolved sign of r below the band: True when q is pushed up
      into it (softplus: V(q) - q/2 > 0; gelu with σ_b² > 0), False when it is pulled down
      (gelu, σ_b² = 0: V(q) < q/2), and False when r is resolved nowhere.

    For positively homogeneous φ, F(q) = a·q + σ_b² with a = s·V(1) is affine: the fixed point
    σ_b²/(1 - a) (0 when σ_b² = 0) when a < 1; 0 (unstable) and divergence when a > 1; divergence
    when a = 1 and σ_b² > 0; and, at a = 1 with σ_b² = 0, every q is fixed and none is listed.

    Parameters
    ----------
    act : Activation
    s : float
        σ_w²·N.
    sigma_b2 : float
        σ_b².

    Returns
    -------
    tuple of FixedPoint
    """
    lim = limits(act)
    points: list[FixedPoint] = []
    if act.homogeneous:
        a = s * float(V(act, 1.0))  # F(q) = a·q + σ_b²
        c = s * float(G(act, 1.0))
        if sigma_b2 == 0:
            if a != 1:  # at a = 1 every q is fixed (neutral): nothing to list
                points.append(FixedPoint(0.0, a, a < 1, c))
        elif a < 1:
            points.append(FixedPoint(sigma_b2 / (1 - a), a, True, c))
        if a > 1 or (a == 1 and sigma_b2 > 0):
            points.append(FixedPoint(math.inf, a, True, c))
        return tuple(points)
    if sigma_b2 == 0 and lim.phi0 == 0:
        points.append(FixedPoint(0.0, s * lim.g0, s * lim.g0 < 1, s * lim.g0))
    sign = _resolved_sign(act, _Q_GRID, np.float64(s), sigma_b2, _grid_v(act))
    decided = np.flatnonzero(sign != 0)
    flip = sign[decided[:-1]] != sign[decided[1:]]
    lo, hi = decided[:-1][flip], decided[1:][flip]
    roots = _refine(act, _Q_GRID[lo], _Q_GRID[hi], np.full(len(lo), float(s)), sigma_b2)
    if len(roots):
        slopes = s * dV(act, roots)
        chis = s * G(act, roots)
        points += [FixedPoint(float(q), float(k), bool(k < 1), float(c)) for q, k, c in zip(roots, slopes, chis)]
    chi_inf = s * lim.g_inf  # = lim F(q)/q, so r(∞) = ln χ_inf
    if _marginal_at_inf(s, lim):
        last = int(sign[decided[-1]]) if decided.size else 0
        points.append(FixedPoint(math.inf, chi_inf, last > 0, chi_inf, marginal=True))
    elif chi_inf > 1:
        points.append(FixedPoint(math.inf, chi_inf, True, chi_inf))
    return tuple(points)


def _marginal_at_inf(s: float | Array, lim: Limits) -> bool | Array:
    """s·G(∞) = 1 to rounding: r(q) → ln(s·G(∞)) lies within its error bound as q → ∞."""
    with np.errstate(divide="ignore"):
        r_inf = np.log(np.asarray(s, dtype=float) * lim.g_inf)
    return np.abs(r_inf) <= V_RTOL + 4 * np.finfo(float).eps


def _attractor(act: Activation, s: Array, sigma_b2: float, q_in: float) -> Array:
    """q* reached by a network with input variance q_in, for each s (vectorised).

    The trajectory starts at q¹ = s·q_in + σ_b². V is nondecreasing for every built-in φ (the tests
    check it), so F is monotone and qˡ moves monotonically to the nearest fixed point in the
    direction F(q¹) - q¹ points: up to the first root above q¹ (or ∞), down to the last one below
    (or 0). Signs of r = ln(F/q) count only where resolved (see :func:`fixed_points`): where r sinks
    into its error band for large q (s = 1/G(∞)) nothing stops qˡ and q* = ∞, the marginal case; a
    q¹ with r unresolved is itself q* (to rounding), or ∞ when it lies in that unbounded band.
    """
    s = np.asarray(s, dtype=float)
    q1 = s * q_in + sigma_b2
    lim = limits(act)
    sign1 = np.where(q1 > 0, _resolved_sign(act, np.where(q1 > 0, q1, 1.0), s, sigma_b2), 1)
    if sigma_b2 == 0 and lim.phi0 == 0:
        sign1 = np.where(q1 > 0, sign1, 0)  # starting at the fixed point 0
    grid = _Q_GRID[None, :]
    sign = _resolved_sign(act, grid, s[:, None], sigma_b2, _grid_v(act)[None, :])
    m = len(_Q_GRID)
    index = np.arange(m)[None, :]
    lo, hi = np.full(s.shape, np.nan), np.full(s.shape, np.nan)

    settled_above = ~np.any((grid > q1[:, None]) & (sign != 0), axis=1)  # nothing resolved above q¹
    q_star = np.where(sign1 == 0, np.where(settled_above & _marginal_at_inf(s, lim), np.inf, q1), np.nan)

    up = sign1 > 0
    above = grid > q1[:, None]
    first = np.argmax(above & (sign < 0), axis=1)  # first resolved r < 0 above q¹
    found = np.any(above & (sign < 0), axis=1)
    q_star = np.where(up & ~found, np.inf, q_star)
    sel = up & found
    # the last resolved r > 0 between q¹ and it (else q¹ itself, where r > 0 too)
    last_pos = np.max(np.where(above & (sign > 0) & (index < first[:, None]), index, -1), axis=1)
    lo[sel] = np.where(last_pos[sel] >= 0, _Q_GRID[np.maximum(last_pos[sel], 0)], q1[sel])
    hi[sel] = _Q_GRID[first[sel]]

    down = sign1 < 0
    below = grid < q1[:, None]
    last = np.max(np.where(below & (sign > 0), index, -1), axis=1)  # last resolved r > 0 below q¹
    found = last >= 0
    q_star = np.where(down & ~found, 0.0, q_star)
    sel = down & found
    # the first resolved r < 0 between it and q¹ (else q¹ itself, where r < 0 too)
    after = below & (sign < 0) & (index > last[:, None])
    first_neg = np.where(np.any(after, axis=1), np.argmax(after, axis=1), -1)
    lo[sel] = _Q_GRID[last[sel]]
    hi[sel] = np.where(first_neg[sel] >= 0, _Q_GRID[np.maximum(first_neg[sel], 0)], q1[sel])

    todo = np.flatnonzero(np.isfinite(lo))
    q_star[todo] = _refine(act, np.maximum(lo[todo], 1e-300), hi[todo], s[todo], sigma_b2)
    return q_star


def chi1_curve(act: Activation, s_grid: Array, sigma_b2: float, q_in: float = 1.0) -> tuple[Array, Array]:
    """χ₁ and q* along a grid of σ_w²·N, at the fixed point a network actually reaches.

    Parameters
    ----------
    act : Activation
    s_grid : array, shape (K,)
        σ_w²·N values.
    sigma_b2 : float
        σ_b².
    q_in : float
        Input variance; the trajectory starts at q¹ = s·q_in + σ_b² and settles at the fixed point
        of q ↦ s·V(q) + σ_b² whose basin holds q¹ (see :func:`q_fixed_point`).

    Returns
    -------
    chi1 : array, shape (K,)
        s·G(q*), with the limits s·G(0⁺) at q* = 0 and s·G(∞) at q* = inf. For homogeneous φ,
        s·G(1) whatever q*.
    q_star : array, shape (K,)
        The fixed point reached: 0 (collapse), finite, or inf (divergence). For homogeneous φ at
        s·V(1) = 1, σ_b² = 0 every q is fixed and q* = q¹.
    """
    s = np.atleast_1d(np.asarray(s_grid, dtype=float))
    if act.homogeneous:
        a = s * float(V(act, 1.0))
        q1 = s * q_in + sigma_b2
        with np.errstate(divide="ignore", invalid="ignore"):
            q_star = np.where(a < 1, sigma_b2 / (1 - a), np.inf)
        q_star = np.where((a == 1) & (sigma_b2 == 0), q1, q_star)
        return s * float(G(act, 1.0)), q_star
    q_star = np.full(s.shape, np.nan)  # s < 0 is meaningless: nan
    q_star[s == 0] = sigma_b2  # F(q) = σ_b² for every q
    pos = s > 0
    q_star[pos] = _attractor(act, s[pos], sigma_b2, q_in)
    lim = limits(act)
    g = np.full(s.shape, np.nan)
    finite = np.isfinite(q_star) & (q_star > 0)
    g[finite] = G(act, q_star[finite])
    g[q_star == 0] = lim.g0
    g[np.isinf(q_star)] = lim.g_inf
    return s * g, q_star


def q_fixed_point(act: Activation, s: float, sigma_b2: float, q_in: float = 1.0) -> float:
    """The fixed point q* = s·V(q*) + σ_b² that a constant-width network with input variance q_in
    settles at (0 if qˡ collapses, inf if it diverges).

    The trajectory starts at q¹ = s·q_in + σ_b² (the input is not activated) and moves monotonically
    to the nearest fixed point in the direction F(q¹) - q¹ points; see :func:`fixed_points` for all
    of them, stable or not.

    Parameters
    ----------
    act : Activation
    s : float
        σ_w²·N (constant width, so fan-in = fan-out = N).
    sigma_b2 : float
        σ_b².
    q_in : float
        Input variance E[x²].

    Returns
    -------
    float
        q* in [0, inf].
    """
    return float(chi1_curve(act, np.array([s]), sigma_b2, q_in)[1][0])


def chi1(act: Activation, s: float, sigma_b2: float, q_in: float = 1.0) -> float:
    """χ₁ = s·G(q*) at the fixed point reached from input variance q_in (Schoenholz et al. 2017, eq. 5).

    χ₁ < 1: ordered (q̃ˡ shrinks towards the input by χ₁ per layer), > 1: chaotic, = 1: critical.
    Limits: χ₁ = s·G(0⁺) when qˡ → 0 and s·G(∞) when it diverges (see :func:`limits`).

    Parameters
    ----------
    act : Activation
    s : float
        σ_w²·N (constant width).
    sigma_b2 : float
        σ_b².
    q_in : float
        Input variance E[x²]; it picks the basin when the map has several attractors.

    Returns
    -------
    float
    """
    return float(chi1_curve(act, np.array([s]), sigma_b2, q_in)[0][0])


def depth_scale(chi1_value: float) -> float:
    """ξ = -1/ln χ₁: once qˡ has settled, q̃ˡ = q̃ᴸ·χ₁^{L-l} = q̃ᴸ·exp(-(L-l)/ξ).

    Positive when χ₁ < 1 (q̃ decays by e every ξ layers towards the input), negative when χ₁ > 1
    (|ξ| is the e-folding growth length), infinite at χ₁ = 1, 0 at χ₁ = 0 (Schoenholz et al. 2017 call
    the positive one ξ_∇).

    Parameters
    ----------
    chi1_value : float
        χ₁ ≥ 0.

    Returns
    -------
    float
        ξ in layers; nan for negative or nan χ₁.
    """
    if not chi1_value >= 0:
        return math.nan
    if chi1_value == 1:
        return math.inf
    if chi1_value == 0:
        return 0.0
    return -1.0 / math.log(chi1_value)


def phase(chi1_value: float, tol: float = CRITICAL_TOL) -> str:
    """The phase of signal propagation from χ₁.

    Parameters
    ----------
    chi1_value : float
    tol : float
        Half-width of the band reported as critical.

    Returns
    -------
    str
        "ordered" (χ₁ < 1 - tol), "critical" (|χ₁ - 1| ≤ tol), "chaotic" (χ₁ > 1 + tol), "" for nan.
    """
    if not math.isfinite(chi1_value) and not chi1_value == math.inf:
        return ""
    if abs(chi1_value - 1) <= tol:
        return "critical"
    return "ordered" if chi1_value < 1 else "chaotic"


# --- criticality ----------------------------------------------------------------------------------


KINDS = ("homogeneous", "q*->0", "finite q*", "q*->inf", "jump", "none")


@dataclass(frozen=True)
class Critical:
    """The critical σ_w²·N where χ₁ = 1 (constant width), with how it arises.

    ``kind`` is one of :data:`KINDS`:

    - ``"homogeneous"``: φ(cz) = cφ(z), χ = s·G(1) at every q: σ_w²·N = 1/G(1), any σ_b²;
    - ``"q*->0"``: the stable fixed point collapses to 0 as s ↑ 1/G(0⁺) (σ_b² = 0, φ(0) = 0);
    - ``"finite q*"``: χ₁ crosses 1 continuously at a stable, finite fixed point;
    - ``"q*->inf"``: χ₁ → 1 as the fixed point runs off to ∞ at s = 1/G(∞);
    - ``"jump"``: χ₁ jumps across 1 where q¹ leaves one basin for another (an unstable fixed point or
      a saddle-node); no s gives χ₁ = 1 at the fixed point reached, ``sigma_w2_n`` is nan and
      ``jump_at`` holds the jump;
    - ``"none"``: χ₁ - 1 keeps one sign for s in [1e-2, 1e4].
    """

    sigma_w2_n: float  # critical σ_w²·N (nan when χ₁ never equals 1 at the fixed point reached)
    kind: str  # one of KINDS
    q_star: float  # fixed point at criticality (0, finite, inf; nan when undefined)
    label: str = ""  # one sentence saying what happens, with numbers
    chi1_below: float = math.nan  # χ₁ at σ_w²·N·(1 - 1e-10), just below the critical value (or the jump)
    chi1_above: float = math.nan  # χ₁ at σ_w²·N·(1 + 1e-10)
    jump_at: float = math.nan  # σ_w²·N where χ₁ jumps (kind "jump"), else nan


def _fmt(x: float) -> str:
    return "∞" if x == math.inf else f"{x:.6g}"


def _chi_q(act: Activation, s: float, sigma_b2: float, q_in: float) -> tuple[float, float]:
    c, q = chi1_curve(act, np.array([s]), sigma_b2, q_in)
    return float(c[0]), float(q[0])


@functools.lru_cache(maxsize=256)
def critical_sigma_w2_n(act: Activation, sigma_b2: float, q_in: float = 1.0) -> Critical:
    """σ_w²·N where χ₁ = s·G(q*) = 1 at the fixed point reached from input variance q_in.

    Method: χ₁ - 1 is tabulated at the fixed point reached (:func:`chi1_curve`) on ``S_SCAN`` (30
    points per decade over [1e-2, 1e4]); the first sign change is refined with Brent's method; χ₁ is
    then compared just below and above the root to tell a continuous crossing from a jump, and the
    fixed point there names the kind (see :class:`Critical`). Roots at q* → 0 and q* → ∞ are snapped
    to their exact values 1/G(0⁺) and 1/G(∞).

    Parameters
    ----------
    act : Activation
    sigma_b2 : float
        σ_b².
    q_in : float
        Input variance. It matters only when the answer depends on the basin of q¹ (kind "jump").

    Returns
    -------
    Critical
    """
    lim = limits(act)
    if act.homogeneous:
        g1 = float(G(act, 1.0))
        s_c = 1.0 / g1
        if sigma_b2 == 0:
            tail = "at criticality every q is a fixed point: qˡ stays at q¹ = σ_w²·N·q_in"
            q_star = math.nan
        else:
            tail = "at criticality qˡ grows by σ_b² per layer (q* = ∞)"
            q_star = math.inf
        return Critical(s_c, "homogeneous", q_star,
                        f"φ is positively homogeneous: χ = σ_w²·N·{g1:.6g} at every q, so σ_w²·N = "
                        f"{s_c:.6g} whatever σ_b²; {tail}.", 1.0 - 1e-10, 1.0 + 1e-10)

    chis, _ = chi1_curve(act, S_SCAN, sigma_b2, q_in)
    sign = np.sign(chis - 1)
    nonzero = np.flatnonzero(sign != 0)  # a grid point may hit χ₁ = 1 exactly (tanh at s = 1)
    flips = [(int(a), int(b)) for a, b in zip(nonzero[:-1], nonzero[1:]) if sign[a] != sign[b]]
    if not flips:
        where = "below" if np.nanmax(chis) < 1 else "above"
        return Critical(math.nan, "none", math.nan,
                        f"χ₁ stays {where} 1 for σ_w²·N in [{S_SCAN[0]:g}, {S_SCAN[-1]:g}] "
                        f"(χ₁ from {chis[0]:.4g} to {chis[-1]:.4g}).")
    a, b = flips[0]
    more = f" χ₁ crosses 1 again {len(flips) - 1} more time(s) by σ_w²·N = {S_SCAN[-1]:g}." if len(flips) > 1 else ""
    if b > a + 1:
        s_root = float(S_SCAN[a + 1])  # the first exact hit
    else:
        s_root = optimize.brentq(lambda s: _chi_q(act, s, sigma_b2, q_in)[0] - 1.0, S_SCAN[a], S_SCAN[b],
                                 xtol=1e-14, rtol=1e-14, maxiter=200)
    # Continuous or not: compare χ₁ at s·(1 ± 1e-10). A continuous crossing leaves a gap of order
    # 1e-10 (about 1e-4 where q* → ∞ and G(q*) creeps up to G(∞), as for softplus); a jump stays O(0.1).
    eps = 1e-10
    chi_lo, q_lo = _chi_q(act, s_root * (1 - eps), sigma_b2, q_in)
    chi_hi, q_hi = _chi_q(act, s_root * (1 + eps), sigma_b2, q_in)

    if abs(chi_hi - chi_lo) > 1e-3:
        return Critical(math.nan, "jump", math.nan, _jump_label(act, sigma_b2, q_in, s_root, chi_lo, q_lo, chi_hi, q_hi) + more,
                        chi_lo, chi_hi, s_root)

    s0 = 1.0 / lim.g0 if lim.g0 > 0 else math.inf
    s_inf = 1.0 / lim.g_inf if lim.g_inf > 0 else math.inf
    # Near q* → 0 an odd φ has χ₁ - 1 = O((s - s₀)²) (V(q)/q and G(q) share their O(q) term), so the
    # root found in the rounding noise may sit a hair above s₀ = 1/G(0⁺): accept q* up to 1e-6.
    if min(q_lo, q_hi) < 1e-6 and abs(s_root / s0 - 1) < 1e-6:
        kink = "; at the kink φ'(0)² is the mean of the one-sided squares" if 0.0 in act.kinks else ""
        return Critical(s0, "q*->0", 0.0,
                        f"qˡ → 0 below σ_w²·N = 1/φ'(0)² = {s0:.6g} and settles at a q* > 0 that grows from 0 above "
                        f"it (σ_b² = 0 and φ(0) = 0{kink}); χ₁ → σ_w²·N·φ'(0)² = 1 there; "
                        f"{_phases(act, s0, sigma_b2, q_in)}." + more, chi_lo, chi_hi)
    if max(q_lo, q_hi) > 1e8 and abs(s_root / s_inf - 1) < 1e-6:
        return Critical(s_inf, "q*->inf", math.inf,
                        f"q* → ∞ as σ_w²·N → 1/G(∞) = {s_inf:.6g}, where χ₁ → σ_w²·N·G(∞) = 1 (slowly, as G(q*) "
                        f"approaches G(∞)); beyond it qˡ grows without bound, as for He-initialized relu with a "
                        f"bias; {_phases(act, s_inf, sigma_b2, q_in)}." + more, chi_lo, chi_hi)
    q_star = q_fixed_point(act, s_root, sigma_b2, q_in)
    return Critical(float(s_root), "finite q*", q_star,
                    f"χ₁ = 1 at the stable fixed point q* = {_fmt(q_star)} for σ_w²·N = {s_root:.6g}; "
                    f"{_phases(act, s_root, sigma_b2, q_in)}." + more, chi_lo, chi_hi)


def _phases(act: Activation, s: float, sigma_b2: float, q_in: float) -> str:
    # ±0.1%, not closer: for odd φ at σ_b² = 0, χ₁ - 1 ≈ (Δs/s)²/3 on the chaotic side.
    below, above = (phase(_chi_q(act, s * f, sigma_b2, q_in)[0], 0.0) for f in (0.999, 1.001))
    return f"{below} below, {above} above"


def _jump_label(act: Activation, sigma_b2: float, q_in: float, s: float,
                chi_lo: float, q_lo: float, chi_hi: float, q_hi: float) -> str:
    lim = limits(act)
    text = (f"χ₁ jumps from {chi_lo:.4g} (q* = {_fmt(q_lo)}) to {chi_hi:.4g} (q* = {_fmt(q_hi)}) at "
            f"σ_w²·N = {s:.6g}, where q¹ = {_fmt(s * q_in + sigma_b2)} crosses into another basin; "
            f"no σ_w²·N gives χ₁ = 1 at the fixed point reached from q_in = {q_in:g}.")
    notes = []
    if sigma_b2 == 0 and lim.phi0 == 0 and lim.g0 > 0:
        notes.append(f"q* = 0 becomes marginal at σ_w²·N = 1/G(0⁺) = {1 / lim.g0:.6g}")
    if lim.g_inf > 0:
        notes.append(f"q* = ∞ at σ_w²·N = 1/G(∞) = {1 / lim.g_inf:.6g}")
    unstable = [p for p in fixed_points(act, s, sigma_b2) if 0 < p.q < math.inf and not p.stable]
    if unstable:
        notes.append("unstable fixed point(s) there: "
                     + ", ".join(f"q = {p.q:.4g} (χ₁ = {p.chi1:.4g})" for p in unstable))
    return text + (" (" + "; ".join(notes) + ".)" if notes else "")


# --- the `hevar theory` report --------------------------------------------------------------------


def report(act: Activation, sigma_b2: float = 0.0, sigma_w2_n: float | None = None, depth: int = 10,
           q_in: float = 1.0) -> dict[str, Any]:
    """Everything `hevar theory` prints, as one dict with stable keys (floats may be nan or ±inf).

    Parameters
    ----------
    act : Activation
    sigma_b2 : float
        σ_b².
    sigma_w2_n : float or None
        σ_w²·N at which to evaluate the phase and the per-layer predictions; None means the critical
        value (and, when there is none, the at-σ_w²·N keys are None and ``layers`` is empty).
    depth : int
        L, the number of layers predicted.
    q_in : float
        Input variance E[x²].

    Returns
    -------
    dict with keys

    ``activation`` (str, canonical spec), ``sigma_b2``, ``q_in``,
    ``critical_sigma_w2_n`` (float, nan when none), ``gain`` (√ of it: the std multiplier of
    1/√N, what ``torch.nn.init.calculate_gain`` stands for), ``critical_kind`` (one of
    :data:`KINDS`), ``critical_label`` (one sentence), ``critical_q_star``,
    ``critical_chi1_below``, ``critical_chi1_above``, ``critical_jump_at`` (floats; see
    :class:`Critical`),
    ``sigma_w2_n`` (the value evaluated, or None), ``q_star`` (fixed point reached from q_in),
    ``chi1`` (s·G(q*)), ``xi`` (-1/ln χ₁, signed, see :func:`depth_scale`; inf when the phase is
    critical, where -1/ln χ₁ would only measure rounding), ``phase``
    ("ordered" / "critical" / "chaotic"), ``fixed_points`` (list of ``{"q", "slope", "stable",
    "chi1", "marginal"}``, all fixed points of the map, see :func:`fixed_points` and :class:`FixedPoint`),
    ``depth`` (L) and ``layers``: list of ``{"layer", "q", "q_tilde", "chi"}`` for l = 1..L with qˡ
    from the forward recursion started at q_in, q̃ˡ from the backward one with q̃ᴸ = 1, and
    χˡ = s·G(qˡ) (so q̃ˡ = χˡ·q̃ˡ⁺¹).
    """
    _check_report_args(sigma_b2, sigma_w2_n, depth, q_in)
    crit = critical_sigma_w2_n(act, float(sigma_b2), float(q_in))
    out: dict[str, Any] = dict(
        activation=act.name, sigma_b2=float(sigma_b2), q_in=float(q_in),
        critical_sigma_w2_n=crit.sigma_w2_n, gain=math.sqrt(crit.sigma_w2_n),
        critical_kind=crit.kind, critical_label=crit.label, critical_q_star=crit.q_star,
        critical_chi1_below=crit.chi1_below, critical_chi1_above=crit.chi1_above,
        critical_jump_at=crit.jump_at,
        sigma_w2_n=None, q_star=None, chi1=None, xi=None, phase=None, fixed_points=[],
        depth=int(depth), layers=[],
    )
    s = crit.sigma_w2_n if sigma_w2_n is None else float(sigma_w2_n)
    if not math.isfinite(s):
        return out
    c = chi1(act, s, sigma_b2, q_in)
    ph = phase(c)
    out.update(sigma_w2_n=s, q_star=q_fixed_point(act, s, sigma_b2, q_in), chi1=c,
               xi=math.inf if ph == "critical" else depth_scale(c), phase=ph)
    out["fixed_points"] = [dict(q=p.q, slope=p.slope, stable=p.stable, chi1=p.chi1, marginal=p.marginal)
                           for p in fixed_points(act, s, sigma_b2)]
    s_layers = np.full(int(depth), s)
    log_q = log_q_trajectory(act, s_layers, sigma_b2, q_in)
    log_qt = log_q_tilde_trajectory(act, s_layers, log_q, 0.0)
    chis = chi(act, np.exp(log_q), s)
    out["layers"] = [dict(layer=l + 1, q=float(np.exp(log_q[l])), q_tilde=float(np.exp(log_qt[l])),
                          chi=float(chis[l])) for l in range(int(depth))]
    return out


def _check_report_args(sigma_b2: float, sigma_w2_n: float | None, depth: int, q_in: float) -> None:
    if not (math.isfinite(sigma_b2) and sigma_b2 >= 0):
        raise UsageError(f"The 'sigma_b2' parameter must be a float in the range [0, inf). Got {sigma_b2:g} instead.",
                         param="sigma-b2")
    if sigma_w2_n is not None and not (math.isfinite(sigma_w2_n) and sigma_w2_n > 0):
        raise UsageError(f"The 'sigma_w2' parameter must be a float in the range (0, inf). Got {sigma_w2_n:g} instead.",
                         param="sigma-w2")
    if not (isinstance(depth, (int, np.integer)) and depth >= 1):
        raise UsageError(f"The 'depth' parameter must be an int in the range [1, inf). Got {depth} instead.",
                         param="depth")
    if not (math.isfinite(q_in) and q_in > 0):
        raise UsageError(f"The 'q_in' parameter must be a float in the range (0, inf). Got {q_in:g} instead.",
                         param="q-in")
