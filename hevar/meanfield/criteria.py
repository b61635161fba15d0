"""Three gain criteria side by side, and a σ_w²·N for every activation, σ_b² and depth.

Users and framework tables mix three different answers to "which gain?"; at constant width N,
with s = σ_w²·N and u ~ N(0, 1):

(a) **second-moment preserving** (He et al. 2015's forward argument): s = 1/E[φ(u)²] = 1/V(1), so
    that a pre-activation of variance 1 produces the next one with variance 1 (σ_b² = 0). relu: 2.
(b) **variance preserving** (NF-Nets, Brock et al. 2021): scale φ by γ = 1/std φ(u) so that the
    post-activation *variance* is 1; with standardised weights this is s = γ² = 1/Var φ(u). The
    published table (deepmind-research/nfnets, copied by timm's ``_nonlin_gamma``) is a Monte-Carlo
    estimate: relu's 1.7139588594436646 against the exact 1/√(1/2 − 1/(2π)) = 1.7128585, 0.06 %
    high; the others are 0.03–0.09 % high as well. hevar gives the exact value by quadrature.
(c) **critical**: χ₁ = s·G(q*) = 1 at the fixed point q* (Schoenholz et al. 2017), with the
    fixed point's stability (the q-map slope s·V'(q*) < 1). Where the fixed point reached from the
    input has no such s (gelu, silu, mish: χ₁ jumps across 1), the first point of the critical line
    at this σ_b² is given, marked unstable.

None of them says how the gradient behaves over a *finite* depth L along the actual trajectory;
:func:`depth_gain` does: the s that keeps q̃¹/q̃ᴸ closest to 1 over L layers (the gains table's
"hevar, for depth L" row), with the band of s keeping it within a factor 2 and the forward drift
qᴸ/q¹ there. It answers also where (c) has no stable solution or sits at q* → 0 or ∞ (tanh and
erf at σ_b² = 0, gelu/silu/mish, softplus, selu).

Each criterion gets the gains table's verdict (q̃¹/q̃ᴸ over the depth against [1/2, 2]) and the
post-activation statistics at the fixed point it reaches, which users compare with forum
measurements: E[φ(z)], Var φ(z) and the RMS √E[φ(z)²] = √((q* − σ_b²)/s) for z ~ N(0, q*).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from hevar.meanfield import critical, fixedpoints, gaussian, theory
from hevar.meanfield.activations import Activation
from hevar.meanfield.moments import V

# γ of deepmind-research/nfnets (base.py ``nonlinearities``), Monte-Carlo estimates, by hevar spec
NFNET_GAMMA = {
    "relu": 1.7139588594436646, "gelu": 1.7015043497085571, "silu": 1.7881293296813965,
    "tanh": 1.5939117670059204, "sigmoid": 4.803835391998291, "elu:1": 1.2716004848480225,
    "selu": 1.0008515119552612, "softplus": 1.9203323125839233, "leaky_relu:0.01": 1.70590341091156,
    "linear": 1.0,
}
STABLE_LOG = math.log(2.0)  # |ln q̃¹/q̃ᴸ| within this: the gains table's band [1/2, 2]
_S_GRID = np.geomspace(0.01, 1000.0, 201)  # σ_w²·N scanned by depth_gain (40 per decade)


def mean(act: Activation, q: float) -> float:
    """E[φ(√q u)], u ~ N(0, 1), by hevar's composite Gauss–Legendre rule (split at the kinks)."""
    return float(gaussian.expect(act.phi, np.array([float(q)]), act.kinks)[0])


@dataclass(frozen=True)
class PostActivation:
    """Statistics of φ(z), z ~ N(0, q*), at the fixed point reached."""

    q_star: float  # the fixed point reached from q_in
    mean: float  # E[φ(z)]
    var: float  # Var φ(z)
    rms: float  # √E[φ(z)²] = √((q* − σ_b²)/σ_w²N), the post-activation std users measure (≈ std if mean ≈ 0)


def post_activation(act: Activation, s: float, sigma_b2: float, q_in: float = 1.0) -> PostActivation:
    """:class:`PostActivation` at the fixed point reached from q_in (nan where q* is 0 or ∞)."""
    q_star = fixedpoints.q_fixed_point(act, s, sigma_b2, q_in)
    if not (0 < q_star < math.inf):
        return PostActivation(q_star, math.nan, math.nan, math.nan)
    m2 = float(V(act, q_star))
    m1 = mean(act, q_star)
    if abs(m1) <= 1e-13 * math.sqrt(m2):  # quadrature rounding of an odd φ's zero mean
        m1 = 0.0
    return PostActivation(q_star, m1, m2 - m1 * m1, math.sqrt(m2))


@dataclass(frozen=True)
class Criterion:
    """One criterion's σ_w²·N for one activation, with what the theory says happens there."""

    key: str  # "second_moment", "variance", "critical" or "depth"
    label: str  # a few words for a table
    sigma_w2_n: float  # s (nan when the criterion has no answer)
    gain: float  # √s, the std in units of 1/√N
    chi1: float  # s·G(q*) at the fixed point reached from q_in
    fixed_point_stable: bool | None  # critical: is the χ₁ = 1 fixed point stable (slope < 1); else None
    log10_factor: float  # log₁₀ q̃¹/q̃ᴸ over the depth
    verdict: str  # "vanishing" / "stable" / "exploding" (the gains table's rule), "" without an answer
    post: PostActivation  # at the fixed point reached
    note: str  # where the number comes from


def _criterion(act: Activation, key: str, label: str, s: float, sigma_b2: float, depth: int, q_in: float,
               stable: bool | None, note: str) -> Criterion:
    from hevar.meanfield import gains  # the gains table's verdict rule (gains imports this module)

    if not (math.isfinite(s) and s > 0):
        return Criterion(key, label, math.nan, math.nan, math.nan, stable, math.nan, "",
                         PostActivation(math.nan, math.nan, math.nan, math.nan), note)
    log_f = gains.log_gradient_factor(act, s, sigma_b2, depth, q_in)
    return Criterion(key, label, float(s), math.sqrt(s), fixedpoints.chi1(act, s, sigma_b2, q_in), stable,
                     log_f / math.log(10), gains.verdict(log_f), post_activation(act, s, sigma_b2, q_in), note)


def second_moment_gain(act: Activation) -> float:
    """(a) s = 1/E[φ(u)²] = 1/V(1)."""
    return 1.0 / float(V(act, 1.0))


def variance_gain(act: Activation) -> tuple[float, float]:
    """(b) γ = 1/std φ(u) exactly (quadrature), and s = γ²; returns (γ, s)."""
    m1 = mean(act, 1.0)
    var = float(V(act, 1.0)) - m1 * m1
    return 1.0 / math.sqrt(var), 1.0 / var


def criteria(act: Activation, sigma_b2: float = 0.0, depth: int = 50, q_in: float = 1.0,
             with_depth: bool = True) -> tuple[Criterion, ...]:
    """The three criteria (a), (b), (c) and (with ``with_depth``) the depth recommendation, in that order.

    Parameters
    ----------
    act : Activation
    sigma_b2 : float
        σ_b² used for the verdicts, χ₁ and the critical value ((a) and (b) do not depend on it).
    depth : int
        L of the gradient factor q̃¹/q̃ᴸ.
    q_in : float
        The input's second moment.

    Returns
    -------
    tuple of Criterion
    """
    s_a = second_moment_gain(act)
    gamma, s_b = variance_gain(act)
    published = NFNET_GAMMA.get(act.name)
    note_b = f"γ = 1/std φ(u) = {gamma:.7g} (exact, quadrature)"
    if published is not None:
        note_b += f"; NF-Nets' Monte-Carlo {published:.7g} is {100 * (published / gamma - 1):+.3f} %"
    out = [
        _criterion(act, "second_moment", "second moment (He)", s_a, sigma_b2, depth, q_in, None,
                   f"1/E[φ(u)²] = 1/{float(V(act, 1.0)):.6g}: q stays 1 from a unit pre-activation (σ_b² = 0)"),
        _criterion(act, "variance", "variance (NF-Net γ²)", s_b, sigma_b2, depth, q_in, None, note_b),
    ]
    crit = critical.critical_sigma_w2_n(act, float(sigma_b2), float(q_in))
    if math.isfinite(crit.sigma_w2_n):
        if crit.kind == "finite q*":
            slope = crit.sigma_w2_n * float(theory.dV(act, crit.q_star))
            stable, where = bool(slope < 1), f"q* = {crit.q_star:.4g}, slope {slope:.4g}"
        else:
            stable, where = (None if crit.kind == "homogeneous" else True), crit.kind
        out.append(_criterion(act, "critical", "critical (χ₁ = 1)", crit.sigma_w2_n, sigma_b2, depth, q_in, stable,
                              f"χ₁ = 1 at the fixed point reached ({where})"))
    else:
        points = critical.critical_points(act, float(sigma_b2))
        if points:
            p = points[0]
            out.append(_criterion(act, "critical", "critical (χ₁ = 1)", p.sigma_w2_n, sigma_b2, depth, q_in, p.stable,
                                  f"χ₁ = 1 only at an {'stable' if p.stable else 'unstable'} fixed point q* = "
                                  f"{p.q_star:.4g} (slope {p.slope:.4g}); a network started at q_in = {q_in:g} "
                                  "does not settle there"))
        else:
            out.append(_criterion(act, "critical", "critical (χ₁ = 1)", math.nan, sigma_b2, depth, q_in, None,
                                  f"no fixed point with χ₁ = 1 at σ_b² = {sigma_b2:g} ({crit.kind})"))
    if not with_depth:
        return tuple(out)
    rec = depth_gain(act, sigma_b2, depth, q_in)
    out.append(_criterion(act, "depth", f"for depth {depth}", rec.sigma_w2_n, sigma_b2, depth, q_in, None, rec.note))
    return tuple(out)


# --- a σ_w²·N for every depth -------------------------------------------------------------------------


@dataclass(frozen=True)
class DepthGain:
    """The σ_w²·N that keeps q̃¹/q̃ᴸ closest to 1 over L layers, with its band and forward drift."""

    sigma_w2_n: float  # argmin over s of |ln q̃¹/q̃ᴸ| (a root where the factor crosses 1)
    log10_factor: float  # log₁₀ q̃¹/q̃ᴸ there (0 at a root)
    band_lo: float  # the interval of s around it with q̃¹/q̃ᴸ in [1/2, 2] (nan when there is none)
    band_hi: float
    log10_q_drift: float  # log₁₀ qᴸ/q¹ at that s: how far the forward pass moves meanwhile
    note: str


def _log_factor(act: Activation, s: float, sigma_b2: float, depth: int, q_in: float) -> float:
    from hevar.meanfield import gains

    return gains.log_gradient_factor(act, float(s), sigma_b2, depth, q_in)


@functools.lru_cache(maxsize=256)
def depth_gain(act: Activation, sigma_b2: float = 0.0, depth: int = 50, q_in: float = 1.0) -> DepthGain:
    """σ_w²·N for a network of ``depth`` layers: q̃¹/q̃ᴸ along the mean-field trajectory closest to 1.

    ln(q̃¹/q̃ᴸ) = Σ_{l<L} ln(s·G(qˡ)) with qˡ from the input (see
    :func:`hevar.meanfield.gains.log_gradient_factor`) is a continuous function of s at any finite
    depth, even where χ₁ jumps (there qˡ lingers by an unstable fixed point for a number of layers
    that grows as s approaches the basin boundary), so it equals 0 wherever it changes sign. It is
    tabulated on 40 values of s per decade over [0.01, 1000]; every sign change is refined by
    Brent's method, and of these roots the one with the widest band — the interval of s around it
    with q̃¹/q̃ᴸ in [1/2, 2] — is taken (the most robust choice; ties go to the one nearest the
    critical value). Without a sign change, the grid's minimum of |ln q̃¹/q̃ᴸ|. A band narrower than
    2 % sits on a basin boundary of the q-map, where finite width moves the answer: the note says so.
    At L = 1 every s gives 1: s = 1/V(1).
    """
    if depth <= 1:
        s = second_moment_gain(act)
        return DepthGain(s, 0.0, math.nan, math.nan, 0.0, "one layer: no gradient factor; the second-moment value")
    f = lambda s: _log_factor(act, s, sigma_b2, depth, q_in)  # noqa: E731
    logs = _log_factor_grid(act, sigma_b2, depth, q_in)
    finite = np.isfinite(logs)
    roots = [float(_S_GRID[i]) for i in np.flatnonzero(logs == 0)]
    for i in np.flatnonzero(finite[:-1] & finite[1:] & (logs[:-1] * logs[1:] < 0)):
        a, b = float(_S_GRID[i]), float(_S_GRID[i + 1])
        if f(a) * f(b) < 0:  # the grid is a vectorised copy of f: check before trusting its bracket
            from scipy import optimize  # imported on first use: 0.3 s of start-up (issue 17)
            roots.append(optimize.brentq(f, a, b, xtol=1e-14, rtol=1e-13))
    crit = critical.critical_sigma_w2_n(act, float(sigma_b2), float(q_in)).sigma_w2_n
    target = crit if math.isfinite(crit) else 2.0
    if roots:
        bands = [(r, *_band(f, r, logs)) for r in roots]
        s_best, lo, hi = max(bands, key=lambda b: (math.log(b[2] / b[1]) if math.isfinite(b[1]) else -1.0,
                                                  -abs(math.log(b[0] / target))))
        how = "q̃¹/q̃ᴸ = 1"
    elif np.any(finite):
        k = int(np.argmin(np.where(finite, np.abs(logs), np.inf)))
        s_best, how = float(_S_GRID[k]), "q̃¹/q̃ᴸ closest to 1 (it never crosses 1)"
        lo, hi = _band(f, s_best, logs)
    else:
        return DepthGain(math.nan, math.nan, math.nan, math.nan, math.nan,
                         f"no σ_w²·N in [{_S_GRID[0]:g}, {_S_GRID[-1]:g}] gives a finite factor")
    log_best = f(s_best)
    log_q = theory.log_q_trajectory(act, np.full(int(depth), s_best), float(sigma_b2), q_in)
    drift = float((log_q[-1] - log_q[0]) / math.log(10))
    if math.isfinite(lo):
        note = f"{how} over L = {depth}; within a factor 2 for σ_w²·N in [{lo:.5g}, {hi:.5g}]"
        if hi / lo < 1.02:
            note += (f" — narrow ({100 * (hi / lo - 1):.2g} %): the factor is steep in σ_w²·N here (qˡ lingers by an "
                     "unstable fixed point, or drifts without settling), so finite width moves it; measure it")
    else:
        note = f"{how} over L = {depth}; no σ_w²·N keeps q̃¹/q̃ᴸ within a factor 2"
    note += f"; forward drift qᴸ/q¹ = {10 ** drift:.3g} there"
    return DepthGain(float(s_best), log_best / math.log(10), lo, hi, drift, note)


def _log_factor_grid(act: Activation, sigma_b2: float, depth: int, q_in: float) -> np.ndarray:
    """ln q̃¹/q̃ᴸ on ``_S_GRID``: the recursion of log_gradient_factor run for every s at once."""
    from hevar.meanfield import moments

    s = _S_GRID
    if act.homogeneous:
        with np.errstate(divide="ignore"):
            return (depth - 1) * np.log(s * float(moments.G(act, 1.0)))
    q = s * q_in + sigma_b2
    total = np.zeros(s.shape)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(depth - 1):
            total += np.log(s * moments.G(act, q))
            q = s * moments.V(act, q) + sigma_b2
            q = np.where(q < 1e300, q, np.inf)
    return total


def _band(f, s_best: float, logs: np.ndarray) -> tuple[float, float]:
    """The interval of s around s_best with |f(s)| ≤ ln 2: the grid walked out to its first point
    outside, then the end bisected in ln s (nan, nan when f(s_best) itself is outside)."""
    if not abs(f(s_best)) <= STABLE_LOG:
        return math.nan, math.nan
    i = int(np.searchsorted(_S_GRID, s_best))  # _S_GRID[i-1] < s_best ≤ _S_GRID[i]
    inside_grid = np.abs(logs) <= STABLE_LOG
    ends = []
    for direction in (-1, 1):
        j = i - 1 if direction < 0 else i
        inside = s_best
        while 0 <= j < len(_S_GRID) and inside_grid[j] and abs(f(_S_GRID[j])) <= STABLE_LOG:
            inside = float(_S_GRID[j])
            j += direction
        if not 0 <= j < len(_S_GRID):
            ends.append(inside)
            continue
        outside = float(_S_GRID[j])
        for _ in range(60):
            mid = math.sqrt(inside * outside)
            if abs(f(mid)) <= STABLE_LOG:
                inside = mid
            else:
                outside = mid
            if abs(math.log(outside / inside)) < 1e-7:
                break
        ends.append(inside)
    return ends[0], ends[1]
