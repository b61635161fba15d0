"""What a sweep will cost, told before anything is written: memory (refused if it cannot fit) and time.

Memory is counted for what actually runs, in four parts:

- **each task** at its peak, as the engine will run it: :func:`hevar.engine.passes.memory_estimate`
  with the task's whole σ_w² × σ_b² grid (the configuration stack K), chunked as the engine chunks
  it under the budget this guard gives it (``memory_budget`` of :func:`hevar.engine.passes.measure`,
  at most the engine's default 1 GiB). A task that cannot fit even one configuration at a time is refused;
- **the rows the run holds**: every task's measurements until the end, then the rows of
  ``layers.csv`` (configurations × layers), ``seeds.csv`` (× seeds) and ``summary.csv`` as Python
  dicts, and the text of the largest CSV while it is written (per-row costs measured with
  ``tracemalloc``: :data:`LAYER_ROW_BYTES` and kin). The grids' product enters here, counted
  without building it, so 10⁸ configurations are refused rather than run out of memory;
- **each interpreter**: ``--jobs N`` starts N fresh Python processes with NumPy and SciPy, each
  :data:`INTERPRETER_BYTES` before any work; and this process itself where the limit is
  ``HEVAR_MEMORY_LIMIT`` (a total), while the kernel's ``MemAvailable`` already excludes it;
- local workers run one task at a time each, so the task part counts once per worker.

The limit is the memory available now: ``HEVAR_MEMORY_LIMIT`` (bytes, or with a K/M/G/T suffix,
powers of 1024) when set, else the smallest of the kernel's ``MemAvailable``, the room left under a
cgroup (container) limit, and ``SC_AVPHYS_PAGES``. With a Dask scheduler the workers' memory is
theirs; only this process's part (rows and interpreter) is checked.

Time is the engine's cost model: per layer, two matrix products of 2·N_l·N_{l-1}·K·B flops (or
reading the weights, when K·B is small and the product is memory-bound), one draw of N_l·N_{l-1}
normals (two where weights are regenerated for the backward pass), and about a dozen elementwise
passes over N_l·K·B entries, at rates measured on this machine in a few milliseconds; plus the
reductions, per row written. It is an estimate (within a factor of about two on a quiet machine).
"""

from __future__ import annotations

import dataclasses

import functools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hevar.engine import passes
from hevar.errors import UsageError
from hevar.experiments.config import SweepConfig
from hevar.meanfield.activations import parse_activation

ENV_LIMIT = "HEVAR_MEMORY_LIMIT"
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Memory:
    """Bytes available to a sweep and where that number came from."""

    available: int  # bytes
    source: str  # e.g. "MemAvailable in /proc/meminfo", "HEVAR_MEMORY_LIMIT"


def parse_size(text: str) -> int:
    """Bytes from ``"4096"``, ``"512M"``, ``"1.5GiB"`` (powers of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(text)
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def available_memory() -> Memory | None:
    """The memory a sweep may use now, or None where it cannot be told (the check is then skipped)."""
    raw = os.environ.get(ENV_LIMIT)
    if raw is not None and raw.strip():
        try:
            return Memory(parse_size(raw), ENV_LIMIT)
        except ValueError:
            raise UsageError(
                f"The '{ENV_LIMIT}' environment variable must be a size in bytes, optionally with a K, M, G "
                f"or T suffix. Got '{raw}' instead.", param=ENV_LIMIT
            ) from None
    found = [m for m in (_meminfo(), _cgroup_room(), _sysconf()) if m is not None]
    return min(found, key=lambda m: m.available) if found else None


def _meminfo() -> Memory | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return Memory(int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo")
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> Memory | None:
    """Room left under a cgroup v2 or v1 memory limit (containers), if there is one."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit_text = Path(limit_file).read_text().strip()
            if limit_text == "max":
                continue
            limit, usage = int(limit_text), int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit < 2**60:  # v1 reports "no limit" as a huge number
            return Memory(max(limit - usage, 0), f"the cgroup limit in {limit_file}")
    return None


def _sysconf() -> Memory | None:
    try:
        return Memory(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


INTERPRETER_BYTES = 150 * 2**20  # hevar's CLI process before any work: Python, NumPy, SciPy, pandas, matplotlib (146 MiB measured, NumPy 2.4)
# Memory one row of each table takes while held as a dict, measured with tracemalloc on a depth-200
# sweep (3.6 KB per layers.csv row, 0.6 KB per seeds.csv row, 1.6 KB per summary.csv row), and the
# text of one row while its CSV is written (held three times: the buffer, its str, its bytes).
LAYER_ROW_BYTES, SEED_ROW_BYTES, SUMMARY_ROW_BYTES = 3700, 650, 1700
LAYER_CSV_BYTES, SEED_CSV_BYTES = 700, 200
RESULT_BYTES = 6 * 8  # a task's measurements per configuration and layer: five logs and the weight mean square
ESTIMATE_ABOVE_S = 60.0  # sweeps expected to take longer are announced with their estimate


def task_memory(config: SweepConfig, act: str, depth: int, width: int, batch: int | None = None,
                dtype: str | None = None, budget: int | None = passes.DEFAULT_MEMORY_BUDGET,
                n_configs: int | None = None) -> int:
    """Estimated peak bytes of one task of ``config`` (activation ``act``, one network shape) with
    ``n_configs`` configurations (default: the whole σ_w² × σ_b² grid), as the engine chunks them
    under ``budget`` bytes (:func:`hevar.engine.passes.measure`)."""
    widths = (width,) * (depth + 1)
    if config.widths:  # a width profile: its own layers (`width` is only N_0)
        from hevar.engine.init import layer_widths

        widths = layer_widths(config.widths, depth)
    from hevar.experiments.sweep import network

    phi = parse_activation(act)
    net = network(config, phi, depth)
    if n_configs is not None:
        k, shared = n_configs, 0
    else:
        k, shared = len(config.sigma_w2) * len(config.sigma_b2), shared_configs(config, net, widths)
    main = passes.memory_estimate(widths, k, config.batch if batch is None else batch, dtype or config.dtype,
                                  act=phi, memory_budget=budget, network=net, n_shared=shared)
    from hevar.experiments.pairsweep import extras_memory

    return max(main, extras_memory(config, widths, k))  # --input-corr / --jacobian run after the main pass


def shared_configs(config: SweepConfig, net, widths: tuple[int, ...]) -> int:
    """Configurations of the grid the engine derives from another's pass instead of running: those
    :func:`hevar.engine.rescale.members` picks (σ_b² = 0 and σ_w² > 0 on a plain MLP of a homogeneous
    φ) but the first, counted without building the grid (which may be too large to build).
    ``truncnormal`` calls the engine one σ_w row at a time, each call at most the σ_b² grid: never
    more than the shared call runs. ``widths`` does not matter: σ_{w,l}² = σ_w²·N / N_fan(l) is
    positive exactly where σ_w²·N is."""
    from hevar.engine import rescale

    if not rescale.shareable(net):
        return 0
    n = sum(1 for s in config.sigma_w2 if 0 < s < math.inf) * sum(1 for b in config.sigma_b2 if b == 0)
    return max(n - 1, 0)


def _size(n: float) -> str:
    """Bytes as people read them: "512 B", "1 KiB", "3.5 MiB", "12 GiB" (powers of 1024)."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def duration(seconds: float) -> str:
    """Seconds as people read them: \"40 s\", \"12 min\", \"1.5 h\", \"3 days\"."""
    if seconds < 60:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _shapes(config: SweepConfig) -> list[tuple[str, int, tuple[int, ...]]]:
    """(activation, depth, widths N_0..N_L) of every network shape, without the seeds."""
    from hevar.engine.init import layer_widths

    out = []
    for act in config.act:
        for depth in config.depth:
            if config.widths:
                shapes = [layer_widths(config.widths, depth)]
            else:
                shapes = [(w,) * (depth + 1) for w in config.width]
            out += [(act, depth, w) for w in shapes for _ in range(len(config.mode) * len(config.dist))]
    return out


@dataclass(frozen=True)
class RunPlan:
    """What a sweep will run and cost; :func:`plan_run` makes it, :func:`check_memory` refuses it."""

    tasks: int  # units of work: activation × depth × width profile × mode × dist × seed
    configurations: int  # σ_w² × σ_b² pairs each task runs at once (the engine's K)
    shapes: int  # network shapes (tasks = shapes × seeds)
    workers: int  # processes running tasks at once
    largest: tuple[str, int, int]  # (activation, depth, N_0) of the task with the largest peak
    task_bytes: int  # that task's peak, chunked as the engine will under `budget`
    rows_bytes: int  # measurements, table rows and CSV text held by this process
    interpreter_bytes: int  # fresh interpreters (workers), and this one under HEVAR_MEMORY_LIMIT
    memory: Memory | None  # what is available (None: unknown, not checked)
    budget: int | None  # bytes each task's engine may use (None: the engine's default)
    seconds: float  # estimated wall time (nan where unknown: a Dask cluster)
    layer_rows: int = 0  # rows of layers.csv

    @property
    def need(self) -> int:
        return self.workers * self.task_bytes + self.rows_bytes + self.interpreter_bytes

    def lines(self) -> list[str]:
        """The plan as ``--dry-run`` prints it."""
        memory = (f"about {_size(self.need)} at the peak: the largest task ({self.largest[0]}, depth {self.largest[1]}, "
                  f"width {self.largest[2]}) {_size(self.task_bytes)}"
                  + (f" in each of {self.workers} workers" if self.workers > 1 else "")
                  + f", results and rows {_size(self.rows_bytes)}"
                  + (f", interpreters {_size(self.interpreter_bytes)}" if self.interpreter_bytes else ""))
        available = (f"{_size(self.memory.available)} available ({self.memory.source})" if self.memory
                     else "available memory unknown (not checked)")
        time = ("depends on the Dask cluster" if self.seconds != self.seconds
                else f"about {duration(self.seconds)} (engine cost model, rates measured on this machine)")
        return [f"tasks: {self.tasks} ({self.shapes} network shapes × seeds), {self.configurations} σ_w²·N × σ_b² "
                f"configurations each, {self.tasks * self.configurations} in all, on {self.workers} process(es)",
                f"memory: {memory}; {available}", f"time: {time}"]


def _rows_bytes(config: SweepConfig, shapes) -> tuple[int, int]:
    k = len(config.sigma_w2) * len(config.sigma_b2)
    layer_rows = k * sum(depth for _, depth, _ in shapes)
    seed_rows = layer_rows * config.seeds
    held = (seed_rows * RESULT_BYTES + layer_rows * LAYER_ROW_BYTES + seed_rows * SEED_ROW_BYTES
            + k * len(shapes) * SUMMARY_ROW_BYTES)
    return held + 3 * max(layer_rows * LAYER_CSV_BYTES, seed_rows * SEED_CSV_BYTES), layer_rows


def plan_run(config: SweepConfig, workers: int = 1, memory: Memory | None = None, *,
             remote: bool = False, timing: bool = True) -> RunPlan:
    """The :class:`RunPlan` of ``config`` on ``workers`` local processes (``remote``: on a Dask cluster,
    whose workers' memory and speed are not known here). ``memory`` defaults to :func:`available_memory`."""
    memory = memory if memory is not None else available_memory()
    shapes = _shapes(config)
    k = len(config.sigma_w2) * len(config.sigma_b2)
    rows, layer_rows = _rows_bytes(config, shapes)
    in_pool = workers > 1 and not remote
    interpreters = (INTERPRETER_BYTES * workers if in_pool else 0) + \
        (INTERPRETER_BYTES if memory is not None and memory.source == ENV_LIMIT else 0)
    budget = None
    if memory is not None and not remote:
        share = (memory.available - rows - interpreters) // max(workers, 1)
        budget = max(min(passes.DEFAULT_MEMORY_BUDGET, share), 0)
    deepest = {}  # per activation, the largest shape: memory grows with depth and width
    for act, depth, widths in shapes:
        if act not in deepest or (depth, max(widths)) > (deepest[act][0], max(deepest[act][1])):
            deepest[act] = (depth, widths)
    engine_budget = passes.DEFAULT_MEMORY_BUDGET if budget is None else max(budget, 1)
    sizes = {act: (0 if remote else task_memory(config, act, depth, widths[0], budget=engine_budget))
             for act, (depth, widths) in deepest.items()}
    largest = max(sizes, key=sizes.get)
    seconds = math.nan if remote or not timing else estimate_seconds(config, shapes, workers, budget)
    return RunPlan(tasks=len(shapes) * config.seeds, configurations=k, shapes=len(shapes),
                   workers=1 if remote else workers, largest=(largest, deepest[largest][0], deepest[largest][1][0]),
                   task_bytes=sizes[largest], rows_bytes=rows, interpreter_bytes=interpreters, memory=memory,
                   budget=budget, seconds=seconds, layer_rows=layer_rows)


def check_memory(config: SweepConfig, workers: int = 1, memory: Memory | None = None, *, remote: bool = False,
                 plan: RunPlan | None = None) -> RunPlan:
    """The run's :class:`RunPlan`, or a :class:`UsageError` if it cannot fit in memory, with the
    estimate of each part, the limit, and the options that would make it fit (for the largest part)."""
    plan = plan or plan_run(config, workers, memory, remote=remote, timing=False)
    memory, workers = plan.memory, plan.workers
    if memory is None or plan.need <= memory.available:
        return plan
    act, depth, width = plan.largest
    pool = INTERPRETER_BYTES * workers if workers > 1 else 0
    parts = (f"the largest task ({act}, depth {depth}, width {width}, batch {config.batch}, {config.dtype}, "
             f"{plan.configurations} configuration(s) in chunks) needs about {_size(plan.task_bytes)}"
             + (f" in each of {workers} workers" if workers > 1 else "")
             + f", the results and rows of {plan.layer_rows:,} layers.csv rows about {_size(plan.rows_bytes)}"
             + (f", and {workers} worker interpreters {_size(pool)}" if pool else ""))
    this = plan.interpreter_bytes - pool  # this process, counted under HEVAR_MEMORY_LIMIT
    if this and this >= memory.available:  # no sweep fits: hevar itself does not
        raise UsageError(f"The '{ENV_LIMIT}' environment variable must leave room for hevar itself: this process "
                         f"takes about {_size(this)} before any work (Python and its libraries), and the sweep {parts}; "
                         f"{_size(plan.need)} in all, but {_size(memory.available)} is available ({ENV_LIMIT}).",
                         param=ENV_LIMIT)
    largest = max((("tasks", workers * plan.task_bytes), ("rows", plan.rows_bytes), ("interpreters", pool)),
                  key=lambda part: part[1])[0]
    if largest == "rows":
        names, param = "'sigma-w2', 'sigma-b2', 'seeds' and 'depth' parameters ask", "sigma-w2"
        hints = ["fewer σ_w²·N × σ_b² values, --seeds or a smaller --depth (rows grow with each)"]
    elif largest == "interpreters":
        names, param = "'jobs' parameter asks", "jobs"
        this = INTERPRETER_BYTES if memory.source == ENV_LIMIT else 0
        least = task_memory(config, act, depth, width, budget=1)
        fit = int((memory.available - plan.rows_bytes - this) // (INTERPRETER_BYTES + least))
        hints = [f"--jobs {fit} or fewer" if fit >= 2 else "--jobs 1"]
    elif _extras_option(config, act, depth, width):  # --n-pairs or --jacobian: the measurement after the pass
        names, param, hints = _extras_refusal(config, act, depth, width, plan, workers)
    else:
        names, param = "'batch', 'width', 'depth' and 'dtype' parameters ask", "batch"
        room = memory.available - plan.rows_bytes - plan.interpreter_bytes

        def fits(**change: object) -> bool:  # one configuration at a time, no weights kept: the least it can take
            return task_memory(config, act, depth, width, budget=1, n_configs=1, **change) * workers <= room

        hints = []
        if config.batch > 1 and not fits() and fits(batch=1):
            lo, hi = 1, config.batch  # largest batch that fits: fits(lo), not fits(hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if fits(batch=mid) else (lo, mid)
            hints.append(f"--batch {lo} or less")
        if config.dtype != "float32" and not fits() and fits(dtype="float32"):
            hints.append("--dtype float32")
        if workers > 1:
            hints.append("fewer --jobs")
        hints.append("a smaller --width or --depth")
    advice = hints[0] if len(hints) == 1 else ", ".join(hints[:-1]) + " or " + hints[-1]
    raise UsageError(
        f"The {names} for more memory than is available: {parts}; {_size(plan.need)} in all (engine and row "
        f"estimates), but {_size(memory.available)} is available ({memory.source}). Try {advice}.", param=param)


def _task_widths(config: SweepConfig, depth: int, width: int) -> tuple[int, ...]:
    from hevar.engine.init import layer_widths

    return layer_widths(config.widths, depth) if config.widths else (width,) * (depth + 1)


def _extras_option(config: SweepConfig, act: str, depth: int, width: int) -> str | None:
    """"n-pairs" or "jacobian" where that opt-in measurement sets the largest task's peak (it runs after
    the main pass, on every configuration at once: --batch and --dtype do not shrink it), else None."""
    from hevar.experiments.pairsweep import extras_memory

    widths, k = _task_widths(config, depth, width), len(config.sigma_w2) * len(config.sigma_b2)
    extras = extras_memory(config, widths, k)
    if not extras or extras < task_memory(config, act, depth, width):
        return None
    pairs = extras_memory(dataclasses.replace(config, jacobian=0), widths, k) if config.input_corr else 0
    return "n-pairs" if pairs >= extras else "jacobian"


def _extras_refusal(config: SweepConfig, act: str, depth: int, width: int, plan: "RunPlan",
                    workers: int) -> tuple[str, str, list[str]]:
    """(names, param, hints) of a refusal whose largest part is the pair or Jacobian measurement: its
    bytes are linear in --n-pairs (--jacobian), so the largest count that fits is a proportion."""
    from hevar.experiments.pairsweep import extras_memory

    option = _extras_option(config, act, depth, width)
    field = option.replace("-", "_")
    count = getattr(config, field)
    widths, k = _task_widths(config, depth, width), len(config.sigma_w2) * len(config.sigma_b2)
    other = dict(jacobian=0) if field == "n_pairs" else dict(input_corr=())
    per_unit = extras_memory(dataclasses.replace(config, **other), widths, k) / count
    room = (plan.memory.available - plan.rows_bytes - plan.interpreter_bytes) / max(workers, 1)
    fit = int(room // per_unit) if per_unit > 0 else 0
    hints = [f"--{option} {fit} or fewer" if fit >= 1 else f"--{option} 1"]
    hints += ["a shorter σ_w²·N × σ_b² grid (all measured at once)"] + (["fewer --jobs"] if workers > 1 else [])
    return f"'{option}' parameter asks", option, hints


# --- time -------------------------------------------------------------------------------------------


# Rates of a fast machine (flops/s of float64 products, normals/s, bytes/s streamed): estimates under
# these that stay below NOMINAL_BELOW_S are not worth measuring the machine for.
NOMINAL_RATES = (1e11, 2e8, 5e10)
NOMINAL_BELOW_S = 2.0


@functools.lru_cache(maxsize=4)
def machine_rates(dtype: str = "float64") -> tuple[float, float, float]:
    """(matrix-product flops/s, normals drawn/s, array bytes streamed/s) of this process, each the
    best of three runs after a warm-up (about 50 ms in all)."""
    import time

    rng = np.random.default_rng(0)
    G = rng.standard_normal((512, 512)).astype(dtype)
    H = rng.standard_normal((512, 1024)).astype(dtype)
    out = np.empty((512, 1024), dtype=dtype)

    def best(fn) -> float:
        fn()  # wakes BLAS's threads and faults the pages in
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return max(min(times), 1e-7)

    flops = 2 * 512 * 512 * 1024 / best(lambda: np.matmul(G, H, out=out))
    normals = 512 * 512 / best(lambda: rng.standard_normal((512, 512)))
    stream = 3 * out.nbytes / best(lambda: np.multiply(H, H, out=out))
    return flops, normals, stream


LAYER_OVERHEAD_S = 4e-5  # Python work per layer and chunk of the engine's loops
ROW_S = {"layers": 1.2e-4, "seeds": 3e-5}  # reduction and formatting per row written (measured)


def estimate_seconds(config: SweepConfig, shapes=None, workers: int = 1, budget: int | None = None,
                     rates: tuple[float, float, float] | None = None) -> float:
    """Estimated wall time of ``config`` on ``workers`` local processes (see the module docstring), at
    ``rates`` (default: :func:`machine_rates`, measured only where :data:`NOMINAL_RATES` do not
    already put the sweep under :data:`NOMINAL_BELOW_S`)."""
    from hevar.experiments.executors import available_cores

    shapes = _shapes(config) if shapes is None else shapes
    if rates is None:
        quick = estimate_seconds(config, shapes, workers, budget, rates=NOMINAL_RATES)
        if quick < NOMINAL_BELOW_S:
            return quick
        rates = machine_rates(config.dtype)
    flops_rate, normal_rate, stream_rate = rates
    item = 4 if config.dtype == "float32" else 8
    k = len(config.sigma_w2) * len(config.sigma_b2)
    cores = max(available_cores(), 1)
    parallel = min(max(workers, 1), cores)  # processes: the products share the cores (workers × threads ≤ cores)
    products = single = 0.0  # seconds of BLAS products (all cores) and of one-thread work (one per process)
    from hevar.experiments.sweep import network

    for act, depth, widths in shapes:
        # The configurations the engine runs: a σ_w² grid at σ_b² = 0 is one pass (hevar.engine.rescale).
        cols = (k - shared_configs(config, network(config, parse_activation(act), depth), widths)) * config.batch
        w = np.asarray(widths, dtype=float)
        weights = float(np.sum(w[1:] * w[:-1]))
        units = float(np.sum(w[1:]))
        regenerate = weights * item > min(passes.DEFAULT_WEIGHT_BUDGET, budget or passes.DEFAULT_WEIGHT_BUDGET)
        products += config.seeds * 2 * max(2 * weights * cols / flops_rate, weights * item / stream_rate)
        draws = weights * (2 if regenerate else 1) / normal_rate
        if parallel == 1:
            draws /= min(cores, 2)  # kept weights are drawn in threads
        single += config.seeds * (draws + 12 * units * cols * item / stream_rate + LAYER_OVERHEAD_S * depth)
    _, layer_rows = _rows_bytes(config, shapes)
    reductions = layer_rows * ROW_S["layers"] + layer_rows * config.seeds * ROW_S["seeds"]
    return products + single / parallel + reductions
