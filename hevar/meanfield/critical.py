"""Critical points: the σ_w²·N where χ₁ = s·G(q*) = 1 (constant width), and how it arises.

See :mod:`hevar.meanfield.theory` for the conventions.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from hevar.meanfield.activations import Activation
from hevar.meanfield.fixedpoints import _illinois, chi1_curve, fixed_points, phase, q_fixed_point, saddle_nodes
from hevar.meanfield.moments import V_RTOL, G, V, dV, limits

Array = np.ndarray

S_SCAN = np.geomspace(1e-2, 1e4, 181)  # σ_w²·N searched for χ₁ = 1 (30 points per decade)


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
        from scipy import optimize  # imported on first use: 0.3 s of start-up (issue 17)
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
    # A numerical φ' (user φ without a derivative) leaves χ₁ uncertain by δ ≈ 2·δφ'/|φ'(0)|, so the
    # O((s - s₀)²) approach places the root up to ~√δ from s₀: widen the tolerance to match.
    tol = max(1e-6, 10 * math.sqrt(2 * act.dphi_error / math.sqrt(lim.g0))) if lim.g0 > 0 else 1e-6
    if min(q_lo, q_hi) < 1e-6 and abs(s_root / s0 - 1) < tol:
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
    fold = [p for p in saddle_nodes(act, sigma_b2) if math.isclose(p.sigma_w2_n, s, rel_tol=1e-8)]
    if fold:
        why = (f"where the fixed point reached merges with an unstable one and both vanish (a saddle-node at "
               f"q = {fold[0].q:.6g})")
    else:
        why = f"where q¹ = {_fmt(s * q_in + sigma_b2)} crosses into another basin"
    text = (f"χ₁ jumps from {chi_lo:.4g} (q* = {_fmt(q_lo)}) to {chi_hi:.4g} (q* = {_fmt(q_hi)}) at "
            f"σ_w²·N = {s:.6g}, {why}; "
            f"no σ_w²·N gives χ₁ = 1 at the fixed point reached from q_in = {q_in:g}.")
    notes = []
    if sigma_b2 == 0 and lim.phi0 == 0 and lim.g0 > 0:
        notes.append(f"q* = 0 becomes marginal at σ_w²·N = 1/G(0⁺) = {1 / lim.g0:.6g}")
    if lim.g_inf > 0:
        notes.append(f"q* = ∞ at σ_w²·N = 1/G(∞) = {1 / lim.g_inf:.6g}")
    unstable = [p for p in fixed_points(act, s, sigma_b2) if 0 < p.q < math.inf and not p.stable and not fold]
    if unstable:
        notes.append("unstable fixed point(s) there: "
                     + ", ".join(f"q = {p.q:.4g} (χ₁ = {p.chi1:.4g})" for p in unstable))
    return text + (" (" + "; ".join(notes) + ".)" if notes else "")


# --- the whole critical line: every fixed point with χ₁ = 1, stable or not -------------------------

_Q_LINE = np.geomspace(1e-8, 1e8, 1601)  # q* scanned along the critical line (100 points per decade)


@dataclass(frozen=True)
class CriticalPoint:
    """A point of the critical line: a fixed point q* of q ↦ s·V(q) + σ_b² at which χ₁ = s·G(q*) = 1."""

    sigma_b2: float  # σ_b² = q* − V(q*)/G(q*)
    sigma_w2_n: float  # s = 1/G(q*)
    q_star: float  # the fixed point
    slope: float  # the q-map's slope there, s·V'(q*) = V'(q*)/G(q*): < 1 stable, > 1 unstable
    stable: bool  # slope < 1: a network can settle there (from q¹ in its basin)


def critical_line(act: Activation, q: Array | None = None) -> dict[str, Array]:
    """The critical line χ₁ = 1 traced by its fixed point q*, stable and unstable branches together.

    At a fixed point q* = s·V(q*) + σ_b², χ₁ = s·G(q*) = 1 fixes s = 1/G(q*) and then
    σ_b² = q* − V(q*)/G(q*): one point of the (σ_w²·N, σ_b²) plane per q*, with the q-map's slope
    s·V'(q*) = V'(q*)/G(q*) telling the stable branch (< 1) from the unstable one (> 1). Only
    σ_b² ≥ 0 is kept. For odd φ the line starts at (1/G(0), 0) as q* → 0 (tanh, erf); for φ growing
    linearly it tends to s = 1/G(∞) as q* → ∞. Positively homogeneous φ have the vertical line
    s = 1/G(1), on which every q* is a fixed point only at σ_b² = 0 (here: empty arrays).

    Parameters
    ----------
    act : Activation
    q : array, optional
        q* values to trace (default: 100 per decade on [1e-8, 1e8]).

    Returns
    -------
    dict of arrays ``q_star``, ``sigma_b2``, ``sigma_w2_n``, ``slope``, ``stable`` (bool), same length
    """
    if act.homogeneous:
        empty = np.empty(0)
        return dict(q_star=empty, sigma_b2=empty, sigma_w2_n=empty, slope=empty, stable=empty.astype(bool))
    q = _Q_LINE if q is None else np.asarray(q, dtype=float)
    v, g, dv = V(act, q), G(act, q), dV(act, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        b2, s, slope = q - v / g, 1.0 / g, dv / g
    keep = np.isfinite(b2) & np.isfinite(s) & (b2 >= 0)
    return dict(q_star=q[keep], sigma_b2=b2[keep], sigma_w2_n=s[keep], slope=slope[keep], stable=slope[keep] < 1)


def critical_points(act: Activation, sigma_b2: float) -> tuple[CriticalPoint, ...]:
    """Every fixed point with χ₁ = 1 at this σ_b², in increasing q*, with its stability.

    The roots in q of k(q) = q − V(q)/G(q) − σ_b² (see :func:`critical_line`): sign changes of k,
    resolved beyond its rounding error, on 100 points per decade of q ∈ [1e-8, 1e8], refined by
    regula falsi in ln q. Unlike :func:`critical_sigma_w2_n`, which follows the fixed point a network
    reaches, this lists unstable ones too (gelu, silu, mish with a bias: q¹ is pushed away from them).
    The ends of the line (q* → 0 for σ_b² = 0 and odd φ, q* → ∞) are limits, not listed.

    Parameters
    ----------
    act : Activation
    sigma_b2 : float
        σ_b² ≥ 0.

    Returns
    -------
    tuple of CriticalPoint
    """
    if act.homogeneous:
        return ()
    q = _Q_LINE
    v, g = V(act, q), G(act, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = q - v / g - sigma_b2
        err = 8 * V_RTOL * np.abs(v / g) + 4 * np.finfo(float).eps * (q + sigma_b2)
    sign = np.where(k > err, 1, np.where(k < -err, -1, 0))
    idx = np.flatnonzero(sign)
    flip = sign[idx[:-1]] != sign[idx[1:]]
    lo, hi = idx[:-1][flip], idx[1:][flip]
    if lo.size == 0:
        return ()

    def func(t, which):
        qt = np.exp(t)
        return qt - V(act, qt) / G(act, qt) - sigma_b2

    roots = np.exp(_illinois(func, np.log(q[lo]), np.log(q[hi]), xtol=1e-15))
    g_r, dv_r = G(act, roots), dV(act, roots)
    return tuple(CriticalPoint(float(sigma_b2), float(1 / gr), float(r), float(d / gr), bool(d / gr < 1))
                 for r, gr, d in zip(roots, g_r, dv_r))


# --- the doubly critical point: χ₁ = 1 and q-map slope 1 together --------------------------------


@dataclass(frozen=True)
class DoublyCritical:
    """(σ_w²·N, σ_b²) where χ₁ = s·G(q*) = 1 and the q-map slope s·V'(q*) = 1 at one fixed point."""

    sigma_w2_n: float  # 1/G(q*) = 1/V'(q*)
    sigma_b2: float  # q* − V(q*)/G(q*)
    q_star: float  # the fixed point, where V'(q*) = G(q*)


def doubly_critical(act: Activation) -> tuple[DoublyCritical, ...]:
    """Every point where χ₁ = 1 and F'(q*) = 1 together, with σ_b² ≥ 0 (Roberts, Yaida & Hanin's χ∥ = χ⊥ = 1).

    F'(q*) = s·V'(q*) = 1 and χ₁ = s·G(q*) = 1 give V'(q*) = G(q*), i.e. E[φ(z)φ''(z)] = 0 at
    z ~ N(0, q*) (the heat equation gives V' = E[φ'² + φφ'']), then s = 1/G(q*) and
    σ_b² = q* − V(q*)/G(q*). It is where the critical line meets the saddle-node line: the critical
    fixed point is double there, and both the variance q and the gradients are marginal, so their
    drift over the depth is slowest (power laws instead of exponentials). The roots of V' − G are
    bracketed on 100 points per decade of q ∈ [1e-8, 1e8] (signs resolved beyond rounding) and
    refined by regula falsi; points with σ_b² < 0 are dropped. gelu and silu have one with σ_b² > 0;
    tanh (V' < G for every q > 0) and positively homogeneous φ (V' = G everywhere: degenerate, not
    listed) have none.

    Returns
    -------
    tuple of DoublyCritical, in increasing q*
    """
    if act.homogeneous:
        return ()
    q = _Q_LINE
    g, dv = G(act, q), dV(act, q)
    m = dv - g
    err = 8 * V_RTOL * (np.abs(dv) + np.abs(g))
    sign = np.where(m > err, 1, np.where(m < -err, -1, 0))
    idx = np.flatnonzero(sign)
    flip = sign[idx[:-1]] != sign[idx[1:]]
    lo, hi = idx[:-1][flip], idx[1:][flip]
    if lo.size == 0:
        return ()
    roots = np.exp(_illinois(lambda t, w: dV(act, np.exp(t)) - G(act, np.exp(t)), np.log(q[lo]), np.log(q[hi]),
                             xtol=1e-15))
    out = []
    for r in roots:
        gr = float(G(act, r))
        b2 = float(r - V(act, r) / gr)
        if b2 >= 0:
            out.append(DoublyCritical(1.0 / gr, b2, float(r)))
    return tuple(out)


CRITICAL_LINE_COLUMNS = ("activation", "sigma_b2", "sigma_w2_n", "gain", "q_star", "slope", "branch")
DEFAULT_LINE_SIGMA_B2 = tuple(round(0.05 * k, 2) for k in range(21))  # σ_b² = 0, 0.05, …, 1


def critical_line_rows(act: Activation, sigma_b2_values=DEFAULT_LINE_SIGMA_B2) -> list[dict]:
    """Tidy rows of the critical line over σ_b² values: one per critical point (see :func:`critical_points`).

    Columns :data:`CRITICAL_LINE_COLUMNS`: ``gain`` = √(σ_w²·N), ``slope`` the q-map's slope
    s·V'(q*), ``branch`` "stable" or "unstable". Besides the finite points, the ends of the line
    are rows of their own where they apply at that σ_b²: q* = 0 with σ_w²·N = 1/G(0⁺) (σ_b² = 0,
    φ(0) = 0, slope G(0⁺)/G(0⁺) = 1 to first order, branch "q*->0") and q* = ∞ with σ_w²·N = 1/G(∞)
    (branch "q*->inf"); a homogeneous φ gives one row, σ_w²·N = 1/G(1), branch "homogeneous".
    """
    rows = []
    lim = limits(act)
    for b in sigma_b2_values:
        b = float(b)
        if act.homogeneous:
            s = 1.0 / float(G(act, 1.0))
            rows.append(dict(activation=act.name, sigma_b2=b, sigma_w2_n=s, gain=math.sqrt(s),
                             q_star=math.nan if b == 0 else math.inf, slope=float(V(act, 1.0)) * s,
                             branch="homogeneous"))
            continue
        if b == 0 and lim.phi0 == 0 and lim.g0 > 0:
            s0 = 1.0 / lim.g0
            rows.append(dict(activation=act.name, sigma_b2=b, sigma_w2_n=s0, gain=math.sqrt(s0), q_star=0.0,
                             slope=1.0, branch="q*->0"))
        for p in critical_points(act, b):
            rows.append(dict(activation=act.name, sigma_b2=b, sigma_w2_n=p.sigma_w2_n, gain=math.sqrt(p.sigma_w2_n),
                             q_star=p.q_star, slope=p.slope, branch="stable" if p.stable else "unstable"))
        if lim.g_inf > 0 and math.isfinite(lim.g_inf):
            s_inf = 1.0 / lim.g_inf
            rows.append(dict(activation=act.name, sigma_b2=b, sigma_w2_n=s_inf, gain=math.sqrt(s_inf),
                             q_star=math.inf, slope=1.0, branch="q*->inf"))
    return rows
