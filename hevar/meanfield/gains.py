"""The initialisations frameworks hand out by default, on hevar's axis σ_w²·N, with the theory's verdict.

Every framework initialiser that matters here draws i.i.d. weights of zero mean and a variance
c/fan: only c and which fan enter the mean-field theory (normal, truncated normal and uniform
draws of one variance give the same q and q̃ recursions). At **constant width N** fan_in =
fan_out = (fan_in + fan_out)/2 = N, so each initialiser is one number σ_w²·N = c:

==========================================  =====================================  ===========
initialiser                                 variance                               σ_w²·N
==========================================  =====================================  ===========
PyTorch ``nn.Linear`` default               kaiming_uniform_(a=√5): U(±1/√fan_in)   1/3
PyTorch ``kaiming_normal_/uniform_``        gain²/fan_in, defaults a=0,             2
(defaults)                                  nonlinearity='leaky_relu' → gain √2
PyTorch ``kaiming_*_(nonlinearity=ACT)``    calculate_gain(ACT)²/fan_in             gain²
PyTorch ``xavier_normal_/uniform_``         gain²·2/(fan_in + fan_out), gain=1      1
PyTorch ``xavier_*_(gain=calculate_gain)``  the same with the activation's gain     gain²
Keras ``he_normal`` / ``he_uniform``        VarianceScaling(2, 'fan_in')            2
Keras ``lecun_normal`` / ``lecun_uniform``  VarianceScaling(1, 'fan_in')            1
Keras ``glorot_normal`` / ``glorot_uniform``  VarianceScaling(1, 'fan_avg')         1
==========================================  =====================================  ===========

(Keras' truncated normal is rescaled so that the variance *after* truncation is scale/n; Keras'
``Dense`` default kernel is ``glorot_uniform``, its default bias zeros.) PyTorch's
``calculate_gain`` knows linear/identity/conv and sigmoid (1), tanh (5/3), relu (√2),
leaky_relu (√(2/(1+a²)), a = 0.01 when not given) and selu (3/4; PyTorch's own SELU docs say to
use nonlinearity='linear', gain 1, for self-normalising nets). It has no entry for gelu, silu,
mish, softplus, elu or erf: users then typically keep kaiming's default (relu's √2, σ_w²·N = 2) or
xavier's gain 1 (σ_w²·N = 1), both rows of the table; no activation-specific row is made up.
PyTorch's ``nn.Linear`` also draws its bias from U(±1/√fan_in), σ_b² = 1/(3N) — not 0, but
below 0.0014 from N = 256 on; pass ``--sigma-b2`` to see its effect.

For each (activation, σ_w²·N) the table gives the theory's χ₁ = σ_w²·N·G(q*) at the fixed point
the forward pass reaches from input variance 1, and the **predicted gradient factor over the
depth** L: q̃¹/q̃ᴸ along the mean-field trajectory, the product of the L − 1 per-layer factors
χ(qˡ) = σ_w²·N·G(qˡ), l = 1..L−1, with qˡ from the forward recursion started at the input (not
χ₁^(L−1): the forward pass need not sit at its fixed point, and for tanh at σ_w²·N = 1, σ_b² = 0
χ₁ = 1 while qˡ → 0 only like 1/l, so q̃ still decays as a power of the depth). It is exactly
what a sweep's ``summary.csv`` reports as ``log10_q_tilde_ratio_theory`` and measures as
``log10_q_tilde_ratio``. The verdict: **stable** when the factor lies in
:data:`STABLE_BAND` = [1/2, 2] (the error changes by at most a factor 2 across the whole net),
**vanishing** below it, **exploding** above it. The verdict is the mean-field one: at finite width
a factor near the band's edges can land on the other side (erf at σ_w²·N = 1: 0.474 predicted, 0.513
measured at N = 256), and near a χ₁ jump (gelu, silu, mish at σ_w²·N ≈ 2) q¹ sits by an unstable
fixed point and the measured factor can be orders of magnitude off the prediction (gelu at 2: 7e-12
predicted, 6e-6 measured; both vanishing).

``hevar gains --json`` prints :func:`to_dict` of :func:`gains_table`, one JSON object with keys

- ``sigma_b2`` (float), ``depth`` (int L), ``q_in`` (the input's second moment) and ``input``
  ("not activated" or "pre-activation", as ``hevar theory``), ``stable_band`` ([lo, hi]), ``width`` (str: the
  constant-width convention), ``verdict_rule`` (str);
- ``activations``: a list, one object per activation, with ``activation`` (canonical spec),
  ``critical_sigma_w2_n`` (float or null), ``critical_kind`` (see :data:`hevar.meanfield.theory.KINDS`),
  ``critical_jump_at`` (float or null), ``torch_gain`` (float or null when calculate_gain has
  no entry), ``torch_gain_call`` (str or null), ``note`` (str), ``command`` (one ``hevar sweep``
  measuring every row of this activation) and ``rows``: a list, one per initialiser, with
  ``scheme`` (stable id, see :data:`SCHEMES`, plus ``hevar.critical``), ``framework``
  (``pytorch`` / ``keras`` / ``hevar``), ``call`` (what the user writes), ``sigma_w2_n``,
  ``gain`` (√σ_w²·N), ``chi1``, ``q_star`` (may be ``"inf"``), ``phase``, ``factor``
  (q̃¹/q̃ᴸ; may be ``"inf"``), ``log10_factor``, ``verdict`` and ``command`` (the ``hevar sweep``
  that measures this row: compare ``log10_q_tilde_ratio`` in its summary.csv).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from hevar.meanfield import theory
from hevar.meanfield.activations import FAMILIES, Activation, parse_activation
from hevar.errors import UsageError

DEFAULT_DEPTH = 50
STABLE_BAND = (0.5, 2.0)  # q̃¹/q̃ᴸ in this closed interval is "stable"
VERDICTS = ("vanishing", "stable", "exploding")
WIDTH_NOTE = "constant width N (fan_in = fan_out = N); mean-field, so any N"
VERDICT_RULE = (f"q̃¹/q̃ᴸ over the depth along the mean-field trajectory: < {STABLE_BAND[0]:g} vanishing, "
                f"in [{STABLE_BAND[0]:g}, {STABLE_BAND[1]:g}] stable, > {STABLE_BAND[1]:g} exploding")


# --- PyTorch's calculate_gain ------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchGain:
    """What ``torch.nn.init.calculate_gain`` returns for an activation, and how it is asked for."""

    gain: float  # the std multiplier: std = gain/√fan_in (kaiming), gain·√(2/(fan_in+fan_out)) (xavier)
    nonlinearity: str  # the arguments naming the activation, e.g. "'tanh'" or "'leaky_relu', 0.2"


def torch_gain(act: Activation) -> TorchGain | None:
    """``calculate_gain`` for hevar's activation, or None where PyTorch has no entry.

    linear and sigmoid 1, tanh 5/3, relu √2, leaky_relu with slope a √(2/(1+a²)), selu 3/4.
    """
    family, *params = act.name.split(":")
    if act.user_defined or family not in FAMILIES:
        return None
    if family == "leaky_relu":
        slope = float(params[0]) if params else 0.01
        return TorchGain(math.sqrt(2.0 / (1.0 + slope * slope)), f"'leaky_relu', {slope:g}")
    fixed = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0), "selu": 0.75}
    return TorchGain(fixed[family], f"'{family}'") if family in fixed else None


# --- the initialisers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scheme:
    """One framework initialiser, translated to σ_w²·N at constant width."""

    key: str  # stable identifier (JSON ``scheme``)
    framework: str  # "pytorch" or "keras"
    short: str  # a word or two for the terminal table (the framework is printed beside it)
    call: Callable[[TorchGain | None], str]  # what the user writes (the gain's spelling filled in)
    sigma_w2_n: Callable[[TorchGain | None], float | None]  # None: not defined for this activation


SCHEMES: tuple[Scheme, ...] = (
    Scheme("pytorch.linear_default", "pytorch", "Linear",
           lambda g: "nn.Linear(N, N) default: kaiming_uniform_(w, a=√5) = U(±1/√fan_in)", lambda g: 1.0 / 3.0),
    Scheme("pytorch.kaiming_default", "pytorch", "kaiming",
           lambda g: "kaiming_normal_(w) / kaiming_uniform_(w) (a=0, nonlinearity='leaky_relu')", lambda g: 2.0),
    Scheme("pytorch.kaiming_gain", "pytorch", "kaiming(gain)",
           lambda g: f"kaiming_normal_(w, nonlinearity={g.nonlinearity.replace(', ', ', a=') if g else '?'})",
           lambda g: g.gain ** 2 if g else None),
    Scheme("pytorch.xavier_default", "pytorch", "xavier",
           lambda g: "xavier_normal_(w) / xavier_uniform_(w) (gain=1)", lambda g: 1.0),
    Scheme("pytorch.xavier_gain", "pytorch", "xavier(gain)",
           lambda g: f"xavier_normal_(w, gain=calculate_gain({g.nonlinearity if g else '?'}))",
           lambda g: g.gain ** 2 if g else None),
    Scheme("keras.he", "keras", "he", lambda g: "he_normal / he_uniform", lambda g: 2.0),
    Scheme("keras.lecun", "keras", "lecun", lambda g: "lecun_normal / lecun_uniform", lambda g: 1.0),
    Scheme("keras.glorot", "keras", "glorot",
           lambda g: "glorot_normal / glorot_uniform (Dense default)", lambda g: 1.0),
)
CRITICAL_SCHEME = "hevar.critical"


# --- the prediction ----------------------------------------------------------------------------------


def log_gradient_factor(act: Activation, sigma_w2_n: float, sigma_b2: float, depth: int, q_in: float = 1.0) -> float:
    """ln(q̃¹/q̃ᴸ) predicted by mean-field theory for a constant-width net of ``depth`` layers.

    The forward recursion runs from the input variance (q¹ = s·q_in + σ_b², qˡ = s·V(qˡ⁻¹) + σ_b²)
    and the backward one multiplies by χ(qˡ) = s·G(qˡ) for l = 1..L−1, so

        ln(q̃¹/q̃ᴸ) = Σ_{l=1}^{L−1} ln(s·G(qˡ)),

    which is (L−1)·ln χ₁ exactly when qˡ sits at its fixed point from layer 1 on (ReLU: χ = s/2 at
    every q). The same numbers as a sweep's ``log10_q_tilde_ratio_theory`` (times ln 10).

    Parameters
    ----------
    act : Activation
    sigma_w2_n : float
        s = σ_w²·N, > 0.
    sigma_b2 : float
        σ_b² ≥ 0.
    depth : int
        L ≥ 1 (L = 1 gives 0: no layer to cross).
    q_in : float
        Input variance E[x²]; hevar's sweeps use 1.

    Returns
    -------
    float
        May be ±inf (a per-layer factor of 0 or ∞).
    """
    s = np.full(int(depth), float(sigma_w2_n))
    log_q = theory.log_q_trajectory(act, s, float(sigma_b2), q_in)
    return float(theory.log_q_tilde_trajectory(act, s, log_q, 0.0)[0])


def verdict(log_factor: float) -> str:
    """"vanishing", "stable" or "exploding" for ln(q̃¹/q̃ᴸ) against :data:`STABLE_BAND` ("" for nan)."""
    if math.isnan(log_factor):
        return ""
    if log_factor < math.log(STABLE_BAND[0]):
        return "vanishing"
    if log_factor > math.log(STABLE_BAND[1]):
        return "exploding"
    return "stable"


def sweep_command(act: Activation, sigma_w2_n: Sequence[float], sigma_b2: float, depth: int,
                  q_in: float = 1.0, input_preactivation: bool = False) -> str:
    """The ``hevar sweep`` that measures these σ_w²·N (6 significant digits, the sweep's other defaults)."""
    values = ",".join(f"{s:.6g}" for s in sigma_w2_n)
    bias = f" --sigma-b2 {sigma_b2:.6g}" if sigma_b2 else ""
    given = (f" --q-in {q_in:.6g}" if q_in != 1 else "") + (" --input-preactivation" if input_preactivation else "")
    return f"hevar sweep --act {act.name} --sigma-w2 {values}{bias} --depth {int(depth)}{given}"


# --- the table ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GainRow:
    """One initialiser for one activation: where it puts σ_w²·N and what the theory says happens."""

    scheme: str  # Scheme.key, or "hevar.critical"
    framework: str  # "pytorch", "keras" or "hevar"
    short: str  # terminal label
    call: str  # what the user writes
    sigma_w2_n: float  # σ_w²·N at constant width
    gain: float  # √(σ_w²·N), the std in units of 1/√N
    chi1: float  # σ_w²·N·G(q*) at the fixed point reached from input variance 1
    q_star: float  # that fixed point (0, finite or inf)
    phase: str  # "ordered" / "critical" / "chaotic" from χ₁
    log10_factor: float  # log₁₀(q̃¹/q̃ᴸ) along the mean-field trajectory over the depth
    factor: float  # q̃¹/q̃ᴸ (inf where it overflows float64)
    verdict: str  # one of VERDICTS
    command: str  # the hevar sweep measuring it
    note: str = ""  # hevar's rows: where the number comes from (criteria.Criterion.note)


@dataclass(frozen=True)
class ActivationGains:
    """All initialisers for one activation, with hevar's critical value."""

    activation: str  # canonical spec
    critical_sigma_w2_n: float  # nan when χ₁ never equals 1 at the fixed point reached
    critical_kind: str  # one of theory.KINDS
    critical_jump_at: float  # where χ₁ jumps across 1 (kind "jump"), else nan
    torch_gain: float  # calculate_gain's value, nan without an entry
    torch_gain_call: str | None  # e.g. "calculate_gain('tanh')", None without an entry
    note: str  # what is special about this activation, "" if nothing
    command: str  # one hevar sweep measuring every row
    rows: tuple[GainRow, ...]  # SCHEMES order, then hevar's criteria (second moment, variance, critical, depth)
    criteria: tuple = ()  # criteria.Criterion for (a), (b), (c) and the depth recommendation
    depth_band: tuple[float, float] = (math.nan, math.nan)  # σ_w²·N keeping q̃¹/q̃ᴸ in [1/2, 2] around the depth row

    def by_value(self, rtol: float = 1e-9) -> list[list[GainRow]]:
        """The rows grouped by σ_w²·N (equal within ``rtol``), groups in increasing σ_w²·N."""
        groups: list[list[GainRow]] = []
        for row in sorted(self.rows, key=lambda r: r.sigma_w2_n):
            if groups and math.isclose(groups[-1][0].sigma_w2_n, row.sigma_w2_n, rel_tol=rtol):
                groups[-1].append(row)
            else:
                groups.append([row])
        order = {id(r): i for i, r in enumerate(self.rows)}  # within a group: SCHEMES order, critical last
        return [sorted(g, key=lambda r: order[id(r)]) for g in groups]


@dataclass(frozen=True)
class GainsTable:
    sigma_b2: float  # σ_b² of every row
    depth: int  # L of the gradient factor
    activations: tuple[ActivationGains, ...]
    q_in: float = 1.0  # the input's second moment E[x²]
    input_preactivation: bool = False  # q¹ = s·V(q_in) + σ_b² (the input is a pre-activation), else s·q_in + σ_b²


def _row(act: Activation, key: str, framework: str, short: str, call: str, s: float, sigma_b2: float,
         depth: int, q_in: float = 1.0, command: str = "") -> GainRow:
    chi1_curve, q_star = theory.chi1_curve(act, np.array([s]), sigma_b2, q_in)
    c = float(chi1_curve[0])
    log_factor = log_gradient_factor(act, s, sigma_b2, depth, q_in)
    with np.errstate(over="ignore"):
        factor = float(np.exp(log_factor))
    return GainRow(key, framework, short, call, float(s), math.sqrt(s), c, float(q_star[0]), theory.phase(c),
                   log_factor / math.log(10), factor, verdict(log_factor), command or sweep_command(act, [s], sigma_b2, depth))


def _note(act: Activation, gain: TorchGain | None, crit: theory.Critical) -> str:
    family = act.name.split(":")[0]
    parts = []
    if gain is None:
        parts.append("no calculate_gain entry in PyTorch: users keep kaiming's default (σ_w²·N = 2) or "
                     "xavier's gain 1 (σ_w²·N = 1)")
    if family == "selu":
        parts.append("PyTorch's SELU docs advise nonlinearity='linear' (σ_w²·N = 1, as lecun_normal) for "
                     "self-normalising nets, not calculate_gain('selu')")
    if family == "leaky_relu":
        parts.append("kaiming's default a=0 is relu's gain; pass a=slope for this one")
    if crit.kind == "jump":
        parts.append(f"χ₁ jumps across 1 at σ_w²·N = {crit.jump_at:.6g}: no σ_w²·N has χ₁ = 1")
    elif not math.isfinite(crit.sigma_w2_n):
        parts.append("no critical σ_w²·N in [1e-2, 1e4]")
    return "; ".join(parts)


def activation_gains(act: Activation, sigma_b2: float = 0.0, depth: int = DEFAULT_DEPTH, q_in: float = 1.0,
                     input_preactivation: bool = False) -> ActivationGains:
    """Every initialiser of :data:`SCHEMES` for one activation, plus hevar's critical σ_w²·N.

    Rows an activation has no meaning for (the "with its gain" ones without a calculate_gain
    entry) are left out; so is the critical row when the theory has no critical value. ``q_in`` is
    the input's second moment; with ``input_preactivation`` the input is a pre-activation, so that
    q¹ = s·V(q_in) + σ_b² (Poole et al. 2016), computed here as the unactivated input V(q_in).
    """
    _check(sigma_b2, depth)
    _check_q_in(q_in)
    q_eff = float(theory.V(act, float(q_in))) if input_preactivation else float(q_in)

    def command(values) -> str:
        return sweep_command(act, values, sigma_b2, depth, float(q_in), bool(input_preactivation))

    gain = torch_gain(act)
    crit = theory.critical_sigma_w2_n(act, float(sigma_b2), q_eff)
    rows = []
    for scheme in SCHEMES:
        s = scheme.sigma_w2_n(gain)
        if s is not None:
            rows.append(_row(act, scheme.key, scheme.framework, scheme.short, scheme.call(gain), s, sigma_b2, depth,
                             q_eff, command([s])))
    from hevar.meanfield import criteria as crit_mod

    bias = f" --sigma-b2 {sigma_b2:g}" if sigma_b2 else ""
    found = crit_mod.criteria(act, float(sigma_b2), int(depth), q_eff)
    calls = {"second_moment": "1/E[φ(u)²] (He's forward argument)", "variance": "NF-Net γ² = 1/Var φ(u)",
             "critical": f"hevar theory --act {act.name}{bias}", "depth": f"hevar gains --act {act.name}{bias} "
             f"--depth {int(depth)}"}
    shorts = {"second_moment": "second moment", "variance": "variance γ²", "critical": "critical",
              "depth": f"for depth {int(depth)}"}
    for c in found:
        if not math.isfinite(c.sigma_w2_n):
            continue
        key = CRITICAL_SCHEME if c.key == "critical" else f"hevar.{c.key}"
        short = shorts[c.key] + (" (unstable q*)" if c.key == "critical" and c.fixed_point_stable is False else "")
        rows.append(replace(_row(act, key, "hevar", short, calls[c.key], c.sigma_w2_n, sigma_b2, depth, q_eff,
                                 command([c.sigma_w2_n])), note=c.note))
    depth_row = [c for c in found if c.key == "depth"]
    band = (math.nan, math.nan)
    if depth_row and math.isfinite(depth_row[0].sigma_w2_n):
        rec = crit_mod.depth_gain(act, float(sigma_b2), int(depth), q_eff)
        band = (rec.band_lo, rec.band_hi)
    values = sorted({round(r.sigma_w2_n, 12) for r in rows})
    return ActivationGains(
        activation=act.name, critical_sigma_w2_n=crit.sigma_w2_n, critical_kind=crit.kind,
        critical_jump_at=crit.jump_at, torch_gain=gain.gain if gain else math.nan,
        torch_gain_call=f"calculate_gain({gain.nonlinearity})" if gain else None,
        note=_note(act, gain, crit), command=command(values), rows=tuple(rows),
        criteria=found, depth_band=band,
    )


def builtin_activations() -> list[Activation]:
    """Every registered family at its default parameters (``hevar activations``' rows)."""
    return [parse_activation(name) for name in FAMILIES]


# Seconds per layer of the depth criterion (root finding over σ_w²·N, a whole trajectory per try) on a
# 2-core development machine: a V(q) by quadrature, a closed-form V, a homogeneous φ (run in logs).
SECONDS_PER_LAYER = {"quadrature": 5.5e-3, "closed_form": 1.6e-3, "homogeneous": 0.7e-3}


def estimate_seconds(acts: Sequence[Activation] | None, depth: int) -> float:
    """A rough run time of :func:`gains_table` (linear in the depth: ``hevar gains`` warns when it is long)."""
    acts = builtin_activations() if acts is None else list(acts)
    kind = ["homogeneous" if a.homogeneous else "closed_form" if a.V is not None else "quadrature" for a in acts]
    return float(depth) * sum(SECONDS_PER_LAYER[k] for k in kind)


def gains_table(acts: Sequence[Activation] | None = None, sigma_b2: float = 0.0,
                depth: int = DEFAULT_DEPTH, q_in: float = 1.0, input_preactivation: bool = False) -> GainsTable:
    """:func:`activation_gains` for each activation (default: :func:`builtin_activations`)."""
    _check(sigma_b2, depth)
    _check_q_in(q_in)
    acts = builtin_activations() if acts is None else list(acts)
    return GainsTable(float(sigma_b2), int(depth),
                      tuple(activation_gains(a, sigma_b2, depth, q_in, input_preactivation) for a in acts),
                      float(q_in), bool(input_preactivation))


def to_dict(table: GainsTable) -> dict[str, Any]:
    """The JSON object of ``hevar gains --json`` (keys in the module docstring; floats may be nan/inf)."""
    acts = []
    for entry in table.activations:
        d = asdict(entry)
        d["torch_gain"] = None if math.isnan(entry.torch_gain) else entry.torch_gain
        d["rows"] = [{k: v for k, v in asdict(r).items() if k != "short"} for r in entry.rows]
        d["criteria"] = [_criterion_dict(c) for c in entry.criteria]
        d["depth_band"] = list(entry.depth_band)
        acts.append(d)
    return dict(sigma_b2=table.sigma_b2, depth=table.depth, q_in=table.q_in,
                input="pre-activation" if table.input_preactivation else "not activated",
                stable_band=list(STABLE_BAND), width=WIDTH_NOTE,
                verdict_rule=VERDICT_RULE, activations=acts)


def _criterion_dict(c) -> dict[str, Any]:
    d = {k: v for k, v in asdict(c).items() if k != "post"}
    d.update(post_q_star=c.post.q_star, post_mean=c.post.mean, post_var=c.post.var, post_rms=c.post.rms)
    return d


def _check_q_in(q_in: float) -> None:
    if not (isinstance(q_in, (int, float)) and not isinstance(q_in, bool) and math.isfinite(q_in) and q_in > 0):
        raise UsageError(f"The 'q-in' parameter must be a float in the range (0, inf). Got {q_in!r} instead.",
                         param="q-in")


def _check(sigma_b2: float, depth: int) -> None:
    if not (isinstance(sigma_b2, (int, float)) and math.isfinite(sigma_b2) and sigma_b2 >= 0):
        raise UsageError(f"The 'sigma-b2' parameter must be a float in the range [0, inf). Got {sigma_b2!r} instead.",
                         param="sigma-b2")
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or not 1 <= depth <= 100_000:
        raise UsageError(f"The 'depth' parameter must be an int in the range [1, 100001). Got {depth!r} instead.",
                         param="depth")
