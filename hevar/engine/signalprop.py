"""Signal-propagation records of a stacked pass (Brock et al. 2021, "Characterizing signal propagation").

Per block l and configuration, three statistics of the batch (B inputs as columns, units i = 1..N_l):

- the **average squared channel mean** M²ˡ = mean_i (mean_b zˡ_ib)²;
- the **average channel variance** Vˡ = mean_i [mean_b (zˡ_ib − mean_b zˡ_ib)²] (the batch variance,
  ddof = 0, as Brock et al.'s SPPs), so that Vˡ + M²ˡ = qˡ, the engine's mean square;
- the **residual branch's mean square** Rˡ = mean_i mean_b (α(Wˡhˡ + bˡ))²_ib of a residual block
  (nan for other blocks), taken before any post-norm.

They are recorded only when the pass is asked to (:meth:`hevar.engine.stacked.StackedPass.enable_signalprop`,
:func:`hevar.engine.passes.measure` with ``signalprop=True``, which the sweep sets for stacks with
residual blocks): the arrays every other pass computes, and so the bytes of every other run, are
untouched. Each is taken on the stored frame (zˡ = exp(t)·ẑ) and kept with its log scale, as ln,
so that depths where qˡ leaves float64 are recorded exactly.

Cost: one mean over the batch and one pass over the stream per block (the centred squares are
summed in row blocks of :data:`ROWS`, so the temporary stays at ROWS × K·B entries), one more pass
over the branch for residual blocks. The theory of these numbers is in :mod:`hevar.blocks.signalprop`.
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray

ROWS = 64  # rows of the stream per block of the centred sum of squares
ARRAYS = ("sp_log_mean2", "sp_log_var", "sp_log_branch")  # (K, L) each, natural logs


def record_stream(ctx, l: int, z3: Array, top: Array) -> None:
    """M²ˡ and Vˡ of the stored stream ``z3`` (n, K, B), zˡ = exp(top)·z3."""
    n, K, B = z3.shape
    with np.errstate(over="ignore", invalid="ignore"):
        m = z3.mean(axis=2, dtype=float)  # (n, K) channel means
        mean2 = np.einsum("nk,nk->k", m, m) / n
        var = np.zeros(K)
        for r in range(0, n, ROWS):
            d = z3[r:r + ROWS].astype(float) - m[r:r + ROWS, :, None]
            var += np.einsum("nkb,nkb->k", d, d)
    ctx.sp_mean2[l - 1], ctx.sp_var[l - 1] = mean2, var / (n * B)
    ctx.sp_top[l - 1] = top


def record_branch(ctx, l: int, u3: Array | None, bias: Array | None, bias_coef: Array | None, top: Array) -> None:
    """Rˡ of a residual branch stored as exp(top)·(u3 + bias_coef·bias): ``u3`` (n, K, B) the scaled
    α·Wˡhˡ (None where it is 0 for every configuration), ``bias`` (n,) the standard bias direction
    and ``bias_coef`` (K,) its coefficient (None without bias)."""
    K, B = ctx.K, ctx.batch
    n = ctx.widths[l]
    with np.errstate(over="ignore", invalid="ignore"):
        ms = np.zeros(K) if u3 is None else np.einsum("nkb,nkb->k", u3, u3, dtype=float)
        if bias is not None:
            b = bias.astype(float)
            c = np.asarray(bias_coef, dtype=float)
            if u3 is not None:
                ms = ms + 2 * c * np.einsum("n,nkb->k", b, u3, dtype=float)
            ms = ms + c * c * B * float(b @ b)
    ctx.sp_branch[l - 1] = ms / (n * B)
    ctx.sp_branch_top[l - 1] = top


def logs(ctx) -> dict[str, Array]:
    """The records as ln, (K, L) each; nan past a configuration's failure and for non-residual branches."""
    L = ctx.L
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {"sp_log_mean2": 2 * ctx.sp_top + np.log(ctx.sp_mean2),
               "sp_log_var": 2 * ctx.sp_top + np.log(ctx.sp_var),
               "sp_log_branch": 2 * ctx.sp_branch_top + np.log(ctx.sp_branch)}
    layer = np.arange(1, L + 1)[:, None]
    first_bad = np.array([int(s.rsplit(" ", 1)[1]) if s != "ok" else L + 1 for s in ctx.status])
    ok = layer < first_bad[None, :]
    return {k: np.where(ok, v, np.nan).T.copy() for k, v in out.items()}
