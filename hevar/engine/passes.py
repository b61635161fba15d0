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
  are stacked side by side into one product Gˡ·[H₁ … H_K] per layer (N × K·B columns).
- **Logarithmic scale.** The backward pass is linear in δ, so δ is stored up to a per-configuration
  factor carried as a logarithm, and q̃ˡ is exact at any depth. For positively homogeneous φ
  (relu, leaky_relu, linear) the forward pass is carried the same way, since φ(cz) = c·φ(z).
  The stored arrays are renormalised only when their scale leaves a safe band (e^±10 in float32,
  e^±100 in float64), which keeps squares far from overflow and from subnormals while saving a
  pass over the array on most layers. Other activations run unscaled; a configuration whose
  forward pass overflows the dtype stops there and is reported as ``overflow at layer l``.
- **What each layer costs.** Two matrix products (4·N²·K·B flops), one draw of N² normals, and a
  handful of elementwise passes over N × K·B arrays, all into preallocated buffers. φ'(zˡ) is kept
  for the backward pass in the most compact form the activation allows (:class:`_Pointwise`): one
  byte per entry for relu and leaky_relu (a sign mask), nothing for linear, a full array otherwise.
- **Memory.** The Gˡ needed by the backward pass (l ≥ 2) are kept while they fit in
  ``weight_budget`` bytes and regenerated from their streams otherwise (same numbers, one more
  draw). The K configurations run in chunks small enough that the whole pass fits in
  ``memory_budget`` bytes; :func:`memory_estimate` gives the peak of either.

Everything here is pure: no files, no printing, randomness only from the :class:`Streams` passed in.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from hevar.meanfield.activations import Activation

Array = np.ndarray

_WEIGHTS, _BIAS, _INPUT, _READOUT = 0, 1, 2, 3

DEFAULT_WEIGHT_BUDGET = 512 * 2**20  # bytes of standard-normal weight matrices kept for the backward pass
DEFAULT_MEMORY_BUDGET = 1024 * 2**20  # bytes one call of measure() may allocate at its peak

# Half-width of the band of ln(mean square) a stored array may drift in before it is renormalised.
_RESCALE_BAND = {np.dtype(np.float32): 20.0, np.dtype(np.float64): 200.0}


@dataclass(frozen=True)
class Streams:
    """Independent random streams for one seed, keyed by what they draw.

    Every array is drawn from ``SeedSequence(base_seed, spawn_key=(seed_index, kind, ...))`` with the
    layer and shape in the key, so a number depends only on the seed and the identity of what it is
    — not on the order of work, the number of workers, or the rest of the sweep. Nets of different
    depth share their first layers; every σ_w², σ_b² and activation shares the same draws.
    ``out``, where given, is filled in place with the same numbers (C order) and returned.
    """

    base_seed: int  # the run's --seed
    seed_index: int  # 0 .. seeds-1
    dist: str = "normal"  # weight distribution (hevar.engine.init.DISTS); part of the weights' key unless "normal"
    trunc_at: tuple[float, ...] = ()  # dist "truncnormal": per layer l = 1..L, the cut 2/σ_{w,l} in stds

    def _normal(self, key: tuple[int, ...], shape: tuple[int, ...], dtype: np.dtype,
                out: Array | None = None) -> Array:
        seq = np.random.SeedSequence(self.base_seed, spawn_key=(self.seed_index, *key))
        rng = np.random.default_rng(seq)
        if out is None:
            return rng.standard_normal(shape, dtype=dtype)
        if out.shape != tuple(shape) or out.dtype != np.dtype(dtype) or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {np.dtype(dtype)} array of shape {shape}")
        return rng.standard_normal(dtype=dtype, out=out)

    def weights(self, layer: int, n_out: int, n_in: int, dtype: np.dtype, out: Array | None = None) -> Array:
        """Standard draw Gˡ of shape (n_out, n_in): N(0, 1) entries, or those of ``dist``
        (:func:`hevar.engine.init.standard_draw`, keyed with the distribution's index in
        :data:`hevar.engine.init.DISTS`; ``truncnormal`` draws the same uniforms at every cut)."""
        if self.dist == "normal":
            return self._normal((_WEIGHTS, layer, n_out, n_in), (n_out, n_in), dtype, out)
        from hevar.engine import init

        seq = np.random.SeedSequence(self.base_seed, spawn_key=(self.seed_index, _WEIGHTS, layer, n_out, n_in,
                                                                init.DISTS.index(self.dist)))
        cut = self.trunc_at[layer - 1] if self.dist == "truncnormal" else math.inf
        G = init.standard_draw(np.random.default_rng(seq), self.dist, (n_out, n_in), cut)
        if out is None:
            return G.astype(dtype, copy=False)
        if out.shape != (n_out, n_in) or out.dtype != np.dtype(dtype) or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {np.dtype(dtype)} array of shape {(n_out, n_in)}")
        out[...] = G
        return out

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
    weight_mean_sq: Array | None = None  # (K, L) mean of (Gˡ)² over entries: realised / nominal weight variance


# --- pointwise kernels ------------------------------------------------------------------------------


class _Pointwise:
    """φ applied into a buffer, and φ'(z) kept in its most compact form for the backward pass.

    What is kept: a bool sign mask for relu and leaky_relu, nothing for linear, a ``dt`` array
    otherwise (tanh computes 1 − tanh² from φ(z) instead of a second tanh). The specialised kernels are
    chosen by ``act.name`` from :data:`_KERNELS` and used only if they reproduce ``act.phi`` and
    ``act.dphi`` exactly on a probe (a renamed or redefined activation falls back to the generic
    kernel, which calls the activation's own functions).
    """

    def __init__(self, act: Activation, dt: np.dtype):
        self.act, self.dt = act, dt
        family, _, param = act.name.partition(":")
        self.kind = family if family in _KERNELS and self._probe(family, param) else "generic"
        self.slope = dt.type(float(param)) if self.kind == "leaky_relu" else None

    def _probe(self, family: str, param: str) -> bool:
        z = np.array([-3.0, -1.0, -0.25, 0.0, 0.5, 1.0, 2.5], dtype=self.dt)
        try:
            slope = self.dt.type(float(param)) if family == "leaky_relu" else None
        except ValueError:
            return False
        phi, dphi = _KERNELS[family](z, slope)
        return (np.array_equal(np.asarray(self.act.phi(z)), phi)
                and np.array_equal(np.asarray(self.act.dphi(z)), dphi))

    def forward(self, z: Array, h: Array) -> Array | None:
        """h ← φ(z); returns what the backward pass needs of φ'(z) (a new array, or None)."""
        if self.kind == "relu":
            mask = np.greater(z, 0)
            np.maximum(z, 0, out=h)
            return mask
        if self.kind == "leaky_relu":
            neg = np.less_equal(z, 0)  # φ' = slope where z ≤ 0 (the reference's one-sided value at 0)
            np.copyto(h, z)
            np.multiply(z, self.slope, out=h, where=neg)
            return neg
        if self.kind == "linear":
            np.copyto(h, z)
            return None
        if self.kind == "tanh":
            np.tanh(z, out=h)
            dphi = np.multiply(h, h)
            np.subtract(1, dphi, out=dphi)  # 1 − tanh², as the activation computes it
            return dphi
        h[...] = self.act.phi(z)
        return np.asarray(self.act.dphi(z), dtype=self.dt)

    def backward(self, v: Array, kept: Array | None) -> None:
        """v ← φ'(z) ⊙ v in place."""
        if self.kind == "relu":
            np.multiply(v, kept, out=v)
        elif self.kind == "leaky_relu":
            np.multiply(v, self.slope, out=v, where=kept)
        elif self.kind != "linear":
            np.multiply(v, kept, out=v)


def _relu_kernel(z, _):
    return np.maximum(z, 0), (z > 0).astype(z.dtype)


def _leaky_kernel(z, a):
    return np.where(z > 0, z, z * a), np.where(z > 0, z.dtype.type(1), a)


def _linear_kernel(z, _):
    return z.copy(), np.ones_like(z)


def _tanh_kernel(z, _):
    t = np.tanh(z)
    return t, 1 - t * t


_KERNELS: dict[str, Callable] = {
    "relu": _relu_kernel, "leaky_relu": _leaky_kernel, "linear": _linear_kernel, "tanh": _tanh_kernel,
}


# --- planning ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How one call of :func:`measure` is laid out in memory."""

    chunk: int  # configurations per stacked pass
    kept: frozenset[int]  # 1-based layers whose Gˡ stay in memory
    peak: int  # estimated peak bytes


def _plan(widths: tuple[int, ...], n_configs: int, batch: int, dt: np.dtype, kind: str,
          weight_budget: int, memory_budget: int | None) -> _Plan:
    L = len(widths) - 1
    item = dt.itemsize
    stored = {"relu": 1, "leaky_relu": 1, "linear": 0}.get(kind, item)  # bytes of φ' kept per entry
    generic = kind not in _KERNELS
    wbytes = [widths[l - 1] * widths[l] * item for l in range(1, L + 1)]  # wbytes[l-1]: layer l

    def pass_bytes(k: int) -> int:
        cols = k * batch
        kept_phi = sum(widths[1:L]) * cols * stored
        work = 2 * max(widths) * cols * item  # the two ping-pong buffers (z/φ(z), then δ/v)
        # The generic kernel's φ(z) and φ'(z) temporaries (up to three arrays of one layer).
        transient = 3 * max(widths) * cols * item if generic else 0
        # x, g, G¹x; the per-layer column sums (2) and the reduction's temporaries (5) in float64.
        small = (2 * widths[0] + widths[1]) * batch * item + 7 * L * cols * 8 + 16 * cols * 8
        squares = 8 * min(max(widths[l - 1] * widths[l] for l in range(1, L + 1)), _MEAN_SQUARE_BLOCK)  # _mean_square
        return kept_phi + work + transient + small + squares

    chunk = n_configs
    if memory_budget is not None:
        while chunk > 1 and pass_bytes(chunk) + max(wbytes) > memory_budget:
            chunk = (chunk + 1) // 2
    n_chunks = math.ceil(n_configs / chunk)
    room = weight_budget
    if memory_budget is not None:
        room = min(room, memory_budget - pass_bytes(chunk) - max(wbytes))
    # Layers ≥ 2 are read again by the backward pass; layer 1 only by later chunks' forward passes.
    order = list(range(L, 1, -1)) + ([1] if n_chunks > 1 else [])
    kept = set()
    for l in order:
        if wbytes[l - 1] <= room:
            kept.add(l)
            room -= wbytes[l - 1]
    scratch = max((wbytes[l - 1] for l in range(1, L + 1) if l not in kept), default=0)
    peak = pass_bytes(chunk) + sum(wbytes[l - 1] for l in kept) + scratch
    return _Plan(chunk, frozenset(kept), peak)


def memory_estimate(widths: tuple[int, ...], n_configs: int, batch: int, dtype: str = "float64",
                    weight_budget: int = DEFAULT_WEIGHT_BUDGET, *, act: Activation | str | None = None,
                    memory_budget: int | None = DEFAULT_MEMORY_BUDGET) -> int:
    """Peak bytes of the arrays :func:`measure` allocates for ``n_configs`` configurations.

    Counts the kept φ'(zˡ) (one chunk of configurations), the kept weight matrices, one scratch
    weight matrix, the working buffers and the per-layer norms. With ``act`` unknown, φ' is
    assumed to take a full ``dtype`` entry (an upper bound). The interpreter, NumPy and BLAS add
    a fixed ~50–100 MB of resident memory on top that does not depend on the arguments.
    """
    dt = np.dtype(dtype)
    if act is None:
        kind = "generic"
    else:
        kind = _Pointwise(act, dt).kind if isinstance(act, Activation) else str(act).partition(":")[0]
    plan = _plan(tuple(widths), n_configs, batch, dt, kind, weight_budget, memory_budget)
    return plan.peak


# --- the engine -------------------------------------------------------------------------------------


class _BufferPool:
    """Weight buffers handed back after a pass and reused by the next one, thread-safe.

    Drawing into memory the process has already touched avoids the page faults of a fresh
    allocation: about a fifth of a pass at (L, N, B) = (100, 512, 256) in float64, where ~200 MB of
    weights are kept. Holds at most ``capacity`` bytes (what one pass may keep anyway); the numbers
    drawn into a buffer do not depend on where it came from.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.free: dict[tuple, list[Array]] = {}
        self.held = 0
        self.lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        with self.lock:
            stack = self.free.get((shape, dtype))
            if stack:
                buf = stack.pop()
                self.held -= buf.nbytes
                return buf
        return np.empty(shape, dtype=dtype)

    def give(self, buffers) -> None:
        with self.lock:
            for buf in buffers:
                if self.held + buf.nbytes <= self.capacity:
                    self.free.setdefault((buf.shape, buf.dtype), []).append(buf)
                    self.held += buf.nbytes

    def keep_only(self, keys: set[tuple]) -> None:
        """Drop the buffers of shapes (and dtypes) not in ``keys``: a pass of other shapes would leave
        them held beside its own, beyond what :func:`memory_estimate` counts for it."""
        with self.lock:
            for key in [k for k in self.free if k not in keys]:
                self.held -= sum(b.nbytes for b in self.free.pop(key))


_POOL = _BufferPool(DEFAULT_WEIGHT_BUDGET)


class _Weights:
    """Standard-normal Gˡ on demand: kept ones from memory, the rest drawn into one scratch buffer."""

    def __init__(self, streams: Streams, widths: tuple[int, ...], dt: np.dtype, kept: frozenset[int]):
        self.streams, self.widths, self.dt, self.keep = streams, widths, dt, kept
        self.kept: dict[int, Array] = {}
        self.scratch: Array | None = None
        self.mean_sq: dict[int, float] = {}  # layer → mean of (Gˡ)², recorded at its first draw

    def get(self, layer: int) -> Array:
        G = self._get(layer)
        if layer not in self.mean_sq:
            self.mean_sq[layer] = _mean_square(G)
        return G

    def _get(self, layer: int) -> Array:
        if layer in self.kept:
            return self.kept[layer]
        n_out, n_in = self.widths[layer], self.widths[layer - 1]
        if layer in self.keep:
            G = self.kept[layer] = self.streams.weights(layer, n_out, n_in, self.dt,
                                                        out=_POOL.take((n_out, n_in), self.dt))
            return G
        size = n_out * n_in
        if self.scratch is None or self.scratch.size < size:
            biggest = max(self.widths[l] * self.widths[l - 1] for l in range(1, len(self.widths))
                          if l not in self.keep)
            if self.scratch is not None:
                _POOL.give([self.scratch])
            self.scratch = _POOL.take((biggest,), self.dt)
        return self.streams.weights(layer, n_out, n_in, self.dt, out=self.scratch[:size].reshape(n_out, n_in))

    def prefetch(self, threads: int) -> None:
        """Draw every kept Gˡ now, in ``threads`` threads: each layer has its own stream, so the
        numbers do not depend on the order, and NumPy fills arrays without holding the GIL. Sampling
        is single-threaded and dominates narrow deep nets; this runs it on every core the pass may use."""
        todo = sorted(l for l in self.keep if l not in self.kept)
        if threads < 2 or len(todo) < 2:
            return
        buffers = {l: _POOL.take((self.widths[l], self.widths[l - 1]), self.dt) for l in todo}

        def draw(layer: int) -> None:
            self.streams.weights(layer, *buffers[layer].shape, self.dt, out=buffers[layer])

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(draw, todo))
        self.kept.update(buffers)

    def release(self) -> None:
        """Hand the buffers back to the pool for the next pass."""
        _POOL.give(list(self.kept.values()) + ([self.scratch] if self.scratch is not None else []))
        self.kept, self.scratch = {}, None


def measure(
    act: Activation,
    widths: tuple[int, ...],
    weight_std: Array,
    bias_std: Array,
    batch: int,
    streams: Streams,
    dtype: str = "float64",
    weight_budget: int = DEFAULT_WEIGHT_BUDGET,
    *,
    memory_budget: int | None = DEFAULT_MEMORY_BUDGET,
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
    memory_budget : int or None
        Bytes the whole call may allocate at its peak (see :func:`memory_estimate`): the K
        configurations run in as many chunks as needed, and fewer weights are kept. One
        configuration is the smallest chunk, so a budget below its need is exceeded. None: no limit.
    """
    dt = np.dtype(dtype)
    widths = tuple(int(n) for n in widths)
    weight_std = np.asarray(weight_std, dtype=float)
    bias_std = np.asarray(bias_std, dtype=float)
    K = weight_std.shape[0]
    kernel = _Pointwise(act, dt)
    plan = _plan(widths, K, batch, dt, kernel.kind, weight_budget, memory_budget)
    scratch = max((widths[l] * widths[l - 1] for l in range(1, len(widths)) if l not in plan.kept), default=0)
    _POOL.keep_only({((widths[l], widths[l - 1]), dt) for l in plan.kept} | {((scratch,), dt)})
    weights = _Weights(streams, widths, dt, plan.kept)
    weights.prefetch(_sampling_threads())
    x = streams.inputs(widths[0], batch, dt)
    g = streams.readout(widths[-1], batch, dt)
    try:
        parts = [
            _measure_chunk(kernel, act.homogeneous, widths, weight_std[s], bias_std[s], batch, streams, dt,
                           weights, x, g)
            for s in (slice(i, i + plan.chunk) for i in range(0, K, plan.chunk))
        ]
    finally:
        weights.release()
    fields = [np.concatenate([p[i] for p in parts]) for i in range(5)]
    status = tuple(s for p in parts for s in p[5])
    mean_sq = np.array([weights.mean_sq.get(l, np.nan) for l in range(1, len(widths))])
    return Measurement(*fields, status, weight_mean_sq=np.tile(mean_sq, (K, 1)))


def _sampling_threads() -> int:
    """Threads for drawing weights: the cores this process may use, capped like BLAS's own pool
    (``--jobs`` sets OMP_NUM_THREADS/OPENBLAS_NUM_THREADS in its workers so that they share cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            cores = min(cores, int(value))
    return cores


_MEAN_SQUARE_BLOCK = 1 << 16  # entries per block of _mean_square: the order of the sum, fixed


def _mean_square(a: Array) -> float:
    """Mean of a² over every entry, in float64 and in an order that does not depend on anything but
    the array: fixed blocks, each summed by NumPy's pairwise reduction, added in turn. A BLAS dot
    product would be faster by little and splits its sum by the BLAS thread count, which changed
    ``weight_var_realised_ratio`` in its last digits between ``--jobs 1`` and ``--jobs 2``."""
    flat = a.reshape(-1)
    buf = np.empty(min(flat.size, _MEAN_SQUARE_BLOCK))
    total = 0.0
    for start in range(0, flat.size, _MEAN_SQUARE_BLOCK):
        block = flat[start:start + _MEAN_SQUARE_BLOCK]
        out = buf[:block.size]
        np.square(block, out=out, dtype=np.float64)
        total += float(np.add.reduce(out))
    return total / max(flat.size, 1)


def _colsq(a: Array) -> Array:
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


def _measure_chunk(kernel: _Pointwise, homogeneous: bool, widths: tuple[int, ...], weight_std: Array,
                   bias_std: Array, batch: int, streams: Streams, dt: np.dtype, weights: _Weights,
                   x: Array, g: Array) -> tuple:
    """One stacked pass for the K configurations of ``weight_std`` (K, L) and ``bias_std`` (K,).

    The loops do only what needs the arrays: products, pointwise maps, the column sums of squares,
    and a renormalisation when a configuration's scale leaves the band. Logarithms and means of
    the per-layer sums are taken once, vectorised, after the loops (the per-layer Python cost
    matters for narrow layers).
    """
    L = len(widths) - 1
    K = weight_std.shape[0]
    C = K * batch
    band = _RESCALE_BAND[dt]
    lo, hi = math.exp(-band), math.exp(band)  # the band, on the mean square of a stored array
    with np.errstate(divide="ignore"):
        log_w = np.log(weight_std)  # (K, L)
        log_b = np.log(bias_std)  # (K,)
    alive = np.ones(K, dtype=bool)
    status = ["ok"] * K
    has_bias = bool(np.any(bias_std > 0))

    # Two ping-pong buffers of the largest layer: u/z and φ(z) forward, (W)ᵀδ and δ backward.
    n_max = max(widths)
    buf_a = np.empty(n_max * C, dtype=dt)
    buf_b = np.empty(n_max * C, dtype=dt)

    def view(buf: Array, n: int) -> Array:
        return buf[: n * C].reshape(n, C)

    # Per-layer records, reduced after the loops.
    z_ms = np.zeros((L, K))  # mean square of the stored zˡ, before any renormalisation
    z_top = np.zeros((L, K))  # zˡ = exp(z_top)·(stored zˡ)
    h_col = np.empty((L, C))  # ‖stored φ(zˡ⁻¹)‖² per column; row 0 is x
    h_scale = np.zeros((L, K))  # φ(zˡ⁻¹) = exp(h_scale)·(stored φ(zˡ⁻¹))
    d_col = np.empty((L, C))  # ‖stored δˡ‖² per column
    d_scale = np.zeros((L, K))  # δˡ = exp(d_scale)·(stored δˡ)
    h_col[0] = np.tile(_colsq(x), K)

    h = x  # φ(z⁰) = x, shared by all configurations
    log_h_scale = np.zeros(K)
    kept_dphi: list[Array | None] = []
    z_buf, h_buf = buf_a, buf_b
    for l in range(L):
        n_out = widths[l + 1]
        G = weights.get(l + 1)
        z = view(z_buf, n_out)
        z3 = z.reshape(n_out, K, batch)
        # A non-homogeneous forward pass may overflow here; it is detected and recorded below.
        with np.errstate(over="ignore", invalid="ignore"):
            if l == 0:
                z3[...] = (G @ x)[:, None, :]  # the same for every configuration
            else:
                np.matmul(G, h, out=z)
        h_scale[l] = log_h_scale
        if homogeneous:
            log_a = log_h_scale + log_w[:, l]  # zˡ = exp(log_a)·u + σ_b·b
            if has_bias:
                # Normalise by the larger of the two terms so neither coefficient overflows.
                top = np.maximum(log_a, log_b)
                top = np.where(np.isfinite(top), top, 0.0)
                ca = np.exp(log_a - top).astype(dt)
                cb = np.exp(log_b - top).astype(dt)
                np.multiply(z3, ca[None, :, None], out=z3)
                b = streams.bias(l + 1, n_out, dt)
                np.add(z3, b[:, None, None] * cb[None, :, None], out=z3)
            else:
                top = log_a
                if not np.all(np.isfinite(top)):  # σ_w = 0: zˡ is exactly 0
                    z3[:, ~np.isfinite(top), :] = 0
                    top = np.where(np.isfinite(top), top, 0.0)
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                np.multiply(z3, weight_std[:, l].astype(dt)[None, :, None], out=z3)
                if has_bias:
                    b = streams.bias(l + 1, n_out, dt)
                    np.add(z3, b[:, None, None] * bias_std.astype(dt)[None, :, None], out=z3)
            top = log_h_scale  # zeros: non-homogeneous φ runs unscaled
        col = _colsq(z)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflowing block is recorded below
            ms = col.reshape(K, batch).sum(axis=1) / (n_out * batch)
        z_ms[l], z_top[l] = ms, top
        log_z_scale = top
        if homogeneous:
            if not np.all((ms >= lo) & (ms <= hi)):
                ok = ms > 0
                for k in np.flatnonzero(alive & ~ok):
                    status[k], alive[k] = f"underflow at layer {l + 1}", False
                rescale = ok & ((ms < lo) | (ms > hi))
                if rescale.any():
                    log_ms = np.log(np.where(rescale, ms, 1.0))
                    np.multiply(z3, np.exp(-0.5 * log_ms).astype(dt)[None, :, None], out=z3)
                    log_z_scale = top + 0.5 * log_ms
        elif not np.all(np.isfinite(ms)):
            bad = ~np.isfinite(ms)
            for k in np.flatnonzero(bad & alive):
                status[k], alive[k] = f"overflow at layer {l + 1}", False
            z3[:, bad, :] = 0  # keep the dead block finite so the others go on
        if l == L - 1:
            break  # neither φ(zᴸ) nor φ'(zᴸ) is needed
        h = view(h_buf, n_out)
        kept_dphi.append(kernel.forward(z, h))
        h_col[l + 1] = _colsq(h)
        log_h_scale = log_z_scale
        z_buf, h_buf = h_buf, z_buf  # φ(z) is the next layer's input; z's buffer is free

    # Backward: δ stored up to the factor exp(log_d_scale).
    d_buf, v_buf = buf_a, buf_b
    d = view(d_buf, widths[L])
    d.reshape(widths[L], K, batch)[...] = g[:, None, :]
    log_d_scale = np.zeros(K)
    d_col[L - 1] = np.tile(_colsq(g), K)
    for l in range(L - 1, 0, -1):
        G = weights.get(l + 1)
        v = view(v_buf, widths[l])
        np.matmul(G.T, d, out=v)
        kernel.backward(v, kept_dphi[l - 1])
        kept_dphi[l - 1] = None  # free memory as we go
        log_d_scale = log_d_scale + log_w[:, l]
        col = _colsq(v)
        ms = col.reshape(K, batch).sum(axis=1) / (widths[l] * batch)
        if not np.all((ms >= lo) & (ms <= hi)):
            rescale = (ms > 0) & ((ms < lo) | (ms > hi))
            if rescale.any():
                log_ms = np.log(np.where(rescale, ms, 1.0))
                factor = np.exp(-0.5 * log_ms)
                np.multiply(v.reshape(widths[l], K, batch), factor.astype(dt)[None, :, None],
                            out=v.reshape(widths[l], K, batch))
                col = (col.reshape(K, batch) * (factor * factor)[:, None]).ravel()
                log_d_scale = log_d_scale + 0.5 * log_ms
        d_col[l - 1], d_scale[l - 1] = col, log_d_scale
        d = v
        d_buf, v_buf = v_buf, d_buf

    # Statistics, all layers at once. Column sums of zero (dead units) give ln 0 = -inf, kept as is.
    with np.errstate(divide="ignore", invalid="ignore"):
        log_q = 2 * z_top + np.log(z_ms)  # (L, K)
        log_h = np.log(h_col).reshape(L, K, batch) + 2 * h_scale[:, :, None]  # ln ‖φ(zˡ⁻¹)‖²
        log_d = np.log(d_col).reshape(L, K, batch) + 2 * d_scale[:, :, None]  # ln ‖δˡ‖²
        log_qt = np.log(d_col.reshape(L, K, batch).mean(axis=2) / np.array(widths[1:])[:, None]) + 2 * d_scale
        log_an = _log_mean_exp(log_h)
        log_dn = _log_mean_exp(log_d)
        log_gn = _log_mean_exp(log_d + log_h)
    # Entries past a configuration's failure are nan (its forward pass stopped there).
    layer = np.arange(1, L + 1)[:, None]
    first_bad = np.array([int(s.rsplit(" ", 1)[1]) if s != "ok" else L + 1 for s in status])
    log_q = np.where(layer < first_bad[None, :], log_q, np.nan)
    log_an = np.where(layer <= first_bad[None, :], log_an, np.nan)  # ‖φ(zˡ⁻¹)‖² is valid up to l = first bad
    dead = ~alive
    out = [a.T.copy() for a in (log_q, log_qt, log_gn, log_dn, log_an)]
    for arr in out[1:4]:
        arr[dead, :] = np.nan
    return (*out, status)


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
