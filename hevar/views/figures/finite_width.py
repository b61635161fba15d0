"""Finite-width figures: N_l, qˡ and q̃ˡ per fan mode on a width profile; the spread of ln q̃ˡ
across seeds against β (docs/finite-width.md); Theorem 1.1's independence ratio."""

from __future__ import annotations


import numpy as np
import math

from matplotlib import colors as mcolors
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter
from hevar.views.figures.common import (DPI, LAYER_LABEL, OKABE_ITO, QUANTITIES, SEQUENTIAL_CMAP, S_LABEL, Table, _col, _config_keys, _cycle, _decade_axis, _describe, _finite_unique, _grid, _keys, _mask, _seeds_text, _split_keys, _subset, _title, _variant_names, closest_swept)


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
    if np.isfinite(_col(layers, "var_ln_q_tilde_theory")).any():  # list the exact curve only where it is drawn
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
    if np.isfinite(_col(layers, "thm11_ratio_se")).any():  # only what is drawn: one seed has no s.e.
        handles.append(Patch(color="0.35", alpha=0.25, lw=0, label="±2 s.e. (jackknife over seeds)"))
    lo, hi = _col(layers, "thm11_ratio_lo"), _col(layers, "thm11_ratio_hi")
    if np.any(np.isfinite(lo) & np.isfinite(hi) & (hi > lo)):  # one input per seed: the ratio is exactly 1
        handles.append(Line2D([], [], color="0.35", lw=0.9, ls=":", label="16th–84th percentile of the per-seed ratio"))
    handles.append(Line2D([], [], color="black", lw=1.0, label="1: $\\delta^l$ independent of $\\phi(z^{l-1})$"))
    fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    extra = []
    if not by_sigma:
        extra = [f"{S_LABEL} = {_finite_unique(_col(layers, 'sigma_w2_n'))[0]:g}"]
    fig.suptitle(_title(r"Theorem 1.1's independence assumption, $X = \|\delta^l\|^2$, $Y = \|\phi(z^{l-1})\|^2$"
                        "\n(expectations over inputs and seeds)", names, keys, constant, _seeds_text(summary, layers), extra))
    return fig


