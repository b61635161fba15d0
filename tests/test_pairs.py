"""Measured pair correlations: the stacked pass against a straightforward one, exact inputs, and wide
networks against the mean-field cˡ with tolerances from the spread over seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hevar.engine.pairs import measure_correlations, pair_inputs
from hevar.engine.passes import Streams
from hevar.meanfield import correlations as cr
from hevar.meanfield.activations import parse_activation


def straightforward(act, widths, std, b_std, x, streams):
    """Every layer explicitly, one configuration, no rescaling: cˡ per pair, shape (L, P)."""
    h, out = x, []
    for l in range(len(widths) - 1):
        W = std[l] * streams.weights(l + 1, widths[l + 1], widths[l], np.dtype(float))
        z = W @ h + b_std * streams.bias(l + 1, widths[l + 1], np.dtype(float))[:, None]
        z1, z2 = z[:, 0::2], z[:, 1::2]
        out.append(np.sum(z1 * z2, axis=0) / np.sqrt(np.sum(z1 * z1, axis=0) * np.sum(z2 * z2, axis=0)))
        h = act.phi(z)
    return np.array(out)


@pytest.mark.parametrize("name,dist", [("relu", "normal"), ("tanh", "normal"), ("relu", "orthogonal"),
                                       ("leaky_relu:0.2", "uniform")])
def test_stacked_pass_matches_a_straightforward_one(name, dist):
    act = parse_activation(name)
    widths = (6, 9, 7, 8, 5)
    std = np.array([[0.5, 0.6, 0.4, 0.7], [1.3, 1.1, 0.9, 1.2], [0.2, 0.3, 0.25, 0.3]])
    b_std = np.array([0.3, 0.0, 0.7])
    streams = Streams(4, 1, dist)
    m = measure_correlations(act, widths, std, b_std, 3, -0.35, streams)
    x = pair_inputs(streams, widths[0], 3, -0.35)
    for k in range(3):
        ref = straightforward(act, widths, std[k], b_std[k], x, streams)
        np.testing.assert_allclose(m.c_pairs[k], ref, rtol=0, atol=1e-13)
        np.testing.assert_allclose(m.one_minus_c[k], (1 - ref).mean(axis=1), rtol=1e-9, atol=1e-15)
    assert m.status == ("ok",) * 3 and m.c.shape == (3, 4) and m.c_sd.shape == (3, 4)


def test_pair_inputs_have_the_exact_correlation_and_shared_directions():
    streams = Streams(0, 2)
    for c0 in (-1.0, -0.2, 0.0, 0.7, 1.0):
        x = pair_inputs(streams, 50, 4, c0, q_in=2.0)
        x1, x2 = x[:, 0::2], x[:, 1::2]
        np.testing.assert_allclose(np.sum(x1 * x1, axis=0), 100.0, rtol=1e-14)
        np.testing.assert_allclose(np.sum(x2 * x2, axis=0), 100.0, rtol=1e-14)
        np.testing.assert_allclose(np.sum(x1 * x2, axis=0), 100.0 * c0, atol=1e-12)
    a, b = pair_inputs(streams, 50, 4, 0.1), pair_inputs(streams, 50, 4, 0.9)
    np.testing.assert_array_equal(a[:, 0::2], b[:, 0::2])  # the first input of each pair does not depend on c⁰
    assert not np.allclose(pair_inputs(Streams(0, 3), 50, 4, 0.1), a)


def _seeds(act, s_values, sigma_b2, width, depth, n_pairs, c0, n_seeds):
    std = np.array([[math.sqrt(s / width)] * depth for s in s_values])
    b_std = np.full(len(s_values), math.sqrt(sigma_b2))
    return np.array([measure_correlations(act, (width,) * (depth + 1), std, b_std, n_pairs, c0, Streams(0, i)).c
                     for i in range(n_seeds)])  # (seeds, K, L)


@pytest.mark.parametrize("name,s_values,sigma_b2", [("tanh", (1.5, 2.5), 0.05), ("relu", (1.5, 2.0), 0.1)])
def test_wide_network_follows_the_mean_field_c_trajectory(name, s_values, sigma_b2):
    act = parse_activation(name)
    width, depth, c0 = 512, 12, 0.3
    c = _seeds(act, s_values, sigma_b2, width, depth, 8, c0, 6)
    mean, se = c.mean(axis=0), c.std(axis=0, ddof=1) / math.sqrt(c.shape[0])
    for k, s in enumerate(s_values):
        theory = cr.c_trajectory(act, s, sigma_b2, 1.0, c0, depth)
        # 4.5 s.e. (a t-quantile for 5 degrees of freedom at 12 layers) plus the O(1/N) finite-width bias
        assert np.all(np.abs(mean[k] - theory) < 4.5 * se[k] + 1.0 / width), (s, mean[k] - theory, se[k])
        wrong = cr.c_trajectory(act, s, 2 * sigma_b2, 1.0, c0, depth)  # the test can tell σ_b² from 2σ_b²
        assert np.any(np.abs(mean[k] - wrong) > 4.5 * se[k] + 1.0 / width)


def test_one_minus_c_is_resolved_deep_in_the_ordered_phase():
    """tanh at σ_w²·N = 1, σ_b² = 0.05 (ξ_c = 3.63): 1 - cˡ falls to ~1e-18 by layer 150, below
    float64's 1 - ⟨ẑ¹, ẑ²⟩ floor of 1e-16, and its measured decay length is the theory's ξ_c within
    the spread over seeds (measured: 3.56 ± 0.07 over 4 seeds at N = 256, 3.59 ± 0.02 at N = 1024: a
    product of random matrices grows at a log-rate O(1/N) below the log of its mean rate, Jensen)."""
    act = parse_activation("tanh")
    s, b, width, depth = 1.0, 0.05, 256, 150
    std = np.full((1, depth), math.sqrt(s / width))
    layers = np.arange(50, depth + 1)
    xi_hat = []
    for seed in range(4):
        m = measure_correlations(act, (width,) * (depth + 1), std, np.array([math.sqrt(b)]), 2, 0.3, Streams(1, seed))
        gap = m.one_minus_c[0]
        assert gap[-1] < 1e-17 and np.all(gap > 0)
        xi_hat.append(-1 / np.polyfit(layers, np.log(gap[layers - 1]), 1)[0])
    se = np.std(xi_hat, ddof=1) / 2
    assert abs(np.mean(xi_hat) - cr.correlation_terms(act, s, b).xi_c) < 4 * se + 0.02


def test_overflow_is_recorded_not_raised():
    act = parse_activation("softplus")  # unbounded, not homogeneous: runs unscaled
    std = np.array([[1.0] * 6, [1e90] * 6])
    m = measure_correlations(act, (8,) * 7, std, np.array([0.0, 0.0]), 2, 0.5, Streams(0, 0))
    assert m.status[0] == "ok" and m.status[1].startswith("overflow at layer")
    layer = int(m.status[1].rsplit(" ", 1)[1])
    assert np.all(np.isfinite(m.c[1, : layer - 1])) and np.all(np.isnan(m.c[1, layer - 1:]))
    assert np.all(np.isfinite(m.c[0]))
