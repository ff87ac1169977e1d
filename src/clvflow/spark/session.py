"""Starting a SparkSession, after checking that pyspark and Java 17 are there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from clvflow.core.errors import InputError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: The Java release pyspark 4 runs on (17 or later).
JAVA_MIN = 17
#: Settings of every session clvflow starts: UTC (timestamps are naive, read as UTC), no web UI.
BASE_CONFIG = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
#: Shuffle partitions per core of a local master (unless the user set them): Spark's default of
#: 200 is sized for a cluster; on a few local cores each shuffle then runs 200 small tasks per
#: stage. Adaptive execution (on by default) still coalesces small ones.
LOCAL_PARTITIONS_PER_CORE = 4
SHUFFLE_PARTITIONS = "spark.sql.shuffle.partitions"


def java_command() -> str:
    """The ``java`` that Spark will start: ``$JAVA_HOME/bin/java``, else the one on PATH.

    Raises:
        InputError: no Java found.
    """
    home = os.environ.get("JAVA_HOME")
    if home:
        java = Path(home) / "bin" / "java"
        if not java.is_file():
            raise InputError(
                f"JAVA_HOME is {home!r} but {java} does not exist. Point JAVA_HOME at a Java "
                f"{JAVA_MIN} installation (e.g. apt-get install openjdk-{JAVA_MIN}-jre-headless) "
                "or unset it to use the java on PATH."
            )
        return str(java)
    found = shutil.which("java")
    if found is None:
        raise InputError(
            f"--engine spark needs Java {JAVA_MIN} or later, and no java was found (JAVA_HOME is "
            f"unset and java is not on PATH). Install it (e.g. apt-get install "
            f"openjdk-{JAVA_MIN}-jre-headless) or use the default single-machine engine."
        )
    return found


def java_major(version_text: str) -> int | None:
    """The major release in ``java -version`` output (``1.8.0_392`` -> 8, ``17.0.15`` -> 17)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_text)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_java() -> int:
    """The Java major release Spark will use; InputError when missing or older than 17."""
    java = java_command()
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as exc:
        raise InputError(
            f"could not run {java} -version ({exc}); install Java {JAVA_MIN}."
        ) from None
    major = java_major(done.stderr + done.stdout)
    if major is None or major < JAVA_MIN:
        raise InputError(
            f"--engine spark needs Java {JAVA_MIN} or later; {java} reports "
            f"{(done.stderr or done.stdout).strip().splitlines()[:1]}. Install Java {JAVA_MIN} "
            "and set JAVA_HOME to it, or use the default single-machine engine."
        )
    return major


def check_time_zone(zone: str | None) -> None:
    """InputError unless the session time zone is UTC: clvflow's timestamps are naive, and a
    zoned Parquet timestamp is taken as its UTC clock time, as the default engine does."""
    if zone not in ("UTC", "Etc/UTC", "GMT", "Z", "+00:00"):
        raise InputError(
            f"the active Spark session's time zone is {zone!r}; clvflow needs UTC. Set "
            "spark.conf.set('spark.sql.session.timeZone', 'UTC') (or start clvflow without a "
            "session: it starts one in UTC)."
        )


def require_pyspark() -> None:
    """InputError (with the install command) when pyspark is not installed."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise InputError(
            "--engine spark needs pyspark: pip install 'clvflow[spark]' (and Java "
            f"{JAVA_MIN}), or use the default single-machine engine."
        ) from None


def local_cores(master: str | None) -> int | None:
    """The cores of a local master (``local`` 1, ``local[4]`` 4, ``local[*]`` this machine's,
    ``local[2,3]`` 2), None for a cluster master."""
    if master is None:
        return None
    match = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\s*\d+)?\])?", master.strip())
    if match is None:
        return None
    cores = match.group(1)
    if cores is None:
        return 1
    return (os.cpu_count() or 1) if cores == "*" else max(1, int(cores))


def local_shuffle_partitions(master: str | None) -> int | None:
    """Default ``spark.sql.shuffle.partitions`` of a session on ``master``:
    :data:`LOCAL_PARTITIONS_PER_CORE` per core of a local master, None (Spark's own) elsewhere."""
    cores = local_cores(master)
    return None if cores is None else LOCAL_PARTITIONS_PER_CORE * cores


def spark_session(
    master: str | None = None, config: dict[str, str] | None = None, app_name: str = "clvflow"
) -> SparkSession:
    """The active SparkSession, or a new one on ``master`` (default: ``local[*]``, or what
    spark-submit set) with :data:`BASE_CONFIG` and ``config``, after checking pyspark and Java.
    On a local master the shuffle partitions default to :func:`local_shuffle_partitions` unless
    ``config``, spark-defaults.conf or ``--conf`` set them.

    Raises:
        InputError: pyspark or Java 17 missing.
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:  # (a notebook's, or a test's session)
        check_time_zone(active.conf.get("spark.sql.session.timeZone"))
        return active
    check_java()
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    elif "PYSPARK_GATEWAY_PORT" not in os.environ:  # (set under spark-submit, with its master)
        master = "local[*]"
        builder = builder.master(master)
    if (master or "").startswith("local"):
        # Python workers of a local session (the date parser, scoring's mapInPandas) run this
        # interpreter, the one clvflow is installed in, not Spark's default `python3` on the
        # PATH, which may lack it (pyspark reads the variable when the session starts). On a
        # cluster the executors' Python is the cluster's: clvflow must be installed there.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in {**BASE_CONFIG, **(config or {})}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    partitions = local_shuffle_partitions(session.sparkContext.master)
    user_set = SHUFFLE_PARTITIONS in (config or {}) or session.sparkContext.getConf().contains(
        SHUFFLE_PARTITIONS  # (spark-defaults.conf, --conf, PYSPARK_SUBMIT_ARGS)
    )
    if partitions is not None and not user_set:
        session.conf.set(SHUFFLE_PARTITIONS, str(partitions))
    return session
