"""The trainability heatmap (hevar.views.figures.trainability): cells are the summary's accuracies,
the lines are L = k·ξ_c with ξ_c = −1/ln χ_c of the mean-field c-map, and the figure appears only
for a grid of ≥ 2 depths × ≥ 2 σ_w²·N."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from hevar.meanfield import theory
from hevar.meanfield.activations import parse_activation
from hevar.views.figures.trainability import plot_trainability, trainability_figure, xi_c_curve


def _summary(s_vals, depths, acc_fn, act="tanh", sigma_b2=0.05, arch="mlp"):
    rows = [(s, d) for d in depths for s in s_vals]
    n = len(rows)
    return {"sigma_w2_n": np.array([r[0] for r in rows], float), "depth": np.array([r[1] for r in rows], float),
            "test_acc": np.array([acc_fn(*r) for r in rows]), "chance": np.full(n, 0.1),
            "activation": np.array([act] * n, dtype=object), "arch": np.array([arch] * n, dtype=object),
            "width": np.full(n, 64.0), "sigma_b2": np.full(n, sigma_b2), "dist": np.array(["normal"] * n, dtype=object)}


def _chi_c_gauss_hermite(s: float, sigma_b2: float, q_star: float, c: float = 1.0, n: int = 80) -> float:
    """χ_c = σ_w² E[φ'(u₁)φ'(u₂)] at correlation c (tanh is smooth: plain Gauss–Hermite is exact enough);
    at c = 1 it is σ_w² E[φ'(√q* z)²]."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    u1 = math.sqrt(q_star) * z[:, None]
    u2 = math.sqrt(q_star) * (c * z[:, None] + math.sqrt(max(1 - c * c, 0)) * z[None, :])
    d = lambda u: 1 - np.tanh(u) ** 2  # noqa: E731
    return float(s * np.sum(w[:, None] * w[None, :] * d(u1) * d(u2)))


def test_cells_are_the_summary_accuracies():
    s_vals, depths = [1.0, 1.5, 2.0], [10, 20, 40]
    summary = _summary(s_vals, depths, lambda s, d: 0.1 + s / 10 + d / 1000)
    fig = Figure()
    ax = fig.subplots()
    mesh = plot_trainability(ax, summary, ks=())[0]
    grid = np.asarray(mesh.get_array()).reshape(len(depths), len(s_vals))
    want = np.array([[0.1 + s / 10 + d / 1000 for s in s_vals] for d in depths])
    np.testing.assert_allclose(grid, want)
    assert ax.get_yscale() == "log"  # depths span a factor 4


def test_lines_are_k_times_xi_c_of_the_c_map():
    """In the ordered phase (σ_w²·N < 1.761 for tanh at σ_b² = 0.05) c* = 1 and χ_c = χ₁; ξ_c = −1/ln χ_c
    checked against an independent Gauss–Hermite χ_c at q* from iterating the q-map."""
    act = parse_activation("tanh")
    z, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    for s in (1.0, 1.4):
        q = 1.0
        for _ in range(500):  # the q-map contracts fast here
            q = s * float(np.sum(w * np.tanh(math.sqrt(q) * z) ** 2)) + 0.05
        xi = -1 / math.log(_chi_c_gauss_hermite(s, 0.05, q))
        assert math.isclose(xi_c_curve("tanh", 0.05, [s])[0], xi, rel_tol=1e-6), (s, xi)
    summary = _summary([1.0, 1.5, 2.0, 2.5, 3.0], [10, 80], lambda s, d: 0.5)
    fig = Figure()
    ax = fig.subplots()
    artists = plot_trainability(ax, summary, ks=(1, 3))
    lines = [a for a in artists if hasattr(a, "get_label") and str(a.get_label()).startswith("L = ")]
    assert [str(a.get_label()) for a in lines] == ["L = 1·ξ_c", "L = 3·ξ_c"]
    x, y = lines[1].get_data()
    i = len(x) // 5
    assert math.isclose(y[i], 3 * xi_c_curve("tanh", 0.05, [x[i]])[0], rel_tol=1e-12)
    crit = theory.critical_sigma_w2_n(act, 0.05).sigma_w2_n
    assert abs(x[np.argmax(y)] - crit) < 0.02  # ξ_c diverges at the critical point


def test_figure_needs_two_depths_and_two_sigmas():
    assert trainability_figure(_summary([1.0, 2.0], [10], lambda s, d: 0.5)) is None
    assert trainability_figure(_summary([1.0], [10, 20], lambda s, d: 0.5)) is None
    fig = trainability_figure(_summary([1.0, 2.0], [10, 20], lambda s, d: 0.5))
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # the panel and its colour bar


def test_other_architectures_get_no_mlp_lines():
    fig = Figure()
    ax = fig.subplots()
    artists = plot_trainability(ax, _summary([1.0, 2.0], [10, 20], lambda s, d: 0.5, arch="resmlp"))
    assert not [a for a in artists if str(getattr(a, "get_label", lambda: "")()).startswith("L = ")]
    assert "MLP theory only" in ax.get_title()
