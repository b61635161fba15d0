"""The sweep's reductions and the CSV contract."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hevar.results import store
from hevar.views.cli import app
from hevar.experiments.config import build_config
from hevar.experiments.sweep import execute, fit_layers, plan, reduce, run_task

LAYERS_CONTRACT = ("activation", "depth", "width", "sigma_w2", "sigma_w2_n", "sigma_b2", "layer", "q", "q_theory",
                   "q_tilde", "q_tilde_lo", "q_tilde_hi", "q_tilde_theory", "grad_norm2", "grad_norm2_theory")
SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.toml"
SUMMARY_CONTRACT = ("activation", "depth", "width", "sigma_w2", "sigma_w2_n", "sigma_b2", "chi_hat", "chi_hat_se",
                    "chi_theory", "log10_q_tilde_ratio", "sigma_w2_n_crit", "status")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "smoke"
    result = CliRunner().invoke(app, ["sweep", "--config", str(SMOKE), "--out", str(out), "--no-plot"])
    assert result.exit_code == 0, result.output
    return out


def read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_run_folder_holds_the_three_files(smoke_run):
    for name in ("manifest.json", "layers.csv", "summary.csv", "theory.csv"):
        assert (smoke_run / name).is_file()
    manifest = store.read_manifest(smoke_run)
    assert manifest["config"]["act"] == ["relu", "tanh"]
    assert manifest["finished"] is not None and manifest["numpy"]


def test_csv_contract(smoke_run):
    layers, summary = read(smoke_run / "layers.csv"), read(smoke_run / "summary.csv")
    assert set(LAYERS_CONTRACT) <= set(layers[0]) and set(SUMMARY_CONTRACT) <= set(summary[0])
    # 2 activations × 3 σ_w² configurations; 12 layers each
    assert len(summary) == 6 and len(layers) == 6 * 12
    for row in layers:
        assert math.isclose(float(row["sigma_w2"]) * float(row["width"]), float(row["sigma_w2_n"]))
        assert math.isclose(math.log10(float(row["q_tilde"])), float(row["log10_q_tilde"]), rel_tol=1e-9)
        assert float(row["q_tilde_lo"]) <= float(row["q_tilde_hi"])
    relu = [r for r in summary if r["activation"] == "relu"]
    assert [float(r["sigma_w2_n_crit"]) for r in relu] == [2.0] * 3
    assert all(r["status"] == "ok" for r in summary)


def test_chi_hat_brackets_one_at_he_initialization():
    """χ̂ is below 1 under 2/N, above it over, and within 3 SE of σ_w²N/2 everywhere (ReLU)."""
    cfg = build_config(dict(act="relu", depth="30", width="256", sigma_w2="1,2,3", seeds="6", batch="32"))
    results = {t: run_task(cfg, t) for t in plan(cfg)}
    _, summary, _ = reduce(cfg, results)
    for row in summary:
        expected = row["sigma_w2_n"] / 2
        assert abs(row["chi_hat"] - expected) < 3 * row["chi_hat_se"], row
        assert row["chi_theory"] == pytest.approx(expected, rel=1e-12)
    assert summary[0]["chi_hat"] < 1 < summary[2]["chi_hat"]


def test_fit_layers_are_the_upper_half():
    assert fit_layers(50) == (26, 50)
    assert fit_layers(3) == (1, 3)


def test_resume_skips_finished_tasks(tmp_path):
    cfg = build_config(dict(act="relu", depth="5", width="16", sigma_w2="2", seeds="3", batch="4"))
    store.prepare_run_dir(tmp_path)
    first, computed = execute(cfg, tmp_path)
    assert len(computed) == 3
    again, computed = execute(cfg, tmp_path)
    assert computed == []
    for task in plan(cfg):
        np.testing.assert_array_equal(first[task].log_q_tilde, again[task].log_q_tilde)


@pytest.mark.parametrize("act,sigma_w2", [("tanh", "1,1.76095,3"), ("selu", "0.5,0.90177,1.5"), ("gelu", "1,3")])
def test_chi_hat_matches_chi1_for_non_homogeneous_activations(act, sigma_w2):
    """Monte Carlo against theory at σ_b² = 0.05, where the forward pass settles on a finite q*
    (or, for gelu at 3, grows to q* = ∞ with χ₁ = 3/2): χ̂ within 3 jackknife SE of χ₁.
    At the critical values (1.76095 for tanh, 0.90177 for selu) χ₁ = 1."""
    cfg = build_config(dict(act=act, depth="30", width="256", sigma_w2=sigma_w2, sigma_b2="0.05",
                            seeds="6", batch="32"))
    results = {t: run_task(cfg, t) for t in plan(cfg)}
    _, summary, _ = reduce(cfg, results)
    for row in summary:
        assert abs(row["chi_hat"] - row["chi1"]) < 3 * row["chi_hat_se"] + 1e-3, row
    crit = [r for r in summary if abs(r["sigma_w2_n"] - r["sigma_w2_n_crit"]) < 1e-4]
    for row in crit:
        assert row["chi1"] == pytest.approx(1.0, abs=1e-4)


# --- the reductions on hand-made seed logs, against independent computations --------------------------

def _hand_made(log_q_tilde_rows):
    """Seeds whose ln q̃ rows are given; every other field follows from them."""
    from hevar.engine.passes import Measurement
    from hevar.experiments.sweep import FIELDS

    out = []
    for row in log_q_tilde_rows:
        row = np.asarray(row, dtype=float)
        fields = {f: row[None, :].copy() for f in FIELDS}
        out.append(Measurement(**fields, status=("ok",)))
    return out


def _reduce_hand_made(rows):
    import warnings

    from hevar.experiments.sweep import Task

    L = len(rows[0])
    cfg = build_config(dict(act="relu", depth=str(L), width="8", sigma_w2="2", seeds=str(len(rows))))
    results = {Task("relu", L, 8, i): m for i, m in enumerate(_hand_made(rows))}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer_rows, summary_rows, _ = reduce(cfg, results)
    return layer_rows, summary_rows[0]


def test_chi_hat_is_the_slope_of_the_seed_mean_with_a_jackknife_se():
    """Two seeds with slopes −1 and −3: the seed mean decays like e^{−l}, so χ̂ ≈ e (not e² as
    the mean of per-seed slopes would give); the SE is recomputed by hand with np.polyfit."""
    L = 8
    layers = np.arange(1, L + 1)
    rng = np.random.default_rng(0)
    rows = [-1.0 * layers, -3.0 * layers, -2.0 * layers + rng.normal(0, 0.3, L), -1.5 * layers]
    _, summary = _reduce_hand_made(rows)
    first, last = fit_layers(L)
    sel = slice(first - 1, last)
    logs = np.array(rows)

    def slope(subset):
        mean = np.log(np.mean(np.exp(subset), axis=0))
        return np.polyfit(layers[sel], mean[sel], 1)[0]

    chi = np.exp(-slope(logs))
    loo = np.array([slope(np.delete(logs, i, axis=0)) for i in range(len(rows))])
    se = chi * np.sqrt((len(rows) - 1) / len(rows) * np.sum((loo - loo.mean()) ** 2))
    assert summary["chi_hat"] == pytest.approx(chi, rel=1e-12)
    assert summary["chi_hat_se"] == pytest.approx(se, rel=1e-12)
    per_seed = np.exp(-np.mean([np.polyfit(layers[sel], r[sel], 1)[0] for r in logs]))
    assert abs(summary["chi_hat"] - per_seed) > 1.0  # the estimator is not the mean of log-slopes


def test_spread_columns_are_the_16th_and_84th_percentiles_across_seeds():
    offsets = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    rows = [np.full(4, o) for o in offsets]
    layer_rows, _ = _reduce_hand_made(rows)
    lo, hi = np.exp(np.percentile(offsets, [16, 84]))
    for row in layer_rows:
        assert row["q_tilde_lo"] == pytest.approx(lo, rel=1e-12)
        assert row["q_tilde_hi"] == pytest.approx(hi, rel=1e-12)
        assert row["q_tilde"] == pytest.approx(np.mean(np.exp(offsets)), rel=1e-12)
        values = np.exp(offsets)
        assert row["q_tilde_m2_ratio"] == pytest.approx(np.mean(values**2) / np.mean(values) ** 2, rel=1e-12)
        assert row["var_ln_q_tilde"] == pytest.approx(np.var(offsets, ddof=1), rel=1e-12)
