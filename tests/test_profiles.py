"""Width profiles and fan modes: parsing, the per-layer variances, theory columns against a hand
computation, He et al.'s (2015) forward/backward argument measured on a ReLU pyramid, the CSV
columns, the figure, and validation of the new options."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from typer.testing import CliRunner

from hevar.engine import init
from hevar.views import figures
from hevar.results import store
from hevar.experiments import sweep
from hevar.meanfield.activations import parse_activation
from hevar.views.cli import app
from hevar.experiments.config import build_config
from hevar.engine.passes import Streams, measure

runner = CliRunner()


def test_profiles_parse_to_canonical_specs_and_widths():
    assert init.parse_widths(" 1024, 512,256") == "1024,512,256"
    assert init.parse_widths([8, 4]) == "8,4"
    assert init.layer_widths("pyramid:1024:128", 3) == (1024, 512, 256, 128)
    assert init.layer_widths("pyramid:64:1024", 4) == (64, 128, 256, 512, 1024)
    assert init.layer_widths("pyramid:100:10", 2) == (100, 32, 10)
    assert init.layer_widths("constant:7", 2) == (7, 7, 7)
    assert init.profile_depth("12,6,3") == 2 and init.profile_depth("pyramid:8:2") is None


def test_fans_and_scaled_variances_by_hand():
    w = (8, 4, 2)
    np.testing.assert_array_equal(init.fan(w, "fan_in"), [8, 4])
    np.testing.assert_array_equal(init.fan(w, "fan_out"), [4, 2])
    np.testing.assert_array_equal(init.fan(w, "fan_avg"), [6, 3])
    s_in, s_out = init.scaled_variances(2.0, w, "fan_out")
    np.testing.assert_allclose(s_in, [2 * 8 / 4, 2 * 4 / 2])  # σ_l² N_{l-1} with σ_l² = 2/N_l
    np.testing.assert_allclose(s_out[:-1], [2 * 2 / 2])  # σ_2² N_2 = 2: fan-out flattens the backward pass


def test_constant_width_fan_in_normal_is_bit_identical_to_the_plain_engine_call():
    cfg = build_config({"act": "tanh", "depth": "4", "width": "16", "sigma_w2": "1,2.5", "sigma_b2": "0,0.3",
                        "seeds": "1", "batch": "3"})
    task = sweep.plan(cfg)[0]
    assert task.key == "tanh__L4__N16__seed0"  # default tasks keep their old keys (resume of old runs)
    m = sweep.run_task(cfg, task)
    pairs = sweep.grid(cfg)
    std = np.array([[math.sqrt(s / 16)] * 4 for s, _ in pairs])
    ref = measure(parse_activation("tanh"), (16,) * 5, std, np.array([math.sqrt(b) for _, b in pairs]), 3,
                  Streams(cfg.seed, 0), cfg.dtype)
    for f in sweep.FIELDS:
        assert np.array_equal(getattr(m, f), getattr(ref, f), equal_nan=True)
    # and fan_out / fan_avg coincide with fan_in at constant width
    for mode in ("fan_out", "fan_avg"):
        other = sweep.run_task(cfg, sweep.Task("tanh", 4, 16, 0, "", mode))
        assert np.array_equal(other.log_q_tilde, m.log_q_tilde)


def _reduce(flags):
    cfg = build_config(flags)
    results = {t: sweep.run_task(cfg, t) for t in sweep.plan(cfg)}
    return sweep.reduce(cfg, results)


def test_theory_columns_on_a_three_layer_profile_by_hand():
    """ReLU, V(q) = q/2, G = 1/2; widths (12, 6, 3, 9); s = σ_w²·N = 2; E[x²] = 1."""
    layers, summary, _ = _reduce({"act": "relu", "widths": "12,6,3,9", "mode": "fan_in,fan_out", "sigma_w2": "2",
                                  "seeds": "2", "batch": "4"})
    rows = {(r["mode"], r["layer"]): r for r in layers}
    N = (12, 6, 3, 9)
    hand = {
        # fan_in: σ_l² = 2/N_{l-1}; q flat at 2; q̃² = q̃³·σ_3²N_3/2 = q̃³·(2/3)·9/2, q̃¹ = q̃²·(2/6)·3/2
        "fan_in": dict(sigma=(2 / 12, 2 / 6, 2 / 3), q=(2.0, 2.0, 2.0), qt_ratio=(1.5, 3.0, 1.0)),
        # fan_out: σ_l² = 2/N_l; q¹ = (2/6)·12 = 4, q² = (2/3)·6·4/2 = 8, q³ = (2/9)·3·8/2 = 8/3; q̃ flat
        "fan_out": dict(sigma=(2 / 6, 2 / 3, 2 / 9), q=(4.0, 8.0, 8 / 3), qt_ratio=(1.0, 1.0, 1.0)),
    }
    for mode, h in hand.items():
        top = rows[(mode, 3)]["q_tilde_theory"]
        assert top == pytest.approx(rows[(mode, 3)]["q_tilde"], rel=1e-12)  # anchored at the measured q̃ᴸ
        for l in (1, 2, 3):
            r = rows[(mode, l)]
            assert r["layer_width"] == N[l] and r["widths"] == "12,6,3,9" and r["depth"] == 3
            assert r["layer_sigma_w2"] == pytest.approx(h["sigma"][l - 1], rel=1e-12)
            assert r["width"] == N[0] and r["sigma_w2"] == pytest.approx(h["sigma"][0], rel=1e-12)  # as in summary
            assert r["q_theory"] == pytest.approx(h["q"][l - 1], rel=1e-12)
            assert r["q_tilde_theory"] / top == pytest.approx(h["qt_ratio"][l - 1], rel=1e-12)
            v_prev = 1.0 if l == 1 else h["q"][l - 2] / 2  # E[φ(z^{l-1})²]
            assert r["grad_norm2_theory"] == pytest.approx(N[l] * r["q_tilde_theory"] * N[l - 1] * v_prev, rel=1e-12)
    by_mode = {r["mode"]: r for r in summary}
    assert by_mode["fan_in"]["width"] == 12 and by_mode["fan_in"]["sigma_w2"] == pytest.approx(2 / 12)
    assert by_mode["fan_out"]["sigma_w2"] == pytest.approx(2 / 6)
    assert by_mode["fan_in"]["log10_q_tilde_ratio_theory"] == pytest.approx(math.log10(1.5), rel=1e-12)
    assert by_mode["fan_out"]["log10_q_tilde_ratio_theory"] == pytest.approx(0.0, abs=1e-12)


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    """ReLU at σ_w²·N_fan = 2 on a pyramid 1024 → 64 over 8 layers, both modes, 6 seeds (~1 s)."""
    out = tmp_path_factory.mktemp("pyramid")
    result = runner.invoke(app, ["sweep", "--act", "relu", "--widths", "pyramid:1024:64", "--depth", "8",
                                 "--mode", "fan_in,fan_out", "--sigma-w2", "2", "--seeds", "6", "--batch", "32",
                                 "--out", str(out), "--no-plot"])
    assert result.exit_code == 0, result.output
    layers, summary, _ = store.read_run(out)
    return out, layers, summary


def _trace(layers, mode, column):
    rows = layers["mode"] == mode
    return layers[column][rows][np.argsort(layers["layer"][rows])]


def test_he2015_fan_out_flattens_the_backward_pass_and_fan_in_the_forward_one(pyramid):
    _, layers, _ = pyramid
    N = init.layer_widths("pyramid:1024:64", 8)
    np.testing.assert_array_equal(_trace(layers, "fan_in", "layer_width"), N[1:])
    drift_backward = math.log10(N[8] / N[1])  # fan_in: q̃¹/q̃ᴸ = ∏ N_{l+1}/N_l = N_L/N_1
    drift_forward = math.log10(N[1] / N[8])  # fan_out: qᴸ/q¹ = ∏ N_{l-1}/N_l = N_1/N_L
    assert drift_backward < -1.0  # 64/725: far outside any seed spread below

    for mode, flat, drifting, drift in (("fan_out", "q_tilde", "q", drift_forward),
                                        ("fan_in", "q", "q_tilde", drift_backward)):
        # The flat one: every layer within the seed band of the top (q̃) or first (q) layer's value.
        y = _trace(layers, mode, f"log10_{flat}")
        lo = np.log10(_trace(layers, mode, f"{flat}_lo"))
        hi = np.log10(_trace(layers, mode, f"{flat}_hi"))
        ref = y[-1] if flat == "q_tilde" else y[0]
        spread = np.max(hi - lo)
        assert spread < 0.3
        assert np.all(np.abs(y - ref) <= spread), (mode, flat, y - ref, spread)
        th = _trace(layers, mode, f"log10_{flat}_theory")
        assert np.ptp(th) == pytest.approx(0.0, abs=1e-12)
        # The drifting one: by the product of width ratios, measured and in theory.
        y = _trace(layers, mode, f"log10_{drifting}")
        th = _trace(layers, mode, f"log10_{drifting}_theory")
        measured = y[0] - y[-1] if drifting == "q_tilde" else y[-1] - y[0]
        predicted = th[0] - th[-1] if drifting == "q_tilde" else th[-1] - th[0]
        assert predicted == pytest.approx(drift, abs=1e-9)
        assert measured == pytest.approx(drift, abs=0.15)
        assert abs(measured) > 3 * spread  # the drift is not noise


def test_profile_columns_and_the_fan_modes_figure(pyramid):
    out, layers, summary = pyramid
    assert set(summary["widths"]) == {"pyramid:1024:64"} and set(summary["mode"]) == {"fan_in", "fan_out"}
    assert set(summary["dist"]) == {"normal"} and np.all(summary["width"] == 1024)
    np.testing.assert_allclose(summary["weight_var_realised_ratio"], 1.0, atol=0.02)
    fig = Figure()
    ax = fig.subplots()
    artists = figures.plot_mode_traces(ax, layers, "q_tilde", sigma_w2_n=2.0)
    labels = [a.get_label() for a in artists if a.get_label() in ("fan-in", "fan-out")]
    assert labels == ["fan-in", "fan-out"]
    assert len(ax.lines) == 4  # measured + theory per mode
    written = figures.render_run(out)
    assert out / "plots" / "fan_modes.png" in written
    # A plain constant-width, single-mode run draws no fan-mode figure.
    assert figures.finite_width._figure_fan_modes({k: v[layers["mode"] == "fan_in"] for k, v in layers.items()} | {
        "widths": np.full((layers["mode"] == "fan_in").sum(), "constant:1024", dtype=object)}, summary) is None


def test_explicit_profile_fixes_the_depth_and_presets_yield_to_flags(tmp_path):
    assert build_config({"widths": "8,4,2"}).depth == (2,)
    assert build_config({"widths": "8,4,2", "depth": "2"}).widths == "8,4,2"
    cfg = build_config({"widths": "constant:16"})
    assert cfg.width == (16,) and cfg.widths == ""
    again = build_config(build_config({"widths": "pyramid:64:8", "depth": "4", "mode": "fan_out"}).to_dict())
    assert again.widths == "pyramid:64:8" and again.width == (64,) and again.mode == ("fan_out",)
    assert build_config({"widths": "pyramid:64:8"}, {"width": 32}).widths == "pyramid:64:8"  # flag wins
    assert build_config({"width": "32"}, {"widths": "pyramid:64:8"}).widths == ""


@pytest.mark.parametrize("args, name", [
    (["--widths", "pyramid:1024"], "'widths'"),
    (["--widths", "pyramid:0:8"], "'widths'"),
    (["--widths", "triangle:8:4"], "'widths'"),
    (["--widths", "64"], "'widths'"),
    (["--widths", "8,,4"], "'widths'"),
    (["--widths", "8,4.5"], "'widths'"),
    (["--widths", "8,100001"], "'widths'"),
    (["--widths", "8,4,2", "--width", "8"], "'widths'"),
    (["--widths", "8,4,2", "--depth", "3"], "'depth'"),
    (["--mode", "fan"], "'mode'"),
    (["--mode", "fan_in,"], "'mode'"),
    (["--dist", "gaussian"], "'dist'"),
    (["--dist", "normal,truncated"], "'dist'"),
])
def test_bad_profile_mode_and_dist_are_one_line_and_exit_2(tmp_path, args, name):
    out = tmp_path / "run"
    result = runner.invoke(app, ["sweep", "--act", "relu", "--seeds", "1", "--batch", "2", *args,
                                 "--out", str(out), "--no-plot"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: The {name} parameter must be "), lines
    assert " Got " in lines[0] and lines[0].endswith("instead.")
    assert not out.exists()
