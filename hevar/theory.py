"""Mean-field theory of signal propagation at initialization.

Conventions (hevar's throughout): layer l = 1..L computes zˡ = Wˡ φ(zˡ⁻¹) + bˡ with φ(z⁰) := x,
Wˡ of shape (N_l, N_{l-1}) with i.i.d. entries of raw variance σ_{w,l}², bˡ ~ N(0, σ_b²), inputs
x ~ N(0, q_in·I). With u ~ N(0, 1),

    V(q) = E[φ(√q u)²],      G(q) = E[φ'(√q u)²].

Forward (fan-in N_{l-1}):
    q¹ = σ_{w,1}² N_0 q_in + σ_b²,     qˡ = σ_{w,l}² N_{l-1} V(qˡ⁻¹) + σ_b²   (l ≥ 2).

Backward (fan-out N_{l+1}; Theorem 1.2 of the seed, the gradient-independence assumption):
    q̃ˡ = q̃ˡ⁺¹ · σ_{w,l+1}² N_{l+1} · G(qˡ).

Theorem 1.1 (independence of δˡ and φ(zˡ⁻¹)): the per-input weight-gradient squared norm is
    E‖∂J/∂Wˡ‖²_F ≈ N_l q̃ˡ · N_{l-1} E[φ(zˡ⁻¹)²],  with E[φ(z⁰)²] = q_in.

Trajectories are returned as natural logarithms so that depth-2000 nets do not overflow.

References: He et al., "Delving deep into rectifiers" (2015); Poole et al., "Exponential
expressivity in deep neural networks through transient chaos" (2016); Schoenholz et al., "Deep
information propagation" (2017).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

from hevar import gaussian
from hevar.activations import Activation

Array = np.ndarray


def V(act: Activation, q: float | Array) -> Array:
    """E[φ(√q u)²], u ~ N(0,1): closed form when the activation has one, else quadrature."""
    if act.V is not None:
        return np.asarray(act.V(np.asarray(q, dtype=float)), dtype=float)
    return gaussian.expect(lambda z: act.phi(z) ** 2, q, act.kinks)


def G(act: Activation, q: float | Array) -> Array:
    """E[φ'(√q u)²], u ~ N(0,1): closed form when the activation has one, else quadrature."""
    if act.G is not None:
        return np.asarray(act.G(np.asarray(q, dtype=float)), dtype=float)
    return gaussian.expect(lambda z: act.dphi(z) ** 2, q, act.kinks)


def log_q_trajectory(act: Activation, s_in: Array, sigma_b2: float, q_in: float = 1.0) -> Array:
    """ln qˡ for l = 1..L along the forward recursion.

    Parameters
    ----------
    act : Activation
    s_in : array, shape (L,)
        σ_{w,l}²·N_{l-1}, the fan-in-scaled weight variance of each layer.
    sigma_b2 : float
        Bias variance σ_b².
    q_in : float
        Input variance E[x²] (the input is not activated).

    Returns
    -------
    array, shape (L,)
        ln qˡ; +inf where the recursion overflows float64 (possible only for non-homogeneous φ).
    """
    s_in = np.asarray(s_in, dtype=float)
    out = np.empty(s_in.shape)
    log_b = np.log(sigma_b2) if sigma_b2 > 0 else -np.inf
    log_q = np.logaddexp(np.log(s_in[0] * q_in), log_b)
    out[0] = log_q
    if act.homogeneous:
        # V(q) = V(1)·q exactly, so the recursion can run in logs at any depth.
        log_v1 = float(np.log(V(act, 1.0)))
        for l in range(1, len(s_in)):
            log_q = np.logaddexp(np.log(s_in[l]) + log_v1 + log_q, log_b)
            out[l] = log_q
        return out
    q = float(np.exp(log_q))
    for l in range(1, len(s_in)):
        q = float(s_in[l] * V(act, q) + sigma_b2) if np.isfinite(q) else np.inf
        out[l] = np.log(q) if q > 0 else -np.inf
    return out


def log_q_tilde_trajectory(act: Activation, s_out: Array, log_q: Array, log_q_tilde_top: float) -> Array:
    """ln q̃ˡ for l = 1..L from the backward recursion, started at q̃ᴸ.

    Parameters
    ----------
    s_out : array, shape (L,)
        σ_{w,l+1}²·N_{l+1} for l = 1..L-1 (the fan-out of layer l); entry L is unused.
    log_q : array, shape (L,)
        ln qˡ of the forward pass along which G is evaluated.
    log_q_tilde_top : float
        ln q̃ᴸ (hevar starts the prediction at the measured top value).
    """
    L = len(log_q)
    out = np.empty(L)
    out[L - 1] = log_q_tilde_top
    if L > 1:
        g = G(act, np.exp(log_q[:-1]))
        out[:-1] = log_q_tilde_top + np.cumsum(np.log(np.asarray(s_out[:-1]) * g)[::-1])[::-1]
    return out


def log_grad_norm2(act: Activation, widths: Array, log_q: Array, log_q_tilde: Array, q_in: float = 1.0) -> Array:
    """ln of Theorem 1.1's prediction N_l q̃ˡ · N_{l-1} E[φ(zˡ⁻¹)²], l = 1..L.

    ``widths`` is (N_0, ..., N_L).
    """
    widths = np.asarray(widths, dtype=float)
    log_v_prev = np.empty(len(log_q))
    log_v_prev[0] = np.log(q_in)
    if len(log_q) > 1:
        if act.homogeneous:
            log_v_prev[1:] = np.log(V(act, 1.0)) + log_q[:-1]
        else:
            with np.errstate(divide="ignore"):
                log_v_prev[1:] = np.log(V(act, np.exp(log_q[:-1])))
    return np.log(widths[1:]) + log_q_tilde + np.log(widths[:-1]) + log_v_prev


# --- fixed points and criticality (constant width, s = σ_w²·N) ---------------------------------


@dataclass(frozen=True)
class Critical:
    """The critical σ_w²·N where χ₁ = 1, with how it arises."""

    sigma_w2_n: float  # critical σ_w²·N (nan when there is none)
    kind: str  # "homogeneous", "q*->0", "finite q*", "none"
    q_star: float  # forward fixed point at criticality (nan when not finite)


def q_fixed_point(act: Activation, s: float, sigma_b2: float, q0: float = 1.0, tol: float = 1e-13) -> float:
    """The stable fixed point q* of q ↦ s·V(q) + σ_b² reached by iterating from ``q0``."""
    q = q0
    for _ in range(100_000):
        q_next = float(s * V(act, q) + sigma_b2)
        if not np.isfinite(q_next) or q_next > 1e300:
            return np.inf
        if abs(q_next - q) <= tol * max(q, 1e-300):
            return q_next
        if q_next < 1e-300:
            return 0.0
        q = q_next
    return q


def chi1(act: Activation, s: float, sigma_b2: float) -> float:
    """χ₁ = s·G(q*) at the forward fixed point reached from q = 1."""
    if act.homogeneous:
        return float(s * G(act, 1.0))
    q_star = q_fixed_point(act, s, sigma_b2)
    if q_star == 0.0:
        return float(s * act.dphi(np.zeros(1))[0] ** 2)
    return float(s * G(act, q_star))


def critical_sigma_w2_n(act: Activation, sigma_b2: float) -> Critical:
    """σ_w²·N where χ₁ = 1 (constant width)."""
    if act.homogeneous:
        return Critical(float(1.0 / G(act, 1.0)), "homogeneous", np.nan)
    if sigma_b2 == 0.0:
        d0 = float(act.dphi(np.zeros(1))[0] ** 2)
        if d0 > 0:
            return Critical(1.0 / d0, "q*->0", 0.0)
    try:
        s = optimize.brentq(lambda s: chi1(act, s, sigma_b2) - 1.0, 0.05, 50.0, xtol=1e-12)
    except ValueError:
        return Critical(np.nan, "none", np.nan)
    return Critical(float(s), "finite q*", q_fixed_point(act, s, sigma_b2))


def chi1_curve(act: Activation, s_grid: Array, sigma_b2: float) -> tuple[Array, Array]:
    """χ₁ and q* at each σ_w²·N of ``s_grid`` (for the stability figure's theory curve)."""
    s_grid = np.asarray(s_grid, dtype=float)
    chi = np.array([chi1(act, s, sigma_b2) for s in s_grid])
    q_star = np.array([np.nan if act.homogeneous else q_fixed_point(act, s, sigma_b2) for s in s_grid])
    return chi, q_star
