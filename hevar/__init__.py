"""hevar: signal and gradient propagation through deep networks at initialization.

Modules: ``activations`` (φ, φ' and their Gaussian moments), ``gaussian`` (expectations),
``theory`` (mean-field maps), ``engine`` (the NumPy MLP), ``config`` (the validated sweep
configuration), ``sweep`` (tasks and reductions), ``store`` (run folders and CSVs),
``plots`` (figures) and ``cli`` (the command line).
"""

__version__ = "0.1.0"
