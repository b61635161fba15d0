"""hevar from Python: a sweep in memory, its tables as DataFrames, a join, the theory, a figure.

Run it as a script (``python docs/example.py``) or paste it into a notebook cell by cell; CI runs it.
"""

import matplotlib

matplotlib.use("Agg")  # in a notebook, leave this out and the figure shows inline

import hevar  # noqa: E402

# A ReLU network of depth 30 and width 256 around He initialisation (σ_w²·N = 2), 4 seeds: ~2 s.
run = hevar.sweep(act="relu", depth=30, width=256, sigma_w2=[1, 1.5, 2, 2.5, 3], seeds=4)
print(run)

# One row per configuration: the measured per-layer growth χ̂ of q̃ˡ beside the theory.
print(run.summary[["config_id", "sigma_w2_n", "chi_hat", "chi_hat_se", "chi_theory", "chi1"]])

# One row per configuration and layer; config_id joins it to the summary.
per_layer = run.layers.merge(run.summary[["config_id", "chi_hat"]], on="config_id")
flat = per_layer[per_layer.sigma_w2_n == 2.0]
print(f"He init: q̃ over the depth moves by a factor {flat.q_tilde.max() / flat.q_tilde.min():.3f}")

# Where χ̂ crosses 1, with a 95 % interval (seed spread and interpolation between grid points).
if run.crossings is not None:
    print(run.crossings[["activation", "kind", "sigma_w2_n_cross", "sigma_w2_n_cross_lo", "sigma_w2_n_cross_hi"]])

# The mean-field answer for another activation: the same object as `hevar theory --act tanh --json`.
tanh = hevar.theory("tanh", sigma_b2=0.05)
print(f"tanh at σ_b² = 0.05: critical σ_w²·N = {tanh['critical_sigma_w2_n']:.4f} ({tanh['critical_kind']})")

# One figure on a Matplotlib Axes.
ax = run.plot("stability")
ax.figure.savefig("stability.png")
