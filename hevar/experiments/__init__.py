"""Experiments: the one validated configuration, the sweep's tasks and reductions, where tasks run
(executors) and the memory guard."""
