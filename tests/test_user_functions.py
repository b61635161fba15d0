"""A user activation (--act MODULE:FUNCTION) that passes the probe and fails later, at any stage.

Each function below behaves on the probe's 2 × 4 array and misbehaves on anything larger, as a
function written for one shape might. Whatever it does — raise, return nan, return the wrong
shape, call sys.exit, raise KeyboardInterrupt — every command ends in one line that names 'act',
the function, who called it and the values it was given, and the sweep says what it saved.
"""

import os
import signal
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from hevar.errors import UserFunctionError
from hevar.meanfield.activations import parse_activation
from hevar.views.cli import app

runner = CliRunner()
MODULE = "hevar_test_late_failures"
SOURCE = '''
import os, signal, sys
import numpy as np

def _big(z):
    return np.asarray(z).size > 8

def raises(z):
    if _big(z):
        raise ValueError("only small arrays")
    return np.tanh(z)

def nan(z):
    out = np.tanh(z)
    if _big(z):
        out = out.copy()
        out.flat[out.size // 2] = np.nan
    return out

def shape(z):
    return np.tanh(z).ravel()[:-1] if _big(z) else np.tanh(z)

def exits(z):
    if _big(z):
        sys.exit(3)
    return np.tanh(z)

def interrupts(z):
    if _big(z):
        raise KeyboardInterrupt
    return np.tanh(z)

def ctrl_c(z):  # a real Ctrl-C arriving while the user's function runs
    if _big(z):
        os.kill(os.getpid(), signal.SIGINT)
    return np.tanh(z)
'''
PROBLEM = {"raises": "raised ValueError: only small arrays", "nan": "returned nan at z =", "shape": "returned shape (",
           "exits": "raised SystemExit: 3", "interrupts": "raised KeyboardInterrupt"}
SWEEP = ["--depth", "3", "--width", "8", "--seeds", "2", "--batch", "4", "--sigma-w2", "1,2", "--no-plot"]


@pytest.fixture(scope="module", autouse=True)
def late_failures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("acts")
    (folder / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
    sys.path.insert(0, str(folder))
    yield
    sys.path.remove(str(folder))
    sys.modules.pop(MODULE, None)


def _one_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize("kind", sorted(PROBLEM))
def test_sweep_names_the_function_the_caller_the_values_and_what_was_saved(tmp_path, kind):
    run = tmp_path / "run"
    result = runner.invoke(app, ["sweep", "--act", f"{MODULE}:{kind}", *SWEEP, "--out", str(run)])
    assert result.exit_code == 2, result.output
    line = _one_line(result)
    assert line.startswith(f"Error: The 'act' parameter '{MODULE}:{kind}' must be a function")
    assert PROBLEM[kind] in line
    # the first caller to meet the failure is named: the theory's kink probe (a large array, before
    # the pass) or the engine's pass itself
    assert ("mean-field theory (hevar.meanfield.numdiff._apply)" in line or "the engine's pass" in line), line
    assert "float64 array of shape (" in line and "with z in [" in line
    if "the engine's pass" in line:  # failed mid-run: what was saved and how to resume
        assert line.endswith(f"0 of 2 tasks are saved in {run}. Resume with: hevar sweep --resume {run}")
    assert not (run / "layers.csv").exists() and not list(run.glob(".*.tmp"))


@pytest.mark.parametrize("command", [["theory"], ["gains", "--depth", "5"]])
@pytest.mark.parametrize("kind", sorted(PROBLEM))
def test_theory_and_gains_name_the_function_and_the_integral(command, kind):
    result = runner.invoke(app, [*command, "--act", f"{MODULE}:{kind}"])
    assert result.exit_code == 2, result.output
    line = _one_line(result)
    assert f"'act' parameter '{MODULE}:{kind}'" in line and PROBLEM[kind] in line
    assert ("the theory's Gaussian integrals (hevar.meanfield.gaussian." in line or "mean-field theory (hevar.meanfield.numdiff." in line) and "with z in [" in line


def test_a_user_keyboard_interrupt_in_a_worker_process_is_the_same_line(tmp_path):
    result = runner.invoke(app, ["sweep", "--act", f"{MODULE}:interrupts", *SWEEP, "--out", str(tmp_path / "r"),
                                 "--jobs", "2"])
    assert result.exit_code == 2 and PROBLEM["interrupts"] in _one_line(result)


def test_a_real_ctrl_c_inside_the_function_is_still_an_interruption(tmp_path):
    run = tmp_path / "run"
    result = runner.invoke(app, ["sweep", "--act", f"{MODULE}:ctrl_c", *SWEEP, "--out", str(run)])
    assert result.exit_code == 130, result.output
    # the theory's kink probe may meet the Ctrl-C before the run starts (nothing saved), or the pass after it
    assert _one_line(result) in ("Interrupted.",
                                 f"Interrupted: 0 of 2 tasks are saved in {run}. Resume with: hevar sweep --resume {run}")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the CLI put Python's handler back


def test_the_numerical_derivative_and_the_python_api_raise_the_same_error():
    """A φ given without φ' is probed for kinks on a large array when it is parsed: a function that
    fails there is refused at once, naming act and the call, and a Ctrl-C stays a Ctrl-C."""
    with pytest.raises(UserFunctionError, match=r"raised ValueError: only small arrays") as info:
        parse_activation(f"{MODULE}:raises")
    assert info.value.param == "act"
    with pytest.raises(KeyboardInterrupt):  # outside the CLI a KeyboardInterrupt is taken as a real Ctrl-C
        parse_activation(f"{MODULE}:interrupts")
