"""The command line through Typer's CliRunner, and the config precedence."""

import json

from typer.testing import CliRunner

from hevar.cli import app
from hevar.config import SweepConfig, build_config, read_preset

runner = CliRunner()


def test_precedence_defaults_then_preset_then_flags(tmp_path):
    preset_file = tmp_path / "p.toml"
    preset_file.write_text('depth = 7\nwidth = [32, 64]\nsigma_w2 = "1:2:0.5"\nseeds = 2\n')
    preset = read_preset(preset_file)
    cfg = build_config(dict(depth="5", act=None), preset)
    assert cfg.depth == (5,)  # flag beats preset
    assert cfg.width == (32, 64) and cfg.sigma_w2 == (1.0, 1.5, 2.0) and cfg.seeds == 2  # preset beats default
    assert cfg.batch == SweepConfig().batch and cfg.act == ("relu",)  # defaults fill the rest


def test_sweep_cli_writes_a_run_and_prints_the_table(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text('depth = 9\nwidth = 24\nseeds = 2\nbatch = 4\n')
    out = tmp_path / "run"
    result = runner.invoke(app, ["sweep", "--config", str(preset), "--depth", "6", "--sigma-w2", "2",
                                 "--act", "leaky_relu:0.2", "--out", str(out), "--no-plot"])
    assert result.exit_code == 0, result.output
    assert "Run folder:" in result.output and "leaky_relu:0.2" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["depth"] == [6] and manifest["config"]["width"] == [24]
    assert len((out / "layers.csv").read_text().splitlines()) == 1 + 6


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "never"
    result = runner.invoke(app, ["sweep", "--depth", "0", "--out", str(out)])
    assert result.exit_code == 2
    assert "The 'depth' parameter must be an int in the range [1," in result.output
    assert "Got '0' instead." in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output and not out.exists()


def test_python_dash_m_and_help():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "hevar", "sweep", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--sigma-w2" in proc.stdout and "1/N" in proc.stdout


def test_resume_refuses_a_run_made_by_another_hevar_version(tmp_path):
    out = tmp_path / "run"
    args = ["sweep", "--depth", "3", "--width", "8", "--seeds", "2", "--batch", "2", "--sigma-w2", "2",
            "--out", str(out), "--no-plot"]
    assert runner.invoke(app, args).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps(dict(manifest, hevar="0.0.1")))
    before = (out / "layers.csv").read_bytes()
    result = runner.invoke(app, ["sweep", "--resume", str(out)])
    assert result.exit_code == 2 and "hevar 0.0.1" in result.output and "'resume'" in result.output
    assert (out / "layers.csv").read_bytes() == before
