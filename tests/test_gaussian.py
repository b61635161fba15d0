"""Gaussian expectations: the fast composite rule against closed forms and against adaptive QUADPACK."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import integrate, special

from hevar.meanfield import gaussian
from hevar.meanfield.activations import FAMILIES, parse_activation

Q_LOG = np.logspace(-6, 4, 11)  # the range the theory promises 1e-10 on, one point per decade
Q_DENSE = np.logspace(-6, 4, 301)
RTOL = 1e-10

# Closed forms written out here from the literature, independent of the ones in activations.py.
CLOSED = {
    ("relu", "V"): lambda q: q / 2,
    ("relu", "G"): lambda q: 0.5 + 0 * q,
    ("leaky_relu:0.2", "V"): lambda q: 0.52 * q,
    ("leaky_relu:0.2", "G"): lambda q: 0.52 + 0 * q,
    ("linear", "V"): lambda q: q,
    ("linear", "G"): lambda q: 1 + 0 * q,
    ("erf", "V"): lambda q: 2 / np.pi * np.arcsin(2 * q / (1 + 2 * q)),
    ("erf", "G"): lambda q: 4 / np.pi / np.sqrt(1 + 4 * q),
}


def _integrands(act):
    return {"V": lambda z: act.phi(z) ** 2, "G": lambda z: act.dphi(z) ** 2}


@pytest.fixture(scope="module")
def adaptive_reference():
    """V and G of every built-in activation on Q_LOG by adaptive QUADPACK (slow: computed once)."""
    ref = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)  # epsrel 1e-13 is near rounding
        for spec in list(FAMILIES) + ["leaky_relu:0.2", "elu:0.5"]:
            act = parse_activation(spec)
            for moment, f in _integrands(act).items():
                ref[spec, moment] = gaussian.expect_adaptive(f, Q_LOG, act.kinks)
    return ref


def test_adaptive_reference_reproduces_closed_forms(adaptive_reference):
    for (spec, moment), exact in CLOSED.items():
        np.testing.assert_allclose(adaptive_reference[spec, moment], exact(Q_LOG), rtol=1e-12, err_msg=f"{spec} {moment}")


@pytest.mark.parametrize("key", list(CLOSED))
def test_fast_rule_matches_closed_forms_densely(key):
    spec, moment = key
    act = parse_activation(spec)
    fast = gaussian.expect(_integrands(act)[moment], Q_DENSE, act.kinks)
    np.testing.assert_allclose(fast, CLOSED[key](Q_DENSE), rtol=1e-13)


@pytest.mark.parametrize("spec", list(FAMILIES) + ["leaky_relu:0.2", "elu:0.5"])
@pytest.mark.parametrize("moment", ["V", "G"])
def test_fast_rule_matches_adaptive_quadrature(adaptive_reference, spec, moment):
    act = parse_activation(spec)
    fast = gaussian.expect(_integrands(act)[moment], Q_LOG, act.kinks)
    np.testing.assert_allclose(fast, adaptive_reference[spec, moment], rtol=RTOL)


@pytest.mark.parametrize("spec", [s for s in list(FAMILIES) + ["elu:0.5"] if parse_activation(s).V is not None])
@pytest.mark.parametrize("moment", ["V", "G"])
def test_activation_closed_forms_match_adaptive_quadrature(adaptive_reference, spec, moment):
    act = parse_activation(spec)
    closed = getattr(act, moment)(Q_LOG)
    np.testing.assert_allclose(closed, adaptive_reference[spec, moment], rtol=RTOL)
    # and the fast rule agrees with the closed form on a dense grid (catches a bad series switch)
    dense = gaussian.expect(_integrands(act)[moment], Q_DENSE, act.kinks)
    np.testing.assert_allclose(getattr(act, moment)(Q_DENSE), dense, rtol=RTOL)


def test_step_function_needs_the_split():
    """A 301-node Gauss–Hermite rule gets E[1{u>0}] wrong by 7%; the split rule is exact."""
    x, w = np.polynomial.hermite_e.hermegauss(301)
    hermite = np.sum(w * (x > 0)) / np.sum(w)
    assert abs(hermite - 0.5) > 0.03
    step = lambda z: (z > 0).astype(float)
    np.testing.assert_allclose(gaussian.expect(step, Q_DENSE, kinks=(0.0,)), 0.5, rtol=1e-14)
    # an off-centre jump: E[1{z > 1}] = Φ(-1/√q)
    jump = lambda z: (z > 1).astype(float)
    q = np.logspace(-1, 4, 51)
    np.testing.assert_allclose(gaussian.expect(jump, q, kinks=(1.0,)), special.ndtr(-1 / np.sqrt(q)), rtol=1e-12)


def test_tanh_at_large_q_is_a_step_the_rule_resolves():
    """For large q, G_tanh(q) = E[sech⁴ z] = Σₖ (-1)ᵏ I₂ₖ / (k! (2q)ᵏ) / √(2πq), I₂ₖ = ∫z²ᵏ sech⁴ z dz.

    A fixed Gauss–Hermite rule in u, which cannot see a feature of width 1/√q, is off by > 100%.
    """
    sech4 = lambda z: (1 - np.tanh(z) ** 2) ** 2
    moments = [integrate.quad(lambda z, k=k: z ** (2 * k) * sech4(z), 0, 40, epsabs=0, epsrel=1e-13, limit=200)[0] * 2
               for k in range(4)]
    assert moments[0] == pytest.approx(4 / 3, rel=1e-14)
    for q in (1e3, 1e4, 1e6):
        series = sum((-1) ** k * moments[k] / (math.factorial(k) * (2 * q) ** k) for k in range(4))
        expected = series / math.sqrt(2 * math.pi * q)  # truncation ~ I₈/(384 q⁴) < 1e-11 relative at q = 1e3
        assert gaussian.expect(lambda z: (1 - np.tanh(z) ** 2) ** 2, q) == pytest.approx(expected, rel=1e-11)
    x, w = np.polynomial.hermite_e.hermegauss(301)
    fixed = np.sum(w * sech4(100 * x)) / np.sum(w)
    assert abs(fixed / (4 / 3 / math.sqrt(2 * math.pi * 1e4)) - 1) > 1


def test_shapes_edges_and_chunking():
    f = lambda z: np.maximum(z, 0) ** 2
    q = np.linspace(0.5, 3, 300).reshape(3, 100)  # several blocks
    out = gaussian.expect(f, q, (0.0,))
    assert out.shape == (3, 100)
    np.testing.assert_allclose(out, q / 2, rtol=1e-14)
    assert gaussian.expect(f, 2.0, (0.0,)).shape == ()
    step = lambda z: (z > 0).astype(float)
    assert gaussian.expect(step, 0.0) == 0.5  # the q → 0⁺ limit at a jump
    assert gaussian.expect(np.cos, 0.0) == 1.0
    assert np.isnan(gaussian.expect(f, -1.0)) and np.isnan(gaussian.expect(f, np.inf))


def test_speed_of_the_fast_rule():
    """Vectorised use must stay cheap: the sweep evaluates V and G along whole trajectories."""
    import time

    act = parse_activation("mish")
    q = np.logspace(-3, 3, 2000)
    f = lambda z: act.dphi(z) ** 2
    gaussian.expect(f, q[:10])
    start = time.perf_counter()
    gaussian.expect(f, q)
    assert time.perf_counter() - start < 2.0  # ≈ 0.05 s measured; generous for loaded CI machines
