"""The resource guard: refuse a sweep whose configurations cannot fit in memory, before anything
is written.

The estimate is :func:`hevar.engine.passes.memory_estimate` (the engine's own account of what a pass keeps)
for the *smallest* unit the engine can run: one task (activation, depth, width, seed) with a single
σ_w² × σ_b² configuration (``n_configs=1``), since the engine splits a task's grid into chunks
that fit its memory budget. A sweep that fails this check cannot run however the grid is chunked.
Local worker processes each run one task at a time, so the need is multiplied by their number.

The limit is the memory available now: ``HEVAR_MEMORY_LIMIT`` (bytes, or with a K/M/G/T suffix,
powers of 1024) when set, else the smallest of the kernel's ``MemAvailable``, the room left under a
cgroup (container) limit, and ``SC_AVPHYS_PAGES``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from hevar.meanfield.activations import parse_activation
from hevar.experiments.config import SweepConfig
from hevar.engine.passes import memory_estimate
from hevar.errors import UsageError

ENV_LIMIT = "HEVAR_MEMORY_LIMIT"
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Memory:
    """Bytes available to a sweep and where that number came from."""

    available: int  # bytes
    source: str  # e.g. "MemAvailable in /proc/meminfo", "HEVAR_MEMORY_LIMIT"


def parse_size(text: str) -> int:
    """Bytes from ``"4096"``, ``"512M"``, ``"1.5GiB"`` (powers of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(text)
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def available_memory() -> Memory | None:
    """The memory a sweep may use now, or None where it cannot be told (the check is then skipped)."""
    raw = os.environ.get(ENV_LIMIT)
    if raw is not None and raw.strip():
        try:
            return Memory(parse_size(raw), ENV_LIMIT)
        except ValueError:
            raise UsageError(
                f"The '{ENV_LIMIT}' environment variable must be a size in bytes, optionally with a K, M, G "
                f"or T suffix. Got '{raw}' instead.", param=ENV_LIMIT
            ) from None
    found = [m for m in (_meminfo(), _cgroup_room(), _sysconf()) if m is not None]
    return min(found, key=lambda m: m.available) if found else None


def _meminfo() -> Memory | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return Memory(int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo")
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> Memory | None:
    """Room left under a cgroup v2 or v1 memory limit (containers), if there is one."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit_text = Path(limit_file).read_text().strip()
            if limit_text == "max":
                continue
            limit, usage = int(limit_text), int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit < 2**60:  # v1 reports "no limit" as a huge number
            return Memory(max(limit - usage, 0), f"the cgroup limit in {limit_file}")
    return None


def _sysconf() -> Memory | None:
    try:
        return Memory(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def task_memory(config: SweepConfig, act: str, depth: int, width: int, batch: int | None = None,
                dtype: str | None = None) -> int:
    """Estimated peak bytes of one task of ``config`` (activation ``act``, one network shape) for a
    single σ_w² × σ_b² configuration, the smallest chunk the engine runs."""
    widths = (width,) * (depth + 1)
    if config.widths:  # a width profile: its own layers (`width` is only N_0)
        from hevar.engine.init import layer_widths

        widths = layer_widths(config.widths, depth)
    return memory_estimate(widths, 1, config.batch if batch is None else batch, dtype or config.dtype,
                           act=parse_activation(act))


def _size(n: float) -> str:
    """Bytes as people read them: "512 B", "1 KiB", "3.5 MiB", "12 GiB" (powers of 1024)."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def check_memory(config: SweepConfig, workers: int = 1, memory: Memory | None = None) -> None:
    """Raise :class:`UsageError` if the largest task of ``config`` cannot fit in memory, with the
    estimate, the limit, and the options that would make it fit."""
    memory = memory if memory is not None else available_memory()
    if memory is None:
        return
    shapes = [(a, d, w) for a in config.act for d in config.depth for w in config.width]
    act, depth, width = max(shapes, key=lambda shape: task_memory(config, *shape))
    need = task_memory(config, act, depth, width) * workers
    if need <= memory.available:
        return

    def fits(**change: object) -> bool:
        return task_memory(config, act, depth, width, **change) * workers <= memory.available

    hints = []
    if config.batch > 1 and fits(batch=1):
        lo, hi = 1, config.batch  # largest batch that fits: fits(lo), not fits(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(batch=mid) else (lo, mid)
        hints.append(f"--batch {lo} or less")
    if config.dtype != "float32" and fits(dtype="float32"):
        hints.append("--dtype float32")
    if workers > 1:
        hints.append("fewer --jobs")
    hints.append("a smaller --width or --depth")
    advice = hints[0] if len(hints) == 1 else ", ".join(hints[:-1]) + " or " + hints[-1]
    raise UsageError(
        f"The 'batch', 'width', 'depth' and 'dtype' parameters ask for more memory than is available: "
        f"the largest task ({act}, depth {depth}, width {width}, batch {config.batch}, {config.dtype}) needs about "
        f"{_size(need)}{f' for {workers} workers' if workers > 1 else ''} (engine estimate, one σ_w²·N × σ_b² "
        f"configuration at a time), but {_size(memory.available)} is available ({memory.source}). Try {advice}.",
        param="batch",
    )
