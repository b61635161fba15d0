"""A training run's results as pandas DataFrames: what :func:`hevar.train` returns and :func:`hevar.load`
reads back from a ``hevar train`` folder.

A :class:`TrainingRun` holds one DataFrame per table of the folder — ``training`` (per
configuration, seed and evaluation step), ``training_summary`` (per configuration: final accuracies
over seeds) and ``training_grads`` (‖∂loss/∂Wˡ‖² and ‖∂loss/∂bˡ‖² at step 0 per seed and layer) —
the manifest as a dict, and the folder (None for a run kept in memory). In-memory and on-disk runs
go through the same CSV bytes and the same reader (:func:`hevar.results.store.read_frame`), so
``hevar.train(...)`` equals ``hevar.load(folder)`` of the CLI's run with the same settings, frame for frame.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Mapping

from hevar.errors import UsageError
from hevar.results import store


def _tables() -> dict[str, tuple[str, tuple[str, ...]]]:
    from hevar.experiments.train import TRAINING_TABLES

    return TRAINING_TABLES


class TrainingRun:
    """The tables, manifest and folder of one training run."""

    def __init__(self, frames: Mapping[str, Any], manifest: Mapping[str, Any], path: Path | None = None) -> None:
        self._frames = dict(frames)
        self.manifest: dict[str, Any] = dict(manifest)  # config, training settings, data, versions, attempts
        self.path: Path | None = None if path is None else Path(path)

    @property
    def training(self):
        """One row per configuration, seed and evaluation step: train loss, train and test accuracy, status."""
        return self._frames["training"]

    @property
    def training_summary(self):
        """One row per configuration: the final test accuracy over seeds (mean, 16th/84th percentiles, sd)."""
        return self._frames["training_summary"]

    @property
    def training_grads(self):
        """One row per configuration, seed and layer: ‖∂loss/∂Wˡ‖² and ‖∂loss/∂bˡ‖² at step 0."""
        return self._frames["training_grads"]

    summary = training_summary

    @classmethod
    def from_tables(cls, tables: Mapping[str, list[dict]], manifest: Mapping[str, Any],
                    path: Path | None = None) -> "TrainingRun":
        frames = {name: store.read_frame(store.csv_bytes(columns, tables[name]))
                  for name, (_, columns) in _tables().items()}
        return cls(frames, manifest, path)

    @classmethod
    def load(cls, run_dir: Path | str) -> "TrainingRun":
        """Read a finished run folder written by ``hevar train`` or ``hevar.train(out=...)``."""
        run_dir = Path(run_dir)
        what = "The 'run_dir' parameter must be a hevar training run folder"
        manifest = store.read_manifest(run_dir) if run_dir.is_dir() else None
        if manifest is None:
            raise UsageError(f"{what}. Got '{run_dir}' instead (no {store.MANIFEST}).", param="run_dir")
        missing = [file for file, _ in _tables().values() if not (run_dir / file).exists()]
        if missing:
            hint = (f" The run did not finish; complete it with `hevar train --resume {shlex.quote(str(run_dir))}`."
                    if (run_dir / store.POINTS).is_dir() else "")
            raise UsageError(f"{what}. Got '{run_dir}' instead (missing {', '.join(missing)}).{hint}", param="run_dir")
        frames = {name: store.read_frame(run_dir / file) for name, (file, _) in _tables().items()}
        return cls(frames, manifest, run_dir)

    def plot(self, name: str = "training", ax=None, **options):
        """Draw ``training`` (test accuracy against step; ``quantity=`` test_acc, train_acc or
        train_loss) or ``trainability`` (the heatmap with L = k·ξ_c; ``ks=``) on ``ax``; returns the Axes."""
        import numpy as np

        from hevar.views.figures.trainability import plot_trainability
        from hevar.views.figures.training import plot_training_curves

        if name not in ("training", "trainability"):
            raise UsageError(f"The 'name' parameter must be one of training, trainability. Got {name!r} instead.",
                             param="name")
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")

        def columns(frame) -> dict:
            return {c: frame[c].to_numpy(dtype=object if c in store.STRING_COLUMNS else float) for c in frame.columns}

        summary = columns(self.training_summary)
        if name == "training":
            chance = float(summary["chance"][0]) if len(summary["chance"]) else None
            plot_training_curves(ax, columns(self.training), chance, **options)
        else:
            first = np.ones(len(summary["depth"]), dtype=bool)
            for k in ("activation", "arch", "width", "sigma_b2", "dist"):
                if len(first):
                    first &= summary[k] == summary[k][0]
            plot_trainability(ax, {k: v[first] for k, v in summary.items()}, **options)
        return ax

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "in memory"
        return (f"TrainingRun({len(self.training_summary)} configurations, {len(self.training)} evaluation rows; "
                f"{where})")
