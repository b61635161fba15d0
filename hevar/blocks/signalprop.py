"""Mean-field theory of the signal-propagation statistics (Brock et al. 2021) of a stack of blocks.

What is measured (:mod:`hevar.engine.signalprop`), per block l on a batch of B inputs: the average
squared channel mean M²ˡ = mean_i (mean_b zˡ_ib)², the average channel variance
Vˡ = mean_i var_b zˡ_ib (ddof = 0) and a residual branch's mean square Rˡ = mean (α(Wˡhˡ + bˡ))².

**Why the channel mean is not O(q/B) noise.** Over the weights, each unit zˡ_i is a centred Gaussian
process over inputs (wide limit) with E[zˡ_a zˡ_a] = qˡ and, for two *different* inputs a ≠ b,
E[zˡ_a zˡ_b] = kˡ = qˡcˡ, the off-diagonal kernel (cˡ their correlation). So, exactly for a batch of
B inputs,

    E[M²ˡ] = (1/B²)·Σ_{a,b} E[zˡ_a zˡ_b] = qˡ·(1 + (B − 1)·cˡ)/B,
    E[Vˡ]  = qˡ − E[M²ˡ]                 = qˡ·(1 − 1/B)·(1 − cˡ).

q/B is the answer only where cˡ = 0. Independent Gaussian inputs give c⁰ = 0 on average (x_a·x_b/N
is O(1/√N) and averages out), and layer 1 keeps k¹ = σ_b²; but every φ with E[φ(u)] ≠ 0 creates a
correlation: for ReLU E[φ(u_a)φ(u_b)] = q/(2π) at c = 0 (the arc-cosine kernel), which is the
"mean shift" Brock et al. point at. A residual stack accumulates it,

    kˡ = kˡ⁻¹ + α²·(σ_w²N·E[hˡ_a hˡ_b] + σ_b²),     qˡ = qˡ⁻¹ + α²·(σ_w²N·E[(hˡ)²] + σ_b²),

so cˡ = kˡ/qˡ climbs towards 1 with depth and M²ˡ → qˡcˡ is not small at any B: the channel
variance Vˡ is then the smaller part of qˡ. A dense block has kˡ = σ_w²N·E[hˡ_a hˡ_b] + σ_b².

The branch pieces, with q' = qˡ⁻¹ (or 1 behind a pre-norm, which maps the pair to correlation cˡ⁻¹
at unit variance; LayerNorm's per-input centring over units changes nothing in the wide limit):
E[h_a h_b] = K(q', q', cˡ⁻¹) = E[φ(u_a)φ(u_b)] (:func:`hevar.meanfield.bivariate.phi_phi`), not
divided by the dropout keep probability (the two inputs' masks are independent, E[m/p] = 1), while
E[h²] = V(q')/p. A post-norm sets qˡ = 1 and cˡ = k_y/q_y of the sum before it. The branch's mean
square is Rˡ = α²(σ_w²N·E[(hˡ)²] + σ_b²), the increment of qˡ.

Where it is approximate: the O(1/N) corrections of mean-field theory, and the inputs' realised
correlations (O(1/√N), entering at second order). The tests measure both by Monte Carlo.
"""

from __future__ import annotations

import math

import numpy as np

from hevar.blocks.base import log_alpha_of, log_b_of
from hevar.blocks.residual import Residual
from hevar.meanfield import bivariate

Array = np.ndarray


def applies(net) -> bool:
    """The statistics are recorded for stacks with at least one residual block."""
    return any(isinstance(b, Residual) for b in net.blocks)


def _cross_h(block, log_q_prev: float, c_prev: float) -> float:
    """E[hˡ_a hˡ_b] / q_ref and ln q_ref: the branch's off-diagonal second moment, relative to a
    reference (qˡ⁻¹ for a homogeneous φ without pre-norm, else 1)."""
    c = float(np.clip(c_prev, -1.0, 1.0))
    if block.pre_norm:
        return float(bivariate.phi_phi(block.act, 1.0, 1.0, c)), 0.0
    if block.act.homogeneous:
        return float(bivariate.phi_phi(block.act, 1.0, 1.0, c)), log_q_prev
    q = np.exp(log_q_prev)
    return float(bivariate.phi_phi(block.act, q, q, c)), 0.0


def theory(net, s_in: Array, sigma_b2: float, widths: Array, batch: int, input_cross: float = 0.0) -> dict[str, Array]:
    """Per block l = 1..L: ``log_q`` (the network's trajectory), ``c`` (cˡ of two different
    inputs), ``log_mean2`` = ln E[M²ˡ], ``log_var`` = ln E[Vˡ] and ``log_branch`` = ln Rˡ (nan
    for non-residual blocks, −inf at α = 0), for ``batch`` = B.

    ``s_in``: σ_{w,l}²·N_{l-1} per block (L,); ``input_cross``: E[x_a·x_b] per unit of two different
    inputs (0 for independent inputs; E[φ(u)]² for a pre-activated input).
    """
    s_in = np.asarray(s_in, dtype=float)
    L = net.depth
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        log_q = net.log_q_trajectory(s_in, sigma_b2, widths)
        c = np.empty(L)
        log_branch = np.full(L, np.nan)
        # layer 1: z¹ = W¹x + b¹, k¹ = s₁·k⁰ + σ_b²
        c[0] = (s_in[0] * input_cross + sigma_b2) * np.exp(-log_q[0])
        for i in range(1, L):
            block = net.blocks[i]
            lq_prev, lq = log_q[i - 1], log_q[i]
            cross, log_ref = _cross_h(block, lq_prev, c[i - 1])
            log_b = log_b_of(sigma_b2)
            if isinstance(block, Residual):
                a2 = 2 * log_alpha_of(block.alpha)
                log_y = float(block._log_q_y(lq_prev, s_in[i], sigma_b2))  # ln q before a post-norm (= lq without)
                inc = np.exp(a2 + math.log(s_in[i]) + log_ref - log_y) * cross + np.exp(a2 + log_b - log_y)
                c[i] = c[i - 1] * np.exp(lq_prev - log_y) + inc
                log_branch[i] = a2 + np.logaddexp(math.log(s_in[i]) + float(block.log_h(lq_prev)), log_b)
            else:
                log_y = lq
                if block.post_norm:
                    log_y = float(np.logaddexp(math.log(s_in[i]) + float(block.log_h(lq_prev)), log_b))
                c[i] = np.exp(math.log(s_in[i]) + log_ref - log_y) * cross + np.exp(log_b - log_y)
        c = np.clip(c, -1.0, 1.0)
        B = float(batch)
        log_mean2 = log_q + np.log((1 + (B - 1) * c) / B)
        log_var = log_q + np.log((1 - 1 / B) * (1 - c))
    return dict(log_q=log_q, c=c, log_mean2=log_mean2, log_var=log_var, log_branch=log_branch)
