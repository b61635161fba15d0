"""A user φ without a derivative: find its kinks, and estimate the error of the numerical φ'.

:func:`hevar.meanfield.activations.central_difference` is 8th-order accurate where φ is smooth, and
one-sided next to *declared* kinks. Next to an undeclared one — a jump in φ or in any of its first
few derivatives, like 1.5·z/(1 + |z|), whose φ'' jumps at 0 — the central stencil straddles it and
φ' is smeared over a few steps h = 1/64: G(q) is then wrong by up to ~1 % for q ≲ 4h², which is
where q* → 0 is decided (that φ gave a critical σ_w²·N of 0.4677 at a spurious tiny fixed point,
where the exact answer is 1/φ'(0)² = 0.4444 with q* → 0).

:func:`detect_kinks` finds them: a forward and a backward 9-point one-sided estimate of φ' agree to
rounding wherever φ is smooth over the 16 steps they span, and disagree by ~J·h^(k−1) when a jump J in
φ⁽ᵏ⁾ lies among them. Disagreements on |z| ≤ 16 (step 1/64) are localised by shrinking the step
until the bracket is below 1e-7, and the kink snapped to a 6-decimal value inside it. :func:`refine`
adds them to the activation's kinks (so the quadrature splits there and φ' is one-sided beside
them) and stores an error estimate of φ': the largest difference between the 8th-order estimate
and a 6th-order one on the same grid, which bounds the 8th-order error where the difference is
dominated by the lower order. ``hevar theory`` reports it and what it does to G and the critical
value (δG/G ≈ 2·δφ'/|φ'|).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from hevar.meanfield.activations import DIFF_STEP, Activation, _stencil, central_difference

Array = np.ndarray

SCAN_HALF_WIDTH = 16.0  # |z| scanned for kinks (the Gaussian weight beyond √q·10 is dropped anyway)
_F8 = (np.arange(0, 9), _stencil(np.arange(0, 9)))
_B8 = (np.arange(-8, 1), _stencil(np.arange(-8, 1)))
_C6 = (np.arange(-3, 4), _stencil(np.arange(-3, 4)))
_F6 = (np.arange(0, 7), _stencil(np.arange(0, 7)))
_B6 = (np.arange(-6, 1), _stencil(np.arange(-6, 1)))
_W = float(np.sum(np.abs(_F8[1])))  # rounding amplification of a one-sided 9-point stencil


def _apply(f, stencil, x: Array, h: float | Array) -> Array:
    offsets, weights = stencil
    total = np.zeros_like(x)
    for k, c in zip(offsets, weights):
        if c != 0.0:
            total += c * np.asarray(f(x + k * h), dtype=np.float64)
    return total / h


def _disagree(f, x: Array, h: float) -> Array:
    """Where forward and backward one-sided φ' differ beyond rounding and smooth truncation."""
    with np.errstate(all="ignore"):
        fwd, bwd = _apply(f, _F8, x, h), _apply(f, _B8, x, h)
        size = np.abs(np.asarray(f(x), dtype=np.float64))
    noise = 64 * np.finfo(float).eps * _W * (1 + size) / h
    return np.abs(fwd - bwd) > noise + 1e-7 * (1 + np.abs(fwd) + np.abs(bwd))


def detect_kinks(f, declared: tuple[float, ...] = ()) -> tuple[float, ...]:
    """z in [-16, 16] where φ or one of its first derivatives jumps, not already in ``declared``.

    Parameters
    ----------
    f : callable
        φ, vectorised, float64 in and out.
    declared : tuple of float
        Kinks already known (regions within 16 steps of them are skipped).

    Returns
    -------
    tuple of float, increasing
    """
    h = DIFF_STEP
    x = np.arange(-SCAN_HALF_WIDTH, SCAN_HALF_WIDTH + h / 2, h)
    bad = _disagree(f, x, h)
    for k in declared:
        bad &= np.abs(x - k) > 16 * h
    found: list[float] = []
    idx = np.flatnonzero(bad)
    if idx.size == 0:
        return ()
    # a kink on a grid point is not flagged itself (each one-sided stencil is exact there): bridge that gap
    clusters = np.split(idx, np.flatnonzero(np.diff(idx) > 2) + 1)
    for cluster in clusters:
        # the kink lies within 8 steps of every flagged point
        lo, hi = x[cluster[-1]] - 8 * h, x[cluster[0]] + 8 * h
        if lo > hi:
            lo, hi = hi, lo
        found.extend(_localise(f, lo, hi))
    return tuple(sorted(set(found)))


def _localise(f, lo: float, hi: float) -> list[float]:
    """Shrink [lo, hi] around the kink: flagged points on a finer grid, 8 of its steps either side."""
    for _ in range(60):
        if hi - lo < 1e-7 * max(1.0, abs(lo)):
            break
        h = (hi - lo) / 64
        xs = np.linspace(lo - 8 * h, hi + 8 * h, 81)
        flagged = xs[_disagree(f, xs, h)]
        if flagged.size == 0:
            break  # below rounding: the bracket is as good as it gets
        new_lo, new_hi = flagged[-1] - 8 * h, flagged[0] + 8 * h
        if new_lo > new_hi:
            new_lo, new_hi = new_hi, new_lo
        lo, hi = max(lo - 8 * h, new_lo), min(hi + 8 * h, new_hi)
    mid = 0.5 * (lo + hi)
    snapped = round(mid, 6)
    return [float(snapped) + 0.0 if lo - 1e-12 <= snapped <= hi + 1e-12 else float(mid)]  # + 0.0: no -0.0


def derivative_error(f, kinks: tuple[float, ...]) -> float:
    """Estimated max |error| of the 8th-order φ' on |z| ≤ 16: |8th − 6th order| on the scan grid."""
    h0 = DIFF_STEP
    x = np.arange(-SCAN_HALF_WIDTH, SCAN_HALF_WIDTH + h0 / 2, h0 / 4)
    h = DIFF_STEP * np.maximum(1.0, np.abs(x))
    with np.errstate(all="ignore"):
        d8 = central_difference(f, x, kinks)
        d6 = _apply(f, _C6, x, h)
        for k in kinks:
            near = np.abs(x - k) < 4 * h
            if np.any(near):
                xs, hs = x[near], h[near]
                right = xs >= k
                d6[near] = np.where(right, _apply(f, _F6, xs, hs), _apply(f, _B6, xs, hs))
    diff = np.abs(d8 - d6)
    return float(np.max(diff[np.isfinite(diff)])) if np.any(np.isfinite(diff)) else math.inf


def refine(act: Activation, numerical: bool) -> Activation:
    """The user activation with detected kinks added and its φ' error estimated (numerical φ' only)."""
    if not numerical:
        return act
    f = act.phi
    detected = detect_kinks(lambda z: f(np.asarray(z, dtype=np.float64)), act.kinks)
    kinks = tuple(sorted(set(act.kinks) | set(detected)))
    raw = lambda z: f(np.asarray(z, dtype=np.float64))  # noqa: E731

    def dphi(z: Array) -> Array:
        return central_difference(raw, z, kinks).astype(z.dtype, copy=False)

    err = derivative_error(raw, kinks)
    text = act.description + (f"; kinks detected at z = {', '.join(f'{k:g}' for k in detected)}" if detected else "")
    return dataclasses.replace(act, dphi=dphi if detected else act.dphi, kinks=kinks, dphi_error=err,
                               detected_kinks=detected, description=text)
