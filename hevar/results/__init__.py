"""Results: the run folder (the only code that reads and writes files) and the Python API's view of it."""
