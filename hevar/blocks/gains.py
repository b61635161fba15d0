"""`hevar gains --arch`: the branch scale a residual stack needs, and what each block does at it.

For a constant-width stack of blocks (:func:`hevar.blocks.network.build`) at σ_w²·N and σ_b², the
gradient ratio q̃¹/q̃ᴸ of the composed mean-field maps grows with the branch scale α from 1 at α = 0
(every block the identity, SkipInit). :func:`hevar.blocks.network.branch_scale_for` finds, by
bisection, the α* at which it equals ``factor`` (2 by default): the largest α that keeps the
gradient within that factor over the depth. This module reports α* per activation and, at α*
(or at the ``--branch-scale`` the user gives), the per-block forward factor qˡ/qˡ⁻¹ and backward
factor q̃ˡ⁻¹/q̃ˡ of :func:`hevar.blocks.network.stack_report`.

Closed form, to check it against. A pre-activation ReLU residual block without bias, dropout or
normalisation multiplies q̃ by 1 + α²·σ_w²N·G(q) = 1 + α²·σ_w²N/2 (G = 1/2 for ReLU at any q), so

    q̃¹/q̃ᴸ = (1 + α²σ_w²N/2)^(L−1)   ⇒   α* = √(2·(factor^(1/(L−1)) − 1)/σ_w²N),

e.g. α* ≈ 0.192 at L = 20, σ_w²N = 2 (1/√20 = 0.2236 gives 1.05^19 ≈ 2.53). Behind a pre-norm the
branch sees a normalised input while the stream grows, so the ratio may stay below ``factor`` for
every α: α* is then inf ("any α").

Pure: no printing; the CLI formats :func:`stack_gains`'s dict.
"""

from __future__ import annotations

import math

from hevar.blocks import network
from hevar.meanfield import theory
from hevar.meanfield.activations import Activation


def stack_gains(arch: str, acts: list[Activation], depth: int, sigma_w2_n: float | None = None,
                sigma_b2: float = 0.0, branch_scale_text: str | None = None, factor: float = 2.0) -> dict:
    """The α* keeping q̃¹/q̃ᴸ within ``factor`` and the per-block factors, per activation.

    ``sigma_w2_n`` None: each activation's critical σ_w²·N at ``sigma_b2`` (2 for ReLU). The
    per-block factors are those at ``branch_scale_text`` where given, else at α* (at α = 1 when α*
    is inf or the stack has no residual branch). Returns ``arch``, ``depth``, ``sigma_b2``,
    ``factor`` and ``activations``: a list of :func:`hevar.blocks.network.stack_report` dicts, each
    with ``branch_scale`` the α its layers are evaluated at, ``branch_scale_for_factor`` α*, and
    ``alpha_closed_form`` (the formula above for a plain pre-activation ReLU stack without bias,
    else None).
    """
    spec = network.parse_arch(arch)
    out = []
    for act in acts:
        s = sigma_w2_n if sigma_w2_n is not None else theory.critical_sigma_w2_n(act, sigma_b2).sigma_w2_n
        if not (s is not None and math.isfinite(s) and s > 0):
            raise ValueError(f"{act.name} has no critical σ_w²·N at σ_b² = {sigma_b2:g}: give σ_w²·N")
        star = network.branch_scale_for(spec.text, act, depth, s, sigma_b2, factor) if spec.residual else None
        if branch_scale_text is not None:
            at = branch_scale_text
        elif star is not None and math.isfinite(star):
            at = network._num(star)
        else:
            at = network.DEFAULT_BRANCH_SCALE
        report = network.stack_report(spec.text, act, depth, s, sigma_b2, at, factor)
        plain_relu = (spec.residual and act.name == "relu" and not spec.norm and spec.keep_prob == 1
                      and sigma_b2 == 0 and depth > 1)
        report["alpha_closed_form"] = (math.sqrt(2 * (factor ** (1 / (depth - 1)) - 1) / s) if plain_relu else None)
        out.append(report)
    return dict(arch=spec.text, depth=depth, sigma_b2=float(sigma_b2), factor=float(factor), activations=out)
