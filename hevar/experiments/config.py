"""The sweep configuration: one frozen object, validated once where it is born.

Values come from three layers, later ones winning: built-in defaults < a TOML preset
(``--config configs/smoke.toml``, keys are the option names) < flags given on the command line.
Every bad value raises :class:`~hevar.errors.UsageError` with one message format:
"The 'depth' parameter must be an int in the range [1, 100001). Got '0' instead."
"""

from __future__ import annotations

import dataclasses
import decimal
import difflib
import math
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from hevar.engine import init
from hevar.meanfield.activations import parse_activation
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
    widths: str = ""  # width profile N_0..N_L (hevar.engine.init.parse_widths); "" = constant widths from `width`
    mode: tuple[str, ...] = ("fan_in",)  # fan modes: σ_{w,l}² = σ_w²·N / N_fan(l) (hevar.engine.init.MODES)
    dist: tuple[str, ...] = ("normal",)  # weight distributions (hevar.engine.init.DISTS)
    arch: str = "mlp"  # architecture spec, canonical (hevar.blocks.network): the block type of layers 2..L
    branch_scale: str = "1"  # residual branch scale α, a number or an expression in L ("1/sqrt(L)"), dimensionless
    # Opt-in measurements (issue 14; hevar.experiments.pairsweep). Off by default: then nothing of them is recorded,
    # no column or file is added and every config_id is what it was.
    input_corr: tuple[float, ...] = ()  # input correlations c⁰ of the measured pairs; () = no pair measurement
    n_pairs: int = 32  # P, input pairs per seed and c⁰ (used only with input_corr)
    jacobian: int = 0  # inputs per seed whose input–output Jacobian spectrum is measured; 0 = none
    # The input's convention (issue 13): recorded, and in theory and engine, only when not the default.
    q_in: float = 1.0  # E[x²] of the input entries
    input_preactivation: bool = False  # feed φ(x) with x ~ N(0, q_in) to layer 1: q¹ = s·V(q_in) + σ_b²
    weight_std: float = 0.0  # > 0: every layer's raw weight std (mode "fixed", σ_w²·N = std²·N_0); 0 = off

    def to_dict(self) -> dict[str, Any]:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if self.widths:  # `width` then only mirrors N_0; leaving it out keeps the dict a valid input
            del d["width"]
        for key in ("arch", "branch_scale", "input_corr", "jacobian", "q_in", "input_preactivation",
                    "weight_std"):  # recorded only when set: older manifests stay the same
            if d[key] == getattr(SweepConfig, key) or (key == "input_corr" and not d[key]):
                del d[key]
        if not self.input_corr:  # the pair count means something only beside input_corr
            del d["n_pairs"]
        return d

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """Every field name (``to_dict`` leaves out the ones at their defaults that older manifests lack)."""
        return tuple(f.name for f in dataclasses.fields(cls))


# Option name as the user writes it → field name.
OPTION_NAMES = {
    "act": "act", "depth": "depth", "width": "width", "sigma-w2": "sigma_w2", "sigma-b2": "sigma_b2",
    "seeds": "seeds", "batch": "batch", "seed": "seed", "dtype": "dtype",
    "widths": "widths", "mode": "mode", "dist": "dist", "arch": "arch", "branch-scale": "branch_scale",
    "input-corr": "input_corr", "n-pairs": "n_pairs", "jacobian": "jacobian",
    "q-in": "q_in", "input-preactivation": "input_preactivation", "weight-std": "weight_std",
}
# Keys a preset may hold besides the sweep's own (they configure the run, not the science).
RUN_KEYS = ("out", "plot")


def _bad(name: str, what: str, got: Any) -> UsageError:
    shown = f"'{got}'" if isinstance(got, str) else repr(got)
    return UsageError(f"The '{name}' parameter must be {what}. Got {shown} instead.", param=name)


def _number(name: str, raw: Any, kind: type, lo: float, hi: float, lo_open: bool = False) -> int | float:
    """One number of type ``kind`` in [lo, hi) (or (lo, hi)), from text or a TOML/Python number."""
    def bound(x: float) -> str:
        return "inf" if x == math.inf else "-inf" if x == -math.inf else str(int(x)) if kind is int else f"{x:g}"

    interval = f"{'(' if lo_open else '['}{bound(lo)}, {bound(hi)})"
    what = f"{'an int' if kind is int else 'a float'} in the range {interval}"
    if isinstance(raw, bool):  # bool is an int to Python, never to the user
        raise _bad(name, what, raw)
    try:
        if isinstance(raw, str):
            text = raw.strip()
            value = int(text) if kind is int else float(text)
        elif isinstance(raw, (int, float)):
            if kind is int and isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            value = kind(raw)
        else:
            raise ValueError
        finite = math.isfinite(value)
    except (ValueError, OverflowError):  # not a number, a non-integral int, or beyond float64
        raise _bad(name, what, raw) from None
    if not finite or value < lo or value >= hi or (lo_open and value == lo):
        raise _bad(name, what, raw)
    return value


_RANGE = re.compile(r"^\s*([^:]+):([^:]+):([^:]+)\s*$")


MAX_GRID = 10_000  # values one grid may hold


def parse_grid(name: str, raw: Any, kind: type, lo: float, hi: float = math.inf,
               lo_open: bool = False, allow_range: bool = False) -> tuple:
    """A grid from a comma list (``"1,2,4"``), a TOML list, a single number, or — where
    ``allow_range`` — an inclusive ``start:stop:step`` range.

    Ranges are computed in decimal arithmetic from the text, so ``0.1:0.3:0.1`` is exactly
    (0.1, 0.2, 0.3) and its stop is included whenever it lies on the grid. Values are returned in
    the given order (ranges increasing), repeats dropped.
    """
    what_list = "a comma list" + (" or start:stop:step" if allow_range else "")
    if isinstance(raw, (list, tuple)):
        items = list(raw)
    elif isinstance(raw, str):
        match = _RANGE.match(raw) if allow_range else None
        if match:
            items = _range(name, raw, match.groups())
        elif ":" in raw and allow_range:
            raise _bad(name, "start:stop:step with three numbers", raw)
        else:
            items = raw.split(",")
            if any(not t.strip() for t in items):
                raise _bad(name, f"{what_list} of numbers with no empty items", raw)
    else:
        items = [raw]
    if not items:
        raise _bad(name, f"a non-empty list ({what_list})", raw)
    if len(items) > MAX_GRID:
        raise _bad(name, f"a grid of at most {MAX_GRID} values", f"{len(items)} values")
    values = [_number(name, t, kind, lo, hi, lo_open) for t in items]
    return tuple(dict.fromkeys(values))  # drop repeats, keep order


def _range(name: str, raw: str, parts: tuple[str, str, str]) -> list[float]:
    for t in parts:  # each part must be a finite float before any arithmetic
        try:
            _number(name, t, float, -math.inf, math.inf)
        except UsageError:
            raise _bad(name, "start:stop:step with three finite numbers", raw) from None
    try:
        with decimal.localcontext() as ctx:
            ctx.prec = 50
            start, stop, step = (decimal.Decimal(t.strip()) for t in parts)
            if not (step > 0 and stop >= start):
                raise _bad(name, "start:stop:step with start <= stop and step > 0", raw)
            steps = (stop - start) / step
            if steps >= MAX_GRID:
                raise _bad(name, f"a range of at most {MAX_GRID} values", raw)
            return [float(start + i * step) for i in range(int(steps) + 1)]
    except (ArithmeticError, ValueError):  # decimal.InvalidOperation and kin: not a usable number
        raise _bad(name, "start:stop:step with three numbers", raw) from None


def _acts(raw: Any) -> tuple[str, ...]:
    what = "a comma list of activation names with no empty items"
    items = raw if isinstance(raw, (list, tuple)) else raw.split(",") if isinstance(raw, str) else None
    if not items or any(not isinstance(t, str) or not t.strip() for t in items):
        raise _bad("act", what, raw)
    try:
        return tuple(dict.fromkeys(parse_activation(t).name for t in items))
    except UsageError as exc:
        raise UsageError(str(exc), param="act") from None


# One name, form and range for each option that several commands share (`sweep`, `theory`, `gains`).
MAX_DEPTH = 100_000  # L: the deepest network any command accepts
MAX_COUNT = 100_000  # seeds and worker processes


def parse_depth(raw: Any) -> int:
    """One depth L (``theory``, ``gains``); ``sweep`` takes a grid of them in the same range."""
    return _number("depth", raw, int, 1, MAX_DEPTH + 1)


def parse_sigma_w2(raw: Any) -> float:
    """One σ_w²·N, in units of 1/N: a float in (0, inf)."""
    return _number("sigma-w2", raw, float, 0, math.inf, lo_open=True)


def parse_sigma_b2(raw: Any) -> float:
    """One σ_b² (raw): a float in [0, inf)."""
    return _number("sigma-b2", raw, float, 0, math.inf)


def parse_jobs(raw: Any) -> int:
    """Local worker processes; 0 means one per core."""
    return _number("jobs", raw, int, 0, MAX_COUNT + 1)


def parse_acts(raw: Any, one: str | None = None) -> tuple[str, ...]:
    """Canonical activation specs from a comma list; with ``one`` (the command's name), exactly one."""
    acts = _acts(raw)
    if one is not None and len(acts) != 1:
        raise _bad("act", f"one activation (`hevar {one}` takes one; `hevar gains` or `hevar sweep` take a comma "
                   "list)", raw)
    return acts


def _choices(name: str, raw: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A comma list (or TOML list) of names from ``allowed``, repeats dropped."""
    items = raw if isinstance(raw, (list, tuple)) else raw.split(",") if isinstance(raw, str) else None
    if not items or any(not isinstance(t, str) or t.strip() not in allowed for t in items):
        raise _bad(name, f"a comma list of {', '.join(allowed)}", raw)
    return tuple(dict.fromkeys(t.strip() for t in items))


def _resolve_widths(values: dict[str, Any], origin: Mapping[str, str]) -> dict[str, Any]:
    """Settle ``widths`` against ``width`` and ``depth`` (``origin``: key → "preset" or "flags").

    ``--widths`` and ``--width`` are exclusive when given at the same level; a flag overrides the
    other one set in a preset. ``constant:N`` becomes ``width = N``. An explicit list fixes the
    depth (a ``--depth`` given beside it must agree). ``width`` then holds N_0.
    """
    raw = values.get("widths")
    if raw is None or raw == "" or raw == []:
        values["widths"] = ""
        return values
    w_from, ws_from = origin.get("width"), origin.get("widths")
    if w_from is not None and w_from == ws_from:
        shown = lambda x: ",".join(map(str, x)) if isinstance(x, (list, tuple)) else str(x)  # noqa: E731
        raise UsageError(f"The 'widths' parameter must be given without 'width' (--widths sets every layer's "
                         f"width, --width a constant one). Got widths='{shown(raw)}' and width='{shown(values['width'])}' "
                         f"instead.", param="widths")
    if w_from == "flags" and ws_from == "preset":  # the flag wins
        values["widths"] = ""
        return values
    spec = init.parse_widths(raw)
    if spec.startswith("constant:"):
        values.update(width=(int(spec.partition(":")[2]),), widths="")
        return values
    depth = init.profile_depth(spec)
    if depth is not None:
        if origin.get("depth") is not None and not (origin["depth"] == "preset" and ws_from == "flags"):
            given = parse_grid("depth", values["depth"], int, 1, MAX_DEPTH + 1)
            if given != (depth,):
                raise _bad("depth", f"{depth}, the number of layers of --widths {spec}, or left out",
                           values["depth"] if isinstance(values["depth"], str) else ",".join(map(str, given)))
        values["depth"] = (depth,)
    values.update(width=(init.layer_widths(spec, depth or 1)[0],), widths=spec)
    return values


def _validate(values: Mapping[str, Any]) -> SweepConfig:
    v = dict(values)
    dtype = str(v["dtype"]).strip().lower()
    if dtype not in DTYPES:
        raise _bad("dtype", f"one of {', '.join(DTYPES)}", v["dtype"])
    cfg = SweepConfig(
        act=_acts(v["act"]),
        depth=parse_grid("depth", v["depth"], int, 1, MAX_DEPTH + 1),
        width=parse_grid("width", v["width"], int, 1, 100_001),
        sigma_w2=parse_grid("sigma-w2", v["sigma_w2"], float, 0, math.inf, lo_open=True, allow_range=True),
        sigma_b2=parse_grid("sigma-b2", v["sigma_b2"], float, 0, math.inf, allow_range=True),
        seeds=_number("seeds", v["seeds"], int, 1, MAX_COUNT + 1),
        batch=_number("batch", v["batch"], int, 1, 10_000_001),
        seed=_number("seed", v["seed"], int, 0, 2**63),
        dtype=dtype,
        widths=str(v.get("widths") or ""),
        mode=_choices("mode", v["mode"], init.MODES),
        dist=_choices("dist", v["dist"], init.DISTS),
    )
    arch, branch_scale = _arch(v, cfg.depth)
    cfg = dataclasses.replace(cfg, arch=arch, branch_scale=branch_scale)
    cfg = dataclasses.replace(cfg, **_opt_in(v, cfg))
    return dataclasses.replace(cfg, **_input_convention(v, cfg))


def effective_q_in(config: SweepConfig, act) -> float:
    """The unactivated input second moment that gives the same q¹: q_in, or V(q_in) = E[φ(x)²] for a
    pre-activation input (``act`` an :class:`~hevar.meanfield.activations.Activation`)."""
    q_in = float(getattr(config, "q_in", 1.0))
    if not getattr(config, "input_preactivation", False):
        return q_in
    from hevar.meanfield import theory

    return float(theory.V(act, q_in))


def _input_convention(v: Mapping[str, Any], cfg: SweepConfig) -> dict[str, Any]:
    """``q_in`` (a float in (0, inf)), ``input_preactivation`` (a bool) and ``weight_std`` (checked
    and applied in :func:`build_config`). The pair and Jacobian measurements assume today's input."""
    q_in = _number("q-in", v.get("q_in", 1.0), float, 0, math.inf, lo_open=True)
    pre = v.get("input_preactivation", False)
    if isinstance(pre, str) and pre.strip().lower() in ("true", "false"):
        pre = pre.strip().lower() == "true"
    if not isinstance(pre, bool):
        raise _bad("input-preactivation", "true or false", pre if isinstance(pre, str) else repr(pre))
    if (q_in != 1.0 or pre) and (cfg.input_corr or cfg.jacobian):
        raise _bad("q-in" if q_in != 1.0 else "input-preactivation",
                   "left out with --input-corr or --jacobian (pairs and Jacobians are measured from inputs with "
                   "E[x²] = 1, not activated)", str(v.get("q_in")) if q_in != 1.0 else "true")
    return dict(q_in=float(q_in), input_preactivation=pre, weight_std=float(v.get("weight_std") or 0.0))


def _apply_weight_std(values: dict[str, Any], origin: Mapping[str, str]) -> None:
    """``--weight-std STD``: one raw weight std for every layer (He et al. 2015's 0.01), run as mode
    ``fixed`` (σ_{w,l}² = σ_w²·N / N_0) at σ_w²·N = STD²·N_0; it replaces --sigma-w2 and --mode."""
    raw = values.get("weight_std")
    if raw is None or (type(raw) in (int, float) and raw == 0):  # off (the default; a preset's 0); "" is not
        return
    std = _number("weight-std", raw, float, 0, math.inf, lo_open=True)
    widths = parse_grid("width", values["width"], int, 1, 100_001)
    if len(widths) != 1:
        raise _bad("width", "one width with --weight-std (σ_w²·N = STD²·N_0 needs one N_0)",
                   values["width"] if isinstance(values["width"], str) else ",".join(map(str, widths)))
    if not 0 < std * std * widths[0] < math.inf:  # STD² under- or overflows: not a weight variance
        raise _bad("weight-std", f"a float in the range (0, inf) whose square times N_0 = {widths[0]} is a positive "
                   "finite σ_w²·N", raw)
    implied = {"sigma_w2": (std * std * widths[0],), "mode": ("fixed",)}
    for name, field in (("sigma-w2", "sigma_w2"), ("mode", "mode")):
        if field in origin:  # a manifest being resumed records the values --weight-std implies: those agree
            given = parse_grid(name, values[field], float, 0, math.inf, lo_open=True, allow_range=True) \
                if field == "sigma_w2" else _choices(name, values[field], init.MODES)
            if given != implied[field]:
                raise _bad(name, "left out with --weight-std (it sets every layer's variance to STD²)",
                           values[field] if isinstance(values[field], str) else str(values[field]))
    values.update(weight_std=std, mode="fixed", sigma_w2=implied["sigma_w2"])


MAX_PAIRS = 100_000  # --n-pairs
MAX_JACOBIAN_INPUTS = 10_000  # --jacobian


def _opt_in(v: Mapping[str, Any], cfg: SweepConfig) -> dict[str, Any]:
    """``input_corr``, ``n_pairs`` and ``jacobian``: the opt-in pair and Jacobian measurements.

    ``input_corr`` is a grid of correlations in [-1, 1) (a comma list or start:stop:step; empty or
    absent: off), ``n_pairs`` an int in [1, 100000] that may be given only with ``input_corr``,
    ``jacobian`` an int in [0, 10000] (0: off). Both measurements run the plain MLP (``--arch mlp``),
    and the Jacobian's exact SVD needs every layer width ≤ 1024 (:data:`hevar.engine.jacobian.MAX_WIDTH`).
    """
    from hevar.engine.jacobian import MAX_WIDTH

    raw = v.get("input_corr")
    off = raw is None or (isinstance(raw, (str, list, tuple)) and not (raw.strip() if isinstance(raw, str) else raw))
    input_corr = () if off else parse_grid("input-corr", raw, float, -1.0, 1.0, allow_range=True)
    n_pairs = _number("n-pairs", v.get("n_pairs", SweepConfig.n_pairs), int, 1, MAX_PAIRS + 1)
    if not input_corr and n_pairs != SweepConfig.n_pairs:
        raise _bad("n-pairs", "left out without --input-corr (it is the number of input pairs per seed and input "
                   "correlation)", str(v.get("n_pairs")))
    jacobian = _number("jacobian", v.get("jacobian", SweepConfig.jacobian), int, 0, MAX_JACOBIAN_INPUTS + 1)
    for name, on, shown in (("input-corr", bool(input_corr), raw), ("jacobian", jacobian > 0, v.get("jacobian"))):
        if on and cfg.arch != SweepConfig.arch:
            raise _bad(name, f"left out for --arch {cfg.arch} (pairs and Jacobians are measured for --arch mlp only)",
                       shown if isinstance(shown, str) else str(shown))
    if input_corr:
        n0 = min(init.layer_widths(cfg.widths, d)[0] for d in cfg.depth) if cfg.widths else min(cfg.width)
        if n0 < 2:
            raise _bad("input-corr", "left out for an input dimension N_0 = 1 (a pair of inputs with a chosen "
                       "correlation needs N_0 >= 2)", raw if isinstance(raw, str) else str(raw))
    if jacobian:
        widest = max(max(init.layer_widths(cfg.widths, d)) for d in cfg.depth) if cfg.widths else max(cfg.width)
        if widest > MAX_WIDTH:
            raise _bad("jacobian", f"0 (left out) for networks wider than {MAX_WIDTH} units (the exact SVD of the "
                       f"Jacobian is done up to N = {MAX_WIDTH}; the widest layer here has {widest})",
                       str(v.get("jacobian")))
    return dict(input_corr=input_corr, n_pairs=n_pairs, jacobian=jacobian)


def _arch(v: Mapping[str, Any], depths: tuple[int, ...]) -> tuple[str, str]:
    """The canonical (arch, branch_scale); a residual stack needs N_1 = ... = N_L, and a branch
    scale other than 1 needs a residual stack."""
    from hevar.blocks import network

    spec = network.parse_arch(v.get("arch", SweepConfig.arch))
    raw_scale = v.get("branch_scale", SweepConfig.branch_scale)
    scale = network.parse_branch_scale(raw_scale, depths)
    if not spec.residual and scale != SweepConfig.branch_scale:
        raise _bad("branch-scale", f"left out (or 1) for --arch {spec.text}, which has no residual branch",
                   raw_scale if isinstance(raw_scale, str) else str(raw_scale))
    profile = str(v.get("widths") or "")
    if spec.residual and profile:
        for d in depths:
            widths = init.layer_widths(profile, d)
            if len(set(widths[1:])) > 1:
                raise _bad("widths", f"equal from N_1 on for --arch {spec.text} (a residual block adds its input "
                           "to its output)", profile)
    return spec.text, scale


class Preset(dict):
    """The values of a TOML preset, keyed by field name, remembering the file they came from."""

    path: Path | None = None


def read_preset(path: Path) -> Preset:
    """Read a TOML preset; its keys are option names (``sigma-w2`` or ``sigma_w2``).

    The sweep's own keys are validated later, merged with the flags, by :func:`build_config`;
    the run keys ``out`` (a folder name) and ``plot`` (a boolean) are checked here.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise _bad("config", "an existing TOML file", str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"The 'config' parameter must be a readable TOML file. Got '{path}' instead ({reason}).",
                         param="config") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"The 'config' parameter must be a valid TOML file. Got '{path}' instead ({exc}).",
                         param="config") from None
    out = Preset()
    out.path = path
    known = sorted(OPTION_NAMES) + list(RUN_KEYS)
    seen: dict[str, str] = {}
    for key, value in data.items():
        norm = key.replace("_", "-")
        if norm not in OPTION_NAMES and norm not in RUN_KEYS:
            close = difflib.get_close_matches(norm, known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise UsageError(
                f"The 'config' parameter has an unknown key '{key}' in {path}; "
                f"allowed keys are {', '.join(known)}.{hint}", param="config"
            )
        if norm in seen:
            raise UsageError(f"The 'config' parameter sets '{norm}' twice in {path} ('{seen[norm]}' and '{key}').",
                             param="config")
        seen[norm] = key
        if norm == "out" and not (isinstance(value, str) and value.strip()):
            raise UsageError(f"{path}: " + str(_bad("out", "a non-empty folder name (a TOML string)", value)),
                             param="out")
        if norm == "plot" and not isinstance(value, bool):
            raise UsageError(f"{path}: " + str(_bad("plot", "true or false", value)), param="plot")
        out[OPTION_NAMES.get(norm, norm)] = value
    return out


def build_config(flags: Mapping[str, Any], preset: Mapping[str, Any] | None = None) -> SweepConfig:
    """Defaults < ``preset`` < ``flags`` (flags that are None were not given).

    A bad value that came from a preset read by :func:`read_preset` is reported with its file.
    """
    values = {**asdict(SweepConfig()), **SweepConfig().to_dict()}
    from_preset: set[str] = set()
    origin: dict[str, str] = {}
    for source in (preset or {}, flags):
        given = {k: v for k, v in source.items() if v is not None and k in values}
        values.update(given)
        from_preset = from_preset - set(given) | (set(given) if source is preset else set())
        origin.update(dict.fromkeys(given, "preset" if source is preset else "flags"))
    try:
        values = _resolve_widths(values, origin)
        _apply_weight_std(values, origin)
        return _validate(values)
    except UsageError as exc:
        path = getattr(preset, "path", None)
        field = OPTION_NAMES.get(exc.param or "", exc.param)
        if path is None or field not in from_preset:
            raise
        raise UsageError(f"{path}: {exc}", param=exc.param) from None

