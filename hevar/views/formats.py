"""``--format``: the figure file formats, checked before any work (without loading Matplotlib)."""

from __future__ import annotations

from hevar.errors import UsageError

FORMATS = ("png", "svg", "pdf")


def parse_formats(value: str | None) -> tuple[str, ...]:
    """``--format``: a comma list of png, svg, pdf (default png)."""
    if value is None or value == "":
        return ("png",)
    items = tuple(dict.fromkeys(v.strip().lower() for v in str(value).split(",")))
    bad = [v for v in items if v not in FORMATS]
    if bad or not items:
        raise UsageError(f"The 'format' parameter must be a comma list of {', '.join(FORMATS)}. Got {value!r} instead.",
                         param="format")
    return items
