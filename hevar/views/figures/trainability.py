"""trainability.png: test accuracy over (σ_w²·N, depth) with the lines L = k·ξ_c (Schoenholz et al. 2017, Fig. 1).

Drawn from ``training_summary.csv`` alone (a table as :func:`hevar.results.store.read_table` gives
it): each cell is the seed mean of the final test accuracy of one (σ_w²·N, depth), coloured from
chance (1/classes) to 1. Cells are centred on the trained values; their edges lie halfway between
neighbours (in log depth where the depths span a factor ≥ 4, drawn on a log axis).

Over the cells, the mean-field depth scale of correlations ξ_c(σ_w²·N) =
−1/ln χ_c for the run's activation and σ_b² (:func:`hevar.meanfield.correlations.correlation_terms`,
χ_c = ∂c^{l+1}/∂c^l at the fixed point c*), as the curves L = k·ξ_c for k in ``ks`` (1, 2 and 6 by
default: Schoenholz et al. find networks trainable for L ≲ 6ξ_c). ξ_c diverges at the critical
σ_w²·N, so each curve rises off the top of the axes there; the critical value is marked. The theory
is the plain MLP's; for another architecture the lines are left out and the title says so.
"""

from __future__ import annotations

import functools
import math
from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

Table = Mapping[str, np.ndarray]
FACETS = ("activation", "arch", "width", "sigma_b2", "dist")


def _edges(values: np.ndarray, log: bool) -> np.ndarray:
    v = np.log(values) if log else values.astype(float)
    if len(v) == 1:
        mid = np.array([v[0] - 0.5, v[0] + 0.5]) if not log else np.array([v[0] - 0.3, v[0] + 0.3])
    else:
        inner = (v[1:] + v[:-1]) / 2
        mid = np.concatenate([[v[0] - (inner[0] - v[0])], inner, [v[-1] + (v[-1] - inner[-1])]])
    return np.exp(mid) if log else mid


def line_grid(lo: float, hi: float, crit: float, ordered: int = 100, chaotic: int = 18) -> np.ndarray:
    """σ_w²·N at which to evaluate ξ_c: dense on the ordered side (c* = 1, cheap), sparser on the
    chaotic side (each point solves for c* < 1), both clustered quadratically towards the critical point."""
    if not (math.isfinite(crit) and lo < crit < hi):
        return np.linspace(lo, hi, ordered)
    left = crit - (crit - lo) * np.linspace(1, 0, ordered) ** 2
    right = crit + (hi - crit) * np.linspace(0, 1, chaotic) ** 2
    return np.concatenate([left, right[1:]])


@functools.lru_cache(maxsize=4096)
def _xi_c(act_name: str, sigma_b2: float, s: float) -> float:
    from hevar.meanfield.activations import parse_activation
    from hevar.meanfield.correlations import correlation_terms

    try:
        return float(correlation_terms(parse_activation(act_name), s, sigma_b2).xi_c)
    except (ValueError, ArithmeticError):
        return math.nan


def xi_c_curve(act_name: str, sigma_b2: float, s_grid: Sequence[float]) -> np.ndarray:
    """ξ_c at each σ_w²·N of ``s_grid`` (inf at the critical point, nan where the theory fails)."""
    return np.array([_xi_c(act_name, float(sigma_b2), float(s)) for s in s_grid])


def plot_trainability(ax: Axes, summary: Table, ks: Sequence[float] = (1, 2, 6), *, cmap: str = "viridis",
                      colorbar: bool = True) -> list:
    """Draw the heatmap of ``summary``'s final test accuracy over (σ_w²·N, depth) and the lines
    L = k·ξ_c, k in ``ks``, on ``ax``; the rows must be one facet (activation, arch, width, σ_b², dist).
    Returns the artists."""
    s_vals = np.unique(np.asarray(summary["sigma_w2_n"], dtype=float))
    d_vals = np.unique(np.asarray(summary["depth"], dtype=float))
    grid = np.full((len(d_vals), len(s_vals)), np.nan)
    for s, d, acc in zip(summary["sigma_w2_n"], summary["depth"], summary["test_acc"]):
        grid[np.searchsorted(d_vals, d), np.searchsorted(s_vals, s)] = acc
    log_depth = len(d_vals) > 1 and d_vals[-1] / d_vals[0] >= 4
    chance = float(np.nanmin(summary["chance"])) if "chance" in summary and len(summary["chance"]) else 0.0
    x_edges, y_edges = _edges(s_vals, False), _edges(d_vals, log_depth)
    mesh = ax.pcolormesh(x_edges, y_edges, grid, cmap=cmap, vmin=chance, vmax=1.0, shading="flat")
    artists: list = [mesh]
    if log_depth:
        ax.set_yscale("log")
        ax.set_yticks(d_vals, [f"{d:g}" for d in d_vals])
        ax.minorticks_off()
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set_ylim(y_edges[0], y_edges[-1])
    act, arch, sigma_b2 = str(summary["activation"][0]), str(summary["arch"][0]), float(summary["sigma_b2"][0])
    if arch == "mlp" and len(ks):
        from hevar.meanfield import theory
        from hevar.meanfield.activations import parse_activation

        crit = theory.critical_sigma_w2_n(parse_activation(act), sigma_b2).sigma_w2_n
        s_fine = line_grid(x_edges[0], x_edges[-1], crit)
        xi = xi_c_curve(act, sigma_b2, s_fine)
        styles = ("--", "-.", ":", (0, (5, 1, 1, 1)))
        for i, k in enumerate(ks):
            (line,) = ax.plot(s_fine, np.minimum(k * xi, 1e6), color="white", lw=1.6, ls=styles[i % len(styles)],
                              label=f"L = {k:g}·ξ_c")
            artists.append(line)
        if math.isfinite(crit) and x_edges[0] <= crit <= x_edges[-1]:
            artists.append(ax.axvline(crit, color="tab:red", lw=1, ls=":", label=f"critical σ_w²·N = {crit:.3g}"))
        artists.append(ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=len(ks) + 1,
                                 facecolor="0.35", framealpha=1, labelcolor="white"))  # below the axes: cells stay visible
    ax.set_xlabel("σ_w²·N")
    ax.set_ylabel("depth L")
    ax.set_title(f"{act}, σ_b² = {sigma_b2:g}" + ("" if arch == "mlp" else f", {arch} (ξ_c lines: MLP theory only)"),
                 fontsize=10)
    if colorbar:
        cb = ax.figure.colorbar(mesh, ax=ax)
        cb.set_label(f"final test accuracy (chance {chance:.2g})")
        artists.append(cb)
    return artists


def facets(summary: Table) -> list[np.ndarray]:
    """Row masks of ``summary``, one per (activation, arch, width, σ_b², dist), in first-seen order."""
    keys = list(zip(*(np.asarray(summary[k]) for k in FACETS)))
    seen = list(dict.fromkeys(keys))
    return [np.array([k == key for k in keys]) for key in seen]


def trainability_figure(summary: Table, ks: Sequence[float] = (1, 2, 6), title: str = "") -> Figure | None:
    """The run folder's trainability.png: one heatmap per facet that has ≥ 2 depths and ≥ 2 σ_w²·N (None if none)."""
    panels = []
    for mask in facets(summary):
        sub = {k: np.asarray(v)[mask] for k, v in summary.items()}
        if len(np.unique(sub["depth"])) >= 2 and len(np.unique(sub["sigma_w2_n"])) >= 2:
            panels.append(sub)
    if not panels:
        return None
    fig = Figure(figsize=(6.4 * len(panels), 4.6), dpi=110, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, sub in zip(axes, panels):
        plot_trainability(ax, sub, ks)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
