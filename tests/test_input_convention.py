"""The input's convention in sweeps (issue 13 item 7): --q-in, --input-preactivation and a fixed raw
weight std (--weight-std), against oracles written here: an independent Gauss–Hermite trajectory for
tanh and ReLU's closed form G = 1/2."""
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

import hevar
from hevar.experiments.config import build_config
from hevar.views.cli import app

X, W = np.polynomial.hermite_e.hermegauss(120)
W = W / W.sum()


def _tanh_trajectory(s, sb2, q_in, depth, preactivated):
    """qˡ from the input: q¹ = s·E[x²] + σ_b², E[x²] = q_in or E[tanh(√q_in·z)²]."""
    first = float(W @ np.tanh(math.sqrt(q_in) * X) ** 2) if preactivated else q_in
    q = [s * first + sb2]
    for _ in range(depth - 1):
        q.append(s * float(W @ np.tanh(math.sqrt(q[-1]) * X) ** 2) + sb2)
    return np.array(q)


@pytest.mark.parametrize("preactivated", [False, True])
def test_q_in_and_a_preactivated_input_set_the_measured_and_predicted_first_layers(preactivated):
    q_in, sb2, L = 0.3, 0.05, 12
    run = hevar.sweep(act="tanh", sigma_b2=sb2, sigma_w2=[1.5, 2.5], depth=L, width=256, seeds=6, batch=64,
                      q_in=q_in, input_preactivation=preactivated)
    layers, seeds = run.layers, run.seeds
    for s in (1.5, 2.5):
        oracle = _tanh_trajectory(s, sb2, q_in, L, preactivated)
        got = layers[layers.sigma_w2_n == s].sort_values("layer")
        np.testing.assert_allclose(got["q_theory"], oracle, rtol=1e-9)
        # measured q¹: the seed mean within 4 standard errors of the seed spread
        q1 = 10 ** seeds[(seeds.sigma_w2_n == s) & (seeds.layer == 1)]["log10_q"].to_numpy()
        se = q1.std(ddof=1) / math.sqrt(len(q1))
        assert abs(q1.mean() - oracle[0]) < 4 * se + 1e-12, (q1.mean(), oracle[0], se)
    plain = hevar.sweep(act="tanh", sigma_b2=sb2, sigma_w2=[1.5], depth=L, width=256, seeds=2, batch=16)
    assert plain.layers["q_theory"].iloc[0] == pytest.approx(1.5 * 1.0 + sb2)  # the default is unchanged
    assert set(plain.layers["config_id"]).isdisjoint(layers["config_id"])  # the convention is in the identity


def test_the_default_convention_leaves_the_config_as_it_was():
    cfg = build_config({"act": "relu"}, {})
    assert not {"q_in", "input_preactivation", "weight_std"} & set(cfg.to_dict())
    assert cfg.q_in == 1.0 and cfg.input_preactivation is False


def test_weight_std_is_one_raw_variance_for_every_layer_of_a_profile():
    """ReLU with σ_{w,l}² = std² on a pyramid: q̃ˡ = q̃ˡ⁺¹·std²·N_{l+1}/2 exactly in mean field."""
    std, L = 0.05, 10
    run = hevar.sweep(act="relu", widths="pyramid:256:32", depth=L, weight_std=std, seeds=6, batch=64)
    row = run.summary.iloc[0]
    from hevar.engine.init import layer_widths

    widths = np.array(layer_widths("pyramid:256:32", L), dtype=float)
    assert row["mode"] == "fixed" and row["sigma_w2"] == pytest.approx(std ** 2)
    assert row["sigma_w2_n"] == pytest.approx(std ** 2 * widths[0])
    np.testing.assert_allclose(run.layers["layer_sigma_w2"], std ** 2)
    oracle = float(np.sum(np.log10(std ** 2 * widths[2:] / 2)))  # Π_{l=1}^{L-1} std²·N_{l+1}/2
    assert row["log10_q_tilde_ratio_theory"] == pytest.approx(oracle, rel=1e-12)
    per_seed = run.seeds[run.seeds.layer == 1]["log10_q_tilde"].to_numpy() - \
        run.seeds[run.seeds.layer == L]["log10_q_tilde"].to_numpy()
    se = per_seed.std(ddof=1) / math.sqrt(len(per_seed))
    assert abs(row["log10_q_tilde_ratio"] - oracle) < 4 * se + 0.02  # + the seed-mean-of-q̃ vs mean-of-log gap


def test_weight_std_runs_resume_from_their_manifest(tmp_path):
    out = tmp_path / "w"
    hevar.sweep(act="relu", width=64, depth=4, weight_std=0.1, seeds=2, batch=8, out=out)
    recorded = json.loads((out / "manifest.json").read_text())["config"]
    assert recorded["weight_std"] == 0.1 and recorded["mode"] == ["fixed"]
    assert build_config(recorded) == build_config({"act": "relu", "width": "64", "depth": "4", "weight_std": "0.1",
                                                   "seeds": "2", "batch": "8"}, {})
    r = CliRunner().invoke(app, ["sweep", "--resume", str(out), "--no-plot"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("args, message", [
    (["--weight-std", "0.01", "--sigma-w2", "2"], "'sigma-w2' parameter must be left out with --weight-std"),
    (["--weight-std", "0.01", "--mode", "fan_out"], "'mode' parameter must be left out with --weight-std"),
    (["--weight-std", "0.01", "--width", "64,128"], "'width' parameter must be one width with --weight-std"),
    (["--weight-std", "-1"], "'weight-std' parameter must be a float in the range (0, inf)"),
    (["--q-in", "0"], "'q-in' parameter must be a float in the range (0, inf)"),
    (["--q-in", "abc"], "'q-in' parameter must be a float in the range (0, inf)"),
    (["--q-in", "2", "--input-corr", "0.3"], "'q-in' parameter must be left out with --input-corr or --jacobian"),
    (["--input-preactivation", "--jacobian", "2"], "'input-preactivation' parameter must be left out with"),
])
def test_bad_conventions_are_one_line(args, message):
    r = CliRunner().invoke(app, ["sweep", "--act", "relu", "--depth", "3", "--width", "8", *args, "--dry-run"])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_the_gains_command_for_a_convention_is_a_valid_sweep():
    from hevar.meanfield import gains
    from hevar.meanfield.activations import parse_activation

    entry = gains.gains_table([parse_activation("tanh")], sigma_b2=0.05, depth=10, q_in=0.5,
                              input_preactivation=True).activations[0]
    args = entry.command.split()[2:]  # after "hevar sweep"
    r = CliRunner().invoke(app, ["sweep", *args, "--dry-run"])
    assert r.exit_code == 0, r.output
