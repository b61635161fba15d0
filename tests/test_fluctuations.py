"""Finite-width fluctuations and Theorem 1.1, against oracles.

- the exact single-input law of ‖δˡ‖² (hevar.meanfield.fluctuations, docs/finite-width.md) against Monte Carlo
  of the real engine, with tolerances from the measured spread;
- β and its per-layer part by hand;
- seeds.csv against layers.csv (the seed mean in linear scale is q_tilde; the variance, the
  Theorem 1.1 ratio recomputed from the per-seed logs);
- the Theorem 1.1 ratio on hand-made logs with a known value, and = 1 with one input and one seed;
- the two figures render, and the spread figure is skipped below three seeds.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from hevar.meanfield import fluctuations
from hevar.views import figures
from hevar.results import store
from hevar.meanfield.activations import parse_activation
from hevar.views.cli import app
from hevar.engine.passes import Streams, measure
from hevar.experiments.sweep import FIELDS, add_fluctuation_columns

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _engine_log_q_tilde(act_name: str, widths: tuple[int, ...], n_seeds: int, batch: int = 1) -> np.ndarray:
    """ln q̃ˡ of ``n_seeds`` independent He-initialised nets, one input each: shape (S, L)."""
    act = parse_activation(act_name)
    L = len(widths) - 1
    weight_std = np.sqrt(2.0 / np.array(widths[:-1], dtype=float))[None, :]  # fan-in He, any scale would do
    return np.stack([measure(act, widths, weight_std, np.zeros(1), batch, Streams(7, i)).log_q_tilde[0]
                     for i in range(n_seeds)])


def _var_se(x: np.ndarray) -> np.ndarray:
    """Standard error of the sample variance along axis 0, from the sample's fourth moment."""
    n = x.shape[0]
    c = x - x.mean(axis=0)
    m2, m4 = (c**2).mean(axis=0), (c**4).mean(axis=0)
    return np.sqrt(np.maximum(m4 - m2**2 * (n - 3) / (n - 1), 0) / n)


def _m2_ratio_se(rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mean(ρ²)/mean(ρ)² along axis 0 and its delta-method standard error."""
    n = rho.shape[0]
    a, b = (rho**2).mean(axis=0), rho.mean(axis=0)
    r = a / b**2
    da, db = 1 / b**2, -2 * a / b**3
    var = (da**2 * np.var(rho**2, axis=0) + db**2 * np.var(rho, axis=0)
           + 2 * da * db * np.mean((rho**2 - a) * (rho - b), axis=0)) / n
    return r, np.sqrt(var)


# --- the exact law against Monte Carlo ------------------------------------------------------------


@pytest.mark.parametrize("act_name, alpha", [("relu", 0.0), ("leaky_relu:0.3", 0.3), ("linear", 1.0)])
def test_exact_single_input_law_against_the_engine(act_name, alpha):
    widths = (12, 16, 10, 14, 16)  # uneven on purpose: the law is per layer
    log_qt = _engine_log_q_tilde(act_name, widths, 1500)
    log_qt = log_qt[np.all(np.isfinite(log_qt), axis=1)]  # a wholly inactive relu layer: probability 2⁻ᴺ
    var, se = np.var(log_qt, axis=0, ddof=1), _var_se(log_qt)
    exact = fluctuations.var_ln_q_tilde(widths, alpha)
    assert np.all(np.abs(var - exact) < 4 * se), (var, exact, se)
    rho = np.exp(log_qt - log_qt.mean(axis=0))  # q̃ up to a per-layer constant: the ratio is scale-free
    ratio, ratio_se = _m2_ratio_se(rho)
    exact_m2 = fluctuations.q_tilde_moment_ratio(widths, alpha)
    assert np.all(np.abs(ratio - exact_m2) < 4 * ratio_se), (ratio, exact_m2, ratio_se)
    # and it is not the mean-field answer (no spread): the test can tell
    assert np.all(var[:-1] > 8 * se[:-1])


def test_kappa_and_the_per_layer_factor_by_monte_carlo():
    assert fluctuations.kappa(0.0) == pytest.approx(5.0)
    assert fluctuations.kappa(1.0) == pytest.approx(2.0)
    rng = np.random.default_rng(3)
    n, N, alpha = 200_000, 8, 0.5
    a = np.where(rng.random((n, N)) < 0.5, 1.0, alpha**2)
    F = np.sum(a * rng.standard_normal((n, N)) ** 2, axis=1)
    r, se = _m2_ratio_se(F)
    assert abs(r - (1 + fluctuations.kappa(alpha) / N)) < 4 * se
    lnF = np.log(F)
    assert abs(np.var(lnF, ddof=1) - fluctuations.var_ln_factor(N, alpha)) < 4 * _var_se(lnF)


def test_var_ln_factor_large_width_limit_is_kappa_over_n():
    for alpha in (0.0, 0.2, 1.0):
        n = 4000
        assert fluctuations.var_ln_factor(n, alpha) * n == pytest.approx(fluctuations.kappa(alpha), rel=0.01)


# --- β ----------------------------------------------------------------------------------------------


def test_beta_sums_the_hidden_layers():
    widths = (3, 4, 5, 8, 2)  # N_0 .. N_4: hidden layers are 1..3
    assert fluctuations.beta(widths) == pytest.approx(1 / 4 + 1 / 5 + 1 / 8)
    np.testing.assert_allclose(fluctuations.beta_to_top(widths), [1 / 4 + 1 / 5 + 1 / 8, 1 / 5 + 1 / 8, 1 / 8, 0.0])
    assert fluctuations.beta((64,) * 51) == pytest.approx(49 / 64)


def test_theory_applies_only_where_it_was_derived():
    assert fluctuations.theory_applies("relu", 0.0, 1)
    assert fluctuations.theory_applies("leaky_relu:0.2", 0.0, 1)
    assert not fluctuations.theory_applies("relu", 0.0, 2)  # a batch shares the weights
    assert not fluctuations.theory_applies("relu", 0.1, 1)  # bias breaks homogeneity
    assert not fluctuations.theory_applies("tanh", 0.0, 1)
    assert not fluctuations.theory_applies("relu", 0.0, 1, "uniform")


# --- the run folder: seeds.csv against layers.csv -------------------------------------------------


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fw") / "run"
    args = ["sweep", "--act", "relu,tanh", "--depth", "6", "--width", "16", "--sigma-w2", "1,2", "--sigma-b2", "0",
            "--seeds", "4", "--batch", "3", "--out", str(out), "--no-plot"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _by_config(rows: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault((r["activation"], r["sigma_w2_n"], r["layer"]), []).append(r)
    return out


def test_seeds_csv_contract(small_run):
    rows = _read(small_run / "seeds.csv")
    assert tuple(rows[0].keys()) == store.SEED_COLUMNS
    assert len(rows) == 2 * 2 * 4 * 6  # activations × σ_w²·N × seeds × layers
    assert {int(r["seed_index"]) for r in rows} == {0, 1, 2, 3}
    table = store.read_seeds(small_run)
    assert np.all(np.isfinite(table["log10_q_tilde"]))


def test_seeds_csv_reproduces_layers_csv(small_run):
    seeds = _by_config(_read(small_run / "seeds.csv"))
    layers = _read(small_run / "layers.csv")
    assert len(layers) == len(seeds)
    for row in layers:
        per_seed = seeds[(row["activation"], row["sigma_w2_n"], row["layer"])]
        ln_qt = np.array([float(r["log10_q_tilde"]) for r in per_seed]) * math.log(10)
        assert np.mean(np.exp(ln_qt)) == pytest.approx(float(row["q_tilde"]), rel=1e-9)
        assert np.var(ln_qt, ddof=1) == pytest.approx(float(row["var_ln_q_tilde"]), rel=1e-9)
        gn, dn, an = (np.exp(np.array([float(r[f"log10_{c}"]) for r in per_seed]) * math.log(10))
                      for c in ("grad_norm2", "delta_norm2", "act_norm2"))
        assert gn.mean() / (dn.mean() * an.mean()) == pytest.approx(float(row["thm11_ratio"]), rel=1e-9)
        assert float(row["beta_to_top"]) == pytest.approx((6 - int(row["layer"])) / 16)
        assert row["var_ln_q_tilde_theory"] == "" and row["q_tilde_m2_ratio_theory"] == ""  # batch 3: no theory


def test_summary_has_beta_and_the_first_layer_spread(small_run):
    layers = {(r["activation"], r["sigma_w2_n"]): r for r in _read(small_run / "layers.csv") if r["layer"] == "1"}
    for row in _read(small_run / "summary.csv"):
        assert float(row["beta"]) == pytest.approx(5 / 16)
        assert row["var_ln_q_tilde_first"] == layers[(row["activation"], row["sigma_w2_n"])]["var_ln_q_tilde"]


def test_theory_column_is_filled_for_one_input(tmp_path):
    out = tmp_path / "one"
    args = ["sweep", "--act", "relu,tanh", "--depth", "5", "--width", "16", "--sigma-w2", "2", "--seeds", "2",
            "--batch", "1", "--out", str(out), "--no-plot"]
    assert CliRunner().invoke(app, args).exit_code == 0
    rows = _read(out / "layers.csv")
    relu = [r for r in rows if r["activation"] == "relu"]
    np.testing.assert_allclose([float(r["var_ln_q_tilde_theory"]) for r in relu],
                               fluctuations.var_ln_q_tilde((16,) * 6, 0.0))
    assert all(r["var_ln_q_tilde_theory"] == "" for r in rows if r["activation"] == "tanh")
    # one input: each seed's own ratio is exactly 1
    assert all(float(r["thm11_ratio_lo"]) == pytest.approx(1.0, abs=1e-12) for r in rows)


# --- Theorem 1.1's ratio --------------------------------------------------------------------------


def _fake_logs(x: np.ndarray, y: np.ndarray, xy: np.ndarray) -> dict[str, np.ndarray]:
    """Per-seed logs (S, L) with ‖δ‖² = x, ‖φ‖² = y, ‖δ‖²‖φ‖² = xy (means over one seed's inputs)."""
    shape = np.asarray(x, dtype=float).shape
    return dict(log_q=np.zeros(shape), log_q_tilde=np.log(x), log_grad_norm2=np.log(xy),
                log_delta_norm2=np.log(x), log_act_norm2=np.log(y))


def _columns(logs, act="relu", batch=1):
    depth = logs["log_q"].shape[1]
    rows, summary = [{} for _ in range(depth)], {}
    add_fluctuation_columns(rows, summary, SimpleNamespace(batch=batch), parse_activation(act), (8,) * (depth + 1),
                            0.0, "normal", logs)
    return rows, summary


def test_thm11_ratio_has_the_known_value_on_hand_made_logs():
    # two seeds, one input each: X = (1, 2), Y = (2, 1) → E[XY] = 2, E[X]E[Y] = 2.25
    x, y = np.array([[1.0], [2.0]]), np.array([[2.0], [1.0]])
    rows, _ = _columns(_fake_logs(x, y, x * y))
    assert rows[0]["thm11_ratio"] == pytest.approx(8 / 9)
    assert rows[0]["thm11_ratio_lo"] == pytest.approx(1.0) and rows[0]["thm11_ratio_hi"] == pytest.approx(1.0)
    # each leave-one-out sample is one seed, whose ratio is 1: the jackknife s.e. is 0
    assert rows[0]["thm11_ratio_se"] == pytest.approx(0.0)
    # within one seed, inputs that anti-correlate: mean(XY) = 1 while mean(X)·mean(Y) = 1.5·1.5
    rows, _ = _columns(_fake_logs(np.array([[1.5]]), np.array([[1.5]]), np.array([[1.0]])), batch=2)
    assert rows[0]["thm11_ratio"] == pytest.approx(1 / 2.25)
    assert math.isnan(rows[0]["var_ln_q_tilde"])  # one seed: no variance


def test_thm11_ratio_is_one_with_one_input_and_one_seed():
    act = parse_activation("tanh")  # no independence at all, yet E[XY] = XY = E[X]E[Y] for one sample
    m = measure(act, (8,) * 5, np.full((1, 4), math.sqrt(1.5 / 8)), np.array([0.3]), 1, Streams(0, 0))
    rows, _ = _columns({f: getattr(m, f) for f in FIELDS}, act="tanh")
    np.testing.assert_allclose([r["thm11_ratio"] for r in rows], 1.0, rtol=1e-12)


def test_thm11_ratio_is_one_in_expectation_for_a_linear_net():
    # δˡ and φ(zˡ⁻¹) = zˡ⁻¹ are exactly independent in norm for one input (docs/finite-width.md)
    act = parse_activation("linear")
    widths = (8, 10, 12, 10)
    ms = [measure(act, widths, np.sqrt(1 / np.array(widths[:-1], float))[None, :], np.zeros(1), 1, Streams(11, i))
          for i in range(400)]
    logs = {f: np.stack([getattr(m, f)[0] for m in ms]) for f in FIELDS}
    rows, _ = _columns(logs, act="linear")
    for r in rows:
        assert abs(r["thm11_ratio"] - 1.0) < 4 * r["thm11_ratio_se"]


# --- figures ----------------------------------------------------------------------------------------


def test_figures_render(small_run):
    written = {p.name: p for p in figures.render_run(small_run)}
    for name in ("seed_spread.png", "thm11.png"):
        assert written[name].read_bytes()[:8] == PNG_SIGNATURE


def test_spread_figure_needs_three_seeds(small_run):
    layers, summary, _ = store.read_run(small_run)
    assert figures.finite_width._figure_seed_spread(layers, summary) is not None
    layers = dict(layers, n_seeds=np.full_like(layers["n_seeds"], 2.0))
    assert figures.finite_width._figure_seed_spread(layers, summary) is None


def test_the_pmf_and_pdf_ufuncs_are_scipy_stats_own_bits():
    """fluctuations avoids importing scipy.stats (0.9 s) by calling the ufuncs behind binom.pmf and
    beta.pdf; they must give scipy.stats' values bit for bit, or existing CSVs would change."""
    from scipy import stats

    for n in (2, 7, 64, 256, 1024, 4096):
        k = np.arange(n + 1)
        assert np.array_equal(fluctuations._binom_pmf(k.astype(float), n, 0.5), stats.binom.pmf(k, n, 0.5)), n
    B = np.linspace(1e-3, 1 - 1e-3, 101)
    for a, b in ((0.5, 0.5), (3.0, 250.0), (512.0, 512.0), (1.5, 2000.0)):
        assert np.array_equal(fluctuations._beta_pdf(B, a, b), stats.beta.pdf(B, a, b)), (a, b)


def test_a_plain_sweep_never_imports_scipy_stats(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from hevar.views.cli import main\n"
            "try:\n    main(['sweep', '--act', 'relu', '--depth', '5', '--width', '16', '--seeds', '3', '--batch', '2',"
            f" '--no-plot', '--out', r'{tmp_path / 'r'}'])\nexcept SystemExit:\n    pass\n"
            "print('scipy.stats' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (tmp_path / "r" / "seeds.csv").exists(), result.stdout + result.stderr  # it ran, reductions included
    assert result.stdout.strip().splitlines()[-1] == "False", result.stdout + result.stderr
