"""`hevar plot`: a run folder's figures, drawn again from its CSVs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from hevar.views.cli import common


class PlainUsage(typer.core.TyperCommand):
    """Typer's command, with a required argument written by its metavar alone: `hevar plot RUN_DIR`."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [piece.strip("{}") for piece in super().collect_usage_pieces(ctx)]


@common.user_errors
def plot(run_dir: Path = typer.Argument(..., metavar="RUN_DIR", hidden=True),
         fmt: Optional[str] = typer.Option(None, "--format", metavar="LIST",
             help="File format(s), comma list: png, svg, pdf. [default: png]")) -> None:
    """Render the figures of RUN_DIR, a run folder written by `hevar sweep`, from its CSVs alone into
    RUN_DIR/plots/ (q, q_tilde, grad_norm, stability, and depth_map, phase, fan_modes, seed_spread,
    thm11 where the run has what they show)."""
    from hevar.views.formats import parse_formats

    common.render(run_dir, parse_formats(fmt))
