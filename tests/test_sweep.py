"""The sweep's reductions and the CSV contract."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hevar import store
from hevar.cli import app
from hevar.config import build_config
from hevar.sweep import execute, fit_layers, plan, reduce, run_task

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
