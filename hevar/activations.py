"""Activation functions, each carrying its own theory.

An :class:`Activation` bundles the pointwise nonlinearity φ, its derivative φ', and — where they
exist — the closed-form Gaussian moments the mean-field theory needs:

    V(q) = E[φ(√q u)²],   G(q) = E[φ'(√q u)²],   u ~ N(0, 1).

Where no closed form is given, :mod:`hevar.gaussian` integrates numerically, split at ``kinks``
(points where φ or φ' is not smooth), because Gauss–Hermite rules converge badly across a kink.

Activations are named by a *spec*: ``relu``, ``tanh``, or with parameters after colons,
``leaky_relu:0.2``. Adding an activation is one entry in :data:`FAMILIES`.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from hevar.errors import UsageError

Array = np.ndarray
Moment = Callable[[Array], Array]


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


@dataclass(frozen=True)
class Family:
    """A named activation with optional numeric parameters (``leaky_relu:0.2``)."""

    name: str
    make: Callable[..., Activation]
    params: tuple[tuple[str, float], ...] = ()  # (parameter name, default value)
    check: Callable[..., str | None] = field(default=lambda *a: None)  # message if params invalid
    summary: str = ""


def _relu() -> Activation:
    return Activation(
        name="relu",
        phi=lambda z: np.maximum(z, 0),
        dphi=lambda z: (z > 0).astype(z.dtype),
        homogeneous=True,
        kinks=(0.0,),
        V=lambda q: np.asarray(q, dtype=float) / 2,
        G=lambda q: np.full_like(np.asarray(q, dtype=float), 0.5),
        description="max(z, 0)",
    )


def _leaky_relu(a: float) -> Activation:
    c = (1 + a * a) / 2
    return Activation(
        name=f"leaky_relu:{a:g}",
        phi=lambda z: np.where(z > 0, z, z * z.dtype.type(a)),
        dphi=lambda z: np.where(z > 0, z.dtype.type(1), z.dtype.type(a)),
        homogeneous=True,
        kinks=(0.0,),
        V=lambda q: c * np.asarray(q, dtype=float),
        G=lambda q: np.full_like(np.asarray(q, dtype=float), c),
        description=f"z if z > 0 else {a:g}·z",
    )


def _linear() -> Activation:
    return Activation(
        name="linear",
        phi=lambda z: z.copy(),
        dphi=lambda z: np.ones_like(z),
        homogeneous=True,
        V=lambda q: np.asarray(q, dtype=float) * 1.0,
        G=lambda q: np.ones_like(np.asarray(q, dtype=float)),
        description="z",
    )


def _tanh() -> Activation:
    def dphi(z: Array) -> Array:
        t = np.tanh(z)
        return 1 - t * t

    return Activation(name="tanh", phi=np.tanh, dphi=dphi, description="tanh(z)")


def _check_slope(a: float) -> str | None:
    if not (math.isfinite(a) and 0 <= a < 1):
        return f"leaky_relu slope must be a float in the range [0, 1). Got {a:g} instead."
    return None


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("relu", _relu, summary="rectifier; He initialization σ_w²·N = 2"),
        Family("leaky_relu", _leaky_relu, (("slope", 0.01),), _check_slope,
               summary="leaky rectifier with negative slope a (leaky_relu:0.2)"),
        Family("linear", _linear, summary="identity; deep linear network"),
        Family("tanh", _tanh, summary="hyperbolic tangent"),
    )
}


def parse_activation(spec: str) -> Activation:
    """Build the activation named by ``spec`` (``"relu"``, ``"leaky_relu:0.2"``).

    Raises :class:`~hevar.errors.UsageError` naming the closest known activation on a typo.
    """
    text = str(spec).strip()
    name, *args = text.split(":")
    name = name.strip().lower().replace("-", "_")
    family = FAMILIES.get(name)
    if family is None:
        close = difflib.get_close_matches(name, list(FAMILIES), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UsageError(
            f"The 'act' parameter must be one of {', '.join(FAMILIES)}. Got '{text}' instead.{hint}"
        )
    if len(args) > len(family.params):
        raise UsageError(
            f"The 'act' parameter '{family.name}' takes at most {len(family.params)} "
            f"parameter(s) ({', '.join(p for p, _ in family.params) or 'none'}). Got '{text}' instead."
        )
    values = []
    for (pname, default), raw in zip(family.params, args + [None] * len(family.params)):
        if raw is None:
            values.append(default)
            continue
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(
                f"The 'act' parameter '{family.name}' needs a number for {pname}. Got '{raw}' instead."
            ) from None
        values.append(value)
    problem = family.check(*values)
    if problem:
        raise UsageError(f"The 'act' parameter is invalid: {problem}")
    return family.make(*values)
