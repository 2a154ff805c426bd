"""A Spark session sized for one machine: the local command, tests, benchmarks.

On Glue the session comes from the job; these settings only apply locally.
Start-up time dominates small runs, so the UI, event logs and adaptive
re-planning overhead are kept out of the way, and shuffles use few partitions.
"""

from __future__ import annotations

import os
import sys

from bridge_downstream.common.storage import process_umask

# Short local runs: the C1 JIT only (less warm-up), the parallel collector.
# The heap is committed and touched at start-up (with -Xms equal to the
# maximum): the JVM's memory is then set by DRIVER_MEMORY, not by how long the
# run is -- left to grow, the collector enlarged the heap, and the pages it
# touched, over a long publish.
JAVA_OPTIONS = "-XX:+UseParallelGC -XX:TieredStopAtLevel=1 -Xss4m -XX:+AlwaysPreTouch"
# Spark's execution memory is a share of this heap; a publish's tasks are
# sized (publish.SHUFFLE_PARTITION_BYTES) to need a bounded part of it.
DRIVER_MEMORY = "1g"


def local_spark_session(app_name: str = "bridge-downstream", cores: int | None = None):
    from pyspark.sql import SparkSession

    cores = cores or os.cpu_count() or 2
    memory = os.environ.get("BRIDGE_DOWNSTREAM_SPARK_MEMORY", DRIVER_MEMORY)
    java_options = os.environ.get("BRIDGE_DOWNSTREAM_SPARK_JAVA_OPTIONS", f"{JAVA_OPTIONS} -Xms{memory}")
    # Python workers must run the interpreter (and packages) of the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(max(2, cores)))
        .config("spark.default.parallelism", str(max(2, cores)))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", memory)
        # Every publish writes a fresh version prefix: plain (static) overwrite,
        # and the v2 committer (task files moved once, not twice), are enough.
        .config("spark.sql.sources.partitionOverwriteMode", "static")
        .config("spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version", "2")
        .config("spark.driver.extraJavaOptions", java_options)
        # Many small part files (one per partition and ingest worker): pack them
        # into one split per core instead of one per 32 files (the 4 MB default).
        .config("spark.sql.files.openCostInBytes", str(64 << 10))
        # A task reads at most 32 MiB of NDJSON (the default, 128 MiB, is
        # reached only by large inputs): a task's memory does not grow with the input.
        .config("spark.sql.files.maxPartitionBytes", str(32 << 20))
        # Small data: adaptive re-planning costs more than it saves.
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.sql.parquet.compression.codec", "snappy")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.debug.maxToStringFields", "1000")
        # Local files without Hadoop's .crc checksum files: without Hadoop's
        # native library every file and folder Spark creates locally costs a
        # chmod process, and checksum files were a quarter of them.
        .config("spark.hadoop.fs.file.impl", "org.apache.hadoop.fs.RawLocalFileSystem")
        # Files Spark writes follow the user's umask, as every other file of an output does.
        .config("spark.hadoop.fs.permissions.umask-mode", f"{process_umask():03o}")
    )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session
