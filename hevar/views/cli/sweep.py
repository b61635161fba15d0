"""`hevar sweep`: the sweep's plan, progress bar, summary table (χ̂ beside its theory) and
crossings, and its figures at the end."""

from __future__ import annotations

import contextlib
import math
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hevar.errors import UsageError
from hevar.views.cli import common

init = common.lazy("hevar.engine.init")
executors = common.lazy("hevar.experiments.executors")
resources = common.lazy("hevar.experiments.resources")
runner = common.lazy("hevar.experiments.runner")
sweep_mod = common.lazy("hevar.experiments.sweep")
thread_policy = common.lazy("hevar.experiments.threads")
config_mod = common.config_mod
store = common.store


@common.user_errors
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
    if input_corr is not None and not input_corr.strip():  # likewise an empty --input-corr (a preset's [] is off)
        config_mod.parse_grid("input-corr", input_corr, float, -1.0, 1.0, allow_range=True)
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
        common.out.print("\n".join(["Plan (--dry-run; nothing was run or written):", *(f"  {line}" for line in plan.lines()),
                             f"  threads: {policy.reason}"]),
                  markup=False, highlight=False, soft_wrap=True)
    resources.check_memory(cfg, plan=plan)
    if dry_run:
        return
    if plan.seconds > resources.ESTIMATE_ABOVE_S:
        common.err.print(f"Estimated {plan.lines()[-1]} for {plan.tasks} tasks; Ctrl-C is safe (finished tasks are kept; "
                  "resume with --resume).", markup=False, highlight=False, soft_wrap=True)
    if run_dir is None:
        run_dir = store.default_run_dir(Path("outputs"), "+".join(cfg.act).replace(":", "_"), runner.now())
    do_plot = plot if plot is not None else bool(preset.get("plot", True))
    progress = Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=common.err, transient=False)
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
        common.err.print(f"Interrupted: {stop.saved} of {stop.total} tasks are saved in {run_dir}. "
                  f"Resume with: hevar sweep --resume {shlex.quote(str(run_dir))}", markup=False, highlight=False)
        raise typer.Exit(130) from None
    first_c = {"input_corr": cfg.input_corr[0]} if cfg.input_corr else {}  # χ̂ repeats per c⁰: print it once
    _print_summary([r for r in outcome.tables["summary"] if all(r.get(k) == v for k, v in first_c.items())],
                   outcome.tables.get("crossings", []))
    for file, problem in outcome.damaged:
        common.err.print(f"Note: {Path(run_dir) / file} was damaged ({problem}); it was computed again.", markup=False,
                  highlight=False, soft_wrap=True)
    if do_plot:
        common.render(run_dir, formats, after_sweep=True, workers=workers)
    common.out.print(f"Run folder: {run_dir}", markup=False, highlight=False)


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
    common.out.print("χ̂: measured per-layer growth of q̃ˡ (1 = stable), beside its theory"
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
                      f"{r['sigma_w2_n']:g}" + (" ◀" if at_crit else ""), common.fmt(r["chi_hat"]),
                      common.fmt(2 * r["chi_hat_se"]), common.fmt(r["chi_theory"]),
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
    if Measurement.get(common.out, common.out.options.update_width(10**4), table).minimum > common.out.width:  # many varying keys: one space apart
        table.padding = (0, 0, 0, 0)
    common.out.print(table)
    common.out.print(caption, markup=False, highlight=False)
    if crossing_rows:
        _print_crossings(crossing_rows, varying)


def _print_crossings(rows: list[dict], varying) -> None:
    """Where χ̂ crosses 1, per curve, beside the theory's value."""
    lines = []
    for r in rows:
        where = " ".join(f"{name}={text(r)}" for name, text in varying if name != "σ_w²·N")
        head = f"{r['activation']}{' ' + where if where else ''}"
        theory_part = f"theory (same fit) {common.fmt(r['sigma_w2_n_cross_theory'])}"
        if math.isfinite(r["sigma_w2_n_crit"]):
            theory_part += f", χ₁ = 1 at {common.fmt(r['sigma_w2_n_crit'])}"
        if r["kind"] == "crossing":
            lines.append(f"{head}: {common.fmt(r['sigma_w2_n_cross'])} [{common.fmt(r['sigma_w2_n_cross_lo'])}, "
                         f"{common.fmt(r['sigma_w2_n_cross_hi'])}]; {theory_part}")
        elif r["kind"] == "jump":
            lines.append(f"{head}: jumps across 1 between {r['bracket_lo']:g} and {r['bracket_hi']:g} "
                         f"(no point value); {theory_part}")
        else:
            lines.append(f"{head}: none in the grid; {theory_part}")
    common.out.print("Measured σ_w²·N where χ̂ = 1, with its 95 % interval (seeds and interpolation; crossings.csv):\n  "
              + "\n  ".join(lines), markup=False, highlight=False)
