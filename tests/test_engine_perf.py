"""The optimised engine against its oracle, its memory model, and the benchmark's smoke run.

The oracle is :func:`hevar.engine.passes.measure_reference` (explicit weights, every zˡ and δˡ stored,
no rescaling) on the same random numbers. Timings are not asserted here: they belong to
``benchmarks/engine.py``, which this file only runs in its quick mode.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hevar.meanfield.activations import parse_activation
from hevar.engine import passes
from hevar.engine.passes import Streams, measure, measure_reference, memory_estimate

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (7, 16, 9, 16, 12, 16, 16, 10, 16, 16, 16, 8)  # L = 11, uneven widths
SIGMA_W2_N = np.array([0.7, 2.0, 3.1])
BIAS_STD = np.array([0.0, 0.4, 0.0])
TOL = {"float64": 1e-10, "float32": 1e-4}


def _configs(widths, sigma_w2_n=SIGMA_W2_N):
    fan_in = np.array(widths[:-1], dtype=float)
    return np.sqrt(sigma_w2_n[:, None] / fan_in[None, :])  # (K, L)


def _assert_matches_reference(m, act, widths, std, bias_std, batch, streams, dtype):
    rtol = TOL[dtype]
    for k in range(std.shape[0]):
        ref = measure_reference(act, widths, std[k], bias_std[k], batch, streams, dtype)
        assert m.status[k] == "ok"
        np.testing.assert_allclose(np.exp(m.log_q[k]), ref["q"], rtol=rtol)
        np.testing.assert_allclose(np.exp(m.log_q_tilde[k]), ref["q_tilde"], rtol=rtol)
        np.testing.assert_allclose(np.exp(m.log_grad_norm2[k]), ref["grad_norm2"], rtol=rtol)
        hs = [ref["x"]] + [act.phi(z) for z in ref["z"][:-1]]
        act_norm = [np.mean(np.sum(h.astype(float) ** 2, axis=0)) for h in hs]
        delta_norm = [np.mean(np.sum(d.astype(float) ** 2, axis=0)) for d in ref["delta"]]
        np.testing.assert_allclose(np.exp(m.log_act_norm2[k]), act_norm, rtol=rtol)
        np.testing.assert_allclose(np.exp(m.log_delta_norm2[k]), delta_norm, rtol=rtol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["relu", "tanh", "leaky_relu:0.2", "linear"])
@pytest.mark.parametrize("mode", ["stacked", "chunked", "regenerated"])
def test_optimised_pass_equals_reference(name, dtype, mode):
    act = parse_activation(name)
    std = _configs(WIDTHS)
    kwargs = {"stacked": {}, "chunked": {"memory_budget": 1}, "regenerated": {"weight_budget": 0}}[mode]
    m = measure(act, WIDTHS, std, BIAS_STD, 5, Streams(3, 1), dtype, **kwargs)
    _assert_matches_reference(m, act, WIDTHS, std, BIAS_STD, 5, Streams(3, 1), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["relu", "leaky_relu:0.1"])
def test_renormalisation_band_is_crossed_and_invisible(name, dtype):
    """Deep enough that the stored arrays leave the band (they grow by ~√N per layer unscaled)."""
    act = parse_activation(name)
    widths = (32,) * 41
    std = _configs(widths, np.array([2.0, 1.2]))
    m = measure(act, widths, std, np.zeros(2), 6, Streams(8, 0), dtype)
    _assert_matches_reference(m, act, widths, std, np.zeros(2), 6, Streams(8, 0), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["relu", "leaky_relu:0.1", "linear"])
def test_renormalisation_on_every_layer_is_invisible(name, dtype, monkeypatch):
    """A narrow band forces renormalisation on nearly every layer, forward and backward, in both
    dtypes (the default float64 band is rarely crossed by test-sized nets)."""
    from hevar.engine import passes as engine

    monkeypatch.setitem(engine._RESCALE_BAND, np.dtype(dtype), 0.5)
    act = parse_activation(name)
    widths = (24,) * 13
    std = _configs(widths, np.array([0.6, 2.0, 3.5]))
    bias = np.array([0.0, 0.3, 0.0])
    m = measure(act, widths, std, bias, 5, Streams(4, 2), dtype)
    _assert_matches_reference(m, act, widths, std, bias, 5, Streams(4, 2), dtype)


def test_chunks_and_regeneration_give_the_same_numbers_as_one_pass():
    act = parse_activation("relu")
    std = _configs(WIDTHS, np.linspace(0.5, 4, 8))
    bias = np.linspace(0, 0.5, 8)
    one = measure(act, WIDTHS, std, bias, 4, Streams(2, 5))
    for kwargs in ({"memory_budget": 1}, {"weight_budget": 0}, {"memory_budget": 1, "weight_budget": 0},
                   {"memory_budget": memory_estimate(WIDTHS, 3, 4, act=act, memory_budget=None)}):
        other = measure(act, WIDTHS, std, bias, 4, Streams(2, 5), **kwargs)
        for field in ("log_q", "log_q_tilde", "log_grad_norm2", "log_delta_norm2", "log_act_norm2"):
            np.testing.assert_allclose(getattr(other, field), getattr(one, field), rtol=1e-12, atol=1e-12)
        assert other.status == one.status


def test_an_activation_that_only_borrows_a_name_gets_the_generic_kernel():
    """The compact kernels are picked by name but only used if they reproduce φ and φ' exactly."""
    softplus = replace(parse_activation("tanh"), name="relu", phi=lambda z: np.logaddexp(0, z),
                       dphi=lambda z: 1 / (1 + np.exp(-z)), homogeneous=False)
    std = _configs(WIDTHS)
    m = measure(softplus, WIDTHS, std, BIAS_STD, 5, Streams(4, 0))
    _assert_matches_reference(m, softplus, WIDTHS, std, BIAS_STD, 5, Streams(4, 0), "float64")


def test_streams_fill_a_buffer_with_the_same_numbers():
    s = Streams(9, 2)
    buf = np.empty((5, 7), dtype=np.float32)
    assert s.weights(3, 5, 7, np.float32, out=buf) is buf
    assert np.array_equal(buf, s.weights(3, 5, 7, np.float32))
    with pytest.raises(ValueError):
        s.weights(3, 5, 7, np.float64, out=buf)


def _traced_peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name,dtype,K,weight_budget,share", [
    ("relu", "float64", 4, 512 * 2**20, True),
    ("relu", "float64", 4, 512 * 2**20, False),
    ("relu", "float64", 40, 0, True),  # one pass, 39 configurations derived from it
    ("relu", "float32", 1, 0, True),
    ("tanh", "float64", 3, 2**20, True),
    ("linear", "float32", 2, 512 * 2**20, True),
])
def test_memory_estimate_bounds_the_measured_peak(name, dtype, K, weight_budget, share):
    """tracemalloc sees every NumPy allocation; the estimate is an upper bound within 25 %. With the
    shared pass (hevar.engine.rescale) the estimate counts the configurations that run and the
    records of those derived from them."""
    from hevar.blocks.network import mlp
    from hevar.engine import rescale

    act = parse_activation(name)
    widths = (96,) * 31
    std = _configs(widths, np.linspace(1, 2.5, K))
    passes._POOL.keep_only(set())  # weight buffers of an earlier case would be reused outside the trace
    peak = _traced_peak(lambda: measure(act, widths, std, np.zeros(K), 64, Streams(0, 0), dtype, weight_budget,
                                        share=share))
    group = rescale.members(mlp(act, 30), std, np.zeros(K)) if share else []
    estimate = memory_estimate(widths, K, 64, dtype, weight_budget, act=act, n_shared=max(len(group) - 1, 0))
    assert 0.75 * estimate <= peak <= estimate


def test_memory_budget_chunks_the_configurations():
    act = parse_activation("tanh")
    widths = (128,) * 21
    std = _configs(widths, np.linspace(0.5, 2.5, 8))
    budget = memory_estimate(widths, 2, 64, act=act, weight_budget=0, memory_budget=None) + 2**16
    assert memory_estimate(widths, 8, 64, act=act, memory_budget=None) > budget  # a chunk is needed
    peak = _traced_peak(lambda: measure(act, widths, std, np.zeros(8), 64, Streams(0, 0), memory_budget=budget))
    assert peak <= budget
    assert memory_estimate(widths, 8, 64, act=act, memory_budget=budget) <= budget


def test_benchmark_runs_in_quick_mode(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "engine.py"), "--quick", "--no-torch",
                           "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["cases"] and result["sweep"] and result["memory"]
    case = result["cases"][0]
    assert case["engine"] > 0 and case["limit"] == pytest.approx(case["blas"] + case["sampling"])
    assert "engine_over_limit" in case and "reference_over_engine" in result["sweep"]


def test_pooled_weight_buffers_change_no_number_even_across_threads():
    """Kept weights are drawn into buffers reused from earlier passes (fewer page faults): a pass
    gives the same numbers first, after other passes, and while another runs in a second thread."""
    import threading

    act = parse_activation("tanh")
    widths = (48,) * 9
    std = _configs(widths, np.array([0.8, 1.5]))

    def run(seed):
        return measure(act, widths, std, np.array([0.0, 0.1]), 6, Streams(3, seed))

    first = run(0)
    run(1)
    results = {}
    threads = [threading.Thread(target=lambda s=s: results.__setitem__(s, run(s))) for s in (0, 1, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for again in (run(0), results[0]):
        for field in ("log_q", "log_q_tilde", "log_grad_norm2", "log_delta_norm2", "log_act_norm2"):
            np.testing.assert_array_equal(getattr(again, field), getattr(first, field))


@pytest.mark.parametrize("dist", ["normal", "uniform", "orthogonal"])
def test_threaded_prefetch_of_kept_weights_changes_no_number(dist, monkeypatch):
    from hevar.engine import passes as engine

    act = parse_activation("relu")
    widths = (40, 48, 40, 56, 40, 40, 48)
    std = _configs(widths, np.array([1.0, 2.0]))
    results = []
    for threads in (1, 3):
        monkeypatch.setattr(engine, "_sampling_threads", lambda t=threads: t)
        results.append(measure(act, widths, std, np.zeros(2), 5, Streams(6, 1, dist)))
    for field in ("log_q", "log_q_tilde", "log_grad_norm2", "log_delta_norm2", "log_act_norm2", "weight_mean_sq"):
        np.testing.assert_array_equal(getattr(results[1], field), getattr(results[0], field))
