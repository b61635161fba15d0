"""Weight distributions (hevar.engine.init, Streams.dist): realised variances against closed forms
written out here (not taken from hevar), exact orthogonality, keyed and order-free sampling, and
the realised/nominal ratio the sweep reports."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hevar.engine import init
from hevar.experiments import sweep
from hevar.meanfield.activations import parse_activation
from hevar.experiments.config import build_config
from hevar.engine.passes import Streams, measure


def torch_trunc_var(sigma: float) -> float:
    """Var of N(0, σ²) cut at absolute ±2: σ²(1 − 2cϕ(c)/(2Φ(c) − 1)), c = 2/σ."""
    c = 2.0 / sigma
    phi = math.exp(-c * c / 2) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + math.erf(c / math.sqrt(2)))
    return sigma**2 * (1 - 2 * c * phi / (2 * Phi - 1))


def test_truncated_variance_closed_form_matches_scipy_and_keras_constant():
    for c in (0.5, 1.0, 2.0, 3.0, 8.0):
        assert init.truncated_variance(c) == pytest.approx(stats.truncnorm(-c, c).var(), rel=1e-12)
    assert float(init.truncated_variance(2.0)) == pytest.approx(0.7737413, abs=1e-7)
    assert math.sqrt(init.truncated_variance(2.0)) == pytest.approx(init.KERAS_STD, rel=1e-15)
    assert init.truncated_variance(np.inf) == 1.0


N_OUT, N_IN = 300, 400  # 120 000 entries: the sample mean square has sd ≈ 0.004


@pytest.mark.parametrize("dist, sigma, expected", [
    ("normal", 0.7, 0.49),
    ("uniform", 0.7, 0.49),
    ("truncnormal_keras", 0.7, 0.49),
    ("truncnormal", 0.05, 0.05**2),  # σ ≪ 1: the cut at ±2 = ±40σ does nothing
    ("truncnormal", 0.7, torch_trunc_var(0.7)),
    ("truncnormal", 1.0, torch_trunc_var(1.0)),  # 0.774: the cut at ±2σ without correction
    ("truncnormal", 2.0, torch_trunc_var(2.0)),  # 4·0.291: most of N(0, 4) is cut away
    ("orthogonal", 0.7, 0.49),
])
def test_realised_weight_variance_matches_closed_form(dist, sigma, expected):
    streams = Streams(5, 1, dist, (2.0 / sigma,))
    W = sigma * streams.weights(1, N_OUT, N_IN, np.float64)
    assert np.mean(W) == pytest.approx(0.0, abs=0.01 * sigma)
    assert np.mean(W**2) == pytest.approx(expected, rel=0.02)
    assert np.mean(W**2) / sigma**2 == pytest.approx(float(init.variance_ratio(dist, sigma)), rel=0.02)
    if dist == "truncnormal":
        assert np.max(np.abs(W)) <= 2.0  # PyTorch's cut is absolute
        if sigma >= 1:
            assert np.max(np.abs(W)) > 1.99
    if dist == "truncnormal_keras":
        assert np.max(np.abs(W)) <= 2.0 / init.KERAS_STD * sigma
    if dist == "uniform":
        assert np.max(np.abs(W)) <= math.sqrt(3) * sigma and np.max(np.abs(W)) > 0.99 * math.sqrt(3) * sigma


def test_truncated_samples_follow_the_truncated_law():
    G = Streams(2, 0, "truncnormal", (1.5,)).weights(1, 200, 100, np.float64).ravel()
    assert stats.kstest(G, stats.truncnorm(-1.5, 1.5).cdf).pvalue > 1e-3
    assert stats.kstest(G, stats.norm.cdf).pvalue < 1e-6  # and not a plain normal


@pytest.mark.parametrize("shape", [(64, 64), (96, 48), (48, 96)])
def test_orthogonal_matrices_are_orthogonal(shape):
    G = Streams(1, 3, "orthogonal").weights(2, *shape, np.float64)
    Q = G / math.sqrt(max(shape))
    gram = Q.T @ Q if shape[0] >= shape[1] else Q @ Q.T
    np.testing.assert_allclose(gram, np.eye(min(shape)), atol=1e-12)
    assert np.mean(G**2) == pytest.approx(1.0, abs=1e-12)  # nominal per-entry variance, exactly


def test_normal_draws_are_unchanged_and_other_dists_are_keyed_apart():
    legacy = np.random.default_rng(np.random.SeedSequence(3, spawn_key=(4, 0, 2, 5, 6))).standard_normal((5, 6))
    assert np.array_equal(Streams(3, 4).weights(2, 5, 6, np.float64), legacy)
    assert np.array_equal(Streams(3, 4, "normal").weights(2, 5, 6, np.float64), legacy)
    draws = {d: Streams(3, 4, d, (2.0, 2.0)).weights(2, 5, 6, np.float64) for d in init.DISTS}
    for d, a in draws.items():  # deterministic, and distinct from every other distribution
        assert np.array_equal(a, Streams(3, 4, d, (2.0, 2.0)).weights(2, 5, 6, np.float64))
        assert all(not np.array_equal(a, b) for e, b in draws.items() if e != d)


def test_keyed_sampling_does_not_depend_on_order_or_dtype_buffer():
    s = Streams(8, 2, "uniform")
    second_first = s.weights(2, 7, 5, np.float64)
    s.weights(1, 5, 3, np.float64)
    assert np.array_equal(second_first, s.weights(2, 7, 5, np.float64))
    buf = np.empty((7, 5), dtype=np.float32)
    assert s.weights(2, 7, 5, np.float32, out=buf) is buf
    assert np.array_equal(buf, second_first.astype(np.float32))


def test_torch_truncation_shares_its_uniforms_across_cuts():
    """Common random numbers at every σ: the cut is a monotone map of the same uniforms."""
    a = Streams(1, 0, "truncnormal", (1.0,)).weights(1, 50, 40, np.float64)
    b = Streams(1, 0, "truncnormal", (3.0,)).weights(1, 50, 40, np.float64)
    assert not np.array_equal(a, b)
    assert np.array_equal(np.argsort(a, axis=None), np.argsort(b, axis=None))


def test_engine_reports_the_mean_square_of_its_draws():
    act = parse_activation("relu")
    widths = (6, 5, 4)
    streams = Streams(4, 0, "uniform")
    m = measure(act, widths, np.full((2, 2), 0.3), np.zeros(2), 3, streams)
    expected = [np.mean(streams.weights(l, widths[l], widths[l - 1], np.float64) ** 2) for l in (1, 2)]
    np.testing.assert_allclose(m.weight_mean_sq, [expected, expected], rtol=1e-12)


def _run(**flags):
    cfg = build_config({"act": "relu", "seeds": "2", "batch": "4", "width": "64", "depth": "3", **flags})
    results = {t: sweep.run_task(cfg, t) for t in sweep.plan(cfg)}
    return cfg, results, sweep.reduce(cfg, results)


def test_sweep_reports_realised_ratio_per_sigma_for_torch_truncation():
    # width 64: σ_w²·N = 16, 64, 256 give σ_w = 0.5, 1, 2, cut at ±4σ, ±2σ, ±1σ.
    _, _, (_, summary, _) = _run(dist="normal,truncnormal", **{"sigma_w2": "16,64,256"})
    by = {(r["dist"], r["sigma_w2_n"]): r["weight_var_realised_ratio"] for r in summary}
    normal = [by[("normal", s)] for s in (16.0, 64.0, 256.0)]
    assert normal[0] == normal[1] == normal[2] and normal[0] == pytest.approx(1.0, abs=0.03)  # one shared draw
    for s in (16.0, 64.0, 256.0):
        sigma = math.sqrt(s / 64)
        assert by[("truncnormal", s)] == pytest.approx(torch_trunc_var(sigma) / sigma**2, rel=0.03)


def test_torch_truncation_groups_configurations_by_their_sigma():
    cfg, results, _ = _run(dist="truncnormal", sigma_w2="16,64", sigma_b2="0,0.5")
    task = next(t for t in results if t.seed_index == 1)
    m = results[task]
    act = parse_activation("relu")
    for k, (s, b) in enumerate(sweep.grid(cfg)):
        std = math.sqrt(s / 64)
        alone = measure(act, (64,) * 4, np.full((1, 3), std), np.array([math.sqrt(b)]), cfg.batch,
                        Streams(cfg.seed, 1, "truncnormal", (2.0 / std,) * 3))
        np.testing.assert_allclose(m.log_q_tilde[k], alone.log_q_tilde[0], rtol=1e-12)
        np.testing.assert_allclose(m.log_q[k], alone.log_q[0], rtol=1e-12)
        assert m.weight_mean_sq[k, 0] == alone.weight_mean_sq[0, 0]
