"""The Spark publish engine (as on Glue): NDJSON read and deduplicated by Spark,
relationalized by :func:`~bridge_downstream.relationalize.relationalize_spark`,
Parquet written by Spark; every other step is :mod:`.engine_steps`'."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol
from urllib.parse import unquote

from bridge_downstream.common import layout
from bridge_downstream.common.run_commits import committed_part_files
from bridge_downstream.common.storage import ObjectInfo, Storage
from bridge_downstream.config.profiles import Profile
from bridge_downstream.config.registry import SchemaRegistry
from bridge_downstream.config.run_config import DEFAULT_RETENTION
from bridge_downstream.publish.catalog import Catalog
from bridge_downstream.publish.engine_steps import (
    PendingVersion,
    PublishResult,
    RecordCounts,
    begin_publish,
    check_interrupt,
    complete_publish,
    describe_table,
    table_partition_keys,
)
from bridge_downstream.publish.file_layout import layout_for, sort_columns, spark_writer
from bridge_downstream.publish.increments import (
    KEY_SEPARATOR,
    Increment,
    key_index_rows,
    part_partition,
    part_partition_rows,
    row_partition,
    write_part_partitions,
)
from bridge_downstream.publish.manifest import (
    PublishedTable,
)
from bridge_downstream.publish.nested_tables import describe_nested_table, nested_table_of
from bridge_downstream.publish.spark_dedup import (
    DEDUPLICATED,
    EXPORT_END_DATE,
    KEY,
    PART_FILE,
    TIME_MONTH,
    WRITTEN,
    flag_lines,
)

log = logging.getLogger(__name__)

SHUFFLE_PARTITION_BYTES = 64 << 20  # of NDJSON per Spark task in a publish


SPARK_BOOKKEEPING = ("_SUCCESS", "_committed_", "_started_")

# Settings a publish needs, whatever session it is given (local, tests, Glue).
# Planned writes put the writer's projection of the partition columns (empty
# text to null) above the table's projection in the logical plan, and Spark's
# optimizer then compares every column of the one with every column of the
# other (``CollapseProject``): a table of 10,000 columns spent three quarters
# of its publish there. Unplanned, the writer adds the same projection when it
# runs, and the publish's time grows with the columns, not their square.
# Timestamps are written as Parquet's TIMESTAMP(MICROS, UTC), as Arrow writes
# them, not as Spark's default INT96 (deprecated, and read as text by some readers).
PUBLISH_SETTINGS = {
    "spark.sql.optimizer.plannedWrite.enabled": "false",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}


# Spark's fixed cost of a query grows with its columns -- analysis, the plan's
# description for the UI, and compiling the generated code of each projection:
# a document of 10,000 keys took 17 s to publish on Spark, 2 s on Arrow. A
# dataset at least this wide whose input is at most this large is therefore
# published on the driver by the Arrow executor (decision 0027): the same
# tables, written in the driver's time rather than Spark's planning.
DRIVER_PUBLISH_MIN_COLUMNS = 1_000
DRIVER_PUBLISH_MAX_BYTES = 64 << 20
# A table this wide that stays on Spark has its rows projected by Spark's
# interpreter: compiling a projection of 10,000 columns took most of the
# write's time (and, with 1 GiB of heap, ran out of memory), and interpreting
# it costs less than compiling it unless the table holds millions of rows.
INTERPRETED_PROJECTION_COLUMNS = 1_000
CODEGEN_FACTORY_MODE = "spark.sql.codegen.factoryMode"


def planned_columns(plan) -> int:
    return sum(len(table.columns) for table in plan.tables)


def input_bytes(pending: PendingVersion) -> int:
    """The NDJSON bytes ``pending`` reads: its part files and those of its deletions."""
    return sum(info.size for info in pending.inputs.part_files) + sum(info.size for info in pending.inputs.deleted)


def publishes_on_driver(pending: PendingVersion) -> bool:
    return (
        planned_columns(pending.plan) >= DRIVER_PUBLISH_MIN_COLUMNS and input_bytes(pending) <= DRIVER_PUBLISH_MAX_BYTES
    )


@contextmanager
def publish_settings(spark, columns: int = 0) -> Iterator[None]:
    """:data:`PUBLISH_SETTINGS` while a publish runs (and interpreted
    projections for a table of ``columns`` at least
    :data:`INTERPRETED_PROJECTION_COLUMNS`); the session's own after."""
    settings = dict(PUBLISH_SETTINGS)
    if columns >= INTERPRETED_PROJECTION_COLUMNS:
        settings[CODEGEN_FACTORY_MODE] = "NO_CODEGEN"
    previous = {name: spark.conf.get(name, None) for name in settings}
    for name, value in settings.items():
        spark.conf.set(name, value)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                spark.conf.unset(name)
            else:
                spark.conf.set(name, value)


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


def shuffle_partitions(spark, work: Storage, dataset_id: str, files: list[ObjectInfo] | None = None) -> int:
    """Tasks for a Spark publish's shuffles (dedup, then clustering by output
    partition): one per core, and more for a large dataset, one per
    :data:`SHUFFLE_PARTITION_BYTES` of its NDJSON. A task sorts its share in
    memory until the JVM's execution memory is full, so with a fixed number
    of tasks the JVM's memory grows with the dataset; a bounded share keeps it flat.
    ``files``: the dataset's part files, when the caller has listed them."""
    if files is None:
        files = committed_part_files(work, dataset_id)
    size = sum(info.size for info in files)
    return max(spark.sparkContext.defaultParallelism, math.ceil(size / SHUFFLE_PARTITION_BYTES))


# Hadoop expands these in a path it is given (a glob); escaped, they are themselves.
_GLOB_CHARACTERS = re.compile(r"([\\{}\[\]*?])")


def read_part_files(spark, location: SparkLocation, work: Storage, dataset_id: str, files: list[ObjectInfo]):
    """The lines of ``files``, a dataset's part files (as
    :func:`~bridge_downstream.common.run_commits.committed_part_files` lists
    them), one row each: Spark is given these files, never their folder, in
    which part files of runs without commit may lie."""
    prefix = layout.dataset_prefix(dataset_id)
    folder = location.read_uri(work, prefix).rstrip("/") if files else ""
    return spark.read.text([_GLOB_CHARACTERS.sub(r"\\\1", folder + info.key[len(prefix) :]) for info in files])


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
    full: bool = False,
) -> PublishResult:
    """Publish the current JSON dataset as a new version; returns its manifest.
    Incremental unless ``full`` (:mod:`.increments`).

    ``fail_after_tables`` interrupts the publish on purpose after that many
    tables (tests use it to show that an interrupted publish changes nothing).
    The Spark engine; :mod:`.arrow_engine` is the same publish on Arrow.
    """
    from pyspark import StorageLevel

    from bridge_downstream.relationalize import relationalize_spark

    location = location or DirectLocation()
    pending = begin_publish(registry, profile, dataset_id, work, published, run_id, full=full)
    if publishes_on_driver(pending):
        from bridge_downstream.publish.arrow_engine import publish_pending_arrow

        log.info(
            "%s: %d columns in %d bytes of input, published on the driver (Arrow)",
            dataset_id,
            planned_columns(pending.plan),
            input_bytes(pending),
        )
        return publish_pending_arrow(
            pending,
            profile=profile,
            work=work,
            published=published,
            catalog=catalog,
            retention=retention,
            mapper=mapper,
            fail_after_tables=fail_after_tables,
        )
    version, plan = pending.version, pending.plan
    inputs = pending.inputs

    files = inputs.part_files
    lines = read_part_files(spark, location, work, dataset_id, files)
    deleted = None
    if inputs.deleted_id is not None:
        deleted = read_part_files(spark, location, work, inputs.deleted_id, inputs.deleted)
    excluded = inputs.increment.excluded_keys if inputs.increment is not None else frozenset()
    partitions = shuffle_partitions(spark, work, dataset_id, files)
    key_rows = part_rows = None
    tables: dict[str, PublishedTable] = {}
    placed = _Partitions(dataset_id)
    try:
        # Kept on disk: the counts and the tables read the same dedup (a shuffle).
        flagged = flag_lines(
            lines,
            dataset_id,
            profile,
            deleted,
            partitions=partitions,
            excluded_keys=excluded,
            time_source=plan.time_partitions.get(layout.TIME_PARTITION_COLUMN),
        ).persist(StorageLevel.DISK_ONLY)
        if plan.time_partitions:
            flagged, part_rows = _rewritten_rows(flagged, placed, inputs.increment)
        counts = _record_counts(flagged, placed)
        if profile.dedup.key_for(dataset_id):
            key_rows = _key_rows(flagged, placed)
        survivors = flagged.where(WRITTEN).select("value")
        # Parsed once and kept: every table reads the same rows, so JSON
        # parsing runs once per publish, not once per table. Partition values
        # come out as the folders' zero-padded text in each table's one projection.
        frames = relationalize_spark(
            spark,
            plan,
            survivors,
            persist=True,
            cluster_partitions=partitions,
            partition_widths=layout.PARTITION_WIDTHS,
        )
        for written, table in enumerate(plan.tables):
            check_interrupt(dataset_id, written, fail_after_tables)
            partition_keys = table_partition_keys(plan, table)
            frame = frames[table.name]
            prefix = layout.table_prefix(dataset_id, version, "parquet", table.name)
            with publish_settings(spark, columns=len(table.columns)):
                sort_by = sort_columns(plan, table, profile.dedup.order_by)
                spark_writer(frame, partition_keys, sort_by, layout_for("spark")).parquet(
                    location.write_uri(published, prefix)
                )
            location.written(published, prefix)
            tables[table.name] = describe_table(published, plan, dataset_id, version, table, mapper)
        nested = nested_table_of(plan, profile, dataset_id)
        if nested is not None:
            _write_nested(spark, plan, nested, frames.parsed, published, location, dataset_id, version)
            tables[nested.name] = describe_nested_table(published, plan, dataset_id, version, nested, mapper)
    finally:
        spark.catalog.clearCache()  # the persisted rows of this publish
    if part_rows is not None:
        write_part_partitions(published, dataset_id, version, inputs, part_rows)
    return complete_publish(
        pending, published, tables, catalog=catalog, retention=retention, record_counts=counts, key_rows=key_rows
    )


class _Partitions:
    """The published partition of a flagged row (:func:`.increments.row_partition`):
    its part file's folder, from the URI Spark names the file by
    (percent-encoded), then its :data:`.spark_dedup.TIME_MONTH`, when it has one."""

    def __init__(self, dataset_id: str):
        self.dataset_id = dataset_id
        self._folders: dict[str, str] = {}  # a URI's folder partition, once per part file

    def part_key(self, uri: str) -> str:
        """The key of a part file Spark names by ``uri``."""
        prefix = layout.dataset_prefix(self.dataset_id)
        folder = "/" + prefix.rsplit("/", 1)[-1] + "/"
        path = unquote(uri)
        return prefix + "/" + path[path.rindex(folder) + len(folder) :]

    def of(self, uri: str, month: int | None) -> str:
        if uri not in self._folders:
            self._folders[uri] = part_partition(self.dataset_id, self.part_key(uri))
        return row_partition(self._folders[uri], month)


def _rewritten_rows(flagged, placed: _Partitions, increment: Increment | None):
    """A dataset partitioned by its rows' time: the rows of ``flagged`` of the
    partitions the version rewrites (an increment reads whole part files,
    whose rows spread over months it carries; dedup over the rows read is the
    dedup over the rewritten partitions' rows, as a key's winner and its new
    versions lie in partitions rewritten), and the partitions each part file's
    rows lie in (:func:`.increments.part_partition_rows`)."""
    from pyspark.sql import functions as F

    pairs = flagged.select(PART_FILE, TIME_MONTH).distinct().collect()
    partition_of = {(row[PART_FILE], row[TIME_MONTH]): placed.of(row[PART_FILE], row[TIME_MONTH]) for row in pairs}
    part_rows = part_partition_rows([placed.part_key(uri) for uri, _ in partition_of], list(partition_of.values()))
    if increment is None:
        return flagged, part_rows
    kept = sorted(
        f"{uri}{KEY_SEPARATOR}{month}"
        for (uri, month), partition in partition_of.items()
        if partition in increment.affected
    )
    pair = F.concat_ws(KEY_SEPARATOR, F.col(PART_FILE), F.col(TIME_MONTH).cast("string"))
    return flagged.where(pair.isin(kept)), part_rows


def _key_rows(flagged, placed: _Partitions):
    """Where each key read lies (:func:`.increments.key_index_rows`)."""
    keys, partitions, winners = [], [], []
    for row in flagged.select(KEY, PART_FILE, TIME_MONTH, WRITTEN).distinct().collect():
        keys.append(row[KEY])
        partitions.append(placed.of(row[PART_FILE], row[TIME_MONTH]))
        winners.append(row[WRITTEN])
    return key_index_rows(keys, partitions, winners)


def _record_counts(flagged, placed: _Partitions) -> RecordCounts:
    from pyspark.sql import functions as F

    counts = RecordCounts(placed.dataset_id)
    for row in (
        flagged.groupBy(EXPORT_END_DATE, PART_FILE, TIME_MONTH)
        .agg(
            F.count(F.lit(1)).alias("read"),
            F.count(F.when(F.col(DEDUPLICATED), 1)).alias("deduplicated"),
            F.count(F.when(F.col(WRITTEN), 1)).alias("written"),
        )
        .collect()
    ):
        partition = placed.of(row[PART_FILE], row[TIME_MONTH])
        counts.add(row[EXPORT_END_DATE], row["read"], row["deduplicated"], row["written"], partition)
    return counts


def _write_nested(spark, plan, nested, parsed, published: Storage, location: SparkLocation, dataset_id, version):
    """The nested table, from the rows the plan's tables were made of (docs/publish.md, "Nested tables")."""
    from bridge_downstream.relationalize.spark_executor import nested_table_spark

    frame = nested_table_spark(plan, nested, parsed, partition_widths=layout.PARTITION_WIDTHS)
    prefix = layout.table_prefix(dataset_id, version, "parquet", nested.name)
    with publish_settings(spark, columns=len(nested.columns)):
        spark_writer(frame, table_partition_keys(plan, nested), (), layout_for("spark")).parquet(
            location.write_uri(published, prefix)
        )
    location.written(published, prefix)


def publish_all(spark, datasets: Iterable[str], **kwargs) -> dict[str, PublishResult]:
    return {dataset_id: publish_dataset(spark, dataset_id=dataset_id, **kwargs) for dataset_id in datasets}
