"""Mean-field theory of signal propagation at initialization.

Conventions (hevar's throughout): layer l = 1..L computes zˡ = Wˡ φ(zˡ⁻¹) + bˡ with φ(z⁰) := x,
Wˡ of shape (N_l, N_{l-1}) with i.i.d. entries of raw variance σ_{w,l}², bˡ ~ N(0, σ_b²), inputs
x ~ N(0, q_in·I). With u ~ N(0, 1),

    V(q) = E[φ(√q u)²],      G(q) = E[φ'(√q u)²].

Forward (N is the fan-in N_{l-1}):
    q¹ = σ_{w,1}² N_0 q_in + σ_b²,     qˡ = σ_{w,l}² N_{l-1} V(qˡ⁻¹) + σ_b²   (l ≥ 2).

Backward (N is the fan-out N_{l+1}; Theorem 1.2 of the seed, the gradient-independence assumption):
    q̃ˡ = q̃ˡ⁺¹ · σ_{w,l+1}² N_{l+1} · G(qˡ).

Theorem 1.1 (independence of δˡ and φ(zˡ⁻¹)): the per-input weight-gradient squared norm is
    E‖∂J/∂Wˡ‖²_F ≈ N_l q̃ˡ · N_{l-1} E[φ(zˡ⁻¹)²],  with E[φ(z⁰)²] = q_in.

With constant width N the fan-in and fan-out agree and one number s = σ_w²·N sets both maps:
the *q-map* q ↦ F(q) = s·V(q) + σ_b², its fixed points q* = F(q*), and the gradient factor per layer
χ(q) = s·G(q), χ₁ = χ(q*). q̃ˡ changes by χ₁ per layer once qˡ has settled, so χ₁ < 1 is the
ordered phase (gradients vanish towards the input over the depth scale ξ = -1/ln χ₁), χ₁ > 1 the
chaotic phase (they explode over |ξ| layers) and χ₁ = 1 the critical line (ξ = ∞) that He
initialization puts ReLU networks on.

Trajectories are returned as natural logarithms so that depth-2000 nets do not overflow.

This module holds the maps and trajectories and the `hevar theory` report; the rest lives beside it
and is re-exported here: :mod:`~hevar.meanfield.moments` (V, G, V', their limits),
:mod:`~hevar.meanfield.fixedpoints` (every fixed point of the q-map, χ₁ at the one reached) and
:mod:`~hevar.meanfield.critical` (where χ₁ = 1).

References: He et al., "Delving deep into rectifiers" (2015); Poole et al., "Exponential
expressivity in deep neural networks through transient chaos" (2016); Schoenholz et al., "Deep
information propagation" (2017); Klambauer et al., "Self-normalizing neural networks" (2017).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hevar.meanfield import gaussian
from hevar.meanfield.activations import Activation
from hevar.meanfield.critical import (KINDS, S_SCAN, Critical, CriticalPoint, DoublyCritical,  # noqa: F401
                                      critical_line, critical_points, critical_sigma_w2_n, doubly_critical)
from hevar.meanfield.fixedpoints import (CRITICAL_TOL, FixedPoint, SaddleNode, chi1, chi1_curve,  # noqa: F401
                                         depth_scale, fixed_points, phase, q_fixed_point, saddle_nodes)
from hevar.meanfield.moments import V_RTOL, G, Limits, V, dV, limits  # noqa: F401 (re-exported)
from hevar.errors import UsageError

Array = np.ndarray

_HUGE = 1e300  # q beyond this is treated as having overflowed to +inf


def qmap(act: Activation, q: float | Array, s: float | Array, sigma_b2: float) -> Array:
    """The forward map F(q) = s·V(q) + σ_b², qˡ = F(qˡ⁻¹) (Poole et al. 2016, eq. 3).

    Parameters
    ----------
    act : Activation
    q : float or array
        qˡ⁻¹, the variance of the previous layer's pre-activations.
    s : float or array
        σ_w²·N with N the fan-in N_{l-1} (broadcasts against ``q``).
    sigma_b2 : float
        σ_b².

    Returns
    -------
    array of float64
    """
    return np.asarray(s, dtype=float) * V(act, q) + sigma_b2


def chi(act: Activation, q: float | Array, s: float | Array) -> Array:
    """The backward factor per layer χ(q) = s·G(q): q̃ˡ = χ(qˡ)·q̃ˡ⁺¹ (Theorem 1.2 of the seed).

    Parameters
    ----------
    act : Activation
    q : float or array
        qˡ, the forward variance at which φ' is evaluated.
    s : float or array
        σ_w²·N with N the fan-out N_{l+1} (the same number as the fan-in at constant width).

    Returns
    -------
    array of float64
    """
    return np.asarray(s, dtype=float) * G(act, q)


# --- trajectories ---------------------------------------------------------------------------------


def log_q_trajectory(act: Activation, s_in: Array, sigma_b2: float, q_in: float = 1.0) -> Array:
    """ln qˡ for l = 1..L along the forward recursion, from the input variance.

        q¹ = s₁·q_in + σ_b²,   qˡ = s_l·V(qˡ⁻¹) + σ_b²,   s_l = σ_{w,l}² N_{l-1} (fan-in).

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
        ln qˡ; +inf where the recursion overflows float64 (possible only for non-homogeneous φ:
        homogeneous ones run in logs), -inf where q reaches exactly 0.
    """
    s_in = np.asarray(s_in, dtype=float)
    out = np.empty(s_in.shape)
    log_b = np.log(sigma_b2) if sigma_b2 > 0 else -np.inf
    with np.errstate(divide="ignore", over="ignore"):  # s·q_in beyond float64: ln q¹ = inf
        log_q = np.logaddexp(np.log(s_in[0] * q_in), log_b)
    out[0] = log_q
    out[1:] = log_q_continue(act, log_q, s_in[1:], sigma_b2)
    return out


def log_q_continue(act: Activation, log_q_start: float, s_in: Array, sigma_b2: float) -> Array:
    """ln qˡ of n more layers qˡ = s_l·V(qˡ⁻¹) + σ_b², from ln q of the layer before them.

    The dense block's forward map over a run of layers (:class:`hevar.blocks.dense.Dense`);
    :func:`log_q_trajectory` is the input layer followed by this.

    Parameters
    ----------
    act : Activation
    log_q_start : float
        ln q of the layer feeding the first of them.
    s_in : array, shape (n,)
        σ_{w,l}²·N_{l-1} of each of the n layers.
    sigma_b2 : float

    Returns
    -------
    array, shape (n,)
    """
    s_in = np.asarray(s_in, dtype=float)
    out = np.empty(s_in.shape)
    log_b = np.log(sigma_b2) if sigma_b2 > 0 else -np.inf
    log_q = log_q_start
    if act.homogeneous:
        # V(q) = V(1)·q exactly, so the recursion can run in logs at any depth.
        log_v1 = float(np.log(V(act, 1.0)))
        with np.errstate(divide="ignore"):
            log_s = np.log(s_in)
        for l in range(len(s_in)):
            log_q = np.logaddexp(log_s[l] + log_v1 + log_q, log_b)
            out[l] = log_q
        return out
    v_of = _raw_v(act)
    q = float(np.exp(log_q))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for l in range(len(s_in)):
            q_next = float(s_in[l] * v_of(np.array([q]))[0] + sigma_b2) if q < _HUGE else math.inf
            if not q_next < _HUGE:
                q_next = math.inf
            # A settled trajectory under constant s stays put: fill the rest (depth 1000 in ~ms).
            if (q_next == q or abs(q_next - q) <= 4e-16 * q) and np.all(s_in[l:] == s_in[l]):
                out[l:] = math.log(q_next) if q_next > 0 else -math.inf
                return out
            q = q_next
            out[l] = math.log(q) if q > 0 else -math.inf
    return out


def _raw_v(act: Activation):
    """V for finite q > 0 without the wrapper's bookkeeping (the trajectory calls it per layer)."""
    if act.V is not None:
        return act.V
    phi, kinks = act.phi, act.kinks
    return lambda q: gaussian.expect(lambda z: phi(z) ** 2, q, kinks)


def log_q_tilde_trajectory(act: Activation, s_out: Array, log_q: Array, log_q_tilde_top: float) -> Array:
    """ln q̃ˡ for l = 1..L from the backward recursion q̃ˡ = q̃ˡ⁺¹·s_{l+1}·G(qˡ), started at q̃ᴸ.

    Parameters
    ----------
    act : Activation
    s_out : array, shape (L,)
        σ_{w,l+1}²·N_{l+1} for l = 1..L-1 (N_{l+1} is the fan-out of layer l); entry L is unused.
    log_q : array, shape (L,)
        ln qˡ of the forward pass along which G is evaluated.
    log_q_tilde_top : float
        ln q̃ᴸ (hevar starts the prediction at the measured top value; the report uses 0).

    Returns
    -------
    array, shape (L,)
    """
    L = len(log_q)
    out = np.empty(L)
    out[L - 1] = log_q_tilde_top
    if L > 1:
        with np.errstate(over="ignore"):  # qˡ = inf where ln qˡ is beyond float64 (G has its limit there)
            g = G(act, np.exp(np.asarray(log_q[:-1], dtype=float)))
        with np.errstate(divide="ignore", invalid="ignore"):
            steps = np.log(np.asarray(s_out[:-1], dtype=float) * g)
        out[:-1] = log_q_tilde_top + np.cumsum(steps[::-1])[::-1]
    return out


def log_grad_norm2(act: Activation, widths: Array, log_q: Array, log_q_tilde: Array, q_in: float = 1.0) -> Array:
    """ln of Theorem 1.1's prediction E‖∂J/∂Wˡ‖² ≈ N_l q̃ˡ · N_{l-1} E[φ(zˡ⁻¹)²], l = 1..L.

    Parameters
    ----------
    widths : array, shape (L+1,)
        (N_0, ..., N_L).
    log_q, log_q_tilde : array, shape (L,)
        ln qˡ and ln q̃ˡ.
    q_in : float
        E[φ(z⁰)²] = E[x²], the input is not activated.
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


# --- the `hevar theory` report --------------------------------------------------------------------


def report(act: Activation, sigma_b2: float = 0.0, sigma_w2_n: float | None = None, depth: int = 10,
           q_in: float = 1.0, input_preactivation: bool = False) -> dict[str, Any]:
    """Everything `hevar theory` prints, as one dict with stable keys (floats may be nan or ±inf).

    Parameters
    ----------
    act : Activation
    sigma_b2 : float
        σ_b².
    sigma_w2_n : float or None
        σ_w²·N at which to evaluate the phase and the per-layer predictions; None means the critical
        value (and, when there is none, the at-σ_w²·N keys are None and ``layers`` is empty).
    depth : int
        L, the number of layers predicted.
    q_in : float
        Input second moment E[x²].
    input_preactivation : bool
        Treat the input as a pre-activation, so that q¹ = s·V(q_in) + σ_b² (Poole et al. 2016 and
        most reference code) instead of hevar's q¹ = s·q_in + σ_b² (the input is not activated).
        Everything that depends on q¹ (the fixed point reached, χ₁, a jump's location, the layers)
        is then computed from the equivalent unactivated second moment V(q_in).

    Returns
    -------
    dict with keys

    ``activation`` (str, canonical spec), ``sigma_b2``, ``q_in``, ``input`` ("not activated" or
    "pre-activation"), ``q_in_effective`` (the unactivated second moment giving the same q¹),
    ``critical_sigma_w2_n`` (float, nan when none), ``gain`` (√ of it: the std multiplier of
    1/√N, what ``torch.nn.init.calculate_gain`` stands for), ``critical_kind`` (one of
    :data:`KINDS`), ``critical_label`` (one sentence), ``critical_q_star``,
    ``critical_chi1_below``, ``critical_chi1_above``, ``critical_jump_at`` (floats; see
    :class:`Critical`),
    ``sigma_w2_n`` (the value evaluated, or None), ``q_star`` (fixed point reached from q_in),
    ``chi1`` (s·G(q*)), ``xi`` (-1/ln χ₁, signed, see :func:`depth_scale`; finite whenever χ₁ ≠ 1
    exactly, so at a critical point found to rounding it is huge, ~1e15, and its sign is noise), ``phase``
    ("ordered" / "critical" / "chaotic"), with a σ_w²·N also ``c_star``, ``chi_c``, ``xi_c``, ``xi_q``
    and ``c_note`` (pairs of inputs at that q*, see :func:`hevar.meanfield.correlations.report_terms`),
    ``fixed_points`` (list of ``{"q", "slope", "stable",
    "chi1", "marginal", "saddle_node"}``, all fixed points of the map, see :func:`fixed_points` and
    :class:`FixedPoint`), ``saddle_nodes`` (list of ``{"sigma_w2_n", "q", "pair_below", "chi1"}``: every
    σ_w²·N at this σ_b² where two fixed points merge and vanish, see :func:`saddle_nodes`; filled
    whatever ``sigma_w2_n``), ``critical_points`` (list of ``{"sigma_w2_n", "q_star", "slope",
    "stable"}``: every fixed point with χ₁ = 1 at this σ_b², stable or not, see
    :func:`critical_points`), ``doubly_critical`` (list of ``{"sigma_w2_n", "sigma_b2", "q_star"}``:
    where χ₁ = 1 and the q-map slope is 1 together, any σ_b², see :func:`doubly_critical`),
    ``warnings`` (list of str: a numerical φ' and what it does to the numbers),
    ``critical_sigma_w2_n_error`` (the critical value's uncertainty from a numerical φ', 0 when
    φ' is exact), ``criteria`` (list of ``{"key", "label", "sigma_w2_n", "gain", "chi1", "fixed_point_stable",
    "log10_factor", "verdict", "note", "post_q_star", "post_mean", "post_var", "post_rms"}``: the
    second-moment, variance (NF-Net γ²) and critical gains side by side with their verdict over
    ``depth`` layers, see :mod:`hevar.meanfield.criteria`),
    ``depth`` (L) and ``layers``: list of ``{"layer", "q", "q_tilde", "chi"}`` for l = 1..L with qˡ
    from the forward recursion started at q_in, q̃ˡ from the backward one with q̃ᴸ = 1, and
    χˡ = s·G(qˡ) (so q̃ˡ = χˡ·q̃ˡ⁺¹).
    """
    _check_report_args(sigma_b2, sigma_w2_n, depth, q_in)
    q_given = float(q_in)
    q_in = float(V(act, q_given)) if input_preactivation else q_given
    crit = critical_sigma_w2_n(act, float(sigma_b2), float(q_in))
    out: dict[str, Any] = dict(
        activation=act.name, sigma_b2=float(sigma_b2), q_in=q_given,
        input="pre-activation" if input_preactivation else "not activated", q_in_effective=q_in,
        critical_sigma_w2_n=crit.sigma_w2_n, gain=math.sqrt(crit.sigma_w2_n),
        critical_kind=crit.kind, critical_label=crit.label, critical_q_star=crit.q_star,
        critical_chi1_below=crit.chi1_below, critical_chi1_above=crit.chi1_above,
        critical_jump_at=crit.jump_at,
        sigma_w2_n=None, q_star=None, chi1=None, xi=None, phase=None, fixed_points=[],
        saddle_nodes=[dict(sigma_w2_n=p.sigma_w2_n, q=p.q, pair_below=p.pair_below, chi1=p.chi1)
                      for p in saddle_nodes(act, float(sigma_b2))],
        critical_points=[dict(sigma_w2_n=p.sigma_w2_n, q_star=p.q_star, slope=p.slope, stable=p.stable)
                         for p in critical_points(act, float(sigma_b2))],
        doubly_critical=[dict(sigma_w2_n=p.sigma_w2_n, sigma_b2=p.sigma_b2, q_star=p.q_star)
                         for p in doubly_critical(act)],
        criteria=_criteria_rows(act, float(sigma_b2), int(depth), float(q_in)),
        **_derivative_warning(act, crit),
        depth=int(depth), layers=[],
    )
    s = crit.sigma_w2_n if sigma_w2_n is None else float(sigma_w2_n)
    if not math.isfinite(s):
        return out
    c = chi1(act, s, sigma_b2, q_in)
    ph = phase(c)
    out.update(sigma_w2_n=s, q_star=q_fixed_point(act, s, sigma_b2, q_in), chi1=c,
               xi=depth_scale(c), phase=ph)
    from hevar.meanfield import correlations  # imports this module: bound late

    out.update(correlations.report_terms(act, s, float(sigma_b2), q_in))  # pairs of inputs, at the q* reached
    out["fixed_points"] = [dict(q=p.q, slope=p.slope, stable=p.stable, chi1=p.chi1, marginal=p.marginal,
                                saddle_node=p.saddle_node)
                           for p in fixed_points(act, s, sigma_b2)]
    s_layers = np.full(int(depth), s)
    log_q = log_q_trajectory(act, s_layers, sigma_b2, q_in)
    log_qt = log_q_tilde_trajectory(act, s_layers, log_q, 0.0)
    with np.errstate(over="ignore"):  # qˡ, q̃ˡ beyond float64 are reported as inf
        chis = chi(act, np.exp(log_q), s)
        out["layers"] = [dict(layer=l + 1, q=float(np.exp(log_q[l])), q_tilde=float(np.exp(log_qt[l])),
                              chi=float(chis[l])) for l in range(int(depth))]
    return out


def _derivative_warning(act: Activation, crit: Critical) -> dict[str, Any]:
    """``warnings`` (list of str) and ``critical_sigma_w2_n_error`` (the critical value's uncertainty
    from a numerical φ', 0 when φ' is exact) for the report."""
    if act.dphi_error <= 0:
        return dict(warnings=[], critical_sigma_w2_n_error=0.0)
    lim = limits(act)
    q = crit.q_star
    g = lim.g0 if q == 0 else lim.g_inf if q == math.inf else float(G(act, q)) if q == q else lim.g0
    rel = 2 * act.dphi_error / math.sqrt(g) if g > 0 else math.inf  # δG/G ≈ 2·δφ'/|φ'|
    err = crit.sigma_w2_n * rel if math.isfinite(crit.sigma_w2_n) else math.nan
    kinks = (f"; kinks detected at z = {', '.join(f'{k:g}' for k in act.detected_kinks)} (one-sided differences "
             "and quadrature panels there)" if act.detected_kinks else "; no kinks detected on |z| ≤ 16")
    text = (f"φ' of {act.name} is a numerical derivative (8th-order differences, estimated error ≤ "
            f"{act.dphi_error:.1g} on |z| ≤ 16){kinks}: G, χ₁ and the critical σ_w²·N carry a relative error of "
            f"about {rel:.1g}" + (f" (σ_w²·N = {crit.sigma_w2_n:.6g} ± {err:.1g})" if math.isfinite(err) else "")
            + "; give MODULE:FUNCTION:MODULE:DERIVATIVE for exact values.")
    return dict(warnings=[text], critical_sigma_w2_n_error=err)


def _criteria_rows(act: Activation, sigma_b2: float, depth: int, q_in: float) -> list[dict[str, Any]]:
    from hevar.meanfield import criteria

    rows = []
    for c in criteria.criteria(act, sigma_b2, depth, q_in, with_depth=False):
        rows.append(dict(key=c.key, label=c.label, sigma_w2_n=c.sigma_w2_n, gain=c.gain, chi1=c.chi1,
                         fixed_point_stable=c.fixed_point_stable, log10_factor=c.log10_factor, verdict=c.verdict,
                         note=c.note, post_q_star=c.post.q_star, post_mean=c.post.mean, post_var=c.post.var,
                         post_rms=c.post.rms))
    return rows


def _check_report_args(sigma_b2: float, sigma_w2_n: float | None, depth: int, q_in: float) -> None:
    if not (math.isfinite(sigma_b2) and sigma_b2 >= 0):
        raise UsageError(f"The 'sigma_b2' parameter must be a float in the range [0, inf). Got {sigma_b2:g} instead.",
                         param="sigma-b2")
    if sigma_w2_n is not None and not (math.isfinite(sigma_w2_n) and sigma_w2_n > 0):
        raise UsageError(f"The 'sigma_w2' parameter must be a float in the range (0, inf). Got {sigma_w2_n:g} instead.",
                         param="sigma-w2")
    if not (isinstance(depth, (int, np.integer)) and depth >= 1):
        raise UsageError(f"The 'depth' parameter must be an int in the range [1, inf). Got {depth} instead.",
                         param="depth")
    if not (math.isfinite(q_in) and q_in > 0):
        raise UsageError(f"The 'q_in' parameter must be a float in the range (0, inf). Got {q_in:g} instead.",
                         param="q-in")
