"""`hevar gains`: framework initialisations translated to σ_w²·N against hand values, verdicts
against closed forms, and one verdict measured by a real (tiny) sweep."""

from __future__ import annotations

import csv
import json
import math
import shlex

import numpy as np
import pytest
from typer.testing import CliRunner

from hevar.meanfield import gains
from hevar.meanfield.activations import parse_activation
from hevar.views.cli import app
from hevar.experiments.config import build_config

runner = CliRunner()


def _rows(act: str, sigma_b2: float = 0.0, depth: int = 50) -> dict[str, gains.GainRow]:
    entry = gains.activation_gains(parse_activation(act), sigma_b2, depth)
    return {r.scheme: r for r in entry.rows}


# --- translations to σ_w²·N ----------------------------------------------------------------------


@pytest.mark.parametrize("act, scheme, hand", [
    ("relu", "pytorch.linear_default", 1 / 3),  # kaiming_uniform_(a=√5): gain² = 2/(1+5); U(±1/√N) has var 1/(3N)
    ("relu", "pytorch.kaiming_default", 2.0),  # a=0, leaky_relu → gain √2
    ("relu", "pytorch.kaiming_gain", 2.0),  # calculate_gain('relu') = √2
    ("tanh", "pytorch.kaiming_default", 2.0),  # the default ignores the activation
    ("tanh", "pytorch.kaiming_gain", 25 / 9),  # (5/3)²
    ("tanh", "pytorch.xavier_gain", 25 / 9),  # gain²·2/(N + N)
    ("tanh", "pytorch.xavier_default", 1.0),
    ("selu", "pytorch.kaiming_gain", 9 / 16),  # calculate_gain('selu') = 3/4
    ("sigmoid", "pytorch.xavier_gain", 1.0),
    ("leaky_relu:0.2", "pytorch.kaiming_gain", 2 / 1.04),  # √(2/(1 + a²))²
    ("gelu", "keras.he", 2.0),
    ("gelu", "keras.lecun", 1.0),
    ("gelu", "keras.glorot", 1.0),  # 2/(fan_in + fan_out) at constant width
])
def test_framework_translations_match_hand_values(act, scheme, hand):
    assert _rows(act)[scheme].sigma_w2_n == pytest.approx(hand, rel=1e-14)
    assert _rows(act)[scheme].gain == pytest.approx(math.sqrt(hand), rel=1e-14)


def test_activations_without_a_pytorch_gain_get_no_made_up_row():
    for name in ("gelu", "silu", "mish", "softplus", "elu", "erf"):
        act = parse_activation(name)
        assert gains.torch_gain(act) is None
        rows = _rows(name)
        assert "pytorch.kaiming_gain" not in rows and "pytorch.xavier_gain" not in rows
        assert "no calculate_gain entry" in gains.activation_gains(act).note
    assert gains.torch_gain(parse_activation("leaky_relu")).gain == pytest.approx(math.sqrt(2 / (1 + 0.01**2)))


def test_default_is_every_builtin_activation():
    table = gains.gains_table(depth=5)
    assert [e.activation.split(":")[0] for e in table.activations] == [
        "relu", "leaky_relu", "linear", "tanh", "erf", "erf_scaled", "sigmoid", "softplus", "elu", "selu", "gelu", "silu", "mish"]


# --- predicted factor and verdicts -----------------------------------------------------------------


@pytest.mark.parametrize("s", [1 / 3, 1.0, 2.0, 2.5])
@pytest.mark.parametrize("depth", [1, 7, 50])
def test_relu_factor_is_chi_to_the_depth_minus_one(s, depth):
    for sigma_b2 in (0.0, 0.1):  # homogeneous: χ = s/2 whatever q
        got = gains.log_gradient_factor(parse_activation("relu"), s, sigma_b2, depth)
        assert got == pytest.approx((depth - 1) * math.log(s / 2), abs=1e-12)


def test_factor_follows_the_trajectory_not_chi1():
    # tanh at σ_w²·N = 1, σ_b² = 0: χ₁ = 1 exactly, but qˡ → 0 only like 1/l, so the 49 factors
    # s·G(qˡ) < 1 multiply to a power-law decay; χ₁^49 would say "stable".
    row = _rows("tanh")["pytorch.xavier_default"]
    assert row.chi1 == pytest.approx(1.0) and row.phase == "critical"
    assert row.factor < 0.05 and row.verdict == "vanishing"


def test_relu_verdicts():
    rows = _rows("relu")
    assert rows["pytorch.kaiming_default"].verdict == "stable" and rows["keras.he"].factor == pytest.approx(1.0)
    assert rows["hevar.critical"].sigma_w2_n == 2.0 and rows["hevar.critical"].verdict == "stable"
    assert rows["pytorch.linear_default"].verdict == "vanishing"
    assert rows["pytorch.linear_default"].log10_factor == pytest.approx(49 * math.log10(1 / 6))
    assert rows["keras.glorot"].verdict == "vanishing"
    assert _rows("linear")["keras.he"].verdict == "exploding"  # χ = 2 per layer
    assert _rows("tanh")["pytorch.kaiming_gain"].verdict == "exploding"


def test_verdict_band_edges():
    lo, hi = gains.STABLE_BAND
    assert gains.verdict(math.log(lo)) == "stable" and gains.verdict(math.log(hi)) == "stable"
    assert gains.verdict(math.log(lo) - 1e-9) == "vanishing" and gains.verdict(math.log(hi) + 1e-9) == "exploding"
    assert gains.verdict(math.inf) == "exploding" and gains.verdict(-math.inf) == "vanishing"
    assert gains.verdict(math.nan) == ""


def test_bias_changes_tanh_but_not_relu():
    assert _rows("relu", 0.3)["keras.he"].factor == pytest.approx(1.0)
    tanh = gains.activation_gains(parse_activation("tanh"), 0.05)
    assert tanh.critical_sigma_w2_n == pytest.approx(1.7610, abs=1e-4)
    assert "--sigma-b2 0.05" in tanh.command


def test_bad_depth_and_bias_are_usage_errors():
    from hevar.errors import UsageError

    with pytest.raises(UsageError, match="The 'depth' parameter must be an int in the range"):
        gains.gains_table(depth=0)
    with pytest.raises(UsageError, match="The 'sigma-b2' parameter"):
        gains.gains_table(sigma_b2=-1.0)


# --- reproducible by a sweep -----------------------------------------------------------------------


def _flags(command: str) -> dict[str, str]:
    words = shlex.split(command)
    assert words[:2] == ["hevar", "sweep"]
    return {k.lstrip("-").replace("-", "_"): v for k, v in zip(words[2::2], words[3::2])}


def test_every_command_is_a_valid_sweep_of_that_row():
    for entry in gains.gains_table(sigma_b2=0.05, depth=20).activations:
        cfg = build_config(_flags(entry.command))
        assert cfg.act == (entry.activation,) and cfg.depth == (20,) and cfg.sigma_b2 == (0.05,)
        for row in entry.rows:
            one = build_config(_flags(row.command))
            assert one.sigma_w2 == pytest.approx((row.sigma_w2_n,), rel=1e-5)
            assert any(math.isclose(s, row.sigma_w2_n, rel_tol=1e-5) for s in cfg.sigma_w2)


def test_a_small_sweep_measures_the_relu_verdicts(tmp_path):
    depth = 12
    entry = gains.activation_gains(parse_activation("relu"), 0.0, depth)
    predicted = {round(r.sigma_w2_n, 5): r for r in entry.rows}
    flags = shlex.split(entry.command)[2:] + ["--width", "128", "--seeds", "4", "--batch", "32",
                                             "--out", str(tmp_path / "run"), "--no-plot"]
    result = runner.invoke(app, ["sweep", *flags])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "run" / "summary.csv") as fh:
        summary = list(csv.DictReader(fh))
    assert len(summary) == 4  # 1/3, 1, 2 (kaiming, he, critical, second moment, depth) and NF-Net's γ² = 2.934
    for row in summary:
        want = predicted[round(float(row["sigma_w2_n"]), 5)]
        measured = float(row["log10_q_tilde_ratio"])
        assert float(row["log10_q_tilde_ratio_theory"]) == pytest.approx(want.log10_factor, abs=1e-4)
        # finite width: ln q̃ wanders by ~√(2·depth/N) per seed; a third of a decade is ~4σ of the seed mean
        assert measured == pytest.approx(want.log10_factor, abs=0.35)
        assert gains.verdict(measured * math.log(10)) == want.verdict


# --- the command line ------------------------------------------------------------------------------


def test_gains_json_parses_with_stable_keys():
    result = runner.invoke(app, ["gains", "--act", "relu,tanh", "--depth", "30", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"sigma_b2", "depth", "q_in", "input", "stable_band", "width", "verdict_rule", "activations"}
    assert data["depth"] == 30 and data["stable_band"] == [0.5, 2.0]
    assert [a["activation"] for a in data["activations"]] == ["relu", "tanh"]
    tanh = data["activations"][1]
    assert set(tanh) == {"activation", "critical_sigma_w2_n", "critical_kind", "critical_jump_at", "torch_gain",
                         "torch_gain_call", "note", "command", "rows", "criteria", "depth_band"}
    assert tanh["torch_gain"] == pytest.approx(5 / 3) and tanh["critical_jump_at"] is None
    row = tanh["rows"][0]
    assert set(row) == {"scheme", "framework", "call", "sigma_w2_n", "gain", "chi1", "q_star", "phase",
                        "log10_factor", "factor", "verdict", "command", "note"}
    assert {r["verdict"] for r in tanh["rows"]} <= set(gains.VERDICTS)
    gelu = json.loads(runner.invoke(app, ["gains", "--act", "gelu", "--json"]).output)["activations"][0]
    assert gelu["torch_gain"] is None and gelu["critical_sigma_w2_n"] is None and gelu["critical_jump_at"] > 2


def test_gains_table_prints_commands_and_rejects_bad_input():
    result = runner.invoke(app, ["gains", "--act", "tanh"])
    assert result.exit_code == 0, result.output
    assert "exploding" in result.output and "hevar sweep --act tanh --sigma-w2 0.333333,1,1.40648,2,2.53618,2.77778 --depth 50" in result.output
    bad = runner.invoke(app, ["gains", "--act", "tanhh"])
    assert bad.exit_code == 2 and "Did you mean 'tanh'" in bad.output and "Traceback" not in bad.output
    assert runner.invoke(app, ["gains", "--depth", "0"]).exit_code == 2


def test_factor_agrees_with_the_theory_report_layers():
    from hevar.meanfield import theory

    act = parse_activation("erf")
    report = theory.report(act, sigma_b2=0.0, sigma_w2_n=1.3, depth=25)
    q_tilde = np.array([row["q_tilde"] for row in report["layers"]])
    assert gains.log_gradient_factor(act, 1.3, 0.0, 25) == pytest.approx(math.log(q_tilde[0] / q_tilde[-1]), rel=1e-12)


def test_q_in_and_a_preactivated_input_reach_the_rows_and_their_commands():
    """--q-in / --input-preactivation (issue 13 item 7) against an independent Gauss–Hermite trajectory
    for tanh: q¹ = s·q_eff + σ_b² with q_eff = E[tanh(√q_in·z)²], then the usual recursion."""
    import math

    import numpy as np

    from hevar.meanfield import gains as g
    from hevar.meanfield.activations import parse_activation

    x, w = np.polynomial.hermite_e.hermegauss(120)
    w = w / w.sum()
    q_in, sb2, L = 0.5, 0.05, 30
    table = g.gains_table([parse_activation("tanh")], sigma_b2=sb2, depth=L, q_in=q_in, input_preactivation=True)
    entry = table.activations[0]
    row = next(r for r in entry.rows if r.scheme == "pytorch.kaiming_default")
    s = row.sigma_w2_n
    q = s * float(w @ np.tanh(math.sqrt(q_in) * x) ** 2) + sb2
    log_factor = 0.0
    for _ in range(L - 1):
        log_factor += math.log(s * float(w @ np.cosh(math.sqrt(q) * x) ** -4))
        q = s * float(w @ np.tanh(math.sqrt(q) * x) ** 2) + sb2
    assert row.log10_factor == pytest.approx(log_factor / math.log(10), rel=1e-9)
    assert "--q-in 0.5 --input-preactivation" in row.command and "--q-in 0.5" in entry.command
    plain = g.gains_table([parse_activation("tanh")], sigma_b2=sb2, depth=L)
    assert plain.activations[0].rows[0].log10_factor != pytest.approx(row.log10_factor, rel=1e-6)  # it matters
    d = g.to_dict(table)
    assert d["q_in"] == 0.5 and d["input"] == "pre-activation"


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "x"])
def test_bad_q_in_for_gains_is_one_line(bad):
    from typer.testing import CliRunner

    from hevar.views.cli import app

    r = CliRunner().invoke(app, ["gains", "--act", "relu", "--q-in", bad])
    assert r.exit_code == 2 and "'q-in' parameter must be a float in the range (0, inf)" in r.output


def test_a_long_gains_run_says_how_long_first(monkeypatch):
    """`hevar gains --depth 100000` runs for an hour over the built-in activations: it must say so
    before starting. The estimate is linear in the depth and follows how each V(q) is computed."""
    acts = [parse_activation(a) for a in ("relu", "gelu", "tanh")]
    one = gains.estimate_seconds(acts, 1000)
    assert gains.estimate_seconds(acts, 2000) == pytest.approx(2 * one)
    assert one == pytest.approx(1000 * sum(gains.SECONDS_PER_LAYER.values()))  # one of each kind
    assert gains.estimate_seconds(None, 100_000) > 1800  # the case: more than half an hour

    from hevar.views import cli
    from hevar.views.cli import gains as gains_cli

    monkeypatch.setattr(gains_cli, "LONG_S", 0.0)  # every run counts as long: the note must appear
    result = CliRunner().invoke(cli.app, ["gains", "--act", "relu", "--depth", "5"])
    assert result.exit_code == 0
    assert "Note: about" in result.stderr and "5 layers" in result.stderr
    monkeypatch.setattr(gains_cli, "LONG_S", 1e9)
    result = CliRunner().invoke(cli.app, ["gains", "--act", "relu", "--depth", "5"])
    assert result.exit_code == 0 and "Note:" not in result.stderr
