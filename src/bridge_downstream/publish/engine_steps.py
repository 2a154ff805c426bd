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

import dataclasses
import hashlib
import io
import json
import logging
import posixpath
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bridge_downstream.common import layout
from bridge_downstream.common.run_commits import committed_objects, committed_part_files
from bridge_downstream.common.storage import ObjectInfo, Storage
from bridge_downstream.config.profiles import Profile
from bridge_downstream.config.registry import SchemaRegistry
from bridge_downstream.publish.catalog import Catalog
from bridge_downstream.publish.increments import (
    CarriedTables,
    PublishInputs,
    carry_unchanged,
    listed_part_files,
    part_files_since,
    partitioned_like_dataset,
    plan_increment,
    write_index,
)
from bridge_downstream.publish.manifest import (
    FILE_ORDER,
    RECORD_COUNT_FIELDS,
    PublishedFile,
    PublishedFiles,
    PublishedTable,
    PublishManifest,
    current_version,
    read_manifest_lines,
    record_counts_csv,
)
from bridge_downstream.publish.versions import new_version, prune_versions, record_lineage, set_current

if TYPE_CHECKING:
    import pyarrow as pa

    from bridge_downstream.relationalize import RelationalizePlan, Type

log = logging.getLogger(__name__)


# The check a publish runs on each new version before making it current (the
# quality package's, set by the edges; publish does not import it): it returns
# the manifest's ``quality``. A context variable, so the two engines pass no new argument.
QUALITY_CHECK: ContextVar[Callable[[Storage, PublishManifest], dict] | None] = ContextVar("quality_check", default=None)


@contextmanager
def publishing_with_quality_check(check: Callable[[Storage, PublishManifest], dict] | None) -> Iterator[None]:
    """Publishes inside run ``check`` on each new version before making it current."""
    token = QUALITY_CHECK.set(check)
    try:
        yield
    finally:
        QUALITY_CHECK.reset(token)


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


def iter_dataset_rows(storage: Storage, dataset_id: str, part_files: list[ObjectInfo] | None = None) -> Iterator[dict]:
    for info in committed_part_files(storage, dataset_id) if part_files is None else part_files:
        for line in storage.read_bytes(info.key).splitlines():
            if line.strip():
                yield json.loads(line)


def plan_dataset(
    registry: SchemaRegistry,
    profile: Profile,
    dataset_id: str,
    work: Storage,
    previous_row_type: Type | None = None,
    part_files: list[ObjectInfo] | None = None,
):
    """The dataset's plan and the schema it comes from. ``previous_row_type``:
    the row type of the version the publish replaces, whose column types stay;
    ``part_files``: the rows to plan from (default: all the dataset's)."""
    if part_files is None:
        part_files = committed_part_files(work, dataset_id)
    from bridge_downstream.relationalize import ColumnTypes, column_descriptions, plan_from_rows, plan_from_schema
    from bridge_downstream.relationalize.plan import with_time_partitions

    time_source = profile.time_partition_source(dataset_id)
    # planned as a column ingest adds; the executors compute it from its field
    time_partitions = {layout.TIME_PARTITION_COLUMN: time_source} if time_source is not None else {}
    arguments: dict[str, Any] = {
        "extra_columns": profile.extra_columns(dataset_id) | dict.fromkeys(time_partitions, "bigint"),
        "identity_columns": list(profile.identity_columns(dataset_id)),
        "carry_columns": list(profile.carry_columns(dataset_id)),
        "partition_columns": [*profile.partition_fields, *time_partitions],
    }
    if dataset_id in profile.record_metadata_datasets:
        arguments["metadata_columns"] = [name.lower() for name in profile.record_metadata_columns]
    types = ColumnTypes(declared=profile.declared_column_types(dataset_id), previous=previous_row_type)
    found = dataset_schema(registry, dataset_id)
    if found is not None:
        schema_id, schema = found
        try:
            # The rows too: an "integer" column that holds a value beyond int64 widens to decimal(38,0).
            rows = (work.read_bytes(info.key) for info in part_files)
            plan = plan_from_schema(
                dataset_id, schema, registry.resolver(), base_uri=schema_id, ndjson=rows, types=types, **arguments
            )
            plan.column_descriptions = column_descriptions(schema, registry.resolver(), schema_id, plan)
            return with_time_partitions(plan, time_partitions), schema_id
        except TypeError as error:
            # A schema whose top level is not an object with properties
            # (a definitions-only document) says nothing about columns.
            log.warning(
                "%s: schema %s gives no table layout (%s); inferring from the rows", dataset_id, schema_id, error
            )
    plan = plan_from_rows(dataset_id, iter_dataset_rows(work, dataset_id, part_files), types, **arguments)
    return with_time_partitions(plan, time_partitions), None


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
    inputs: PublishInputs


def begin_publish(
    registry: SchemaRegistry,
    profile: Profile,
    dataset_id: str,
    work: Storage,
    published: Storage,
    run_id: str,
    full: bool = False,
) -> PendingVersion:
    """Plan the new version: incremental when the previous version allows it
    (:mod:`.increments`), unless ``full``."""
    previous = current_version(published, dataset_id)
    previous_manifest = read_manifest_lines(published, dataset_id, previous) if previous is not None else None
    previous_row_type = published_row_type(previous_manifest)
    parts = None
    if previous is not None and not full:
        parts = part_files_since(
            published=published,
            work=work,
            dataset_id=dataset_id,
            version=previous,
            deleted_suffix=profile.dedup.deleted_suffix,
        )
    if parts is None:
        parts = listed_part_files(work, dataset_id, profile.dedup.deleted_suffix)
    inputs = PublishInputs(parts, None, "requested (--full)" if full else "the first version")
    planned = None
    if previous_manifest is not None and not full:
        increment = plan_increment(
            published=published,
            work=work,
            dataset_id=dataset_id,
            previous=previous_manifest,
            key=profile.dedup.key_for(dataset_id),
            parts=parts,
            time_source=profile.time_partition_source(dataset_id),
        )
        if isinstance(increment, str):
            inputs = PublishInputs(parts, None, increment)
        else:
            plan, schema_id = plan_dataset(registry, profile, dataset_id, work, previous_row_type, increment.new_files)
            reason = _why_not_incremental(plan, increment.previous, profile.publishes_nested(dataset_id))
            if reason is None:
                # counted over every row read: the previous version's rows, then the new ones
                for path, rows in (increment.previous.plan or {}).get("undeclared_keys", {}).items():
                    plan.undeclared_keys[path] = plan.undeclared_keys.get(path, 0) + rows
                plan.undeclared_keys = dict(sorted(plan.undeclared_keys.items()))
                planned = plan, schema_id
                inputs = PublishInputs(parts, increment, None)
            else:
                inputs = PublishInputs(parts, None, reason)
    plan, schema_id = planned or plan_dataset(registry, profile, dataset_id, work, previous_row_type, parts.committed)
    return PendingVersion(
        dataset_id=dataset_id,
        version=new_version(),
        previous=previous,
        plan=plan,
        schema_id=schema_id,
        registry_version=registry.version,
        run_id=run_id,
        inputs=inputs,
    )


def _why_not_incremental(plan: RelationalizePlan, previous: PublishManifest, nested: bool) -> str | None:
    """Why the tables of ``plan`` cannot be built on those of the previous
    version's plan; None when they can. Undeclared keys are left out: the
    new rows hold only some of them, and the columns they make are compared."""

    def layout_of(document: dict | None) -> dict | None:
        return None if document is None else {**document, "undeclared_keys": None}

    from bridge_downstream.relationalize.nested import plan_nested_table

    if layout_of(plan.to_json()) != layout_of(previous.plan):
        return "the plan changed (new columns or types)"
    names = set(plan.table_names) | ({plan_nested_table(plan).name} if nested else set())
    if names != set(previous.tables):
        return "the tables published changed (the nested table added or dropped)"
    if not partitioned_like_dataset(plan, plan.tables):
        return "a table is not partitioned by all of the dataset's partition columns"
    return None


def published_row_type(manifest: PublishManifest | None) -> Type | None:
    """The row type a published version (its manifest) was planned with: its
    column types stay. None without a version, or with a plan this code
    cannot read (an older plan format)."""
    from bridge_downstream.relationalize import RelationalizePlan

    if manifest is None or not manifest.plan:
        return None
    try:
        return RelationalizePlan.from_json(manifest.plan).row_type
    except (ValueError, KeyError) as error:
        log.warning(
            "%s %s: its plan cannot be read (%s); column types start afresh",
            manifest.dataset_id,
            manifest.version,
            error,
        )
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
    its own, as recover counted it). Kept per partition too: an incremental
    version counts the partitions it rewrote and takes the others' counts
    from the previous version (:mod:`.increments`)."""

    def __init__(self, dataset_id: str):
        self.data_type = dataset_id
        self._by_partition: dict[tuple[str, str], list[int]] = {}
        self._carried: list[pa.Table] = []

    def add(self, export_end_date: str | None, read: int, deduplicated: int, written: int, partition: str = "") -> None:
        counts = self._by_partition.setdefault((partition, export_end_date or ""), [0, 0, 0])
        counts[0] += read
        counts[1] += deduplicated
        counts[2] += written

    def carry(self, counts: pa.Table) -> None:
        """Add the counts of partitions not read (:meth:`by_partition`'s
        columns), as a table: an incremental version carries those of every
        partition of the history."""
        self._carried.append(counts.select(list(COUNT_COLUMNS)).cast(_count_schema()))

    def by_partition(self) -> pa.Table:
        """(partition, export end date, read, deduplicated, written) rows, by partition and date."""
        import pyarrow as pa

        own = sorted(self._by_partition.items())
        counted = pa.table(
            [
                pa.array([p for (p, _), _ in own], pa.string()),
                pa.array([d for (_, d), _ in own], pa.string()),
                *(pa.array([c[i] for _, c in own], pa.int64()) for i in range(3)),
            ],
            schema=_count_schema(),
        )
        table = pa.concat_tables([*self._carried, counted])
        aggregated = table.group_by(["partition", "export_end_date"], use_threads=False).aggregate(
            [(name, "sum") for name in COUNT_COLUMNS[2:]]
        )
        return aggregated.rename_columns(list(COUNT_COLUMNS)).sort_by(
            [("partition", "ascending"), ("export_end_date", "ascending")]
        )

    def rows(self) -> list[dict]:
        """recover's record counts (:data:`RECORD_COUNT_FIELDS`), per export end date."""
        by_date = (
            self.by_partition()
            .group_by("export_end_date", use_threads=False)
            .aggregate([(name, "sum") for name in COUNT_COLUMNS[2:]])
            .sort_by("export_end_date")
        )
        totals = zip(
            by_date.column("export_end_date").to_pylist(),
            *(by_date.column(f"{name}_sum").to_pylist() for name in COUNT_COLUMNS[2:]),
        )
        return [
            dict(
                zip(
                    RECORD_COUNT_FIELDS,
                    (self.data_type, date, read, read - deduplicated, deduplicated - written, written),
                )
            )
            for date, read, deduplicated, written in totals
        ]


# A version's record counts per partition (``index/record_counts.arrow``).
COUNT_COLUMNS = ("partition", "export_end_date", "read", "deduplicated", "written")


def _count_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(name, pa.string() if i < 2 else pa.int64()) for i, name in enumerate(COUNT_COLUMNS)])


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
    key_rows: pa.Table | None = None,
) -> PublishResult:
    """Carried partitions and the index (:mod:`.increments`), record counts,
    manifest, then CURRENT (the commit point), then catalog and pruning.
    ``key_rows``: where the record keys read lie (:func:`.increments.key_index_rows`)."""
    increment = pending.inputs.increment
    carried = carry_unchanged(published, increment, tables) if increment is not None else None
    replaced = written = None
    if carried is not None:
        replaced = [f.key for files in carried.replaced.values() for f in files]
        written = [f.key for files in carried.written.values() for f in files]
    record_lineage(published, pending.dataset_id, pending.version, pending.previous, replaced, written)
    record_counts = record_counts or RecordCounts(pending.dataset_id)
    write_index(published, pending.dataset_id, pending.version, pending.inputs, key_rows, record_counts)
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
        rescued_values=version_rescued_values(published, pending, tables, carried),
        record_counts=counts,
        increment=increment_summary(pending.inputs),
    )
    # --- data-quality gate (issue 25, docs/quality.md): the tables are written, CURRENT is not yet.
    quality_check = QUALITY_CHECK.get()
    if quality_check is not None:
        manifest.quality = quality_check(published, manifest)
    manifest.store(published, layout.manifest_key(pending.dataset_id, pending.version))
    if manifest.blocked_by_quality:
        log.warning("%s: version %s failed a blocking expectation", pending.dataset_id, pending.version)
        return PublishResult(manifest, [])
    # --- end of the data-quality gate
    set_current(published, pending.dataset_id, pending.version)
    if catalog is not None:
        catalog.register(manifest)
    held = [manifest] + ([increment.previous] if increment is not None else [])
    pruned = prune_versions(published, pending.dataset_id, retention, held)
    return PublishResult(manifest, pruned)


def increment_summary(inputs: PublishInputs) -> dict:
    """How the version was made, for the manifest and the run report."""
    increment = inputs.increment
    if increment is None:
        return {"mode": "full", "reason": inputs.rebuild_reason}
    return {
        "mode": "incremental",
        "previous_version": increment.previous.version,
        "new_part_files": len(increment.new_files) + increment.new_deleted_files,
        "part_files_read": len(increment.part_files),
        "partitions_rewritten": sorted(increment.affected),
        "file_order": FILE_ORDER,  # the order carry_unchanged lists every table's files in
    }


def version_rescued_values(
    published: Storage, pending: PendingVersion, tables: dict[str, PublishedTable], carried: CarriedTables | None
) -> dict:
    """:func:`rescued_values` of the new version; an incremental one reads only
    the files it wrote and those of the previous version it replaced."""
    increment = pending.inputs.increment
    if increment is None or carried is None:
        return rescued_values(published, pending.plan, tables)
    counts = dict(increment.previous.rescued_values)
    added = rescued_values(published, pending.plan, _with_files(tables, carried.written))
    replaced = rescued_values(published, pending.plan, _with_files(increment.previous.tables, carried.replaced))
    for path, rows in added.items():
        counts[path] = counts.get(path, 0) + rows
    for path, rows in replaced.items():
        counts[path] -= rows
    return dict(sorted((path, rows) for path, rows in counts.items() if rows))


def _with_files(tables: dict[str, PublishedTable], files: dict[str, list[PublishedFile]]) -> dict[str, PublishedTable]:
    return {name: dataclasses.replace(tables[name], files=found) for name, found in files.items() if name in tables}


def rescued_values(
    published: Storage,
    plan,
    tables: dict[str, PublishedTable],
    only: Callable[[PublishedTable, PublishedFile], bool] | None = None,
) -> dict[str, int]:
    """Per path, the rows whose ``_rescued_data`` holds a value there (both
    engines wrote the same column), read back from the tables that read a
    column as text: a root column by its path, a child table's by its path
    from the root row (``steps[].duration``). ``only``: the files to read (default all)."""
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
            if only is not None and not only(written, file):
                continue
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
