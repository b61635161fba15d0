"""The stability figure: χ̂ against σ_w²·N, each series beside its own theory, and the crossing χ̂ = 1."""

from __future__ import annotations


import numpy as np
import math

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from hevar.views.figures.common import (OKABE_ITO, S_LABEL, Table, _NOTE_SIZE, _col, _cycle, _describe, _finite_unique, _grid, _key_text, _keys, _mask, _nrows, _seeds_text, _split_keys, _subset, _title, _variant_names, critical_label)


# --- stability curve -------------------------------------------------------------------------------


def chi1_with_breaks(sigma_w2_n: np.ndarray, chi1: np.ndarray, q_star: np.ndarray | None = None,
                     factor: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """χ₁ on its grid, sorted, with nan inserted where it jumps, so a line is not drawn across.

    A jump is where the fixed point reached changes branch (q* switches between finite and ∞, or
    moves by more than a factor 10 in one step), or where |Δχ₁| exceeds ``factor`` times the
    median step: χ₁ is smooth between jumps, so its steps on a fine grid are all alike."""
    order = np.argsort(sigma_w2_n, kind="stable")
    s, c = np.asarray(sigma_w2_n, dtype=float)[order], np.asarray(chi1, dtype=float)[order]
    if s.size < 3:
        return s, c
    steps = np.abs(np.diff(c))
    finite = steps[np.isfinite(steps)]
    jump = steps > factor * (np.median(finite) if finite.size else np.inf)
    if q_star is not None:
        q = np.asarray(q_star, dtype=float)[order]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.abs(np.log(q[1:]) - np.log(q[:-1]))
        jump |= (np.isinf(q[1:]) != np.isinf(q[:-1])) | (ratio > math.log(10.0))
    cut = np.flatnonzero(jump) + 1
    return np.insert(s, cut, np.nan), np.insert(c, cut, np.nan)


def _panel_crossings(crossings: Table | None, summary: Table) -> list[dict]:
    """The crossings.csv rows of the curves in ``summary`` (none for a run folder without the file)."""
    if crossings is None or not _nrows(crossings) or "curve_id" not in summary:
        return []
    ids = set(summary["curve_id"])
    return [{k: v[i] for k, v in crossings.items()} for i in range(_nrows(crossings)) if crossings["curve_id"][i] in ids]


def _crossing_text(row: dict) -> str:
    lo, hi, value = row["sigma_w2_n_cross_lo"], row["sigma_w2_n_cross_hi"], row["sigma_w2_n_cross"]
    width = hi - lo if np.isfinite(hi - lo) and hi > lo else 0.01
    decimals = min(4, max(0, 1 - math.floor(math.log10(width))))
    return rf"$\hat\chi = 1$ at {S_LABEL} = {value:.{decimals}f} [{lo:.{decimals}f}, {hi:.{decimals}f}] (95 %)"


def plot_stability(ax: Axes, summary: Table, theory: Table | None = None, crossings: Table | None = None, *,
                   zoom: bool = True) -> list[Artist]:
    """Draw χ̂ against σ_w²·N for one (activation, σ_b²), each series beside its own theory.

    Per series (depth, width profile, fan mode, distribution): the measured χ̂ ± 2 s.e. and, dashed
    in the same colour, ``chi_theory`` — the same fit applied to the mean-field trajectory of that
    configuration, at its depth, fan mode and width profile: the number χ̂ should match. The
    constant-width χ₁ (L → ∞) from ``theory`` and the critical σ_w²·N (2/N for ReLU) are drawn
    only where they describe every series (``chi1`` is empty for a width profile whose per-layer
    gains differ); χ₁ is broken where it jumps (:func:`chi1_with_breaks`). The measured crossing
    comes from ``crossings`` (``crossings.csv``): a diamond with its 95 % interval, or, for a
    ``jump``, the bracket shaded. Configurations whose status is not "ok" are left out and listed.

    Parameters
    ----------
    ax : Axes
    summary : dict of column arrays
        Rows of ``summary.csv`` for one activation and σ_b².
    theory : dict of column arrays, optional
        Rows of ``theory.csv`` for the same activation and σ_b².
    crossings : dict of column arrays, optional
        Rows of ``crossings.csv`` (any; those of this panel's curves are used).
    zoom : bool
        Add an inset magnifying χ = 1 around the crossings when they are too small to read.
    """
    artists: list[Artist] = []
    s_all = _col(summary, "sigma_w2_n")
    swept = _finite_unique(s_all)
    if not swept.size:
        return artists
    span = swept.max() - swept.min() if swept.size > 1 else max(abs(swept[0]), 1.0)
    x_lo, x_hi = swept.min() - 0.05 * span, swept.max() + 0.05 * span
    activation = str(_col(summary, "activation")[0])
    chi1_col = _col(summary, "chi1")
    chi1_applies = bool(np.isfinite(chi1_col[np.isfinite(s_all)]).all())
    crit_values = _finite_unique(_col(summary, "sigma_w2_n_crit"))
    s_crit = float(crit_values[0]) if crit_values.size and chi1_applies else np.nan

    theory_curve = (np.array([]), np.array([]))
    if chi1_applies and theory is not None and _nrows(theory) and np.isfinite(theory["chi1"]).any():
        inside = (theory["sigma_w2_n"] >= x_lo) & (theory["sigma_w2_n"] <= x_hi)
        theory_curve = chi1_with_breaks(theory["sigma_w2_n"][inside], theory["chi1"][inside],
                                        _col(theory, "q_star")[inside])

    series_names = ("depth", "width") + _variant_names(summary)
    series = _keys(summary, series_names)
    series_varying, _ = _split_keys(series, series_names)
    chi_hat, chi_se, status = _col(summary, "chi_hat"), _col(summary, "chi_hat_se"), _col(summary, "status")
    chi_fit_theory = _col(summary, "chi_theory")
    offsets = (np.arange(len(series)) - (len(series) - 1) / 2) * 0.006 * span  # keep overlapping bars apart
    panel_crossings = _panel_crossings(crossings, summary)
    measured, notes = [], []
    for colour, offset, key in zip(_cycle(OKABE_ITO, len(series)), offsets, series):
        rows = _mask(summary, series_names, key)
        order = np.argsort(s_all[rows])
        s, chi, se, st = s_all[rows][order], chi_hat[rows][order], chi_se[rows][order], status[rows][order]
        fit = chi_fit_theory[rows][order]
        ok = np.isfinite(s) & np.isfinite(chi) & ((st == "ok") | (st == ""))
        name = ", ".join(_key_text(series_names[i], key[i]) for i in series_varying)
        bad = np.isfinite(s) & ~ok
        notes += [f"{S_LABEL} = {v:.3g}{' (' + name + ')' if name else ''}: {t or 'no fit'}" for v, t in zip(s[bad], st[bad])]
        ids = set(_col(summary, "curve_id")[rows])
        cross = [c for c in panel_crossings if c["curve_id"] in ids]
        measured.append((colour, offset, name, s[ok], chi[ok], se[ok], s[np.isfinite(fit)], fit[np.isfinite(fit)],
                         cross[0] if cross else None))

    def draw(target: Axes, labelled: bool, offset_scale: float = 1.0) -> list[Artist]:
        label = (lambda text: text) if labelled else (lambda text: "_nolegend_")
        drawn: list[Artist] = []
        if theory_curve[0].size:
            drawn += target.plot(*theory_curve, color="0.55", lw=1.4, zorder=2,
                                 label=label(r"$\chi_1$: mean field, $L \to \infty$"))
        drawn.append(target.axhline(1.0, color="0.45", lw=1.0, ls=":", zorder=1, label=label(r"$\chi = 1$")))
        if np.isfinite(s_crit):
            drawn.append(target.axvline(s_crit, color="black", lw=1.1, ls="--", zorder=1,
                                        label=label(f"{critical_label(activation, s_crit)}: $\\chi_1 = 1$")))
        for k, (colour, offset, name, s, chi, se, s_fit, fit, cross) in enumerate(measured):
            suffix = f" ({name})" if name else ""
            if s_fit.size:
                drawn += target.plot(s_fit + offset * offset_scale, fit, color=colour, lw=1.3, ls=(0, (4, 2.5)),
                                     marker="_", ms=10, mew=1.6, zorder=3,
                                     label=label("theory at this depth, same fit" + suffix))
            if s.size:
                drawn.append(target.errorbar(s + offset * offset_scale, chi, yerr=2 * np.nan_to_num(se, nan=0.0),
                                             fmt="o", color=colour, ms=5, capsize=3, elinewidth=1.3, zorder=4,
                                             label=label(r"measured $\hat\chi$, bars $\pm 2\,$s.e." + suffix)))
            if cross is None:
                continue
            if cross["kind"] == "crossing":
                value, lo, hi = cross["sigma_w2_n_cross"], cross["sigma_w2_n_cross_lo"], cross["sigma_w2_n_cross_hi"]
                drawn.append(target.errorbar(value, 1.0, xerr=[[value - lo], [hi - value]], fmt="D", color=colour,
                                             mec="black", mew=1.0, ms=8, capsize=4, elinewidth=2.0, zorder=6,
                                             label=label(_crossing_text(cross) + suffix)))
            elif cross["kind"] == "jump":
                drawn.append(target.axvspan(cross["bracket_lo"], cross["bracket_hi"], color=colour, alpha=0.18, lw=0,
                                            zorder=0, label=label(f"$\\hat\\chi$ jumps across 1 between "
                                                                  f"{cross['bracket_lo']:g} and {cross['bracket_hi']:g}"
                                                                  + suffix)))
        target.grid(True, color="0.9", lw=0.6, zorder=0)
        return drawn

    artists += draw(ax, labelled=True)
    if np.isfinite(s_crit) and x_lo <= s_crit <= x_hi:  # outside, the label would squeeze the layout to nothing
        text = "2/N" if activation == "relu" and abs(s_crit - 2.0) < 1e-9 else f"{s_crit:.3g}"
        artists.append(ax.annotate(text, xy=(s_crit, 1.0), xycoords=("data", "axes fraction"), xytext=(4, -4),
                                   textcoords="offset points", ha="left", va="top", fontsize=_NOTE_SIZE + 1,
                                   fontweight="bold"))
    ax.set_xlim(x_lo, x_hi)
    ax.set_xlabel(S_LABEL)
    ax.set_ylabel(r"per-layer factor $\chi$  ($\tilde q^{\,l} = \chi\,\tilde q^{\,l+1}$)")

    points = [m[-1] for m in measured if m[-1] is not None and m[-1]["kind"] == "crossing"]
    if zoom and points:
        inset = _stability_inset(ax, draw, points, s_crit, measured, span)
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


def _stability_inset(ax: Axes, draw, points: list[dict], s_crit: float, measured, span: float):
    """A magnified view of χ = 1 around the crossings, in the corner the curve leaves empty."""
    centres = [c["sigma_w2_n_cross"] for c in points] + ([s_crit] if np.isfinite(s_crit) else [])
    half = max([3 * (c["sigma_w2_n_cross_hi"] - c["sigma_w2_n_cross_lo"]) for c in points] + [0.03 * span])
    x0, x1 = min(centres) - half, max(centres) + half
    if x1 - x0 > 0.25 * span:  # the crossings and their intervals already read at full scale
        return None
    ys = [1.0]
    for _, _, _, s, chi, se, s_fit, fit, _ in measured:
        near = (s >= x0) & (s <= x1)
        ys += list(chi[near] + 2 * np.nan_to_num(se[near])) + list(chi[near] - 2 * np.nan_to_num(se[near]))
        ys += list(fit[(s_fit >= x0) & (s_fit <= x1)])
    ys = np.array([y for y in ys if np.isfinite(y)])
    y_pad = max(0.15 * (ys.max() - ys.min()), 0.01)
    # an increasing χ leaves the lower right empty, a decreasing one the upper right
    rising = True
    s_fit, fit = measured[0][6], measured[0][7]
    if s_fit.size > 1:
        rising = np.interp(x1, s_fit, fit) >= np.interp(x0, s_fit, fit)
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


def _figure_stability(summary: Table, theory: Table | None, crossings: Table | None = None) -> Figure | None:
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
        plot_stability(ax, _subset(summary, _mask(summary, names, key)), theory_rows, crossings)
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


