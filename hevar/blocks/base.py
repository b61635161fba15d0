"""What every block is: one weight layer Wˡ with what comes before it, and its theory.

A network is a sequence of blocks l = 1..L; block l owns Wˡ (N_l × N_{l-1}), reads the *stream*
zˡ⁻¹ (the previous block's output, z⁰ := x) and writes zˡ. Each block carries

- its **forward and backward pass** in the engine's stacked form (:mod:`hevar.engine.stacked`: K
  configurations side by side, arrays in the log-scale stored frame), writing its records (qˡ of
  its output, ‖hˡ‖² of the weight's input, the gradient at its dense output) into the pass;
- its **mean-field maps**: ln qˡ from ln qˡ⁻¹, the backward factor ln(q̃ˡ⁻¹/q̃ˡ), ln E[(hˡ)²] and
  ln(E[(∂J/∂uˡ)²]/q̃ˡ) for Theorem 1.1's gradient norm — each vectorised over a *run* of equal
  consecutive blocks, which is how :class:`hevar.blocks.network.Network` calls them;
- its **parameters with units** as dataclass fields, and its spec text.

Every block shares the *branch* that feeds its weight, written here once::

    hˡ = drop_p( φ( norm(zˡ⁻¹) ) ),    uˡ = Wˡ hˡ                         (pre-norm; norm optional)

with its mean-field pieces E[h²] = V(q')/p and ln(q̃ at zˡ⁻¹ / q̃ at hˡ) = ln G(q') − ln p (+ the
normalisation's 1/q), where q' = 1 behind a normalisation and qˡ⁻¹ otherwise. What a
block does with uˡ — zˡ = uˡ + bˡ (:mod:`~hevar.blocks.dense`) or zˡ = zˡ⁻¹ + α(uˡ + bˡ)
(:mod:`~hevar.blocks.residual`), optionally normalised after (post-norm) — is the block's own.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hevar.blocks import dropout, norm as norms
from hevar.engine.pointwise import KERNELS, Pointwise, stored_bytes
from hevar.engine.stacked import StackedPass, colsq
from hevar.meanfield import theory
from hevar.meanfield.activations import Activation

Array = np.ndarray


@functools.lru_cache(maxsize=256)
def kernel_kind(act: Activation, dtype: str) -> str:
    """The :class:`~hevar.engine.pointwise.Pointwise` kind of ``act`` in ``dtype`` ("generic" if no special kernel)."""
    return Pointwise(act, np.dtype(dtype)).kind


@dataclass(frozen=True)
class Block:
    """A weight layer and the branch feeding it. Subclasses add what they do with uˡ = Wˡhˡ."""

    act: Activation | None = None  # φ of the branch; None only for the input layer (x is not activated)
    norm: str = ""  # normalisation ("" none, "ln" LayerNorm, "rms" RMSNorm; hevar.blocks.norm)
    norm_at: str = "pre"  # "pre": normalise zˡ⁻¹ before φ; "post": normalise the block's output zˡ
    keep_prob: float = 1.0  # dropout keep probability p on hˡ (1: no dropout)

    n_buffers: ClassVar[int] = 2  # (N, K·B) working arrays the engine must provide for this block

    # --- properties the engine plans with ---------------------------------------------------------

    @property
    def pre_norm(self) -> bool:
        return bool(self.norm) and self.norm_at == "pre"

    @property
    def post_norm(self) -> bool:
        return bool(self.norm) and self.norm_at == "post"

    @property
    def equivariant(self) -> bool:
        """f(c·z) = c·f(z) or f(z) for c > 0: the block can run on the stored frame (ẑ, t) without
        materialising z, so the stream may carry a log scale (see :mod:`hevar.engine.stacked`)."""
        return self.act is None or self.act.homogeneous or self.pre_norm

    def generic_kernel(self, dtype: str) -> bool:
        return self.act is not None and kernel_kind(self.act, dtype) not in KERNELS

    def kept_bytes(self, n_in: int, n_out: int, cols: int, batch: int, dtype: str) -> int:
        """Bytes this block keeps for its backward pass, for ``cols`` = k·B columns."""
        if self.act is None:
            return 0
        dt = np.dtype(dtype)
        out = n_in * cols * stored_bytes(kernel_kind(self.act, dtype), dt)
        if self.pre_norm:
            out += norms.kept_bytes(n_in, cols, dt)
        if self.post_norm:
            out += norms.kept_bytes(n_out, cols, dt)
        if self.keep_prob < 1:
            out += dropout.kept_bytes(n_in, batch, dt)
        return out

    def spec(self) -> str:
        """Short text naming the block (as in the architecture spec)."""
        raise NotImplementedError

    # --- engine: the branch -----------------------------------------------------------------------

    def branch_forward(self, ctx: StackedPass, l: int, z: Array | None, t: Array, consume: bool
                       ) -> tuple[Array, Array, dict]:
        """hˡ from the stream (ẑ, t): returns (stored hˡ, its log scale, what the backward needs).

        Records ‖hˡ‖² per column. ``consume``: hand zˡ⁻¹'s buffer back once φ has read it.
        """
        kept: dict = {}
        if self.act is None:
            ctx.h_col[l - 1] = np.tile(colsq(ctx.x), ctx.K)
            ctx.h_scale[l - 1] = t
            return ctx.x, t, kept
        src, scale = z, t
        if self.pre_norm:
            normed = np.empty_like(z)
            kept["pre"] = (normed, norms.forward(self.norm, z, normed), t)
            src, scale = normed, np.zeros(ctx.K)
        h = ctx.take(ctx.widths[l - 1])
        kept["dphi"] = ctx.kernel(self.act).forward(src, h)
        if consume:
            ctx.give(z)
        if self.keep_prob < 1:
            m = kept["mask"] = dropout.mask(ctx.streams, l, h.shape[0], ctx.batch, self.keep_prob, ctx.dt)
            dropout.apply(h, m, ctx.K)
        ctx.h_col[l - 1] = colsq(h)
        ctx.h_scale[l - 1] = scale
        return h, scale, kept

    def branch_backward(self, ctx: StackedPass, v: Array, kept: dict) -> Array | None:
        """v ← ∂J/∂zˡ⁻¹ through the branch, given v = ∂J/∂hˡ (stored); returns the log factor the
        normalisation adds to v's scale (None without one)."""
        m = kept.get("mask")
        if m is not None:
            dropout.apply(v, m, ctx.K)
        ctx.kernel(self.act).backward(v, kept["dphi"])
        if "pre" in kept:
            normed, inv, t = kept["pre"]
            norms.backward(self.norm, v, normed, inv)
            return -t
        return None

    def post_norm_forward(self, y: Array, top: Array, kept: dict, K: int) -> Array:
        """Normalise the block's output in place (post-norm); returns its new log scale (0)."""
        inv = norms.forward(self.norm, y, y)
        kept["post"] = (y.copy(), inv, top)
        return np.zeros(K)

    def post_norm_backward(self, d: Array, s: Array, kept: dict) -> Array:
        """d ← J_normᵀ d in place; returns the new log scale."""
        normed, inv, top = kept["post"]
        norms.backward(self.norm, d, normed, inv)
        return s - top

    # --- the straightforward version (one configuration), for tests and measure_reference ---------

    def reference_mask(self, streams, l: int, n_in: int, batch: int, dt) -> Array | None:
        """Dropout's m/p of layer ``l``'s input (the engine's own draw), or None."""
        if self.act is None or self.keep_prob == 1:
            return None
        return dropout.mask(streams, l, n_in, batch, self.keep_prob, np.dtype(dt))

    def reference_branch(self, z: Array, mask: Array | None):
        """hˡ from zˡ⁻¹ written out, and the map ∂J/∂hˡ ↦ ∂J/∂zˡ⁻¹ through the branch."""
        if self.act is None:
            return z, lambda d_h: d_h
        a = norms.reference_forward(self.norm, z) if self.pre_norm else z
        h = self.act.phi(a)
        if mask is not None:
            h = h * mask

        def back(d_h: Array) -> Array:
            if mask is not None:
                d_h = d_h * mask
            d_a = self.act.dphi(a) * d_h
            return norms.reference_backward(self.norm, z, d_a) if self.pre_norm else d_a

        return h, back

    # --- theory: the branch -----------------------------------------------------------------------

    def log_h(self, log_q_prev, q_in: float = 1.0):
        """ln E[(hˡ)²] = ln V(q') − ln p (ln q_in for the input layer), vectorised."""
        log_q_prev = np.asarray(log_q_prev, dtype=float)
        if self.act is None:
            return np.full(log_q_prev.shape, math.log(q_in))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.pre_norm:
                out = np.full(log_q_prev.shape, math.log(float(theory.V(self.act, 1.0))))
            elif self.act.homogeneous:
                out = np.log(theory.V(self.act, 1.0)) + log_q_prev
            else:
                out = np.log(theory.V(self.act, np.exp(log_q_prev)))
        return out + dropout.log_factor(self.keep_prob) if self.keep_prob < 1 else out

    def log_branch_chi(self, log_q_prev):
        """ln(q̃ at zˡ⁻¹ / q̃ at hˡ) = ln G(q') − ln p (+ the pre-norm's factor), vectorised."""
        log_q_prev = np.asarray(log_q_prev, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            q = np.ones(log_q_prev.shape) if self.pre_norm else np.exp(log_q_prev)
            out = np.log(theory.G(self.act, q))
            if self.keep_prob < 1:
                out = out + dropout.log_factor(self.keep_prob)
            if self.pre_norm:
                out = out + norms.log_backward_factor(log_q_prev)
        return out

    def log_post(self, log_q_y):
        """ln of the post-norm's backward factor at its input variance q_y (0 without one)."""
        if not self.post_norm:
            return 0.0
        return norms.log_backward_factor(log_q_y)

    # --- theory: hooks every block implements -----------------------------------------------------

    def log_q_run(self, log_q_prev: float | None, s_in: Array, sigma_b2: float, widths: Array,
                  q_in: float = 1.0) -> Array:
        """ln qˡ for a run of n equal blocks (s_in: (n,), σ_{w,l}²·N_{l-1}; widths: (n+1,)),
        from ln q of the run's input (None for the input layer)."""
        raise NotImplementedError

    def log_chi_run(self, log_q_prev: Array, s_in: Array, s_out: Array, sigma_b2: float, widths: Array) -> Array:
        """ln(q̃ˡ⁻¹/q̃ˡ) per block of a run, at its input variance qˡ⁻¹ (s_out: σ_{w,l}²·N_l)."""
        raise NotImplementedError

    def log_du_run(self, log_q_prev: Array, s_in: Array, sigma_b2: float, widths: Array) -> Array | None:
        """ln(E[(∂J/∂uˡ)²]/q̃ˡ) per block of a run; None where ∂J/∂uˡ = δˡ (a plain dense layer)."""
        return None


def log_b_of(sigma_b2: float) -> float:
    """ln σ_b² (−inf without bias)."""
    return float(np.log(sigma_b2)) if sigma_b2 > 0 else -math.inf


def log_alpha_of(alpha: float) -> float:
    """ln α (−inf for α = 0, SkipInit)."""
    return math.log(alpha) if alpha > 0 else -math.inf
