"""hevar: signal and gradient propagation through deep networks at initialization.

The Python API (see the README's "Python API" section)::

    import hevar
    run = hevar.sweep(act="relu", depth=30, sigma_w2=[1, 1.5, 2, 2.5, 3], seeds=4)
    run.summary, run.layers, run.crossings          # pandas DataFrames, joinable on config_id
    run.plot("stability")                            # one figure on a Matplotlib Axes
    tr = hevar.train(act="relu", depth=30, sigma_w2=[1, 2], seeds=3)   # tr.training, tr.training_summary
    hevar.load("outputs/RUN"), hevar.theory("tanh", sigma_b2=0.05), hevar.gains(["relu", "gelu"])

Subpackages: ``meanfield`` (activations and their Gaussian moments, expectations, mean-field maps,
finite-width fluctuations, gains), ``engine`` (initialisation and the NumPy passes), ``experiments``
(config, sweep, runner, executors, memory guard), ``results`` (run folders, the Run object) and
``views`` (CLI, figures).
"""

__version__ = "0.1.0"
__all__ = ["sweep", "train", "load", "theory", "gains", "Run", "TrainingRun", "UsageError"]


def __getattr__(name: str):  # lazy, so that `hevar --help` does not import pandas
    if name in ("sweep", "train", "load", "theory", "gains"):
        from hevar import api

        return getattr(api, name)
    if name == "Run":
        from hevar.results.run import Run

        return Run
    if name == "TrainingRun":
        from hevar.results.training import TrainingRun

        return TrainingRun
    if name == "UsageError":
        from hevar.errors import UsageError

        return UsageError
    raise AttributeError(f"module 'hevar' has no attribute {name!r}")
