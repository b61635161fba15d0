"""The whole critical line χ₁ = 1 (stable and unstable branches) and the doubly critical point,
against an independent QUADPACK oracle (written here, apart from hevar's quadrature) and closed forms."""

from __future__ import annotations

import csv
import math

import pytest
from scipy import integrate, optimize, special
from typer.testing import CliRunner

from hevar.meanfield import critical, fixedpoints
from hevar.meanfield.activations import parse_activation
from hevar.views.cli import app


def _sig(z):
    return special.expit(z)


PHI = {
    "silu": (lambda z: z * _sig(z), lambda z: _sig(z) * (1 + z * (1 - _sig(z)))),
    "gelu": (lambda z: z * special.ndtr(z), lambda z: special.ndtr(z) + z * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)),
    "tanh": (math.tanh, lambda z: 1 / math.cosh(z) ** 2),
}


def _gauss(f, q):
    sd = math.sqrt(q)
    cuts = [-40 * sd, -8 * sd, -sd, 0.0, sd, 8 * sd, 40 * sd]
    g = lambda z: f(z) * math.exp(-z * z / (2 * q)) / math.sqrt(2 * math.pi * q)  # noqa: E731
    return sum(integrate.quad(g, a, b, epsabs=0, epsrel=1e-13, limit=200)[0] for a, b in zip(cuts[:-1], cuts[1:]))


def oracle(name, q):
    """(V, G, V') at q by adaptive quadrature; V' as E[φ²(z²/q − 1)]/(2q)."""
    phi, dphi = PHI[name]
    return (_gauss(lambda z: phi(z) ** 2, q), _gauss(lambda z: dphi(z) ** 2, q),
            _gauss(lambda z: phi(z) ** 2 * (z * z / q - 1) / (2 * q), q))


def oracle_critical(name, sigma_b2, lo, hi):
    """(s, q*, slope) with q* − V/G = σ_b² on [lo, hi]."""
    q = optimize.brentq(lambda x: x - oracle(name, x)[0] / oracle(name, x)[1] - sigma_b2, lo, hi, xtol=1e-15)
    v, g, dv = oracle(name, q)
    return 1 / g, q, dv / g


@pytest.mark.parametrize("name, sigma_b2, lo, hi, stable", [
    ("silu", 0.04, 0.3, 2.0, False),   # σ_b = 0.2: χ₁ = 1 only at an unstable fixed point
    ("gelu", 0.04, 0.3, 2.0, False),
    ("gelu", 0.25, 2.0, 20.0, True),   # above the doubly critical σ_b² = 0.1729 the branch is stable
    ("tanh", 0.04, 0.2, 2.0, True),
])
def test_critical_points_match_the_oracle(name, sigma_b2, lo, hi, stable):
    s_ref, q_ref, slope_ref = oracle_critical(name, sigma_b2, lo, hi)
    (p,) = [p for p in critical.critical_points(parse_activation(name), sigma_b2) if lo < p.q_star < hi]
    assert p.sigma_w2_n == pytest.approx(s_ref, rel=1e-11)
    assert p.q_star == pytest.approx(q_ref, rel=1e-10)
    assert p.slope == pytest.approx(slope_ref, rel=1e-10)
    assert p.stable is stable and (slope_ref < 1) is stable


def test_unstable_critical_point_is_a_fixed_point_with_chi1_one():
    act = parse_activation("silu")
    (p,) = critical.critical_points(act, 0.04)
    listed = [f for f in fixedpoints.fixed_points(act, p.sigma_w2_n, 0.04) if 0 < f.q < math.inf]
    match = [f for f in listed if f.q == pytest.approx(p.q_star, rel=1e-9)]
    assert len(match) == 1 and not match[0].stable and match[0].chi1 == pytest.approx(1, abs=1e-12)
    # a network started at q_in = 1 does not settle there: the attractor-based answer is a jump
    assert critical.critical_sigma_w2_n(act, 0.04).kind == "jump"


def test_stable_branch_agrees_with_the_attractor_answer():
    for name, b in (("tanh", 0.04), ("gelu", 0.25), ("tanh", 0.5)):
        act = parse_activation(name)
        stable = [p for p in critical.critical_points(act, b) if p.stable]
        crit = critical.critical_sigma_w2_n(act, b)
        assert crit.kind == "finite q*"
        assert stable[0].sigma_w2_n == pytest.approx(crit.sigma_w2_n, rel=1e-9)
        assert stable[0].q_star == pytest.approx(crit.q_star, rel=1e-7)


def test_critical_line_is_parametric_and_sorted_by_stability():
    act = parse_activation("gelu")
    line = critical.critical_line(act)
    assert len(line["q_star"]) > 100 and (line["sigma_b2"] >= 0).all()
    # stable exactly where the slope V'/G < 1, and the branches change at the doubly critical q*
    (dc,) = critical.doubly_critical(act)
    assert ((line["q_star"] > dc.q_star) == line["stable"]).all()


def test_gelu_doubly_critical_point_closed_form():
    # gelu: φφ'' = zΦ(z)·ϕ(z)(2 − z²); E[φφ''] = 0 reduces to q² − 3q − 2 = 0, q* = (3 + √17)/2
    (dc,) = critical.doubly_critical(parse_activation("gelu"))
    assert dc.q_star == pytest.approx((3 + math.sqrt(17)) / 2, rel=1e-12)
    v, g, dv = oracle("gelu", dc.q_star)
    assert dv == pytest.approx(g, rel=1e-11)
    assert dc.sigma_w2_n == pytest.approx(1 / g, rel=1e-12)
    assert dc.sigma_b2 == pytest.approx(dc.q_star - v / g, rel=1e-11)


def test_silu_doubly_critical_point_by_the_oracle():
    (dc,) = critical.doubly_critical(parse_activation("silu"))
    q_ref = optimize.brentq(lambda q: oracle("silu", q)[2] - oracle("silu", q)[1], 5, 30, xtol=1e-14)
    assert dc.q_star == pytest.approx(q_ref, rel=1e-9)
    assert dc.sigma_b2 > 0 and dc.sigma_w2_n == pytest.approx(1 / oracle("silu", q_ref)[1], rel=1e-10)


def test_no_doubly_critical_point_for_tanh_and_relu():
    assert critical.doubly_critical(parse_activation("tanh")) == ()
    assert critical.doubly_critical(parse_activation("relu")) == ()


def test_cli_critical_line_prints_and_writes_csv(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["theory", "--act", "silu", "--critical-line", "--sigma-b2", "0.04,0.6"])
    assert res.exit_code == 0, res.output
    assert "unstable" in res.output and "stable" in res.output
    path = tmp_path / "line.csv"
    res = runner.invoke(app, ["theory", "--act", "silu", "--critical-line", "--sigma-b2", "0.04", "--out", str(path)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(path.open()))
    assert tuple(rows[0]) == critical.CRITICAL_LINE_COLUMNS
    finite = [r for r in rows if r["branch"] in ("stable", "unstable")]
    assert len(finite) == 1 and finite[0]["branch"] == "unstable"
    assert float(finite[0]["sigma_w2_n"]) == pytest.approx(oracle_critical("silu", 0.04, 0.3, 2.0)[0], rel=1e-10)
    bad = runner.invoke(app, ["theory", "--act", "silu", "--critical-line", "--sigma-b2", "0.1,-1"])
    assert bad.exit_code == 2 and "sigma-b2" in bad.output and "Traceback" not in bad.output


def test_cli_theory_shows_doubly_critical_and_unstable_critical_point():
    res = CliRunner().invoke(app, ["theory", "--act", "gelu", "--sigma-b2", "0.04", "--depth", "2"])
    assert res.exit_code == 0, res.output
    assert "doubly critical" in res.output and "1.98306" in res.output
    assert "unstable" in res.output


def test_theory_q_in_and_preactivation_input_conventions():
    from hevar.meanfield import theory

    gelu = parse_activation("gelu")
    small = theory.report(gelu, sigma_b2=0.05, sigma_w2_n=2.416, depth=2, q_in=1e-3)
    assert small["chi1"] == pytest.approx(0.9011, abs=1e-3) and small["q_star"] == pytest.approx(0.3178, abs=1e-4)
    # input as a pre-activation: q¹ = s·V(q_in) + σ_b²; at σ_b² = 0, q = 1 is a fixed point exactly at s = 1/V(1),
    # so the jump sits at the second-moment gain
    pre = theory.report(gelu, sigma_b2=0.0, depth=2, q_in=1.0, input_preactivation=True)
    assert pre["input"] == "pre-activation" and pre["q_in_effective"] == pytest.approx(oracle("gelu", 1.0)[0])
    assert pre["critical_jump_at"] == pytest.approx(1 / oracle("gelu", 1.0)[0], rel=1e-9)
    rep = theory.report(gelu, sigma_b2=0.0, sigma_w2_n=1.5, depth=2, q_in=2.0, input_preactivation=True)
    assert rep["layers"][0]["q"] == pytest.approx(1.5 * oracle("gelu", 2.0)[0], rel=1e-12)


def test_xi_is_finite_off_exact_criticality():
    from hevar.meanfield import theory

    rep = theory.report(parse_activation("tanh"), sigma_b2=0.05, sigma_w2_n=1.7609, depth=2)
    assert math.isfinite(rep["xi"]) and rep["xi"] == pytest.approx(-1 / math.log(rep["chi1"]))
    res = CliRunner().invoke(app, ["theory", "--act", "tanh", "--q-in", "0"])
    assert res.exit_code == 2 and "q-in" in res.output
