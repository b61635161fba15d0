"""Activation functions, each carrying its own theory.

An :class:`Activation` bundles the pointwise nonlinearity φ, its derivative φ', and — where they
exist — the closed-form Gaussian moments the mean-field theory needs:

    V(q) = E[φ(√q u)²],   G(q) = E[φ'(√q u)²],   u ~ N(0, 1).

Where no closed form is given, :mod:`hevar.meanfield.gaussian` integrates numerically, split at ``kinks``
(points where φ or φ' is not smooth), because Gauss–Hermite rules converge badly across a kink.

Activations are named by a *spec*: ``relu``, ``tanh``, or with parameters after colons,
``leaky_relu:0.2``, ``elu:0.5``. Adding an activation is one entry in :data:`FAMILIES`.

A user-defined φ is named ``MODULE:FUNCTION`` (``mymod:f``, ``pkg.acts:my_gate``), optionally followed
by its derivative ``MODULE:FUNCTION:MODULE:DERIVATIVE`` (``mymod:f:mymod:df``). MODULE is imported as
by ``import MODULE``, with the current directory on the path; FUNCTION must be a vectorised NumPy
function of an array. Parsing calls it (and the derivative, if given) once on a small float64 array
and once on a float32 one, of shape (2, 4) with negative, zero and positive entries, and rejects it
with a :class:`~hevar.errors.UsageError` unless it returns an array of the same shape, of a real
(float, int or bool) dtype, finite there; nothing else of it runs before that check. Its result is
always cast to the input's dtype: a φ that computes in float64 for a float32 input is rounded to
float32 (as the engine's float32 runs want), one returning ints is made float. If the function has
an attribute ``kinks`` (a tuple of z where φ or φ' is not smooth), the quadrature and the numerical
derivative use it. Without a derivative, φ' is an
8th-order central difference in float64 with step h = max(1, |z|)/64: its error is about
h⁸·|φ⁽⁹⁾|/630 + 4e-16·|φ|/h, measured ≤ 1.2e-13 absolute for tanh(z) + 0.1z on [-30, 30] (≤ 1.2e-12
relative where φ' is smallest); within 4h of a declared kink a one-sided 9-point stencil is used
instead (≲ 1e-11); next to an *undeclared* kink the derivative is smeared over 4h. A user-defined φ has no
closed-form moments and is never treated as homogeneous.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy import special

from hevar.errors import UsageError, UserFunctionError, user_raised_interrupt

Array = np.ndarray
Moment = Callable[[Array], Array]

SELU_LAMBDA = 1.0507009873554804934193349852946  # Klambauer et al. 2017
SELU_ALPHA = 1.6732632423543772848170429916717


@dataclass(frozen=True)
class Activation:
    """One nonlinearity with what the engine and the theory need to know about it."""

    name: str  # canonical spec, e.g. "leaky_relu:0.2"; round-trips through parse_activation
    phi: Callable[[Array], Array]  # φ(z), elementwise, keeps dtype
    dphi: Callable[[Array], Array]  # φ'(z), elementwise, keeps dtype (one-sided value at kinks)
    homogeneous: bool = False  # φ(cz) = c·φ(z) for c > 0: χ is q-independent, forward pass rescalable
    kinks: tuple[float, ...] = ()  # z where φ or φ' is not smooth (quadrature splits there)
    V: Moment | None = None  # closed form of E[φ(√q u)²] as a function of q, if known
    G: Moment | None = None  # closed form of E[φ'(√q u)²] as a function of q, if known
    description: str = ""
    user_defined: bool = False  # given as MODULE:FUNCTION rather than a built-in family
    dphi_error: float = 0.0  # estimated max |error| of a numerical φ' on |z| ≤ 16 (0: φ' given or built in)
    detected_kinks: tuple[float, ...] = ()  # kinks hevar found itself (numerical φ' only; see numdiff)

    @property
    def closed_form(self) -> bool:
        """Both Gaussian moments V and G have closed forms (no quadrature needed)."""
        return self.V is not None and self.G is not None


@dataclass(frozen=True)
class Family:
    """A named activation with optional numeric parameters (``leaky_relu:0.2``)."""

    name: str
    make: Callable[..., Activation]
    params: tuple[tuple[str, float], ...] = ()  # (parameter name, default value)
    check: Callable[..., str | None] = field(default=lambda *a: None)  # message if params invalid
    summary: str = ""
    aliases: tuple[str, ...] = ()  # other spec names for the same family ("swish" for silu)


def _num(x: float) -> str:
    """Shortest text that parses back to the same float ("0.2", "1", "1e-05")."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _q(q: Array) -> Array:
    return np.asarray(q, dtype=float)


# --- piecewise-linear, positively homogeneous -----------------------------------------------------


def _relu() -> Activation:
    return Activation(
        name="relu",
        phi=lambda z: np.maximum(z, 0),
        dphi=lambda z: (z > 0).astype(z.dtype),
        homogeneous=True,
        kinks=(0.0,),
        V=lambda q: _q(q) / 2,
        G=lambda q: np.full_like(_q(q), 0.5),
        description="max(z, 0)",
    )


def _leaky_relu(a: float) -> Activation:
    c = (1 + a * a) / 2
    return Activation(
        name=f"leaky_relu:{_num(a)}",
        phi=lambda z: np.where(z > 0, z, z * z.dtype.type(a)),
        dphi=lambda z: np.where(z > 0, z.dtype.type(1), z.dtype.type(a)),
        homogeneous=True,
        kinks=(0.0,),
        V=lambda q: c * _q(q),
        G=lambda q: np.full_like(_q(q), c),
        description=f"z if z > 0 else {_num(a)}·z",
    )


def _linear() -> Activation:
    return Activation(
        name="linear",
        phi=lambda z: z.copy(),
        dphi=lambda z: np.ones_like(z),
        homogeneous=True,
        V=lambda q: _q(q) * 1.0,
        G=lambda q: np.ones_like(_q(q)),
        description="z",
    )


# --- bounded, odd ---------------------------------------------------------------------------------


def _tanh() -> Activation:
    def dphi(z: Array) -> Array:
        t = np.tanh(z)
        return 1 - t * t

    return Activation(name="tanh", phi=np.tanh, dphi=dphi, description="tanh(z)")


def _erf() -> Activation:
    two_over_sqrt_pi = 2 / math.sqrt(math.pi)

    def dphi(z: Array) -> Array:
        with np.errstate(over="ignore"):  # z² overflows to inf for huge |z|; exp(-inf) = 0 is right
            return two_over_sqrt_pi * np.exp(-z * z)

    # E[erf(z)²] = (2/π) arcsin(2q/(1+2q)), written as an arctan, which stays accurate as the
    # argument of arcsin approaches 1 at large q (Williams 1997).
    return Activation(
        name="erf",
        phi=special.erf,
        dphi=dphi,
        V=lambda q: (2 / math.pi) * np.arctan2(2 * _q(q), np.sqrt(1 + 4 * _q(q))),
        G=lambda q: (4 / math.pi) / np.sqrt(1 + 4 * _q(q)),
        description="erf(z)",
    )


def _erf_scaled() -> Activation:
    """erf(√π·z/2): slope 1 at 0, the erf the literature uses to mimic tanh with φ'(0) = 1."""
    a = math.sqrt(math.pi) / 2

    def phi(z: Array) -> Array:
        return special.erf(a * z)

    def dphi(z: Array) -> Array:
        with np.errstate(over="ignore"):
            return np.exp(-(a * z) ** 2)  # a·2/√π = 1

    # erf(a z) with z ~ N(0, q) is erf of N(0, a²q): the erf moments at a²q = πq/4 (G gains a factor a²)
    return Activation(
        name="erf_scaled",
        phi=phi,
        dphi=dphi,
        V=lambda q: (2 / math.pi) * np.arctan2(0.5 * math.pi * _q(q), np.sqrt(1 + math.pi * _q(q))),
        G=lambda q: 1 / np.sqrt(1 + math.pi * _q(q)),
        description="erf(√π·z/2), slope 1 at 0",
    )


def _sigmoid() -> Activation:
    return Activation(
        name="sigmoid",
        phi=special.expit,
        dphi=lambda z: special.expit(z) * special.expit(-z),  # σ(z)σ(-z): no 1 - σ cancellation
        description="1 / (1 + exp(-z))",
    )


# --- smooth rectifiers ----------------------------------------------------------------------------


def _softplus() -> Activation:
    return Activation(
        name="softplus",
        phi=lambda z: np.logaddexp(0, z),  # log(1 + eᶻ) without overflow
        dphi=special.expit,
        description="log(1 + exp(z))",
    )


def _elu_moments(alpha: float, scale: float) -> tuple[Moment, Moment]:
    """Closed forms of V and G for scale·elu_α, using E[e^{kz} 1{z<0}] = ½ erfcx(k√(q/2)) for z ~ N(0, q).

    V = scale²·(q/2 + α²·B(q)) with B(q) = E[(eᶻ - 1)² 1{z<0}] = ½erfcx(√(2q)) - erfcx(√(q/2)) + ½.
    B cancels catastrophically for small q (B ≈ q/2), so below q = 0.1 it is summed from its
    series B = Σₙ≥₂ (2ⁿ - 2)/n! · (-1)ⁿ · E[|u|ⁿ]/2 · q^{n/2} (30 terms: rounding-limited).
    """
    n = np.arange(2, 30)
    abs_moment = 2.0 ** (n / 2) * special.gamma((n + 1) / 2) / math.sqrt(math.pi)
    coef = (2.0 ** n - 2) / special.factorial(n) * (-1.0) ** n * abs_moment / 2
    poly = np.concatenate([coef[::-1], [0.0, 0.0]])  # in powers of √q, highest first

    def bracket(q: Array) -> Array:
        small = q < 0.1
        closed = 0.5 * special.erfcx(np.sqrt(2 * q)) - special.erfcx(np.sqrt(q / 2)) + 0.5
        return np.where(small, np.polyval(poly, np.sqrt(np.where(small, q, 0.0))), closed)

    def V(q: Array) -> Array:
        q = _q(q)
        return scale * scale * (q / 2 + alpha * alpha * bracket(q))

    def G(q: Array) -> Array:
        q = _q(q)
        return scale * scale * (0.5 + alpha * alpha * 0.5 * special.erfcx(np.sqrt(2 * q)))

    return V, G


def _elu_functions(alpha: float, scale: float) -> tuple[Callable, Callable]:
    def phi(z: Array) -> Array:
        neg = z.dtype.type(alpha) * np.expm1(np.minimum(z, 0))  # min(): no overflow for large z
        return z.dtype.type(scale) * np.where(z > 0, z, neg)

    def dphi(z: Array) -> Array:
        neg = z.dtype.type(alpha) * np.exp(np.minimum(z, 0))
        return z.dtype.type(scale) * np.where(z > 0, z.dtype.type(1), neg)

    return phi, dphi


def _elu(alpha: float) -> Activation:
    phi, dphi = _elu_functions(alpha, 1.0)
    V, G = _elu_moments(alpha, 1.0)
    return Activation(
        name=f"elu:{_num(alpha)}", phi=phi, dphi=dphi, kinks=(0.0,), V=V, G=G,
        description=f"z if z > 0 else {_num(alpha)}·(exp(z) - 1)",
    )


def _selu() -> Activation:
    phi, dphi = _elu_functions(SELU_ALPHA, SELU_LAMBDA)
    V, G = _elu_moments(SELU_ALPHA, SELU_LAMBDA)
    return Activation(
        name="selu", phi=phi, dphi=dphi, kinks=(0.0,), V=V, G=G,
        description="λ·elu_α(z), λ = 1.0507, α = 1.6733 (Klambauer et al. 2017)",
    )


def _gelu() -> Activation:
    inv_sqrt_2pi = 1 / math.sqrt(2 * math.pi)

    def dphi(z: Array) -> Array:
        with np.errstate(over="ignore"):  # z² → inf for huge |z|: exp(-inf) = 0 is the limit
            return special.ndtr(z) + z * (inv_sqrt_2pi * np.exp(-0.5 * z * z))

    # With Φ² = ¼ + ψ + ψ², ψ = ½erf(z/√2) odd, and Stein's lemma E[z²f] = qE[f] + 2q²·dE[f]/dq
    # applied to E[erf(z/√2)²] = (2/π) arcsin(q/(1+q)); arcsin(q/(1+q)) = arctan(q/√(1+2q)).
    def V(q: Array) -> Array:
        q = _q(q)
        r = np.sqrt(1 + 2 * q)
        return q / 4 + q / (2 * math.pi) * np.arctan2(q, r) + q * q / (math.pi * (1 + q) * r)

    def G(q: Array) -> Array:  # E[Φ²] + 2E[zΦϕ] + E[z²ϕ²]
        q = _q(q)
        r = np.sqrt(1 + 2 * q)
        return (0.25 + np.arctan2(q, r) / (2 * math.pi) + q / (math.pi * (1 + q) * r)
                + q / (2 * math.pi * r ** 3))

    return Activation(
        name="gelu", phi=lambda z: z * special.ndtr(z), dphi=dphi, V=V, G=G,
        description="z·Φ(z), Φ the standard normal CDF (exact, not the tanh approximation)",
    )


def _silu() -> Activation:
    def dphi(z: Array) -> Array:
        s = special.expit(z)
        return s + z * s * special.expit(-z)

    return Activation(name="silu", phi=lambda z: z * special.expit(z), dphi=dphi,
                      description="z·σ(z) (swish with β = 1)")


def _mish() -> Activation:
    def dphi(z: Array) -> Array:
        t = np.tanh(np.logaddexp(0, z))
        return t + z * (1 - t * t) * special.expit(z)

    return Activation(name="mish", phi=lambda z: z * np.tanh(np.logaddexp(0, z)), dphi=dphi,
                      description="z·tanh(softplus(z))")


# --- parameter checks -----------------------------------------------------------------------------


def _check_slope(a: float) -> str | None:
    if not (math.isfinite(a) and 0 <= a < 1):
        return f"leaky_relu slope must be a float in the range [0, 1). Got {a:g} instead."
    return None


def _check_alpha(alpha: float) -> str | None:
    if not (math.isfinite(alpha) and alpha >= 0):
        return f"elu alpha must be a float in the range [0, inf). Got {alpha:g} instead."
    return None


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("relu", _relu, summary="rectifier; He initialization σ_w²·N = 2"),
        Family("leaky_relu", _leaky_relu, (("slope", 0.01),), _check_slope,
               summary="leaky rectifier with negative slope a (leaky_relu:0.2)"),
        Family("linear", _linear, summary="identity; deep linear network"),
        Family("tanh", _tanh, summary="hyperbolic tangent"),
        Family("erf", _erf, summary="error function; closed-form moments (Williams 1997)"),
        Family("erf_scaled", _erf_scaled, summary="erf(√π·z/2): slope 1 at 0 like tanh; closed-form moments"),
        Family("sigmoid", _sigmoid, summary="logistic 1/(1+e⁻ᶻ); φ(0) = ½, never reaches q* = 0"),
        Family("softplus", _softplus, summary="log(1+eᶻ), a smooth relu; φ(0) = ln 2"),
        Family("elu", _elu, (("alpha", 1.0),), _check_alpha,
               summary="exponential linear unit α·(eᶻ-1) for z < 0 (elu:0.5)"),
        Family("selu", _selu, summary="scaled elu of self-normalizing networks (fixed λ, α)"),
        Family("gelu", _gelu, summary="z·Φ(z), exact Gaussian error linear unit"),
        Family("silu", _silu, summary="z·σ(z), sigmoid-weighted linear unit", aliases=("swish",)),
        Family("mish", _mish, summary="z·tanh(softplus(z))"),
    )
}

ALIASES: dict[str, str] = {alias: f.name for f in FAMILIES.values() for alias in f.aliases}

USER_SPEC = "MODULE:FUNCTION[:MODULE:DERIVATIVE]"
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_IDENT = re.compile(r"^[A-Za-z_]\w*$")


def parse_activation(spec: str) -> Activation:
    """Build the activation named by ``spec``.

    ``spec`` is a family name with optional colon-separated numbers (``"relu"``,
    ``"leaky_relu:0.2"``, ``"elu:0.5"``, alias ``"swish"`` for ``"silu"``), or a user-defined
    ``MODULE:FUNCTION[:MODULE:DERIVATIVE]`` (see the module docstring). The result is cached, so
    parsing the same spec twice gives the same object (and the theory's caches can key on it).

    Raises :class:`~hevar.errors.UsageError` naming the closest known activation on a typo.
    """
    return _parse(str(spec).strip())


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> Activation:
    name, *args = text.split(":")
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    family = FAMILIES.get(key)
    if family is None:
        if _looks_user_defined(text):
            from hevar.meanfield import numdiff  # kinks and the error of a numerical φ' (imports this module)

            return numdiff.refine(_user_defined(text), numerical=len(text.split(":")) == 2)
        close = difflib.get_close_matches(key, list(FAMILIES) + list(ALIASES), n=1)
        hint = f" Did you mean '{ALIASES.get(close[0], close[0])}'?" if close else ""
        raise UsageError(
            f"The 'act' parameter must be one of {', '.join(FAMILIES)} or {USER_SPEC}. "
            f"Got '{text}' instead.{hint}",
            param="act",
        )
    if len(args) > len(family.params):
        raise UsageError(
            f"The 'act' parameter '{family.name}' takes at most {len(family.params)} "
            f"parameter(s) ({', '.join(p for p, _ in family.params) or 'none'}). Got '{text}' instead.",
            param="act",
        )
    values = []
    for (pname, default), raw in zip(family.params, args + [None] * len(family.params)):
        if raw is None or raw.strip() == "":
            values.append(default)
            continue
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(
                f"The 'act' parameter '{family.name}' needs a number for {pname}. Got '{raw}' instead.",
                param="act",
            ) from None
        values.append(value)
    problem = family.check(*values)
    if problem:
        raise UsageError(f"The 'act' parameter is invalid: {problem}", param="act")
    return _make(family.name, tuple(values))


@functools.lru_cache(maxsize=256)
def _make(family: str, values: tuple[float, ...]) -> Activation:
    """One object per (family, parameters), however the spec was spelled ("swish", "elu", "elu:1.0")."""
    return FAMILIES[family].make(*values)


def list_activations() -> list[dict[str, Any]]:
    """One row per family for ``hevar activations``.

    Keys: ``name``; ``aliases`` (list of str); ``params`` (list of ``{"name", "default"}``);
    ``closed_form`` (bool: V and G both in closed form at the default parameters, else quadrature);
    ``homogeneous`` (bool: φ(cz) = cφ(z) for c > 0, so the critical σ_w²·N is 1/G and independent of
    σ_b²); ``summary`` (one line). A last row describes the user-defined ``MODULE:FUNCTION`` form.
    """
    rows = []
    for family in FAMILIES.values():
        act = family.make(*(default for _, default in family.params))
        rows.append(dict(
            name=family.name,
            aliases=list(family.aliases),
            params=[dict(name=p, default=d) for p, d in family.params],
            closed_form=act.closed_form,
            homogeneous=act.homogeneous,
            summary=family.summary,
        ))
    rows.append(dict(name=USER_SPEC, aliases=[], params=[], closed_form=False, homogeneous=False,
                     summary="your own vectorised φ (and φ'; else an 8th-order central difference)"))
    return rows


# --- user-defined activations ---------------------------------------------------------------------


def _looks_user_defined(text: str) -> bool:
    parts = text.split(":")
    if len(parts) not in (2, 4):
        return False
    return all(_DOTTED.match(m) and _IDENT.match(f) for m, f in zip(parts[::2], parts[1::2]))


def _import(module_name: str, attr: str, text: str) -> Callable:
    try:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name.split(".")[0] or "" in sys.path or os.getcwd() in sys.path:
                raise
            sys.path.insert(0, os.getcwd())  # `hevar` as a console script does not see the cwd
            try:
                module = importlib.import_module(module_name)
            finally:
                sys.path.remove(os.getcwd())
    except (Exception, SystemExit) as exc:  # noqa: BLE001 — any import failure is the user's to fix
        where = ""
        if isinstance(exc, ModuleNotFoundError) and exc.name == module_name.split(".")[0]:
            where = (f" Searched the current directory ({os.getcwd()}), PYTHONPATH "
                     f"({os.environ.get('PYTHONPATH') or 'not set'}) and the installed packages.")
        raise UsageError(
            f"The 'act' parameter must be one of {', '.join(FAMILIES)} or {USER_SPEC}. "
            f"Got '{text}' instead: importing module '{module_name}' failed ({_one_line(exc)}).{where}",
            param="act",
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UsageError(
            f"The 'act' parameter '{text}' must name a function: module '{module_name}' has no "
            f"callable '{attr}'.",
            param="act",
        )
    return fn


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """``Type: message`` on one line, shortened: the CLI prints a user error as a single line."""
    message = " ".join(str(exc).split())
    if len(message) > limit:
        message = message[: limit - 1] + "…"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# Negative, zero and positive, in the 2-D layout the engine and the quadrature call φ with.
_PROBE = np.array([[-3.0, -1.0, -0.5, 0.0], [0.25, 1.0, 2.0, 3.0]])


def _probe(fn: Callable, what: str, text: str) -> None:
    """Call ``fn`` once on float64 and once on float32 ``_PROBE``; a UsageError unless it maps each to
    a finite real array of the same shape (castable to the input dtype, as :func:`_user_defined` does)."""
    for dtype in (np.float64, np.float32):
        z = _PROBE.astype(dtype)
        problem = None
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):  # its nan/inf is reported below
                warnings.simplefilter("ignore")
                out = np.asarray(fn(z.copy()))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 — whatever it raises is the user's to fix
            problem = f"{what} raised {_one_line(exc)}"
        else:
            if out.dtype.kind not in "fiub":
                problem = f"{what} returned dtype {out.dtype} for {np.dtype(dtype)} input"
            elif out.shape != z.shape:
                problem = f"{what} returned shape {out.shape} for input shape {z.shape}"
            else:
                with np.errstate(over="ignore", invalid="ignore"):
                    cast = out.astype(dtype)
                bad = ~np.isfinite(cast)
                if np.any(bad):
                    problem = (f"{what} returned {float(cast[bad][0])} at z = {float(z[bad][0]):g} "
                               f"({np.dtype(dtype)})")
        if problem:
            raise UsageError(
                f"The 'act' parameter must be a MODULE:FUNCTION that maps a float array to a float array "
                f"of the same shape. Got '{text}' instead ({problem}).",
                param="act",
            )


def _user_defined(text: str) -> Activation:
    parts = text.split(":")
    f = _import(parts[0], parts[1], text)
    df = _import(parts[2], parts[3], text) if len(parts) == 4 else None
    _probe(f, "it", text)
    if df is not None:
        _probe(df, f"the derivative {parts[3]}", text)
    try:
        kinks = tuple(sorted(float(k) for k in getattr(f, "kinks", ())))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"The 'act' parameter '{text}' has a 'kinks' attribute that is not a tuple of floats "
                         f"({_one_line(exc)}).", param="act") from None
    f = guarded(f, "φ", text)
    df = guarded(df, f"φ' ({parts[3]})", text) if df is not None else None

    def phi(z: Array) -> Array:
        return f(z).astype(z.dtype, copy=False)

    if df is not None:
        def dphi(z: Array) -> Array:
            return df(z).astype(z.dtype, copy=False)
    else:
        def dphi(z: Array) -> Array:
            return central_difference(f, z, kinks).astype(z.dtype, copy=False)

    return Activation(
        name=text, phi=phi, dphi=dphi, kinks=kinks, user_defined=True,
        description=f"user-defined {parts[1]} from {parts[0]}"
        + (f", derivative {parts[3]} from {parts[2]}" if len(parts) == 4 else ", numerical derivative"),
    )


# Who called a user function, by the module of the first hevar frame outside this one.
_CALLERS = (("hevar.engine", "the engine's pass"), ("hevar.meanfield.gaussian", "the theory's Gaussian integrals"),
            ("hevar.meanfield.gains", "the gains table"), ("hevar.meanfield", "the mean-field theory"),
            ("hevar.experiments", "the sweep"))


def _caller() -> str:
    frame = sys._getframe(2)
    numerical = False
    while frame is not None and (frame.f_globals.get("__name__") == __name__ or frame.f_code.co_name.startswith("<")):
        numerical |= frame.f_code.co_name == "central_difference"
        frame = frame.f_back  # past this module and lambdas, to the first named function
    if frame is None:
        return "a caller"
    module = frame.f_globals.get("__name__", "?")
    where = next((label for prefix, label in _CALLERS if module.startswith(prefix)), module)
    name = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)
    return (f"{where} ({module}.{name})"
            + (", through the numerical derivative φ'" if numerical else ""))


def _describe(z: Any) -> str:
    z = np.asarray(z)
    finite = z[np.isfinite(z)] if z.dtype.kind in "fc" else z.ravel()
    span = f"z in [{float(finite.min()):.4g}, {float(finite.max()):.4g}]" if finite.size else "no finite z"
    return f"a {z.dtype} array of shape {z.shape} with {span}"


def guarded(fn: Callable[[Array], Array], role: str, text: str) -> Callable[[Array], Array]:
    """``fn`` (user code) behind the one boundary where hevar calls it: whatever it does wrong, at any
    stage and in any process, becomes a :class:`~hevar.errors.UserFunctionError` naming ``act``, the
    function (``role``), its caller and the values it was given. Wrong is: raising (SystemExit and
    a KeyboardInterrupt that no Ctrl-C sent included), a non-real dtype, a shape other than its
    input's, or nan at a finite input (inf is an overflow, which the engine records as data)."""

    def call(z: Array) -> Array:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # its overflow is data; nan is checked below
                out = np.asarray(fn(z))
        except KeyboardInterrupt:
            if not user_raised_interrupt():
                raise
            problem = "raised KeyboardInterrupt"
        except (Exception, SystemExit) as exc:  # noqa: BLE001 — whatever it raises is the user's to fix
            problem = f"raised {_one_line(exc)}"
        else:
            shape = np.shape(z)
            if out.dtype.kind not in "fiub":
                problem = f"returned dtype {out.dtype}"
            elif out.shape != shape:
                problem = f"returned shape {out.shape}"
            elif out.dtype.kind == "f" and np.isnan(out).any():
                bad = np.isnan(out) & np.isfinite(z)
                if not bad.any():
                    return out
                problem = f"returned nan at z = {float(np.asarray(z)[bad][0]):.6g}"
            else:
                return out
        raise UserFunctionError(
            f"The 'act' parameter '{text}' must be a function that maps every float array to a real array of the "
            f"same shape, finite where z is. Got {role} that {problem} when {_caller()} called it on {_describe(z)}.",
            param="act") from None

    return call


def _stencil(offsets: np.ndarray) -> np.ndarray:
    """Weights c with Σ c_k f(z + k·h) = h·f'(z) + O(h^{len(offsets)}) (exact for polynomials)."""
    n = len(offsets)
    vander = np.vander(offsets.astype(float), n, increasing=True).T  # row j: offsets**j
    rhs = np.zeros(n)
    rhs[1] = 1.0
    return np.linalg.solve(vander, rhs)


_CENTRAL = (np.arange(-4, 5), _stencil(np.arange(-4, 5)))
_FORWARD = (np.arange(0, 9), _stencil(np.arange(0, 9)))
_BACKWARD = (np.arange(-8, 1), _stencil(np.arange(-8, 1)))
DIFF_STEP = 1.0 / 64  # relative step of the numerical derivative (see the module docstring)


def central_difference(f: Callable[[Array], Array], z: Array, kinks: tuple[float, ...] = ()) -> Array:
    """φ'(z) by an 8th-order central difference in float64, one-sided next to declared kinks.

    Step h = max(1, |z|)/64; error ≈ h⁸|φ⁽⁹⁾|/630 + 4e-16·|φ|/h (≈ 1e-13 absolute for functions
    like tanh, analytic within ~1 of the real axis). Within 4h of a kink the 9-point stencil on the
    side away from the kink is used (rounding error ≈ 1e-11).
    """
    x = np.asarray(z, dtype=np.float64)
    h = DIFF_STEP * np.maximum(1.0, np.abs(x))

    def apply(stencil: tuple[np.ndarray, np.ndarray], xs: Array, hs: Array) -> Array:
        offsets, weights = stencil
        total = np.zeros_like(xs)
        for k, c in zip(offsets, weights):
            if c != 0.0:
                total += c * np.asarray(f(xs + k * hs), dtype=np.float64)
        return total / hs

    out = apply(_CENTRAL, x, h)
    for kink in kinks:
        near = np.abs(x - kink) < 4 * h
        if np.any(near):
            xs, hs = x[near], h[near]
            right = xs >= kink  # at the kink itself: the right derivative
            out[near] = np.where(right, apply(_FORWARD, xs, hs), apply(_BACKWARD, xs, hs))
    return out
