"""φ in the engine's stacked form: applied into a buffer, with φ'(z) kept in its most compact form
for the backward pass (a sign mask for relu and leaky_relu, nothing for linear, a full array
otherwise). Every block that applies an activation (:mod:`hevar.blocks`) uses one of these.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from hevar.meanfield.activations import Activation

Array = np.ndarray


class Pointwise:
    """φ applied into a buffer, and φ'(z) kept in its most compact form for the backward pass.

    What is kept: a bool sign mask for relu and leaky_relu, nothing for linear, a ``dt`` array
    otherwise (tanh computes 1 − tanh² from φ(z) instead of a second tanh). The specialised kernels are
    chosen by ``act.name`` from :data:`KERNELS` and used only if they reproduce ``act.phi`` and
    ``act.dphi`` exactly on a probe (a renamed or redefined activation falls back to the generic
    kernel, which calls the activation's own functions).
    """

    def __init__(self, act: Activation, dt: np.dtype):
        self.act, self.dt = act, dt
        family, _, param = act.name.partition(":")
        self.kind = family if family in KERNELS and self._probe(family, param) else "generic"
        self.slope = dt.type(float(param)) if self.kind == "leaky_relu" else None

    def _probe(self, family: str, param: str) -> bool:
        z = np.array([-3.0, -1.0, -0.25, 0.0, 0.5, 1.0, 2.5], dtype=self.dt)
        try:
            slope = self.dt.type(float(param)) if family == "leaky_relu" else None
        except ValueError:
            return False
        phi, dphi = KERNELS[family](z, slope)
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


KERNELS: dict[str, Callable] = {
    "relu": _relu_kernel, "leaky_relu": _leaky_kernel, "linear": _linear_kernel, "tanh": _tanh_kernel,
}


def stored_bytes(kind: str, dt: np.dtype) -> int:
    """Bytes of φ'(z) a :class:`Pointwise` of ``kind`` keeps per entry."""
    return {"relu": 1, "leaky_relu": 1, "linear": 0}.get(kind, np.dtype(dt).itemsize)
