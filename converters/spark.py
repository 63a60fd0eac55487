"""``--engine spark``: tokenize the work units as Spark tasks; the shards are still written by
the one ordered writer, so the bytes equal the local engine's.

Each task runs :func:`converters.units.run_unit` on one unit and writes its token file into
the work folder, which must therefore be visible to the driver and every executor (local mode:
any folder; a cluster: a shared filesystem such as NFS, DBFS or a FUSE-mounted bucket, passed
as ``--work-dir``). See examples/CONVERT.md for the cluster mapping.

The master comes from an active SparkSession if there is one, else ``$SLWDATA_SPARK_MASTER``,
else ``local[*]``.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from converters.readers import ReadOptions, Unit
from converters.units import run_unit
from slwdata.errors import ConvertError

__all__ = ["tokenize_units_spark", "spark_available"]


def spark_available() -> str | None:
    """None when pyspark and a JVM are usable, else the reason they are not."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install 'slwdata[spark]')"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "no Java runtime (java on PATH or JAVA_HOME) for Spark"
    return None


def tokenize_units_spark(
    units: list[Unit], tok_spec: dict[str, Any], dtype: str, opts: ReadOptions, on_error: str, work: Path
) -> list[dict[str, Any]]:
    """Run the pending units as one Spark job (one task per unit); returns their results."""
    reason = spark_available()
    if reason:
        raise ConvertError(f"--engine spark: {reason}")
    if not units:
        return []
    # Executors must run the same interpreter (and so see the same packages) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    spark = active or (
        SparkSession.builder.master(os.environ.get("SLWDATA_SPARK_MASTER", "local[*]"))
        .appName("slwdata-convert")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    try:
        payload = [asdict(u) for u in units]
        work_s = str(work)

        def task(d: dict[str, Any]) -> dict[str, Any]:
            return run_unit(Unit(**d), tok_spec, dtype, opts, on_error, work_s)

        try:
            results = spark.sparkContext.parallelize(payload, numSlices=len(payload)).map(task).collect()
        except Exception as exc:  # Py4JJavaError wraps the task's Python exception text
            text = str(exc)
            marker = "ConvertError: "
            if marker in text:
                msg = text.split(marker, 1)[1].splitlines()[0]
                raise ConvertError(msg) from None
            raise
        return results
    finally:
        if active is None:
            spark.stop()
