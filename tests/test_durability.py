"""Durable, parallel sweeps: a killed run resumes to the same bytes; the executor never shows.

The oracle everywhere is an uninterrupted, single-process run of the same configuration: its CSVs
must come out byte-identical from a SIGKILLed-then-resumed run, from ``--jobs 2``, and from a Dask
``LocalCluster``. Nets are tiny so the file runs in well under a minute on two cores.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from hevar.experiments import executors
from hevar.experiments import sweep
from hevar.views.cli import app
from hevar.experiments.config import build_config
from hevar.errors import UsageError

runner = CliRunner()
CSVS = ("layers.csv", "summary.csv", "theory.csv")

# Tiny: for the equality checks across executors.
SMALL = ["--depth", "10", "--width", "32", "--sigma-w2", "1,2,3", "--sigma-b2", "0,0.1", "--seeds", "4",
         "--batch", "16", "--act", "relu,tanh"]
# Enough tasks (100) that a kill lands part-way while each one stays cheap.
MANY = ["--depth", "12", "--width", "48", "--sigma-w2", "1,2,3", "--seeds", "100", "--batch", "32"]


def _sweep(args, out, *extra):
    result = runner.invoke(app, ["sweep", *args, "--out", str(out), "--no-plot", *extra])
    assert result.exit_code == 0, result.output
    return {name: (out / name).read_bytes() for name in CSVS}


@pytest.fixture(scope="module")
def small_reference(tmp_path_factory):
    return _sweep(SMALL, tmp_path_factory.mktemp("ref") / "run")


def _cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "hevar", "sweep", *args, "--no-plot"],
                            stdout=subprocess.DEVNULL, **kwargs)


def _wait_for_points(proc, points, at_least, timeout=60.0):
    deadline = time.monotonic() + timeout
    while len(list(points.glob("*.npz"))) < at_least:
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        assert time.monotonic() < deadline, "no points appeared"
        time.sleep(0.005)


def _assert_group_exits(pgid, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            os.killpg(pgid, signal.SIGKILL)  # leave no stray processes behind a failure
            pytest.fail("worker processes outlived their killed parent")
        time.sleep(0.1)


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    reference = _sweep(MANY, tmp_path / "reference")
    run = tmp_path / "run"
    with open(tmp_path / "stderr", "wb") as stderr:
        proc = _cli(*MANY, "--jobs", "2", "--out", str(run), stderr=stderr, start_new_session=True)
        _wait_for_points(proc, run / "points", at_least=5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _assert_group_exits(proc.pid, timeout=10)  # the orphaned workers notice and leave
    survived = {p.stem for p in (run / "points").glob("*.npz")}
    assert 5 <= len(survived) < 100 and not (run / "layers.csv").exists()

    resumed = subprocess.run([sys.executable, "-m", "hevar", "sweep", "--resume", str(run), "--no-plot"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert {name: (run / name).read_bytes() for name in CSVS} == reference

    killed, finished = json.loads((run / "manifest.json").read_text())["attempts"]
    assert killed["finished"] is None and finished["finished"] is not None
    # The killed attempt is credited from the attempt tag in each point file; nothing ran twice.
    assert set(killed["computed"]) == survived
    assert set(finished["computed"]).isdisjoint(survived)
    assert len(killed["computed"]) + len(finished["computed"]) == 100


def test_ctrl_c_stops_workers_and_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    with open(tmp_path / "stderr", "wb") as stderr:
        # A session of its own, so that SIGINT goes to the whole group as a terminal's Ctrl-C does.
        proc = _cli(*MANY, "--jobs", "2", "--out", str(run), stderr=stderr, start_new_session=True)
        _wait_for_points(proc, run / "points", at_least=3)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    message = (tmp_path / "stderr").read_text()
    assert "Traceback" not in message and "KeyboardInterrupt" not in message
    assert f"Resume with: hevar sweep --resume {run}" in message
    attempt = json.loads((run / "manifest.json").read_text())["attempts"][-1]
    assert attempt["interrupted"] and attempt["finished"] is None
    assert set(attempt["computed"]) == {p.stem for p in (run / "points").glob("*.npz")}


def test_jobs_2_equals_jobs_1(tmp_path, small_reference):
    assert _sweep(SMALL, tmp_path / "two", "--jobs", "2") == small_reference
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["attempts"][0]["executor"].startswith("2 local processes")
    assert len(manifest["attempts"][0]["computed"]) == len(sweep.plan(build_config(manifest["config"])))


def test_dask_local_cluster_equals_the_local_run(tmp_path, small_reference):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, host="127.0.0.1",
                                  protocol="tcp://", dashboard_address="127.0.0.1:0") as cluster:  # any free port: 8787 may be taken
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        assert _sweep(SMALL, tmp_path / "dask", "--scheduler", cluster.scheduler_address) == small_reference


def test_same_out_resumes_and_a_different_config_is_refused(tmp_path, small_reference):
    run = tmp_path / "run"
    assert _sweep(SMALL, run) == small_reference
    again = runner.invoke(app, ["sweep", *SMALL, "--out", str(run), "--no-plot"])
    assert again.exit_code == 0 and "(done before)" in again.output
    attempts = json.loads((run / "manifest.json").read_text())["attempts"]
    assert len(attempts) == 2 and attempts[1]["computed"] == []

    other = runner.invoke(app, ["sweep", *SMALL, "--seeds", "5", "--out", str(run), "--no-plot"])
    assert other.exit_code == 2 and "Traceback" not in other.output
    assert "different configuration" in other.output and "seeds 4 there, 5 here" in other.output
    both = runner.invoke(app, ["sweep", "--resume", str(run), "--out", str(tmp_path / "elsewhere")])
    assert both.exit_code == 2 and "cannot differ from --resume" in both.output


def test_local_processes_give_each_worker_its_share_of_blas_threads():
    before = os.environ.get("OPENBLAS_NUM_THREADS")
    with executors.LocalProcesses(2) as pool:
        seen = dict(pool.imap_unordered(os.getenv, ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"]))
    share = str(max(1, executors.available_cores() // 2))
    assert seen == {"OMP_NUM_THREADS": share, "OPENBLAS_NUM_THREADS": share, "MKL_NUM_THREADS": share}
    assert os.environ.get("OPENBLAS_NUM_THREADS") == before  # the parent's environment is restored


def test_scheduler_errors_are_one_line(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT_S", 1)
    for address in ("tcp://127.0.0.1:9", "no-port-here"):
        result = runner.invoke(app, ["sweep", *SMALL, "--out", str(tmp_path / "never"), "--scheduler", address])
        assert result.exit_code == 2, result.output
        assert "The 'scheduler' parameter must be the address of a running Dask scheduler" in result.output
        assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "never").exists()
    result = runner.invoke(app, ["sweep", *SMALL, "--scheduler", "tcp://127.0.0.1:9", "--jobs", "2"])
    assert result.exit_code == 2 and "applies to local runs only" in result.output


def test_missing_dask_is_a_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed → ImportError
    with pytest.raises(UsageError, match=r"pip install 'hevar\[dask\]'"):
        with executors.open_executor(scheduler="tcp://127.0.0.1:8786"):
            pass


def test_jobs_must_not_be_negative():
    with pytest.raises(UsageError, match=r"The 'jobs' parameter must be an int in the range \[0, inf\). Got -1"):
        executors.open_executor(jobs=-1)
    assert isinstance(executors.open_executor(jobs=1), executors.Serial)
    assert executors.open_executor(jobs=0).jobs == executors.available_cores() or executors.available_cores() == 1
