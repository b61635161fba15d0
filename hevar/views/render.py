"""Drawing a run's figures in a worker process that loads Matplotlib while the sweep still runs.

The figures, not the science, are most of the default sweep's wait (six PNGs: about 3.9 s of a
7 s run on 2 cores, 1.2 s of it loading Matplotlib and the figure code). :class:`FigureWorkers`
starts a ``spawn`` worker when a sweep with figures begins; it loads Matplotlib and hevar's figure
code on a core the sweep leaves idle, and draws the figures when the CSVs are written, so this
process never loads Matplotlib. Measured on 2 cores (default `hevar sweep --act relu`, 3
interleaved runs each): 6.75 s with the worker, 7.15 s drawing here (medians).

When the CSVs are written, the warm worker forks itself into one process per core
(:func:`_draw_split`), each drawing every n-th figure (:func:`hevar.views.figures.render_run`'s
``part``): a fork starts in milliseconds with Matplotlib loaded, where a second spawned worker
had to load it while the sweep computed (that version lost its gain on 2 cores). Measured on 2
cores, default sweep, 3 interleaved runs: 7.07 s → 5.38 s quiet (medians), 6.21 s → 6.25 s with
one core busy (the same within noise). ``HEVAR_FIGURE_WORKERS=N`` sets the spawned workers (0:
drawn here). The files are the same bytes either way: the same code and settings, each file written
atomically. Where a worker cannot start, the figures are drawn here as before.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any


WORKERS_ENV = "HEVAR_FIGURE_WORKERS"
DEFAULT_WORKERS = 1


def _warm(parent_pid: int) -> None:
    import threading

    from hevar.experiments.executors import _exit_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # a SIGKILLed parent cannot stop this worker: it leaves on its own within a second
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True, name="hevar-orphan-watch").start()
    import matplotlib

    matplotlib.use("Agg")
    importlib.import_module("hevar.views.figures")  # Matplotlib's pyplot-free stack and every figure module


def _ready() -> bool:
    return True


def _forked(parent_pid: int) -> None:
    import threading

    from hevar.experiments.executors import _exit_with_parent

    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True, name="hevar-orphan-watch").start()


def _draw_split(run_dir: str, formats: tuple[str, ...], n: int) -> list[tuple[int, int, str]]:
    """Every figure, drawn by this worker and ``n - 1`` forks of it, which start with Matplotlib
    and the figure code already loaded (a fork takes milliseconds; a fresh worker a second)."""
    if n <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return _draw(run_dir, formats, (0, 1))
    import warnings

    with warnings.catch_warnings():
        # Python 3.12+ warns of fork() in a process with threads: this one's only other thread is
        # the orphan watch, which holds no lock (it sleeps and reads getppid)
        warnings.simplefilter("ignore", DeprecationWarning)
        pool = cf.ProcessPoolExecutor(n - 1, mp_context=multiprocessing.get_context("fork"),
                                      initializer=_forked, initargs=(os.getpid(),))
        try:
            futures = [pool.submit(_draw, run_dir, formats, (i, n)) for i in range(1, n)]
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    with pool:
        mine = _draw(run_dir, formats, (0, n))
        return mine + [x for f in futures for x in f.result()]


def _draw(run_dir: str, formats: tuple[str, ...], part: tuple[int, int]) -> list[tuple[int, int, str]]:
    """This worker's share of the figures, each with its place in the one-process order."""
    from hevar.views.figures import FIGURES, render_run

    order = {name: k for k, name in enumerate(FIGURES)}
    return [(order.get(p.stem, len(order)), formats.index(p.suffix[1:]) if p.suffix[1:] in formats else 0, str(p))
            for p in render_run(Path(run_dir), formats, part)]


class FigureWorkers:
    """Up to ``n`` warm worker processes that draw a run's figures (a context manager; ``n`` = 0
    or one core: drawn in this process)."""

    def __init__(self, n: int | None = None, split: int | None = None) -> None:
        from hevar.experiments.executors import available_cores

        if n is None:  # HEVAR_FIGURE_WORKERS=0 (or 1) draws in this process
            raw = os.environ.get(WORKERS_ENV, "").strip()
            n = int(raw) if raw.isdigit() else DEFAULT_WORKERS
        self.n = max(0, min(n, available_cores()))
        self.split = available_cores() if split is None else max(1, split)
        self._pool: cf.ProcessPoolExecutor | None = None

    def __enter__(self) -> "FigureWorkers":
        if self.n >= 1:
            try:
                self._pool = cf.ProcessPoolExecutor(self.n, mp_context=multiprocessing.get_context("spawn"),
                                                    initializer=_warm, initargs=(os.getpid(),))
                for _ in range(self.n):  # start every worker now, so that they load while the sweep runs
                    self._pool.submit(_ready)
            except (OSError, RuntimeError):
                self._close(wait=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._close(wait=exc[:1] in ((), (None,)))

    def _close(self, wait: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=wait, cancel_futures=True)
        if not wait:
            for p in processes:
                if p.is_alive():
                    p.terminate()

    def render(self, run_dir: Path, formats: tuple[str, ...]) -> list[Path]:
        """The figures of ``run_dir``, in the order one process draws them."""
        if self._pool is not None:
            try:
                if self.n == 1:  # one warm worker, split into as many processes as there are cores
                    parts = [self._pool.submit(_draw_split, str(run_dir), formats, self.split).result()]
                else:
                    futures = [self._pool.submit(_draw, str(run_dir), formats, (i, self.n)) for i in range(self.n)]
                    parts = [f.result() for f in futures]
            except cf.process.BrokenProcessPool:
                self._close(wait=False)
            else:
                return [Path(p) for *_, p in sorted(x for part in parts for x in part)]
        from hevar.views import figures

        return figures.render_run(run_dir, formats)
