"""Run-folder figures of pairs of inputs and of the input–output Jacobian spectrum (issue 14, item 4).

Drawn only for a run with ``--input-corr`` (the first three) or ``--jacobian`` (the last); each builder
returns None otherwise, so a plain run's ``plots/`` is what it was.

- ``c_map.png``        the c-map cˡ⁺¹ = M(cˡ) at q* from theory, one curve per swept σ_w²·N (at most
                       :data:`MAX_CURVES`), with the identity, the stable fixed points c* and the measured
                       (cˡ, cˡ⁺¹) of the layers where qˡ has settled at q*; one panel per (activation, σ_b²);
- ``correlations.png`` cˡ across layers, measured (seed mean ± 2 s.e.) on ``c_theory`` (dashed), one
                       curve per σ_w²·N, one panel per c⁰ (and per network shape);
- ``depth_scales.png`` ξ_c and ξ_q against σ_w²·N from theory on a fine grid (refined toward the
                       critical point, where ξ_c diverges), with the measured ξ̂_c ± 2 s.e. and the same
                       fit of ``c_theory`` (hollow); one panel per (activation, σ_b²);
- ``spectrum.png``     the density of log₁₀ λ (λ a squared singular value of J) from ``spectra.csv``'s
                       quantiles, per weight distribution, one panel per network (rows) and depth
                       (columns), with the free-probability density where
                       :func:`hevar.meanfield.spectrum.density` has it (relu and linear, i.i.d. or
                       orthogonal weights, constant width).

The builders (``figure_*``) take the run's tables (a mapping of name → dict of columns, as
:func:`hevar.views.figures.render_run` and :meth:`hevar.results.run.Run.tables` give them) and return a
Figure or None; the ``plot_*`` functions draw one panel on a given Axes and return the artists; the
``*_panel`` functions are what :func:`hevar.views.figures.draw` calls. With several c⁰ the tables
``layers_all`` and ``summary_all`` hold every c⁰ (``layers`` and ``summary`` only the first).

**The density from quantiles.** ``spectra.csv`` holds per configuration and seed the inverted-CDF
quantiles x_i = log₁₀ λ at levels p_i = 0, 0.02, …, 1. Each seed's CDF is taken piecewise linear through
(x_i, p_i) over its non-zero λ, the seeds' CDFs are averaged on common bin edges (the pooled distribution),
and the density of a bin is its CDF increment over its width. λ at or below 1e-24·λ_max (the SVD's floor:
the exact zeros of a relu Jacobian) count as zero: their fraction goes into the legend, and the histogram's
area is the non-zero fraction, as in :func:`hevar.views.figures.correlations.plot_spectrum`.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hevar.meanfield import correlations as cr
from hevar.meanfield.activations import parse_activation
from hevar.views.figures import correlations as cf
from hevar.views.figures.common import (OKABE_ITO, S_LABEL, Table, _col, _config_keys, _describe,
                                        _finite_unique, _grid, _keys, _mask, _nrows, _seeds_text, _split_keys,
                                        _subset, _title, _variant_names)

MAX_CURVES = 8  # σ_w²·N curves per panel (evenly chosen beyond)
MAX_PANELS = 12  # panels per figure (the first ones beyond)
ZERO_DECADES = 24  # λ ≤ 10^-24·λ_max count as zero (see the module docstring)
Q_LIMIT = (1e-6, 1e6)  # q where the c-map is evaluated when q* is 0 or ∞ (φ not homogeneous)
LEGEND = dict(fontsize=10, frameon=False)


def has_pairs(table: Table | None) -> bool:
    """Whether a table carries the ``--input-corr`` columns with at least one value."""
    return table is not None and "input_corr" in table and _nrows(table) > 0 and bool(
        np.isfinite(np.asarray(table["input_corr"], dtype=float)).any())


def _all(t: Mapping[str, Table | None], name: str) -> Table | None:
    return t.get(name + "_all") if t.get(name + "_all") is not None else t.get(name)


def _pick(values: np.ndarray, n: int = MAX_CURVES) -> np.ndarray:
    """At most n of the sorted values, evenly spread, both ends kept."""
    if values.size <= n:
        return values
    return values[np.unique(np.round(np.linspace(0, values.size - 1, n)).astype(int))]


def _n_distinct(values: np.ndarray) -> int:
    values = np.asarray(values)
    return len(set(values.tolist())) if values.dtype == object else _finite_unique(values).size


def _colours(n: int) -> list:
    return cf._colours(n)


def _s_text(s: float) -> str:
    return f"{S_LABEL} = {s:g}"


def _text(names: Sequence[str], key: tuple) -> str:
    """:func:`~hevar.views.figures.common._describe`, with σ_w²·N and c⁰ written as symbols."""
    named = [(n, v) for n, v in zip(names, key) if n not in ("sigma_w2_n", "input_corr")]
    parts = [_describe([n for n, _ in named], tuple(v for _, v in named))] if named else []
    parts += [_s_text(v) if n == "sigma_w2_n" else f"$c^0$ = {v:g}" for n, v in zip(names, key)
              if n in ("sigma_w2_n", "input_corr")]
    return " · ".join(p for p in parts if p)


# --- c-map --------------------------------------------------------------------------------------------


def map_q(act, q_star: float, sigma_b2: float) -> float:
    """The variance at which the c-map is drawn: q*, or where q* is 0 or ∞ a q near that limit
    (:data:`Q_LIMIT`; the map there is the limit's, see :mod:`hevar.meanfield.correlations`), or 1 for a
    homogeneous φ without bias (the map does not depend on q). nan if q* is undefined."""
    if act.homogeneous:
        return 1.0 if (q_star == 0 or sigma_b2 == 0) else float(q_star)
    if q_star == 0:
        return Q_LIMIT[0]
    if math.isinf(q_star):
        return Q_LIMIT[1]
    return float(q_star)


def c_map_theory(activation: str, sigma_b2: float, s_values: Sequence[float], c: np.ndarray):
    """(M(c) for each σ_w²·N, shape (n, m); the :class:`~hevar.meanfield.correlations.CorrelationTerms`)."""
    act = parse_activation(activation)
    terms = [cr.correlation_terms(act, float(s), float(sigma_b2)) for s in s_values]
    rows = np.full((len(terms), c.size), np.nan)
    for i, (s, t) in enumerate(zip(s_values, terms)):
        q = map_q(act, t.q_star, sigma_b2)
        if math.isfinite(q):
            with np.errstate(all="ignore"):
                rows[i] = cr.c_map(act, c, float(s), float(sigma_b2), q)
    return rows, terms


def plot_c_map_run(ax: Axes, summary: Table, layers: Table | None = None, n_c: int = 61) -> list[Artist]:
    """The c-map at q* for one (activation, σ_b²) of a run, at its swept σ_w²·N, with the fixed points
    and, from ``layers`` (``layers.csv`` rows with ``c``), the measured pairs (cˡ, cˡ⁺¹) of the layers
    whose mean-field qˡ is within 1 % of q* (every layer for a homogeneous φ without bias)."""
    activation, b = str(_col(summary, "activation")[0]), float(_col(summary, "sigma_b2")[0])
    act = parse_activation(activation)
    swept = _pick(_finite_unique(_col(summary, "sigma_w2_n")))
    corr = _finite_unique(_col(summary, "input_corr"))
    lo = min(0.0, float(corr.min())) if corr.size else 0.0
    c = np.linspace(lo, 1.0, n_c)
    rows, terms = c_map_theory(activation, b, swept, c)
    labels = []
    for s, t in zip(swept, terms):
        star = "" if not math.isfinite(t.c_star) else f", c* = {t.c_star:.3g}"
        limit = " (q* → 0)" if t.q_star == 0 and not act.homogeneous else ""
        labels.append(f"{_s_text(s)}: {t.phase}{star}{limit}")
    artists = cf.plot_c_map(ax, c, rows, labels, [t.c_star for t in terms])
    for a in artists:  # the fixed points on top of everything, larger and outlined
        if getattr(a, "get_marker", lambda: None)() == "o" and len(a.get_xdata()) == 1:
            a.set(ms=9, mec="black", mew=1.2, zorder=6)
    if layers is not None and "c" in layers:
        shown = False
        for s, t, colour in zip(swept, terms, _colours(len(swept))):
            at = np.isclose(_col(layers, "sigma_w2_n"), s, rtol=1e-12, atol=0)
            x, y = _settled_pairs(_subset(layers, at), act, t.q_star, b)
            if x.size:
                artists += ax.plot(x, y, "o", ms=3.5, mfc="none", mec=colour, mew=0.9, alpha=0.8,
                                   label="measured (cˡ, cˡ⁺¹), qˡ at q*" if not shown else "_nolegend_")
                shown = True
    ax.set_ylim(float(np.nanmin(np.concatenate([rows.ravel(), [lo]]))) - 0.02, 1.01)
    ax.set_xlim(lo, 1.0)
    ax.legend(loc="lower right", **LEGEND)  # below the identity: the maps lie above it
    return artists


def _settled_pairs(layers: Table, act, q_star: float, sigma_b2: float) -> tuple[np.ndarray, np.ndarray]:
    """Measured (cˡ, cˡ⁺¹) of every configuration in ``layers`` where qˡ (mean-field) is at q*."""
    xs, ys = [], []
    for cid in dict.fromkeys(_col(layers, "config_id")):
        rows = _subset(layers, _col(layers, "config_id") == cid)
        order = np.argsort(rows["layer"])
        cval, q = _col(rows, "c")[order], _col(rows, "q_theory")[order]
        if act.homogeneous and sigma_b2 == 0:
            ok = np.ones(q.size, dtype=bool)
        elif 0 < q_star < math.inf:
            ok = np.abs(q - q_star) <= 0.01 * q_star
        else:
            continue
        use = ok[:-1] & np.isfinite(cval[:-1]) & np.isfinite(cval[1:])
        xs.append(cval[:-1][use])
        ys.append(cval[1:][use])
    return (np.concatenate(xs), np.concatenate(ys)) if xs else (np.empty(0), np.empty(0))


def figure_c_map(t: Mapping[str, Table | None]) -> Figure | None:
    summary, layers = _all(t, "summary"), _all(t, "layers")
    if not has_pairs(summary):
        return None
    names = ("activation", "sigma_b2")
    keys = _keys(summary, names)[:MAX_PANELS]
    if not keys:
        return None
    fig, axes = _grid(len(keys), (5.6, 5.4), ncols_max=3)
    varying, constant = _split_keys(keys, names)
    for ax, key in zip(axes, keys):
        plot_c_map_run(ax, _subset(summary, _mask(summary, names, key)),
                       None if layers is None else _subset(layers, _mask(layers, names, key)))
        if varying:
            ax.set_title(_describe([names[i] for i in varying], tuple(key[i] for i in varying)))
    fig.suptitle(_title("The correlation map at q*: $c^{l+1}$ against $c^l$\n(Poole et al. 2016, Fig. 2; "
                        "fixed points c* outlined)", names, keys, constant, ""))
    return fig


def c_map_panel(ax: Axes, t: Mapping[str, Table | None], **options) -> list[Artist]:
    summary, layers = _all(t, "summary"), _all(t, "layers")
    if not has_pairs(summary):
        return []
    names = ("activation", "sigma_b2")
    key = _keys(summary, names)[0]
    return plot_c_map_run(ax, _subset(summary, _mask(summary, names, key)),
                          None if layers is None else _subset(layers, _mask(layers, names, key)), **options)


# --- cˡ across layers --------------------------------------------------------------------------------


def plot_correlations_run(ax: Axes, layers: Table) -> list[Artist]:
    """Measured cˡ ± 2 s.e. on ``c_theory`` across layers for one network shape and c⁰ of a run, one
    curve per σ_w²·N (at most :data:`MAX_CURVES`)."""
    swept = _pick(_finite_unique(_col(layers, "sigma_w2_n")))
    if not swept.size:
        return []
    depth = int(np.nanmax(_col(layers, "layer")))
    ls = np.arange(1, depth + 1)
    meas, se, th = (np.full((swept.size, depth), np.nan) for _ in range(3))
    for i, s in enumerate(swept):
        rows = _subset(layers, np.isclose(_col(layers, "sigma_w2_n"), s, rtol=1e-12, atol=0))
        idx = rows["layer"].astype(int) - 1
        meas[i, idx], se[i, idx], th[i, idx] = _col(rows, "c"), _col(rows, "c_se"), _col(rows, "c_theory")
    artists = cf.plot_c_trajectories(ax, ls, meas, se, th, [_s_text(s) for s in swept])
    ax.legend(title="measured (±2 s.e.); theory dashed", title_fontsize=9, **LEGEND)
    ax.set_xlim(0, depth + 1)
    return artists


def figure_correlations(t: Mapping[str, Table | None]) -> Figure | None:
    layers, summary = _all(t, "layers"), _all(t, "summary")
    if not has_pairs(layers) or "c" not in layers:
        return None
    names = _config_keys(layers) + ("input_corr",)
    keys = _keys(layers, names)[:MAX_PANELS]
    if not keys:
        return None
    varying, constant = _split_keys(keys, names)
    fig, axes = _grid(len(keys), (5.0, 4.0), ncols_max=3)
    for ax, key in zip(axes, keys):
        plot_correlations_run(ax, _subset(layers, _mask(layers, names, key)))
        if varying:
            ax.set_title(_text([names[i] for i in varying], tuple(key[i] for i in varying)))
    # one legend for every panel, outside them: the σ_w²·N are the same in each
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes), key=lambda hl: len(hl[1]))
    for ax in axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.legend(handles, labels, loc="outside right upper", title="measured (±2 s.e.)\ntheory dashed",
               title_fontsize=10, **LEGEND)
    fig.suptitle(_title("Correlation $c^l$ of two inputs across layers: measured on mean-field theory",
                        names, keys, constant, _seeds_text(summary if summary is not None else layers, layers))
                 .replace("input_corr = ", "$c^0$ = "))
    return fig


def correlations_panel(ax: Axes, t: Mapping[str, Table | None], **options) -> list[Artist]:
    layers = _all(t, "layers")
    if not has_pairs(layers):
        return []
    names = _config_keys(layers) + ("input_corr",)
    return plot_correlations_run(ax, _subset(layers, _mask(layers, names, _keys(layers, names)[0])), **options)


# --- depth scales --------------------------------------------------------------------------------------


def depth_scale_grid(swept: np.ndarray, s_crit: float, n: int = 41) -> np.ndarray:
    """σ_w²·N for the theory curves: n points over the swept range (widened by 10 % and to include the
    critical point), plus points at relative distances 1e-4 … 3e-2 on both sides of ``s_crit``."""
    lo, hi = float(swept.min()), float(swept.max())
    if math.isfinite(s_crit):
        lo, hi = min(lo, s_crit), max(hi, s_crit)
    pad = 0.1 * (hi - lo) if hi > lo else 0.1 * hi
    s = np.linspace(max(lo - pad, 1e-3 * hi), hi + pad, n)
    if math.isfinite(s_crit):
        rel = np.geomspace(1e-4, 3e-2, 7)
        s = np.concatenate([s, s_crit * (1 - rel), s_crit * (1 + rel)])
    return np.unique(s)


def plot_depth_scales_run(ax: Axes, summary: Table, n: int = 41) -> list[Artist]:
    """ξ_c, ξ_q from theory against σ_w²·N for one (activation, σ_b²), with the measured ξ̂_c ± 2 s.e.
    (one series per c⁰ and network shape) and the same fit of ``c_theory`` (hollow grey)."""
    activation, b = str(_col(summary, "activation")[0]), float(_col(summary, "sigma_b2")[0])
    act = parse_activation(activation)
    swept = _finite_unique(_col(summary, "sigma_w2_n"))
    crit = _finite_unique(_col(summary, "sigma_w2_n_crit"))
    s_crit = float(crit[0]) if crit.size else math.nan
    s = depth_scale_grid(swept, s_crit, n)
    terms = [cr.correlation_terms(act, float(x), b) for x in s]
    artists = cf.plot_depth_scales(ax, s, np.array([x.xi_c for x in terms]), np.array([x.xi_q for x in terms]),
                                   s_critical=s_crit)
    names = tuple(k for k in ("depth", "width", "widths", "mode", "dist", "input_corr")
                  if k in summary and _n_distinct(summary[k]) > 1)
    keys = _keys(summary, names) if names else [()]
    for j, (key, colour) in enumerate(zip(keys, [OKABE_ITO[i % len(OKABE_ITO)] for i in range(2, 2 + len(keys))])):
        rows = _subset(summary, _mask(summary, names, key)) if names else summary
        x, y, e = _col(rows, "sigma_w2_n"), _col(rows, "xi_c_hat"), _col(rows, "xi_c_hat_se")
        keep = np.isfinite(y) & (y > 0)
        if not keep.any():
            continue
        what = _text(names, key) if names else ""
        shift = (j - (len(keys) - 1) / 2) * 0.006 * (swept.max() - swept.min() if swept.size > 1 else 1.0)
        err = np.where(np.isfinite(e[keep]), 2 * e[keep], 0.0)
        low = np.minimum(err, 0.95 * y[keep])  # a log axis: the lower bar stops above 0
        artists.append(ax.errorbar(x[keep] + shift, y[keep], yerr=[low, err], fmt="o", ms=5, color=colour,
                                   elinewidth=1.1, capsize=2.5, zorder=4,
                                   label="measured $\\hat\\xi_c$ (±2 s.e.)" + (f", {what}" if what else "")))
        window = _col(rows, "xi_c_theory")
        wk = keep & np.isfinite(window) & (window > 0)
        if wk.any():
            artists += ax.plot(x[wk] + shift, window[wk], "o", ms=8, mfc="none", mec="0.35", mew=1.0, zorder=3,
                               label="the same fit of $c_{theory}$ (this depth)" if j == 0 else "_nolegend_")
    ax.set_xlim(float(s.min()), float(s.max()))
    ax.set_xlabel(S_LABEL)
    ax.legend(**LEGEND)
    return artists


def figure_depth_scales(t: Mapping[str, Table | None]) -> Figure | None:
    summary = _all(t, "summary")
    if not has_pairs(summary) or not np.isfinite(_col(summary, "c_star")).any():
        return None  # no constant-width theory (a width profile)
    names = ("activation", "sigma_b2")
    keys = [k for k in _keys(summary, names)
            if np.isfinite(_col(_subset(summary, _mask(summary, names, k)), "c_star")).any()][:MAX_PANELS]
    if not keys:
        return None
    varying, constant = _split_keys(keys, names)
    fig, axes = _grid(len(keys), (6.4, 4.6), ncols_max=2)
    for ax, key in zip(axes, keys):
        plot_depth_scales_run(ax, _subset(summary, _mask(summary, names, key)))
        if varying:
            ax.set_title(_describe([names[i] for i in varying], tuple(key[i] for i in varying)))
    fig.suptitle(_title("Depth scales $\\xi_c$, $\\xi_q$ against $\\sigma_w^2 N$ (Schoenholz et al. 2017, Fig. 2)",
                        names, keys, constant, _seeds_text(summary)))
    return fig


def depth_scales_panel(ax: Axes, t: Mapping[str, Table | None], **options) -> list[Artist]:
    summary = _all(t, "summary")
    if not has_pairs(summary):
        return []
    names = ("activation", "sigma_b2")
    return plot_depth_scales_run(ax, _subset(summary, _mask(summary, names, _keys(summary, names)[0])), **options)


# --- the Jacobian spectrum -------------------------------------------------------------------------------


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
        Fraction of λ at zero (≤ 10^-24·λ_max), averaged over seeds.
    """
    levels = np.asarray(levels, dtype=float)
    log10_q = np.atleast_2d(np.asarray(log10_q, dtype=float))
    curves, zeros = [], []
    for x in log10_q:
        top = np.nanmax(x[np.isfinite(x)]) if np.isfinite(x).any() else math.nan
        nonzero = np.isfinite(x) & (x > top - ZERO_DECADES)
        if not nonzero.any():
            continue
        k = int(np.argmax(nonzero))  # the first non-zero level (quantiles increase)
        zeros.append(float(levels[k - 1]) if k > 0 else 0.0)
        curves.append((x[k:], levels[k:]))
    if not curves:
        return np.empty(0), np.empty(0), math.nan
    lo = min(float(c[0][0]) for c in curves)
    hi = max(float(c[0][-1]) for c in curves)
    if hi - lo < 0.1:  # near a point mass
        lo, hi = 0.5 * (lo + hi) - 0.05, 0.5 * (lo + hi) + 0.05
    edges = np.linspace(lo, hi, bins + 1)
    cdf = np.mean([np.interp(edges, x, p, left=p[0], right=1.0) for x, p in curves], axis=0)
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
    fig.suptitle("Squared singular values λ of the input–output Jacobian: measured (each seed's quantiles, "
                 "pooled) and free probability\n" + " · ".join(p for p in (common, f"{seeds} seeds") if p))
    return fig


def spectrum_panel(ax: Axes, t: Mapping[str, Table | None], **options) -> list[Artist]:
    spectra = t.get("spectra")
    if spectra is None or not _nrows(spectra):
        return []
    names = _spectrum_rows(spectra) + ("depth",)
    rows = _subset(spectra, _mask(spectra, names, _keys(spectra, names)[0]))
    return plot_spectrum_run(ax, rows, t.get("summary"), **options)
