"""Does it train? The sweep's networks, trained briefly with SGD on a classification task.

The network is the one ``hevar sweep`` measures, run through each block's own
:meth:`~hevar.blocks.dense.Dense.reference` forward and vector–Jacobian product (no second
implementation of any layer), followed by a linear softmax readout::

    zˡ = block_l(Wˡ, bˡ, zˡ⁻¹),  z⁰ = x (N_0 × B, inputs as columns),   logits = V zᴸ + c,
    loss = −(1/B) Σ_b log softmax(logits_b)[y_b].

Initialisation and seeds — exactly the sweep's, draw for draw. For seed index ``s`` of base seed
``seed`` the weights are Wˡ = σ_{w,l}·Gˡ and bˡ = σ_b·βˡ with Gˡ = ``Streams(seed, s, dist).weights(l, N_l,
N_{l-1})``, βˡ = ``Streams(...).bias(l, N_l)`` and σ_{w,l}² = (σ_w²·N)/N_{l-1} (fan_in; the width is
constant, so every fan mode agrees). These are the matrices :func:`hevar.engine.passes.measure`
multiplies by for the same (seed, seed index, dist), which is what makes the step-0 gradient norms
of ``training_grads.csv`` the trained network's version of the sweep's ‖∂J/∂Wˡ‖² (here with the
cross-entropy loss instead of a random readout). The parts the sweep does not have come from their
own streams of the same :class:`~numpy.random.SeedSequence` family, keyed apart from the engine's
(kinds 0–4):

- the readout V (classes × N_L), entries N(0, 1/N_L), from key (s, 5, classes, N_L); c = 0;
- the minibatch order, from key (s, 6): each epoch a fresh permutation of the training set, cut into
  batches of B (the last, short one of an epoch is dropped); dropout masks (arch ``dropP``) come
  from the same generator, one per step; evaluation runs without dropout.

Optimisers (constant learning rate η, every parameter — all Wˡ, bˡ, V, c):
``sgd`` θ ← θ − η∇θ; ``momentum`` (heavy ball as PyTorch's SGD) v ← μv + ∇θ, θ ← θ − ηv;
``adam`` (Kingma & Ba 2015, β₁ = 0.9, β₂ = 0.999, ε = 1e-8, with bias correction; see :func:`update`).

Evaluation at steps 0, k, 2k, …, and the last step: the training loss and accuracy over the whole
training set and the test accuracy. Blow-up is data: a non-finite loss (overflow, nan) at a step
ends that run with ``status = "diverged at step t"``; its rows so far stay as they are.

Everything here is pure: arrays in, rows out; randomness only from the seeded streams.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from hevar.blocks.network import Network, build as build_network
from hevar.engine import init
from hevar.engine.passes import Streams
from hevar.errors import UsageError
from hevar.experiments.data import Dataset
from hevar.meanfield.activations import parse_activation

Array = np.ndarray

OPTIMIZERS = ("sgd", "momentum", "adam")
ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8  # Kingma & Ba's defaults (and PyTorch's)
_READOUT_KEY, _ORDER_KEY = 5, 6  # stream kinds beyond the engine's (0..4)


@dataclass(frozen=True)
class TrainSettings:
    """How to train (everything but the network and its initialisation)."""

    steps: int = 1000  # SGD updates
    lr: float = 0.01  # constant learning rate η
    optimizer: str = "sgd"  # "sgd", "momentum" or "adam"
    momentum: float = 0.9  # μ of the momentum optimiser (unused by sgd)
    batch: int = 64  # minibatch size B
    eval_every: int = 100  # evaluate after every this many steps (and at 0 and the last step)
    dtype: str = "float64"  # arithmetic


@dataclass
class Params:
    """The trainable parameters: Wˡ (N_l × N_{l-1}), bˡ (N_l,), l = 1..L, and the readout V, c."""

    W: list[Array]
    b: list[Array]
    V: Array
    c: Array

    def arrays(self) -> list[Array]:
        return [*self.W, *self.b, self.V, self.c]


@dataclass
class History:
    """What one training run recorded."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    grad_norm2_W: Array | None = None  # ‖∂loss/∂Wˡ‖²_F at step 0 over the training set, l = 1..L
    grad_norm2_b: Array | None = None  # ‖∂loss/∂bˡ‖² at step 0
    status: str = "ok"
    seconds: float = 0.0


def initial_params(net: Network, width: int, sigma_w2_n: float, sigma_b2: float, n_classes: int,
                   streams: Streams, dtype: str = "float64") -> Params:
    """The sweep's Wˡ, bˡ for ``streams`` (module docstring) and a readout V ~ N(0, 1/N_L), c = 0."""
    dt = np.dtype(dtype)
    L = net.depth
    widths = (width,) * (L + 1)
    std = np.sqrt(init.layer_sigma_w2(sigma_w2_n, widths, "fan_in"))
    if streams.dist == "truncnormal":  # PyTorch's absolute cut: the draw depends on σ_{w,l}
        streams = Streams(streams.base_seed, streams.seed_index, "truncnormal", tuple(init.TORCH_TRUNC / std))
    W = [(std[l] * streams.weights(l + 1, widths[l + 1], widths[l], dt)).astype(dt) for l in range(L)]
    b = [(math.sqrt(sigma_b2) * streams.bias(l + 1, widths[l + 1], dt)).astype(dt) for l in range(L)]
    seq = np.random.SeedSequence(streams.base_seed, spawn_key=(streams.seed_index, _READOUT_KEY, n_classes, widths[L]))
    V = (np.random.default_rng(seq).standard_normal((n_classes, widths[L])) / math.sqrt(widths[L])).astype(dt)
    return Params(W, b, V, np.zeros(n_classes, dtype=dt))


def loss_and_grads(net: Network, params: Params, x: Array, y: Array, masks=None, need_grads: bool = True):
    """(loss, accuracy, gradients as a :class:`Params`) of the mean softmax cross-entropy on inputs
    ``x`` (B × N_0, rows) with labels ``y``; the backward pass is each block's own VJP.

    ``masks``: per layer the dropout m/p of the weight's input (N_{l-1} × B) or None.
    Runs under ``np.errstate(all="ignore")``: a blow-up shows as a non-finite loss.
    """
    with np.errstate(all="ignore"):
        z = np.ascontiguousarray(x.T)
        hs, vjps = [], []
        for l, block in enumerate(net.blocks):
            z, h, vjp = block.reference(params.W[l], params.b[l], z, None if masks is None else masks[l])
            hs.append(h)
            vjps.append(vjp)
        logits = params.V @ z + params.c[:, None]  # (classes, B)
        top = logits.max(axis=0, keepdims=True)
        shifted = logits - top
        log_norm = np.log(np.exp(shifted).sum(axis=0, keepdims=True))
        B = x.shape[0]
        cols = np.arange(B)
        loss = float(-(shifted[y, cols] - log_norm[0]).mean())
        acc = float(np.mean(np.argmax(logits, axis=0) == y))
        if not need_grads:
            return loss, acc, None
        d_logits = np.exp(shifted - log_norm)
        d_logits[y, cols] -= 1
        d_logits /= B
        grads = Params([None] * net.depth, [None] * net.depth, d_logits @ z.T, d_logits.sum(axis=1))
        delta = params.V.T @ d_logits
        for l in range(net.depth - 1, -1, -1):
            delta_in, d_u = vjps[l](delta)
            grads.W[l] = d_u @ hs[l].T
            grads.b[l] = d_u.sum(axis=1)
            delta = delta_in
    return loss, acc, grads


def evaluate(net: Network, params: Params, x: Array, y: Array, chunk: int = 4096) -> tuple[float, float]:
    """(mean loss, accuracy) over all of ``x`` without dropout, in chunks."""
    total_loss, total_right = 0.0, 0.0
    for a in range(0, len(y), chunk):
        loss, acc, _ = loss_and_grads(net, params, x[a:a + chunk], y[a:a + chunk], need_grads=False)
        n = len(y[a:a + chunk])
        total_loss += loss * n
        total_right += acc * n
    return total_loss / len(y), total_right / len(y)


@dataclass
class OptimizerState:
    """What an optimiser carries between steps: the step count t, and per parameter array the
    momentum buffer (``momentum``) or Adam's first and second moment estimates m, v."""

    t: int = 0
    m: list[Array] | None = None
    v: list[Array] | None = None

    @classmethod
    def start(cls, params: Params, optimizer: str) -> "OptimizerState":
        zeros = [np.zeros_like(p) for p in params.arrays()]
        if optimizer == "momentum":
            return cls(m=zeros)
        if optimizer == "adam":
            return cls(m=zeros, v=[np.zeros_like(p) for p in params.arrays()])
        return cls()


def update(params: Params, grads: Params, state: OptimizerState, settings: TrainSettings) -> None:
    """One optimiser step on every parameter array, in place (module docstring). Adam (Kingma & Ba
    2015, Algorithm 1) with t counted from 1::

        m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,  m̂ = m/(1−β₁ᵗ),  v̂ = v/(1−β₂ᵗ),  θ ← θ − η·m̂/(√v̂ + ε)
    """
    state.t += 1
    lr = settings.lr
    with np.errstate(all="ignore"):
        if settings.optimizer == "adam":
            b1, b2, eps = ADAM_BETA1, ADAM_BETA2, ADAM_EPS
            c1, c2 = 1 - b1 ** state.t, 1 - b2 ** state.t
            for p, g, m, v in zip(params.arrays(), grads.arrays(), state.m, state.v):
                m *= b1
                m += (1 - b1) * g
                v *= b2
                v += (1 - b2) * (g * g)
                p -= lr * (m / c1) / (np.sqrt(v / c2) + eps)
            return
        for k, (p, g) in enumerate(zip(params.arrays(), grads.arrays())):
            if settings.optimizer == "momentum":
                state.m[k] *= settings.momentum
                state.m[k] += g
                g = state.m[k]
            p -= lr * g


def train(net: Network, params: Params, data: Dataset, settings: TrainSettings, seed: int, seed_index: int) -> History:
    """Train ``params`` in place on ``data`` (module docstring); returns the :class:`History`."""
    if settings.optimizer not in OPTIMIZERS:
        raise UsageError(f"The 'optimizer' parameter must be one of {', '.join(OPTIMIZERS)}. "
                         f"Got {settings.optimizer!r} instead.", param="optimizer")
    dt = np.dtype(settings.dtype)
    x_train, y_train = data.x_train.astype(dt), data.y_train
    x_test, y_test = data.x_test.astype(dt), data.y_test
    n = len(y_train)
    B = min(settings.batch, n)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(seed_index, _ORDER_KEY)))
    hist = History()
    start = time.perf_counter()

    loss0, acc0, g0 = loss_and_grads(net, params, x_train, y_train)
    if g0 is not None and math.isfinite(loss0):
        with np.errstate(all="ignore"):
            hist.grad_norm2_W = np.array([float(np.sum(g.astype(float) ** 2)) for g in g0.W])
            hist.grad_norm2_b = np.array([float(np.sum(g.astype(float) ** 2)) for g in g0.b])

    def record(step: int) -> bool:
        loss, acc = (loss0, acc0) if step == 0 else evaluate(net, params, x_train, y_train)
        if not math.isfinite(loss):
            hist.status = f"diverged at step {step}"
            return False
        hist.steps.append(step)
        hist.train_loss.append(loss)
        hist.train_acc.append(acc)
        hist.test_acc.append(evaluate(net, params, x_test, y_test)[1])
        return True

    if not record(0):
        hist.seconds = time.perf_counter() - start
        return hist
    state = OptimizerState.start(params, settings.optimizer)
    order, pos = rng.permutation(n), 0
    for step in range(settings.steps):
        if pos + B > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos:pos + B]
        pos += B
        masks = None
        if any(block.keep_prob < 1 for block in net.blocks):
            masks = [None if block.act is None or block.keep_prob == 1 else
                     (np.where(rng.random((params.W[l].shape[1], B)) < block.keep_prob, 1 / block.keep_prob, 0)
                      .astype(dt)) for l, block in enumerate(net.blocks)]
        loss, _, grads = loss_and_grads(net, params, x_train[idx], y_train[idx], masks)
        if not math.isfinite(loss):
            hist.status = f"diverged at step {step}"
            break
        update(params, grads, state, settings)
        done = step + 1
        if (done % settings.eval_every == 0 or done == settings.steps) and not record(done):
            break
    hist.seconds = time.perf_counter() - start
    return hist


# --- a grid of runs -> tidy rows ------------------------------------------------------------------

TRAINING_COLUMNS = ("activation", "arch", "depth", "width", "sigma_w2_n", "sigma_b2", "dist", "seed_index", "step",
                    "train_loss", "train_acc", "test_acc", "status")
GRAD_COLUMNS = ("activation", "arch", "depth", "width", "sigma_w2_n", "sigma_b2", "dist", "seed_index", "layer",
                "grad_norm2_W", "grad_norm2_b")
CONFIG_KEYS = ("activation", "arch", "depth", "width", "sigma_w2_n", "sigma_b2", "dist")
SUMMARY_COLUMNS = ("activation", "arch", "depth", "width", "sigma_w2_n", "sigma_b2", "dist", "n_seeds", "steps",
                   "test_acc", "test_acc_lo", "test_acc_hi", "test_acc_sd", "train_acc", "train_loss",
                   "chance", "n_diverged", "status")

# The tables of a training run folder: name → (file, columns); hevar.train's TrainingRun has one DataFrame each.
TRAINING_TABLES = {"training": ("training.csv", TRAINING_COLUMNS), "training_grads": ("training_grads.csv", GRAD_COLUMNS),
                   "training_summary": ("training_summary.csv", SUMMARY_COLUMNS)}


@dataclass(frozen=True)
class RunSpec:
    """One network to train: configuration and seed."""

    act: str
    depth: int
    width: int
    sigma_w2_n: float
    sigma_b2: float
    seed_index: int
    dist: str = "normal"
    arch: str = "mlp"
    branch_scale: str = "1"

    def keys(self) -> dict:
        return dict(activation=self.act, arch=self.arch, depth=self.depth, width=self.width,
                    sigma_w2_n=self.sigma_w2_n, sigma_b2=self.sigma_b2, dist=self.dist)


def plan(cfg) -> list[RunSpec]:
    """Every (activation, depth, width, σ_w²·N, σ_b², dist, seed) of a :class:`~hevar.experiments.config.SweepConfig`."""
    return [RunSpec(a, d, w, s, b, k, dist, cfg.arch, cfg.branch_scale)
            for a in cfg.act for d in cfg.depth for w in cfg.width for dist in cfg.dist
            for s in cfg.sigma_w2 for b in cfg.sigma_b2 for k in range(cfg.seeds)]


def run_one(spec: RunSpec, data: Dataset, settings: TrainSettings, seed: int) -> History:
    """Initialise as the sweep does and train one network."""
    act = parse_activation(spec.act)
    net = build_network(spec.arch, act, spec.depth, spec.branch_scale)
    params = initial_params(net, spec.width, spec.sigma_w2_n, spec.sigma_b2, data.n_classes,
                            Streams(seed, spec.seed_index, spec.dist), settings.dtype)
    return train(net, params, data, settings, seed, spec.seed_index)


def rows(spec: RunSpec, hist: History) -> tuple[list[dict], list[dict]]:
    """(training rows, step-0 gradient rows) of one run. A diverged run ends in a row with its status
    and empty numbers at the step where it diverged."""
    key = dict(spec.keys(), seed_index=spec.seed_index)
    out = [dict(key, step=s, train_loss=lo, train_acc=tr, test_acc=te, status="ok")
           for s, lo, tr, te in zip(hist.steps, hist.train_loss, hist.train_acc, hist.test_acc)]
    if hist.status != "ok":
        step = int(hist.status.rsplit(" ", 1)[-1])
        out.append(dict(key, step=step, train_loss=math.nan, train_acc=math.nan, test_acc=math.nan,
                        status=hist.status))
    grads = []
    if hist.grad_norm2_W is not None:
        grads = [dict(key, layer=l + 1, grad_norm2_W=gw, grad_norm2_b=gb)
                 for l, (gw, gb) in enumerate(zip(hist.grad_norm2_W, hist.grad_norm2_b))]
    return out, grads


def summarise(results: list[tuple[RunSpec, History]], n_classes: int, steps: int) -> list[dict]:
    """Per configuration: the final test accuracy's mean, 16th/84th percentiles and standard
    deviation over seeds (a diverged seed counts at chance, 1/classes, and is counted apart)."""
    groups: dict[tuple, list[tuple[RunSpec, History]]] = {}
    for spec, hist in results:
        groups.setdefault(tuple(spec.keys().values()), []).append((spec, hist))
    chance = 1.0 / n_classes
    out = []
    for members in groups.values():
        spec = members[0][0]
        final = np.array([h.test_acc[-1] if h.status == "ok" else chance for _, h in members])
        train_acc = np.array([h.train_acc[-1] if h.status == "ok" else math.nan for _, h in members])
        train_loss = np.array([h.train_loss[-1] if h.status == "ok" else math.nan for _, h in members])
        diverged = [h.status for _, h in members if h.status != "ok"]
        out.append(dict(spec.keys(), n_seeds=len(members), steps=steps, test_acc=float(final.mean()),
                        test_acc_lo=float(np.percentile(final, 16)), test_acc_hi=float(np.percentile(final, 84)),
                        test_acc_sd=float(final.std(ddof=1)) if len(final) > 1 else math.nan,
                        train_acc=float(np.mean(train_acc)) if not diverged else math.nan,
                        train_loss=float(np.mean(train_loss)) if not diverged else math.nan,
                        chance=chance, n_diverged=len(diverged), status=diverged[0] if diverged else "ok"))
    return out


def run_grid(cfg, settings: TrainSettings, data_name: str, on_done=None) -> dict[str, list[dict]]:
    """Train every run of ``cfg`` in this process and return the tables of :data:`TRAINING_TABLES`
    (in memory; :func:`hevar.experiments.training_run.run` is the durable, parallel version)."""
    from hevar.experiments import training_run

    progress = None if on_done is None else (lambda spec, hist, cached: on_done(spec, hist))
    return training_run.run(cfg, settings, data_name, on_progress=progress).tables


# --- options, presets and the run folder ----------------------------------------------------------

# Training options: name as the user writes it → (field, kind, lo, hi); intervals [lo, hi) except lr's (0, hi).
TRAIN_OPTIONS = {"steps": ("steps", int, 0, 10_000_001), "lr": ("lr", float, 0, math.inf),
                 "momentum": ("momentum", float, 0, 1), "batch": ("batch", int, 1, 1_000_001),
                 "eval-every": ("eval_every", int, 1, 10_000_001)}
RUN_KEYS = ("optimizer", "data", "out", "plot")
# Network defaults of `hevar train` where they differ from `hevar sweep`'s (He et al.'s 30 layers,
# digits' 64 pixels, Xavier against He).
NETWORK_DEFAULTS = {"depth": 30, "width": 64, "sigma_w2": "1,2", "seeds": 3}


def parse_settings(values: Mapping) -> TrainSettings:
    """A :class:`TrainSettings` from option values (None or missing: the default); one-line UsageErrors."""
    from hevar.experiments.config import _number

    given = {}
    for name, (fld, kind, lo, hi) in TRAIN_OPTIONS.items():
        raw = values.get(fld)
        if raw is not None:
            given[fld] = _number(name, raw, kind, lo, hi, lo_open=name == "lr")
    opt = values.get("optimizer")
    if opt is not None:
        if not isinstance(opt, str) or opt.strip().lower() not in OPTIMIZERS:
            shown = f"'{opt}'" if isinstance(opt, str) else repr(opt)
            raise UsageError(f"The 'optimizer' parameter must be one of {', '.join(OPTIMIZERS)}. Got {shown} instead.",
                             param="optimizer")
        given["optimizer"] = opt.strip().lower()
    return TrainSettings(**given)


def parse_data(raw) -> str:
    from hevar.experiments.data import DATASETS

    name = raw.strip().lower() if isinstance(raw, str) else raw
    if name not in DATASETS:
        shown = f"'{raw}'" if isinstance(raw, str) else repr(raw)
        raise UsageError(f"The 'data' parameter must be one of {', '.join(DATASETS)}. Got {shown} instead.",
                         param="data")
    return name


def read_preset(path) -> tuple[dict, dict]:
    """(network preset, training values) of a TOML file: the sweep's keys (as
    :func:`hevar.experiments.config.read_preset` takes them) and the training keys of this module."""
    import difflib
    from pathlib import Path

    from hevar.experiments import config

    path = Path(path)
    try:
        data = config.tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"The 'config' parameter must be an existing TOML file. Got '{path}' instead.",
                         param="config") from None
    except (OSError, UnicodeDecodeError, config.tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"The 'config' parameter must be a readable TOML file. Got '{path}' instead ({exc}).",
                         param="config") from None
    net, training = config.Preset(), {}
    net.path = path
    known = sorted(set(config.OPTION_NAMES) - {"batch", "dtype"}) + sorted(TRAIN_OPTIONS) + list(RUN_KEYS)
    for key, value in data.items():
        norm = key.replace("_", "-")
        if norm in TRAIN_OPTIONS:
            training[TRAIN_OPTIONS[norm][0]] = value
        elif norm in RUN_KEYS:
            training[norm] = value
        elif norm in config.OPTION_NAMES and norm not in ("batch", "dtype"):
            net[config.OPTION_NAMES[norm]] = value
        else:
            close = difflib.get_close_matches(norm, known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise UsageError(f"The 'config' parameter has an unknown key '{key}' in {path}; allowed keys are "
                             f"{', '.join(known)}.{hint}", param="config")
    return net, training


def network_config(flags: Mapping, preset: Mapping | None = None):
    """The network grid as a :class:`~hevar.experiments.config.SweepConfig`: train's defaults <
    ``preset`` < ``flags``; a width profile is not supported (the data's N_0 is the width)."""
    from hevar.experiments import config

    merged = config.Preset({**NETWORK_DEFAULTS, **(preset or {})})
    merged.path = getattr(preset, "path", None)
    cfg = config.build_config(flags, merged)
    if cfg.widths:
        raise UsageError(f"The 'widths' parameter is not supported by `hevar train` (constant widths only). "
                         f"Got '{cfg.widths}' instead.", param="widths")
    return cfg


@dataclass(frozen=True)
class TrainOptions:
    """What `hevar train` and :func:`hevar.train` were asked for, resolved one way for both."""

    cfg: object  # the network grid, a SweepConfig (network_config)
    settings: TrainSettings
    data_name: str
    preset_out: str | None  # ``out`` of the preset, if any
    preset_plot: bool | None  # ``plot`` of the preset, if any
    given_network: bool  # some network setting was given (flags or preset): it must match a run folder's
    given_training: bool  # some training setting was given


def resolve_options(net_flags: Mapping, training_flags: Mapping, data, config_path=None) -> TrainOptions:
    """Defaults < the preset at ``config_path`` < the given flags (None: not given), validated with
    one-line UsageErrors; ``training_flags`` are the :data:`TRAIN_OPTIONS` fields and ``optimizer``."""
    net_preset, train_preset = read_preset(config_path) if config_path is not None else ({}, {})
    cfg = network_config(net_flags, net_preset)
    settings = parse_settings({**train_preset, **{k: v for k, v in training_flags.items() if v is not None}})
    data_name = parse_data(data if data is not None else train_preset.get("data", "digits"))
    training_keys = (*(f for f, *_ in TRAIN_OPTIONS.values()), "optimizer", "data")
    out = train_preset.get("out")
    plot = train_preset.get("plot")
    return TrainOptions(cfg, settings, data_name, out if isinstance(out, str) else None,
                        bool(plot) if plot is not None else None,
                        given_network=any(v is not None for v in {**net_preset, **net_flags}.values()),
                        given_training=any(v is not None for v in training_flags.values()) or data is not None
                        or any(k in train_preset for k in training_keys))


def write_tables(run_dir, tables: Mapping[str, list[dict]]) -> None:
    """training.csv, training_grads.csv and training_summary.csv into ``run_dir``, atomically."""
    from pathlib import Path

    from hevar.results import store

    for name, (file, columns) in TRAINING_TABLES.items():
        store.write_csv(Path(run_dir) / file, columns, tables[name])
