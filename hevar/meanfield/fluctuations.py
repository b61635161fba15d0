"""Finite-width fluctuations: the exact law of ‖δˡ‖² for one input through a ReLU-like net, and β.

The mean-field recursion (:mod:`hevar.meanfield.theory`) predicts the *average* q̃ˡ. At finite width each
network gives its own value, and the spread of ln q̃ˡ grows with the number of layers between l
and the readout, faster the narrower the net (Hanin 2018; Hanin & Rolnick 2018: the relevant
quantity is β = Σ 1/N_l). For positively homogeneous φ with slopes (1, α) — relu (α = 0),
leaky_relu:α, linear (α = 1) — no bias, Gaussian weights and **one input**, the law is exact
(derivation: ``docs/finite-width.md``)::

    ‖δˡ‖²  =ᵈ  (∏_{m=l+1}^{L} σ_{w,m}²) · χ²_{N_L} · ∏_{m=l}^{L-1} F_m,
    F_m = Σ_{i=1}^{N_m} a_i γ_i,  a_i ∈ {1, α²} fair coins,  γ_i ~ χ²₁,  all independent.

Hence, with κ(α) = [6(1+α⁴) − (1+α²)²] / (1+α²)²  (κ = 5 for relu, 2 for linear),

    E[(q̃ˡ)²] / E[q̃ˡ]² = (1 + 2/N_L) · ∏_{m=l}^{L-1} (1 + κ/N_m),
    Var[ln q̃ˡ]        = ψ'(N_L/2) + Σ_{m=l}^{L-1} Var[ln F_m]   (≈ 2/N_L + κ·Σ_{m=l}^{L-1} 1/N_m).

Neither depends on σ_w² (scale drops out of both). Events where a whole ReLU layer is inactive
(probability 2^(−N_m)) are left out: they make ln q̃ = −∞.

Pure functions of widths and slopes; ``widths`` is always (N_0, N_1, …, N_L).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import special

Array = np.ndarray

try:  # the ufuncs behind scipy.stats.binom.pmf and scipy.stats.beta.pdf (Boost), without importing
    # scipy.stats: that import alone is 0.9 s of a 3.8 s default sweep (issue 17). Same bits, tested.
    from scipy.special._ufuncs import _beta_pdf, _binom_pmf
except ImportError:  # pragma: no cover - a SciPy that moved them: the public, slower-to-import path
    def _binom_pmf(k, n, p):
        from scipy import stats
        return stats.binom.pmf(k, n, p)

    def _beta_pdf(x, a, b):
        from scipy import stats
        return stats.beta.pdf(x, a, b)


def homogeneous_slope(act_name: str) -> float | None:
    """The negative-side slope α of a positively homogeneous activation with φ(z) = z for z > 0
    (relu → 0, leaky_relu:α → α, linear → 1); None for any other activation."""
    family, _, param = str(act_name).partition(":")
    if family == "relu" and not param:
        return 0.0
    if family == "linear" and not param:
        return 1.0
    if family == "leaky_relu" and param:
        try:
            alpha = float(param)
        except ValueError:
            return None
        return abs(alpha) if math.isfinite(alpha) else None  # φ' = α or 1: only α² enters
    return None


def beta(widths) -> float:
    """β = Σ_{l=1}^{L-1} 1/N_l over the hidden layers (those followed by φ), Hanin & Rolnick's
    measure of how far a net is from the infinite-width limit."""
    n = np.asarray(widths, dtype=float)
    return float(np.sum(1.0 / n[1:-1]))


def beta_to_top(widths) -> Array:
    """Per layer l = 1..L, Σ_{m=l}^{L-1} 1/N_m: the part of β between layer l and the readout
    (0 at l = L). Shape (L,)."""
    n = np.asarray(widths, dtype=float)
    inv = 1.0 / n[1:-1]  # N_1 .. N_{L-1}
    return np.append(np.cumsum(inv[::-1])[::-1], 0.0)


def kappa(alpha: float) -> float:
    """κ(α) = Var(aγ)/E[aγ]² for a ∈ {1, α²} a fair coin and γ ~ χ²₁: E[F²]/E[F]² = 1 + κ/N."""
    a2 = alpha * alpha
    return (6.0 * (1.0 + a2 * a2) - (1.0 + a2) ** 2) / (1.0 + a2) ** 2


def q_tilde_moment_ratio(widths, alpha: float) -> Array:
    """E[(q̃ˡ)²]/E[q̃ˡ]² for one input, l = 1..L (exact; see the module docstring). Shape (L,)."""
    n = np.asarray(widths, dtype=float)
    per_layer = np.log1p(kappa(alpha) / n[1:-1])  # layers 1..L-1
    above = np.append(np.cumsum(per_layer[::-1])[::-1], 0.0)
    return np.exp(above + math.log1p(2.0 / n[-1]))


@functools.lru_cache(maxsize=256)
def var_ln_factor(n: int, alpha: float) -> float:
    """Var[ln F] for F = Σ_{i=1}^{n} a_i γ_i (a_i ∈ {1, α²} fair coins, γ_i ~ χ²₁), exactly.

    With K ~ Bin(n, ½) the number of a_i = 1:
    - α = 1: F ~ χ²_n, Var = ψ'(n/2);
    - α = 0: F | K ~ χ²_K, Var = E[ψ'(K/2)] + Var[ψ(K/2)] over K ≥ 1 (K = 0, probability 2⁻ⁿ,
      gives ln F = −∞ and is left out);
    - otherwise F = χ²_n · (α² + (1−α²)B) with B | K ~ Beta(K/2, (n−K)/2) independent of χ²_n, so
      Var = ψ'(n/2) + Var[ln(α² + (1−α²)B)]; the smooth integrand is integrated by Gauss–Jacobi
      quadrature against each Beta density (exact to rounding with 48 nodes).
    """
    n = int(n)
    if alpha == 1.0:
        return float(special.polygamma(1, n / 2))
    k = np.arange(n + 1)
    pmf = _binom_pmf(k.astype(float), n, 0.5)
    if alpha == 0.0:
        k, pmf = k[1:], pmf[1:] / pmf[1:].sum()
        psi1 = special.polygamma(1, k / 2)
        psi0 = special.digamma(k / 2)
        mean0 = np.dot(pmf, psi0)
        return float(np.dot(pmf, psi1) + np.dot(pmf, (psi0 - mean0) ** 2))
    a2 = alpha * alpha
    m1 = np.empty(n + 1)
    m2 = np.empty(n + 1)
    for kk in range(n + 1):
        if kk == 0 or kk == n:
            f = math.log(a2) if kk == 0 else 0.0
            m1[kk], m2[kk] = f, f * f
            continue
        if pmf[kk] < 1e-17:  # contributes nothing at double precision
            m1[kk] = m2[kk] = 0.0
            continue
        a, b = kk / 2, (n - kk) / 2
        B, w = _beta_nodes(a, b)
        f = np.log(a2 + (1 - a2) * B)
        m1[kk], m2[kk] = np.dot(w, f), np.dot(w, f * f)
    mean = np.dot(pmf, m1)
    return float(special.polygamma(1, n / 2) + np.dot(pmf, m2) - mean * mean)


def _beta_nodes(a: float, b: float, nodes: int = 48) -> tuple[Array, Array]:
    """Quadrature nodes on [0, 1] and normalised weights for expectations under Beta(a, b).

    Gauss–Jacobi (weight (1−x)^(b−1)(1+x)^(a−1) on [−1, 1], x = 2B − 1) handles the endpoint
    singularities of small a or b; its normalisation 2^(a+b−1) overflows beyond a + b ≈ 1000, where
    the density is a narrow bump and Gauss–Legendre over its mean ± 12 standard deviations is exact
    to rounding for the smooth integrands used here.
    """
    if a + b < 200:
        x, w = special.roots_jacobi(nodes, b - 1, a - 1)
        return (x + 1) / 2, w / w.sum()
    mean, sd = a / (a + b), math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    lo, hi = max(mean - 12 * sd, 0.0), min(mean + 12 * sd, 1.0)
    x, w = np.polynomial.legendre.leggauss(nodes)
    B = lo + (hi - lo) * (x + 1) / 2
    with np.errstate(over="ignore"):
        w = w * _beta_pdf(B, a, b)
    return B, w / w.sum()


def var_ln_q_tilde(widths, alpha: float) -> Array:
    """Var[ln q̃ˡ] for one input, l = 1..L: ψ'(N_L/2) + Σ_{m=l}^{L-1} Var[ln F_m]. Shape (L,)."""
    n = [int(v) for v in widths]
    per_layer = np.array([var_ln_factor(m, float(alpha)) for m in n[1:-1]])
    above = np.append(np.cumsum(per_layer[::-1])[::-1], 0.0)
    return above + float(special.polygamma(1, n[-1] / 2))


def theory_applies(act_name: str, sigma_b2: float, batch: int, weights: str = "gaussian") -> bool:
    """Whether the exact single-input law holds for a configuration: homogeneous φ with slopes
    (1, α), no bias, one input per net, Gaussian weights."""
    return homogeneous_slope(act_name) is not None and sigma_b2 == 0 and batch == 1 and weights == "gaussian"
