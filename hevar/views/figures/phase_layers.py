"""Theory layers of the phase diagram (:func:`hevar.views.figures.maps.plot_phase`, issue 13 item 2 and
issue 14 item 4e): the whole critical line χ₁ = 1 with its stable and unstable branches, and the
correlation depth scale ξ_c on the diagram's cells.

Along the critical line the fixed point q* of q ↦ s·V(q) + σ_b² has χ₁ = s·G(q*) = 1, so
s = 1/G(q*) and σ_b² = q* − V(q*)/G(q*): one point of the (σ_w²·N, σ_b²) plane per q*
(:func:`hevar.meanfield.critical.critical_line`). The q-map's slope there, s·V'(q*) = V'(q*)/G(q*),
tells whether a network settles at that fixed point (< 1, stable) or is pushed away from it (> 1,
unstable: gelu, silu and mish with a bias have such critical points). ξ_c = −1/ln χ_c
(:func:`hevar.meanfield.correlations.correlation_terms`) is the number of layers over which the
correlation of two inputs approaches its fixed point; trainable depth ≈ 6ξ_c (Schoenholz et al. 2017).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from matplotlib import colors as mcolors

from hevar.errors import UsageError

COLOUR_BY = ("chi_hat", "xi_c")  # what plot_phase's cells show


def critical_branches(activation: str, x_range, y_range) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """The whole critical line χ₁ = 1 of the theory within (a margin around) the given ranges, in pieces of
    one stability: (σ_w²·N, σ_b², stable) per piece, in increasing q*.

    The line is :func:`hevar.meanfield.critical.critical_line` (q* on 100 points per decade of [1e-8, 1e8]):
    s = 1/G(q*), σ_b² = q* − V(q*)/G(q*), stable where the q-map's slope V'(q*)/G(q*) < 1. Neighbouring
    pieces share their end point, so the drawn line is continuous. Empty for positively homogeneous φ and
    for an activation the theory cannot parse."""
    from hevar.meanfield import critical
    from hevar.meanfield.activations import parse_activation

    try:
        line = critical.critical_line(parse_activation(activation))
    except (UsageError, ValueError, ImportError):
        return []
    s, b, stable = line["sigma_w2_n"], line["sigma_b2"], line["stable"]
    (x0, x1), (y0, y1) = (float(np.min(x_range)), float(np.max(x_range))), (float(np.min(y_range)), float(np.max(y_range)))
    px, py = 0.5 * (x1 - x0), 0.5 * (y1 - y0)
    inside = (s >= x0 - px) & (s <= x1 + px) & (b >= y0 - py) & (b <= y1 + py)
    pieces, start, n = [], 0, s.size
    for i in range(1, n + 1):
        if i == n or stable[i] != stable[start] or inside[i] != inside[start]:
            if inside[start]:
                stop = i + 1 if i < n and inside[i] else i  # share the joint with the next piece
                if stop - start >= 2:
                    pieces.append((s[start:stop], b[start:stop], bool(stable[start])))
            start = i
    return pieces


@functools.lru_cache(maxsize=4096)
def _xi_c(activation: str, s: float, sigma_b2: float) -> float:
    from hevar.meanfield import correlations
    from hevar.meanfield.activations import parse_activation

    return float(correlations.correlation_terms(parse_activation(activation), s, sigma_b2).xi_c)


def xi_c_grid(activation: str, swept: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """ξ_c of the theory (:func:`hevar.meanfield.correlations.correlation_terms`, q_in = 1) on the cells
    of a phase diagram: rows ``biases`` × columns ``swept``; inf where ξ_c is (critical, q* at 0 or ∞),
    nan where the theory has no value."""
    out = np.full((len(biases), len(swept)), np.nan)
    for i, b in enumerate(biases):
        for j, s in enumerate(swept):
            try:
                out[i, j] = _xi_c(activation, float(s), float(b))
            except (UsageError, ValueError, ArithmeticError):
                pass
    return out


def xi_c_norm(xi: np.ndarray) -> mcolors.LogNorm:
    """A log norm over the finite, positive ξ_c (at least a decade wide); ∞ maps above it."""
    xi = np.asarray(xi, dtype=float)
    finite = xi[np.isfinite(xi) & (xi > 0)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (1.0, 10.0)
    if hi < 10 * lo:
        mid = math.sqrt(lo * hi)
        lo, hi = mid / math.sqrt(10), mid * math.sqrt(10)
    return mcolors.LogNorm(lo, hi)
