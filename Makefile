# Two set-up commands (README): `make run` and `make test`. Both bootstrap .venv idempotently.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MLFLOW_DISABLE_TELEMETRY := true
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv run test lint format bench bench-btyd bench-seasons bench-robustness bench-accuracy ceiling clean browser

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: Python 3.11 not found; install it or run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

# Train on the embedded CDNOW data through the MLproject (backtest, refit, log, register, export).
run: venv
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db} \
	  $(BIN)/mlflow run . --env-manager local --experiment-name clvflow

# The HTML report test renders in headless Chromium (Debian package); install it when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the report rendering test"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: venv browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: venv
	$(BIN)/python -m clvflow.bench

# BG/NBD + Gamma-Gamma fit times on the 100k and 1M simulated summaries, against lifetimes' fitters
# (CLVFLOW_LIFETIMES_PYTHON, see docs/benchmarks.md) and the numerical-gradient fit they replaced
bench-btyd: venv
	$(BIN)/python -m clvflow.bench_btyd

# Accuracy across seasons: the model's level with and without the same-season correction (~7 min)
bench-seasons: venv
	$(BIN)/python -m clvflow.bench_seasons

# Robustness grid: `clvflow train` with defaults on every monthly CDNOW cutoff x H 30/90/181 and on
# simulated retail logs with 3-12 months of history; exit 0 or a clear exit 2, never a traceback (~40 min)
bench-robustness: venv
	$(BIN)/python -m clvflow.bench_robustness

# Accuracy across cutoffs: multi-cutoff backtests vs BG/NBD on CDNOW, a retail-like and a plain
# simulated log (~30 min); `--snapshot-rule` compares minimum snapshot histories
bench-accuracy: venv
	$(BIN)/python -m clvflow.bench_accuracy

# Diagnostic: how far can boosters fitted on CDNOW's evaluation window itself rank? (~40 s)
ceiling: venv
	$(BIN)/python -m clvflow.ceiling

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
