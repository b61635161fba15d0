"""A run folder is owned by one process at a time (hevar.results.lock).

The oracle is the folder itself: while one sweep runs, a second one on the same folder is refused
in one line and leaves no trace (no attempt in the manifest, no point file); the first finishes
with every point and one attempt. A lock left by a killed process is taken over.
"""

import json
import multiprocessing
import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from hevar.errors import UsageError
from hevar.experiments import runner as runner_mod
from hevar.experiments.config import build_config
from hevar.results import lock as lock_mod
from hevar.results import store
from hevar.views.cli import app

runner = CliRunner()
# 30 tasks of ~15 ms each: long enough for a second sweep to start while the first runs.
SLOW = ["--depth", "20", "--width", "64", "--sigma-w2", "2", "--seeds", "30", "--batch", "64"]
TINY = ["--depth", "3", "--width", "4", "--sigma-w2", "2", "--seeds", "1", "--batch", "2"]


def _points(run):
    return sorted(p.name for p in (run / "points").glob("*.npz"))


def _sweep_in_child(args):
    os._exit(runner.invoke(app, args).exit_code)


def test_a_second_sweep_on_a_running_folder_is_refused_in_one_line(tmp_path):
    run = tmp_path / "run"
    # A forked process: another process, as the kernel sees it, without a second interpreter's start-up.
    first = multiprocessing.get_context("fork").Process(target=_sweep_in_child,
                                                        args=(["sweep", *SLOW, "--out", str(run), "--no-plot"],))
    first.start()
    try:
        deadline = time.monotonic() + 30
        while not _points(run):  # the first sweep holds the lock from before its first point
            assert first.is_alive() and time.monotonic() < deadline, "the first sweep never started"
            time.sleep(0.002)
        second = runner.invoke(app, ["sweep", "--resume", str(run), "--no-plot"])
        still_running = first.is_alive()
        first.join(60)
        assert first.exitcode == 0
    finally:
        if first.is_alive():
            first.kill()
    assert still_running, "the first sweep ended before the second one was tried; the test proves nothing"
    assert second.exit_code == 2, second.output
    lines = second.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.output
    assert "another hevar sweep is writing" in lines[0] and f"pid {first.pid}" in lines[0]
    manifest = json.loads((run / "manifest.json").read_text())
    assert len(manifest["attempts"]) == 1 and manifest["finished"] is not None
    assert len(manifest["attempts"][0]["computed"]) == 30 == len(_points(run))
    assert (run / "layers.csv").exists() and not (run / lock_mod.LOCK_FILE).exists()


def test_a_lock_left_by_a_killed_process_is_taken_over_and_removed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / lock_mod.LOCK_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host": "here", "started": "then"}))
    result = runner.invoke(app, ["sweep", *TINY, "--out", str(run), "--no-plot"])
    assert result.exit_code == 0, result.output
    assert (run / "layers.csv").exists() and not (run / lock_mod.LOCK_FILE).exists()


def test_a_folder_written_between_the_check_and_the_lock_is_checked_again(tmp_path):
    """Two sweeps with different flags started at once: both found the folder empty, the first
    wrote its manifest; the second must not write its own over it once it holds the lock."""
    run = tmp_path / "run"
    mine = build_config({"depth": "3", "width": "4", "sigma_w2": "2", "seeds": "1", "batch": "2"})
    cfg, manifest = runner_mod.reconcile(mine, run, resume=False, given=True)
    assert manifest is None
    assert runner.invoke(app, ["sweep", *TINY, "--seed", "1", "--out", str(run), "--no-plot"]).exit_code == 0
    before = {p: (run / p).read_bytes() for p in ("manifest.json", "layers.csv", *(f"points/{n}" for n in _points(run)))}
    with pytest.raises(UsageError, match="different configuration .*seed 1 there, 0 here"):
        runner_mod.run(cfg, run, manifest=manifest)
    assert {p: (run / p).read_bytes() for p in before} == before and not (run / lock_mod.LOCK_FILE).exists()


def test_without_fcntl_a_live_holder_refuses_and_a_dead_one_is_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_mod, "fcntl", None)
    with lock_mod.RunLock(tmp_path) as held:
        with pytest.raises(UsageError, match=f"pid {os.getpid()}"):
            lock_mod.RunLock(tmp_path).acquire()
        assert not held.took_over
    assert not (tmp_path / lock_mod.LOCK_FILE).exists()
    (tmp_path / lock_mod.LOCK_FILE).write_text(json.dumps({"pid": 2**31 - 1, "host": lock_mod.socket.gethostname()}))
    with lock_mod.RunLock(tmp_path) as taken:
        assert taken.took_over
    store.prepare_run_dir(tmp_path)  # hevar's own hidden files never make a folder foreign
