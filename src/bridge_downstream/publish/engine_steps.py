"""JSON datasets -> relationalized Parquet and CSV, published atomically.

One publish handles one dataset:

1. plan the tables (from the dataset's JSON Schema, else inferred from rows);
2. keep one version of each record (:mod:`.spark_dedup`, or the Arrow engine's own);
3. relationalize and write every table as snappy Parquet, partitioned as the
   input, under a new version prefix;
4. write a CSV beside every Parquet file (same rows, plus the partition
   values as columns, so a CSV file stands on its own);
5. write the version's manifest, then point ``CURRENT`` at it -- one small
   object write, so a reader sees the old version or the new one, never half;
6. register the tables in the catalog and prune old versions.

A publish that fails before step 5 leaves the previous version current and
untouched; its partial version is removed by the next prune.

Every step takes the dataset's NDJSON from
:func:`~bridge_downstream.common.run_commits.committed_part_files`: the part
files of ingest runs that committed, never those of a run killed or still
under way.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bridge_downstream.common import layout
from bridge_downstream.common.run_commits import committed_objects, committed_part_files
from bridge_downstream.common.storage import Storage
from bridge_downstream.config.profiles import Profile
from bridge_downstream.config.registry import SchemaRegistry
from bridge_downstream.publish.catalog import Catalog
from bridge_downstream.publish.manifest import (
    RECORD_COUNT_FIELDS,
    PublishedFile,
    PublishedFiles,
    PublishedTable,
    PublishManifest,
    current_version,
    read_manifest,
    record_counts_csv,
)
from bridge_downstream.publish.versions import new_version, prune_versions, set_current

if TYPE_CHECKING:
    from bridge_downstream.relationalize import RelationalizePlan, Type

log = logging.getLogger(__name__)


@dataclass
class PublishResult:
    manifest: PublishManifest
    pruned: list[str]


def dataset_schema(registry: SchemaRegistry, dataset_id: str) -> tuple[str, dict] | None:
    for url, mapped in sorted(registry.schema_mapping.items()):
        if mapped == dataset_id:
            schema, schema_id = registry.schema(url), registry.schema_id_for(url)
            if schema is not None and schema_id is not None:
                return schema_id, schema
    return None


def iter_dataset_rows(storage: Storage, dataset_id: str) -> Iterator[dict]:
    for info in committed_part_files(storage, dataset_id):
        for line in storage.read_bytes(info.key).splitlines():
            if line.strip():
                yield json.loads(line)


def plan_dataset(
    registry: SchemaRegistry, profile: Profile, dataset_id: str, work: Storage, previous_row_type: Type | None = None
):
    """The dataset's plan and the schema it comes from. ``previous_row_type``:
    the row type of the version the publish replaces, whose column types stay."""
    from bridge_downstream.relationalize import ColumnTypes, column_descriptions, plan_from_rows, plan_from_schema

    arguments: dict[str, Any] = {
        "extra_columns": profile.extra_columns(dataset_id),
        "identity_columns": list(profile.identity_columns(dataset_id)),
        "carry_columns": list(profile.carry_columns(dataset_id)),
        "partition_columns": list(profile.partition_fields),
    }
    if dataset_id in profile.record_metadata_datasets:
        arguments["metadata_columns"] = [name.lower() for name in profile.record_metadata_columns]
    types = ColumnTypes(declared=profile.declared_column_types(dataset_id), previous=previous_row_type)
    found = dataset_schema(registry, dataset_id)
    if found is not None:
        schema_id, schema = found
        try:
            # The rows too: an "integer" column that holds a value beyond int64 widens to decimal(38,0).
            rows = (work.read_bytes(info.key) for info in committed_part_files(work, dataset_id))
            plan = plan_from_schema(
                dataset_id, schema, registry.resolver(), base_uri=schema_id, ndjson=rows, types=types, **arguments
            )
            plan.column_descriptions = column_descriptions(schema, registry.resolver(), schema_id, plan)
            return plan, schema_id
        except TypeError as error:
            # A schema whose top level is not an object with properties
            # (a definitions-only document) says nothing about columns.
            log.warning(
                "%s: schema %s gives no table layout (%s); inferring from the rows", dataset_id, schema_id, error
            )
    return plan_from_rows(dataset_id, iter_dataset_rows(work, dataset_id), types, **arguments), None


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


# A timestamp in a CSV: Arrow's %S holds the microseconds (2024-03-01T17:10:00.000000Z).
CSV_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def parquet_to_csv(storage: Storage, parquet_key: str, csv_key: str, partition: dict[str, str]) -> int:
    """A CSV (header, RFC 4180 quoting, UTF-8) of one Parquet file; returns its rows."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(storage.read_bytes(parquet_key)))
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):  # ISO 8601 in UTC, as the instants were written
            table = table.set_column(i, field.name, pc.strftime(table.column(i), CSV_TIMESTAMP_FORMAT))
    for name, value in partition.items():
        if name not in table.column_names:
            table = table.append_column(name, pa.array([value] * table.num_rows, pa.string()))
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=True, quoting_style="needed"))
    storage.write_bytes(csv_key, buffer.getvalue())
    return table.num_rows


def parquet_rows(storage: Storage, key: str) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(io.BytesIO(storage.read_bytes(key))).num_rows


def parquet_files(storage: Storage, prefix: str) -> list[str]:
    """The Parquet files a table's folder holds, once the writer's bookkeeping
    files (Spark's ``_SUCCESS``, ``.crc``, ...) are removed from it."""
    keys = []
    for info in list(storage.list(prefix)):
        name = posixpath.basename(info.key)
        if name.startswith(("_", ".")) or name.endswith(".crc"):
            storage.delete(info.key)
        elif name.endswith(".parquet"):
            keys.append(info.key)
    return keys


def finish_table_files(
    storage: Storage, dataset_id: str, version: str, table_name: str, mapper: Callable = map
) -> PublishedFiles:
    """Remove Spark's bookkeeping files, write the CSVs, describe every file."""
    version_prefix = layout.version_prefix(dataset_id, version)
    parquet_prefix = layout.table_prefix(dataset_id, version, "parquet", table_name) + "/"
    parquet_keys = parquet_files(storage, parquet_prefix)

    def finish(parquet_key: str) -> list[PublishedFile]:
        relative = parquet_key[len(parquet_prefix) :]
        partition = layout.parse_partition_path(posixpath.dirname(relative))
        csv_key = (
            layout.table_prefix(dataset_id, version, "csv", table_name)
            + "/"
            + relative[: -len(".parquet")].removesuffix(".snappy")
            + ".csv"
        )
        rows = parquet_to_csv(storage, parquet_key, csv_key, partition)
        return [
            describe_file(storage, parquet_key, "parquet", parquet_rows(storage, parquet_key), version_prefix),
            describe_file(storage, csv_key, "csv", rows, version_prefix),
        ]

    described = PublishedFiles()
    for files in mapper(finish, sorted(parquet_keys)):
        for file in files:
            described.append(file)
    return described


@dataclass(frozen=True)
class PendingVersion:
    """A publish under way: the version it writes, the one it replaces, and
    what its tables were planned from."""

    dataset_id: str
    version: str
    previous: str | None
    plan: RelationalizePlan
    schema_id: str | None
    registry_version: str
    run_id: str


def begin_publish(
    registry: SchemaRegistry, profile: Profile, dataset_id: str, work: Storage, published: Storage, run_id: str
) -> PendingVersion:
    previous = current_version(published, dataset_id)
    plan, schema_id = plan_dataset(
        registry, profile, dataset_id, work, published_row_type(published, dataset_id, previous)
    )
    return PendingVersion(
        dataset_id=dataset_id,
        version=new_version(),
        previous=previous,
        plan=plan,
        schema_id=schema_id,
        registry_version=registry.version,
        run_id=run_id,
    )


def published_row_type(published: Storage, dataset_id: str, version: str | None) -> Type | None:
    """The row type ``version`` of the dataset was planned with (its manifest's
    plan): its column types stay. None without a version, or with a plan
    this code cannot read (an older plan format)."""
    from bridge_downstream.relationalize import RelationalizePlan

    if version is None:
        return None
    plan = read_manifest(published, dataset_id, version).plan
    if not plan:
        return None
    try:
        return RelationalizePlan.from_json(plan).row_type
    except (ValueError, KeyError) as error:
        log.warning("%s %s: its plan cannot be read (%s); column types start afresh", dataset_id, version, error)
        return None


def deleted_dataset(profile: Profile, dataset_id: str, work: Storage) -> str | None:
    """The ``_Deleted`` companion dataset whose keys remove rows, when it has data."""
    suffix = profile.dedup.deleted_suffix
    if suffix and not dataset_id.endswith(suffix) and committed_part_files(work, dataset_id + suffix):
        return dataset_id + suffix
    return None


# The field a version's record counts are grouped by (recover's grain), as
# ingest writes it (ingest may not be imported here; a test ties the two);
# rows without it (Bridge uploads) are counted under an empty date.
EXPORT_END_DATE_FIELD = "export_end_date"
RECORD_COUNTS_NAME = "record_counts.csv"


class RecordCounts:
    """A dataset's root rows per export end date as dedup saw them: read, left
    after duplicates were dropped, left after deleted records were dropped (written).
    Labelled with the dataset: a recover data type (a ``_Deleted`` companion
    its own, as recover counted it)."""

    def __init__(self, dataset_id: str):
        self.data_type = dataset_id
        self._by_date: dict[str, list[int]] = {}

    def add(self, export_end_date: str | None, read: int, deduplicated: int, written: int) -> None:
        counts = self._by_date.setdefault(export_end_date or "", [0, 0, 0])
        counts[0] += read
        counts[1] += deduplicated
        counts[2] += written

    def rows(self) -> list[dict]:
        return [
            dict(
                zip(
                    RECORD_COUNT_FIELDS,
                    (self.data_type, date, read, read - deduplicated, deduplicated - written, written),
                )
            )
            for date, (read, deduplicated, written) in sorted(self._by_date.items())
        ]


def check_interrupt(dataset_id: str, written: int, fail_after_tables: int | None) -> None:
    if fail_after_tables is not None and written >= fail_after_tables:
        raise RuntimeError(f"publish of {dataset_id} interrupted after {written} tables (requested)")


def table_partition_keys(plan, table) -> list[str]:
    return [c for c in plan.partition_columns if c in {col.name for col in table.columns}]


def describe_table(
    published: Storage, plan, dataset_id: str, version: str, table, mapper: Callable = map
) -> PublishedTable:
    """Once a table's Parquet files are written: its CSVs, and its manifest entry."""
    partition_keys = table_partition_keys(plan, table)
    files = finish_table_files(published, dataset_id, version, table.name, mapper)
    comments = plan.column_descriptions.get(table.name, {})
    columns = [
        {"name": n, "type": t} | ({"comment": comments[n]} if n in comments else {})
        for n, t in table.athena_columns()
        if n not in partition_keys
    ]
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
    pending: PendingVersion,
    published: Storage,
    tables: dict[str, PublishedTable],
    *,
    catalog: Catalog | None,
    retention: int,
    record_counts: RecordCounts | None = None,
) -> PublishResult:
    """Record counts, manifest, then CURRENT (the commit point), then catalog and pruning."""
    counts = record_counts.rows() if record_counts is not None else []
    published.write_bytes(
        posixpath.join(layout.version_prefix(pending.dataset_id, pending.version), RECORD_COUNTS_NAME),
        record_counts_csv(counts),
    )
    manifest = PublishManifest(
        dataset_id=pending.dataset_id,
        version=pending.version,
        run_id=pending.run_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        registry_version=pending.registry_version,
        tables=tables,
        previous_version=pending.previous,
        schema_id=pending.schema_id,
        plan=pending.plan.to_json(),
        rescued_values=rescued_values(published, pending.plan, tables),
        record_counts=counts,
    )
    manifest.store(published, layout.manifest_key(pending.dataset_id, pending.version))
    set_current(published, pending.dataset_id, pending.version)
    if catalog is not None:
        catalog.register(manifest)
    pruned = prune_versions(published, pending.dataset_id, retention)
    return PublishResult(manifest, pruned)


def rescued_values(published: Storage, plan, tables: dict[str, PublishedTable]) -> dict[str, int]:
    """Per path, the rows whose ``_rescued_data`` holds a value there (both
    engines wrote the same column), read back from the tables that read a
    column as text: a root column by its path, a child table's by its path
    from the root row (``steps[].duration``)."""
    import pyarrow.parquet as pq

    from bridge_downstream.relationalize.plan import RESCUED_COLUMN, ROLE_VALUE, element_paths
    from bridge_downstream.relationalize.types import ARRAY_STEP, MAP_STEP, Scalar

    counts: dict[str, int] = {}
    paths = element_paths(plan)
    for table in plan.tables:
        written = tables.get(table.name)
        if written is None or not any(c.role == ROLE_VALUE and c.from_text for c in table.columns):
            continue
        prefix = "".join(step if step in (ARRAY_STEP, MAP_STEP) else f".{step}" for step in paths[table.name])[1:]
        scalar_elements = isinstance(table.element_type, Scalar)  # the element is the value: its path is the table's
        for file in written.files_of("parquet"):
            column = pq.read_table(io.BytesIO(published.read_bytes(file.key)), columns=[RESCUED_COLUMN]).column(0)
            for text in column.drop_null().to_pylist():
                for path in json.loads(text):
                    shown = prefix if scalar_elements else f"{prefix}.{path}" if prefix else path
                    counts[shown] = counts.get(shown, 0) + 1
    return dict(sorted(counts.items()))


def json_datasets(storage: Storage) -> list[str]:
    """Dataset ids that have NDJSON under ``json/`` that readers take (a
    dataset that only a run without commit has written has none)."""
    prefix = layout.JSON_PREFIX + "/dataset="
    # One listing of json/ (and of its claims), not one per dataset.
    return sorted(
        {
            layout.unescape_path_name(info.key[len(prefix) :].split("/", 1)[0])  # the id, not its folder
            for info in committed_objects(storage, prefix)
            if info.key.endswith(".ndjson")
        }
    )
