"""The input–output Jacobian of the network and its singular values, measured exactly.

For an input x the Jacobian of the last pre-activations with respect to the input is

    J = ∂zᴸ/∂x = Wᴸ Dᴸ⁻¹ Wᴸ⁻¹ ⋯ D¹ W¹,   Dˡ = diag φ'(zˡ(x)),

with L weight matrices and L - 1 derivative layers, because hevar's input is not activated
(φ(z⁰) := x, the convention of :mod:`hevar.engine.passes`). Its squared singular values λ, the
eigenvalues of JJᵀ, are what Pennington, Schoenholz & Ganguli (2017) call the spectrum: dynamical
isometry is all λ near 1. Their mean-field predictions are in :mod:`hevar.meanfield.spectrum`.

How it is computed
------------------
- The forward pass is :func:`hevar.engine.pairs.stacked_forward`: the same weights (every weight
  distribution, from the seed's :class:`~hevar.engine.passes.Streams`), the K configurations of a
  σ_w² / σ_b² grid stacked, and inputs x ~ N(0, I) from ``streams.inputs(N_0, n_inputs)``.
- J is accumulated from the input side, A¹ = G¹, Aˡ = Gˡ (Dˡ⁻¹ ⊙ Aˡ⁻¹) (a batched product over the K
  configurations and the inputs), with the standard draws Gˡ and the weight scales σ_{w,l} carried as
  a logarithm; A is renormalised to unit Frobenius norm every layer, so neither a vanishing nor an
  exploding J under- or overflows. Cost per configuration and input: L products of N_l × N_{l-1} by
  N_{l-1} × N_0 matrices, then one SVD.
- The singular values come from LAPACK's SVD (``numpy.linalg.svd``, gesdd) of the renormalised A,
  which is backward stable: each σᵢ is exact to about 1e-15·σ_max, so squared singular values far below
  σ_max² (the zeros of a relu Jacobian, the small end of a deep Gaussian product) carry an absolute,
  not relative, error. Exact SVD is done up to :data:`MAX_WIDTH` = 1024 units per layer (about 1 s per
  configuration and input at L = 10 on 2 cores); beyond it :func:`measure_jacobian` refuses, and only
  the moments — traces of (JJᵀ)ᵏ, which a probe-vector estimator can give at any width — are in reach.

Pure: no files, no printing, randomness only from the streams passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hevar.engine.pairs import stacked_forward
from hevar.engine.passes import Streams
from hevar.meanfield.activations import Activation

Array = np.ndarray

MAX_WIDTH = 1024  # widest layer for which the exact SVD is done


@dataclass(frozen=True)
class JacobianSpectrum:
    """Squared singular values of J for K configurations × B inputs of one seed."""

    log_sv2: Array  # (K, B, r), ln λ (λ = squared singular value) in descending order, r = min(N_0, N_L); -inf for exact zeros
    status: tuple[str, ...]  # per configuration: "ok" or "overflow at layer l" (then its log_sv2 is nan)

    @property
    def sv2(self) -> Array:
        """λ itself, (K, B, r); inf or 0 where it leaves float64."""
        with np.errstate(over="ignore"):
            return np.exp(self.log_sv2)


def measure_jacobian(act: Activation, widths: tuple[int, ...], weight_std: Array, bias_std: Array, n_inputs: int,
                     streams: Streams, dtype: str = "float64") -> JacobianSpectrum:
    """The squared singular values of J = ∂zᴸ/∂x for ``n_inputs`` inputs and K stacked configurations.

    Parameters
    ----------
    act : Activation
    widths : tuple of int, length L+1
        (N_0, ..., N_L), each at most :data:`MAX_WIDTH`.
    weight_std : array, shape (K, L)
        σ_{w,l}, raw standard deviations (as for :func:`hevar.engine.passes.measure`).
    bias_std : array, shape (K,)
        σ_b.
    n_inputs : int
        B, inputs x ~ N(0, I) per seed (J depends on x through the Dˡ).
    streams : Streams
    dtype : {"float32", "float64"}
        Of the forward pass; J is accumulated and decomposed in float64.

    Returns
    -------
    JacobianSpectrum
    """
    widths = tuple(int(n) for n in widths)
    if max(widths) > MAX_WIDTH:
        raise ValueError(f"the exact Jacobian SVD is done for widths up to {MAX_WIDTH}; got {max(widths)}")
    weight_std = np.asarray(weight_std, dtype=float)
    K, L = weight_std.shape
    B = int(n_inputs)
    x = streams.inputs(widths[0], B, np.dtype(dtype))
    with np.errstate(divide="ignore"):
        log_w = np.log(weight_std)
    status = ["ok"] * K
    alive = np.ones(K, dtype=bool)
    A = None
    log_a = np.zeros((K, B))
    dphi = None
    for l, G, z, _, finite in stacked_forward(act, widths, weight_std, bias_std, x, streams, dtype):
        for k in np.flatnonzero(alive & ~finite):
            status[k], alive[k] = f"overflow at layer {l}", False
        G = np.asarray(G, dtype=float)
        if l == 1:
            A = np.broadcast_to(G, (K, B) + G.shape).copy()
        else:
            A = np.matmul(G, dphi[..., None] * A)
        log_a += log_w[:, l - 1][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            fro = np.sqrt(np.einsum("kbij,kbij->kb", A, A))
            ok = (fro > 0) & np.isfinite(fro)
            A /= np.where(ok, fro, 1.0)[..., None, None]
            log_a += np.where(ok, np.log(np.where(ok, fro, 1.0)), 0.0)
        if l < L:
            with np.errstate(over="ignore", invalid="ignore"):
                # φ'(zˡ) per configuration and input, (K, B, N_l); the stored z has zˡ's signs (homogeneous
                # φ', which is what the renormalisation touches, is scale-free).
                dphi = np.where(finite[None, :, None], np.asarray(act.dphi(np.array(z, dtype=float)), dtype=float),
                                0.0).transpose(1, 2, 0)
    sv = np.linalg.svd(A, compute_uv=False)
    with np.errstate(divide="ignore"):
        log_sv2 = 2 * np.log(sv) + 2 * log_a[..., None]
    log_sv2[~alive] = np.nan
    return JacobianSpectrum(log_sv2, tuple(status))


def spectrum_moments(log_sv2: Array) -> dict[str, Array]:
    """Per configuration and input: moments of the squared singular values λ, and their extremes.

    Parameters
    ----------
    log_sv2 : array, shape (..., r)
        ln λ (as in :class:`JacobianSpectrum`).

    Returns
    -------
    dict of arrays of shape (...): ``log_mean`` (ln of the mean of λ, i.e. ln tr(JJᵀ)/r),
    ``log_m2`` (ln mean λ²), ``normalized_var`` (mean λ²/(mean λ)² - 1: the relative variance the
    free-probability prediction is for), ``log_max`` and ``log_min`` (ln of the largest and smallest λ;
    -inf when J is singular, as a relu Jacobian is).
    """
    a = np.asarray(log_sv2, dtype=float)
    top = np.max(a, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        m1 = np.mean(np.exp(a - top), axis=-1)
        m2 = np.mean(np.exp(2 * (a - top)), axis=-1)
        return dict(log_mean=np.log(m1) + top[..., 0], log_m2=np.log(m2) + 2 * top[..., 0],
                    normalized_var=m2 / (m1 * m1) - 1, log_max=np.max(a, axis=-1), log_min=np.min(a, axis=-1))
