"""The correlation and spectrum figures draw what they are given, on a Figure with no pyplot state."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from hevar.meanfield import correlations as cr, spectrum as sp
from hevar.meanfield.activations import parse_activation
from hevar.views.figures import correlations as cf


def _axes():
    return Figure().add_subplot()


def test_c_map_draws_curves_identity_and_fixed_points():
    tanh = parse_activation("tanh")
    c = np.linspace(0, 1, 21)
    terms = [cr.correlation_terms(tanh, s, 0.05) for s in (1.5, 2.5)]
    rows = np.array([cr.c_map(tanh, c, s, 0.05, t.q_star) for s, t in zip((1.5, 2.5), terms)])
    ax = _axes()
    artists = cf.plot_c_map(ax, c, rows, ["1.5", "2.5"], [t.c_star for t in terms])
    lines = ax.get_lines()
    assert len(lines) == 1 + 2 + 2 and len(artists) == 5
    np.testing.assert_allclose(lines[2].get_ydata(), [terms[0].c_star])  # ordered: c* = 1
    np.testing.assert_allclose(lines[3].get_ydata(), rows[1])
    assert lines[4].get_xdata()[0] == terms[1].c_star < 1


def test_c_trajectories_on_a_log_axis_show_the_distance_to_c_star():
    layers = np.arange(1, 11)
    theory = 0.4 + 0.5 * np.exp(-layers / 3)
    measured = theory + 0.001
    ax = _axes()
    cf.plot_c_trajectories(ax, layers, measured[None], np.full((1, 10), 0.002), theory[None], ["x"], c_star=[0.4])
    assert ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), 0.5 * np.exp(-layers / 3))
    ax = _axes()
    cf.plot_c_trajectories(ax, layers, measured[None], None, theory[None], ["x"])
    assert ax.get_yscale() == "linear"
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), measured)


def test_depth_scales_leave_out_the_infinite_point():
    s = np.array([1.5, 1.76095, 2.5])
    ax = _axes()
    cf.plot_depth_scales(ax, s, np.array([15.8, math.inf, 11.8]), np.array([1.7, 1.5, 1.2]),
                         np.array([2.5]), np.array([12.0]), np.array([0.5]), s_critical=1.76095)
    y = ax.get_lines()[0].get_ydata()
    assert np.isnan(y[1]) and y[0] == 15.8 and ax.get_yscale() == "log"


def test_spectrum_histogram_area_is_the_nonzero_fraction_and_the_curve_is_the_log_density():
    rng = np.random.default_rng(0)
    sv2 = np.concatenate([np.zeros(100), rng.lognormal(0, 1, 300)])
    lam = np.geomspace(1e-2, 10, 50)
    rho, atoms = sp.density("relu", "normal", 2.0, 3, lam)
    ax = _axes()
    cf.plot_spectrum(ax, sv2, lam, rho, atoms, label="relu")
    data = ax.patches[0].get_data()
    assert abs(np.sum(data.values * np.diff(data.edges)) - 0.75) < 1e-12
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), rho * lam * math.log(10))
    assert "atom at 0: 50%" in ax.get_legend().get_texts()[1].get_text()
