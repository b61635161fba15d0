"""Damaged run folders, I/O faults, lost schedulers and Typer's own usage errors: one line each.

The oracle for "nothing lost" is an undamaged run of the same tiny sweep: after the fault is gone,
``--resume`` must give its CSVs byte for byte. Every message is checked to be one line with the
documented exit code (2 usage, 3 fault, 130 interrupted) and no traceback.
"""

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hevar.errors import EXIT_FAULT, EXIT_INTERRUPTED, EXIT_USAGE
from hevar.results import store
from hevar.views import cli

runner = CliRunner()
TINY = ["--depth", "3", "--width", "8", "--seeds", "3", "--batch", "4", "--sigma-w2", "1,2"]
CSVS = ("layers.csv", "summary.csv", "theory.csv", "seeds.csv", "crossings.csv")


def _invoke(*args):
    return runner.invoke(cli.app, [str(a) for a in args])


def _one_line(result, code) -> str:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def _csvs(run):
    return {name: (run / name).read_bytes() for name in CSVS}


def _no_temporaries(run):
    return not [p for p in Path(run).rglob(".*.tmp")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    assert _invoke("sweep", *TINY, "--out", run, "--no-plot").exit_code == 0
    return run


@pytest.fixture
def copy(reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    return run


# --- damaged run folders ------------------------------------------------------------------------------


def _edit_manifest(run, change):
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps(change(manifest)))


MANIFEST_DAMAGE = {
    "a list": (lambda m: [], "a JSON list instead of an object"),
    "config of the wrong type": (lambda m: dict(m, config="relu"), "'config' is a JSON str"),
    "attempts of the wrong type": (lambda m: dict(m, attempts={"a": 1}), "'attempts' is a JSON dict"),
    "an attempt of the wrong type": (lambda m: dict(m, attempts=[1]), "'attempts' must be a list of objects"),
    "no version": (lambda m: {k: v for k, v in m.items() if k != "hevar"}, "it has no 'hevar'"),
    "no started": (lambda m: {k: v for k, v in m.items() if k != "started"}, None),  # optional: resumes
    "config without depth": (lambda m: dict(m, config={k: v for k, v in m["config"].items() if k != "depth"}),
                             "its 'config' has no 'depth'"),
    "config with an unknown key": (lambda m: dict(m, config=dict(m["config"], depht=3)),
                                   "its 'config' has unknown key(s) 'depht'"),
}


@pytest.mark.parametrize("damage", sorted(MANIFEST_DAMAGE))
def test_a_damaged_manifest_is_named_in_one_line(copy, reference, damage):
    change, message = MANIFEST_DAMAGE[damage]
    _edit_manifest(copy, change)
    result = _invoke("sweep", "--resume", copy, "--no-plot")
    if message is None:
        assert result.exit_code == 0, result.output
        assert _csvs(copy) == _csvs(reference)
        return
    line = _one_line(result, EXIT_USAGE)
    assert f"The run folder's manifest '{copy / 'manifest.json'}' is damaged: {message}" in line


def test_a_truncated_manifest_is_named(copy):
    text = (copy / "manifest.json").read_text()
    (copy / "manifest.json").write_text(text[: len(text) // 2])
    line = _one_line(_invoke("sweep", "--resume", copy), EXIT_USAGE)
    assert f"'{copy / 'manifest.json'}' is damaged: not valid JSON" in line


def _first_point(run):
    return sorted((run / "points").glob("*.npz"))[0]


def _truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def _reshape(path):
    arrays = dict(np.load(path))
    arrays["log_q"] = arrays["log_q"][:, :2]
    np.savez(path, **arrays)


def _drop_status(path):
    arrays = dict(np.load(path))
    del arrays["status"]
    np.savez(path, **arrays)


@pytest.mark.parametrize("damage, what", [(_truncate, "unreadable: BadZipFile"),
                                          (_reshape, "'log_q' is float64 of shape (2, 2), not float of shape (2, 3)"),
                                          (_drop_status, "no 'status' array")])
def test_a_damaged_point_file_is_recomputed_and_the_user_told(copy, reference, damage, what):
    point = _first_point(copy)
    damage(point)
    for name in CSVS:
        (copy / name).unlink()
    result = _invoke("sweep", "--resume", copy, "--no-plot")
    assert result.exit_code == 0, result.output
    assert f"Note: {point} was damaged ({what}" in result.output and "it was computed again" in result.output
    assert _csvs(copy) == _csvs(reference)
    attempt = json.loads((copy / "manifest.json").read_text())["attempts"][-1]
    assert attempt["computed"] == [point.stem]


def _cut_mid_line(run):
    text = (run / "layers.csv").read_text()
    (run / "layers.csv").write_text(text[:-5])


def _cut_at_a_line(run):
    lines = (run / "layers.csv").read_text().splitlines(keepends=True)
    (run / "layers.csv").write_text("".join(lines[:-1]))


def _deepen(run):
    text = (run / "summary.csv").read_text().splitlines(keepends=True)
    header = text[0].rstrip("\n").split(",")
    row = text[1].rstrip("\n").split(",")
    row[header.index("depth")] = "7"
    (run / "summary.csv").write_text("".join([text[0], ",".join(row) + "\n", *text[2:]]))


@pytest.mark.parametrize("damage, file, what", [
    (_cut_mid_line, "layers.csv", "is damaged: truncated"),
    (_cut_at_a_line, "layers.csv", "has 2 layer rows, and its depth in summary.csv is 3"),
    (_deepen, "layers.csv", "has 3 layer rows, and its depth in summary.csv is 7"),
])
def test_plot_names_the_damaged_csv(copy, damage, file, what):
    damage(copy)
    line = _one_line(_invoke("plot", copy), EXIT_USAGE)
    assert f"'{copy / file}' {what}" in line or (f"'{copy / file}' is damaged" in line and what in line)
    assert not (copy / "plots").exists()


@pytest.fixture(scope="module")
def optional_runs(tmp_path_factory):
    """A --jacobian sweep (spectra.csv), a residual sweep (signalprop.csv) and a training run."""
    root = tmp_path_factory.mktemp("opt")
    small = ["--depth", "2", "--width", "4", "--seeds", "1", "--no-plot"]
    for name, args in (("jac", ["sweep", *small, "--batch", "2", "--sigma-w2", "2", "--jacobian", "1"]),
                       ("res", ["sweep", *small, "--batch", "2", "--sigma-w2", "2", "--arch", "resmlp"]),
                       ("train", ["train", *small, "--sigma-w2", "2", "--steps", "2", "--data", "teacher"])):
        assert _invoke(*args, "--out", root / name).exit_code == 0
    return root


def _header_only(path, column):
    path.write_text(path.read_text().splitlines(keepends=True)[0])


def _drop_column(path, column):
    import csv
    import io

    rows = list(csv.reader(io.StringIO(path.read_text())))
    j = rows[0].index(column)
    path.write_text("".join(",".join(r[:j] + r[j + 1:]) + "\n" for r in rows))


@pytest.mark.parametrize("run, file, damage, column, what", [
    ("jac", "spectra.csv", _header_only, None, "is damaged: it has a header and no rows"),
    ("jac", "spectra.csv", _drop_column, "sigma_w2_n", "is not a hevar table: missing column(s) sigma_w2_n"),
    ("jac", "spectra.csv", _drop_column, "width", "is not a hevar table: missing column(s) width"),
    ("res", "signalprop.csv", _header_only, None, "is damaged: it has a header and no rows"),
    ("res", "signalprop.csv", _drop_column, "log10_channel_var", "missing column(s) log10_channel_var"),
    ("train", "training.csv", _header_only, None, "is damaged: it has a header and no rows"),
    ("train", "training_summary.csv", _header_only, None, "is damaged: it has a header and no rows"),
])
def test_plot_names_a_damaged_optional_csv(optional_runs, tmp_path, run, file, damage, column, what):
    """Before: a header-only spectra.csv or signalprop.csv lost its figure silently (exit 0), a header-only
    training.csv drew an empty figure with a Matplotlib warning, and spectra.csv without sigma_w2_n or
    width was an internal error (exit 1)."""
    copy = tmp_path / run
    shutil.copytree(optional_runs / run, copy)
    damage(copy / file, column)
    line = _one_line(_invoke("plot", copy), EXIT_USAGE)
    assert f"'{copy / file}'" in line and what in line
    assert not (copy / "plots").exists()


def test_leftover_temporary_files_of_a_killed_write_are_removed_on_resume(copy, reference):
    leftovers = [copy / ".layers.csv.abc123_x.tmp", copy / "points" / ".relu__L3__N8__seed0.npz.k9j8h7g6.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    keep = copy / ".notes.txt"  # not hevar's: left alone
    keep.write_text("mine")
    assert _invoke("sweep", "--resume", copy, "--no-plot").exit_code == 0
    assert not any(p.exists() for p in leftovers) and keep.exists()
    assert _csvs(copy) == _csvs(reference)


# --- I/O faults -----------------------------------------------------------------------------------------


def test_a_full_disk_is_one_line_keeps_finished_tasks_and_resumes_to_the_same_bytes(tmp_path, reference, monkeypatch):
    run = tmp_path / "run"
    real_write, written = os.write, []

    def write(fd, data):  # the disk fills up after the first point file
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target.startswith(str(run / "points")):
            written.append(target)
            if len(written) > 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    line = _one_line(_invoke("sweep", *TINY, "--out", run, "--no-plot"), EXIT_FAULT)
    monkeypatch.setattr(os, "write", real_write)
    assert line.startswith(f"Error: Cannot write {run / 'points'}") and "No space left on device (ENOSPC)." in line
    assert line.endswith(f"1 of 3 tasks are saved in {run}. Resume with: hevar sweep --resume {run}")
    assert len(list((run / "points").glob("*.npz"))) == 1 and _no_temporaries(run)
    attempt = json.loads((run / "manifest.json").read_text())["attempts"][-1]
    assert "ENOSPC" in attempt["error"] and attempt["finished"] is None
    assert _invoke("sweep", "--resume", run, "--no-plot").exit_code == 0
    assert _csvs(run) == _csvs(reference)


def test_a_full_disk_while_writing_the_csvs(tmp_path, monkeypatch):
    run = tmp_path / "run"
    real = store.write_atomic

    def write_atomic(path, data):
        if Path(path).name == "summary.csv":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(store, "write_atomic", write_atomic)
    line = _one_line(_invoke("sweep", *TINY, "--out", run, "--no-plot"), EXIT_FAULT)
    assert f"Cannot write {run / 'summary.csv'}: No space left on device (ENOSPC)." in line
    assert "3 of 3 tasks are saved" in line and not (run / "summary.csv").exists()


def test_an_out_name_longer_than_the_file_system_allows(tmp_path):
    long = tmp_path / ("x" * 300) / "run"
    line = _one_line(_invoke("sweep", *TINY, "--out", long, "--no-plot"), EXIT_USAGE)
    assert line.startswith("Error: The 'out' parameter must be a folder hevar can write.") and "File name too long" in line
    assert os.listdir(tmp_path) == []


def test_plot_where_plots_is_a_file_or_unwritable(copy, monkeypatch):
    (copy / "plots").unlink() if (copy / "plots").is_file() else None
    (copy / "plots").write_text("not a folder")
    line = _one_line(_invoke("plot", copy), EXIT_USAGE)
    assert f"({copy / 'plots'}: a file where the plots folder should be)" in line
    (copy / "plots").unlink()

    def refuse(*args, **kwargs):  # as a folder of someone else's would (the tests may run as root)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(store.tempfile, "mkstemp", refuse)
    line = _one_line(_invoke("plot", copy), EXIT_USAGE)
    assert "whose plots/ hevar can write" in line and "Permission denied" in line
    assert not (copy / "plots").exists() and _no_temporaries(copy)


def test_a_sweep_whose_plots_cannot_be_written_keeps_its_results(tmp_path, reference):
    run = tmp_path / "run"
    run.mkdir()
    (run / "plots").write_text("not a folder")
    result = _invoke("sweep", *TINY, "--out", run)
    assert result.exit_code == EXIT_USAGE and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]  # after the sweep's own report
    assert line.endswith(f"The results are complete in {run}; draw the figures with: hevar plot {run} once that is "
                         "fixed.")
    assert _csvs(run) == _csvs(reference)


def test_ctrl_c_while_the_figures_are_drawn(copy, monkeypatch):
    from hevar.views import figures

    def render_run(run_dir, formats=("png",)):  # one figure written, then Ctrl-C
        store.write_atomic(Path(run_dir) / "plots" / "q_tilde.png", b"png")
        raise KeyboardInterrupt

    monkeypatch.setattr(figures, "render_run", render_run)
    (copy / "plots").mkdir(exist_ok=True)
    line = _one_line(_invoke("plot", copy), EXIT_INTERRUPTED)
    assert line == (f"Interrupted while drawing the figures ({len(list((copy / 'plots').glob('*.png')))} in "
                    f"{copy / 'plots'}, each one whole). Draw them again with: hevar plot {copy}")


def test_empty_widths_is_refused(tmp_path):
    line = _one_line(_invoke("sweep", *TINY, "--widths", "", "--out", tmp_path / "run"), EXIT_USAGE)
    assert line.startswith("Error: The 'widths' parameter must be") and line.endswith("Got '' instead.")
    assert not (tmp_path / "run").exists()


# --- schedulers -----------------------------------------------------------------------------------------


def test_a_tls_scheduler_without_certificates_is_one_line_before_any_connection(tmp_path):
    pytest.importorskip("distributed")
    line = _one_line(_invoke("sweep", *TINY, "--out", tmp_path / "run", "--scheduler", "tls://127.0.0.1:1"), EXIT_USAGE)
    assert "The 'scheduler' parameter must be the address of a running Dask scheduler" in line
    assert "needs certificates" in line and not (tmp_path / "run").exists()


def test_losing_the_scheduler_mid_run_keeps_finished_tasks(tmp_path, reference, monkeypatch):
    distributed = pytest.importorskip("distributed")
    run = tmp_path / "run"
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, host="127.0.0.1",
                                       protocol="tcp://", dashboard_address="127.0.0.1:0")
    real, saved = store.save_point, []

    def save_point(run_dir, key, arrays):  # the scheduler goes away after the first task is saved
        real(run_dir, key, arrays)
        saved.append(key)
        if len(saved) == 1:
            cluster.sync(cluster.scheduler.close)

    monkeypatch.setattr(store, "save_point", save_point)
    try:
        result = _invoke("sweep", *TINY, "--out", run, "--no-plot", "--scheduler", cluster.scheduler_address)
    finally:
        try:
            cluster.close(timeout=1)  # its scheduler is gone: do not wait the default 30 s for it
        except TimeoutError:
            pass
    monkeypatch.setattr(store, "save_point", real)
    line = _one_line(result, EXIT_FAULT)
    assert line.startswith(f"Error: Lost the Dask scheduler at {cluster.scheduler_address}")
    assert line.endswith(f"1 of 3 tasks are saved in {run}. Resume with: hevar sweep --resume {run}")
    assert _invoke("sweep", "--resume", run, "--no-plot").exit_code == 0
    assert _csvs(run) == _csvs(reference)


# --- Typer's own usage errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["sweep", "--no-such-option"], "Error: No such option: --no-such-option"),
    (["plot"], "Error: Missing argument 'RUN_DIR'."),
    (["plot", "a", "b"], "Error: Got unexpected extra argument(s) (b)."),
    (["no-such-command"], "Error: No such command 'no-such-command'."),
    (["theory"], "Error: Missing option '--act'."),
])
def test_typer_usage_errors_are_one_line_and_exit_2(args, message):
    line = _one_line(runner.invoke(cli.app, args), EXIT_USAGE)
    assert line.startswith(message)
