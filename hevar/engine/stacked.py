"""The state one stacked pass shares with the blocks it runs: buffers, the log-scale frame, records.

A pass runs K configurations side by side on one draw (:func:`hevar.engine.passes.measure`). Every
array of the pass has N rows and C = K·B columns, configuration k owning columns k·B .. (k+1)·B-1.

**The stored frame.** An array is stored up to a per-configuration factor carried as a logarithm:
the *stream* zˡ (a block's output) is ``exp(t)·ẑ`` with ``t`` of shape (K,), δˡ is ``exp(s)·δ̂``.
The backward pass is linear in δ, so δ always travels this way. The forward pass does too when
every block is *equivariant* — f(c·z) = c·f(z) for c > 0, as a dense layer with a positively
homogeneous φ, or any block whose φ sees only a normalised input (pre-LN) — which keeps qˡ exact
at depths where (σ_w²N/2)^L overflows. Otherwise it runs unscaled (t = 0) and an overflowing
configuration is stopped and recorded. A stored array is renormalised only when its mean square
leaves a safe band, which saves a pass over the array on most layers.

**Records** (per layer l = 1..L, reduced once after both passes by :func:`statistics`):
the mean square of the stored zˡ and its log scale (→ qˡ); ‖hˡ‖² per column and its log scale,
hˡ being the input of Wˡ (→ ‖φ(zˡ⁻¹)‖² for a plain dense layer); ‖δ̂ˡ‖² per column and its scale
(→ q̃ˡ); and, where it differs from δˡ, the gradient at the dense output uˡ = Wˡhˡ, whose norm
times ‖hˡ‖² is ‖∂J/∂Wˡ‖².
"""

from __future__ import annotations

import math

import numpy as np

from hevar.engine.pointwise import Pointwise

Array = np.ndarray

# Half-width of the band of ln(mean square) a stored array may drift in before it is renormalised.
RESCALE_BAND = {np.dtype(np.float32): 20.0, np.dtype(np.float64): 200.0}


def colsq(a: Array) -> Array:
    """Σ over rows of a², per column, as float64 (a: (n, C)).

    Summed in the array's dtype (fast); where a square or the sum leaves the dtype's normal range,
    as float32 does above |a| ≈ 1e19 and below ≈ 1e-19, summed again in float64 so that only a true
    overflow or underflow of a itself is one.
    """
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        col = np.einsum("nc,nc->c", a, a)
    if a.dtype != np.float64:
        # Squares below ~1e-38 are subnormal in float32 and lose digits silently; redo such sums too.
        tiny = np.finfo(a.dtype).tiny * 2.0**24
        if not np.all(np.isfinite(col)) or np.any((col < tiny) & (col > 0)) or np.any(col == 0):
            col = np.einsum("nc,nc->c", a, a, dtype=float)
    return col.astype(float, copy=False)


def normalise_terms(logs: list[Array]) -> tuple[list[Array], Array]:
    """Coefficients exp(log − top) of a sum Σ exp(logs[i])·aᵢ written as exp(top)·Σ cᵢ·aᵢ.

    ``top`` is the largest finite log per configuration (0 where none is), so no coefficient
    overflows; a term with log −inf (α = 0, σ = 0) gets coefficient 0.
    """
    top = np.maximum.reduce(logs) if len(logs) > 1 else logs[0]
    top = np.where(np.isfinite(top), top, 0.0)
    return [np.exp(lg - top) for lg in logs], top


class StackedPass:
    """Buffers, parameters and records of one stacked pass over K configurations.

    Blocks read the per-layer parameters (``log_w``, ``weight_std``, ``log_b``, ``bias_std``),
    borrow working arrays with :meth:`take` / :meth:`give`, keep what their backward pass needs in
    ``kept[l]``, and settle each new stream or δ with :meth:`settle_forward` / :meth:`settle_backward`.
    """

    def __init__(self, widths: tuple[int, ...], weight_std: Array, bias_std: Array, batch: int, streams,
                 dt: np.dtype, weights, x: Array, g: Array, scaled: bool, n_buffers: int):
        self.widths, self.batch, self.streams, self.dt, self.weights = widths, batch, streams, dt, weights
        self.x, self.g, self.scaled = x, g, scaled
        self.L = L = len(widths) - 1
        self.K = K = weight_std.shape[0]
        self.C = C = K * batch
        self.weight_std, self.bias_std = weight_std, bias_std
        band = RESCALE_BAND[dt]
        self.lo, self.hi = math.exp(-band), math.exp(band)  # the band, on the mean square of a stored array
        with np.errstate(divide="ignore"):
            self.log_w = np.log(weight_std)  # (K, L)
            self.log_b = np.log(bias_std)  # (K,)
        self.has_bias = bool(np.any(bias_std > 0))
        self.alive = np.ones(K, dtype=bool)
        self.status = ["ok"] * K
        n_max = max(widths)
        self._free = [np.empty(n_max * C, dtype=dt) for _ in range(n_buffers)]
        self._taken: dict[int, Array] = {}
        self.kept: dict[int, object] = {}  # layer → what its block's backward pass needs
        self._kernels: dict[str, Pointwise] = {}
        # Records, reduced by statistics().
        self.z_ms = np.zeros((L, K))  # mean square of the stored zˡ, before any renormalisation
        self.z_top = np.zeros((L, K))  # zˡ = exp(z_top)·(stored zˡ)
        self.h_col = np.empty((L, C))  # ‖stored hˡ‖² per column, hˡ the input of Wˡ (x for l = 1)
        self.h_scale = np.zeros((L, K))  # hˡ = exp(h_scale)·(stored hˡ)
        self.d_col = np.empty((L, C))  # ‖stored δˡ‖² per column
        self.d_scale = np.zeros((L, K))  # δˡ = exp(d_scale)·(stored δˡ)
        self.du: dict[int, tuple[Array | None, Array]] = {}  # layer → (‖stored ∂J/∂uˡ‖² or None = δˡ's, log scale)
        # The log factor a renormalisation added to zˡ's / δˡ's scale (nan: none), for hevar.engine.rescale.
        self.z_add = np.full((L, K), np.nan)
        self.d_add = np.full((L, K), np.nan)
        self.signalprop = False  # record the signal-propagation statistics (hevar.engine.signalprop)

    def enable_signalprop(self) -> None:
        """Record, per block, the channel mean², channel variance and residual branch mean square
        (:mod:`hevar.engine.signalprop`); off by default, so other passes do exactly what they did."""
        L, K = self.L, self.K
        self.signalprop = True
        self.sp_mean2, self.sp_var, self.sp_top = np.full((L, K), np.nan), np.full((L, K), np.nan), np.zeros((L, K))
        self.sp_branch, self.sp_branch_top = np.full((L, K), np.nan), np.zeros((L, K))

    def kernel(self, act) -> Pointwise:
        """The pointwise kernel of ``act`` in this pass's dtype (built once per pass)."""
        k = self._kernels.get(act.name)
        if k is None or k.act is not act:
            k = self._kernels[act.name] = Pointwise(act, self.dt)
        return k

    # --- buffers ------------------------------------------------------------------------------------

    def take(self, n: int) -> Array:
        """A free (n, C) working array."""
        buf = self._free.pop()
        view = buf[: n * self.C].reshape(n, self.C)
        self._taken[view.__array_interface__["data"][0]] = buf
        return view

    def give(self, view: Array) -> None:
        """Hand a working array from :meth:`take` back (arrays not taken, as x, are ignored)."""
        buf = self._taken.pop(view.__array_interface__["data"][0], None)
        if buf is not None:
            self._free.append(buf)

    def per_config(self, a: Array) -> Array:
        """The (n, K, B) view of an (n, C) array."""
        return a.reshape(a.shape[0], self.K, self.batch)

    # --- settling -----------------------------------------------------------------------------------

    def settle_forward(self, l: int, z: Array, top: Array) -> Array:
        """Record qˡ of the stored stream ``z`` = exp(-top)·zˡ and keep it in range; returns its log scale.

        Scaled passes renormalise configurations whose mean square left the band (and mark one
        that reached exactly 0 as underflowed); unscaled ones mark a configuration that overflowed
        and zero its columns so that the others go on.
        """
        n_out = z.shape[0]
        z3 = self.per_config(z)
        if self.signalprop:
            from hevar.engine import signalprop

            signalprop.record_stream(self, l, z3, top)
        col = colsq(z)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflowing block is recorded below
            ms = col.reshape(self.K, self.batch).sum(axis=1) / (n_out * self.batch)
        self.z_ms[l - 1], self.z_top[l - 1] = ms, top
        log_z_scale = top
        if self.scaled:
            if not np.all((ms >= self.lo) & (ms <= self.hi)):
                ok = ms > 0
                for k in np.flatnonzero(self.alive & ~ok):
                    self.status[k], self.alive[k] = f"underflow at layer {l}", False
                rescale = ok & ((ms < self.lo) | (ms > self.hi))
                if rescale.any():
                    log_ms = np.log(np.where(rescale, ms, 1.0))
                    np.multiply(z3, np.exp(-0.5 * log_ms).astype(self.dt)[None, :, None], out=z3)
                    log_z_scale = top + 0.5 * log_ms
                    self.z_add[l - 1] = np.where(rescale, 0.5 * log_ms, np.nan)
        elif not np.all(np.isfinite(ms)):
            bad = ~np.isfinite(ms)
            for k in np.flatnonzero(bad & self.alive):
                self.status[k], self.alive[k] = f"overflow at layer {l}", False
            z3[:, bad, :] = 0  # keep the dead block finite so the others go on
        return log_z_scale

    def settle_backward(self, l: int, v: Array, log_d_scale: Array) -> Array:
        """Record q̃ˡ of the stored δˡ ``v`` and renormalise configurations outside the band; returns its log scale."""
        n = v.shape[0]
        col = colsq(v)
        ms = col.reshape(self.K, self.batch).sum(axis=1) / (n * self.batch)
        if not np.all((ms >= self.lo) & (ms <= self.hi)):
            rescale = (ms > 0) & ((ms < self.lo) | (ms > self.hi))
            if rescale.any():
                log_ms = np.log(np.where(rescale, ms, 1.0))
                factor = np.exp(-0.5 * log_ms)
                np.multiply(self.per_config(v), factor.astype(self.dt)[None, :, None], out=self.per_config(v))
                col = (col.reshape(self.K, self.batch) * (factor * factor)[:, None]).ravel()
                log_d_scale = log_d_scale + 0.5 * log_ms
                self.d_add[l - 1] = np.where(rescale, 0.5 * log_ms, np.nan)
        self.d_col[l - 1], self.d_scale[l - 1] = col, log_d_scale
        return log_d_scale

    def rescale_kept(self, a: Array) -> Array:
        """Bring a kept (n, C) array's configurations back into the band in place; returns the
        log factor taken out (exp(factor)·a is the array before)."""
        ms = colsq(a).reshape(self.K, self.batch).sum(axis=1) / (a.shape[0] * self.batch)
        out = np.zeros(self.K)
        rescale = (ms > 0) & np.isfinite(ms) & ((ms < self.lo) | (ms > self.hi))
        if rescale.any():
            out = 0.5 * np.log(np.where(rescale, ms, 1.0))
            np.multiply(self.per_config(a), np.exp(-out).astype(self.dt)[None, :, None], out=self.per_config(a))
        return out

    # --- reduction ----------------------------------------------------------------------------------

    def statistics(self) -> tuple:
        """(log_q, log_q_tilde, log_grad_norm2, log_delta_norm2, log_act_norm2) each (K, L), and the statuses.

        All layers at once; column sums of zero (dead units) give ln 0 = -inf, kept as is.
        """
        L, K, batch, widths = self.L, self.K, self.batch, self.widths
        if self.du:
            du_col, du_scale = self.d_col.copy(), self.d_scale.copy()
            for l, (col, scale) in self.du.items():
                if col is not None:
                    du_col[l - 1] = col
                du_scale[l - 1] = scale
        else:
            du_col, du_scale = self.d_col, self.d_scale
        with np.errstate(divide="ignore", invalid="ignore"):
            log_q = 2 * self.z_top + np.log(self.z_ms)  # (L, K)
            log_h = np.log(self.h_col).reshape(L, K, batch) + 2 * self.h_scale[:, :, None]  # ln ‖hˡ‖²
            log_d = np.log(du_col).reshape(L, K, batch) + 2 * du_scale[:, :, None]  # ln ‖∂J/∂uˡ‖²
            log_qt = (np.log(self.d_col.reshape(L, K, batch).mean(axis=2) / np.array(widths[1:])[:, None])
                      + 2 * self.d_scale)
            log_an = log_mean_exp(log_h)
            log_dn = log_mean_exp(log_d)
            log_gn = log_mean_exp(log_d + log_h)
        # Entries past a configuration's failure are nan (its forward pass stopped there).
        layer = np.arange(1, L + 1)[:, None]
        first_bad = np.array([int(s.rsplit(" ", 1)[1]) if s != "ok" else L + 1 for s in self.status])
        log_q = np.where(layer < first_bad[None, :], log_q, np.nan)
        log_an = np.where(layer <= first_bad[None, :], log_an, np.nan)  # ‖hˡ‖² is valid up to l = first bad
        dead = ~self.alive
        out = [a.T.copy() for a in (log_q, log_qt, log_gn, log_dn, log_an)]
        for arr in out[1:4]:
            arr[dead, :] = np.nan
        return (*out, self.status)


def log_mean_exp(a: Array) -> Array:
    """ln mean(exp(a)) along the last axis, without overflow."""
    top = np.max(a, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.log(np.mean(np.exp(a - top), axis=-1)) + top[..., 0]
