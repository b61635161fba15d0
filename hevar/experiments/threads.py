"""The thread policy: how many worker processes a sweep uses and how many BLAS threads each gets.

Why there is a policy
---------------------
The engine's products are small by BLAS standards (a 256×256 weight against a few thousand
columns). A multithreaded BLAS splits each one across every core and synchronises its threads by
spinning; when another program holds one of those cores, every product waits for the descheduled
thread. On a 2-core machine with one core busy, the default ``hevar sweep --act relu`` took 15 s
with OpenBLAS's default threading and 3 s with one BLAS thread, with byte-identical results.
Independent tasks are the better unit of parallelism: a process per core, one BLAS thread each,
loses nothing to a busy core (the scheduler shares it out) and nothing to synchronisation.

The rule (:func:`decide`)
-------------------------
- ``--threads N`` sets the BLAS threads of every process (this one, or each ``--jobs`` worker);
  ``--jobs N`` sets the processes. What is given is used as given.
- Otherwise, with several tasks and an estimated run time (:func:`hevar.experiments.resources.estimate_seconds`)
  above :data:`POOL_ABOVE_S`, where starting a worker interpreter (about 0.4 s) is paid back, the
  tasks run in ``min(cores, tasks)`` worker processes with one BLAS thread each, fewer if the
  memory guard says they do not fit.
- Otherwise they run in this process with one BLAS thread, unless one product is large enough to
  split well (:data:`SPLIT_ABOVE_FLOPS`) *and* the cores are idle now (:func:`busy_cores`, read from
  ``/proc/stat`` over 50 ms), when BLAS gets every core.
- Dask workers pin their own BLAS threads to one per task (:func:`pinned`), whatever the
  environment of the worker process.

The engine's weight sampling threads follow the same count (:func:`hevar.engine.passes.sampling_threads`).
Results do not depend on the policy: every sum whose order could follow the thread count is taken
in a fixed order, and BLAS splits a product by rows and columns, not along the summed index
(tested: ``tests/test_threads.py`` compares the bytes of 1 and 2 BLAS threads and of 1 and 2
processes). The manifest records, per attempt, the processes, the BLAS threads and why.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Callable, Iterator, NamedTuple

POOL_ABOVE_S = 1.5  # estimated seconds of work above which several tasks go to worker processes
SPLIT_ABOVE_FLOPS = 2e9  # flops of the largest layer's product above which one task's BLAS is split
IDLE_PROBE_S = 0.05  # how long /proc/stat is watched to count busy cores


class ThreadPlan(NamedTuple):
    """Processes and BLAS threads of one run, and why (recorded in the manifest)."""

    jobs: int  # local worker processes; 1 = this process
    blas_threads: int  # BLAS (and weight-sampling) threads per process; 0 = left to the environment (Dask)
    source: str  # "auto", "given" or "dask"
    reason: str

    def record(self) -> dict[str, Any]:
        return self._asdict()


def parse_threads(raw: Any) -> int | None:
    """``--threads``: BLAS threads per process, an int ≥ 1, or None (the policy decides)."""
    from hevar.experiments.config import MAX_COUNT, _number

    if raw is None or (isinstance(raw, str) and raw.strip().lower() == "auto"):
        return None
    return _number("threads", raw, int, 1, MAX_COUNT + 1)


def busy_cores(interval: float = IDLE_PROBE_S) -> float:
    """Cores kept busy by anything during the next ``interval`` seconds (Linux ``/proc/stat``);
    0 where that cannot be read."""
    def snapshot() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    a = snapshot()
    if a is None:
        return 0.0
    time.sleep(interval)
    b = snapshot()
    if b is None or b[0] <= a[0]:
        return 0.0
    total, idle = b[0] - a[0], b[1] - a[1]
    return (1 - idle / total) * (os.cpu_count() or 1)


def largest_product_flops(config) -> float:
    """Flops of the largest per-layer product of ``config``'s forward pass (weights × all configurations' columns)."""
    from hevar.experiments import resources

    cols = len(config.sigma_w2) * len(config.sigma_b2) * config.batch
    best = 0.0
    for _, _, widths in resources._shapes(config):
        best = max(best, max(2.0 * widths[l] * widths[l - 1] * cols for l in range(1, len(widths))))
    return best


def decide(config, jobs: int | None = None, threads: int | None = None, *, scheduler: str | None = None,
           cores: int | None = None, busy: Callable[[], float] = busy_cores) -> ThreadPlan:
    """The :class:`ThreadPlan` for ``config`` given ``--jobs`` (0 = one per core), ``--threads`` and
    ``--scheduler`` (see the module docstring for the rule)."""
    from hevar.experiments import resources
    from hevar.experiments.executors import available_cores

    cores = cores or available_cores()
    if scheduler is not None:
        return ThreadPlan(1, threads or 1, "dask" if threads is None else "given",
                          f"Dask workers, {threads or 1} BLAS thread(s) per task")
    if jobs == 0:
        jobs = cores
    if jobs is not None or threads is not None:
        jobs = jobs or 1
        per = threads or max(1, cores // jobs)
        return ThreadPlan(jobs, per, "given", f"as given: {jobs} process(es) × {per} BLAS thread(s)")
    tasks = config.seeds * len(resources._shapes(config))
    if tasks >= 2 and cores >= 2:
        seconds = resources.estimate_seconds(config, workers=1)
        if seconds >= POOL_ABOVE_S:
            n = min(cores, tasks)
            while n > 1 and not _fits(resources.plan_run(config, n, timing=False)):
                n -= 1
            if n > 1:
                return ThreadPlan(n, 1, "auto", f"{tasks} tasks, about {seconds:.0f} s of work: {n} processes × "
                                  "1 BLAS thread (small products do not split well)")
    flops = largest_product_flops(config)
    if cores >= 2 and flops >= SPLIT_ABOVE_FLOPS:
        load = busy()
        if load < 0.5:
            return ThreadPlan(1, cores, "auto", f"one process; products of {flops:.2g} flops split over {cores} "
                              "idle cores")
        return ThreadPlan(1, 1, "auto", f"one process × 1 BLAS thread ({load:.1f} cores busy elsewhere)")
    return ThreadPlan(1, 1, "auto", "one process × 1 BLAS thread (small products do not split well)")


def _fits(plan) -> bool:
    return plan.memory is None or plan.need <= plan.memory.available


@contextlib.contextmanager
def pinned(blas_threads: int) -> Iterator[None]:
    """BLAS and weight-sampling threads of this process limited to ``blas_threads`` inside the
    block (0: left as they are)."""
    from hevar.engine import passes

    if blas_threads <= 0:
        yield
        return
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - a core dependency; the environment variables still apply
            pass
        else:
            stack.enter_context(threadpool_limits(limits=blas_threads, user_api="blas"))
        stack.enter_context(passes.sampling_threads_limited(blas_threads))
        yield


def run_pinned(fn: Callable[[Any], Any], blas_threads: int, item: Any) -> Any:
    """``fn(item)`` with :func:`pinned` threads: what a Dask worker runs for each task."""
    with pinned(blas_threads):
        return fn(item)
