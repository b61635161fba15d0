"""``signalprop.csv``: the signal-propagation statistics of a sweep with residual blocks, beside theory.

For every configuration of a stack with residual blocks (``--arch`` containing ``resmlp``) and every
block l, the seed mean (linear, computed in logs) and the 16th/84th percentiles across seeds of

- ``channel_mean2``: mean over units of (mean over the batch of zˡ_i)²,
- ``channel_var``: mean over units of the batch variance of zˡ_i (ddof = 0),
- ``branch_var``: mean over units and batch of the residual branch's α(Wˡhˡ + bˡ) squared (empty for
  the dense input layer l = 1),

measured by :mod:`hevar.engine.signalprop`, with their ``_theory`` from
:func:`hevar.blocks.signalprop.theory` at the run's batch size B (``batch`` column) and the
predicted correlation of two inputs ``stream_corr_theory``. ``log10_`` columns keep the values
beyond float64. A layer is reported only where every seed measured it.

The file exists only for such runs: plain-MLP runs compute none of it, and no existing file gains a
column or changes a byte (the statistics live in the task's point file as three (K, L) arrays,
:data:`hevar.engine.signalprop.ARRAYS`).
"""

from __future__ import annotations

import math

import numpy as np

from hevar.blocks import signalprop as sp_theory
from hevar.engine import init
from hevar.engine.signalprop import ARRAYS
from hevar.meanfield import bivariate
from hevar.meanfield.activations import parse_activation
from hevar.results import store

LN10 = math.log(10.0)
KEY = ("activation", "depth", "width", "sigma_w2", "sigma_w2_n", "sigma_b2")
QUANTITIES = (("channel_mean2", "sp_log_mean2", "log_mean2"), ("channel_var", "sp_log_var", "log_var"),
              ("branch_var", "sp_log_branch", "log_branch"))
COLUMNS = store.SIGNALPROP_COLUMNS


def wanted(config, act, depth: int) -> bool:
    """Whether the tasks of this activation and depth record the statistics (a residual stack)."""
    from hevar.experiments import sweep

    return sp_theory.applies(sweep.network(config, act, depth))


def _lin(log_value: float) -> float:
    """exp of a natural log where it is a float64 (0 for −inf: α = 0), else nan."""
    if log_value == -math.inf:
        return 0.0
    if not math.isfinite(log_value) or log_value > 709.78 or log_value < -708.39:
        return math.nan
    return math.exp(log_value)


def input_cross(config, act) -> float:
    """E[x_a x_b] per unit of two different inputs: 0, or E[φ(u)]² (u ~ N(0, q_in)) for a pre-activated input."""
    if not getattr(config, "input_preactivation", False):
        return 0.0
    q = float(getattr(config, "q_in", 1.0))
    return float(bivariate.phi_phi(act, q, q, 0.0))


def rows(config, results) -> list[dict]:
    """The rows of ``signalprop.csv`` (empty for a sweep without residual blocks)."""
    from hevar.experiments import sweep

    out: list[dict] = []
    pairs = sweep.grid(config)
    c0 = config.input_corr[0] if getattr(config, "input_corr", None) else None
    for act_name in config.act:
        act = parse_activation(act_name)
        for depth in config.depth:
            if not wanted(config, act, depth):
                continue
            net = sweep.network(config, act, depth)
            for width, profile, mode, dist in sweep.variants(config):
                seeds = [results[sweep.Task(act_name, depth, width, i, profile, mode, dist)]
                         for i in range(config.seeds)]
                widths = sweep.Task(act_name, depth, width, 0, profile).layer_widths
                for k, (s, b) in enumerate(pairs):
                    _, layer_keys = sweep.config_keys(act.name, widths, s, b, profile, mode, dist,
                                                      sweep.arch_key(config), c0)
                    s_in, _ = init.scaled_variances(s, np.asarray(widths), mode)
                    th = sp_theory.theory(net, s_in, b, np.asarray(widths), config.batch, input_cross(config, act))
                    out += _config_rows(layer_keys, [m.extras for m in seeds], k, th, config.batch)
    return out


def _config_rows(layer_keys: list[dict], extras: list[dict], k: int, th: dict, batch: int) -> list[dict]:
    depth = len(layer_keys)
    reduced = {}
    for name, array, _ in QUANTITIES:
        vals = np.stack([e[array][k] for e in extras])  # (S, L)
        top = np.max(vals, axis=0)
        top = np.where(np.isfinite(top), top, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.log(np.mean(np.exp(vals - top), axis=0)) + top
            lo, hi = np.percentile(vals, [16, 84], axis=0)
        bad = np.any(np.isnan(vals) | (vals == np.inf), axis=0)
        for a in (mean, lo, hi):
            a[bad] = np.nan
        reduced[name] = (mean, lo, hi)
    rows = []
    for i in range(depth):
        keys = {c: layer_keys[i][c] for c in ("config_id",) + KEY + ("widths", "mode", "dist", "layer", "layer_width")}
        row = dict(keys, batch=batch, n_seeds=len(extras))
        for name, _, th_name in QUANTITIES:
            mean, lo, hi = reduced[name]
            t = th[th_name][i]
            row.update({name: _lin(mean[i]), f"{name}_lo": _lin(lo[i]), f"{name}_hi": _lin(hi[i]),
                        f"{name}_theory": _lin(t)})
        for name, _, th_name in QUANTITIES:
            row[f"log10_{name}"] = reduced[name][0][i] / LN10
            row[f"log10_{name}_theory"] = th[th_name][i] / LN10
        row["stream_corr_theory"] = float(th["c"][i])
        rows.append(row)
    return rows


def array_shapes(config, depth: int, act) -> dict[str, tuple[int, int]]:
    """The point-file arrays a task of this depth must carry: (K, L) each, for residual stacks only."""
    from hevar.experiments import sweep

    if not wanted(config, act, depth):
        return {}
    return {name: (len(sweep.grid(config)), depth) for name in ARRAYS}
