"""The Python API: everything a command does, a call does, returning DataFrames or dicts.

``hevar.sweep`` takes the options of ``hevar sweep`` as Python values (lists for grids, activation
names or module-level functions), runs in memory unless ``out`` is given, and returns a
:class:`~hevar.results.run.Run`; ``hevar.load`` reads a run folder back; ``hevar.theory`` and
``hevar.gains`` return exactly the objects ``hevar theory --json`` and ``hevar gains --json`` print.
Bad values raise :class:`~hevar.errors.UsageError` with the CLI's one-line message.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from hevar.errors import UsageError
from hevar.results.run import Run

Grid = Any  # a number, a list of numbers, or "start:stop:step"


def _act_spec(act: Any) -> str:
    """An activation as ``--act`` takes it: a name, or ``MODULE:FUNCTION`` for a module-level function."""
    if isinstance(act, str):
        return act
    name = getattr(act, "name", None)
    if isinstance(name, str) and hasattr(act, "phi"):  # an Activation
        return name
    if callable(act):
        module, qualname = getattr(act, "__module__", None), getattr(act, "__qualname__", "")
        try:
            found = getattr(importlib.import_module(module), qualname, None) if module and qualname.isidentifier() else None
        except ImportError:
            found = None
        if found is act:
            return f"{module}:{qualname}"
        raise UsageError(f"The 'act' parameter must be an activation name or a module-level function (importable "
                         f"as MODULE:FUNCTION, so worker processes can find it). Got {qualname or act!r} instead.",
                         param="act")
    raise UsageError(f"The 'act' parameter must be an activation name, a list of them, or a function. Got {act!r} "
                     "instead.", param="act")


def sweep(*, act: str | Callable | Sequence[str | Callable] | None = None, depth: int | Sequence[int] | None = None,
          width: int | Sequence[int] | None = None, widths: str | Sequence[int] | None = None,
          sigma_w2: Grid = None, sigma_b2: Grid = None, seeds: int | None = None, batch: int | None = None,
          seed: int | None = None, dtype: str | None = None, mode: str | Sequence[str] | None = None,
          dist: str | Sequence[str] | None = None, arch: str | None = None, branch_scale: str | float | None = None,
          input_corr: Grid = None, n_pairs: int | None = None, jacobian: int | None = None,
          q_in: float | None = None, input_preactivation: bool | None = None, weight_std: float | None = None,
          config: str | Path | None = None, out: str | Path | None = None,
          resume: bool = False, plot: bool = False, jobs: int | None = None, scheduler: str | None = None,
          threads: int | None = None) -> Run:
    """Run a sweep, as ``hevar sweep`` does, and return its :class:`~hevar.results.run.Run`.

    Options are those of ``hevar sweep`` (see ``hevar sweep --help``; ``sigma_w2`` is σ_w²·N, in
    units of 1/N), given as Python values; ``None`` means the preset's value (``config``, a TOML
    file) or the default. Without ``out`` nothing is written; with it the run folder is the CLI's,
    resumable in the same way: an existing run folder with the same settings (or ``resume=True``
    with no settings) continues where it stopped. ``plot`` renders the figures into ``out/plots``.
    ``input_corr`` (a number or a list of c⁰), ``n_pairs`` and ``jacobian`` are ``--input-corr``, ``--n-pairs``
    and ``--jacobian`` (off by default; see :mod:`hevar.experiments.pairsweep`); the Jacobian's quantiles are
    ``run.spectra``. ``q_in``, ``input_preactivation`` and ``weight_std`` are ``--q-in``,
    ``--input-preactivation`` and ``--weight-std``.
    """
    from hevar.experiments import executors, resources, runner, threads as thread_policy
    from hevar.experiments.config import SweepConfig, build_config, parse_jobs, read_preset

    if isinstance(widths, str) and not widths.strip():  # as --widths "": a mistake, not "no profile"
        from hevar.engine.init import parse_widths

        parse_widths(widths)
    acts = None if act is None else ",".join(_act_spec(a) for a in (act if isinstance(act, (list, tuple)) else [act]))
    flags = dict(act=acts, depth=depth, width=width, sigma_w2=sigma_w2, sigma_b2=sigma_b2, seeds=seeds, batch=batch,
                 seed=seed, dtype=dtype, widths=widths, mode=mode, dist=dist, arch=arch, branch_scale=branch_scale,
                 input_corr=input_corr, n_pairs=n_pairs, jacobian=jacobian, q_in=q_in,
                 input_preactivation=input_preactivation, weight_std=weight_std)
    preset = read_preset(Path(config)) if config is not None else {}
    cfg = build_config(flags, preset)
    run_dir = Path(out) if out is not None else (Path(preset["out"]) if "out" in preset else None)
    if resume and run_dir is None:
        raise UsageError("The 'resume' parameter needs the run folder as 'out'. Got resume=True and no out instead.",
                         param="resume")
    given = any(v is not None and k in SweepConfig.keys() for k, v in {**preset, **flags}.items())
    cfg, manifest = runner.reconcile(cfg, run_dir, resume=resume, given=given)
    jobs_n, threads_n = None if jobs is None else parse_jobs(jobs), thread_policy.parse_threads(threads)
    executors.open_executor(jobs_n, scheduler)  # the pair is checked before any work
    policy = thread_policy.decide(cfg, jobs_n, threads_n, scheduler=scheduler)
    executor = executors.open_executor(None if scheduler else policy.jobs, scheduler, policy.blas_threads)
    plan = resources.check_memory(cfg, workers=executor.jobs, remote=scheduler is not None)
    outcome = runner.run(cfg, run_dir, manifest=manifest, executor=executor, memory_budget=plan.budget,
                         threads=policy.record())
    if plot and run_dir is not None:
        from hevar.views import figures

        figures.render_run(run_dir)
    return Run.from_tables(outcome.tables, outcome.manifest, run_dir)


def train(*, act: str | Callable | Sequence[str | Callable] | None = None, depth: int | Sequence[int] | None = None,
          width: int | Sequence[int] | None = None, sigma_w2: Grid = None, sigma_b2: Grid = None,
          seeds: int | None = None, seed: int | None = None, dist: str | Sequence[str] | None = None,
          arch: str | None = None, branch_scale: str | float | None = None, steps: int | None = None,
          lr: float | None = None, optimizer: str | None = None, momentum: float | None = None,
          batch: int | None = None, data: str | None = None, eval_every: int | None = None,
          config: str | Path | None = None, out: str | Path | None = None, resume: bool = False,
          plot: bool = False, jobs: int | None = None, scheduler: str | None = None):
    """Train networks, as ``hevar train`` does, and return a :class:`~hevar.results.training.TrainingRun`
    (DataFrames ``training``, ``training_summary``, ``training_grads``).

    Options are those of ``hevar train`` (``sigma_w2`` is σ_w²·N), as Python values; ``None`` means
    the preset's value (``config``) or ``hevar train``'s default. Without ``out`` nothing is written;
    with it the run folder is the CLI's, durable and resumable in the same way (``resume=True``
    continues the folder with its own settings). ``plot`` renders its figures into ``out/plots``.
    """
    from hevar.experiments import executors, training_run
    from hevar.experiments import train as T
    from hevar.experiments.config import parse_jobs
    from hevar.results.training import TrainingRun

    acts = None if act is None else ",".join(_act_spec(a) for a in (act if isinstance(act, (list, tuple)) else [act]))
    net_flags = dict(act=acts, depth=depth, width=width, sigma_w2=sigma_w2, sigma_b2=sigma_b2, seeds=seeds, seed=seed,
                     dist=dist, arch=arch, branch_scale=branch_scale)
    given = dict(steps=steps, lr=lr, optimizer=optimizer, momentum=momentum, batch=batch, eval_every=eval_every)
    opts = T.resolve_options(net_flags, given, data, Path(config) if config is not None else None)
    run_dir = Path(out) if out is not None else (Path(opts.preset_out) if opts.preset_out else None)
    if resume and run_dir is None:
        raise UsageError("The 'resume' parameter needs the run folder as 'out'. Got resume=True and no out instead.",
                         param="resume")
    cfg, settings, data_name, manifest = training_run.reconcile(
        opts.cfg, opts.settings, opts.data_name, run_dir, resume=resume,
        given_network=opts.given_network, given_training=opts.given_training)
    executor = executors.open_executor(None if jobs is None else parse_jobs(jobs), scheduler)
    outcome = training_run.run(cfg, settings, data_name, run_dir, manifest=manifest, executor=executor,
                               option="resume" if resume else "out")
    if plot and run_dir is not None:
        from hevar.views import figures

        figures.render_run(run_dir)
    return TrainingRun.from_tables(outcome.tables, outcome.manifest, run_dir)


def load(run_dir: str | Path):
    """The results of a finished run folder: a :class:`~hevar.results.run.Run` for ``hevar sweep``'s,
    a :class:`~hevar.results.training.TrainingRun` for ``hevar train``'s."""
    from hevar.results import store

    path = Path(run_dir)
    manifest = store.read_manifest(path) if path.is_dir() else None
    if manifest is not None and manifest.get("command") == "train":
        from hevar.results.training import TrainingRun

        return TrainingRun.load(path)
    return Run.load(run_dir)


def theory(act: str | Callable, *, sigma_b2: float = 0.0, sigma_w2: float | None = None, depth: int = 10,
           q_in: float = 1.0, input_preactivation: bool = False) -> dict:
    """Mean-field theory for one activation: the object ``hevar theory --json`` prints (NaN as None,
    ±inf as "inf"/"-inf"). ``sigma_w2`` is σ_w²·N (default: the critical value); ``q_in`` and
    ``input_preactivation`` as ``--q-in`` and ``--input-preactivation``."""
    from hevar.experiments.config import parse_acts, parse_depth, parse_sigma_b2, parse_sigma_w2
    from hevar.meanfield import theory as mf
    from hevar.meanfield.activations import parse_activation
    from hevar.results import store

    activation = parse_activation(parse_acts(_act_spec(act), one="theory")[0])
    report = mf.report(activation, sigma_b2=parse_sigma_b2(sigma_b2),
                       sigma_w2_n=None if sigma_w2 is None else parse_sigma_w2(sigma_w2), depth=parse_depth(depth),
                       q_in=float(q_in), input_preactivation=bool(input_preactivation))
    return store.json_safe(report)


def gains(act: str | Callable | Sequence[str | Callable] | None = None, *, sigma_b2: float = 0.0,
          depth: int | None = None, q_in: float = 1.0, input_preactivation: bool = False,
          arch: str | None = None, sigma_w2: float | None = None, branch_scale: str | float | None = None) -> dict:
    """Framework initialisations beside the theory: the object ``hevar gains --json`` prints
    (``q_in`` and ``input_preactivation`` as ``--q-in`` and ``--input-preactivation``).

    With ``arch`` (a stack other than ``mlp``, as ``hevar gains --arch``): the object of
    :func:`hevar.blocks.gains.stack_gains` instead — per activation (default relu) the branch scale
    that keeps q̃¹/q̃ᴸ within a factor 2 at ``depth`` and ``sigma_w2`` (σ_w²·N, default the critical
    value) and the per-block factors at it (or at ``branch_scale``)."""
    from hevar.experiments.config import parse_acts, parse_depth, parse_sigma_b2
    from hevar.meanfield import gains as mf_gains
    from hevar.meanfield.activations import parse_activation
    from hevar.results import store

    acts = None if act is None else [parse_activation(a) for a in parse_acts(
        ",".join(_act_spec(a) for a in (act if isinstance(act, (list, tuple)) else [act])))]
    if arch is not None or sigma_w2 is not None or branch_scale is not None:
        return _stack_gains(acts, arch, sigma_w2, sigma_b2, depth, branch_scale)
    table = mf_gains.gains_table(acts, sigma_b2=parse_sigma_b2(sigma_b2),
                                 depth=parse_depth(depth if depth is not None else mf_gains.DEFAULT_DEPTH),
                                 q_in=q_in, input_preactivation=bool(input_preactivation))
    return store.json_safe(mf_gains.to_dict(table))


def _stack_gains(acts, arch, sigma_w2, sigma_b2, depth, branch_scale) -> dict:
    from hevar.blocks import gains as block_gains, network
    from hevar.errors import UsageError
    from hevar.experiments.config import build_config, parse_sigma_b2, parse_sigma_w2
    from hevar.meanfield import gains as mf_gains, theory as mf
    from hevar.meanfield.activations import parse_activation
    from hevar.results import store

    if arch is None:
        raise UsageError(f"The 'arch' parameter must be given with sigma_w2 or branch_scale ({network.ARCH_HELP}). "
                         "Got None instead.", param="arch")
    if network.parse_arch(arch).text == "mlp":
        raise UsageError("The 'arch' parameter must name a stack of blocks other than the plain mlp (whose table is "
                         f"gains() without arch): {network.ARCH_HELP}. Got '{arch}' instead.", param="arch")
    L = depth if depth is not None else mf_gains.DEFAULT_DEPTH
    cfg = build_config({"arch": arch, "depth": str(L), **({"branch_scale": branch_scale} if branch_scale is not None
                                                          else {})})
    L = cfg.depth[0]
    acts = acts if acts is not None else [parse_activation("relu")]
    b = parse_sigma_b2(sigma_b2)
    s = None if sigma_w2 is None else parse_sigma_w2(sigma_w2)
    for a in acts:
        if s is None and not math.isfinite(mf.critical_sigma_w2_n(a, b).sigma_w2_n):
            raise UsageError(f"The 'sigma_w2' parameter must be given for {a.name} (it has no critical σ_w²·N to "
                             "default to). Got None instead.", param="sigma_w2")
    return store.json_safe(block_gains.stack_gains(cfg.arch, acts, L, s, b,
                                                   cfg.branch_scale if branch_scale is not None else None))
