"""Figures of a run, drawn from its tables alone: one module per figure family.

- :mod:`.traces`        q.png, q_tilde.png, grad_norm.png: per-layer qˡ, q̃ˡ, ‖∂J/∂Wˡ‖² against l,
                        one curve per σ_w²·N, seed band, theory dashed;
- :mod:`.stability`     stability.png: χ̂ ± 2 s.e. against σ_w²·N beside each configuration's own
                        theory, χ₁ where it applies (broken at jumps), the measured crossing with
                        its 95 % interval from crossings.csv;
- :mod:`.maps`          depth_map.png (log₁₀ q̃¹/q̃ᴸ over depth × σ_w²·N) and phase.png (χ̂ over
                        σ_w²·N × σ_b² with the critical lines);
- :mod:`.finite_width`  fan_modes.png, seed_spread.png, thm11.png;
- :mod:`.pairs`, :mod:`.spectra`  c_map.png, correlations.png, depth_scales.png (``--input-corr``), spectrum.png
                        (``--jacobian``): the c-map, cˡ across layers, ξ_c and ξ_q, the Jacobian spectrum;
- :mod:`.common`        style, labels and table access.

Every figure is registered in :data:`FIGURES` with the function that builds the run folder's
multi-panel file and the one that draws a single panel on a given :class:`~matplotlib.axes.Axes`
(:func:`draw`, what ``Run.plot`` calls). Tables are dicts of NumPy columns, as
:meth:`hevar.results.run.Run.tables` and :func:`hevar.results.store.read_run` give them. No pyplot
state is used anywhere. One standard-error convention throughout: bars and bands are ±2 s.e.
(or percentiles across seeds, where the legend says so), as in the terminal summary.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hevar.errors import UsageError
from hevar.results import store
from hevar.views.figures import finite_width, maps, pairs, signalprop, spectra, stability, traces
from hevar.views.figures.common import (DPI, LAYER_LABEL, _RC, Table, _config_keys, _keys, _mask, _subset,
                                        closest_swept, critical_label, interpolate_crossing)
from hevar.views.figures.finite_width import plot_mode_traces, plot_seed_spread, plot_thm11_ratio
from hevar.views.figures.maps import critical_line, phase_norm, plot_depth_map, plot_phase
from hevar.views.figures.stability import chi1_with_breaks, plot_stability
from hevar.views.figures.traces import plot_layer_traces

__all__ = ["FIGURES", "FORMATS", "FigureSpec", "LAYER_LABEL", "chi1_with_breaks", "closest_swept", "critical_label",
           "critical_line", "draw", "interpolate_crossing", "parse_formats", "phase_norm", "plot_depth_map",
           "plot_layer_traces", "plot_mode_traces", "plot_phase", "plot_seed_spread", "plot_stability",
           "plot_thm11_ratio", "render_run"]

from hevar.views.formats import FORMATS, parse_formats  # noqa: F401 (re-exported)
SELECTORS = ("activation", "depth", "width", "widths", "mode", "dist", "sigma_b2", "sigma_w2_n", "curve_id",
             "config_id", "input_corr")


@dataclass(frozen=True)
class FigureSpec:
    """One figure: its file stem, what it shows, the run folder's figure and one panel on an Axes."""

    name: str
    what: str
    figure: Callable[[Mapping[str, Table | None]], Figure | None]
    panel: Callable[..., Any]  # (ax, tables, **options) -> artists


def _one(table: Table, names) -> Table:
    """The rows of the first facet (the first key of ``names``) of ``table``."""
    keys = _keys(table, names)
    return _subset(table, _mask(table, names, keys[0])) if keys else table


def _traces_panel(quantity: str):
    def panel(ax: Axes, t: Mapping[str, Table | None], **options):
        layers = t["layers"]
        names = _config_keys(layers)
        keys = _keys(layers, names)
        if not keys:
            return []
        mask = _mask(layers, names, keys[0])
        summary = _subset(t["summary"], _mask(t["summary"], names, keys[0]))
        return traces.plot_layer_traces(ax, _subset(layers, mask), summary, quantity, **options)
    return panel


def _stability_panel(ax: Axes, t: Mapping[str, Table | None], **options):
    summary = _one(t["summary"], ("activation", "sigma_b2"))
    theory = t.get("theory")
    if theory is not None and len(summary["activation"]):
        theory = _subset(theory, (theory["activation"] == summary["activation"][0])
                         & np.isclose(theory["sigma_b2"], summary["sigma_b2"][0]))
    return stability.plot_stability(ax, summary, theory, t.get("crossings"), **options)


def _phase_panel(ax: Axes, t: Mapping[str, Table | None], **options):
    names = tuple(c for c in store.KEY_COLUMNS if c not in ("sigma_w2", "sigma_w2_n", "sigma_b2"))
    return maps.plot_phase(ax, _one(t["summary"], names), t.get("theory"), crossings=t.get("crossings"), **options)


def _depth_map_panel(ax: Axes, t: Mapping[str, Table | None], **options):
    return maps.plot_depth_map(ax, _one(t["summary"], ("activation", "width", "sigma_b2")), **options)


def _fan_modes_panel(ax: Axes, t: Mapping[str, Table | None], **options):
    layers = _one(t["layers"], ("activation", "depth", "widths", "sigma_b2"))
    return finite_width.plot_mode_traces(ax, layers, **options)


def _seed_spread_panel(ax: Axes, t: Mapping[str, Table | None], **options):
    layers = t["layers"]
    return finite_width.plot_seed_spread(ax, _one(layers, tuple(k for k in _config_keys(layers)
                                                                  if k not in ("width", "widths"))), **options)


def _thm11_panel(ax: Axes, t: Mapping[str, Table | None], **options):
    layers = t["layers"]
    return finite_width.plot_thm11_ratio(ax, _one(layers, _config_keys(layers)), **options)


FIGURES: dict[str, FigureSpec] = {spec.name: spec for spec in (
    FigureSpec("q", "forward variance qˡ across layers",
               lambda t: traces._figure_traces(t["layers"], t["summary"], "q"), _traces_panel("q")),
    FigureSpec("q_tilde", "back-propagated error variance q̃ˡ across layers",
               lambda t: traces._figure_traces(t["layers"], t["summary"], "q_tilde"), _traces_panel("q_tilde")),
    FigureSpec("grad_norm", "weight-gradient norm ‖∂J/∂Wˡ‖² across layers",
               lambda t: traces._figure_traces(t["layers"], t["summary"], "grad_norm2"), _traces_panel("grad_norm2")),
    FigureSpec("stability", "χ̂ against σ_w²·N beside its theory, and where it crosses 1",
               lambda t: stability._figure_stability(t["summary"], t.get("theory"), t.get("crossings")),
               _stability_panel),
    FigureSpec("depth_map", "log₁₀ q̃¹/q̃ᴸ over depth × σ_w²·N (several depths)",
               lambda t: maps._figure_depth_map(t["summary"]), _depth_map_panel),
    FigureSpec("phase", "χ̂ over σ_w²·N × σ_b² with the critical lines (≥ 2 σ_b², ≥ 3 σ_w²·N)",
               lambda t: maps._figure_phase(t["summary"], t.get("theory"), t.get("crossings")), _phase_panel),
    FigureSpec("fan_modes", "N_l, qˡ, q̃ˡ per fan mode (a width profile or several modes)",
               lambda t: finite_width._figure_fan_modes(t["layers"], t["summary"]), _fan_modes_panel),
    FigureSpec("seed_spread", "variance of ln q̃ˡ across seeds against β (≥ 3 seeds)",
               lambda t: finite_width._figure_seed_spread(t["layers"], t["summary"]), _seed_spread_panel),
    FigureSpec("thm11", "Theorem 1.1's independence ratio against layer",
               lambda t: finite_width._figure_thm11(t["layers"], t["summary"]), _thm11_panel),
    # signal propagation of residual stacks (signalprop.csv; no figure without it)
    FigureSpec("signalprop", "channel mean², channel variance and residual branch variance per block vs theory",
               signalprop.figure, signalprop.panel),
    # --input-corr and --jacobian (hevar.views.figures.pairs, .spectra): None for runs without them
    FigureSpec("c_map", "the c-map at q* at the swept σ_w²·N, with the fixed points c* (--input-corr)",
               pairs.figure_c_map, pairs.c_map_panel),
    FigureSpec("correlations", "measured cˡ ± 2 s.e. on its theory across layers, per c⁰ (--input-corr)",
               pairs.figure_correlations, pairs.correlations_panel),
    FigureSpec("depth_scales", "ξ_c, ξ_q against σ_w²·N from theory, with the measured ξ̂_c (--input-corr)",
               pairs.figure_depth_scales, pairs.depth_scales_panel),
    FigureSpec("spectrum", "density of the Jacobian's squared singular values per distribution (--jacobian)",
               spectra.figure_spectrum, spectra.spectrum_panel),
)}


def _select(tables: Mapping[str, Table | None], selectors: Mapping[str, Any]) -> dict[str, Table | None]:
    """Every table restricted to the rows matching ``selectors`` (on the columns it has)."""
    out: dict[str, Table | None] = {}
    for name, table in tables.items():
        if table is None or not selectors:
            out[name] = table
            continue
        use = {k: v for k, v in selectors.items() if k in table}
        out[name] = _subset(table, _mask(table, tuple(use), tuple(use.values()))) if use else table
    return out


def first_input_corr(tables: Mapping[str, Table | None]) -> dict[str, Table | None]:
    """With ``--input-corr`` over several c⁰ every configuration's q, q̃ and χ̂ repeat once per c⁰ (they do not
    depend on it): the figures here draw the row set of the first c⁰ only, so no curve is drawn twice. The
    tables with every c⁰ stay under ``NAME_all`` (``layers_all``, ``summary_all``), for the figures of pairs."""
    out = dict(tables)
    for name, table in tables.items():
        if table is not None and "input_corr" in table and _nrows_of(table) and not name.endswith("_all"):
            out.setdefault(name + "_all", table)  # every c⁰, for the figures of pairs (hevar.views.figures.pairs)
            first = table["input_corr"][0]
            out[name] = _subset(table, np.isclose(table["input_corr"], first, rtol=0, atol=0) |
                                (np.isnan(table["input_corr"]) & np.isnan(first)))
    return out


def _nrows_of(table: Table) -> int:
    return len(next(iter(table.values()), []))


def draw(name: str, ax: Axes, tables: Mapping[str, Table | None], **options) -> list:
    """Draw figure ``name`` (a key of :data:`FIGURES`) for one panel onto ``ax``.

    Options named like a key column (``activation``, ``depth``, ``width``, ``widths``, ``mode``,
    ``dist``, ``sigma_b2``, ``sigma_w2_n``, ``curve_id``, ``config_id``) pick the rows drawn; of
    what remains, the first panel of the run folder's figure is drawn. Other options go to the
    figure's ``plot_*`` function (for example ``zoom=False`` for ``stability``)."""
    if name not in FIGURES:
        raise UsageError(f"The 'name' parameter must be one of {', '.join(FIGURES)}. Got {name!r} instead.",
                         param="name")
    selectors = {k: options.pop(k) for k in list(options) if k in SELECTORS}
    chosen = first_input_corr(_select(tables, selectors))
    if chosen.get("summary") is None or not len(next(iter(chosen["summary"].values()), [])):
        raise UsageError(f"No rows match {selectors}; the run has none to draw for figure {name!r}.", param="name")
    with matplotlib.rc_context(_RC):
        return FIGURES[name].panel(ax, chosen, **options)


SAVE_OPTIONS = {"png": {"pil_kwargs": {"compress_level": 1}},
                "svg": {"metadata": {"Date": None}}, "pdf": {"metadata": {"CreationDate": None}}}  # no dates: same bytes


def render_run(run_dir: Path, formats: tuple[str, ...] = ("png",), part: tuple[int, int] = (0, 1)) -> list[Path]:
    """Render the figures of a run folder from its CSVs into ``RUN_DIR/plots/``.

    Each file is written atomically (temporary name in the same folder, then renamed). A figure
    with nothing to show (no finite values, a single depth for the depth map) is skipped.
    ``part`` = (i, n) draws only every n-th figure of :data:`FIGURES` starting at the i-th, so that
    n processes can share the work (:mod:`hevar.views.render`).

    Returns
    -------
    list of Path
        The files written, in the order of :data:`FIGURES` and ``formats``.

    Raises
    ------
    hevar.errors.UsageError
        If the folder or one of its CSVs is missing or malformed (from :func:`hevar.results.store.read_run`).
    """
    run_dir = Path(run_dir)
    from hevar.views.figures import training as training_figures

    if training_figures.is_training_run(run_dir):  # a `hevar train` folder: its own figures
        return training_figures.render_training_run(run_dir, formats) if part[0] == 0 else []
    layers, summary, theory = store.read_run(run_dir)
    tables = first_input_corr({"layers": layers, "summary": summary, "theory": theory,
                               "crossings": store.read_crossings(run_dir), "spectra": store.read_spectra(run_dir),
                               "signalprop": store.read_signalprop(run_dir)})
    written: list[Path] = []
    out = run_dir / "plots"
    with matplotlib.rc_context(_RC):
        for index, spec in enumerate(FIGURES.values()):
            if index % part[1] != part[0]:  # ``part`` = (i, n): every n-th figure from the i-th (hevar.views.render)
                continue
            fig = spec.figure(tables)
            if fig is None:
                continue
            for fmt in formats:
                buffer = io.BytesIO()
                # Constrained layout places everything, titles and outside legends included, so the figure
                # is drawn once (bbox_inches="tight" would draw it twice); PNGs are deflated at level 1,
                # 9 % larger and a third faster to write than the default level 6 (issue 17).
                fig.savefig(buffer, format=fmt, dpi=DPI, facecolor="white", **SAVE_OPTIONS.get(fmt, {}))
                out.mkdir(exist_ok=True)
                store.write_atomic(out / f"{spec.name}.{fmt}", buffer.getvalue())
                written.append(out / f"{spec.name}.{fmt}")
    return written
