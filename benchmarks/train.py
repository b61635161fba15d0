"""Time `hevar train`'s loop against the bare matrix products of the same steps.

    python benchmarks/train.py [--quick] [--rounds N] [--json PATH]

One process, one BLAS thread (as every training task runs), interleaved rounds, medians. For the
He et al. preset's network (ReLU, L = 30, N = 64, digits, batch 64) and a wider one (N = 256):

- ``train``: :func:`hevar.experiments.train.train` for S SGD steps with one evaluation at the end
  (the loop a task runs, minus the evaluations of ``--eval-every``);
- ``bound``: the products those S steps cannot avoid, preallocated and back to back: per step and
  layer the forward W·h (N×N by N×B), the backward Wᵀ·δ and the weight gradient δ·hᵀ, and the
  readout's three; plus the two evaluations' forward products over the whole training set;
- ``eval``: one evaluation of train and test sets (what each ``--eval-every`` adds).

The ratio train/bound is what hevar's own bookkeeping costs over the products. PyTorch is not a
hevar dependency and is not timed here; benchmarks/engine.py compares the measurement pass with it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from hevar.blocks.network import build as build_network
from hevar.engine.passes import Streams
from hevar.experiments import train as tr
from hevar.experiments.data import load
from hevar.meanfield.activations import parse_activation

CASES = ((30, 64, 64), (30, 256, 64))  # (L, N, B)
QUICK = ((4, 16, 8),)


def case(L: int, N: int, B: int, steps: int):
    act = parse_activation("relu")
    data = load("digits", N)
    net = build_network("mlp", act, L, "1")
    settings = replace(tr.parse_settings({}), steps=steps, eval_every=steps, batch=B, lr=0.005)
    n_train, n_classes = len(data.y_train), data.n_classes

    def run():
        params = tr.initial_params(net, N, 2.0, 0.0, n_classes, Streams(0, 0), settings.dtype)
        tr.train(net, params, data, settings, 0, 0)

    rng = np.random.default_rng(0)
    W, H = rng.standard_normal((N, N)), rng.standard_normal((N, B))
    out, G = np.empty((N, B)), np.empty((N, N))
    R, Hr, outr = rng.standard_normal((n_classes, N)), rng.standard_normal((N, B)), np.empty((n_classes, B))
    X = rng.standard_normal((N, n_train))
    outx = np.empty((N, n_train))

    def bound():
        for _ in range(steps):
            for _ in range(L):
                np.matmul(W, H, out=out)
                np.matmul(W.T, H, out=out)
                np.matmul(H, H.T, out=G)
            np.matmul(R, Hr, out=outr)
            np.matmul(R.T, outr, out=out)
            np.matmul(outr, Hr.T)
        for _ in range(2):  # step 0's and the last step's evaluation of the training set
            for _ in range(L):
                np.matmul(W, X, out=outx)

    params = tr.initial_params(net, N, 2.0, 0.0, n_classes, Streams(0, 0), settings.dtype)

    def evaluation():
        tr.evaluate(net, params, data.x_train, data.y_train)
        tr.evaluate(net, params, data.x_test, data.y_test)

    return {"train": run, "bound": bound, "eval": evaluation}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny network, one round: a smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; 1 quick)")
    parser.add_argument("--steps", type=int, default=None, help="SGD steps per timed run (default 200; 5 quick)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 5)
    steps = args.steps or (5 if args.quick else 200)
    results = []
    with threadpool_limits(1, user_api="blas"):
        for L, N, B in (QUICK if args.quick else CASES):
            runs = case(L, N, B, steps)
            times: dict[str, list[float]] = {k: [] for k in runs}
            for _ in range(rounds):
                for name, fn in runs.items():
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
            med = {k: statistics.median(v) for k, v in times.items()}
            results.append({"L": L, "N": N, "B": B, "steps": steps, "medians": med, "times": times})
    print(f"hevar train, {steps} SGD steps, 1 BLAS thread, medians of {rounds} interleaved rounds (s)")
    print("| L | N | B | train | bound | train/bound | one evaluation |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        m = r["medians"]
        print(f"| {r['L']} | {r['N']} | {r['B']} | {m['train']:.3f} | {m['bound']:.3f} | "
              f"{m['train'] / m['bound']:.2f} | {m['eval']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"format": 1, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
