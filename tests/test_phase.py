"""The phase diagram: the critical line read from a run's theory data, and phase.png from a real tiny sweep."""

from __future__ import annotations

import math

import matplotlib.image
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from typer.testing import CliRunner

from hevar.views import figures
from hevar.results import store
from hevar.experiments import sweep
from hevar.meanfield import theory
from hevar.meanfield.activations import parse_activation
from hevar.views.cli import app
from hevar.experiments.config import build_config

runner = CliRunner()
TANH_CRITICAL_AT_0_05 = 1.7610  # Schoenholz et al. (2017): tanh, σ_b² = 0.05


def _theory_table(act: str, sigma_b2: str, sigma_w2: str) -> dict[str, np.ndarray]:
    """theory.csv's rows as the sweep writes them, as columns (what store.read_table returns)."""
    rows = sweep.theory_rows(build_config(dict(act=act, sigma_b2=sigma_b2, sigma_w2=sigma_w2)))
    table = {c: np.array([r[c] for r in rows], dtype=object if c == "activation" else float) for c in store.THEORY_COLUMNS}
    return table


def test_critical_line_of_tanh_passes_through_1_761_at_sigma_b2_0_05():
    table = _theory_table("tanh", "0,0.05,0.2", "0.5:3:0.5")
    biases, line = figures.critical_line(table, "tanh")
    assert biases.tolist() == [0.0, 0.05, 0.2]
    assert line[1] == pytest.approx(TANH_CRITICAL_AT_0_05, abs=5e-4)
    exact = theory.critical_sigma_w2_n(parse_activation("tanh"), 0.2).sigma_w2_n
    assert line[2] == pytest.approx(exact, abs=1e-3)
    assert line[0] == pytest.approx(1.0, abs=0.05)  # χ₁ only touches 1 above s = 1: interpolation is coarse here


def test_summary_gives_the_exact_critical_values():
    table = _theory_table("tanh", "0,0.05", "0.5:3:0.5")
    summary = dict(activation=np.array(["tanh", "tanh"], dtype=object), sigma_b2=np.array([0.0, 0.05]),
                   sigma_w2_n_crit=np.array([1.0, 1.76095463960674]))
    _, line = figures.critical_line(table, "tanh", summary)
    assert line.tolist() == [1.0, 1.76095463960674]


def test_critical_line_of_relu_is_two_at_every_bias_and_nan_without_a_crossing():
    s = np.linspace(0.5, 4.0, 15)
    table = dict(activation=np.array(["relu"] * 30 + ["linear"] * 15, dtype=object),
                 sigma_b2=np.concatenate([np.zeros(15), np.full(15, 0.3), np.zeros(15)]),
                 sigma_w2_n=np.concatenate([s, s, s]), chi1=np.concatenate([s / 2, s / 2, np.full(15, 0.5)]))
    biases, line = figures.critical_line(table, "relu")
    assert biases.tolist() == [0.0, 0.3] and line == pytest.approx([2.0, 2.0], abs=1e-12)
    _, none = figures.critical_line(table, "linear")
    assert np.isnan(none).all()


def test_jump_activations_get_the_boundary_where_chi1_jumps():
    table = _theory_table("gelu", "0,0.1", "1:3:0.5")
    _, line = figures.critical_line(table, "gelu")
    jump = theory.critical_sigma_w2_n(parse_activation("gelu"), 0.0).jump_at
    assert line[0] == pytest.approx(jump, abs=0.03)  # within one grid step of the jump


# --- phase.png from a real sweep -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_phase_run(tmp_path_factory):
    """A real tanh sweep: 2 σ_b² × 3 σ_w²·N, small enough for a test (well under a second)."""
    out = tmp_path_factory.mktemp("phase") / "run"
    result = runner.invoke(app, ["sweep", "--act", "tanh", "--sigma-w2", "1,1.75,2.5", "--sigma-b2", "0,0.05",
                                 "--depth", "10", "--width", "48", "--seeds", "2", "--batch", "8",
                                 "--out", str(out), "--no-plot"])
    assert result.exit_code == 0, result.output
    return out


def test_phase_png_renders_from_the_run_folder_alone(tiny_phase_run):
    written = figures.render_run(tiny_phase_run)
    assert "phase.png" in [p.name for p in written]
    image = matplotlib.image.imread(tiny_phase_run / "plots" / "phase.png")
    assert image.shape[0] > 200 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # not blank


def test_phase_plot_draws_cells_and_the_critical_line(tiny_phase_run):
    _, summary, theory_table = store.read_run(tiny_phase_run)
    ax = Figure().subplots()
    artists = figures.plot_phase(ax, summary, theory_table)
    mesh = artists[0]
    assert mesh.get_array().shape == (2, 3)  # σ_b² rows × σ_w²·N columns
    lines = [a for a in artists if isinstance(a, Line2D) and a.get_label().startswith("theory $\\chi_1")]
    assert len(lines) == 1
    x, y = lines[0].get_data()
    assert y.tolist() == [0.0, 0.05]
    assert x[0] == pytest.approx(1.0) and x[1] == pytest.approx(TANH_CRITICAL_AT_0_05, abs=5e-4)
    texts = [t.get_text() for t in ax.texts]
    assert any("ordered" in t for t in texts) and any("chaotic" in t for t in texts)


def test_no_phase_png_for_a_single_bias(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["sweep", "--act", "relu", "--sigma-w2", "1,2,3", "--depth", "4", "--width", "16",
                                 "--seeds", "2", "--batch", "4", "--out", str(out), "--no-plot"])
    assert result.exit_code == 0, result.output
    assert "phase.png" not in [p.name for p in figures.render_run(out)]


def test_phase_norm_is_centred_on_chi_one():
    norm = figures.phase_norm(np.log([0.5, 1.1, np.nan]))
    assert norm(0.0) == pytest.approx(0.5) and norm.vmax == pytest.approx(math.log(2))
