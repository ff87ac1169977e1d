#!/bin/sh
# Runs an MLproject entry script with the Python that has clvflow, so `mlflow run` works without
# .venv/bin on PATH: the active environment's (`mlflow run --env-manager uv` activates one, as
# does `. .venv/bin/activate`), else this project's .venv (`.venv/bin/mlflow run .`), else the
# `python` on PATH.
if [ -n "$VIRTUAL_ENV" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  exec "$VIRTUAL_ENV/bin/python" "$@"
fi
if [ -x .venv/bin/python ]; then
  exec .venv/bin/python "$@"
fi
exec python "$@"
