"""`hevar activations`: the activations --act accepts."""

from __future__ import annotations

from rich.table import Table

from hevar.views.cli import common


@common.user_errors
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
    common.out.print(table)
