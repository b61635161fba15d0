"""Where the measured χ̂ crosses 1 along a stability curve, with an interval that can be trusted.

A *curve* is every swept σ_w²·N of one (activation, depth, width profile, fan mode, distribution,
σ_b²); its rows in ``crossings.csv`` share the summary's ``curve_id``. Per curve this module finds
the σ_w²·N where χ̂ = 1 and says how sure that number is:

**Point estimate.** χ̂ − 1 is interpolated linearly between the two neighbouring grid points
(s_a, χ_a), (s_b, χ_b) whose signs differ, s* = s_a + (1 − χ_a)(s_b − s_a)/(χ_b − χ_a). With several
sign changes (noise around a flat χ̂) the one nearest the theory's own crossing is taken.

**Seed uncertainty.** A bootstrap over seeds: each replicate draws S seed indices with replacement
— the same indices at every σ_w²·N, because every grid point of a task runs on one shared draw of
the weights, so the points' errors are correlated and must be resampled together — recomputes χ̂
at every grid point exactly as the sweep does (the slope of ln of the seed-mean q̃ˡ over the fit
layers) and interpolates its crossing (the one nearest s*). The 2.5 and 97.5 percentiles of the
replicates bound the seed part of the 95 % interval. With one seed there is no seed uncertainty to
resample and the interval is the bracket. The generator is seeded from the sweep's seed and the
curve, so a rerun writes the same bytes.

**Interpolation error.** χ is not linear in σ_w²·N for every activation (it is for ReLU; tanh's χ₁
has a kink at 1). A second root follows the theory's shape: the root of chi_theory(s) + r(s) = 1,
r the linear interpolation of the measurement's residuals from ``chi_theory`` at the two bracket
ends (:func:`guided_root`). The seed interval is extended by the shift from s* to that root, on
its side. Where that root does not exist, the quadratic through the bracket and each available
neighbour gives the second root, and the larger distance to s* is added to both ends. When the
error exceeds a quarter of the bracket, or cannot be estimated, the grid cannot resolve the
crossing and the interval is the hull of the bracket [s_a, s_b] and the seed interval.

**Kind.** ``crossing``; ``jump`` when the theory's χ₁ (L → ∞; the finite-depth fit ``chi_theory``
where χ₁ does not apply) is discontinuous across 1 inside the bracket, or when χ̂ changes across
the bracket by more than the theory's change plus four combined standard errors — then no point
value is given (``sigma_w2_n_cross`` is empty) and the interval is the bracket; ``none in grid``
when χ̂ − 1 keeps one sign over the finite points.

``sigma_w2_n_cross_theory`` applies the same finite-depth fit to theory: the σ_w²·N where
``chi_theory`` crosses (or jumps across) 1, found by bisection on the theory itself.
"""

from __future__ import annotations

import math
import zlib
from typing import Callable, Sequence

import numpy as np

COLUMNS = (
    "curve_id", "activation", "depth", "width", "widths", "mode", "dist", "sigma_b2",
    "kind", "sigma_w2_n_cross", "sigma_w2_n_cross_lo", "sigma_w2_n_cross_hi", "bracket_lo", "bracket_hi",
    "sigma_w2_n_cross_theory", "sigma_w2_n_crit", "critical_kind", "n_seeds", "n_boot",
)
KINDS = ("crossing", "jump", "none in grid")
N_BOOT = 1000
LEVEL = 0.95
JUMP_GAP = 1e-3  # a theory step across 1 that bisection cannot shrink below this is a jump
JUMP_SE = 4.0  # χ̂ moving by more than the theory's change plus this many combined s.e. is a jump

ChiFn = Callable[[float], float]


def _slopes(layers: np.ndarray, log_values: np.ndarray) -> np.ndarray:
    """Least-squares slopes against ``layers`` along the last axis."""
    x = layers - layers.mean()
    centred = log_values - log_values.mean(axis=-1, keepdims=True)
    return centred @ x / np.dot(x, x)


def _log_mean(log_values: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(log_values, axis=axis, keepdims=True)
    return np.squeeze(np.log(np.mean(np.exp(log_values - top), axis=axis, keepdims=True)) + top, axis)


def bootstrap_chi(layers: np.ndarray, log_q_tilde: np.ndarray, n_boot: int, rng: np.random.Generator,
                  chunk: int = 4_000_000) -> np.ndarray:
    """χ̂ of ``n_boot`` seed-bootstrap replicates at every grid point, shape (n_boot, K).

    ``log_q_tilde`` has shape (K, S, F): grid points, seeds, fit layers. One set of resampled seed
    indices per replicate is shared by all K points (they share their weight draws).
    """
    K, S, F = log_q_tilde.shape
    idx = rng.integers(0, S, size=(n_boot, S))
    out = np.empty((n_boot, K))
    step = max(1, chunk // max(1, K * S * F))
    for start in range(0, n_boot, step):
        picked = log_q_tilde[:, idx[start:start + step], :]  # (K, b, S, F)
        out[start:start + step] = np.exp(-_slopes(layers, _log_mean(picked, axis=2))).T
    return out


def _brackets(s: np.ndarray, chi: np.ndarray) -> list[tuple[int, int, float]]:
    """(a, b, s*) for every neighbouring pair of finite points whose χ − 1 changes sign."""
    found = []
    for a in range(len(s) - 1):
        da, db = chi[a] - 1.0, chi[a + 1] - 1.0
        if not (np.isfinite(da) and np.isfinite(db)) or da * db > 0 or (da == 0 and db == 0):
            continue
        found.append((a, a + 1, float(s[a] + (1.0 - chi[a]) * (s[a + 1] - s[a]) / (chi[a + 1] - chi[a]))))
    return found


def _replicate_crossings(s: np.ndarray, chi: np.ndarray, near: float) -> np.ndarray:
    """Per replicate (rows of ``chi``) the interpolated crossing nearest ``near``; nan where none."""
    lo, hi = chi[:, :-1] - 1.0, chi[:, 1:] - 1.0
    flip = (lo * hi <= 0) & ~((lo == 0) & (hi == 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        value = s[:-1] + (1.0 - chi[:, :-1]) * np.diff(s) / (chi[:, 1:] - chi[:, :-1])
    value = np.where(flip & np.isfinite(value), value, np.nan)
    has = np.any(np.isfinite(value), axis=1)
    pick = np.argmin(np.where(np.isfinite(value), np.abs(value - near), np.inf), axis=1)
    return np.where(has, value[np.arange(len(value)), pick], np.nan)


def _quadratic_root(s3: np.ndarray, chi3: np.ndarray, lo: float, hi: float, near: float) -> float:
    """The root of χ − 1 of the parabola through three points, inside [lo, hi] (nearest ``near``)."""
    c2, c1, c0 = np.polyfit(s3, chi3 - 1.0, 2)
    roots = np.roots([c2, c1, c0]) if abs(c2) > 1e-14 else np.array([-c0 / c1])
    roots = [float(r.real) for r in np.atleast_1d(roots) if abs(r.imag) < 1e-12 and lo <= r.real <= hi]
    return min(roots, key=lambda r: abs(r - near)) if roots else math.nan


def _interpolation_error(s: np.ndarray, chi: np.ndarray, a: int, b: int, value: float) -> float:
    """max |quadratic root − linear root| over the third points available (inf when none)."""
    errors = []
    for third in (a - 1, b + 1):
        if 0 <= third < len(s) and np.isfinite(chi[third]):
            pts = sorted((a, b, third))
            root = _quadratic_root(s[pts], chi[pts], s[a], s[b], value)
            errors.append(abs(root - value) if math.isfinite(root) else math.inf)
    return max(errors) if errors else math.inf


def guided_root(f: ChiFn, lo: float, hi: float, r_lo: float, r_hi: float, iterations: int = 60) -> float:
    """The root in [lo, hi] of f(s) + r(s) − 1, where f is the theory and r interpolates the
    measurement's residuals r_lo, r_hi from it linearly: interpolation that follows the theory's
    shape (equal to the linear one where the theory is linear, as for ReLU). nan if there is none."""
    if not (math.isfinite(r_lo) and math.isfinite(r_hi)):
        return math.nan

    def g(s: float) -> float:
        return f(s) + r_lo + (r_hi - r_lo) * (s - lo) / (hi - lo) - 1.0

    g_lo, g_hi = g(lo), g(hi)
    if not (math.isfinite(g_lo) and math.isfinite(g_hi)) or g_lo * g_hi > 0:
        return math.nan
    return _root(g, lo, hi, g_lo)


def _root(g: ChiFn, lo: float, hi: float, g_lo: float) -> float:
    """A root of g on [lo, hi], where g changes sign (Brent's method; bisection if g is not finite
    inside, e.g. past an overflow)."""
    if g_lo == 0:
        return lo
    try:
        from scipy import optimize  # imported on first use: 0.3 s of start-up (issue 17)
        return float(optimize.brentq(g, lo, hi, xtol=1e-12, rtol=1e-12, maxiter=200))
    except (ValueError, RuntimeError):
        return math.nan


def discontinuous(f: ChiFn, lo: float, hi: float, gap: float = JUMP_GAP, iterations: int = 45) -> float | None:
    """Bisect f − 1 on [lo, hi]; the σ_w²·N of the crossing if f jumps across 1 there, else None.

    A continuous f leaves a step |f(b) − f(a)| that shrinks with the interval; a jump keeps it."""
    f_lo, f_hi = f(lo), f(hi)
    if not (math.isfinite(f_lo) and math.isfinite(f_hi)) or (f_lo - 1) * (f_hi - 1) > 0:
        return None
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        f_mid = f(mid)
        if not math.isfinite(f_mid):
            return None
        if (f_lo - 1) * (f_mid - 1) <= 0:
            hi, f_hi = mid, f_mid
        else:
            lo, f_lo = mid, f_mid
        if hi - lo <= 1e-11 * max(1.0, abs(hi)):
            break
    return 0.5 * (lo + hi) if abs(f_hi - f_lo) > gap else None


def theory_crossing(f: ChiFn, s: np.ndarray, chi_theory: np.ndarray, near: float) -> float:
    """The σ_w²·N where the finite-depth theory fit crosses (or jumps across) 1 in the swept range,
    the one nearest ``near``; nan if it keeps one sign on the grid."""
    found = []
    for a, b, _ in _brackets(s, chi_theory):
        root = _root(lambda v: f(v) - 1.0, float(s[a]), float(s[b]), float(chi_theory[a]) - 1.0)
        if math.isfinite(root) and abs(f(root) - 1.0) > JUMP_GAP:  # not a root: f jumps across 1 there
            root = discontinuous(f, float(s[a]), float(s[b])) or root
        if math.isfinite(root):
            found.append(root)
    if not found:
        return math.nan
    return min(found, key=lambda v: abs(v - near)) if math.isfinite(near) else found[0]


def curve_seed(seed: int, curve_id: str) -> np.random.Generator:
    """The bootstrap's generator: a function of the sweep's seed and the curve only."""
    return np.random.default_rng([int(seed), zlib.crc32(curve_id.encode())])


def crossing(key: dict, s: Sequence[float], chi_hat: Sequence[float], chi_hat_se: Sequence[float],
             chi_theory: Sequence[float], *, layers: np.ndarray, log_q_tilde: np.ndarray | None,
             theory_chi: ChiFn, jump_chi: ChiFn, rng: np.random.Generator, n_boot: int = N_BOOT) -> dict:
    """One ``crossings.csv`` row for one curve.

    Parameters
    ----------
    key : dict
        The curve's key columns (``curve_id``, activation, …, ``sigma_w2_n_crit``, ``critical_kind``).
    s, chi_hat, chi_hat_se, chi_theory : array-like, shape (K,)
        The swept σ_w²·N (increasing) and the summary's values at each.
    layers : array, shape (F,)
        The fit layers of χ̂.
    log_q_tilde : array, shape (K, S, F) or None
        Per-seed ln q̃ˡ over the fit layers (None or S = 1: no bootstrap).
    theory_chi : callable
        σ_w²·N ↦ the finite-depth theory fit ``chi_theory`` of this curve.
    jump_chi : callable
        σ_w²·N ↦ the theory whose discontinuity makes a jump (χ₁, or ``chi_theory`` where χ₁ does
        not apply).
    """
    s = np.asarray(s, dtype=float)
    chi, se, th = (np.asarray(v, dtype=float) for v in (chi_hat, chi_hat_se, chi_theory))
    n_seeds = 0 if log_q_tilde is None else int(log_q_tilde.shape[1])
    cross_th = theory_crossing(theory_chi, s, th, float(key.get("sigma_w2_n_crit", math.nan)))
    row = dict(key, kind="none in grid", n_seeds=n_seeds, n_boot=0, sigma_w2_n_cross_theory=cross_th)
    row = {c: row.get(c, math.nan) for c in COLUMNS}
    finite = np.isfinite(chi)
    brackets = _brackets(s[finite], chi[finite])
    if not brackets:
        return row
    ref = cross_th if math.isfinite(cross_th) else float(key.get("sigma_w2_n_crit", math.nan))
    a, b, value = min(brackets, key=lambda t: abs(t[2] - ref)) if math.isfinite(ref) else brackets[0]
    idx = np.flatnonzero(finite)
    a, b = int(idx[a]), int(idx[b])  # back to grid indices
    row.update(bracket_lo=float(s[a]), bracket_hi=float(s[b]))

    measured_step = abs(chi[b] - chi[a])
    theory_step = abs(th[b] - th[a]) if np.isfinite(th[a]) and np.isfinite(th[b]) else 0.0
    noise = math.hypot(se[a], se[b]) if np.isfinite(se[a]) and np.isfinite(se[b]) else math.inf
    if discontinuous(jump_chi, float(s[a]), float(s[b])) is not None or measured_step > theory_step + JUMP_SE * noise:
        row.update(kind="jump", sigma_w2_n_cross_lo=float(s[a]), sigma_w2_n_cross_hi=float(s[b]))
        return row

    lo = hi = value
    if log_q_tilde is not None and n_seeds > 1:
        reps = _replicate_crossings(s, bootstrap_chi(layers, log_q_tilde, n_boot, rng), value)
        ok = reps[np.isfinite(reps)]
        row["n_boot"] = n_boot
        if len(ok) >= (1 - (1 - LEVEL) / 2) * n_boot:  # the crossing survives resampling
            lo, hi = (float(v) for v in np.quantile(ok, [(1 - LEVEL) / 2, (1 + LEVEL) / 2]))
            lo, hi = min(lo, value), max(hi, value)
        else:
            lo, hi = min(value, s[a]), max(value, s[b])
    guided = guided_root(theory_chi, float(s[a]), float(s[b]), chi[a] - th[a], chi[b] - th[b])
    if math.isfinite(guided):  # the theory's shape moves the root by this much: extend the interval that way
        shift = guided - value
        err = abs(shift)
        lo, hi = min(lo, lo + shift), max(hi, hi + shift)
    else:
        err = _interpolation_error(s, chi, a, b, value)
        if math.isfinite(err):
            lo, hi = lo - err, hi + err
    if n_seeds <= 1 or not err <= (s[b] - s[a]) / 4:  # the grid cannot resolve the crossing
        lo, hi = min(lo, s[a]), max(hi, s[b])
    row.update(kind="crossing", sigma_w2_n_cross=value, sigma_w2_n_cross_lo=float(lo), sigma_w2_n_cross_hi=float(hi))
    return row
