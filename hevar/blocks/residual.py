"""The residual dense block: the stream plus a scaled dense branch.

Pre-activation (ResNet v2, the MLP block of a pre-LN Transformer with one weight)::

    zˡ = zˡ⁻¹ + α·(Wˡ hˡ + bˡ),   hˡ = drop_p(φ(norm(zˡ⁻¹)))            (norm: pre-LN, optional)
    zˡ = norm(zˡ⁻¹ + α·(Wˡ hˡ + bˡ))                                    (post-LN)

Backward (one input; δ = ∂J/∂z)::

    δˡ⁻¹ = δˡ + α·J_branchᵀ(Wˡ)ᵀ δˡ,       ∂J/∂Wˡ = α·δˡ·(hˡ)ᵀ

with J_branch = diag(m/p)·diag(φ')·J_norm. The branch scale α (``--branch-scale``) is a number;
α = 0 is SkipInit (the block is the identity at initialisation and ∂J/∂Wˡ = 0), 1/√L the usual
depth scaling, 1/√(2L) GPT-2's on the output projection.

Mean-field maps (s_in = σ_w²N_{l-1}, s_out = σ_w²N_l; V, G as in :mod:`hevar.meanfield.theory`)::

    qˡ = qˡ⁻¹ + α²(s_in·E[h²] + σ_b²),          q̃ˡ⁻¹ = q̃ˡ·(1 + α²·s_out·χ_h(qˡ⁻¹))

with E[h²] = V(q')/p and χ_h = G(q')/p (divided by qˡ⁻¹ behind a pre-norm) the branch's pieces
(:mod:`hevar.blocks.base`); post-LN sets qˡ = 1 and multiplies the backward factor by
1/q_y, q_y the pre-norm map's value. For ReLU without normalisation, dropout or bias
q̃ grows by 1 + α²·σ_w²N/2 per block: 2 per block at α = 1 and σ_w²N = 2, which is the
log10(q̃¹/q̃ᴸ) = (L − 1)·log10 2 of a depth-L residual MLP.

Assumptions. The forward map has no cross term because Wˡ (zero mean) is independent of zˡ⁻¹:
E[zˡ⁻¹·Wˡhˡ] = 0 exactly. The backward one drops the cross term E[δˡ·(Wˡ)ᵀ…δˡ], which is zero
under the gradient-independence assumption (the Wˡ of the backward pass independent of the
forward's); at finite width it is O(1/N) per block, and the Monte Carlo test measures it.

Not here: the post-activation order of ResNet v1, zˡ = φ(zˡ⁻¹) + α(Wˡφ(zˡ⁻¹) + bˡ). Its skip carries
φ(zˡ⁻¹), which for ReLU is non-negative, so zˡ is not Gaussian from layer 3 on and V(q), G(q) of a
Gaussian no longer give E[φ(zˡ)²]: a Monte Carlo run (N = 512, α = 0.5, σ_w²N = 2) put the
Gaussian map's qˡ off by a factor 1.8 at l = 3 and 30 at l = 8. It needs the stream's distribution,
not its variance, and is left out rather than shipped with a wrong map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hevar.blocks import norm as norms
from hevar.blocks.base import Block, log_alpha_of, log_b_of
from hevar.engine import signalprop
from hevar.engine.stacked import StackedPass, colsq, normalise_terms

Array = np.ndarray


@dataclass(frozen=True)
class Residual(Block):
    """zˡ = zˡ⁻¹ + α·(Wˡhˡ + bˡ), optionally normalised after (post-norm); needs N_{l-1} = N_l."""

    alpha: float = 1.0  # branch scale α, dimensionless (0: SkipInit)

    n_buffers: ClassVar[int] = 3  # the stream, hˡ and uˡ = Wˡhˡ at once

    def __post_init__(self):
        if self.act is None:
            raise ValueError("a residual block needs an activation")
        if not (self.alpha >= 0 and math.isfinite(self.alpha)):
            raise ValueError(f"branch scale must be finite and >= 0, got {self.alpha}")

    @property
    def equivariant(self) -> bool:
        return self.act.homogeneous or self.pre_norm

    def spec(self) -> str:
        parts = [f"{self.norm_at}{self.norm}"] if self.norm else []
        parts += [f"drop{self.keep_prob:g}"] if self.keep_prob < 1 else []
        parts += ["res"]
        return "-".join(parts) + f"(alpha={self.alpha:.6g})"

    # --- engine -----------------------------------------------------------------------------------

    def forward(self, ctx: StackedPass, l: int, z: Array, t: Array) -> tuple[Array, Array]:
        n = ctx.widths[l]
        h, h_scale, kept = self.branch_forward(ctx, l, z, t, consume=False)
        u = ctx.take(n)
        with np.errstate(over="ignore", invalid="ignore"):
            np.matmul(ctx.weights.get(l), h, out=u)
        skip, skip_log = z, t
        ctx.give(h)
        log_alpha = log_alpha_of(self.alpha)
        logs = [skip_log, h_scale + ctx.log_w[:, l - 1] + log_alpha]
        if ctx.has_bias:
            logs.append(ctx.log_b + log_alpha)
        if ctx.scaled:
            coefs, top = normalise_terms(logs)
        else:  # the stream carries no scale: plain coefficients (an overflow is recorded by settle_forward)
            with np.errstate(over="ignore"):
                coefs, top = [np.exp(lg) for lg in logs], np.zeros(ctx.K)
        s3, u3 = ctx.per_config(skip), ctx.per_config(u)
        with np.errstate(over="ignore", invalid="ignore"):
            if not np.all(coefs[0] == 1):
                np.multiply(s3, coefs[0].astype(ctx.dt)[None, :, None], out=s3)
            branch = bool(np.any(coefs[1] > 0))
            if branch:
                np.multiply(u3, coefs[1].astype(ctx.dt)[None, :, None], out=u3)
            b = ctx.streams.bias(l, n, ctx.dt) if ctx.has_bias else None
            if ctx.signalprop:  # the branch α(Wˡhˡ + bˡ) = exp(top)·(u3 + coefs[2]·b), before it joins the stream
                signalprop.record_branch(ctx, l, u3 if branch else None, b, coefs[2] if ctx.has_bias else None, top)
            if branch:
                np.add(skip, u, out=skip)
            if ctx.has_bias:
                np.add(s3, b[:, None, None] * coefs[2].astype(ctx.dt)[None, :, None], out=s3)
        ctx.give(u)
        if self.post_norm:
            top = self.post_norm_forward(skip, top, kept, ctx.K)
        ctx.kept[l] = kept
        return skip, ctx.settle_forward(l, skip, top)

    def backward(self, ctx: StackedPass, l: int, d: Array, s: Array) -> tuple[Array, Array]:
        kept = ctx.kept.pop(l)
        log_alpha = log_alpha_of(self.alpha)
        if self.post_norm:
            s = self.post_norm_backward(d, s, kept)
            ctx.du[l] = (colsq(d), s + log_alpha)
        else:
            ctx.du[l] = (None, s + log_alpha)
        v = ctx.take(ctx.widths[l - 1])
        np.matmul(ctx.weights.get(l).T, d, out=v)
        d3, v3 = ctx.per_config(d), ctx.per_config(v)
        extra = self.branch_backward(ctx, v, kept)
        log_v = log_alpha + ctx.log_w[:, l - 1] + (0.0 if extra is None else extra)
        coefs, top = normalise_terms([np.zeros(ctx.K), log_v])
        if not np.all(coefs[0] == 1):
            np.multiply(d3, coefs[0].astype(ctx.dt)[None, :, None], out=d3)
        if np.any(coefs[1] > 0):
            np.multiply(v3, coefs[1].astype(ctx.dt)[None, :, None], out=v3)
            np.add(d, v, out=d)
        ctx.give(v)
        return d, ctx.settle_backward(l - 1, d, s + top)

    def reference(self, W: Array, b: Array, z: Array, mask: Array | None):
        """(zˡ, hˡ, vjp) for one configuration, vjp: δˡ ↦ (δˡ⁻¹, ∂J/∂uˡ)."""
        a = self.alpha
        h, back = self.reference_branch(z, mask)
        y = z + a * (W @ h + b[:, None])
        out = norms.reference_forward(self.norm, y) if self.post_norm else y

        def vjp(delta: Array):
            d_y = norms.reference_backward(self.norm, y, delta) if self.post_norm else delta
            d_u = a * d_y
            return d_y + back(W.T @ d_u), d_u

        return out, h, vjp

    # --- theory -----------------------------------------------------------------------------------

    def _log_q_y(self, log_q_prev, s_in, sigma_b2):
        """ln q of the sum before a post-norm (the block's output without one), vectorised."""
        a2 = 2 * log_alpha_of(self.alpha)
        log_b = log_b_of(sigma_b2)
        log_q_prev = np.asarray(log_q_prev, dtype=float)
        log_s = np.log(np.asarray(s_in, dtype=float))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.logaddexp(log_q_prev, a2 + np.logaddexp(log_s + self.log_h(log_q_prev), log_b))

    def log_q_run(self, log_q_prev, s_in, sigma_b2, widths, q_in=1.0):
        out = np.empty(len(s_in))
        log_q = log_q_prev
        for i, s in enumerate(np.asarray(s_in, dtype=float)):
            log_q = out[i] = 0.0 if self.post_norm else float(self._log_q_y(log_q, s, sigma_b2))
        return out

    def log_chi_run(self, log_q_prev, s_in, s_out, sigma_b2, widths):
        a2 = 2 * log_alpha_of(self.alpha)
        log_q_prev = np.asarray(log_q_prev, dtype=float)
        log_s = np.log(np.asarray(s_out, dtype=float))
        widths = np.asarray(widths)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = np.logaddexp(0.0, a2 + log_s + self.log_branch_chi(log_q_prev))
            if self.post_norm:
                out = out + self.log_post(self._log_q_y(log_q_prev, s_in, sigma_b2))
        return out

    def log_du_run(self, log_q_prev, s_in, sigma_b2, widths):
        a2 = 2 * log_alpha_of(self.alpha)
        out = np.full(len(np.asarray(log_q_prev).reshape(-1)), a2)
        if self.post_norm:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                out = out + self.log_post(self._log_q_y(log_q_prev, s_in, sigma_b2))
        return out
