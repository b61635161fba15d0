"""Existing results stay reproducible: the CSVs of `hevar sweep --act relu` and of every preset in
configs/ hash to the digests recorded in tests/data/preset_digests.json.

A change that moves any byte of them fails here. When a change is meant to (an issue says so),
regenerate the digests with

    python tests/test_presets_identity.py --update

and say in the commit message which files changed and why.
"""

import hashlib
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hevar.views.cli import app

ROOT = Path(__file__).resolve().parents[1]
DIGESTS = ROOT / "tests" / "data" / "preset_digests.json"
RUNS = {"relu": ["--act", "relu"], **{p.stem: ["--config", str(p)] for p in sorted((ROOT / "configs").glob("*.toml"))
                           if not p.stem.endswith("_training")}}  # hevar train presets are not sweeps
FILES = ("layers.csv", "summary.csv", "seeds.csv", "theory.csv", "crossings.csv")


def digests(name: str, out: Path) -> dict[str, str]:
    result = CliRunner().invoke(app, ["sweep", *RUNS[name], "--out", str(out), "--no-plot"])
    assert result.exit_code == 0, result.output
    return {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in FILES}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_preset_csvs_are_byte_identical(name, tmp_path):
    recorded = json.loads(DIGESTS.read_text())
    assert name in recorded, f"no digests for {name}: run `python tests/test_presets_identity.py --update`"
    assert digests(name, tmp_path / name) == recorded[name]


if __name__ == "__main__":
    if "--update" not in sys.argv:
        sys.exit(__doc__)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        table = {name: digests(name, Path(tmp) / name) for name in sorted(RUNS)}
    DIGESTS.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
    print(f"wrote {DIGESTS}")
