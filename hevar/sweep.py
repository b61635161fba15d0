"""From a config to tidy rows: plan the work, run it, and reduce seeds to means, spreads and fits.

A *configuration* is one (activation, depth, width, σ_w²·N, σ_b²). A *task* is the unit of work
and of persistence: one (activation, depth, width, seed index), which runs every σ_w²·N × σ_b²
configuration of the grid at once on a single shared draw of the weights (see
:func:`hevar.engine.measure`).

Reductions (documented in the README):
- per layer, the seed mean of q, q̃ and ‖∂J/∂Wˡ‖² (averaged in linear scale, computed in logs),
  and the 16th/84th percentiles across seeds (``_lo``/``_hi``);
- χ̂ = exp(−b), where b is the least-squares slope of ln q̃ˡ (the seed mean) against l over the
  fit layers ⌊L/2⌋+1 .. L (the upper half, where the forward pass has settled; all layers when
  L < 4); ``chi_hat_se`` is its jackknife standard error over seeds. ``chi_theory`` is the same
  fit applied to the mean-field trajectory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from hevar import theory
from hevar.activations import parse_activation
from hevar.config import SweepConfig
from hevar.engine import Measurement, Streams, measure

LN10 = math.log(10.0)
FIELDS = ("log_q", "log_q_tilde", "log_grad_norm2", "log_delta_norm2", "log_act_norm2")


@dataclass(frozen=True)
class Task:
    """One unit of work: every (σ_w²·N, σ_b²) of the grid for one seed of one network shape."""

    act: str
    depth: int
    width: int
    seed_index: int

    @property
    def key(self) -> str:
        """A file-name-safe identity, stable across runs."""
        act = self.act.replace(":", "_").replace("/", "_")
        return f"{act}__L{self.depth}__N{self.width}__seed{self.seed_index}"


def plan(config: SweepConfig) -> list[Task]:
    """All tasks of a sweep, in a fixed order (results do not depend on it)."""
    return [
        Task(a, d, w, s)
        for a in config.act for d in config.depth for w in config.width for s in range(config.seeds)
    ]


def grid(config: SweepConfig) -> list[tuple[float, float]]:
    """The (σ_w²·N, σ_b²) pairs every task runs, in the order of the engine's K axis."""
    return [(s, b) for s in config.sigma_w2 for b in config.sigma_b2]


def run_task(config: SweepConfig, task: Task) -> Measurement:
    """Measure one task. Pure: depends only on ``config`` and ``task``."""
    act = parse_activation(task.act)
    widths = (task.width,) * (task.depth + 1)
    pairs = grid(config)
    weight_std = np.array([[math.sqrt(s / task.width)] * task.depth for s, _ in pairs])
    bias_std = np.array([math.sqrt(b) for _, b in pairs])
    return measure(act, widths, weight_std, bias_std, config.batch,
                   Streams(config.seed, task.seed_index), config.dtype)


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
    ln q̃ (≈ 1.4/N for ReLU). ``log_q_tilde`` has shape (seeds, layers).
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


def _linear(log_value: float) -> float:
    """exp(log_value) where it fits in float64, else nan (the CSV cell is then empty)."""
    if not math.isfinite(log_value) or log_value > 709.0:
        return math.nan
    return math.exp(log_value)


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
            for width in config.width:
                seeds = [results[Task(act_name, depth, width, s)] for s in range(config.seeds)]
                stacked = {f: np.stack([getattr(m, f) for m in seeds]) for f in FIELDS}  # (S, K, L)
                for k, (s, b) in enumerate(pairs):
                    rows, summary = _reduce_config(
                        act, depth, width, s, b,
                        {f: stacked[f][:, k, :] for f in FIELDS},
                        [m.status[k] for m in seeds],
                    )
                    layer_rows += rows
                    summary_rows.append(summary)
    return layer_rows, summary_rows, theory_rows(config)


def _reduce_config(act, depth: int, width: int, s: float, b: float,
                   logs: dict[str, np.ndarray], statuses: list[str]) -> tuple[list[dict], dict]:
    n_seeds = logs["log_q"].shape[0]
    status, bad_layer = _first_bad_layer(statuses)
    layers = np.arange(1, depth + 1)
    key = dict(activation=act.name, depth=depth, width=width, sigma_w2=s / width, sigma_w2_n=s, sigma_b2=b)

    def reduce_field(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        vals = logs[name]
        mean = _log_mean(vals)
        with np.errstate(invalid="ignore"):
            lo, hi = np.percentile(vals, [16, 84], axis=0)
        return mean, lo, hi

    q = reduce_field("log_q")
    qt = reduce_field("log_q_tilde")
    gn = reduce_field("log_grad_norm2")
    if bad_layer is not None:  # keep only what every seed computed
        for arrs in (q,):
            for a in arrs:
                a[bad_layer - 1:] = np.nan
        for arrs in (qt, gn):
            for a in arrs:
                a[:] = np.nan

    widths = np.full(depth + 1, width)
    s_layer = np.full(depth, float(s))
    log_q_th = theory.log_q_trajectory(act, s_layer, b)
    top = qt[0][-1] if np.isfinite(qt[0][-1]) else 0.0
    log_qt_th = theory.log_q_tilde_trajectory(act, s_layer, log_q_th, top)
    log_gn_th = theory.log_grad_norm2(act, widths, log_q_th, log_qt_th)
    if bad_layer is not None:
        log_qt_th[:] = np.nan
        log_gn_th[:] = np.nan

    rows = []
    for i, layer in enumerate(layers):
        row = dict(key, layer=int(layer), n_seeds=n_seeds)
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
    if bad_layer is None and last > first:
        chi_hat, chi_se = _chi_hat(layers[sel], logs["log_q_tilde"][:, sel])
        chi_th = math.exp(-_slope(layers[sel], log_qt_th[sel]))
    crit = theory.critical_sigma_w2_n(act, b)
    summary = dict(
        key, n_seeds=n_seeds, chi_hat=chi_hat, chi_hat_se=chi_se, chi_theory=chi_th,
        chi1=theory.chi1(act, s, b), fit_first_layer=first, fit_last_layer=last,
        log10_q_tilde_ratio=(qt[0][0] - qt[0][-1]) / LN10,
        log10_q_tilde_ratio_theory=(log_qt_th[0] - log_qt_th[-1]) / LN10,
        sigma_w2_n_crit=crit.sigma_w2_n, critical_kind=crit.kind, status=status,
    )
    return rows, summary


def theory_rows(config: SweepConfig, points: int = 121) -> list[dict]:
    """χ₁ on a fine σ_w²·N grid spanning the sweep and the critical point, per (activation, σ_b²)."""
    rows = []
    for act_name in config.act:
        act = parse_activation(act_name)
        for b in config.sigma_b2:
            crit = theory.critical_sigma_w2_n(act, b).sigma_w2_n
            lo = min(config.sigma_w2 + ((crit,) if math.isfinite(crit) else ()))
            hi = max(config.sigma_w2 + ((crit,) if math.isfinite(crit) else ()))
            s_grid = np.linspace(lo * 0.9, hi * 1.1, points)
            chi, q_star = theory.chi1_curve(act, s_grid, b)
            rows += [dict(activation=act.name, sigma_b2=b, sigma_w2_n=s, chi1=c, q_star=qs)
                     for s, c, qs in zip(s_grid, chi, q_star)]
    return rows


# --- execution ------------------------------------------------------------------------------------

ProgressFn = Callable[[Task, bool], None]  # called after each task with (task, was_already_done)


def to_arrays(m: Measurement) -> dict[str, np.ndarray]:
    return {**{f: getattr(m, f) for f in FIELDS}, "status": np.array(m.status, dtype=str)}


def from_arrays(arrays: dict[str, np.ndarray]) -> Measurement:
    return Measurement(**{f: arrays[f] for f in FIELDS}, status=tuple(str(s) for s in arrays["status"]))


def execute(config: SweepConfig, run_dir, on_progress: ProgressFn | None = None) -> tuple[dict[Task, Measurement], list[str]]:
    """Run every task not already persisted in ``run_dir``; persist each one as it finishes.

    Returns all results and the keys of the tasks computed by this call.
    """
    from hevar import store

    results: dict[Task, Measurement] = {}
    todo: list[Task] = []
    for task in plan(config):
        arrays = store.load_point(run_dir, task.key)
        if arrays is None:
            todo.append(task)
            continue
        results[task] = from_arrays(arrays)
        if on_progress:
            on_progress(task, True)
    computed = []
    for task in todo:
        m = run_task(config, task)
        store.save_point(run_dir, task.key, to_arrays(m))
        results[task] = m
        computed.append(task.key)
        if on_progress:
            on_progress(task, False)
    return results, computed
