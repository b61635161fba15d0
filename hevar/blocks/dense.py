"""The dense block: zˡ = Wˡ hˡ + bˡ with hˡ = φ(zˡ⁻¹) — the plain MLP's layer.

With the branch's options (:mod:`hevar.blocks.base`): hˡ = drop_p(φ(norm(zˡ⁻¹))) and, post-norm,
zˡ = norm(Wˡhˡ + bˡ). Layer 1 is the input layer, act = None: z¹ = W¹x + b¹ (x is not activated).

Forward and backward (one input; Wˡ_ij ~ σ_{w,l}·N(0, 1), bˡ = σ_b·(standard normal))::

    zˡ = Wˡ hˡ + bˡ,        δˡ⁻¹ = φ'(zˡ⁻¹) ⊙ (Wˡ)ᵀ δˡ,        ∂J/∂Wˡ = δˡ (hˡ)ᵀ

Mean-field maps (V, G of :mod:`hevar.meanfield.theory`; s_in = σ_{w,l}²N_{l-1}, s_out = σ_{w,l}²N_l;
independence of Wˡ from zˡ⁻¹ forward and the gradient-independence assumption backward)::

    qˡ = s_in·V(qˡ⁻¹) + σ_b²   (q¹ = s_in·q_in + σ_b²),        q̃ˡ⁻¹ = q̃ˡ · s_out·G(qˡ⁻¹)

and with dropout and normalisation V(q) → V(q')/p, G(q) → G(q')/(p·q) (q' = 1 behind a
pre-norm); a post-norm makes qˡ = 1 and multiplies the backward factor by 1/q_y, q_y the
value before it. The plain block's maps are exactly :func:`hevar.meanfield.theory.log_q_continue`
and the χ of :func:`~hevar.meanfield.theory.log_q_tilde_trajectory`, vectorised over the run the
same way, so an MLP's theory columns are the same numbers as before blocks existed.

In the engine the stacked pass computes Gˡ·[h₁ … h_K] for all K configurations at once; the
stream carries a log scale when the block is equivariant (φ positively homogeneous or behind a
pre-norm), and δ always does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hevar.blocks import norm as norms
from hevar.blocks.base import Block, log_b_of
from hevar.engine.stacked import StackedPass, colsq
from hevar.meanfield import theory

Array = np.ndarray


@dataclass(frozen=True)
class Dense(Block):
    """zˡ = Wˡ·drop_p(φ(norm(zˡ⁻¹))) + bˡ (norm and dropout optional; act None: the input layer)."""

    @property
    def plain(self) -> bool:
        """No normalisation and no dropout: the MLP's own layer."""
        return not self.norm and self.keep_prob == 1

    def spec(self) -> str:
        if self.act is None:
            return "input"
        parts = [f"{self.norm_at}{self.norm}"] if self.norm else []
        parts += [f"drop{self.keep_prob:g}"] if self.keep_prob < 1 else []
        return "-".join(parts + ["dense"])

    # --- engine -----------------------------------------------------------------------------------

    def forward(self, ctx: StackedPass, l: int, z: Array | None, t: Array) -> tuple[Array, Array]:
        """zˡ from the stream (ẑ, t) of zˡ⁻¹ (None for the input layer): (stored zˡ, its log scale)."""
        n_out = ctx.widths[l]
        h, h_scale, kept = self.branch_forward(ctx, l, z, t, consume=True)
        G = ctx.weights.get(l)
        u = ctx.take(n_out)
        u3 = ctx.per_config(u)
        # A non-homogeneous forward pass may overflow here; it is detected and recorded by settle_forward.
        with np.errstate(over="ignore", invalid="ignore"):
            if self.act is None:
                u3[...] = (G @ h)[:, None, :]  # the same for every configuration
            else:
                np.matmul(G, h, out=u)
        ctx.give(h)
        top = _affine(ctx, l, u3, h_scale)
        if self.post_norm:
            top = self.post_norm_forward(u, top, kept, ctx.K)
        if kept:
            ctx.kept[l] = kept
        return u, ctx.settle_forward(l, u, top)

    def backward(self, ctx: StackedPass, l: int, d: Array, s: Array) -> tuple[Array, Array]:
        """δˡ⁻¹ from the stored δˡ ``d`` with log scale ``s``: (stored δˡ⁻¹, its log scale)."""
        kept = ctx.kept.pop(l)
        if self.post_norm:
            s = self.post_norm_backward(d, s, kept)
            ctx.du[l] = (colsq(d), s)
        G = ctx.weights.get(l)
        v = ctx.take(ctx.widths[l - 1])
        np.matmul(G.T, d, out=v)
        ctx.give(d)
        extra = self.branch_backward(ctx, v, kept)
        log_d_scale = s + ctx.log_w[:, l - 1]
        if extra is not None:
            log_d_scale = log_d_scale + extra
        return v, ctx.settle_backward(l - 1, v, log_d_scale)

    def reference(self, W: Array, b: Array, z: Array, mask: Array | None):
        """(zˡ, hˡ, vjp) for one configuration, vjp: δˡ ↦ (δˡ⁻¹, ∂J/∂uˡ)."""
        h, back = self.reference_branch(z, mask)
        y = W @ h + b[:, None]
        out = norms.reference_forward(self.norm, y) if self.post_norm else y

        def vjp(delta: Array):
            d_u = norms.reference_backward(self.norm, y, delta) if self.post_norm else delta
            return back(W.T @ d_u), d_u

        return out, h, vjp

    # --- theory -----------------------------------------------------------------------------------

    def log_q_run(self, log_q_prev, s_in, sigma_b2, widths, q_in=1.0):
        s_in = np.asarray(s_in, dtype=float)
        if self.act is None:
            if len(s_in) != 1:
                raise ValueError("the input layer is one block")
            with np.errstate(divide="ignore"):
                return np.array([np.logaddexp(np.log(s_in[0] * q_in), log_b_of(sigma_b2))])
        if self.plain:
            return theory.log_q_continue(self.act, log_q_prev, s_in, sigma_b2)
        out = np.empty(len(s_in))
        log_b = log_b_of(sigma_b2)
        log_q = log_q_prev
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for i, s in enumerate(s_in):
                log_q_y = float(np.logaddexp(math.log(s) + float(self.log_h(log_q)), log_b))
                log_q = out[i] = 0.0 if self.post_norm else log_q_y
        return out

    def log_chi_run(self, log_q_prev, s_in, s_out, sigma_b2, widths):
        log_q_prev = np.asarray(log_q_prev, dtype=float)
        s_out = np.asarray(s_out, dtype=float)
        if self.plain:  # exactly the MLP's: ln(s_out·G(qˡ⁻¹))
            g = theory.G(self.act, np.exp(log_q_prev))
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.log(s_out * g)
        widths = np.asarray(widths)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = np.log(s_out) + self.log_branch_chi(log_q_prev)
            if self.post_norm:
                out = out + self.log_post(self._log_q_y(log_q_prev, s_in, sigma_b2))
        return out

    def log_du_run(self, log_q_prev, s_in, sigma_b2, widths):
        if not self.post_norm:
            return None
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return self.log_post(self._log_q_y(log_q_prev, s_in, sigma_b2))

    def _log_q_y(self, log_q_prev, s_in, sigma_b2):
        """ln q of Wˡhˡ + bˡ before a post-norm, vectorised over the run."""
        return np.logaddexp(np.log(np.asarray(s_in, dtype=float)) + self.log_h(log_q_prev), log_b_of(sigma_b2))


def _affine(ctx: StackedPass, l: int, u3: Array, h_scale: Array) -> Array:
    """u ← σ_{w,l}·u + σ_b·bˡ in the stored frame (u3: (N_l, K, B), u = G·ĥ); returns the log scale.

    Scaled: zˡ = exp(log_a)·u + σ_b·b with log_a = h_scale + ln σ_{w,l}, normalised by the larger
    of the two terms so that neither coefficient overflows. Unscaled: the plain products.
    """
    n_out = u3.shape[0]
    if ctx.scaled:
        log_a = h_scale + ctx.log_w[:, l - 1]
        if ctx.has_bias:
            top = np.maximum(log_a, ctx.log_b)
            top = np.where(np.isfinite(top), top, 0.0)
            ca = np.exp(log_a - top).astype(ctx.dt)
            cb = np.exp(ctx.log_b - top).astype(ctx.dt)
            np.multiply(u3, ca[None, :, None], out=u3)
            b = ctx.streams.bias(l, n_out, ctx.dt)
            np.add(u3, b[:, None, None] * cb[None, :, None], out=u3)
        else:
            top = log_a
            if not np.all(np.isfinite(top)):  # σ_w = 0: zˡ is exactly 0
                u3[:, ~np.isfinite(top), :] = 0
                top = np.where(np.isfinite(top), top, 0.0)
        return top
    with np.errstate(over="ignore", invalid="ignore"):
        np.multiply(u3, ctx.weight_std[:, l - 1].astype(ctx.dt)[None, :, None], out=u3)
        if ctx.has_bias:
            b = ctx.streams.bias(l, n_out, ctx.dt)
            np.add(u3, b[:, None, None] * ctx.bias_std.astype(ctx.dt)[None, :, None], out=u3)
    return h_scale  # zeros: an unscaled pass carries no log scale
