"""Start-up (issue 17 item 4): `hevar --help` and `hevar --version` load neither SciPy, pandas,
matplotlib nor the engine; the modules the commands need are loaded at their first use."""
import subprocess
import sys

import pytest

PROBE = """
import sys
from hevar.views.cli import main
try:
    main([{arg!r}])
except SystemExit:
    pass
heavy = sorted(m for m in ("scipy", "pandas", "matplotlib", "hevar.engine.passes", "hevar.meanfield.theory")
               if m in sys.modules)
print("HEAVY", ",".join(heavy))
"""


@pytest.mark.parametrize("arg", ["--help", "--version"])
def test_help_and_version_load_nothing_heavy(arg):
    r = subprocess.run([sys.executable, "-c", PROBE.format(arg=arg)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "HEAVY"


def test_a_command_still_loads_what_it_needs():
    r = subprocess.run([sys.executable, "-m", "hevar", "theory", "--act", "relu", "--json"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and '"critical_sigma_w2_n": 2.0' in r.stdout


def test_a_sweep_without_figures_does_not_load_matplotlib(tmp_path):
    probe = ("import sys\nfrom hevar.views.cli import main\n"
             f"try:\n    main(['sweep', '--act', 'relu', '--depth', '3', '--width', '8', '--seeds', '1', '--no-plot', "
             f"'--out', {str(tmp_path / 'r')!r}])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
             "print('MPL', 'matplotlib' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "MPL False"
