"""Mean-field theory: fixed points, χ₁, criticality and trajectories against brute force and known values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hevar.meanfield import gaussian
from hevar.meanfield import theory
from hevar.meanfield.activations import FAMILIES, SELU_ALPHA, SELU_LAMBDA, parse_activation
from hevar.errors import UsageError

ALL = list(FAMILIES)
NON_HOMOGENEOUS = [a for a in ALL if not parse_activation(a).homogeneous]


def brute_q_star(act, s, sigma_b2, q_in=1.0, steps=5000):
    """Iterate the q-map from q¹ = s·q_in + σ_b² the obvious way (no root finding)."""
    q = s * q_in + sigma_b2
    for _ in range(steps):
        q = s * float(gaussian.expect(lambda z: act.phi(z) ** 2, q, act.kinks)) + sigma_b2
        if q > 1e30:  # beyond every finite fixed point of the built-ins (all below 1e14)
            return math.inf
        if q < 1e-250:
            return 0.0
    return q


# --- the numbers the issue asks for ----------------------------------------------------------------


@pytest.mark.parametrize("spec, sigma_b2, expected, tol, kind", [
    ("tanh", 0.05, 1.7610, 5e-4, "finite q*"),  # Schoenholz et al. 2017
    ("tanh", 0.0, 1.0, 1e-12, "q*->0"),
    ("relu", 0.0, 2.0, 1e-15, "homogeneous"),
    ("relu", 0.3, 2.0, 1e-15, "homogeneous"),
    ("leaky_relu:0.2", 0.0, 1.9231, 5e-5, "homogeneous"),
    ("linear", 0.05, 1.0, 1e-15, "homogeneous"),
    ("erf", 0.0, math.pi / 4, 1e-12, "q*->0"),
    ("elu", 0.0, 1.0, 1e-12, "q*->0"),
    ("selu", 0.0, 2 / (SELU_LAMBDA ** 2 * (1 + SELU_ALPHA ** 2)), 1e-12, "q*->0"),
    ("softplus", 0.0, 2.0, 1e-12, "q*->inf"),
    ("softplus", 0.05, 2.0, 1e-12, "q*->inf"),
])
def test_known_critical_values(spec, sigma_b2, expected, tol, kind):
    crit = theory.critical_sigma_w2_n(parse_activation(spec), sigma_b2)
    assert crit.kind == kind
    assert crit.sigma_w2_n == pytest.approx(expected, abs=tol)


def test_leaky_relu_exact_value():
    assert theory.critical_sigma_w2_n(parse_activation("leaky_relu:0.2"), 0.0).sigma_w2_n == pytest.approx(2 / 1.04, rel=1e-14)


# What each activation does (computed once, then each label checked against the dynamics below).
EXPECTED_KINDS = {
    0.0: dict(relu="homogeneous", leaky_relu="homogeneous", linear="homogeneous", tanh="q*->0", erf="q*->0", erf_scaled="q*->0",
              sigmoid="finite q*", softplus="q*->inf", elu="q*->0", selu="q*->0", gelu="jump", silu="jump",
              mish="jump"),
    0.05: dict(relu="homogeneous", leaky_relu="homogeneous", linear="homogeneous", tanh="finite q*",
               erf="finite q*", erf_scaled="finite q*", sigmoid="finite q*", softplus="q*->inf", elu="finite q*", selu="finite q*",
               gelu="jump", silu="jump", mish="jump"),
}


@pytest.mark.parametrize("sigma_b2", [0.0, 0.05])
@pytest.mark.parametrize("spec", ALL)
def test_critical_labels_are_true(spec, sigma_b2):
    act = parse_activation(spec)
    crit = theory.critical_sigma_w2_n(act, sigma_b2)
    assert crit.kind == EXPECTED_KINDS[sigma_b2][spec]
    assert crit.label
    lim = theory.limits(act)
    if crit.kind == "homogeneous":
        assert act.homogeneous
        assert theory.chi1(act, crit.sigma_w2_n * 1.001, sigma_b2) > 1 > theory.chi1(act, crit.sigma_w2_n * 0.999, sigma_b2)
        return
    if crit.kind == "jump":
        assert math.isnan(crit.sigma_w2_n)
        s = crit.jump_at
        below, above = theory.chi1(act, s * (1 - 1e-6), sigma_b2), theory.chi1(act, s * (1 + 1e-6), sigma_b2)
        assert below < 0.99 and above > 1.01  # no σ_w²·N gives χ₁ = 1 at the fixed point reached
        # the jump is a change of basin: brute force lands on different attractors either side
        assert brute_q_star(act, s * (1 - 1e-4), sigma_b2) < 1
        assert brute_q_star(act, s * (1 + 1e-4), sigma_b2) == math.inf
        return
    s = crit.sigma_w2_n
    c_lo, q_lo = theory.chi1(act, s * 0.999, sigma_b2), theory.q_fixed_point(act, s * 0.999, sigma_b2)
    c_hi, q_hi = theory.chi1(act, s * 1.001, sigma_b2), theory.q_fixed_point(act, s * 1.001, sigma_b2)
    assert c_lo < 1 < c_hi
    assert abs(crit.chi1_above - crit.chi1_below) < 1e-3  # continuous crossing (at s·(1 ± 1e-10))
    if crit.kind == "q*->0":
        assert sigma_b2 == 0 and lim.phi0 == 0
        assert s == pytest.approx(1 / lim.g0, rel=1e-14)
        assert q_lo == 0 and 0 < q_hi < 0.05
        assert brute_q_star(act, s * 0.9, sigma_b2) < 1e-100
    elif crit.kind == "q*->inf":
        assert s == pytest.approx(1 / lim.g_inf, rel=1e-14)
        assert 10 < q_lo < math.inf and q_hi == math.inf
    else:  # finite q*
        assert 0 < crit.q_star < math.inf
        assert theory.chi1(act, s, sigma_b2) == pytest.approx(1, abs=1e-10)
        stable = [p for p in theory.fixed_points(act, s, sigma_b2) if p.q == pytest.approx(crit.q_star, rel=1e-9)]
        assert stable and stable[0].stable


def test_tanh_criticality_by_brute_force_iteration():
    act = parse_activation("tanh")
    crit = theory.critical_sigma_w2_n(act, 0.05)
    q = brute_q_star(act, crit.sigma_w2_n, 0.05, steps=400)
    assert q == pytest.approx(crit.q_star, rel=1e-12)
    assert crit.sigma_w2_n * float(gaussian.expect(lambda z: act.dphi(z) ** 2, q)) == pytest.approx(1, abs=1e-10)


# --- fixed points ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, s, sigma_b2", [
    ("tanh", 1.2, 0.0), ("tanh", 0.9, 0.0), ("tanh", 2.5, 0.3), ("erf", 1.5, 0.05), ("sigmoid", 4.0, 0.0),
    ("softplus", 1.9, 0.05), ("elu", 1.5, 0.0), ("gelu", 2.15, 0.0), ("gelu", 2.16, 0.0),
    ("mish", 2.05, 0.05), ("mish", 2.06, 0.05), ("silu", 1.0, 0.1), ("relu", 1.5, 0.05), ("relu", 2.5, 0.0),
])
def test_fixed_point_reached_matches_brute_force(spec, s, sigma_b2):
    act = parse_activation(spec)
    expected = brute_q_star(act, s, sigma_b2)
    got = theory.q_fixed_point(act, s, sigma_b2)
    if expected in (0.0, math.inf):
        assert got == expected
    else:
        assert got == pytest.approx(expected, rel=1e-11)


def test_selu_self_normalizing_fixed_point():
    """Klambauer et al. chose λ, α so that q = 1 is the fixed point at σ_w²·N = 1, σ_b² = 0."""
    act = parse_activation("selu")
    assert theory.q_fixed_point(act, 1.0, 0.0) == pytest.approx(1.0, rel=1e-13)
    assert float(theory.V(act, 1.0)) == pytest.approx(1.0, rel=1e-14)


def test_all_fixed_points_and_stability():
    act = parse_activation("gelu")
    points = theory.fixed_points(act, 3.0, 0.0)
    assert [p.q for p in points][0] == 0.0 and points[-1].q == math.inf
    zero, middle, infinity = points
    assert zero.stable and zero.slope == pytest.approx(0.75) and zero.chi1 == pytest.approx(0.75)
    assert not middle.stable and middle.slope > 1
    assert infinity.stable and infinity.chi1 == pytest.approx(1.5)
    q = middle.q
    assert float(theory.qmap(act, q, 3.0, 0.0)) == pytest.approx(q, rel=1e-13)
    h = 1e-6 * q
    fd = (float(theory.qmap(act, q + h, 3.0, 0.0)) - float(theory.qmap(act, q - h, 3.0, 0.0))) / (2 * h)
    assert middle.slope == pytest.approx(fd, rel=1e-7)
    assert middle.chi1 == pytest.approx(3.0 * float(theory.G(act, q)), rel=1e-14)
    # tanh with bias: one stable fixed point and nothing else
    (only,) = theory.fixed_points(parse_activation("tanh"), 1.5, 0.05)
    assert only.stable and 0 < only.q < 1


@pytest.mark.parametrize("spec, sigma_b2, pushed_up", [
    ("gelu", 0.0, False), ("silu", 0.0, False), ("mish", 0.0, False), ("softplus", 0.0, True),
    ("gelu", 0.05, True), ("silu", 0.05, True), ("mish", 0.05, True), ("softplus", 0.05, True),
])
def test_marginal_infinity_makes_up_no_fixed_points(spec, sigma_b2, pushed_up):
    """At s = 1/G(∞) = 2, F(q)/q → 1: r = ln(F/q) sinks into rounding for large q and used to flip
    sign at random, listing ~40 'fixed points' in [5e9, 1e14]. It is one marginal q* = ∞."""
    act = parse_activation(spec)
    s = 1 / theory.limits(act).g_inf
    assert s == 2.0
    points = theory.fixed_points(act, s, sigma_b2)
    assert all(p.q < 1e6 or p.q == math.inf for p in points), [p.q for p in points]
    *finite, infinity = points
    assert len(finite) <= 2
    assert infinity.q == math.inf and infinity.marginal and infinity.chi1 == pytest.approx(1, abs=1e-15)
    assert infinity.stable == pushed_up  # the sign of r where it is still resolved, below the band
    assert not any(p.marginal for p in finite)
    rep = theory.report(act, sigma_b2=sigma_b2, sigma_w2_n=s, depth=2)  # what --json prints
    assert [(p["q"], p["stable"], p["marginal"]) for p in rep["fixed_points"]] == [
        (p.q, p.stable, p.marginal) for p in points]
    assert "e+" not in rep["critical_label"]  # no made-up points in the label's "unstable fixed point(s)"
    if pushed_up and sigma_b2 == 0:  # softplus: V(q) > q/2, so q¹ = 2 climbs for ever
        assert theory.q_fixed_point(act, s, sigma_b2) == math.inf
        assert theory.chi1(act, s, sigma_b2) == 1.0


def _marginal_and_critical_s(spec, sigma_b2):
    act = parse_activation(spec)
    lim, crit = theory.limits(act), theory.critical_sigma_w2_n(act, sigma_b2)
    ss = [0.5, 1.0, 1.5, 2.5, 3.0, 20.0, 103.0]
    ss += [1 / lim.g0] if lim.g0 > 0 else []
    ss += [f / lim.g_inf for f in (1, 1 - 1e-9, 1 + 1e-9)] if lim.g_inf > 0 else []
    ss += [x for x in (crit.sigma_w2_n, crit.jump_at) if math.isfinite(x)]
    return [(spec, sigma_b2, s) for s in sorted(set(ss))]


@pytest.mark.parametrize("spec, sigma_b2, s", [case for spec in NON_HOMOGENEOUS for b in (0.0, 0.05)
                                                for case in _marginal_and_critical_s(spec, b)])
def test_every_listed_fixed_point_is_genuine(spec, sigma_b2, s):
    """Each finite q* solves F(q*) = q*, and r = ln(F/q) changes sign across it well above rounding,
    in the direction its stability says; along q, stable and unstable points alternate."""
    act = parse_activation(spec)
    points = theory.fixed_points(act, s, sigma_b2)
    for p in points:
        if not 0 < p.q < math.inf:
            continue
        assert abs(float(theory.qmap(act, p.q, s, sigma_b2)) - p.q) <= 1e-13 * p.q
        below, above = (math.log(float(theory.qmap(act, q, s, sigma_b2)) / q) for q in (p.q * 0.999, p.q * 1.001))
        assert min(abs(below), abs(above)) > 1e-13, (p, below, above)
        assert (below > 0 > above) if p.stable else (below < 0 < above), (p, below, above)
    finite = [p for p in points if p.q < math.inf and p.slope != 1]
    assert all(a.stable != b.stable for a, b in zip(finite[:-1], finite[1:])), points
    assert [p.q for p in points] == sorted(p.q for p in points)


@pytest.mark.parametrize("spec, sigma_b2, expected, kind", [
    ("sigmoid", 0.0, 103.008, "finite q*"), ("sigmoid", 0.05, 103.128, "finite q*"),
    ("erf", 0.05, 1.37584, "finite q*"), ("elu", 0.05, 1.53372, "finite q*"), ("selu", 0.05, 0.901766, "finite q*"),
    ("gelu", 0.0, 2.155, "jump"), ("silu", 0.0, 2.430, "jump"), ("mish", 0.0, 2.107, "jump"),
    ("gelu", 0.05, 2.105, "jump"), ("silu", 0.05, 2.380, "jump"), ("mish", 0.05, 2.057, "jump"),
])
def test_readme_table_values(spec, sigma_b2, expected, kind):
    crit = theory.critical_sigma_w2_n(parse_activation(spec), sigma_b2)
    assert crit.kind == kind
    value = crit.jump_at if kind == "jump" else crit.sigma_w2_n
    assert value == pytest.approx(expected, rel=5e-6) if kind != "jump" else value == pytest.approx(expected, abs=5e-4)


@pytest.mark.parametrize("spec", NON_HOMOGENEOUS)
def test_dV_matches_finite_difference(spec):
    act = parse_activation(spec)
    q = np.array([0.01, 0.3, 1.0, 7.0, 300.0])
    h = 1e-5 * q
    fd = (theory.V(act, q + h) - theory.V(act, q - h)) / (2 * h)
    np.testing.assert_allclose(theory.dV(act, q), fd, rtol=1e-7)


@pytest.mark.parametrize("spec", ALL)
def test_V_is_nondecreasing(spec):
    """The basin logic in q_fixed_point assumes a monotone q-map."""
    act = parse_activation(spec)
    v = theory.V(act, np.geomspace(1e-12, 1e12, 500))
    assert np.all(np.diff(v) >= -1e-15 * v[1:])


def test_moment_limits_at_zero_and_infinity():
    relu, tanh, sigmoid, selu = (parse_activation(a) for a in ("relu", "tanh", "sigmoid", "selu"))
    assert float(theory.G(relu, 0.0)) == 0.5 and float(theory.G(relu, np.inf)) == 0.5
    assert float(theory.G(tanh, 0.0)) == 1.0 and float(theory.G(tanh, np.inf)) == 0.0
    assert float(theory.V(tanh, np.inf)) == 1.0 and float(theory.V(sigmoid, np.inf)) == 0.5
    assert float(theory.V(sigmoid, 0.0)) == 0.25
    assert theory.limits(selu).g0 == pytest.approx(SELU_LAMBDA ** 2 * (1 + SELU_ALPHA ** 2) / 2, rel=1e-15)
    assert float(theory.G(selu, 1e-12)) == pytest.approx(theory.limits(selu).g0, rel=1e-5)


def test_monte_carlo_agrees_with_moments():
    """An oracle that shares nothing with the quadrature: 400k Gaussian samples, 5 standard errors."""
    rng = np.random.default_rng(20170101)
    u = rng.standard_normal(400_000)
    for spec, q in (("gelu", 2.0), ("mish", 0.7), ("tanh", 30.0)):
        act = parse_activation(spec)
        for moment, f in ((theory.V, act.phi), (theory.G, act.dphi)):
            samples = f(math.sqrt(q) * u) ** 2
            se = samples.std() / math.sqrt(len(u))
            assert abs(samples.mean() - float(moment(act, q))) < 5 * se


# --- χ₁ and trajectories -------------------------------------------------------------------------


def test_chi1_curve_matches_pointwise_chi1():
    for spec, sigma_b2 in (("tanh", 0.05), ("gelu", 0.0), ("softplus", 0.0), ("relu", 0.1)):
        act = parse_activation(spec)
        s = np.linspace(0.5, 4.0, 15)
        chis, q_star = theory.chi1_curve(act, s, sigma_b2)
        assert chis.shape == q_star.shape == (15,)
        np.testing.assert_allclose(chis, [theory.chi1(act, x, sigma_b2) for x in s], rtol=1e-12)
        np.testing.assert_allclose(q_star, [theory.q_fixed_point(act, x, sigma_b2) for x in s], rtol=1e-12)
    chis, _ = theory.chi1_curve(parse_activation("relu"), np.array([1.0, 2.0, 3.0]), 0.0)
    np.testing.assert_array_equal(chis, [0.5, 1.0, 1.5])


def naive_log_q(act, s_in, sigma_b2, q_in=1.0):
    q = s_in[0] * q_in + sigma_b2
    out = [q]
    for s in s_in[1:]:
        q = s * float(gaussian.expect(lambda z: act.phi(z) ** 2, q, act.kinks)) + sigma_b2
        out.append(q)
    return np.log(out)


@pytest.mark.parametrize("spec, s_in, sigma_b2", [
    ("tanh", np.full(300, 1.5), 0.05),  # settles: exercises the early exit
    ("tanh", np.full(120, 1.0), 0.0),  # critical, q ~ 1/l: never settles
    ("softplus", np.r_[np.full(40, 1.5), np.full(40, 1.8)], 0.0),  # s changes after settling
    ("mish", np.linspace(0.5, 2.5, 60), 0.1),
])
def test_log_q_trajectory_matches_naive_iteration(spec, s_in, sigma_b2):
    act = parse_activation(spec)
    np.testing.assert_allclose(theory.log_q_trajectory(act, s_in, sigma_b2), naive_log_q(act, s_in, sigma_b2),
                               rtol=1e-12, atol=1e-12)


def test_trajectory_overflow_and_homogeneous_logs():
    gelu = parse_activation("gelu")
    log_q = theory.log_q_trajectory(gelu, np.full(2000, 3.0), 0.0)
    assert np.isfinite(log_q[:100]).all() and log_q[-1] == np.inf
    relu = parse_activation("relu")
    np.testing.assert_allclose(theory.log_q_trajectory(relu, np.full(5000, 2.0), 0.0, q_in=0.5), 0.0, atol=1e-12)
    log_q = theory.log_q_trajectory(relu, np.full(5000, 4.0), 0.0)
    assert log_q[-1] == pytest.approx(np.log(4.0) + 4999 * np.log(2.0), rel=1e-12)  # no overflow in logs


def test_backward_recursion_and_gradient_norm():
    act = parse_activation("tanh")
    s = np.full(30, 1.5)
    log_q = theory.log_q_trajectory(act, s, 0.05)
    log_qt = theory.log_q_tilde_trajectory(act, s, log_q, 0.7)
    assert log_qt[-1] == 0.7
    np.testing.assert_allclose(np.diff(log_qt), -np.log(1.5 * theory.G(act, np.exp(log_q[:-1]))), rtol=1e-13)
    widths = np.array([50] + [100] * 30)
    log_gn = theory.log_grad_norm2(act, widths, log_q, log_qt, q_in=2.0)
    assert log_gn[0] == pytest.approx(np.log(100 * 50 * 2.0) + log_qt[0], rel=1e-14)
    assert log_gn[5] == pytest.approx(np.log(100 * 100) + log_qt[5] + np.log(theory.V(act, np.exp(log_q[4]))), rel=1e-14)


def test_depth_scale_and_phase():
    assert theory.depth_scale(math.exp(-0.1)) == pytest.approx(10.0)
    assert theory.depth_scale(math.exp(0.05)) == pytest.approx(-20.0)
    assert theory.depth_scale(1.0) == math.inf and theory.depth_scale(0.0) == 0.0
    assert [theory.phase(c) for c in (0.5, 1.0, 1 + 1e-9, 1.5)] == ["ordered", "critical", "critical", "chaotic"]


def test_trajectory_speed():
    """The sweep runs trajectories per configuration; a depth-1000 one that never settles must be quick."""
    import time

    act = parse_activation("tanh")
    start = time.perf_counter()
    theory.log_q_trajectory(act, np.full(1000, 1.0), 0.0)
    assert time.perf_counter() - start < 3.0  # ≈ 0.05 s measured on 2 cores


# --- the report ------------------------------------------------------------------------------------

REPORT_KEYS = {
    "activation", "sigma_b2", "q_in", "critical_sigma_w2_n", "gain", "critical_kind", "critical_label",
    "critical_q_star", "critical_chi1_below", "critical_chi1_above", "critical_jump_at", "sigma_w2_n", "q_star",
    "input", "q_in_effective", "chi1", "xi", "phase", "fixed_points", "saddle_nodes", "critical_points", "doubly_critical", "criteria", "warnings", "critical_sigma_w2_n_error",
    "depth", "layers", "c_star", "chi_c", "xi_c", "xi_q", "c_note",  # pairs of inputs at the σ_w²·N evaluated (issue 14)
}


def test_report_at_the_critical_point():
    rep = theory.report(parse_activation("tanh"), sigma_b2=0.05, depth=6)
    assert set(rep) == REPORT_KEYS
    assert rep["critical_sigma_w2_n"] == pytest.approx(1.7610, abs=5e-4)
    assert rep["gain"] == pytest.approx(math.sqrt(rep["critical_sigma_w2_n"]))
    assert rep["phase"] == "critical" and abs(rep["xi"]) > 1e9 and rep["chi1"] == pytest.approx(1, abs=1e-10)
    layers = rep["layers"]
    assert [row["layer"] for row in layers] == list(range(1, 7))
    assert layers[0]["q"] == pytest.approx(rep["sigma_w2_n"] * 1.0 + 0.05)
    assert layers[-1]["q_tilde"] == 1.0
    for upper, lower in zip(layers[1:], layers[:-1]):
        assert lower["q_tilde"] == pytest.approx(lower["chi"] * upper["q_tilde"], rel=1e-13)
    json.dumps(rep)  # plain Python types throughout


def test_report_off_critical_and_without_a_critical_point():
    rep = theory.report(parse_activation("relu"), sigma_b2=0.0, sigma_w2_n=1.5, depth=3)
    assert rep["phase"] == "ordered" and rep["chi1"] == 0.75
    assert rep["xi"] == pytest.approx(-1 / math.log(0.75))
    assert rep["critical_sigma_w2_n"] == 2.0 and rep["critical_kind"] == "homogeneous"
    assert rep["q_star"] == 0.0
    rep = theory.report(parse_activation("gelu"), sigma_b2=0.0, depth=3)
    assert rep["critical_kind"] == "jump" and math.isnan(rep["critical_sigma_w2_n"])
    assert rep["sigma_w2_n"] is None and rep["layers"] == [] and rep["critical_jump_at"] > 2
    rep = theory.report(parse_activation("gelu"), sigma_b2=0.0, sigma_w2_n=3.0, depth=3)
    assert rep["phase"] == "chaotic" and len(rep["fixed_points"]) == 3


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(depth=0), "The 'depth' parameter must be an int in the range [1, inf). Got 0 instead."),
    (dict(sigma_b2=-1.0), "The 'sigma_b2' parameter must be a float in the range [0, inf). Got -1 instead."),
    (dict(sigma_w2_n=0.0), "The 'sigma_w2' parameter must be a float in the range (0, inf). Got 0 instead."),
])
def test_report_rejects_bad_arguments(kwargs, fragment):
    with pytest.raises(UsageError) as info:
        theory.report(parse_activation("tanh"), **kwargs)
    assert str(info.value) == fragment


# --- the two commands (thin wrappers over report and list_activations) ---------------------------


def test_cli_theory_json_and_table():
    from typer.testing import CliRunner

    from hevar.views.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["theory", "--act", "tanh", "--sigma-b2", "0.05", "--depth", "4", "--json"])
    assert result.exit_code == 0, result.output
    rep = json.loads(result.output)
    assert set(rep) == REPORT_KEYS
    assert rep["critical_sigma_w2_n"] == pytest.approx(1.7610, abs=5e-4)
    assert rep["xi"] in ("inf", "-inf") or abs(rep["xi"]) > 1e9
    assert rep["critical_jump_at"] is None and len(rep["layers"]) == 4
    result = runner.invoke(app, ["theory", "--act", "relu", "--sigma-w2", "1.5", "--depth", "3"])
    assert result.exit_code == 0, result.output
    assert "ordered" in result.output and "homogeneous" in result.output and "0.75" in result.output
    result = runner.invoke(app, ["theory", "--act", "gelu"])
    assert result.exit_code == 0 and "jumps" in result.output and "--sigma-w2" in result.output


def test_cli_theory_usage_errors_and_listing():
    from typer.testing import CliRunner

    from hevar.views.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["theory", "--act", "rleu"])
    assert result.exit_code == 2 and "Did you mean 'relu'?" in result.output
    result = runner.invoke(app, ["theory", "--act", "tanh", "--depth", "0"])
    assert result.exit_code == 2 and "The 'depth' parameter must be an int" in result.output
    result = runner.invoke(app, ["activations"])
    assert result.exit_code == 0
    for name in FAMILIES:
        assert name in result.output
    assert "swish" in result.output and "MODULE:FUNCTION" in result.output
