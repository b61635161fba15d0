"""The run-folder figures of pairs and spectra (issue 14 item 4) and the phase diagram's new layers.

Each figure is checked on a real tiny sweep: it exists with the option on, is absent without it (a plain
run's plots/ listing does not change), and one number it draws is compared with an oracle computed here,
independently of hevar's quadrature (Gauss–Hermite for the smooth tanh; the closed forms of relu).
"""

from __future__ import annotations

import math

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from scipy import optimize

import hevar
from hevar.errors import UsageError
from hevar.meanfield import spectrum as sp
from hevar.meanfield.activations import parse_activation
from hevar.results import store
from hevar.views import figures
from hevar.views.figures import maps, pairs, spectra

PNG = b"\x89PNG\r\n\x1a\n"
NEW = ("c_map.png", "correlations.png", "depth_scales.png", "spectrum.png")
B2 = 0.05
S_ORDERED, S_CHAOTIC = 1.2, 2.5  # tanh at σ_b² = 0.05 is critical at 1.7610

# --- an independent oracle for tanh: Gauss–Hermite (tanh is smooth, so the rule converges fast) ----------

_Z, _W = np.polynomial.hermite_e.hermegauss(300)  # exact to ~1e-13 for tanh up to q ≈ 2
_W = _W / _W.sum()


def _gh(f, q):
    return float(np.sum(_W * f(math.sqrt(q) * _Z)))


def _gh2(f, q, c):
    z1, z2 = np.meshgrid(_Z, _Z, indexing="ij")
    w = np.outer(_W, _W)
    u1 = math.sqrt(q) * z1
    u2 = math.sqrt(q) * (c * z1 + math.sqrt(max(1 - c * c, 0.0)) * z2)
    return float(np.sum(w * f(u1) * f(u2)))


def _sech2(u):
    return 1.0 / np.cosh(u) ** 2


def tanh_q_star(s, b2):
    q = 1.0
    for _ in range(2000):
        q = s * _gh(lambda u: np.tanh(u) ** 2, q) + b2
    return q


def tanh_c_star_chi_c(s, b2):
    """(c*, χ_c) of tanh: c* = 1 where χ₁ < 1, else the root of M(c) = c in [0, 1)."""
    q = tanh_q_star(s, b2)
    chi1 = s * _gh(lambda u: _sech2(u) ** 2, q)
    if chi1 < 1:
        return 1.0, chi1
    c_star = optimize.brentq(lambda c: (s * _gh2(np.tanh, q, c) + b2) / q - c, 0.0, 1 - 1e-6, xtol=1e-14)
    return c_star, s * _gh2(_sech2, q, c_star)


# --- runs ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory):
    """tanh at σ_b² = 0.05, one ordered and one chaotic σ_w²·N, two c⁰, and the Jacobian."""
    out = tmp_path_factory.mktemp("pairs") / "run"
    hevar.sweep(act="tanh", depth=[3, 14], width=64, sigma_w2=[S_ORDERED, S_CHAOTIC], sigma_b2=B2, seeds=3, batch=4,
                input_corr=[0.2, 0.6], n_pairs=8, jacobian=2, dist=["normal", "orthogonal"], out=out)
    written = figures.render_run(out)
    return out, written


@pytest.fixture(scope="module")
def relu_spectrum_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("relu") / "run"
    hevar.sweep(act="relu", depth=[2, 6], width=64, sigma_w2=2, seeds=3, batch=2, jacobian=4,
                dist=["normal", "orthogonal"], out=out)
    return out, figures.render_run(out)


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 400 and image[..., :3].std() > 0.05


def _tables(run_dir):
    layers, summary, theory = store.read_run(run_dir)
    return figures.first_input_corr({"layers": layers, "summary": summary, "theory": theory,
                                     "crossings": store.read_crossings(run_dir),
                                     "spectra": store.read_spectra(run_dir)})


def test_pair_run_writes_the_four_figures(pair_run):
    run_dir, written = pair_run
    names = [p.name for p in written]
    for name in NEW:
        assert name in names
        _assert_png(run_dir / "plots" / name)


def test_a_jacobian_run_without_pairs_writes_only_the_spectrum(relu_spectrum_run):
    run_dir, written = relu_spectrum_run
    names = {p.name for p in written}
    assert "spectrum.png" in names and not names & {"c_map.png", "correlations.png", "depth_scales.png"}
    _assert_png(run_dir / "plots" / "spectrum.png")


def test_a_plain_run_gets_no_new_files(tmp_path, monkeypatch):
    out = tmp_path / "run"
    hevar.sweep(act="tanh", depth=[3, 8], width=16, sigma_w2=[1, 2, 3], sigma_b2=[0, 0.1], seeds=2, batch=4, out=out)
    with_pairs = sorted(p.name for p in figures.render_run(out))
    old = {k: v for k, v in figures.FIGURES.items() if k not in {n[:-4] for n in NEW}}
    monkeypatch.setattr(figures, "FIGURES", old)
    for p in (out / "plots").iterdir():
        p.unlink()
    without = sorted(p.name for p in figures.render_run(out))
    assert with_pairs == without and not set(with_pairs) & set(NEW)


# --- c_map.png -----------------------------------------------------------------------------------------------


def test_c_map_marks_the_fixed_points_of_an_independent_computation(pair_run):
    run_dir, _ = pair_run
    fig = pairs.figure_c_map(_tables(run_dir))
    ax = fig.axes[0]
    markers = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and len(ln.get_xdata()) == 1]
    assert len(markers) == 2
    for line, s in zip(markers, (S_ORDERED, S_CHAOTIC)):
        c_star, _ = tanh_c_star_chi_c(s, B2)
        assert line.get_xdata()[0] == pytest.approx(c_star, abs=1e-8) and line.get_ydata()[0] == line.get_xdata()[0]
    assert markers[1].get_xdata()[0] < 0.99  # the chaotic one is below 1
    # the curve is the c-map: at c = 0.5 for the chaotic σ_w²·N, against Gauss–Hermite
    curve = [ln for ln in ax.get_lines() if ln.get_label().startswith("$\\sigma_w^2 N$ = 2.5")][0]
    q = tanh_q_star(S_CHAOTIC, B2)
    x, y = curve.get_data()
    i = int(np.argmin(np.abs(x - 0.5)))
    assert y[i] == pytest.approx((S_CHAOTIC * _gh2(np.tanh, q, x[i]) + B2) / q, abs=1e-8)
    # measured (cˡ, cˡ⁺¹) after qˡ settles lie near the map: within 0.1 at N = 64, 3 seeds
    dots = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and len(ln.get_xdata()) > 1]
    assert dots
    for ln in dots:
        for cx, cy in zip(*ln.get_data()):
            s = S_ORDERED if ln.get_markeredgecolor() == markers[0].get_color() else S_CHAOTIC
            q = tanh_q_star(s, B2)
            assert abs(cy - (s * _gh2(np.tanh, q, cx) + B2) / q) < 0.1


# --- correlations.png ---------------------------------------------------------------------------------------


def test_correlations_draw_the_csv_values_with_two_standard_errors(pair_run):
    run_dir, _ = pair_run
    tables = _tables(run_dir)
    fig = pairs.figure_correlations(tables)
    layers = tables["layers_all"]
    # panels: depth 3 and 14 × normal and orthogonal weights × c⁰ 0.2 and 0.6
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 8
    (ax,) = [a for a in axes if all(w in a.get_title() for w in ("$L$ = 14", "normal", "$c^0$ = 0.6"))]
    rows = {s: _pick(layers, depth=14, input_corr=0.6, sigma_w2_n=s, dist="normal") for s in (S_ORDERED, S_CHAOTIC)}
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 2
    for ln, s in zip(dashed, (S_ORDERED, S_CHAOTIC)):
        np.testing.assert_allclose(ln.get_ydata(), rows[s]["c_theory"], rtol=0, atol=1e-12)
    bars = [c for c in ax.containers]
    assert len(bars) == 2
    for container, s in zip(bars, (S_ORDERED, S_CHAOTIC)):
        np.testing.assert_allclose(container.lines[0].get_ydata(), rows[s]["c"], rtol=0, atol=1e-12)
        (segments,) = [c for c in container.lines[2] if isinstance(c, LineCollection)]
        half = np.array([abs(seg[1, 1] - seg[0, 1]) / 2 for seg in segments.get_segments()])
        np.testing.assert_allclose(half, 2 * rows[s]["c_se"], rtol=1e-9)


def _pick(table, **key):
    mask = np.ones(len(table["layer"]), dtype=bool)
    for k, v in key.items():
        mask &= (table[k] == v) if isinstance(v, str) else np.isclose(table[k], v)
    order = np.argsort(table["layer"][mask])
    return {k: v[mask][order] for k, v in table.items()}


# --- depth_scales.png -----------------------------------------------------------------------------------------


def test_depth_scales_follow_an_independent_xi_c_and_diverge_at_the_critical_point(pair_run):
    run_dir, _ = pair_run
    tables = _tables(run_dir)
    fig = pairs.figure_depth_scales(tables)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    xi_line = [ln for ln in ax.get_lines() if ln.get_label().startswith(r"$\xi_c")][0]
    x, y = xi_line.get_data()
    for target in (1.0, 1.5, 2.6):
        i = int(np.argmin(np.abs(x - target)))
        _, chi_c = tanh_c_star_chi_c(float(x[i]), B2)
        assert y[i] == pytest.approx(-1 / math.log(chi_c), rel=1e-6)
    crit = float(tables["summary"]["sigma_w2_n_crit"][0])
    assert crit == pytest.approx(1.76095, abs=1e-4)
    top = int(np.nanargmax(y))
    assert abs(x[top] - crit) < 1e-3 * crit and y[top] > 50 * np.nanmin(y)
    # the measured points are summary.csv's ξ̂_c
    summary = tables["summary_all"]
    xi = summary["xi_c_hat"]
    measured = np.sort(xi[np.isfinite(xi) & (xi > 0)])
    drawn = np.sort(np.concatenate([c.lines[0].get_ydata() for c in ax.containers]))
    np.testing.assert_allclose(drawn, measured, rtol=1e-12)


# --- spectrum.png ------------------------------------------------------------------------------------------------


def test_density_from_quantiles_recovers_a_known_density():
    """Quantiles of a normal law of log₁₀ λ, as spectra.csv holds them, give back its density."""
    rng = np.random.default_rng(1)
    levels = np.linspace(0, 1, 51)
    seeds = np.array([np.quantile(rng.normal(-1.0, 0.5, 4000), levels, method="inverted_cdf") for _ in range(8)])
    edges, dens, zero = spectra.quantile_density(levels, seeds, bins=30)
    mid = 0.5 * (edges[1:] + edges[:-1])
    pdf = np.exp(-0.5 * ((mid + 1.0) / 0.5) ** 2) / (0.5 * math.sqrt(2 * math.pi))
    assert zero == 0 and abs(np.sum(dens * np.diff(edges)) - 1) < 1e-12
    bulk = np.abs(mid + 1.0) < 1.0
    assert np.max(np.abs(dens[bulk] - pdf[bulk])) < 0.12  # 8 seeds × 51 levels; max of the pdf is 0.80
    # zeros up to level 0.48, not at 0.5: the fraction is bracketed by [0.48, 0.5), the middle is taken,
    # the area is the rest
    with_zeros = np.where(levels[None, :] < 0.5, -np.inf, seeds)
    edges, dens, zero = spectra.quantile_density(levels, with_zeros)
    assert zero == pytest.approx(0.49) and np.sum(dens * np.diff(edges)) == pytest.approx(1 - 0.49, abs=1e-12)


def test_relu_spectrum_shows_the_zero_atom_and_the_free_probability_density(relu_spectrum_run):
    run_dir, _ = relu_spectrum_run
    tables = _tables(run_dir)
    fig = spectra.figure_spectrum(tables)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2  # depths 2 and 6
    ax = axes[1]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    # relu at L ≥ 2: half of the λ are zero, measured and predicted
    zero = [float(t.split("λ ≈ 0: ")[1].split("%")[0]) for t in texts if "λ ≈ 0: " in t]
    assert len(zero) == 2 and all(40 <= z <= 75 for z in zero), zero  # at N = 64 the rank is below N/2
    assert any("atom at 0: 50%" in t for t in texts)
    # the prediction for Gaussian weights at L = 6 is the Fuss–Catalan-type density of hevar.meanfield.spectrum
    curve = [ln for ln in ax.get_lines() if ln.get_label().startswith("free probability")][0]
    x, y = curve.get_data()
    rho, _ = sp.density("relu", "normal", 2.0, 6, 10 ** x)
    np.testing.assert_allclose(y, rho * 10 ** x * math.log(10), rtol=1e-12)
    # the legend's mean λ is summary.csv's, beside s^L ∏G = 2 (relu at σ_w²·N = 2)
    assert any("theory 2)" in t or "theory 2," in t for t in texts)


def test_tanh_spectrum_has_no_predicted_density(pair_run):
    run_dir, _ = pair_run
    fig = spectra.figure_spectrum(_tables(run_dir))
    for ax in fig.axes:
        assert not [ln for ln in ax.get_lines() if ln.get_label().startswith("free probability")]


# --- the phase diagram: both branches of the critical line, and ξ_c colouring --------------------------------


def _phase_summary(act, s_values, b_values):
    s, b = np.meshgrid(s_values, b_values)
    n = s.size
    return dict(activation=np.array([act] * n, dtype=object), sigma_w2_n=s.ravel(), sigma_b2=b.ravel(),
                chi_hat=np.full(n, 1.0), status=np.array(["ok"] * n, dtype=object), depth=np.full(n, 10.0),
                width=np.full(n, 64.0))


def test_phase_draws_the_critical_line_of_tanh_on_the_parametric_formula():
    """s = 1/G(q), σ_b² = q − V(q)/G(q) by Gauss–Hermite, independently of hevar: every drawn point lies on it."""
    ax = Figure().subplots()
    maps.plot_phase(ax, _phase_summary("tanh", np.linspace(0.8, 2.6, 7), np.linspace(0, 0.3, 4)))
    segs = [ln for ln in ax.get_lines() if getattr(ln, "_hevar_stable", None) is not None]
    assert segs and all(ln.get_linestyle() == "-" for ln in segs)  # tanh: stable everywhere
    def G(q):
        return _gh(lambda u: _sech2(u) ** 2, q)

    def V(q):
        return _gh(lambda u: np.tanh(u) ** 2, q)

    checked = 0
    for ln in segs:
        x, y = ln.get_data()
        for xi, yi in list(zip(x, y))[::9]:
            if not 1 + 1e-9 < xi < 1 / G(1.5):  # q* in (0, 1.5): where the rule is exact to ~1e-13
                continue
            q = optimize.brentq(lambda t: 1 / G(t) - xi, 1e-12, 1.5, xtol=1e-15, rtol=1e-14)
            assert yi == pytest.approx(q - V(q) / G(q), rel=1e-7, abs=1e-10)
            checked += 1
    assert checked > 20
    x_all = np.concatenate([ln.get_xdata() for ln in segs])
    assert x_all.min() == pytest.approx(1.0, abs=1e-4)  # starts at (1/G(0), 0)


def test_phase_draws_the_unstable_branch_of_gelu_dashed():
    """gelu with a bias has χ₁ = 1 at unstable fixed points (issue 13 item 2): its drawn line lies on the
    parametric line of a Gauss–Hermite V and G (gelu is entire: the rule is exact here), dashed where the
    q-map's slope V'(q)/G(q) > 1 (V' by central differences) and solid where it is < 1."""
    gelu = parse_activation("gelu")
    ax = Figure().subplots()
    maps.plot_phase(ax, _phase_summary("gelu", np.linspace(1.0, 4.0, 7), np.linspace(0, 1.0, 5)))
    segs = [ln for ln in ax.get_lines() if getattr(ln, "_hevar_stable", None) is not None]
    styles = {ln._hevar_stable: ln.get_linestyle() for ln in segs}
    assert styles.get(False) not in (None, "-") and styles.get(True) == "-", styles
    q = np.geomspace(1e-3, 12.0, 6000)
    G = np.array([_gh(lambda u: gelu.dphi(u) ** 2, x) for x in q])
    V = np.array([_gh(lambda u: gelu.phi(u) ** 2, x) for x in q])
    h = 1e-5
    dV = np.array([(_gh(lambda u: gelu.phi(u) ** 2, x * (1 + h)) - _gh(lambda u: gelu.phi(u) ** 2, x * (1 - h)))
                   / (2 * h * x) for x in q])
    ref = np.stack([1 / G, q - V / G], axis=1)
    slope = dV / G
    checked = {True: 0, False: 0}
    for ln in segs:
        for point in np.stack(ln.get_data(), axis=1)[1:-1]:
            if not 1e-5 < point[1] < 0.3:  # within the reference's range of q
                continue
            k = int(np.argmin(np.hypot(*(ref - point).T)))
            k = min(max(k, 1), len(q) - 2)
            # distance to the reference polyline near k (the two segments around it)
            dist = min(_segment_distance(point, ref[k - 1], ref[k]), _segment_distance(point, ref[k], ref[k + 1]))
            assert dist < 1e-7, (point, dist)
            if abs(slope[k] - 1) > 0.01:
                assert (slope[k] < 1) == ln._hevar_stable, (point, slope[k])
                checked[ln._hevar_stable] += 1
    assert checked[True] > 5 and checked[False] > 5, checked


def _segment_distance(p, a, b):
    t = np.clip(np.dot(p - a, b - a) / np.dot(b - a, b - a), 0.0, 1.0)
    return float(np.hypot(*(p - (a + t * (b - a)))))


def test_phase_can_be_coloured_by_xi_c_on_a_log_scale():
    ax = Figure().subplots()
    s_values, b_values = np.array([1.2, 1.5, 2.5, 3.0]), np.array([0.05, 0.2])
    artists = maps.plot_phase(ax, _phase_summary("tanh", s_values, b_values), colour_by="xi_c")
    mesh = artists[0]
    assert isinstance(mesh.norm, matplotlib.colors.LogNorm)
    grid = np.asarray(mesh.get_array()).reshape(2, 4)
    for j, s in enumerate(s_values):
        _, chi_c = tanh_c_star_chi_c(s, 0.05)
        assert grid[0, j] == pytest.approx(-1 / math.log(chi_c), rel=1e-6)
    with pytest.raises(UsageError, match="colour_by"):
        maps.plot_phase(Figure().subplots(), _phase_summary("tanh", s_values, b_values), colour_by="nope")
    fig = maps._figure_phase(_phase_summary("tanh", s_values, b_values), None, colour_by="xi_c")
    assert fig is not None
