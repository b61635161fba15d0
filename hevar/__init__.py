"""hevar: signal and gradient propagation through deep networks at initialization.

Subpackages: ``meanfield`` (activations and their Gaussian moments, expectations, mean-field maps,
finite-width fluctuations, gains), ``engine`` (initialisation and the NumPy passes), ``experiments``
(config, sweep, executors, memory guard), ``results`` (run folders) and ``views`` (CLI, figures).
"""

__version__ = "0.1.0"
