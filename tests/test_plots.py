"""Figures render from a run folder's CSVs alone; the empirical crossing is checked against closed forms.

The fixture is a synthetic ReLU run (σ_b² = 0, constant width): per seed, log q̃ˡ is the mean-field
line (L − l)·log χ with χ = σ_w²·N / 2 plus a finite-width random walk, so every figure has realistic
shapes, and the stability curve must cross 1 at σ_w²·N = 2.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from matplotlib.figure import Figure

from hevar.views import figures
from hevar.results import crossings, store
from hevar.errors import UsageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SWEPT = (1.0, 1.5, 1.75, 1.9, 2.0, 2.1, 2.25, 2.5, 3.0)
WIDTH = 128
N_SEEDS = 6


def _relu_rows(depth: int, s: float, rng: np.random.Generator, status: str = "ok"):
    """Layer rows and the summary row of one synthetic ReLU configuration."""
    layer = np.arange(1, depth + 1)
    chi = s / 2.0
    ln_theory = (depth - layer) * math.log(chi)
    # finite-width noise: a random walk down from the top layer, per-layer sd ~ sqrt(2/N) in ln
    steps = rng.normal(0.0, math.sqrt(2.0 / WIDTH), size=(N_SEEDS, depth))
    steps[:, -1] = 0.0
    ln_seeds = ln_theory + np.cumsum(steps[:, ::-1], axis=1)[:, ::-1]
    log10_seeds = ln_seeds / math.log(10)
    log10_mean = (np.log(np.mean(np.exp(ln_seeds - ln_seeds.max(0)), axis=0)) + ln_seeds.max(0)) / math.log(10)
    log10_lo, log10_hi = np.percentile(log10_seeds, [16, 84], axis=0)
    # ‖∂J/∂Wˡ‖² = N² q̃ˡ E[φ(zˡ⁻¹)²]; for ReLU at σ_b² = 0, E[φ(zˡ⁻¹)²] = χ^(l-1) (q_in = 1)
    log10_forward = (layer - 1) * math.log10(chi)
    log10_q = layer * math.log10(chi) + math.log10(2.0)
    ln_x = (depth - layer).astype(float)
    slopes = np.array([np.polyfit(ln_x, ln, 1)[0] for ln in ln_seeds])
    chi_seeds = np.exp(slopes)
    overflow_at = None
    if status != "ok":
        overflow_at = int(status.rsplit(" ", 1)[-1])
    rows = []
    for i, l in enumerate(layer):
        broken = overflow_at is not None and l < overflow_at  # backward pass never reached these layers
        cell = (lambda v: np.nan if broken else v)
        log10_qt, lo, hi = cell(log10_mean[i]), cell(log10_lo[i]), cell(log10_hi[i])
        theory = ln_theory[i] / math.log(10)
        grad = 2 * math.log10(WIDTH) + log10_forward[i]
        rows.append(dict(
            activation="relu", depth=depth, width=WIDTH, sigma_w2=s / WIDTH, sigma_w2_n=s, sigma_b2=0.0,
            layer=int(l), n_seeds=N_SEEDS,
            q=10 ** log10_q[i] if log10_q[i] < 300 else np.nan, q_theory=10 ** log10_q[i] if log10_q[i] < 300 else np.nan,
            q_tilde=10 ** log10_qt if log10_qt < 300 else np.nan,
            q_tilde_lo=10 ** lo if lo < 300 else np.nan, q_tilde_hi=10 ** hi if hi < 300 else np.nan,
            q_tilde_theory=10 ** theory if theory < 300 else np.nan,
            log10_q=log10_q[i], log10_q_theory=log10_q[i],
            log10_q_tilde=log10_qt, log10_q_tilde_lo=lo, log10_q_tilde_hi=hi, log10_q_tilde_theory=theory,
            log10_grad_norm2=log10_qt + grad, log10_grad_norm2_lo=lo + grad, log10_grad_norm2_hi=hi + grad,
            log10_grad_norm2_theory=theory + grad,
        ))
    ok = status == "ok"
    _relu_rows.ln_seeds = ln_seeds  # the per-seed values, for the fixture's crossings.csv
    summary = dict(
        activation="relu", depth=depth, width=WIDTH, sigma_w2=s / WIDTH, sigma_w2_n=s, sigma_b2=0.0,
        n_seeds=N_SEEDS,
        chi_hat=float(chi_seeds.mean()) if ok else np.nan,
        chi_hat_se=float(chi_seeds.std(ddof=1) / math.sqrt(N_SEEDS)) if ok else np.nan,
        chi_theory=chi, chi1=chi, fit_first_layer=1, fit_last_layer=depth,
        log10_q_tilde_ratio=float(log10_mean[0] - log10_mean[-1]) if ok else np.nan,
        log10_q_tilde_ratio_theory=(depth - 1) * math.log10(chi),
        sigma_w2_n_crit=2.0, critical_kind="homogeneous", status=status,
    )
    return rows, summary


def write_relu_run(run_dir: Path, depths=(10, 60, 250), swept=SWEPT, seed: int = 0,
                   theory: bool = True, broken: dict | None = None) -> Path:
    """A synthetic ReLU run folder; ``broken`` maps (depth, σ_w²·N) to a non-ok status."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    layer_rows, summary_rows, crossing_rows = [], [], []
    for depth in depths:
        per_seed, curve = [], []
        for s in swept:
            status = (broken or {}).get((depth, s), "ok")
            rows, summary = _relu_rows(depth, s, rng, status)
            summary.update(curve_id=f"relu-{depth}", config_id=f"relu-{depth}-{s}")
            layer_rows += [dict(r, config_id=summary["config_id"]) for r in rows]
            summary_rows.append(summary)
            curve.append(summary)
            per_seed.append(_relu_rows.ln_seeds)
        key = dict(curve_id=f"relu-{depth}", activation="relu", depth=depth, width=WIDTH, widths=f"constant:{WIDTH}",
                   mode="fan_in", dist="normal", sigma_b2=0.0, sigma_w2_n_crit=2.0, critical_kind="homogeneous")
        crossing_rows.append(crossings.crossing(
            key, swept, [r["chi_hat"] for r in curve], [r["chi_hat_se"] for r in curve], [s / 2 for s in swept],
            layers=np.arange(1, depth + 1, dtype=float), log_q_tilde=np.stack(per_seed),
            theory_chi=lambda v: v / 2, jump_chi=lambda v: v / 2, rng=np.random.default_rng(depth)))
    store.write_csv(run_dir / "layers.csv", store.LAYER_COLUMNS, layer_rows)
    store.write_csv(run_dir / "summary.csv", store.SUMMARY_COLUMNS, summary_rows)
    store.write_csv(run_dir / "crossings.csv", store.CROSSING_COLUMNS, crossing_rows)
    if theory:
        grid = np.linspace(0.05, 5.0, 400)
        store.write_csv(run_dir / "theory.csv", store.THEORY_COLUMNS,
                        [dict(activation="relu", sigma_b2=0.0, sigma_w2_n=s, chi1=s / 2, q_star=np.nan) for s in grid])
    return run_dir


@pytest.fixture(scope="module")
def relu_run(tmp_path_factory) -> Path:
    return write_relu_run(tmp_path_factory.mktemp("relu") / "run")


def _assert_png(path: Path, min_px: tuple[int, int] = (600, 400)) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert width >= min_px[0] and height >= min_px[1], f"{path.name} is only {width}×{height} px"
    assert width <= 4000 and height <= 4000, f"{path.name} is {width}×{height} px"
    assert image[..., :3].std() > 0.05, f"{path.name} looks blank"


# --- render_run ------------------------------------------------------------------------------------


def test_render_run_writes_every_figure(relu_run):
    written = figures.render_run(relu_run)
    names = [p.name for p in written]
    assert names == ["q.png", "q_tilde.png", "grad_norm.png", "stability.png", "depth_map.png"]
    for path in written:
        assert path.parent == relu_run / "plots"
        _assert_png(path)
    assert not [p for p in (relu_run / "plots").iterdir() if p.suffix != ".png"], "temporary files left behind"


def test_render_run_skips_the_depth_map_for_one_depth(tmp_path):
    run = write_relu_run(tmp_path / "run", depths=(30,))
    names = [p.name for p in figures.render_run(run)]
    assert "depth_map.png" not in names
    assert {"q_tilde.png", "grad_norm.png", "stability.png"} <= set(names)


def test_render_run_survives_overflow_and_missing_theory(tmp_path):
    """Depth 2000 overflows the linear q̃ column; a non-ok configuration is drawn as far as it goes."""
    run = write_relu_run(tmp_path / "run", depths=(20, 2000), swept=(1.0, 2.0, 3.0), theory=False,
                         broken={(2000, 3.0): "overflow at layer 37"})
    layers, summary, theory = store.read_run(run)
    assert theory is None
    assert np.isnan(layers["q_tilde"]).any() and np.isfinite(layers["log10_q_tilde"]).any()
    written = figures.render_run(run)
    assert [p.name for p in written] == ["q.png", "q_tilde.png", "grad_norm.png", "stability.png", "depth_map.png"]
    for path in written:
        _assert_png(path)


def test_render_run_overwrites_in_place(tmp_path):
    run = write_relu_run(tmp_path / "run", depths=(8,), swept=(1.0, 2.0, 3.0))
    first = figures.render_run(run)
    (run / "plots" / "q_tilde.png").write_bytes(b"stale")
    second = figures.render_run(run)
    assert first == second
    _assert_png(run / "plots" / "q_tilde.png")
    assert sorted(p.name for p in (run / "plots").iterdir()) == sorted(p.name for p in first)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda run: (run / "summary.csv").unlink(), "missing 'summary.csv'"),
        (lambda run: (run / "layers.csv").unlink(), "missing 'layers.csv'"),
        (lambda run: (run / "layers.csv").write_text(""), "empty"),
        (lambda run: (run / "summary.csv").write_text("activation,depth\nrelu,3\n"), "missing column"),
        (lambda run: (run / "summary.csv").write_text(
            (run / "summary.csv").read_text().replace(",0.5,", ",half,", 1)), "non-numeric"),
        (lambda run: (run / "layers.csv").write_text((run / "layers.csv").read_text() + "relu,1\n"),
         "wrong number of fields"),
    ],
    ids=["no-summary", "no-layers", "empty-layers", "summary-columns", "non-numeric", "ragged"],
)
def test_damaged_run_raises_usage_error(tmp_path, damage, message):
    run = write_relu_run(tmp_path / "run", depths=(8,), swept=(1.0, 2.0, 3.0))
    damage(run)
    with pytest.raises(UsageError, match=message):
        figures.render_run(run)
    assert not (run / "plots").exists() or not any((run / "plots").iterdir())


def test_not_a_folder_raises_usage_error(tmp_path):
    with pytest.raises(UsageError, match="run folder"):
        figures.render_run(tmp_path / "nowhere")


# --- a theory curve's crossing (pure) --------------------------------------------------------------


def test_crossing_of_a_straight_line_is_exact():
    s = np.array([1.0, 1.5, 2.5, 3.0])
    assert figures.interpolate_crossing(s, s / 2) == pytest.approx(2.0, abs=1e-12)


def test_crossing_ignores_order_and_nan():
    s = np.array([3.0, np.nan, 1.0, 2.4, 1.2])
    chi = np.array([1.5, 1.0, 0.5, 1.2, np.nan])
    assert figures.interpolate_crossing(s, chi) == pytest.approx(2.0)


def test_crossing_at_a_swept_point_and_none_outside_the_range():
    assert figures.interpolate_crossing([1.0, 2.0, 3.0], [0.5, 1.0, 1.5]) == pytest.approx(2.0)
    assert math.isnan(figures.interpolate_crossing([1.0, 1.5], [0.5, 0.75]))
    assert math.isnan(figures.interpolate_crossing([], []))


def test_crossing_picks_the_one_nearest_the_hint():
    s = [1.0, 2.0, 3.0, 4.0]
    chi = [0.8, 1.2, 0.9, 1.1]  # three crossings: 1.5, 2.667, 3.5
    assert figures.interpolate_crossing(s, chi) == pytest.approx(1.5)
    assert figures.interpolate_crossing(s, chi, near=3.4) == pytest.approx(3.5)


def test_chi1_is_broken_where_it_jumps_and_continuous_elsewhere():
    s = np.linspace(1.5, 3.0, 61)
    chi = np.where(s < 2.055, 0.4 * s, 0.5 * s)  # smooth, then a jump of 0.2 at 2.055
    q = np.where(s < 2.055, 0.4, np.inf)
    xs, ys = figures.chi1_with_breaks(s, chi, q)
    assert np.isnan(ys).sum() == 1 and xs[np.flatnonzero(np.isnan(ys))[0] - 1] < 2.055 < xs[np.flatnonzero(np.isnan(ys))[0] + 1]
    xs, ys = figures.chi1_with_breaks(s, 0.4 * s, np.full_like(s, 0.4))
    assert not np.isnan(ys).any()


# --- axes-level functions on a bare Figure -----------------------------------------------------------


def _texts(ax) -> list[str]:
    """Every string drawn on the axes: free text and legend entries."""
    legend = ax.get_legend()
    return [t.get_text() for t in ax.texts] + ([t.get_text() for t in legend.get_texts()] if legend else [])


def _facet(table, **key):
    mask = np.ones(len(table["depth"]), dtype=bool)
    for name, value in key.items():
        mask &= table[name] == value
    return {k: v[mask] for k, v in table.items()}


def test_trace_plot_emphasises_and_labels_the_critical_curve(relu_run):
    layers, summary, _ = store.read_run(relu_run)
    ax = Figure().subplots()
    artists = figures.plot_layer_traces(ax, _facet(layers, depth=60), _facet(summary, depth=60))
    assert artists
    widths = sorted(line.get_linewidth() for line in ax.get_lines() if line.get_linestyle() == "-")
    assert widths[-1] > 1.5 * widths[0]  # one curve, and only one, is thick
    assert sum(w == widths[-1] for w in widths) == 1
    labels = _texts(ax)
    assert any("2/N" in t and "critical" in t for t in labels), labels
    assert ax.get_xlabel() == figures.LAYER_LABEL


def test_trace_plot_names_a_non_relu_critical_value(relu_run):
    layers, summary, _ = store.read_run(relu_run)
    layers, summary = _facet(layers, depth=10), _facet(summary, depth=10)
    layers["activation"] = np.full(len(layers["depth"]), "leaky_relu:0.2", dtype=object)
    summary["sigma_w2_n_crit"] = np.full(len(summary["depth"]), 1.9)
    ax = Figure().subplots()
    figures.plot_layer_traces(ax, layers, summary)
    assert any("1.9" in t and "critical" in t for t in _texts(ax)), _texts(ax)
    assert not any("2/N" in t for t in _texts(ax))


def test_stability_plot_marks_theory_and_measured_crossing_at_two(relu_run):
    _, summary, theory = store.read_run(relu_run)
    ax = Figure().subplots()
    figures.plot_stability(ax, _facet(summary, depth=250), theory, store.read_crossings(relu_run))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("2\\,$s.e." in t for t in legend), legend  # one convention, and it is named
    vertical = [line for line in ax.get_lines() if np.ptp(line.get_xdata()) == 0 and len(line.get_xdata()) == 2]
    assert any(line.get_xdata()[0] == 2.0 for line in vertical)
    crossing = next(t for t in legend if "= 1$ at" in t)
    value, interval = crossing.split(" = ")[-1].split(" (")[0].split(" [")
    lo, hi = (float(v) for v in interval.rstrip("]").split(", "))
    assert lo <= 2.0 <= hi and lo <= float(value) <= hi and 0 < hi - lo < 0.1, crossing


def test_stability_plot_without_theory_or_crossings_draws_each_series_theory(relu_run):
    _, summary, _ = store.read_run(relu_run)
    ax = Figure().subplots()
    figures.plot_stability(ax, _facet(summary, depth=10), None)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("theory at this depth" in t for t in legend) and not any("= 1$ at" in t for t in legend), legend
    assert not any("L \\to" in t for t in legend)  # no χ₁ curve was drawn, so none is listed


def test_depth_map_is_centred_at_zero(relu_run):
    _, summary, _ = store.read_run(relu_run)
    ax = Figure().subplots()
    artists = figures.plot_depth_map(ax, summary)
    mesh = artists[0]
    norm = mesh.norm
    assert norm.vmin == pytest.approx(-norm.vmax)
    assert mesh.get_array().shape == (3, len(SWEPT))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["10", "60", "250"]
    column = SWEPT.index(2.0)  # columns are equally spaced, one per swept value
    outlined = [p for p in ax.patches if p.get_linewidth() > 2 and not p.get_fill()]
    assert [p.get_x() for p in outlined] == [column - 0.5]
    assert "critical 2/N" in _texts(ax)


def test_critical_label():
    assert figures.critical_label("relu", 2.0) == r"$\sigma_w^2 = 2/N$ (critical)"
    assert "1.76" in figures.critical_label("tanh", 1.7601)
    assert figures.closest_swept([1.0, 1.75, 2.0], 1.76) == 1.75
    assert figures.closest_swept([1.0, 1.5, 2.0], 1.76) is None


def test_trace_plot_lists_configurations_that_are_not_ok(tmp_path):
    run = write_relu_run(tmp_path / "run", depths=(40,), swept=(1.0, 2.0, 3.0), broken={(40, 3.0): "overflow at layer 37"})
    layers, summary, _ = store.read_run(run)
    ax = Figure().subplots()
    figures.plot_layer_traces(ax, layers, summary)
    assert any("overflow at layer 37" in t for t in _texts(ax)), _texts(ax)
    ax = Figure().subplots()
    figures.plot_stability(ax, summary)
    assert any("overflow at layer 37" in t for t in _texts(ax)), _texts(ax)


def test_stability_plot_zooms_only_when_the_crossing_is_too_fine_to_read(relu_run):
    _, summary, theory = store.read_run(relu_run)
    ax = Figure().subplots()
    table = store.read_crossings(relu_run)
    figures.plot_stability(ax, _facet(summary, depth=250), theory, table)
    assert len(ax.child_axes) == 1
    inset = ax.child_axes[0]
    lo, hi = inset.get_xlim()
    assert lo < 2.0 < hi and hi - lo < 0.25 * (max(SWEPT) - min(SWEPT))
    wide = dict(table, sigma_w2_n_cross_lo=table["sigma_w2_n_cross_lo"] - 0.3,
                sigma_w2_n_cross_hi=table["sigma_w2_n_cross_hi"] + 0.3)  # an interval that reads unmagnified
    ax = Figure().subplots()
    figures.plot_stability(ax, _facet(summary, depth=250), theory, wide)
    assert not ax.child_axes


def test_an_empty_run_renders_nothing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    store.write_csv(run / "layers.csv", store.LAYER_COLUMNS, [])
    store.write_csv(run / "summary.csv", store.SUMMARY_COLUMNS, [])
    assert figures.render_run(run) == []
    for plot in (figures.plot_stability, figures.plot_depth_map):
        assert plot(Figure().subplots(), store.read_run(run)[1]) == []


def test_figures_drawn_by_workers_are_the_bytes_drawn_here(tmp_path):
    """hevar.views.render.FigureWorkers (1 worker, split by fork into 1–3 parts; 2 workers) against
    render_run in this process."""
    import hevar
    from hevar.views import figures
    from hevar.views.render import FigureWorkers

    hevar.sweep(act="relu", depth=4, width=16, seeds=2, batch=8, sigma_w2=[1, 2, 3], out=tmp_path / "r")
    here = {p.name: p.read_bytes() for p in figures.render_run(tmp_path / "r")}
    assert len(here) >= 4
    for n, split in ((1, 1), (1, 2), (1, 3), (2, 1)):  # one worker (forked into `split` parts) or two
        with FigureWorkers(n, split=split) as workers:
            paths = workers.render(tmp_path / "r", ("png",))
        assert [p.name for p in paths] == list(here)  # the same files, in the same order
        assert {p.name: p.read_bytes() for p in paths} == here
