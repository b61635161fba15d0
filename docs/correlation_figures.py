"""Correlations between inputs and the Jacobian spectrum, measured beside the theory: four figures.

    python docs/correlation_figures.py OUT_DIR [--width 512] [--seeds 16] [--quick]

writes into OUT_DIR (created if needed):

- ``c_map.png``        the c-map of tanh at σ_b² = 0.05 for several σ_w²·N, with the identity and the
                       fixed points (Poole et al. 2016, Fig. 2);
- ``c_layers.png``     cˡ across layers, measured on theory, and |cˡ − c*| on a log axis;
- ``depth_scales.png`` ξ_c and ξ_q against σ_w²·N with the measured ξ̂_c (± 2 jackknife s.e.), diverging
                       at the critical 1.7610;
- ``spectrum.png``     squared singular values of J for relu and tanh at criticality, Gaussian against
                       orthogonal weights, at two depths, with the free-probability density (relu) and the
                       predicted mean and relative variance (both);

and prints the measured ξ̂_c against ξ_c and the measured spectrum moments against their predictions.
``--quick`` (width 128, 2 seeds, shallower) runs in a few seconds and only checks that everything draws.

How ξ̂_c is measured: for each σ_w²·N the fit layers are those where the *theory* trajectory has
1e-8 < |cˡ − c*| ≤ 0.1 (ordered phase, c* = 1, from c⁰ = 0.3; 1 − cˡ measured without cancellation) or
5·s.e. < |cˡ − c*| ≤ 0.2 (chaotic phase, from c⁰ = c* + 0.25, so the trajectory is near-linear from the
start; s.e. is the seed spread of cˡ where the theory has settled); ξ̂_c is the least-squares slope of
ln|cˡ − c*| for the seed mean over those layers, its s.e. the jackknife over seeds. "window" is the same fit
applied to the theory trajectory, which differs from the asymptotic ξ_c where the c-map is not yet linear.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from hevar.engine.jacobian import measure_jacobian, spectrum_moments
from hevar.engine.pairs import measure_correlations
from hevar.engine.passes import Streams
from hevar.meanfield import correlations as cr, spectrum as sp, theory
from hevar.meanfield.activations import parse_activation
from hevar.views.figures import correlations as cf
from hevar.views.figures.common import OKABE_ITO

SIGMA_B2 = 0.05
TANH = parse_activation("tanh")


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=110)
    try:  # a 256-colour palette keeps the PNG small (as docs/gallery does)
        from PIL import Image

        Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)
    except ImportError:  # pragma: no cover - matplotlib ships Pillow
        pass
    print(f"wrote {path}")


def measure_c(s_values, width, depth, n_pairs, c0, seeds, base_seed=0):
    """Per-seed (mean over pairs) cˡ and 1 - cˡ, shape (seeds, K, L), stacked over σ_w²·N."""
    std = np.array([[math.sqrt(s / width)] * depth for s in s_values])
    bias = np.full(len(s_values), math.sqrt(SIGMA_B2))
    runs = [measure_correlations(TANH, (width,) * (depth + 1), std, bias, n_pairs, c0, Streams(base_seed, i))
            for i in range(seeds)]
    return np.array([r.c for r in runs]), np.array([r.one_minus_c for r in runs])


def measured_xi(s, width, depth, seeds, n_pairs):
    """(ξ_c, window ξ on theory, ξ̂_c, s.e., fit layers, layers, measured seeds, theory) for one σ_w²·N."""
    terms = cr.correlation_terms(TANH, s, SIGMA_B2)
    layers = np.arange(1, depth + 1)
    if terms.c_star == 1.0:
        c0 = 0.3
        _, gap = measure_c([s], width, depth, n_pairs, c0, seeds)
        seeds_c = 1 - gap[:, 0]  # for the figures; the fit uses the gap 1 - cˡ itself (no cancellation)
        th = cr.c_trajectory(TANH, s, SIGMA_B2, 1.0, c0, depth)
        sel = cr.fit_xi_c(layers, th, 1.0, floor=1e-8, ceiling=0.1).layers
        fit = lambda rows: -1 / np.polyfit(sel, np.log(rows.mean(axis=0)[sel - 1]), 1)[0]  # noqa: E731
        gaps = gap[:, 0]
        xi_hat = fit(gaps)
        loo = np.array([fit(np.delete(gaps, i, axis=0)) for i in range(seeds)])
        se = math.sqrt((seeds - 1) / seeds * np.sum((loo - loo.mean()) ** 2))
    else:
        c0 = min(0.99, terms.c_star + 0.25)
        c, _ = measure_c([s], width, depth, n_pairs, c0, seeds)
        seeds_c = c[:, 0]
        th = cr.c_trajectory(TANH, s, SIGMA_B2, 1.0, c0, depth)
        settled = np.abs(th - terms.c_star) < 1e-3
        noise = np.median(seeds_c[:, settled].std(axis=0, ddof=1)) / math.sqrt(seeds) if settled.any() else 0.0
        sel = cr.fit_xi_c(layers, th, terms.c_star, floor=5 * noise, ceiling=0.2).layers
        xi_hat, se = cr.xi_c_jackknife(sel, seeds_c[:, sel - 1], terms.c_star)
    window = cr.fit_xi_c(sel, th[sel - 1], terms.c_star, floor=0, ceiling=math.inf).xi
    return dict(s=s, terms=terms, window=window, xi_hat=xi_hat, se=se, fit_layers=sel, layers=layers,
                measured=seeds_c, theory=th)


def figure_c_map(out: Path, s_crit: float) -> None:
    c = np.linspace(-1, 1, 121)
    s_values = (1.2, s_crit, 2.5, 4.0)
    terms = [cr.correlation_terms(TANH, s, SIGMA_B2) for s in s_values]
    rows = np.array([cr.c_map(TANH, c, s, SIGMA_B2, t.q_star) for s, t in zip(s_values, terms)])
    fig = Figure(figsize=(4.2, 4.2), layout="constrained")
    ax = fig.add_subplot()
    cf.plot_c_map(ax, c, rows, [f"σ_w²·N = {s:.4g} ({t.phase})" for s, t in zip(s_values, terms)],
                  [t.c_star for t in terms])
    ax.set_title("tanh, σ_b² = 0.05: the c-map at q*", fontsize=9)
    _save(fig, out / "c_map.png")


def figure_layers(out: Path, fits: list[dict]) -> None:
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    labels = [f"σ_w²·N = {f['s']:g}" for f in fits]
    L = min(len(f["layers"]) for f in fits)
    layers = fits[0]["layers"][:L]
    meas = np.array([f["measured"][:, :L].mean(axis=0) for f in fits])
    se = np.array([f["measured"][:, :L].std(axis=0, ddof=1) / math.sqrt(f["measured"].shape[0]) for f in fits])
    th = np.array([f["theory"][:L] for f in fits])
    cf.plot_c_trajectories(axes[0], layers, meas, se, th, labels)
    # On the log axis, chaotic-phase points are drawn only as far as the fit used them: beyond, |cˡ - c*|
    # is below the seed noise (about 0.01 at N = 512) and only scatters.
    shown = meas.copy()
    for i, f in enumerate(fits):
        if f["terms"].c_star < 1:
            shown[i, layers > f["fit_layers"][-1] + 5] = np.nan
    cf.plot_c_trajectories(axes[1], layers, shown, se, th, labels, c_star=[f["terms"].c_star for f in fits])
    axes[1].set_ylim(1e-9, 1)
    fig.suptitle("tanh, σ_b² = 0.05: correlation of two inputs across layers", fontsize=9)
    _save(fig, out / "c_layers.png")


def figure_depth_scales(out: Path, fits: list[dict], s_crit: float) -> None:
    s = np.unique(np.concatenate([np.linspace(1.0, 4.0, 41), s_crit * (1 + np.array([-3e-3, -1e-3, 1e-3, 3e-3]))]))
    terms = [cr.correlation_terms(TANH, x, SIGMA_B2) for x in s]
    fig = Figure(figsize=(5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    cf.plot_depth_scales(ax, s, np.array([t.xi_c for t in terms]), np.array([t.xi_q for t in terms]),
                         np.array([f["s"] for f in fits]), np.array([f["xi_hat"] for f in fits]),
                         np.array([f["se"] for f in fits]), s_critical=s_crit)
    ax.set_title("tanh, σ_b² = 0.05: depth scales", fontsize=9)
    _save(fig, out / "depth_scales.png")


def figure_spectrum(out: Path, width: int, seeds: int, depths: tuple[int, int]) -> list[str]:
    lines = []
    fig = Figure(figsize=(9, 6.4), layout="constrained")
    axes = fig.subplots(2, 2)
    settings = [("relu", 2.0, 0.0), ("tanh", theory.critical_sigma_w2_n(TANH, SIGMA_B2).sigma_w2_n, SIGMA_B2)]
    for col, (name, s, b) in enumerate(settings):
        act = parse_activation(name)
        for row, L in enumerate(depths):
            ax = axes[row, col]
            for dist, colour in (("normal", OKABE_ITO[0]), ("orthogonal", OKABE_ITO[1])):
                std = np.full((1, L), math.sqrt(s / width))
                spectra = [measure_jacobian(act, (width,) * (L + 1), std, np.array([math.sqrt(b)]), 2,
                                            Streams(0, i, dist)) for i in range(seeds)]
                sv2 = np.concatenate([m.sv2.ravel() for m in spectra])
                mom = [spectrum_moments(m.log_sv2) for m in spectra]
                v = np.array([r["normalized_var"][0].mean() for r in mom])
                m1 = np.array([np.exp(r["log_mean"][0]).mean() for r in mom])
                pred = sp.predicted_moments(act, s, b, L, dist)
                lam = rho = None
                atoms: list = []
                if name == "relu":
                    lam = np.geomspace(sv2[sv2 > 1e-24 * sv2.max()].min(), sv2.max() * 1.5, 400)
                    rho, atoms = sp.density("relu", dist, s, L, lam)
                label = (f"{dist}: mean {m1.mean():.3g} (pred {math.exp(pred['log_mean']):.3g}), "
                         f"rel. var {v.mean():.3g} (pred {pred['normalized_var']:.3g})")
                cf.plot_spectrum(ax, sv2, lam, rho, atoms, label=label, colour=colour)
                lines.append(f"{name:5s} L={L:3d} {dist:10s} mean λ {m1.mean():.4g} ± {m1.std(ddof=1) / math.sqrt(seeds):.2g}"
                             f" (pred {math.exp(pred['log_mean']):.4g}); rel. var {v.mean():.4g} ± "
                             f"{v.std(ddof=1) / math.sqrt(seeds):.2g} (pred {pred['normalized_var']:.4g})")
            ax.set_title(f"{name} at σ_w²·N = {s:.4g}, σ_b² = {b:g}, L = {L}, N = {width}", fontsize=8)
    _save(fig, out / "spectrum.png")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything draws")
    args = parser.parse_args(argv)
    width, seeds, depth, pairs, depths, spec_width = args.width, args.seeds, 100, 32, (4, 16), 256
    if args.quick:
        width, seeds, depth, pairs, depths, spec_width = 128, 2, 30, 4, (2, 4), 64
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    s_crit = theory.critical_sigma_w2_n(TANH, SIGMA_B2).sigma_w2_n
    figure_c_map(args.out, s_crit)
    fits = [measured_xi(s, width, depth, seeds, pairs) for s in (1.2, 1.4, 1.55, 2.5, 3.0, 4.0)]
    print(f"ξ_c for tanh, σ_b² = {SIGMA_B2}, width {width}, {seeds} seeds, {pairs} pairs, depth {depth}:")
    for f in fits:
        t = f["terms"]
        print(f"  σ_w²·N = {f['s']:<5g} {t.phase:8s} c* = {t.c_star:.4f}  ξ_c = {t.xi_c:7.3f}  window {f['window']:7.3f}"
              f"  measured ξ̂_c = {f['xi_hat']:7.3f} ± {f['se']:.3f}  (layers {f['fit_layers'][0]}–{f['fit_layers'][-1]};"
              f" (ξ̂ − window)/s.e. = {(f['xi_hat'] - f['window']) / f['se']:+.1f})")
    figure_layers(args.out, [fits[i] for i in (0, 2, 3, 5)])
    figure_depth_scales(args.out, fits, s_crit)
    for line in figure_spectrum(args.out, spec_width, seeds, depths):
        print("  " + line)
    print(f"done in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
