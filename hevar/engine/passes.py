"""The NumPy engine: one forward and one backward pass of the real network, measured per layer.

A network is a sequence of blocks (:mod:`hevar.blocks`); block l owns the weight matrix
Wˡ ∈ R^{N_l × N_{l-1}}, Wˡ_ij ~ σ_{w,l}·N(0, 1), and its bias bˡ ~ N(0, σ_b²). The default, today's
MLP (:func:`hevar.blocks.network.mlp`), is (layers l = 1..L, a batch of B inputs as columns)::

    zˡ = Wˡ φ(zˡ⁻¹) + bˡ,   φ(z⁰) := x ~ N(0, I)

Backward pass of the same weights (no mean-field approximation) for the random linear readout
J = gᵀ zᴸ, g ~ N(0, I) per input: δᴸ = g and each block maps δˡ to δˡ⁻¹ (for the MLP
δˡ⁻¹ = φ'(zˡ⁻¹) ⊙ (Wˡ)ᵀ δˡ); ∂J/∂Wˡ = (∂J/∂uˡ)(hˡ)ᵀ with hˡ the weight's input and uˡ = Wˡhˡ.

Measured per layer: qˡ = mean (zˡ)², q̃ˡ = mean (δˡ)² (over units and inputs), and the per-input
weight-gradient squared norm ‖∂J/∂Wˡ‖²_F = ‖∂J/∂uˡ‖²·‖hˡ‖² averaged over inputs (for the MLP
‖δˡ‖²·‖φ(zˡ⁻¹)‖²).

How it is computed
------------------
- **Common random numbers.** Each weight matrix is σ_{w,l}·Gˡ with Gˡ a standard-normal matrix
  drawn from a stream keyed by (seed index, layer, shape) — see :class:`Streams`. All K
  configurations of a σ_w² / σ_b² grid share Gˡ, x, g, the standard-normal bias vectors and the
  dropout masks, so they are stacked side by side into one product Gˡ·[H₁ … H_K] per layer
  (N × K·B columns).
- **Logarithmic scale.** The backward pass is linear in δ, so δ is stored up to a per-configuration
  factor carried as a logarithm, and q̃ˡ is exact at any depth. When every block is equivariant
  (φ positively homogeneous — relu, leaky_relu, linear — or seeing only a normalised input) the
  forward pass is carried the same way (:mod:`hevar.engine.stacked`). The stored arrays are
  renormalised only when their scale leaves a safe band (e^±10 in float32, e^±100 in float64).
  Other networks run unscaled; a configuration whose forward pass overflows the dtype stops there
  and is reported as ``overflow at layer l``.
- **What each layer costs.** Two matrix products (4·N²·K·B flops), one draw of N² normals, and a
  handful of elementwise passes over N × K·B arrays, all into preallocated buffers. φ'(zˡ) is kept
  for the backward pass in the most compact form the activation allows
  (:class:`hevar.engine.pointwise.Pointwise`): one byte per entry for relu and leaky_relu (a sign
  mask), nothing for linear, a full array otherwise; each block states what else it keeps.
- **Memory.** The Gˡ needed by the backward pass (l ≥ 2) are kept while they fit in
  ``weight_budget`` bytes and regenerated from their streams otherwise (same numbers, one more
  draw). The K configurations run in chunks small enough that the whole pass fits in
  ``memory_budget`` bytes; :func:`memory_estimate` gives the peak of either.

Everything here is pure: no files, no printing, randomness only from the :class:`Streams` passed in.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from hevar.engine import rescale
from hevar.engine.pointwise import KERNELS as _KERNELS, Pointwise as _Pointwise, stored_bytes  # noqa: F401
from hevar.engine.stacked import RESCALE_BAND as _RESCALE_BAND, StackedPass, colsq as _colsq  # noqa: F401
from hevar.engine.stacked import log_mean_exp as _log_mean_exp  # noqa: F401
from hevar.meanfield.activations import Activation

Array = np.ndarray

_WEIGHTS, _BIAS, _INPUT, _READOUT, _UNIFORMS = 0, 1, 2, 3, 4

DEFAULT_WEIGHT_BUDGET = 512 * 2**20  # bytes of standard-normal weight matrices kept for the backward pass
DEFAULT_MEMORY_BUDGET = 1024 * 2**20  # bytes one call of measure() may allocate at its peak

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

    def uniforms(self, layer: int, n: int, batch: int) -> Array:
        """U[0, 1) draws of layer ``layer``'s input units, shape (n, batch), float64 (dropout masks)."""
        seq = np.random.SeedSequence(self.base_seed, spawn_key=(self.seed_index, _UNIFORMS, layer, n, batch))
        return np.random.default_rng(seq).random((n, batch))


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
    signalprop: dict | None = None  # with measure(signalprop=True): hevar.engine.signalprop.ARRAYS, (K, L) each


# --- planning ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How one call of :func:`measure` is laid out in memory."""

    chunk: int  # configurations per stacked pass
    kept: frozenset[int]  # 1-based layers whose Gˡ stay in memory
    peak: int  # estimated peak bytes


def _plan(widths: tuple[int, ...], n_configs: int, batch: int, dt: np.dtype, kept_bytes: Callable[[int], int],
          n_buffers: int, generic: bool, weight_budget: int, memory_budget: int | None, n_shared: int = 0) -> _Plan:
    """``kept_bytes(cols)``: what the blocks keep for the backward pass at ``cols`` columns;
    ``n_buffers``: the working arrays the blocks need at once; ``generic``: some block uses the
    generic pointwise kernel (its temporaries count); ``n_shared``: configurations derived from a run
    one (:mod:`hevar.engine.rescale`) beside the ``n_configs`` that run, expanded a chunk at a time."""
    L = len(widths) - 1
    item = dt.itemsize
    wbytes = [widths[l - 1] * widths[l] * item for l in range(1, L + 1)]  # wbytes[l-1]: layer l

    def pass_bytes(k: int) -> int:
        cols = k * batch
        work = n_buffers * max(widths) * cols * item  # the ping-pong buffers (z/φ(z), then δ/v; + uˡ for residuals)
        # The generic kernel's φ(z) and φ'(z) temporaries (up to three arrays of one layer).
        transient = 3 * max(widths) * cols * item if generic else 0
        # x, g, G¹x; the per-layer column sums (2) and the reduction's temporaries (5) in float64.
        small = (2 * widths[0] + widths[1]) * batch * item + 7 * L * cols * 8 + 16 * cols * 8
        squares = 8 * min(max(widths[l - 1] * widths[l] for l in range(1, L + 1)), _MEAN_SQUARE_BLOCK)  # _mean_square
        # Derived configurations are expanded after the backward pass has let go of what it kept.
        shared = rescale.expand_bytes(L, min(n_shared, k), batch) if n_shared else 0
        return max(kept_bytes(cols), shared) + work + transient + small + squares

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


def _network_plan(network, widths: tuple[int, ...], n_configs: int, batch: int, dt: np.dtype, weight_budget: int,
                  memory_budget: int | None, n_shared: int = 0) -> _Plan:
    blocks = network.blocks

    def kept_bytes(cols: int) -> int:
        return sum(b.kept_bytes(widths[l - 1], widths[l], cols, batch, dt.name) for l, b in enumerate(blocks, 1))

    generic = any(b.generic_kernel(dt.name) for b in blocks)
    return _plan(widths, n_configs, batch, dt, kept_bytes, network.n_buffers, generic, weight_budget, memory_budget,
                 n_shared)


def memory_estimate(widths: tuple[int, ...], n_configs: int, batch: int, dtype: str = "float64",
                    weight_budget: int = DEFAULT_WEIGHT_BUDGET, *, act: Activation | str | None = None,
                    memory_budget: int | None = DEFAULT_MEMORY_BUDGET, network=None, n_shared: int = 0) -> int:
    """Peak bytes of the arrays :func:`measure` allocates for ``n_configs`` configurations.

    ``n_shared`` of them are derived by rescaling instead of run (:func:`hevar.engine.rescale.members`
    gives the group; ``len(group) - 1`` are derived): the pass runs ``n_configs - n_shared`` and adds
    their records (:func:`hevar.engine.rescale.expand_bytes`).

    Counts what the blocks keep for the backward pass (one chunk of configurations: φ'(zˡ), and
    normalised inputs or dropout masks where a block has them), the kept weight matrices, one
    scratch weight matrix, the working buffers and the per-layer norms. ``network`` (a
    :class:`hevar.blocks.network.Network`) defaults to the MLP of ``act``; with ``act`` unknown
    (or given by name only), φ' of an MLP is assumed to take a full ``dtype`` entry unless the
    name is one with a compact kernel. The interpreter, NumPy and BLAS add a fixed ~50–100 MB of
    resident memory on top that does not depend on the arguments.
    """
    dt = np.dtype(dtype)
    widths = tuple(widths)
    if network is None and isinstance(act, Activation):
        from hevar.blocks.network import mlp

        network = mlp(act, len(widths) - 1)
    if network is not None:
        return _network_plan(network, widths, n_configs - n_shared, batch, dt, weight_budget, memory_budget,
                             n_shared).peak
    kind = "generic" if act is None else str(act).partition(":")[0]
    L = len(widths) - 1
    stored = stored_bytes(kind, dt)
    plan = _plan(widths, n_configs - n_shared, batch, dt, lambda cols: sum(widths[1:L]) * cols * stored, 2,
                 kind not in _KERNELS, weight_budget, memory_budget, n_shared)
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
    network=None,
    share: bool = True,
    q_in: float = 1.0,
    input_act: Activation | None = None,
    signalprop: bool = False,
) -> Measurement:
    """Run the stacked forward/backward pass for K configurations sharing one draw.

    Parameters
    ----------
    act : Activation
        φ of the MLP built when ``network`` is None.
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
    network : hevar.blocks.network.Network, optional
        The blocks l = 1..L; default :func:`hevar.blocks.network.mlp` of ``act``.
    share : bool
        Run one pass for the configurations that differ only in σ_w (plain MLP, homogeneous φ,
        σ_b = 0) and derive the others' statistics exactly (:mod:`hevar.engine.rescale`); False:
        stack every configuration (the reference the shared path is tested against).
    q_in, input_act :
        The input: x = √q_in·ξ with ξ the seed's standard-normal inputs, fed to layer 1 as is or, with
        ``input_act``, as φ(x) (a pre-activation input); see :func:`network_input`.
    signalprop : bool
        Also record, per block, the channel mean², channel variance and residual branch mean square
        (:mod:`hevar.engine.signalprop`) into ``Measurement.signalprop``; every configuration then
        runs stacked (no shared pass). Off: nothing of it runs.
    """
    dt = np.dtype(dtype)
    widths = tuple(int(n) for n in widths)
    weight_std = np.asarray(weight_std, dtype=float)
    bias_std = np.asarray(bias_std, dtype=float)
    K = weight_std.shape[0]
    if network is None:
        from hevar.blocks.network import mlp

        network = mlp(act, len(widths) - 1)
    if network.depth != len(widths) - 1:
        raise ValueError(f"network has {network.depth} blocks for {len(widths) - 1} layers")
    group = rescale.members(network, weight_std, bias_std) if share and not signalprop else []
    # A product of one column is a matrix-vector product in BLAS, whose sums are ordered unlike a
    # column of a matrix product: at B = 1 a second member runs too, so that the products stay
    # matrix products and the results keep the stacked pass's bits.
    derived = group[2:] if batch == 1 and K - len(group) == 0 else group[1:]
    run = [k for k in range(K) if k not in set(derived)]
    plan = _network_plan(network, widths, len(run), batch, dt, weight_budget, memory_budget, len(derived))
    scratch = max((widths[l] * widths[l - 1] for l in range(1, len(widths)) if l not in plan.kept), default=0)
    _POOL.keep_only({((widths[l], widths[l - 1]), dt) for l in plan.kept} | {((scratch,), dt)})
    weights = _Weights(streams, widths, dt, plan.kept)
    weights.prefetch(_sampling_threads())
    x = network_input(streams, widths[0], batch, dt, q_in, input_act)
    g = streams.readout(widths[-1], batch, dt)
    parts, extra = [], []
    try:
        for i in range(0, len(run), plan.chunk):
            idx = run[i:i + plan.chunk]
            rep = idx.index(group[0]) if group and group[0] in idx else None
            derive = None if rep is None else (rep, weight_std[derived], plan.chunk)
            stats, more = _measure_chunk(network, widths, weight_std[idx], bias_std[idx], batch, streams, dt,
                                         weights, x, g, derive, signalprop)
            parts.append(stats)
            extra += more
    finally:
        weights.release()
    sp = None
    if signalprop:  # every configuration ran (no derived ones), in grid order
        sp = {k: np.concatenate([p[6][k] for p in parts]) for k in parts[0][6]}
    order = np.array(run + derived)  # the row of each result, in grid order
    place = np.empty(K, dtype=int)
    place[order] = np.arange(K)
    fields = [np.concatenate([p[i] for p in parts + extra])[place] for i in range(5)]
    flat = [s for p in parts + extra for s in p[5]]
    status = tuple(flat[j] for j in place)
    mean_sq = np.array([weights.mean_sq.get(l, np.nan) for l in range(1, len(widths))])
    return Measurement(*fields, status, weight_mean_sq=np.tile(mean_sq, (K, 1)), signalprop=sp)


_SAMPLING_CAP: list[int] = []  # innermost limit of sampling_threads_limited(), if any


@contextlib.contextmanager
def sampling_threads_limited(threads: int) -> Iterator[None]:
    """Draw weights in at most ``threads`` threads inside the block (the thread policy,
    :mod:`hevar.experiments.threads`, sets it beside BLAS's own limit). The numbers do not depend on it."""
    _SAMPLING_CAP.append(max(1, int(threads)))
    try:
        yield
    finally:
        _SAMPLING_CAP.pop()


def network_input(streams: Streams, n: int, batch: int, dt: np.dtype, q_in: float = 1.0,
                  input_act: Activation | None = None) -> Array:
    """The (n, batch) input fed to layer 1: √q_in·ξ (ξ the seed's standard normals), or φ of it for
    a pre-activation input. At q_in = 1 without φ it is ξ itself, bit for bit (earlier runs' bytes)."""
    x = streams.inputs(n, batch, dt)
    if q_in != 1.0:
        x *= dt.type(math.sqrt(q_in))
    if input_act is not None:
        x = np.asarray(input_act.phi(x), dtype=dt)
    return x


def _sampling_threads() -> int:
    """Threads for drawing weights: the cores this process may use, capped like BLAS's own pool
    (``--jobs`` sets OMP_NUM_THREADS/OPENBLAS_NUM_THREADS in its workers so that they share cores)
    and by :func:`sampling_threads_limited`."""
    if _SAMPLING_CAP:
        return _SAMPLING_CAP[-1]
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


def _measure_chunk(network, widths: tuple[int, ...], weight_std: Array, bias_std: Array, batch: int,
                   streams: Streams, dt: np.dtype, weights: _Weights, x: Array, g: Array,
                   derive: tuple[int, Array, int] | None = None, signalprop: bool = False) -> tuple[tuple, list[tuple]]:
    """One stacked pass for the K configurations of ``weight_std`` (K, L) and ``bias_std`` (K,):
    (its statistics, [statistics of the derived configurations, a slice at a time]).

    ``derive`` = (rep, weight_std of the derived configurations (M, L), slice size): configuration
    ``rep`` of this chunk stands for M more (:func:`hevar.engine.rescale.expand`).

    The blocks do only what needs the arrays: products, pointwise maps, the column sums of squares,
    and a renormalisation when a configuration's scale leaves the band. Logarithms and means of
    the per-layer sums are taken once, vectorised, after the loops (the per-layer Python cost
    matters for narrow layers).
    """
    L = len(widths) - 1
    ctx = StackedPass(widths, weight_std, bias_std, batch, streams, dt, weights, x, g, network.scaled,
                      network.n_buffers)
    if signalprop:
        ctx.enable_signalprop()
    z, t = None, np.zeros(ctx.K)
    for l, block in enumerate(network.blocks, 1):
        z, t = block.forward(ctx, l, z, t)
    ctx.give(z)  # zᴸ: neither φ(zᴸ) nor φ'(zᴸ) is needed
    # Backward: δ stored up to the factor exp(s).
    d = ctx.take(widths[L])
    ctx.per_config(d)[...] = g[:, None, :]
    s = np.zeros(ctx.K)
    ctx.d_col[L - 1] = np.tile(_colsq(g), ctx.K)
    for l in range(L, 1, -1):
        d, s = network.blocks[l - 1].backward(ctx, l, d, s)
    more = []
    if derive is not None:
        rep, derived_std, size = derive
        more = [rescale.expand(ctx, rep, derived_std[i:i + size]) for i in range(0, derived_std.shape[0], size)]
    if signalprop:
        from hevar.engine import signalprop as sp

        return (*ctx.statistics(), sp.logs(ctx)), more
    return ctx.statistics(), more


def measure_reference(
    act: Activation,
    widths: tuple[int, ...],
    weight_std: Array,
    bias_std: float,
    batch: int,
    streams: Streams,
    dtype: str = "float64",
    network=None,
    q_in: float = 1.0,
    input_act: Activation | None = None,
) -> dict[str, Array]:
    """The straightforward version of :func:`measure` for one configuration: explicit weights,
    every zˡ and δˡ stored, no rescaling, each block's :meth:`reference` (its forward written out
    and the vector–Jacobian product of it). The oracle for tests and the baseline for benchmarks.

    ``weight_std`` has shape (L,). Returns plain (not log) per-layer arrays ``q``, ``q_tilde``,
    ``grad_norm2``, and the lists ``weights``, ``biases``, ``z``, ``delta`` (δˡ = ∂J/∂zˡ),
    ``h`` (each weight's input), ``delta_u`` (∂J/∂uˡ), ``masks`` (dropout m/p or None) and the
    inputs ``x`` and readout ``g`` (so that J = Σ_b g_bᵀ zᴸ_b can be recomputed).
    """
    dt = np.dtype(dtype)
    L = len(widths) - 1
    if network is None:
        from hevar.blocks.network import mlp

        network = mlp(act, L)
    Ws = [weight_std[l] * streams.weights(l + 1, widths[l + 1], widths[l], dt) for l in range(L)]
    bs = [bias_std * streams.bias(l + 1, widths[l + 1], dt) for l in range(L)]
    x = network_input(streams, widths[0], batch, dt, q_in, input_act)
    g = streams.readout(widths[L], batch, dt)
    masks = [block.reference_mask(streams, l + 1, widths[l], batch, dt) for l, block in enumerate(network.blocks)]
    zs, hs, vjps = [], [], []
    z = x
    for l, block in enumerate(network.blocks):
        z, h, vjp = block.reference(Ws[l], bs[l], z, masks[l])
        zs.append(z)
        hs.append(h)
        vjps.append(vjp)
    deltas = [g]
    delta_u: list[Array] = []
    for l in range(L - 1, -1, -1):
        d_in, d_u = vjps[l](deltas[0])
        delta_u.insert(0, d_u)
        if l > 0:
            deltas.insert(0, d_in)
    q = np.array([np.mean(z.astype(float) ** 2) for z in zs])
    q_tilde = np.array([np.mean(d.astype(float) ** 2) for d in deltas])
    grad = np.array([
        np.mean(np.sum(delta_u[l].astype(float) ** 2, axis=0) * np.sum(hs[l].astype(float) ** 2, axis=0))
        for l in range(L)
    ])
    return dict(q=q, q_tilde=q_tilde, grad_norm2=grad, weights=Ws, biases=bs, z=zs, delta=deltas, h=hs,
                delta_u=delta_u, masks=masks, x=x, g=g)
