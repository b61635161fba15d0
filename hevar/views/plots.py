"""Figures of a run, rendered from its CSVs alone.

:func:`render_run` reads ``layers.csv``, ``summary.csv`` and (if present) ``theory.csv`` through
:func:`hevar.results.store.read_run` and writes PNGs into ``RUN_DIR/plots/``:

- ``q_tilde.png``    q̃ˡ = E[(δˡ)²] against layer l, one curve per σ_w²·N, seed band, theory dashed;
- ``grad_norm.png``  ‖∂J/∂Wˡ‖² against layer l, the same encoding;
- ``stability.png``  the fitted per-layer factor χ̂ against σ_w²·N with the theory χ₁, the line χ = 1,
                     the theory's stable point and the interpolated empirical crossing χ̂ = 1;
- ``depth_map.png``  log₁₀(q̃¹/q̃ᴸ) over depth × σ_w²·N (only when several depths were swept).
- ``fan_modes.png``  N_l, qˡ and q̃ˡ per fan mode at the critical σ_w²·N, theory dashed (only with a
                     width profile or several ``--mode`` values).
- ``phase.png``      the measured χ̂ over the (σ_w²·N, σ_b²) plane with the theory's critical line χ₁ = 1
                     (only when an activation has ≥ 2 σ_b² and ≥ 3 σ_w²·N values).

Every figure is faceted by the configuration keys the run varies (activation, depth, width, σ_b²);
keys that are constant go into the figure title. Per-layer quantities are drawn from the ``log10_*``
columns on a linear axis with decade labels (10ᵏ): at depth 2000 q̃ˡ overflows float64 and the linear
column is empty, while its log₁₀ stays finite. A configuration whose ``status`` is not ``"ok"`` is drawn
as far as it has finite values and listed in a note on its panel; it never stops the rendering.

The ``plot_*`` functions take an :class:`~matplotlib.axes.Axes`, draw one facet and return the
artists; the ``_figure_*`` helpers own the :class:`~matplotlib.figure.Figure` and :func:`render_run`
owns the files. No pyplot state is used anywhere.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib import patheffects
from matplotlib import transforms as mtransforms
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

from hevar.results import store

Table = dict[str, np.ndarray]

DPI = 150
CRITICAL_RTOL = 0.02  # a swept σ_w²·N within 2 % of the critical value is "the critical curve"

# Okabe–Ito, yellow left out (too pale on white); used for single lines and series.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
# viridis without its palest yellow tail, so every curve stays visible on white.
SEQUENTIAL_CMAP = mcolors.ListedColormap(matplotlib.colormaps["viridis"](np.linspace(0.0, 0.88, 256)), "viridis_trunc")
DIVERGING_CMAP = matplotlib.colormaps["RdBu_r"]  # ColorBrewer RdBu: colour-blind safe, white at 0

# Sizes in points at the saved size; the smallest text is 10 pt.
_RC = {
    "font.size": 12,
    "axes.titlesize": 12,
    "axes.labelsize": 12,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 10,
    "figure.titlesize": 13,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_NOTE_SIZE = 10

S_LABEL = r"$\sigma_w^2 N$"
LAYER_LABEL = r"layer $l$"
QUANTITIES = {
    # column stem: (y-axis label, what it is, file name)
    "q_tilde": (r"$\tilde q^{\,l} = \mathrm{E}[(\delta^l)^2]$", "back-propagated error variance", "q_tilde.png"),
    "grad_norm2": (r"$\|\partial J/\partial W^l\|^2$", "weight-gradient norm", "grad_norm.png"),
}
CONFIG_KEYS = ("activation", "depth", "width", "sigma_b2")


# --- the empirical crossing ------------------------------------------------------------------------


@dataclass(frozen=True)
class Crossing:
    """Where the measured χ̂ crosses 1, interpolated between two swept σ_w²·N values."""

    sigma_w2_n: float  # interpolated σ_w²·N at which χ̂ = 1
    se: float  # its standard error (delta method, see empirical_crossing); nan without chi_hat_se
    bracket: tuple[float, float]  # the two swept σ_w²·N values it lies between


def empirical_crossing(
    sigma_w2_n: Sequence[float],
    chi_hat: Sequence[float],
    chi_hat_se: Sequence[float] | None = None,
    *,
    near: float | None = None,
    correlation: float = 1.0,
) -> Crossing | None:
    """The σ_w²·N where the measured per-layer factor χ̂ crosses 1, with its standard error.

    Points are sorted by σ_w²·N (non-finite ones dropped) and χ̂ is interpolated linearly between
    the two neighbours (s_a, χ_a), (s_b, χ_b) whose χ̂ − 1 change sign:

        s* = s_a + (1 − χ_a)(s_b − s_a)/(χ_b − χ_a).

    The uncertainty propagates ``chi_hat_se`` through this formula (delta method). With
    d = χ_b − χ_a and Δs = s_b − s_a,

        ∂s*/∂χ_a = Δs (1 − χ_b)/d²,    ∂s*/∂χ_b = −Δs (1 − χ_a)/d²,

    both of the same sign, so a positive correlation ρ between the two fits only widens the error:
    se² = g_a²σ_a² + g_b²σ_b² + 2ρ g_a g_b σ_a σ_b. The sweep evaluates every σ_w²·N on the same
    random draws, so neighbouring fits are positively correlated; the default ρ = 1 is the
    conservative end (the largest se for ρ in [0, 1]). The interpolation error itself (χ̂ is not
    linear in σ_w²·N for every activation) is not included; for ReLU χ is exactly linear.

    Parameters
    ----------
    sigma_w2_n, chi_hat : array-like, shape (K,)
        Swept σ_w²·N values and the fitted χ̂ at each.
    chi_hat_se : array-like, shape (K,), optional
        Standard error of each χ̂; the result's ``se`` is nan without it.
    near : float, optional
        If χ̂ − 1 changes sign more than once (noise around a flat χ̂), return the crossing nearest
        this value (e.g. the theory's stable point); otherwise the crossing at the smallest σ_w²·N.
    correlation : float
        ρ between the errors of the two bracketing χ̂.

    Returns
    -------
    Crossing or None
        None when χ̂ does not reach 1 inside the swept range.
    """
    s = np.asarray(sigma_w2_n, dtype=float)
    chi = np.asarray(chi_hat, dtype=float)
    se = np.full_like(s, np.nan) if chi_hat_se is None else np.asarray(chi_hat_se, dtype=float)
    if not (s.shape == chi.shape == se.shape):
        raise ValueError(f"sigma_w2_n, chi_hat and chi_hat_se must have one shape; got {s.shape}, {chi.shape}, {se.shape}.")
    keep = np.isfinite(s) & np.isfinite(chi)
    order = np.argsort(s[keep], kind="stable")
    s, chi, se = s[keep][order], chi[keep][order], se[keep][order]

    found: list[Crossing] = []
    for a in range(len(s) - 1):
        b = a + 1
        da, db = chi[a] - 1.0, chi[b] - 1.0
        if da * db > 0 or (da == 0 and db == 0) or s[a] == s[b]:
            continue
        ds, d = s[b] - s[a], chi[b] - chi[a]
        value = s[a] + (1.0 - chi[a]) * ds / d
        g_a, g_b = ds * (1.0 - chi[b]) / d**2, -ds * (1.0 - chi[a]) / d**2
        var = (g_a * se[a]) ** 2 + (g_b * se[b]) ** 2 + 2 * correlation * g_a * g_b * se[a] * se[b]
        crossing = Crossing(float(value), float(math.sqrt(max(var, 0.0))), (float(s[a]), float(s[b])))
        if not any(abs(c.sigma_w2_n - crossing.sigma_w2_n) < 1e-12 for c in found):  # χ̂ = 1 at a swept point
            found.append(crossing)
    if not found:
        return None
    if near is not None and np.isfinite(near):
        return min(found, key=lambda c: abs(c.sigma_w2_n - near))
    return found[0]


def critical_label(activation: str, sigma_w2_n_crit: float) -> str:
    """How the critical value is named on a figure: 2/N for ReLU, its value otherwise."""
    if not np.isfinite(sigma_w2_n_crit):
        return "no critical " + S_LABEL
    if str(activation) == "relu" and abs(sigma_w2_n_crit - 2.0) < 1e-9:
        return r"$\sigma_w^2 = 2/N$ (critical)"
    return rf"{S_LABEL} = {sigma_w2_n_crit:.3g} (critical)"


def closest_swept(swept: Sequence[float], sigma_w2_n_crit: float, rtol: float = CRITICAL_RTOL) -> float | None:
    """The swept σ_w²·N closest to the critical value, if within ``rtol`` of it; else None."""
    swept = np.asarray(swept, dtype=float)
    swept = swept[np.isfinite(swept)]
    if not swept.size or not np.isfinite(sigma_w2_n_crit):
        return None
    best = swept[np.argmin(np.abs(swept - sigma_w2_n_crit))]
    return float(best) if abs(best - sigma_w2_n_crit) <= rtol * abs(sigma_w2_n_crit) else None


# --- table helpers ---------------------------------------------------------------------------------


def _col(table: Table, name: str) -> np.ndarray:
    """A column, or all-nan (all-empty for strings) when the file does not have it."""
    if name in table:
        return table[name]
    n = len(next(iter(table.values()))) if table else 0
    return np.full(n, "", dtype=object) if name in store.STRING_COLUMNS else np.full(n, np.nan)


def _nrows(table: Table) -> int:
    return len(next(iter(table.values()))) if table else 0


def _subset(table: Table, mask: np.ndarray) -> Table:
    return {k: v[mask] for k, v in table.items()}


def _mask(table: Table, names: Sequence[str], key: tuple) -> np.ndarray:
    mask = np.ones(_nrows(table), dtype=bool)
    for name, value in zip(names, key):
        column = _col(table, name)
        mask &= (column == value) if column.dtype == object else np.isclose(column, value, rtol=1e-12, atol=0.0)
    return mask


def _keys(table: Table, names: Sequence[str]) -> list[tuple]:
    """Distinct configuration keys (rows with a missing numeric key are left out), sorted."""
    columns = [_col(table, n) for n in names]
    found = set()
    for row in zip(*columns):
        if any(isinstance(v, float) and not math.isfinite(v) for v in row):
            continue
        found.add(tuple(str(v) if isinstance(v, str) else float(v) for v in row))
    return sorted(found)


def _finite_unique(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return np.unique(values[np.isfinite(values)])


def _activation_label(activation: str) -> str:
    name, *params = str(activation).split(":")
    pretty = {"relu": "ReLU", "leaky_relu": "leaky ReLU", "tanh": "tanh", "linear": "linear"}.get(name, name)
    return f"{pretty} ({', '.join(params)})" if params else pretty


def _key_text(name: str, value) -> str:
    if name == "activation":
        return _activation_label(value)
    if name == "depth":
        return f"$L$ = {int(value)}"
    if name == "width":
        return f"$N$ = {int(value)}"
    if name == "sigma_b2":
        return rf"$\sigma_b^2$ = {value:g}"
    if name == "widths":
        kind, _, rest = str(value).partition(":")
        if kind == "constant":
            return f"$N$ = {rest}"
        if kind == "pyramid":
            return "$N_l$: pyramid " + rest.replace(":", "→")
        items = str(value).split(",")
        return "$N_l$ = " + (str(value) if len(items) <= 5 else f"{items[0]},…,{items[-1]}")
    if name == "mode":
        return str(value).replace("_", "-")
    if name == "dist":
        return f"{value} weights"
    return f"{name} = {value}"


def _variant_names(table: Table) -> tuple[str, ...]:
    """The initialisation keys (width profile, fan mode, weight distribution) a run sets away from
    the defaults; empty for a constant-width, fan-in, normal run (and for older runs without them)."""
    names = []
    if any(str(w) and not str(w).startswith("constant:") for w in _col(table, "widths")):
        names.append("widths")
    if any(str(m) not in ("", "fan_in") for m in _col(table, "mode")):
        names.append("mode")
    if any(str(d) not in ("", "normal") for d in _col(table, "dist")):
        names.append("dist")
    return tuple(names)


def _config_keys(table: Table) -> tuple[str, ...]:
    """CONFIG_KEYS plus the initialisation keys in use; with a width profile, ``widths`` replaces
    ``width`` (which in layers.csv is the layer's own N_l)."""
    extra = _variant_names(table)
    base = tuple("widths" if k == "width" and "widths" in extra else k for k in CONFIG_KEYS)
    return base + tuple(k for k in extra if k != "widths")


def _describe(names: Sequence[str], key: tuple) -> str:
    return " · ".join(_key_text(n, v) for n, v in zip(names, key))


def _split_keys(keys: list[tuple], names: Sequence[str]) -> tuple[list[int], list[int]]:
    """Indices of the key names that vary across ``keys`` and of those that are constant."""
    varying = [i for i in range(len(names)) if len({k[i] for k in keys}) > 1]
    return varying, [i for i in range(len(names)) if i not in varying]


def _seeds_text(summary: Table, layers: Table | None = None) -> str:
    n = _finite_unique(_col(summary, "n_seeds"))
    if not n.size and layers is not None:
        n = _finite_unique(_col(layers, "n_seeds"))
    if not n.size:
        return ""
    lo, hi = int(n.min()), int(n.max())
    return f"{lo} seeds" if lo == hi else f"{lo}–{hi} seeds"


def _title(what: str, names: Sequence[str], keys: list[tuple], constant: list[int], seeds: str,
           extra: Sequence[str] = ()) -> str:
    """Two lines: what the figure shows, then the configuration keys that are the same in every panel."""
    parts = ([_key_text(names[i], keys[0][i]) for i in constant] if keys else []) + list(extra)
    if seeds:
        parts.append(seeds)
    return what + ("\n" + " · ".join(parts) if parts else "")


def _grid(n: int, panel_size: tuple[float, float], extra: tuple[float, float] = (0.0, 0.0), ncols_max: int = 3):
    ncols = min(n, ncols_max)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(panel_size[0] * ncols + extra[0], panel_size[1] * nrows + extra[1]), layout="constrained", dpi=DPI)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def _decade_axis(axis) -> None:
    """Label a linear axis of log₁₀ values as decades 10ᵏ."""
    axis.set_major_locator(MaxNLocator(nbins=7, integer=True, steps=[1, 2, 5, 10]))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"$10^{{{int(round(v))}}}$"))


def _status_notes(summary: Table) -> list[str]:
    status = _col(summary, "status")
    s = _col(summary, "sigma_w2_n")
    notes = []
    for value, text in sorted(zip(s, status), key=lambda p: p[0]):
        if text not in ("ok", "") and text is not None:
            notes.append(f"{S_LABEL} = {value:.3g}: {text}")
    return notes


# --- per-layer traces ------------------------------------------------------------------------------


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
    quantity : {"q_tilde", "grad_norm2"}
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
        y, lo, hi, theory = (_col(layers, f"log10_{quantity}{suffix}")[rows][order] for suffix in ("", "_lo", "_hi", "_theory"))
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
                              label=critical_label(activation, s_crit)))
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


def _trace_legend_handles(quantity: str) -> list[Artist]:
    return [
        Line2D([], [], color="0.35", lw=1.6, label="measured, mean over seeds"),
        Patch(color="0.35", alpha=0.25, lw=0, label="16th–84th percentile over seeds"),
        Line2D([], [], color="black", lw=1.0, ls=(0, (4, 3)), label="mean-field theory"),
    ]


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
    fig.legend(handles=_trace_legend_handles(quantity), loc="outside lower center",
               ncols=3 if fig.get_figwidth() >= 8 else 2, frameon=False)
    what = {"q_tilde": r"Back-propagated error variance $\tilde q^{\,l}$ across layers",
            "grad_norm2": r"Weight-gradient norm $\|\partial J/\partial W^l\|^2$ across layers"}.get(quantity, quantity)
    fig.suptitle(_title(what, names, keys, constant, _seeds_text(summary, layers)))
    return fig


# --- stability curve -------------------------------------------------------------------------------


def plot_stability(ax: Axes, summary: Table, theory: Table | None = None, *, zoom: bool = True) -> list[Artist]:
    """Draw χ̂ against σ_w²·N for one (activation, σ_b²), with theory, χ = 1 and both crossings.

    Parameters
    ----------
    ax : Axes
    summary : dict of column arrays
        Rows of ``summary.csv`` for one activation and σ_b²; one series per (depth, width).
    theory : dict of column arrays, optional
        Rows of ``theory.csv`` for the same activation and σ_b² (χ₁ on a fine grid). Without it the
        summary's ``chi1`` at the swept points is drawn instead.
    zoom : bool
        Add an inset magnifying the neighbourhood of χ = 1, where the crossings and their error
        bars are too small to read at full scale.

    The error bars are χ̂ ± 2·``chi_hat_se``; the empirical crossing is :func:`empirical_crossing`
    with ±2 of its standard errors as a horizontal bar. Configurations whose status is not "ok"
    are left out of the points and the crossing and listed in the legend.
    """
    artists: list[Artist] = []
    s_all = _col(summary, "sigma_w2_n")
    swept = _finite_unique(s_all)
    if not swept.size:
        return artists
    span = swept.max() - swept.min() if swept.size > 1 else max(abs(swept[0]), 1.0)
    x_lo, x_hi = swept.min() - 0.05 * span, swept.max() + 0.05 * span
    crit_values = _finite_unique(_col(summary, "sigma_w2_n_crit"))
    s_crit = float(crit_values[0]) if crit_values.size else np.nan
    activation = str(_col(summary, "activation")[0])

    # what to draw, gathered first so that the inset can draw the same
    if theory is not None and _nrows(theory) and np.isfinite(theory["chi1"]).any():
        inside = (theory["sigma_w2_n"] >= x_lo) & (theory["sigma_w2_n"] <= x_hi) & np.isfinite(theory["chi1"])
        order = np.argsort(theory["sigma_w2_n"][inside])
        theory_curve = (theory["sigma_w2_n"][inside][order], theory["chi1"][inside][order])
        theory_style = dict(color="black", lw=1.6, label=r"theory $\chi_1(\sigma_w^2 N)$")
    else:
        chi1 = _col(summary, "chi1")
        ok = np.isfinite(s_all) & np.isfinite(chi1)
        pairs = sorted(set(zip(s_all[ok], chi1[ok])))
        theory_curve = tuple(np.array(v) for v in zip(*pairs)) if pairs else (np.array([]), np.array([]))
        theory_style = dict(color="black", lw=1.4, marker=".", ms=6, label=r"theory $\chi_1$ at swept points")

    series_names = ("depth", "width") + _variant_names(summary)
    series = _keys(summary, series_names)
    series_varying, _ = _split_keys(series, series_names)
    chi_hat, chi_se, status = _col(summary, "chi_hat"), _col(summary, "chi_hat_se"), _col(summary, "status")
    chi_fit_theory = _col(summary, "chi_theory")
    # The fit applied to the mean-field trajectory differs from χ₁ where a short net has not reached
    # the fixed point q* (e.g. tanh); only then is it worth its own marker.
    chi1_col = _col(summary, "chi1")
    both = np.isfinite(chi_fit_theory) & np.isfinite(chi1_col)
    show_fit_theory = bool(both.any() and np.any(np.abs(chi_fit_theory[both] - chi1_col[both]) > 0.01 * np.abs(chi1_col[both])))
    offsets = (np.arange(len(series)) - (len(series) - 1) / 2) * 0.006 * span  # keep overlapping bars apart
    measured, notes, fit_theories = [], [], []
    for colour, offset, key in zip(_cycle(OKABE_ITO, len(series)), offsets, series):
        rows = _mask(summary, series_names, key)
        order = np.argsort(s_all[rows])
        s, chi, se, st = s_all[rows][order], chi_hat[rows][order], chi_se[rows][order], status[rows][order]
        fit_theory = chi_fit_theory[rows][order]
        ok = np.isfinite(s) & np.isfinite(chi) & ((st == "ok") | (st == ""))
        name = ", ".join(_key_text(series_names[i], key[i]) for i in series_varying)
        bad = np.isfinite(s) & ~ok
        notes += [f"{S_LABEL} = {v:.3g}{' (' + name + ')' if name else ''}: {t or 'no fit'}" for v, t in zip(s[bad], st[bad])]
        measured.append((colour, offset, name, s[ok], chi[ok], se[ok], empirical_crossing(s[ok], chi[ok], se[ok], near=s_crit)))
        fit_theories.append((colour, offset, s[np.isfinite(fit_theory)], fit_theory[np.isfinite(fit_theory)]))

    def draw(target: Axes, labelled: bool, offset_scale: float = 1.0) -> list[Artist]:
        label = (lambda text: text) if labelled else (lambda text: "_nolegend_")
        drawn: list[Artist] = []
        if theory_curve[0].size:
            drawn += target.plot(*theory_curve, zorder=2, **{**theory_style, "label": label(theory_style["label"])})
        drawn.append(target.axhline(1.0, color="0.45", lw=1.0, ls=":", zorder=1, label=label(r"$\chi = 1$")))
        if np.isfinite(s_crit):
            drawn.append(target.axvline(s_crit, color="black", lw=1.1, ls="--", zorder=1,
                                        label=label(f"theory stable point {S_LABEL} = {s_crit:.3g}")))
        if show_fit_theory:
            for k, (colour, offset, s, fit) in enumerate(fit_theories):
                drawn += target.plot(s + offset * offset_scale, fit, ls="none", marker="_", ms=16, mew=2.2, color="0.25",
                                     zorder=4, label=label("mean-field trajectory, same fit") if k == 0 else "_nolegend_")
        for colour, offset, name, s, chi, se, crossing in measured:
            if s.size:
                drawn.append(target.errorbar(s + offset * offset_scale, chi, yerr=2 * np.nan_to_num(se, nan=0.0), fmt="o", color=colour,
                                             ms=5, capsize=3, elinewidth=1.3, zorder=3,
                                             label=label(r"measured $\hat\chi \pm 2\,$s.e." + (f" ({name})" if name else ""))))
            if crossing is not None:
                has_se = np.isfinite(crossing.se)
                value, pm = f"{crossing.sigma_w2_n:.3f}", ""
                if has_se and crossing.se > 0:
                    decimals = max(0, 1 - math.floor(math.log10(2 * crossing.se)))
                    value, pm = f"{crossing.sigma_w2_n:.{decimals}f}", f" ± {2 * crossing.se:.{decimals}f} (2 s.e.)"
                drawn.append(target.errorbar(crossing.sigma_w2_n, 1.0, xerr=2 * crossing.se if has_se else None, fmt="D",
                                             color=colour, mec="black", mew=1.0, ms=8, capsize=4, elinewidth=2.0, zorder=6,
                                             label=label(rf"$\hat\chi = 1$ at {S_LABEL} = {value}{pm}")))
        target.grid(True, color="0.9", lw=0.6, zorder=0)
        return drawn

    artists += draw(ax, labelled=True)
    if np.isfinite(s_crit):
        text = "2/N" if activation == "relu" and abs(s_crit - 2.0) < 1e-9 else f"{s_crit:.3g}"
        artists.append(ax.annotate(text, xy=(s_crit, 1.0), xycoords=("data", "axes fraction"), xytext=(4, -4),
                                   textcoords="offset points", ha="left", va="top", fontsize=_NOTE_SIZE + 1,
                                   fontweight="bold"))
    ax.set_xlim(x_lo, x_hi)
    ax.set_xlabel(S_LABEL)
    ax.set_ylabel(r"per-layer factor $\chi$  ($\tilde q^{\,l} = \chi\,\tilde q^{\,l+1}$)")

    crossings = [m[-1] for m in measured if m[-1] is not None]
    if zoom and crossings:
        inset = _stability_inset(ax, draw, crossings, s_crit, theory_curve, measured, span)
        if inset is not None:
            artists.append(inset)

    # Outside the axes: inside, a legend would cover the crossing, which is what the figure is for.
    handles, _ = ax.get_legend_handles_labels()
    shown = notes[:4] + ([f"… and {len(notes) - 4} more"] if len(notes) > 4 else [])
    if shown:
        handles.append(Line2D([], [], ls="none", label="not ok, left out:"))
        handles += [Line2D([], [], ls="none", label=text) for text in shown]
    legend = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, handlelength=2.0)
    if shown:
        for text in legend.get_texts()[-len(shown) - 1:]:
            text.set_color("#7a0000")
    artists.append(legend)
    return artists


def _stability_inset(ax: Axes, draw, crossings: list[Crossing], s_crit: float, theory_curve, measured, span: float):
    """A magnified view of χ = 1 around the crossings, in the corner the curve leaves empty."""
    centres = [c.sigma_w2_n for c in crossings] + ([s_crit] if np.isfinite(s_crit) else [])
    half = max([6 * c.se for c in crossings if np.isfinite(c.se)] + [0.03 * span])
    x0, x1 = min(centres) - half, max(centres) + half
    if x1 - x0 > 0.25 * span:  # the crossings and their error bars already read at full scale
        return None
    ys = [1.0]
    s_th, chi_th = theory_curve
    if s_th.size:
        ys += list(chi_th[(s_th >= x0) & (s_th <= x1)])
    for _, _, _, s, chi, se, _ in measured:
        near = (s >= x0) & (s <= x1)
        ys += list(chi[near] + 2 * np.nan_to_num(se[near])) + list(chi[near] - 2 * np.nan_to_num(se[near]))
    ys = np.array([y for y in ys if np.isfinite(y)])
    y_pad = max(0.15 * (ys.max() - ys.min()), 0.01)
    # an increasing χ leaves the lower right empty, a decreasing one the upper right
    rising = True
    if s_th.size > 1:
        rising = np.interp(x1, s_th, chi_th) >= np.interp(x0, s_th, chi_th)
    bounds = [0.62, 0.14, 0.36, 0.40] if rising else [0.62, 0.56, 0.36, 0.40]  # clear of the main tick labels
    inset = ax.inset_axes(bounds)
    draw(inset, labelled=False, offset_scale=(x1 - x0) / (1.1 * span))
    inset.set_xlim(x0, x1)
    inset.set_ylim(ys.min() - y_pad, ys.max() + y_pad)
    inset.tick_params(labelsize=_NOTE_SIZE)
    inset.set_facecolor("white")
    for spine in ("top", "right"):
        inset.spines[spine].set_visible(True)
    ax.indicate_inset_zoom(inset, edgecolor="0.4")
    return inset


def _cycle(palette: Sequence[str], n: int) -> list[str]:
    return [palette[i % len(palette)] for i in range(n)]


def _figure_stability(summary: Table, theory: Table | None) -> Figure | None:
    if not np.isfinite(_col(summary, "chi_hat")).any():
        return None
    names = ("activation", "sigma_b2")
    keys = _keys(summary, names)
    if not keys:
        return None
    varying, constant = _split_keys(keys, names)
    fig, axes = _grid(len(keys), (11.0, 4.8), ncols_max=1)
    for ax, key in zip(axes, keys):
        theory_rows = None
        if theory is not None:
            theory_rows = _subset(theory, (theory["activation"] == key[0]) & np.isclose(theory["sigma_b2"], key[1]))
        plot_stability(ax, _subset(summary, _mask(summary, names, key)), theory_rows)
        if varying:
            ax.set_title(_describe([names[i] for i in varying], tuple(key[i] for i in varying)))
    series_names = ("depth", "width") + _variant_names(summary)
    if "widths" in series_names:  # a profile: name it, not its N_0
        series_names = tuple(n for n in series_names if n != "width")
    depth_width = _keys(summary, series_names)
    _, fixed = _split_keys(depth_width, series_names)
    extra = [_key_text(series_names[i], depth_width[0][i]) for i in fixed]
    fig.suptitle(_title(r"Stability: fitted per-layer factor $\hat\chi$ against $\sigma_w^2 N$", names, keys, constant,
                        _seeds_text(summary), extra))
    return fig


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
    two grid points around it (:func:`empirical_crossing` without errors): exact for homogeneous φ,
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
        crossing = empirical_crossing(s_col[at], chi_col[at])
        if crossing is not None:
            line[i] = crossing.sigma_w2_n
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
) -> list[Artist]:
    """Draw the measured χ̂ over the (σ_w²·N, σ_b²) plane for one activation (and depth, width).

    Each swept (σ_w²·N, σ_b²) is a cell coloured by ln χ̂ on a diverging map centred at χ̂ = 1
    (blue: ordered, q̃ shrinks toward the input; red: chaotic, it grows); cells span halfway to
    their neighbours, so the axes are true coordinates. On top: the theory's critical line χ₁ = 1
    from ``theory`` (:func:`critical_line`, a point per σ_b² of the run, joined), and per σ_b² the
    measured crossing χ̂ = 1 interpolated between swept σ_w²·N (:func:`empirical_crossing`, ± 2 s.e.).
    The ordered and chaotic sides are named above the axes, as in Schoenholz et al. (2017), Fig. 1.
    Cells with no χ̂ are grey, configurations whose status is not "ok" hatched. With ``annotate``
    (default: at most 160 cells) each cell shows its χ̂.

    Parameters
    ----------
    ax : Axes
    summary : dict of column arrays
        Rows of ``summary.csv`` for one activation, depth and width.
    theory : dict of column arrays, optional
        Rows of ``theory.csv`` (any activations; this one's are used).
    """
    artists: list[Artist] = []
    s_col, b_col = _col(summary, "sigma_w2_n"), _col(summary, "sigma_b2")
    chi_col, se_col, status = _col(summary, "chi_hat"), _col(summary, "chi_hat_se"), _col(summary, "status")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_chi = np.where(chi_col > 0, np.log(np.where(chi_col > 0, chi_col, 1.0)), np.nan)
    swept, biases, grid, not_ok = _summary_grid(summary, "sigma_b2", log_chi)
    if not swept.size or not biases.size:
        return artists
    norm = norm or phase_norm(grid)
    cmap = cmap.with_extremes(bad="0.85")
    x_edges, y_edges = _edges(swept), _edges(biases)
    artists.append(ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(grid), cmap=cmap, norm=norm,
                                 edgecolors="white", lw=0.8))
    for i, j in zip(*np.nonzero(not_ok)):
        artists.append(ax.add_patch(Rectangle((x_edges[j], y_edges[i]), x_edges[j + 1] - x_edges[j],
                                              y_edges[i + 1] - y_edges[i], fill=False, hatch="///", ec="0.25", lw=0)))
    if annotate is None:
        annotate = grid.size <= 160
    if annotate:
        for i, j in np.ndindex(grid.shape):
            if np.isfinite(grid[i, j]):
                r, g, b, _ = cmap(norm(grid[i, j]))
                ink = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.45 else "black"
                chi = math.exp(grid[i, j])
                # in the upper part of the cell: the lines and markers run through the centres
                y = biases[i] + 0.3 * (y_edges[i + 1] - biases[i])
                artists.append(ax.text(swept[j], y, f"{chi:.2f}" if chi < 9.995 else f"{chi:.3g}",
                                       ha="center", va="center", fontsize=_NOTE_SIZE - 1, color=ink))

    activation = str(_col(summary, "activation")[0])
    handles: list[Artist] = []
    halo = [patheffects.Stroke(linewidth=4.2, foreground="white"), patheffects.Normal()]
    if theory is not None:
        b_line, s_line = critical_line(theory, activation, summary)
        keep = np.isfinite(s_line)
        if keep.any():
            (line,) = ax.plot(s_line[keep], b_line[keep], color="black", lw=2.2, marker="o", ms=4, zorder=5,
                              solid_capstyle="round", label=r"theory $\chi_1 = 1$ (depth $\to\infty$)",
                              path_effects=halo)
            artists.append(line)
            handles.append(line)
    found, fitted = [], []
    chi_theory = _col(summary, "chi_theory")
    for b in biases:
        at = np.isclose(b_col, b, rtol=1e-12, atol=0.0) & np.isin(status, ("ok", ""))
        crossing = empirical_crossing(s_col[at], chi_col[at], se_col[at])
        if crossing is not None:
            found.append((crossing.sigma_w2_n, b, crossing.se))
        crossing = empirical_crossing(s_col[at], chi_theory[at])
        fitted.append(crossing.sigma_w2_n if crossing is not None else np.nan)
    fitted = np.array(fitted)
    if np.isfinite(fitted).sum() >= 1:
        (dashed,) = ax.plot(fitted, biases, color="0.15", lw=1.4, ls=(0, (4, 2.5)), zorder=5, path_effects=halo,
                            label="theory, the same fit as $\\hat\\chi$ (this depth)")
        artists.append(dashed)
        handles.append(dashed)
    if found:
        s_m, b_m, se_m = (np.array(v) for v in zip(*found))
        marks = ax.errorbar(s_m, b_m, xerr=2 * np.nan_to_num(se_m, nan=0.0), fmt="D", ms=6.5, mfc="#E69F00",
                            mec="black", mew=1.0, ecolor="black", elinewidth=1.2, capsize=3, zorder=6,
                            label=r"measured $\hat\chi = 1$ ($\pm$ 2 s.e.)")
        artists.append(marks)
        handles.append(marks)
    wide = swept.size >= 8
    for x, ha, text in ((0.0, "left", "◀ ordered: $\\chi_1 < 1$" + (", gradients vanish" if wide else "")),
                        (1.0, "right", "chaotic: $\\chi_1 > 1$" + (", gradients explode" if wide else "") + " ▶")):
        artists.append(ax.text(x, 1.015, text, transform=ax.transAxes, ha=ha, va="bottom", fontsize=_NOTE_SIZE + 1,
                               fontweight="bold", color=cmap(0.1 if ha == "left" else 0.9)))
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
                                 bbox_transform=ax.transAxes + below, frameon=False, ncols=len(handles) if wide else 1))
    return artists


def _phase_ticks(norm: mcolors.Normalize) -> list[float]:
    ticks = [math.log(c) for c in _CHI_TICKS if norm.vmin - 1e-12 <= math.log(c) <= norm.vmax + 1e-12]
    return ticks if len(ticks) >= 3 else [norm.vmin, 0.0, norm.vmax]


def _figure_phase(summary: Table, theory: Table | None) -> Figure | None:
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
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = phase_norm(np.log(np.concatenate([_col(_subset(summary, _mask(summary, names, k)), "chi_hat")
                                                 for k in keys])))
    n_s = max(_finite_unique(_col(summary, "sigma_w2_n")).size, 6)
    n_b = max(_finite_unique(_col(summary, "sigma_b2")).size, 2)
    fig, axes = _grid(len(keys), (min(0.62 * n_s + 1.4, 12.0), min(0.48 * n_b + 1.6, 8.0)), extra=(2.6, 0.6),
                      ncols_max=1)
    for ax, key in zip(axes, keys):
        plot_phase(ax, _subset(summary, _mask(summary, names, key)), theory, norm=norm)
        if varying:
            ax.set_title(_describe([names[i] for i in varying], tuple(key[i] for i in varying)), pad=22)
    colorbar = fig.colorbar(ScalarMappable(norm=norm, cmap=DIVERGING_CMAP), ax=axes, aspect=18, pad=0.02,
                            ticks=_phase_ticks(norm))
    colorbar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{math.exp(v):.3g}"))
    colorbar.set_label(r"measured $\hat\chi$ (log scale)" + "\n< 1 ordered · > 1 chaotic")
    status = np.asarray(_col(summary, "status"), dtype=object)
    if ((status != "ok") & (status != "")).any():
        fig.text(0.01, 0.005, "hatched: status not ok · grey: no value", fontsize=_NOTE_SIZE, ha="left", va="bottom")
    fig.suptitle(_title(r"Phase diagram: measured per-layer factor $\hat\chi$ of $\tilde q^{\,l}$ over "
                        r"($\sigma_w^2 N$, $\sigma_b^2$)", names, keys, constant, _seeds_text(summary)))
    return fig


# --- fan modes on a width profile ------------------------------------------------------------------

MODE_COLOURS = {"fan_in": OKABE_ITO[0], "fan_out": OKABE_ITO[1], "fan_avg": OKABE_ITO[2]}
_DIST_MARKERS = ("", "o", "s", "^", "D")


def fan_modes_sigma(layers: Table, summary: Table) -> float:
    """The σ_w²·N the fan-mode figure shows: the swept value nearest the critical one (2 for
    ReLU), or the middle of the sweep when there is none."""
    swept = _finite_unique(_col(layers, "sigma_w2_n"))
    crit = _finite_unique(_col(summary, "sigma_w2_n_crit"))
    if not swept.size:
        return math.nan
    if crit.size:
        return float(swept[np.argmin(np.abs(swept - crit[0]))])
    return float(swept[len(swept) // 2])


def plot_mode_traces(ax: Axes, layers: Table, quantity: str = "q_tilde", *, sigma_w2_n: float | None = None) -> list[Artist]:
    """Draw log₁₀ qˡ or q̃ˡ against layer, one colour per fan mode (and a marker per weight distribution).

    Measured seed mean solid with its 16th–84th percentile band, the mean-field prediction dashed in
    the same colour. On a width profile this is He et al.'s (2015) point: with ``fan_in``
    (σ_{w,l}² = s/N_{l-1}) qˡ is flat and q̃ˡ drifts by ∏ N_{m+1}/N_m = N_L/N_l; with ``fan_out``
    (σ_{w,l}² = s/N_l) q̃ˡ is flat and qˡ drifts by ∏ N_{m-1}/N_m = N_1/N_l.

    Parameters
    ----------
    ax : Axes
    layers : dict of column arrays
        Rows of ``layers.csv`` for one (activation, depth, widths, σ_b²); may hold several modes and
        distributions.
    quantity : {"q", "q_tilde"}
    sigma_w2_n : float, optional
        The σ_w²·N drawn (default: the first swept).
    """
    artists: list[Artist] = []
    s_col = _col(layers, "sigma_w2_n")
    swept = _finite_unique(s_col)
    if not swept.size:
        return artists
    s = float(swept[0]) if sigma_w2_n is None else float(sigma_w2_n)
    at_s = np.isclose(s_col, s, rtol=1e-12, atol=0.0)
    mode_col, dist_col = _col(layers, "mode"), _col(layers, "dist")
    modes = sorted({str(m) for m in mode_col[at_s]}, key=lambda m: (m not in MODE_COLOURS, m))
    dists = sorted({str(d) for d in dist_col[at_s]}, key=lambda d: (d not in ("", "normal"), d))
    for m_i, mode in enumerate(modes):
        colour = MODE_COLOURS.get(mode, OKABE_ITO[(3 + m_i) % len(OKABE_ITO)])
        for d_i, dist in enumerate(dists):
            rows = at_s & (mode_col == mode) & (dist_col == dist)
            if not rows.any():
                continue
            order = np.argsort(_col(layers, "layer")[rows])
            layer = _col(layers, "layer")[rows][order]
            if quantity == "q":  # layers.csv has no log10_q_lo/_hi: q's band is finite wherever q is
                with np.errstate(divide="ignore", invalid="ignore"):
                    lo, hi = (np.log10(_col(layers, c)[rows][order]) for c in ("q_lo", "q_hi"))
            else:
                lo, hi = (_col(layers, f"log10_{quantity}{c}")[rows][order] for c in ("_lo", "_hi"))
            y = _col(layers, f"log10_{quantity}")[rows][order]
            theory = _col(layers, f"log10_{quantity}_theory")[rows][order]
            label = (mode or "fan_in").replace("_", "-") + (f", {dist}" if len(dists) > 1 else "")
            band = np.isfinite(lo) & np.isfinite(hi)
            if band.any():
                artists.append(ax.fill_between(layer, lo, hi, where=band, color=colour, alpha=0.2, lw=0, zorder=1))
            marker = _DIST_MARKERS[d_i % len(_DIST_MARKERS)] if len(dists) > 1 else ""
            artists += ax.plot(layer, y, color=colour, lw=1.8, marker=marker or None, ms=4, zorder=3, label=label)
            if np.isfinite(theory).any():
                artists += ax.plot(layer, theory, color="black", lw=1.1, ls=(0, (4, 3)), zorder=4, alpha=0.8)
    lo_y, hi_y = ax.get_ylim()
    if hi_y - lo_y < 2.0:  # at least two decades, so that a flat curve looks flat and ticks are decades
        mid = 0.5 * (lo_y + hi_y)
        ax.set_ylim(mid - 1.0, mid + 1.0)
    _decade_axis(ax.yaxis)
    ax.set_xlabel(LAYER_LABEL)
    ax.set_ylabel(r"$q^{\,l} = \mathrm{E}[(z^l)^2]$" if quantity == "q" else QUANTITIES["q_tilde"][0])
    ax.grid(True, color="0.9", lw=0.6, zorder=0)
    return artists


def plot_width_profile(ax: Axes, layers: Table, n_input: float | None = None) -> list[Artist]:
    """Draw N_l against layer l (the ``width`` column of ``layers.csv``; l = 0 is ``n_input``, the
    summary's ``width``, when given) on a log₂ axis."""
    layer, width = _col(layers, "layer"), _col(layers, "width")
    pairs = sorted({(int(l), int(w)) for l, w in zip(layer, width) if math.isfinite(l) and math.isfinite(w)})
    if pairs and n_input is not None and math.isfinite(n_input):
        pairs.insert(0, (0, int(n_input)))
    if not pairs:
        return []
    x, y = zip(*pairs)
    artists = ax.plot(x, y, color="0.25", lw=1.6, marker="o", ms=3)
    ax.set_yscale("log", base=2)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel(LAYER_LABEL)
    ax.set_ylabel(r"width $N_l$")
    ax.grid(True, color="0.9", lw=0.6, zorder=0)
    return artists


def _figure_fan_modes(layers: Table, summary: Table) -> Figure | None:
    """N_l, qˡ and q̃ˡ per fan mode, one row per (activation, depth, widths, σ_b²); drawn when the
    run has a non-constant width profile or several fan modes."""
    modes = {str(m) for m in _col(layers, "mode") if str(m)}
    if "widths" not in _variant_names(layers) and len(modes) < 2:
        return None
    names = ("activation", "depth", "widths", "sigma_b2")
    keys = _keys(layers, names)
    if not keys:
        return None
    varying, constant = _split_keys(keys, names)
    fig = Figure(figsize=(14.0, 3.9 * len(keys) + 1.3), layout="constrained", dpi=DPI)
    axes = fig.subplots(len(keys), 3, squeeze=False, gridspec_kw=dict(width_ratios=(0.6, 1, 1)))
    shown = []
    for row, key in zip(axes, keys):
        facet = _subset(layers, _mask(layers, names, key))
        facet_summary = _subset(summary, _mask(summary, ("activation", "depth", "sigma_b2"), (key[0], key[1], key[3])))
        s = fan_modes_sigma(facet, facet_summary)
        shown.append(s)
        n_input = _finite_unique(_col(facet_summary, "width"))
        plot_width_profile(row[0], facet, n_input[0] if n_input.size == 1 else None)
        plot_mode_traces(row[1], facet, "q", sigma_w2_n=s)
        plot_mode_traces(row[2], facet, "q_tilde", sigma_w2_n=s)
        row[1].set_title(r"forward $q^{\,l}$", loc="left")
        row[2].set_title(r"backward $\tilde q^{\,l}$", loc="left")
        if varying:
            row[0].set_title(_describe([names[i] for i in varying], tuple(key[i] for i in varying)), loc="left")
    handles, labels = axes[0][1].get_legend_handles_labels()
    handles += [Line2D([], [], color="black", lw=1.1, ls=(0, (4, 3))), Patch(color="0.35", alpha=0.25, lw=0)]
    labels += ["mean-field theory", "16th–84th percentile over seeds"]
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    s_text = ", ".join(sorted({f"{v:g}" for v in shown if math.isfinite(v)}))
    fig.suptitle(_title(r"Fan-in keeps $q^{\,l}$ flat, fan-out keeps $\tilde q^{\,l}$ flat: "
                        r"$\sigma_{w,l}^2 = \sigma_w^2 N\,/\,N_\mathrm{fan}(l)$", names, keys, constant,
                        _seeds_text(summary, layers), [f"{S_LABEL} = {s_text}"]))
    return fig


# --- finite-width fluctuations and Theorem 1.1 ---------------------------------------------------

MIN_SEEDS_FOR_SPREAD = 3  # a variance across fewer seeds says nothing


def _series_key(layers: Table) -> str:
    """The column that names a network shape: the width profile if the run has one, else ``width``."""
    return "widths" if "widths" in _variant_names(layers) else "width"


def _series_label(name: str, value) -> str:
    if name == "width":
        return f"$N$ = {int(value)}"
    text = str(value)
    return f"$N$ = {text.partition(':')[2]}" if text.startswith("constant:") else text


def _one_sigma(layers: Table, summary: Table) -> float | None:
    """The σ_w²·N a per-width figure shows: the swept value at the critical point, else the middle one."""
    swept = _finite_unique(_col(layers, "sigma_w2_n"))
    if not swept.size:
        return None
    crit = _finite_unique(_col(summary, "sigma_w2_n_crit"))
    hit = closest_swept(swept, float(crit[0])) if crit.size else None
    return hit if hit is not None else float(swept[len(swept) // 2])


def plot_seed_spread(ax: Axes, layers: Table, *, x: str = "beta", n_seeds: int | None = None) -> list[Artist]:
    """Draw the variance across seeds of ln q̃ˡ, one curve per network shape (width).

    Parameters
    ----------
    ax : Axes
    layers : dict of column arrays
        Rows of ``layers.csv`` for one activation, depth, σ_w²·N and σ_b²; one series per width.
    x : {"beta", "distance"}
        Against β from layer l to the top (``beta_to_top`` = Σ_{m=l}^{L-1} 1/N_m), where the widths
        collapse onto one curve, or against the number of layers to the top, L − l.
    n_seeds : int, optional
        Seeds behind each variance; with it, the exact curve (dashed, ``var_ln_q_tilde_theory``)
        carries the band ±2·√(2/(S−1)) of its value, where a Gaussian sample variance would fall.
    """
    artists: list[Artist] = []
    series = _series_key(layers)
    values = _col(layers, series)
    names = sorted(set(values), key=lambda v: (str(v) if series == "widths" else float(v)))
    colours = _cycle(OKABE_ITO, len(names))
    for name, colour in zip(names, colours):
        rows = values == name
        order = np.argsort(_col(layers, "layer")[rows])
        layer = _col(layers, "layer")[rows][order]
        depth = _col(layers, "depth")[rows][order]
        xs = _col(layers, "beta_to_top")[rows][order] if x == "beta" else depth - layer
        var, th = (_col(layers, c)[rows][order] for c in ("var_ln_q_tilde", "var_ln_q_tilde_theory"))
        if np.isfinite(th).any():
            if n_seeds is not None and n_seeds > 1:
                half = 2 * th * math.sqrt(2.0 / (n_seeds - 1))
                artists.append(ax.fill_between(xs, th - half, th + half, color=colour, alpha=0.12, lw=0, zorder=1))
            (dashed,) = ax.plot(xs, th, color=colour, lw=1.4, ls=(0, (4, 2)), zorder=3)
            artists.append(dashed)
        if np.isfinite(var).any():
            (line,) = ax.plot(xs, var, color=colour, lw=1.2, marker="o", ms=3, zorder=4,
                              label=_series_label(series, name))
            artists.append(line)
    ax.set_xlabel(r"$\beta_l$ = sum of $1/N_m$ over $l \leq m < L$" if x == "beta" else r"layers to the top, $L-l$")
    ax.set_ylabel(r"$\mathrm{Var}_{\mathrm{seeds}}[\ln \tilde q^{\,l}]$")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(True, color="0.9", lw=0.6, zorder=0)
    return artists


def _figure_seed_spread(layers: Table, summary: Table) -> Figure | None:
    n = _finite_unique(_col(layers, "n_seeds"))
    if not n.size or n.max() < MIN_SEEDS_FOR_SPREAD or not np.isfinite(_col(layers, "var_ln_q_tilde")).any():
        return None
    names = tuple(k for k in _config_keys(layers) if k not in ("width", "widths"))
    keys = _keys(layers, names)
    if not keys:
        return None
    varying, constant = _split_keys(keys, names)
    fig, axes = _grid(2 * len(keys), (5.4, 4.0), extra=(0.0, 0.8), ncols_max=2)
    shown = []
    for i, key in enumerate(keys):
        facet = _subset(layers, _mask(layers, names, key))
        s = _one_sigma(facet, _subset(summary, _mask(summary, names, key)))
        shown.append(s)
        facet = _subset(facet, np.isclose(_col(facet, "sigma_w2_n"), s))
        seeds = int(np.nanmax(_col(facet, "n_seeds")))
        for ax, x in zip(axes[2 * i:2 * i + 2], ("distance", "beta")):
            plot_seed_spread(ax, facet, x=x, n_seeds=seeds)
            if varying:
                ax.set_title(_describe([names[j] for j in varying], tuple(key[j] for j in varying)))
    handles, labels = axes[0].get_legend_handles_labels()
    handles += [Line2D([], [], color="0.3", lw=1.4, ls=(0, (4, 2)), label="exact, one input (Gaussian weights)"),
                Patch(color="0.3", alpha=0.15, lw=0, label=r"exact $\pm 2\sqrt{2/(S-1)}$: seed-sampling range")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False)
    extra = [f"{S_LABEL} = {shown[0]:g}"] if len(set(shown)) == 1 else []
    fig.suptitle(_title(r"Finite-width spread: variance across seeds of $\ln \tilde q^{\,l}$", names, keys,
                        constant, _seeds_text(summary, layers), extra))
    return fig


def plot_thm11_ratio(ax: Axes, layers: Table, *, series: str = "sigma_w2_n",
                     cmap: mcolors.Colormap = SEQUENTIAL_CMAP, norm: mcolors.Normalize | None = None) -> list[Artist]:
    """Draw Theorem 1.1's ratio E[‖δˡ‖²‖φ(zˡ⁻¹)‖²] / (E[‖δˡ‖²] E[‖φ(zˡ⁻¹)‖²]) against layer.

    One curve per value of ``series`` (``sigma_w2_n``: coloured by ``cmap(norm(·))``; a width
    column: Okabe–Ito), the band ±2 jackknife standard errors over seeds (``thm11_ratio_se``), the
    16th–84th percentiles of the per-seed ratio dotted (each seed's own inputs; exactly 1 with one
    input), and the line at 1 where the independence assumption of Theorem 1.1 holds.
    """
    artists: list[Artist] = [ax.axhline(1.0, color="black", lw=1.0, zorder=2)]
    values = _col(layers, series)
    names = sorted(set(values), key=lambda v: (str(v) if series == "widths" else float(v)))
    numeric = series != "widths"
    if series == "sigma_w2_n" and norm is None and names:
        norm = mcolors.Normalize(min(names), max(names)) if len(names) > 1 else mcolors.Normalize(names[0] - 1, names[0] + 1)
    colours = [cmap(norm(v)) for v in names] if series == "sigma_w2_n" else _cycle(OKABE_ITO, len(names))
    for name, colour in zip(names, colours):
        rows = (values == name) if not numeric else np.isclose(values.astype(float), float(name))
        order = np.argsort(_col(layers, "layer")[rows])
        layer = _col(layers, "layer")[rows][order]
        y, lo, hi, se = (_col(layers, c)[rows][order]
                         for c in ("thm11_ratio", "thm11_ratio_lo", "thm11_ratio_hi", "thm11_ratio_se"))
        ok = np.isfinite(y) & np.isfinite(se)
        if ok.any():
            artists.append(ax.fill_between(layer, np.maximum(y - 2 * se, 0), y + 2 * se, where=ok, color=colour,
                                           alpha=0.16, lw=0, zorder=1))
        for edge in (lo, hi):
            if np.isfinite(edge).any():
                artists += ax.plot(layer, edge, color=colour, lw=0.9, ls=":", zorder=2)
        if np.isfinite(y).any():
            label = f"{S_LABEL} = {name:g}" if series == "sigma_w2_n" else _series_label(series, name)
            (line,) = ax.plot(layer, y, color=colour, lw=1.6, zorder=3, label=label)
            artists.append(line)
    ax.set_xlabel(LAYER_LABEL)
    ax.set_ylabel(r"$\mathrm{E}[XY]\,/\,(\mathrm{E}[X]\,\mathrm{E}[Y])$")
    ax.grid(True, color="0.9", lw=0.6, zorder=0)
    return artists


def _figure_thm11(layers: Table, summary: Table) -> Figure | None:
    if not np.isfinite(_col(layers, "thm11_ratio")).any():
        return None
    by_sigma = _finite_unique(_col(layers, "sigma_w2_n")).size > 1
    series = "sigma_w2_n" if by_sigma else _series_key(layers)
    names = tuple(k for k in _config_keys(layers) if by_sigma or k not in ("width", "widths"))
    keys = _keys(layers, names)
    if not keys:
        return None
    varying, constant = _split_keys(keys, names)
    fig, axes = _grid(len(keys), (6.4, 4.2) if len(keys) == 1 else (5.0, 3.8), extra=(0.0, 0.8))
    for ax, key in zip(axes, keys):
        plot_thm11_ratio(ax, _subset(layers, _mask(layers, names, key)), series=series)
        if varying:
            ax.set_title(_describe([names[j] for j in varying], tuple(key[j] for j in varying)))
    handles, _ = axes[0].get_legend_handles_labels()
    handles += [Patch(color="0.35", alpha=0.25, lw=0, label="±2 s.e. (jackknife over seeds)"),
                Line2D([], [], color="0.35", lw=0.9, ls=":", label="16th–84th percentile of the per-seed ratio"),
                Line2D([], [], color="black", lw=1.0, label="1: $\\delta^l$ independent of $\\phi(z^{l-1})$")]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    extra = []
    if not by_sigma:
        extra = [f"{S_LABEL} = {_finite_unique(_col(layers, 'sigma_w2_n'))[0]:g}"]
    fig.suptitle(_title(r"Theorem 1.1's independence assumption, $X = \|\delta^l\|^2$, $Y = \|\phi(z^{l-1})\|^2$"
                        "\n(expectations over inputs and seeds)", names, keys, constant, _seeds_text(summary, layers), extra))
    return fig


# --- the run folder --------------------------------------------------------------------------------

FIGURES = ("q_tilde.png", "grad_norm.png", "stability.png", "depth_map.png", "phase.png", "fan_modes.png",
           "seed_spread.png", "thm11.png")


def render_run(run_dir: Path) -> list[Path]:
    """Render the figures of a run folder from its CSVs into ``RUN_DIR/plots/``.

    Each PNG is written atomically (temporary name in the same folder, then renamed). A figure with
    nothing to show (no finite values, a single depth for the depth map) is skipped.

    Returns
    -------
    list of Path
        The files written, in the order of :data:`FIGURES`.

    Raises
    ------
    hevar.errors.UsageError
        If the folder or one of its CSVs is missing or malformed (from :func:`hevar.results.store.read_run`).
    """
    run_dir = Path(run_dir)
    layers, summary, theory = store.read_run(run_dir)
    builders = {
        "q_tilde.png": lambda: _figure_traces(layers, summary, "q_tilde"),
        "grad_norm.png": lambda: _figure_traces(layers, summary, "grad_norm2"),
        "stability.png": lambda: _figure_stability(summary, theory),
        "depth_map.png": lambda: _figure_depth_map(summary),
        "fan_modes.png": lambda: _figure_fan_modes(layers, summary),
        "phase.png": lambda: _figure_phase(summary, theory),
        "seed_spread.png": lambda: _figure_seed_spread(layers, summary),
        "thm11.png": lambda: _figure_thm11(layers, summary),
    }
    written: list[Path] = []
    out = run_dir / "plots"
    with matplotlib.rc_context(_RC):
        for name in FIGURES:
            fig = builders[name]()
            if fig is None:
                continue
            buffer = io.BytesIO()
            # constrained layout places everything; the tight box only guards against a long title
            fig.savefig(buffer, format="png", dpi=DPI, facecolor="white", bbox_inches="tight", pad_inches=0.08)
            out.mkdir(exist_ok=True)
            store.write_atomic(out / name, buffer.getvalue())
            written.append(out / name)
    return written
