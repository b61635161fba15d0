"""The command line through Typer's CliRunner, and the config precedence."""

import json

from typer.testing import CliRunner

from hevar.views.cli import app
from hevar.experiments.config import SweepConfig, build_config, read_preset

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
    for key in ("numpy", "scipy", "matplotlib", "python", "platform", "machine"):  # what the bytes depend on
        assert isinstance(manifest[key], str) and manifest[key], key
    assert "blas" in manifest
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


def _tiny_run(tmp_path):
    """A finished three-layer run folder and its manifest."""
    out = tmp_path / "run"
    args = ["sweep", "--depth", "3", "--width", "8", "--seeds", "2", "--batch", "2", "--sigma-w2", "2",
            "--out", str(out), "--no-plot"]
    assert runner.invoke(app, args).exit_code == 0
    return out, json.loads((out / "manifest.json").read_text())


def test_resume_refuses_a_run_made_by_another_hevar_version(tmp_path):
    out, manifest = _tiny_run(tmp_path)
    (out / "manifest.json").write_text(json.dumps(dict(manifest, hevar="0.0.1")))
    before = (out / "layers.csv").read_bytes()
    result = runner.invoke(app, ["sweep", "--resume", str(out)])
    assert result.exit_code == 2 and "hevar 0.0.1" in result.output and "'resume'" in result.output
    assert (out / "layers.csv").read_bytes() == before


def _printed(monkeypatch, width: int):
    """Point the CLI's stdout console at a buffer ``width`` columns wide; return the buffer."""
    import io

    from rich.console import Console

    from hevar.views import cli

    buffer = io.StringIO()
    monkeypatch.setattr(cli.common, "out", Console(file=buffer, width=width, color_system=None))
    return buffer


def _summary_row(act, depth, width, sigma_b2, mode, dist, sigma_w2_n, status="ok"):
    chi = float("nan") if status != "ok" else 1.0123456
    return dict(activation=act, depth=depth, width=width, sigma_b2=sigma_b2, mode=mode, dist=dist, widths="",
                sigma_w2_n=sigma_w2_n, chi_hat=chi, chi_hat_se=0.0123, chi_theory=4.0, status=status,
                sigma_w2_n_crit=2.0, critical_kind="homogeneous")


def test_summary_fits_80_columns_with_every_key_varying(monkeypatch):
    from rich.cells import cell_len

    from hevar.views import cli

    rows = [_summary_row(a, d, w, b, m, dist, s, "ok" if d < 600 else "overflow at layer 592")
            for a in ("leaky_relu:0.2", "softplus") for d in (6, 600) for w in (16, 256) for b in (0, 0.1)
            for m in ("fan_in", "fan_out") for dist in ("normal", "uniform") for s in (2, 8)]
    buffer = _printed(monkeypatch, 80)
    cli.sweep._print_summary(rows)
    text = buffer.getvalue()
    assert "…" not in text and max(map(cell_len, text.splitlines())) <= 80, text
    assert "1.012" in text and "0.025" in text and "4.000" in text and "leaky_relu:0.2" in text and "256" in text
    assert "overflow" in text and "uniform" in text


def test_summary_puts_keys_that_never_change_in_the_title(monkeypatch):
    from hevar.views import cli

    rows = [_summary_row("relu", 6, 16, 0, m, "uniform", s) for m in ("fan_in", "fan_out") for s in (1, 2, 4)]
    for width in (80, 120):
        buffer = _printed(monkeypatch, width)
        cli.sweep._print_summary(rows)
        lines = buffer.getvalue().splitlines()
        assert lines[1] == "L = 6, N = 16, σ_b² = 0, dist = uniform"
        header = lines[2].split()
        assert "mode" in header and not {"L", "N", "σ_b²", "dist", "init"} & set(header)
        assert "…" not in buffer.getvalue()


def test_theory_table_shows_the_first_and_last_layers_and_json_all():
    result = runner.invoke(app, ["theory", "--act", "tanh", "--sigma-w2", "1.5", "--depth", "1000"])
    assert result.exit_code == 0, result.output
    numbered = [line for line in result.output.splitlines() if line.startswith("│") and line.strip("│ ")[0].isdigit()]
    assert len(numbered) == 50 and "1000" in numbered[-1] and "…" in result.output
    assert "950 layers left out" in result.output
    data = json.loads(runner.invoke(app, ["theory", "--act", "tanh", "--sigma-w2", "1.5", "--depth", "1000",
                                          "--json"]).output)
    assert [row["layer"] for row in data["layers"]] == list(range(1, 1001))


def test_activations_table_folds_rather_than_cuts(monkeypatch):
    from hevar.views import cli

    buffer = _printed(monkeypatch, 80)
    cli.activations.activations_command()
    assert "…" not in buffer.getvalue()


def test_help_uses_one_metavar_style():
    for command in ("sweep", "theory", "gains", "plot", "activations"):
        result = runner.invoke(app, [command, "--help"], terminal_width=100)
        assert result.exit_code == 0, result.output
        assert not any(t in result.output for t in ("<path>", "<str>", "<float>", "<int>", "{run_dir}")), result.output
        assert "hevar/" not in result.output  # no pointers into the source
    assert "plot [OPTIONS] RUN_DIR\n" in runner.invoke(app, ["plot", "--help"]).output


def test_manifest_says_what_its_sigma_w2_means(tmp_path):
    out, manifest = _tiny_run(tmp_path)
    assert manifest["config"]["sigma_w2"] == [2.0]
    assert "σ_w²·N" in manifest["config_units"]["sigma_w2"]
