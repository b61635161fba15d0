"""training.png: test accuracy against the SGD step, one curve per σ_w²·N (He et al. 2015, Fig. 3).

Drawn from ``training.csv`` alone (a table as :func:`hevar.results.store.read_table` gives it): the
seed mean of the test accuracy at each evaluation step, with a band from the lowest to the highest
seed, and chance (1/classes) dotted. A diverged seed leaves its curve where it diverged; the legend
counts those.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

Table = Mapping[str, np.ndarray]


def plot_training_curves(ax: Axes, training: Table, chance: float | None = None, quantity: str = "test_acc") -> list:
    """Draw ``quantity`` (test_acc, train_acc or train_loss) against step on ``ax``, one curve per
    (σ_w²·N, and every other key that varies), mean over seeds with a min–max band; returns the artists."""
    ok = np.asarray(training["status"]) == "ok"
    keys = ("activation", "arch", "depth", "width", "sigma_b2", "dist")
    varying = [k for k in keys if len({v for v in np.asarray(training[k])[ok]}) > 1]
    groups: dict[tuple, list[int]] = {}
    for i in np.flatnonzero(ok):
        key = (float(training["sigma_w2_n"][i]),) + tuple(training[k][i] for k in varying)
        groups.setdefault(key, []).append(i)
    artists = []
    for key in sorted(groups):
        idx = np.array(groups[key])
        steps = np.unique(training["step"][idx])
        seeds = np.unique(training["seed_index"][idx])
        grid = np.full((len(seeds), len(steps)), np.nan)
        for i in idx:
            grid[np.searchsorted(seeds, training["seed_index"][i]), np.searchsorted(steps, training["step"][i])] = \
                training[quantity][i]
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(grid, axis=0)
        label = f"σ_w²·N = {key[0]:g}" + "".join(f", {k} {v}" for k, v in zip(varying, key[1:]))
        label += f" ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})"
        (line,) = ax.plot(steps, mean, lw=1.8, label=label)
        artists.append(line)
        if len(seeds) > 1:
            artists.append(ax.fill_between(steps, np.nanmin(grid, axis=0), np.nanmax(grid, axis=0),
                                           color=line.get_color(), alpha=0.2, lw=0))
    diverged = sorted({s for s in np.asarray(training["status"]) if s != "ok"})
    if chance is not None and quantity != "train_loss":
        artists.append(ax.axhline(chance, color="0.4", ls=":", lw=1, label=f"chance ({chance:g})"))
    ax.set_xlabel("SGD step")
    ax.set_ylabel({"test_acc": "test accuracy", "train_acc": "train accuracy", "train_loss": "train loss"}[quantity])
    if quantity != "train_loss":
        ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    title = f"{len(diverged)} run(s) diverged" if diverged else None
    ax.legend(fontsize=8, loc="best", title=title, title_fontsize=8)
    return artists


def training_figure(training: Table, chance: float | None, title: str = "") -> Figure:
    """The run folder's training.png: test accuracy (left) and train loss (right) against step."""
    fig = Figure(figsize=(11, 4.2), dpi=110, layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_training_curves(left, training, chance, "test_acc")
    plot_training_curves(right, training, None, "train_loss")
    right.set_yscale("log")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
