"""The c-map, its fixed point and depth scales against an independent Gauss–Hermite computation,
Schoenholz et al.'s tanh critical point, relu's closed-form c-map, and a Monte Carlo of one layer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

from hevar.errors import UsageError
from hevar.meanfield import correlations as cr
from hevar.meanfield import theory
from hevar.meanfield.activations import parse_activation

TANH = parse_activation("tanh")
RELU = parse_activation("relu")
S_CRIT = 1.76095  # Schoenholz et al. 2017, tanh at σ_b² = 0.05 (hevar's critical_sigma_w2_n to 6 digits)

# An independent computation for tanh: a 160×160 Gauss–Hermite product rule (tanh is smooth), fixed
# points by Brent's method, χ_c as a central difference of the c-map (not Price's theorem).
_X, _W = np.polynomial.hermite_e.hermegauss(160)
_W = _W / _W.sum()


def _gh_v(q):
    return float(np.sum(_W * np.tanh(math.sqrt(q) * _X) ** 2))


def _gh_k(q, c):
    s = math.sqrt((1 - c) * (1 + c))
    u, v = np.meshgrid(_X, _X, indexing="ij")
    return float(np.sum(np.outer(_W, _W) * np.tanh(math.sqrt(q) * u) * np.tanh(math.sqrt(q) * (c * u + s * v))))


def independent_tanh(s, b):
    q = optimize.brentq(lambda q: s * _gh_v(q) + b - q, 1e-3, 50, xtol=1e-15)
    cmap = lambda c: (s * _gh_k(q, c) + b) / q  # noqa: E731
    try:
        c_star = optimize.brentq(lambda c: cmap(c) - c, 0.0, 1 - 1e-3, xtol=1e-15)
    except ValueError:  # no sign change below 1: ordered
        return q, 1.0, None
    h = 1e-4
    return q, c_star, (cmap(c_star + h) - cmap(c_star - h)) / (2 * h)


@pytest.mark.parametrize("s", [1.5, 2.0, 2.5])
def test_tanh_terms_match_an_independent_computation(s):
    q, c_star, chi_c = independent_tanh(s, 0.05)
    t = cr.correlation_terms(TANH, s, 0.05)
    assert abs(t.q_star - q) < 1e-10
    assert abs(t.c_star - c_star) < 1e-10
    if chi_c is None:  # ordered: the slope at c* = 1 is χ₁
        assert t.phase == "ordered" and t.chi_c == t.chi1
    else:
        assert abs(t.chi_c - chi_c) < 1e-8  # the central difference's h² error
    assert t.xi_c == pytest.approx(-1 / math.log(t.chi_c), rel=1e-14)


def test_order_to_chaos_at_schoenholz_critical_point_with_diverging_xi_c():
    below, above = [cr.correlation_terms(TANH, S_CRIT * (1 - e), 0.05) for e in (1e-2, 1e-3)], \
        [cr.correlation_terms(TANH, S_CRIT * (1 + e), 0.05) for e in (1e-2, 1e-3)]
    assert all(t.c_star == 1.0 and t.phase == "ordered" for t in below)
    assert all(t.c_star < 1.0 and t.phase == "chaotic" for t in above)
    assert below[0].xi_c < below[1].xi_c and above[0].xi_c < above[1].xi_c  # ξ_c grows toward s_c
    assert below[1].xi_c > 500 and above[1].xi_c > 500
    assert above[1].c_star > above[0].c_star > 0.9  # c* leaves 1 continuously
    # ξ_q stays finite across the transition (Schoenholz et al. 2017, Fig. 1)
    assert 1.0 < below[1].xi_q < 2.0 and abs(below[1].xi_q - above[1].xi_q) < 0.01


def test_xi_q_is_the_q_map_slope():
    s, b = 2.5, 0.05
    t = cr.correlation_terms(TANH, s, b)
    h = 1e-5
    slope = (theory.qmap(TANH, t.q_star + h, s, b) - theory.qmap(TANH, t.q_star - h, s, b)) / (2 * h)
    assert t.xi_q == pytest.approx(-1 / math.log(float(slope)), rel=1e-8)


def relu_cmap(c):
    th = np.arccos(np.clip(c, -1, 1))
    return (np.sin(th) + (np.pi - th) * c) / np.pi


def test_relu_c_map_and_trajectory_are_the_arc_cosine_kernel():
    c = np.linspace(-1, 1, 41)
    np.testing.assert_allclose(cr.c_map(RELU, c, 2.0, 0.0, 3.7), relu_cmap(c), atol=1e-15)
    traj = cr.c_trajectory(RELU, 3.0, 0.0, 1.0, -0.4, 30)  # no bias: the same map for every s
    expected = [-0.4]
    for _ in range(30):
        expected.append(float(relu_cmap(expected[-1])))
    np.testing.assert_allclose(traj, expected[:30], atol=1e-14)  # c¹ = c⁰: the input is not activated
    t = cr.correlation_terms(RELU, 2.0, 0.0)
    assert (t.c_star, t.chi_c, t.xi_c) == (1.0, 1.0, math.inf) and t.note


def test_relu_with_bias_along_the_actual_trajectory():
    s, b, q0, c0, L = 1.5, 0.1, 2.0, 0.2, 25
    q, q12 = s * q0 + b, s * c0 * q0 + b
    expected = [q12 / q]
    for _ in range(L - 1):
        q_next = s * q / 2 + b
        expected.append((s * q * relu_cmap(expected[-1]) / 2 + b) / q_next)
        q = q_next
    np.testing.assert_allclose(cr.c_trajectory(RELU, s, b, q0, c0, L), expected, rtol=1e-13)
    t = cr.correlation_terms(RELU, s, b)
    assert t.q_star == pytest.approx(0.4) and t.c_star == 1.0 and t.chi_c == pytest.approx(0.75)


def test_relu_deep_trajectory_does_not_overflow():
    c = cr.c_trajectory(RELU, 4.0, 0.05, 1.0, 0.0, 1500)  # q ~ 2^1500
    assert np.all(np.isfinite(c)) and 0.99 < c[-1] <= 1.0 + 1e-15


def test_one_layer_against_monte_carlo():
    rng = np.random.default_rng(3)
    s, b = 2.5, 0.05
    traj = cr.c_trajectory(TANH, s, b, 1.0, 0.3, 4)
    log_q = theory.log_q_trajectory(TANH, np.full(4, s), b, 1.0)
    for l in range(3):
        q, c = math.exp(log_q[l]), traj[l]
        u = rng.standard_normal((2, 200_000))
        z1 = math.sqrt(q) * u[0]
        z2 = math.sqrt(q) * (c * u[0] + math.sqrt(1 - c * c) * u[1])
        prod, sq = s * np.tanh(z1) * np.tanh(z2) + b, s * np.tanh(z1) ** 2 + b
        ratio = prod.mean() / math.exp(log_q[l + 1])
        se = prod.std(ddof=1) / math.sqrt(prod.size) / math.exp(log_q[l + 1])
        assert abs(ratio - traj[l + 1]) < 5 * se
        assert abs(sq.mean() - math.exp(log_q[l + 1])) < 5 * sq.std(ddof=1) / math.sqrt(sq.size)


def test_fit_recovers_xi_c_from_the_theory_trajectory():
    layers = np.arange(1, 161)
    for s in (1.5, 2.5):
        t = cr.correlation_terms(TANH, s, 0.05)
        c = cr.c_trajectory(TANH, s, 0.05, 1.0, 0.3, 160)
        # Within |cˡ - c*| ≤ 0.01 the c-map is linear to 0.5 % (at the default 0.1: to 1 %, measured).
        fit = cr.fit_xi_c(layers, c, t.c_star, ceiling=0.01)
        assert fit.xi == pytest.approx(t.xi_c, rel=0.005) and len(fit.layers) > 50
        assert cr.fit_xi_c(layers, c, t.c_star).xi == pytest.approx(t.xi_c, rel=0.015)
    exact = 0.4 + 0.3 * np.exp(-layers / 7.5)
    assert cr.fit_xi_c(layers, exact, 0.4, floor=1e-8).xi == pytest.approx(7.5, rel=1e-7)
    assert math.isnan(cr.fit_xi_c(layers[:2], exact[:2], 0.4).xi)


def test_jackknife_se_matches_the_spread_over_repeated_experiments():
    rng = np.random.default_rng(5)
    layers = np.arange(1, 21)
    truth = 0.5 + 0.4 * np.exp(-layers / 6.0)
    estimates, ses = [], []
    for _ in range(150):
        seeds = truth + 0.004 * rng.standard_normal((8, layers.size))
        xi, se = cr.xi_c_jackknife(layers[:12], seeds[:, :12], 0.5)
        estimates.append(xi)
        ses.append(se)
    spread = np.std(estimates, ddof=1)
    assert 0.7 < np.mean(ses) / spread < 1.4
    assert abs(np.mean(estimates) - 6.0) < 3 * spread / math.sqrt(150) + 0.05


def test_limits_and_report_terms():
    t = cr.correlation_terms(TANH, 0.8, 0.0)  # q* = 0: the c-map tends to the identity
    assert t.q_star == 0 and math.isnan(t.c_star) and t.xi_c == math.inf and "identity" in t.note
    t = cr.correlation_terms(TANH, 1.5, 0.0)  # odd φ without bias, chaotic: c* = 0
    assert t.c_star == 0.0 and t.chi_c < 1
    t = cr.correlation_terms(parse_activation("linear"), 1.0, 0.0)
    assert math.isnan(t.c_star) and t.chi_c == 1.0
    out = cr.report_terms(TANH, 2.5, 0.05)
    assert set(out) == {"c_star", "chi_c", "xi_c", "xi_q", "c_note"}
    assert out["xi_c"] == pytest.approx(11.7956, abs=1e-3)
    with pytest.raises(UsageError, match="'sigma_w2' parameter"):
        cr.report_terms(TANH, -1.0, 0.05)
