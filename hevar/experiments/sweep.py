"""From a config to tidy rows: plan the work, run it, and reduce seeds to means, spreads and fits.

A *configuration* is one (activation, depth, width, σ_w²·N, σ_b²). A *task* is the unit of work
and of persistence: one (activation, depth, width, seed index), which runs every σ_w²·N × σ_b²
configuration of the grid at once on a single shared draw of the weights (see
:func:`hevar.engine.passes.measure`).

Reductions (documented in the README):
- per layer, the seed mean of q, q̃ and ‖∂J/∂Wˡ‖² (averaged in linear scale, computed in logs),
  and the 16th/84th percentiles across seeds (``_lo``/``_hi``);
- χ̂ = exp(−b), where b is the least-squares slope of ln q̃ˡ (the seed mean) against l over the
  fit layers ⌊L/2⌋+1 .. L (the upper half, where the forward pass has settled; all layers when
  L < 4); ``chi_hat_se`` is its jackknife standard error over seeds. ``chi_theory`` is the same
  fit applied to the mean-field trajectory.
- ``status``: the earliest failure over seeds — the engine's "overflow/underflow at layer l", or
  the first layer where a seed's measured value is not finite (+inf/nan: overflow, -inf:
  underflow). q and the gradient norms stop at that layer; q̃ is kept only where every seed
  measured it. A value is reported only where every seed has it; linear columns are empty where
  the value is not a normal float64 (the ``log10_`` columns keep it).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import sys
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from hevar.engine import init
from hevar.meanfield import theory
from hevar.meanfield.activations import parse_activation
from hevar.experiments.config import SweepConfig
from hevar.engine.passes import Measurement, Streams, measure
from hevar.blocks.network import build as build_network
from hevar.experiments import pairsweep, signalprop

LN10 = math.log(10.0)
FIELDS = ("log_q", "log_q_tilde", "log_grad_norm2", "log_delta_norm2", "log_act_norm2")


@dataclass(frozen=True)
class Task:
    """One unit of work: every (σ_w²·N, σ_b²) of the grid for one seed of one network shape."""

    act: str
    depth: int
    width: int  # N, or N_0 of a width profile
    seed_index: int
    widths: str = ""  # width profile spec (hevar.engine.init.parse_widths); "" = constant width
    mode: str = "fan_in"  # fan mode (hevar.engine.init.MODES)
    dist: str = "normal"  # weight distribution (hevar.engine.init.DISTS)

    @property
    def key(self) -> str:
        """A file-name-safe identity, stable across runs (defaults add nothing, so older keys hold)."""
        act = self.act.replace(":", "_").replace("/", "_")
        extra = ""
        if self.widths:
            spec = self.widths.replace(":", "_").replace(",", "-")
            if len(spec) > 40:
                spec = f"{spec[:20]}-{hashlib.sha1(self.widths.encode()).hexdigest()[:10]}"
            extra += f"__W{spec}"
        if self.mode != "fan_in":
            extra += f"__{self.mode}"
        if self.dist != "normal":
            extra += f"__{self.dist}"
        return f"{act}__L{self.depth}__N{self.width}{extra}__seed{self.seed_index}"

    @property
    def layer_widths(self) -> tuple[int, ...]:
        """(N_0, ..., N_L)."""
        return init.layer_widths(self.widths, self.depth) if self.widths else (self.width,) * (self.depth + 1)


def variants(config: SweepConfig) -> list[tuple[int, str, str, str]]:
    """(width, widths, mode, dist) of every network shape and initialisation of a sweep at one
    depth and activation: constant widths, or the one profile (width = N_0), × modes × dists."""
    shapes = [(config.width[0], config.widths)] if config.widths else [(w, "") for w in config.width]
    return [(w, p, m, d) for w, p in shapes for m in config.mode for d in config.dist]


def plan(config: SweepConfig) -> list[Task]:
    """All tasks of a sweep, in a fixed order (results do not depend on it)."""
    return [
        Task(a, d, w, s, p, m, dist)
        for a in config.act for d in config.depth for w, p, m, dist in variants(config) for s in range(config.seeds)
    ]


def grid(config: SweepConfig) -> list[tuple[float, float]]:
    """The (σ_w²·N, σ_b²) pairs every task runs, in the order of the engine's K axis."""
    return [(s, b) for s in config.sigma_w2 for b in config.sigma_b2]


def network(config: SweepConfig, act, depth: int):
    """The :class:`hevar.blocks.network.Network` of ``config.arch`` for one activation and depth."""
    from hevar.experiments.config import effective_q_in

    return build_network(getattr(config, "arch", "mlp"), act, depth, getattr(config, "branch_scale", "1"),
                         effective_q_in(config, act))


def run_task(config: SweepConfig, task: Task, memory_budget: int | None = None) -> Measurement:
    """Measure one task. Pure: depends only on ``config`` and ``task``. ``memory_budget``: bytes the
    engine may use (:func:`hevar.engine.passes.measure`; None: its default), set by the memory guard."""
    act = parse_activation(task.act)
    widths = task.layer_widths
    pairs = grid(config)
    weight_std = np.array([np.sqrt(init.layer_sigma_w2(s, widths, task.mode)) for s, _ in pairs])
    bias_std = np.array([math.sqrt(b) for _, b in pairs])
    net = network(config, act, task.depth)
    budget = {} if memory_budget is None else {"memory_budget": memory_budget}
    q_in, pre = getattr(config, "q_in", 1.0), getattr(config, "input_preactivation", False)
    if q_in != 1.0 or pre:  # the input's convention (issue 13), only when set
        budget.update(q_in=q_in, input_act=act if pre else None)
    if signalprop.wanted(config, act, task.depth):  # residual stacks: Brock et al.'s statistics (signalprop.csv)
        budget.update(signalprop=True)
    if task.dist != "truncnormal":
        m = measure(act, widths, weight_std, bias_std, config.batch,
                    Streams(config.seed, task.seed_index, task.dist), config.dtype, network=net, **budget)
    else:
        m = _measure_by_weight_std(act, widths, weight_std, bias_std, config, task, net, budget)
    extras = pairsweep.measure_extras(config, task, act, widths, weight_std, bias_std)
    if m.signalprop:
        extras.update(m.signalprop)
        m = dataclasses.replace(m, signalprop=None)  # kept once, in extras (what the point file saves)
    if not extras:  # --input-corr and --jacobian off: the measurement is what it always was
        return m
    return pairsweep.OptInMeasurement(**{f.name: getattr(m, f.name) for f in dataclasses.fields(m)}, extras=extras)


def _measure_by_weight_std(act, widths, weight_std, bias_std, config: SweepConfig, task: Task, net,
                           budget: dict) -> Measurement:
    """PyTorch's truncation at absolute ±2 makes the standard draw depend on σ_{w,l}: configurations
    are measured in groups sharing their per-layer σ_{w,l} (e.g. a σ_b² grid), each group with
    its own draw (the same uniforms, cut at 2/σ_{w,l}), and put back in grid order."""
    K, L = weight_std.shape
    parts: dict[int, tuple[Measurement, int]] = {}
    for row in dict.fromkeys(map(tuple, weight_std)):
        idx = [k for k in range(K) if tuple(weight_std[k]) == row]
        streams = Streams(config.seed, task.seed_index, "truncnormal", tuple(init.TORCH_TRUNC / np.array(row)))
        m = measure(act, widths, weight_std[idx], bias_std[idx], config.batch, streams, config.dtype, network=net,
                    **budget)
        parts.update({k: (m, i) for i, k in enumerate(idx)})
    fields = {f: np.stack([getattr(parts[k][0], f)[parts[k][1]] for k in range(K)]) for f in FIELDS}
    sp = None
    if budget.get("signalprop"):
        sp = {a: np.stack([parts[k][0].signalprop[a][parts[k][1]] for k in range(K)]) for a in signalprop.ARRAYS}
    return Measurement(**fields, status=tuple(parts[k][0].status[parts[k][1]] for k in range(K)),
                       weight_mean_sq=np.stack([parts[k][0].weight_mean_sq[parts[k][1]] for k in range(K)]),
                       signalprop=sp)


# --- reductions ----------------------------------------------------------------------------------


def fit_layers(depth: int) -> tuple[int, int]:
    """First and last layer (1-based, inclusive) of the χ̂ fit."""
    return (depth // 2 + 1, depth) if depth >= 4 else (1, depth)


def _slope(layers: np.ndarray, values: np.ndarray) -> float:
    x = layers - layers.mean()
    return float(np.dot(x, values - values.mean()) / np.dot(x, x))


def _chi_hat(layers: np.ndarray, log_q_tilde: np.ndarray) -> tuple[float, float]:
    """χ̂ = exp(−slope of ln(seed-mean q̃ˡ) against l) and its jackknife standard error over seeds.

    Averaging q̃ over seeds before the logarithm keeps the estimate close to the growth of E[q̃ˡ];
    the mean of per-seed log-slopes would be biased low by about half the per-layer variance of
    ln q̃ (of order 1/N for ReLU). ``log_q_tilde`` has shape (seeds, layers).
    """
    n = log_q_tilde.shape[0]
    if not np.all(np.isfinite(log_q_tilde)):
        return math.nan, math.nan
    chi = math.exp(-_slope(layers, _log_mean(log_q_tilde)))
    if n < 2:
        return chi, math.nan
    loo = np.array([_slope(layers, _log_mean(np.delete(log_q_tilde, i, axis=0))) for i in range(n)])
    se_slope = math.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2))
    return chi, chi * se_slope


def _log_mean(log_values: np.ndarray, axis: int = 0) -> np.ndarray:
    """ln of the mean of exp(log_values) along ``axis``, without overflow."""
    top = np.max(log_values, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(np.log(np.mean(np.exp(log_values - top), axis=axis, keepdims=True)) + top, axis)


_LOG_MAX = math.log(sys.float_info.max)  # ≈ 709.78
_LOG_MIN = math.log(sys.float_info.min)  # ≈ -708.40, the smallest normal float64


def _linear(log_value: float) -> float:
    """exp(log_value) where it is a normal float64, else nan (the CSV cell is then empty; the
    log10_ column keeps the value). Below the normal range exp would round to a subnormal or to 0,
    which is not the measured value."""
    if not math.isfinite(log_value) or not _LOG_MIN <= log_value <= _LOG_MAX:
        return math.nan
    return math.exp(log_value)


def _seed_status(status: str, logs: dict[str, np.ndarray], seed: int, zero_grad: np.ndarray | None = None) -> str:
    """The engine's status of one seed, or — where it says "ok" but a measured value is not finite —
    "underflow at layer l" (a value that went to 0, e.g. an unscaled forward pass decaying below the
    dtype, or a float32 norm too small to square) or "overflow at layer l" at the first such layer.
    ``zero_grad`` marks layers whose ∂J/∂Wˡ is exactly 0 by construction (a residual branch at α = 0)."""
    if status != "ok":
        return status
    values = np.stack([logs[f][seed] for f in ("log_q", "log_q_tilde", "log_grad_norm2")])  # (3, L)
    bad = ~np.isfinite(values)
    if zero_grad is not None:
        bad[2] &= ~(zero_grad & (values[2] == -np.inf))
    if not bad.any():
        return status
    layer = int(np.flatnonzero(bad.any(axis=0))[0])
    kind = "underflow" if np.all(values[:, layer][bad[:, layer]] == -np.inf) else "overflow"
    return f"{kind} at layer {layer + 1}"


def _first_bad_layer(statuses: Iterable[str]) -> tuple[str, int | None]:
    worst: tuple[str, int | None] = ("ok", None)
    for s in statuses:
        if s != "ok":
            layer = int(s.rsplit(" ", 1)[1])
            if worst[1] is None or layer < worst[1]:
                worst = (s, layer)
    return worst


def reduce(config: SweepConfig, results: dict[Task, Measurement]) -> tuple[list[dict], list[dict], list[dict]]:
    """Seed results → (layer rows, summary rows, theory rows) for the CSVs."""
    layer_rows: list[dict] = []
    summary_rows: list[dict] = []
    pairs = grid(config)
    for act_name in config.act:
        act = parse_activation(act_name)
        for depth in config.depth:
            for width, profile, mode, dist in variants(config):
                seeds = [results[Task(act_name, depth, width, s, profile, mode, dist)] for s in range(config.seeds)]
                stacked = {f: np.stack([getattr(m, f) for m in seeds]) for f in FIELDS}  # (S, K, L)
                widths = Task(act_name, depth, width, 0, profile).layer_widths
                for k, (s, b) in enumerate(pairs):
                    logs = {f: stacked[f][:, k, :] for f in FIELDS}
                    rows, summary = _reduce_config(
                        act, depth, width, s, b, logs, [m.status[k] for m in seeds],
                        widths=widths, profile=profile, mode=mode, dist=dist, net=network(config, act, depth),
                        arch=arch_key(config),
                        weight_mean_sq=[None if m.weight_mean_sq is None else m.weight_mean_sq[k] for m in seeds],
                    )
                    add_fluctuation_columns(rows, summary, config, act, widths, b, dist, logs)
                    if config.jacobian:
                        summary.update(pairsweep.jacobian_columns(config, act, widths, s, b, dist, k, seeds,
                                                                  chi1_applies(act, s, widths, mode)))
                    if not config.input_corr:
                        layer_rows += rows
                        summary_rows.append(summary)
                        continue
                    for c_rows, c_summary in pairsweep.corr_rows(config, act, widths, s, b, mode, k, seeds, rows,
                                                                 summary, chi1_applies(act, s, widths, mode)):
                        layer_rows += c_rows
                        summary_rows.append(c_summary)
    return layer_rows, summary_rows, theory_rows(config)


def spectra_rows(config: SweepConfig, results: dict[Task, Measurement], summary_rows: list[dict]) -> list[dict]:
    """``spectra.csv`` (``--jacobian``): per configuration (per c⁰ too, with ``--input-corr``, whose
    config_id it carries) and seed, the quantiles of the squared singular values of J
    (:func:`hevar.experiments.pairsweep.spectra_rows`)."""
    names = ("config_id",) + tuple(c for c in ("activation", "depth", "width", "sigma_w2", "sigma_w2_n", "sigma_b2",
                                               "widths", "mode", "dist", "input_corr"))
    pairs = grid(config)
    rows: list[dict] = []
    by_base: dict[tuple, list[dict]] = {}
    for r in summary_rows:
        by_base.setdefault((r["activation"], r["depth"], r["widths"], r["mode"], r["dist"], r["sigma_w2_n"],
                            r["sigma_b2"]), []).append(r)
    for act_name in config.act:
        act = parse_activation(act_name)
        for depth in config.depth:
            for width, profile, mode, dist in variants(config):
                seeds = [results[Task(act_name, depth, width, i, profile, mode, dist)] for i in range(config.seeds)]
                widths = Task(act_name, depth, width, 0, profile).layer_widths
                for k, (s, b) in enumerate(pairs):
                    key, _ = config_keys(act.name, widths, s, b, profile, mode, dist, arch_key(config))
                    for summ in by_base[(key["activation"], depth, key["widths"], mode, dist, key["sigma_w2_n"],
                                         key["sigma_b2"])]:
                        rows += pairsweep.spectra_rows({c: summ[c] for c in names if c in summ}, seeds, k)
    return rows


def config_id(key: dict, *, curve: bool = False) -> str:
    """12 hex digits naming one configuration (``curve``: one stability curve, every σ_w²·N): a
    SHA-1 of the canonical JSON of what defines it. Stable across runs, resumes and machines."""
    names = ("activation", "depth", "widths", "mode", "dist", "sigma_b2") + (() if curve else ("sigma_w2_n",))
    names += tuple(k for k in ("arch", "branch_scale", "q_in", "input_preactivation")
                   if k in key)  # only when not the plain MLP, or not the default input
    if "input_corr" in key and not curve:  # only with --input-corr: c⁰ is then a configuration axis
        names += ("input_corr",)
    canonical = json.dumps({k: key[k] for k in names}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(canonical.encode()).hexdigest()[:12]


def arch_key(config: SweepConfig) -> dict:
    """The architecture's and the input convention's part of a configuration's identity: empty for
    the plain MLP fed unactivated inputs of E[x²] = 1 (so the ids of every earlier run hold), else
    the spec and branch scale, and ``q_in`` / ``input_preactivation`` where they are not the default."""
    arch, scale = getattr(config, "arch", "mlp"), getattr(config, "branch_scale", "1")
    out = {} if arch == "mlp" else {"arch": arch, "branch_scale": scale}
    if getattr(config, "q_in", 1.0) != 1.0:
        out["q_in"] = float(config.q_in)
    if getattr(config, "input_preactivation", False):
        out["input_preactivation"] = True
    return out


def config_keys(act_name: str, widths: tuple[int, ...], s: float, b: float, profile: str, mode: str,
                dist: str, arch: dict | None = None, input_corr: float | None = None) -> tuple[dict, list[dict]]:
    """Key columns of one configuration: for its summary row, and for each layer's rows.
    ``input_corr`` (with ``--input-corr`` only): c⁰, a column and part of ``config_id`` (not of ``curve_id``).

    ``width`` is N_0 and ``sigma_w2`` is σ_{w,1}² in every file (s/N for constant width and
    fan_in); the per-layer rows add ``layer_width`` = N_l and ``layer_sigma_w2`` = σ_{w,l}²."""
    sigma_w2 = init.layer_sigma_w2(s, np.asarray(widths), mode)
    key = dict(activation=act_name, depth=len(widths) - 1, width=int(widths[0]), sigma_w2=float(sigma_w2[0]),
               sigma_w2_n=float(s), sigma_b2=float(b), widths=profile or f"constant:{widths[0]}", mode=mode, dist=dist)
    if input_corr is not None:
        key["input_corr"] = float(input_corr)
    ident = dict(key, **(arch or {}))  # the architecture names the configuration without a column of its own
    key = dict(key, config_id=config_id(ident), curve_id=config_id(ident, curve=True))
    layers = [dict(key, layer=l, layer_width=int(widths[l]), layer_sigma_w2=float(sigma_w2[l - 1]))
              for l in range(1, len(widths))]
    return key, layers


def chi1_applies(act, s: float, widths, mode: str) -> bool:
    """Whether the constant-width χ₁ (and the critical σ_w²·N) describe this network: every layer
    has the same backward gain (for homogeneous φ, G does not depend on q, so that is enough) and,
    otherwise, the same forward gain. A width profile whose fan mode does not cancel its per-layer
    gains has no single fixed point; ``chi_theory`` is then the number to use."""
    s_in, s_out = init.scaled_variances(s, np.asarray(widths), mode)
    return bool(np.allclose(s_out[:-1], s) and (act.homogeneous or np.allclose(s_in, s)))


def theory_logs(net, widths, s: float, b: float, mode: str, log_q_tilde_top: float = 0.0):
    """Mean-field ln qˡ, ln q̃ˡ (anchored at ``log_q_tilde_top``) and ln E‖∂J/∂Wˡ‖² of one
    configuration of the network ``net`` (:class:`hevar.blocks.network.Network`), l = 1..L. Past
    float64 the theory's linear-scale steps give inf (and G(inf) may be nan): that is the answer —
    an empty cell — not something to warn about mid-sweep."""
    widths = np.asarray(widths)
    s_in, s_out = init.scaled_variances(s, widths, mode)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        log_q_th = net.log_q_trajectory(s_in, b, widths)
        log_qt_th = net.log_q_tilde_trajectory(s_in, s_out, b, widths, log_q_th, log_q_tilde_top)
        log_gn_th = net.log_grad_norm2(widths, log_q_th, log_qt_th, s_in, b)
    return log_q_th, log_qt_th, log_gn_th


def _fit_chi(layers: np.ndarray, log_q_tilde: np.ndarray) -> float:
    """χ from the slope of ln q̃ˡ over ``layers`` (nan unless every value is finite)."""
    if len(layers) < 2 or not np.all(np.isfinite(log_q_tilde)):
        return math.nan
    return math.exp(-_slope(layers, log_q_tilde))


def chi_theory_at(net, widths, s: float, b: float, mode: str) -> float:
    """``chi_theory``, the finite-depth fit of χ̂ applied to the mean-field trajectory, at any σ_w²·N."""
    first, last = fit_layers(len(widths) - 1)
    _, log_qt, _ = theory_logs(net, widths, s, b, mode)
    return _fit_chi(np.arange(first, last + 1), log_qt[first - 1:last])


def _reduce_config(act, depth: int, width: int, s: float, b: float,
                   logs: dict[str, np.ndarray], statuses: list[str], *, widths: tuple[int, ...],
                   profile: str = "", mode: str = "fan_in", dist: str = "normal", net=None,
                   weight_mean_sq: list | None = None, arch: dict | None = None) -> tuple[list[dict], dict]:
    n_seeds = logs["log_q"].shape[0]
    net = net if net is not None else build_network("mlp", act, depth)
    zero_grad = net.zero_gradient_layers
    status, bad_layer = _first_bad_layer(_seed_status(st, logs, i, zero_grad) for i, st in enumerate(statuses))
    layers = np.arange(1, depth + 1)
    key, layer_keys = config_keys(act.name, widths, s, b, profile, mode, dist, arch)
    widths = np.asarray(widths)

    def reduce_field(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        vals = logs[name]
        mean = _log_mean(vals)
        with np.errstate(invalid="ignore"):
            lo, hi = np.percentile(vals, [16, 84], axis=0)
        partial = ~np.all(np.isfinite(vals), axis=0)  # a layer some seed did not measure: no value
        for a in (mean, lo, hi):
            a[partial] = np.nan
        return mean, lo, hi

    q = reduce_field("log_q")
    qt = reduce_field("log_q_tilde")
    gn = reduce_field("log_grad_norm2")
    if bad_layer is not None:  # the forward pass stops there; q̃ is kept only if every seed measured it
        for a in (*q, *gn):
            a[bad_layer - 1:] = np.nan

    uniform = chi1_applies(act, s, widths, mode)
    top = qt[0][-1] if np.isfinite(qt[0][-1]) else 0.0
    log_q_th, log_qt_th, log_gn_th = theory_logs(net, widths, s, b, mode, top)
    if not np.isfinite(qt[0][-1]):  # the prediction is anchored at the measured q̃ᴸ
        log_qt_th[:] = np.nan
        log_gn_th[:] = np.nan

    rows = []
    for i, layer in enumerate(layers):
        row = dict(layer_keys[i], n_seeds=n_seeds)
        for col, (mean, lo, hi), th in (("q", q, log_q_th), ("q_tilde", qt, log_qt_th), ("grad_norm2", gn, log_gn_th)):
            row[col] = _linear(mean[i])
            row[f"{col}_lo"] = _linear(lo[i])
            row[f"{col}_hi"] = _linear(hi[i])
            row[f"{col}_theory"] = _linear(th[i])
            row[f"log10_{col}"] = mean[i] / LN10
            row[f"log10_{col}_theory"] = th[i] / LN10
            if col != "q":
                row[f"log10_{col}_lo"] = lo[i] / LN10
                row[f"log10_{col}_hi"] = hi[i] / LN10
        rows.append(row)

    first, last = fit_layers(depth)
    sel = slice(first - 1, last)
    chi_hat = chi_se = chi_th = math.nan
    if last > first:  # χ̂ needs every seed's q̃ over the fit layers (nan otherwise)
        chi_hat, chi_se = _chi_hat(layers[sel], logs["log_q_tilde"][:, sel])
        chi_th = _fit_chi(layers[sel], log_qt_th[sel])
    crit = net.critical(act, b)
    summary = dict(
        key, n_seeds=n_seeds, chi_hat=chi_hat, chi_hat_se=chi_se, chi_theory=chi_th,
        chi1=net.chi1(act, s, b) if uniform else math.nan, z=(chi_hat - chi_th) / chi_se if chi_se > 0 else math.nan,
        fit_first_layer=first, fit_last_layer=last,
        log10_q_tilde_ratio=(qt[0][0] - qt[0][-1]) / LN10,
        log10_q_tilde_ratio_theory=(log_qt_th[0] - log_qt_th[-1]) / LN10,
        sigma_w2_n_crit=crit.sigma_w2_n, critical_kind=crit.kind, status=status,
        weight_var_realised_ratio=_realised_ratio(weight_mean_sq),
    )
    return rows, summary


def _realised_ratio(weight_mean_sq: list | None) -> float:
    """Realised per-entry weight variance over the nominal one, averaged over layers and seeds:
    the mean of (Gˡ)² of the standard draws (nan for points saved before it was recorded)."""
    if not weight_mean_sq or any(m is None for m in weight_mean_sq):
        return math.nan
    return float(np.mean(weight_mean_sq))


def add_fluctuation_columns(rows: list[dict], summary: dict, config: SweepConfig, act, widths: tuple[int, ...],
                            sigma_b2: float, dist: str, logs: dict[str, np.ndarray]) -> None:
    """Add the finite-width columns to one configuration's layer rows and summary row, in place.

    From the per-seed logs (S, L): ``var_ln_q_tilde`` (variance of ln q̃ˡ across seeds, ddof = 1),
    ``q_tilde_m2_ratio`` (mean of q̃² over the squared mean of q̃), the Theorem 1.1 ratio
    E[‖δˡ‖²‖φ(zˡ⁻¹)‖²] / (E[‖δˡ‖²] E[‖φ(zˡ⁻¹)‖²]) with expectations over inputs and seeds pooled
    (every seed has the same B inputs, so a pooled mean is the mean of the per-seed input means)
    with the 16th/84th percentiles of its per-seed value and its jackknife standard error over seeds;
    the exact single-input theory of :mod:`hevar.meanfield.fluctuations` where it applies; β. A layer some
    seed did not measure has no value.
    """
    from hevar.meanfield import fluctuations

    lq, lgn, ldn, lan = (logs[f] for f in ("log_q_tilde", "log_grad_norm2", "log_delta_norm2", "log_act_norm2"))
    n_seeds, depth = lq.shape
    q_ok = np.all(np.isfinite(lq), axis=0)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # inf − inf past an overflow: no value
        per_seed = lgn - ldn - lan  # ln of each seed's ratio over its own inputs (exactly 0 with one input)
        thm_ok = np.all(np.isfinite(per_seed), axis=0)
        var_ln = np.var(lq, axis=0, ddof=1) if n_seeds > 1 else np.full(depth, np.nan)
        m2 = np.exp(_log_mean(2 * lq) - 2 * _log_mean(lq))
        thm = np.exp(_log_mean(lgn) - _log_mean(ldn) - _log_mean(lan))
        thm_lo, thm_hi = np.exp(np.percentile(per_seed, [16, 84], axis=0))
        thm_se = _ratio_jackknife_se(lgn, ldn, lan) if n_seeds > 1 else np.full(depth, np.nan)
    nan = np.full(depth, np.nan)
    alpha = fluctuations.homogeneous_slope(act.name)
    applies = (fluctuations.theory_applies(act.name, sigma_b2, config.batch, "gaussian" if dist == "normal" else dist)
               and network(config, act, depth).plain)
    var_th = fluctuations.var_ln_q_tilde(widths, alpha) if applies else nan
    m2_th = fluctuations.q_tilde_moment_ratio(widths, alpha) if applies else nan
    to_top = fluctuations.beta_to_top(widths)
    for i, row in enumerate(rows):
        row.update(
            var_ln_q_tilde=var_ln[i] if q_ok[i] else math.nan, var_ln_q_tilde_theory=var_th[i],
            q_tilde_m2_ratio=m2[i] if q_ok[i] else math.nan, q_tilde_m2_ratio_theory=m2_th[i],
            beta_to_top=to_top[i],
            thm11_ratio=thm[i] if thm_ok[i] else math.nan,
            thm11_ratio_lo=thm_lo[i] if thm_ok[i] else math.nan,
            thm11_ratio_hi=thm_hi[i] if thm_ok[i] else math.nan,
            thm11_ratio_se=thm_se[i] if thm_ok[i] else math.nan,
        )
    summary.update(beta=fluctuations.beta(widths), var_ln_q_tilde_first=rows[0]["var_ln_q_tilde"],
                   var_ln_q_tilde_first_theory=var_th[0])


def _ratio_jackknife_se(log_xy: np.ndarray, log_x: np.ndarray, log_y: np.ndarray) -> np.ndarray:
    """Jackknife standard error over seeds (axis 0) of mean(xy)/(mean(x)·mean(y)), per layer."""
    n = log_xy.shape[0]
    sums = []
    for a in (log_xy, log_x, log_y):
        top = np.max(a, axis=0)
        top = np.where(np.isfinite(top), top, 0.0)
        e = np.exp(a - top)
        sums.append(((e.sum(axis=0) - e) / (n - 1), top))  # leave-one-out means (scaled), (S, L)
    (xy, t_xy), (x, t_x), (y, t_y) = sums
    loo = xy / (x * y) * np.exp(t_xy - t_x - t_y)
    return np.sqrt((n - 1) / n * np.sum((loo - loo.mean(axis=0)) ** 2, axis=0))


def seed_rows(config: SweepConfig, results: dict[Task, Measurement]) -> list[dict]:
    """Per-seed values for ``seeds.csv``: one row per configuration, seed and layer with log₁₀ of
    what :class:`~hevar.engine.passes.Measurement` holds. Key columns as in ``layers.csv`` (``width`` and
    ``sigma_w2`` are layer l's); rows grouped by configuration, then seed, then layer."""
    pairs = grid(config)
    groups: dict[Task, list[Task]] = {}
    for task in plan(config):
        if task in results:
            groups.setdefault(dataclasses.replace(task, seed_index=0), []).append(task)
    names = [f"log10_{f[4:]}" for f in FIELDS]
    rows: list[dict] = []
    for shape, tasks in groups.items():
        act = parse_activation(shape.act)
        for k, (s, b) in enumerate(pairs):
            for j, c0 in enumerate(config.input_corr or (None,)):
                _, layer_keys = config_keys(act.name, shape.layer_widths, s, b, shape.widths, shape.mode, shape.dist,
                                            arch_key(config), c0)
                for task in tasks:
                    m = results[task]
                    logs = np.stack([getattr(m, f)[k] for f in FIELDS]) / LN10  # (5, L)
                    for i in range(shape.depth):
                        row = dict(layer_keys[i], seed_index=task.seed_index, status=m.status[k],
                                   **dict(zip(names, logs[:, i])))
                        if c0 is not None:  # that seed's mean over pairs of cˡ and 1 − cˡ
                            row.update(c=m.extras["pair_c"][k, j, i], one_minus_c=m.extras["pair_gap"][k, j, i])
                        rows.append(row)
    return rows


def crossing_rows(config: SweepConfig, results: dict[Task, Measurement], summary_rows: list[dict]) -> list[dict]:
    """One ``crossings.csv`` row per stability curve (every σ_w²·N of one activation, depth, width
    profile, mode, dist and σ_b²): see :mod:`hevar.results.crossings`."""
    from hevar.results import crossings

    by_id = {r["config_id"]: r for r in summary_rows}
    pairs = grid(config)
    rows = []
    for act_name in config.act:
        act = parse_activation(act_name)
        for depth in config.depth:
            first, last = fit_layers(depth)
            layers = np.arange(first, last + 1)
            net = network(config, act, depth)
            for width, profile, mode, dist in variants(config):
                seeds = [results[Task(act_name, depth, width, i, profile, mode, dist)] for i in range(config.seeds)]
                log_qt = np.stack([m.log_q_tilde[:, first - 1:last] for m in seeds], axis=1)  # (K, S, F)
                widths = Task(act_name, depth, width, 0, profile).layer_widths
                for b in config.sigma_b2:
                    ks = sorted((k for k, (_, bk) in enumerate(pairs) if bk == b), key=lambda k: pairs[k][0])
                    first_c = config.input_corr[0] if config.input_corr else None  # q̃ is the same for every c⁰
                    summ = [by_id[config_keys(act.name, widths, pairs[k][0], b, profile, mode, dist,
                                              arch_key(config), first_c)[0]["config_id"]]
                            for k in ks]
                    key = {c: summ[0][c] for c in crossings.COLUMNS if c in summ[0] and c != "sigma_w2_n"}

                    def chi_th(s: float, _b=b, _w=widths, _m=mode) -> float:
                        return chi_theory_at(net, _w, s, _b, _m)

                    uniform = all(chi1_applies(act, r["sigma_w2_n"], widths, mode) for r in summ)
                    if not uniform:  # χ₁ and its critical point describe no layer of this network
                        key.update(sigma_w2_n_crit=math.nan, critical_kind="not applicable")
                    jump_chi = (lambda s, _b=b: net.chi1(act, s, _b)) if uniform else chi_th
                    rows.append(crossings.crossing(
                        key, [r["sigma_w2_n"] for r in summ], [r["chi_hat"] for r in summ],
                        [r["chi_hat_se"] for r in summ], [r["chi_theory"] for r in summ],
                        layers=layers, log_q_tilde=log_qt[ks] if last > first else None,
                        theory_chi=chi_th, jump_chi=jump_chi, rng=crossings.curve_seed(config.seed, key["curve_id"])))
    return rows


def theory_rows(config: SweepConfig, points: int = 121) -> list[dict]:
    """χ₁ on a fine σ_w²·N grid spanning the sweep and the critical point, per (activation, σ_b²)."""
    rows = []
    for act_name in config.act:
        act = parse_activation(act_name)
        from hevar.experiments.config import effective_q_in

        q_in = effective_q_in(config, act)
        for b in config.sigma_b2:
            crit = theory.critical_sigma_w2_n(act, b, q_in).sigma_w2_n
            lo = min(config.sigma_w2 + ((crit,) if math.isfinite(crit) else ()))
            hi = max(config.sigma_w2 + ((crit,) if math.isfinite(crit) else ()))
            s_grid = np.linspace(lo * 0.9, hi * 1.1, points)
            chi, q_star = theory.chi1_curve(act, s_grid, b, q_in)
            # q* = ∞ (divergence) is a value, not a missing one: written as "inf"
            rows += [dict(activation=act.name, sigma_b2=b, sigma_w2_n=s, chi1=c, q_star="inf" if qs == math.inf else qs)
                     for s, c, qs in zip(s_grid, chi, q_star)]
    return rows


# --- execution ------------------------------------------------------------------------------------

ProgressFn = Callable[[Task, bool], None]  # called after each task with (task, was_already_done)


def to_arrays(m: Measurement) -> dict[str, np.ndarray]:
    extra = {} if m.weight_mean_sq is None else {"weight_mean_sq": m.weight_mean_sq}
    extra.update(getattr(m, "extras", {}))  # --input-corr, --jacobian
    return {**{f: getattr(m, f) for f in FIELDS}, "status": np.array(m.status, dtype=str), **extra}


def from_arrays(arrays: dict[str, np.ndarray]) -> Measurement:
    m = Measurement(**{f: arrays[f] for f in FIELDS}, status=tuple(str(s) for s in arrays["status"]),
                    weight_mean_sq=arrays.get("weight_mean_sq"))
    opt = {k: arrays[k] for k in (*pairsweep.PAIR_ARRAYS, *pairsweep.JACOBIAN_ARRAYS, pairsweep.QUANTILE_ARRAY,
                                  *signalprop.ARRAYS) if k in arrays}
    if not opt:
        return m
    return pairsweep.OptInMeasurement(**{f.name: getattr(m, f.name) for f in dataclasses.fields(m)}, extras=opt)


def point_problem(config: SweepConfig, task: Task, arrays: dict[str, np.ndarray]) -> str | None:
    """What is wrong with a point file's arrays for ``task`` (None: nothing): every field of a
    :class:`Measurement` present, as real (K, L) arrays for the run's K configurations and the
    task's L layers, and a status per configuration."""
    K, L = len(grid(config)), task.depth
    for name in FIELDS + ("status",):
        if name not in arrays:
            return f"no '{name}' array"
    for name in FIELDS + (("weight_mean_sq",) if "weight_mean_sq" in arrays else ()):
        a = arrays[name]
        if a.dtype.kind != "f" or a.shape != (K, L):
            return f"'{name}' is {a.dtype} of shape {a.shape}, not float of shape {(K, L)}"
    if arrays["status"].shape != (K,) or arrays["status"].dtype.kind != "U":
        return f"'status' has shape {arrays['status'].shape}, not ({K},)"
    shapes = {**pairsweep.array_shapes(config, L),  # --input-corr, --jacobian; residual stacks' signalprop
              **signalprop.array_shapes(config, L, parse_activation(task.act))}
    for name, shape in shapes.items():
        a = arrays.get(name)
        if a is None:
            return f"no '{name}' array"
        if a.dtype.kind != "f" or a.shape != shape:
            return f"'{name}' is {a.dtype} of shape {a.shape}, not float of shape {shape}"
    if "attempt" in arrays and (arrays["attempt"].shape != () or arrays["attempt"].dtype.kind not in "iu"):
        return "'attempt' is not one integer"
    return None


def load_task(config: SweepConfig, run_dir, task: Task) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """A persisted task's arrays (None if it has none), and what is wrong with its file if it is damaged."""
    from hevar.results import store

    arrays, problem = store.read_point(run_dir, task.key)
    if arrays is not None:
        problem = point_problem(config, task, arrays)
    return (None, problem) if problem else (arrays, None)


def execute(config: SweepConfig, run_dir, on_progress: ProgressFn | None = None, *,
            executor=None, attempt: int | None = None, damaged: list[tuple[str, str]] | None = None,
            memory_budget: int | None = None) -> tuple[dict[Task, Measurement], list[str]]:
    """Run every task not already persisted in ``run_dir``; persist each one as it finishes
    (``run_dir`` None: run every task and keep the results in memory only).

    Tasks run on ``executor`` (one of :mod:`hevar.experiments.executors`, entered; default: this process, one
    after the other) and come back in the order they finish; this process saves each result
    atomically the moment it arrives, tagged with ``attempt`` (see :func:`attempt_log`), so a
    killed run loses only the tasks in flight. Results are identical whatever the executor.
    A point file that cannot be read or does not fit its task (:func:`point_problem`) is
    recomputed and overwritten; ``damaged``, where given, receives (file, what was wrong) for each.
    ``memory_budget`` goes to every task (:func:`run_task`).

    Returns all results and the keys of the tasks computed by this call, in plan order.
    """
    from hevar.results import store
    from hevar.experiments.executors import Serial

    results: dict[Task, Measurement] = {}
    todo: list[Task] = []
    for task in plan(config):
        arrays, problem = (None, None) if run_dir is None else load_task(config, run_dir, task)
        if problem and damaged is not None:
            damaged.append((f"{store.POINTS}/{task.key}.npz", problem))
        if arrays is None:
            todo.append(task)
            continue
        results[task] = from_arrays(arrays)
        if on_progress:
            on_progress(task, True)
    tag = {} if attempt is None else {"attempt": np.array(attempt)}
    work = functools.partial(run_task, config, memory_budget=memory_budget)
    for task, m in (executor or Serial()).imap_unordered(work, todo):
        if run_dir is not None:
            store.save_point(run_dir, task.key, {**to_arrays(m), **tag})
        results[task] = m
        if on_progress:
            on_progress(task, False)
    return results, [t.key for t in todo]


def attempt_log(config: SweepConfig, run_dir) -> dict[int, list[str]]:
    """Which persisted tasks each attempt computed, from the tags in their point files: the
    record survives a killed attempt. Task keys in plan order; untagged and damaged points are left out."""
    log: dict[int, list[str]] = {}
    for task in plan(config):
        arrays, _ = load_task(config, run_dir, task)
        if arrays is not None and "attempt" in arrays:
            log.setdefault(int(arrays["attempt"]), []).append(task.key)
    return log
