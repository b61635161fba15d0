"""signalprop.png: Brock et al.'s (2021) signal-propagation plots of a run with residual blocks.

Drawn from ``signalprop.csv`` alone (:mod:`hevar.experiments.signalprop`): three panels against the
block index l — the average squared channel mean, the average channel variance and the residual
branch's variance — measured (seed mean, solid, with the 16th–84th percentile band across seeds)
beside the mean-field theory at the run's batch size (dashed;
:func:`hevar.blocks.signalprop.theory`: E[M²] = q(1 + (B−1)c)/B, E[V] = q(1 − 1/B)(1 − c),
R = α²(σ_w²N·E[h²] + σ_b²)). One curve per σ_w²·N; one row of panels per other configuration
(activation, depth, width, σ_b², …), at most :data:`MAX_ROWS`. Values are drawn on log₁₀ axes from
the ``log10_`` columns, so depths past float64 still draw. A run without the file has no figure.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from hevar.views.figures.common import (DPI, OKABE_ITO, S_LABEL, _col, _describe, _keys, _mask, _nrows, _split_keys,
                                        _subset, _variant_names)

Table = Mapping[str, np.ndarray]
MAX_ROWS = 4
PANELS = (("channel_mean2", r"avg. squared channel mean  $\overline{(\mathrm{mean}_b\, z^l_i)^2}$"),
          ("channel_var", r"avg. channel variance  $\overline{\mathrm{var}_b\, z^l_i}$"),
          ("branch_var", r"residual branch variance  $\overline{(\alpha(W^lh^l+b^l))^2}$"))


def facet_names(table: Table) -> tuple[str, ...]:
    extra = _variant_names(table)
    base = ("activation", "depth", "widths" if "widths" in extra else "width", "sigma_b2")
    return base + tuple(k for k in extra if k != "widths")


def plot_signalprop(ax: Axes, table: Table, quantity: str = "channel_mean2", **_) -> list:
    """One panel: ``quantity`` (a stem of :data:`PANELS`) against the block, one curve per σ_w²·N."""
    artists = []
    sigmas = np.unique(_col(table, "sigma_w2_n"))
    for j, s in enumerate(sigmas):
        rows = _subset(table, np.isclose(_col(table, "sigma_w2_n"), s))
        order = np.argsort(_col(rows, "layer"))
        layer = _col(rows, "layer")[order]
        log_m = _col(rows, f"log10_{quantity}")[order]
        log_t = _col(rows, f"log10_{quantity}_theory")[order]
        lo = _col(rows, f"{quantity}_lo")[order]
        hi = _col(rows, f"{quantity}_hi")[order]
        color = OKABE_ITO[j % len(OKABE_ITO)]
        ok = np.isfinite(log_m)
        if ok.any():
            artists += ax.plot(layer[ok], log_m[ok], color=color, lw=1.4, marker="o" if ok.sum() <= 30 else None,
                               ms=3, label=f"{S_LABEL} = {s:g}" if len(sigmas) > 1 else "measured")
        band = np.isfinite(lo) & np.isfinite(hi) & (lo > 0) & (hi > 0)
        if band.any():
            artists.append(ax.fill_between(layer[band], np.log10(lo[band]), np.log10(hi[band]), color=color,
                                           alpha=0.2, lw=0))
        okt = np.isfinite(log_t)
        if okt.any():
            artists += ax.plot(layer[okt], log_t[okt], color=color, lw=1.2, ls="--")
    ax.set_xlabel(r"block $l$")
    ax.set_ylabel(r"$\log_{10}$")
    return artists


def figure(tables: Mapping[str, Table | None]) -> Figure | None:
    """The run folder's signalprop.png, or None without ``signalprop.csv`` rows."""
    table = tables.get("signalprop")
    if table is None or not _nrows(table) or not np.isfinite(_col(table, "log10_channel_var")).any():
        return None
    names = facet_names(table)
    keys = _keys(table, names)[:MAX_ROWS]
    if not keys:
        return None
    varying, constant = _split_keys(keys, names)
    fig = Figure(figsize=(15.0, 3.6 * len(keys) + 1.0), layout="constrained", dpi=DPI)
    axes = fig.subplots(len(keys), 3, squeeze=False)
    for r, key in enumerate(keys):
        rows = _subset(table, _mask(table, names, key))
        for c, (quantity, label) in enumerate(PANELS):
            ax = axes[r][c]
            plot_signalprop(ax, rows, quantity)
            ax.set_title(label if r == 0 else "", fontsize=11)
            if c == 0 and varying:
                ax.set_ylabel(_describe([names[i] for i in varying], tuple(key[i] for i in varying)) + "\n$\\log_{10}$")
    batch = np.unique(_col(table, "batch"))
    seeds = np.unique(_col(table, "n_seeds"))
    handles, _ = axes[0][0].get_legend_handles_labels()
    handles += [Line2D([], [], color="0.3", ls="--", lw=1.2, label="mean-field theory at batch B"),
                Patch(color="0.3", alpha=0.2, lw=0, label="16th–84th percentile across seeds")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), frameon=False)
    const = " · ".join(_describe([names[i]], (keys[0][i],)) for i in constant)
    fig.suptitle("Signal propagation per residual block (Brock et al. 2021): measured (seed mean) vs theory\n"
                 f"{const} · B = {', '.join(f'{b:g}' for b in batch)} · {', '.join(f'{s:g}' for s in seeds)} seeds")
    return fig


def panel(ax: Axes, t: Mapping[str, Table | None], quantity: str = "channel_mean2", **options):
    """One panel (``quantity``: channel_mean2, channel_var or branch_var) of the first configuration."""
    table = t.get("signalprop")
    if table is None or not _nrows(table):
        return []
    names = facet_names(table)
    keys = _keys(table, names)
    return plot_signalprop(ax, _subset(table, _mask(table, names, keys[0])), quantity, **options) if keys else []
