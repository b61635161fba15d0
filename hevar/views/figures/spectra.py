"""The run-folder figure of the input–output Jacobian spectrum (``--jacobian``; issue 14, item 4d).

``spectrum.png``: the density of log₁₀ λ (λ a squared singular value of J = ∂zᴸ/∂x) from
``spectra.csv``'s quantiles, per weight distribution, one panel per network (rows: activation, σ_w²·N,
σ_b², width) and depth (columns), with the free-probability density where
:func:`hevar.meanfield.spectrum.density` has it (relu and linear, i.i.d. or orthogonal weights, constant
width; it does not depend on σ_b², since zˡ stays symmetric and Dˡ² Bernoulli(½) for relu), and in the
legend the measured mean and relative variance of λ beside their predictions (``summary.csv``). The
builder returns None for a run without ``spectra.csv``.

**The density from quantiles.** ``spectra.csv`` holds per configuration and seed the inverted-CDF
quantiles x_i = log₁₀ λ at levels p_i = 0, 0.02, …, 1. Each seed's CDF is taken piecewise linear through
(x_i, p_i) over its non-zero λ, the seeds' CDFs are averaged on common bin edges (the pooled distribution),
and the density of a bin is its CDF increment over its width. λ at or below 1e-24·λ_max (the SVD's floor:
the exact zeros of a relu Jacobian) count as zero: their fraction goes into the legend, and the histogram's
area is the non-zero fraction, as in :func:`hevar.views.figures.correlations.plot_spectrum`. The quantiles
only bracket a seed's zero fraction z between two levels (p_{k-1} ≤ z < p_k, p_k the first non-zero level):
z is taken in the middle (within 0.01 of the exact fraction) and the first segment of the CDF is extended
down to it, so that the legend's fraction and the histogram's area add up to 1.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hevar.views.figures.common import OKABE_ITO, Table, _col, _finite_unique, _keys, _mask, _nrows, _split_keys, \
    _subset, _variant_names
from hevar.views.figures.pairs import MAX_PANELS, _text

ZERO_DECADES = 24  # λ ≤ 10^-24·λ_max count as zero (see the module docstring)


def quantile_density(levels: np.ndarray, log10_q: np.ndarray, bins: int = 40
                     ) -> tuple[np.ndarray, np.ndarray, float]:
    """The pooled density of log₁₀ λ from per-seed quantiles (module docstring).

    Parameters
    ----------
    levels : array, shape (Q,)
        Quantile levels, increasing from 0 to 1.
    log10_q : array, shape (S, Q)
        Per seed, log₁₀ of the λ at those levels (-inf for λ = 0).
    bins : int

    Returns
    -------
    edges : array, shape (bins + 1,)
    density : array, shape (bins,)
        CDF increment of the non-zero λ per unit log₁₀ λ (area: the non-zero fraction).
    zero : float
        Fraction of λ at zero (≤ 10^-24·λ_max), averaged over seeds: per seed the middle of the bracket
        levels[k-1] ≤ z < levels[k] the quantiles give (k the first non-zero level), so within half a level
        step (0.01 for spectra.csv) of the exact fraction; the density's area is 1 − zero.
    """
    levels = np.asarray(levels, dtype=float)
    log10_q = np.atleast_2d(np.asarray(log10_q, dtype=float))
    curves, zeros = [], []
    for x in log10_q:
        top = np.nanmax(x[np.isfinite(x)]) if np.isfinite(x).any() else math.nan
        nonzero = np.isfinite(x) & (x > top - ZERO_DECADES)
        if not nonzero.any():
            if x.size and np.all(x == -np.inf):  # J = 0 for every input of this seed: all its λ are zero
                zeros.append(1.0)
            continue  # (a seed without values, an overflow, is left out)
        k = int(np.argmax(nonzero))  # the first non-zero level (quantiles increase)
        xs, ps = x[k:], levels[k:]
        if k > 0:
            # inverted-CDF quantiles only bracket the zero fraction, levels[k-1] ≤ z < levels[k]: take the
            # middle, and give the non-zero λ below x_k (mass levels[k] − z) to the first segment extended
            # down at its own slope (or, for a vertical one, to the lowest bin), so that the histogram's
            # area and z add up to 1
            z = 0.5 * (float(levels[k - 1]) + float(levels[k]))
            if xs.size > 1 and xs[1] > xs[0]:
                xs = np.concatenate([[xs[0] - (ps[0] - z) * (xs[1] - xs[0]) / (ps[1] - ps[0])], xs])
                ps = np.concatenate([[z], ps])
        else:
            z = 0.0
        zeros.append(z)
        curves.append((xs, ps, z))
    if not curves:
        return np.empty(0), np.empty(0), (1.0 if zeros else math.nan)
    dead = len(zeros) - len(curves)  # seeds whose λ are all zero: their CDF is 1 above 0
    lo = min(float(c[0][0]) for c in curves)
    hi = max(float(c[0][-1]) for c in curves)
    if hi - lo < 0.1:  # near a point mass
        lo, hi = 0.5 * (lo + hi) - 0.05, 0.5 * (lo + hi) + 0.05
    edges = np.linspace(lo, hi, bins + 1)
    cdf = np.mean([np.interp(edges, x, p, left=z, right=1.0) for x, p, z in curves] + [np.ones(edges.size)] * dead,
                  axis=0)
    cdf[0] = float(np.mean(zeros))  # every non-zero λ is at or above edges[0]
    return edges, np.diff(cdf) / np.diff(edges), float(np.mean(zeros))


def plot_spectrum_quantiles(ax: Axes, levels: np.ndarray, log10_q: np.ndarray, lam: np.ndarray | None = None,
                            rho: np.ndarray | None = None, atoms: Sequence[tuple[float, float]] = (),
                            label: str = "", colour=None, bins: int = 40) -> list[Artist]:
    """The density of log₁₀ λ from per-seed quantiles (:func:`quantile_density`) as a filled histogram,
    and the predicted density ρ(λ)·λ·ln 10 of log₁₀ λ (a line) with its atoms at λ > 0 (dashed)."""
    colour = OKABE_ITO[0] if colour is None else colour
    edges, dens, zero = quantile_density(levels, log10_q, bins)
    artists: list[Artist] = []
    if edges.size:
        text = label + (f" (λ ≈ 0: {zero:.0%})" if zero > 0 else "")
        artists.append(ax.stairs(dens, edges, color=colour, alpha=0.3, fill=True, label=text))
        artists.append(ax.stairs(dens, edges, color=colour, lw=1.0))
    if lam is not None and rho is not None:
        lam = np.asarray(lam, dtype=float)
        keep = lam > 0
        zero_mass = sum(m for p, m in atoms if p == 0)
        artists += ax.plot(np.log10(lam[keep]), np.asarray(rho)[keep] * lam[keep] * math.log(10), color=colour,
                           lw=1.8, label="free probability" + (f" ({label.split(':')[0]}; atom at 0: {zero_mass:.0%})"
                                                                if zero_mass else f" ({label.split(':')[0]})"))
    for p, m in atoms:
        if p > 0:
            artists.append(ax.axvline(math.log10(p), color=colour, lw=1.5, ls="--"))
    return artists


def _spectrum_theory(activation: str, dist: str, s: float, sigma_b2: float, depth: int, width: float,
                     widths: str, edges: np.ndarray):
    """(λ, ρ, atoms) of :func:`hevar.meanfield.spectrum.density` where it applies, else (None, None, ())."""
    from hevar.engine import init
    from hevar.meanfield import spectrum as sp

    if activation not in ("relu", "linear") or not edges.size or (widths and not str(widths).startswith("constant")):
        return None, None, ()
    try:
        s_eff = s * float(init.variance_ratio(dist, math.sqrt(s / width)))
        lam = np.logspace(edges[0] - 0.3, edges[-1] + 0.3, 300)
        rho, atoms = sp.density(activation, dist, s_eff, int(depth), lam)
    except ValueError:  # a distribution or φ without a polynomial density
        return None, None, ()
    return lam, rho, atoms


def _spectrum_rows(spectra: Table) -> tuple[str, ...]:
    """The keys of a row of spectrum.png: activation, σ_w²·N, σ_b², the width (or the width profile) and
    the fan mode where it is not the default."""
    variants = _variant_names(spectra)
    return ("activation", "sigma_w2_n", "sigma_b2", "widths" if "widths" in variants else "width") + \
        (("mode",) if "mode" in variants else ())


def plot_spectrum_run(ax: Axes, spectra: Table, summary: Table | None = None) -> list[Artist]:
    """The spectrum of one network (one depth), one series per weight distribution, with the measured and
    predicted mean and relative variance of λ from ``summary`` in the legend."""
    artists: list[Artist] = []
    dists = list(dict.fromkeys(_col(spectra, "dist")))
    for dist, colour in zip(dists, [OKABE_ITO[i % len(OKABE_ITO)] for i in range(len(dists))]):
        rows = _subset(spectra, _col(spectra, "dist") == dist)
        cid = str(_col(rows, "config_id")[0])
        rows = _subset(rows, _col(rows, "config_id") == cid)
        seeds = _finite_unique(_col(rows, "seed_index"))
        levels = np.unique(_col(rows, "quantile"))
        grid = np.full((seeds.size, levels.size), np.nan)
        for i, seed in enumerate(seeds):
            r = _subset(rows, _col(rows, "seed_index") == seed)
            grid[i, np.searchsorted(levels, r["quantile"])] = r["log10_sv2"]
        label = dist if dist else "normal"
        if summary is not None and "sv2_mean" in summary:
            srow = _subset(summary, _col(summary, "config_id") == cid)
            if _nrows(srow):
                m, mt = float(srow["sv2_mean"][0]), float(_col(srow, "sv2_mean_theory")[0])
                v, vt = float(_col(srow, "sv2_rel_var")[0]), float(_col(srow, "sv2_rel_var_theory")[0])
                label += f": mean λ {m:.3g} (theory {mt:.3g}), rel. var {v:.3g} (theory {vt:.3g})"
        edges, _, _ = quantile_density(levels, grid)
        lam, rho, atoms = _spectrum_theory(str(rows["activation"][0]), dist or "normal",
                                           float(rows["sigma_w2_n"][0]), float(rows["sigma_b2"][0]),
                                           int(rows["depth"][0]), float(rows["width"][0]),
                                           str(_col(rows, "widths")[0]), edges)
        artists += plot_spectrum_quantiles(ax, levels, grid, lam, rho, atoms, label=label, colour=colour)
    ax.set_xlabel("$\\log_{10}\\lambda$ (squared singular value of $J$)")
    ax.set_ylabel("density of $\\log_{10}\\lambda$")
    if artists:
        ax.set_ylim(0, ax.get_ylim()[1] * 1.5)  # room for the legend
        ax.legend(loc="upper left", fontsize=8.5, frameon=False)
    return artists


def figure_spectrum(t: Mapping[str, Table | None]) -> Figure | None:
    spectra, summary = t.get("spectra"), t.get("summary")
    if spectra is None or not _nrows(spectra) or not np.isfinite(_col(spectra, "log10_sv2")).any():
        return None
    rows_names = _spectrum_rows(spectra)
    row_keys = _keys(spectra, rows_names)[:MAX_PANELS]
    depths = _finite_unique(_col(spectra, "depth"))[:4]
    if not row_keys or not depths.size:  # every row has an empty key cell: nothing to draw
        return None
    nrows, ncols = len(row_keys), depths.size
    fig = Figure(figsize=(6.6 * ncols, 4.4 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    varying, constant = _split_keys(row_keys, rows_names)
    for i, key in enumerate(row_keys):
        mine = _subset(spectra, _mask(spectra, rows_names, key))
        for j, depth in enumerate(depths):
            ax = axes[i, j]
            rows = _subset(mine, _col(mine, "depth") == depth)
            if not _nrows(rows):
                ax.set_visible(False)
                continue
            plot_spectrum_run(ax, rows, summary)
            crit = _col(summary, "sigma_w2_n_crit")[_col(summary, "config_id") == rows["config_id"][0]] \
                if summary is not None else np.array([])
            tag = " (critical)" if crit.size and np.isfinite(crit[0]) and math.isclose(
                float(crit[0]), float(rows["sigma_w2_n"][0]), rel_tol=0.02) else ""
            parts = [_text([rows_names[k] for k in varying], tuple(key[k] for k in varying))] if varying else []
            ax.set_title(" · ".join(parts + [f"$L$ = {int(depth)}{tag}"]), fontsize=11)
    seeds = _finite_unique(_col(spectra, "seed_index")).size
    common = _text([rows_names[k] for k in constant], tuple(row_keys[0][k] for k in constant)) if constant else ""
    fig.suptitle("Squared singular values λ of the input–output Jacobian:" + ("\n" if ncols == 1 else " ") +
                 "measured (each seed's quantiles, pooled) and free probability\n" + " · ".join(p for p in (common, f"{seeds} seeds") if p))
    return fig


def spectrum_panel(ax: Axes, t: Mapping[str, Table | None], **options) -> list[Artist]:
    spectra = t.get("spectra")
    if spectra is None or not _nrows(spectra):
        return []
    names = _spectrum_rows(spectra) + ("depth",)
    rows = _subset(spectra, _mask(spectra, names, _keys(spectra, names)[0]))
    return plot_spectrum_run(ax, rows, t.get("summary"), **options)
