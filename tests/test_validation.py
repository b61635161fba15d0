"""Every bad input is one clear line, exit code 2, no traceback, and nothing written.

The tables walk each option of ``hevar sweep`` and ``hevar plot`` and each key of a TOML preset with
several bad values; the property tests drive the grid and activation parsers with arbitrary text.
"""

from __future__ import annotations

import hevar
import json
import math
import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hevar.views import cli
from hevar.meanfield.activations import FAMILIES, parse_activation
from hevar.experiments.config import build_config, parse_grid, read_preset
from hevar.errors import UsageError

runner = CliRunner()

# A valid, tiny sweep; each case replaces one option with a bad value.
GOOD = {"--act": "relu", "--depth": "3", "--width": "4", "--sigma-w2": "2", "--sigma-b2": "0",
        "--seeds": "1", "--batch": "2", "--seed": "0", "--dtype": "float64"}

# (option, bad value, name the message must contain)
CLI_CASES = [
    *[("--depth", v, "'depth'") for v in ("0", "-1", "abc", "1.5", "", "1,,2", "nan", "inf", "100001", "2:4:1", "1e3")],
    *[("--width", v, "'width'") for v in ("0", "-4", "abc", "2,", " , ", "1e3", "4.5")],
    *[("--sigma-w2", v, "'sigma-w2'") for v in (
        "0", "-1", "abc", "4:1:0.5", "1,,2", "1:2", "1:2:0", "1:2:-1", "nan", "inf", "0:1:0.5", "1:1e9:1e-5",
        "1e400", "1:2:x", "1::2", ":", "1:2:3:4", "2,-1")],
    *[("--sigma-b2", v, "'sigma-b2'") for v in ("-1", "abc", "1:0:1", "nan", ",", "0:1:0")],
    *[("--act", v, "'act'") for v in (
        "rleu", "leaky_relu:x", "leaky_relu:2", "leaky_relu:-0.5", "relu:1", "", "relu,,tanh", "leaky_relu:0.1:2",
        "tanh:nan", "no_such_module_xyz:fn", "math:no_such_function")],
    *[("--seeds", v, "'seeds'") for v in ("0", "-2", "1.5", "abc", "", "1,2", "true", "100001")],
    *[("--batch", v, "'batch'") for v in ("0", "-1", "abc", "2.5", "1e12", "10000001")],
    *[("--seed", v, "'seed'") for v in ("-1", "abc", "1.5", "9223372036854775808", "")],
    *[("--dtype", v, "'dtype'") for v in ("float16", "", "abc", "int32", "float", "64")],
    ("--jobs", "-1", "jobs"),
    ("--jobs", "abc", "jobs"),
]


def _invoke(args: list[str], cwd: Path, env: dict | None = None):
    """Run ``hevar`` in ``cwd`` (so a default ``outputs/`` would land there)."""
    import os

    old = Path.cwd()
    os.chdir(cwd)
    try:
        return runner.invoke(cli.app, args, env=env)
    finally:
        os.chdir(old)


def _assert_rejected(result, name: str) -> str:
    text = result.output
    assert result.exit_code == 2, f"exit {result.exit_code}: {text}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in text
    assert name in text, text
    assert len(text.strip().splitlines()) == 1 or "Usage:" in text, text  # ours: one line; click's: usage block
    return text


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def cwd(tmp_path):
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("option,value,name", CLI_CASES, ids=[f"{o}={v!r}" for o, v, _ in CLI_CASES])
def test_bad_option_is_rejected_and_nothing_is_written(cwd, option, value, name):
    args = dict(GOOD, **{option: value})
    argv = ["sweep", *[x for kv in args.items() for x in kv], "--no-plot"]
    result = _invoke(argv, cwd)
    _assert_rejected(result, name)
    assert _listing(cwd) == []  # no outputs/ entry
    if option.strip("-") in ("depth", "width", "sigma-w2", "sigma-b2", "seeds", "batch", "seed", "dtype"):
        assert "must be" in result.output and "Got " in result.output and "instead" in result.output


def test_unknown_activation_suggests_the_closest_name(cwd):
    result = _invoke(["sweep", "--act", "leaky_rleu:0.2", "--no-plot"], cwd)
    assert "Did you mean 'leaky_relu'?" in _assert_rejected(result, "'act'")


def test_message_format_is_the_one_format(cwd):
    result = _invoke(["sweep", "--depth", "0", "--no-plot"], cwd)
    assert result.output.strip() == "Error: The 'depth' parameter must be an int in the range [1, 100001). Got '0' instead."


# --- `hevar theory`, `hevar gains` and `sweep --jobs`: the same names, form and ranges as the sweep ---------------

# (argv, name the message must contain)
OTHER_CASES = [
    *[(["theory", "--act", "relu", "--sigma-w2", v], "'sigma-w2'") for v in ("2/N", "0", "-1", "nan", "inf", "abc", "")],
    *[(["theory", "--act", "relu", "--sigma-b2", v], "'sigma-b2'") for v in ("-0.1", "x", "nan", "-inf", "")],
    *[(["theory", "--act", "relu", "--depth", v], "'depth'") for v in ("10.5", "0", "-1", "100001", "1000000", "x", "")],
    *[(["theory", "--act", v], "'act'") for v in ("relu,tanh", "relu,", ",", "", "rleu", "leaky_relu:2")],
    *[(["gains", "--depth", v], "'depth'") for v in ("1.5", "0", "100001", "x", "")],
    *[(["gains", "--sigma-b2", v], "'sigma-b2'") for v in ("-1", "x", "inf")],
    *[(["gains", "--act", v], "'act'") for v in ("relu,", ",", "relu,,tanh", "", "rleu")],
    *[(["sweep", *[x for kv in GOOD.items() for x in kv], "--no-plot", "--jobs", v], "'jobs'")
      for v in ("two", "-1", "1.5", "", "100001")],
    # Each of these was accepted before (exit 0), or named a parameter the user did not give:
    # --critical-line read --sigma-b2 by splitting on commas and dropping empty items ('' drew an empty
    # table, '0.3,' one row), with no cap on the number of values; it, and --arch, ignored options silently.
    *[(["theory", "--act", "tanh", "--critical-line", "--sigma-b2", v], "'sigma-b2'")
      for v in ("", ",", "0.3,", "1:0:0.1", "0:1:0.0001", ",".join(str(k / 10**4) for k in range(1001)))],
    *[(["theory", "--act", "tanh", "--critical-line", *extra], name) for extra, name in (
        (["--q-in", "3"], "'q-in'"), (["--input-preactivation"], "'input-preactivation'"),
        (["--sigma-w2", "2"], "'sigma-w2'"), (["--depth", "5"], "'depth'"), (["--arch", "resmlp"], "'arch'"))],
    (["theory", "--act", "tanh", "--out", "line.csv", "--depth", "5"], "'depth'"),
    *[([cmd, "--act", "relu", "--arch", "resmlp", *extra], name) for cmd in ("theory", "gains") for extra, name in (
        (["--q-in", "3"], "'q-in'"), (["--input-preactivation"], "'input-preactivation'"))],
    # --weight-std '' was off; one whose square times N_0 under- or overflows named 'sigma-w2'
    *[(["sweep", *[x for kv in GOOD.items() for x in kv if kv[0] != "--sigma-w2"], "--no-plot", "--weight-std", v],
       "'weight-std'") for v in ("", " ", "1e-320", "1e300")],
    # an empty --input-corr was "off" (as an empty --widths is not); --threads' message left out 'auto'
    *[(["sweep", *[x for kv in GOOD.items() for x in kv], "--no-plot", "--input-corr", v], "'input-corr'")
      for v in ("", " ")],
    (["sweep", *[x for kv in GOOD.items() for x in kv], "--no-plot", "--threads", "0"], "'threads'"),
    # --critical-line --out FOLDER (or in no folder) was a fault (exit 3) after the work; --json beside it ignored
    (["theory", "--act", "tanh", "--critical-line", "--out", "."], "'out'"),
    (["theory", "--act", "tanh", "--critical-line", "--out", "no/such/folder/line.csv"], "'out'"),
    (["theory", "--act", "tanh", "--critical-line", "--out", "line.csv", "--json"], "'json'"),
]


@pytest.mark.parametrize("scale, why", [("1/sqrt(L-1)", "(undefined at L = 1)"), ("log(L-3)", "(undefined at L = 1)"),
                                        ("L**1000", "(beyond float64 at L = 3)")])
def test_a_branch_scale_without_a_value_at_a_depth_says_where(cwd, scale, why):
    """Before: the message showed the expression alone, as if it were malformed."""
    result = _invoke(["sweep", "--no-plot", "--arch", "resmlp", "--depth", "1,3", "--branch-scale", scale], cwd)
    assert f"Got '{scale} {why}' instead." in _assert_rejected(result, "'branch-scale'")


def test_the_threads_message_names_auto(cwd):
    result = _invoke(["sweep", "--no-plot", "--threads", "0"], cwd)
    assert result.output.strip() == ("Error: The 'threads' parameter must be an int in the range [1, 100001) or auto. "
                                     "Got '0' instead.")


@pytest.mark.parametrize("value", [False, True, "", "0"])
def test_a_preset_weight_std_that_is_not_a_positive_number_is_refused(value):
    """Before: weight_std = false (and '') in a preset was taken as off; only a number 0 is."""
    with pytest.raises(UsageError, match="'weight-std' parameter must be a float"):
        build_config({}, {"weight_std": value})
    assert build_config({}, {"weight_std": 0}).weight_std == 0.0


@pytest.mark.parametrize("argv,name", OTHER_CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in OTHER_CASES])
def test_theory_gains_and_jobs_are_validated_like_the_sweep(cwd, argv, name):
    result = _invoke(argv, cwd)
    text = _assert_rejected(result, name)
    assert len(text.strip().splitlines()) == 1 and "Usage:" not in text  # ours, not click's
    assert text.startswith(f"Error: The {name} parameter ") and " instead." in text
    assert _listing(cwd) == []


@pytest.mark.parametrize("option,value,expected", [
    ("--depth", "0", "must be an int in the range [1, 100001). Got '0' instead."),
    ("--depth", "100001", "must be an int in the range [1, 100001). Got '100001' instead."),
    ("--sigma-b2", "-1", "must be a float in the range [0, inf). Got '-1' instead."),
])
def test_one_message_for_one_option_in_every_command(cwd, option, value, expected):
    name = option.strip("-")
    commands = [["sweep", "--no-plot"], ["theory", "--act", "relu"], ["gains", "--act", "relu"]]
    for argv in commands:
        result = _invoke([*argv, option, value], cwd)
        assert result.output.strip() == f"Error: The '{name}' parameter {expected}", (argv, result.output)
    result = _invoke(["theory", "--act", "relu", "--sigma-w2", "-1"], cwd)
    assert result.output.strip() == "Error: The 'sigma-w2' parameter must be a float in the range (0, inf). Got '-1' instead."


# --- extreme values inside the documented ranges: exit 0, no warning on stderr -----------------------

EXTREME = [
    ["theory", "--act", "relu", "--q-in", "1e308"],
    ["theory", "--act", "gelu", "--sigma-w2", "1e308", "--q-in", "1e308"],
    ["gains", "--q-in", "1e308"],
    ["theory", "--act", "relu", "--arch", "resmlp", "--sigma-w2", "1e300", "--depth", "300", "--json"],
    ["sweep", "--act", "tanh,gelu", "--sigma-w2", "1e300", "--input-corr", "-1,0.5", "--jacobian", "1",
     "--depth", "3", "--width", "4", "--seeds", "1", "--batch", "2", "--no-plot"],
]


@pytest.mark.parametrize("argv", EXTREME, ids=[" ".join(a[:4]) for a in EXTREME])
def test_extreme_valid_values_give_a_report_without_warnings(cwd, argv):
    """Before: RuntimeWarnings (several lines on stderr) from theory at --q-in 1e308 or σ_w²·N = 1e300,
    and an internal error (exit 1: brentq on a nan c-map) for --input-corr at σ_w²·N = 1e300."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _invoke([*argv, *(["--out", "run"] if argv[0] == "sweep" else [])], cwd)
    assert result.exit_code == 0, result.output
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]


# --- paths: --out, --resume, --config, and `hevar plot RUN_DIR` ---------------------------------------


def _path_cases(tmp: Path) -> list[tuple[list[str], str, Path | None]]:
    """(argv after the good options, name in the message, a path that must not appear)."""
    a_file = tmp / "a_file"
    a_file.write_text("not a folder\n")
    foreign = tmp / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    empty = tmp / "empty"
    empty.mkdir()
    bad_manifest = tmp / "bad_manifest"
    bad_manifest.mkdir()
    (bad_manifest / "manifest.json").write_text("{not json")
    no_config = tmp / "no_config"
    no_config.mkdir()
    (no_config / "manifest.json").write_text(json.dumps({"hevar": "0"}))
    bad_config = tmp / "bad_config_run"
    bad_config.mkdir()
    (bad_config / "manifest.json").write_text(json.dumps({"hevar": hevar.__version__, "config": {"depth": [0]}}))
    bad_toml = tmp / "bad.toml"
    bad_toml.write_text("depth = \n")
    binary = tmp / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00depth")
    return [
        (["--out", str(a_file / "run")], "'out'", a_file / "run"),
        (["--out", str(a_file)], "'out'", None),
        (["--out", str(a_file / "deeper" / "run")], "'out'", a_file / "deeper"),
        (["--out", str(foreign)], "'out'", foreign / "manifest.json"),
        (["--resume", str(empty)], "'resume'", empty / "points"),
        (["--resume", str(a_file)], "'resume'", None),
        (["--resume", str(tmp / "missing")], "'resume'", tmp / "missing"),
        (["--resume", str(bad_manifest)], "manifest", bad_manifest / "points"),
        (["--resume", str(no_config)], "manifest", no_config / "points"),
        (["--resume", str(bad_config)], "is damaged: its 'config' has no", bad_config / "points"),
        (["--config", str(tmp / "missing.toml")], "'config'", None),
        (["--config", str(tmp)], "'config'", None),
        (["--config", str(bad_toml)], "'config'", None),
        (["--config", str(binary)], "'config'", None),
    ]


def test_bad_paths_are_rejected_and_nothing_is_written(tmp_path, cwd):
    for extra, name, must_not_exist in _path_cases(tmp_path):
        before = _listing(tmp_path)
        argv = ["sweep", *[x for kv in GOOD.items() for x in kv], "--no-plot", *extra]
        result = _invoke(argv, cwd)
        _assert_rejected(result, name)
        assert _listing(tmp_path) == before, extra  # nothing created anywhere, cwd included
        if must_not_exist is not None:
            assert not must_not_exist.exists(), extra


def test_a_rejected_out_leaves_no_parent_folders(tmp_path, cwd, monkeypatch):
    """A run folder whose parents had to be created, then fails its write probe: all removed."""
    from hevar.results import store

    def refuse(self, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_bytes", refuse)
    with pytest.raises(UsageError, match="'out'"):
        store.prepare_run_dir(tmp_path / "new" / "deeper" / "run")
    assert not (tmp_path / "new").exists()


def _plot_cases(tmp: Path) -> list[tuple[Path, str]]:
    a_file = tmp / "a_file"
    a_file.write_text("x\n")
    empty = tmp / "empty_run"
    empty.mkdir()
    garbled = tmp / "garbled"
    garbled.mkdir()
    (garbled / "layers.csv").write_text("activation,depth\nrelu,1,2\n")
    (garbled / "summary.csv").write_text("")
    no_summary = tmp / "no_summary"
    no_summary.mkdir()
    (no_summary / "layers.csv").write_text("x\n")
    return [(tmp / "missing", "'run_dir'"), (a_file, "'run_dir'"), (empty, "'run_dir'"),
            (garbled, "'run_dir'"), (no_summary, "'run_dir'")]


def test_plot_of_an_interrupted_run_says_how_to_finish_it(tmp_path, cwd):
    run = tmp_path / "run dir"
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    (run / "points").mkdir()
    message = _assert_rejected(_invoke(["plot", str(run)], cwd), "'run_dir'")
    assert "layers.csv" in message and "did not finish" in message
    assert f"hevar sweep --resume '{run}'" in message
    (run / "points").rmdir()  # no points: not a run that was started, no advice to resume
    assert "--resume" not in _assert_rejected(_invoke(["plot", str(run)], cwd), "'run_dir'")


def test_plot_rejects_what_is_not_a_run_folder(tmp_path, cwd):
    for run_dir, name in _plot_cases(tmp_path):
        before = _listing(tmp_path)
        result = _invoke(["plot", str(run_dir)], cwd)
        _assert_rejected(result, name)
        assert _listing(tmp_path) == before  # no plots/ folder made
        assert _listing(cwd) == []


# --- config-file keys ----------------------------------------------------------------------------------

# (TOML text, name the message must contain)
CONFIG_CASES = [
    *[(f"depth = {v}", "'depth'") for v in ("0", '"abc"', "1.5", "true", "[]", "[1, 0]", "{a = 1}", '"1,,2"', "-3")],
    *[(f"width = {v}", "'width'") for v in ("-3", '"2,,3"', "0.5", '["a"]')],
    *[(f"sigma_w2 = {v}", "'sigma-w2'") for v in ('"4:1:0.5"', "0", '["a"]', "nan", "inf", "-2", "false", '""')],
    ('"sigma-w2" = "1:2"', "'sigma-w2'"),
    *[(f"sigma_b2 = {v}", "'sigma-b2'") for v in ("-1", '"x"', "-inf")],
    *[(f"act = {v}", "'act'") for v in ('"rleu"', "5", '["relu", ""]', '"leaky_relu:2"', "[]", "[1]", '"relu:1"')],
    *[(f"seeds = {v}", "'seeds'") for v in ("0", '"x"', "[1]", "1.5", "true")],
    *[(f"batch = {v}", "'batch'") for v in ("0", "false", "-5", '"1e12"')],
    *[(f"seed = {v}", "'seed'") for v in ("-1", "1.5", '"s"')],
    *[(f"dtype = {v}", "'dtype'") for v in ('"float16"', "64", "[]")],
    *[(f"out = {v}", "'out'") for v in ("3", '""', "[]")],
    *[(f"plot = {v}", "'plot'") for v in ('"yes"', "1")],
    ("depht = 3", "'config'"),
    ("[sweep]\ndepth = 3", "'config'"),
    ('sigma_w2 = "1"\nsigma-w2 = "2"', "'config'"),
    ("depth = ", "'config'"),
    ("depth = 3\ndepth = 4", "'config'"),
]


@pytest.mark.parametrize("text,name", CONFIG_CASES, ids=[t.replace("\n", "; ") for t, _ in CONFIG_CASES])
def test_bad_config_key_is_rejected_and_nothing_is_written(tmp_path, cwd, text, name):
    preset = tmp_path / "preset.toml"
    preset.write_text(text + "\n")
    result = _invoke(["sweep", "--config", str(preset), "--depth", "3", "--width", "4", "--seeds", "1",
                      "--batch", "2", "--no-plot"] if not text.startswith(("depth", "width", "seeds", "batch"))
                     else ["sweep", "--config", str(preset), "--no-plot"], cwd)
    message = _assert_rejected(result, name)
    assert _listing(cwd) == []
    if name not in ("'config'",):
        assert str(preset) in message  # a value from the file names the file


def test_config_unknown_key_suggests_the_closest(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text("sigma_w = 2\n")
    with pytest.raises(UsageError, match="Did you mean 'sigma-w2'"):
        read_preset(preset)


def test_a_flag_overrides_a_bad_preset_value_and_is_blamed_alone(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text("depth = 0\nwidth = 0\n")
    with pytest.raises(UsageError) as err:
        build_config(dict(depth="3"), read_preset(preset))
    assert "'width'" in str(err.value) and str(preset) in str(err.value)
    with pytest.raises(UsageError) as err:
        build_config(dict(depth="0", width="4"), read_preset(preset))
    assert "'depth'" in str(err.value) and str(preset) not in str(err.value)  # the flag's value, not the file's


# --- the memory guard ----------------------------------------------------------------------------------


def test_memory_guard_refuses_before_anything_is_written(cwd):
    from hevar.experiments import resources

    flags = dict(act="gelu", depth="200", width="64", batch="512", seeds="1")
    cfg = build_config(flags)

    def least(**change):  # one configuration at a time with no weights kept: the least a task can take
        return resources.task_memory(cfg, "gelu", 200, 64, budget=1, n_configs=1, **change)

    fixed = resources.INTERPRETER_BYTES + resources.plan_run(cfg, memory=resources.Memory(2**40, "x")).rows_bytes
    helps = max(least(dtype="float32"), least(batch=1))
    limit = fixed + (helps + least()) // 2  # room for float32 or a batch of one, not for this run
    argv = ["sweep", *[x for k, v in flags.items() for x in (f"--{k}", v)], "--no-plot"]
    result = _invoke(argv, cwd, env={"HEVAR_MEMORY_LIMIT": str(limit)})
    message = _assert_rejected(result, "'batch'")
    assert f"{resources._size(limit)} is available (HEVAR_MEMORY_LIMIT)" in message
    suggested = int(re.search(r"--batch (\d+) or less", message).group(1))
    assert least(batch=suggested) <= limit - fixed < least(batch=suggested + 1)
    assert "--dtype float32" in message
    assert _listing(cwd) == []


@pytest.mark.parametrize("option, flags", [
    ("n-pairs", dict(input_corr="0.5", n_pairs="4000")),
    ("jacobian", dict(jacobian="2000")),
    ("jacobian", dict(jacobian="2000", input_corr="0.1", n_pairs="2")),
])
def test_memory_guard_names_the_pair_or_jacobian_count_that_overflows(option, flags):
    """Before: a sweep too large because of --n-pairs or --jacobian was refused naming 'batch', 'width',
    'depth' and 'dtype' (none of which shrinks it). The suggested count must fit, and 2× it must not."""
    from hevar.experiments import resources

    cfg = build_config(dict(depth="10", width="128", seeds="1", **flags))
    need = resources.plan_run(cfg, memory=resources.Memory(2**50, "x"), timing=False).need
    memory = resources.Memory(need // 4, "test")
    with pytest.raises(UsageError) as err:
        resources.check_memory(cfg, memory=memory)
    assert err.value.param == option and str(err.value).startswith(f"The '{option}' parameter asks"), err.value
    suggested = int(re.search(rf"--{option} (\d+) or fewer", str(err.value)).group(1))
    field = option.replace("-", "_")
    resources.check_memory(build_config(dict(depth="10", width="128", seeds="1", **{**flags, field: str(suggested)})),
                           memory=memory)
    with pytest.raises(UsageError):
        resources.check_memory(build_config(dict(depth="10", width="128", seeds="1",
                                                 **{**flags, field: str(2 * suggested)})), memory=memory)


@pytest.mark.parametrize("n,text", [(0, "0 B"), (1000, "1000 B"), (1024, "1 KiB"), (1536, "1.5 KiB"),
                                    (3 * 2**20, "3 MiB"), (2**30 + 2**29, "1.5 GiB"), (5 * 2**40, "5 TiB")])
def test_sizes_are_written_in_the_unit_that_reads(n, text):
    from hevar.experiments import resources

    assert resources._size(n) == text


def test_a_tiny_memory_limit_is_shown_in_kib(cwd):
    result = _invoke(["sweep", *[x for kv in GOOD.items() for x in kv], "--no-plot"], cwd,
                     env={"HEVAR_MEMORY_LIMIT": "1K"})
    message = _assert_rejected(result, "'HEVAR_MEMORY_LIMIT' environment variable must leave room for hevar itself")
    assert "but 1 KiB is available" in message


def test_memory_guard_names_a_bad_limit(cwd):
    result = _invoke(["sweep", *[x for kv in GOOD.items() for x in kv], "--no-plot"], cwd,
                     env={"HEVAR_MEMORY_LIMIT": "lots"})
    _assert_rejected(result, "HEVAR_MEMORY_LIMIT")
    assert _listing(cwd) == []


def test_memory_guard_counts_the_chunked_task_the_rows_and_the_workers(monkeypatch):
    from hevar.experiments import resources

    cfg = build_config(dict(act="relu", depth="30", width="16,64", sigma_w2="1,2,3,4", batch="8"))
    plan = resources.plan_run(cfg, memory=resources.Memory(2**40, "test"))
    assert plan.task_bytes == resources.task_memory(cfg, "relu", 30, 64)  # all four configurations at once
    assert plan.need == plan.task_bytes + plan.rows_bytes and plan.interpreter_bytes == 0
    resources.check_memory(cfg, memory=resources.Memory(plan.need, "test"))  # exactly enough: passes
    with pytest.raises(UsageError, match=r"\(relu, depth 30, width 64, batch 8, float64, 4 configuration"):
        resources.check_memory(cfg, memory=resources.Memory(plan.need // 3, "test"))
    two = resources.plan_run(cfg, workers=2, memory=resources.Memory(2**40, "test"))
    assert two.need == 2 * (plan.task_bytes + resources.INTERPRETER_BYTES) + plan.rows_bytes
    with pytest.raises(UsageError, match="in each of 2 workers"):
        resources.check_memory(cfg, workers=2, memory=resources.Memory(plan.need, "test"))
    assert resources.parse_size("1.5G") == 3 * 2**29 and resources.parse_size("4096") == 4096


def test_memory_limit_is_read_from_the_machine_when_not_set(monkeypatch):
    from hevar.experiments import resources

    monkeypatch.delenv("HEVAR_MEMORY_LIMIT", raising=False)
    memory = resources.available_memory()
    assert memory is None or memory.available > 0


# --- programming errors are not user errors ------------------------------------------------------------


def test_a_programming_error_is_one_line_and_raises_only_with_debug(cwd, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug, not bad input")

    monkeypatch.setattr(cli.common.config_mod, "build_config", broken)
    monkeypatch.delenv(cli.common.DEBUG_ENV, raising=False)
    result = _invoke(["sweep", "--no-plot"], cwd)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines() == [
        "Internal error: ZeroDivisionError: a bug, not bad input. This is a bug in hevar; rerun with --debug (or "
        "HEVAR_DEBUG=1) for the traceback and report it."]
    result = _invoke(["sweep", "--no-plot"], cwd, env={cli.common.DEBUG_ENV: "1"})
    assert isinstance(result.exception, ZeroDivisionError) and result.exit_code == 1


# --- property-based: the grid parser -------------------------------------------------------------------

positive = st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False)


@given(st.lists(positive, min_size=1, max_size=20))
def test_grid_float_lists_round_trip(values):
    text = ",".join(repr(v) for v in values)
    expect = tuple(dict.fromkeys(values))
    assert parse_grid("sigma-w2", text, float, 0, lo_open=True, allow_range=True) == expect
    assert parse_grid("sigma-w2", values, float, 0, lo_open=True, allow_range=True) == expect  # a TOML list


@given(st.lists(st.integers(min_value=1, max_value=100_000), min_size=1, max_size=20))
def test_grid_int_lists_round_trip(values):
    expect = tuple(dict.fromkeys(values))
    assert parse_grid("depth", " , ".join(map(str, values)), int, 1, 100_001) == expect
    assert parse_grid("depth", values, int, 1, 100_001) == expect


@given(start=st.integers(0, 10_000), step=st.integers(1, 1_000), n=st.integers(0, 300), extra=st.data())
@example(start=10, step=10, n=2, extra=None)  # 0.1:0.3:0.1 is (0.1, 0.2, 0.3) exactly
def test_grid_ranges_are_inclusive_and_increasing(start, step, n, extra):
    """start:stop:step in hundredths, stop on the grid or between two points."""
    frac = 0 if extra is None else extra.draw(st.integers(0, step - 1))
    text = f"{Decimal(start) / 100}:{Decimal(start + n * step + frac) / 100}:{Decimal(step) / 100}"
    values = parse_grid("sigma-b2", text, float, 0, allow_range=True)
    assert values == tuple(float(Decimal(start + i * step) / 100) for i in range(n + 1))
    assert all(a < b for a, b in zip(values, values[1:]))
    stop = float(Decimal(start + n * step + frac) / 100)
    assert values[-1] <= stop and (frac != 0 or values[-1] == stop)  # inclusive when stop is on the grid


@given(a=st.floats(-1e6, 1e6), b=st.floats(-1e6, 1e6), step=st.floats(-1e6, 1e6))
def test_grid_backwards_or_non_positive_ranges_always_raise(a, b, step):
    assume(b < a or step <= 0)
    with pytest.raises(UsageError, match="'sigma-b2'"):
        parse_grid("sigma-b2", f"{a!r}:{b!r}:{step!r}", float, -math.inf, allow_range=True)


grid_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789.,:-+eE _naif", max_size=30),
    st.lists(st.sampled_from(["1", "0", "-1", "2.5", "1e400", "nan", "inf", "", " ", "1e-320", "3", "x"]),
             min_size=1, max_size=4).map(lambda parts: ":".join(parts) if len(parts) == 3 else ",".join(parts)),
)
grid_raw = st.one_of(grid_text, st.none(), st.booleans(), st.integers(), st.floats(),
                     st.lists(st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.booleans()), max_size=4),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=300)
@given(raw=grid_raw, kind=st.sampled_from([int, float]), allow_range=st.booleans())
@example(raw="1:2:1e-300", kind=float, allow_range=True)
@example(raw="-1e308:1e308:1", kind=float, allow_range=True)
@example(raw=[10**400], kind=float, allow_range=False)
@example(raw=[1e300], kind=int, allow_range=False)
def test_grid_parser_raises_only_usage_errors(raw, kind, allow_range):
    try:
        values = parse_grid("grid", raw, kind, 0, 1e6, lo_open=True, allow_range=allow_range)
    except UsageError as exc:
        assert "'grid'" in str(exc) and exc.param == "grid"
        return
    assert values and all(type(v) is kind and 0 < v < 1e6 for v in values)
    assert len(set(values)) == len(values)


# --- property-based: the activation parser -------------------------------------------------------------

# "MODULE:FUNCTION" imports user code; arbitrary text must not import arbitrary modules in a test.
_USER_FORM = re.compile(r"^\s*[A-Za-z_][\w.]*:[A-Za-z_]\w*(:[A-Za-z_][\w.]*:[A-Za-z_]\w*)?\s*$")

act_text = st.one_of(
    st.text(max_size=30),
    st.builds(lambda name, params: ":".join([name, *params]),
              st.sampled_from(sorted(FAMILIES) + ["swish", "Leaky-ReLU", "RELU", "relu ", " gelu"]),
              st.lists(st.one_of(st.floats().map(repr), st.text(alphabet="0123456789.-e x", max_size=6)),
                       max_size=3)),
)


@settings(max_examples=300)
@given(act_text)
@example("leaky_relu:0.1234567890123")
@example("leaky_relu:-0.0")
@example("elu:1e-300")
def test_activation_parser_is_canonical_or_a_usage_error(text):
    assume(not _USER_FORM.match(text) or text.split(":")[0].strip().lower().replace("-", "_") in FAMILIES)
    try:
        act = parse_activation(text)
    except UsageError as exc:
        assert "'act'" in str(exc)
        return
    again = parse_activation(act.name)
    assert again.name == act.name
    assert parse_activation(again.name).name == act.name


def test_a_huge_bad_value_is_given_back_cut_to_its_ends():
    """A 100 000-character --arch is refused in one line a person can read: the value's ends and its length."""
    from hevar.views.cli import common

    result = runner.invoke(cli.app, ["sweep", "--arch", "a" * 50_000 + "b" * 50_000, "--no-plot"])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and len(line) < 800, len(line)
    assert "'arch'" in line and "(100002 characters)" in line and "aaaa…" in line and "bbbb'" in line
    assert common.shorten("short 'value' stays") == "short 'value' stays"


def test_a_different_configuration_in_the_folder_names_an_unset_option_as_not_set(tmp_path):
    base = ["sweep", "--act", "relu", "--depth", "3", "--width", "8", "--seeds", "2", "--no-plot",
            "--out", str(tmp_path / "r")]
    assert runner.invoke(cli.app, base + ["--jacobian", "2"]).exit_code == 0
    result = runner.invoke(cli.app, base)
    assert result.exit_code == 2
    assert "jacobian 2 there, not set here" in result.stderr and "None" not in result.stderr
