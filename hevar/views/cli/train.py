"""`hevar train`: the sweep's networks trained, with a progress bar and the final accuracy table."""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hevar.errors import UsageError
from hevar.views.cli import common

executors = common.lazy("hevar.experiments.executors")
runner = common.lazy("hevar.experiments.runner")
config_mod = common.config_mod
store = common.store


@common.user_errors
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
                        TimeElapsedColumn(), TimeRemainingColumn(), console=common.err, transient=False)
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
        common.err.print(f"Interrupted: {stop.saved} of {stop.total} networks are saved in {run_dir}. "
                  f"Resume with: hevar train --resume {shlex.quote(str(run_dir))}", markup=False, highlight=False)
        raise typer.Exit(130) from None
    summary = outcome.tables["training_summary"]
    _print_training(summary, training_run.finals(outcome.tables["training"]), settings.steps,
                    outcome.manifest.get("train_seconds", math.nan))
    for file, problem in outcome.damaged:
        common.err.print(f"Note: {Path(run_dir) / file} was damaged ({problem}); it was computed again.", markup=False,
                  highlight=False, soft_wrap=True)
    if do_plot:
        common.render(run_dir, formats, after_sweep=True)
    common.out.print(f"Run folder: {run_dir}", markup=False, highlight=False)


def _print_training(rows: list[dict], seeds: dict, steps: int, seconds: float) -> None:
    """Final test accuracy per configuration: the keys that vary as columns, the others in the title."""
    from rich import box

    keys = (("activation", "activation"), ("arch", "arch"), ("L", "depth"), ("N", "width"), ("σ_b²", "sigma_b2"),
            ("dist", "dist"))
    varying = [(name, k) for name, k in keys if len({r[k] for r in rows}) > 1]
    fixed = [f"{name} = {rows[0][k]:g}" if isinstance(rows[0][k], float) else f"{name} = {rows[0][k]}"
             for name, k in keys if (name, k) not in varying and rows]
    common.out.print(f"Final test accuracy after {steps} steps ({', '.join(fixed)}; chance "
              f"{common.fmt(rows[0]['chance'] if rows else math.nan)}; {seconds:.1f} s of training, summed over networks)", markup=False,
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
                      f"{r['sigma_w2_n']:g}", common.fmt(r["test_acc"]), " ".join(common.fmt(a, 2) for a in per_seed),
                      common.fmt(r["train_loss"]), r["status"])
    common.out.print(table)
