"""Per-layer traces: qˡ, q̃ˡ and ‖∂J/∂Wˡ‖² against layer l, one curve per swept σ_w²·N.

Drawn from the ``log10_*`` columns on a linear axis with decade labels (10ᵏ): at depth 2000 q̃ˡ
overflows float64 and the linear column is empty, while its log₁₀ stays finite. The curve at the
critical σ_w²·N is drawn thick and named by its swept value.
"""

from __future__ import annotations


import numpy as np
from matplotlib import colors as mcolors
from matplotlib import patheffects
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from hevar.views.figures.common import (LAYER_LABEL, QUANTITIES, SEQUENTIAL_CMAP, S_LABEL, Table, _col, _config_keys, _decade_axis, _describe, _finite_unique, _grid, _keys, _mask, _nrows, _seeds_text, _split_keys, _status_notes, _subset, _title, closest_swept)


# --- per-layer traces ------------------------------------------------------------------------------


def _log10_column(layers: Table, quantity: str, suffix: str) -> np.ndarray:
    """``log10_<quantity><suffix>``, or log₁₀ of the linear column where the file has no log column
    (the forward q has no ``log10_q_lo``: qˡ never leaves float64's range by much)."""
    name = f"log10_{quantity}{suffix}"
    if name in layers:
        return layers[name]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(_col(layers, f"{quantity}{suffix}"))


def plot_layer_traces(
    ax: Axes,
    layers: Table,
    summary: Table,
    quantity: str = "q_tilde",
    *,
    cmap: mcolors.Colormap = SEQUENTIAL_CMAP,
    norm: mcolors.Normalize | None = None,
) -> list[Artist]:
    """Draw log₁₀ of a per-layer quantity against layer for one configuration.

    One solid curve per swept σ_w²·N (mean over seeds, coloured by ``cmap(norm(σ_w²·N))``), the
    16th–84th percentile band across seeds, the mean-field prediction dashed, and the curve at the
    critical σ_w²·N (``sigma_w2_n_crit``) drawn thick with a black edge and labelled at its end.

    Parameters
    ----------
    ax : Axes
    layers, summary : dict of column arrays
        Rows of ``layers.csv`` / ``summary.csv`` for one (activation, depth, width, σ_b²).
    quantity : {"q", "q_tilde", "grad_norm2"}
        Draws ``log10_<quantity>``, ``_lo``, ``_hi`` and ``_theory``.
    """
    artists: list[Artist] = []
    s_column = _col(layers, "sigma_w2_n")
    swept = _finite_unique(s_column)
    if not swept.size:
        return artists
    norm = norm or mcolors.Normalize(swept.min(), swept.max())
    crit_values = _finite_unique(_col(summary, "sigma_w2_n_crit"))
    s_crit = float(crit_values[0]) if crit_values.size else np.nan
    emphasised = closest_swept(swept, s_crit)
    activation = str(_col(layers, "activation")[0]) if _nrows(layers) else ""

    y_all = []
    critical_line = None
    for s in swept:
        rows = s_column == s
        order = np.argsort(_col(layers, "layer")[rows])
        layer = _col(layers, "layer")[rows][order]
        y, lo, hi, theory = (_log10_column(layers, quantity, suffix)[rows][order] for suffix in ("", "_lo", "_hi", "_theory"))
        color = cmap(norm(s))
        is_critical = emphasised is not None and s == emphasised
        band_ok = np.isfinite(lo) & np.isfinite(hi)
        if band_ok.any():
            artists.append(ax.fill_between(layer, lo, hi, where=band_ok, color=color, alpha=0.22, lw=0, zorder=1))
        if np.isfinite(y).any():
            effects = [patheffects.Stroke(linewidth=5.0, foreground="black"), patheffects.Normal()] if is_critical else None
            (line,) = ax.plot(layer, y, color=color, lw=3.0 if is_critical else 1.6, zorder=4 if is_critical else 2,
                              path_effects=effects, solid_capstyle="butt")
            artists.append(line)
            if is_critical:
                critical_line = line
        if np.isfinite(theory).any():
            (dashed,) = ax.plot(layer, theory, color="black", lw=1.0, ls=(0, (4, 3)), alpha=0.75, zorder=5)
            artists.append(dashed)
        y_all.extend(v[np.isfinite(v)] for v in (y, lo, hi, theory))

    values = np.concatenate(y_all) if y_all else np.array([])
    if values.size:
        lo, hi = values.min(), values.max()
        mid = 0.5 * (lo + hi)
        lo, hi = min(lo, mid - 1.0), max(hi, mid + 1.0)  # at least two decades, so the ticks say something
        pad = 0.06 * (hi - lo)
        ax.set_ylim(lo - pad, hi + pad)
    _decade_axis(ax.yaxis)
    ax.set_xlabel(LAYER_LABEL)
    ax.set_ylabel(QUANTITIES[quantity][0] if quantity in QUANTITIES else quantity)
    ax.grid(True, color="0.9", lw=0.6, zorder=0)

    # The critical curve's label and any status notes go in one in-panel legend placed where the
    # curves are not ("best"): the curves all meet at l = L, so a fixed spot would cover them.
    handles: list[Artist] = []
    if critical_line is not None:
        handles.append(Line2D([], [], color=critical_line.get_color(), lw=3.0, path_effects=critical_line.get_path_effects(),
                              label=f"{S_LABEL} = {emphasised:g}, at the critical point"
                              + (" 2/N" if activation == "relu" and abs(s_crit - 2.0) < 1e-9 else f" {s_crit:.3g}")))
    elif np.isfinite(s_crit):
        handles.append(Line2D([], [], ls="none", label=f"critical {S_LABEL} = {s_crit:.3g} not swept"))
    notes = _status_notes(summary)
    shown = notes[:3] + ([f"… and {len(notes) - 3} more"] if len(notes) > 3 else [])
    handles += [Line2D([], [], ls="none", label=text) for text in shown]
    if handles:
        legend = ax.legend(handles=handles, loc="best", handlelength=2.2, framealpha=0.9, edgecolor="0.8")
        for text in legend.get_texts()[len(handles) - len(shown):]:
            text.set_color("#7a0000")
        artists.append(legend)
    return artists


def _trace_legend_handles(layers: Table, quantity: str) -> list[Artist]:
    """The figure legend: only what some panel draws (one seed has no band; theory may be empty)."""
    handles: list[Artist] = [Line2D([], [], color="0.35", lw=1.6, label="measured, mean over seeds")]
    lo, hi = _log10_column(layers, quantity, "_lo"), _log10_column(layers, quantity, "_hi")
    if np.any(np.isfinite(lo) & np.isfinite(hi) & (hi > lo)):
        handles.append(Patch(color="0.35", alpha=0.25, lw=0, label="16th–84th percentile over seeds"))
    if np.isfinite(_log10_column(layers, quantity, "_theory")).any():
        handles.append(Line2D([], [], color="black", lw=1.0, ls=(0, (4, 3)), label="mean-field theory"))
    return handles


def _figure_traces(layers: Table, summary: Table, quantity: str) -> Figure | None:
    if f"log10_{quantity}" not in layers or not np.isfinite(_col(layers, f"log10_{quantity}")).any():
        return None
    names = _config_keys(layers)
    keys = _keys(layers, names)
    if not keys:
        return None
    varying, constant = _split_keys(keys, names)
    swept = _finite_unique(_col(layers, "sigma_w2_n"))
    norm = mcolors.Normalize(swept.min(), swept.max()) if swept.size > 1 else mcolors.Normalize(swept[0] - 1, swept[0] + 1)

    panel = (7.0, 4.6) if len(keys) == 1 else (5.0, 3.7)
    fig, axes = _grid(len(keys), panel, extra=(1.0, 1.0))
    for ax, key in zip(axes, keys):
        plot_layer_traces(ax, _subset(layers, _mask(layers, names, key)),
                          _subset(summary, _mask(summary, names, key)), quantity, norm=norm)
        if varying:
            ax.set_title(_describe([names[i] for i in varying], tuple(key[i] for i in varying)))
    colorbar = fig.colorbar(ScalarMappable(norm=norm, cmap=SEQUENTIAL_CMAP), ax=axes, shrink=0.9, aspect=30, pad=0.02)
    colorbar.set_label(S_LABEL + "  (curve colour)")
    for crit in _finite_unique(_col(summary, "sigma_w2_n_crit")):
        if norm.vmin <= crit <= norm.vmax:
            colorbar.ax.axhline(crit, color="black", lw=2.0)
    fig.legend(handles=_trace_legend_handles(layers, quantity), loc="outside lower center",
               ncols=3 if fig.get_figwidth() >= 8 else 2, frameon=False)
    what = {"q": r"Forward variance $q^{\,l}$ across layers",
            "q_tilde": r"Back-propagated error variance $\tilde q^{\,l}$ across layers",
            "grad_norm2": r"Weight-gradient norm $\|\partial J/\partial W^l\|^2$ across layers"}.get(quantity, quantity)
    fig.suptitle(_title(what, names, keys, constant, _seeds_text(summary, layers)))
    return fig


