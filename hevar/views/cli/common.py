"""What every command shares: the two consoles, lazily loaded library modules, the one error path
(:func:`user_errors`), and the number formats and figure drawing several commands use.

The consoles are looked up here at call time (``common.out.print``), so that a test can point
``common.out`` at a buffer and see what any command prints."""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional

import typer
from rich.console import Console

from hevar.errors import (EXIT_BUG, EXIT_FAULT, EXIT_INTERRUPTED, EXIT_USAGE, Fault, UsageError,
                          watch_interrupts)


def lazy(name: str) -> Any:
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


config_mod = lazy("hevar.experiments.config")
store = lazy("hevar.results.store")

DEBUG_ENV = "HEVAR_DEBUG"  # HEVAR_DEBUG=1, or --debug anywhere on the command line: tracebacks for faults and bugs
MAX_LAYER_ROWS = 50  # per-layer rows `hevar theory` prints; the rest are elided (--json keeps all)

out = Console()
err = Console(stderr=True, soft_wrap=True)

_debug_flag = False  # --debug on this invocation


def set_debug(debug: bool) -> None:
    """Record the app's --debug flag for this invocation."""
    global _debug_flag
    _debug_flag = debug


def _debug() -> bool:
    return _debug_flag or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


_LONG_WORD = re.compile(r"\S{160,}")


def shorten(message: str) -> str:
    """``message`` on one line, any run of over 160 non-blank characters cut to its ends: a 100 000-character
    --arch given back whole would still be one line, but not one a person reads."""
    def cut(m: re.Match) -> str:
        word = m.group(0)
        return f"{word[:60]}…{word[-20:]} ({len(word)} characters)"

    return _LONG_WORD.sub(cut, " ".join(message.split()))


def fail(message: str, code: int) -> NoReturn:
    err.print(shorten(message), markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class OneLineErrors(typer.core.TyperGroup):
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
                message = shorten(exc.format_message()).rstrip(".")
                where = f" See '{ctx.command_path} --help'." if ctx is not None else ""
                err.print(f"Error: {message}.{where}", markup=False, highlight=False, soft_wrap=True)
                code = exc.exit_code if ctx is None else EXIT_USAGE
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


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
            fail(f"Error: {exc}", EXIT_USAGE)
        except KeyboardInterrupt:
            fail("Interrupted.", EXIT_INTERRUPTED)
        except (Fault, OSError, MemoryError) as exc:
            if _debug():
                raise
            if isinstance(exc, OSError):
                exc = store.io_fault(exc, getattr(exc, "filename", None) or "a file", "read or write")
            elif isinstance(exc, MemoryError):
                exc = Fault("Out of memory (MemoryError). Try a smaller --batch, --width or --depth, or fewer --jobs.")
            fail(f"Error: {exc}", EXIT_FAULT)
        except Exception as exc:  # noqa: BLE001 — a bug in hevar: one line, the traceback on request
            if _debug():
                raise
            fail(f"Internal error: {one_line(exc)}. This is a bug in hevar; rerun with --debug (or {DEBUG_ENV}=1) "
                 "for the traceback and report it.", EXIT_BUG)
        finally:
            restore()

    return wrapper


def no_float_warnings(fn: Callable) -> Callable:
    """Run a mean-field command (`theory`, `gains`) with NumPy's floating-point warnings off: an
    extreme input (--q-in 1e308, --sigma-w2 1e300) overflows somewhere inside, and the report shows
    what that means (∞, —); a RuntimeWarning on stderr would only break the one-line output."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import numpy as np

        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return wrapper


def one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message[:300]}" if message else type(exc).__name__


def fmt(x: float, digits: int = 3) -> str:
    """A fixed-point number, "—" for None, nan and ±inf (the sweep's and training's tables)."""
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def num(x: float | None) -> str:
    """Six significant digits, "—" for None and nan, "∞"/"-∞" (the theory's and gains' tables)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.6g}"


LONG_S = 30.0  # estimated seconds above which a mean-field command says how long it will take


def long_work_note(seconds: float, limit: float, why: str, faster: str) -> None:
    """On stderr, before the work: "Note: about 12 min of work (WHY); FASTER." when ``seconds`` > ``limit``."""
    if seconds > limit:
        from hevar.experiments.resources import duration

        err.print(f"Note: about {duration(seconds)} of work ({why}); {faster}.", markup=False, highlight=False,
                  soft_wrap=True)


def block_table(rows: list[dict], first: str, forward: str, backward: str, unit: str):
    """The per-block table of a stack's theory (``hevar theory --arch``, ``hevar gains --arch``): block,
    qˡ, q̃ˡ and the forward and backward factors, elided as :func:`elide` does, with a caption saying so."""
    from rich.table import Table

    shown = elide(rows)
    table = Table(title="per block (q̃ᴸ = 1)", title_justify="left",
                  caption=f"{len(rows) - MAX_LAYER_ROWS} {unit} left out (…); --json has all" if None in shown else None,
                  caption_justify="left")
    for col in (first, "qˡ", "q̃ˡ", forward, backward):
        table.add_column(col, justify="right", no_wrap=True)
    for row in shown:
        if row is None:
            table.add_row(*["…"] * 5)
        else:
            table.add_row(str(row["layer"]), num(row["q"]), num(row["q_tilde"]),
                          "—" if row["forward_factor"] is None else num(row["forward_factor"]),
                          "—" if row["backward_factor"] is None else num(row["backward_factor"]))
    return table


def elide(rows: list) -> list:
    """``rows``, or its first and last MAX_LAYER_ROWS/2 with a None between where there are more."""
    return rows if len(rows) <= MAX_LAYER_ROWS else rows[:MAX_LAYER_ROWS // 2] + [None] + rows[-(MAX_LAYER_ROWS // 2):]


def parse_q_in(raw: Optional[str]) -> float:
    """--q-in of `hevar theory` and `hevar gains`: a float in (0, inf), 1 when not given (the
    validator `hevar sweep --q-in` uses)."""
    if raw is None:
        return 1.0
    return config_mod._number("q-in", raw, float, 0, math.inf, lo_open=True)


def refuse_unused(mode: str, why: str, **given: Any) -> None:
    """A :class:`UsageError` for the first option of ``given`` (name as the user writes it, with
    ``_`` for ``-`` → value; None or False: not given) that ``mode`` would otherwise ignore silently."""
    for name, value in given.items():
        if value is not None and value is not False:
            shown = "given" if value is True else str(value)
            raise UsageError(f"The '{name.replace('_', '-')}' parameter must be left out with {mode} ({why}). "
                             f"Got '{shown}' instead.", param=name.replace("_", "-"))


def render(run_dir: Path, formats: tuple[str, ...] = ("png",), after_sweep: bool = False,
           workers=None) -> list[Path]:
    """Draw the figures (in ``workers``, a :class:`hevar.views.render.FigureWorkers`, when given); a
    failure or Ctrl-C while drawing says what is kept and how to draw them again. `hevar plot`,
    and `hevar sweep` and `hevar train` at their end."""
    if workers is None:
        from hevar.views import figures

    again = (f"The results are complete in {run_dir}; draw the figures with: hevar plot {shlex.quote(str(run_dir))}"
             if after_sweep else f"Draw them again with: hevar plot {shlex.quote(str(run_dir))}")
    try:
        store.check_plots_dir(run_dir)
        paths = workers.render(run_dir, formats) if workers is not None else figures.render_run(run_dir, formats)
    except KeyboardInterrupt:
        drawn = sorted(p.name for p in (Path(run_dir) / "plots").glob("*.*")) if Path(run_dir).is_dir() else []
        fail(f"Interrupted while drawing the figures ({len(drawn)} in {Path(run_dir) / 'plots'}, each one whole). "
             f"{again}", EXIT_INTERRUPTED)
    except (UsageError, Fault) as exc:
        if not after_sweep:
            raise
        raise exc.amended(again + " once that is fixed.") from None
    for p in paths:
        out.print(f"  figure: {p}", markup=False, highlight=False)
    return paths
