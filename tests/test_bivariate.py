"""Bivariate Gaussian expectations against an independent polar-coordinate dblquad, Monte Carlo with
tolerances from the measured standard error, the closed forms written out here again, and edge cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import integrate, special

from hevar.meanfield import bivariate as bv
from hevar.meanfield import gaussian, theory
from hevar.meanfield.activations import Activation, parse_activation

TOL = 1e-10


def polar_dblquad(f, g, q1, q2, c):
    """E[f(u₁)g(u₂)] by scipy dblquad in polar coordinates of the whitened pair, written independently.

    u₁ = √q₁·x, u₂ = √q₂(c·x + s·y), (x, y) = r(cos β, sin β); the kinks at u₁ = 0 and u₂ = 0 are rays,
    so the β-range is split at their four angles and every piece is smooth in the interior.
    """
    s = math.sqrt((1 - c) * (1 + c))
    a1, a2 = math.sqrt(q1), math.sqrt(q2)

    def h(r, b):
        x, y = r * math.cos(b), r * math.sin(b)
        value = f(np.array([a1 * x]))[0] * g(np.array([a2 * (c * x + s * y)]))[0]
        return float(value) * r * math.exp(-0.5 * r * r) / (2 * math.pi)

    b0 = math.atan2(-c, s)  # u₂ = 0
    angles = sorted({-math.pi, -math.pi / 2, math.pi / 2, math.pi, b0, b0 - math.pi if b0 > 0 else b0 + math.pi})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        return sum(integrate.dblquad(h, lo, hi, 0, 12, epsabs=1e-12, epsrel=1e-12)[0]
                   for lo, hi in zip(angles[:-1], angles[1:]))


# The closed forms again, straight from the literature (arccos, arcsin), independent of bivariate.py.
def relu_pp(q1, q2, c):
    th = np.arccos(c)
    return np.sqrt(q1 * q2) / (2 * np.pi) * (np.sin(th) + (np.pi - th) * c)


def relu_dd(q1, q2, c):
    return 0.25 + np.arcsin(c) / (2 * np.pi) + 0 * q1


def erf_pp(q1, q2, c):
    return 2 / np.pi * np.arcsin(2 * c * np.sqrt(q1 * q2) / np.sqrt((1 + 2 * q1) * (1 + 2 * q2)))


def erf_dd(q1, q2, c):
    return 4 / np.pi / np.sqrt(np.linalg.det(np.eye(2) + 2 * np.array([[q1, c * np.sqrt(q1 * q2)],
                                                                        [c * np.sqrt(q1 * q2), q2]])))


POINTS = [(1.0, 1.0, 0.3), (0.5, 2.0, -0.6), (3.0, 0.2, 0.95)]


@pytest.mark.parametrize("name", ["relu", "leaky_relu:0.2", "linear", "erf"])
def test_closed_forms_match_polar_dblquad(name):
    act = parse_activation(name)
    for q1, q2, c in POINTS[1:] if name == "erf" else POINTS:
        for got, f in ((bv.phi_phi(act, q1, q2, c), act.phi), (bv.dphi_dphi(act, q1, q2, c), act.dphi)):
            assert abs(got - polar_dblquad(f, f, q1, q2, c)) < TOL, (name, q1, q2, c)


def test_closed_forms_match_the_literature_on_a_grid():
    q = np.array([1e-3, 0.3, 1.0, 40.0])
    c = np.linspace(-0.99, 0.99, 23)
    Q1, Q2, C = np.meshgrid(q, q, c, indexing="ij")
    relu, erf = parse_activation("relu"), parse_activation("erf")
    np.testing.assert_allclose(bv.phi_phi(relu, Q1, Q2, C), relu_pp(Q1, Q2, C), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(bv.dphi_dphi(relu, Q1, Q2, C), relu_dd(Q1, Q2, C), rtol=1e-13)
    np.testing.assert_allclose(bv.phi_phi(erf, Q1, Q2, C), erf_pp(Q1, Q2, C), rtol=1e-12, atol=1e-16)
    for q1, q2, cc in [(0.3, 40.0, -0.5), (1.0, 1.0, 0.9)]:
        assert abs(bv.dphi_dphi(erf, q1, q2, cc) - erf_dd(q1, q2, cc)) < 1e-13


@pytest.mark.parametrize("name", ["tanh", "elu", "gelu"])
def test_numerical_rule_matches_polar_dblquad(name):
    act = parse_activation(name)
    for (q1, q2, c), f in zip(POINTS, (act.phi, act.dphi, act.phi)):
        got = bv.expect2(f, f, q1, q2, c, act.kinks, act.kinks)
        assert abs(got - polar_dblquad(f, f, q1, q2, c)) < TOL, (name, q1, q2, c)


@pytest.mark.parametrize("name", ["relu", "leaky_relu:0.2", "linear", "erf"])
def test_numerical_rule_matches_closed_forms_to_the_edges(name):
    """The 2-D rule on the activation's own φ, φ' (no closed form used) against the closed form, for c
    down to 1e-12 from ±1 and variances over six decades: the near-kink of H at c → ±1 is resolved."""
    act = parse_activation(name)
    kernel = bv.closed_kernel(act)
    worst = 0.0
    for q1, q2 in [(1e-3, 1e3), (1.0, 1.0), (7.0, 0.5)]:
        for c in (-1.0, -1 + 1e-12, -0.7, 0.0, 0.3, 0.99999, 1 - 1e-9, 1 - 1e-12, 1.0):
            for f, closed in ((act.phi, kernel.phi_phi), (act.dphi, kernel.dphi_dphi)):
                got = bv.expect2(f, f, q1, q2, c, act.kinks, act.kinks)
                worst = max(worst, abs(got - closed(q1, q2, c)))
    assert worst < TOL


@pytest.mark.parametrize("name", ["tanh", "elu"])
def test_monte_carlo_within_five_standard_errors(name):
    act = parse_activation(name)
    rng = np.random.default_rng(7)
    q1, q2, c = 1.7, 0.6, -0.45
    u = rng.standard_normal((2, 400_000))
    u1 = math.sqrt(q1) * u[0]
    u2 = math.sqrt(q2) * (c * u[0] + math.sqrt(1 - c * c) * u[1])
    for f in (act.phi, act.dphi):
        samples = f(u1) * f(u2)
        se = samples.std(ddof=1) / math.sqrt(samples.size)
        got = bv.expect2(f, f, q1, q2, c, act.kinks, act.kinks)
        assert abs(samples.mean() - got) < 5 * se


def test_c_zero_factorises_and_c_one_gives_the_moments():
    tanh = parse_activation("tanh")
    sig = parse_activation("sigmoid")
    got = bv.expect2(tanh.dphi, sig.phi, 0.8, 2.5, 0.0)
    assert abs(got - gaussian.expect(tanh.dphi, 0.8) * gaussian.expect(sig.phi, 2.5)) < 1e-14
    for q in (0.01, 1.0, 50.0):
        assert abs(bv.phi_phi(tanh, q, q, 1.0) - theory.V(tanh, q)) < 1e-13
        assert abs(bv.dphi_dphi(tanh, q, q, 1.0) - theory.G(tanh, q)) < 1e-13
        assert abs(bv.phi_phi(tanh, q, q, -1.0) + theory.V(tanh, q)) < 1e-13  # odd φ
        # continuous into the degenerate point
        assert abs(bv.phi_phi(tanh, q, q, 1 - 1e-12) - theory.V(tanh, q)) < 1e-10


def test_symmetry_and_out_of_range():
    tanh, sig = parse_activation("tanh"), parse_activation("sigmoid")
    a = bv.expect2(tanh.phi, sig.phi, 0.4, 3.0, 0.7)
    b = bv.expect2(sig.phi, tanh.phi, 3.0, 0.4, 0.7)
    assert abs(a - b) < 1e-14
    relu = parse_activation("relu")
    assert np.isnan(bv.phi_phi(relu, 1.0, 1.0, 1.01))
    assert np.isnan(bv.expect2(tanh.phi, tanh.phi, 1.0, 1.0, -1.5))
    assert bv.phi_phi(relu, 1.0, 1.0, 1 + 1e-13) == pytest.approx(0.5, abs=1e-15)  # rounding is clipped


def test_zero_variance_is_the_limit_at_fixed_c():
    relu = parse_activation("relu")
    c = 0.4
    exact = relu_dd(1.0, 1.0, c)  # P(u₁ > 0, u₂ > 0) does not depend on the variances
    assert abs(bv.expect2(relu.dphi, relu.dphi, 0.0, 2.0, c, (0.0,), (0.0,)) - exact) < 1e-13
    assert abs(bv.expect2(relu.dphi, relu.dphi, 1e-30, 2.0, c, (0.0,), (0.0,)) - exact) < 1e-13


def test_a_renamed_activation_does_not_borrow_a_closed_form():
    fake = Activation(name="relu", phi=np.tanh, dphi=lambda z: 1 - np.tanh(z) ** 2)
    assert bv.closed_kernel(fake) is None
    assert abs(bv.phi_phi(fake, 1.0, 1.0, 1.0) - theory.V(parse_activation("tanh"), 1.0)) < 1e-13
    assert bv.closed_kernel(parse_activation("tanh")) is None
    assert bv.closed_kernel(parse_activation("erf")) is not None
    erf = parse_activation("erf")
    assert abs(bv.phi_phi(erf, 2.0, 2.0, 1.0) - 2 / np.pi * np.arcsin(4 / 5)) < 1e-15
    assert special.erf(0.0) == 0.0
