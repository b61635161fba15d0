import os

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("COLUMNS", "200")  # keep Rich output on one line in CliRunner
