"""The run folder: the only module that reads and writes files.

A run folder holds

- ``manifest.json``  resolved configuration, argv, versions, seeds, times, attempts;
- ``points/``        one ``.npz`` per finished work unit, written atomically as it finishes
                     (this is what ``--resume`` reads back);
- ``layers.csv``     one row per configuration and layer;
- ``summary.csv``    one row per configuration;
- ``theory.csv``     χ₁ on a fine σ_w²·N grid per (activation, σ_b²), for the stability figure;
- ``plots/``         PNGs rendered from the CSVs alone.

Every file is written to a temporary name in the same folder and renamed into place, so a reader
never sees a half-written file. Column names are a contract, documented in the README.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import re
import shlex
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from hevar.errors import Fault, UsageError
from hevar.results import crossings

FORMAT_VERSION = 1

KEY_COLUMNS = ("activation", "depth", "width", "sigma_w2", "sigma_w2_n", "sigma_b2")

LAYER_COLUMNS = ("config_id",) + KEY_COLUMNS + (
    "layer", "layer_width", "layer_sigma_w2",
    "n_seeds",
    "q", "q_lo", "q_hi", "q_theory",
    "q_tilde", "q_tilde_lo", "q_tilde_hi", "q_tilde_theory",
    "grad_norm2", "grad_norm2_lo", "grad_norm2_hi", "grad_norm2_theory",
    "log10_q", "log10_q_theory",
    "log10_q_tilde", "log10_q_tilde_lo", "log10_q_tilde_hi", "log10_q_tilde_theory",
    "log10_grad_norm2", "log10_grad_norm2_lo", "log10_grad_norm2_hi", "log10_grad_norm2_theory",
    "widths", "mode", "dist",
    "var_ln_q_tilde", "var_ln_q_tilde_theory", "q_tilde_m2_ratio", "q_tilde_m2_ratio_theory", "beta_to_top",
    "thm11_ratio", "thm11_ratio_lo", "thm11_ratio_hi", "thm11_ratio_se",
)

SUMMARY_COLUMNS = ("config_id", "curve_id") + KEY_COLUMNS + (
    "n_seeds",
    "chi_hat", "chi_hat_se", "chi_theory", "chi1", "z",
    "fit_first_layer", "fit_last_layer",
    "log10_q_tilde_ratio", "log10_q_tilde_ratio_theory",
    "sigma_w2_n_crit", "critical_kind",
    "status",
    "widths", "mode", "dist", "weight_var_realised_ratio",
    "beta", "var_ln_q_tilde_first", "var_ln_q_tilde_first_theory",
)

# seeds.csv: one row per configuration, seed and layer; log₁₀ of the per-seed measurements.
SEED_COLUMNS = ("config_id",) + KEY_COLUMNS + (
    "widths", "mode", "dist", "seed_index", "layer", "layer_width", "layer_sigma_w2",
    "log10_q", "log10_q_tilde", "log10_grad_norm2", "log10_delta_norm2", "log10_act_norm2", "status",
)

THEORY_COLUMNS = ("activation", "sigma_b2", "sigma_w2_n", "chi1", "q_star")

# crossings.csv: one row per stability curve, where χ̂ crosses 1 (hevar.results.crossings).
CROSSING_COLUMNS = crossings.COLUMNS

# spectra.csv (``--jacobian``): per configuration, seed and quantile level, the squared singular values
# of the input–output Jacobian (hevar.experiments.pairsweep).
SPECTRA_COLUMNS = ("config_id",) + KEY_COLUMNS + (
    "widths", "mode", "dist", "seed_index", "quantile", "sv2", "log10_sv2",
)

# signalprop.csv (stacks with residual blocks): per configuration and block, Brock et al.'s channel mean²,
# channel variance and residual branch variance beside theory (hevar.experiments.signalprop).
_SP = ("channel_mean2", "channel_var", "branch_var")
SIGNALPROP_COLUMNS = ("config_id",) + KEY_COLUMNS + (
    "widths", "mode", "dist", "layer", "layer_width", "batch", "n_seeds",
) + tuple(c for q in _SP for c in (q, f"{q}_lo", f"{q}_hi", f"{q}_theory")) + tuple(
    c for q in _SP for c in (f"log10_{q}", f"log10_{q}_theory")) + ("stream_corr_theory",)

# The run's tables: name → (file, columns). The Python API's Run has one DataFrame per entry.
TABLES = {
    "layers": ("layers.csv", LAYER_COLUMNS),
    "summary": ("summary.csv", SUMMARY_COLUMNS),
    "theory": ("theory.csv", THEORY_COLUMNS),
    "seeds": ("seeds.csv", SEED_COLUMNS),
    "crossings": ("crossings.csv", CROSSING_COLUMNS),
    "spectra": ("spectra.csv", SPECTRA_COLUMNS),
    "signalprop": ("signalprop.csv", SIGNALPROP_COLUMNS),
}


def _optional_columns() -> dict[str, tuple[str, ...]]:
    from hevar.experiments import pairsweep as p

    return {"layers": p.PAIR_LAYER_COLUMNS, "summary": p.PAIR_SUMMARY_COLUMNS + p.JACOBIAN_SUMMARY_COLUMNS,
            "seeds": p.PAIR_SEED_COLUMNS, "spectra": ("input_corr",)}


def table_columns(name: str, rows: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The columns table ``name`` is written with: those of :data:`TABLES`, then the opt-in columns
    (``--input-corr``, ``--jacobian``) that its rows carry, appended in a fixed order. Without the
    options the rows carry none, so the file is byte for byte what it was."""
    base = TABLES[name][1]
    extra = _optional_columns().get(name, ())
    present = {c for c in extra if rows and c in rows[0]}
    return base + tuple(c for c in extra if c in present)

STRING_COLUMNS = frozenset({"config_id", "curve_id", "activation", "critical_kind", "status", "widths", "mode", "dist", "arch",
                            "kind"})


# --- atomic writes -----------------------------------------------------------------------------


_UMASK = os.umask(0)
os.umask(_UMASK)


def io_fault(exc: OSError, path: Any, doing: str = "write") -> Fault:
    """An OSError as one line: what could not be done to which file, and why."""
    code = errno.errorcode.get(exc.errno or 0)
    reason = exc.strerror or str(exc) or type(exc).__name__
    return Fault(f"Cannot {doing} {path}: {reason}{f' ({code})' if code else ''}.")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    The bytes go to a hidden ``.NAME.*.tmp`` in the same folder, are synced, and renamed over
    ``path``. On any failure the temporary file is removed and an OSError (a full disk, a
    read-only folder) becomes a :class:`~hevar.errors.Fault` naming the file; a write killed outright
    leaves the temporary file, which :func:`remove_leftovers` clears on the next run.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                Path(tmp).unlink(missing_ok=True)
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise io_fault(exc, path) from None
        raise


_LEFTOVER = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")  # write_atomic's temporary names (mkstemp's random middle)


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Remove the temporary files of atomic writes a killed process left in ``run_dir``, its
    ``points/`` and ``plots/`` (only hevar's own hidden ``.NAME.*.tmp`` names). Call it holding the
    folder's lock, so that no live write is touched. Returns what was removed."""
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / POINTS, Path(run_dir) / "plots"):
        try:
            entries = list(folder.iterdir()) if folder.is_dir() else []
        except OSError:
            continue
        for entry in entries:
            if _LEFTOVER.match(entry.name) and entry.is_file():
                try:
                    entry.unlink()
                    removed.append(entry)
                except OSError:
                    pass
    return removed


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return repr(v) if math.isfinite(v) else ""  # non-finite is "no value": empty cell
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value)


def csv_bytes(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    """``rows`` (dicts keyed by column) as the bytes of a hevar CSV; missing and non-finite values are empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_format(row.get(c)) for c in columns])
    return buf.getvalue().encode()


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``rows`` atomically as :func:`csv_bytes` formats them."""
    write_atomic(Path(path), csv_bytes(columns, rows))


def write_tables(run_dir: Path, tables: Mapping[str, Iterable[Mapping[str, Any]]]) -> None:
    """Write each table of :data:`TABLES` that ``tables`` holds into ``run_dir``."""
    for name, rows in tables.items():
        rows = list(rows)
        write_csv(Path(run_dir) / TABLES[name][0], table_columns(name, rows), rows)


def read_frame(source: Path | bytes):
    """A hevar CSV (a path, or the bytes :func:`csv_bytes` made) as a pandas DataFrame: empty cells
    are NaN in numeric columns, the string columns stay strings. One reader for in-memory and
    on-disk results, so both give equal frames."""
    import pandas as pd

    what = "table" if isinstance(source, bytes) else f"'{source}'"
    try:
        text = source.decode() if isinstance(source, bytes) else Path(source).read_text()
        if text and not text.endswith("\n"):
            raise UsageError(f"{what} is damaged: truncated (its last line is cut off).")
        header = next(csv.reader(io.StringIO(text)), [])
        return pd.read_csv(io.StringIO(text), dtype={c: str for c in header if c in STRING_COLUMNS},
                           keep_default_na=False, na_values={c: [""] for c in header if c not in STRING_COLUMNS})
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UsageError(f"Cannot read {what} as a hevar table ({exc}).") from None


def json_safe(obj: Any) -> Any:
    """Strict JSON: nan → null, ±inf → "inf"/"-inf" (q* = inf means divergence, not a missing value)."""
    if isinstance(obj, (float, np.floating)) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    write_atomic(Path(path), (json.dumps(obj, indent=2, default=str) + "\n").encode())


# --- reading -----------------------------------------------------------------------------------


def read_table(path: Path, required: Sequence[str] = (), nonempty: bool = False) -> dict[str, np.ndarray]:
    """Read a hevar CSV into columns: numeric columns as float arrays (empty cell → nan),
    string columns as object arrays. Raises :class:`UsageError` if the file is missing,
    unreadable, or lacks a ``required`` column, or (``nonempty``: a table hevar writes only with
    rows) has a header and no rows."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"The run folder is missing '{path.name}'. Expected it at {path}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"Cannot read '{path}': {exc}.") from None
    if text and not text.endswith("\n"):  # csv_bytes ends every line, the last one too
        raise UsageError(f"'{path}' is damaged: truncated (its last line is cut off).")
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise UsageError(f"'{path}' is empty; expected a CSV header.") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise UsageError(f"'{path}' is not a hevar table: missing column(s) {', '.join(missing)}.")
    rows = list(reader)
    if nonempty and not rows:
        raise UsageError(f"'{path}' is damaged: it has a header and no rows (hevar writes it only with rows).")
    if any(len(r) != len(header) for r in rows):
        bad = next(i for i, r in enumerate(rows, start=2) if len(r) != len(header))
        raise UsageError(f"'{path}' is malformed: line {bad} has the wrong number of fields.")
    table: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        cells = [r[j] for r in rows]
        if name in STRING_COLUMNS:
            table[name] = np.array(cells, dtype=object)
            continue
        try:
            table[name] = np.array([float(c) if c != "" else np.nan for c in cells], dtype=float)
        except ValueError:
            raise UsageError(f"'{path}' is malformed: column '{name}' has a non-numeric value.") from None
    return table


def read_run(run_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """The (layers, summary, theory) tables of a run folder; theory is None if absent."""
    run_dir = Path(run_dir)
    what = "The 'run_dir' parameter must be a hevar run folder"
    if not run_dir.is_dir():
        reason = "no such folder" if not run_dir.exists() else "not a folder"
        raise UsageError(f"{what}. Got '{run_dir}' instead ({reason}).", param="run_dir")
    try:
        layers = read_table(run_dir / "layers.csv", KEY_COLUMNS + ("layer", "q_tilde", "log10_q_tilde"))
        summary = read_table(run_dir / "summary.csv", KEY_COLUMNS + ("chi_hat", "sigma_w2_n_crit"))
        theory_path = run_dir / "theory.csv"
        theory = read_table(theory_path, THEORY_COLUMNS) if theory_path.exists() else None
        _check_layers_match_summary(run_dir, layers, summary)
    except UsageError as exc:
        unfinished = not (run_dir / "layers.csv").exists() and (run_dir / MANIFEST).is_file() \
            and (run_dir / POINTS).is_dir()
        hint = (f" The run did not finish; complete it with `hevar sweep --resume {shlex.quote(str(run_dir))}`."
                if unfinished else "")
        raise UsageError(f"{what}. Got '{run_dir}' instead: {exc}{hint}", param="run_dir") from None
    return layers, summary, theory


def read_signalprop(run_dir: Path) -> dict[str, np.ndarray] | None:
    """The ``signalprop.csv`` table of a run folder, or None (a run without residual blocks)."""
    path = Path(run_dir) / TABLES["signalprop"][0]
    return read_table(path, SIGNALPROP_COLUMNS, nonempty=True) if path.exists() else None  # written only with rows


def read_crossings(run_dir: Path) -> dict[str, np.ndarray] | None:
    """The ``crossings.csv`` table of a run folder, or None for a run written before it existed."""
    path = Path(run_dir) / "crossings.csv"
    if not path.exists():
        return None
    return read_table(path, ("curve_id", "kind", "sigma_w2_n_cross", "sigma_w2_n_cross_lo", "sigma_w2_n_cross_hi"))


def read_spectra(run_dir: Path) -> dict[str, np.ndarray] | None:
    """The ``spectra.csv`` table of a run folder (``--jacobian``), or None for a run without it."""
    path = Path(run_dir) / "spectra.csv"
    if not path.exists():
        return None
    return read_table(path, SPECTRA_COLUMNS, nonempty=True)  # new with --jacobian: every column, and rows


def _check_layers_match_summary(run_dir: Path, layers: Mapping[str, np.ndarray], summary: Mapping[str, np.ndarray]) -> None:
    """``layers.csv`` holds layers 1..L of every configuration of ``summary.csv`` and nothing else: a
    file cut at a line boundary, or edited, shows here (tables without ``config_id`` values are not checked)."""
    if "config_id" not in layers or "config_id" not in summary or not (
            np.all(layers["config_id"] != "") and np.all(summary["config_id"] != "")):
        return
    ids, counts = np.unique(layers["config_id"].astype(str), return_counts=True)
    in_layers = dict(zip(ids, counts))
    depth_of = dict(zip(summary["config_id"].astype(str), summary["depth"]))
    for cid, depth in depth_of.items():
        if in_layers.get(cid, 0) != depth:
            raise UsageError(f"'{Path(run_dir) / 'layers.csv'}' is damaged: configuration {cid} has "
                             f"{in_layers.get(cid, 0)} layer rows, and its depth in summary.csv is {depth:g}.")
    extra = sorted(set(in_layers) - set(depth_of))
    if extra or len(depth_of) != len(summary["config_id"]):
        raise UsageError(f"'{Path(run_dir) / 'summary.csv'}' is damaged: it does not list each configuration of "
                         f"layers.csv once ({len(extra)} missing, e.g. {extra[0] if extra else 'a repeat'}).")
    if layers["layer"].size and not (np.all(layers["layer"] >= 1) and np.all(layers["layer"] <= layers["depth"])):
        raise UsageError(f"'{Path(run_dir) / 'layers.csv'}' is damaged: a layer outside 1..depth.")


def read_seeds(run_dir: Path) -> dict[str, np.ndarray] | None:
    """The ``seeds.csv`` table of a run folder (per-seed values), or None if the run has none."""
    path = Path(run_dir) / "seeds.csv"
    if not path.exists():
        return None
    return read_table(path, KEY_COLUMNS + ("seed_index", "layer", "log10_q_tilde"))


# --- run folders -------------------------------------------------------------------------------

MANIFEST = "manifest.json"
POINTS = "points"


def default_run_dir(root: Path, label: str, now: str) -> Path:
    """``root/<UTC time>-<label>``, made unique with a numeric suffix."""
    stamp = now.replace(":", "").replace("-", "")[:15]
    base = Path(root) / f"{stamp}-{label}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


RUN_FILES = frozenset({MANIFEST, POINTS, "layers.csv", "summary.csv", "theory.csv", "seeds.csv", "crossings.csv",
                       "spectra.csv", "plots"})


def prepare_run_dir(path: Path, name: str = "out") -> Path:
    """Create ``path`` (and ``points/``) or fail with a UsageError if it cannot be written.

    An existing folder is taken only if it is a run folder or holds nothing but hevar's own files
    (a run killed before its manifest), so a mistyped ``--out`` never scatters files into an
    unrelated folder. On failure nothing this call created is left behind.
    """
    path = Path(path)
    missing: list[Path] = []
    try:  # any OSError, from a name longer than the file system allows to a read-only disk
        if path.is_dir() and not (path / MANIFEST).exists():
            foreign = sorted(p.name for p in path.iterdir() if p.name not in RUN_FILES and not p.name.startswith("."))
            if foreign:
                raise UsageError(
                    f"The '{name}' parameter must be a new folder, an empty one or a hevar run folder. Got '{path}' "
                    f"instead (it holds {', '.join(foreign[:3])}{', …' if len(foreign) > 3 else ''}).", param=name
                )
        missing = [p for p in (path, *path.parents) if not p.exists()]
        (path / POINTS).mkdir(parents=True, exist_ok=True)
        missing.insert(0, path / POINTS)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        for created in missing:  # deepest first; only folders this call made, and only if empty
            try:
                created.rmdir()
            except OSError:
                pass
        raise UsageError(
            f"The '{name}' parameter must be a folder hevar can write. Got '{path}' instead ({exc.strerror or exc}).",
            param=name,
        ) from None
    return path


# What the code reads of a manifest: key → (allowed types, required).
MANIFEST_KEYS = {"config": ((dict,), True), "hevar": ((str,), True), "started": ((str,), False),
                 "finished": ((str, type(None)), False), "attempts": ((list,), False)}


def check_plots_dir(run_dir: Path) -> Path:
    """``RUN_DIR/plots``, or a :class:`UsageError` saying why figures cannot be written there (a file
    of that name, a folder hevar may not write). Checked by writing and removing a probe file, in
    ``plots/`` or, where it does not exist yet, in the run folder; nothing is created. A path that is
    not a folder is left to the reader of the run to report."""
    run_dir = Path(run_dir)
    folder = run_dir / "plots"
    if not run_dir.is_dir():
        return folder
    try:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "a file where the plots folder should be", str(folder))
        fd, probe = tempfile.mkstemp(dir=folder if folder.exists() else run_dir, prefix=".write-test.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"The 'run_dir' parameter must be a run folder whose plots/ hevar can write. Got '{run_dir}' "
                         f"instead ({folder}: {exc.strerror or exc}).", param="run_dir") from None
    return folder


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The run folder's manifest, or None if it has none. A manifest that is not JSON, not an object,
    or whose keys hevar reads have the wrong type raises a :class:`UsageError` naming the file."""
    path = Path(run_dir) / MANIFEST
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:  # prepare_run_dir says so, naming the option
            return None
        raise UsageError(f"The run folder's manifest '{path}' cannot be read ({exc.strerror or exc}).") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"The run folder's manifest '{path}' cannot be read ({getattr(exc, 'strerror', None) or exc}).") \
            from None
    damaged = f"The run folder's manifest '{path}' is damaged"
    try:
        manifest = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UsageError(f"{damaged}: not valid JSON ({' '.join(str(exc).split())}).") from None
    if not isinstance(manifest, dict):
        raise UsageError(f"{damaged}: a JSON {type(manifest).__name__} instead of an object.")
    for key, (types, required) in MANIFEST_KEYS.items():
        if key not in manifest:
            if required:
                raise UsageError(f"{damaged}: it has no '{key}'.")
        elif not isinstance(manifest[key], types):
            raise UsageError(f"{damaged}: '{key}' is a JSON {type(manifest[key]).__name__}.")
    if not all(isinstance(a, dict) for a in manifest.get("attempts", [])):
        raise UsageError(f"{damaged}: 'attempts' must be a list of objects.")
    return manifest


def write_manifest(run_dir: Path, manifest: Mapping[str, Any]) -> None:
    write_json(Path(run_dir) / MANIFEST, dict(manifest, format_version=FORMAT_VERSION))


def save_point(run_dir: Path, key: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Persist one finished task atomically (``points/<key>.npz``)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(Path(run_dir) / POINTS / f"{key}.npz", buf.getvalue())


def read_point(run_dir: Path, key: str) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """A finished task's arrays and None, or None and what is wrong with its file (None: not there)."""
    path = Path(run_dir) / POINTS / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}, None
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        return None, f"unreadable: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"


def load_point(run_dir: Path, key: str) -> dict[str, np.ndarray] | None:
    """A finished task's arrays, or None if it has not finished (or its file is damaged)."""
    return read_point(run_dir, key)[0]
