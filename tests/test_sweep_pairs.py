"""`hevar sweep --input-corr` and `--jacobian` (issue 14, items 2 and 3): measured against theory with
tolerances from the measured seed spread, off by default without a trace, bad values refused."""
import hashlib
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

import hevar
from hevar.experiments import pairsweep
from hevar.meanfield import correlations as cr
from hevar.meanfield.activations import parse_activation
from hevar.results import store
from hevar.views.cli import app

TANH = parse_activation("tanh")
N, DEPTH, SEEDS = 256, 40, 8
S_GRID = [1.2, 1.5, 2.5, 4.0]  # two ordered, two chaotic (critical 1.7610 at σ_b² = 0.05)


def _one_thread():
    """One BLAS thread: on 2 shared cores OpenBLAS threads spin on these small matrices (a 128 × 128
    orthogonal draw took 0.55 s with two threads on a loaded machine and 5 ms with one)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    return threadpoolctl.threadpool_limits(1)


@pytest.fixture(scope="module")
def pair_run():
    with _one_thread():
        return hevar.sweep(act="tanh", depth=DEPTH, width=N, sigma_w2=S_GRID, sigma_b2=0.05, seeds=SEEDS, batch=4,
                       input_corr=0.3)


def _tolerance(layer, c_se, chi_c):
    """5 seed standard errors, plus the finite-width bias of E[cˡ]: the empirical correlation of N units is a
    ratio of sums, so one layer's map is off by O(1/N); a shift made at layer m is carried to layer l with the
    factor ∏ (c-map slope) ≈ χ_c^(l-m), so the shifts add up to at most min(l, 1/(1 − χ_c))/N (coefficient 1:
    measured, |E cˡ − cˡ_theory|·N stayed below 12 for N = 128..512 at depths 10..30, where this bound is 9..16)."""
    return 5 * c_se + np.minimum(layer, 1 / (1 - chi_c)) / N


@pytest.mark.parametrize("s", [1.5, 2.5])
def test_measured_correlation_matches_theory_along_the_trajectory(pair_run, s):
    layers, summary = pair_run.layers, pair_run.summary
    rows = layers[layers.sigma_w2_n == s]
    chi_c = float(summary[summary.sigma_w2_n == s].chi_c.iloc[0])
    assert len(rows) == DEPTH and np.all(rows.input_corr == 0.3) and np.all(rows.c_se > 0)
    tol = _tolerance(rows.layer.to_numpy(), rows.c_se.to_numpy(), chi_c)
    gap = np.abs(rows.c.to_numpy() - rows.c_theory.to_numpy())
    assert np.all(gap < tol), (gap / tol).max()
    # the theory column is the independent recursion of hevar.meanfield.correlations (constant width)
    assert np.allclose(rows.c_theory, cr.c_trajectory(TANH, s, 0.05, 1.0, 0.3, DEPTH), rtol=0, atol=1e-12)
    # 1 − c is measured without cancellation and agrees with c
    assert np.allclose(rows.one_minus_c, 1 - rows.c, rtol=0, atol=1e-9)
    # the tolerance discriminates: the trajectory from another input correlation is rejected
    wrong = pairsweep.c_theory(TANH, np.full(DEPTH, s), 0.05, 0.45)
    assert np.any(np.abs(rows.c.to_numpy() - wrong) > tol)


def test_xi_c_hat_agrees_with_xi_c(pair_run):
    summary = pair_run.summary.set_index("sigma_w2_n")
    for s in (1.2, 1.5, 4.0):  # where ξ_c (6–16 layers) is well inside the depth of 40
        row = summary.loc[s]
        assert row.xi_c == pytest.approx(cr.correlation_terms(TANH, s, 0.05).xi_c, rel=1e-12)
        assert math.isfinite(row.xi_c_hat) and row.xi_c_hat_se > 0
        assert abs(row.xi_c_hat - row.xi_c_theory) < 4 * row.xi_c_hat_se, (s, row.xi_c_hat, row.xi_c_hat_se)
        assert row.xi_c_fit_last_layer - row.xi_c_fit_first_layer >= 2
    # the fit window's theory is the asymptotic ξ_c where the window is in the linear regime
    for s in (1.2, 4.0):
        assert summary.loc[s].xi_c_theory == pytest.approx(summary.loc[s].xi_c, rel=0.02)


def _old_config_id(row):
    names = ("activation", "depth", "widths", "mode", "dist", "sigma_b2", "sigma_w2_n")
    canonical = json.dumps({k: row[k] for k in names}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(canonical.encode()).hexdigest()[:12]


def test_off_by_default_changes_nothing_and_on_keys_by_input_corr():
    kw = dict(act="tanh", depth=6, width=32, sigma_w2=[1.5, 2.5], sigma_b2=0.05, seeds=2, batch=4)
    off = hevar.sweep(**kw)
    assert tuple(off.layers.columns) == store.LAYER_COLUMNS and tuple(off.summary.columns) == store.SUMMARY_COLUMNS
    assert tuple(off.seeds.columns) == store.SEED_COLUMNS and off.spectra is None
    assert {"input_corr", "n_pairs", "jacobian"}.isdisjoint(off.manifest["config"])
    assert list(off.summary.config_id) == [_old_config_id(r) for _, r in off.summary.iterrows()]
    on = hevar.sweep(**kw, input_corr=[0.3, 0.6], jacobian=1)
    assert on.manifest["config"]["input_corr"] == [0.3, 0.6] and on.manifest["config"]["n_pairs"] == 32
    assert len(on.summary) == 2 * len(off.summary) and on.summary.config_id.is_unique
    assert set(on.summary.curve_id) == set(off.summary.curve_id)  # a stability curve does not depend on c⁰
    assert on.crossings.equals(off.crossings)
    for c0 in (0.3, 0.6):  # q and χ̂ are the off run's, in each c⁰'s row set
        part = on.summary[on.summary.input_corr == c0].reset_index(drop=True)
        assert part[list(store.SUMMARY_COLUMNS[1:])].equals(off.summary[list(store.SUMMARY_COLUMNS[1:])])
        assert set(part.config_id).isdisjoint(off.summary.config_id)
    merged = on.layers.merge(on.summary, on="config_id")
    assert len(merged) == len(on.layers)
    assert len(on.spectra) == len(on.summary) * 2 * len(pairsweep.QUANTILES)
    assert set(on.spectra.config_id) == set(on.summary.config_id)


@pytest.mark.parametrize("value", ["1.5", "-2", "nan", "abc", "0.3,", "1"])
def test_bad_input_corr_is_one_usage_line(value):
    result = CliRunner().invoke(app, ["sweep", "--input-corr", value, "--depth", "2", "--no-plot"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "'input-corr'" in lines[0] and f"Got '{value}' instead" in lines[0]
    assert ("[-1, 1)" in lines[0]) != (value == "0.3,")  # the range, or the list's form
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args, name", [(["--n-pairs", "4"], "n-pairs"), (["--jacobian", "-1"], "jacobian"),
                                        (["--jacobian", "2", "--width", "2048"], "jacobian"),
                                        (["--input-corr", "0.3", "--arch", "resmlp"], "input-corr"),
                                        (["--input-corr", "0.3", "--width", "1"], "input-corr")])
def test_bad_opt_in_options(args, name):
    result = CliRunner().invoke(app, ["sweep", *args, "--depth", "2", "--no-plot"])
    assert result.exit_code == 2 and f"'{name}'" in result.output and len(result.output.strip().splitlines()) == 1


def test_resume_recomputes_a_point_without_its_pair_arrays(tmp_path):
    kw = dict(act="tanh", depth=4, width=16, sigma_w2=[1.5], sigma_b2=0.05, seeds=2, batch=4, input_corr=0.3)
    first = hevar.sweep(**kw, out=tmp_path / "run")
    point = next((tmp_path / "run" / store.POINTS).glob("*seed1.npz"))
    with np.load(point) as data:
        arrays = {k: data[k] for k in data.files if k != "pair_c"}
    np.savez(point, **arrays)
    again = hevar.sweep(**kw, out=tmp_path / "run")
    assert again.layers.equals(first.layers)


# --- the Jacobian spectrum ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def jac_run():
    with _one_thread():
        return hevar.sweep(act="relu", depth=[4, 10], width=128, sigma_w2=2, seeds=8, batch=2,
                       dist=["normal", "orthogonal"], jacobian=2)


def test_jacobian_mean_matches_the_product_of_chi(jac_run):
    s = jac_run.summary
    assert np.allclose(s.sv2_mean_theory, 2.0, rtol=1e-12, atol=0)  # s^L ∏ G = 2^L (1/2)^(L-1)
    assert np.all(np.abs(s.sv2_mean - s.sv2_mean_theory) < 4 * s.sv2_mean_se), s[["sv2_mean", "sv2_mean_se"]]
    assert np.allclose(10 ** s.log10_sv2_mean, s.sv2_mean, rtol=1e-9)


def test_jacobian_variance_gaussian_against_orthogonal(jac_run):
    s = jac_run.summary.set_index(["depth", "dist"])
    for L in (4, 10):
        g, o = s.loc[(L, "normal")], s.loc[(L, "orthogonal")]
        assert g.sv2_rel_var_theory == pytest.approx(2 * L - 1) and o.sv2_rel_var_theory == pytest.approx(L - 1)
        # free probability is the N → ∞ limit; the O(L²/N) finite-width correction is allowed for
        for row in (g, o):
            assert abs(row.sv2_rel_var - row.sv2_rel_var_theory) < 4 * row.sv2_rel_var_se + L * L / 128
        # the weights' share: Gaussian minus orthogonal is L·v_W = L
        diff_se = math.hypot(g.sv2_rel_var_se, o.sv2_rel_var_se)
        assert abs((g.sv2_rel_var - o.sv2_rel_var) - L) < 4 * diff_se + L * L / 128
        assert g.sv2_rel_var - o.sv2_rel_var > L / 2  # and it is there
    spectra = jac_run.spectra
    assert set(spectra.columns) >= {"config_id", "seed_index", "quantile", "sv2", "log10_sv2"}
    one = spectra[(spectra.config_id == spectra.config_id.iloc[0]) & (spectra.seed_index == 0)]
    assert len(one) == len(pairsweep.QUANTILES) and np.all(np.diff(one.log10_sv2) >= 0)


def test_an_exact_zero_singular_value_is_written_as_0_not_as_no_value():
    from hevar.experiments import pairsweep

    assert pairsweep._exp(-math.inf) == 0.0
    assert math.isnan(pairsweep._exp(math.nan)) and math.isnan(pairsweep._exp(-800.0))  # beyond float64: no value
    assert pairsweep._exp(math.log(2.5)) == pytest.approx(2.5, rel=1e-15)
