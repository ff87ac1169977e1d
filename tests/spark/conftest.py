"""One small local Spark session for every Spark test (started once, stopped at the end)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# `make test` installs the extra (`make spark`); a venv without it skips these tests, saying why.
pytest.importorskip(
    "pyspark", reason="the spark extra is not installed: make spark (pip install -e '.[dev,spark]')"
)

#: Kept small: 2 cores shared with other work, tiny test data.
TEST_CONFIG = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.driver.memory": "512m",
    "spark.sql.adaptive.enabled": "false",
    # tiny queries: interpreting beats compiling (whole-stage code generation, the C2 JIT)
    "spark.sql.codegen.wholeStage": "false",
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    "spark.ui.showConsoleProgress": "false",
}


@pytest.fixture(scope="session")
def spark() -> Iterator:
    """A ``local[2]`` SparkSession bound to 127.0.0.1, UI off, 2 shuffle partitions."""
    from clvflow.spark.session import spark_session

    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    session = spark_session("local[2]", TEST_CONFIG, app_name="clvflow-tests")
    yield session
    session.stop()
