"""Signal-propagation statistics (issue 12 item 4) against oracles: an independent NumPy forward on the
same Streams draws, Monte Carlo of the mean-field theory with seed-derived tolerances, and the files
(signalprop.csv, plots/signalprop.png) that exist for residual runs only."""

import math

import numpy as np
import pytest

from hevar.blocks.network import build
from hevar.blocks import signalprop as sp_theory
from hevar.engine.passes import Streams, measure
from hevar.meanfield.activations import parse_activation


def _ln(z):
    c = z - z.mean(axis=0, keepdims=True)
    return c / np.sqrt(np.mean(c * c, axis=0, keepdims=True))


def direct(arch, act, widths, std, bias_std, alpha, batch, streams):
    """The three statistics per layer, written out: z¹ = W¹x + b¹, zˡ = zˡ⁻¹ + α(Wˡφ(·) + bˡ)
    with the pre-/post-LN where the spec says so; Gˡ, x and bias directions from the same Streams."""
    L = len(widths) - 1
    x = streams.inputs(widths[0], batch, np.float64)
    z = std[0] * streams.weights(1, widths[1], widths[0], np.float64) @ x + bias_std * streams.bias(1, widths[1],
                                                                                                     np.float64)[:, None]
    out = {"mean2": [], "var": [], "branch": [math.nan]}
    zs = [z]
    for l in range(2, L + 1):
        W = std[l - 1] * streams.weights(l, widths[l], widths[l - 1], np.float64)
        b = bias_std * streams.bias(l, widths[l], np.float64)
        a = _ln(z) if arch.startswith("preln") else z
        branch = alpha * (W @ act.phi(a) + b[:, None])
        y = z + branch
        z = _ln(y) if arch.startswith("postln") else y
        zs.append(z)
        out["branch"].append(np.mean(branch ** 2))
    for z in zs:
        m = z.mean(axis=1)
        out["mean2"].append(np.mean(m ** 2))
        out["var"].append(np.mean(z.var(axis=1)))
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("arch", ["resmlp", "preln-resmlp", "postln-resmlp"])
@pytest.mark.parametrize("act_name", ["relu", "tanh"])
def test_engine_statistics_equal_a_direct_forward(arch, act_name):
    """Three configurations stacked on one draw (scaled frame for relu, unscaled for tanh) give each
    configuration's statistics of the written-out forward, to rounding."""
    act = parse_activation(act_name)
    widths = (6, 7, 7, 7, 7)
    L, batch, alpha = len(widths) - 1, 5, 0.6
    net = build(arch, act, L, str(alpha))
    std = np.array([[0.5, 0.6, 0.7, 0.4], [0.9, 0.3, 0.5, 0.8], [0.2, 0.4, 0.6, 0.5]])
    bias = np.array([0.0, 0.4, 0.7])
    streams = Streams(5, 1)
    m = measure(act, widths, std, bias, batch, streams, network=net, signalprop=True)
    for k in range(3):
        ref = direct(arch, act, widths, std[k], bias[k], alpha, batch, streams)
        np.testing.assert_allclose(np.exp(m.signalprop["sp_log_mean2"][k]), ref["mean2"], rtol=1e-10)
        np.testing.assert_allclose(np.exp(m.signalprop["sp_log_var"][k]), ref["var"], rtol=1e-10)
        np.testing.assert_allclose(np.exp(m.signalprop["sp_log_branch"][k]), ref["branch"], rtol=1e-10)
        # M² + V is the mean square: the engine's own qˡ
        np.testing.assert_allclose(ref["mean2"] + ref["var"], np.exp(m.log_q[k]), rtol=1e-10)


def test_recording_is_opt_in_and_changes_nothing_else():
    act = parse_activation("relu")
    widths = (8, 8, 8, 8)
    net = build("resmlp", act, 3, "0.5")
    std, bias = np.array([[0.5, 0.4, 0.3], [0.6, 0.5, 0.2]]), np.array([0.0, 0.3])
    plain = measure(act, widths, std, bias, 4, Streams(3, 0), network=net)
    with_sp = measure(act, widths, std, bias, 4, Streams(3, 0), network=net, signalprop=True)
    assert plain.signalprop is None
    for f in ("log_q", "log_q_tilde", "log_grad_norm2", "log_delta_norm2", "log_act_norm2"):
        assert np.array_equal(getattr(plain, f), getattr(with_sp, f)), f


def test_deep_plain_stack_is_recorded_in_log_scale():
    """α = 1 at σ_w²N = 2 doubles q per block: at L = 1600 qˡ ≈ 2^1600 overflows float64, the log records don't."""
    act = parse_activation("relu")
    L, N = 1600, 32
    net = build("resmlp", act, L, "1")
    m = measure(act, (N,) * (L + 1), np.full((1, L), math.sqrt(2 / N)), np.zeros(1), 4, Streams(0, 0), network=net,
                signalprop=True)
    log_total = np.logaddexp(m.signalprop["sp_log_mean2"][0], m.signalprop["sp_log_var"][0])
    np.testing.assert_allclose(log_total, m.log_q[0], rtol=1e-9)
    assert np.all(np.isfinite(m.signalprop["sp_log_branch"][0, 1:]))
    assert m.log_q[0, -1] / math.log(10) > 320  # past float64


MC_CASES = [  # (arch, act, alpha, sigma_b2)
    ("resmlp", "relu", 0.5, 0.0),
    ("resmlp", "relu", 0.4, 0.2),
    ("preln-resmlp", "relu", 0.7, 0.0),
    ("resmlp", "tanh", 0.8, 0.0),
    ("drop0.7-resmlp", "relu", 0.6, 0.0),  # the two inputs' masks are independent: E[h_a h_b] not divided by p
    ("postln-resmlp", "relu", 0.8, 0.1),
]


@pytest.mark.parametrize("arch,act_name,alpha,sigma_b2", MC_CASES)
def test_statistics_match_mean_field_theory_by_monte_carlo(arch, act_name, alpha, sigma_b2):
    """Seed means of M²ˡ, Vˡ and Rˡ against theory within 4 standard errors of the seed mean plus the
    O(l/N) finite-width bias of mean-field theory; and, where cˡ > 0, far from the naive q/B."""
    act = parse_activation(act_name)
    L, N, B, S, s = 8, 384, 8, 24, 2.0
    net = build(arch, act, L, str(alpha))
    std = np.full((1, L), math.sqrt(s / N))
    vals = {k: [] for k in ("sp_log_mean2", "sp_log_var", "sp_log_branch")}
    for seed in range(S):
        m = measure(act, (N,) * (L + 1), std, np.array([math.sqrt(sigma_b2)]), B, Streams(17, seed), network=net,
                    signalprop=True)
        for k in vals:
            vals[k].append(np.exp(m.signalprop[k][0]))
    th = sp_theory.theory(net, np.full(L, s), sigma_b2, np.full(L + 1, N), B)
    layers = np.arange(1, L + 1)
    for key, th_key in (("sp_log_mean2", "log_mean2"), ("sp_log_var", "log_var"), ("sp_log_branch", "log_branch")):
        v = np.array(vals[key])
        mean, sem = v.mean(axis=0), v.std(axis=0, ddof=1) / math.sqrt(S)
        t = np.exp(th[th_key])
        ok = np.isfinite(t)
        tol = 4 * sem + t * 2 * layers / N
        assert np.all(np.abs(mean - t)[ok] <= tol[ok]), (key, mean, t, tol)
    if act_name == "relu":  # the mean shift: channel mean² far above q/B
        naive = np.exp(th["log_q"]) / B
        mean2 = np.array(vals["sp_log_mean2"]).mean(axis=0)
        assert mean2[-1] > 2 * naive[-1]
        assert th["c"][-1] > 0.2


def test_theory_closed_form_for_relu_resmlp():
    """Without bias: c¹ = 0, then kˡ = kˡ⁻¹ + α²s·qˡ⁻¹·K(c) with ReLU's arc-cosine K at unit variance."""
    act = parse_activation("relu")
    L, alpha, s = 5, 0.5, 2.0
    th = sp_theory.theory(build("resmlp", act, L, str(alpha)), np.full(L, s), 0.0, np.full(L + 1, 64), 4)
    q, k = [s], [0.0]
    for _ in range(1, L):
        c = k[-1] / q[-1]
        theta = math.acos(c)
        K = (math.sin(theta) + (math.pi - theta) * c) / (2 * math.pi)
        k.append(k[-1] + alpha ** 2 * s * q[-1] * K)
        q.append(q[-1] + alpha ** 2 * s * q[-1] / 2)
    np.testing.assert_allclose(th["c"], np.array(k) / np.array(q), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.exp(th["log_mean2"]), np.array(q) * (1 + 3 * np.array(k) / np.array(q)) / 4,
                               rtol=1e-12)


def test_signalprop_files_exist_for_residual_runs_only(tmp_path):
    import hevar

    res = hevar.sweep(act="relu", arch="resmlp", branch_scale="1/sqrt(L)", depth=6, width=32, sigma_w2=[1.5, 2],
                      seeds=3, batch=8, out=tmp_path / "res", plot=True)
    csv = tmp_path / "res" / "signalprop.csv"
    assert csv.exists() and (tmp_path / "res" / "plots" / "signalprop.png").exists()
    frame = res.signalprop
    assert len(frame) == 2 * 6 and frame["channel_var"].notna().all()
    assert frame.loc[frame["layer"] == 1, "branch_var"].isna().all()
    assert frame.loc[frame["layer"] > 1, "branch_var_theory"].notna().all()
    import matplotlib

    matplotlib.use("Agg")
    assert res.plot("signalprop", quantity="branch_var") is not None
    plain = hevar.sweep(act="relu", depth=4, width=16, sigma_w2=2, seeds=2, batch=4, out=tmp_path / "plain", plot=True)
    assert not (tmp_path / "plain" / "signalprop.csv").exists()
    assert not (tmp_path / "plain" / "plots" / "signalprop.png").exists()
    assert (tmp_path / "plain" / "plots" / "q.png").exists()
    assert plain.signalprop is None or len(plain.signalprop) == 0


def test_resumed_run_reads_the_statistics_back_from_its_points(tmp_path):
    """The three arrays travel in the point files: a resume recomputes nothing and writes the same bytes."""
    import hevar

    out = tmp_path / "run"
    hevar.sweep(act="relu", arch="preln-resmlp", branch_scale="1/sqrt(2L)", depth=5, width=16, sigma_w2=2, seeds=2,
                batch=4, out=out)
    before = (out / "signalprop.csv").read_bytes()
    (out / "signalprop.csv").unlink()
    (out / "layers.csv").unlink()
    hevar.sweep(out=out, resume=True)
    assert (out / "signalprop.csv").read_bytes() == before
    memory = hevar.sweep(act="relu", arch="preln-resmlp", branch_scale="1/sqrt(2L)", depth=5, width=16, sigma_w2=2,
                         seeds=2, batch=4)
    np.testing.assert_array_equal(memory.signalprop["log10_channel_var"], hevar.load(out).signalprop["log10_channel_var"])
