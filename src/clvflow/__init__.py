"""clvflow: predictive customer lifetime value with XGBoost, honest backtests and MLflow."""

import os

# OpenMP threads (XGBoost's) spin-wait for work by default: on a busy 2-core machine that made
# the same boosting call up to 200x slower. libgomp reads this once, when it is loaded, so it
# must be set before xgboost is first imported; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

__version__ = "0.1.0"
