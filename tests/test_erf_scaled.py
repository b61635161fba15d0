"""The built-in erf_scaled = erf(√π·z/2): closed-form moments against quadrature, slope 1 at 0."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hevar.meanfield import critical, gaussian
from hevar.meanfield.activations import parse_activation


def test_closed_forms_match_adaptive_quadrature():
    act = parse_activation("erf_scaled")
    q = np.array([1e-4, 0.1, 1.0, 7.0, 300.0])
    assert np.allclose(act.V(q), gaussian.expect_adaptive(lambda z: act.phi(z) ** 2, q), rtol=1e-12, atol=0)
    assert np.allclose(act.G(q), gaussian.expect_adaptive(lambda z: act.dphi(z) ** 2, q), rtol=1e-12, atol=0)
    z = np.linspace(-3, 3, 13)
    h = 1e-6
    assert np.allclose(act.dphi(z), (act.phi(z + h) - act.phi(z - h)) / (2 * h), atol=1e-9)
    assert act.dphi(np.zeros(1))[0] == 1.0


def test_critical_point_like_tanh_at_zero_bias():
    crit = critical.critical_sigma_w2_n(parse_activation("erf_scaled"), 0.0)
    assert crit.kind == "q*->0" and crit.sigma_w2_n == pytest.approx(1.0, rel=1e-12)  # 1/φ'(0)²
    assert math.isfinite(critical.critical_sigma_w2_n(parse_activation("erf_scaled"), 0.05).sigma_w2_n)
