"""Time hevar as a user meets it: whole processes, on a quiet machine and with one core busy.

    python benchmarks/process.py [--quick] [--rounds N] [--json PATH] [--baseline DIR]

One run, interleaved rounds (so that a noisy machine slows every cell alike), medians printed and
written as JSON. Every cell is a fresh ``python -m hevar ...`` process, timed from start to exit:

- ``sweep``: the default ``hevar sweep --act relu`` with figures and with ``--no-plot``, under the
  thread policy (the default), forced to one BLAS thread in this process (``--jobs 1 --threads 1``,
  what ``OPENBLAS_NUM_THREADS=1`` gave before the policy) and with every core to BLAS in this
  process (``--jobs 1 --threads CORES``: the default before the policy);
- the same with one core busy: the benchmark starts its own bounded busy loop (a child process
  spinning for at most the length of the cell) for those cells;
- ``small``: a sweep of many small tasks (100 seeds of L = 20, N = 64, B = 32, one configuration
  each), ``--jobs 1`` against the policy and against ``--jobs 0``, and the fraction of the cores'
  throughput the policy uses, (t_jobs1 / t_policy) / cores, counting start-up;
- ``baseline`` (with ``--baseline DIR``, e.g. ``git worktree add /tmp/base 4140e4f``): the default
  ``--no-plot`` sweep from that checkout beside this one's, quiet and busy;
- ``pytorch loop`` (where torch is installed): ``benchmarks/torch_loop.py``, the default sweep's
  measurement as a plain PyTorch CPU loop, one configuration at a time, as a whole process;
- ``startup``: ``python -c pass``, ``hevar --help``, and the import of the sweep's modules;
- ``split``: the parts of the default run measured in this process: the tasks' engine work, the
  CSV writing and the figures;
- ``bound``: the tight lower bound for the default sweep's work on all cores: the bare BLAS
  products at the stacked shapes of the configurations that run (the shared σ_w² pass derives the
  others) plus the weight sampling, per task, divided by the cores (perfect parallel), plus
  interpreter start-up (``python -c pass``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BUSY = "import time, sys\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end:\n    pass\n"
SMALL = ["--act", "relu", "--depth", "20", "--width", "64", "--batch", "32", "--seeds", "100", "--sigma-w2", "2",
         "--no-plot"]
QUICK_DEFAULT = ["--act", "relu", "--depth", "6", "--width", "32", "--seeds", "2"]
QUICK_SMALL = ["--act", "relu", "--depth", "4", "--width", "16", "--batch", "8", "--seeds", "6", "--sigma-w2", "2",
               "--no-plot"]


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def timed(cmd: list[str], busy_s: float | None = None) -> float:
    """Seconds from start to exit of ``cmd``; with ``busy_s``, beside a busy loop of at most that long."""
    spinner = subprocess.Popen([sys.executable, "-c", BUSY, str(busy_s)]) if busy_s else None
    try:
        if spinner:
            time.sleep(0.2)  # let it take its core
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0
    finally:
        if spinner:
            spinner.kill()
            spinner.wait()


BASELINE: str | None = None  # --baseline DIR: another checkout of hevar, timed in the same rounds


def hevar(*args: str) -> list[str]:
    return [sys.executable, "-m", "hevar", *args]


# ``python -m`` puts the working directory first on sys.path, before PYTHONPATH: run from this
# checkout, ``PYTHONPATH=BASELINE python -m hevar`` imported this checkout's hevar, and the baseline
# cells timed the new code twice. The baseline's folder goes first here, and the cell fails (exit 3)
# unless the hevar it imports is the baseline's.
_BASELINE_MAIN = ("import runpy, sys; base = sys.argv.pop(1); sys.path.insert(0, base); import hevar, os; "
                  "sys.exit(3) if not os.path.realpath(hevar.__file__).startswith(os.path.realpath(base)) else "
                  "runpy.run_module('hevar', run_name='__main__', alter_sys=True)")


def baseline(*args: str) -> list[str]:
    """``hevar ARGS`` from the --baseline checkout (its code first on the path, checked)."""
    return [sys.executable, "-c", _BASELINE_MAIN, str(BASELINE), *args]


def cells(quick: bool, work: Path) -> dict[str, tuple[list[str], bool]]:
    """name → (command, with a busy core)."""
    n = cores()
    default = QUICK_DEFAULT if quick else ["--act", "relu"]
    small = QUICK_SMALL if quick else SMALL
    out = {}
    for busy in (False, True):
        tag = " busy" if busy else ""
        for plot in (True, False):
            extra = [] if plot else ["--no-plot"]
            fig = "" if plot else " no-plot"
            out[f"sweep policy{fig}{tag}"] = (hevar("sweep", *default, *extra, "--out", str(work / "p")), busy)
            out[f"sweep 1 thread{fig}{tag}"] = (hevar("sweep", *default, *extra, "--jobs", "1", "--threads", "1",
                                                      "--out", str(work / "o")), busy)
            out[f"sweep {n} BLAS threads{fig}{tag}"] = (hevar("sweep", *default, *extra, "--jobs", "1", "--threads",
                                                              str(n), "--out", str(work / "m")), busy)
    if BASELINE:
        for busy in (False, True):
            tag = " busy" if busy else ""
            out[f"baseline no-plot{tag}"] = (baseline("sweep", *default, "--no-plot", "--out", str(work / "b")), busy)
            out[f"policy no-plot{tag} (again, beside the baseline)"] = (
                hevar("sweep", *default, "--no-plot", "--out", str(work / "p")), busy)
    out["small --jobs 1"] = (hevar("sweep", *small, "--jobs", "1", "--threads", "1", "--out", str(work / "s1")), False)
    out["small policy"] = (hevar("sweep", *small, "--out", str(work / "sp")), False)
    out["small --jobs 0"] = (hevar("sweep", *small, "--jobs", "0", "--out", str(work / "s0")), False)
    if importlib.util.find_spec("torch") is not None:  # the same measurement as a plain PyTorch loop
        out["pytorch loop (same measurement)"] = ([sys.executable, str(HERE / "torch_loop.py"),
                                                   *(["--quick"] if quick else [])], False)
    out["startup python -c pass"] = ([sys.executable, "-c", "pass"], False)
    out["startup hevar --help"] = (hevar("--help"), False)
    out["startup import sweep"] = ([sys.executable, "-c", "import hevar.experiments.sweep, hevar.results.store"], False)
    return out


def split(quick: bool) -> dict[str, float]:
    """The default run's parts, in this process: engine (all tasks), CSVs, figures."""
    from hevar.experiments import runner
    from hevar.experiments.config import build_config
    from hevar.experiments.sweep import plan, run_task
    from hevar.results import store
    from hevar.views.figures import render_run

    flags = dict(zip(QUICK_DEFAULT[::2], QUICK_DEFAULT[1::2])) if quick else {"--act": "relu"}
    cfg = build_config({k.lstrip("-"): v for k, v in flags.items()}, {})
    tasks = plan(cfg)
    t0 = time.perf_counter()
    results = {t: run_task(cfg, t) for t in tasks}
    engine = time.perf_counter() - t0
    rows = runner.tables(cfg, results)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store.write_tables(Path(tmp), rows)
        csvs = time.perf_counter() - t0
        runner.run(cfg, Path(tmp) / "run")  # a complete run folder for the figures
        t0 = time.perf_counter()
        render_run(Path(tmp) / "run")
        figures = time.perf_counter() - t0
    return {"engine": engine, "csv": csvs, "figures": figures, "tasks": len(tasks)}


def bound(quick: bool, rounds: int) -> dict[str, float]:
    """Bare products + sampling of the default sweep, per task, over all cores, plus start-up."""
    from engine import blas_run, sampling_run
    from hevar.experiments.config import build_config

    cfg = build_config({"act": "relu", **({"depth": "6", "width": "32", "seeds": "2"} if quick else {})}, {})
    from hevar.experiments import resources
    from hevar.experiments.sweep import network
    from hevar.meanfield.activations import parse_activation

    L, N = cfg.depth[0], cfg.width[0]
    k = len(cfg.sigma_w2) * len(cfg.sigma_b2)
    k_run = k - resources.shared_configs(cfg, network(cfg, parse_activation("relu"), L), (N,) * (L + 1))
    cols = k_run * cfg.batch  # the configurations that run: the shared σ_w² pass derives the others
    blas, sampling = blas_run(L, N, cols, cfg.dtype, first_cols=cfg.batch), sampling_run(L, N, cfg.dtype)
    with _one_thread():
        t_blas = statistics.median(_time(blas) for _ in range(rounds))
        t_samp = statistics.median(_time(sampling) for _ in range(rounds))
    per_task = t_blas + t_samp
    return {"blas_per_task": t_blas, "sampling_per_task": t_samp, "tasks": cfg.seeds, "configurations_run": k_run,
            "work_on_all_cores": per_task * cfg.seeds / cores()}


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _one_thread():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sweeps, one round: a smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; 1 quick)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--baseline", type=Path, help="another hevar checkout (e.g. a git worktree of an older "
                        "commit) whose default --no-plot sweep is timed in the same rounds")
    args = parser.parse_args(argv)
    global BASELINE
    BASELINE = str(args.baseline.resolve()) if args.baseline else None
    rounds = args.rounds or (1 if args.quick else 3)
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        todo = cells(args.quick, work)
        for r in range(rounds):
            for name, (cmd, busy) in todo.items():
                for sub in work.glob("*"):  # each cell starts from an empty run folder
                    subprocess.run(["rm", "-rf", str(sub)], check=True)
                times.setdefault(name, []).append(timed(cmd, busy_s=120.0 if busy else None))
            print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    parts = split(args.quick)
    tight = bound(args.quick, max(rounds, 3))
    n = cores()
    start = med["startup python -c pass"]
    print(f"hevar, whole processes: medians of {rounds} interleaved rounds, {n} cores")
    width = max(map(len, med))
    for k, v in med.items():
        print(f"  {k:<{width}}  {v:7.2f} s")
    print("ratios")
    pol, one, many = med["sweep policy no-plot busy"], med["sweep 1 thread no-plot busy"], \
        med[f"sweep {n} BLAS threads no-plot busy"]
    print(f"  busy core, no-plot: policy {pol:.2f} s, 1 thread {one:.2f} s ({one / pol:.2f}× the policy), "
          f"{n} BLAS threads {many:.2f} s ({many / pol:.2f}×)")
    print(f"  quiet, with figures: policy {med['sweep policy']:.2f} s; tight bound {tight['work_on_all_cores']:.2f} s "
          f"+ start-up {start:.2f} s = {tight['work_on_all_cores'] + start:.2f} s "
          f"({med['sweep policy'] / (tight['work_on_all_cores'] + start):.2f}×)")
    used = med["small --jobs 1"] / med["small policy"] / n
    print(f"  many small tasks: --jobs 1 {med['small --jobs 1']:.2f} s, policy {med['small policy']:.2f} s, "
          f"--jobs 0 {med['small --jobs 0']:.2f} s: the policy uses {100 * used:.0f} % of the cores' throughput")
    if BASELINE:
        for tag in ("", " busy"):
            b, p = med[f"baseline no-plot{tag}"], med[f"policy no-plot{tag} (again, beside the baseline)"]
            print(f"  against the baseline{tag or ' quiet'}: {b:.2f} s → {p:.2f} s ({b / p:.2f}×)")
    print(f"  split of the default run in one process: engine {parts['engine']:.2f} s ({parts['tasks']} tasks), "
          f"CSVs {parts['csv']:.2f} s, figures {parts['figures']:.2f} s")
    if "pytorch loop (same measurement)" in med:
        t = med["pytorch loop (same measurement)"]
        print(f"  PyTorch loop doing the same measurement (benchmarks/torch_loop.py, a whole process): {t:.2f} s; "
              f"hevar with figures {med['sweep policy']:.2f} s ({t / med['sweep policy']:.2f}× faster), "
              f"--no-plot {med['sweep policy no-plot']:.2f} s ({t / med['sweep policy no-plot']:.2f}×)")
    else:
        print("  PyTorch loop: torch is not installed (benchmarks/torch_loop.py)")
    if args.json:
        args.json.write_text(json.dumps({"format": 1, "cores": n, "rounds": rounds, "times": times, "medians": med,
                                         "split": parts, "bound": tight}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
