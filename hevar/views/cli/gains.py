"""`hevar gains`: what the frameworks' default initialisations mean at constant width, and
(--arch) the branch scale a stack of blocks needs."""

from __future__ import annotations

import math
from typing import Optional

import typer
from rich.table import Table

from hevar.errors import UsageError
from hevar.views.cli import common

config_mod = common.config_mod
store = common.store


@common.user_errors
@common.no_float_warnings
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
        common.refuse_unused("--arch", "a stack's maps start from a unit input, q_in = 1, not activated",
                             q_in=q_in, input_preactivation=input_preactivation)
        _gains_stack(act, arch, sigma_w2, sigma_b2, depth, branch_scale, as_json)
        return
    acts = None if act is None else [parse_activation(a) for a in config_mod.parse_acts(act)]
    L = config_mod.parse_depth(depth if depth is not None else gains.DEFAULT_DEPTH)
    b2, q = config_mod.parse_sigma_b2(sigma_b2 if sigma_b2 is not None else 0), common.parse_q_in(q_in)
    seconds = gains.estimate_seconds(acts, L)
    common.long_work_note(seconds, LONG_S, f"the depth criterion follows all {L} layers for each activation",
                          "fewer --act or a smaller --depth is faster")
    table = gains.gains_table(acts, sigma_b2=b2, depth=L, q_in=q, input_preactivation=input_preactivation)
    if as_json:
        common.out.print(json.dumps(store.json_safe(gains.to_dict(table)), ensure_ascii=False), markup=False, highlight=False,
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
            grid.add_row(entry.activation if k == 0 else "", f"{row.sigma_w2_n:.4g}", label, common.fmt(row.chi1, 3),
                         f"{row.factor:.2g}" if math.isfinite(row.factor) else common.num(row.factor), row.verdict,
                         end_section=k == len(entry.by_value()) - 1)
    start = f"input variance {table.q_in:g}" + (", a pre-activation" if table.input_preactivation else "")
    grid.caption = (f"verdict: q̃¹/q̃ᴸ (mean-field trajectory from {start}) < {lo:g} vanishing, "
                    f"[{lo:g}, {hi:g}] stable, > {hi:g} exploding. kaiming/xavier: PyTorch's defaults (gain √2 / 1); "
                    "(gain): with calculate_gain(act); keras he/lecun/glorot: _normal and _uniform; "
                    "critical: hevar's χ₁ = 1. torch Linear also draws a bias with σ_b² = 1/(3N).")
    grid.caption_justify = "left"
    common.out.print(grid)
    for entry in table.activations:
        if entry.note:
            common.out.print(f"{entry.activation}: {entry.note}.", markup=False, highlight=False)
    common.out.print("Measure them (compare log10_q_tilde_ratio with log10_q_tilde_ratio_theory in summary.csv):",
              markup=False, highlight=False)
    for entry in table.activations:
        common.out.print(f"  {entry.command}", markup=False, highlight=False, soft_wrap=True)


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
        common.out.print(json.dumps(store.json_safe(result), ensure_ascii=False), markup=False, highlight=False,
                  soft_wrap=True)
        return
    for rep in result["activations"]:
        star = rep["branch_scale_for_factor"]
        head = Table(title=f"{rep['activation']}, --arch {rep['arch']}, L = {L}", title_justify="left",
                     show_header=False)
        head.add_column("", justify="left")
        head.add_column("", justify="right")
        head.add_row("σ_w²·N, σ_b²", f"{common.num(rep['sigma_w2_n'])}, {b:g}")
        if star is not None:
            head.add_row(f"α with q̃¹/q̃ᴸ = {rep['factor']:g}",
                         "any α (inf): the ratio stays below it" if star == math.inf else common.num(star))
        if rep["alpha_closed_form"] is not None:
            head.add_row("closed form √(2(2^(1/(L−1))−1)/σ_w²N)", common.num(rep["alpha_closed_form"]))
        if rep["branch_scale"] is not None:
            head.add_row("per-block factors at α", common.num(rep["branch_scale"]))
        head.add_row("log₁₀ qᴸ/q¹ there", common.num(rep["log10_q_ratio"]))
        head.add_row("log₁₀ q̃¹/q̃ᴸ there", common.num(rep["log10_q_tilde_ratio"]))
        common.out.print(head)
        layers = common.block_table(rep["layers"], "block", "forward qˡ/qˡ⁻¹", "backward q̃ˡ⁻¹/q̃ˡ", "blocks")
        common.out.print(layers)
    if any(r["branch_scale_for_factor"] not in (None, math.inf) for r in result["activations"]):
        r = next(r for r in result["activations"] if r["branch_scale_for_factor"] not in (None, math.inf))
        common.out.print(f"Measure it: hevar sweep --act {r['activation']} --arch {result['arch']} --depth {L} "
                  f"--sigma-w2 {common.num(r['sigma_w2_n'])} --branch-scale {common.num(r['branch_scale_for_factor'])}",
                  markup=False, highlight=False, soft_wrap=True)


LONG_S = common.LONG_S


def _critical_of(act, sigma_b2: float) -> float:
    from hevar.meanfield import theory

    return theory.critical_sigma_w2_n(act, sigma_b2).sigma_w2_n
