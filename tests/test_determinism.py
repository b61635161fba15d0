"""Bytes that do not depend on threads: 1 or 2 BLAS threads, --jobs 1 or --jobs 2, the same files.

The oracle is the run itself under another thread count. Width 256 is the smallest of the
issue's widths and already past OpenBLAS's threshold for splitting a dot product across threads
(the sum of squares behind ``weight_var_realised_ratio`` differed in its last digits before).
"""

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hevar.engine import passes
from hevar.views.cli import app

threadpoolctl = pytest.importorskip("threadpoolctl")
runner = CliRunner()
ARGS = ["--act", "relu", "--depth", "4", "--width", "256", "--seeds", "2", "--batch", "2", "--sigma-w2", "1,2",
        "--no-plot"]


def _files(run: Path) -> dict[str, bytes]:
    """Every file of the run folder but the manifest (which records times and argv): the CSVs, and
    the arrays of each point file (an .npz's zip headers hold no data of ours)."""
    files = {p.name: p.read_bytes() for p in run.glob("*.csv")}
    for point in sorted((run / "points").glob("*.npz")):
        with np.load(point) as data:
            files.update({f"{point.name}:{k}": data[k].tobytes() for k in data.files if k != "attempt"})
    return files


def _sweep(out: Path, *extra: str, blas_threads: int | None = None) -> dict[str, bytes]:
    limits = threadpoolctl.threadpool_limits(blas_threads) if blas_threads else threadpoolctl.threadpool_limits()
    with limits:
        result = runner.invoke(app, ["sweep", *ARGS, "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return _files(out)


def test_every_file_is_the_same_under_1_and_2_blas_threads_and_jobs_1_and_2(tmp_path):
    one = _sweep(tmp_path / "one", blas_threads=1)
    assert {"layers.csv", "summary.csv", "seeds.csv", "theory.csv", "crossings.csv"} <= set(one)
    assert _sweep(tmp_path / "two", blas_threads=2) == one
    assert _sweep(tmp_path / "jobs", "--jobs", "2", blas_threads=2) == one


def test_the_mean_square_is_summed_in_an_order_fixed_by_the_array_alone():
    G = np.random.default_rng(0).standard_normal((512, 300))
    with threadpoolctl.threadpool_limits(1):
        one = passes._mean_square(G)
    with threadpoolctl.threadpool_limits(2):
        two = passes._mean_square(G)
    assert one == two == passes._mean_square(G.copy())
    assert one == pytest.approx(float(np.mean(G.astype(np.float64) ** 2)), rel=1e-14)
    G32 = G.astype(np.float32)  # float32 weights are squared and summed in float64
    assert passes._mean_square(G32) == pytest.approx(float(np.mean(G32.astype(np.float64) ** 2)), rel=1e-14)
