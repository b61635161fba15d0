"""The command line: parse → config → call the library → report. Only this package prints.

One module per command family (sweep, plot, theory, gains, activations, train); what they share
(consoles, lazily loaded library modules, the one error path) is in :mod:`.common`. The commands
are registered here, in the order `hevar --help` lists them."""

from __future__ import annotations

import sys

import typer

from hevar import __version__
from hevar.views.cli import activations, common, gains, plot, sweep, theory, train

app = typer.Typer(
    help="hevar: how signals and gradients propagate through deep networks at initialization, "
    "and which weight variance keeps them stable (σ_w² = 2/N for ReLU).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    cls=common.OneLineErrors,
)
app.command()(sweep.sweep)
app.command(cls=plot.PlainUsage)(plot.plot)
app.command("theory")(theory.theory_command)
app.command("gains")(gains.gains_command)
app.command("activations")(activations.activations_command)
app.command("train")(train.train_command)


@app.callback(invoke_without_command=True)
def _main(version: bool = typer.Option(False, "--version", help="Print the version and exit."),
          debug: bool = typer.Option(False, "--debug", help=f"Show the traceback of a fault or bug (or set "
                                     f"{common.DEBUG_ENV}=1); also accepted after the command.")) -> None:
    common.set_debug(debug)
    if version:
        common.out.print(f"hevar {__version__}")
        raise typer.Exit()


def main(argv: list[str] | None = None) -> None:  # console-script entry point
    """``hevar``: ``--debug`` is taken anywhere before a ``--``, not only before the command."""
    args = list(sys.argv[1:] if argv is None else argv)
    head = args[:args.index("--")] if "--" in args else args
    if "--debug" in head[1:]:  # after the command: move it before, where the app's callback takes it
        args = ["--debug"] + [a for i, a in enumerate(args) if not (a == "--debug" and i < len(head))]
    app(args=args)
