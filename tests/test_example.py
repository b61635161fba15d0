"""docs/example.py, the README's walk-through of the Python API, runs as written."""

import runpy
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example.py"


def test_the_example_script_runs_and_draws_its_figure(tmp_path, monkeypatch, capsys):
    from threadpoolctl import threadpool_limits

    monkeypatch.chdir(tmp_path)
    with threadpool_limits(1):  # small products: one BLAS thread is fastest on a busy 2-core machine
        runpy.run_path(str(EXAMPLE), run_name="__main__")
    printed = capsys.readouterr().out
    assert "crossing" in printed and "config_id" in printed
    assert (tmp_path / "stability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
