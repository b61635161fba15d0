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


def _jt(plan):
    return plan.jobs, plan.blas_threads, plan.source


def test_what_is_given_is_used_as_given():
    cfg = _cfg()
    assert _jt(threads.decide(cfg, jobs=3, cores=8)) == (3, 1, "given")  # one BLAS thread unless asked
    assert _jt(threads.decide(cfg, jobs=2, threads=3, cores=8)) == (2, 3, "given")
    assert _jt(threads.decide(_cfg(seeds=1), threads=4, cores=8)) == (1, 4, "given")
    assert _jt(threads.decide(cfg, jobs=0, cores=8)) == (8, 1, "given")
    assert _jt(threads.decide(cfg, scheduler="tcp://x:1", cores=8)) == (1, 1, "dask")


def test_several_tasks_with_enough_work_go_to_processes_with_one_thread(monkeypatch):
    cfg = _cfg(seeds=8)
    monkeypatch.setattr(resources, "estimate_seconds", lambda *a, **k: 10.0)
    assert _jt(threads.decide(cfg, cores=4)) == (4, 1, "auto")
    assert _jt(threads.decide(_cfg(seeds=3), cores=4)) == (3, 1, "auto")  # no more processes than tasks
    assert _jt(threads.decide(cfg, cores=1)) == (1, 1, "auto")
    monkeypatch.setattr(resources, "estimate_seconds", lambda *a, **k: threads.POOL_ABOVE_S / 2)
    assert _jt(threads.decide(cfg, cores=4)) == (1, 1, "auto")  # not worth starting workers


def test_workers_that_do_not_fit_in_memory_are_not_started(monkeypatch):
    cfg = _cfg(seeds=8)
    monkeypatch.setattr(resources, "estimate_seconds", lambda *a, **k: 10.0)
    room = resources.plan_run(cfg, 2, resources.Memory(10**12, "test"), timing=False).need  # two workers fit, not three
    assert resources.plan_run(cfg, 3, resources.Memory(room, "test"), timing=False).need > room
    monkeypatch.setattr(resources, "available_memory", lambda: resources.Memory(room, "test"))
    assert _jt(threads.decide(cfg, cores=4)) == (2, 1, "auto")


def test_blas_products_follow_the_thread_count_which_is_why_the_rule_is_one():
    """The finding behind the rule: OpenBLAS's last bits depend on its thread count for most shapes
    (if this stops failing to differ, BLAS became deterministic and the rule could relax)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((333, 333)).astype(np.float32), rng.standard_normal((333, 256)).astype(np.float32)
    with threadpool_limits(1):
        one = a @ b
    with threadpool_limits(2):
        two = a @ b
    if np.array_equal(one, two):
        pytest.skip("this BLAS gives the same bits with 1 and 2 threads for this shape")
    assert np.max(np.abs(one - two)) <= 1e-5 * np.max(np.abs(one))  # the same numbers to float32 rounding


def test_pinned_limits_blas_and_sampling_threads_and_restores_them():
    before_blas, before_sampling = _blas_threads(), passes._sampling_threads()
    with threads.pinned(1, 1):
        assert _blas_threads() == 1
        assert passes._sampling_threads() == 1
        with executors.Serial(1):  # nested limits restore the outer one
            assert _blas_threads() == 1
    assert (_blas_threads(), passes._sampling_threads()) == (before_blas, before_sampling)
    assert threads.run_pinned(lambda _: _blas_threads(), 1, None) == 1  # what a Dask worker runs


SMALL = dict(act="relu", depth=6, width=256, batch=64, seeds=2, sigma_w2=[1.5, 2.0])


def _bytes(run_dir):
    return {f.name: f.read_bytes() for f in sorted(run_dir.glob("*.csv"))}


def test_results_do_not_depend_on_the_processes(tmp_path):
    """A width profile (products of shapes whose last bits follow the BLAS thread count) and float32."""
    small = dict({k: v for k, v in SMALL.items() if k != "width"}, widths="pyramid:333:64", dtype="float32", depth=4)
    hevar.sweep(**small, out=tmp_path / "one", jobs=1)
    hevar.sweep(**small, out=tmp_path / "pool", jobs=2)
    hevar.sweep(**small, out=tmp_path / "policy")
    assert _bytes(tmp_path / "one") == _bytes(tmp_path / "pool") == _bytes(tmp_path / "policy")
    hevar.sweep(**SMALL, out=tmp_path / "two", threads=2)
    attempt = json.loads((tmp_path / "two" / "manifest.json").read_text())["attempts"][-1]
    assert attempt["threads"] == {"jobs": 1, "blas_threads": 2, "source": "given",
                                  "reason": "one process × 2 BLAS thread(s)"}
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
