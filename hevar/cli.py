"""The command line: parse → config → call the library → report. Only this module prints."""

from __future__ import annotations

import functools
import math
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hevar import __version__, store, sweep as sweep_mod
from hevar.config import SweepConfig, build_config, read_preset
from hevar.errors import UsageError

app = typer.Typer(
    help="hevar: how signals and gradients propagate through deep networks at initialization, "
    "and which weight variance keeps them stable (σ_w² = 2/N for ReLU).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)


def user_errors(fn: Callable) -> Callable:
    """Turn a UsageError into one line on stderr and exit code 2 (programming errors still raise)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UsageError as exc:
            err.print(f"Error: {exc}", markup=False, highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@app.command()
@user_errors
def sweep(
    act: Optional[str] = typer.Option(None, "--act", metavar="LIST",
        help="Activation(s), comma-separated: relu, leaky_relu:SLOPE, linear, tanh, … (see `hevar activations`). [default: relu]"),
    depth: Optional[str] = typer.Option(None, "--depth", metavar="LIST", help="Number of layers L, comma list. [default: 50]"),
    width: Optional[str] = typer.Option(None, "--width", metavar="LIST", help="Units per layer N, comma list. [default: 256]"),
    sigma_w2: Optional[str] = typer.Option(None, "--sigma-w2", metavar="GRID",
        help="Weight variance in units of 1/N (2 means σ_w² = 2/N): comma list or start:stop:step. [default: 0.5:4:0.5]"),
    sigma_b2: Optional[str] = typer.Option(None, "--sigma-b2", metavar="GRID", help="Bias variance σ_b² (raw), comma list or start:stop:step. [default: 0]"),
    seeds: Optional[str] = typer.Option(None, "--seeds", metavar="INT", help="Independent networks per configuration. [default: 8]"),
    batch: Optional[str] = typer.Option(None, "--batch", metavar="INT", help="Inputs per network B. [default: 128]"),
    seed: Optional[str] = typer.Option(None, "--seed", metavar="INT", help="Base random seed. [default: 0]"),
    dtype: Optional[str] = typer.Option(None, "--dtype", metavar="DTYPE", help="float32 or float64. [default: float64]"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder. [default: outputs/<time>-<act>]"),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML preset (see configs/); flags given here override it."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="RUN_DIR", help="Finish an interrupted run in RUN_DIR."),
    plot: Optional[bool] = typer.Option(None, "--plot/--no-plot", help="Render the figures at the end. [default: plot]"),
) -> None:
    """Sweep activation × depth × width × σ_w² × σ_b²: measure qˡ, q̃ˡ and gradient norms beside
    the mean-field predictions; write manifest.json, layers.csv, summary.csv and plots/ to a run folder."""
    flags = dict(act=act, depth=depth, width=width, sigma_w2=sigma_w2, sigma_b2=sigma_b2,
                 seeds=seeds, batch=batch, seed=seed, dtype=dtype)
    preset = read_preset(config) if config is not None else {}
    cfg = build_config(flags, preset)
    run_dir = resume or out_dir or (Path(preset["out"]) if "out" in preset else None)
    manifest = store.read_manifest(run_dir) if run_dir is not None and run_dir.exists() else None
    if resume is not None and manifest is None:
        raise UsageError(f"The 'resume' parameter must be a hevar run folder with a manifest.json. Got '{resume}' instead.")
    if manifest is not None:
        previous = build_config(manifest["config"])
        given = {k: v for k, v in {**preset, **flags}.items() if v is not None and k in SweepConfig().to_dict()}
        if given and previous != cfg:
            raise UsageError(
                f"The 'out' parameter names a run folder made with a different configuration ({run_dir}); "
                "use --resume RUN_DIR alone, or a new --out folder."
            )
        cfg = previous
    if run_dir is None:
        run_dir = store.default_run_dir(Path("outputs"), "+".join(cfg.act).replace(":", "_"), _now())
    run_dir = store.prepare_run_dir(run_dir)
    do_plot = plot if plot is not None else bool(preset.get("plot", True))

    started = _now()
    attempts = list(manifest.get("attempts", [])) if manifest else []
    attempt = {"attempt": len(attempts) + 1, "argv": sys.argv, "started": started, "finished": None, "computed": []}
    base = {
        "hevar": __version__, "numpy": np.__version__, "python": platform.python_version(),
        "config": cfg.to_dict(), "seeds": [{"base_seed": cfg.seed, "seed_index": i} for i in range(cfg.seeds)],
        "started": manifest["started"] if manifest else started, "finished": None,
        "attempts": attempts + [attempt],
    }
    store.write_manifest(run_dir, base)

    tasks = sweep_mod.plan(cfg)
    with Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False) as progress:
        bar = progress.add_task("", total=len(tasks))

        def on_progress(task: sweep_mod.Task, cached: bool) -> None:
            progress.update(bar, advance=1, description=f"{task.act} L={task.depth} N={task.width} seed {task.seed_index}"
                            + (" (done before)" if cached else ""))

        results, computed = sweep_mod.execute(cfg, run_dir, on_progress)
    layer_rows, summary_rows, theory_rows = sweep_mod.reduce(cfg, results)
    store.write_csv(run_dir / "layers.csv", store.LAYER_COLUMNS, layer_rows)
    store.write_csv(run_dir / "summary.csv", store.SUMMARY_COLUMNS, summary_rows)
    store.write_csv(run_dir / "theory.csv", store.THEORY_COLUMNS, theory_rows)
    attempt.update(finished=_now(), computed=computed)
    store.write_manifest(run_dir, dict(base, finished=attempt["finished"]))
    _print_summary(summary_rows)
    if do_plot:
        _render(run_dir)
    out.print(f"Run folder: {run_dir}", markup=False, highlight=False)


def _fmt(x: float, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _print_summary(rows: list[dict]) -> None:
    table = Table(title="χ̂: measured per-layer growth of q̃ˡ (1 = stable) against mean-field χ", title_justify="left")
    for col in ("activation", "L", "N", "σ_b²", "σ_w²·N", "χ̂ ± se", "χ theory", "critical σ_w²·N", "status"):
        table.add_column(col, justify="left" if col in ("activation", "status") else "right")
    for r in rows:
        table.add_row(r["activation"], str(r["depth"]), str(r["width"]), f"{r['sigma_b2']:g}", f"{r['sigma_w2_n']:g}",
                      f"{_fmt(r['chi_hat'])} ± {_fmt(r['chi_hat_se'])}", _fmt(r["chi_theory"]),
                      _fmt(r["sigma_w2_n_crit"], 4), r["status"])
    out.print(table)


def _render(run_dir: Path) -> list[Path]:
    from hevar import plots

    paths = plots.render_run(run_dir)
    for p in paths:
        out.print(f"  figure: {p}", markup=False, highlight=False)
    return paths


@app.command()
@user_errors
def plot(run_dir: Path = typer.Argument(..., help="A run folder written by `hevar sweep`.")) -> None:
    """Render the figures of RUN_DIR from its CSVs alone into RUN_DIR/plots/."""
    _render(run_dir)


@app.callback(invoke_without_command=True)
def _main(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        out.print(f"hevar {__version__}")
        raise typer.Exit()


def main() -> None:  # console-script entry point
    app()
