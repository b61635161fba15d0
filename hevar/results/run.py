"""A sweep's results as pandas DataFrames: what :func:`hevar.sweep` returns and :func:`hevar.load` reads.

A :class:`Run` holds one DataFrame per table of a run folder (``layers``, ``summary``, ``seeds``,
``theory`` and, where the run has it, ``crossings``), the manifest as a dict, and the folder it was
written to (None for a run kept in memory). In-memory and on-disk runs go through the same CSV
formatting and the same reader, so ``hevar.load(folder)`` of a CLI run equals ``hevar.sweep(...)`` of
the same settings, frame for frame. Every table carries ``config_id`` (and ``summary`` a
``curve_id``), so any two join with one ``merge``.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Mapping

from hevar.errors import UsageError
from hevar.results import store


class Run:
    """The tables, manifest and folder of one sweep."""

    def __init__(self, frames: Mapping[str, Any], manifest: Mapping[str, Any], path: Path | None = None) -> None:
        self._frames = dict(frames)
        self.manifest: dict[str, Any] = dict(manifest)  # resolved config, versions, seeds, attempts
        self.path: Path | None = None if path is None else Path(path)  # the run folder, or None (in memory)

    # --- the tables ---------------------------------------------------------------------------

    @property
    def layers(self):
        """One row per configuration and layer: measured qˡ, q̃ˡ, gradient norms beside theory."""
        return self._frames["layers"]

    @property
    def summary(self):
        """One row per configuration: χ̂ and its standard error beside the theory, status."""
        return self._frames["summary"]

    @property
    def seeds(self):
        """One row per configuration, seed and layer: the per-seed log₁₀ values."""
        return self._frames["seeds"]

    @property
    def theory(self):
        """χ₁ and q* on a fine σ_w²·N grid per (activation, σ_b²)."""
        return self._frames["theory"]

    @property
    def crossings(self):
        """One row per stability curve: the σ_w²·N where χ̂ crosses 1, with its interval and kind
        (None for a run folder written before crossings were recorded)."""
        return self._frames.get("crossings")

    @property
    def spectra(self):
        """With ``--jacobian``: one row per configuration, seed and quantile level of the squared
        singular values of the input–output Jacobian (None for a run without it)."""
        return self._frames.get("spectra")

    @property
    def signalprop(self):
        """For a stack with residual blocks: per configuration and block, the channel mean², channel
        variance and residual branch variance beside theory (None for other runs)."""
        return self._frames.get("signalprop")

    @property
    def config(self):
        """The resolved :class:`~hevar.experiments.config.SweepConfig`."""
        from hevar.experiments.config import build_config

        return build_config(self.manifest["config"])

    # --- building one -------------------------------------------------------------------------

    @classmethod
    def from_tables(cls, tables: Mapping[str, list[dict]], manifest: Mapping[str, Any], path: Path | None = None) -> Run:
        """From the rows of :func:`hevar.experiments.runner.run`, through the CSV format and reader."""
        frames = {name: store.read_frame(store.csv_bytes(store.table_columns(name, list(rows)), rows))
                  for name, rows in tables.items()}
        return cls(frames, manifest, path)

    @classmethod
    def load(cls, run_dir: Path | str) -> Run:
        """Read a finished run folder written by ``hevar sweep`` or ``hevar.sweep(out=...)``."""
        run_dir = Path(run_dir)
        what = "The 'run_dir' parameter must be a hevar run folder"
        if not run_dir.is_dir():
            reason = "no such folder" if not run_dir.exists() else "not a folder"
            raise UsageError(f"{what}. Got '{run_dir}' instead ({reason}).", param="run_dir")
        manifest = store.read_manifest(run_dir)
        if manifest is None:
            raise UsageError(f"{what}. Got '{run_dir}' instead (no {store.MANIFEST}).", param="run_dir")
        frames = {}
        for name, (file, columns) in store.TABLES.items():
            path = run_dir / file
            if path.exists():
                frames[name] = store.read_frame(path)
        missing = [store.TABLES[n][0] for n in ("layers", "summary", "theory", "seeds") if n not in frames]
        if missing:
            hint = (f" The run did not finish; complete it with `hevar sweep --resume {shlex.quote(str(run_dir))}`."
                    if (run_dir / store.POINTS).is_dir() else "")
            raise UsageError(f"{what}. Got '{run_dir}' instead (missing {', '.join(missing)}).{hint}", param="run_dir")
        return cls(frames, manifest, run_dir)

    # --- views --------------------------------------------------------------------------------

    def tables(self) -> dict[str, dict]:
        """The tables as the figures read them: columns of NumPy arrays (numbers as float)."""
        def columns(frame) -> dict:
            return {c: frame[c].to_numpy(dtype=object if c in store.STRING_COLUMNS else float) for c in frame.columns}

        tables: dict[str, dict | None] = dict.fromkeys((*store.TABLES, "crossings"))
        tables.update({name: columns(frame) for name, frame in self._frames.items()})
        return tables

    def plot(self, name: str, ax=None, **options):
        """Draw figure ``name`` (see :data:`hevar.views.figures.FIGURES`) on ``ax`` (a new Axes if None)
        and return the Axes."""
        from hevar.views import figures

        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
        figures.draw(name, ax, self.tables(), **options)
        return ax

    def __repr__(self) -> str:
        summary = self.summary
        acts = ", ".join(dict.fromkeys(summary["activation"])) if len(summary) else "—"
        where = str(self.path) if self.path is not None else "in memory"
        return (f"Run({acts}: {len(summary)} configurations, {len(self.layers)} layer rows; {where}; "
                f"tables {', '.join(self._frames)})")
