"""One pass for a σ_w² grid (hevar.engine.rescale): the derived statistics are the stacked pass's.

Oracles: the stacked pass itself (``measure(..., share=False)``, every configuration run), the
straightforward one-configuration pass (``measure_reference``) for the identity z'ˡ = ∏r·zˡ, and
float64 for the float32 tolerance (the shared path may differ from the stacked one by no more than
float32's own rounding, measured as |float32 − float64| on the same draws).
"""

import numpy as np
import pytest

from hevar.blocks.network import build, mlp
from hevar.engine import init, passes, rescale
from hevar.engine.passes import Streams, measure, measure_reference
from hevar.meanfield.activations import parse_activation

FIELDS = ("log_q", "log_q_tilde", "log_grad_norm2", "log_delta_norm2", "log_act_norm2")
GRID = np.linspace(0.5, 4.0, 8)  # σ_w²·N


def _std(widths, grid=GRID, mode="fan_in"):
    return np.array([np.sqrt(init.layer_sigma_w2(s, widths, mode)) for s in grid])


def _both(act, widths, std, bias, batch, streams, dtype="float64", **kw):
    a = measure(act, widths, std, bias, batch, streams, dtype, share=False, **kw)
    b = measure(act, widths, std, bias, batch, streams, dtype, share=True, **kw)
    assert a.status == b.status
    assert np.array_equal(a.weight_mean_sq, b.weight_mean_sq)
    return a, b


def _blas_columns_are_position_free(dtype) -> bool:
    """Whether this BLAS computes a column of a product to the same bits alone and among others
    (then the shared path is bit-identical to the stacked one)."""
    rng = np.random.default_rng(0)
    G = rng.standard_normal((64, 64)).astype(dtype)
    h = np.abs(rng.standard_normal((64, 8))).astype(dtype)
    wide = G @ np.tile(h, (1, 5))
    return all(np.array_equal(G @ h, wide[:, 8 * k:8 * (k + 1)]) and np.array_equal(G.T @ h, (G.T @ np.tile(h, (1, 5)))[:, 8 * k:8 * (k + 1)])
               for k in range(5))


def _max_rel(a, b):
    """max |a/b − 1| over the linear statistics, from their logs (nan where both are nan)."""
    out = 0.0
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert np.array_equal(np.isnan(x), np.isnan(y)), f
        ok = np.isfinite(x)
        assert np.array_equal(x[~ok], y[~ok]), f
        out = max(out, float(np.max(np.abs(np.expm1(x[ok] - y[ok])), initial=0.0)))
    return out


@pytest.mark.parametrize("name", ["relu", "leaky_relu:0.1", "linear"])
@pytest.mark.parametrize("depth,width,batch", [(3, 64, 16), (50, 48, 8), (500, 16, 4)])
def test_float64_shared_pass_equals_the_stacked_pass(name, depth, width, batch):
    act = parse_activation(name)
    widths = (width,) * (depth + 1)
    a, b = _both(act, widths, _std(widths), np.zeros(len(GRID)), batch, Streams(3, 1))
    assert _max_rel(a, b) <= 1e-12
    if _blas_columns_are_position_free(np.float64):
        for f in FIELDS:
            assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True), f


@pytest.mark.parametrize("name", ["relu", "linear"])
@pytest.mark.parametrize("depth,width,batch", [(3, 64, 16), (50, 48, 8), (500, 16, 4)])
def test_float32_shared_pass_is_within_float32_rounding_of_the_stacked_pass(name, depth, width, batch):
    act = parse_activation(name)
    widths = (width,) * (depth + 1)
    std, bias, st = _std(widths), np.zeros(len(GRID)), Streams(3, 1)
    a, b = _both(act, widths, std, bias, batch, st, "float32")
    ref = measure(act, widths, std, bias, batch, st, "float64", share=False)
    rounding = max(_max_rel(a, ref), _max_rel(b, ref))  # what float32 costs, on these draws
    assert _max_rel(a, b) <= 2 * rounding + 1e-6
    assert _max_rel(a, b) < 1e-3


def test_the_identity_holds_against_the_straightforward_pass():
    """Derived configurations match an explicit one-configuration pass with their own weights."""
    act = parse_activation("relu")
    widths = (24, 32, 16, 32, 24, 40, 32)
    rng = np.random.default_rng(5)
    std = np.sqrt(rng.uniform(0.5, 4.0, (4, 6)) / np.array(widths[:-1]))  # any per-layer σ_{w,l}
    st = Streams(1, 0, "uniform")
    m = measure(act, widths, std, np.zeros(4), 8, st)
    assert rescale.members(mlp(act, 6), std, np.zeros(4)) == [0, 1, 2, 3]
    for k in range(4):
        ref = measure_reference(act, widths, std[k], 0.0, 8, st)
        for f, key in (("log_q", "q"), ("log_q_tilde", "q_tilde"), ("log_grad_norm2", "grad_norm2")):
            np.testing.assert_allclose(np.exp(getattr(m, f)[k]), ref[key], rtol=1e-10)


@pytest.mark.parametrize("mode", init.MODES)
@pytest.mark.parametrize("dist", ["normal", "uniform", "orthogonal"])
def test_width_profiles_fan_modes_and_distributions(mode, dist):
    widths = init.layer_widths("pyramid:96:12", 12)
    act = parse_activation("relu")
    a, b = _both(act, widths, _std(widths, mode=mode), np.zeros(len(GRID)), 8, Streams(0, 2, dist))
    assert _max_rel(a, b) <= 1e-12


def test_a_mixed_grid_keeps_its_order_and_the_biased_configurations_run_as_before():
    act = parse_activation("relu")
    widths = (32,) * 21
    std = np.concatenate([_std(widths)] * 3)
    bias = np.repeat([0.0, 0.1, 0.3], len(GRID))
    assert rescale.members(mlp(act, 20), std, bias) == list(range(len(GRID)))
    a, b = _both(act, widths, std, bias, 8, Streams(0, 0))
    assert _max_rel(a, b) <= 1e-12
    a, b = _both(act, widths, std, bias, 8, Streams(0, 0), memory_budget=1)  # one configuration per chunk
    assert _max_rel(a, b) <= 1e-12


def test_one_input_and_chunks_match():
    act = parse_activation("relu")
    widths = (32,) * 31
    a, b = _both(act, widths, _std(widths), np.zeros(len(GRID)), 1, Streams(0, 0))
    assert _max_rel(a, b) <= 1e-12


def test_only_the_group_runs(monkeypatch):
    """The pass runs one column block for the whole σ_w² grid, plus the configurations outside it."""
    ran = []
    real = passes._measure_chunk

    def spy(network, widths, weight_std, *args, **kwargs):
        ran.append(weight_std.shape[0])
        return real(network, widths, weight_std, *args, **kwargs)

    monkeypatch.setattr(passes, "_measure_chunk", spy)
    act = parse_activation("relu")
    widths = (16,) * 6
    std = np.concatenate([_std(widths)] * 2)
    measure(act, widths, std, np.repeat([0.0, 0.2], len(GRID)), 4, Streams(0, 0))
    assert ran == [1 + len(GRID)]


@pytest.mark.parametrize("name,arch", [("tanh", "mlp"), ("relu", "resmlp"), ("relu", "preln-mlp"),
                                       ("relu", "drop0.9-mlp")])
def test_other_networks_are_not_shared(name, arch):
    net = build(arch, parse_activation(name), 5)
    std = np.full((3, 5), 0.2)
    assert rescale.members(net, std, np.zeros(3)) == []


def test_zero_weight_variance_and_single_configurations_stay_in_the_stacked_pass():
    net = mlp(parse_activation("relu"), 4)
    assert rescale.members(net, np.full((1, 4), 0.3), np.zeros(1)) == []
    std = np.array([[0.3] * 4, [0.0] * 4, [0.5] * 4])
    assert rescale.members(net, std, np.zeros(3)) == [0, 2]


@pytest.mark.parametrize("act,sigma_b2", [("relu", (0.0,)), ("relu", (0.0, 0.1)), ("relu", (0.1,)), ("tanh", (0.0,)),
                                          ("linear", (0.2, 0.0))])
def test_the_guard_counts_the_configurations_the_engine_derives(act, sigma_b2):
    """resources.shared_configs (closed form, no grid built) agrees with what measure() derives."""
    import dataclasses

    from hevar.experiments import resources, sweep
    from hevar.experiments.config import SweepConfig

    cfg = dataclasses.replace(SweepConfig(), act=(act,), depth=(4,), sigma_w2=(0.5, 1.0, 2.0), sigma_b2=sigma_b2)
    task = sweep.plan(cfg)[0]
    widths = task.layer_widths
    pairs = sweep.grid(cfg)
    std = np.array([np.sqrt(init.layer_sigma_w2(s, widths, task.mode)) for s, _ in pairs])
    bias = np.array([np.sqrt(b) for _, b in pairs])
    net = sweep.network(cfg, parse_activation(act), 4)
    derived = max(len(rescale.members(net, std, bias)) - 1, 0)
    assert resources.shared_configs(cfg, net, widths) == derived
    assert derived == (2 if act != "tanh" and 0.0 in sigma_b2 else 0)


@pytest.mark.parametrize("script,expect", [("rescale.py", "ratio"), ("dtype_evidence.py", "chi_hat")])
def test_benchmarks_run_in_quick_mode(script, expect):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / script), "--quick"], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert expect in proc.stdout
