"""batch_ml: batch machine learning on Dagster (see README.md)."""

import os

# LightGBM's OpenMP threads spin-wait between boosting rounds by default. With anything else
# on the cores (two runs on a 2-core machine) each round then waits for descheduled spinners:
# a small training took 6.7-9.0 s with 2 threads vs 0.16-0.37 s with passive waiting
# (benchmarks/suite.py set-up data, load average 3.4). Set before lightgbm loads libgomp;
# an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
