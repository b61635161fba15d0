"""Dropout on a weight's input, with keep probability p (inverted dropout, as PyTorch and Keras):

    h ← m ⊙ h / p,   mᵢ ~ Bernoulli(p) independently per unit and input,

so E[h] is unchanged and E[h²] grows by 1/p. The backward pass multiplies δ by the same m/p.

Mean-field: a dense layer behind dropout has qˡ = σ_w²N·V(qˡ⁻¹)/p + σ_b² and
q̃ˡ⁻¹ = q̃ˡ·σ_w²N·G(qˡ⁻¹)/p: the map is the plain one with σ_w²N replaced by σ_w²N/p. For ReLU
(χ = σ_w²N/2 at every q) the critical point moves to σ_w²·N = 2p (Pretorius et al., "Critical
initialisation for deep signal propagation in noisy rectifier neural networks", 2018). For tanh the
q-map and χ₁ keep their shape with s/p, so the σ_w²·N where χ₁ = 1 is p times the plain one at the
same σ_b²; what dropout destroys there (Schoenholz et al. 2017, §5) is the correlation map's fixed
point c* = 1 and with it the divergence of the depth scale ξ_c — a statement about cˡ, which this
package measures once correlations are added.

The mask is common to the K configurations of a pass (common random numbers, like the weights) and
is drawn from its own stream keyed by (seed, layer, shape) as uniforms u, m = [u < p]: masks of
different p are nested, so a sweep over p compares the same networks.
"""

from __future__ import annotations

import math

import numpy as np

Array = np.ndarray


def mask(streams, layer: int, n: int, batch: int, keep_prob: float, dt: np.dtype) -> Array:
    """m/p of layer ``layer``'s input, shape (n, batch), in ``dt``."""
    u = streams.uniforms(layer, n, batch)
    return np.where(u < keep_prob, 1.0 / keep_prob, 0.0).astype(dt)


def apply(h: Array, m: Array, K: int) -> None:
    """h ← h ⊙ m/p in place; h is (n, K·B), ``m`` (n, B) is shared by the K configurations."""
    n, C = h.shape
    h3 = h.reshape(n, K, C // K)
    np.multiply(h3, m[:, None, :], out=h3)


def kept_bytes(n: int, batch: int, dt: np.dtype) -> int:
    """The mask is kept for the backward pass (one per layer, not per configuration)."""
    return n * batch * np.dtype(dt).itemsize


def log_factor(keep_prob: float) -> float:
    """ln of the factor dropout puts on E[h²] and on q̃ through the layer: −ln p."""
    return -math.log(keep_prob)
