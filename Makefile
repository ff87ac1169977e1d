# Two set-up commands (README): `make run` and `make test`. Both bootstrap .venv idempotently.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MLFLOW_DISABLE_TELEMETRY := true
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv spark java run test wheels pythons lint format bench bench-btyd bench-train bench-score-scale bench-threads bench-seasons bench-robustness bench-accuracy bench-calibration bench-lifetime bench-spark bench-spark-train ceiling clean browser

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: Python 3.11 not found; install it or run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

# The Spark engine's extra (pyspark, ~450 MB, a source package built once) for its tests in
# `make test`; `make run` does not need it. Java 17 must be installed (docs: README "On Spark").
SPARK_STAMP := $(VENV)/.installed-spark
spark: $(SPARK_STAMP)

$(SPARK_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,spark]"
	@touch $(SPARK_STAMP)

# The Spark tests need a Java 17+ runtime; install Debian's when there is none.
java:
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	test -n "$$v" && test "$$v" -ge 17 || { \
	  echo "installing a Java runtime (Debian openjdk-17-jre-headless) for the Spark tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    $$SUDO apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }

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

# The pinned dependency set must install from binary wheels on the newer Pythons too (resolution
# only, against PyPI: nothing is installed). `make pythons` runs the whole suite on each.
WHEEL_PYTHONS := 3.12 3.13
ARCH := $(shell uname -m)
wheels: venv
	@for v in $(WHEEL_PYTHONS); do \
	  out=$$($(BIN)/python -m pip install --dry-run --quiet --only-binary=:all: \
	    --python-version $$v --implementation cp --platform manylinux_2_28_$(ARCH) \
	    --platform manylinux_2_17_$(ARCH) --platform manylinux2014_$(ARCH) --platform linux_$(ARCH) \
	    --target "$$(mktemp -d)" -c constraints.txt ".[dev]" 2>&1) \
	  || { echo "$$out" | grep -v "^WARNING: Location"; \
	       echo "error: the pinned dependencies do not all have wheels for Python $$v"; exit 1; }; \
	  echo "wheels: every pinned dependency has a binary wheel for Python $$v ($(ARCH))"; \
	done

# The whole suite on Python 3.12 and 3.13 (on PATH or installed by pyenv), each in its own
# .venv-3.x from the same constraints. Not part of `make test` (it triples its time).
pythons: browser
	@for v in $(WHEEL_PYTHONS); do \
	  py=; for c in python$$v $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$v*/bin/python$$v; do \
	    $$c --version >/dev/null 2>&1 && { py=$$c; break; }; done; \
	  test -n "$$py" || { echo "pythons: no working python$$v found, skipped"; continue; }; \
	  echo "pythons: running the suite on $$($$py --version)"; \
	  test -x .venv-$$v/bin/python || $$py -m venv .venv-$$v || exit 1; \
	  .venv-$$v/bin/python -m pip install --quiet -c constraints.txt -e ".[dev,spark]" || exit 1; \
	  PATH=$(CURDIR)/.venv-$$v/bin:$$PATH .venv-$$v/bin/python -m pytest -q -p no:cacheprovider || exit 1; \
	done

test: venv spark java browser wheels
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n auto --dist loadfile

lint: venv spark
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: venv
	$(BIN)/python -m benchmarks.bench

# BG/NBD + Gamma-Gamma fit times on the 100k and 1M simulated summaries, against lifetimes' fitters
# (CLVFLOW_LIFETIMES_PYTHON, see docs/benchmarks.md) and the numerical-gradient fit they replaced
bench-btyd: venv
	$(BIN)/python -m benchmarks.bench_btyd

# clvflow train on the 100k and 1M simulated logs (cutoff 2024-01-01, H 90): wall, CPU, peak RSS,
# the time split by step, against the XGBoost-alone and lifetimes (CLVFLOW_LIFETIMES_PYTHON)
# floors; `--sizes 100000` for a shorter run (see docs/benchmarks.md)
bench-train: venv
	$(BIN)/python -m benchmarks.bench_train

# clvflow score --no-reasons on simulated logs of 1M to 10M customers, each in customer-hash parts:
# wall, CPU, peak RSS (see README "Benchmarks"); big sizes under the machine-wide lock
bench-score-scale: venv
	$(BIN)/python -m benchmarks.bench_score_scale

# XGBoost threading under load: the booster fit on a 10k-customer log with a CPU burner running,
# clvflow's default (passive wait, available cores) paired against --n-jobs 1 and the old
# active-wait 2-thread default (~10 min on the shared VM; `--quick` for a tiny run)
bench-threads: venv
	$(BIN)/python -m benchmarks.bench_threads

# Accuracy across seasons: the model's level with and without the same-season correction (~7 min)
bench-seasons: venv
	$(BIN)/python -m benchmarks.bench_seasons

# Robustness grid: `clvflow train` with defaults on every monthly CDNOW cutoff x H 30/90/181 and on
# simulated retail logs with 3-12 months of history; exit 0 or a clear exit 2, never a traceback (~40 min)
bench-robustness: venv
	$(BIN)/python -m benchmarks.bench_robustness

# Accuracy across cutoffs: multi-cutoff backtests vs BG/NBD on CDNOW, a retail-like and a plain
# simulated log (~30 min); `--snapshot-rule` compares minimum snapshot histories
bench-accuracy: venv
	$(BIN)/python -m benchmarks.bench_accuracy

# Calibration of the per-customer intervals (coverage), expected purchases and next purchase
# dates: backtests on CDNOW and the simulator (~5 min; `--quick` for a tiny run)
bench-calibration: venv
	$(BIN)/python -m benchmarks.bench_calibration

# Lifetime-value backtest: window totals and rankings at 30/90/181 days of the model, the long run
# behind clv_lifetime (MBG/NBD) and BG/NBD on CDNOW and a simulated log, lifetime totals per
# horizon and against the simulator's true lifetime value (~10 min)
bench-lifetime: venv
	$(BIN)/python -m benchmarks.bench_lifetime

# Single machine vs Spark local[2] with a 2g driver on simulated 1M and 5M customers: wall, CPU,
# peak memory (the process tree, the Python driver, the JVM) of features, train (50 trees; the
# single machine up to 1M) and score, each in its own process (needs several GB: run it alone,
# e.g. under flock; `--sizes 1000000` for a shorter run; table quoted in README "On Spark")
bench-spark: venv spark java
	$(BIN)/python -m benchmarks.bench_spark

# Training on Spark: clvflow backtest (2024-01-01, H 90, 50 trees) on one machine and with
# --engine spark on local[2] (driver memory 2g, boosters on a 25,000-customer sample) for the
# 100k and 1M simulated logs: wall, CPU, peak driver and JVM memory, the sample, the metrics with
# their bootstrap intervals (~80 min on the shared VM; see README "On Spark")
bench-spark-train: venv spark java
	$(BIN)/python -m benchmarks.bench_spark_train

# Diagnostic: how far can boosters fitted on CDNOW's evaluation window itself rank? (~40 s)
ceiling: venv
	$(BIN)/python -m benchmarks.ceiling

clean:
	rm -rf $(VENV) .venv-3.* .pytest_cache .ruff_cache .mypy_cache .hypothesis
