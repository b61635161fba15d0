"""Style, table access and labels shared by every figure family."""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
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
    "q": (r"$q^{\,l} = \mathrm{E}[(z^l)^2]$", "forward variance", "q.png"),
    # column stem: (y-axis label, what it is, file name)
    "q_tilde": (r"$\tilde q^{\,l} = \mathrm{E}[(\delta^l)^2]$", "back-propagated error variance", "q_tilde.png"),
    "grad_norm2": (r"$\|\partial J/\partial W^l\|^2$", "weight-gradient norm", "grad_norm.png"),
}
CONFIG_KEYS = ("activation", "depth", "width", "sigma_b2")




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




def interpolate_crossing(sigma_w2_n: Sequence[float], chi: Sequence[float], near: float | None = None) -> float:
    """The σ_w²·N where a tabulated χ crosses 1, interpolated linearly between the two grid points
    around it (the one nearest ``near`` if it crosses more than once, else the first); nan if it
    does not cross. Used for theory curves; a run's measured crossing comes from ``crossings.csv``
    (:mod:`hevar.results.crossings`), with its interval."""
    s, c = np.asarray(sigma_w2_n, dtype=float), np.asarray(chi, dtype=float)
    keep = np.isfinite(s) & np.isfinite(c)
    order = np.argsort(s[keep], kind="stable")
    s, c = s[keep][order], c[keep][order]
    found = []
    for a in range(len(s) - 1):
        da, db = c[a] - 1.0, c[a + 1] - 1.0
        if da * db > 0 or (da == 0 and db == 0) or s[a] == s[a + 1]:
            continue
        value = float(s[a] + (1.0 - c[a]) * (s[a + 1] - s[a]) / (c[a + 1] - c[a]))
        if not any(abs(v - value) < 1e-12 for v in found):
            found.append(value)
    if not found:
        return math.nan
    if near is not None and np.isfinite(near):
        return min(found, key=lambda v: abs(v - near))
    return found[0]


def _cycle(palette: Sequence[str], n: int) -> list[str]:
    return [palette[i % len(palette)] for i in range(n)]
