"""Measured correlations between pairs of inputs, through the same network as :mod:`hevar.engine.passes`.

For P pairs of inputs (x¹, x²) with a chosen correlation c⁰ the forward pass records, per layer and
pair, the correlation of the two pre-activation vectors

    cˡ = ⟨zˡ(x¹), zˡ(x²)⟩ / √(⟨zˡ(x¹), zˡ(x¹)⟩·⟨zˡ(x²), zˡ(x²)⟩),

the quantity whose mean-field recursion is :func:`hevar.meanfield.correlations.c_trajectory`.

How it is computed
------------------
- **The same network.** Weights and biases come from the seed's :class:`~hevar.engine.passes.Streams`
  (``weights(l, N_l, N_{l-1})`` and ``bias(l, N_l)``), so a pair measurement sees exactly the network
  whose qˡ and q̃ˡ :func:`~hevar.engine.passes.measure` records, for every weight distribution. The K
  configurations of a σ_w² / σ_b² grid share the draw and are stacked into one product per layer,
  as there (common random numbers).
- **Exact input correlation.** The pair inputs are built from their own stream (kind
  :data:`PAIR_STREAM`, keyed by seed index, N₀ and P, not by c⁰): for each pair, two standard-normal
  vectors are orthonormalised into e₁, e₂ and x¹ = √(N₀q⁰)·e₁, x² = √(N₀q⁰)·(c⁰e₁ + √(1-c⁰²)·e₂). So
  ‖x¹‖² = ‖x²‖² = N₀q⁰ and c⁰ hold exactly, with no O(1/√N₀) input noise, and every c⁰ uses the same
  directions (common random numbers across an input-correlation grid).
- **1 - c without cancellation.** Near c = 1 (the ordered phase) 1 - cˡ is computed as
  ½‖ẑ¹ - ẑ²‖² with ẑ = z/‖z‖, which keeps its relative precision down to 1 - c ≈ 1e-28 in float64
  where 1 - ⟨ẑ¹, ẑ²⟩ would stop at 1e-16.
- **Scale.** For positively homogeneous φ the stored zˡ is renormalised every layer per configuration
  (c is scale-free; the scale is carried as a logarithm, so depth does not overflow). Other activations
  run unscaled; a configuration whose zˡ stops being finite is marked ``overflow at layer l`` and its
  entries from that layer on are nan. Sums are taken in float64 whatever the dtype.

Pure: no files, no printing, randomness only from the streams passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hevar.engine.passes import Streams
from hevar.meanfield.activations import Activation

Array = np.ndarray

PAIR_STREAM = 16  # stream kind of the pair inputs (passes.Streams uses 0..3 for weights, bias, inputs, readout)


@dataclass(frozen=True)
class PairMeasurement:
    """Per-configuration, per-layer correlations of one seed. Arrays are (K, L) unless stated."""

    c: Array  # mean over pairs of cˡ
    c_sd: Array  # standard deviation over pairs of cˡ (ddof = 1; nan for one pair)
    one_minus_c: Array  # mean over pairs of 1 - cˡ, computed as ½‖ẑ¹ - ẑ²‖² (no cancellation near c = 1)
    c_pairs: Array  # (K, L, P): cˡ of every pair
    log_q: Array  # ln of the mean over both inputs of every pair of mean (zˡ)²
    status: tuple[str, ...]  # per configuration: "ok" or "overflow at layer l"


def pair_inputs(streams: Streams, n: int, n_pairs: int, input_corr: float, q_in: float = 1.0,
                dtype: str = "float64") -> Array:
    """The pair inputs, shape (n, 2·n_pairs): columns 2p and 2p+1 are x¹ and x² of pair p.

    Each pair has ‖x¹‖² = ‖x²‖² = n·q_in and ⟨x¹, x²⟩ = n·q_in·input_corr exactly (see the module
    docstring); the directions come from the stream of kind :data:`PAIR_STREAM` and do not depend on
    ``input_corr``.
    """
    if n < 2:
        raise ValueError("pairs of inputs with a chosen correlation need an input dimension N_0 >= 2")
    if not -1.0 <= input_corr <= 1.0:
        raise ValueError(f"input_corr must lie in [-1, 1], got {input_corr}")
    seq = np.random.SeedSequence(streams.base_seed, spawn_key=(streams.seed_index, PAIR_STREAM, n, n_pairs))
    a = np.random.default_rng(seq).standard_normal((n_pairs, 2, n))
    e1 = a[:, 0] / np.linalg.norm(a[:, 0], axis=1, keepdims=True)
    e2 = a[:, 1] - np.sum(a[:, 1] * e1, axis=1, keepdims=True) * e1
    e2 /= np.linalg.norm(e2, axis=1, keepdims=True)
    radius = math.sqrt(n * q_in)
    x = np.empty((n, n_pairs, 2))
    x[:, :, 0] = radius * e1.T
    x[:, :, 1] = radius * (input_corr * e1 + math.sqrt((1 - input_corr) * (1 + input_corr)) * e2).T
    return x.reshape(n, 2 * n_pairs).astype(dtype)


def stacked_forward(act: Activation, widths: tuple[int, ...], weight_std: Array, bias_std: Array, x: Array,
                    streams: Streams, dtype: str = "float64"):
    """The forward pass of K configurations on the columns of ``x``, stacked, one layer at a time.

    A generator: for l = 1..L it yields ``(l, G, z, log_scale, finite)`` with G the standard draw Gˡ
    (N_l, N_{l-1}) from ``streams``, z the stored pre-activations of shape (N_l, K, C) (C = columns of
    x), zˡ = exp(log_scale[k])·z[:, k] per configuration, and ``finite`` (K,) whether every entry of a
    configuration is finite. For positively homogeneous φ every configuration is renormalised to unit
    mean square per layer (log_scale carries it); otherwise log_scale is 0 and nothing is rescaled. A
    configuration that is not finite is set to 0 before φ is applied, so the others go on. The consumer
    must not modify z; φ(z) is computed after it resumes the generator.
    """
    dt = np.dtype(dtype)
    weight_std = np.asarray(weight_std, dtype=float)
    bias_std = np.asarray(bias_std, dtype=float)
    K, L = weight_std.shape
    cols = x.shape[1]
    with np.errstate(divide="ignore"):
        log_w, log_b = np.log(weight_std), np.log(bias_std)
    has_bias = bool(np.any(bias_std > 0))
    log_h = np.zeros(K)  # φ(zˡ⁻¹) = exp(log_h)·(stored), homogeneous φ only
    h = None
    for l in range(L):
        n_out = widths[l + 1]
        G = streams.weights(l + 1, n_out, widths[l], dt)
        if l == 0:
            z = np.broadcast_to((G @ x)[:, None, :], (n_out, K, cols)).copy()
        else:
            z = (G @ h.reshape(widths[l], K * cols)).reshape(n_out, K, cols)
        b = streams.bias(l + 1, n_out, dt) if has_bias else None
        with np.errstate(over="ignore", invalid="ignore"):
            if act.homogeneous:
                # zˡ = exp(a)·(G h) + σ_b·b with a = ln σ_w + log_h: divide by the larger term's factor.
                a = log_w[:, l] + log_h
                top = np.maximum(a, log_b) if has_bias else a
                top = np.where(np.isfinite(top), top, 0.0)
                z *= np.exp(a - top).astype(dt)[None, :, None]
                if has_bias:
                    z += b[:, None, None] * np.exp(log_b - top).astype(dt)[None, :, None]
                ms = np.einsum("nkc,nkc->k", z, z, dtype=float) / (n_out * cols)
                ok = (ms > 0) & np.isfinite(ms)
                inv_rms = np.where(ok, 1 / np.sqrt(np.where(ok, ms, 1.0)), 1.0)
                z *= inv_rms.astype(dt)[None, :, None]
                log_scale = top - np.log(inv_rms)
            else:
                log_scale = np.zeros(K)
                z *= weight_std[:, l].astype(dt)[None, :, None]
                if has_bias:
                    z += b[:, None, None] * bias_std.astype(dt)[None, :, None]
            finite = np.all(np.isfinite(z), axis=(0, 2))
        yield l + 1, G, z, log_scale, finite
        if l < L - 1:
            z[:, ~finite, :] = 0  # keep dead blocks finite so the others go on
            h = np.asarray(act.phi(z), dtype=dt)
            log_h = log_scale


def measure_correlations(act: Activation, widths: tuple[int, ...], weight_std: Array, bias_std: Array,
                         n_pairs: int, input_corr: float, streams: Streams, dtype: str = "float64",
                         q_in: float = 1.0) -> PairMeasurement:
    """Run the stacked forward pass of K configurations on P input pairs and record cˡ per pair.

    Parameters
    ----------
    act : Activation
    widths : tuple of int, length L+1
        (N_0, ..., N_L).
    weight_std : array, shape (K, L)
        σ_{w,l}, the raw standard deviation of each configuration and layer (as for
        :func:`hevar.engine.passes.measure`).
    bias_std : array, shape (K,)
        σ_b of each configuration.
    n_pairs : int
        P, the number of input pairs.
    input_corr : float
        c⁰ in [-1, 1].
    streams : Streams
        The seed's streams (the network is the one ``passes.measure`` sees with the same streams).
    dtype : {"float32", "float64"}
    q_in : float
        ‖x‖²/N_0 of every input.

    Returns
    -------
    PairMeasurement
    """
    widths = tuple(int(n) for n in widths)
    K, L = np.shape(weight_std)
    P = int(n_pairs)
    x = pair_inputs(streams, widths[0], P, input_corr, q_in, dtype)
    c_pairs = np.full((K, L, P), np.nan)
    gap_pairs = np.full((K, L, P), np.nan)
    log_q = np.full((K, L), np.nan)
    status = ["ok"] * K
    alive = np.ones(K, dtype=bool)
    for l, _, z, log_scale, finite in stacked_forward(act, widths, weight_std, bias_std, x, streams, dtype):
        for k in np.flatnonzero(alive & ~finite):
            status[k], alive[k] = f"overflow at layer {l}", False
        z4 = z.reshape(z.shape[0], K, P, 2)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            # Divided by each column's largest entry first, so a finite z never overflows its square.
            top = np.max(np.abs(z4), axis=0).astype(float)  # (K, P, 2)
            top = np.where(top > 0, top, 1.0)
            unit = z4 / top[None]  # float64
            sq = np.einsum("nkpi,nkpi->kpi", unit, unit)
            norms = np.sqrt(sq)
            c = np.einsum("nkp,nkp->kp", unit[..., 0], unit[..., 1]) / (norms[..., 0] * norms[..., 1])
            unit /= norms[None]
            diff = unit[..., 0] - unit[..., 1]
            gap = 0.5 * np.einsum("nkp,nkp->kp", diff, diff)
            log_ms = np.log(sq) + 2 * np.log(top)  # ln ‖z‖² per input, stored scale
            q = _log_mean_exp(log_ms.reshape(K, -1)) - math.log(z.shape[0]) + 2 * log_scale
        c_pairs[alive, l - 1] = c[alive]
        gap_pairs[alive, l - 1] = gap[alive]
        log_q[alive, l - 1] = q[alive]
    sd = c_pairs.std(axis=2, ddof=1) if P > 1 else np.full((K, L), np.nan)
    return PairMeasurement(c_pairs.mean(axis=2), sd, gap_pairs.mean(axis=2), c_pairs, log_q, tuple(status))


def _log_mean_exp(a: Array) -> Array:
    """ln mean(exp(a)) along the last axis, without overflow."""
    top = np.max(a, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.log(np.mean(np.exp(a - top), axis=-1)) + top[..., 0]
