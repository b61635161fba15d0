"""Time one pass for a σ_w² grid (hevar.engine.rescale) against the stacked pass of every configuration.

    python benchmarks/rescale.py [--depth 50] [--width 256] [--batch 128] [--points 20] [--rounds 5]
                                 [--dtype float64] [--act relu] [--quick]

Both run :func:`hevar.engine.passes.measure` on the same draw for a relu MLP at σ_b² = 0 and a
``--points``-value σ_w²·N grid from 0.5 to 4: ``stacked`` (``share=False``: the K configurations
side by side, one product of N × K·B columns per layer) and ``shared`` (the default: one
configuration runs, the others are derived exactly). Rounds are interleaved (stacked, shared,
stacked, ...) after one warm-up of each, so a noisy machine slows both alike; medians are printed
side by side with their ratio, and whether the statistics are bit-identical. About 20 s at the
defaults on two cores.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from hevar.engine import init
from hevar.engine.passes import Streams, measure
from hevar.meanfield.activations import parse_activation

FIELDS = ("log_q", "log_q_tilde", "log_grad_norm2", "log_delta_norm2", "log_act_norm2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--act", default="relu")
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--points", type=int, default=20, help="σ_w²·N values in [0.5, 4]")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    parser.add_argument("--quick", action="store_true", help="tiny shapes, one round: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.depth, args.width, args.batch, args.points, args.rounds = 6, 32, 8, 4, 1
    act = parse_activation(args.act)
    widths = (args.width,) * (args.depth + 1)
    grid = np.linspace(0.5, 4.0, args.points)
    std = np.array([np.sqrt(init.layer_sigma_w2(s, widths, "fan_in")) for s in grid])
    bias = np.zeros(len(grid))
    streams = Streams(0, 0)

    def run(share: bool):
        return measure(act, widths, std, bias, args.batch, streams, args.dtype, share=share)

    times = {"stacked": [], "shared": []}
    results = {"stacked": run(False), "shared": run(True)}  # warm-up, and the numbers compared
    for _ in range(args.rounds):
        for name, share in (("stacked", False), ("shared", True)):
            t0 = time.perf_counter()
            run(share)
            times[name].append(time.perf_counter() - t0)
    a, b = results["stacked"], results["shared"]
    identical = all(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True) for f in FIELDS)
    worst = max(float(np.nanmax(np.abs(np.expm1(getattr(a, f) - getattr(b, f))))) for f in FIELDS)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.act} L={args.depth} N={args.width} B={args.batch} {args.dtype}, {args.points} σ_w²·N values, "
          f"σ_b²=0, medians of {args.rounds} interleaved rounds")
    print(f"{'stacked':>10} {'shared':>10} {'ratio':>7}  statistics")
    print(f"{med['stacked']:9.3f}s {med['shared']:9.3f}s {med['stacked'] / med['shared']:6.1f}x  "
          + ("bit-identical" if identical else f"max |shared/stacked - 1| = {worst:.2e}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
