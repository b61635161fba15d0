"""The NumPy engine: weight initialisation (widths, fan modes, distributions) and the stacked,
log-scaled forward and backward passes that measure qˡ, q̃ˡ and gradient norms."""
