"""The Python API against the CLI: the same numbers, the same files, the same JSON."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import hevar
from hevar.errors import UsageError
from hevar.views.cli import app

SMALL = dict(act="relu", depth=6, width=16, sigma_w2=[1, 2, 3], seeds=3, batch=4)
SMALL_FLAGS = ["--act", "relu", "--depth", "6", "--width", "16", "--sigma-w2", "1,2,3", "--seeds", "3", "--batch", "4"]


def doubled(z):  # a module-level user activation (importable by worker processes)
    return 2.0 * z


def test_in_memory_sweep_returns_frames_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = hevar.sweep(**SMALL)
    assert run.path is None and list(tmp_path.iterdir()) == []
    assert isinstance(run.summary, pd.DataFrame) and len(run.summary) == 3
    assert len(run.layers) == 3 * 6 and len(run.seeds) == 3 * 3 * 6
    assert run.manifest["config"]["sigma_w2"] == [1.0, 2.0, 3.0]
    assert run.config.depth == (6,)
    # ReLU at σ_w²·N = s: χ̂ near s/2 (narrow net, so loosely; the exact checks live in test_sweep)
    chi = run.summary.set_index("sigma_w2_n")["chi_hat"]
    assert chi[2.0] == pytest.approx(1.0, abs=0.15) and chi[1.0] < chi[2.0] < chi[3.0]


def test_load_of_a_cli_run_equals_the_in_memory_run(tmp_path):
    folder = tmp_path / "cli"
    result = CliRunner().invoke(app, ["sweep", *SMALL_FLAGS, "--out", str(folder), "--no-plot"])
    assert result.exit_code == 0, result.output
    loaded, memory = hevar.load(folder), hevar.sweep(**SMALL)
    for name in ("layers", "summary", "theory", "seeds", "crossings"):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(memory, name))
    assert loaded.manifest["config"] == memory.manifest["config"] and loaded.path == folder


def test_out_writes_the_cli_folder_and_resumes(tmp_path):
    folder = tmp_path / "api"
    first = hevar.sweep(**SMALL, out=folder)
    assert (folder / "summary.csv").read_bytes() == _cli_bytes(tmp_path / "cli", "summary.csv")
    again = hevar.sweep(out=folder, resume=True)  # settings from the folder; nothing recomputed
    assert again.manifest["attempts"][-1]["computed"] == []
    pd.testing.assert_frame_equal(first.summary, again.summary)
    with pytest.raises(UsageError, match="different configuration"):
        hevar.sweep(**{**SMALL, "seeds": 2}, out=folder)


def _cli_bytes(folder: Path, name: str) -> bytes:
    result = CliRunner().invoke(app, ["sweep", *SMALL_FLAGS, "--out", str(folder), "--no-plot"])
    assert result.exit_code == 0, result.output
    return (folder / name).read_bytes()


def test_theory_and_gains_equal_the_cli_json():
    cli = CliRunner().invoke(app, ["theory", "--act", "tanh", "--sigma-b2", "0.05", "--sigma-w2", "2", "--json"])
    assert cli.exit_code == 0
    assert hevar.theory("tanh", sigma_b2=0.05, sigma_w2=2) == json.loads(cli.output)
    cli = CliRunner().invoke(app, ["gains", "--act", "relu,tanh", "--depth", "20", "--json"])
    assert hevar.gains(["relu", "tanh"], depth=20) == json.loads(cli.output)
    assert math.isclose(hevar.theory("relu")["critical_sigma_w2_n"], 2.0)


def test_a_module_level_function_is_an_activation():
    run = hevar.sweep(**{**SMALL, "act": doubled, "sigma_w2": [0.25]})
    assert run.summary["activation"].iloc[0].endswith(":doubled")
    # linear with slope 2 at σ_w²·N = 1/4: χ = 4 · 1/4 = 1 exactly in expectation
    assert run.summary["chi_hat"].iloc[0] == pytest.approx(1.0, abs=0.1)


def test_bad_values_raise_the_cli_message():
    with pytest.raises(UsageError, match=r"The 'depth' parameter must be an int in the range \[1, 100001\)\. Got 0"):
        hevar.sweep(act="relu", depth=0)
    with pytest.raises(UsageError, match="module-level function"):
        hevar.sweep(act=lambda z: z)
    with pytest.raises(UsageError, match="'resume'"):
        hevar.sweep(resume=True)
    with pytest.raises(UsageError, match="'run_dir'"):
        hevar.load("/nonexistent/run")


def test_theory_with_q_in_equals_the_cli_json():
    args = ["theory", "--act", "tanh", "--sigma-b2", "0.05", "--sigma-w2", "2.5", "--q-in", "0.3",
            "--input-preactivation", "--json"]
    cli = CliRunner().invoke(app, args)
    assert cli.exit_code == 0, cli.output
    got = hevar.theory("tanh", sigma_b2=0.05, sigma_w2=2.5, q_in=0.3, input_preactivation=True)
    assert got == json.loads(cli.output)
    assert 0 < got["c_star"] < 1 and got["input"] == "pre-activation"
