"""Activations: parsing, φ against textbook formulas, φ' against finite differences, dtype and overflow."""

from __future__ import annotations

import math
import sys
import textwrap

import numpy as np
import pytest
from scipy import special

from hevar.meanfield.activations import (
    FAMILIES, SELU_ALPHA, SELU_LAMBDA, central_difference, list_activations, parse_activation,
)
from hevar.errors import UsageError

BUILTIN = list(FAMILIES) + ["leaky_relu:0.2", "elu:0.5"]

# Textbook (naive) formulas, valid for moderate z: the oracle for the stable implementations.
NAIVE = {
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu:0.2": lambda z: np.where(z > 0, z, 0.2 * z),
    "linear": lambda z: z,
    "tanh": np.tanh,
    "erf": special.erf,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "softplus": lambda z: np.log1p(np.exp(z)),
    "elu": lambda z: np.where(z > 0, z, np.exp(z) - 1),
    "elu:0.5": lambda z: np.where(z > 0, z, 0.5 * (np.exp(z) - 1)),
    "selu": lambda z: SELU_LAMBDA * np.where(z > 0, z, SELU_ALPHA * (np.exp(z) - 1)),
    "gelu": lambda z: 0.5 * z * (1 + special.erf(z / math.sqrt(2))),
    "silu": lambda z: z / (1 + np.exp(-z)),
    "mish": lambda z: z * np.tanh(np.log1p(np.exp(z))),
}


def _smooth_points(act, lo=-8.0, hi=8.0, n=161):
    z = np.linspace(lo, hi, n) + 0.0123  # avoid landing on a kink
    for k in act.kinks:
        z = z[np.abs(z - k) > 0.05]
    return z


@pytest.mark.parametrize("spec", list(NAIVE))
def test_phi_matches_textbook_formula(spec):
    act = parse_activation(spec)
    z = np.linspace(-20, 20, 401)
    np.testing.assert_allclose(act.phi(z), NAIVE[spec](z), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("spec", BUILTIN)
def test_dphi_matches_finite_difference(spec):
    act = parse_activation(spec)
    z = _smooth_points(act)
    h = 1e-3  # 4th-order central difference: truncation ~h⁴/30·|φ⁽⁵⁾|, rounding ~1e-13
    fd = (8 * (act.phi(z + h) - act.phi(z - h)) - (act.phi(z + 2 * h) - act.phi(z - 2 * h))) / (12 * h)
    np.testing.assert_allclose(act.dphi(z), fd, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("spec", BUILTIN)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept_and_no_overflow_at_extremes(spec, dtype):
    act = parse_activation(spec)
    big = float(np.finfo(dtype).max) / 4
    z = np.array([-big, -1e4, -800.0, -50.0, -1.0, 0.0, 1.0, 50.0, 800.0, 1e4, big], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        phi, dphi = act.phi(z), act.dphi(z)
    assert phi.dtype == dtype and dphi.dtype == dtype
    assert np.all(np.isfinite(phi)) and np.all(np.isfinite(dphi))
    # float32 agrees with float64 to float32 accuracy at moderate z
    zm = np.linspace(-6, 6, 97).astype(dtype)
    np.testing.assert_allclose(act.phi(zm), act.phi(zm.astype(np.float64)), rtol=2e-6, atol=2e-7)
    np.testing.assert_allclose(act.dphi(zm), act.dphi(zm.astype(np.float64)), rtol=2e-6, atol=2e-7)


def test_stable_formulations_keep_tails_right():
    z = np.array([-745.0, -40.0, 40.0, 1000.0])
    sp = parse_activation("softplus")
    np.testing.assert_allclose(sp.phi(z), [np.exp(-745.0), np.exp(-40.0), 40.0, 1000.0], rtol=1e-15)
    sig = parse_activation("sigmoid")
    np.testing.assert_allclose(sig.dphi(np.array([-40.0, 40.0])), np.exp(-40.0) * (1 - np.exp(-40.0)), rtol=1e-14)
    assert parse_activation("selu").phi(np.array([-1e6]))[0] == pytest.approx(-SELU_LAMBDA * SELU_ALPHA, rel=1e-15)


def test_homogeneous_flag_is_true_exactly_for_homogeneous_phi():
    z = np.linspace(-3, 3, 13)
    for spec in BUILTIN:
        act = parse_activation(spec)
        homogeneous = np.allclose(act.phi(3.7 * z), 3.7 * act.phi(z), rtol=1e-14, atol=0)
        assert act.homogeneous == homogeneous, spec


@pytest.mark.parametrize("spec", BUILTIN)
def test_name_round_trips_and_parsing_is_cached(spec):
    act = parse_activation(spec)
    assert parse_activation(act.name) is act
    assert parse_activation(act.name).name == act.name


def test_parameters_and_aliases():
    assert parse_activation("leaky_relu").name == "leaky_relu:0.01"
    assert parse_activation("leaky_relu:0.123456789").name == "leaky_relu:0.123456789"
    assert parse_activation("Leaky-ReLU:0.2").name == "leaky_relu:0.2"
    assert parse_activation("elu").name == "elu:1"
    assert parse_activation("swish") is parse_activation("silu")


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UsageError) as info:
        parse_activation("rleu")
    msg = str(info.value)
    assert msg.startswith("The 'act' parameter must be one of relu, leaky_relu, linear, tanh, erf,")
    assert msg.endswith("Got 'rleu' instead. Did you mean 'relu'?")
    assert info.value.param == "act"
    with pytest.raises(UsageError, match="Did you mean 'silu'"):
        parse_activation("swsh")


@pytest.mark.parametrize("spec, fragment", [
    ("leaky_relu:1.5", "slope must be a float in the range [0, 1). Got 1.5 instead."),
    ("elu:-1", "alpha must be a float in the range [0, inf). Got -1 instead."),
    ("leaky_relu:abc", "needs a number for slope. Got 'abc' instead."),
    ("relu:2", "takes at most 0 parameter(s)"),
    ("leaky_rleu:0.2", "Did you mean 'leaky_relu'?"),
])
def test_bad_parameters_are_usage_errors(spec, fragment):
    with pytest.raises(UsageError) as info:
        parse_activation(spec)
    assert fragment in str(info.value)


def test_listing_covers_every_family():
    rows = list_activations()
    names = [r["name"] for r in rows]
    assert names[:-1] == list(FAMILIES) and names[-1].startswith("MODULE:FUNCTION")
    by_name = {r["name"]: r for r in rows}
    assert by_name["relu"]["homogeneous"] and by_name["relu"]["closed_form"]
    assert not by_name["tanh"]["closed_form"] and not by_name["tanh"]["homogeneous"]
    assert by_name["erf"]["closed_form"] and by_name["gelu"]["closed_form"] and by_name["selu"]["closed_form"]
    assert by_name["leaky_relu"]["params"] == [{"name": "slope", "default": 0.01}]
    assert by_name["silu"]["aliases"] == ["swish"]
    assert all(r["summary"] for r in rows)


# --- user-defined activations -------------------------------------------------------------------


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    name = "hevar_test_user_acts"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        import numpy as np

        def soft(z):
            return np.tanh(z) + 0.1 * z

        def dsoft(z):
            return 1 - np.tanh(z) ** 2 + 0.1

        def bent(z):
            return np.where(z > 0.5, 2 * z - 0.5, z)
        bent.kinks = (0.5,)

        not_a_function = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_user_defined_with_and_without_derivative(user_module):
    given = parse_activation(f"{user_module}:soft:{user_module}:dsoft")
    numeric = parse_activation(f"{user_module}:soft")
    assert given.name == f"{user_module}:soft:{user_module}:dsoft" and given.user_defined
    z = np.linspace(-30, 30, 601)
    np.testing.assert_allclose(numeric.phi(z), np.tanh(z) + 0.1 * z, rtol=1e-15)
    np.testing.assert_allclose(given.dphi(z), 1 - np.tanh(z) ** 2 + 0.1, rtol=1e-15)
    # the documented accuracy of the 8th-order central difference
    np.testing.assert_allclose(numeric.dphi(z), given.dphi(z), rtol=0, atol=2e-13)
    assert numeric.dphi(z.astype(np.float32)).dtype == np.float32


def test_user_defined_kinks_are_used(user_module):
    act = parse_activation(f"{user_module}:bent")
    assert act.kinks == (0.5,)
    z = np.array([0.5 - 1e-3, 0.5 - 1e-9, 0.5, 0.5 + 1e-9, 0.5 + 1e-3, -3.0, 3.0])
    np.testing.assert_allclose(act.dphi(z), [1, 1, 2, 2, 2, 1, 2], rtol=1e-10)


def test_central_difference_accuracy_on_tanh():
    z = np.linspace(-10, 10, 1001)
    err = np.abs(central_difference(np.tanh, z) - (1 - np.tanh(z) ** 2))
    assert err.max() < 2e-13


@pytest.mark.parametrize("suffix, fragment", [
    ("nonexistent_mod_xyz:f", "importing module 'nonexistent_mod_xyz' failed"),
    ("{mod}:missing", "has no callable 'missing'"),
    ("{mod}:not_a_function", "has no callable 'not_a_function'"),
])
def test_user_defined_errors(user_module, suffix, fragment):
    with pytest.raises(UsageError) as info:
        parse_activation(suffix.format(mod=user_module))
    assert fragment in str(info.value)


# --- user-defined activations that are not float-array maps: one clean UsageError at parse time ---


@pytest.fixture
def bad_module(tmp_path, monkeypatch):
    name = "hevar_test_bad_acts"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        import math
        import sys

        import numpy as np

        calls = []

        def scalar_only(z):
            return math.tanh(z)

        def wrong_shape(z):
            calls.append(z.dtype)
            return np.tanh(z).ravel()[:3]

        def reduces(z):
            return np.sum(np.tanh(z))

        def complex_valued(z):
            return np.exp(1j * z)

        def strings(z):
            return np.array([["x"] * z.shape[1]] * z.shape[0])

        def log(z):
            return np.log(z)

        def exits(z):
            sys.exit(3)

        def good(z):
            return np.tanh(z)

        def step(z):
            return (z > 0).astype(np.int64)

        def wide(z):
            return np.tanh(z.astype(np.float64))
    """))
    (tmp_path / "hevar_test_broken_import.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield name
    for module in (name, "hevar_test_broken_import"):
        sys.modules.pop(module, None)


PROBE_FORMAT = "The 'act' parameter must be a MODULE:FUNCTION that maps a float array to a float array of the same shape."


@pytest.mark.parametrize("suffix, fragment", [
    ("{mod}:scalar_only", "(it raised TypeError: "),
    ("{mod}:wrong_shape", "(it returned shape (3,) for input shape (2, 4))"),
    ("{mod}:reduces", "(it returned shape () for input shape (2, 4))"),
    ("{mod}:complex_valued", "(it returned dtype complex128 for float64 input)"),
    ("{mod}:strings", "(it returned dtype <U1 for float64 input)"),
    ("{mod}:log", "(it returned nan at z = -3 (float64))"),
    ("{mod}:exits", "(it raised SystemExit: 3)"),
    ("{mod}:good:{mod}:scalar_only", "(the derivative scalar_only raised TypeError: "),
    ("{mod}:good:{mod}:log", "(the derivative log returned nan at z = -3 (float64))"),
    ("os:system", "(it raised TypeError: "),
    ("os:getcwd", "(it raised TypeError: "),
])
def test_user_defined_must_map_float_arrays(bad_module, suffix, fragment):
    text = suffix.format(mod=bad_module)
    with pytest.raises(UsageError) as info:
        parse_activation(text)
    message = str(info.value)
    assert message.startswith(f"{PROBE_FORMAT} Got '{text}' instead (") and message.endswith(").")
    assert fragment in message and "\n" not in message
    assert info.value.param == "act"


def test_user_defined_probe_is_all_that_runs(bad_module):
    """A rejected φ is called once, on the float64 probe, and never again."""
    calls = sys.modules.get(bad_module) or __import__(bad_module)
    calls.calls.clear()
    with pytest.raises(UsageError):
        parse_activation(f"{bad_module}:wrong_shape")
    assert calls.calls == [np.float64]


def test_user_defined_results_are_cast_to_the_input_dtype(bad_module):
    wide = parse_activation(f"{bad_module}:wide")  # computes in float64 whatever the input
    z32 = np.linspace(-3, 3, 7, dtype=np.float32)
    assert wide.phi(z32).dtype == np.float32 and wide.dphi(z32).dtype == np.float32
    np.testing.assert_allclose(wide.phi(z32), np.tanh(z32), rtol=1e-6)
    step = parse_activation(f"{bad_module}:step")  # ints are exact as floats
    assert step.phi(np.array([-1.0, 2.0])).tolist() == [0.0, 1.0] and step.phi(np.ones(2)).dtype == np.float64


def test_user_defined_import_failure_is_one_line(bad_module):
    with pytest.raises(UsageError) as info:
        parse_activation("hevar_test_broken_import:f")
    assert "importing module 'hevar_test_broken_import' failed (RuntimeError: boom second line)" in str(info.value)


@pytest.mark.parametrize("act, fragment", [
    ("os:system", "it raised TypeError"),
    ("os:getcwd", "it raised TypeError"),
    ("{mod}:scalar_only", "it raised TypeError"),
    ("{mod}:wrong_shape", "it returned shape (3,)"),
    ("{mod}:good:{mod}:log", "the derivative log returned nan"),
    ("hevar_test_broken_import:f", "importing module 'hevar_test_broken_import' failed"),
    ("{mod}:calls", "has no callable 'calls'"),
])
@pytest.mark.parametrize("command", ["sweep", "theory", "gains"])
def test_cli_rejects_bad_user_activation_cleanly(bad_module, tmp_path, act, fragment, command):
    from typer.testing import CliRunner

    from hevar.views.cli import app

    act = act.format(mod=bad_module)
    out = tmp_path / "run"
    argv = {"sweep": ["sweep", "--act", act, "--depth", "3", "--width", "4", "--seeds", "1", "--batch", "2",
                      "--no-plot", "--out", str(out)],
            "theory": ["theory", "--act", act],
            "gains": ["gains", "--act", act]}[command]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: The 'act' parameter ") and fragment in lines[0], lines
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == [
        n for n in before if n != "__pycache__"]
