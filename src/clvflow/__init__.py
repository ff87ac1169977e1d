"""clvflow: predictive customer lifetime value with XGBoost, honest backtests and MLflow."""

__version__ = "0.1.0"
