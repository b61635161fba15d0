"""A user φ without a derivative: kinks found, the numerical φ' error estimated and reported, and the
softsign case of issue 13 answered exactly (1/φ'(0)² = 4/9 with q* → 0)."""

from __future__ import annotations

import textwrap
import uuid

import numpy as np
import pytest
from typer.testing import CliRunner

from hevar.meanfield import critical, numdiff, theory
from hevar.meanfield.activations import parse_activation
from hevar.views.cli import app


@pytest.fixture
def softsign(tmp_path, monkeypatch):
    name = f"hevar_test_soft_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        import numpy as np

        def soft(z):
            return 1.5 * z / (1 + np.abs(z))

        def kinked(z):
            return np.abs(z - 0.3) + np.tanh(z)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_kinks_found_where_phi_or_a_derivative_jumps():
    smooth = {n: parse_activation(n) for n in ("tanh", "gelu", "silu", "softplus", "sigmoid", "erf")}
    for name, act in smooth.items():
        assert numdiff.detect_kinks(lambda z, a=act: a.phi(np.asarray(z, float))) == (), name
    for name in ("relu", "elu", "selu", "leaky_relu:0.2"):  # elu: only φ'' jumps at 0
        act = parse_activation(name)
        assert numdiff.detect_kinks(lambda z, a=act: a.phi(np.asarray(z, float))) == (0.0,), name
    assert numdiff.detect_kinks(lambda z: np.where(z > 1.2345678, z ** 2, 0.0)) == pytest.approx((1.2345678,), abs=1e-6)
    assert numdiff.detect_kinks(np.abs, declared=(0.0,)) == ()


def test_softsign_critical_point_is_exact(softsign):
    act = parse_activation(f"{softsign}:soft")
    assert act.detected_kinks == (0.0,) and 0.0 in act.kinks
    assert 0 < act.dphi_error < 1e-6
    crit = critical.critical_sigma_w2_n(act, 0.0)
    # was 0.4677 "finite q*" at a spurious q* ≈ 2.6e-4 with φ' smeared across the kink in φ''
    assert crit.kind == "q*->0" and crit.q_star == 0.0
    rep = theory.report(act, sigma_b2=0.0, depth=2)
    assert abs(crit.sigma_w2_n - 4 / 9) <= max(rep["critical_sigma_w2_n_error"], 1e-12)
    assert crit.sigma_w2_n == pytest.approx(4 / 9, rel=1e-8)
    assert rep["warnings"] and "numerical derivative" in rep["warnings"][0] and "z = 0" in rep["warnings"][0]
    # the derivative itself, one-sided beside the kink, against φ'(z) = 1.5/(1 + |z|)²
    z = np.array([-0.03, -1e-4, 0.0, 1e-4, 0.02, 0.5, 3.0])
    assert np.allclose(act.dphi(z), 1.5 / (1 + np.abs(z)) ** 2, rtol=0, atol=10 * act.dphi_error + 1e-12)


def test_error_estimate_bounds_the_actual_error(softsign):
    act = parse_activation(f"{softsign}:kinked")
    assert act.detected_kinks == pytest.approx((0.3,))
    z = np.linspace(-10, 10, 4001)
    exact = np.sign(z - 0.3) + 1 / np.cosh(z) ** 2
    far = np.abs(z - 0.3) > 1e-9
    assert np.max(np.abs(act.dphi(z) - exact)[far]) <= act.dphi_error + 1e-13


def test_given_derivative_and_builtins_carry_no_warning():
    rep = theory.report(parse_activation("tanh"), sigma_b2=0.05, depth=2)
    assert rep["warnings"] == [] and rep["critical_sigma_w2_n_error"] == 0.0


def test_missing_module_says_where_it_was_searched():
    res = CliRunner().invoke(app, ["theory", "--act", "hevar_no_such_module_x:f"])
    assert res.exit_code == 2 and "Searched the current directory" in res.output and "PYTHONPATH" in res.output
    assert "Traceback" not in res.output


def test_cli_prints_the_warning(softsign):
    res = CliRunner().invoke(app, ["theory", "--act", f"{softsign}:soft", "--depth", "2"])
    assert res.exit_code == 0, res.output
    assert "warning: φ'" in res.output and "0.444444" in res.output and "q*->0" in res.output
