"""`hevar theory`: the mean-field report of one activation, the whole critical line
(--critical-line) and the composed maps of a stack of blocks (--arch)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from hevar.errors import UsageError
from hevar.views.cli import common
from hevar.views.cli.common import MAX_LAYER_ROWS

config_mod = common.config_mod
store = common.store


@common.user_errors
@common.no_float_warnings
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
        "each σ_b² of --sigma-b2 (a comma list or start:stop:step here, at most 1000 values) [default: 0, 0.05, …, 1]."),
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
        common.refuse_unused("--critical-line (or its --out)", "the line is every fixed point with χ₁ = 1 at each σ_b², whatever "
                             "the input or depth", sigma_w2=sigma_w2, depth=depth, arch=arch, branch_scale=branch_scale,
                             q_in=q_in, input_preactivation=input_preactivation)
        _critical_line(activation, sigma_b2, out_path, as_json)
        return
    if arch is not None or branch_scale is not None:
        from hevar.blocks import network

        if network.parse_arch(arch or "mlp").text != "mlp" or branch_scale is not None:
            common.refuse_unused("--arch", "a stack's maps start from a unit input, q_in = 1, not activated",
                                 q_in=q_in, input_preactivation=input_preactivation)
            _theory_stack(activation, arch or "mlp", branch_scale, sigma_w2, sigma_b2, depth, as_json)
            return
    report = theory.report(activation, sigma_b2=config_mod.parse_sigma_b2(sigma_b2 if sigma_b2 is not None else 0),
                           sigma_w2_n=None if sigma_w2 is None else config_mod.parse_sigma_w2(sigma_w2),
                           depth=config_mod.parse_depth(depth if depth is not None else 10),
                           q_in=common.parse_q_in(q_in), input_preactivation=input_preactivation)
    if as_json:
        common.out.print(json.dumps(store.json_safe(report), ensure_ascii=False), markup=False, highlight=False, soft_wrap=True)
        return
    convention = "" if report["q_in"] == 1 and report["input"] == "not activated" else \
        f", q_in = {report['q_in']:g} ({report['input']})"
    head = Table(title=f"{report['activation']}, σ_b² = {report['sigma_b2']:g}{convention}", title_justify="left",
                 show_header=False)
    head.add_column("", justify="left")
    head.add_column("", justify="right")
    head.add_row("critical σ_w²·N", common.num(report["critical_sigma_w2_n"]))
    head.add_row("gain √(σ_w²·N)", common.num(report["gain"]))
    head.add_row("how", report["critical_kind"])
    head.add_row("q* at critical", common.num(report["critical_q_star"]))
    if report["sigma_w2_n"] is not None:
        head.add_row("σ_w²·N evaluated", common.num(report["sigma_w2_n"]))
        head.add_row(f"q* reached from q_in = {report['q_in']:g}", common.num(report["q_star"]))
        head.add_row("χ₁", common.num(report["chi1"]))
        head.add_row("ξ = -1/ln χ₁ (layers)", common.num(report["xi"]))
        head.add_row("phase", report["phase"])
        head.add_row("c* (fixed correlation)", common.num(report["c_star"]))
        head.add_row("χ_c at c*", common.num(report["chi_c"]))
        head.add_row("ξ_c = -1/ln χ_c (layers)", common.num(report["xi_c"]))
        head.add_row("ξ_q (layers)", common.num(report["xi_q"]))
        if report["c_note"]:
            head.add_row("c note", report["c_note"])
        head.add_row("fixed points", ", ".join(
            f"{common.num(p['q'])} ({'saddle-node' if p['saddle_node'] else 'stable' if p['stable'] else 'unstable'})"
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
    common.out.print(head)
    common.out.print(report["critical_label"], markup=False, highlight=False)
    for warning in report["warnings"]:
        common.out.print(f"warning: {warning}", markup=False, highlight=False)
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
    common.out.print(crit_table)
    for c in report["criteria"]:
        common.out.print(f"  {c['label']}: {c['note']}", markup=False, highlight=False)
    if not report["layers"]:
        common.out.print("No critical σ_w²·N: pass --sigma-w2 FLOAT for per-layer predictions.", markup=False, highlight=False)
        return
    rows = report["layers"]
    shown = common.elide(rows)
    layers = Table(title=f"per layer at σ_w²·N = {common.num(report['sigma_w2_n'])}", title_justify="left",
                   caption=f"{len(rows) - MAX_LAYER_ROWS} layers left out (…); --json has all" if None in shown else None,
                   caption_justify="left")
    for col in ("layer", "qˡ", "q̃ˡ (q̃ᴸ = 1)", "χˡ = σ_w²·N·G(qˡ)"):
        layers.add_column(col, justify="right", no_wrap=True)
    for row in shown:
        if row is None:
            layers.add_row("…", "…", "…", "…")
        else:
            layers.add_row(str(row["layer"]), common.num(row["q"]), common.num(row["q_tilde"]), common.num(row["chi"]))
    common.out.print(layers)


MAX_LINE_POINTS = 1000  # σ_b² values of one --critical-line (about 50 ms each: under a minute)


def _critical_line(activation, sigma_b2: Optional[str], out_path: Optional[Path], as_json: bool) -> None:
    """`hevar theory --critical-line`: the rows of critical.critical_line_rows, printed or written."""
    import json

    from hevar.meanfield import critical

    if out_path is not None:  # before the work: a folder, or a file in no folder, is bad input, not a fault
        common.refuse_unused("--out", "it writes the rows as CSV", json=as_json or None)
        if Path(out_path).is_dir() or not Path(out_path).parent.is_dir():
            what = "a file name, not a folder" if Path(out_path).is_dir() else "a file in an existing folder"
            raise UsageError(f"The 'out' parameter must be {what}. Got '{out_path}' instead.", param="out")
    values = (critical.DEFAULT_LINE_SIGMA_B2 if sigma_b2 is None
              else config_mod.parse_grid("sigma-b2", sigma_b2, float, 0, math.inf, allow_range=True))
    if len(values) > MAX_LINE_POINTS:
        raise UsageError(f"The 'sigma-b2' parameter must hold at most {MAX_LINE_POINTS} values with --critical-line "
                         f"(each takes about 50 ms). Got {len(values)} values instead.", param="sigma-b2")
    rows = critical.critical_line_rows(activation, values)
    if out_path is not None:
        store.write_csv(out_path, critical.CRITICAL_LINE_COLUMNS, rows)
        common.out.print(f"{len(rows)} rows: {out_path}", markup=False, highlight=False)
        return
    if as_json:
        common.out.print(json.dumps(store.json_safe(rows), ensure_ascii=False), markup=False, highlight=False, soft_wrap=True)
        return
    table = Table(title=f"{activation.name}: the critical line χ₁ = 1 (every fixed point, stable or not)",
                  title_justify="left", caption="slope: the q-map's s·V'(q*); < 1 stable (a network can settle there), "
                  "> 1 unstable (q¹ is pushed away). q*->0, q*->inf: the line's ends (limits).", caption_justify="left")
    for col in ("σ_b²", "σ_w²·N", "gain", "q*", "slope", "branch"):
        table.add_column(col, justify="left" if col == "branch" else "right", no_wrap=True)
    for r in rows:
        table.add_row(f"{r['sigma_b2']:g}", common.num(r["sigma_w2_n"]), common.num(r["gain"]), common.num(r["q_star"]), common.num(r["slope"]),
                      r["branch"])
    common.out.print(table)


# seconds per block of `hevar theory --arch` on a 2-core development machine (tanh, preln-resmlp at
# L = 5000: 36 s): V(q) by quadrature, and a closed-form V
SECONDS_PER_BLOCK = (7e-3, 3e-3)


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
    seconds = L * (SECONDS_PER_BLOCK[0] if activation.V is None else SECONDS_PER_BLOCK[1])
    common.long_work_note(seconds, common.LONG_S, f"the block maps follow all {L} blocks", "a smaller --depth is faster")
    report = network.stack_report(cfg.arch, activation, L, s, b, cfg.branch_scale)
    if as_json:
        common.out.print(json.dumps(store.json_safe(report), ensure_ascii=False), markup=False, highlight=False, soft_wrap=True)
        return
    head = Table(title=f"{report['activation']}, --arch {report['arch']}", title_justify="left", show_header=False)
    head.add_column("", justify="left")
    head.add_column("", justify="right")
    head.add_row("σ_w²·N, σ_b², L", f"{common.num(s)}, {b:g}, {L}")
    if report["branch_scale"] is not None:
        head.add_row("branch scale α", common.num(report["branch_scale"]))
    head.add_row("log₁₀ qᴸ/q¹", common.num(report["log10_q_ratio"]))
    head.add_row("log₁₀ q̃¹/q̃ᴸ", common.num(report["log10_q_tilde_ratio"]))
    if report["branch_scale_for_factor"] is not None:
        head.add_row(f"α with q̃¹/q̃ᴸ = {report['factor']:g}", common.num(report["branch_scale_for_factor"]))
    common.out.print(head)
    layers = common.block_table(report["layers"], "layer", "qˡ/qˡ⁻¹", "q̃ˡ⁻¹/q̃ˡ", "layers")
    common.out.print(layers)
