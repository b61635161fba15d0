"""The thread policy (issue 17): its rule, that it is applied, that it is recorded, and that results
do not depend on it."""
import json

import pytest
from threadpoolctl import threadpool_info
from typer.testing import CliRunner

import hevar
from hevar.engine import passes
from hevar.experiments import executors, resources, threads
from hevar.experiments.config import build_config
from hevar.views.cli import app


def _blas_threads() -> int:
    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def _cfg(**flags):
    return build_config({k: None for k in ("act", "depth", "width", "sigma_w2", "sigma_b2", "seeds", "batch", "seed",
                                           "dtype", "widths", "mode", "dist", "arch", "branch_scale")} | flags, {})


def test_what_is_given_is_used_as_given():
    cfg = _cfg()
    assert threads.decide(cfg, jobs=3, cores=8)[:3] == (3, 2, "given")  # cores // jobs, as before the policy
    assert threads.decide(cfg, jobs=2, threads=3, cores=8)[:3] == (2, 3, "given")
    assert threads.decide(cfg, threads=4, cores=8)[:3] == (1, 4, "given")
    assert threads.decide(cfg, jobs=0, cores=8)[:3] == (8, 1, "given")
    assert threads.decide(cfg, scheduler="tcp://x:1", cores=8)[:3] == (1, 1, "dask")


def test_several_tasks_with_enough_work_go_to_processes_with_one_thread(monkeypatch):
    cfg = _cfg(seeds=8)
    monkeypatch.setattr(resources, "estimate_seconds", lambda *a, **k: 10.0)
    assert threads.decide(cfg, cores=4)[:2] == (4, 1)
    assert threads.decide(_cfg(seeds=3), cores=4)[:2] == (3, 1)  # no more processes than tasks
    monkeypatch.setattr(resources, "estimate_seconds", lambda *a, **k: threads.POOL_ABOVE_S / 2)
    assert threads.decide(cfg, cores=4, busy=lambda: 0.0)[:2] == (1, 1)  # not worth starting workers
    assert threads.decide(cfg, cores=1)[:2] == (1, 1)


def test_workers_that_do_not_fit_in_memory_are_not_started(monkeypatch):
    cfg = _cfg(seeds=8)
    monkeypatch.setattr(resources, "estimate_seconds", lambda *a, **k: 10.0)
    room = resources.plan_run(cfg, 2, resources.Memory(10**12, "test"), timing=False).need  # two workers fit, not three
    assert resources.plan_run(cfg, 3, resources.Memory(room, "test"), timing=False).need > room
    monkeypatch.setattr(resources, "available_memory", lambda: resources.Memory(room, "test"))
    assert threads.decide(cfg, cores=4)[:2] == (2, 1)


def test_one_large_product_is_split_only_on_idle_cores(monkeypatch):
    big = _cfg(width=2048, batch=512, seeds=1, depth=3, sigma_w2="1,2")
    assert threads.largest_product_flops(big) >= threads.SPLIT_ABOVE_FLOPS
    assert threads.decide(big, cores=4, busy=lambda: 0.1)[:2] == (1, 4)
    assert threads.decide(big, cores=4, busy=lambda: 1.0)[:2] == (1, 1)
    small = _cfg(seeds=1)
    assert threads.largest_product_flops(small) < threads.SPLIT_ABOVE_FLOPS
    assert threads.decide(small, cores=4, busy=lambda: 0.0)[:2] == (1, 1)


def test_busy_cores_is_a_count_of_cores():
    assert 0.0 <= threads.busy_cores(0.02) <= executors.os.cpu_count() + 1e-9


def test_pinned_limits_blas_and_sampling_threads_and_restores_them():
    before_blas, before_sampling = _blas_threads(), passes._sampling_threads()
    with threads.pinned(1):
        assert _blas_threads() == 1
        assert passes._sampling_threads() == 1
        with executors.Serial(1):  # nested limits restore the outer one
            assert _blas_threads() == 1
    assert (_blas_threads(), passes._sampling_threads()) == (before_blas, before_sampling)
    assert threads.run_pinned(lambda _: _blas_threads(), 1, None) == 1  # what a Dask worker runs


SMALL = dict(act="relu", depth=6, width=256, batch=64, seeds=2, sigma_w2=[1.5, 2.0])


def _bytes(run_dir):
    return {f.name: f.read_bytes() for f in sorted(run_dir.glob("*.csv"))}


def test_results_do_not_depend_on_the_threads(tmp_path):
    hevar.sweep(**SMALL, out=tmp_path / "one", threads=1)
    hevar.sweep(**SMALL, out=tmp_path / "two", threads=2)
    hevar.sweep(**SMALL, out=tmp_path / "pool", jobs=2, threads=1)
    assert _bytes(tmp_path / "one") == _bytes(tmp_path / "two") == _bytes(tmp_path / "pool")
    attempt = json.loads((tmp_path / "two" / "manifest.json").read_text())["attempts"][-1]
    assert attempt["threads"] == {"jobs": 1, "blas_threads": 2, "source": "given",
                                  "reason": "as given: 1 process(es) × 2 BLAS thread(s)"}
    assert "2 BLAS thread" in attempt["executor"]


def test_the_cli_records_the_policy_and_shows_it_in_the_plan(tmp_path):
    r = CliRunner().invoke(app, ["sweep", "--act", "relu", "--depth", "3", "--width", "8", "--seeds", "1",
                                 "--sigma-w2", "2", "--dry-run"])
    assert r.exit_code == 0 and "threads: one process × 1 BLAS thread" in r.output
    r = CliRunner().invoke(app, ["sweep", "--act", "relu", "--depth", "3", "--width", "8", "--seeds", "1",
                                 "--sigma-w2", "2", "--no-plot", "--out", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    record = json.loads((tmp_path / "r" / "manifest.json").read_text())["attempts"][-1]["threads"]
    assert record["source"] == "auto" and record["jobs"] == 1 and record["blas_threads"] == 1


@pytest.mark.parametrize("bad", ["0", "-1", "1.5", "two", ""])
def test_bad_threads_is_one_line(bad):
    r = CliRunner().invoke(app, ["sweep", "--act", "relu", "--threads", bad, "--dry-run"])
    assert r.exit_code == 2
    assert "'threads' parameter must be an int in the range [1," in r.output
    assert "Traceback" not in r.output
