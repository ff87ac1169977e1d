"""Starting the Spark engine: a clear InputError, not a Java stack trace, when pyspark or Java 17
is missing (a real `java` executable is run for the version)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clvflow.cli.main import main
from clvflow.core.errors import InputError
from clvflow.spark.session import check_java, java_major, local_cores, local_shuffle_partitions


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("no version here", None),
    ],
)
def test_java_major_reads_java_version_output(text: str, major: int | None) -> None:
    """Issue 12 item 4: old (1.8) and new (17, 21) version strings."""
    assert java_major(text) == major


def fake_java_home(tmp_path: Path, version: str) -> Path:
    """A JAVA_HOME whose bin/java is a real executable printing ``version`` like java does."""
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2018-10-16' >&2\n")
    java.chmod(0o755)
    return java.parent.parent


def test_an_old_java_is_refused_with_what_to_install(tmp_path, monkeypatch) -> None:
    """Issue 12 item 4: Java 11 under JAVA_HOME: InputError naming Java 17 and JAVA_HOME."""
    monkeypatch.setenv("JAVA_HOME", str(fake_java_home(tmp_path, "11.0.2")))
    with pytest.raises(InputError, match=r"needs Java 17 or later.*11\.0\.2.*JAVA_HOME"):
        check_java()


def test_a_java_home_without_java_is_refused(tmp_path, monkeypatch) -> None:
    """Issue 12 item 4: a JAVA_HOME folder without bin/java names the missing file."""
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(InputError, match=r"bin/java does not exist"):
        check_java()
    monkeypatch.setenv("JAVA_HOME", str(fake_java_home(tmp_path, "17.0.15")))
    assert check_java() == 17


def test_without_pyspark_the_spark_engine_exits_2_with_the_install_command(
    tmp_path, monkeypatch, capsys
) -> None:
    """Issue 12 item 4: pyspark not importable: exit 2 and `pip install 'clvflow[spark]'`;
    the default engine still works (the package does not need pyspark)."""
    monkeypatch.setitem(sys.modules, "pyspark", None)  # (import pyspark now raises ImportError)
    path = tmp_path / "tx.csv"
    path.write_text("customer_id,timestamp,amount\n1,2024-01-05,3.5\n")
    args = ["features", "--transactions", str(path), "--as-of", "2024-02-01"]
    assert main([*args, "--output", str(tmp_path / "a.csv"), "--engine", "spark"]) == 2
    assert "pip install 'clvflow[spark]'" in capsys.readouterr().err
    assert main([*args, "--output", str(tmp_path / "b.csv")]) == 0
    assert (tmp_path / "b.csv").read_text().startswith("customer_id,recency_days")


def test_an_active_session_outside_utc_is_refused(spark) -> None:
    """Issue 12 item 4: a notebook's session in another time zone would shift zoned Parquet
    timestamps by its offset: refused with the setting to change; UTC is accepted."""
    from clvflow.spark.session import spark_session

    spark.conf.set("spark.sql.session.timeZone", "Europe/Berlin")
    try:
        with pytest.raises(InputError, match=r"'Europe/Berlin'; clvflow needs UTC"):
            spark_session()
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    assert spark_session() is spark


def test_local_masters_get_four_shuffle_partitions_per_core() -> None:
    """Issue 12 item 4: Spark's 200 shuffle partitions are a cluster's; a local master gets 4 per
    core (local[2] 8, local 4), a cluster master keeps Spark's default (None)."""
    assert local_cores("local[2]") == 2 and local_shuffle_partitions("local[2]") == 8
    assert local_cores("local") == 1 and local_shuffle_partitions("local") == 4
    assert local_cores("local[3,2]") == 3
    assert local_shuffle_partitions("local[*]") == 4 * (os.cpu_count() or 1)
    for master in ("spark://host:7077", "yarn", "k8s://https://host:443", "localhost", None):
        assert local_shuffle_partitions(master) is None


_SESSION_SCRIPT = """
from clvflow.spark.session import spark_session
first = spark_session("local[2]")
print(first.conf.get("spark.sql.shuffle.partitions"))
first.stop()
second = spark_session("local[2]", {"spark.sql.shuffle.partitions": "3"})
print(second.conf.get("spark.sql.shuffle.partitions"))
second.stop()
"""


def test_a_new_local_session_gets_8_partitions_unless_the_user_set_them() -> None:
    """Issue 12 item 4: a fresh local[2] session (its own JVM, in a subprocess) shuffles into 8
    partitions, not 200; the user's own setting wins (3 stays 3)."""
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("PYSPARK_SUBMIT_ARGS", None)
    done = subprocess.run(
        [sys.executable, "-c", _SESSION_SCRIPT],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["8", "3"]
