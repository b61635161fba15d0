"""Normalisation of a layer's units, per input: LayerNorm and RMSNorm, with no learned gain or bias
at initialisation (they start at 1 and 0) and no ε (the exact normalisation; ε only matters once a
variance is as small as ε itself).

For one input (a column z ∈ R^N)::

    LayerNorm:  n = (z − μ)/σ,   μ = mean_i zᵢ,   σ² = mean_i (zᵢ − μ)²
    RMSNorm:    n = z/r,         r² = mean_i zᵢ²

so that mean_i nᵢ² = 1 *exactly*, at any width: the mean-field map of a normalisation is q ↦ 1.

Backward. The Jacobians are symmetric,

    J_LN = (I − 11ᵀ/N − nnᵀ/N)/σ,        J_RMS = (I − nnᵀ/N)/r,

a projection P of rank N − 2 (LayerNorm: 1/√N·1 and n/√N are orthonormal) or N − 1 (RMSNorm)
divided by the input's scale. In the wide limit P removes a vanishing part of δ, so

    q̃_in = q̃_out / q_in,

with q_in the variance of the normalised input (σ² → q_in for a zero-mean z, r² = q_in exactly).
At finite width the corrections are O(1/N) per layer and of both signs; in particular P does not
remove the k/N of an isotropic δ in a stack: successive outputs n are correlated through the
skip, so the incoming δ has already lost most of its component along 1 and n (measured: 0.995 of
‖δ‖² kept at N = 128 in a post-LN residual stack, where (N − 2)/N = 0.984), while E[1/σ̂²]·q_in
≈ 1 + 0.5/N. The map is the N → ∞ limit, and the Monte Carlo tests state the excess they allow.

In the engine the input arrives in the stored frame z = exp(t)·ẑ: the output n does not depend on
t, and the backward factor 1/σ = exp(−t)/σ̂ moves −t into δ's log scale.
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray

NORMS = ("ln", "rms")  # LayerNorm, RMSNorm


def forward(kind: str, z: Array, out: Array) -> Array:
    """out ← norm(z) column by column (out may be z); returns 1/σ̂ (or 1/r̂) per column, float64.

    A column that is exactly constant (σ̂ = 0) gives nan, as the normalisation is undefined there.
    """
    zf = z
    if kind == "ln":
        mean = zf.mean(axis=0, dtype=float)
        np.subtract(zf, mean.astype(z.dtype), out=out)
        src = out
    elif kind == "rms":
        src = zf
    else:
        raise ValueError(f"unknown normalisation {kind!r}; expected one of {NORMS}")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ms = np.einsum("nc,nc->c", src, src, dtype=float) / z.shape[0]
        inv = 1.0 / np.sqrt(ms)
    np.multiply(src, inv.astype(z.dtype), out=out)
    return inv


def backward(kind: str, v: Array, n: Array, inv: Array) -> None:
    """v ← J_normᵀ v in place (the stored frame's factor, see the module docstring), given the
    forward's output ``n`` and its 1/σ̂ per column ``inv``."""
    dt = v.dtype
    proj = np.einsum("nc,nc->c", n, v, dtype=float) / v.shape[0]  # mean_i nᵢ vᵢ
    if kind == "ln":
        v -= v.mean(axis=0, dtype=float).astype(dt)
    v -= n * proj.astype(dt)
    v *= inv.astype(dt)


def kept_bytes(n: int, cols: int, dt: np.dtype) -> int:
    """What :func:`backward` needs kept: the output n and 1/σ̂ per column."""
    return n * cols * np.dtype(dt).itemsize + cols * 8


# --- mean-field maps ----------------------------------------------------------------------------


def log_q_out() -> float:
    """ln q of a normalised layer: exactly 0 (mean_i nᵢ² = 1)."""
    return 0.0


def log_backward_factor(log_q_in):
    """ln(q̃_in/q̃_out) = −ln q_in (the wide limit; see the module docstring)."""
    return -np.asarray(log_q_in, dtype=float)


def reference_forward(kind: str, z: Array) -> Array:
    """The straightforward version (one configuration), for tests and :func:`measure_reference`."""
    if kind == "ln":
        c = z - z.mean(axis=0, keepdims=True)
        return c / np.sqrt(np.mean(c * c, axis=0, keepdims=True))
    return z / np.sqrt(np.mean(z * z, axis=0, keepdims=True))


def reference_backward(kind: str, z: Array, delta: Array) -> Array:
    """J_normᵀ δ written out from the Jacobian, column by column (an independent route to :func:`backward`)."""
    N = z.shape[0]
    out = np.empty_like(delta)
    for c in range(z.shape[1]):
        col = z[:, c]
        if kind == "ln":
            sigma = np.sqrt(np.mean((col - col.mean()) ** 2))
            n = (col - col.mean()) / sigma
            J = (np.eye(N) - np.ones((N, N)) / N - np.outer(n, n) / N) / sigma
        else:
            r = np.sqrt(np.mean(col**2))
            n = col / r
            J = (np.eye(N) - np.outer(n, n) / N) / r
        out[:, c] = J.T @ delta[:, c]
    return out
