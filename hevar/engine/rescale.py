"""One pass for a whole σ_w² grid: configurations that differ only in σ_w are rescalings of each other.

**The identity.** Take the plain MLP zˡ = Wˡφ(zˡ⁻¹) (:func:`hevar.blocks.network.mlp`) with a
positively homogeneous φ (φ(cz) = c·φ(z) for c > 0: relu, leaky_relu, linear; the activations
marked ``homogeneous``), no bias (σ_b = 0), and one draw Wˡ = σ_{w,l}·Gˡ shared by every
configuration. Two configurations with per-layer weight scales σ_{w,l} and σ'_{w,l} then satisfy,
exactly in real arithmetic, for every input and layer (r_l = σ'_{w,l}/σ_{w,l})::

    z'ˡ = (∏_{m ≤ l} r_m)·zˡ,        δ'ˡ = (∏_{m > l} r_m)·δˡ        (φ' is scale-free: φ'(cz) = φ'(z))

so q'ˡ, q̃'ˡ, ‖h'ˡ‖² and ‖∂J/∂W'ˡ‖² are qˡ, q̃ˡ, ... times known products. This holds for any
per-layer σ_{w,l} — a width profile, any fan mode — and for any weight distribution, since only
the shared standard draw Gˡ enters (``truncnormal``, whose draw depends on σ_{w,l}, is already
measured one σ_{w,l} row at a time, so a call of the engine always shares its draw).

**In the engine this is free of new rounding.** The stacked pass (:mod:`hevar.engine.stacked`)
runs such a network on the stored frame: without a bias it never multiplies a stored array by
σ_{w,l} — σ_{w,l} enters only the per-configuration log scales — and it renormalises a stored
array on its mean square alone. So every configuration of the group has the *same stored
arrays*, and its results differ only by the log-scale bookkeeping. :func:`members` finds the
group, the engine runs its first member only, and :func:`expand` replays the bookkeeping of
``Dense.forward``/``Dense.backward`` and :meth:`StackedPass.settle_forward`/``settle_backward``
for the others — the same floating-point operations on the same numbers — and reduces them with
the same :meth:`StackedPass.statistics`. Where the BLAS gives a column of a product the same
bits whether it is computed alone or among K·B columns (OpenBLAS in float64 on this project's
machines; not float32, whose kernels depend on the column's alignment), the results are
bit-identical to the stacked pass's; otherwise they agree to the rounding of that product.

A change to the dense block's log-scale arithmetic must be mirrored in :func:`expand`;
tests/test_rescale.py compares the two paths at several depths and dtypes.
"""

from __future__ import annotations

import types

import numpy as np

Array = np.ndarray


def shareable(network) -> bool:
    """The network is the plain MLP of a positively homogeneous φ (the stacked pass runs it scaled)."""
    return bool(network.plain and network.scaled)


def members(network, weight_std: Array, bias_std: Array) -> list[int]:
    """Indices of the configurations that one pass of the first of them stands for: σ_b = 0 and every
    σ_{w,l} positive and finite, on a :func:`shareable` network; [] where fewer than two qualify.
    (σ_w = 0 is left to the stacked pass, which zeroes that configuration's stream.)"""
    if not shareable(network):
        return []
    weight_std = np.asarray(weight_std, dtype=float)
    bias_std = np.asarray(bias_std, dtype=float)
    ok = (bias_std == 0) & np.all((weight_std > 0) & np.isfinite(weight_std), axis=1)
    idx = [int(k) for k in np.flatnonzero(ok)]
    return idx if len(idx) >= 2 else []


def expand_bytes(depth: int, n_members: int, batch: int) -> int:
    """Peak bytes :func:`expand` allocates for ``n_members`` derived configurations at once: the two
    per-layer column records and the reduction's temporaries, as a stacked pass of that many holds."""
    return 7 * depth * n_members * batch * 8 + 16 * n_members * batch * 8


def expand(ctx, rep: int, weight_std: Array) -> tuple:
    """The statistics (as :meth:`StackedPass.statistics`) of configurations whose σ_{w,l} are the rows
    of ``weight_std`` (M, L), from the finished pass ``ctx`` in which configuration ``rep`` (an index
    into ``ctx``'s K) is a member of the same group (σ_b = 0 on a :func:`shareable` network)."""
    L, B = ctx.L, ctx.batch
    M = weight_std.shape[0]
    cols = slice(rep * B, (rep + 1) * B)
    log_w = np.log(np.asarray(weight_std, dtype=float))  # as StackedPass.log_w
    z_top = np.empty((L, M))
    h_scale = np.empty((L, M))
    d_scale = np.zeros((L, M))
    # Forward (Dense.forward → _affine → settle_forward): hˡ's scale is the stream's t; at σ_b = 0
    # the top of the affine map is t + ln σ_{w,l} (maximum with ln σ_b = -inf leaves it); a
    # renormalisation adds ½ ln(mean square), which the member shares with ``rep``.
    t = np.zeros(M)
    for l in range(1, L + 1):
        h_scale[l - 1] = t
        top = t + log_w[:, l - 1]
        z_top[l - 1] = top
        add = ctx.z_add[l - 1, rep]
        t = top + add if add == add else top  # nan: not renormalised
    # Backward (Dense.backward → settle_backward): δˡ⁻¹'s scale is δˡ's plus ln σ_{w,l}.
    s = np.zeros(M)
    for l in range(L, 1, -1):
        lds = s + log_w[:, l - 1]
        add = ctx.d_add[l - 2, rep]
        if add == add:
            lds = lds + add
        d_scale[l - 2] = s = lds
    records = types.SimpleNamespace(
        L=L, K=M, batch=B, widths=ctx.widths, du={},
        z_ms=np.repeat(ctx.z_ms[:, rep:rep + 1], M, axis=1), z_top=z_top,
        h_col=np.tile(ctx.h_col[:, cols], (1, M)), h_scale=h_scale,
        d_col=np.tile(ctx.d_col[:, cols], (1, M)), d_scale=d_scale,
        status=[ctx.status[rep]] * M, alive=np.full(M, ctx.alive[rep]))
    return type(ctx).statistics(records)
