"""Fixed points of the q-map F(q) = s·V(q) + σ_b² (constant width, s = σ_w²·N), and χ₁ at them.

See :mod:`hevar.meanfield.theory` for the conventions.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from hevar.meanfield.activations import Activation
from hevar.meanfield.moments import V_RTOL, G, Limits, V, dV, limits

Array = np.ndarray

CRITICAL_TOL = 1e-6  # |χ₁ - 1| at or below this is reported as the critical phase
_Q_GRID = np.geomspace(1e-14, 1e14, 281)  # q scanned for fixed points (10 points per decade)


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
