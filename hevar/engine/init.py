"""How a network is initialised: its width profile, the fan each layer's variance is divided by,
and the distribution of the weight entries.

Width profiles (``--widths``) give N_0..N_L:

- an explicit list ``1024,512,256`` (L = number of entries − 1);
- ``pyramid:N_FIRST:N_LAST``: geometric from N_0 = N_FIRST to N_L = N_LAST over the depth,
  N_l = round(N_FIRST·(N_LAST/N_FIRST)^(l/L));
- ``constant:N``: N at every layer (the same as ``--width N``).

Fan modes (``--mode``): the swept value s = σ_w²·N is turned into layer l's raw variance
σ_{w,l}² = s / N_fan(l), with N_fan(l) = N_{l-1} (``fan_in``: the forward condition, qˡ keeps its
scale), N_l (``fan_out``: the number of outputs of Wˡ, He et al.'s backward condition, PyTorch's
``mode='fan_out'``: q̃ˡ keeps its scale) or (N_{l-1} + N_l)/2 (``fan_avg``, Glorot's compromise).
With constant width the three coincide.

Weight distributions (``--dist``). The engine multiplies a *standard draw* Gˡ by σ_{w,l}; the
draws below have per-entry variance 1, so Wˡ has variance σ_{w,l}², except where said:

- ``normal``: N(0, 1);
- ``uniform``: U(−√3, √3);
- ``truncnormal_keras``: N(0, 1) cut at ±2 and divided by 0.87962566103423978, the standard deviation
  of the cut normal (Keras' ``VarianceScaling(distribution="truncated_normal")``): variance 1;
- ``truncnormal``: PyTorch's ``trunc_normal_(std=σ)``: N(0, σ²) cut at the *absolute* values ±2 with
  no correction, so Gˡ is N(0, 1) cut at ±2/σ_{w,l} and its variance
  1 − 2c·ϕ(c)/(2Φ(c) − 1), c = 2/σ_{w,l}, is below 1 (a plain normal when σ ≪ 1, 0.774 at σ = 1);
- ``orthogonal``: √max(N_l, N_{l-1})·Q with Q (N_l × N_{l-1}) having orthonormal columns or rows
  (QR of a Gaussian with the signs of R's diagonal moved into Q, i.e. Haar-distributed). Its
  per-entry mean square is exactly 1; for square layers Wˡ = √(σ²N)·Q is PyTorch's
  ``orthogonal_(gain=√(σ²N))``. For non-square layers it is PyTorch's with gain² = σ²·max(N_l, N_{l-1}).

Both truncated normals are drawn by inverting the CDF of uniforms, so ``truncnormal`` uses the same
uniforms at every σ and stays a common-random-numbers comparison across the σ_w² grid.
"""

from __future__ import annotations

import math
import re

import numpy as np
from scipy import special

from hevar.errors import UsageError

MODES = ("fan_in", "fan_out", "fan_avg", "fixed")  # fixed: every layer divides by N_0 (one raw variance, --weight-std)
DISTS = ("normal", "uniform", "truncnormal", "truncnormal_keras", "orthogonal")
TORCH_TRUNC = 2.0  # PyTorch trunc_normal_'s default cut, in absolute units of the weight (a=-2, b=2)
KERAS_TRUNC = 2.0  # Keras' cut, in standard deviations
KERAS_STD = 0.87962566103423978  # std of N(0, 1) cut at ±2: Keras divides by it
MAX_WIDTH = 100_001  # widths lie in [1, MAX_WIDTH), as --width

_PROFILE_HELP = ("a comma list of at least two widths N_0,...,N_L, pyramid:N_FIRST:N_LAST or constant:N, "
                 f"with every width an int in the range [1, {MAX_WIDTH})")
_INT = re.compile(r"^\s*\d+\s*$")


# --- width profiles --------------------------------------------------------------------------------


def parse_widths(raw) -> str:
    """The canonical spec of a width profile (``"1024,512,256"``, ``"pyramid:1024:128"``,
    ``"constant:256"``) from text or a list of ints; raises :class:`UsageError` otherwise."""
    def bad() -> UsageError:
        shown = f"'{raw}'" if isinstance(raw, str) else repr(raw)
        return UsageError(f"The 'widths' parameter must be {_PROFILE_HELP}. Got {shown} instead.", param="widths")

    def width(item) -> int:
        if isinstance(item, bool) or not (isinstance(item, int) or (isinstance(item, str) and _INT.match(item))):
            raise bad()
        n = int(item)
        if not 1 <= n < MAX_WIDTH:
            raise bad()
        return n

    if isinstance(raw, (list, tuple)):
        items = [width(t) for t in raw]
        if len(items) < 2:
            raise bad()
        return ",".join(map(str, items))
    if not isinstance(raw, str):
        raise bad()
    name, _, rest = raw.strip().partition(":")
    if name == "pyramid":
        parts = rest.split(":")
        if len(parts) != 2:
            raise bad()
        return f"pyramid:{width(parts[0])}:{width(parts[1])}"
    if name == "constant":
        return f"constant:{width(rest)}"
    if ":" in raw:
        raise bad()
    items = raw.split(",")
    if len(items) < 2:
        raise bad()
    return ",".join(str(width(t)) for t in items)


def profile_depth(spec: str) -> int | None:
    """L fixed by an explicit list, None for a named profile (which takes any depth)."""
    return None if ":" in spec else spec.count(",")


def layer_widths(spec: str, depth: int) -> tuple[int, ...]:
    """(N_0, ..., N_L) of a canonical profile spec at depth L (see :func:`parse_widths`)."""
    name, _, rest = spec.partition(":")
    if name == "constant":
        return (int(rest),) * (depth + 1)
    if name == "pyramid":
        first, last = (int(t) for t in rest.split(":"))
        ratio = math.log(last / first)
        return tuple(max(1, int(round(first * math.exp(ratio * l / depth)))) for l in range(depth + 1))
    widths = tuple(int(t) for t in spec.split(","))
    if len(widths) != depth + 1:
        raise ValueError(f"profile {spec} has {len(widths) - 1} layers, not {depth}")
    return widths


# --- fan modes -------------------------------------------------------------------------------------


def fan(widths, mode: str) -> np.ndarray:
    """N_fan(l) for l = 1..L, shape (L,): the N that layer l's variance is divided by."""
    w = np.asarray(widths, dtype=float)
    if mode == "fan_in":
        return w[:-1].copy()
    if mode == "fan_out":
        return w[1:].copy()
    if mode == "fan_avg":
        return (w[:-1] + w[1:]) / 2
    if mode == "fixed":
        return np.full(len(w) - 1, w[0])
    raise ValueError(f"unknown fan mode {mode!r}; expected one of {MODES}")


def layer_sigma_w2(s: float, widths, mode: str) -> np.ndarray:
    """σ_{w,l}² = s / N_fan(l), l = 1..L, for the swept s = σ_w²·N."""
    return s / fan(widths, mode)


def scaled_variances(s: float, widths, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(s_in, s_out) of :func:`hevar.meanfield.theory.log_q_trajectory` / ``log_q_tilde_trajectory``.

    s_in[l] = σ_{w,l}²·N_{l-1} = s·N_{l-1}/N_fan(l) (the forward factor) and
    s_out[l] = σ_{w,l+1}²·N_{l+1} = s·N_{l+1}/N_fan(l+1) (the backward factor; entry L is unused
    and set to s). Written as s times a width ratio so that a ratio of 1 leaves s exact.
    """
    w = np.asarray(widths, dtype=float)
    f = fan(widths, mode)
    s_in = s * (w[:-1] / f)
    s_out = np.full(len(f), float(s))
    s_out[:-1] = s * (w[2:] / f[1:])
    return s_in, s_out


# --- weight distributions --------------------------------------------------------------------------


def truncated_variance(c):
    """Variance of N(0, 1) cut at ±c: 1 − 2c·ϕ(c)/(2Φ(c) − 1) (1 at c = ∞)."""
    c = np.asarray(c, dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        out = 1 - 2 * c * np.exp(-c * c / 2) / math.sqrt(2 * math.pi) / special.erf(c / math.sqrt(2))
    return np.where(np.isinf(c), 1.0, out)


def variance_ratio(dist: str, sigma_w: float | np.ndarray = 1.0):
    """Expected per-entry variance of Wˡ over the nominal σ_{w,l}² (the closed form the realised
    ratio scatters around): 1 for every distribution but ``truncnormal``, where it is the variance
    of N(0, 1) cut at ±2/σ_{w,l}."""
    if dist == "truncnormal":
        return truncated_variance(TORCH_TRUNC / np.asarray(sigma_w, dtype=float))
    if dist not in DISTS:
        raise ValueError(f"unknown weight distribution {dist!r}; expected one of {DISTS}")
    return np.ones_like(np.asarray(sigma_w, dtype=float))


def _truncated(rng: np.random.Generator, shape: tuple[int, ...], c: float) -> np.ndarray:
    """N(0, 1) cut at ±c, by inverting the CDF of uniforms (symmetric, so both tails keep their
    precision: the sign is one uniform bit, the magnitude comes from the upper half)."""
    u = rng.random(shape)
    half = special.ndtr(c) - 0.5  # P(0 < u < c)
    sign = np.where(u < 0.5, -1.0, 1.0)
    v = np.abs(2 * u - 1)  # uniform on [0, 1), independent of the sign
    # Upper tail written as 1 - p with p small so ndtri keeps its precision near p = 1.
    return sign * -special.ndtri(0.5 - v * half)


def standard_draw(rng: np.random.Generator, dist: str, shape: tuple[int, int], trunc_at: float = math.inf) -> np.ndarray:
    """A float64 standard draw Gˡ of ``shape`` (N_l, N_{l-1}) for ``dist`` (see the module docstring).

    ``trunc_at``: for ``truncnormal``, the cut in units of the layer's std, 2/σ_{w,l}.
    ``normal`` is drawn by :class:`hevar.engine.passes.Streams` itself and is not handled here.
    """
    if dist == "uniform":
        return math.sqrt(3.0) * (2 * rng.random(shape) - 1)
    if dist == "truncnormal":
        return _truncated(rng, shape, trunc_at)
    if dist == "truncnormal_keras":
        return _truncated(rng, shape, KERAS_TRUNC) / KERAS_STD
    if dist == "orthogonal":
        n_out, n_in = shape
        a = rng.standard_normal((max(shape), min(shape)))
        q, r = np.linalg.qr(a)
        q *= np.where(np.diag(r) < 0, -1.0, 1.0)  # Haar measure (Mezzadri 2007)
        q = q if n_out >= n_in else q.T
        return math.sqrt(max(shape)) * q
    raise ValueError(f"no standard draw for weight distribution {dist!r}")
