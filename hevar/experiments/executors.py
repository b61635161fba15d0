"""Where tasks run: in this process, in a pool of local worker processes, or on a Dask cluster.

Every executor has one method, ``imap_unordered(fn, items)``, which yields ``(item, fn(item))``
pairs in the order the items *finish*; the caller persists each result the moment it arrives
(:func:`hevar.experiments.sweep.execute`), so an interrupted run loses at most the items in flight. The
order never shows in the results: :func:`hevar.experiments.sweep.run_task` is pure, and every random number
is keyed by the identity of what it draws (:class:`hevar.engine.passes.Streams`).

Executors are context managers; leaving one (normally, on an error, or on Ctrl-C) cancels
what is queued and stops the workers.

Local processes (``hevar sweep --jobs N``)
------------------------------------------
N worker processes started with the ``spawn`` method (a fresh interpreter: no copied locks or
BLAS thread pools, and the environment it inherits is the one set here). Each worker's BLAS gets
one thread (``--threads`` for more; see :mod:`hevar.experiments.threads` for why one) through
``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``…, set in the environment the
workers inherit, before they import NumPy, and through threadpoolctl once they have. Workers ignore SIGINT: Ctrl-C reaches the parent, which stops them;
a worker whose parent was killed outright (SIGKILL) exits within a second.
``--jobs 0`` means one worker per core. ``--jobs 1`` runs in this process, its BLAS limited to one
thread (threadpoolctl) while the tasks run. Without ``--jobs`` the thread policy chooses.

Dask (``hevar sweep --scheduler tcp://HOST:8786``)
--------------------------------------------------
Needs the optional extra on the client *and on every worker*: ``pip install 'hevar[dask]'``.
Workers import :mod:`hevar` to run tasks, so they need hevar installed, at the same version as the
client (checked when the client connects). Start a cluster with::

    dask scheduler                                   # prints its address, tcp://HOST:8786
    dask worker tcp://HOST:8786 --nworkers 4 --nthreads 1   # on each machine; 4 processes here
    hevar sweep --scheduler tcp://HOST:8786 --out runs/big ...

A worker keeps the hevar code it first imported: restart the workers after upgrading hevar.
Dask's nanny already starts worker processes with ``OMP_NUM_THREADS=1`` and friends (its
``distributed.nanny.pre-spawn-environ`` setting), so one process per core with one thread each is
the natural layout. Tasks go out as the cluster frees up (a bounded window, so a 10⁵-task sweep
does not flood the scheduler); results come back as they finish and only the client writes files:
workers need no access to the run folder. Bit-identical results across machines assume the same
NumPy/BLAS build on the same kind of CPU.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import multiprocessing
import os
import signal
import threading
import time
import uuid
from asyncio import CancelledError
from typing import Any, Callable, Iterable, Iterator, TypeVar

from hevar.errors import Fault, UsageError

Item = TypeVar("Item")

BLAS_THREAD_VARS = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
)
CONNECT_TIMEOUT_S = 10


def available_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


class Serial:
    """Run each item in this process, one after the other, with ``blas_threads`` BLAS threads
    (0: as the environment has them)."""

    jobs = 1

    def __init__(self, blas_threads: int | None = 1) -> None:
        self.blas_threads = blas_threads
        self._pin: Any = None

    def __enter__(self) -> "Serial":
        if self.blas_threads:
            from hevar.experiments.threads import pinned

            self._pin = pinned(self.blas_threads)
            self._pin.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        pin, self._pin = self._pin, None
        if pin is not None:
            pin.__exit__(*exc)

    def imap_unordered(self, fn: Callable[[Item], Any], items: Iterable[Item]) -> Iterator[tuple[Item, Any]]:
        for item in items:
            yield item, fn(item)

    def describe(self) -> str:
        return "this process" + (f", {self.blas_threads} BLAS thread(s)" if self.blas_threads else "")


def _init_worker(blas_threads: int, parent_pid: int) -> None:
    # Ctrl-C in a terminal signals the whole process group; let the parent alone decide.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True, name="hevar-orphan-watch").start()
    try:  # the environment has set this already; threadpoolctl, where present, makes sure
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(blas_threads)


def _exit_with_parent(parent_pid: int) -> None:
    # A SIGKILLed parent cannot stop its workers, and they would wait on the task queue forever
    # (each holds that pipe's write end too): leave once we have been handed to another parent.
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


class LocalProcesses:
    """Run items in ``jobs`` spawned worker processes with ``blas_threads`` BLAS threads each."""

    def __init__(self, jobs: int, blas_threads: int | None = 1) -> None:
        self.jobs = jobs
        self.blas_threads = blas_threads or 1
        self._pool: cf.ProcessPoolExecutor | None = None
        self._abandoned = False  # tasks were left in flight (Ctrl-C, an error): stop, don't wait
        self._saved_env: dict[str, str | None] = {}

    def __enter__(self) -> "LocalProcesses":
        # Workers start lazily, at submit time, and inherit the environment as it is then; it is
        # restored when the executor closes. The parent's BLAS, already loaded, is unaffected.
        self._saved_env = {k: os.environ.get(k) for k in BLAS_THREAD_VARS}
        os.environ.update({k: str(self.blas_threads) for k in BLAS_THREAD_VARS})
        self._pool = cf.ProcessPoolExecutor(
            self.jobs, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(self.blas_threads, os.getpid()),
        )
        return self

    def __exit__(self, *exc: Any) -> None:
        pool, self._pool = self._pool, None
        try:
            if pool is not None and exc[:1] in ((), (None,)) and not self._abandoned:
                pool.shutdown(wait=True)
            elif pool is not None:  # Ctrl-C or an error: do not wait for the tasks in flight
                processes = list((getattr(pool, "_processes", None) or {}).values())
                pool.shutdown(wait=False, cancel_futures=True)
                for p in processes:
                    if p.is_alive():
                        p.terminate()
                for p in processes:
                    p.join(5)
        finally:
            for k, v in self._saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def imap_unordered(self, fn: Callable[[Item], Any], items: Iterable[Item]) -> Iterator[tuple[Item, Any]]:
        assert self._pool is not None, "use LocalProcesses as a context manager"
        pool, pending = self._pool, iter(items)
        window = 2 * self.jobs  # keep every worker busy, queue little that Ctrl-C would discard
        in_flight: dict[cf.Future, Item] = {}
        try:
            while True:
                while len(in_flight) < window:
                    item = next(pending, _END)
                    if item is _END:
                        break
                    in_flight[pool.submit(fn, item)] = item
                if not in_flight:
                    return
                done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    yield in_flight.pop(future), future.result()
        except cf.process.BrokenProcessPool:
            raise Fault("A worker process died (out of memory?); use fewer --jobs.") from None
        finally:
            self._abandoned = bool(in_flight)
            for future in in_flight:
                future.cancel()

    def describe(self) -> str:
        return f"{self.jobs} local processes × {self.blas_threads} BLAS thread(s)"


class DaskCluster:
    """Run items on a Dask distributed cluster whose scheduler is at ``address``."""

    jobs = 1

    def __init__(self, address: str, blas_threads: int = 1) -> None:
        self.address = address
        self.blas_threads = blas_threads  # per task, set on the worker (threads.run_pinned)
        self._client = None
        self._quiet: Callable[[], None] = lambda: None

    def __enter__(self) -> "DaskCluster":
        try:
            from distributed import Client
            from distributed.comm import get_address_host_port, parse_address
            from distributed.security import Security
        except ImportError:
            raise UsageError(
                "The 'scheduler' parameter needs Dask, which is not installed: pip install 'hevar[dask]'."
            ) from None
        bad = "The 'scheduler' parameter must be the address of a running Dask scheduler. Got '{}' instead ({})."
        try:
            get_address_host_port(self.address)  # a malformed address fails here, not in a half-built Client
            security = Security()  # TLS certificates, if any, from Dask's configuration
            if parse_address(self.address)[0] in ("tls", "wss") and \
                    security.get_connection_args("client").get("ssl_context") is None:
                raise ValueError("a TLS address needs certificates in Dask's configuration: distributed.comm.tls.ca-file, "
                                 "distributed.comm.tls.client.cert and .key")
        except (ValueError, TypeError) as exc:
            raise UsageError(bad.format(self.address, f"{type(exc).__name__}: {exc}")) from None
        self._quiet = _quiet_dask_logs()
        try:
            self._client = Client(self.address, timeout=CONNECT_TIMEOUT_S, set_as_default=False, security=security)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            self._quiet()
            raise UsageError(bad.format(self.address, f"{type(exc).__name__}: {exc}")) from None
        try:
            self._check_workers()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _check_workers(self) -> None:
        """Fail early, in one line, if a connected worker lacks hevar or runs another version."""
        from importlib.metadata import version

        mine = version("hevar")
        theirs = self._client.run(version, "hevar", on_error="return")
        bad = {w: v for w, v in theirs.items() if v != mine}
        if bad:
            worker, got = next(iter(bad.items()))
            got = "not installed" if isinstance(got, Exception) else f"version {got}"
            raise UsageError(
                f"Dask worker {worker} cannot run hevar {mine} tasks: hevar is {got} there "
                f"({len(bad)} of {len(theirs)} workers). Install the same hevar on every worker."
            )

    def __exit__(self, *exc: Any) -> None:
        client, self._client = self._client, None
        try:
            if client is not None:
                try:
                    client.close(timeout=CONNECT_TIMEOUT_S)
                except (OSError, TimeoutError, RuntimeError):  # the scheduler is gone already: nothing to close
                    pass
        finally:
            self._quiet()

    def imap_unordered(self, fn: Callable[[Item], Any], items: Iterable[Item]) -> Iterator[tuple[Item, Any]]:
        from distributed import KilledWorker, as_completed

        try:
            from distributed.client import FutureCancelledError  # the scheduler went away under a future
        except ImportError:  # pragma: no cover - older distributed: a plain CancelledError
            FutureCancelledError = CancelledError

        import functools

        from hevar.experiments.threads import run_pinned

        client = self._client
        assert client is not None, "use DaskCluster as a context manager"
        task = functools.partial(run_pinned, fn, self.blas_threads)  # workers pin their own BLAS threads
        # A window of a few tasks per worker thread lets the cluster stay busy (and an adaptive
        # one grow) without holding a huge sweep's futures in the scheduler at once.
        window = max(64, 4 * sum(client.nthreads().values()))
        run_id = uuid.uuid4().hex[:8]
        numbers = itertools.count()
        pending = iter(items)
        in_flight: dict[Any, Item] = {}

        def submit() -> Any | None:
            item = next(pending, _END)
            if item is _END:
                return None
            future = client.submit(task, item, key=f"hevar-{run_id}-{next(numbers)}")
            in_flight[future] = item
            return future

        try:
            first = [f for f in (submit() for _ in range(window)) if f is not None]
            stream = as_completed(first, loop=client.loop)
            for future in stream:
                item = in_flight.pop(future)
                try:
                    result = future.result()
                except KilledWorker:
                    raise Fault(f"Dask workers kept dying while running {item} (out of memory?); give the workers "
                                "more memory.") from None
                nxt = submit()
                if nxt is not None:
                    stream.add(nxt)
                yield item, result
        except (OSError, TimeoutError, CancelledError, FutureCancelledError) as exc:  # CommClosedError is an OSError
            in_flight.clear()
            raise Fault(f"Lost the Dask scheduler at {self.address} ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}).") from None
        finally:
            if in_flight:
                try:
                    client.cancel(list(in_flight))
                except (OSError, TimeoutError, CancelledError, RuntimeError):
                    pass

    def describe(self) -> str:
        return f"Dask cluster at {self.address}"


_END: Any = object()


def _quiet_dask_logs() -> Callable[[], None]:
    """Keep Dask's own error logs (tracebacks of a lost connection) off the terminal while hevar
    reports the failure in one line; returns the function that restores them."""
    import logging

    loggers = [logging.getLogger(name) for name in ("distributed", "distributed.client", "distributed.core",
                                                    "distributed.comm", "distributed.batched")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)

    def restore() -> None:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)

    return restore


def open_executor(jobs: int | None = None, scheduler: str | None = None, blas_threads: int | None = None
                  ) -> Serial | LocalProcesses | DaskCluster:
    """The executor for ``--jobs`` / ``--scheduler`` (not yet entered: use it in a ``with``), with
    ``blas_threads`` per process or Dask task (default 1); :func:`hevar.experiments.threads.decide`
    chooses them."""
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0):
        raise UsageError(f"The 'jobs' parameter must be an int in the range [0, inf). Got {jobs!r} instead.")
    if scheduler is not None:
        if jobs is not None:
            raise UsageError(
                "The 'jobs' parameter applies to local runs only; with --scheduler the Dask "
                "workers set the parallelism (dask worker --nworkers/--nthreads)."
            )
        return DaskCluster(scheduler, blas_threads or 1)
    if jobs == 0:
        jobs = available_cores()
    if jobs is None or jobs == 1:
        return Serial(blas_threads or 1)
    return LocalProcesses(jobs, blas_threads or 1)
