"""Run a sweep from a validated config to its tables: in memory, or in a resumable run folder.

This is the one place that orchestrates a sweep; ``hevar sweep`` and :func:`hevar.sweep` both call
:func:`run`. It never prints: progress goes to an ``on_progress`` callback and results come back as
rows, written to files only where a run folder is given (through :mod:`hevar.results.store`).
"""

from __future__ import annotations

import platform
import shlex
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from hevar import __version__
from hevar.errors import Fault, UsageError
from hevar.experiments import signalprop, sweep
from hevar.experiments.config import SweepConfig, build_config
from hevar.results import store

CONFIG_UNITS = {"sigma_w2": "σ_w²·N, units of 1/N as given to --sigma-w2 (the CSVs' sigma_w2 is the raw σ_w² and "
                "their sigma_w2_n this value)", "sigma_b2": "raw σ_b²"}


# Keys every manifest's config has had (widths, mode and dist came later; their defaults are what ran before).
MANIFEST_CONFIG_KEYS = frozenset({"act", "depth", "sigma_w2", "sigma_b2", "seeds", "batch", "seed", "dtype"})


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Outcome:
    """What a finished sweep produced: rows per table (keyed as :data:`hevar.results.store.TABLES`),
    the manifest, and where it was written (None for an in-memory run)."""

    tables: dict[str, list[dict]]
    manifest: dict[str, Any]
    run_dir: Path | None = None
    computed: list[str] = field(default_factory=list)  # task keys this call computed (not loaded)
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (point file, what was wrong): recomputed


class Interrupted(Exception):
    """Ctrl-C during a sweep; ``saved`` tasks of ``total`` are in ``run_dir`` (None: nothing kept)."""

    def __init__(self, saved: int, total: int, run_dir: Path | None) -> None:
        super().__init__(f"{saved} of {total} tasks saved")
        self.saved, self.total, self.run_dir = saved, total, run_dir


def reconcile(cfg: SweepConfig, run_dir: Path | None, *, resume: bool, given: bool,
              command: str = "sweep") -> tuple[SweepConfig, dict | None]:
    """The configuration to run in ``run_dir`` and its manifest, if the folder holds a run already.

    ``resume``: the user asked to finish ``run_dir`` (it must be a run folder); ``given``: the user
    gave sweep settings (then they must match the folder's). A folder made by another hevar version,
    or by another command (``hevar train``'s manifests say ``"command": "train"``), is refused rather than mixed.
    """
    name = "resume" if resume else "out"
    manifest = store.read_manifest(run_dir) if run_dir is not None else None
    if resume and manifest is None:
        raise UsageError(f"The 'resume' parameter must be a hevar run folder with a manifest.json. Got '{run_dir}' "
                         "instead.", param="resume")
    if manifest is None:
        return cfg, None
    made = manifest.get("command", "sweep")
    if made != command:
        raise UsageError(f"The '{name}' parameter names a `hevar {made}` run folder ({run_dir}); `hevar {command}` "
                         "needs a new folder or one it made.", param=name)
    recorded = manifest["config"]
    required = MANIFEST_CONFIG_KEYS | (set() if recorded.get("widths") else {"width"})
    missing, unknown = sorted(required - set(recorded)), sorted(set(recorded) - set(SweepConfig.keys()))
    if missing or unknown:
        raise UsageError(f"The run folder's manifest '{Path(run_dir) / store.MANIFEST}' is damaged: its 'config' "
                         + (f"has no {', '.join(map(repr, missing))}" if missing else
                            f"has unknown key(s) {', '.join(map(repr, unknown))}") + ".", param=name)
    try:
        previous = build_config(recorded)
    except UsageError as exc:
        raise UsageError(f"{Path(run_dir) / store.MANIFEST}: {exc}", param=exc.param) from None
    made_by = manifest.get("hevar", "an unknown version")
    if made_by != __version__:  # finished points would mix two versions' numbers
        raise UsageError(f"The '{name}' parameter names a run folder made by hevar {made_by}; this is hevar "
                         f"{__version__}. Finish it with hevar {made_by}, or start a new --out folder.", param=name)
    if given and previous != cfg:
        was, now_ = previous.to_dict(), cfg.to_dict()
        def shown(v: Any) -> str:
            return "not set" if v is None else str(v)

        diff = ", ".join(f"{k} {shown(was.get(k))} there, {shown(now_.get(k))} here" for k in {**was, **now_}
                         if was.get(k) != now_.get(k))
        raise UsageError(f"The '{name}' parameter names a run folder made with a different configuration ({run_dir}: "
                         f"{diff}); use --resume RUN_DIR alone, or a new --out folder.", param=name)
    return previous, manifest


def environment() -> dict[str, Any]:
    """What else the numbers depend on: the byte-identical CSVs of a resumed run assume the same NumPy and BLAS."""
    from importlib import metadata

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    blas = None
    try:  # NumPy >= 1.26 reports its build; older ones only print it
        deps = np.show_config(mode="dicts")["Build Dependencies"]
        blas = {k: {f: deps[k].get(f) for f in ("name", "version", "openblas configuration") if deps[k].get(f)}
                for k in ("blas", "lapack") if isinstance(deps.get(k), dict)}
    except Exception:  # noqa: BLE001 — provenance only; a run must not fail for it
        pass
    return {"hevar": __version__, "numpy": np.__version__, "python": platform.python_version(),
            "scipy": version("scipy"), "matplotlib": version("matplotlib"), "platform": platform.platform(),
            "machine": platform.machine(), "blas": blas}


def tables(cfg: SweepConfig, results: Mapping[sweep.Task, Any]) -> dict[str, list[dict]]:
    """Every table's rows from the tasks' measurements, keyed as :data:`hevar.results.store.TABLES`."""
    layer_rows, summary_rows, theory_rows = sweep.reduce(cfg, results)
    out = {"layers": layer_rows, "summary": summary_rows, "theory": theory_rows,
           "seeds": sweep.seed_rows(cfg, results), "crossings": sweep.crossing_rows(cfg, results, summary_rows)}
    if cfg.jacobian:  # --jacobian: spectra.csv
        out["spectra"] = sweep.spectra_rows(cfg, results, summary_rows)
    sp_rows = signalprop.rows(cfg, results)
    if sp_rows:  # stacks with residual blocks: signalprop.csv
        out["signalprop"] = sp_rows
    return out


def run(cfg: SweepConfig, run_dir: Path | None = None, *, manifest: Mapping[str, Any] | None = None,
        executor=None, on_start: Callable[[int], None] | None = None, on_progress: sweep.ProgressFn | None = None,
        argv: list[str] | None = None, option: str = "out", memory_budget: int | None = None,
        threads: Mapping[str, Any] | None = None) -> Outcome:
    """Run ``cfg`` and return its tables.

    With ``run_dir`` every finished task is saved as it arrives, the CSVs are written atomically at
    the end and the manifest records each attempt, so an interrupted run resumes where it stopped
    (pass the folder's ``manifest`` from :func:`reconcile` to continue it). The folder is locked
    (:mod:`hevar.results.lock`) from before the first write to after the last: a second process on
    it is refused with a :class:`UsageError` naming ``option`` (``out`` or ``resume``), and what
    another process wrote there between :func:`reconcile` and the lock is checked again. Without
    ``run_dir`` nothing touches the disk. ``executor``: one of :mod:`hevar.experiments.executors`,
    not yet entered (default: this process). ``on_start(total)`` is called once the executor is
    ready (a Dask scheduler connected), before the first task; ``on_progress(task, cached)`` after
    each task. Ctrl-C raises :class:`Interrupted` after the manifest says so. ``memory_budget``:
    bytes each task's engine may use (from :func:`hevar.experiments.resources.plan_run`). ``threads``:
    the thread policy's record (:meth:`hevar.experiments.threads.ThreadPlan.record`), kept in the attempt.
    """
    from hevar.experiments.executors import Serial
    from hevar.results.lock import RunLock

    executor = executor or Serial()
    started = now()
    argv = list(sys.argv if argv is None else argv)
    total = len(sweep.plan(cfg))
    saved = 0
    damaged: list[tuple[str, str]] = []
    base: dict[str, Any] = {}
    attempt: dict[str, Any] = {}

    def begin(manifest: Mapping[str, Any] | None) -> None:
        attempts = list(manifest.get("attempts", [])) if manifest else []
        if run_dir is not None:  # points carry their attempt: a killed attempt is still credited
            done_by = sweep.attempt_log(cfg, run_dir)
            attempts = [dict(a, computed=done_by.get(a.get("attempt"), a.get("computed", []))) for a in attempts]
        attempt.update({"attempt": len(attempts) + 1, "argv": argv, "started": started, "finished": None,
                        "computed": [], "executor": executor.describe(),
                        **({"threads": dict(threads)} if threads is not None else {})})
        base.update({
            **environment(), "config": cfg.to_dict(), "config_units": CONFIG_UNITS,
            "seeds": [{"base_seed": cfg.seed, "seed_index": i} for i in range(cfg.seeds)],
            "started": manifest.get("started", started) if manifest else started, "finished": None,
            "attempts": attempts + [attempt],
        })

    def progress(task: sweep.Task, cached: bool) -> None:
        nonlocal saved
        saved += 1
        if on_progress:
            on_progress(task, cached)

    recorded = False
    lock = RunLock(run_dir, option) if run_dir is not None else None
    try:
        with executor:  # connects to a Dask scheduler here, before the run folder is touched
            if run_dir is not None:
                store.prepare_run_dir(run_dir, option)
                lock.acquire()
                if store.read_manifest(run_dir) != (dict(manifest) if manifest else None):
                    _, manifest = reconcile(cfg, run_dir, resume=option == "resume", given=True)
                store.remove_leftovers(run_dir)  # temporary files of writes a killed run left behind
            begin(manifest)
            if run_dir is not None:
                store.write_manifest(run_dir, base)
                recorded = True
            if on_start:
                on_start(total)
            results, computed = sweep.execute(cfg, run_dir, progress, executor=executor, attempt=attempt["attempt"],
                                              damaged=damaged, memory_budget=memory_budget)
        rows = tables(cfg, results)
        if run_dir is not None:
            store.write_tables(run_dir, rows)
        attempt.update(finished=now(), computed=computed)
        manifest_out = dict(base, finished=attempt["finished"])
        if run_dir is not None:
            store.write_manifest(run_dir, manifest_out)
    except KeyboardInterrupt:
        if recorded:
            attempt.update(interrupted=now(), computed=sweep.attempt_log(cfg, run_dir).get(attempt["attempt"], []))
            store.write_manifest(run_dir, base)
        raise Interrupted(saved if run_dir is not None else 0, total, run_dir) from None
    except (UsageError, Fault, OSError, MemoryError) as exc:
        if not recorded:
            raise _as_hevar_error(exc) from None
        try:  # the manifest says how the attempt ended, if the disk still takes it
            attempt.update(failed=now(), error=str(exc),
                           computed=sweep.attempt_log(cfg, run_dir).get(attempt["attempt"], []))
            store.write_manifest(run_dir, base)
        except (Fault, OSError):
            pass
        raise _as_hevar_error(exc).amended(
            f"{saved} of {total} tasks are saved in {run_dir}. Resume with: hevar sweep --resume "
            f"{shlex.quote(str(run_dir))}") from None
    finally:
        if lock is not None:
            lock.release()
    return Outcome(rows, dict(manifest_out, format_version=store.FORMAT_VERSION), run_dir, computed, damaged)


def _as_hevar_error(exc: BaseException) -> UsageError | Fault:
    """An exception from a run as one of hevar's own, with a one-line message."""
    if isinstance(exc, (UsageError, Fault)):
        return exc
    if isinstance(exc, MemoryError):
        return Fault("Out of memory while running the sweep (MemoryError). Try a smaller --batch, --dtype float32 or "
                     "fewer --jobs.")
    return store.io_fault(exc, getattr(exc, "filename", None) or "a file")
