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


def plot_training_curves(ax: Axes, training: Table, chance: float | None = None, quantity: str = "test_acc",
                         legend: bool = True) -> list:
    """Draw ``quantity`` (test_acc, train_acc or train_loss) against step on ``ax``, one curve per
    (σ_w²·N, and every other key that varies), mean over seeds with a min–max band; returns the artists.
    More than 10 curves are coloured along viridis in their sorted order."""
    ok = np.asarray(training["status"]) == "ok"
    keys = ("activation", "arch", "depth", "width", "sigma_b2", "dist")
    varying = [k for k in keys if len({v for v in np.asarray(training[k])[ok]}) > 1]
    groups: dict[tuple, list[int]] = {}
    for i in np.flatnonzero(ok):
        key = (float(training["sigma_w2_n"][i]),) + tuple(training[k][i] for k in varying)
        groups.setdefault(key, []).append(i)
    artists = []
    colours = None
    if len(groups) > 10:
        import matplotlib

        colours = matplotlib.colormaps["viridis"](np.linspace(0, 0.95, len(groups)))
    for n, key in enumerate(sorted(groups)):
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
        (line,) = ax.plot(steps, mean, lw=1.8, label=label, color=None if colours is None else colours[n])
        artists.append(line)
        if len(seeds) > 1:
            artists.append(ax.fill_between(steps, np.nanmin(grid, axis=0), np.nanmax(grid, axis=0),
                                           color=line.get_color(), alpha=0.2, lw=0))
    diverged = sorted({s for s in np.asarray(training["status"]) if s != "ok"})
    if chance is not None and quantity != "train_loss":
        artists.append(ax.axhline(chance, color="0.4", ls=":", lw=1, label=f"chance ({chance:g})"))
    ax.set_xlabel("training step")
    ax.set_ylabel({"test_acc": "test accuracy", "train_acc": "train accuracy", "train_loss": "train loss"}[quantity])
    if quantity != "train_loss":
        ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    title = f"{len(diverged)} run(s) diverged" if diverged else None
    if legend:
        ax.legend(fontsize=7 if len(groups) > 6 else 8, loc="best", title=title, title_fontsize=8)
    return artists


MAX_DEPTH_PANELS = 6


def training_figure(training: Table, chance: float | None, title: str = "") -> Figure:
    """The run folder's training.png: test accuracy and train loss against step. One depth: the two
    side by side. Several: one column per depth (the deepest :data:`MAX_DEPTH_PANELS`), test accuracy
    above and train loss below, the legend in the first column only."""
    depths = np.unique(np.asarray(training["depth"], dtype=float)[np.asarray(training["status"]) == "ok"])
    if len(depths) <= 1:
        fig = Figure(figsize=(11, 4.2), dpi=110, layout="constrained")
        left, right = fig.subplots(1, 2)
        plot_training_curves(left, training, chance, "test_acc")
        plot_training_curves(right, training, None, "train_loss")
        right.set_yscale("log")
    else:
        depths = depths[-MAX_DEPTH_PANELS:]
        fig = Figure(figsize=(3.6 * len(depths) + 0.6, 6.4), dpi=110, layout="constrained")
        axes = fig.subplots(2, len(depths), sharex=True)
        for j, depth in enumerate(depths):
            rows = np.asarray(training["depth"], dtype=float) == depth
            sub = {k: np.asarray(v)[rows] for k, v in training.items()}
            plot_training_curves(axes[0, j], sub, chance, "test_acc", legend=j == 0)
            plot_training_curves(axes[1, j], sub, None, "train_loss", legend=False)
            axes[1, j].set_yscale("log")
            axes[0, j].set_title(f"L = {depth:g}", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def training_title(manifest: Mapping | None) -> str:
    """A figure title from a training run's manifest: data, activation, depths, widths and the optimiser."""
    if not manifest:
        return ""
    cfg, tr = manifest.get("config", {}), manifest.get("training", {})

    def join(v) -> str:
        return ",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)

    return (f"{manifest.get('data', '?')}: {join(cfg.get('act', '?'))}, L = {join(cfg.get('depth', '?'))}, "
            f"N = {join(cfg.get('width', '?'))}, {tr.get('optimizer', '?')} lr {tr.get('lr', float('nan')):g}, "
            f"batch {tr.get('batch', '?')}, {tr.get('steps', '?')} steps")


def is_training_run(run_dir) -> bool:
    """A folder written by ``hevar train`` (training.csv, no sweep tables)."""
    from pathlib import Path

    return (Path(run_dir) / "training.csv").exists() and not (Path(run_dir) / "layers.csv").exists()


def render_training_run(run_dir, formats: tuple[str, ...] = ("png",)) -> list:
    """Draw a training run folder's figures from its CSVs into ``RUN_DIR/plots/``: training.png
    always, trainability.png where the run has ≥ 2 depths and ≥ 2 σ_w²·N. Returns the files written."""
    import io
    from pathlib import Path

    import matplotlib

    from hevar.experiments.train import SUMMARY_COLUMNS, TRAINING_COLUMNS
    from hevar.results import store
    from hevar.views.figures.common import _RC, DPI
    from hevar.views.figures.trainability import trainability_figure

    run_dir = Path(run_dir)
    training = store.read_table(run_dir / "training.csv", TRAINING_COLUMNS, nonempty=True)  # a row per evaluation
    summary = store.read_table(run_dir / "training_summary.csv", SUMMARY_COLUMNS, nonempty=True)
    manifest = store.read_manifest(run_dir)
    chance = float(summary["chance"][0]) if len(summary["chance"]) else None
    figures = {"training": training_figure(training, chance, training_title(manifest))}
    fig = trainability_figure(summary, title=training_title(manifest))
    if fig is not None:
        figures["trainability"] = fig
    written = []
    out = run_dir / "plots"
    with matplotlib.rc_context(_RC):
        for name, fig in figures.items():
            for fmt in formats:
                buffer = io.BytesIO()
                fig.savefig(buffer, format=fmt, dpi=DPI, facecolor="white", bbox_inches="tight", pad_inches=0.08,
                            metadata={"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt))
                out.mkdir(exist_ok=True)
                store.write_atomic(out / f"{name}.{fmt}", buffer.getvalue())
                written.append(out / f"{name}.{fmt}")
    return written
