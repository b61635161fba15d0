"""Fixed points and saddle-nodes of the q-map against an independent adaptive-quadrature oracle.

The oracle below is written here, apart from hevar's quadrature and closed forms: V(q) = E[φ(z)²]
and V'(q) = E[φ(z)²(z²/q − 1)]/(2q) (the q-derivative of the Gaussian density) by scipy's QUADPACK
on pieces cut at 0, ±√q, ±8√q, ±40√q, and roots by brentq on a dense scan.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize, special

from hevar.meanfield import critical, fixedpoints, theory
from hevar.meanfield.activations import parse_activation

PHI = {
    "gelu": lambda z: z * special.ndtr(z),
    "silu": lambda z: z * special.expit(z),
    "mish": lambda z: z * math.tanh(math.log1p(math.exp(z)) if z < 30 else z),
}


def _gauss(f, q: float) -> float:
    sd = math.sqrt(q)
    cuts = [-40 * sd, -8 * sd, -sd, 0.0, sd, 8 * sd, 40 * sd]
    g = lambda z: f(z) * math.exp(-z * z / (2 * q)) / math.sqrt(2 * math.pi * q)  # noqa: E731
    return sum(integrate.quad(g, a, b, epsabs=0, epsrel=1e-13, limit=200)[0] for a, b in zip(cuts[:-1], cuts[1:]))


def oracle_v(name: str, q: float) -> float:
    return _gauss(lambda z: PHI[name](z) ** 2, q)


def oracle_dv(name: str, q: float) -> float:
    return _gauss(lambda z: PHI[name](z) ** 2 * (z * z / q - 1) / (2 * q), q)


def oracle_roots(name: str, s: float, sigma_b2: float, lo: float, hi: float, n: int = 80) -> list[float]:
    g = lambda q: s * oracle_v(name, q) + sigma_b2 - q  # noqa: E731
    qs = np.linspace(lo, hi, n + 1)
    vals = [g(q) for q in qs]
    return [optimize.brentq(g, qs[i], qs[i + 1], xtol=1e-15) for i in range(n) if vals[i] * vals[i + 1] < 0]


def oracle_saddle(name: str, sigma_b2: float, lo: float, hi: float) -> tuple[float, float]:
    """(s, q) with F(q) = q and F'(q) = 1: σ_b² = q − V/V' on [lo, hi], s = 1/V'."""
    q = optimize.brentq(lambda x: x - oracle_v(name, x) / oracle_dv(name, x) - sigma_b2, lo, hi, xtol=1e-15)
    return 1.0 / oracle_dv(name, q), q


GELU = parse_activation("gelu")


def test_issue_example_lists_both_fixed_points_near_the_saddle_node():
    # gelu, σ_b² = 0.05, σ_w²·N = 2.416: both fixed points fall inside one cell of the 10-per-decade
    # grid; the grid alone listed only ∞.
    points = fixedpoints.fixed_points(GELU, 2.416, 0.05)
    finite = [p for p in points if 0 < p.q < math.inf]
    assert len(finite) == 2
    stable, unstable = finite
    ref = oracle_roots("gelu", 2.416, 0.05, 0.30, 0.34)
    assert len(ref) == 2
    assert stable.q == pytest.approx(ref[0], rel=1e-12) and stable.stable and stable.slope < 1
    assert unstable.q == pytest.approx(ref[1], rel=1e-12) and not unstable.stable and unstable.slope > 1
    assert stable.q == pytest.approx(0.318, abs=5e-4) and unstable.q == pytest.approx(0.327, abs=5e-4)
    assert points[-1].q == math.inf and points[-1].stable


def test_issue_example_attractor_from_a_small_input_and_the_saddle_node_jump():
    # from q_in = 1e-3, q¹ = 0.0524 climbs to the stable 0.318, χ₁ ≈ 0.90 (was 1.21, q* = ∞)
    assert fixedpoints.chi1(GELU, 2.416, 0.05, 1e-3) == pytest.approx(0.901, abs=1e-3)
    assert fixedpoints.q_fixed_point(GELU, 2.416, 0.05, 1e-3) == pytest.approx(0.3178111401765, rel=1e-11)
    s_ref, q_ref = oracle_saddle("gelu", 0.05, 0.2, 0.5)
    assert s_ref == pytest.approx(2.416062, abs=5e-7)
    (near,) = [p for p in fixedpoints.saddle_nodes(GELU, 0.05) if p.q < 10]
    assert near.sigma_w2_n == pytest.approx(s_ref, rel=1e-12) and near.q == pytest.approx(q_ref, rel=1e-9)
    assert near.pair_below
    crit = critical.critical_sigma_w2_n(GELU, 0.05, 1e-3)
    assert crit.kind == "jump" and crit.jump_at == pytest.approx(s_ref, rel=1e-10)  # was 2.415951
    assert "saddle-node" in crit.label


@pytest.mark.parametrize("name, sigma_b2, lo, hi", [("gelu", 0.05, 50, 300), ("silu", 0.05, 0.2, 1.0),
                                                    ("mish", 0.05, 0.3, 1.5), ("gelu", 0.1, 0.3, 3.0),
                                                    ("silu", 0.3, 1.0, 5.0)])
def test_saddle_nodes_match_the_oracle(name, sigma_b2, lo, hi):
    s_ref, q_ref = oracle_saddle(name, sigma_b2, lo, hi)
    found = [p for p in fixedpoints.saddle_nodes(parse_activation(name), sigma_b2) if lo < p.q < hi]
    assert len(found) == 1
    assert found[0].sigma_w2_n == pytest.approx(s_ref, rel=1e-11)
    assert found[0].q == pytest.approx(q_ref, rel=1e-8)  # a double root: q is ill-conditioned in σ_b²


@pytest.mark.parametrize("name", ["gelu", "silu", "mish"])
@pytest.mark.parametrize("offset", [1e-5, 1e-8])  # small: the upper pair of gelu reaches s = 2 = 1/G(∞)
def test_pair_found_just_inside_every_saddle_node(name, offset):
    act = parse_activation(name)
    for sn in fixedpoints.saddle_nodes(act, 0.05):
        offset = min(offset, 0.1 * abs(sn.sigma_w2_n / 2 - 1))  # stay on this side of s = 1/G(∞) = 2
        s = sn.sigma_w2_n * (1 - offset if sn.pair_below else 1 + offset)
        finite = [p.q for p in fixedpoints.fixed_points(act, s, 0.05) if 0 < p.q < math.inf]
        near = [q for q in finite if abs(math.log(q / sn.q)) < 0.5]
        assert len(near) == 2, (name, sn, finite)
        for q in near:  # genuine fixed points, by the oracle's V
            assert s * oracle_v(name, q) + 0.05 == pytest.approx(q, rel=1e-12)
        s_out = sn.sigma_w2_n * (1 + offset if sn.pair_below else 1 - offset)
        gone = [p.q for p in fixedpoints.fixed_points(act, s_out, 0.05)
                if 0 < p.q < math.inf and abs(math.log(p.q / sn.q)) < 0.5 * math.sqrt(offset)]
        assert gone == []


def test_at_the_saddle_node_the_double_point_is_reported_once():
    sn = [p for p in fixedpoints.saddle_nodes(GELU, 0.05) if p.q < 10][0]
    near = [p for p in fixedpoints.fixed_points(GELU, sn.sigma_w2_n, 0.05) if 0 < p.q < 10]
    # to rounding the pair has merged: one saddle-node, or two roots within √ε of each other
    assert 1 <= len(near) <= 2
    for p in near:
        assert p.q == pytest.approx(sn.q, rel=1e-6) and p.slope == pytest.approx(1.0, abs=1e-6)
    if len(near) == 1:
        assert near[0].saddle_node and not near[0].stable


def test_stationary_points_are_where_r_is_flat():
    which, q = fixedpoints._stationary_points(GELU, np.array([2.416, 2.0]), 0.05)
    assert len(q) >= 2
    for k, qs in zip(which, q):
        s = [2.416, 2.0][k]
        r = lambda x: math.log((s * oracle_v("gelu", x) + 0.05) / x)  # noqa: E731
        d = 1e-4  # central difference of r in ln q
        assert abs(r(qs * math.exp(d)) - r(qs * math.exp(-d))) / (2 * d) < 1e-7


def test_tanh_and_homogeneous_have_no_saddle_nodes():
    assert fixedpoints.saddle_nodes(parse_activation("tanh"), 0.05) == ()
    assert fixedpoints.saddle_nodes(parse_activation("relu"), 0.05) == ()
    assert fixedpoints.saddle_nodes(GELU, 0.0) == ()  # rounding noise at large q, s = 2, is not one


def test_report_lists_saddle_nodes_and_flags():
    rep = theory.report(GELU, sigma_b2=0.05, sigma_w2_n=2.416, depth=2)
    assert [round(p["q"], 3) for p in rep["fixed_points"]] == [0.318, 0.327, math.inf]
    assert all("saddle_node" in p for p in rep["fixed_points"])
    assert any(abs(p["sigma_w2_n"] - 2.416062) < 1e-6 for p in rep["saddle_nodes"])
