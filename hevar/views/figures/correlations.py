"""Figures for pairs of inputs and the Jacobian spectrum: each function draws on an Axes it is given.

- :func:`plot_c_map`          cˡ⁺¹ against cˡ at q*, several σ_w²·N, the identity line and the fixed points
                              (Poole et al. 2016, Fig. 2);
- :func:`plot_c_trajectories` cˡ across layers, measured (seed mean ± 2 s.e.) on the mean-field cˡ, or
                              |cˡ - c*| on a log axis, where a straight line has slope -1/ξ_c;
- :func:`plot_depth_scales`   ξ_c and ξ_q against σ_w²·N, diverging at the critical point, with the
                              measured ξ̂_c ± 2 s.e.;
- :func:`plot_spectrum`       a histogram of the squared singular values of J on a log axis against the
                              predicted density (and the mass of an atom at 0, if any).

They take arrays (the caller computes theory and measurements, e.g. with
:mod:`hevar.meanfield.correlations`, :mod:`hevar.engine.pairs`, :mod:`hevar.engine.jacobian` and
:mod:`hevar.meanfield.spectrum`), draw, and return the artists; no pyplot state is used, and the caller
owns the Figure and the file (see ``docs/correlation_figures.py``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes

from hevar.views.figures.common import OKABE_ITO, SEQUENTIAL_CMAP

Array = np.ndarray


def _colours(n: int) -> list:
    return [SEQUENTIAL_CMAP(x) for x in np.linspace(0.0, 1.0, max(n, 2))][:n] if n > 1 else [OKABE_ITO[0]]


def plot_c_map(ax: Axes, c: Array, c_next: Array, labels: Sequence[str], c_star: Sequence[float] | None = None
               ) -> list[Artist]:
    """The c-map at the fixed point q*: one curve per σ_w²·N, with the identity and the stable fixed points.

    Parameters
    ----------
    ax : Axes
    c : array, shape (m,)
        cˡ on the horizontal axis.
    c_next : array, shape (n, m)
        cˡ⁺¹ = M(cˡ) for each of n settings.
    labels : sequence of n str
        Legend entries (e.g. "σ_w²·N = 2.5").
    c_star : sequence of n float, optional
        Fixed points to mark (nan: none).
    """
    c_next = np.atleast_2d(np.asarray(c_next, dtype=float))
    artists: list[Artist] = list(ax.plot([-1, 1], [-1, 1], color="0.6", lw=0.8, ls=":", label="identity"))
    for i, (row, label, colour) in enumerate(zip(c_next, labels, _colours(len(c_next)))):
        artists += ax.plot(c, row, color=colour, lw=1.6, label=label)
        if c_star is not None and math.isfinite(c_star[i]):
            artists += ax.plot([c_star[i]], [c_star[i]], "o", color=colour, ms=6, mec="white", mew=0.8)
    ax.set_xlim(float(np.min(c)), float(np.max(c)))
    ax.set_ylim(float(np.min(c)), 1.0)
    ax.set_xlabel("input correlation cˡ")
    ax.set_ylabel("output correlation cˡ⁺¹")
    ax.set_aspect("equal", adjustable="box")
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    return artists


def plot_c_trajectories(ax: Axes, layers: Array, measured: Array, measured_se: Array | None, theory: Array,
                        labels: Sequence[str], c_star: Sequence[float] | None = None) -> list[Artist]:
    """cˡ across layers, measured (points, ± 2 s.e.) on the mean-field trajectory (lines).

    Parameters
    ----------
    ax : Axes
    layers : array, shape (L,)
    measured : array, shape (n, L)
        Seed means of the measured cˡ, one row per setting.
    measured_se : array, shape (n, L), optional
        Their standard errors over seeds.
    theory : array, shape (n, L)
        Mean-field cˡ (:func:`hevar.meanfield.correlations.c_trajectory`).
    labels : sequence of n str
    c_star : sequence of n float, optional
        If given, |cˡ - c*| is drawn on a log axis instead of cˡ (straight lines of slope -1/ξ_c);
        points that are not above 0 are left out.
    """
    measured = np.atleast_2d(np.asarray(measured, dtype=float))
    theory = np.atleast_2d(np.asarray(theory, dtype=float))
    artists: list[Artist] = []
    for i, colour in enumerate(_colours(len(measured))):
        m, t = measured[i], theory[i]
        se = None if measured_se is None else np.atleast_2d(measured_se)[i]
        if c_star is not None:
            m, t = np.abs(m - c_star[i]), np.abs(t - c_star[i])
        artists += ax.plot(layers, t, color=colour, lw=1.4, ls="--")
        keep = np.isfinite(m) & ((m > 0) if c_star is not None else True)
        if se is not None:
            artists.append(ax.errorbar(layers[keep], m[keep], yerr=2 * se[keep], fmt="o", ms=3, color=colour,
                                       elinewidth=0.8, capsize=0, label=labels[i]))
        else:
            artists += ax.plot(layers[keep], m[keep], "o", ms=3, color=colour, label=labels[i])
    if c_star is not None:
        ax.set_yscale("log")
        ax.set_ylabel("|cˡ − c*|")
    else:
        ax.set_ylabel("correlation cˡ")
    ax.set_xlabel("layer l")
    handles, names = ax.get_legend_handles_labels()
    ax.legend(handles, names, fontsize=7, frameon=False, title="measured (±2 s.e.); theory dashed", title_fontsize=7)
    return artists


def plot_depth_scales(ax: Axes, s: Array, xi_c: Array, xi_q: Array, s_measured: Array | None = None,
                      xi_hat: Array | None = None, xi_hat_se: Array | None = None,
                      s_critical: float | None = None) -> list[Artist]:
    """ξ_c and ξ_q against σ_w²·N (log axis), with the measured ξ̂_c ± 2 s.e. and the critical point.

    Parameters
    ----------
    ax : Axes
    s : array, shape (m,)
        σ_w²·N of the theory curves.
    xi_c, xi_q : arrays, shape (m,)
        Correlation and length depth scales (inf at the critical point is not drawn).
    s_measured, xi_hat, xi_hat_se : arrays, shape (k,), optional
        Measured ξ̂_c with its standard error.
    s_critical : float, optional
        Where χ₁ = 1 (a vertical line).
    """
    xi_c = np.where(np.isfinite(xi_c), xi_c, np.nan)
    artists: list[Artist] = list(ax.plot(s, xi_c, color=OKABE_ITO[0], lw=1.6, label=r"$\xi_c = -1/\ln\chi_c$"))
    artists += ax.plot(s, np.where(np.isfinite(xi_q), xi_q, np.nan), color=OKABE_ITO[1], lw=1.4, ls="--",
                       label=r"$\xi_q = -1/\ln F'(q^*)$")
    if s_critical is not None and math.isfinite(s_critical):
        artists.append(ax.axvline(s_critical, color="0.5", lw=0.8, ls=":"))
        artists.append(ax.text(s_critical, 0.98, f" χ₁ = 1 at {s_critical:.4g}", transform=ax.get_xaxis_transform(),
                               va="top", fontsize=9, color="0.35"))
    if xi_hat is not None:
        err = None if xi_hat_se is None else 2 * np.asarray(xi_hat_se)
        artists.append(ax.errorbar(s_measured, xi_hat, yerr=err, fmt="o", ms=4, color=OKABE_ITO[2],
                                   elinewidth=1, capsize=2, label=r"measured $\hat\xi_c$ (±2 s.e.)"))
    ax.set_yscale("log")
    ax.set_xlabel(r"$\sigma_w^2 N$")
    ax.set_ylabel("depth scale (layers)")
    ax.legend(fontsize=7, frameon=False)
    return artists


def plot_spectrum(ax: Axes, sv2: Array, lam: Array | None = None, rho: Array | None = None,
                  atoms: Sequence[tuple[float, float]] = (), label: str = "", colour=None,
                  bins: int = 60, zero_tol: float = 1e-24) -> list[Artist]:
    """Histogram of squared singular values λ against ln-scale density, on a log₁₀ λ axis.

    The histogram is of log₁₀ λ for the λ above ``zero_tol``·max λ, normalised so that its area is the
    fraction of such λ; the prediction drawn is the density of log₁₀ λ, ρ(λ)·λ·ln 10. The fraction of
    λ at or below the SVD's resolution ("λ ≈ 0": exact zeros of a relu Jacobian, or the bottom of a deep
    Gaussian product, whose smallest singular values fall below 1e-15·σ_max) and the mass of a predicted
    atom at 0 go into the legend.

    Parameters
    ----------
    ax : Axes
    sv2 : array
        Measured λ (any shape; flattened).
    lam, rho : arrays, optional
        The predicted continuous density ρ(λ) at points λ (:func:`hevar.meanfield.spectrum.density`).
    atoms : sequence of (position, mass)
        Predicted point masses.
    label : str
    colour : matplotlib colour, optional
    bins : int
    zero_tol : float
        λ ≤ zero_tol·max λ count as zero: an SVD resolves σᵢ to about 1e-15·σ_max, so λ below about
        1e-30·λ_max are rounding (a relu Jacobian's exact zeros land there).
    """
    sv2 = np.asarray(sv2, dtype=float).ravel()
    sv2 = sv2[np.isfinite(sv2)]
    colour = OKABE_ITO[0] if colour is None else colour
    zero = sv2 <= zero_tol * (sv2.max() if sv2.size else 1.0)
    x = np.log10(sv2[~zero])
    frac = float(np.mean(~zero)) if sv2.size else 0.0
    text = label + (f" (λ ≈ 0: {np.mean(zero):.0%})" if np.any(zero) else "")
    artists: list[Artist] = []
    if x.size:
        span = float(np.ptp(x))
        window = None if span > 0.1 else (float(x.min()) - 0.05, float(x.max()) + 0.05)  # near a point mass
        counts, edges = np.histogram(x, bins=bins, range=window)
        width = np.diff(edges)
        dens = counts / (counts.sum() * width) * frac
        artists.append(ax.stairs(dens, edges, color=colour, alpha=0.35, fill=True, label=text))
    if lam is not None and rho is not None:
        lam = np.asarray(lam, dtype=float)
        keep = lam > 0
        zero_mass = sum(m for p, m in atoms if p == 0)
        pred_label = "prediction" + (f" (atom at 0: {zero_mass:.0%})" if zero_mass else "")
        artists += ax.plot(np.log10(lam[keep]), np.asarray(rho)[keep] * lam[keep] * math.log(10), color=colour,
                           lw=1.5, label=pred_label)
    for p, m in atoms:
        if p > 0:
            artists.append(ax.axvline(math.log10(p), color=colour, lw=1.5, ls="--"))
    ax.set_xlabel("log₁₀ λ (squared singular value of J)")
    ax.set_ylabel("density of log₁₀ λ")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.45)  # room for the legend above the histograms
    ax.legend(fontsize=6.5, frameon=False, loc="upper left")
    return artists
