"""Mean-field theory: activations with their Gaussian moments, expectations, the q/q̃ maps and their
fixed points, finite-width fluctuations, and the frameworks' gains set beside the theory's."""
