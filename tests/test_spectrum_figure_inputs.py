"""spectrum.png on degenerate and damaged inputs, and its zero fraction against raw singular values.

The run-folder figure of ``--jacobian`` must not crash ``hevar plot RUN``: a spectra.csv without a column
the figure reads, or with a key column left empty, is a one-line error (exit 2) or no figure, never an
internal error; one depth (one column of panels) keeps its title inside the figure. The density built from
quantiles is checked against an oracle computed here: the squared singular values of the Jacobian of a
small relu network in plain NumPy (J = Wᴸ Dᴸ⁻¹ ⋯ D¹ W¹, SVD per input), whose zero fraction is known exactly.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from hevar.errors import EXIT_USAGE
from hevar.views import cli
from hevar.views.figures import spectra

runner = CliRunner()
LEVELS = np.linspace(0.0, 1.0, 51)  # spectra.csv's levels (hevar.experiments.pairsweep.QUANTILES)


def _invoke(*args):
    return runner.invoke(cli.app, [str(a) for a in args])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("spec") / "run"
    result = _invoke("sweep", "--act", "relu,tanh", "--depth", "3", "--width", "8", "--sigma-w2", "2",
                     "--sigma-b2", "0", "--seeds", "1", "--jacobian", "2", "--out", run, "--no-plot")
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def copy(reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    return run


def _rewrite(run, drop=None, blank=None):
    """spectra.csv without column ``drop``, or with column ``blank`` emptied in every row."""
    lines = (run / "spectra.csv").read_text().splitlines()
    header = lines[0].split(",")
    out = []
    for line in lines:
        fields = line.split(",")
        if drop is not None:
            del fields[header.index(drop)]
        if blank is not None and line is not lines[0]:
            fields[header.index(blank)] = ""
        out.append(",".join(fields))
    (run / "spectra.csv").write_text("\n".join(out) + "\n")


@pytest.mark.parametrize("column", ["sigma_w2_n", "sigma_b2", "width", "depth", "log10_sv2"])
def test_a_spectra_csv_without_a_column_the_figure_reads_is_one_line(copy, column):
    _rewrite(copy, drop=column)
    result = _invoke("plot", copy)
    assert result.exit_code == EXIT_USAGE, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output and "Internal error" not in result.output
    assert "spectra.csv" in lines[0] and column in lines[0]


def test_a_truncated_spectra_csv_is_one_line(copy):
    text = (copy / "spectra.csv").read_text()
    (copy / "spectra.csv").write_text(text[: len(text) // 2])
    result = _invoke("plot", copy)
    assert result.exit_code == EXIT_USAGE and "spectra.csv' is damaged: truncated" in result.output, result.output


@pytest.mark.parametrize("column", ["sigma_w2_n", "width"])
def test_empty_key_cells_give_no_spectrum_figure_not_an_internal_error(copy, column):
    _rewrite(copy, blank=column)
    result = _invoke("plot", copy)
    assert result.exit_code == 0, result.output
    assert (copy / "plots" / "q.png").exists() and not (copy / "plots" / "spectrum.png").exists()


def test_one_depth_keeps_the_title_inside_the_figure(reference):
    """One depth is one column of panels (6.6 in wide): the two-part title must not be cut at both sides."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from hevar.results import store
    from hevar.views import figures

    _, summary, _ = store.read_run(reference)
    with matplotlib.rc_context(figures._RC):
        fig = spectra.figure_spectrum({"summary": summary, "spectra": store.read_spectra(reference)})
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        box = fig._suptitle.get_window_extent(canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width, (box, fig.bbox.width)


# --- the zero fraction and the area, against raw λ of a NumPy relu network -------------------------------------


def _relu_lambdas(rng, n, depth, inputs):
    """Squared singular values of J = ∂zᴸ/∂x of a relu net at σ_w²·N = 2, Gaussian weights, per input."""
    weights = [rng.standard_normal((n, n)) * math.sqrt(2.0 / n) for _ in range(depth)]
    out = []
    for _ in range(inputs):
        h, jac = rng.standard_normal(n), np.eye(n)
        for layer, w in enumerate(weights):
            z = w @ h
            jac = w @ jac
            if layer < depth - 1:
                jac = (z > 0)[:, None] * jac
                h = np.maximum(z, 0.0)
        out.append(np.linalg.svd(jac, compute_uv=False) ** 2)
    return np.concatenate(out)


def test_zero_fraction_and_area_match_raw_singular_values():
    """The legend's λ ≈ 0 fraction and the histogram's area add up to 1 and match the raw λ.

    spectra.csv's inverted-CDF quantiles only bracket the zero fraction z between two levels
    (p_{k-1} ≤ z < p_k, a step of 0.02): the estimate must be within half a step of the exact fraction
    of the raw λ, and the histogram's area must be 1 − (that estimate), so that the two together are
    the whole distribution; the density of the non-zero λ must follow a direct histogram of log₁₀ λ
    (CDF within 0.02 on the figure's bin edges)."""
    rng = np.random.default_rng(7)
    for depth in (3, 6):
        per_seed = [_relu_lambdas(rng, 32, depth, 6) for _ in range(4)]
        logq = np.array([np.quantile(np.log10(lam), LEVELS, method="inverted_cdf") for lam in per_seed])
        edges, dens, zero = spectra.quantile_density(LEVELS, logq)
        exact = [np.mean(np.log10(lam) <= np.log10(lam.max()) - spectra.ZERO_DECADES) for lam in per_seed]
        assert 0.4 < np.mean(exact) < 0.8  # relu: at least half the λ are exact zeros
        assert abs(zero - np.mean(exact)) <= 0.01 + 1e-12, (zero, np.mean(exact))
        area = float(np.sum(dens * np.diff(edges)))
        assert area + zero == pytest.approx(1.0, abs=1e-12)
        nonzero = np.concatenate([np.log10(lam[np.log10(lam) > np.log10(lam.max()) - spectra.ZERO_DECADES])
                                  for lam in per_seed])
        total = sum(lam.size for lam in per_seed)
        direct = np.searchsorted(np.sort(nonzero), edges, side="right") / total + np.mean(exact)
        built = zero + np.concatenate([[0.0], np.cumsum(dens * np.diff(edges))])
        assert np.max(np.abs(direct - built)) < 0.02, np.max(np.abs(direct - built))


@pytest.mark.parametrize("cells, drawn", [
    (lambda n, v: "" if n % 3 == 0 else v, True),  # NaN cells among the quantiles
    (lambda n, v: "-30.0", True),  # every λ at one value (a point mass: the bins are widened to 0.1 decade)
    (lambda n, v: "-inf", False),  # every λ exactly 0 (J = 0): nothing to draw
    (lambda n, v: "", False),  # no value at all
])
def test_degenerate_quantiles_do_not_crash_plot(copy, cells, drawn):
    lines = (copy / "spectra.csv").read_text().splitlines()
    i = lines[0].split(",").index("log10_sv2")
    rows = [line.split(",") for line in lines[1:]]
    for n, fields in enumerate(rows):
        fields[i] = cells(n, fields[i])
    (copy / "spectra.csv").write_text("\n".join([lines[0]] + [",".join(f) for f in rows]) + "\n")
    result = _invoke("plot", copy)
    assert result.exit_code == 0, result.output
    assert (copy / "plots" / "spectrum.png").exists() == drawn


def test_a_seed_whose_jacobian_is_zero_counts_in_the_zero_fraction():
    """Pooling averages the seeds' CDFs (each seed has as many λ): a seed with J = 0 for every input (all
    λ = 0, log₁₀ λ = −inf) adds 1 to the zero fraction's average instead of being left out."""
    rng = np.random.default_rng(3)
    live = np.quantile(rng.normal(-1.0, 0.5, 4000), LEVELS, method="inverted_cdf")
    _, dens1, zero1 = spectra.quantile_density(LEVELS, live[None, :])
    edges, dens, zero = spectra.quantile_density(LEVELS, np.stack([live, np.full(LEVELS.size, -np.inf)]))
    assert zero1 == 0 and zero == pytest.approx(0.5)
    assert np.sum(dens * np.diff(edges)) == pytest.approx(0.5, abs=1e-12)
    np.testing.assert_allclose(dens, dens1 / 2, rtol=1e-12)
