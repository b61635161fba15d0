"""Durable, resumable, parallel training (hevar.experiments.training_run) and the Python API hevar.train:
the same CSV bytes for --jobs 1 and --jobs 2 and after an interrupted run is resumed, and hevar.train's
DataFrames equal to the CLI's CSVs."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

import hevar
from hevar.experiments import train as T
from hevar.experiments import training_run
from hevar.results import store
from hevar.views.cli import app

# 2 σ_w²·N × 2 depths × 2 seeds = 8 tiny networks
ARGS = ["--data", "teacher", "--depth", "2,3", "--width", "8", "--sigma-w2", "1,2", "--seeds", "2", "--steps", "12",
        "--eval-every", "6", "--batch", "16", "--lr", "0.05", "--no-plot"]
KW = dict(data="teacher", depth=[2, 3], width=8, sigma_w2=[1, 2], seeds=2, steps=12, eval_every=6, batch=16, lr=0.05)
FILES = [file for file, _ in T.TRAINING_TABLES.values()]


def _cli(*args):
    result = CliRunner().invoke(app, ["train", *args])
    return result


def _bytes(folder):
    return {f: (folder / f).read_bytes() for f in FILES}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """A run that went straight through, in this process."""
    out = tmp_path_factory.mktemp("straight") / "run"
    result = _cli(*ARGS, "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def test_api_frames_equal_the_cli_csvs(straight):
    run = hevar.train(**KW)
    assert run.path is None and len(run.training_summary) == 4
    for name, (file, _) in T.TRAINING_TABLES.items():
        pd.testing.assert_frame_equal(getattr(run, name), store.read_frame(straight / file))
    loaded = hevar.load(straight)
    assert isinstance(loaded, hevar.TrainingRun) and loaded.manifest["command"] == "train"
    pd.testing.assert_frame_equal(loaded.training, run.training)
    assert set(run.training["step"]) == {0, 6, 12} and (run.training_grads["grad_norm2_W"] > 0).all()


def test_api_writes_the_same_folder(straight, tmp_path):
    run = hevar.train(**KW, out=tmp_path / "api")
    assert _bytes(tmp_path / "api") == _bytes(straight)
    assert run.path == tmp_path / "api"


def test_jobs_2_gives_the_same_bytes(straight, tmp_path):
    result = _cli(*ARGS, "--out", str(tmp_path / "j2"), "--jobs", "2")
    assert result.exit_code == 0, result.output
    assert _bytes(tmp_path / "j2") == _bytes(straight)
    manifest = store.read_manifest(tmp_path / "j2")
    assert "2 local processes" in manifest["attempts"][-1]["executor"]


def test_dask_local_cluster_gives_the_same_bytes(straight, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, host="127.0.0.1",
                                  protocol="tcp://", dashboard_address="127.0.0.1:0") as cluster:
        result = _cli(*ARGS, "--out", str(tmp_path / "dask"), "--scheduler", cluster.scheduler_address)
    assert result.exit_code == 0, result.output
    assert _bytes(tmp_path / "dask") == _bytes(straight)
    assert store.read_manifest(tmp_path / "dask")["attempts"][-1]["executor"].startswith("Dask cluster")


def test_interrupted_run_resumes_to_the_same_bytes(straight, tmp_path, monkeypatch):
    """Ctrl-C after 3 of 8 networks (a KeyboardInterrupt raised by the 4th task): exit 130, 3 point
    files and no CSVs; --resume computes the other 5 only and writes the straight run's bytes."""
    out = tmp_path / "run"
    real, calls = training_run.run_task, []

    def flaky(*args):
        calls.append(args[-1])
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(training_run, "run_task", flaky)
    result = _cli(*ARGS, "--out", str(out))
    assert result.exit_code == 130 and "Resume with: hevar train --resume" in result.output, result.output
    assert len(list((out / store.POINTS).glob("*.npz"))) == 3 and not (out / "training.csv").exists()
    assert store.read_manifest(out)["attempts"][0].get("interrupted")
    monkeypatch.setattr(training_run, "run_task", real)
    result = _cli("--resume", str(out), "--no-plot")
    assert result.exit_code == 0, result.output
    assert _bytes(out) == _bytes(straight)
    manifest = store.read_manifest(out)
    assert [a["attempt"] for a in manifest["attempts"]] == [1, 2] and manifest["attempts"][1]["computed"] == 5


def test_a_failing_task_keeps_the_others_and_resumes(straight, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real, calls = training_run.run_task, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 6:
            raise MemoryError
        return real(*args)

    monkeypatch.setattr(training_run, "run_task", failing)
    with pytest.raises(hevar.errors.Fault, match="5 of 8 tasks are saved"):
        hevar.train(**KW, out=out)
    monkeypatch.setattr(training_run, "run_task", real)
    hevar.train(out=out, resume=True)
    assert _bytes(out) == _bytes(straight)


def test_a_damaged_point_is_computed_again(straight, tmp_path):
    out = tmp_path / "run"
    assert _cli(*ARGS, "--out", str(out)).exit_code == 0
    point = sorted((out / store.POINTS).glob("*.npz"))[2]
    point.write_bytes(point.read_bytes()[:100])
    (out / "training.csv").unlink()
    result = _cli("--resume", str(out), "--no-plot")
    assert result.exit_code == 0 and "was damaged" in result.output, result.output
    assert _bytes(out) == _bytes(straight)


@pytest.mark.parametrize("extra,word", [(["--lr", "0.1"], "lr 0.05 there, 0.1 here"),
                                        (["--depth", "4"], "different configuration")])
def test_a_folder_with_other_settings_is_refused(straight, tmp_path, extra, word):
    out = tmp_path / "run"
    assert _cli(*ARGS, "--out", str(out)).exit_code == 0
    args = [a for a in ARGS]
    i = args.index(extra[0])
    args[i + 1] = extra[1]
    result = _cli(*args, "--out", str(out))
    assert result.exit_code == 2 and word in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_sweep_folder_is_refused(tmp_path):
    out = tmp_path / "sweep"
    hevar.sweep(act="relu", depth=3, width=8, sigma_w2=[2], seeds=2, batch=4, out=out)
    result = _cli(*ARGS, "--out", str(out))
    assert result.exit_code == 2 and "hevar sweep" in result.output, result.output


def test_sweep_refuses_a_training_folder(straight, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(straight, folder)
    result = CliRunner().invoke(app, ["sweep", "--resume", str(folder), "--no-plot"])
    assert result.exit_code == 2 and "`hevar train` run folder" in result.output, result.output
    with pytest.raises(hevar.UsageError, match="`hevar train` run folder"):
        hevar.sweep(out=folder)
    assert sorted(p.name for p in (folder / store.POINTS).iterdir()) == sorted(
        p.name for p in (straight / store.POINTS).iterdir())


def test_training_run_plots_on_an_axes(straight):
    from matplotlib.figure import Figure

    run = hevar.load(straight)
    for name in ("training", "trainability"):
        ax = Figure().subplots()
        assert run.plot(name, ax=ax) is ax and ax.has_data()
    with pytest.raises(hevar.UsageError, match="'name' parameter"):
        run.plot("stability", ax=Figure().subplots())


def test_hevar_plot_draws_a_training_folder(straight, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(straight, folder)
    result = CliRunner().invoke(app, ["plot", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / "plots" / "training.png").stat().st_size > 1000
    assert (folder / "plots" / "trainability.png").stat().st_size > 1000  # 2 depths × 2 σ_w²·N


def test_task_keys_are_unique_and_file_safe():
    cfg = T.network_config(dict(act="relu,leaky_relu:0.1", depth="2,3", width="8", sigma_w2="1,1.5,2", seeds="3"))
    keys = [training_run.task_key(s) for s in T.plan(cfg)]
    assert len(set(keys)) == len(keys) == 2 * 2 * 3 * 3
    assert all(set(k) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") for k in keys)


def test_a_killed_process_resumes_to_the_same_bytes(tmp_path):
    """SIGKILL a real `hevar train` once 2 networks are saved (no handler runs, the lock is dropped by
    the kernel); --resume then writes the bytes of a run that went straight through."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    args = ["--data", "teacher", "--depth", "3", "--width", "8", "--sigma-w2", "1,1.5,2", "--seeds", "2",
            "--steps", "400", "--eval-every", "100", "--batch", "16", "--lr", "0.05", "--no-plot"]
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(Path(hevar.__file__).parent.parent))
    proc = subprocess.Popen([sys.executable, "-m", "hevar", "train", *args, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / store.POINTS).glob("*.npz"))) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    saved = len(list((out / store.POINTS).glob("*.npz")))
    assert 2 <= saved < 6 and not (out / "training.csv").exists()
    result = _cli("--resume", str(out), "--no-plot")
    assert result.exit_code == 0, result.output
    assert store.read_manifest(out)["attempts"][-1]["computed"] == 6 - saved
    straight = tmp_path / "straight"
    assert _cli(*args, "--out", str(straight)).exit_code == 0
    assert _bytes(out) == _bytes(straight)
