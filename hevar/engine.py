"""The NumPy MLP engine: one forward and one backward pass of the real network, measured per layer.

Network (layers l = 1..L, a batch of B inputs as columns)::

    zˡ = Wˡ φ(zˡ⁻¹) + bˡ,   φ(z⁰) := x ~ N(0, I),   Wˡ ∈ R^{N_l × N_{l-1}},  Wˡ_ij ~ N(0, σ_{w,l}²),  bˡ ~ N(0, σ_b²)

Backward pass of the same weights (no mean-field approximation) for the random linear readout
J = gᵀ zᴸ, g ~ N(0, I) per input::

    δᴸ = g,   δˡ = φ'(zˡ) ⊙ (Wˡ⁺¹)ᵀ δˡ⁺¹,   ∂J/∂Wˡ = δˡ φ(zˡ⁻¹)ᵀ  (per input)

Measured per layer: qˡ = mean (zˡ)², q̃ˡ = mean (δˡ)² (over units and inputs), and the per-input
weight-gradient squared norm ‖∂J/∂Wˡ‖²_F = ‖δˡ‖²·‖φ(zˡ⁻¹)‖² averaged over inputs.

How it is computed
------------------
- **Common random numbers.** Each weight matrix is σ_{w,l}·Gˡ with Gˡ a standard-normal matrix
  drawn from a stream keyed by (seed index, layer, shape) — see :class:`Streams`. All K
  configurations of a σ_w² / σ_b² grid share Gˡ, x, g and the standard-normal bias vectors, so they
  are stacked side by side into one product Gˡ·[H₁ … H_K] per layer.
- **Logarithmic scale.** δ is renormalised every layer and its scale carried as a logarithm (the
  backward pass is linear in δ), so q̃ˡ is exact at any depth. For positively homogeneous φ
  (relu, leaky_relu, linear) the forward pass is rescaled the same way, since φ(cz) = c·φ(z).
  Other activations run unscaled; a configuration whose forward pass overflows the dtype stops
  there and is reported as ``overflow at layer l``.
- **Memory.** Only φ'(zˡ) (L × N × K·B) is kept for the backward pass; the Gˡ are kept while they
  fit in ``weight_budget`` bytes and regenerated from their streams otherwise.

Everything here is pure: no files, no printing, randomness only from the :class:`Streams` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hevar.activations import Activation

Array = np.ndarray

_WEIGHTS, _BIAS, _INPUT, _READOUT = 0, 1, 2, 3


@dataclass(frozen=True)
class Streams:
    """Independent random streams for one seed, keyed by what they draw.

    Every array is drawn from ``SeedSequence(base_seed, spawn_key=(seed_index, kind, ...))`` with the
    layer and shape in the key, so a number depends only on the seed and the identity of what it is
    — not on the order of work, the number of workers, or the rest of the sweep. Nets of different
    depth share their first layers; every σ_w², σ_b² and activation shares the same draws.
    """

    base_seed: int  # the run's --seed
    seed_index: int  # 0 .. seeds-1

    def _normal(self, key: tuple[int, ...], shape: tuple[int, ...], dtype: np.dtype) -> Array:
        seq = np.random.SeedSequence(self.base_seed, spawn_key=(self.seed_index, *key))
        return np.random.default_rng(seq).standard_normal(shape, dtype=dtype)

    def weights(self, layer: int, n_out: int, n_in: int, dtype: np.dtype) -> Array:
        """Standard-normal Gˡ of shape (n_out, n_in)."""
        return self._normal((_WEIGHTS, layer, n_out, n_in), (n_out, n_in), dtype)

    def bias(self, layer: int, n: int, dtype: np.dtype) -> Array:
        """Standard-normal bias direction of layer ``layer``, shape (n,)."""
        return self._normal((_BIAS, layer, n), (n,), dtype)

    def inputs(self, n: int, batch: int, dtype: np.dtype) -> Array:
        """Inputs x, shape (n, batch)."""
        return self._normal((_INPUT, n, batch), (n, batch), dtype)

    def readout(self, n: int, batch: int, dtype: np.dtype) -> Array:
        """Readout directions g (= δᴸ), shape (n, batch)."""
        return self._normal((_READOUT, n, batch), (n, batch), dtype)


@dataclass(frozen=True)
class Measurement:
    """Per-configuration, per-layer measurements of one seed, as natural logarithms.

    Arrays have shape (K, L): configuration k, layer l = 1..L in column l-1. Entries past a
    configuration's overflow are nan.
    """

    log_q: Array  # ln qˡ = ln mean over units and inputs of (zˡ)²
    log_q_tilde: Array  # ln q̃ˡ = ln mean of (δˡ)²
    log_grad_norm2: Array  # ln mean over inputs of ‖δˡ‖²·‖φ(zˡ⁻¹)‖²
    log_delta_norm2: Array  # ln mean over inputs of ‖δˡ‖²
    log_act_norm2: Array  # ln mean over inputs of ‖φ(zˡ⁻¹)‖²
    status: tuple[str, ...]  # per configuration: "ok", "overflow at layer l", "underflow at layer l"


def measure(
    act: Activation,
    widths: tuple[int, ...],
    weight_std: Array,
    bias_std: Array,
    batch: int,
    streams: Streams,
    dtype: str = "float64",
    weight_budget: int = 512 * 2**20,
) -> Measurement:
    """Run the stacked forward/backward pass for K configurations sharing one draw.

    Parameters
    ----------
    act : Activation
    widths : tuple of int, length L+1
        (N_0, N_1, ..., N_L); N_0 is the input dimension.
    weight_std : array, shape (K, L)
        σ_{w,l} (raw standard deviation, not σ_w²·N) of each configuration and layer.
    bias_std : array, shape (K,)
        σ_b of each configuration.
    batch : int
        B, the number of inputs.
    streams : Streams
        The random streams of this seed.
    dtype : {"float32", "float64"}
    weight_budget : int
        Bytes of standard-normal weight matrices kept between the passes; beyond it they are
        regenerated from ``streams`` for the backward pass (same numbers, twice the sampling).
    """
    dt = np.dtype(dtype)
    L = len(widths) - 1
    weight_std = np.asarray(weight_std, dtype=float)
    bias_std = np.asarray(bias_std, dtype=float)
    K = weight_std.shape[0]
    with np.errstate(divide="ignore"):
        log_w = np.log(weight_std)  # (K, L)
        log_b = np.log(bias_std)  # (K,)
    nan = np.full((K, L), np.nan)
    log_q, log_qt, log_gn, log_dn, log_an = (nan.copy() for _ in range(5))
    alive = np.ones(K, dtype=bool)
    status = ["ok"] * K

    keep_weights = sum(widths[l] * widths[l + 1] for l in range(L)) * dt.itemsize <= weight_budget
    kept: list[Array | None] = [None] * L

    x = streams.inputs(widths[0], batch, dt)
    h = x[:, None, :]  # φ(z⁰) = x, shared by all configurations: (N_0, 1, B)
    log_h_scale = np.zeros(K)  # φ(z) = exp(log_h_scale)·h for homogeneous φ
    log_h_norm2 = np.broadcast_to(np.log(np.einsum("nb,nb->b", x, x, dtype=float)), (K, batch))
    log_h_norms: list[Array] = []  # ln ‖φ(zˡ⁻¹)‖² per configuration and input, for each layer
    dphis: list[Array | None] = []

    for l in range(L):
        n_out = widths[l + 1]
        G = streams.weights(l + 1, n_out, widths[l], dt)
        if keep_weights:
            kept[l] = G
        b = streams.bias(l + 1, n_out, dt)[:, None, None]
        u = (G @ h.reshape(widths[l], -1)).reshape(n_out, -1, batch)  # (N_l, K or 1, B)
        log_h_norms.append(log_h_norm2)
        log_an[:, l] = _log_mean_exp(log_h_norm2)
        log_a = log_h_scale + log_w[:, l]  # zˡ = exp(log_a)·u + σ_b·b
        if act.homogeneous:
            # Normalise by the larger of the two terms so neither coefficient overflows.
            top = np.maximum(log_a, log_b)
            top = np.where(np.isfinite(top), top, 0.0)
            ca = np.exp(log_a - top).astype(dt)[None, :, None]
            cb = np.exp(log_b - top).astype(dt)[None, :, None]
            z = u * ca + b * cb
            ms = np.mean(np.square(z, dtype=float), axis=(0, 2))
            ok = ms > 0
            scale = np.where(ok, np.sqrt(np.where(ok, ms, 1.0)), 1.0)
            z /= scale.astype(dt)[None, :, None]
            log_z_scale = top + np.log(scale)
            log_q[:, l] = np.where(alive & ok, 2 * log_z_scale, np.nan)  # mean of normalised z² is 1
            for k in np.flatnonzero(alive & ~ok):
                status[k], alive[k] = f"underflow at layer {l + 1}", False
        else:
            z = u * weight_std[:, l].astype(dt)[None, :, None] + b * bias_std.astype(dt)[None, :, None]
            with np.errstate(over="ignore", invalid="ignore"):
                ms = np.mean(np.square(z), axis=(0, 2), dtype=float)
            bad = ~np.isfinite(ms) & alive
            for k in np.flatnonzero(bad):
                status[k], alive[k] = f"overflow at layer {l + 1}", False
            if bad.any():
                z[:, bad, :] = 0  # keep the dead block finite so the others go on
            with np.errstate(divide="ignore"):
                log_q[:, l] = np.where(alive, np.log(ms), np.nan)
            log_z_scale = np.zeros(K)
        dphis.append(act.dphi(z))
        h = act.phi(z)
        hn = np.einsum("nkb,nkb->kb", h, h, dtype=float)
        with np.errstate(divide="ignore"):
            log_h_norm2 = np.log(hn) + 2 * log_z_scale[:, None]
        log_h_scale = log_z_scale

    # Backward: δ stored normalised, its scale carried in log_d_scale.
    g = streams.readout(widths[L], batch, dt)
    d = g[:, None, :]
    log_d_scale = np.zeros(K)
    d_norm2 = np.broadcast_to(np.einsum("nb,nb->b", g, g, dtype=float), (K, batch))
    for l in range(L - 1, -1, -1):
        # Layer l+1 (1-based) statistics from the normalised δ and its scale.
        with np.errstate(divide="ignore"):  # an all-zero δ (every unit dead) is ln 0 = -inf
            dn = np.log(d_norm2) + 2 * log_d_scale[:, None]  # ln ‖δ‖² per input, (K, B)
            log_qt[:, l] = np.log(d_norm2.mean(axis=1) / widths[l + 1]) + 2 * log_d_scale
        log_dn[:, l] = _log_mean_exp(dn)
        log_gn[:, l] = _log_mean_exp(dn + log_h_norms[l])
        if l == 0:
            break
        G = kept[l] if keep_weights else streams.weights(l + 1, widths[l + 1], widths[l], dt)
        v = (G.T @ d.reshape(widths[l + 1], -1)).reshape(widths[l], -1, batch)
        v = v * dphis[l - 1]
        ms = np.mean(np.square(v, dtype=float), axis=(0, 2))
        ok = ms > 0
        scale = np.where(ok, np.sqrt(np.where(ok, ms, 1.0)), 1.0)
        v /= scale.astype(dt)[None, :, None]
        log_d_scale = log_d_scale + log_w[:, l] + np.log(scale)
        d = v
        d_norm2 = np.einsum("nkb,nkb->kb", d, d, dtype=float)
        dphis[l - 1] = None  # free memory as we go

    dead = ~alive
    for arr in (log_qt, log_gn, log_dn):
        arr[dead, :] = np.nan
    return Measurement(log_q, log_qt, log_gn, log_dn, log_an, tuple(status))


def memory_estimate(widths: tuple[int, ...], n_configs: int, batch: int, dtype: str = "float64",
                    weight_budget: int = 512 * 2**20) -> int:
    """Peak bytes :func:`measure` needs for ``n_configs`` stacked configurations (an upper bound
    within a few per cent): the stored φ'(zˡ), the kept weights, and the working arrays of one layer."""
    item = np.dtype(dtype).itemsize
    L = len(widths) - 1
    cols = n_configs * batch
    dphi = sum(widths[1:L]) * cols * item
    weights = sum(widths[l] * widths[l + 1] for l in range(L)) * item
    kept = weights if weights <= weight_budget else 0
    largest = max(widths[l] * widths[l + 1] for l in range(L)) * item
    work = 6 * max(widths) * cols * max(item, 8)  # z, φ(z), φ'(z), u and float64 reductions
    return dphi + kept + largest + work


def _log_mean_exp(a: Array) -> Array:
    """ln mean(exp(a)) along the last axis, without overflow."""
    top = np.max(a, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.log(np.mean(np.exp(a - top), axis=-1)) + top[..., 0]


def measure_reference(
    act: Activation,
    widths: tuple[int, ...],
    weight_std: Array,
    bias_std: float,
    batch: int,
    streams: Streams,
    dtype: str = "float64",
) -> dict[str, Array]:
    """The straightforward version of :func:`measure` for one configuration: explicit weights,
    every zˡ and δˡ stored, no rescaling. The oracle for tests and the baseline for benchmarks.

    ``weight_std`` has shape (L,). Returns plain (not log) per-layer arrays ``q``, ``q_tilde``,
    ``grad_norm2``, and the lists ``weights``, ``biases``, ``z``, ``delta`` and the inputs ``x``
    and readout ``g`` (so that J = Σ_b g_bᵀ zᴸ_b can be recomputed).
    """
    dt = np.dtype(dtype)
    L = len(widths) - 1
    Ws = [weight_std[l] * streams.weights(l + 1, widths[l + 1], widths[l], dt) for l in range(L)]
    bs = [bias_std * streams.bias(l + 1, widths[l + 1], dt) for l in range(L)]
    x = streams.inputs(widths[0], batch, dt)
    g = streams.readout(widths[L], batch, dt)
    zs, hs = [], [x]
    for l in range(L):
        zs.append(Ws[l] @ hs[-1] + bs[l][:, None])
        hs.append(act.phi(zs[-1]))
    deltas = [g]
    for l in range(L - 1, 0, -1):
        deltas.insert(0, act.dphi(zs[l - 1]) * (Ws[l].T @ deltas[0]))
    q = np.array([np.mean(z.astype(float) ** 2) for z in zs])
    q_tilde = np.array([np.mean(d.astype(float) ** 2) for d in deltas])
    grad = np.array([
        np.mean(np.sum(deltas[l].astype(float) ** 2, axis=0) * np.sum(hs[l].astype(float) ** 2, axis=0))
        for l in range(L)
    ])
    return dict(q=q, q_tilde=q_tilde, grad_norm2=grad, weights=Ws, biases=bs, z=zs, delta=deltas, x=x, g=g)
