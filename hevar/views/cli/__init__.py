"""The command line: parse → config → call the library → report. Only this module prints."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hevar import __version__
from hevar.errors import (EXIT_BUG, EXIT_FAULT, EXIT_INTERRUPTED, EXIT_USAGE, Fault, UsageError,
                          watch_interrupts)


def _lazy(name: str) -> Any:
    """The module ``name``, loaded at its first use (importlib's LazyLoader): `hevar --help` and
    `hevar --version` then import neither SciPy nor the engine (issue 17: start-up)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


init = _lazy("hevar.engine.init")
executors = _lazy("hevar.experiments.executors")
resources = _lazy("hevar.experiments.resources")
runner = _lazy("hevar.experiments.runner")
sweep_mod = _lazy("hevar.experiments.sweep")
thread_policy = _lazy("hevar.experiments.threads")
config_mod = _lazy("hevar.experiments.config")
store = _lazy("hevar.results.store")

DEBUG_ENV = "HEVAR_DEBUG"  # HEVAR_DEBUG=1, or --debug anywhere on the command line: tracebacks for faults and bugs


_debug_flag = False  # --debug on this invocation


def _debug() -> bool:
    return _debug_flag or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _fail(message: str, code: int) -> NoReturn:
    err.print(" ".join(message.split()), markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class _OneLineErrors(typer.core.TyperGroup):
    """Typer's group, with its own usage errors (unknown option or command, missing or extra
    argument) printed as one line in hevar's format and exit code 2, like every other error."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                                **extra)
        except Exception as exc:  # noqa: BLE001 — Typer's (vendored) click exceptions, by their interface
            if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
                raise
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError":  # `hevar` alone: the help, as before
                err.print(exc.format_message(), markup=False, highlight=False)
                code = EXIT_USAGE
            else:
                message = " ".join(exc.format_message().split()).rstrip(".")
                where = f" See '{ctx.command_path} --help'." if ctx is not None else ""
                err.print(f"Error: {message}.{where}", markup=False, highlight=False, soft_wrap=True)
                code = exc.exit_code if ctx is None else EXIT_USAGE
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    help="hevar: how signals and gradients propagate through deep networks at initialization, "
    "and which weight variance keeps them stable (σ_w² = 2/N for ReLU).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    cls=_OneLineErrors,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)
MAX_LAYER_ROWS = 50  # per-layer rows `hevar theory` prints; the rest are elided (--json keeps all)


def user_errors(fn: Callable) -> Callable:
    """The one error path of every command: one line on stderr and a documented exit code (README,
    "Exit codes"). UsageError → 2; Fault and OSError (disk, I/O) → 3; Ctrl-C → 130; anything else is
    a bug → 1. A traceback only with ``--debug`` or ``HEVAR_DEBUG=1``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        restore = watch_interrupts()  # so that a user function's own KeyboardInterrupt is told apart
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except UsageError as exc:
            if _debug():
                raise
            _fail(f"Error: {exc}", EXIT_USAGE)
        except KeyboardInterrupt:
            _fail("Interrupted.", EXIT_INTERRUPTED)
        except (Fault, OSError, MemoryError) as exc:
            if _debug():
                raise
            if isinstance(exc, OSError):
                exc = store.io_fault(exc, getattr(exc, "filename", None) or "a file", "read or write")
            elif isinstance(exc, MemoryError):
                exc = Fault("Out of memory (MemoryError). Try a smaller --batch, --width or --depth, or fewer --jobs.")
            _fail(f"Error: {exc}", EXIT_FAULT)
        except Exception as exc:  # noqa: BLE001 — a bug in hevar: one line, the traceback on request
            if _debug():
                raise
            _fail(f"Internal error: {_one_line(exc)}. This is a bug in hevar; rerun with --debug (or {DEBUG_ENV}=1) "
                  "for the traceback and report it.", EXIT_BUG)
        finally:
            restore()

    return wrapper


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message[:300]}" if message else type(exc).__name__


@app.command()
@user_errors
def sweep(
    act: Optional[str] = typer.Option(None, "--act", metavar="LIST",
        help="Activation(s), comma-separated: relu, leaky_relu:SLOPE, linear, tanh, … (see `hevar activations`). [default: relu]"),
    depth: Optional[str] = typer.Option(None, "--depth", metavar="LIST", help="Number of layers L, comma list. [default: 50]"),
    width: Optional[str] = typer.Option(None, "--width", metavar="LIST", help="Units per layer N, comma list. [default: 256]"),
    widths: Optional[str] = typer.Option(None, "--widths", metavar="PROFILE",
        help="Every layer's width N_0..N_L instead of --width: 1024,512,256 (fixes L), pyramid:N_FIRST:N_LAST "
        "(geometric over --depth) or constant:N."),
    mode: Optional[str] = typer.Option(None, "--mode", metavar="LIST",
        help="Fan N_fan(l) the variance is divided by, σ_{w,l}² = (σ_w²·N)/N_fan(l), comma list: fan_in (N_{l-1}, "
        "forward condition), fan_out (N_l, He's backward condition), fan_avg (their mean), fixed (N_0 for every layer, as --weight-std). fan_in is the default "
        "because it is what --width runs do and PyTorch's default. [default: fan_in]"),
    dist: Optional[str] = typer.Option(None, "--dist", metavar="LIST",
        help="Weight distribution(s), comma list: normal, uniform, truncnormal (PyTorch trunc_normal_, cut at "
        "absolute ±2), truncnormal_keras (cut at ±2 std, variance corrected), orthogonal. [default: normal]"),
    arch: Optional[str] = typer.Option(None, "--arch", metavar="SPEC",
        help="Architecture of layers 2..L (layer 1 is the dense input layer): mlp, resmlp (zˡ = zˡ⁻¹ + α·(Wˡφ(zˡ⁻¹) + bˡ)), "
        "preln-resmlp, postln-resmlp, or '-'-joined tokens: mlp|resmlp, preln|postln|prerms|postrms, dropP (keep "
        "probability P). [default: mlp]"),
    branch_scale: Optional[str] = typer.Option(None, "--branch-scale", metavar="ALPHA",
        help="Residual branch scale α: a number >= 0 (0 is SkipInit) or an expression in the depth L, e.g. 1/sqrt(L), "
        "1/sqrt(2L). [default: 1]"),
    sigma_w2: Optional[str] = typer.Option(None, "--sigma-w2", metavar="GRID",
        help="Weight variance in units of 1/N (2 means σ_w² = 2/N): comma list or start:stop:step. [default: 0.5:4:0.5]"),
    sigma_b2: Optional[str] = typer.Option(None, "--sigma-b2", metavar="GRID", help="Bias variance σ_b² (raw), comma list or start:stop:step. [default: 0]"),
    seeds: Optional[str] = typer.Option(None, "--seeds", metavar="INT", help="Independent networks per configuration. [default: 8]"),
    batch: Optional[str] = typer.Option(None, "--batch", metavar="INT", help="Inputs per network B. [default: 128]"),
    seed: Optional[str] = typer.Option(None, "--seed", metavar="INT", help="Base random seed. [default: 0]"),
    dtype: Optional[str] = typer.Option(None, "--dtype", metavar="DTYPE", help="float32 or float64. [default: float64]"),
    out_dir: Optional[Path] = typer.Option(None, "--out", metavar="RUN_DIR", help="Run folder. [default: outputs/TIME-ACT]"),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE",
        help="TOML preset (see configs/); flags given here override it."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="RUN_DIR", help="Finish an interrupted run in RUN_DIR."),
    plot: Optional[bool] = typer.Option(None, "--plot/--no-plot", help="Render the figures at the end. [default: plot]"),
    fmt: Optional[str] = typer.Option(None, "--format", metavar="LIST",
        help="Figure file format(s), comma list: png, svg, pdf. [default: png]"),
    jobs: Optional[str] = typer.Option(None, "--jobs", metavar="INT",
        help="Worker processes, one BLAS thread each (unless --threads). 0 = one per core. Results do not depend "
        "on it. [default: chosen: several when there are several tasks and more than a second or two of work, "
        "else this process; the manifest records it]"),
    threads: Optional[str] = typer.Option(None, "--threads", metavar="INT",
        help="BLAS threads per process (each --jobs worker, or each Dask task). More than 1 rarely pays on these "
        "products and changes the last bits of most of them. [default: 1]"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", metavar="ADDRESS",
        help="Run tasks on a Dask cluster, e.g. tcp://host:8786 (pip install 'hevar[dask]'; workers need hevar)."),
    dry_run: bool = typer.Option(False, "--dry-run",
        help="Print the plan (tasks, configurations, memory, estimated time) and exit; nothing is run or written."),
    input_corr: Optional[str] = typer.Option(None, "--input-corr", metavar="GRID",
        help="Also measure the correlation cˡ of input pairs of correlation c⁰ in [-1, 1) (comma list or "
        "start:stop:step), beside its mean-field theory and ξ̂_c beside ξ_c; each c⁰ is a configuration. [default: off]"),
    n_pairs: Optional[str] = typer.Option(None, "--n-pairs", metavar="INT",
        help="Input pairs per seed and c⁰ (with --input-corr). [default: 32]"),
    jacobian: Optional[str] = typer.Option(None, "--jacobian", metavar="INT",
        help="Also measure the squared singular values of the input–output Jacobian for INT inputs per seed (exact SVD, "
        "widths up to 1024): spectra.csv and their moments beside the free-probability prediction. [default: 0, off]"),
    q_in: Optional[str] = typer.Option(None, "--q-in", metavar="FLOAT",
        help="The input's second moment E[x²] (inputs √q_in·N(0, 1)); the theory starts there. [default: 1]"),
    input_preactivation: Optional[bool] = typer.Option(None, "--input-preactivation",
        help="Feed φ(x) to layer 1, x ~ N(0, q_in): q¹ = σ_w²N·E[φ(x)²] + σ_b² (Poole et al. 2016 and most reference "
        "code). [default: the input is not activated]"),
    weight_std: Optional[str] = typer.Option(None, "--weight-std", metavar="STD",
        help="One raw weight std for every layer (He et al. 2015's 0.01), instead of --sigma-w2 and --mode: runs "
        "mode fixed at σ_w²·N = STD²·N_0. [default: off]"),
) -> None:
    """Sweep activation × depth × width × σ_w² × σ_b²: measure qˡ, q̃ˡ and gradient norms beside
    the mean-field predictions; write manifest.json, layers.csv, summary.csv and plots/ to a run folder."""
    from hevar.views.formats import parse_formats

    formats = parse_formats(fmt)  # checked before any work
    flags = dict(act=act, depth=depth, width=width, sigma_w2=sigma_w2, sigma_b2=sigma_b2,
                 seeds=seeds, batch=batch, seed=seed, dtype=dtype, widths=widths, mode=mode, dist=dist,
                 arch=arch, branch_scale=branch_scale, input_corr=input_corr, n_pairs=n_pairs, jacobian=jacobian,
                 q_in=q_in, input_preactivation=input_preactivation, weight_std=weight_std)
    if widths is not None and not widths.strip():  # an empty profile is a mistake, not "no profile"
        init.parse_widths(widths)
    preset = config_mod.read_preset(config) if config is not None else {}
    cfg = config_mod.build_config(flags, preset)
    jobs_n, threads_n = None if jobs is None else config_mod.parse_jobs(jobs), thread_policy.parse_threads(threads)
    executors.open_executor(jobs_n, scheduler)  # the pair is checked before any work
    if resume is not None and out_dir is not None and Path(resume).resolve() != Path(out_dir).resolve():
        raise UsageError(f"The 'out' parameter cannot differ from --resume. Got '{out_dir}' and '{resume}'; give one folder.")
    run_dir = resume or out_dir or (Path(preset["out"]) if "out" in preset else None)
    given = any(v is not None and k in config_mod.SweepConfig.keys() for k, v in {**preset, **flags}.items())
    cfg, manifest = runner.reconcile(cfg, run_dir, resume=resume is not None, given=given)
    # Before anything is written: memory (a Dask cluster's workers have their own) and time.
    policy = thread_policy.decide(cfg, jobs_n, threads_n, scheduler=scheduler)
    executor = executors.open_executor(None if scheduler else policy.jobs, scheduler, policy.blas_threads)
    plan = resources.plan_run(cfg, executor.jobs, remote=scheduler is not None)
    if dry_run:
        out.print("\n".join(["Plan (--dry-run; nothing was run or written):", *(f"  {line}" for line in plan.lines()),
                             f"  threads: {policy.reason}"]),
                  markup=False, highlight=False, soft_wrap=True)
    resources.check_memory(cfg, plan=plan)
    if dry_run:
        return
    if plan.seconds > resources.ESTIMATE_ABOVE_S:
        err.print(f"Estimated {plan.lines()[-1]} for {plan.tasks} tasks; Ctrl-C is safe (finished tasks are kept; "
                  "resume with --resume).", markup=False, highlight=False, soft_wrap=True)
    if run_dir is None:
        run_dir = store.default_run_dir(Path("outputs"), "+".join(cfg.act).replace(":", "_"), runner.now())
    do_plot = plot if plot is not None else bool(preset.get("plot", True))
    progress = Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False)
    bar: list = []
    from hevar.views.render import FigureWorkers

    with contextlib.ExitStack() as stack:
        # Figure workers load Matplotlib while the sweep runs (unless this process has it already)
        workers = stack.enter_context(FigureWorkers()) if do_plot and "matplotlib" not in sys.modules else None
        _sweep_and_report(cfg, run_dir, manifest, executor, plan, policy, resume, progress, bar, formats,
                          do_plot, workers)


def _sweep_and_report(cfg, run_dir, manifest, executor, plan, policy, resume, progress, bar, formats, do_plot,
                      workers) -> None:
    def on_start(total: int) -> None:  # the bar appears once the executor is ready (a scheduler connected)
        progress.start()
        bar.append(progress.add_task("", total=total))

    def on_progress(task: sweep_mod.Task, cached: bool) -> None:
        progress.update(bar[0], advance=1, description=f"{task.act} L={task.depth} N={task.width} seed {task.seed_index}"
                        + (" (done before)" if cached else ""))

    try:
        try:
            outcome = runner.run(cfg, run_dir, manifest=manifest, executor=executor, on_start=on_start,
                                 on_progress=on_progress, option="resume" if resume is not None else "out",
                                 memory_budget=plan.budget, threads=policy.record())
        except BaseException:
            if bar:  # the message is the last word, not a half-filled bar
                progress.live.transient = True
                progress.live.stop()
            raise
        else:
            if bar:
                progress.stop()
    except runner.Interrupted as stop:
        err.print(f"Interrupted: {stop.saved} of {stop.total} tasks are saved in {run_dir}. "
                  f"Resume with: hevar sweep --resume {shlex.quote(str(run_dir))}", markup=False, highlight=False)
        raise typer.Exit(130) from None
    first_c = {"input_corr": cfg.input_corr[0]} if cfg.input_corr else {}  # χ̂ repeats per c⁰: print it once
    _print_summary([r for r in outcome.tables["summary"] if all(r.get(k) == v for k, v in first_c.items())],
                   outcome.tables.get("crossings", []))
    for file, problem in outcome.damaged:
        err.print(f"Note: {Path(run_dir) / file} was damaged ({problem}); it was computed again.", markup=False,
                  highlight=False, soft_wrap=True)
    if do_plot:
        _render(run_dir, formats, after_sweep=True, workers=workers)
    out.print(f"Run folder: {run_dir}", markup=False, highlight=False)


def _fmt(x: float, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


Z_MARK = 3.0  # |z| above this is marked in the summary


def _print_summary(rows: list[dict], crossing_rows: list[dict] = ()) -> None:
    from rich import box
    from rich.measure import Measurement

    # (header, text of a row, shown in the title when all rows agree, and then only if not the default)
    keys = (("L", lambda r: str(r["depth"]), None), ("N", lambda r: str(r["width"]), None),
            ("σ_b²", lambda r: f"{r['sigma_b2']:g}", None), ("mode", lambda r: r.get("mode") or "fan_in", "fan_in"),
            ("dist", lambda r: r.get("dist") or "normal", "normal"))
    varying, fixed = [], []
    for name, text, default in keys:
        values = {text(r) for r in rows}
        if len(values) > 1:
            varying.append((name, text))
        elif values and values != {default}:
            fixed.append(f"{name} = {values.pop()}")
    # Title and caption are printed apart from the table, so that they wrap at the terminal's width, not the table's.
    out.print("χ̂: measured per-layer growth of q̃ˡ (1 = stable), beside its theory"
              + (f"\n{', '.join(fixed)}" if fixed else ""), markup=False, highlight=False)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("activation", justify="left", no_wrap=True)
    for name, _ in varying:
        table.add_column(name, justify="left" if name in ("mode", "dist") else "right", no_wrap=True)
    show_z = any(math.isfinite(r.get("z", math.nan)) for r in rows)  # one seed: no s.e., no z
    for name in ("σ_w²·N", "χ̂", "±2se", "theory") + (("z",) if show_z else ()):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("status", justify="left", overflow="fold")
    critical: dict[tuple, str] = {}
    marked = 0
    for r in rows:
        crit = r["sigma_w2_n_crit"]
        at_crit = math.isfinite(crit) and math.isclose(r["sigma_w2_n"], crit, rel_tol=1e-9)
        z = r.get("z", math.nan)
        far = math.isfinite(z) and abs(z) > Z_MARK
        marked += far
        table.add_row(r["activation"], *(text(r) for _, text in varying),
                      f"{r['sigma_w2_n']:g}" + (" ◀" if at_crit else ""), _fmt(r["chi_hat"]),
                      _fmt(2 * r["chi_hat_se"]), _fmt(r["chi_theory"]),
                      *((("—" if not math.isfinite(z) else f"{z:+.1f}") + (" !" if far else ""),) if show_z else ()),
                      r["status"])
        critical[(r["activation"], r["sigma_b2"])] = (f"{crit:.4g}" if math.isfinite(crit) else "none") \
            + (f" ({r['critical_kind']})" if r["critical_kind"] else "")
    caption = ("theory: the same fit over the same layers applied to the mean-field trajectory (at this depth, not "
               "χ₁ at L → ∞); ±2se: two standard errors, as in the figures; z = (χ̂ − theory)/s.e.\ncritical σ_w²·N (◀, χ₁ = 1): " + "; ".join(
                   f"{a}{f' σ_b²={b:g}' if b else ''} {c}" for (a, b), c in critical.items()))
    if marked:
        caption += (f"\n! |z| > {Z_MARK:g} at {marked} configuration(s): finite width, a basin boundary of the "
                    "q-map, or a forward pass not yet at its fixed point can separate χ̂ from the theory.")
    profiles = sorted({r.get("widths", "") for r in rows} - {""})
    if any(not p.startswith("constant:") for p in profiles):
        caption += "\nwidths N_0..N_L: " + ", ".join(profiles) + " (N is N_0)"
    if Measurement.get(out, out.options.update_width(10**4), table).minimum > out.width:  # many varying keys: one space apart
        table.padding = (0, 0, 0, 0)
    out.print(table)
    out.print(caption, markup=False, highlight=False)
    if crossing_rows:
        _print_crossings(crossing_rows, varying)


def _print_crossings(rows: list[dict], varying) -> None:
    """Where χ̂ crosses 1, per curve, beside the theory's value."""
    lines = []
    for r in rows:
        where = " ".join(f"{name}={text(r)}" for name, text in varying if name != "σ_w²·N")
        head = f"{r['activation']}{' ' + where if where else ''}"
        theory_part = f"theory (same fit) {_fmt(r['sigma_w2_n_cross_theory'])}"
        if math.isfinite(r["sigma_w2_n_crit"]):
            theory_part += f", χ₁ = 1 at {_fmt(r['sigma_w2_n_crit'])}"
        if r["kind"] == "crossing":
            lines.append(f"{head}: {_fmt(r['sigma_w2_n_cross'])} [{_fmt(r['sigma_w2_n_cross_lo'])}, "
                         f"{_fmt(r['sigma_w2_n_cross_hi'])}]; {theory_part}")
        elif r["kind"] == "jump":
            lines.append(f"{head}: jumps across 1 between {r['bracket_lo']:g} and {r['bracket_hi']:g} "
                         f"(no point value); {theory_part}")
        else:
            lines.append(f"{head}: none in the grid; {theory_part}")
    out.print("Measured σ_w²·N where χ̂ = 1, with its 95 % interval (seeds and interpolation; crossings.csv):\n  "
              + "\n  ".join(lines), markup=False, highlight=False)


def _render(run_dir: Path, formats: tuple[str, ...] = ("png",), after_sweep: bool = False,
            workers=None) -> list[Path]:
    """Draw the figures (in ``workers``, a :class:`hevar.views.render.FigureWorkers`, when given); a
    failure or Ctrl-C while drawing says what is kept and how to draw them again."""
    if workers is None:
        from hevar.views import figures

    again = (f"The results are complete in {run_dir}; draw the figures with: hevar plot {shlex.quote(str(run_dir))}"
             if after_sweep else f"Draw them again with: hevar plot {shlex.quote(str(run_dir))}")
    try:
        store.check_plots_dir(run_dir)
        paths = workers.render(run_dir, formats) if workers is not None else figures.render_run(run_dir, formats)
    except KeyboardInterrupt:
        drawn = sorted(p.name for p in (Path(run_dir) / "plots").glob("*.*")) if Path(run_dir).is_dir() else []
        _fail(f"Interrupted while drawing the figures ({len(drawn)} in {Path(run_dir) / 'plots'}, each one whole). "
              f"{again}", EXIT_INTERRUPTED)
    except (UsageError, Fault) as exc:
        if not after_sweep:
            raise
        raise exc.amended(again + " once that is fixed.") from None
    for p in paths:
        out.print(f"  figure: {p}", markup=False, highlight=False)
    return paths


class _PlainUsage(typer.core.TyperCommand):
    """Typer's command, with a required argument written by its metavar alone: `hevar plot RUN_DIR`."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [piece.strip("{}") for piece in super().collect_usage_pieces(ctx)]


@app.command(cls=_PlainUsage)
@user_errors
def plot(run_dir: Path = typer.Argument(..., metavar="RUN_DIR", hidden=True),
         fmt: Optional[str] = typer.Option(None, "--format", metavar="LIST",
             help="File format(s), comma list: png, svg, pdf. [default: png]")) -> None:
    """Render the figures of RUN_DIR, a run folder written by `hevar sweep`, from its CSVs alone into
    RUN_DIR/plots/ (q, q_tilde, grad_norm, stability, and depth_map, phase, fan_modes, seed_spread,
    thm11 where the run has what they show)."""
    from hevar.views.formats import parse_formats

    _render(run_dir, parse_formats(fmt))


@app.command("theory")
@user_errors
def theory_command(
    act: str = typer.Option(..., "--act", metavar="ACT",
        help="One activation: relu, tanh, leaky_relu:SLOPE, … (see `hevar activations`)."),
    sigma_b2: Optional[str] = typer.Option(None, "--sigma-b2", metavar="FLOAT", help="Bias variance σ_b² (raw). [default: 0]"),
    sigma_w2: Optional[str] = typer.Option(None, "--sigma-w2", metavar="FLOAT",
        help="Weight variance in units of 1/N (σ_w²·N) for the phase and per-layer predictions. [default: the critical value]"),
    depth: Optional[str] = typer.Option(None, "--depth", metavar="INT",
        help=f"Layers L to predict qˡ and q̃ˡ for; the table shows at most {MAX_LAYER_ROWS}, --json all. [default: 10]"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (nan → null, ±inf → \"inf\"/\"-inf\")."),
    critical_line: bool = typer.Option(False, "--critical-line",
        help="Print the whole critical line χ₁ = 1 instead: every fixed point with χ₁ = 1, stable or unstable, at "
        "each σ_b² of --sigma-b2 (a comma list here) [default: 0, 0.05, …, 1]."),
    out_path: Optional[Path] = typer.Option(None, "--out", metavar="FILE",
        help="With --critical-line: write the rows to FILE as CSV instead of printing them."),
    arch: Optional[str] = typer.Option(None, "--arch", metavar="SPEC",
        help="A stack of blocks as `hevar sweep --arch` takes it (resmlp, preln-resmlp, …): its per-block factors and "
        "the branch scale α that keeps q̃¹/q̃ᴸ within a factor 2. [default: mlp, the report above]"),
    branch_scale: Optional[str] = typer.Option(None, "--branch-scale", metavar="ALPHA",
        help="Residual branch scale α for --arch (a number or an expression in L). [default: 1]"),
    q_in: Optional[str] = typer.Option(None, "--q-in", metavar="FLOAT",
        help="The input's second moment E[x²]; it decides the fixed point reached. [default: 1]"),
    input_preactivation: bool = typer.Option(False, "--input-preactivation",
        help="Treat the input as a pre-activation: q¹ = σ_w²N·V(q_in) + σ_b² (Poole et al.'s convention) instead "
        "of σ_w²N·q_in + σ_b²."),
) -> None:
    """Mean-field theory for one activation: the critical σ_w²·N (χ₁ = 1) and how it arises,
    q*, χ₁, the depth scale ξ and the phase at σ_w²·N, and per-layer qˡ, q̃ˡ (q̃ᴸ = 1).
    With --arch, the same for a stack of blocks."""
    import json

    from hevar.meanfield import theory
    from hevar.meanfield.activations import parse_activation

    activation = parse_activation(config_mod.parse_acts(act, one="theory")[0])
    if critical_line or out_path is not None:
        _critical_line(activation, sigma_b2, out_path, as_json)
        return
    if arch is not None or branch_scale is not None:
        from hevar.blocks import network

        if network.parse_arch(arch or "mlp").text != "mlp" or branch_scale is not None:
            _theory_stack(activation, arch or "mlp", branch_scale, sigma_w2, sigma_b2, depth, as_json)
            return
    report = theory.report(activation, sigma_b2=config_mod.parse_sigma_b2(sigma_b2 if sigma_b2 is not None else 0),
                           sigma_w2_n=None if sigma_w2 is None else config_mod.parse_sigma_w2(sigma_w2),
                           depth=config_mod.parse_depth(depth if depth is not None else 10),
                           q_in=_parse_q_in(q_in), input_preactivation=input_preactivation)
    if as_json:
        out.print(json.dumps(store.json_safe(report), ensure_ascii=False), markup=False, highlight=False, soft_wrap=True)
        return
    convention = "" if report["q_in"] == 1 and report["input"] == "not activated" else \
        f", q_in = {report['q_in']:g} ({report['input']})"
    head = Table(title=f"{report['activation']}, σ_b² = {report['sigma_b2']:g}{convention}", title_justify="left",
                 show_header=False)
    head.add_column("", justify="left")
    head.add_column("", justify="right")
    head.add_row("critical σ_w²·N", _num(report["critical_sigma_w2_n"]))
    head.add_row("gain √(σ_w²·N)", _num(report["gain"]))
    head.add_row("how", report["critical_kind"])
    head.add_row("q* at critical", _num(report["critical_q_star"]))
    if report["sigma_w2_n"] is not None:
        head.add_row("σ_w²·N evaluated", _num(report["sigma_w2_n"]))
        head.add_row(f"q* reached from q_in = {report['q_in']:g}", _num(report["q_star"]))
        head.add_row("χ₁", _num(report["chi1"]))
        head.add_row("ξ = -1/ln χ₁ (layers)", _num(report["xi"]))
        head.add_row("phase", report["phase"])
        head.add_row("c* (fixed correlation)", _num(report["c_star"]))
        head.add_row("χ_c at c*", _num(report["chi_c"]))
        head.add_row("ξ_c = -1/ln χ_c (layers)", _num(report["xi_c"]))
        head.add_row("ξ_q (layers)", _num(report["xi_q"]))
        if report["c_note"]:
            head.add_row("c note", report["c_note"])
        head.add_row("fixed points", ", ".join(
            f"{_num(p['q'])} ({'saddle-node' if p['saddle_node'] else 'stable' if p['stable'] else 'unstable'})"
            for p in report["fixed_points"]) or "—")
    for p in report["critical_points"]:
        head.add_row("χ₁ = 1 at a fixed point", f"σ_w²·N = {p['sigma_w2_n']:.6g}, q* = {p['q_star']:.4g} "
                     f"({'stable' if p['stable'] else 'unstable'}, slope {p['slope']:.4g})")
    for p in report["doubly_critical"]:
        head.add_row("doubly critical (χ₁ = slope = 1)", f"σ_w²·N = {p['sigma_w2_n']:.6g}, σ_b² = {p['sigma_b2']:.6g}, "
                     f"q* = {p['q_star']:.4g}")
    for p in report["saddle_nodes"]:
        head.add_row("saddle-node at σ_w²·N", f"{p['sigma_w2_n']:.7g} (q = {p['q']:.4g}; pair "
                     f"{'below' if p['pair_below'] else 'above'})")
    out.print(head)
    out.print(report["critical_label"], markup=False, highlight=False)
    for warning in report["warnings"]:
        out.print(f"warning: {warning}", markup=False, highlight=False)
    crit_table = Table(title=f"three gain criteria (verdict: q̃¹/q̃ᴸ over L = {report['depth']} from q_in = 1)",
                       title_justify="left")
    for col in ("criterion", "σ_w²·N", "χ₁", "q*", "E[φ]", "rms φ", "verdict"):
        crit_table.add_column(col, justify="left" if col in ("criterion", "verdict") else "right", no_wrap=True)
    short = {"second_moment": "second moment", "variance": "variance γ²", "critical": "critical"}
    g = lambda x: "—" if x is None or not math.isfinite(x) else f"{x:.4g}"  # noqa: E731
    for c in report["criteria"]:
        stab = {True: " (stable q*)", False: " (unstable q*)"}.get(c["fixed_point_stable"], "")
        crit_table.add_row(short.get(c["key"], c["key"]) + stab, g(c["sigma_w2_n"]), g(c["chi1"]), g(c["post_q_star"]),
                           g(c["post_mean"]), g(c["post_rms"]), c["verdict"] or "—")
    crit_table.caption = "E[φ], rms φ = √E[φ²]: post-activation statistics at the q* reached (--json: Var φ too)"
    crit_table.caption_justify = "left"
    out.print(crit_table)
    for c in report["criteria"]:
        out.print(f"  {c['label']}: {c['note']}", markup=False, highlight=False)
    if not report["layers"]:
        out.print("No critical σ_w²·N: pass --sigma-w2 FLOAT for per-layer predictions.", markup=False, highlight=False)
        return
    rows = report["layers"]
    shown = rows if len(rows) <= MAX_LAYER_ROWS else rows[:MAX_LAYER_ROWS // 2] + [None] + rows[-(MAX_LAYER_ROWS // 2):]
    layers = Table(title=f"per layer at σ_w²·N = {_num(report['sigma_w2_n'])}", title_justify="left",
                   caption=f"{len(rows) - MAX_LAYER_ROWS} layers left out (…); --json has all" if None in shown else None,
                   caption_justify="left")
    for col in ("layer", "qˡ", "q̃ˡ (q̃ᴸ = 1)", "χˡ = σ_w²·N·G(qˡ)"):
        layers.add_column(col, justify="right", no_wrap=True)
    for row in shown:
        if row is None:
            layers.add_row("…", "…", "…", "…")
        else:
            layers.add_row(str(row["layer"]), _num(row["q"]), _num(row["q_tilde"]), _num(row["chi"]))
    out.print(layers)


def _parse_q_in(raw: Optional[str]) -> float:
    if raw is None:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"The 'q-in' parameter must be a float in the range (0, inf). Got {raw!r} instead.",
                         param="q-in")
    return value


def _critical_line(activation, sigma_b2: Optional[str], out_path: Optional[Path], as_json: bool) -> None:
    """`hevar theory --critical-line`: the rows of critical.critical_line_rows, printed or written."""
    import json

    from hevar.meanfield import critical

    values = (critical.DEFAULT_LINE_SIGMA_B2 if sigma_b2 is None
              else tuple(config_mod.parse_sigma_b2(v) for v in str(sigma_b2).split(",") if v.strip()))
    rows = critical.critical_line_rows(activation, values)
    if out_path is not None:
        store.write_csv(out_path, critical.CRITICAL_LINE_COLUMNS, rows)
        out.print(f"{len(rows)} rows: {out_path}", markup=False, highlight=False)
        return
    if as_json:
        out.print(json.dumps(store.json_safe(rows), ensure_ascii=False), markup=False, highlight=False, soft_wrap=True)
        return
    table = Table(title=f"{activation.name}: the critical line χ₁ = 1 (every fixed point, stable or not)",
                  title_justify="left", caption="slope: the q-map's s·V'(q*); < 1 stable (a network can settle there), "
                  "> 1 unstable (q¹ is pushed away). q*->0, q*->inf: the line's ends (limits).", caption_justify="left")
    for col in ("σ_b²", "σ_w²·N", "gain", "q*", "slope", "branch"):
        table.add_column(col, justify="left" if col == "branch" else "right", no_wrap=True)
    for r in rows:
        table.add_row(f"{r['sigma_b2']:g}", _num(r["sigma_w2_n"]), _num(r["gain"]), _num(r["q_star"]), _num(r["slope"]),
                      r["branch"])
    out.print(table)


def _theory_stack(activation, arch: str, branch_scale: str | None, sigma_w2, sigma_b2, depth, as_json: bool) -> None:
    """`hevar theory --arch`: the composed maps of a stack (hevar.blocks.network.stack_report)."""
    import json

    from hevar.blocks import network
    from hevar.meanfield import theory

    L = config_mod.parse_depth(depth if depth is not None else 10)
    cfg = config_mod.build_config({"arch": arch, "branch_scale": branch_scale, "depth": str(L)})  # validates both
    b = config_mod.parse_sigma_b2(sigma_b2 if sigma_b2 is not None else 0)
    s = config_mod.parse_sigma_w2(sigma_w2) if sigma_w2 is not None else theory.critical_sigma_w2_n(activation, b).sigma_w2_n
    if not math.isfinite(s):
        raise UsageError("The 'sigma-w2' parameter must be given for this activation (it has no critical σ_w²·N to "
                         "default to). Got nothing instead.", param="sigma-w2")
    report = network.stack_report(cfg.arch, activation, L, s, b, cfg.branch_scale)
    if as_json:
        out.print(json.dumps(store.json_safe(report), ensure_ascii=False), markup=False, highlight=False, soft_wrap=True)
        return
    head = Table(title=f"{report['activation']}, --arch {report['arch']}", title_justify="left", show_header=False)
    head.add_column("", justify="left")
    head.add_column("", justify="right")
    head.add_row("σ_w²·N, σ_b², L", f"{_num(s)}, {b:g}, {L}")
    if report["branch_scale"] is not None:
        head.add_row("branch scale α", _num(report["branch_scale"]))
    head.add_row("log₁₀ qᴸ/q¹", _num(report["log10_q_ratio"]))
    head.add_row("log₁₀ q̃¹/q̃ᴸ", _num(report["log10_q_tilde_ratio"]))
    if report["branch_scale_for_factor"] is not None:
        head.add_row(f"α with q̃¹/q̃ᴸ = {report['factor']:g}", _num(report["branch_scale_for_factor"]))
    out.print(head)
    rows = report["layers"]
    shown = rows if len(rows) <= MAX_LAYER_ROWS else rows[:MAX_LAYER_ROWS // 2] + [None] + rows[-(MAX_LAYER_ROWS // 2):]
    layers = Table(title="per block (q̃ᴸ = 1)", title_justify="left")
    for col in ("layer", "qˡ", "q̃ˡ", "qˡ/qˡ⁻¹", "q̃ˡ⁻¹/q̃ˡ"):
        layers.add_column(col, justify="right", no_wrap=True)
    for row in shown:
        if row is None:
            layers.add_row(*["…"] * 5)
        else:
            layers.add_row(str(row["layer"]), _num(row["q"]), _num(row["q_tilde"]),
                           "—" if row["forward_factor"] is None else _num(row["forward_factor"]),
                           "—" if row["backward_factor"] is None else _num(row["backward_factor"]))
    out.print(layers)


@app.command("gains")
@user_errors
def gains_command(
    act: Optional[str] = typer.Option(None, "--act", metavar="LIST",
        help="Activation(s), comma-separated (see `hevar activations`). [default: every built-in one]"),
    sigma_b2: Optional[str] = typer.Option(None, "--sigma-b2", metavar="FLOAT", help="Bias variance σ_b² (raw). [default: 0]"),
    depth: Optional[str] = typer.Option(None, "--depth", metavar="INT",
        help="Layers L over which the gradient factor q̃¹/q̃ᴸ is predicted. [default: 50]"),
    q_in: Optional[str] = typer.Option(None, "--q-in", metavar="FLOAT",
        help="The input's second moment E[x²]. [default: 1]"),
    input_preactivation: bool = typer.Option(False, "--input-preactivation",
        help="Treat the input as a pre-activation: q¹ = σ_w²N·E[φ(u)²] + σ_b² with u ~ N(0, q_in) (Poole et al. "
        "2016 and most reference code), instead of q¹ = σ_w²N·q_in + σ_b²."),
    as_json: bool = typer.Option(False, "--json",
        help="Print one JSON object: σ_b², L, q_in and the input convention, the stable band and verdict rule, and per activation its critical "
        "σ_w²·N and, for each framework initialisation, σ_w²·N, χ₁, q*, the gradient factor, the verdict and the "
        "`hevar sweep` command that measures it (nan → null, ±inf → \"inf\"/\"-inf\")."),
    arch: Optional[str] = typer.Option(None, "--arch", metavar="SPEC",
        help="A stack of blocks as `hevar sweep --arch` takes it (resmlp, preln-resmlp, …): instead of the "
        "framework table, the branch scale α that keeps q̃¹/q̃ᴸ within a factor 2 at --depth and --sigma-w2, and "
        "the per-block forward/backward factors at that α. [default: mlp, the framework table]"),
    sigma_w2: Optional[str] = typer.Option(None, "--sigma-w2", metavar="FLOAT",
        help="With --arch: σ_w²·N of every block. [default: the activation's critical value, 2 for relu]"),
    branch_scale: Optional[str] = typer.Option(None, "--branch-scale", metavar="ALPHA",
        help="With --arch: evaluate the per-block factors at this α instead of the α found."),
) -> None:
    """What PyTorch's and Keras' default initialisations mean at constant width: σ_w²·N, the
    theory's χ₁ there, the predicted gradient factor q̃¹/q̃ᴸ over the depth and a verdict, next to
    hevar's critical value; with the `hevar sweep` that measures each. With --arch, the branch
    scale a stack of blocks needs (hevar.blocks.gains)."""
    import json

    from hevar.meanfield import gains
    from hevar.meanfield.activations import parse_activation

    if arch is not None or sigma_w2 is not None or branch_scale is not None:
        _gains_stack(act, arch, sigma_w2, sigma_b2, depth, branch_scale, as_json)
        return
    acts = None if act is None else [parse_activation(a) for a in config_mod.parse_acts(act)]
    table = gains.gains_table(acts, sigma_b2=config_mod.parse_sigma_b2(sigma_b2 if sigma_b2 is not None else 0),
                              depth=config_mod.parse_depth(depth if depth is not None else gains.DEFAULT_DEPTH),
                              q_in=_parse_q_in(q_in), input_preactivation=input_preactivation)
    if as_json:
        out.print(json.dumps(store.json_safe(gains.to_dict(table)), ensure_ascii=False), markup=False, highlight=False,
                  soft_wrap=True)
        return
    from rich import box

    lo, hi = gains.STABLE_BAND
    grid = Table(title=f"Framework initialisations at constant width N, σ_b² = {table.sigma_b2:g}: "
                 f"gradient factor over L = {table.depth} layers", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col, justify in (("activation", "left"), ("σ_w²·N", "right"), ("initialisation", "left"), ("χ₁", "right"),
                         ("q̃¹/q̃ᴸ", "right"), ("verdict", "left")):
        grid.add_column(col, justify=justify, no_wrap=col != "initialisation")
    for entry in table.activations:
        for k, group in enumerate(entry.by_value()):
            row = group[0]
            names: dict[str, list[str]] = {}
            for r in group:
                names.setdefault({"pytorch": "torch"}.get(r.framework, r.framework), []).append(r.short)
            label = " · ".join(f"{fw} {', '.join(shorts)}" for fw, shorts in names.items())
            grid.add_row(entry.activation if k == 0 else "", f"{row.sigma_w2_n:.4g}", label, _fmt(row.chi1, 3),
                         f"{row.factor:.2g}" if math.isfinite(row.factor) else _num(row.factor), row.verdict,
                         end_section=k == len(entry.by_value()) - 1)
    start = f"input variance {table.q_in:g}" + (", a pre-activation" if table.input_preactivation else "")
    grid.caption = (f"verdict: q̃¹/q̃ᴸ (mean-field trajectory from {start}) < {lo:g} vanishing, "
                    f"[{lo:g}, {hi:g}] stable, > {hi:g} exploding. kaiming/xavier: PyTorch's defaults (gain √2 / 1); "
                    "(gain): with calculate_gain(act); keras he/lecun/glorot: _normal and _uniform; "
                    "critical: hevar's χ₁ = 1. torch Linear also draws a bias with σ_b² = 1/(3N).")
    grid.caption_justify = "left"
    out.print(grid)
    for entry in table.activations:
        if entry.note:
            out.print(f"{entry.activation}: {entry.note}.", markup=False, highlight=False)
    out.print("Measure them (compare log10_q_tilde_ratio with log10_q_tilde_ratio_theory in summary.csv):",
              markup=False, highlight=False)
    for entry in table.activations:
        out.print(f"  {entry.command}", markup=False, highlight=False, soft_wrap=True)


def _gains_stack(act: Optional[str], arch: Optional[str], sigma_w2: Optional[str], sigma_b2: Optional[str],
                 depth: Optional[str], branch_scale: Optional[str], as_json: bool) -> None:
    """`hevar gains --arch`: α keeping q̃¹/q̃ᴸ within a factor 2, and the per-block factors."""
    import json

    from hevar.blocks import gains as block_gains, network
    from hevar.meanfield import gains
    from hevar.meanfield.activations import parse_activation

    if arch is None:
        raise UsageError(f"The 'arch' parameter must be given with --sigma-w2 or --branch-scale ({network.ARCH_HELP}). "
                         "Got nothing instead.", param="arch")
    if network.parse_arch(arch).text == "mlp":
        raise UsageError("The 'arch' parameter must name a stack of blocks other than the plain mlp (whose table is "
                         f"`hevar gains` without --arch): {network.ARCH_HELP}. Got '{arch}' instead.", param="arch")
    L = config_mod.parse_depth(depth if depth is not None else gains.DEFAULT_DEPTH)
    cfg = config_mod.build_config({"arch": arch, "depth": str(L),
                                   **({"branch_scale": branch_scale} if branch_scale is not None else {})})
    acts = [parse_activation(a) for a in config_mod.parse_acts(act if act is not None else "relu")]
    b = config_mod.parse_sigma_b2(sigma_b2 if sigma_b2 is not None else 0)
    s = config_mod.parse_sigma_w2(sigma_w2) if sigma_w2 is not None else None
    for a in acts:
        if s is None and not math.isfinite(_critical_of(a, b)):
            raise UsageError(f"The 'sigma-w2' parameter must be given for {a.name} (it has no critical σ_w²·N to "
                             "default to). Got nothing instead.", param="sigma-w2")
    result = block_gains.stack_gains(cfg.arch, acts, L, s, b, cfg.branch_scale if branch_scale is not None else None)
    if as_json:
        out.print(json.dumps(store.json_safe(result), ensure_ascii=False), markup=False, highlight=False,
                  soft_wrap=True)
        return
    for rep in result["activations"]:
        star = rep["branch_scale_for_factor"]
        head = Table(title=f"{rep['activation']}, --arch {rep['arch']}, L = {L}", title_justify="left",
                     show_header=False)
        head.add_column("", justify="left")
        head.add_column("", justify="right")
        head.add_row("σ_w²·N, σ_b²", f"{_num(rep['sigma_w2_n'])}, {b:g}")
        if star is not None:
            head.add_row(f"α with q̃¹/q̃ᴸ = {rep['factor']:g}",
                         "any α (inf): the ratio stays below it" if star == math.inf else _num(star))
        if rep["alpha_closed_form"] is not None:
            head.add_row("closed form √(2(2^(1/(L−1))−1)/σ_w²N)", _num(rep["alpha_closed_form"]))
        if rep["branch_scale"] is not None:
            head.add_row("per-block factors at α", _num(rep["branch_scale"]))
        head.add_row("log₁₀ qᴸ/q¹ there", _num(rep["log10_q_ratio"]))
        head.add_row("log₁₀ q̃¹/q̃ᴸ there", _num(rep["log10_q_tilde_ratio"]))
        out.print(head)
        rows = rep["layers"]
        shown = rows if len(rows) <= MAX_LAYER_ROWS else rows[:MAX_LAYER_ROWS // 2] + [None] + rows[-(MAX_LAYER_ROWS // 2):]
        layers = Table(title="per block (q̃ᴸ = 1)", title_justify="left",
                       caption=f"{len(rows) - MAX_LAYER_ROWS} blocks left out (…); --json has all"
                       if None in shown else None, caption_justify="left")
        for col in ("block", "qˡ", "q̃ˡ", "forward qˡ/qˡ⁻¹", "backward q̃ˡ⁻¹/q̃ˡ"):
            layers.add_column(col, justify="right", no_wrap=True)
        for row in shown:
            if row is None:
                layers.add_row(*["…"] * 5)
            else:
                layers.add_row(str(row["layer"]), _num(row["q"]), _num(row["q_tilde"]),
                               "—" if row["forward_factor"] is None else _num(row["forward_factor"]),
                               "—" if row["backward_factor"] is None else _num(row["backward_factor"]))
        out.print(layers)
    if any(r["branch_scale_for_factor"] not in (None, math.inf) for r in result["activations"]):
        r = next(r for r in result["activations"] if r["branch_scale_for_factor"] not in (None, math.inf))
        out.print(f"Measure it: hevar sweep --act {r['activation']} --arch {result['arch']} --depth {L} "
                  f"--sigma-w2 {_num(r['sigma_w2_n'])} --branch-scale {_num(r['branch_scale_for_factor'])}",
                  markup=False, highlight=False, soft_wrap=True)


def _critical_of(act, sigma_b2: float) -> float:
    from hevar.meanfield import theory

    return theory.critical_sigma_w2_n(act, sigma_b2).sigma_w2_n


@app.command("activations")
@user_errors
def activations_command() -> None:
    """List the activations --act accepts, their parameters, and what the theory knows about them."""
    from hevar.meanfield.activations import list_activations

    table = Table(title="Activations (spec: NAME or NAME:PARAM)", title_justify="left")
    for col in ("name", "parameters", "closed-form V, G", "homogeneous", "summary"):
        table.add_column(col, justify="left", overflow="fold")
    for row in list_activations():
        name = row["name"] + (f" (alias {', '.join(row['aliases'])})" if row["aliases"] else "")
        params = ", ".join(f"{p['name']}={p['default']:g}" for p in row["params"]) or "—"
        table.add_row(name, params, "yes" if row["closed_form"] else "no (quadrature)",
                      "yes" if row["homogeneous"] else "no", row["summary"])
    out.print(table)


@app.command("train")
@user_errors
def train_command(
    act: Optional[str] = typer.Option(None, "--act", metavar="LIST", help="Activation(s), comma list. [default: relu]"),
    depth: Optional[str] = typer.Option(None, "--depth", metavar="LIST", help="Number of layers L, comma list. [default: 30]"),
    width: Optional[str] = typer.Option(None, "--width", metavar="LIST",
        help="Units per layer N, comma list; also the input width N_0 the data is mapped to. [default: 64]"),
    sigma_w2: Optional[str] = typer.Option(None, "--sigma-w2", metavar="GRID",
        help="Weight variance in units of 1/N: comma list or start:stop:step. [default: 1,2 (Xavier, He)]"),
    sigma_b2: Optional[str] = typer.Option(None, "--sigma-b2", metavar="GRID", help="Bias variance σ_b² (raw). [default: 0]"),
    seeds: Optional[str] = typer.Option(None, "--seeds", metavar="INT", help="Networks per configuration. [default: 3]"),
    seed: Optional[str] = typer.Option(None, "--seed", metavar="INT", help="Base random seed (as hevar sweep's). [default: 0]"),
    dist: Optional[str] = typer.Option(None, "--dist", metavar="LIST", help="Weight distribution(s), as hevar sweep's. [default: normal]"),
    arch: Optional[str] = typer.Option(None, "--arch", metavar="SPEC", help="Architecture, as hevar sweep's. [default: mlp]"),
    branch_scale: Optional[str] = typer.Option(None, "--branch-scale", metavar="ALPHA", help="Residual branch scale α. [default: 1]"),
    steps: Optional[str] = typer.Option(None, "--steps", metavar="INT", help="SGD steps. [default: 1000]"),
    lr: Optional[str] = typer.Option(None, "--lr", metavar="FLOAT", help="Constant learning rate. [default: 0.01]"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", metavar="NAME", help="sgd, momentum (μ = --momentum) or adam (β₁ 0.9, β₂ 0.999, ε 1e-8). [default: sgd]"),
    momentum: Optional[str] = typer.Option(None, "--momentum", metavar="FLOAT", help="Momentum μ in [0, 1). [default: 0.9]"),
    batch: Optional[str] = typer.Option(None, "--batch", metavar="INT", help="Minibatch size. [default: 64]"),
    data: Optional[str] = typer.Option(None, "--data", metavar="NAME",
        help="digits (scikit-learn's 8×8 images, 10 classes) or teacher (a random tanh teacher). [default: digits]"),
    eval_every: Optional[str] = typer.Option(None, "--eval-every", metavar="INT", help="Evaluate every INT steps. [default: 100]"),
    out_dir: Optional[Path] = typer.Option(None, "--out", metavar="RUN_DIR", help="Run folder. [default: outputs/TIME-train]"),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE", help="TOML preset (configs/he2015_training.toml)."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="RUN_DIR", help="Finish an interrupted training run in RUN_DIR."),
    jobs: Optional[str] = typer.Option(None, "--jobs", metavar="INT",
        help="Worker processes (one BLAS thread each); 0 = one per core. Results do not depend on it. [default: 1]"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", metavar="ADDRESS",
        help="Run the networks on a Dask cluster, e.g. tcp://host:8786 (pip install 'hevar[dask]')."),
    plot: Optional[bool] = typer.Option(None, "--plot/--no-plot",
        help="Draw plots/training.png (and trainability.png with ≥ 2 depths and ≥ 2 σ_w²·N). [default: plot]"),
    fmt: Optional[str] = typer.Option(None, "--format", metavar="LIST", help="Figure format(s): png, svg, pdf. [default: png]"),
) -> None:
    """Train the sweep's networks (same architecture, initialisation and seeds) with SGD, momentum or
    Adam and a softmax readout; write training.csv, training_grads.csv (‖∂loss/∂Wˡ‖² at step 0),
    training_summary.csv and plots/ to a run folder. Each network is saved as it finishes: an
    interrupted run is finished with --resume, with the same CSVs."""
    from hevar.experiments import train as train_mod, training_run
    from hevar.views.formats import parse_formats

    formats = parse_formats(fmt)
    net_flags = dict(act=act, depth=depth, width=width, sigma_w2=sigma_w2, sigma_b2=sigma_b2, seeds=seeds, seed=seed,
                     dist=dist, arch=arch, branch_scale=branch_scale)
    given = dict(steps=steps, lr=lr, optimizer=optimizer, momentum=momentum, batch=batch, eval_every=eval_every)
    opts = train_mod.resolve_options(net_flags, given, data, config)
    executor = executors.open_executor(None if jobs is None else config_mod.parse_jobs(jobs), scheduler)
    if resume is not None and out_dir is not None and Path(resume).resolve() != Path(out_dir).resolve():
        raise UsageError(f"The 'out' parameter cannot differ from --resume. Got '{out_dir}' and '{resume}'; give one folder.")
    run_dir = resume or out_dir or (Path(opts.preset_out) if opts.preset_out else None)
    cfg, settings, data_name, manifest = training_run.reconcile(
        opts.cfg, opts.settings, opts.data_name, run_dir, resume=resume is not None,
        given_network=opts.given_network, given_training=opts.given_training)
    if run_dir is None:
        run_dir = store.default_run_dir(Path("outputs"), "train", runner.now())
    do_plot = plot if plot is not None else (opts.preset_plot if opts.preset_plot is not None else True)
    progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False)
    bar = []

    def on_start(total: int) -> None:
        progress.start()
        bar.append(progress.add_task("", total=total))

    def on_done(spec, hist, cached) -> None:
        progress.update(bar[0], advance=1, description=f"σ_w²·N={spec.sigma_w2_n:g} L={spec.depth} seed {spec.seed_index}: "
                        f"test acc {hist.test_acc[-1] if hist.test_acc else float('nan'):.3f}"
                        + (" (done before)" if cached else ""))

    try:
        try:
            outcome = training_run.run(cfg, settings, data_name, run_dir, manifest=manifest, executor=executor,
                                       on_start=on_start, on_progress=on_done,
                                       option="resume" if resume is not None else "out")
        finally:
            if bar:
                progress.stop()
    except runner.Interrupted as stop:
        err.print(f"Interrupted: {stop.saved} of {stop.total} networks are saved in {run_dir}. "
                  f"Resume with: hevar train --resume {shlex.quote(str(run_dir))}", markup=False, highlight=False)
        raise typer.Exit(130) from None
    summary = outcome.tables["training_summary"]
    _print_training(summary, training_run.finals(outcome.tables["training"]), settings.steps,
                    outcome.manifest.get("train_seconds", math.nan))
    for file, problem in outcome.damaged:
        err.print(f"Note: {Path(run_dir) / file} was damaged ({problem}); it was computed again.", markup=False,
                  highlight=False, soft_wrap=True)
    if do_plot:
        _render(run_dir, formats, after_sweep=True)
    out.print(f"Run folder: {run_dir}", markup=False, highlight=False)


def _print_training(rows: list[dict], seeds: dict, steps: int, seconds: float) -> None:
    """Final test accuracy per configuration: the keys that vary as columns, the others in the title."""
    from rich import box

    keys = (("activation", "activation"), ("arch", "arch"), ("L", "depth"), ("N", "width"), ("σ_b²", "sigma_b2"),
            ("dist", "dist"))
    varying = [(name, k) for name, k in keys if len({r[k] for r in rows}) > 1]
    fixed = [f"{name} = {rows[0][k]:g}" if isinstance(rows[0][k], float) else f"{name} = {rows[0][k]}"
             for name, k in keys if (name, k) not in varying and rows]
    out.print(f"Final test accuracy after {steps} steps ({', '.join(fixed)}; chance "
              f"{_fmt(rows[0]['chance'] if rows else math.nan)}; {seconds:.1f} s of training, summed over networks)", markup=False,
              highlight=False)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for name, _ in varying:
        table.add_column(name, justify="left", no_wrap=True)
    for col in ("σ_w²·N", "test acc", "per seed", "train loss", "status"):
        table.add_column(col, justify="left" if col in ("per seed", "status") else "right", no_wrap=col != "per seed")
    for r in rows:
        per_seed = seeds.get(tuple(r[k] for k in ("activation", "arch", "depth", "width", "sigma_w2_n", "sigma_b2",
                                                     "dist")), [])
        table.add_row(*(f"{r[k]:g}" if isinstance(r[k], float) else str(r[k]) for _, k in varying),
                      f"{r['sigma_w2_n']:g}", _fmt(r["test_acc"]), " ".join(_fmt(a, 2) for a in per_seed),
                      _fmt(r["train_loss"]), r["status"])
    out.print(table)


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.6g}"


@app.callback(invoke_without_command=True)
def _main(version: bool = typer.Option(False, "--version", help="Print the version and exit."),
          debug: bool = typer.Option(False, "--debug", help=f"Show the traceback of a fault or bug (or set {DEBUG_ENV}=1); "
                                     "also accepted after the command.")) -> None:
    global _debug_flag
    _debug_flag = debug
    if version:
        out.print(f"hevar {__version__}")
        raise typer.Exit()


def main(argv: list[str] | None = None) -> None:  # console-script entry point
    """``hevar``: ``--debug`` is taken anywhere before a ``--``, not only before the command."""
    args = list(sys.argv[1:] if argv is None else argv)
    head = args[:args.index("--")] if "--" in args else args
    if "--debug" in head[1:]:  # after the command: move it before, where the app's callback takes it
        args = ["--debug"] + [a for i, a in enumerate(args) if not (a == "--debug" and i < len(head))]
    app(args=args)
