"""JSON datasets -> relationalized Parquet and CSV, published atomically.

One publish handles one dataset:

1. plan the tables (from the dataset's JSON Schema, else inferred from rows);
2. keep one version of each record (:mod:`dedup`);
3. relationalize and write every table as snappy Parquet, partitioned as the
   input, under a new version prefix;
4. write a CSV beside every Parquet file (same rows, plus the partition
   values as columns, so a CSV file stands on its own);
5. write the version's manifest, then point ``CURRENT`` at it -- one small
   object write, so a reader sees the old version or the new one, never half;
6. register the tables in the catalog and prune old versions.

A publish that fails before step 5 leaves the previous version current and
untouched; its partial version is removed by the next prune.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import posixpath
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from . import layout
from .catalog import Catalog
from .dedup import dedup_lines
from .manifest import (
    PublishedFile,
    PublishedFiles,
    PublishedTable,
    PublishManifest,
    current_version,
    read_manifest,
)
from .profiles import Profile
from .registry import SchemaRegistry
from .storage import Storage

log = logging.getLogger(__name__)

DEFAULT_RETENTION = 3
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


@dataclass
class PublishResult:
    manifest: PublishManifest
    pruned: list[str]


def new_version() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def dataset_schema(registry: SchemaRegistry, dataset_id: str) -> tuple[str, dict] | None:
    for url, mapped in sorted(registry.schema_mapping.items()):
        if mapped == dataset_id:
            schema = registry.schema(url)
            if schema is not None:
                return registry.schema_id_for(url), schema
    return None


def iter_dataset_rows(storage: Storage, dataset_id: str) -> Iterator[dict]:
    for info in storage.list(layout.dataset_prefix(dataset_id) + "/"):
        if info.key.endswith(".ndjson"):
            for line in storage.read_bytes(info.key).splitlines():
                if line.strip():
                    yield json.loads(line)


def plan_dataset(registry: SchemaRegistry, profile: Profile, dataset_id: str, work: Storage):
    from .relationalize import plan_from_rows, plan_from_schema

    arguments = dict(
        extra_columns=profile.extra_columns(dataset_id),
        identity_columns=list(profile.identity_fields),
        carry_columns=[c for c in profile.carry_fields],
        partition_columns=list(profile.partition_fields),
    )
    found = dataset_schema(registry, dataset_id)
    if found is not None:
        schema_id, schema = found
        try:
            return plan_from_schema(dataset_id, schema, registry.resolver(), base_uri=schema_id, **arguments), schema_id
        except TypeError as error:
            # A schema whose top level is not an object with properties
            # (a definitions-only document) says nothing about columns.
            log.warning("%s: schema %s gives no table layout (%s); inferring from the rows", dataset_id, schema_id, error)
    return plan_from_rows(dataset_id, iter_dataset_rows(work, dataset_id), **arguments), None


def partition_strings(frame, partition_columns: list[str]):
    """Partition values as zero-padded strings, as the ingest folders have them."""
    from pyspark.sql import functions as F

    for name in partition_columns:
        width = layout.PARTITION_WIDTHS.get(name)
        text = F.col(name).cast("string")
        frame = frame.withColumn(name, F.lpad(text, width, "0") if width else text)
    return frame


def describe_file(storage: Storage, key: str, fmt: str, rows: int, version_prefix: str) -> PublishedFile:
    data = storage.read_bytes(key)
    relative = key[len(version_prefix) + 1 :]
    partition = layout.parse_partition_path(posixpath.dirname(relative))
    return PublishedFile(
        key=key,
        format=fmt,
        size=len(data),
        md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        rows=rows,
        partition=partition,
    )


def parquet_to_csv(storage: Storage, parquet_key: str, csv_key: str, partition: dict[str, str]) -> int:
    """A CSV (header, RFC 4180 quoting, UTF-8) of one Parquet file; returns its rows."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(storage.read_bytes(parquet_key)))
    for name, value in partition.items():
        if name not in table.column_names:
            table = table.append_column(name, pa.array([value] * table.num_rows, pa.string()))
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=True, quoting_style="needed"))
    storage.write_bytes(csv_key, buffer.getvalue())
    return table.num_rows


def _parquet_rows(storage: Storage, key: str) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(io.BytesIO(storage.read_bytes(key))).num_rows


def finish_table_files(storage: Storage, dataset_id: str, version: str, table_name: str, mapper: Callable = map) -> PublishedFiles:
    """Remove Spark's bookkeeping files, write the CSVs, describe every file."""
    version_prefix = layout.version_prefix(dataset_id, version)
    parquet_prefix = layout.table_prefix(dataset_id, version, "parquet", table_name) + "/"
    parquet_keys = []
    for info in list(storage.list(parquet_prefix)):
        name = posixpath.basename(info.key)
        if name.startswith(("_", ".")) or name.endswith(".crc"):
            storage.delete(info.key)
        elif name.endswith(".parquet"):
            parquet_keys.append(info.key)

    def finish(parquet_key: str) -> list[PublishedFile]:
        relative = parquet_key[len(parquet_prefix) :]
        partition = layout.parse_partition_path(posixpath.dirname(relative))
        csv_key = layout.table_prefix(dataset_id, version, "csv", table_name) + "/" + relative[: -len(".parquet")].removesuffix(".snappy") + ".csv"
        rows = parquet_to_csv(storage, parquet_key, csv_key, partition)
        return [
            describe_file(storage, parquet_key, "parquet", _parquet_rows(storage, parquet_key), version_prefix),
            describe_file(storage, csv_key, "csv", rows, version_prefix),
        ]

    described = PublishedFiles()
    for files in mapper(finish, sorted(parquet_keys)):
        for file in files:
            described.append(file)
    return described


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
    The Spark engine; :mod:`publish_arrow` is the same publish on Arrow.
    """
    from .relationalize import relationalize_spark

    location = location or DirectLocation()
    version, previous, plan, schema_id = begin_publish(registry, profile, dataset_id, work, published)

    lines = spark.read.text(location.read_uri(work, layout.dataset_prefix(dataset_id)), pathGlobFilter="*.ndjson", recursiveFileLookup=True)
    deleted = None
    deleted_id = deleted_dataset(profile, dataset_id, work)
    if deleted_id is not None:
        deleted = spark.read.text(location.read_uri(work, layout.dataset_prefix(deleted_id)), pathGlobFilter="*.ndjson", recursiveFileLookup=True)
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
    return complete_publish(
        published, plan, dataset_id=dataset_id, version=version, previous=previous, schema_id=schema_id,
        run_id=run_id, registry=registry, tables=tables, catalog=catalog, retention=retention,
    )


# -- engine-neutral steps of a publish (shared by the Spark and Arrow engines) --


def begin_publish(registry: SchemaRegistry, profile: Profile, dataset_id: str, work: Storage, published: Storage):
    """``(version, previous version, plan, schema id)`` of a new publish."""
    version = new_version()
    previous = current_version(published, dataset_id)
    plan, schema_id = plan_dataset(registry, profile, dataset_id, work)
    return version, previous, plan, schema_id


def deleted_dataset(profile: Profile, dataset_id: str, work: Storage) -> str | None:
    """The ``_Deleted`` companion dataset whose keys remove rows, when it has data."""
    suffix = profile.dedup.deleted_suffix
    if suffix and not dataset_id.endswith(suffix) and any(True for _ in work.list(layout.dataset_prefix(dataset_id + suffix) + "/")):
        return dataset_id + suffix
    return None


def check_interrupt(dataset_id: str, written: int, fail_after_tables: int | None) -> None:
    if fail_after_tables is not None and written >= fail_after_tables:
        raise RuntimeError(f"publish of {dataset_id} interrupted after {written} tables (requested)")


def table_partition_keys(plan, table) -> list[str]:
    return [c for c in plan.partition_columns if c in {col.name for col in table.columns}]


def describe_table(published: Storage, plan, dataset_id: str, version: str, table, mapper: Callable = map) -> PublishedTable:
    """Once a table's Parquet files are written: its CSVs, and its manifest entry."""
    partition_keys = table_partition_keys(plan, table)
    files = finish_table_files(published, dataset_id, version, table.name, mapper)
    columns = [{"name": n, "type": t} for n, t in table.athena_columns() if n not in partition_keys]
    return PublishedTable(
        name=table.name,
        dataset_id=dataset_id,
        parent=table.parent,
        columns=columns,
        partition_keys=partition_keys,
        rows=sum(f.rows for f in files if f.format == "parquet"),
        files=files,
    )


def complete_publish(
    published: Storage,
    plan,
    *,
    dataset_id: str,
    version: str,
    previous: str | None,
    schema_id: str | None,
    run_id: str,
    registry: SchemaRegistry,
    tables: dict[str, PublishedTable],
    catalog: Catalog | None,
    retention: int,
) -> PublishResult:
    """Manifest, then CURRENT (the commit point), then catalog and pruning."""
    manifest = PublishManifest(
        dataset_id=dataset_id,
        version=version,
        run_id=run_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        registry_version=registry.version,
        tables=tables,
        previous_version=previous,
        schema_id=schema_id,
        plan=plan.to_json(),
    )
    manifest.store(published, layout.manifest_key(dataset_id, version))
    set_current(published, dataset_id, version)
    if catalog is not None:
        catalog.register(manifest)
    pruned = prune_versions(published, dataset_id, retention)
    return PublishResult(manifest, pruned)


def set_current(storage: Storage, dataset_id: str, version: str) -> None:
    if not storage.exists(layout.manifest_key(dataset_id, version)):
        raise ValueError(f"version {version} of {dataset_id} has no manifest: it is incomplete and cannot be made current")
    storage.write_bytes(layout.current_pointer_key(dataset_id), json.dumps({"version": version}).encode())


def list_versions(storage: Storage, dataset_id: str) -> dict[str, bool]:
    """Every version prefix of a dataset -> whether it is complete (has a manifest)."""
    prefix = layout.published_dataset_prefix(dataset_id) + "/versions/"
    versions: dict[str, bool] = {}
    for info in storage.list(prefix):
        version, _, rest = info.key[len(prefix) :].partition("/")
        versions[version] = versions.get(version, False) or rest == layout.MANIFEST_NAME
    return dict(sorted(versions.items()))


def prune_versions(storage: Storage, dataset_id: str, retention: int) -> list[str]:
    """Keep the ``retention`` newest complete versions (always the current one);
    remove older ones and any incomplete version older than the current."""
    current = current_version(storage, dataset_id)
    versions = list_versions(storage, dataset_id)
    complete = [v for v, done in versions.items() if done]
    keep = set(complete[-max(1, retention) :]) | ({current} if current else set())
    doomed = [v for v, done in versions.items() if v not in keep and (done or (current is not None and v < current))]
    for version in doomed:
        for info in list(storage.list(layout.version_prefix(dataset_id, version) + "/")):
            storage.delete(info.key)
    return doomed


def rollback(storage: Storage, dataset_id: str, to_version: str | None = None, catalog: Catalog | None = None) -> PublishManifest:
    """Make an earlier complete version current again (default: the one before)."""
    current = current_version(storage, dataset_id)
    if current is None:
        raise ValueError(f"{dataset_id} has never been published")
    if to_version is None:
        to_version = read_manifest(storage, dataset_id, current).previous_version
        if to_version is None:
            raise ValueError(f"{dataset_id} version {current} has no previous version to roll back to")
    if not list_versions(storage, dataset_id).get(to_version):
        raise ValueError(f"{dataset_id} has no complete version {to_version} (it may have been pruned)")
    set_current(storage, dataset_id, to_version)
    manifest = read_manifest(storage, dataset_id, to_version)
    if catalog is not None:
        catalog.register(manifest)
    return manifest


def json_datasets(storage: Storage) -> list[str]:
    """Dataset ids that have NDJSON under ``json/``."""
    found = set()
    prefix = layout.JSON_PREFIX + "/dataset="
    for info in storage.list(prefix):
        found.add(info.key[len(prefix) :].split("/", 1)[0])
    return sorted(found)


def publish_all(spark, datasets: Iterable[str], **kwargs) -> dict[str, PublishResult]:
    return {dataset_id: publish_dataset(spark, dataset_id=dataset_id, **kwargs) for dataset_id in datasets}
