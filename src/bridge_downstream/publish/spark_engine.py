"""The Spark publish engine (as on Glue): NDJSON read and deduplicated by Spark,
relationalized by :func:`~bridge_downstream.relationalize.relationalize_spark`,
Parquet written by Spark; every other step is :mod:`.engine_steps`'."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Protocol

from bridge_downstream.common import layout
from bridge_downstream.common.storage import Storage
from bridge_downstream.config.profiles import Profile
from bridge_downstream.config.registry import SchemaRegistry
from bridge_downstream.config.run_config import DEFAULT_RETENTION
from bridge_downstream.publish.catalog import Catalog
from bridge_downstream.publish.engine_steps import (
    PublishResult,
    begin_publish,
    check_interrupt,
    complete_publish,
    deleted_dataset,
    describe_table,
    table_partition_keys,
)
from bridge_downstream.publish.manifest import (
    PublishedTable,
)
from bridge_downstream.publish.spark_dedup import dedup_lines

SHUFFLE_PARTITION_BYTES = 64 << 20  # of NDJSON per Spark task in a publish


SPARK_BOOKKEEPING = ("_SUCCESS", "_committed_", "_started_")


class SparkLocation(Protocol):
    """How Spark reaches keys of a Storage: directly (a local folder, S3 on
    Glue) or through a local staging copy (local Spark against emulated S3)."""

    def read_uri(self, storage: Storage, prefix: str) -> str: ...

    def write_uri(self, storage: Storage, prefix: str) -> str: ...

    def written(self, storage: Storage, prefix: str) -> None: ...

    def close(self) -> None:
        """Remove whatever local copies the location made."""


class DirectLocation:
    def __init__(self, uri_of: Callable[[Storage, str], str] | None = None):
        self.uri_of = uri_of or (lambda storage, key: storage.uri(key))

    def read_uri(self, storage: Storage, prefix: str) -> str:
        return self.uri_of(storage, prefix)

    def write_uri(self, storage: Storage, prefix: str) -> str:
        return self.uri_of(storage, prefix)

    def written(self, storage: Storage, prefix: str) -> None:
        return None

    def close(self) -> None:
        return None


def partition_strings(frame, partition_columns: list[str]):
    """Partition values as zero-padded strings, as the ingest folders have them."""
    from pyspark.sql import functions as F

    for name in partition_columns:
        width = layout.PARTITION_WIDTHS.get(name)
        text = F.col(name).cast("string")
        frame = frame.withColumn(name, F.lpad(text, width, "0") if width else text)
    return frame


def shuffle_partitions(spark, work: Storage, dataset_id: str) -> int:
    """Tasks for a Spark publish's shuffles (dedup, then clustering by output
    partition): one per core, and more for a large dataset, one per
    :data:`SHUFFLE_PARTITION_BYTES` of its NDJSON. A task sorts its share in
    memory until the JVM's execution memory is full, so with a fixed number
    of tasks the JVM's memory grows with the dataset; a bounded share keeps it flat."""
    size = sum(info.size for info in work.list(layout.dataset_prefix(dataset_id) + "/") if info.key.endswith(".ndjson"))
    return max(spark.sparkContext.defaultParallelism, math.ceil(size / SHUFFLE_PARTITION_BYTES))


def publish_dataset(
    spark,
    *,
    dataset_id: str,
    registry: SchemaRegistry,
    profile: Profile,
    work: Storage,
    published: Storage,
    run_id: str,
    location: SparkLocation | None = None,
    catalog: Catalog | None = None,
    retention: int = DEFAULT_RETENTION,
    mapper: Callable = map,
    fail_after_tables: int | None = None,
) -> PublishResult:
    """Publish the current JSON dataset as a new version; returns its manifest.

    ``fail_after_tables`` interrupts the publish on purpose after that many
    tables (tests use it to show that an interrupted publish changes nothing).
    The Spark engine; :mod:`.arrow_engine` is the same publish on Arrow.
    """
    from bridge_downstream.relationalize import relationalize_spark

    location = location or DirectLocation()
    pending = begin_publish(registry, profile, dataset_id, work, published, run_id)
    version, plan = pending.version, pending.plan

    lines = spark.read.text(
        location.read_uri(work, layout.dataset_prefix(dataset_id)), pathGlobFilter="*.ndjson", recursiveFileLookup=True
    )
    deleted = None
    deleted_id = deleted_dataset(profile, dataset_id, work)
    if deleted_id is not None:
        deleted = spark.read.text(
            location.read_uri(work, layout.dataset_prefix(deleted_id)),
            pathGlobFilter="*.ndjson",
            recursiveFileLookup=True,
        )
    partitions = shuffle_partitions(spark, work, dataset_id)
    survivors = dedup_lines(lines, dataset_id, profile, deleted, partitions=partitions)
    # Parsed once and kept: every table reads the same rows, so dedup (a
    # shuffle) and JSON parsing run once per publish, not once per table.
    frames = relationalize_spark(spark, plan, survivors, persist=True, cluster_partitions=partitions)

    tables: dict[str, PublishedTable] = {}
    try:
        for written, table in enumerate(plan.tables):
            check_interrupt(dataset_id, written, fail_after_tables)
            partition_keys = table_partition_keys(plan, table)
            frame = partition_strings(frames[table.name], partition_keys)
            prefix = layout.table_prefix(dataset_id, version, "parquet", table.name)
            frame.write.mode("overwrite").partitionBy(*partition_keys).parquet(location.write_uri(published, prefix))
            location.written(published, prefix)
            tables[table.name] = describe_table(published, plan, dataset_id, version, table, mapper)
    finally:
        spark.catalog.clearCache()  # the persisted rows of this publish
    return complete_publish(pending, published, tables, catalog=catalog, retention=retention)


def publish_all(spark, datasets: Iterable[str], **kwargs) -> dict[str, PublishResult]:
    return {dataset_id: publish_dataset(spark, dataset_id=dataset_id, **kwargs) for dataset_id in datasets}
