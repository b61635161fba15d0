"""The thread policy: how many worker processes a sweep uses and how many BLAS threads each gets.

Why there is a policy
---------------------
The engine's products are small by BLAS standards (a 256×256 weight against a few thousand
columns). A multithreaded BLAS splits each one across every core and synchronises its threads by
spinning; when another program holds one of those cores, every product waits for the descheduled
thread. On a 2-core machine with one core busy, the default ``hevar sweep --act relu`` took 15 s
with OpenBLAS's default threading and 3 s with one BLAS thread. Independent tasks are the better
unit of parallelism: a process per core, one BLAS thread each, loses nothing to a busy core (the
operating system shares it out) and nothing to synchronisation.

There is a second reason, found while building this: **a product's last bits follow the BLAS
thread count.** OpenBLAS splits a product into per-thread blocks and handles the blocks' edges
with other kernels, so ``A @ B`` with 1 and 2 threads differs in the last bit for most shapes that
are not multiples of its blocking (966×1024 by 1024×32 in float64; almost every float32 shape
tried). Before the policy, ``--jobs 1`` ran with every core to BLAS and ``--jobs N`` with
``cores // N`` each, so the bytes of a width-profile sweep (``configs/he2015_pyramid.toml``) followed
the machine's core count and ``--jobs``. With one BLAS thread as the rule, they follow neither.

The rule (:func:`decide`)
-------------------------
- One BLAS thread per process, always, unless ``--threads N`` asks for more (then the results are
  those of N threads: equal to the one-thread results in value, not always in the last bit).
- ``--jobs N`` sets the worker processes (0: one per core).
- Otherwise, with several tasks and an estimated run time (:func:`hevar.experiments.resources.estimate_seconds`)
  of at least :data:`POOL_ABOVE_S`, where starting worker interpreters (about 0.4 s each, in
  parallel) is paid back, the tasks run in ``min(cores, tasks)`` worker processes, fewer if the
  memory guard says they do not fit; else in this process.
- Dask workers pin their own BLAS threads to one per task (:func:`run_pinned`), whatever the
  environment of the worker process.

Weight sampling runs in threads of its own (:meth:`hevar.engine.passes.Weights.prefetch`); each
layer has its own stream, so those numbers never depend on the thread count. The manifest records,
per attempt, the processes, the BLAS threads and why (:meth:`ThreadPlan.record`).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, NamedTuple

POOL_ABOVE_S = 1.5  # estimated seconds of work above which several tasks go to worker processes


class ThreadPlan(NamedTuple):
    """Processes and BLAS threads of one run, and why (recorded in the manifest)."""

    jobs: int  # local worker processes; 1 = this process
    blas_threads: int  # BLAS threads per process (per task on Dask)
    source: str  # "auto", "given" or "dask"
    reason: str

    def record(self) -> dict[str, Any]:
        return self._asdict()


def parse_threads(raw: Any) -> int | None:
    """``--threads``: BLAS threads per process, an int ≥ 1, or None (the policy decides)."""
    from hevar.errors import UsageError
    from hevar.experiments.config import MAX_COUNT, _bad, _number

    if raw is None or (isinstance(raw, str) and raw.strip().lower() == "auto"):
        return None
    try:
        return _number("threads", raw, int, 1, MAX_COUNT + 1)
    except UsageError:  # the message names the word it also takes
        raise _bad("threads", f"an int in the range [1, {MAX_COUNT + 1}) or auto", raw) from None


def decide(config, jobs: int | None = None, threads: int | None = None, *, scheduler: str | None = None,
           cores: int | None = None) -> ThreadPlan:
    """The :class:`ThreadPlan` for ``config`` given ``--jobs`` (0 = one per core), ``--threads`` and
    ``--scheduler`` (see the module docstring for the rule)."""
    from hevar.experiments import resources
    from hevar.experiments.executors import available_cores

    cores = cores or available_cores()
    per = threads or 1
    if scheduler is not None:
        return ThreadPlan(1, per, "given" if threads else "dask", f"Dask workers, {per} BLAS thread(s) per task")
    if jobs == 0:
        jobs = cores
    if jobs is not None:
        return ThreadPlan(jobs, per, "given", f"as given: {jobs} process(es) × {per} BLAS thread(s)")
    tasks = config.seeds * len(resources._shapes(config))
    if tasks >= 2 and cores >= 2:
        seconds = resources.estimate_seconds(config, workers=1)
        if seconds >= POOL_ABOVE_S:
            n = min(cores, tasks)
            while n > 1 and not _fits(resources.plan_run(config, n, timing=False)):
                n -= 1
            if n > 1:
                return ThreadPlan(n, per, "auto" if threads is None else "given",
                                  f"{tasks} tasks, about {seconds:.0f} s of work: {n} processes × {per} BLAS thread(s)")
    return ThreadPlan(1, per, "auto" if threads is None else "given", f"one process × {per} BLAS thread(s)")


def _fits(plan) -> bool:
    return plan.memory is None or plan.need <= plan.memory.available


@contextlib.contextmanager
def pinned(blas_threads: int, sampling_threads: int | None = None) -> Iterator[None]:
    """BLAS threads of this process limited to ``blas_threads`` inside the block (0: left as they
    are), and weight-sampling threads to ``sampling_threads`` (None: the engine's default)."""
    from hevar.engine import passes

    with contextlib.ExitStack() as stack:
        if blas_threads > 0:
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:  # pragma: no cover - a core dependency; the environment variables still apply
                pass
            else:
                stack.enter_context(threadpool_limits(limits=blas_threads, user_api="blas"))
        if sampling_threads is not None:
            stack.enter_context(passes.sampling_threads_limited(sampling_threads))
        yield


def run_pinned(fn: Callable[[Any], Any], blas_threads: int, item: Any) -> Any:
    """``fn(item)`` with ``blas_threads`` BLAS threads and as many sampling threads: what a Dask
    worker runs for each task (a worker may run several tasks at once in its threads)."""
    with pinned(blas_threads, blas_threads):
        return fn(item)
