"""The sweep configuration: one frozen object, validated once where it is born.

Values come from three layers, later ones winning: built-in defaults < a TOML preset
(``--config configs/smoke.toml``, keys are the option names) < flags given on the command line.
Every bad value raises :class:`~hevar.errors.UsageError` with one message format:
"The 'depth' parameter must be an int in the range [1, inf). Got 0 instead."
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from hevar.activations import parse_activation
from hevar.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep. Grids are tuples; every combination of them is a configuration."""

    act: tuple[str, ...] = ("relu",)  # activation specs, canonical ("leaky_relu:0.2")
    depth: tuple[int, ...] = (50,)  # L, number of weight layers
    width: tuple[int, ...] = (256,)  # N, units per layer (also the input dimension N_0)
    sigma_w2: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)  # σ_w²·N (units of 1/N)
    sigma_b2: tuple[float, ...] = (0.0,)  # σ_b², raw bias variance
    seeds: int = 8  # independent networks per configuration
    batch: int = 128  # B, inputs per network
    seed: int = 0  # base seed; every random stream derives from it
    dtype: str = "float64"  # float32 or float64 arithmetic in the engine

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# Option name as the user writes it → field name.
OPTION_NAMES = {
    "act": "act", "depth": "depth", "width": "width", "sigma-w2": "sigma_w2", "sigma-b2": "sigma_b2",
    "seeds": "seeds", "batch": "batch", "seed": "seed", "dtype": "dtype",
}
# Keys a preset may hold besides the sweep's own (they configure the run, not the science).
RUN_KEYS = ("out", "plot")


def _bad(name: str, what: str, got: Any) -> UsageError:
    shown = f"'{got}'" if isinstance(got, str) else repr(got)
    return UsageError(f"The '{name}' parameter must be {what}. Got {shown} instead.")


def _number(name: str, raw: Any, kind: type, lo: float, hi: float, lo_open: bool = False) -> int | float:
    interval = f"{'(' if lo_open else '['}{lo:g}, {'inf' if hi == math.inf else f'{hi:g}'})"
    what = f"{'an int' if kind is int else 'a float'} in the range {interval}"
    if isinstance(raw, bool):
        raise _bad(name, what, raw)
    if isinstance(raw, str):
        text = raw.strip()
        try:
            value = int(text) if kind is int else float(text)
        except ValueError:
            raise _bad(name, what, raw) from None
    elif isinstance(raw, (int, float)):
        value = raw
        if kind is int and (isinstance(raw, float) and not raw.is_integer()):
            raise _bad(name, what, raw)
        value = kind(raw) if math.isfinite(raw) else raw
    else:
        raise _bad(name, what, raw)
    if not (isinstance(value, (int, float)) and math.isfinite(value)) or value < lo or value >= hi \
            or (lo_open and value == lo):
        raise _bad(name, what, raw)
    return value


_RANGE = re.compile(r"^\s*([^:]+):([^:]+):([^:]+)\s*$")


def parse_grid(name: str, raw: Any, kind: type, lo: float, hi: float = math.inf,
               lo_open: bool = False, allow_range: bool = False) -> tuple:
    """A grid from a comma list (``"1,2,4"``), a TOML list, a single number, or — where
    ``allow_range`` — an inclusive ``start:stop:step`` range."""
    what_list = "a comma list" + (" or start:stop:step" if allow_range else "")
    if isinstance(raw, (list, tuple)):
        items = list(raw)
    elif isinstance(raw, str):
        match = _RANGE.match(raw) if allow_range else None
        if match:
            start, stop, step = (_number(name, t, float, -math.inf, math.inf) for t in match.groups())
            if not (step > 0 and stop >= start):
                raise _bad(name, f"start:stop:step with start <= stop and step > 0", raw)
            count = math.floor((stop - start) / step + 1e-9) + 1
            if count > 10_000:
                raise _bad(name, "a range of at most 10000 values", raw)
            items = [round(start + i * step, 12) for i in range(count)]
        elif ":" in raw and allow_range:
            raise _bad(name, "start:stop:step with three numbers", raw)
        else:
            items = raw.split(",")
            if any(not t.strip() for t in items):
                raise _bad(name, f"{what_list} of numbers with no empty items", raw)
    else:
        items = [raw]
    if not items:
        raise _bad(name, f"a non-empty {what_list}", raw)
    values = [_number(name, t, kind, lo, hi, lo_open) for t in items]
    return tuple(dict.fromkeys(values))  # drop repeats, keep order


def _acts(raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    if not items or any(not str(t).strip() for t in items):
        raise _bad("act", "a comma list of activation names with no empty items", raw)
    return tuple(dict.fromkeys(parse_activation(str(t)).name for t in items))


def _validate(values: Mapping[str, Any]) -> SweepConfig:
    v = dict(values)
    dtype = str(v["dtype"]).strip().lower()
    if dtype not in DTYPES:
        raise _bad("dtype", f"one of {', '.join(DTYPES)}", v["dtype"])
    return SweepConfig(
        act=_acts(v["act"]),
        depth=parse_grid("depth", v["depth"], int, 1, 100_001),
        width=parse_grid("width", v["width"], int, 1, 100_001),
        sigma_w2=parse_grid("sigma-w2", v["sigma_w2"], float, 0, math.inf, lo_open=True, allow_range=True),
        sigma_b2=parse_grid("sigma-b2", v["sigma_b2"], float, 0, math.inf, allow_range=True),
        seeds=_number("seeds", v["seeds"], int, 1, 100_001),
        batch=_number("batch", v["batch"], int, 1, 10_000_001),
        seed=_number("seed", v["seed"], int, 0, 2**63),
        dtype=dtype,
    )


def read_preset(path: Path) -> dict[str, Any]:
    """Read a TOML preset; its keys are option names (``sigma-w2`` or ``sigma_w2``)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise _bad("config", "an existing TOML file", str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"The 'config' parameter names a file that cannot be read: {path} ({exc}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"The 'config' parameter must be a valid TOML file. {path}: {exc}.") from None
    out: dict[str, Any] = {}
    known = sorted(OPTION_NAMES) + list(RUN_KEYS)
    for key, value in data.items():
        norm = key.replace("_", "-")
        if norm in OPTION_NAMES:
            out[OPTION_NAMES[norm]] = value
        elif norm in RUN_KEYS:
            out[norm] = value
        else:
            raise UsageError(
                f"The 'config' parameter has an unknown key '{key}' in {path}; "
                f"allowed keys are {', '.join(known)}."
            )
    return out


def build_config(flags: Mapping[str, Any], preset: Mapping[str, Any] | None = None) -> SweepConfig:
    """Defaults < ``preset`` < ``flags`` (flags that are None were not given)."""
    values = SweepConfig().to_dict()
    for source in (preset or {}, flags):
        values.update({k: v for k, v in source.items() if v is not None and k in values})
    return _validate(values)
