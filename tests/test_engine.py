"""The engine against independent oracles: finite differences of J, and the straightforward pass."""

import numpy as np
import pytest

from hevar.meanfield.activations import parse_activation
from hevar.engine.passes import Streams, measure, measure_reference

WIDTHS = (4, 5, 6, 3)
BATCH = 3


def forward_J(act, Ws, bs, x, g, layer=None, z_override=None):
    """Per-input J_b = g_bᵀ zᴸ_b; optionally replace zˡ (0-based ``layer``) by ``z_override``."""
    h = x
    for l, (W, b) in enumerate(zip(Ws, bs)):
        z = W @ h + b[:, None]
        if layer == l:
            z = z_override
        h = act.phi(z)
    return np.sum(g * z, axis=0)


def weight_gradient_fd(act, Ws, bs, x, g, l, eps=1e-6):
    """∂J_b/∂Wˡ by central differences, shape (B, N_l, N_{l-1})."""
    grad = np.zeros((x.shape[1],) + Ws[l].shape)
    for i in range(Ws[l].shape[0]):
        for j in range(Ws[l].shape[1]):
            plus = [W.copy() for W in Ws]
            minus = [W.copy() for W in Ws]
            plus[l][i, j] += eps
            minus[l][i, j] -= eps
            grad[:, i, j] = (forward_J(act, plus, bs, x, g) - forward_J(act, minus, bs, x, g)) / (2 * eps)
    return grad


def delta_fd(act, ref, l, eps=1e-6):
    """δˡ_b = ∂J_b/∂zˡ by central differences on zˡ itself."""
    z = ref["z"][l]
    out = np.zeros_like(z)
    for i in range(z.shape[0]):
        zp, zm = z.copy(), z.copy()
        zp[i] += eps
        zm[i] -= eps
        jp = forward_J(act, ref["weights"], ref["biases"], ref["x"], ref["g"], l, zp)
        jm = forward_J(act, ref["weights"], ref["biases"], ref["x"], ref["g"], l, zm)
        out[i] = (jp - jm) / (2 * eps)
    return out


@pytest.mark.parametrize("name", ["relu", "tanh", "leaky_relu:0.2", "linear"])
def test_gradients_match_finite_differences(name):
    act = parse_activation(name)
    std = np.array([0.7, 0.5, 0.6])
    ref = measure_reference(act, WIDTHS, std, 0.3, BATCH, Streams(11, 2))
    m = measure(act, WIDTHS, std[None, :], np.array([0.3]), BATCH, Streams(11, 2))
    for l in range(len(WIDTHS) - 1):
        fd = delta_fd(act, ref, l)
        np.testing.assert_allclose(ref["delta"][l], fd, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(np.exp(m.log_q_tilde[0, l]), np.mean(fd**2), rtol=1e-6)
        gw = weight_gradient_fd(act, ref["weights"], ref["biases"], ref["x"], ref["g"], l)
        fd_norm2 = np.mean(np.sum(gw**2, axis=(1, 2)))
        np.testing.assert_allclose(np.exp(m.log_grad_norm2[0, l]), fd_norm2, rtol=1e-6)


@pytest.mark.parametrize("name", ["relu", "tanh", "leaky_relu:0.2", "linear"])
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 2e-4)])
def test_stacked_pass_equals_reference(name, dtype, rtol):
    """Three configurations stacked on one draw give each configuration's straightforward pass."""
    act = parse_activation(name)
    widths = (6, 8, 7, 9, 5, 6)
    std = np.array([[0.3] * 5, [0.45, 0.5, 0.55, 0.6, 0.4], [0.8] * 5])
    bstd = np.array([0.0, 0.2, 0.5])
    m = measure(act, widths, std, bstd, 4, Streams(5, 0), dtype)
    for k in range(3):
        ref = measure_reference(act, widths, std[k], bstd[k], 4, Streams(5, 0), dtype)
        np.testing.assert_allclose(np.exp(m.log_q[k]), ref["q"], rtol=rtol)
        np.testing.assert_allclose(np.exp(m.log_q_tilde[k]), ref["q_tilde"], rtol=rtol)
        np.testing.assert_allclose(np.exp(m.log_grad_norm2[k]), ref["grad_norm2"], rtol=rtol)
    assert m.status == ("ok", "ok", "ok")


def test_weight_regeneration_gives_the_same_numbers():
    act = parse_activation("relu")
    widths = (16,) * 6
    std = np.full((2, 5), 0.35)
    a = measure(act, widths, std, np.zeros(2), 8, Streams(1, 0))
    b = measure(act, widths, std, np.zeros(2), 8, Streams(1, 0), weight_budget=0)
    np.testing.assert_array_equal(a.log_q_tilde, b.log_q_tilde)


def test_streams_are_keyed_by_identity_not_order():
    s = Streams(3, 4)
    a = s.weights(2, 5, 6, np.float64)
    s.inputs(6, 3, np.float64)
    assert np.array_equal(a, Streams(3, 4).weights(2, 5, 6, np.float64))
    assert not np.array_equal(a, Streams(3, 5).weights(2, 5, 6, np.float64))
    assert not np.array_equal(a, Streams(3, 4).weights(3, 5, 6, np.float64))


def test_relu_q_tilde_matches_mean_field_within_seed_spread():
    """Monte Carlo: the seed mean of q̃ˡ follows q̃ᴸ·(σ_w²N/2)^(L−l) at width 512.

    The tolerance is 4 standard errors of the seed mean of q̃ˡ (measured spread) on the log scale,
    plus 1 % for the top value the prediction is started from."""
    act = parse_activation("relu")
    N, L, seeds = 512, 16, 8
    s_values = np.array([1.0, 2.0, 3.0])
    std = np.sqrt(s_values / N)[:, None] * np.ones((1, L))
    runs = [measure(act, (N,) * (L + 1), std, np.zeros(3), 32, Streams(7, i)) for i in range(seeds)]
    log_qt = np.stack([r.log_q_tilde for r in runs])  # (seeds, K, L)
    qt = np.exp(log_qt)
    mean = qt.mean(axis=0)
    se_log = qt.std(axis=0, ddof=1) / np.sqrt(seeds) / mean
    for k, s in enumerate(s_values):
        theory = mean[k, -1] * (s / 2) ** (L - np.arange(1, L + 1))
        err = np.abs(np.log(mean[k]) - np.log(theory))
        assert np.all(err <= 4 * se_log[k] + 0.01), (s, err, se_log[k])
    # and the test can tell 2/N from its neighbours: at s = 3 the q̃ ratio is far from flat
    assert mean[2, 0] / mean[2, -1] > 100
