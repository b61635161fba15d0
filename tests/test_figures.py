"""Figures compare with the right theory, list only what they draw, and come in the formats asked for."""

import numpy as np
import pytest
from matplotlib.figure import Figure
from typer.testing import CliRunner

import hevar
from hevar.errors import UsageError
from hevar.views import figures
from hevar.views.cli import app


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


@pytest.fixture(scope="module")
def profile_run():
    """A width profile under fan_in: per-layer gains differ, χ₁ describes no layer."""
    return hevar.sweep(act="relu", widths="64,32,16,8", sigma_w2=[1, 2, 3, 4], seeds=3, batch=8)


def test_a_width_profile_is_drawn_on_its_own_theory_without_chi1_or_2_over_n(profile_run):
    ax = Figure().subplots()
    run_tables = profile_run.tables()
    figures.draw("stability", ax, run_tables)
    legend = _legend(ax)
    assert any("theory at this depth" in t for t in legend)
    assert not any("L \\to" in t for t in legend) and not any("2/N" in t for t in legend), legend
    # the dashed theory line through the swept points is chi_theory, which is not χ₁ = s/2 here
    theory_line = next(line for line in ax.get_lines() if line.get_label().startswith("theory at this depth"))
    np.testing.assert_allclose(theory_line.get_ydata(), profile_run.summary.sort_values("sigma_w2_n")["chi_theory"])
    assert not np.allclose(theory_line.get_ydata(), np.array([1, 2, 3, 4]) / 2)


def test_constant_width_relu_draws_chi1_and_marks_two_over_n():
    run = hevar.sweep(act="relu", depth=10, width=32, sigma_w2=[1, 2, 3], seeds=3, batch=8)
    ax = Figure().subplots()
    run.plot("stability", ax=ax)
    legend = _legend(ax)
    assert any("L \\to" in t for t in legend) and any("2/N" in t for t in legend), legend
    assert any("2\\,$s.e." in t for t in legend)  # the one error-bar convention, named


def test_draw_picks_a_facet_and_refuses_unknown_names(profile_run):
    ax = Figure().subplots()
    figures.draw("q", ax, profile_run.tables(), sigma_w2_n=2.0)
    assert len([line for line in ax.get_lines() if line.get_linestyle() == "-"]) == 1  # one σ_w²·N selected
    with pytest.raises(UsageError, match="The 'name' parameter must be one of q, q_tilde"):
        figures.draw("nope", ax, profile_run.tables())


def test_one_seed_lists_no_band_and_no_standard_errors(tmp_path):
    folder = tmp_path / "one"
    result = CliRunner().invoke(app, ["sweep", "--act", "relu", "--depth", "6", "--width", "16", "--sigma-w2", "1,2",
                                      "--seeds", "1", "--batch", "1", "--out", str(folder), "--format", "svg,png"])
    assert result.exit_code == 0, result.output
    tables = hevar.load(folder).tables()
    fig = figures.FIGURES["thm11"].figure(tables)
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert not any("s.e." in t for t in labels) and not any("percentile" in t for t in labels), labels
    fig = figures.FIGURES["q_tilde"].figure(tables)
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert not any("percentile" in t for t in labels), labels
    assert (folder / "plots" / "stability.svg").read_text().lstrip().startswith("<?xml")
    assert (folder / "plots" / "stability.png").exists()


def test_format_is_checked_before_any_work(tmp_path):
    result = CliRunner().invoke(app, ["sweep", "--format", "gif", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "The 'format' parameter must be a comma list of png, svg, pdf" in result.output
    assert not (tmp_path / "x").exists()


def test_a_critical_point_outside_the_swept_range_keeps_the_layout(tmp_path):
    """tanh's critical σ_w²·N (1 at σ_b² = 0) outside a sweep of 2 alone: its label sat outside the axes
    and constrained layout gave up (a Matplotlib warning, legends cut off)."""
    import warnings

    run = tmp_path / "r"
    result = CliRunner().invoke(app, ["sweep", "--act", "relu,tanh", "--depth", "3", "--width", "8", "--sigma-w2", "2",
                                      "--seeds", "1", "--no-plot", "--out", str(run)])
    assert result.exit_code == 0, result.output
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied" is a UserWarning
        written = figures.render_run(run)
    assert any(p.name == "stability.png" for p in written)
