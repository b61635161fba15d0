"""Fuzzing that stays in the suite: every command and option with generated values, presets with
wrong types and nesting, user activations that fail in each way, damaged folders, and SIGKILL at a
random moment.

The property for the CLI: the exit code is 0, 2 (usage) or 3 (fault); never 1 (a bug) or a
traceback; a failure is one line starting ``Error:``; and nothing is half-written — no temporary
file is left, and every file of a run folder that exists reads back. The property for kills: a
sweep SIGKILLed at any moment and then run again gives the bytes of an uninterrupted run.

Profiles (HEVAR_FUZZ=NAME): ``ci`` (the default: a few dozen examples per test, derandomised so CI
is repeatable, about 20 s in all) and ``long`` (random, 50× the examples, for a local run:
``HEVAR_FUZZ=long pytest tests/test_fuzz.py``, about 15 minutes on two cores).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hevar.experiments import resources
from hevar.experiments.config import build_config
from hevar.results import store
from hevar.views import cli

runner = CliRunner()
PROFILE = os.environ.get("HEVAR_FUZZ", "ci")
_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                    HealthCheck.filter_too_much, HealthCheck.data_too_large])
settings.register_profile("hevar-ci", derandomize=True, database=None, **_COMMON)
settings.register_profile("hevar-long", **_COMMON)
SCALE = 50 if PROFILE == "long" else 1


def fuzz(examples: int):
    """Settings of a fuzz test: ``examples`` in the CI profile, 50× that in the long one."""
    return settings(settings.get_profile(f"hevar-{PROFILE}"), max_examples=examples * SCALE)


MODULE = "hevar_fuzz_acts"
SOURCE = '''
import sys
import numpy as np

def _big(z):
    return np.asarray(z).size > 8

def good(z):
    return np.tanh(z) + 0.1 * z

def raises(z):
    if _big(z):
        raise RuntimeError("fuzz")
    return np.tanh(z)

def nan(z):
    return np.where(np.abs(z) > 2.5, np.nan, np.tanh(z)) if _big(z) else np.tanh(z)

def shape(z):
    return np.tanh(z)[..., :1] if _big(z) else np.tanh(z)

def exits(z):
    if _big(z):
        sys.exit(0)
    return np.tanh(z)

def interrupts(z):
    if _big(z):
        raise KeyboardInterrupt
    return np.tanh(z)

def strings(z):
    return np.full(np.shape(z), "x")
'''


@pytest.fixture(scope="module", autouse=True)
def user_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_acts")
    (folder / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
    sys.path.insert(0, str(folder))
    yield
    sys.path.remove(str(folder))


# --- values ---------------------------------------------------------------------------------------------

text = st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
numbers = st.one_of(
    st.integers(-3, 12), st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-5, 5),
    st.sampled_from(["1e3", "1e-400", "1e400", "0x10", "1_000", "+2", "-0", "0.0", "nan", "inf", "-inf", "١٢"]),
)
number_text = st.one_of(numbers.map(str), text)
grid_text = st.one_of(
    number_text,
    st.lists(number_text, min_size=1, max_size=4).map(",".join),
    st.tuples(number_text, number_text, number_text).map(":".join),
    st.sampled_from(["0.5:4:0.5", "1:2:0.25", "1:1e9:1e-9", ",", "1,,2", "2:1:1", "1:2:0", "0.001:10:0.001"]),
)
acts = st.one_of(
    st.sampled_from(["relu", "tanh", "rleu", "relu:1",
                     "leaky_relu:2", "", "relu,,tanh", "relu,tanh", "no_such_module_xyz:f", "math:nope",
                     "os:getcwd"]),
    st.sampled_from(["good", "raises", "strings"]).map(f"{MODULE}:{{}}".format),
    text,
)
SMALL = {"--depth": st.integers(1, 6).map(str), "--width": st.integers(1, 12).map(str),
         "--seeds": st.integers(1, 3).map(str), "--batch": st.integers(1, 4).map(str),
         "--sigma-w2": st.sampled_from(["2", "1,2", "0.5:2:0.5", "1e-3", "50"]),
         "--sigma-b2": st.sampled_from(["0", "0.05", "0,0.1"]),
         "--act": st.sampled_from(["relu", "tanh", "leaky_relu:0.2", "erf", "selu", "gelu", "linear", "swish",
                                   "relu,tanh", *(f"{MODULE}:{f}" for f in ("good", "raises", "nan", "shape", "exits",
                                                                            "interrupts"))])}
# Options a sweep may leave out: (a valid value, anything).
OTHER = {"--seed": (st.integers(0, 2**63 - 1).map(str), number_text),
         "--dtype": (st.sampled_from(["float32", "float64", "FLOAT64"]), st.sampled_from(["float16", "", "x"]) | text),
         "--mode": (st.sampled_from(["fan_in", "fan_out", "fan_avg", "fan_in,fan_out"]), text),
         "--dist": (st.sampled_from(["normal", "uniform", "truncnormal", "truncnormal_keras", "orthogonal"]), text),
         "--widths": (st.sampled_from(["8,4,2", "pyramid:8:2", "constant:4"]),
                      st.sampled_from(["", "4", "pyramid:0:2", "1,0", "pyramid:8"]) | text),
         "--jobs": (st.just("1"), st.sampled_from(["-1", "x", "1.5", "100001"])),  # worker pools: test_durability
         "--scheduler": (st.nothing(), st.sampled_from(["nope", "tls://127.0.0.1:1", "foo://x:1", ""]))}
HOSTILE = {**{option: (grid_text if option.startswith("--sigma") else acts if option == "--act" else number_text)
              for option in SMALL}}


@st.composite
def sweep_argv(draw) -> list[str]:
    """Options of `hevar sweep`: small and valid, but for up to two given anything at all (or an
    extra argument Typer must refuse); the optional ones drawn now and then."""
    names = [*SMALL, *OTHER, "extra"]
    hostile = draw(st.sets(st.sampled_from(names), max_size=draw(st.sampled_from([0, 0, 1, 1, 2]))))
    argv = []
    for option, small in SMALL.items():
        argv += [option, draw(HOSTILE[option] if option in hostile else small)]
    for option, (valid, anything) in OTHER.items():
        if option in hostile:
            argv += [option, draw(anything)]
        elif option != "--scheduler" and draw(st.integers(0, 5)) == 0:
            argv += [option, draw(valid)]
    if "extra" in hostile:
        argv += draw(st.sampled_from([["--bogus"], ["extra"], ["--depth"], ["--plot=3"], ["--dry-run=x"]]))
    return argv


# --- checking one invocation ------------------------------------------------------------------------------


def _check(result, *folders: Path) -> None:
    output = result.output
    assert "Traceback" not in output and result.exit_code in (0, 2, 3), f"exit {result.exit_code}:\n{output}"
    if result.exit_code:
        lines = output.strip().splitlines()
        errors = [line for line in lines if line.startswith("Error:")]
        assert len(errors) == 1 and lines[-1] == errors[0], output
        if not any(line.startswith(("sweep ", "χ̂")) for line in lines):  # failed before it ran: one line only
            assert len(lines) == 1, output
    for folder in folders:
        _check_folder(folder)


def _check_folder(folder: Path) -> None:
    """Nothing half-written: no temporary file, and every file hevar put there reads back."""
    if not folder.exists():
        return
    assert not [p for p in folder.rglob(".*.tmp")], sorted(folder.rglob(".*.tmp"))
    if (folder / store.MANIFEST).exists():
        manifest = store.read_manifest(folder)
        for key in (p.stem for p in (folder / store.POINTS).glob("*.npz")):
            assert store.read_point(folder, key)[1] is None, key
        if manifest.get("finished"):
            store.read_run(folder)
    else:  # a run that stopped before its manifest holds nothing but hevar's own (empty) folders
        assert {p.name for p in folder.iterdir()} <= {store.POINTS}, list(folder.iterdir())


def _invoke(args, cwd: Path, env=None):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(cli.app, [str(a) for a in args], env=env)
    finally:
        os.chdir(old)


def _affordable(argv, cwd: Path) -> bool:
    """Whether the sweep is small enough to run for real here: its --dry-run (itself checked) plans
    under a second at fast rates. Larger ones are exercised up to their plan."""
    dry = _invoke(["sweep", *argv, "--dry-run"], cwd)
    _check(dry)
    if dry.exit_code != 0:
        return False
    line = next((ln for ln in dry.output.splitlines() if ln.strip().startswith("tasks: ")), "")
    return "network shapes" in line and int(line.split()[1]) <= 12 and "time: about 1 s" in dry.output


# --- the properties --------------------------------------------------------------------------------------


@fuzz(40)
@given(argv=sweep_argv())
def test_sweep_with_any_options_exits_cleanly_in_one_line(tmp_path_factory, argv):
    cwd = tmp_path_factory.mktemp("sweep")
    out = cwd / "run"
    argv = [*argv, "--out", str(out)]
    if "--plot" not in argv:
        argv.append("--no-plot")
    if _affordable(argv, cwd):
        _check(_invoke(["sweep", *argv], cwd), out)
    assert sorted(p.name for p in cwd.iterdir()) in ([], ["run"]), list(cwd.iterdir())  # never outputs/ or stray files
    shutil.rmtree(cwd)


toml_scalars = st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
                         st.booleans(), text, st.sampled_from(["relu", "1,2", "0.5:4:0.5", "float32", "fan_in"]))
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                 st.dictionaries(st.sampled_from(["a", "depth", "x"]),
                                                                                 inner, max_size=2)), max_leaves=5)
preset_keys = st.sampled_from(["act", "depth", "width", "sigma-w2", "sigma_w2", "sigma-b2", "seeds", "batch", "seed",
                               "dtype", "widths", "mode", "dist", "out", "plot", "depht", "jobs", "", "a b"])


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


@fuzz(30)
@given(preset=st.dictionaries(preset_keys, toml_values, max_size=4), raw=st.one_of(st.none(), text))
def test_presets_with_wrong_types_and_nesting_exit_cleanly(tmp_path_factory, preset, raw):
    cwd = tmp_path_factory.mktemp("preset")
    body = raw if raw is not None else "".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in preset.items())
    (cwd / "p.toml").write_text(body)
    base = ["--config", str(cwd / "p.toml"), "--out", str(cwd / "run"), "--no-plot"]
    for option, value in (("--depth", "3"), ("--width", "4"), ("--seeds", "1"), ("--batch", "2")):
        if option.lstrip("-") not in preset:
            base += [option, value]
    if _affordable(base, cwd):
        _check(_invoke(["sweep", *base], cwd), cwd / "run")
    shutil.rmtree(cwd)


@fuzz(40)
@given(command=st.sampled_from(["theory", "gains", "activations", "plot", "nosuch", "--version", "--help"]),
       act=acts, sigma_b2=number_text, sigma_w2=number_text, depth=st.one_of(st.integers(1, 30).map(str), number_text),
       extra=st.sampled_from([[], ["--json"], ["--bogus"], ["x"], ["--act"]]))
def test_the_other_commands_exit_cleanly(tmp_path_factory, command, act, sigma_b2, sigma_w2, depth, extra):
    cwd = tmp_path_factory.mktemp("cmd")
    args = {"theory": ["--act", act, "--sigma-b2", sigma_b2, "--sigma-w2", sigma_w2, "--depth", depth],
            "gains": ["--act", act, "--sigma-b2", sigma_b2, "--depth", depth], "plot": [act or "."]}.get(command, [])
    _check(_invoke([command, *args, *extra], cwd))
    assert list(cwd.iterdir()) == []
    shutil.rmtree(cwd)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    result = runner.invoke(cli.app, ["sweep", "--depth", "3", "--width", "6", "--seeds", "2", "--batch", "2",
                                     "--sigma-w2", "2", "--out", str(run), "--no-plot"])
    assert result.exit_code == 0, result.output
    return run


@fuzz(15)
@given(file=st.sampled_from(["manifest.json", "layers.csv", "summary.csv", "theory.csv", "seeds.csv", "point"]),
       how=st.sampled_from(["truncate", "garbage", "empty", "json", "remove", "flip"]), cut=st.floats(0, 1),
       data=st.binary(max_size=64), command=st.sampled_from(["resume", "plot"]))
def test_damaged_run_folders_exit_cleanly_and_are_named(tmp_path_factory, finished_run, file, how, cut, data, command):
    run = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(finished_run, run)
    path = sorted((run / "points").glob("*.npz"))[0] if file == "point" else run / file
    raw = path.read_bytes()
    if how == "truncate":
        path.write_bytes(raw[: int(len(raw) * cut)])
    elif how == "garbage":
        path.write_bytes(data)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "json":
        path.write_text(json.dumps([1, {}]) if cut < 0.5 else json.dumps({"config": {"depth": "x"}, "hevar": 1}))
    elif how == "remove":
        path.unlink()
    else:
        i = int((len(raw) - 1) * cut)
        path.write_bytes(raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1:])
    if file in ("manifest.json", "point"):  # `hevar plot` reads neither (it renders from the CSVs alone)
        command = "resume"
    args = ["sweep", "--resume", run, "--no-plot"] if command == "resume" else ["plot", run]
    result = _invoke(args, run.parent)
    _check(result)  # the damage is the test's: the folder is checked only for what hevar wrote
    assert not [p for p in run.rglob(".*.tmp")]
    if result.exit_code == 0 and command == "resume":
        _check_folder(run)
    if result.exit_code == 2 and file != "point" and how != "remove":
        assert path.name in result.output or "run folder" in result.output, result.output
    shutil.rmtree(run.parent)


# --- kill at a random moment, then resume ----------------------------------------------------------------

KILLED = ["--depth", "4", "--width", "16", "--seeds", "6", "--batch", "4", "--sigma-w2", "1,2", "--act", "relu,tanh",
          "--no-plot"]
CSVS = ("layers.csv", "summary.csv", "theory.csv", "seeds.csv", "crossings.csv")


@pytest.fixture(scope="module")
def killed_reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("kill_ref") / "run"
    start = time.perf_counter()
    assert runner.invoke(cli.app, ["sweep", *KILLED, "--out", str(run)]).exit_code == 0
    return {name: (run / name).read_bytes() for name in CSVS}, time.perf_counter() - start


def _sweep_in_child(args):
    os._exit(runner.invoke(cli.app, args).exit_code)


@fuzz(6)
@given(moment=st.floats(0, 1.2))
def test_a_sweep_killed_at_any_moment_resumes_to_the_same_bytes(tmp_path_factory, killed_reference, moment):
    reference, duration = killed_reference
    run = tmp_path_factory.mktemp("killed") / "run"
    child = multiprocessing.get_context("fork").Process(target=_sweep_in_child,
                                                        args=(["sweep", *KILLED, "--out", str(run)],))
    child.start()
    time.sleep(moment * duration)
    os.kill(child.pid, signal.SIGKILL)  # mid-write, mid-task, before or after the manifest: wherever it is
    child.join()
    again = runner.invoke(cli.app, ["sweep", *KILLED, "--out", str(run)])  # the same flags resume the same folder
    assert again.exit_code == 0, again.output
    assert {name: (run / name).read_bytes() for name in CSVS} == reference
    _check_folder(run)
    assert not (run / ".lock").exists()
    shutil.rmtree(run.parent)
