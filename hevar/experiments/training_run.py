"""Run a training grid (``hevar train``, :func:`hevar.train`): in memory, or in a durable, resumable run folder.

This is the one place that orchestrates training; the command and the Python API both call
:func:`run`. A *task* is one network: one (activation, depth, width, σ_w²·N, σ_b², dist) and seed
index (:class:`hevar.experiments.train.RunSpec`), trained by :func:`run_task`, which is pure: its
result depends only on the spec, the :class:`~hevar.experiments.train.TrainSettings`, the data
set's name and the base seed (every random number comes from keyed streams), and it runs with one
BLAS thread (threadpoolctl), so the same numbers come out in this process, in a ``--jobs N`` pool
worker or on a Dask worker.

Durability is the sweep's. With a run folder:

- the manifest is written before the first task (with the configuration, the training settings,
  the data set's name and the attempt), the folder is locked for the whole run
  (:class:`hevar.results.lock.RunLock`), and leftovers of a killed write are removed first;
- every finished task is saved the moment it arrives, atomically, as ``points/<key>.npz``
  (:func:`hevar.results.store.save_point`) holding its whole :class:`~hevar.experiments.train.History`;
- the CSVs are made at the end from the tasks' histories in plan order, whether each was just
  computed or read back, and every history goes through the same arrays (:func:`to_arrays`,
  :func:`from_arrays`) either way — so an interrupted run finished with ``--resume`` writes the
  same bytes as one that ran straight through, and ``--jobs N`` the same bytes as ``--jobs 1``.

The executors are :mod:`hevar.experiments.executors`, as for sweeps.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from hevar.errors import Fault, UsageError
from hevar.experiments import train as T
from hevar.results import store

ProgressFn = Callable[[T.RunSpec, T.History, bool], None]  # (task, its history, was it done before)
_FLOATS = ("train_loss", "train_acc", "test_acc")


# --- one task ------------------------------------------------------------------------------------

def task_key(spec: T.RunSpec) -> str:
    """A file-name-safe identity of one task, stable across runs and machines."""
    ident = json.dumps(dataclasses.asdict(spec), sort_keys=True)
    act = "".join(c if c.isalnum() or c in "._-" else "_" for c in spec.act)[:24]
    return (f"train__{act}__L{spec.depth}__N{spec.width}__s{spec.sigma_w2_n:g}__b{spec.sigma_b2:g}__seed{spec.seed_index}"
            f"__{hashlib.sha1(ident.encode()).hexdigest()[:12]}")


_DATA: dict[tuple[str, int], Any] = {}  # per process: the data set at each width, loaded once


def dataset(name: str, width: int):
    """The data set ``name`` at input width ``width``, cached in this process."""
    from hevar.experiments.data import load

    if (name, width) not in _DATA:
        _DATA[(name, width)] = load(name, width)
    return _DATA[(name, width)]


def run_task(settings: T.TrainSettings, data_name: str, seed: int, spec: T.RunSpec) -> dict[str, np.ndarray]:
    """Train one network with one BLAS thread; its history as arrays (:func:`to_arrays`). Pure."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        data = dataset(data_name, spec.width)
        hist = T.run_one(spec, data, settings, seed)
    return to_arrays(hist, data.n_classes)


def to_arrays(hist: T.History, n_classes: int) -> dict[str, np.ndarray]:
    """A :class:`~hevar.experiments.train.History` as the arrays of its point file."""
    arrays = {"steps": np.asarray(hist.steps, dtype=np.int64),
              **{f: np.asarray(getattr(hist, f), dtype=np.float64) for f in _FLOATS},
              "status": np.array(hist.status), "seconds": np.array(float(hist.seconds)),
              "n_classes": np.array(int(n_classes))}
    if hist.grad_norm2_W is not None:
        arrays["grad_norm2_W"] = np.asarray(hist.grad_norm2_W, dtype=np.float64)
        arrays["grad_norm2_b"] = np.asarray(hist.grad_norm2_b, dtype=np.float64)
    return arrays


def from_arrays(arrays: Mapping[str, np.ndarray]) -> tuple[T.History, int]:
    """(history, number of classes) back from :func:`to_arrays`'s arrays."""
    hist = T.History(steps=[int(s) for s in arrays["steps"]], **{f: arrays[f].tolist() for f in _FLOATS},
                     grad_norm2_W=arrays.get("grad_norm2_W"), grad_norm2_b=arrays.get("grad_norm2_b"),
                     status=str(arrays["status"]), seconds=float(arrays["seconds"]))
    return hist, int(arrays["n_classes"])


def point_problem(spec: T.RunSpec, arrays: Mapping[str, np.ndarray]) -> str | None:
    """What is wrong with a point file's arrays for ``spec`` (None: nothing)."""
    for name in ("steps", *_FLOATS, "status", "seconds", "n_classes"):
        if name not in arrays:
            return f"no '{name}' array"
    n = arrays["steps"].shape
    if arrays["steps"].ndim != 1 or arrays["steps"].dtype.kind not in "iu":
        return "'steps' is not a list of integers"
    for name in _FLOATS:
        if arrays[name].dtype.kind != "f" or arrays[name].shape != n:
            return f"'{name}' is {arrays[name].dtype} of shape {arrays[name].shape}, not float of shape {n}"
    for name in ("grad_norm2_W", "grad_norm2_b"):
        if name in arrays and (arrays[name].dtype.kind != "f" or arrays[name].shape != (spec.depth,)):
            return f"'{name}' is not float of shape ({spec.depth},)"
    if arrays["status"].shape != () or arrays["status"].dtype.kind != "U":
        return "'status' is not one string"
    return None


def load_task(run_dir: Path, spec: T.RunSpec) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """A persisted task's arrays (None if it has none), and what is wrong with its file if it is damaged."""
    arrays, problem = store.read_point(run_dir, task_key(spec))
    if arrays is not None:
        problem = point_problem(spec, arrays)
    return (None, problem) if problem else (arrays, None)


# --- the grid --------------------------------------------------------------------------------------

def tables(specs: list[T.RunSpec], results: Mapping[T.RunSpec, tuple[T.History, int]],
           steps: int) -> dict[str, list[dict]]:
    """The rows of every table of :data:`hevar.experiments.train.TRAINING_TABLES`, tasks in plan order."""
    training, grads = [], []
    for spec in specs:
        t, g = T.rows(spec, results[spec][0])
        training += t
        grads += g
    n_classes = results[specs[0]][1] if specs else 10
    summary = T.summarise([(spec, results[spec][0]) for spec in specs], n_classes, steps)
    return {"training": training, "training_grads": grads, "training_summary": summary}


def execute(cfg, settings: T.TrainSettings, data_name: str, run_dir: Path | None, *, executor=None,
            on_progress: ProgressFn | None = None, attempt: int | None = None,
            damaged: list[tuple[str, str]] | None = None) -> tuple[dict, list[str]]:
    """Run every task of ``cfg`` not already persisted in ``run_dir`` and save each as it arrives.
    Returns the results {spec: (history, classes)} and the keys of the tasks this call computed."""
    from hevar.experiments.executors import Serial

    results: dict[T.RunSpec, tuple[T.History, int]] = {}
    todo: list[T.RunSpec] = []
    for spec in T.plan(cfg):
        arrays, problem = (None, None) if run_dir is None else load_task(run_dir, spec)
        if problem and damaged is not None:
            damaged.append((f"{store.POINTS}/{task_key(spec)}.npz", problem))
        if arrays is None:
            todo.append(spec)
            continue
        results[spec] = from_arrays(arrays)
        if on_progress:
            on_progress(spec, results[spec][0], True)
    tag = {} if attempt is None else {"attempt": np.array(attempt)}
    work = functools.partial(run_task, settings, data_name, cfg.seed)
    for spec, arrays in (executor or Serial()).imap_unordered(work, todo):
        if run_dir is not None:
            store.save_point(run_dir, task_key(spec), {**arrays, **tag})
        results[spec] = from_arrays(arrays)
        if on_progress:
            on_progress(spec, results[spec][0], False)
    return results, [task_key(s) for s in todo]


# --- the run folder --------------------------------------------------------------------------------

def settings_from(recorded: Mapping[str, Any]) -> T.TrainSettings:
    known = {f.name for f in dataclasses.fields(T.TrainSettings)}
    return T.TrainSettings(**{k: v for k, v in recorded.items() if k in known})


def reconcile(cfg, settings: T.TrainSettings, data_name: str, run_dir: Path | None, *, resume: bool,
              given_network: bool, given_training: bool):
    """(config, settings, data name, manifest) to run in ``run_dir``: the folder's own where it holds a
    training run already (what was given must then match), else what was given."""
    from hevar.experiments import runner

    name = "resume" if resume else "out"
    cfg, manifest = runner.reconcile(cfg, run_dir, resume=resume, given=given_network, command="train")
    if manifest is None:
        return cfg, settings, data_name, None
    was = settings_from(manifest.get("training", {}))
    was_data = manifest.get("data")
    if given_training and (was != settings or was_data != data_name):
        old, new = {**dataclasses.asdict(was), "data": was_data}, {**dataclasses.asdict(settings), "data": data_name}
        diff = ", ".join(f"{k} {old[k]} there, {new[k]} here" for k in old if old[k] != new[k])
        raise UsageError(f"The '{name}' parameter names a run folder trained with different settings ({run_dir}: "
                         f"{diff}); use --resume RUN_DIR alone, or a new --out folder.", param=name)
    return cfg, was, was_data, manifest


@dataclass
class Outcome:
    """What a finished training run produced: rows per table, the manifest, the folder (None: in memory)."""

    tables: dict[str, list[dict]]
    manifest: dict[str, Any]
    run_dir: Path | None = None
    computed: list[str] = field(default_factory=list)
    damaged: list[tuple[str, str]] = field(default_factory=list)


def run(cfg, settings: T.TrainSettings, data_name: str, run_dir: Path | None = None, *,
        manifest: Mapping[str, Any] | None = None, executor=None, on_start: Callable[[int], None] | None = None,
        on_progress: ProgressFn | None = None, option: str = "out", argv: list[str] | None = None) -> Outcome:
    """Train every task of ``cfg`` and return the tables (see the module docstring for the folder).

    ``manifest``: the folder's, from :func:`reconcile`, to continue it. ``executor``: one of
    :mod:`hevar.experiments.executors`, not yet entered (default: this process). Ctrl-C raises
    :class:`hevar.experiments.runner.Interrupted` once the manifest says so.
    """
    from hevar.experiments import runner
    from hevar.experiments.executors import Serial
    from hevar.results.lock import RunLock

    executor = executor or Serial()
    specs = T.plan(cfg)
    started = runner.now()
    saved, damaged = 0, []
    base: dict[str, Any] = {}
    attempt: dict[str, Any] = {}

    def progress(spec, hist, cached) -> None:
        nonlocal saved
        saved += 1
        if on_progress:
            on_progress(spec, hist, cached)

    def begin(manifest) -> None:
        attempts = list(manifest.get("attempts", [])) if manifest else []
        attempt.update({"attempt": len(attempts) + 1, "argv": list(sys.argv if argv is None else argv),
                        "started": started, "finished": None, "executor": executor.describe()})
        base.update({**runner.environment(), "command": "train", "config": cfg.to_dict(),
                     "config_units": runner.CONFIG_UNITS, "training": dataclasses.asdict(settings), "data": data_name,
                     "seeds": [{"base_seed": cfg.seed, "seed_index": i} for i in range(cfg.seeds)],
                     "started": manifest.get("started", started) if manifest else started, "finished": None,
                     "attempts": attempts + [attempt]})

    recorded = False
    lock = RunLock(run_dir, option) if run_dir is not None else None
    try:
        with executor:
            if run_dir is not None:
                store.prepare_run_dir(run_dir, option)
                lock.acquire()
                if store.read_manifest(run_dir) != (dict(manifest) if manifest else None):
                    _, _, _, manifest = reconcile(cfg, settings, data_name, run_dir, resume=option == "resume",
                                                  given_network=True, given_training=True)
                store.remove_leftovers(run_dir)
            begin(manifest)
            if run_dir is not None:
                store.write_manifest(run_dir, base)
                recorded = True
            if on_start:
                on_start(len(specs))
            results, computed = execute(cfg, settings, data_name, run_dir, executor=executor, on_progress=progress,
                                        attempt=attempt["attempt"], damaged=damaged)
        rows = tables(specs, results, settings.steps)
        if run_dir is not None:
            T.write_tables(run_dir, rows)
        attempt.update(finished=runner.now(), computed=len(computed))
        manifest_out = dict(base, finished=attempt["finished"],
                            train_seconds=round(sum(h.seconds for h, _ in results.values()), 3))
        if run_dir is not None:
            store.write_manifest(run_dir, manifest_out)
    except KeyboardInterrupt:
        if recorded:
            attempt.update(interrupted=runner.now())
            store.write_manifest(run_dir, base)
        raise runner.Interrupted(saved if run_dir is not None else 0, len(specs), run_dir) from None
    except (UsageError, Fault, OSError, MemoryError) as exc:
        if not recorded:
            raise runner._as_hevar_error(exc) from None
        try:
            attempt.update(failed=runner.now(), error=str(exc))
            store.write_manifest(run_dir, base)
        except (Fault, OSError):
            pass
        raise runner._as_hevar_error(exc).amended(
            f"{saved} of {len(specs)} tasks are saved in {run_dir}. Resume with: hevar train --resume "
            f"{shlex.quote(str(run_dir))}") from None
    finally:
        if lock is not None:
            lock.release()
    return Outcome(rows, dict(manifest_out, format_version=store.FORMAT_VERSION), run_dir, computed, damaged)


def finals(training_rows: list[dict]) -> dict[tuple, list[float]]:
    """Per configuration (the summary's keys), the final test accuracy of each seed, in seed order."""
    last: dict[tuple, float] = {}
    for r in training_rows:  # the last row of each run is its final evaluation (or its divergence)
        last[tuple(r[k] for k in T.CONFIG_KEYS + ("seed_index",))] = r["test_acc"]
    out: dict[tuple, list[float]] = {}
    for key, acc in last.items():
        out.setdefault(key[:-1], []).append(acc)
    return out
