"""hevar.experiments.train: gradients against finite differences of the training loss, the sweep's
weights at step 0, a loss that falls on an easy problem, determinism and divergence as data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hevar.blocks.network import build
from hevar.engine import init
from hevar.engine.passes import Streams, measure_reference
from hevar.experiments import train as T
from hevar.experiments.data import Dataset, load
from hevar.meanfield.activations import parse_activation


def _small(arch: str, act: str, depth: int = 4, width: int = 6, classes: int = 3, sigma_b2: float = 0.1,
           batch: int = 5, seed: int = 3):
    net = build(arch, parse_activation(act), depth)
    params = T.initial_params(net, width, 1.7, sigma_b2, classes, Streams(seed, 1))
    rng = np.random.default_rng(11)
    x = rng.standard_normal((batch, width))
    y = rng.integers(0, classes, batch)
    return net, params, x, y


@pytest.mark.parametrize("arch,act", [("mlp", "tanh"), ("mlp", "relu"), ("resmlp", "tanh"), ("preln-resmlp", "gelu"),
                                      ("postln-mlp", "tanh")])
def test_gradients_match_central_differences(arch, act):
    """⟨∇loss, v⟩ against (loss(θ + εv) − loss(θ − εv))/2ε along random directions v, per parameter
    array (every Wˡ, bˡ, V, c). ReLU: ε = 1e-6 is far below the distance of any pre-activation to
    its kink here, so the loss is smooth along the segment."""
    net, params, x, y = _small(arch, act)
    _, _, grads = T.loss_and_grads(net, params, x, y)
    rng = np.random.default_rng(5)
    eps = 1e-6
    for p, g in zip(params.arrays(), grads.arrays()):
        assert g.shape == p.shape
        for _ in range(2):
            v = rng.standard_normal(p.shape)
            v /= np.linalg.norm(v)
            p += eps * v
            up = T.loss_and_grads(net, params, x, y, need_grads=False)[0]
            p -= 2 * eps * v
            down = T.loss_and_grads(net, params, x, y, need_grads=False)[0]
            p += eps * v
            fd = (up - down) / (2 * eps)
            an = float(np.sum(g * v))
            assert abs(fd - an) <= 1e-6 * max(1.0, abs(an)) + 1e-8, (arch, act, p.shape, fd, an)


def test_gradient_with_dropout_masks():
    net, params, x, y = _small("drop0.7-mlp", "tanh")
    rng = np.random.default_rng(2)
    masks = [None] + [np.where(rng.random((6, 5)) < 0.7, 1 / 0.7, 0.0) for _ in range(3)]
    _, _, grads = T.loss_and_grads(net, params, x, y, masks)
    W = params.W[2]
    v = rng.standard_normal(W.shape)
    eps = 1e-6
    W += eps * v
    up = T.loss_and_grads(net, params, x, y, masks, need_grads=False)[0]
    W -= 2 * eps * v
    down = T.loss_and_grads(net, params, x, y, masks, need_grads=False)[0]
    W += eps * v
    assert math.isclose((up - down) / (2 * eps), float(np.sum(grads.W[2] * v)), rel_tol=1e-6, abs_tol=1e-9)


def test_initial_weights_are_the_sweeps():
    """Wˡ and bˡ at step 0 are the matrices the engine's reference pass uses for the same streams."""
    act = parse_activation("relu")
    L, N, s, b2 = 3, 7, 2.0, 0.3
    streams = Streams(4, 2)
    params = T.initial_params(build("mlp", act, L), N, s, b2, 10, streams)
    std = np.sqrt(init.layer_sigma_w2(s, (N,) * (L + 1), "fan_in"))
    ref = measure_reference(act, (N,) * (L + 1), std, math.sqrt(b2), 4, streams)
    for W, Wr, bb, br in zip(params.W, ref["weights"], params.b, ref["biases"]):
        np.testing.assert_array_equal(W, Wr)
        np.testing.assert_array_equal(bb, br)
    assert params.V.shape == (10, N) and not np.any(params.c)


def test_readout_variance_is_one_over_width():
    params = T.initial_params(build("mlp", parse_activation("relu"), 1), 400, 2.0, 0.0, 50, Streams(0, 0))
    assert abs(np.var(params.V) * 400 - 1) < 0.05  # 20 000 entries: s.e. of the variance ≈ 0.01


def test_loss_falls_on_teacher_data():
    data = load("teacher", 16, n_train=256, n_test=128)
    settings = T.TrainSettings(steps=300, lr=0.1, batch=32, eval_every=100)
    hist = T.run_one(T.RunSpec("relu", 3, 16, 2.0, 0.0, 0), data, settings, seed=0)
    assert hist.status == "ok" and hist.steps == [0, 100, 200, 300]
    assert hist.train_loss[-1] < 0.8 * hist.train_loss[0]
    assert hist.train_acc[-1] > hist.train_acc[0] + 0.2


def test_momentum_also_trains():
    data = load("teacher", 16, n_train=256, n_test=128)
    settings = T.TrainSettings(steps=200, lr=0.02, batch=32, eval_every=200, optimizer="momentum")
    hist = T.run_one(T.RunSpec("tanh", 3, 16, 1.0, 0.0, 1), data, settings, seed=0)
    assert hist.train_loss[-1] < 0.8 * hist.train_loss[0]


def test_same_seed_same_history_other_seed_differs():
    data = load("teacher", 8, n_train=128, n_test=64)
    settings = T.TrainSettings(steps=40, lr=0.05, batch=16, eval_every=20)
    spec = T.RunSpec("relu", 3, 8, 2.0, 0.05, 0)
    a, b = (T.run_one(spec, data, settings, seed=7) for _ in range(2))
    assert a.train_loss == b.train_loss and a.test_acc == b.test_acc
    np.testing.assert_array_equal(a.grad_norm2_W, b.grad_norm2_W)
    c = T.run_one(T.RunSpec("relu", 3, 8, 2.0, 0.05, 1), data, settings, seed=7)
    assert c.train_loss != a.train_loss


def test_divergence_is_a_status_not_a_crash():
    data = load("teacher", 8, n_train=128, n_test=64)
    settings = T.TrainSettings(steps=200, lr=1e6, batch=16, eval_every=10)
    spec = T.RunSpec("relu", 4, 8, 8.0, 0.0, 0)
    hist = T.run_one(spec, data, settings, seed=0)
    assert hist.status.startswith("diverged at step ")
    training, grads = T.rows(spec, hist)
    assert training[-1]["status"] == hist.status and all(r["status"] == "ok" for r in training[:-1])
    assert all(math.isfinite(r["train_loss"]) for r in training[:-1])
    summary = T.summarise([(spec, hist)], data.n_classes, settings.steps)
    assert summary[0]["n_diverged"] == 1 and summary[0]["test_acc"] == pytest.approx(0.1)


def test_step0_gradient_norms_vanish_for_xavier_relu():
    """At σ_w²·N = 1 a deep ReLU net's gradients shrink like 2^−L (He et al. 2015); at 2 they do not."""
    data = Dataset("toy", np.random.default_rng(0).standard_normal((64, 16)), np.arange(64) % 4,
                   np.zeros((4, 16)), np.arange(4), 4)
    settings = T.TrainSettings(steps=0, eval_every=1)
    g = {s: T.run_one(T.RunSpec("relu", 20, 16, s, 0.0, 0), data, settings, seed=0).grad_norm2_W for s in (1.0, 2.0)}
    assert np.all(g[1.0] < 1e-3 * g[2.0])


# --- the command ----------------------------------------------------------------------------------


def test_cli_train_writes_the_run_folder(tmp_path):
    from typer.testing import CliRunner

    from hevar.results import store
    from hevar.views.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--data", "teacher", "--depth", "3", "--width", "8", "--sigma-w2", "1,2",
                                      "--seeds", "2", "--steps", "20", "--eval-every", "10", "--batch", "16",
                                      "--lr", "0.05", "--out", str(out)])
    assert result.exit_code == 0, result.output
    t = store.read_table(out / "training.csv", T.TRAINING_COLUMNS)
    assert len(t["step"]) == 2 * 2 * 3 and set(t["step"]) == {0, 10, 20} and set(t["status"]) == {"ok"}
    s = store.read_table(out / "training_summary.csv", T.SUMMARY_COLUMNS)
    assert list(s["sigma_w2_n"]) == [1.0, 2.0] and list(s["n_seeds"]) == [2, 2]
    final = t["test_acc"][(t["sigma_w2_n"] == 2) & (t["step"] == 20)]
    assert s["test_acc"][1] == pytest.approx(final.mean())
    g = store.read_table(out / "training_grads.csv", T.GRAD_COLUMNS)
    assert len(g["layer"]) == 2 * 2 * 3 and np.all(g["grad_norm2_W"] > 0)
    assert (out / "plots" / "training.png").stat().st_size > 1000 and (out / "manifest.json").exists()
    assert "σ_w²·N" in result.output


@pytest.mark.parametrize("args,param", [(["--optimizer", "rmsprop"], "optimizer"), (["--steps", "-1"], "steps"),
                                        (["--data", "mnist"], "data"), (["--lr", "0"], "lr"),
                                        (["--depth", "0"], "depth"), (["--widths", "8,8"], "widths")])
def test_cli_train_bad_input_is_one_line_exit_2(tmp_path, args, param):
    from typer.testing import CliRunner

    from hevar.views.cli import app

    out = tmp_path / "never"
    result = CliRunner().invoke(app, ["train", *args, "--out", str(out)])
    assert result.exit_code == 2
    if param != "widths":  # not an option of `hevar train`: Typer's own usage error
        assert f"The '{param}' parameter must be" in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output and not out.exists()


def test_preset_keys_are_checked(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = 10\nlearning-rate = 0.1\n")
    with pytest.raises(Exception, match="unknown key 'learning-rate'"):
        T.read_preset(bad)
    good = tmp_path / "good.toml"
    good.write_text("steps = 10\nlr = 0.1\ndepth = 5\nsigma-w2 = [2]\ndata = 'teacher'\n")
    net, training = T.read_preset(good)
    cfg = T.network_config({"depth": None}, net)
    assert cfg.depth == (5,) and cfg.sigma_w2 == (2.0,) and cfg.width == (64,)
    assert T.parse_settings(training).steps == 10 and training["data"] == "teacher"


# --- Adam ------------------------------------------------------------------------------------------


def _hand_adam(theta: list[float], grads_seq: list[list[float]], lr: float) -> list[float]:
    """Kingma & Ba's Algorithm 1 written out element by element in plain Python floats."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    theta = list(theta)
    m, v = [0.0] * len(theta), [0.0] * len(theta)
    for t, g in enumerate(grads_seq, start=1):
        for i in range(len(theta)):
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            m_hat, v_hat = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)
            theta[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return theta


def test_adam_update_against_a_hand_written_step():
    rng = np.random.default_rng(0)
    params = T.Params([rng.standard_normal((3, 2))], [rng.standard_normal(3)], rng.standard_normal((2, 3)),
                      rng.standard_normal(2))
    start = [p.copy() for p in params.arrays()]
    settings = T.TrainSettings(optimizer="adam", lr=0.01)
    state = T.OptimizerState.start(params, "adam")
    seq = []
    for _ in range(4):
        g = T.Params([rng.standard_normal((3, 2))], [rng.standard_normal(3)], rng.standard_normal((2, 3)),
                     rng.standard_normal(2) * 1e-3)  # small gradients too: ε and the bias correction matter
        seq.append([a.copy() for a in g.arrays()])
        T.update(params, g, state, settings)
    assert state.t == 4
    for k, (p, p0) in enumerate(zip(params.arrays(), start)):
        want = _hand_adam(p0.ravel().tolist(), [s[k].ravel().tolist() for s in seq], 0.01)
        np.testing.assert_allclose(p.ravel(), want, rtol=1e-13, atol=1e-15)


def test_adam_first_step_is_lr_times_the_sign():
    """At t = 1 the bias-corrected moments are g and g², so Δθ = −η·g/(|g| + ε) exactly (closed form)."""
    g = np.array([3.0, -0.2, 1e-6, -1e-9])
    p = T.Params([], [], np.zeros((1, 4)), np.zeros(0))
    T.update(p, T.Params([], [], g[None, :].copy(), np.zeros(0)), T.OptimizerState.start(p, "adam"),
             T.TrainSettings(optimizer="adam", lr=0.5))
    np.testing.assert_allclose(p.V[0], -0.5 * g / (np.abs(g) + 1e-8), rtol=1e-12)


def test_adam_inside_train_matches_hand_steps_on_the_loss():
    """Full-batch training with adam for 3 steps equals 3 hand-written Adam steps on loss_and_grads's
    gradients (the minibatch is the whole, permuted, training set: only the summation order differs)."""
    data = load("teacher", 6, n_train=20, n_test=8)
    settings = T.TrainSettings(steps=3, lr=0.03, batch=20, eval_every=3, optimizer="adam")
    net = build("mlp", parse_activation("tanh"), 2)
    fresh = lambda: T.initial_params(net, 6, 1.5, 0.1, data.n_classes, Streams(0, 0))  # noqa: E731
    trained = fresh()
    T.train(net, trained, data, settings, seed=0, seed_index=0)
    hand = fresh()
    flat0 = [p.ravel().tolist() for p in hand.arrays()]
    seq = []
    for _ in range(3):
        _, _, g = T.loss_and_grads(net, hand, data.x_train, data.y_train)
        seq.append([a.ravel().tolist() for a in g.arrays()])
        for k, p in enumerate(hand.arrays()):
            p[...] = np.reshape(_hand_adam(flat0[k], [s[k] for s in seq], 0.03), p.shape)
    for a, b in zip(trained.arrays(), hand.arrays()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_adam_loss_falls_on_teacher_data():
    data = load("teacher", 16, n_train=256, n_test=128)
    settings = T.TrainSettings(steps=200, lr=3e-3, batch=32, eval_every=100, optimizer="adam")
    hist = T.run_one(T.RunSpec("tanh", 4, 16, 1.0, 0.0, 0), data, settings, seed=0)
    assert hist.status == "ok" and hist.train_loss[-1] < 0.6 * hist.train_loss[0]
    assert hist.train_acc[-1] > hist.train_acc[0] + 0.3
