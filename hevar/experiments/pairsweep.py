"""The opt-in measurements of a sweep (issue 14): correlations of input pairs, and the Jacobian spectrum.

``hevar sweep --input-corr C`` and ``--jacobian K`` add, per task (one seed of one network shape), two
measurements on exactly the network :func:`hevar.engine.passes.measure` sees (the seed's
:class:`~hevar.engine.passes.Streams`, every weight distribution, the K configurations of the
σ_w²·N × σ_b² grid stacked):

- :func:`hevar.engine.pairs.measure_correlations` on ``n_pairs`` pairs of inputs of correlation c⁰
  exactly, for every c⁰ of ``input_corr``: per layer the mean over pairs of cˡ and of 1 − cˡ (the
  latter without cancellation near c = 1);
- :func:`hevar.engine.jacobian.measure_jacobian` on ``jacobian`` inputs: per input the moments of the
  squared singular values λ of J = ∂zᴸ/∂x (:func:`~hevar.engine.jacobian.spectrum_moments`), and per
  configuration the :data:`QUANTILES` of ln λ pooled over the seed's inputs. The exact SVD is done up to
  N = 1024 (:data:`hevar.engine.jacobian.MAX_WIDTH`); a wider network is refused when the config is
  built (only moments, from traces, would be in reach there; hevar does not estimate them).

**How rows are keyed.** With ``input_corr`` on, c⁰ is a configuration axis like σ_b²: ``layers.csv``,
``summary.csv``, ``seeds.csv`` (and ``spectra.csv``) get an ``input_corr`` column and one row set per
c⁰, and ``config_id`` hashes ``input_corr`` as well (so it stays unique per row set and
``layers.merge(summary, on="config_id")`` still has one row per layer). The columns not about pairs
(q, q̃, χ̂, …) do not depend on c⁰ and repeat in each row set. ``curve_id`` does not hash c⁰: a
stability curve is a property of q̃, and ``crossings.csv`` keeps one row per curve, as without the
option. With the option off nothing here runs: no column, no file, no change of any ``config_id``.

**Reductions** (S seeds):

- layers: ``c`` = mean over seeds of the per-seed mean over pairs of cˡ; ``c_se`` its standard error
  over seeds (ddof = 1, divided by √S; the pairs of one seed share its weights, so the seed spread is
  the error that matters); ``one_minus_c`` and ``one_minus_c_se`` the same for 1 − cˡ; ``c_theory`` the
  mean-field cˡ along the actual trajectory (qˡ not yet at q*) from q⁰ = 1 and c⁰
  (:func:`c_theory`, which is :func:`hevar.meanfield.correlations.c_trajectory` generalised to per-layer
  s_l = σ_{w,l}²N_{l-1}).
- summary: ``c_star``, ``chi_c``, ``xi_c``, ``xi_q`` from :func:`~hevar.meanfield.correlations.correlation_terms`
  (constant width only; empty for a profile whose gains differ); ``xi_c_hat`` ± ``xi_c_hat_se``: the
  least-squares ξ of ln|cˡ − c*| of the seed-mean cˡ over the fit layers
  ``xi_c_fit_first_layer`` … ``xi_c_fit_last_layer``, and its jackknife standard error over seeds
  (:func:`~hevar.meanfield.correlations.xi_c_jackknife`); ``xi_c_theory``: the same fit, over the same
  layers, of ``c_theory`` (the number ξ̂_c estimates at this depth; it differs from ξ_c where the c-map
  is not yet linear). The fit layers are chosen on the theory trajectory (:func:`xi_c_fit`).
- summary (``--jacobian``): ``sv2_mean`` (mean over seeds and inputs of mean λ = tr(JJᵀ)/r) ± ``sv2_mean_se``
  (over seeds) beside ``sv2_mean_theory`` = s^L∏G(qˡ) (:func:`hevar.meanfield.spectrum.predicted_moments`),
  and their ``log10_`` versions; ``sv2_rel_var`` (mean over seeds and inputs of mean λ²/(mean λ)² − 1) ±
  ``sv2_rel_var_se`` beside ``sv2_rel_var_theory`` (L·v_W + Σ(E[φ'⁴]/G² − 1)); ``log10_sv2_max`` and
  ``log10_sv2_min`` (mean over seeds and inputs of log₁₀ of the largest and the smallest λ; the
  smallest carries LAPACK's absolute error ≈ 1e-30·λ_max, so for a singular J — relu — it says only
  that λ_min is below that); ``jacobian_inputs`` (inputs per seed).
- ``spectra.csv``: per configuration and seed the :data:`QUANTILES` of λ over that seed's inputs
  (``quantile``, ``sv2``, ``log10_sv2``; each an actual λ, the inverted-CDF quantile): enough to draw
  the density and small (51 rows per configuration and seed).

Pure apart from what :mod:`hevar.engine` computes: no files, no printing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hevar.engine import init
from hevar.engine.passes import Measurement, Streams
from hevar.meanfield import correlations as cr, theory

Array = np.ndarray
LN10 = math.log(10.0)

QUANTILES = np.linspace(0.0, 1.0, 51)  # levels of the per-seed spectrum quantiles in spectra.csv
PAIR_ARRAYS = ("pair_c", "pair_gap")  # (K, C, L): per-seed mean over pairs of cˡ and of 1 − cˡ
JACOBIAN_ARRAYS = ("jac_log_mean", "jac_log_m2", "jac_log_max", "jac_log_min")  # (K, B), per input
QUANTILE_ARRAY = "jac_log_quantiles"  # (K, Q): ln λ at QUANTILES

PAIR_LAYER_COLUMNS = ("input_corr", "c", "c_se", "one_minus_c", "one_minus_c_se", "c_theory")
PAIR_SUMMARY_COLUMNS = ("input_corr", "c_star", "chi_c", "xi_c", "xi_c_theory", "xi_c_hat", "xi_c_hat_se",
                        "xi_c_fit_first_layer", "xi_c_fit_last_layer", "xi_q")
JACOBIAN_SUMMARY_COLUMNS = ("jacobian_inputs", "sv2_mean", "sv2_mean_se", "sv2_mean_theory", "log10_sv2_mean",
                            "log10_sv2_mean_theory", "sv2_rel_var", "sv2_rel_var_se", "sv2_rel_var_theory",
                            "log10_sv2_max", "log10_sv2_min")
PAIR_SEED_COLUMNS = ("input_corr", "c", "one_minus_c")


def array_shapes(config, depth: int) -> dict[str, tuple[int, ...]]:
    """The opt-in arrays a task's point file must hold for ``config``, with their shapes."""
    from hevar.experiments.sweep import grid

    K = len(grid(config))
    shapes: dict[str, tuple[int, ...]] = {}
    if config.input_corr:
        shapes.update(dict.fromkeys(PAIR_ARRAYS, (K, len(config.input_corr), depth)))
    if config.jacobian:
        shapes.update(dict.fromkeys(JACOBIAN_ARRAYS, (K, config.jacobian)))
        shapes[QUANTILE_ARRAY] = (K, len(QUANTILES))
    return shapes


def extras_memory(config, widths, n_configs: int) -> int:
    """Estimated peak bytes of the opt-in measurements of one task (0 when both are off). They run after
    the main pass, so a task's peak is the larger of the two. Pairs: the stacked forward pass on 2P
    columns (z, φ(z), and the float64 unit vectors and products of :func:`~hevar.engine.pairs.measure_correlations`,
    about 8 arrays of N_l·K·2P). Jacobian: the accumulated A of shape (K, B, N_l, N_0) in float64, about
    3 copies at the product and the SVD, plus the forward pass on B columns."""
    n_max, n0, K = max(widths), widths[0], int(n_configs)
    pairs = 8 * n_max * K * 2 * config.n_pairs * 8 if config.input_corr else 0
    jac = (3 * K * config.jacobian * n_max * n0 + 4 * n_max * K * config.jacobian) * 8 if config.jacobian else 0
    return int(max(pairs, jac))


def measure_extras(config, task, act, widths: tuple[int, ...], weight_std: Array, bias_std: Array) -> dict[str, Array]:
    """The opt-in arrays of one task (empty when both options are off), K first.

    For ``truncnormal`` (PyTorch's cut at absolute ±2 makes the standard draw depend on σ_{w,l}) the
    configurations are measured in groups sharing their per-layer σ_{w,l}, each with its own draw, as
    :func:`hevar.experiments.sweep._measure_by_weight_std` does for q and q̃."""
    if not (config.input_corr or config.jacobian):
        return {}
    if task.dist != "truncnormal":
        return _extras(config, act, widths, weight_std, bias_std, Streams(config.seed, task.seed_index, task.dist))
    K = weight_std.shape[0]
    out: dict[str, Array] = {}
    for row in dict.fromkeys(map(tuple, weight_std)):
        idx = [k for k in range(K) if tuple(weight_std[k]) == row]
        streams = Streams(config.seed, task.seed_index, "truncnormal", tuple(init.TORCH_TRUNC / np.array(row)))
        part = _extras(config, act, widths, weight_std[idx], bias_std[idx], streams)
        for name, a in part.items():
            out.setdefault(name, np.full((K,) + a.shape[1:], np.nan))[idx] = a
    return out


def _extras(config, act, widths, weight_std, bias_std, streams: Streams) -> dict[str, Array]:
    from hevar.engine.jacobian import measure_jacobian, spectrum_moments
    from hevar.engine.pairs import measure_correlations

    out: dict[str, Array] = {}
    if config.input_corr:
        runs = [measure_correlations(act, widths, weight_std, bias_std, config.n_pairs, c0, streams, config.dtype)
                for c0 in config.input_corr]
        out["pair_c"] = np.stack([r.c for r in runs], axis=1)
        out["pair_gap"] = np.stack([r.one_minus_c for r in runs], axis=1)
    if config.jacobian:
        spec = measure_jacobian(act, widths, weight_std, bias_std, config.jacobian, streams, config.dtype)
        mom = spectrum_moments(spec.log_sv2)
        out.update(jac_log_mean=mom["log_mean"], jac_log_m2=mom["log_m2"], jac_log_max=mom["log_max"],
                   jac_log_min=mom["log_min"])
        pooled = spec.log_sv2.reshape(spec.log_sv2.shape[0], -1)
        with np.errstate(invalid="ignore"):
            out[QUANTILE_ARRAY] = np.quantile(pooled, QUANTILES, axis=1, method="inverted_cdf").T
    return out


# --- theory -----------------------------------------------------------------------------------------


def c_theory(act, s_in: Array, sigma_b2: float, c0: float, q0: float = 1.0) -> Array:
    """Mean-field cˡ, l = 1..L, of two inputs of second moment q0 and correlation c0, with per-layer
    s_l = σ_{w,l}²N_{l-1} (for constant s this is :func:`hevar.meanfield.correlations.c_trajectory`):

        c¹ = (s₁c0q0 + σ_b²)/(s₁q0 + σ_b²),   cˡ⁺¹ = (s_{l+1}K(qˡ, qˡ, cˡ) + σ_b²)/(s_{l+1}V(qˡ) + σ_b²).

    Entries past an overflow of qˡ are nan (homogeneous φ never overflows: K and V are taken at unit
    variance)."""
    s_in = np.asarray(s_in, dtype=float)
    L = len(s_in)
    log_q = theory.log_q_trajectory(act, s_in, sigma_b2, q0)
    out = np.empty(L)
    out[0] = (s_in[0] * c0 * q0 + sigma_b2) / (s_in[0] * q0 + sigma_b2)
    for l in range(1, L):
        q = math.exp(log_q[l - 1]) if log_q[l - 1] < 700 else math.inf
        if (math.isinf(q) and not act.homogeneous) or not math.isfinite(log_q[l - 1]):
            out[l:] = math.nan
            break
        out[l] = float(cr.c_map(act, out[l - 1], float(s_in[l]), sigma_b2, q))
    return out


def xi_c_fit(terms, c_th: Array, c_seeds: Array, gap_seeds: Array, width: int) -> tuple[float, float, float, Array]:
    """(ξ̂_c, its jackknife s.e., the same fit on the theory trajectory, the fit layers) of one configuration.

    The fit layers are chosen on the theory trajectory ``c_th`` (L,):

    - ordered (c* = 1): where 1e-8 < 1 − cˡ ≤ 0.1, and the fit is of ln(1 − cˡ) with 1 − cˡ measured
      without cancellation (``gap_seeds``, (S, L)) — finite width does not move c* = 1 (two equal inputs
      stay equal), so the measured gap decays all the way;
    - chaotic (c* < 1): where floor < |cˡ − c*| ≤ 0.1, floor = max(5·noise, 1/((1 − χ_c)·N)) with noise the
      median seed s.e. of cˡ over the layers where the theory has settled (|cˡ − c*| < 1e-3; the last
      quarter of the layers if none has) and N = ``width``, the narrowest hidden layer: below it |cˡ − c*|
      is seed noise or the finite-width shift of cˡ — O(1/N) per layer, remembered over about
      1/(1 − χ_c) layers (measured for tanh at N = 256: |E cˡ − cˡ_theory| up to ≈ 0.05 at σ_w²·N = 2.5) —
      which the fit would read as a slower (or reversed) decay.

    Everything is nan where ξ_c is infinite or undefined (critical, q* = 0 or ∞, an identity c-map) or
    fewer than 3 layers qualify.
    """
    nan = (math.nan, math.nan, math.nan, np.array([], dtype=int))
    if terms is None or not math.isfinite(terms.xi_c) or not math.isfinite(terms.c_star):
        return nan
    L = len(c_th)
    layers = np.arange(1, L + 1)
    S = c_seeds.shape[0]
    if terms.c_star == 1.0:
        sel = cr.fit_xi_c(layers, c_th, 1.0, floor=1e-8, ceiling=0.1).layers
        values, target = gap_seeds, 0.0
        th = 1.0 - c_th
    else:
        settled = np.abs(c_th - terms.c_star) < 1e-3
        if not settled.any():
            settled = layers > L - max(L // 4, 1)
        noise = 0.0
        if S > 1:
            with np.errstate(invalid="ignore"):
                noise = float(np.nanmedian(c_seeds[:, settled].std(axis=0, ddof=1))) / math.sqrt(S)
        floor = max(5 * noise, 1.0 / ((1.0 - terms.chi_c) * width), 1e-8)
        sel = cr.fit_xi_c(layers, c_th, terms.c_star, floor=floor, ceiling=0.1).layers
        values, target, th = c_seeds, terms.c_star, c_th
    if len(sel) < 3 or not np.all(np.isfinite(values[:, sel - 1])):
        return nan
    xi_hat, se = cr.xi_c_jackknife(sel, values[:, sel - 1], target)
    window = cr.fit_xi_c(sel, th[sel - 1], target, floor=0.0, ceiling=math.inf).xi
    return xi_hat, se, window, sel


# --- reductions -------------------------------------------------------------------------------------


def _mean_se(values: Array) -> tuple[Array, Array]:
    """Mean over seeds (axis 0) and its standard error (ddof = 1, nan for one seed); nan where a seed is."""
    S = values.shape[0]
    mean = values.mean(axis=0)
    se = values.std(axis=0, ddof=1) / math.sqrt(S) if S > 1 else np.full(mean.shape, np.nan)
    return mean, se


def corr_rows(config, act, widths, s: float, b: float, mode: str, k: int, seeds: list[Measurement],
              rows: list[dict], summary: dict, uniform: bool) -> list[tuple[list[dict], dict]]:
    """The row sets of configuration ``k`` (its layer rows and summary row, without pair columns), one
    per c⁰ of ``config.input_corr``: copies with ``input_corr``, the c⁰-keyed ``config_id`` and the pair
    columns (module docstring)."""
    from hevar.experiments.sweep import config_id

    s_in, _ = init.scaled_variances(s, np.asarray(widths), mode)
    terms = cr.correlation_terms(act, s, b) if uniform else None
    out = []
    for j, c0 in enumerate(config.input_corr):
        c_seeds = np.stack([m.extras["pair_c"][k, j] for m in seeds])  # (S, L)
        gap_seeds = np.stack([m.extras["pair_gap"][k, j] for m in seeds])
        c_mean, c_se = _mean_se(c_seeds)
        g_mean, g_se = _mean_se(gap_seeds)
        with np.errstate(over="ignore", invalid="ignore"):
            c_th = c_theory(act, s_in, b, c0)
        cid = config_id(dict(summary, input_corr=c0))
        new_rows = [dict(r, config_id=cid, input_corr=c0, c=c_mean[i], c_se=c_se[i], one_minus_c=g_mean[i],
                         one_minus_c_se=g_se[i], c_theory=c_th[i]) for i, r in enumerate(rows)]
        xi_hat, se, window, sel = xi_c_fit(terms, c_th, c_seeds, gap_seeds, min(widths[1:]))
        nan = math.nan
        new_summary = dict(
            summary, config_id=cid, input_corr=c0,
            c_star=terms.c_star if terms else nan, chi_c=terms.chi_c if terms else nan,
            xi_c=terms.xi_c if terms else nan, xi_q=terms.xi_q if terms else nan,
            xi_c_theory=window, xi_c_hat=xi_hat, xi_c_hat_se=se,
            xi_c_fit_first_layer=int(sel[0]) if len(sel) else None,
            xi_c_fit_last_layer=int(sel[-1]) if len(sel) else None)
        out.append((new_rows, new_summary))
    return out


def jacobian_columns(config, act, widths, s: float, b: float, dist: str, k: int, seeds: list[Measurement],
                     uniform: bool) -> dict:
    """The ``--jacobian`` summary columns of configuration ``k`` (module docstring)."""
    from hevar.meanfield import spectrum

    log_mean = np.stack([m.extras["jac_log_mean"][k] for m in seeds])  # (S, B)
    log_m2 = np.stack([m.extras["jac_log_m2"][k] for m in seeds])
    with np.errstate(over="ignore", invalid="ignore"):
        per_seed_mean = np.exp(log_mean).mean(axis=1)  # (S,)
        rel_var = (np.exp(log_m2 - 2 * log_mean) - 1).mean(axis=1)
        top = np.max(log_mean)
        log_m1 = math.log(np.mean(np.exp(log_mean - top))) + top if np.all(np.isfinite(log_mean)) else math.nan
    m1, m1_se = _mean_se(per_seed_mean)
    v, v_se = _mean_se(rel_var)
    with np.errstate(invalid="ignore"):
        log_max = float(np.mean(np.stack([m.extras["jac_log_max"][k] for m in seeds])))
        log_min = float(np.mean(np.stack([m.extras["jac_log_min"][k] for m in seeds])))
    th = dict(log_mean=math.nan, normalized_var=math.nan)
    constant = len(set(widths)) == 1
    if uniform and constant:
        sigma_w = math.sqrt(s / widths[0])
        s_eff = s * float(init.variance_ratio(dist, sigma_w))
        th = spectrum.predicted_moments(act, s_eff, b, len(widths) - 1, dist)
    finite = lambda x: float(x) if np.isfinite(x) else math.nan  # noqa: E731
    return dict(jacobian_inputs=config.jacobian, sv2_mean=finite(m1), sv2_mean_se=finite(m1_se),
                sv2_mean_theory=_exp(th["log_mean"]), log10_sv2_mean=log_m1 / LN10,
                log10_sv2_mean_theory=th["log_mean"] / LN10, sv2_rel_var=finite(v), sv2_rel_var_se=finite(v_se),
                sv2_rel_var_theory=th["normalized_var"], log10_sv2_max=log_max / LN10, log10_sv2_min=log_min / LN10)


def _exp(x: float) -> float:
    """e^x where it fits float64's normal range; 0 for ln 0 = −inf (an exact zero λ is a value); else no value."""
    if x == -math.inf:
        return 0.0
    return math.exp(x) if math.isfinite(x) and -708 < x < 709 else math.nan


def spectra_rows(keys: dict, seeds: list[Measurement], k: int) -> list[dict]:
    """``spectra.csv`` rows of configuration ``k``: per seed (in order) and quantile level."""
    rows = []
    for i, m in enumerate(seeds):
        q = m.extras[QUANTILE_ARRAY][k]
        for level, value in zip(QUANTILES, q):
            rows.append(dict(keys, seed_index=i, quantile=float(level), sv2=_exp(value), log10_sv2=value / LN10))
    return rows


@dataclass(frozen=True, eq=False)
class OptInMeasurement(Measurement):
    """A task's :class:`~hevar.engine.passes.Measurement` with the opt-in arrays (:func:`array_shapes`)."""

    extras: dict = field(default_factory=dict)
