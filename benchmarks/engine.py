"""Time the hevar engine against the machine's limit, the straightforward version and PyTorch.

    python benchmarks/engine.py [--quick] [--json PATH] [--rounds N]

One process, one run. For each configuration (activation, depth L, width N, batch B, dtype; one
σ_w² configuration, K = 1) it times, in interleaved rounds so that a noisy machine slows all of
them alike:

- ``engine``     :func:`hevar.engine.passes.measure`;
- ``blas``       the bare matrix products the pass needs at the same shapes and dtype
                 (L forward, L−1 backward; preallocated operands and outputs);
- ``sampling``   drawing the L standard-normal weight matrices once, from the same streams;
- ``limit``      = blas + sampling, the machine's limit for this computation;
- ``reference``  :func:`hevar.engine.passes.measure_reference`, the straightforward version;
- ``torch``      PyTorch CPU autograd doing the same measurement one configuration at a time, as
                 a user would script it (when torch is installed; it is not a hevar dependency).

Then the default ``hevar sweep --act relu`` as a whole (``run_task`` for each task) against the
reference and the PyTorch loop doing the same sweep configuration by configuration, and the peak
memory of a few runs, each in its own subprocess (peak resident set size, and tracemalloc's peak of NumPy
allocations beside :func:`hevar.engine.passes.memory_estimate`). Medians are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hevar.meanfield.activations import parse_activation
from hevar.experiments.config import SweepConfig
from hevar.engine.passes import Streams, measure, measure_reference, memory_estimate
from hevar.experiments.sweep import grid, plan, run_task

FORMAT_VERSION = 1
FULL_SHAPES = ((50, 256, 256), (100, 512, 256), (1000, 256, 64))  # (L, N, B)
QUICK_SHAPES = ((6, 32, 16),)
SIGMA_W2_N = {"relu": 2.0, "tanh": 1.0}  # near each activation's critical point (σ_b² = 0)

torch = None  # imported by load_torch(): optional, and kept out of the memory probes that don't use it


def load_torch() -> bool:
    global torch
    import torch_loop

    if not torch_loop.load():
        return False
    torch = torch_loop.torch
    return True


def torch_measure(*args, **kwargs):
    """One configuration as a PyTorch user would measure it (:func:`torch_loop.measure`)."""
    import torch_loop

    return torch_loop.measure(*args, **kwargs)


# --- what is timed --------------------------------------------------------------------------------


def engine_run(act, L, N, B, dtype):
    std = np.full((1, L), math.sqrt(SIGMA_W2_N[act.name] / N))
    return lambda: measure(act, (N,) * (L + 1), std, np.zeros(1), B, Streams(0, 0), dtype)


def reference_run(act, L, N, B, dtype):
    std = np.full(L, math.sqrt(SIGMA_W2_N[act.name] / N))
    return lambda: measure_reference(act, (N,) * (L + 1), std, 0.0, B, Streams(0, 0), dtype)


def blas_run(L, N, cols, dtype, first_cols=None):
    """The products of one pass: L forward (N×N)·(N×cols), L−1 backward (N×N)ᵀ·(N×cols)."""
    rng = np.random.default_rng(1)
    G = rng.standard_normal((N, N)).astype(dtype)
    H = rng.standard_normal((N, cols)).astype(dtype)
    out = np.empty((N, cols), dtype)
    first = first_cols or cols
    out1 = np.empty((N, first), dtype)

    def run():
        np.matmul(G, H[:, :first], out=out1)
        for _ in range(L - 1):
            np.matmul(G, H, out=out)
        for _ in range(L - 1):
            np.matmul(G.T, H, out=out)
    return run


def sampling_run(L, N, dtype):
    buf = np.empty((N, N), dtype)
    streams = Streams(0, 0)
    return lambda: [streams.weights(l, N, N, np.dtype(dtype), out=buf) for l in range(1, L + 1)]


def torch_run(act, L, N, B, dtype):
    return lambda: torch_measure(act.name, L, N, B, dtype, SIGMA_W2_N[act.name])


def sweep_runs(config: SweepConfig) -> dict:
    """The whole sweep: the engine (run_task per task), the reference and torch per configuration."""
    tasks = plan(config)
    pairs = grid(config)

    def engine():
        return [run_task(config, t) for t in tasks]

    def reference():
        for t in tasks:
            act = parse_activation(t.act)
            for s, b in pairs:
                std = np.full(t.depth, math.sqrt(s / t.width))
                measure_reference(act, (t.width,) * (t.depth + 1), std, math.sqrt(b), config.batch,
                                  Streams(config.seed, t.seed_index), config.dtype)

    runs = {"engine": engine, "reference": reference}
    L, N, K = config.depth[0], config.width[0], len(pairs)
    blas = blas_run(L, N, K * config.batch, config.dtype, first_cols=config.batch)
    sample = sampling_run(L, N, config.dtype)

    def limit_blas():
        for _ in tasks:
            blas()

    def limit_sampling():
        for _ in tasks:
            sample()
    runs.update(blas=limit_blas, sampling=limit_sampling)
    if torch is not None and all(b == 0 for _, b in pairs):
        def torch_sweep():
            for t in tasks:
                for s, _ in pairs:
                    torch_measure(t.act, t.depth, t.width, config.batch, config.dtype, s, seed=t.seed_index)
        runs["torch"] = torch_sweep
    return runs


def time_rounds(runs: dict, rounds: int) -> dict:
    """Median seconds of each callable, run in interleaved rounds after one warm-up call each."""
    for f in runs.values():
        f()
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, f in runs.items():
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    out = {name: statistics.median(ts) for name, ts in times.items()}
    out["limit"] = out["blas"] + out["sampling"]
    out["runs"] = {name: ts for name, ts in times.items()}
    return out


# --- memory probes (each in a fresh subprocess) ---------------------------------------------------


def peak_rss() -> int:
    """Peak resident bytes of this process image: VmHWM (ru_maxrss survives exec on Linux, so a
    child forked from a large parent would report the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def probe(spec: dict) -> dict:
    """Run one thing and report its peak memory; called in a subprocess via --probe."""
    import tracemalloc

    act = parse_activation(spec["act"])
    L, N, B, K, dtype, what = spec["L"], spec["N"], spec["B"], spec["K"], spec["dtype"], spec["what"]
    measure(act, (8,) * 3, np.full((1, 2), 0.5), np.zeros(1), 4, Streams(0, 0), dtype)  # warm imports
    if what == "torch":
        load_torch()
        torch_measure(act.name, 2, 8, 4, dtype, 2.0)
    base = peak_rss()
    tracemalloc.start()
    std = np.full((K, L), math.sqrt(SIGMA_W2_N[act.name] / N))
    if what == "engine":
        measure(act, (N,) * (L + 1), std, np.zeros(K), B, Streams(0, 0), dtype)
    elif what == "reference":
        measure_reference(act, (N,) * (L + 1), std[0], 0.0, B, Streams(0, 0), dtype)
    else:
        torch_measure(act.name, L, N, B, dtype, SIGMA_W2_N[act.name])
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = peak_rss()
    estimate = memory_estimate((N,) * (L + 1), K, B, dtype, act=act) if what == "engine" else None
    return dict(spec, baseline_rss=base, peak_rss=peak, tracemalloc_peak=traced, estimate=estimate)


def run_probe(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--probe", json.dumps(spec)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- machine and report ---------------------------------------------------------------------------


def machine() -> dict:
    info = dict(python=platform.python_version(), numpy=np.__version__, cpus=os.cpu_count(),
                platform=platform.platform(),
                blas_env={k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                          "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")})
    try:
        model = [l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                 if l.startswith("model name")]
        info["cpu"] = model[0] if model else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                        for p in threadpool_info()]
    except ImportError:
        blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        info["blas"] = [{"internal_api": blas.get("name"), "version": blas.get("version")}]
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, one round: a smoke run")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per item (default 5; 1 quick)")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if it is installed")
    parser.add_argument("--only", help="comma list of parts to run: cases,sweep,memory (default all)")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(json.loads(args.probe))))
        return 0
    if not args.no_torch:
        load_torch()
    parts = set((args.only or "cases,sweep,memory").split(","))
    rounds = args.rounds or (1 if args.quick else 5)
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    info = machine()
    print(f"machine: {info['cpu']}, {info['cpus']} CPUs; numpy {info['numpy']}, BLAS {info['blas']}"
          + (f"; torch {info['torch']} ({info['torch_threads']} threads)" if torch is not None else "; torch not installed"))

    cases, sweep, memory = [], None, []
    head = (f"{'act':5} {'L':>5} {'N':>5} {'B':>4} {'dtype':8}|{'engine':>9} {'blas':>9} {'sample':>9} {'limit':>9}"
            f" {'eng/lim':>7}|{'ref':>9} {'ref/eng':>7}|{'torch':>9} {'tch/eng':>7}   (ms, medians of {rounds})")
    print(head)
    for dtype in ("float32", "float64"):
        for act_name in ("relu", "tanh"):
            act = parse_activation(act_name)
            for L, N, B in (shapes if "cases" in parts else ()):
                runs = dict(blas=blas_run(L, N, B, dtype), sampling=sampling_run(L, N, dtype),
                            engine=engine_run(act, L, N, B, dtype), reference=reference_run(act, L, N, B, dtype))
                if torch is not None:
                    runs["torch"] = torch_run(act, L, N, B, dtype)
                t = time_rounds(runs, rounds)
                row = dict(act=act_name, L=L, N=N, B=B, dtype=dtype, **{k: v for k, v in t.items()})
                row["engine_over_limit"] = t["engine"] / t["limit"]
                row["reference_over_engine"] = t["reference"] / t["engine"]
                row["torch_over_engine"] = t["torch"] / t["engine"] if "torch" in t else None
                cases.append(row)
                tt = f"{ms(t['torch'])} {row['torch_over_engine']:7.2f}" if "torch" in t else f"{'-':>9} {'-':>7}"
                print(f"{act_name:5} {L:5d} {N:5d} {B:4d} {dtype:8}|{ms(t['engine'])} {ms(t['blas'])} "
                      f"{ms(t['sampling'])} {ms(t['limit'])} {row['engine_over_limit']:7.2f}|"
                      f"{ms(t['reference'])} {row['reference_over_engine']:7.2f}|{tt}", flush=True)

    config = SweepConfig(act=("relu",))
    if "sweep" not in parts:
        config = None
    elif args.quick:
        config = SweepConfig(act=("relu",), depth=(4,), width=(16,), seeds=2, batch=8, sigma_w2=(1.0, 2.0))
    if config is not None:
        report_sweep(config, time_rounds(sweep_runs(config), max(1, rounds // 2) if not args.quick else 1))
    sweep = _SWEEP[0] if _SWEEP else None
    if "memory" in parts:
        memory = report_memory(args.quick)
    if args.json:
        args.json.write_text(json.dumps(dict(format_version=FORMAT_VERSION, quick=args.quick, rounds=rounds,
                                             machine=info, cases=cases, sweep=sweep, memory=memory), indent=1))
        print(f"\nwrote {args.json}")
    return 0


_SWEEP: list = []


def report_sweep(config: SweepConfig, t: dict) -> None:
    sweep = dict(config=config.to_dict(), **t)
    sweep["engine_over_limit"] = t["engine"] / t["limit"]
    sweep["reference_over_engine"] = t["reference"] / t["engine"]
    sweep["torch_over_engine"] = t["torch"] / t["engine"] if "torch" in t else None
    print(f"\nsweep (act relu, depth {config.depth[0]}, width {config.width[0]}, {len(config.sigma_w2)} σ_w²·N × "
          f"{config.seeds} seeds, batch {config.batch}, {config.dtype}), seconds:")
    print(f"  engine {t['engine']:.3f}  limit {t['limit']:.3f} (blas {t['blas']:.3f} + sampling {t['sampling']:.3f})"
          f"  engine/limit {sweep['engine_over_limit']:.2f}")
    print(f"  reference {t['reference']:.3f} ({sweep['reference_over_engine']:.1f}× the engine)"
          + (f"  torch {t['torch']:.3f} ({sweep['torch_over_engine']:.1f}× the engine)" if "torch" in t else ""))
    _SWEEP.append(sweep)


def report_memory(quick: bool) -> list:
    if quick:
        specs = [dict(what="engine", act="relu", L=20, N=64, B=16, K=1, dtype="float32")]
    else:
        specs = [dict(what="engine", act="relu", L=1000, N=1024, B=128, K=1, dtype="float32"),
                 dict(what="engine", act="tanh", L=200, N=1024, B=128, K=1, dtype="float32"),
                 dict(what="engine", act="relu", L=50, N=256, B=128, K=8, dtype="float64"),
                 dict(what="reference", act="relu", L=100, N=512, B=256, K=1, dtype="float32")]
        if torch is not None:
            specs.append(dict(what="torch", act="relu", L=100, N=512, B=256, K=1, dtype="float32"))
    print(f"\npeak memory (MB; each in a fresh process):\n  {'what':9} {'act':5} {'L':>5} {'N':>5} {'B':>4} {'K':>2} {'dtype':8}"
          f" {'rss':>7} {'rss-base':>8} {'traced':>7} {'estimate':>8}")
    memory = []
    for spec in specs:
        m = run_probe(spec)
        memory.append(m)
        est = f"{m['estimate'] / 1e6:8.1f}" if m["estimate"] else f"{'-':>8}"
        print(f"  {m['what']:9} {m['act']:5} {m['L']:5d} {m['N']:5d} {m['B']:4d} {m['K']:2d} {m['dtype']:8}"
              f" {m['peak_rss'] / 1e6:7.0f} {(m['peak_rss'] - m['baseline_rss']) / 1e6:8.0f} "
              f"{m['tracemalloc_peak'] / 1e6:7.1f} {est}", flush=True)
    return memory


if __name__ == "__main__":
    sys.exit(main())
