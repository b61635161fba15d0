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
_T_FINE = np.log(np.geomspace(1e-14, 1e14, 2801))  # ln q scanned for the stationary points of r (100 per decade)


@dataclass(frozen=True)
class FixedPoint:
    """A fixed point q* = s·V(q*) + σ_b² of the forward map, or one of its limits q* = 0, ∞."""

    q: float  # q*; 0.0 for the σ_b² = 0 fixed point at the origin, inf for divergence
    slope: float  # F'(q*) = s·V'(q*); at q = inf, lim F(q)/q = s·G(∞)
    stable: bool  # attracts nearby q: slope < 1 (finite or 0); slope > 1 at q = inf (marginal: see below)
    chi1: float  # s·G(q*); at q = inf the limit s·G(∞)
    marginal: bool = False  # q = inf with s·G(∞) = 1 to rounding: F(q)/q → 1, q drifts without settling
    saddle_node: bool = False  # a double root (slope 1 to rounding): F touches the diagonal, attracting from one side


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
    with np.errstate(over="ignore", invalid="ignore"):  # s·V = inf for a huge σ_w²·N: share nan, no sign counts
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


# --- stationary points of r(t) = ln(F(eᵗ)/eᵗ), which separate the fixed points ----------------------


def h(act: Activation, q: float | Array) -> Array:
    """h(q) = q·V'(q) − V(q), the numerator of dr/dt: r'(t) = (s·h(q) − σ_b²)/F(q), t = ln q.

    r(t) = ln(F(q)/q) is stationary exactly where s·h(q) = σ_b², and h'(q) = q·V''(q), so h is
    monotone between the inflection points of V, which depend on φ alone.
    """
    q = np.asarray(q, dtype=float)
    return q * dV(act, q) - V(act, q)


def _h_error(act: Activation, q: Array, dv: Array, v: Array) -> Array:
    # V and V' each to a few V_RTOL; the subtraction keeps their absolute errors.
    return 4 * V_RTOL * (q * np.abs(dv) + np.abs(v))


@functools.lru_cache(maxsize=64)
def _h_table(act: Activation) -> tuple[Array, Array, Array]:
    """Nodes t = ln q between which h is monotone: the fine grid plus h's extrema, refined.

    An extremum of h is a sign change between resolved consecutive differences of h on the fine grid
    (a difference counts where it exceeds the sum of the two error bounds); it is refined by a
    bounded Brent search on ±h and inserted, so that h at the nodes brackets every root of
    s·h = σ_b² on the piece between them. A pair of extrema closer than 1/100 decade would be missed.

    Returns
    -------
    t, h_nodes, err : arrays of the same length
    """
    t = _T_FINE
    q = np.exp(t)
    v, dv = V(act, q), dV(act, q)
    hv = q * dv - v
    err = _h_error(act, q, dv, v)
    diff = np.diff(hv)
    dsign = np.where(diff > err[:-1] + err[1:], 1, np.where(diff < -(err[:-1] + err[1:]), -1, 0))
    resolved = np.flatnonzero(dsign)
    turns = np.flatnonzero(dsign[resolved[:-1]] != dsign[resolved[1:]])
    extra_t = []
    for k in turns:
        i, j = resolved[k], resolved[k + 1]  # h rises (or falls) on [t_i, t_i+1], the reverse on [t_j, t_j+1]
        sgn = float(dsign[i])  # +1: a maximum inside
        from scipy import optimize  # imported on first use: 0.3 s of start-up (issue 17)
        res = optimize.minimize_scalar(lambda x: -sgn * float(h(act, math.exp(x))), bounds=(t[i], t[j + 1]),
                                       method="bounded", options=dict(xatol=1e-12))
        extra_t.append(float(res.x))
    if extra_t:
        t = np.concatenate([t, extra_t])
        t.sort()
        q = np.exp(t)
        v, dv = V(act, q), dV(act, q)
        hv = q * dv - v
        err = _h_error(act, q, dv, v)
    return t, hv, err


def _stationary_points(act: Activation, s: Array, sigma_b2: float) -> tuple[Array, Array]:
    """Every stationary point of r(t) = ln(F(eᵗ)/eᵗ) in q ∈ [1e-14, 1e14], for each s (vectorised).

    They are the roots of s·h(q) = σ_b² (see :func:`h`); h is monotone between the nodes of
    :func:`_h_table`, so each sign change of s·h − σ_b² between resolved nodes is one root, refined by
    regula falsi in t. Spurious ones (rounding noise where r' ≈ 0) only split a monotone piece of r in
    two, which is harmless for bracketing the fixed points.

    Returns
    -------
    which : int array
        Index into ``s`` of each stationary point.
    q : array
        Its location, in increasing q for each ``which``.
    """
    s = np.atleast_1d(np.asarray(s, dtype=float))
    t, hv, err = _h_table(act)
    with np.errstate(over="ignore", invalid="ignore"):  # a huge σ_w²·N: d and e overflow, sign 0 there
        d = s[:, None] * hv[None, :] - sigma_b2
        e = s[:, None] * err[None, :] + 4 * np.finfo(float).eps * (np.abs(s[:, None] * hv[None, :]) + sigma_b2)
    sign = np.where(d > e, 1, np.where(d < -e, -1, 0))
    rows, cols = np.nonzero(sign)  # row-major: by s, then by t
    pair = (rows[:-1] == rows[1:]) & (sign[rows[:-1], cols[:-1]] != sign[rows[1:], cols[1:]])
    which, lo, hi = rows[:-1][pair], cols[:-1][pair], cols[1:][pair]
    if which.size == 0:
        return which, np.empty(0)
    t_stat = _illinois(lambda x, idx: s[which[idx]] * h(act, np.exp(x)) - sigma_b2, t[lo], t[hi], xtol=1e-13)
    return which, np.exp(t_stat)


def _roots_and_saddles(act: Activation, s: float, sigma_b2: float, sign: Array) -> tuple[Array, list[float]]:
    """Finite roots of r (simple) and saddle-nodes (double), from the grid signs and r's stationary points.

    Between consecutive resolved grid points the stationary points of r cut the cell into monotone
    pieces, each holding at most one root; a root is bracketed by consecutive resolved ends of
    opposite sign. A pair of fixed points inside one cell therefore shows as the sign of r at the
    stationary point between them, whatever the grid. Where the cell holds one root (or none) as
    the grid alone says, the grid's bracket is kept, so its refined value is unchanged. An
    unresolved stationary point (|r| within rounding) between resolved ends of one sign is a
    saddle-node: F touches the diagonal there.
    """
    decided = np.flatnonzero(sign != 0)
    _, q_st = _stationary_points(act, np.array([s]), sigma_b2)
    sign_st = _resolved_sign(act, q_st, np.float64(s), sigma_b2) if q_st.size else np.empty(0, int)
    lo_q, hi_q, saddles = [], [], []
    for a, b in zip(decided[:-1], decided[1:]):
        qa, qb = _Q_GRID[a], _Q_GRID[b]
        if sign[a] != sign[b]:
            grid_lo, grid_hi = [qa], [qb]
        else:
            grid_lo, grid_hi = [], []
        inside = np.flatnonzero((q_st > qa) & (q_st < qb))
        if inside.size == 0:
            lo_q += grid_lo
            hi_q += grid_hi
            continue
        seq_q = [qa, *q_st[inside], qb]
        seq_s = [int(sign[a]), *(int(x) for x in sign_st[inside]), int(sign[b])]
        sub_lo, sub_hi, sub_saddle = [], [], []
        prev = 0  # index of the last resolved element
        best = None  # unresolved stationary point since it with the smallest |r|
        for k in range(1, len(seq_q)):
            if seq_s[k] == 0:
                r_k = abs(float(_log_ratio(act, np.array([seq_q[k]]), np.float64(s), sigma_b2)[0]))
                if best is None or r_k < best[1]:
                    best = (seq_q[k], r_k)
                continue
            if seq_s[k] != seq_s[prev]:
                sub_lo.append(seq_q[prev])
                sub_hi.append(seq_q[k])
            elif best is not None:
                sub_saddle.append(best[0])
            prev, best = k, None
        if len(sub_lo) == len(grid_lo) and not sub_saddle:
            lo_q += grid_lo
            hi_q += grid_hi
        else:
            lo_q += sub_lo
            hi_q += sub_hi
            saddles += sub_saddle
    n = len(lo_q)
    roots = _refine(act, np.array(lo_q, dtype=float), np.array(hi_q, dtype=float), np.full(n, float(s)), sigma_b2)
    return roots, saddles


def fixed_points(act: Activation, s: float, sigma_b2: float) -> tuple[FixedPoint, ...]:
    """All fixed points of q ↦ F(q) = s·V(q) + σ_b², with their stability, in increasing q.

    Finite fixed points are the roots of r(t) = ln(F(q)/q), t = ln q, in q ∈ [1e-14, 1e14]. Method
    (the one that cannot skip a pair): first every stationary point of r, the roots of
    s·h(q) = σ_b² with h = q·V' − V (:func:`h`; h is monotone between V's inflection points, found
    once per activation); r is monotone between consecutive stationary points, so each piece holds
    at most one root, bracketed by the signs of r at its ends (the stationary points and a grid of 10
    points per decade) and refined to rounding by regula falsi. Two fixed points, however close,
    have a stationary point between them where r has the other sign, so both are found. A sign
    counts only where |r| exceeds its error bound (V_RTOL relative in V plus a few ulps, see
    :func:`_log_ratio_error`): every finite point listed is genuine, |F(q*) - q*| ≲ 1e-14·q*. A
    stationary point where |r| is within that bound between ends of one sign is a tangency, listed
    once with ``saddle_node`` True (slope 1 to rounding; it attracts from one side only, so
    ``stable`` is False). What can still be missed: two stationary points of r within 1/100 decade
    that straddle a root pair (a cusp, where three fixed points merge). Listed besides:

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
    roots, saddles = _roots_and_saddles(act, float(s), sigma_b2, sign)
    finite = [(float(q), False) for q in roots] + [(float(q), True) for q in saddles]
    finite.sort()
    if finite:
        qs = np.array([q for q, _ in finite])
        slopes = s * dV(act, qs)
        chis = s * G(act, qs)
        points += [FixedPoint(q, float(k), bool(k < 1) and not sn, float(c), saddle_node=sn)
                   for (q, sn), k, c in zip(finite, slopes, chis)]
    chi_inf = s * lim.g_inf  # = lim F(q)/q, so r(∞) = ln χ_inf
    if _marginal_at_inf(s, lim):
        last = int(sign[decided[-1]]) if decided.size else 0
        points.append(FixedPoint(math.inf, chi_inf, last > 0, chi_inf, marginal=True))
    elif chi_inf > 1:
        points.append(FixedPoint(math.inf, chi_inf, True, chi_inf))
    return tuple(points)


@dataclass(frozen=True)
class SaddleNode:
    """A σ_w²·N where two fixed points of the q-map merge and vanish (F touches the diagonal)."""

    sigma_w2_n: float  # s at the saddle-node, 1/V'(q)
    q: float  # the double fixed point
    pair_below: bool  # True: the stable/unstable pair exists for σ_w²·N just below, False: just above
    chi1: float  # s·G(q) at the double point


def saddle_nodes(act: Activation, sigma_b2: float) -> tuple[SaddleNode, ...]:
    """Every saddle-node of q ↦ s·V(q) + σ_b² for this σ_b², over q ∈ [1e-14, 1e14], in increasing q.

    F(q) = q and F'(q) = s·V'(q) = 1 together give the parametric curve s = 1/V'(q),
    σ_b² = q − V(q)/V'(q) = h(q)/V'(q). Since d/dq [h/V'] = V·V''/V'², h/V' is monotone where h is,
    between the nodes of :func:`_h_table`, so each sign change of h/V' − σ_b² there is one
    saddle-node, refined by regula falsi in ln q. At it r(t) = ln(F/q) has a double root; ∂r/∂s = V/F
    > 0 raises r with s, so where r has a minimum there (r'' > 0, the pair lives where r dips below
    0) the pair exists below the saddle-node's s, and above it where r has a maximum.

    Positively homogeneous φ have none (F is affine).

    Parameters
    ----------
    act : Activation
    sigma_b2 : float
        σ_b².

    Returns
    -------
    tuple of SaddleNode
    """
    if act.homogeneous:
        return ()
    t, hv, err = _h_table(act)
    q = np.exp(t)
    dv = dV(act, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = hv / dv - sigma_b2
        k_err = err / np.abs(dv) + 4 * V_RTOL * np.abs(hv / dv) + 4 * np.finfo(float).eps * sigma_b2
    ok = np.isfinite(k) & (dv > 0)
    # only resolved signs count: for σ_b² = 0 and φ ~ linear at ∞ (gelu) h/V' sinks into rounding for large q
    sign = np.where(ok & (k > k_err), 1, np.where(ok & (k < -k_err), -1, 0))
    idx = np.flatnonzero(sign)
    flip = sign[idx[:-1]] != sign[idx[1:]]
    lo, hi = idx[:-1][flip], idx[1:][flip]
    exact: list[int] = []
    out = []
    if lo.size:
        def func(x, which):
            qx = np.exp(x)
            return h(act, qx) / dV(act, qx) - sigma_b2
        roots = list(np.exp(_illinois(func, t[lo], t[hi], xtol=1e-14)))
    else:
        roots = []
    for qs in sorted(roots + [float(q[i]) for i in exact]):
        s = 1.0 / float(dV(act, qs))
        # the curvature of r at the double root: r'' ∝ d/dt (s·h − σ_b²) = s·q·h'(q) = s·q²·V''(q)
        dt = 1e-4
        curv = float(h(act, qs * math.exp(dt)) - h(act, qs * math.exp(-dt)))
        out.append(SaddleNode(s, float(qs), curv > 0, s * float(G(act, qs))))
    return tuple(out)


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
    with np.errstate(over="ignore"):  # a huge s·q_in is q¹ = inf: a diverging start
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
    return _attractor_between(act, s, sigma_b2, q1, sign1, q_star)


def _attractor_between(act: Activation, s: Array, sigma_b2: float, q1: Array, sign1: Array, q_star: Array) -> Array:
    """Correct q* where the grid search walked past a pair of fixed points inside one grid cell.

    Such a pair (near a saddle-node) has a stationary point of r between its two roots at which r
    has the sign opposite to the direction of travel; the grid sees neither root. Where some
    stationary point between q¹ and the grid's q* has r ≤ 0 going up (≥ 0 going down), every fixed
    point is found by :func:`fixed_points` and q* is the first one met from q¹. Elsewhere q* is the
    grid's, bit for bit.
    """
    which, q_st = _stationary_points(act, s, sigma_b2)
    if which.size == 0:
        return q_star
    up, down = sign1[which] > 0, sign1[which] < 0
    between = np.where(up, (q_st > q1[which]) & (q_st < q_star[which]),
                       down & (q_st < q1[which]) & (q_st > q_star[which]))
    if not np.any(between):
        return q_star
    r = _log_ratio(act, q_st[between], s[which[between]], sigma_b2)
    err = _log_ratio_error(s[which[between]], V(act, q_st[between]), sigma_b2)
    wrong_way = np.where(up[between], r <= err, r >= -err)
    q_star = q_star.copy()
    for k in np.unique(which[between][wrong_way]):
        finite = [p.q for p in fixed_points(act, float(s[k]), sigma_b2) if 0 < p.q < math.inf]
        if sign1[k] > 0:
            met = [q for q in finite if q > q1[k]]
            new = min(met) if met else q_star[k]
        else:
            met = [q for q in finite if q < q1[k]]
            new = max(met) if met else q_star[k]
        if not math.isclose(new, q_star[k], rel_tol=1e-12):
            q_star[k] = new
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
        with np.errstate(over="ignore"):  # q¹ = inf for a huge s·q_in
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
