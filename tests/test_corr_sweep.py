"""`hevar theory` reports the pair-of-inputs terms (issue 14), checked against a Gauss–Hermite
computation written here independently of hevar.meanfield (tanh, σ_b² = 0.05, both sides of 1.7610)."""
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from hevar.views.cli import app

X, W = np.polynomial.hermite_e.hermegauss(81)
W = W / W.sum()


def _oracle(s, sb2):
    q = s * 1.0 + sb2  # q¹ from q_in = 1 (hevar's convention: the input is not activated)
    for _ in range(5000):
        q = s * float(W @ np.tanh(math.sqrt(q) * X) ** 2) + sb2
    z1, z2 = np.meshgrid(X, X, indexing="ij")
    w2 = np.outer(W, W)
    c = 0.3
    for _ in range(1500):
        u1 = math.sqrt(q) * z1
        u2 = math.sqrt(q) * (c * z1 + math.sqrt(max(1 - c * c, 0.0)) * z2)
        c = min((s * float(np.sum(w2 * np.tanh(u1) * np.tanh(u2))) + sb2) / q, 1.0)
    u1 = math.sqrt(q) * z1
    u2 = math.sqrt(q) * (c * z1 + math.sqrt(max(1 - c * c, 0.0)) * z2)
    chi_c = s * float(np.sum(w2 / np.cosh(u1) ** 2 / np.cosh(u2) ** 2))
    return c, chi_c, -1 / math.log(chi_c)


@pytest.mark.parametrize("s", [1.3, 1.6, 2.0, 3.0])
def test_theory_json_pair_terms_match_independent_quadrature(s):
    result = CliRunner().invoke(app, ["theory", "--act", "tanh", "--sigma-b2", "0.05", "--sigma-w2", str(s), "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.output)
    c_star, chi_c, xi_c = _oracle(s, 0.05)
    assert (d["c_star"] == 1.0) == (s < 1.7610)
    assert d["c_star"] == pytest.approx(c_star, abs=1e-6)
    assert d["chi_c"] == pytest.approx(chi_c, rel=1e-6)
    assert d["xi_c"] == pytest.approx(xi_c, rel=1e-5)
    assert math.isfinite(d["xi_q"]) and d["xi_q"] > 0


def test_theory_table_shows_pair_terms():
    result = CliRunner().invoke(app, ["theory", "--act", "tanh", "--sigma-b2", "0.05", "--sigma-w2", "2.5"])
    assert result.exit_code == 0 and "ξ_c" in result.output and "c*" in result.output
