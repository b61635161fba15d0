"""What float32 costs in accuracy, for every statistic hevar reports, beside the statistical error.

    python benchmarks/dtype_evidence.py [--depth 1000] [--width 256] [--batch 32] [--seeds 4]
                                        [--sigma-w2 1.5,2,2.5] [--act relu] [--quick]

Runs the same sweep in float32 and in float64 through the sweep's own code (:func:`hevar.experiments.sweep.run_task` for
every task, :func:`~hevar.experiments.sweep.reduce` for the rows of layers.csv and summary.csv), and
for every numeric column of those rows reports

- ``max|f32-f64|``: the largest difference over rows (layers × configurations);
- ``se``: the jackknife standard error over seeds of that column in float64, at the same row (the
  reduction is rerun with each seed left out, so every column — means, percentiles, χ̂, the
  finite-width variances and ratios — gets its own honest error bar);
- ``max |Δ|/se``: the largest ratio over rows, the figure that decides.

**The same draws.** NumPy's float32 normals are not float64 normals rounded: they come from another
algorithm, so a float32 sweep is a *different sample* (its differences to float64 are of the size
of the standard error, which is no statement about precision). To measure what float32
*arithmetic* costs, the float32 run here draws every Gˡ, x and g in float64 and rounds them to
float32 (:class:`RoundedStreams`); ``--native`` compares with the engine's own float32 streams
instead (the sample a user's ``--dtype float32`` gets).

Columns that do not depend on the measurement (keys, and theory columns that are not anchored at a
measured value) are left out when they are identical. At the defaults (relu, L = 1000, N = 256,
B = 32, 4 seeds, three σ_w²·N values at σ_b² = 0, one shared pass per seed and dtype) about a
minute on two quiet cores; ``--seeds 8`` doubles it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np

from hevar.engine.passes import Streams
from hevar.experiments import sweep
from hevar.experiments.config import SweepConfig
from hevar.experiments.sweep import plan, reduce, run_task

KEYS = {"activation", "depth", "width", "sigma_w2", "sigma_w2_n", "sigma_b2", "widths", "mode", "dist", "config_id",
        "curve_id", "layer", "layer_width", "layer_sigma_w2", "n_seeds", "fit_first_layer", "fit_last_layer",
        "status", "critical_kind"}


@dataclasses.dataclass(frozen=True)
class RoundedStreams(Streams):
    """The float64 streams' numbers rounded to the requested dtype (normal weights, bias, x, g)."""

    def _normal(self, key, shape, dtype, out=None):
        values = super()._normal(key, shape, np.float64)
        if out is None:
            return values.astype(dtype)
        out[...] = values
        return out


def numeric_columns(rows: list[dict]) -> list[str]:
    return [k for k, v in rows[0].items() if k not in KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)]


def table(rows: list[dict], cols: list[str]) -> np.ndarray:
    return np.array([[float(r[c]) if r[c] is not None else math.nan for c in cols] for r in rows])


def reduce_subset(config: SweepConfig, results: dict, seeds: list[int]):
    """reduce() over the given seeds only, renumbered 0..len-1."""
    sub = dataclasses.replace(config, seeds=len(seeds))
    remap = {dataclasses.replace(t, seed_index=seeds.index(t.seed_index)): m for t, m in results.items()
             if t.seed_index in seeds}
    layers, summary, _ = reduce(sub, remap)
    return layers, summary


def jackknife_se(config: SweepConfig, results: dict, cols_l: list[str], cols_s: list[str]):
    n = config.seeds
    loo_l, loo_s = [], []
    for i in range(n):
        layers, summary = reduce_subset(config, results, [s for s in range(n) if s != i])
        loo_l.append(table(layers, cols_l))
        loo_s.append(table(summary, cols_s))
    out = []
    for loo in (np.stack(loo_l), np.stack(loo_s)):
        with np.errstate(invalid="ignore"):
            out.append(np.sqrt((n - 1) / n * np.sum((loo - loo.mean(axis=0)) ** 2, axis=0)))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--act", default="relu")
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--sigma-w2", default="1.5,2,2.5", help="σ_w²·N values (comma list)")
    parser.add_argument("--sigma-b2", default="0", help="σ_b² values (comma list)")
    parser.add_argument("--native", action="store_true", help="float32 with its own streams (another sample)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.depth, args.width, args.batch, args.seeds = 20, 32, 8, 4
    config = dataclasses.replace(
        SweepConfig(), act=(args.act,), depth=(args.depth,), width=(args.width,), batch=args.batch, seeds=args.seeds,
        sigma_w2=tuple(float(v) for v in args.sigma_w2.split(",")),
        sigma_b2=tuple(float(v) for v in args.sigma_b2.split(",")))
    rows, seconds = {}, {}
    for dtype in ("float64", "float32"):
        cfg = dataclasses.replace(config, dtype=dtype)
        sweep.Streams = Streams if args.native or dtype == "float64" else RoundedStreams
        try:
            t0 = time.perf_counter()
            results = {task: run_task(cfg, task) for task in plan(cfg)}
            seconds[dtype] = time.perf_counter() - t0
        finally:
            sweep.Streams = Streams
        rows[dtype] = (cfg, results, *reduce(cfg, results)[:2])
    cfg64, res64, layers64, summary64 = rows["float64"]
    _, _, layers32, summary32 = rows["float32"]
    cols_l, cols_s = numeric_columns(layers64), numeric_columns(summary64)
    se_l, se_s = jackknife_se(cfg64, res64, cols_l, cols_s)
    print(f"{args.act}, L={args.depth}, N={args.width}, B={args.batch}, {args.seeds} seeds, σ_w²·N ∈ {{{args.sigma_w2}}}, "
          f"σ_b² ∈ {{{args.sigma_b2}}}; float32 {'own streams' if args.native else 'on the float64 draws, rounded'}; "
          f"engine time float64 {seconds['float64']:.1f} s, float32 "
          f"{seconds['float32']:.1f} s")
    print(f"{'file':8} {'column':32} {'max|f32-f64|':>13} {'se there':>10} {'max |Δ|/se':>11} {'max rel Δ':>10}")
    worst = 0.0
    for name, a64, a32, se, cols in (("layers", table(layers64, cols_l), table(layers32, cols_l), se_l, cols_l),
                                     ("summary", table(summary64, cols_s), table(summary32, cols_s), se_s, cols_s)):
        for j, col in enumerate(cols):
            x, y, e = a64[:, j], a32[:, j], se[:, j]
            both = np.isfinite(x) & np.isfinite(y)
            if np.array_equal(np.isnan(x), np.isnan(y)) and np.array_equal(x[both], y[both]):
                continue  # not measured (or not moved by the dtype): keys, unanchored theory
            mismatch = int(np.sum(np.isfinite(x) != np.isfinite(y)))
            d = np.abs(x - y)
            d[~both] = np.nan
            if not np.any(np.isfinite(d)):
                print(f"{name:8} {col:32} {'(no value in both)':>13}")
                continue
            i = int(np.nanargmax(d))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(e > 0, d / e, np.nan)
                rel = d / np.abs(x)
            r = float(np.nanmax(ratio)) if np.any(np.isfinite(ratio)) else math.nan
            if math.isfinite(r) and not col.endswith("_theory"):
                worst = max(worst, r)
            flag = f"  ({mismatch} cells finite in one dtype only)" if mismatch else ""
            print(f"{name:8} {col:32} {d[i]:13.3e} {e[i]:10.3e} {r:11.2e} {float(np.nanmax(rel)):10.2e}{flag}")
    print(f"largest |float32 - float64| / (standard error over seeds) over the measured columns: {worst:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
