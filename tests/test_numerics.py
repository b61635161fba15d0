"""Numerics that do not overflow where the mathematics does not, and blow-up recorded as data.

- Depth 2000 ReLU nets at σ_w²·N = 0.25 and 8 (q̃ spans ~1800 and ~1200 decades): every log10 q̃ˡ is
  finite and grows like (L−1)·log10 χ, χ = σ_w²·N/2, within a tolerance from the spread of the
  per-layer log increments; float32 runs the same.
- A non-homogeneous activation whose forward pass genuinely overflows stops that configuration at the
  layer where it happened (``status`` = "overflow at layer l"), keeps its finite rows, and the rest
  of the sweep completes; nothing is printed as a RuntimeWarning by the reductions.
- The reductions' policy for statuses that disagree across seeds and for values the engine could not
  represent, on hand-made measurements.
"""

from __future__ import annotations

import csv
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hevar.results import store
from hevar.experiments import sweep
from hevar.meanfield.activations import FAMILIES
from hevar.views.cli import app
from hevar.experiments.config import build_config
from hevar.engine.passes import Measurement

runner = CliRunner()
LN10 = math.log(10)
LOG_NORMAL_MIN, LOG_MAX = math.log(sys.float_info.min), math.log(sys.float_info.max)

# An activation that grows without bound and is not positively homogeneous, so the engine cannot
# rescale its forward pass: gelu (z·Φ(z) ~ z for large z) where registered, else a relative of it.
UNBOUNDED = next((a for a in ("gelu", "softplus", "selu", "silu") if a in FAMILIES), None)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _sweep(tmp_path: Path, *args: str) -> tuple[Path, str]:
    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, ["sweep", *args, "--out", str(out), "--no-plot"])
    assert result.exit_code == 0, result.output
    runtime = [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught
               if issubclass(w.category, RuntimeWarning)]
    return out, "\n".join([result.output, *runtime])


# --- depth 2000: exact log-scale backward pass ----------------------------------------------------------

DEPTH, WIDTH, SEEDS = 2000, 64, 4


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_depth_2000_relu_q_tilde_is_finite_and_grows_like_chi_to_the_depth(tmp_path, dtype):
    run, output = _sweep(tmp_path, "--act", "relu", "--depth", str(DEPTH), "--width", str(WIDTH),
                         "--sigma-w2", "0.25,8", "--seeds", str(SEEDS), "--batch", "4", "--dtype", dtype)
    assert "Warning" not in output, output
    layers, summary = _rows(run / "layers.csv"), _rows(run / "summary.csv")
    assert [r["status"] for r in summary] == ["ok", "ok"]
    assert len(layers) == 2 * DEPTH

    # Every log-value is finite; the linear column is there exactly where it is a normal float64.
    for r in layers:
        log10_qt = float(r["log10_q_tilde"])
        assert math.isfinite(log10_qt) and math.isfinite(float(r["log10_q"]))
        if LOG_NORMAL_MIN < log10_qt * LN10 < LOG_MAX:
            assert float(r["q_tilde"]) == pytest.approx(10**log10_qt, rel=1e-9)
        else:
            assert r["q_tilde"] == ""

    per_seed = {}  # σ_w²·N → ln q̃ˡ, shape (seeds, L), from the saved work units
    for k, s in enumerate((0.25, 8.0)):
        per_seed[s] = np.array([store.load_point(run, sweep.Task("relu", DEPTH, WIDTH, i).key)["log_q_tilde"][k]
                                for i in range(SEEDS)])
        assert np.all(np.isfinite(per_seed[s]))

    for s in (0.25, 8.0):
        log_qt = per_seed[s]
        ratio = log_qt[:, 0] - log_qt[:, -1]  # ln(q̃¹/q̃ᴸ) per seed
        expected = (DEPTH - 1) * math.log(s / 2)  # (L−1)·ln χ, χ = σ_w²·N/2 for relu
        # E[q̃ˡ] = χ·E[q̃ˡ⁺¹] layer by layer, so ln q̃ is a random walk whose mean falls short of
        # (L−1)·ln χ by half its variance (log-normal); the per-layer increments give that variance
        # far more precisely than the spread of four end points.
        increments = log_qt[:, :-1] - log_qt[:, 1:]
        walk_var = (DEPTH - 1) * increments.var()
        seed_spread = math.sqrt(walk_var)
        deviation = ratio.mean() - (expected - walk_var / 2)
        assert abs(deviation) <= 4 * seed_spread / math.sqrt(SEEDS), (s, deviation, seed_spread)
        assert abs(ratio.mean() - expected) < 0.05 * abs(expected)  # and it is not the bias that matches

        # The CSV holds log10 of the seed mean of q̃, layer by layer.
        rows = [r for r in layers if float(r["sigma_w2_n"]) == s]
        top = [float(rows[i]["log10_q_tilde"]) for i in (0, -1)]
        seed_mean = [np.logaddexp.reduce(log_qt[:, i]) - math.log(SEEDS) for i in (0, -1)]
        assert top == pytest.approx([m / LN10 for m in seed_mean], rel=1e-9, abs=1e-9)

        chi_hat = float(next(r for r in summary if float(r["sigma_w2_n"]) == s)["chi_hat"])
        assert abs(math.log(chi_hat / (s / 2))) < 4 * increments.var()  # biased low by ~var/2 per layer

    # With common random numbers and a homogeneous φ the two backward passes differ only by the
    # constant factor 32 per layer: the log scale accumulates no rounding over 2000 layers.
    gap = (per_seed[8.0][:, 0] - per_seed[8.0][:, -1]) - (per_seed[0.25][:, 0] - per_seed[0.25][:, -1])
    assert gap == pytest.approx(np.full(SEEDS, (DEPTH - 1) * math.log(32)), rel=1e-12)


# --- overflow of a non-homogeneous forward pass ---------------------------------------------------------


@pytest.mark.skipif(UNBOUNDED is None, reason="no unbounded non-homogeneous activation registered")
@pytest.mark.parametrize("dtype,depth", [("float64", 600), ("float32", 200)])
def test_an_overflowing_configuration_is_recorded_and_the_rest_completes(tmp_path, dtype, depth):
    run, output = _sweep(tmp_path, "--act", f"{UNBOUNDED},relu", "--depth", str(depth), "--width", "32",
                         "--sigma-w2", "2,8", "--sigma-b2", "0.5", "--seeds", "2", "--batch", "4", "--dtype", dtype)
    summary, layers = _rows(run / "summary.csv"), _rows(run / "layers.csv")
    status = {(r["activation"], float(r["sigma_w2_n"])): r["status"] for r in summary}
    blown = status.pop((UNBOUNDED, 8.0))
    assert blown.startswith("overflow at layer "), blown
    assert set(status.values()) == {"ok"}  # the other points complete
    bad = int(blown.rsplit(" ", 1)[1])
    assert 2 < bad <= depth

    rows = [r for r in layers if r["activation"] == UNBOUNDED and float(r["sigma_w2_n"]) == 8.0]
    assert len(rows) == depth
    log10_q = [float(r["log10_q"]) if r["log10_q"] else math.nan for r in rows]
    assert all(math.isfinite(v) for v in log10_q[: bad - 1])  # the finite rows are kept
    assert all(math.isnan(v) for v in log10_q[bad - 1:])  # nothing at or past the overflow
    dtype_max = math.log10(np.finfo(dtype).max)
    assert log10_q[bad - 2] > 0.8 * dtype_max  # q = E[z²] (or z itself) was genuinely near the end of the dtype
    assert all(r["log10_q_tilde"] == "" for r in rows)  # no backward pass through an overflowed net

    for (act, s), st in status.items():
        ok_rows = [r for r in layers if r["activation"] == act and float(r["sigma_w2_n"]) == s]
        assert all(math.isfinite(float(r["log10_q_tilde"])) for r in ok_rows)


@pytest.mark.skipif(UNBOUNDED is None, reason="no unbounded non-homogeneous activation registered")
def test_reductions_of_an_overflowing_sweep_print_no_warnings():
    cfg = build_config(dict(act=f"{UNBOUNDED},relu,tanh", depth="600", width="32", sigma_w2="0.25,1,8",
                            sigma_b2="0,0.5", seeds="2", batch="4"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the engine's own (see the test below)
        results = {task: sweep.run_task(cfg, task) for task in sweep.plan(cfg)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer_rows, summary_rows, _ = sweep.reduce(cfg, results)
    assert any(r["status"].startswith("overflow at layer") for r in summary_rows)
    assert sum(r["status"] == "ok" for r in summary_rows) >= len(summary_rows) // 2


@pytest.mark.skipif(UNBOUNDED is None, reason="no unbounded non-homogeneous activation registered")
def test_a_whole_overflowing_sweep_prints_no_runtime_warning(tmp_path):
    _, output = _sweep(tmp_path, "--act", UNBOUNDED, "--depth", "600", "--width", "32", "--sigma-w2", "2,8",
                       "--seeds", "2", "--batch", "4")
    assert "Warning" not in output, output


# --- the reductions' status policy on hand-made measurements ---------------------------------------------


def _measurement(L: int, status: str = "ok", log_q: np.ndarray | None = None,
                 log_q_tilde: np.ndarray | None = None) -> Measurement:
    layers = np.arange(1, L + 1, dtype=float)
    base = {
        "log_q": np.log(2.0) * layers if log_q is None else log_q,
        "log_q_tilde": np.log(2.0) * (L - layers) if log_q_tilde is None else log_q_tilde,
    }
    fields = {f: base.get(f, base["log_q"] + base["log_q_tilde"])[None, :].copy() for f in sweep.FIELDS}
    return Measurement(**fields, status=(status,))


def _reduce(measurements: list[Measurement], L: int):
    cfg = build_config(dict(act="tanh", depth=str(L), width="8", sigma_w2="2", seeds=str(len(measurements))))
    results = {sweep.Task("tanh", L, 8, i): m for i, m in enumerate(measurements)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer_rows, summary_rows, _ = sweep.reduce(cfg, results)
    return layer_rows, summary_rows[0]


def test_seeds_that_disagree_report_the_earliest_failure_and_keep_what_all_computed():
    L = 8
    nan_from_4 = np.where(np.arange(L) >= 3, np.nan, np.log(2.0) * np.arange(1, L + 1))
    dead = _measurement(L, "overflow at layer 4", log_q=nan_from_4, log_q_tilde=np.full(L, np.nan))
    later = _measurement(L, "overflow at layer 6", log_q=np.where(np.arange(L) >= 5, np.nan, np.log(2.0) * np.arange(1, L + 1)),
                         log_q_tilde=np.full(L, np.nan))
    rows, summary = _reduce([_measurement(L), later, dead], L)
    assert summary["status"] == "overflow at layer 4"
    assert all(math.isfinite(r["log10_q"]) for r in rows[:3])
    assert all(math.isnan(r["log10_q"]) and math.isnan(r["q"]) for r in rows[3:])
    assert all(math.isnan(r["log10_q_tilde"]) for r in rows)
    assert math.isnan(summary["chi_hat"])


def test_a_value_the_engine_could_not_represent_becomes_an_underflow_status():
    L = 8
    log_q = np.log(2.0) * np.arange(1, L + 1)
    log_q[5:] = -np.inf  # an unscaled forward pass that decayed to exactly 0 at layer 6
    rows, summary = _reduce([_measurement(L), _measurement(L, log_q=log_q)], L)
    assert summary["status"] == "underflow at layer 6"
    assert all(math.isfinite(r["log10_q"]) for r in rows[:5]) and all(math.isnan(r["log10_q"]) for r in rows[5:])
    # q̃ was measured by every seed: kept, and χ̂ with it.
    assert all(math.isfinite(r["log10_q_tilde"]) for r in rows)
    assert summary["chi_hat"] == pytest.approx(2.0)  # q̃ doubles per layer going back


def test_linear_columns_are_empty_outside_the_normal_float64_range():
    L = 4
    huge = np.array([-800.0, -708.0, 700.0, 720.0])  # ln q̃: below normal, normal, normal, past max
    rows, summary = _reduce([_measurement(L, log_q_tilde=huge)], L)
    assert [math.isnan(r["q_tilde"]) for r in rows] == [True, False, False, True]
    assert all(math.isfinite(r["log10_q_tilde"]) for r in rows)
    assert summary["status"] == "ok"


def test_a_dead_narrow_relu_net_is_an_underflow_and_the_rest_completes(tmp_path):
    run, _ = _sweep(tmp_path, "--act", "relu", "--depth", "60", "--width", "1,16", "--sigma-w2", "2",
                    "--seeds", "3", "--batch", "2")
    status = {int(r["width"]): r["status"] for r in _rows(run / "summary.csv")}
    assert status[1].startswith("underflow at layer ") and status[16] == "ok"
