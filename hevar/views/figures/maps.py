"""Maps over two swept axes: the depth map (log₁₀ q̃¹/q̃ᴸ over depth × σ_w²·N) and the phase
diagram (χ̂ over σ_w²·N × σ_b², with the theory's critical line and the measured crossings)."""

from __future__ import annotations


import math

import numpy as np

from matplotlib import colors as mcolors
from matplotlib import patheffects
from matplotlib import transforms as mtransforms
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

from hevar.errors import UsageError
from hevar.results import store
from hevar.views.figures.phase_layers import COLOUR_BY, critical_branches, xi_c_grid, xi_c_norm
from hevar.views.figures.common import (OKABE_ITO, SEQUENTIAL_CMAP, DIVERGING_CMAP, S_LABEL, Table, _NOTE_SIZE, _col, _describe, _finite_unique, _grid, _keys, _mask, _nrows, _seeds_text, _split_keys, _subset, _title, _variant_names, closest_swept, interpolate_crossing)


# --- depth map -------------------------------------------------------------------------------------


def depth_map_norm(values: np.ndarray) -> mcolors.Normalize:
    """A diverging norm centred at 0: linear up to ±20, symmetric-log beyond (ratios of 10²⁰⁰ happen)."""
    finite = np.abs(np.asarray(values, dtype=float))
    finite = finite[np.isfinite(finite)]
    vmax = max(float(finite.max()) if finite.size else 1.0, 1.0)
    if vmax <= 20:
        return mcolors.Normalize(-vmax, vmax)
    return mcolors.SymLogNorm(linthresh=1.0, linscale=0.5, vmin=-vmax, vmax=vmax, base=10)


def _depth_map_ticks(norm: mcolors.Normalize) -> list[float]:
    if not isinstance(norm, mcolors.SymLogNorm):
        return list(MaxNLocator(nbins=8, symmetric=True).tick_values(norm.vmin, norm.vmax))
    decades = [10.0**k for k in range(0, int(math.log10(norm.vmax)) + 1)]
    return [-d for d in reversed(decades)] + [0.0] + decades


def _minus(text: str) -> str:
    return text.replace("-", "\u2212")


def _summary_grid(summary: Table, row_key: str, value: np.ndarray):
    """Summary rows as cells: columns the swept σ_w²·N, rows the values of ``row_key``.

    Returns (σ_w²·N values, row values, ``value`` per cell — nan where no row —, and whether each
    cell's status is not "ok")."""
    s_col, r_col, status = _col(summary, "sigma_w2_n"), _col(summary, row_key), _col(summary, "status")
    swept, rows = _finite_unique(s_col), _finite_unique(r_col)
    grid = np.full((rows.size, swept.size), np.nan)
    not_ok = np.zeros_like(grid, dtype=bool)
    for r, s, v, st in zip(r_col, s_col, value, status):
        if np.isfinite(r) and np.isfinite(s):
            i, j = np.searchsorted(rows, r), np.searchsorted(swept, s)
            grid[i, j] = v
            not_ok[i, j] = st not in ("ok", "")
    return swept, rows, grid, not_ok


def plot_depth_map(
    ax: Axes,
    summary: Table,
    *,
    cmap: mcolors.Colormap = DIVERGING_CMAP,
    norm: mcolors.Normalize | None = None,
    annotate: bool | None = None,
) -> list[Artist]:
    """Draw log₁₀(q̃¹/q̃ᴸ) over depth (rows) × σ_w²·N (columns) for one (activation, width, σ_b²).

    Positive (red) means the error grows toward the input (exploding gradients), negative (blue)
    that it shrinks (vanishing). Rows and columns are equally spaced (one per swept value, labelled
    with it). The critical σ_w²·N is outlined when it was swept, else a dashed line at its
    interpolated position. Cells with no value are grey, configurations whose status is not "ok"
    are hatched. With ``annotate`` (default: at most 14 columns and 120 cells) each cell shows its value.
    """
    artists: list[Artist] = []
    swept, depths, grid, not_ok = _summary_grid(summary, "depth", _col(summary, "log10_q_tilde_ratio"))
    if not swept.size or not depths.size:
        return artists
    norm = norm or depth_map_norm(grid)
    cmap = cmap.with_extremes(bad="0.85")
    x_edges, y_edges = np.arange(swept.size + 1) - 0.5, np.arange(depths.size + 1) - 0.5
    mesh = ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(grid), cmap=cmap, norm=norm, edgecolors="white", lw=1.0)
    artists.append(mesh)
    for i, j in zip(*np.nonzero(not_ok)):
        artists.append(ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1.0, 1.0, fill=False, hatch="///", ec="0.25", lw=0)))
    if annotate is None:
        annotate = swept.size <= 14 and grid.size <= 120
    if annotate:
        for i, j in np.ndindex(grid.shape):
            v = grid[i, j]
            if not np.isfinite(v):
                continue
            r, g, b, _ = cmap(norm(v))
            ink = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.45 else "black"
            text = f"{v:.1f}" if abs(v) < 9.95 else f"{v:.0f}"
            text = text.lstrip("-") if float(text) == 0 else text  # no "−0.0"
            artists.append(ax.text(j, i, _minus(text), ha="center", va="center", fontsize=_NOTE_SIZE, color=ink))
    activation = str(_col(summary, "activation")[0])
    for crit in _finite_unique(_col(summary, "sigma_w2_n_crit")):
        name = "2/N" if activation == "relu" and abs(crit - 2.0) < 1e-9 else f"{crit:.3g}"
        hit = closest_swept(swept, crit)
        if hit is not None:
            j = int(np.searchsorted(swept, hit))
            artists.append(ax.add_patch(Rectangle((j - 0.5, -0.5), 1.0, depths.size, fill=False, ec="black", lw=2.5,
                                                  zorder=4, clip_on=False)))
            x = j
        elif swept.min() <= crit <= swept.max():
            x = float(np.interp(crit, swept, np.arange(swept.size)))
            artists.append(ax.axvline(x, color="black", lw=2.0, ls="--", zorder=4))
        else:
            continue
        artists.append(ax.annotate(f"critical {name}", xy=(x, 1.0), xycoords=("data", "axes fraction"),
                                   xytext=(0, 4), textcoords="offset points", ha="center", va="bottom",
                                   fontsize=_NOTE_SIZE + 1, fontweight="bold"))
    ax.set_yticks(np.arange(depths.size), [str(int(d)) for d in depths])
    ax.set_xticks(np.arange(swept.size), [f"{s:g}" for s in swept], rotation=45 if swept.size > 12 else 0)
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set_ylim(y_edges[0], y_edges[-1])
    ax.tick_params(length=0)
    ax.set_xlabel(S_LABEL)
    ax.set_ylabel(r"depth $L$")
    for spine in ax.spines.values():
        spine.set_visible(False)
    return artists


def _figure_depth_map(summary: Table) -> Figure | None:
    names = ("activation", "width", "sigma_b2") + _variant_names(summary)
    keys = [k for k in _keys(summary, names)
            if _finite_unique(_col(summary, "depth")[_mask(summary, names, k)]).size > 1]
    if not keys or not np.isfinite(_col(summary, "log10_q_tilde_ratio")).any():
        return None
    varying, constant = _split_keys(keys, names)
    norm = depth_map_norm(_col(summary, "log10_q_tilde_ratio"))
    n_s = max(_finite_unique(_col(summary, "sigma_w2_n")).size, 4)
    n_depths = max(_finite_unique(_col(summary, "depth")).size, 2)
    fig, axes = _grid(len(keys), (min(0.75 * n_s + 1.2, 12.0), 0.55 * n_depths + 1.8), extra=(1.6, 0.5), ncols_max=1)
    for ax, key in zip(axes, keys):
        plot_depth_map(ax, _subset(summary, _mask(summary, names, key)), norm=norm)
        if varying:
            ax.set_title(_describe([names[i] for i in varying], tuple(key[i] for i in varying)), pad=26)
    colorbar = fig.colorbar(ScalarMappable(norm=norm, cmap=DIVERGING_CMAP), ax=axes, aspect=15, pad=0.02,
                            ticks=_depth_map_ticks(norm))
    colorbar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _minus(f"{v:g}")))
    colorbar.set_label(r"$\log_{10}(\tilde q^{\,1}/\tilde q^{\,L})$" + "\n> 0: error grows toward the input")
    status = np.asarray(_col(summary, "status"), dtype=object)
    if ((status != "ok") & (status != "")).any():
        fig.text(0.01, 0.005, "hatched: status not ok · grey: no value", fontsize=_NOTE_SIZE, ha="left", va="bottom")
    fig.suptitle(_title(r"Error growth through the net: $\log_{10}(\tilde q^{\,1}/\tilde q^{\,L})$", names, keys,
                        constant, _seeds_text(summary)))
    return fig


# --- phase diagram ---------------------------------------------------------------------------------

PHASE_MIN_SIGMA_B2 = 2  # σ_b² values an activation needs for phase.png
PHASE_MIN_SIGMA_W2 = 3  # σ_w²·N values it needs
_CHI_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.8, 1.0, 1.25, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)


def critical_line(theory: Table, activation: str | None = None,
                  summary: Table | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The theory's critical line χ₁ = 1 in the (σ_w²·N, σ_b²) plane, from a run folder's theory data.

    For each σ_b² in ``theory`` (``theory.csv`` rows, restricted to ``activation`` when given), χ₁
    is taken along its σ_w²·N grid and the first crossing of 1 is interpolated linearly between the
    two grid points around it (:func:`~hevar.views.figures.common.interpolate_crossing`): exact for homogeneous φ,
    where χ₁ ∝ σ_w²·N, and within ~h²·|χ₁''| for a grid step h where χ₁ crosses 1 at an angle
    (~1e-4 for tanh at σ_b² > 0 on the sweep's 121-point grid). Where χ₁ *jumps* across 1 (theory
    kind "jump": no σ_w²·N has χ₁ = 1 at the fixed point reached) the point lies inside the jump's
    grid cell, which is still the boundary between the phases. Where χ₁ only touches 1 (tanh at
    σ_b² = 0: χ₁ = s below 1, 1 + O((s − 1)²) above) the interpolation is off by up to a grid step;
    give ``summary`` (``summary.csv`` rows) and its exact ``sigma_w2_n_crit`` (Brent's method on the
    theory, see :func:`hevar.meanfield.theory.critical_sigma_w2_n`) replaces the interpolation wherever it is
    finite.

    Parameters
    ----------
    theory : dict of column arrays
        Rows of ``theory.csv``: ``activation``, ``sigma_b2``, ``sigma_w2_n``, ``chi1``.
    activation : str, optional
        Keep only this activation's rows.

    Returns
    -------
    sigma_b2 : array, shape (K,)
        The distinct σ_b² of the rows, increasing.
    sigma_w2_n : array, shape (K,)
        σ_w²·N where χ₁ = 1 at that σ_b²; nan where χ₁ does not reach 1 on the grid.
    """
    rows = theory if activation is None else _subset(theory, _col(theory, "activation") == activation)
    b_col, s_col, chi_col = _col(rows, "sigma_b2"), _col(rows, "sigma_w2_n"), _col(rows, "chi1")
    biases = _finite_unique(b_col)
    line = np.full(biases.shape, np.nan)
    for i, b in enumerate(biases):
        at = np.isclose(b_col, b, rtol=1e-12, atol=0.0)
        line[i] = interpolate_crossing(s_col[at], chi_col[at])
    if summary is not None:
        rows = summary if activation is None else _subset(summary, _col(summary, "activation") == activation)
        for b, crit in zip(_col(rows, "sigma_b2"), _col(rows, "sigma_w2_n_crit")):
            hit = np.flatnonzero(np.isclose(biases, b, rtol=1e-12, atol=0.0))
            if hit.size and np.isfinite(crit):
                line[hit[0]] = crit
    return biases, line


def phase_norm(log_chi: np.ndarray) -> mcolors.Normalize:
    """A diverging norm for ln χ̂, symmetric about 0 (χ̂ = 1, white), at least ±ln 1.25 wide."""
    finite = np.abs(np.asarray(log_chi, dtype=float))
    finite = finite[np.isfinite(finite)]
    vmax = max(float(finite.max()) if finite.size else 0.0, math.log(1.25))
    return mcolors.Normalize(-vmax, vmax)


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges halfway between sorted centres, the end cells as wide as their neighbours."""
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mid = 0.5 * (centres[1:] + centres[:-1])
    return np.concatenate([[centres[0] - (mid[0] - centres[0])], mid, [centres[-1] + (centres[-1] - mid[-1])]])


def plot_phase(
    ax: Axes,
    summary: Table,
    theory: Table | None = None,
    *,
    cmap: mcolors.Colormap = DIVERGING_CMAP,
    norm: mcolors.Normalize | None = None,
    annotate: bool | None = None,
    crossings: Table | None = None,
    colour_by: str = "chi_hat",
    fixed_point_line: bool = True,
) -> list[Artist]:
    """Draw the measured χ̂ (or the theory's ξ_c) over the (σ_w²·N, σ_b²) plane for one activation (and depth, width).

    Each swept (σ_w²·N, σ_b²) is a cell coloured by ln χ̂ on a diverging map centred at χ̂ = 1
    (blue: ordered, q̃ shrinks toward the input; red: chaotic, it grows); cells span halfway to
    their neighbours, so the axes are true coordinates. On top: the theory's critical line χ₁ = 1
    from ``theory`` (:func:`critical_line`, a point per σ_b² of the run, joined), and per σ_b² the
    measured crossing χ̂ = 1 from ``crossings`` (``crossings.csv``: its 95 % interval, or the bracket of a jump).
    The ordered and chaotic sides are named above the axes, as in Schoenholz et al. (2017), Fig. 1.
    Cells with no χ̂ are grey, configurations whose status is not "ok" hatched. With ``annotate``
    (default: at most 160 cells) each cell shows its χ̂.

    With ``fixed_point_line`` (default) the whole critical line of the theory is drawn too, traced by
    its fixed point q* (:func:`hevar.meanfield.critical.critical_line`: s = 1/G(q*),
    σ_b² = q* − V(q*)/G(q*)), solid where that fixed point is stable (q-map slope V'/G < 1) and dashed
    where it is unstable (a network is pushed away from it); see :func:`critical_branches`. It is
    empty for positively homogeneous φ (relu: the vertical line s = 2 of ``theory``).

    ``colour_by="xi_c"`` colours the cells instead by the correlation depth scale ξ_c = −1/ln χ_c of
    the theory at each cell (:func:`hevar.meanfield.correlations.correlation_terms`, from q_in = 1) on a
    log scale (:func:`xi_c_grid`); cells where ξ_c = ∞ (critical, or q* at 0 or ∞) take the colour map's
    "over" colour (black) and read "∞".

    Parameters
    ----------
    ax : Axes
    summary : dict of column arrays
        Rows of ``summary.csv`` for one activation, depth and width.
    theory : dict of column arrays, optional
        Rows of ``theory.csv`` (any activations; this one's are used).
    colour_by : {"chi_hat", "xi_c"}
        What the cells show: the measured χ̂ (default) or the theory's ξ_c.
    fixed_point_line : bool
        Draw both branches of the critical line (stable solid, unstable dashed).
    """
    if colour_by not in COLOUR_BY:
        raise UsageError(f"The 'colour_by' parameter must be one of {', '.join(COLOUR_BY)}. Got {colour_by!r} instead.",
                         param="colour_by")
    artists: list[Artist] = []
    s_col, b_col = _col(summary, "sigma_w2_n"), _col(summary, "sigma_b2")
    chi_col, status = _col(summary, "chi_hat"), _col(summary, "status")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_chi = np.where(chi_col > 0, np.log(np.where(chi_col > 0, chi_col, 1.0)), np.nan)
    swept, biases, grid, not_ok = _summary_grid(summary, "sigma_b2", log_chi)
    if not swept.size or not biases.size:
        return artists
    activation = str(_col(summary, "activation")[0])
    by_xi = colour_by == "xi_c"
    if by_xi:
        grid = np.where(np.isfinite(grid), xi_c_grid(activation, swept, biases), np.nan)
        norm = norm or xi_c_norm(grid)
        cmap = (SEQUENTIAL_CMAP if cmap is DIVERGING_CMAP else cmap).with_extremes(bad="0.85", over="black")
    else:
        norm = norm or phase_norm(grid)
        cmap = cmap.with_extremes(bad="0.85")
    x_edges, y_edges = _edges(swept), _edges(biases)
    # ξ_c = ∞ is drawn in the "over" colour: a finite stand-in above the norm's top (a mesh masks inf)
    shown = np.where(grid == math.inf, 10.0 * norm.vmax, grid) if by_xi else grid
    artists.append(ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(shown), cmap=cmap, norm=norm,
                                 edgecolors="white", lw=0.8))
    for i, j in zip(*np.nonzero(not_ok)):
        artists.append(ax.add_patch(Rectangle((x_edges[j], y_edges[i]), x_edges[j + 1] - x_edges[j],
                                              y_edges[i + 1] - y_edges[i], fill=False, hatch="///", ec="0.25", lw=0)))
    if annotate is None:
        annotate = grid.size <= 160
    if annotate:
        for i, j in np.ndindex(grid.shape):
            if np.isfinite(grid[i, j]) or (by_xi and grid[i, j] == math.inf):
                r, g, b, _ = cmap(norm(grid[i, j])) if np.isfinite(grid[i, j]) else cmap(math.inf)
                ink = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.45 else "black"
                if by_xi:
                    text = "∞" if grid[i, j] == math.inf else f"{grid[i, j]:.2g}" if grid[i, j] < 99.5 else \
                        f"{grid[i, j]:.0f}"
                else:
                    chi = math.exp(grid[i, j])
                    text = f"{chi:.2f}" if chi < 9.995 else f"{chi:.3g}"
                # in the upper part of the cell: the lines and markers run through the centres
                y = biases[i] + 0.3 * (y_edges[i + 1] - biases[i])
                artists.append(ax.text(swept[j], y, text, ha="center", va="center", fontsize=_NOTE_SIZE - 1,
                                       color=ink))

    handles: list[Artist] = []
    halo = [patheffects.Stroke(linewidth=4.2, foreground="white"), patheffects.Normal()]
    branches = critical_branches(activation, x_edges, y_edges) if fixed_point_line else []
    fixed_point_branches = bool(branches)
    if branches:
        for s_seg, b_seg, stable in branches:
            first = not any(getattr(h, "_hevar_stable", None) is stable for h in handles)
            (seg,) = ax.plot(s_seg, b_seg, color=OKABE_ITO[2], lw=1.7, ls="-" if stable else (0, (3, 2)), zorder=5.5,
                             path_effects=halo, label=("$\\chi_1 = 1$ at a stable fixed point" if stable else
                                                       "$\\chi_1 = 1$ at an unstable fixed point")
                             if first else "_nolegend_")
            seg._hevar_stable = stable
            artists.append(seg)
            if first:
                handles.append(seg)
    if theory is not None:
        b_line, s_line = critical_line(theory, activation, summary)
        keep = np.isfinite(s_line)
        if keep.any():
            # beside the whole critical line, the run's σ_b² are points (joining them would cut its curve)
            style = (dict(ls="none", ms=6.5, mfc="black", mec="white", mew=1.2, zorder=6) if fixed_point_branches
                     else dict(ls="-", ms=4, path_effects=halo, zorder=5))
            (line,) = ax.plot(s_line[keep], b_line[keep], color="black", lw=2.2, marker="o",
                              solid_capstyle="round", label=r"theory $\chi_1 = 1$ (depth $\to\infty$)", **style)
            artists.append(line)
            handles.append(line)
    found, jumps, fitted = [], [], []
    chi_theory = _col(summary, "chi_theory")
    rows = []
    if crossings is not None and "curve_id" in summary:
        ids = set(summary["curve_id"])
        rows = [{k: v[i] for k, v in crossings.items()} for i in range(_nrows(crossings)) if crossings["curve_id"][i] in ids]
    for b in biases:
        at = np.isclose(b_col, b, rtol=1e-12, atol=0.0) & np.isin(status, ("ok", ""))
        mine = [r for r in rows if np.isclose(r["sigma_b2"], b, rtol=1e-12, atol=0.0)]
        for r in mine:
            if r["kind"] == "crossing":
                found.append((r["sigma_w2_n_cross"], b, r["sigma_w2_n_cross_lo"], r["sigma_w2_n_cross_hi"]))
            elif r["kind"] == "jump":
                jumps.append((r["bracket_lo"], r["bracket_hi"], b))
        theory_cross = [r["sigma_w2_n_cross_theory"] for r in mine]
        fitted.append(theory_cross[0] if theory_cross else interpolate_crossing(s_col[at], chi_theory[at]))
    fitted = np.array(fitted)
    if np.isfinite(fitted).sum() >= 1:
        (dashed,) = ax.plot(fitted, biases, color="0.15", lw=1.4, ls=(0, (4, 2.5)), zorder=5, path_effects=halo,
                            label="theory, the same fit as $\\hat\\chi$ (this depth)")
        artists.append(dashed)
        handles.append(dashed)
    if found:
        s_m, b_m, lo_m, hi_m = (np.array(v) for v in zip(*found))
        marks = ax.errorbar(s_m, b_m, xerr=[s_m - lo_m, hi_m - s_m], fmt="D", ms=6.5, mfc="#E69F00",
                            mec="black", mew=1.0, ecolor="black", elinewidth=1.2, capsize=3, zorder=6,
                            label=r"measured $\hat\chi = 1$ (95 % interval)")
        artists.append(marks)
        handles.append(marks)
    for k, (lo, hi, b) in enumerate(jumps):
        (bar,) = ax.plot([lo, hi], [b, b], color="black", lw=4.0, alpha=0.55, solid_capstyle="butt", zorder=6,
                         label=r"measured $\hat\chi$ jumps across 1 here" if k == 0 else "_nolegend_")
        artists.append(bar)
        if k == 0:
            handles.append(bar)
    wide = swept.size >= 8
    for x, ha, text in ((0.0, "left", "◀ ordered: $\\chi_1 < 1$" + (", gradients vanish" if wide else "")),
                        (1.0, "right", "chaotic: $\\chi_1 > 1$" + (", gradients explode" if wide else "") + " ▶")):
        artists.append(ax.text(x, 1.015, text, transform=ax.transAxes, ha=ha, va="bottom", fontsize=_NOTE_SIZE + 1,
                               fontweight="bold", color=DIVERGING_CMAP(0.1 if ha == "left" else 0.9)))
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set_ylim(y_edges[0], y_edges[-1])
    ax.set_xticks(swept, [f"{s:g}" for s in swept], rotation=45 if swept.size > 10 else 0)
    ax.set_yticks(biases, [f"{b:g}" for b in biases])
    ax.tick_params(length=0)
    ax.set_xlabel(S_LABEL)
    ax.set_ylabel(r"$\sigma_b^2$")
    for spine in ax.spines.values():
        spine.set_visible(False)
    if handles:
        # below the x-axis label, a fixed distance in inches whatever the panel's height
        below = mtransforms.ScaledTranslation(0, -(0.85 if swept.size > 10 else 0.6), ax.figure.dpi_scale_trans)
        artists.append(ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                                 bbox_transform=ax.transAxes + below, frameon=False, ncols=min(len(handles), 3 if wide else 2)))
    return artists


def _phase_ticks(norm: mcolors.Normalize) -> list[float]:
    # 0.8 and 1.25 sit a ninth of ln 4 from 1: on a bar spanning more than ×/÷ 2.5 their labels collide with 1's
    crowded = max(-norm.vmin, norm.vmax) > math.log(2.5)
    ticks = [math.log(c) for c in _CHI_TICKS if norm.vmin - 1e-12 <= math.log(c) <= norm.vmax + 1e-12
             and not (crowded and c in (0.8, 1.25))]
    return ticks if len(ticks) >= 3 else [norm.vmin, 0.0, norm.vmax]


def _figure_phase(summary: Table, theory: Table | None, crossings: Table | None = None,
                  colour_by: str = "chi_hat") -> Figure | None:
    """phase.png: one panel per activation (and network shape) with ≥ 2 σ_b² and ≥ 3 σ_w²·N, coloured by
    the measured χ̂ or, with ``colour_by="xi_c"``, by the theory's ξ_c (see :func:`plot_phase`)."""
    names = tuple(c for c in store.KEY_COLUMNS if c not in ("sigma_w2", "sigma_w2_n", "sigma_b2"))
    keys = []
    for key in _keys(summary, names):
        rows = _subset(summary, _mask(summary, names, key))
        if (_finite_unique(_col(rows, "sigma_b2")).size >= PHASE_MIN_SIGMA_B2
                and _finite_unique(_col(rows, "sigma_w2_n")).size >= PHASE_MIN_SIGMA_W2
                and np.isfinite(_col(rows, "chi_hat")).any()):
            keys.append(key)
    if not keys:
        return None
    varying, constant = _split_keys(keys, names)
    by_xi = colour_by == "xi_c"
    if by_xi:
        norm = xi_c_norm(np.concatenate([xi_c_grid(str(k[names.index("activation")]),
                                                   _finite_unique(_col(r, "sigma_w2_n")),
                                                   _finite_unique(_col(r, "sigma_b2"))).ravel()
                                         for k in keys for r in [_subset(summary, _mask(summary, names, k))]]))
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            norm = phase_norm(np.log(np.concatenate([_col(_subset(summary, _mask(summary, names, k)), "chi_hat")
                                                     for k in keys])))
    n_s = max(_finite_unique(_col(summary, "sigma_w2_n")).size, 6)
    n_b = max(_finite_unique(_col(summary, "sigma_b2")).size, 2)
    fig, axes = _grid(len(keys), (min(0.62 * n_s + 1.4, 12.0), min(0.48 * n_b + 1.6, 8.0)), extra=(2.6, 0.6),
                      ncols_max=1)
    for ax, key in zip(axes, keys):
        plot_phase(ax, _subset(summary, _mask(summary, names, key)), theory, norm=norm, crossings=crossings,
                   colour_by=colour_by)
        if varying:
            ax.set_title(_describe([names[i] for i in varying], tuple(key[i] for i in varying)), pad=22)
    if by_xi:
        colorbar = fig.colorbar(ScalarMappable(norm=norm, cmap=SEQUENTIAL_CMAP.with_extremes(over="black")), ax=axes,
                                aspect=18, pad=0.02, extend="max")
        colorbar.set_label("theory $\\xi_c = -1/\\ln\\chi_c$ (layers, log scale)\nblack: $\\xi_c = \\infty$")
    else:
        colorbar = fig.colorbar(ScalarMappable(norm=norm, cmap=DIVERGING_CMAP), ax=axes, aspect=18, pad=0.02,
                                ticks=_phase_ticks(norm))
        colorbar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{math.exp(v):.3g}"))
        colorbar.set_label(r"measured $\hat\chi$ (log scale)" + "\n< 1 ordered · > 1 chaotic")
    status = np.asarray(_col(summary, "status"), dtype=object)
    if ((status != "ok") & (status != "")).any():
        fig.text(0.01, 0.005, "hatched: status not ok · grey: no value", fontsize=_NOTE_SIZE, ha="left", va="bottom")
    what = (r"Phase diagram: the correlation depth scale $\xi_c$ (theory) over ($\sigma_w^2 N$, $\sigma_b^2$)" if by_xi
            else r"Phase diagram: measured per-layer factor $\hat\chi$ of $\tilde q^{\,l}$ over "
                 r"($\sigma_w^2 N$, $\sigma_b^2$)")
    fig.suptitle(_title(what, names, keys, constant, _seeds_text(summary)))
    return fig


