"""One small local Spark session for every Spark test (started once, stopped at the end)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

#: Kept small: 2 cores shared with other work, tiny test data.
TEST_CONFIG = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.driver.memory": "512m",
    "spark.sql.adaptive.enabled": "false",
}


@pytest.fixture(scope="session")
def spark() -> Iterator:
    """A ``local[2]`` SparkSession bound to 127.0.0.1, UI off, 2 shuffle partitions."""
    from clvflow.spark.session import spark_session

    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    session = spark_session("local[2]", TEST_CONFIG, app_name="clvflow-tests")
    yield session
    session.stop()
