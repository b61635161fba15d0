"""`hevar gains --arch` (issue 12 item 5): the branch scale keeping q̃¹/q̃ᴸ within a factor 2 against
the closed form of a pre-activation ReLU residual stack, the per-block factors, and one-line errors."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

import hevar
from hevar.views.cli import app


def closed_alpha(L, s, factor=2.0):
    return math.sqrt(2 * (factor ** (1 / (L - 1)) - 1) / s)


@pytest.mark.parametrize("L,s", [(20, 2.0), (100, 2.0), (7, 1.3), (1000, 3.0)])
def test_alpha_matches_the_closed_form(L, s):
    out = hevar.gains("relu", arch="resmlp", depth=L, sigma_w2=s)
    rep = out["activations"][0]
    assert rep["branch_scale_for_factor"] == pytest.approx(closed_alpha(L, s), rel=1e-9)
    assert rep["alpha_closed_form"] == pytest.approx(closed_alpha(L, s), rel=1e-12)
    # the per-block factors at α*: every backward factor is 1 + α²s/2, their product 2
    back = np.array([r["backward_factor"] for r in rep["layers"][1:]])
    np.testing.assert_allclose(back, 1 + rep["branch_scale"] ** 2 * s / 2, rtol=1e-12)
    assert np.prod(back) == pytest.approx(2.0, rel=1e-9)
    assert rep["log10_q_tilde_ratio"] == pytest.approx(math.log10(2), rel=1e-9)


def test_given_branch_scale_gives_its_factors():
    """At α = 1/√20 (0.2236) and L = 20 the ratio is 1.05^19 (log10 ≈ 0.40), as the issue's done-when says."""
    rep = hevar.gains("relu", arch="resmlp", depth=20, sigma_w2=2, branch_scale="1/sqrt(L)")["activations"][0]
    assert rep["branch_scale"] == pytest.approx(1 / math.sqrt(20))
    assert rep["log10_q_tilde_ratio"] == pytest.approx(19 * math.log10(1.05), rel=1e-9)
    assert rep["branch_scale_for_factor"] == pytest.approx(closed_alpha(20, 2.0), rel=1e-9)
    fwd = [r["forward_factor"] for r in rep["layers"][1:]]
    np.testing.assert_allclose(fwd, 1.05, rtol=1e-12)  # ReLU: qˡ grows by the same 1 + α²s/2


def test_cli_table_and_json():
    runner = CliRunner()
    result = runner.invoke(app, ["gains", "--arch", "resmlp", "--depth", "20", "--sigma-w2", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["arch"] == "resmlp" and data["depth"] == 20
    assert data["activations"][0]["branch_scale_for_factor"] == pytest.approx(closed_alpha(20, 2.0), rel=1e-9)
    table = runner.invoke(app, ["gains", "--arch", "resmlp", "--depth", "20"])  # σ_w²N defaults to relu's critical 2
    assert table.exit_code == 0, table.output
    assert f"{closed_alpha(20, 2.0):.4g}"[:5] in table.output
    assert "backward" in table.output and "hevar sweep --act relu --arch resmlp --depth 20" in table.output
    pre = runner.invoke(app, ["gains", "--arch", "preln-resmlp", "--depth", "50", "--json"])
    assert pre.exit_code == 0, pre.output
    assert json.loads(pre.output)["activations"][0]["alpha_closed_form"] is None


@pytest.mark.parametrize("args,param", [
    (["--arch", "resnet"], "arch"),
    (["--arch", "mlp"], "arch"),
    (["--sigma-w2", "2"], "arch"),
    (["--arch", "resmlp", "--branch-scale", "-1"], "branch-scale"),
    (["--arch", "resmlp", "--depth", "0"], "depth"),
    (["--arch", "resmlp", "--sigma-w2", "abc"], "sigma-w2"),
])
def test_bad_input_is_one_line(args, param):
    result = CliRunner().invoke(app, ["gains", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and f"'{param}'" in lines[0], result.output
    assert "Traceback" not in result.output


def test_theory_arch_says_how_long_a_deep_stack_takes(monkeypatch):
    """`hevar theory --arch preln-resmlp --act tanh --depth 5000` takes about half a minute: say so first."""
    from hevar.views.cli import theory as theory_cli

    monkeypatch.setattr(theory_cli, "SECONDS_PER_BLOCK", (10.0, 10.0))  # every depth counts as long
    result = CliRunner().invoke(app, ["theory", "--arch", "resmlp", "--act", "relu", "--depth", "4"])
    assert result.exit_code == 0 and "Note: about 40 s" in result.stderr and "all 4 blocks" in result.stderr
    monkeypatch.setattr(theory_cli, "SECONDS_PER_BLOCK", (1e-9, 1e-9))
    result = CliRunner().invoke(app, ["theory", "--arch", "resmlp", "--act", "relu", "--depth", "4"])
    assert result.exit_code == 0 and "Note:" not in result.stderr
