"""The measured Jacobian spectrum: against explicit products and finite differences, orthogonal linear
networks (all singular values 1), Fuss–Catalan moments, and relu at σ_w²·N = 2 at two depths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hevar.engine.jacobian import measure_jacobian, spectrum_moments
from hevar.engine.passes import Streams
from hevar.meanfield import spectrum as sp
from hevar.meanfield.activations import parse_activation


def explicit(act, widths, std, b_std, x, streams):
    """zᴸ(x) and J = ∂zᴸ/∂x by the product Wᴸ Dᴸ⁻¹ ⋯ D¹ W¹, one configuration and input."""
    Ws = [std[l] * streams.weights(l + 1, widths[l + 1], widths[l], np.dtype(float)) for l in range(len(widths) - 1)]
    bs = [b_std * streams.bias(l + 1, widths[l + 1], np.dtype(float)) for l in range(len(widths) - 1)]

    def forward(v):
        h = v
        for l, (W, b) in enumerate(zip(Ws, bs)):
            z = W @ h + b
            h = act.phi(z)
        return z

    J, h = np.eye(widths[0]), x
    for l, (W, b) in enumerate(zip(Ws, bs)):
        z = W @ h + b
        J = W @ J
        if l < len(Ws) - 1:
            J = act.dphi(z)[:, None] * J
        h = act.phi(z)
    return forward, J


@pytest.mark.parametrize("name,dist", [("tanh", "normal"), ("relu", "orthogonal"), ("gelu", "uniform")])
def test_singular_values_match_the_explicit_product_and_finite_differences(name, dist):
    act = parse_activation(name)
    widths = (5, 7, 6, 4)
    std = np.array([[0.6, 0.5, 0.7], [0.2, 0.3, 0.25]])
    b_std = np.array([0.3, 0.0])
    streams = Streams(2, 0, dist)
    m = measure_jacobian(act, widths, std, b_std, 2, streams)
    x = streams.inputs(widths[0], 2, np.dtype(float))
    for k in range(2):
        for b in range(2):
            forward, J = explicit(act, widths, std[k], b_std[k], x[:, b], streams)
            ref = np.sort(np.linalg.svd(J, compute_uv=False) ** 2)[::-1]
            np.testing.assert_allclose(m.sv2[k, b], ref, rtol=1e-11, atol=1e-13 * ref[0])  # zeros: absolute
            h = 1e-6
            J_fd = np.column_stack([(forward(x[:, b] + h * e) - forward(x[:, b] - h * e)) / (2 * h)
                                    for e in np.eye(widths[0])])
            np.testing.assert_allclose(J_fd, J, atol=1e-8)
    assert m.status == ("ok", "ok") and m.log_sv2.shape == (2, 2, 4)


@pytest.mark.parametrize("s", [1.0, 1.3])
def test_orthogonal_linear_network_is_an_exact_isometry(s):
    L, N = 12, 64
    m = measure_jacobian(parse_activation("linear"), (N,) * (L + 1), np.full((1, L), math.sqrt(s / N)),
                         np.array([0.4]), 2, Streams(0, 0, "orthogonal"))
    np.testing.assert_allclose(m.log_sv2, L * math.log(s), atol=1e-12)  # every λ = s^L


def _moments(act, s, L, N, dist, seeds, b=0.0):
    std = np.full((1, L), math.sqrt(s / N))
    out = [spectrum_moments(measure_jacobian(act, (N,) * (L + 1), std, np.array([math.sqrt(b)]), 2,
                                             Streams(0, i, dist)).log_sv2) for i in range(seeds)]
    # per seed: the mean over its inputs (the inputs of one seed share the weights, so are not independent)
    m1 = np.array([np.exp(r["log_mean"][0]).mean() for r in out])
    v = np.array([r["normalized_var"][0].mean() for r in out])
    return m1, v


def _se(a):
    return a.std(ddof=1) / math.sqrt(a.size)


def test_linear_gaussian_network_has_the_fuss_catalan_moments():
    """Product of L Ginibre matrices at σ² = 1/N: mean λ = 1 exactly, mean λ² → L + 1 (Fuss–Catalan);
    O(L²/N) finite-width corrections allowed (measured 4.003 ± 0.016 at L = 4, N = 128)."""
    L, N = 4, 128
    m1, v = _moments(parse_activation("linear"), 1.0, L, N, "normal", 6)
    assert abs(m1.mean() - 1.0) < 4 * _se(m1)
    assert abs(v.mean() - L) < 4 * _se(v) + L * (L + 1) / (2 * N)


@pytest.mark.parametrize("dist,per_layer", [("normal", 2), ("orthogonal", 1)])
def test_relu_at_he_init_two_depths(dist, per_layer):
    """relu at σ_w²·N = 2: mean λ = s·∏χ_l = 2 at every depth (exact in expectation); the relative
    variance grows by 2 per layer with Gaussian weights and by 1 with orthogonal ones (v = 2L - 1, L - 1)."""
    relu, N = parse_activation("relu"), 128
    vs = {}
    for L in (2, 5):
        m1, v = _moments(relu, 2.0, L, N, dist, 6)
        pred = sp.predicted_moments(relu, 2.0, 0.0, L, dist)
        assert abs(m1.mean() - math.exp(pred["log_mean"])) < 4 * _se(m1)
        assert pred["normalized_var"] == pytest.approx(per_layer * L - 1)
        assert abs(v.mean() - pred["normalized_var"]) < 4 * _se(v) + L * L / N
        vs[L] = v
    growth = (vs[5].mean() - vs[2].mean()) / 3
    assert abs(growth - per_layer) < 4 * math.hypot(_se(vs[5]), _se(vs[2])) / 3 + 25 / N / 3


def test_relu_density_matches_the_measured_spectrum():
    """The free-probability density (polynomial equation) against the empirical CDF of the nonzero λ."""
    L, N = 3, 256
    std = np.full((1, L), math.sqrt(2.0 / N))
    lam = np.concatenate([measure_jacobian(parse_activation("relu"), (N,) * (L + 1), std, np.zeros(1), 2,
                                           Streams(0, i)).sv2.ravel() for i in range(3)])
    zero = lam < 1e-10 * lam.max()
    # About half the λ are exactly 0: J's rank is the fewest active units of a layer, min_l Bin(N, ½).
    assert 0.5 <= zero.mean() < 0.5 + 3 * 0.5 / math.sqrt(N)
    grid = np.geomspace(1e-4, 60, 1500)
    rho, atoms = sp.density("relu", "normal", 2.0, L, grid)
    cdf = np.concatenate([[0], np.cumsum(0.5 * (rho[1:] + rho[:-1]) * np.diff(grid))])
    for q in (2.0, 5.0, 20.0):
        assert abs(np.mean(lam[~zero] < q) - 2 * np.interp(q, grid, cdf)) < 0.03, q


def test_spectrum_moments_by_hand_and_refusals():
    with np.errstate(divide="ignore"):
        r = spectrum_moments(np.log(np.array([[4.0, 1.0, 1.0, 0.0]])))
    assert r["log_mean"][0] == pytest.approx(math.log(1.5))
    assert r["normalized_var"][0] == pytest.approx((18 / 4) / 2.25 - 1)
    assert r["log_max"][0] == pytest.approx(math.log(4.0)) and r["log_min"][0] == -math.inf
    with pytest.raises(ValueError, match="1024"):
        measure_jacobian(parse_activation("relu"), (2048, 8), np.ones((1, 1)), np.zeros(1), 1, Streams(0, 0))
