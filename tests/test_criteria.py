"""The three gain criteria and the depth recommendation, against closed forms, an independent
QUADPACK oracle written here, and NF-Nets' published γ table."""

from __future__ import annotations

import math

import pytest
from scipy import integrate, special

from hevar.meanfield import criteria, gains
from hevar.meanfield.activations import SELU_ALPHA, SELU_LAMBDA, parse_activation

PHI = {
    "relu": lambda z: max(z, 0.0),
    "tanh": math.tanh,
    "gelu": lambda z: z * special.ndtr(z),
    "silu": lambda z: z * special.expit(z),
    "sigmoid": special.expit,
    "softplus": lambda z: math.log1p(math.exp(-abs(z))) + max(z, 0.0),
    "elu:1": lambda z: z if z > 0 else math.expm1(z),
    "selu": lambda z: SELU_LAMBDA * (z if z > 0 else SELU_ALPHA * math.expm1(z)),
    "leaky_relu:0.01": lambda z: z if z > 0 else 0.01 * z,
}


def _unit_gauss(f):
    g = lambda u: f(u) * math.exp(-u * u / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cuts = [-40, -8, -1, 0, 1, 8, 40]
    return sum(integrate.quad(g, a, b, epsabs=0, epsrel=1e-13, limit=200)[0] for a, b in zip(cuts[:-1], cuts[1:]))


def test_second_moment_and_variance_closed_forms_for_relu():
    relu = parse_activation("relu")
    assert criteria.second_moment_gain(relu) == pytest.approx(2.0, rel=1e-14)
    gamma, s = criteria.variance_gain(relu)
    assert gamma == pytest.approx(1 / math.sqrt(0.5 - 1 / (2 * math.pi)), rel=1e-13)  # 1.7128585
    assert s == pytest.approx(gamma ** 2, rel=1e-14)


@pytest.mark.parametrize("name", sorted(set(PHI) - {"relu"}))
def test_gamma_against_the_oracle_and_the_published_monte_carlo_table(name):
    act = parse_activation(name)
    m1, m2 = _unit_gauss(PHI[name]), _unit_gauss(lambda u: PHI[name](u) ** 2)
    gamma, _ = criteria.variance_gain(act)
    assert gamma == pytest.approx(1 / math.sqrt(m2 - m1 * m1), rel=1e-11)
    assert criteria.second_moment_gain(act) == pytest.approx(1 / m2, rel=1e-11)
    # deepmind-research/nfnets (Brock et al. 2021) γ, estimated by Monte Carlo: 0.03–0.09 % high
    rel = criteria.NFNET_GAMMA[name] / gamma - 1
    assert 2.5e-4 < rel < 9e-4, rel


def test_published_relu_gamma_is_high_by_0_064_percent():
    gamma, _ = criteria.variance_gain(parse_activation("relu"))
    assert criteria.NFNET_GAMMA["relu"] / gamma - 1 == pytest.approx(6.42e-4, abs=2e-6)


def test_post_activation_statistics_relu_closed_form():
    post = criteria.post_activation(parse_activation("relu"), 2.0, 0.0, q_in=1.0)
    q = post.q_star  # s·V(1) = 1: every q is fixed, q* = q¹ = 2
    assert q == pytest.approx(2.0)
    assert post.mean == pytest.approx(math.sqrt(q / (2 * math.pi)), rel=1e-13)
    assert post.var == pytest.approx(q / 2 - q / (2 * math.pi), rel=1e-13)
    assert post.rms == pytest.approx(math.sqrt(q / 2.0), rel=1e-13)  # √(q*/σ_w²N) = 1


def test_post_activation_rms_is_root_of_q_star_over_s_without_bias():
    act = parse_activation("tanh")
    post = criteria.post_activation(act, 1.5, 0.0)
    assert post.rms == pytest.approx(math.sqrt(post.q_star / 1.5), rel=1e-12)
    assert post.mean == pytest.approx(0.0, abs=1e-15)  # odd φ


def test_relu_depth_gain_and_band_closed_form():
    rec = criteria.depth_gain(parse_activation("relu"), 0.0, 50)
    # ln q̃¹/q̃ᴸ = 49·ln(s/2): 1 at s = 2, within a factor 2 for s in 2·2^(±1/49)
    assert rec.sigma_w2_n == pytest.approx(2.0, rel=1e-12)
    assert rec.band_lo == pytest.approx(2 * 2 ** (-1 / 49), rel=1e-6)
    assert rec.band_hi == pytest.approx(2 * 2 ** (1 / 49), rel=1e-6)
    assert rec.log10_q_drift == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", ["tanh", "erf", "selu"])
def test_depth_gain_is_a_root_of_the_gradient_factor_with_a_factor_two_band(name):
    act = parse_activation(name)
    rec = criteria.depth_gain(act, 0.0, 30)
    assert abs(gains.log_gradient_factor(act, rec.sigma_w2_n, 0.0, 30)) < 1e-9
    for end in (rec.band_lo, rec.band_hi):
        assert abs(gains.log_gradient_factor(act, end, 0.0, 30)) == pytest.approx(math.log(2), abs=1e-5)
    assert rec.band_lo < rec.sigma_w2_n < rec.band_hi


@pytest.mark.parametrize("name", ["gelu", "silu", "mish", "softplus", "selu", "tanh"])
def test_every_activation_gets_a_stable_row_at_depth_50(name):
    entry = gains.activation_gains(parse_activation(name), 0.0, 50)
    stable = [r for r in entry.rows if r.verdict == "stable"]
    assert stable, [(r.scheme, r.verdict) for r in entry.rows]
    depth_row = [r for r in entry.rows if r.scheme == "hevar.depth"]
    assert depth_row and depth_row[0].verdict == "stable"
    assert depth_row[0].factor == pytest.approx(1.0, abs=1e-6)


def test_criteria_side_by_side_keys_and_stability():
    silu = parse_activation("silu")
    keys = [c.key for c in criteria.criteria(silu, 0.04, 20, with_depth=False)]
    assert keys == ["second_moment", "variance", "critical"]
    crit = criteria.criteria(silu, 0.04, 20, with_depth=False)[2]
    assert crit.fixed_point_stable is False and "unstable" in crit.note
    tanh_crit = criteria.criteria(parse_activation("tanh"), 0.04, 20, with_depth=False)[2]
    assert tanh_crit.fixed_point_stable is True and tanh_crit.sigma_w2_n == pytest.approx(1.7008, abs=1e-4)
