"""Blocks against independent oracles: finite differences of J for each block's backward pass, the
straightforward pass (each block's reference) for the stacked engine, and the architecture specs."""

import math

import numpy as np
import pytest

from hevar.blocks import norm as norms
from hevar.blocks.network import build, branch_scale, parse_arch, parse_branch_scale
from hevar.engine.passes import Streams, measure, measure_reference, memory_estimate
from hevar.errors import UsageError
from hevar.experiments.config import SweepConfig, build_config
from hevar.meanfield.activations import parse_activation

ARCHS = ["resmlp", "preln-resmlp", "postln-resmlp", "prerms-resmlp", "postrms-resmlp",
         "drop0.7-mlp", "drop0.6-resmlp", "preln-drop0.8-resmlp", "preln-mlp", "postrms-mlp"]
WIDTHS = (5, 6, 6, 6)
BATCH = 3


def net_of(arch, act_name, depth, alpha="0.7"):
    act = parse_activation(act_name)
    return act, build(arch, act, depth, alpha if parse_arch(arch).residual else "1")


def forward_J(network, Ws, bs, masks, x, g, layer=None, z_override=None):
    """Per-input J_b = g_bᵀ zᴸ_b through the blocks' reference forwards; optionally replace zˡ
    (0-based ``layer``) by ``z_override``."""
    z = x
    for l, block in enumerate(network.blocks):
        z = block.reference(Ws[l], bs[l], z, masks[l])[0]
        if layer == l:
            z = z_override
    return np.sum(g * z, axis=0)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("act_name", ["relu", "tanh"])
def test_block_gradients_match_finite_differences(arch, act_name):
    """δˡ = ∂J/∂zˡ and ‖∂J/∂Wˡ‖² of the reference against central differences of J; the stacked
    engine's q̃ˡ and gradient norms against the same numbers."""
    act, net = net_of(arch, act_name, len(WIDTHS) - 1)
    std = np.array([0.7, 0.5, 0.6])
    streams = Streams(11, 2)
    ref = measure_reference(act, WIDTHS, std, 0.3, BATCH, streams, network=net)
    m = measure(act, WIDTHS, std[None, :], np.array([0.3]), BATCH, streams, network=net)
    args = (net, ref["weights"], ref["biases"], ref["masks"], ref["x"], ref["g"])
    eps = 1e-6
    for l in range(len(WIDTHS) - 1):
        z = ref["z"][l]
        fd = np.zeros_like(z)
        for i in range(z.shape[0]):
            zp, zm = z.copy(), z.copy()
            zp[i] += eps
            zm[i] -= eps
            fd[i] = (forward_J(*args, l, zp) - forward_J(*args, l, zm)) / (2 * eps)
        np.testing.assert_allclose(ref["delta"][l], fd, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(np.exp(m.log_q_tilde[0, l]), np.mean(fd**2), rtol=1e-5)
        W = ref["weights"][l]
        gw = np.zeros((BATCH,) + W.shape)
        for i in range(W.shape[0]):
            for j in range(W.shape[1]):
                plus = [w.copy() for w in ref["weights"]]
                minus = [w.copy() for w in ref["weights"]]
                plus[l][i, j] += eps
                minus[l][i, j] -= eps
                gw[:, i, j] = (forward_J(net, plus, *args[2:]) - forward_J(net, minus, *args[2:])) / (2 * eps)
        fd_norm2 = np.mean(np.sum(gw**2, axis=(1, 2)))
        np.testing.assert_allclose(ref["grad_norm2"][l], fd_norm2, rtol=1e-5)
        np.testing.assert_allclose(np.exp(m.log_grad_norm2[0, l]), fd_norm2, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("act_name", ["relu", "tanh", "gelu"])
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 3e-4)])
def test_stacked_blocks_equal_reference(arch, act_name, dtype, rtol):
    """Three configurations stacked on one draw give each configuration's straightforward pass."""
    act, net = net_of(arch, act_name, 5)
    widths = (6, 8, 8, 8, 8, 8)
    std = np.array([[0.3] * 5, [0.45, 0.5, 0.55, 0.6, 0.4], [0.8] * 5])
    bstd = np.array([0.0, 0.2, 0.5])
    m = measure(act, widths, std, bstd, 4, Streams(5, 0), dtype, network=net)
    for k in range(3):
        ref = measure_reference(act, widths, std[k], bstd[k], 4, Streams(5, 0), dtype, network=net)
        for field, name in (("log_q", "q"), ("log_q_tilde", "q_tilde"), ("log_grad_norm2", "grad_norm2")):
            np.testing.assert_allclose(np.exp(getattr(m, field)[k]), ref[name], rtol=rtol, err_msg=field)
    assert m.status == ("ok", "ok", "ok")


def test_norm_backward_is_the_jacobian():
    """The stacked normalisation backward equals Jᵀδ from the written-out Jacobian."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((7, 5)) * 3 + 0.5
    d = rng.standard_normal((7, 5))
    for kind in norms.NORMS:
        out = np.empty_like(z)
        inv = norms.forward(kind, z, out)
        np.testing.assert_allclose(out, norms.reference_forward(kind, z), rtol=1e-13)
        np.testing.assert_allclose(np.mean(out**2, axis=0), 1.0, rtol=1e-14)  # q = 1 exactly
        v = d.copy()
        norms.backward(kind, v, out, inv)
        np.testing.assert_allclose(v, norms.reference_backward(kind, z, d), rtol=1e-12, atol=1e-14)


def renormalised_resmlp(act, widths, sigma_w, alpha, batch, streams, dtype="float64"):
    """An independent oracle for deep residual stacks: the plain forward/backward loop, dividing
    zˡ and δˡ by their norms every layer and summing the logarithms (one configuration, no bias)."""
    L = len(widths) - 1
    Ws = [sigma_w * streams.weights(l + 1, widths[l + 1], widths[l], dtype).astype(float) for l in range(L)]
    z = Ws[0] @ streams.inputs(widths[0], batch, dtype).astype(float)
    log_scale, log_q, zs = 0.0, [], []
    for l in range(L):
        if l > 0:
            z = z + alpha * (Ws[l] @ act.phi(z))
        ms = np.mean(z * z)
        log_q.append(2 * log_scale + math.log(ms))
        z = z / math.sqrt(ms)
        log_scale += 0.5 * math.log(ms)
        zs.append(z)
    d = streams.readout(widths[-1], batch, dtype).astype(float)
    log_scale, log_qt = 0.0, [math.log(np.mean(d * d))]
    for l in range(L - 1, 0, -1):
        d = d + alpha * act.dphi(zs[l - 1]) * (Ws[l].T @ d)
        ms = np.mean(d * d)
        log_qt.insert(0, 2 * log_scale + math.log(ms))
        d = d / math.sqrt(ms)
        log_scale += 0.5 * math.log(ms)
    return np.array(log_q), np.array(log_qt)


def test_deep_relu_resmlp_stays_exact_in_log_scale():
    """ReLU residual stack at α = 1, σ_w²N = 2: qᴸ and q̃¹/q̃ᴸ (2^(L-1) at infinite width, e^0.64L
    at N = 100) overflow the dtype (float64 at L = 1400, float32 at L = 300); the stored frame keeps
    them exact against a renormalising loop on the same draws (float32: to its rounding)."""
    n = 100  # not a width the tracemalloc tests use: the buffer pool would hand them these weights
    sigma_w = math.sqrt(2 / n)
    streams = Streams(3, 0)
    for dtype, depth, rtol, limit in (("float64", 1400, 1e-9, 709.8), ("float32", 300, 1e-3, 88.8)):
        act, net = net_of("resmlp", "relu", depth, "1")
        widths = (n,) * (depth + 1)
        log_q, log_qt = renormalised_resmlp(act, widths, sigma_w, 1.0, 8, streams, dtype)
        assert log_q[-1] > limit and log_qt[0] - log_qt[-1] > limit
        m = measure(act, widths, np.full((1, depth), sigma_w), np.zeros(1), 8, streams, dtype, network=net)
        assert m.status == ("ok",)
        np.testing.assert_allclose(m.log_q[0], log_q, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(m.log_q_tilde[0] - m.log_q_tilde[0, -1], log_qt - log_qt[-1], rtol=rtol, atol=rtol)


def test_skipinit_is_the_identity_and_has_no_weight_gradient():
    act, net = net_of("resmlp", "tanh", 6, "0")
    widths = (16,) * 7
    m = measure(act, widths, np.full((1, 6), 0.3), np.array([0.1]), 8, Streams(0, 0), network=net)
    np.testing.assert_allclose(m.log_q[0, 1:], m.log_q[0, 0], rtol=1e-14)
    np.testing.assert_allclose(m.log_q_tilde[0], m.log_q_tilde[0, -1], rtol=1e-14)  # δˡ = g at every layer
    assert np.all(m.log_grad_norm2[0, 1:] == -np.inf) and np.isfinite(m.log_grad_norm2[0, 0])


def test_memory_estimate_counts_what_blocks_keep():
    """A residual stack needs a third buffer; pre-LN keeps the normalised input (one dtype entry more
    per unit); the MLP's estimate is the one of the activation alone."""
    relu = parse_activation("relu")
    widths = (256,) * 51
    mlp = memory_estimate(widths, 8, 128, act=relu)
    assert mlp == memory_estimate(widths, 8, 128, act="relu")
    res = memory_estimate(widths, 8, 128, network=build("resmlp", relu, 50))
    assert res - mlp == 256 * 8 * 128 * 8  # one more (N, K·B) float64 buffer
    pre = memory_estimate(widths, 8, 128, network=build("preln-resmlp", relu, 50))
    assert pre - res == 49 * (256 * 8 * 128 * 8 + 8 * 128 * 8)


def test_arch_specs_round_trip_and_reject_bad_ones():
    assert parse_arch("mlp").text == "mlp"
    assert parse_arch("resmlp-preln").text == "preln-resmlp"
    assert parse_arch("drop0.90-postln-mlp").text == "postln-drop0.9-mlp"
    for bad in ("", "resnet", "mlp-resmlp", "drop0-mlp", "drop1.2-mlp", "preln-postln-mlp", "resmlp-postact",
                "dropx-mlp"):
        with pytest.raises(UsageError, match="'arch' parameter"):
            parse_arch(bad)


def test_branch_scale_expressions():
    assert branch_scale("1/sqrt(2L)", 50) == pytest.approx(0.1)
    assert branch_scale("L^(-1/2)", 16) == 0.25
    assert branch_scale("0.2", 7) == 0.2
    assert parse_branch_scale(" 1 / sqrt( L ) ", (4, 9)) == "1/sqrt(L)"
    assert parse_branch_scale(1.0) == "1"
    for bad in ("-1", "x", "1/0", "__import__('os')", "1/(L-1)", "sqrt(-L)", "1e999"):
        with pytest.raises(UsageError, match="'branch-scale' parameter"):
            parse_branch_scale(bad, (1, 10))


def test_config_records_arch_only_when_set():
    default = build_config({})
    assert "arch" not in default.to_dict() and "branch_scale" not in default.to_dict()
    cfg = build_config({"arch": "resmlp-preln", "branch_scale": "1/sqrt(L)"})
    assert (cfg.arch, cfg.branch_scale) == ("preln-resmlp", "1/sqrt(L)")
    assert build_config(cfg.to_dict()) == cfg
    with pytest.raises(UsageError, match="'branch-scale' parameter"):
        build_config({"branch_scale": "0.5"})
    with pytest.raises(UsageError, match="'widths' parameter"):
        build_config({"arch": "resmlp", "widths": "pyramid:256:64", "depth": "10"})
    assert build_config({"arch": "resmlp", "widths": "64,32,32,32"}).depth == (3,)
    assert "arch" in SweepConfig.keys()


def test_skipinit_sweep_is_ok_not_underflow():
    """A zero weight gradient that α = 0 makes exact is reported as such, not as an underflow."""
    import hevar

    run = hevar.sweep(act="relu", arch="resmlp", branch_scale=0, depth=5, width=16, sigma_w2=2, seeds=2, batch=4)
    assert list(run.summary["status"]) == ["ok"]
    assert run.layers["q"].notna().all() and run.layers["q_tilde"].notna().all()
    assert np.allclose(run.layers["q"], run.layers["q"].iloc[0])


def test_cli_arch_options(tmp_path):
    """`hevar sweep --arch` writes a run whose manifest records the architecture; `hevar theory
    --arch` prints the stack's factors; bad specs exit 2 with one line and nothing written."""
    import json

    from typer.testing import CliRunner

    from hevar.views.cli import app

    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(app, ["sweep", "--arch", "preln-resmlp", "--branch-scale", "1/sqrt(L)", "--depth", "4",
                                 "--width", "16", "--seeds", "2", "--batch", "4", "--sigma-w2", "2", "--out", str(out),
                                 "--no-plot"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert (config["arch"], config["branch_scale"]) == ("preln-resmlp", "1/sqrt(L)")
    plain = tmp_path / "plain"
    assert runner.invoke(app, ["sweep", "--depth", "3", "--width", "8", "--seeds", "1", "--batch", "2", "--sigma-w2",
                               "2", "--out", str(plain), "--no-plot"]).exit_code == 0
    assert "arch" not in json.loads((plain / "manifest.json").read_text())["config"]
    result = runner.invoke(app, ["theory", "--act", "relu", "--arch", "resmlp", "--depth", "20", "--sigma-w2", "2",
                                 "--json"])
    report = json.loads(result.output)
    assert report["log10_q_tilde_ratio"] == pytest.approx(19 * math.log10(2))
    for args in (["sweep", "--arch", "resnet"], ["sweep", "--branch-scale", "2"], ["theory", "--act", "relu",
                                                                                 "--arch", "mlp-x"]):
        bad = runner.invoke(app, args + ["--out", str(tmp_path / "bad")] if args[0] == "sweep" else args)
        assert bad.exit_code == 2 and bad.output.count("\n") == 1 and "Error:" in bad.output
    assert not (tmp_path / "bad").exists()
