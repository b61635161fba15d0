"""Run-folder figures of pairs of inputs (``--input-corr``; issue 14, item 4a–c).

Drawn only for a run with ``--input-corr``; each builder returns None otherwise, so a plain run's
``plots/`` is what it was.

- ``c_map.png``        the c-map cˡ⁺¹ = M(cˡ) at q* from theory, one curve per swept σ_w²·N (at most
                       :data:`MAX_CURVES`), with the identity, the stable fixed points c* and the measured
                       (cˡ, cˡ⁺¹) of the layers where qˡ has settled at q*; one panel per (activation, σ_b²);
- ``correlations.png`` cˡ across layers, measured (seed mean ± 2 s.e.) on ``c_theory`` (dashed), one
                       curve per σ_w²·N, one panel per c⁰ (and per network shape);
- ``depth_scales.png`` ξ_c and ξ_q against σ_w²·N from theory on a fine grid (refined toward the
                       critical point, where ξ_c diverges), with the measured ξ̂_c ± 2 s.e. and the same
                       fit of ``c_theory`` (hollow); one panel per (activation, σ_b²);
- ``spectrum.png``     the Jacobian spectrum: :mod:`hevar.views.figures.spectra`.

The builders (``figure_*``) take the run's tables (a mapping of name → dict of columns, as
:func:`hevar.views.figures.render_run` and :meth:`hevar.results.run.Run.tables` give them) and return a
Figure or None; the ``plot_*`` functions draw one panel on a given Axes and return the artists; the
``*_panel`` functions are what :func:`hevar.views.figures.draw` calls. With several c⁰ the tables
``layers_all`` and ``summary_all`` hold every c⁰ (``layers`` and ``summary`` only the first).
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
                                        _subset, _title)

MAX_CURVES = 8  # σ_w²·N curves per panel (evenly chosen beyond)
MAX_PANELS = 12  # panels per figure (the first ones beyond)
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
    if not np.isfinite(_col(summary, "xi_c_hat")).all():  # say why a point is missing
        artists.append(ax.text(0.98, 0.80, "no $\\hat\\xi_c$ where fewer than 3 layers lie\nbetween "
                               "the seed noise and 0.1 from c*", transform=ax.transAxes, ha="right", va="top",
                               fontsize=8, color="0.35"))
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
