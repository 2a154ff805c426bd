"""Incremental versions: a publish rewrites only the partitions that received
new rows since the previous version and carries every other partition into
the new version by reference (its manifest lists their files where they lie).

What makes it exact, beside every version (``index/``, written before the manifest):

* ``part_files.parquet``: the NDJSON part files the version was made of
  (dataset, key, size). Part files are written per partition
  (``json/dataset=<D>/<partition>/part-*.ndjson``), so a part file's folder is
  the partition of all its rows: a new part file names a partition to rewrite,
  and the files to read for a partition are those in its folder.
* ``keys.parquet``: per record key (its fields' text joined, as dedup compares
  them), the partitions holding a row of it and whether that row survived.
  A new version of a record, or a deletion of it, also rewrites the partition
  its surviving row lies in, so a record that moves to another partition
  leaves the old one.
* ``part_partitions.parquet`` (datasets partitioned by their rows' time,
  decision 0025): per part file, the partitions its rows lie in -- its folder
  then each row's month (:func:`row_partition`). A part file's rows spread
  over months, so its folder no longer names them: the new rows' own months
  name the partitions to rewrite, and the files to read for a partition are
  those holding a row of it; the engines drop the rows read of a partition
  not rewritten before they count, index or write them.

Rows of the partitions read whose key survives in a partition not read
(an older version of a record that moved) are dropped: the surviving version
is unchanged, and it is carried. A part file that changed or vanished, a plan
that changed, a table not partitioned like the dataset, or no index on the
previous version make the publish a full rebuild, and the manifest says why.
"""

from __future__ import annotations

import io
import json
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge_downstream.common import layout
from bridge_downstream.common.storage import ObjectInfo, Storage
from bridge_downstream.publish.manifest import PublishedFile, PublishedTable, PublishManifest

if TYPE_CHECKING:
    import pyarrow as pa

    from bridge_downstream.publish.engine_steps import RecordCounts

INDEX_FOLDER = "index"
KEY_INDEX_NAME = "keys.parquet"
PART_INDEX_NAME = "part_files.parquet"
PART_PARTITIONS_NAME = "part_partitions.parquet"
COUNTS_NAME = "record_counts.parquet"
# Joins a key's parts; a key with a missing part is NULL_KEY (dedup groups such rows together).
KEY_SEPARATOR = "\x1f"
NULL_KEY = "\x00"


def index_key(dataset_id: str, version: str, name: str) -> str:
    return posixpath.join(layout.version_prefix(dataset_id, version), INDEX_FOLDER, name)


def part_partition(dataset_id: str, part_key: str) -> str:
    """The partition of every row of a part file: its folder, as a partition path."""
    relative = part_key[len(layout.dataset_prefix(dataset_id)) + 1 :]
    return layout.partition_path(layout.parse_partition_path(posixpath.dirname(relative)))


def row_partition(folder: str, month: int | None) -> str:
    """The partition a row is published in: its part file's folder (a
    partition path), then, for a dataset partitioned by its rows' time, the
    month of its time field (:func:`~bridge_downstream.relationalize.plan.time_month`)."""
    if month is None:
        return folder
    return posixpath.join(folder, layout.partition_segment(layout.TIME_PARTITION_COLUMN, month))


def row_month(row: object, time_source: str) -> int:
    """The month of a parsed NDJSON row's time field, as the engines compute it
    from that field's ``get_json_object`` text."""
    from bridge_downstream.relationalize.plan import time_month

    value = row.get(time_source) if isinstance(row, dict) else None
    return time_month(value if value is None or isinstance(value, str) else _json_text(value))


def _json_text(value: object) -> str:
    from bridge_downstream.relationalize.arrow_executor import json_text

    return json_text(value)


def file_partition(file: PublishedFile, partition_keys: list[str]) -> str:
    """A published file's partition as a partition path, its columns in the
    table's order (a manifest stores them in name order)."""
    return layout.partition_path({name: file.partition.get(name, "") for name in partition_keys})


def key_text(row: object, key: tuple[str, ...]) -> str:
    """A row's record key as the engines compare it (``get_json_object`` text of each field)."""
    if not isinstance(row, dict):
        return NULL_KEY
    parts = []
    for name in key:
        value = row.get(name)
        if value is None:
            return NULL_KEY
        parts.append(value if isinstance(value, str) else _json_text(value))
    return KEY_SEPARATOR.join(parts)


@dataclass(frozen=True)
class Increment:
    """What an incremental publish reads, rewrites and carries."""

    previous: PublishManifest
    affected: frozenset[str]  # partition paths rewritten
    part_files: list[ObjectInfo]  # the dataset's part files in those partitions
    excluded_keys: frozenset[str]  # keys whose surviving row lies in a partition carried
    new_files: list[ObjectInfo]  # the dataset's part files since the previous version
    new_deleted_files: int


@dataclass(frozen=True)
class PublishInputs:
    """The part files a publish is made of: all those committed (recorded in
    its index), and those it reads (all, or an increment's)."""

    committed: list[ObjectInfo]
    deleted_id: str | None
    deleted: list[ObjectInfo]
    increment: Increment | None
    rebuild_reason: str | None  # why a full rebuild, when one was not asked for; None otherwise

    @property
    def part_files(self) -> list[ObjectInfo]:
        return self.increment.part_files if self.increment is not None else self.committed


def read_parquet(storage: Storage, key: str) -> pa.Table | None:
    import pyarrow.parquet as pq

    if not storage.exists(key):
        return None
    return pq.read_table(io.BytesIO(storage.read_bytes(key)))


def write_parquet(storage: Storage, key: str, table: pa.Table) -> None:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy")
    storage.write_bytes(key, buffer.getvalue())


def _rows_of(storage: Storage, files: Iterable[ObjectInfo]) -> Iterable[object]:
    for info in files:
        for line in storage.read_bytes(info.key).splitlines():
            if line.strip():
                yield json.loads(line)


def plan_increment(
    *,
    published: Storage,
    work: Storage,
    dataset_id: str,
    previous: PublishManifest,
    key: tuple[str, ...],
    committed: list[ObjectInfo],
    deleted_id: str | None,
    deleted: list[ObjectInfo],
    time_source: str | None = None,
) -> Increment | str:
    """The increment from ``previous`` to the committed part files, or why there is none.
    ``time_source``: the field whose month partitions the dataset's rows (decision 0025)."""
    import pyarrow.compute as pc

    parts = read_parquet(published, index_key(dataset_id, previous.version, PART_INDEX_NAME))
    if parts is None:
        return f"version {previous.version} has no index of its part files"
    consumed = {
        (row["dataset"], row["key"]): row["size"] for row in parts.select(["dataset", "key", "size"]).to_pylist()
    }
    now = {(dataset_id, info.key): info.size for info in committed}
    now |= {(deleted_id, info.key): info.size for info in deleted if deleted_id is not None}
    for name_and_key, size in consumed.items():
        if now.get(name_and_key) != size:
            state = "vanished" if name_and_key not in now else "changed"
            return f"part file {name_and_key[1]} {state} since version {previous.version}"
    new_parts = [info for info in committed if (dataset_id, info.key) not in consumed]
    new_deleted = [info for info in deleted if (deleted_id, info.key) not in consumed]
    partitions_of = _part_partitions(published, dataset_id, previous.version, committed, time_source)
    if isinstance(partitions_of, str):
        return partitions_of
    new_keys: set[str] = set()
    for info in new_parts:
        if not key and time_source is None:
            continue  # its folder names its rows' partition; nothing else is needed of its rows
        folder = part_partition(dataset_id, info.key)
        for row in _rows_of(work, [info]):
            if key:
                new_keys.add(key_text(row, key))
            if time_source is not None:
                partitions_of[info.key].add(row_partition(folder, row_month(row, time_source)))
    affected = set().union(*(partitions_of[info.key] for info in new_parts))
    excluded: set[str] = set()
    if key:
        keys = read_parquet(published, index_key(dataset_id, previous.version, KEY_INDEX_NAME))
        if keys is None:
            return f"version {previous.version} has no index of its record keys"
        touched = new_keys | {key_text(row, key) for row in _rows_of(work, new_deleted)}
        if touched:
            winners = keys.filter(
                pc.and_(keys.column("winner"), pc.is_in(keys.column("key"), value_set=_strings(touched)))
            )
            affected |= set(winners.column("partition").to_pylist())
        if affected:
            # keys of the partitions rewritten, not new, that survive only in partitions carried
            # (vectorized: the index holds every key of the history)
            rewritten = _strings(affected)
            in_affected = keys.filter(pc.is_in(keys.column("partition"), value_set=rewritten))
            candidates = set(in_affected.column("key").to_pylist()) - new_keys
            if candidates:
                won = keys.filter(
                    pc.and_(keys.column("winner"), pc.is_in(keys.column("key"), value_set=_strings(candidates)))
                )
                won_here = won.filter(pc.is_in(won.column("partition"), value_set=rewritten))
                excluded = set(won.column("key").to_pylist()) - set(won_here.column("key").to_pylist())
    return Increment(
        previous=previous,
        affected=frozenset(affected),
        part_files=[info for info in committed if partitions_of[info.key] & affected],
        excluded_keys=frozenset(excluded),
        new_files=new_parts,
        new_deleted_files=len(new_deleted),
    )


def _part_partitions(
    published: Storage, dataset_id: str, version: str, committed: list[ObjectInfo], time_source: str | None
) -> dict[str, set[str]] | str:
    """Per committed part file, the partitions its rows lie in, as far as
    ``version``'s index knows them: its folder, or (``time_source``) the
    partitions recorded in ``part_partitions.parquet`` (none for a file the
    version did not read). Why not, when the version has no such index."""
    if time_source is None:
        return {info.key: {part_partition(dataset_id, info.key)} for info in committed}
    recorded = read_parquet(published, index_key(dataset_id, version, PART_PARTITIONS_NAME))
    if recorded is None:
        return f"version {version} has no index of its part files' months"
    partitions_of: dict[str, set[str]] = {info.key: set() for info in committed}
    for part_key, partition in zip(recorded.column("key").to_pylist(), recorded.column("partition").to_pylist()):
        if part_key in partitions_of:
            partitions_of[part_key].add(partition)
    return partitions_of


def _strings(values: Iterable[str]):
    import pyarrow as pa

    return pa.array(sorted(values), pa.string())


def partitioned_like_dataset(plan, tables: Iterable) -> bool:
    """Every table is partitioned by all of the dataset's partition columns
    (a table without them would need every row of the dataset)."""
    columns = list(plan.partition_columns)
    return all([c for c in columns if c in {col.name for col in table.columns}] == columns for table in tables)


def carry_unchanged(published: Storage, increment: Increment, tables: dict[str, PublishedTable]) -> None:
    """Add to each table the previous version's files of the partitions not
    rewritten (by reference). A table's file without rows and partition (an
    engine's stand-in for an empty table) goes when files are carried."""
    paths: dict[tuple, str] = {}  # a partition's path, once per partition (a table has 1,000s of files)

    def path_of(file: PublishedFile, keys: list[str]) -> str:
        values = tuple(sorted(file.partition.items()))
        if values not in paths:
            paths[values] = file_partition(file, keys)
        return paths[values]

    for name, table in tables.items():
        before = increment.previous.tables.get(name)
        if before is None:
            continue
        carried = [f for f in before.files if path_of(f, before.partition_keys) not in increment.affected]
        if not carried:
            continue
        written = []
        for file in table.files:
            if file.rows == 0 and not file.partition:
                published.delete(file.key)
            else:
                written.append(file)
        table.files = sorted(written + carried, key=lambda f: (f.format, path_of(f, table.partition_keys), f.key))
        table.rows = sum(f.rows for f in table.files if f.format == "parquet")


def key_index_rows(keys, partitions, winners) -> pa.Table:
    """Distinct (key, partition, winner) rows of one publish's reading."""
    import pyarrow as pa

    def array(values, type_):
        if isinstance(values, pa.ChunkedArray):
            return values.combine_chunks().cast(type_)
        return values.cast(type_) if isinstance(values, pa.Array) else pa.array(values, type_)

    table = pa.table(
        {
            "key": array(keys, pa.string()),
            "partition": array(partitions, pa.string()),
            "winner": array(winners, pa.bool_()),
        }
    )
    return table.group_by(["key", "partition", "winner"], use_threads=False).aggregate([])


def write_index(
    published: Storage,
    dataset_id: str,
    version: str,
    inputs: PublishInputs,
    key_rows: pa.Table | None,
    record_counts: RecordCounts,
) -> None:
    """The new version's index: the part files it is made of, its record
    counts per partition and, for a dataset with a record key, where each
    key's rows lie. An incremental version takes the previous version's
    counts and keys of the partitions it carries into ``record_counts`` and its index."""
    import pyarrow as pa
    import pyarrow.compute as pc

    increment = inputs.increment
    if increment is not None:
        before_counts = read_parquet(published, index_key(dataset_id, increment.previous.version, COUNTS_NAME))
        for row in before_counts.to_pylist() if before_counts is not None else []:
            if row["partition"] not in increment.affected:
                record_counts.add(
                    row["export_end_date"], row["read"], row["deduplicated"], row["written"], row["partition"]
                )
    counted = record_counts.by_partition()
    columns = ("partition", "export_end_date", "read", "deduplicated", "written")
    types = (pa.string(), pa.string(), pa.int64(), pa.int64(), pa.int64())
    write_parquet(
        published,
        index_key(dataset_id, version, COUNTS_NAME),
        pa.table({name: pa.array([r[i] for r in counted], t) for i, (name, t) in enumerate(zip(columns, types))}),
    )

    rows = [(dataset_id, info.key, info.size) for info in inputs.committed]
    rows += [(inputs.deleted_id, info.key, info.size) for info in inputs.deleted if inputs.deleted_id]
    parts = pa.table(
        {
            "dataset": pa.array([r[0] for r in rows], pa.string()),
            "key": pa.array([r[1] for r in rows], pa.string()),
            "size": pa.array([r[2] for r in rows], pa.int64()),
        }
    )
    write_parquet(published, index_key(dataset_id, version, PART_INDEX_NAME), parts)
    if key_rows is None:
        return
    if increment is not None:
        before = read_parquet(published, index_key(dataset_id, increment.previous.version, KEY_INDEX_NAME))
        if before is not None:
            kept = before.filter(
                pc.invert(pc.is_in(before.column("partition"), value_set=_strings(increment.affected)))
            )
            key_rows = pa.concat_tables([kept.select(key_rows.column_names).cast(key_rows.schema), key_rows])
    write_parquet(published, index_key(dataset_id, version, KEY_INDEX_NAME), key_rows)


def part_partition_rows(part_keys, partitions) -> pa.Table:
    """Distinct (part file key, partition) rows of one publish's reading: the
    partitions each part file's rows lie in (all of its rows, read or dropped)."""
    import pyarrow as pa

    table = pa.table({"key": pa.array(part_keys, pa.string()), "partition": pa.array(partitions, pa.string())})
    return table.group_by(["key", "partition"], use_threads=False).aggregate([])


def write_part_partitions(
    published: Storage, dataset_id: str, version: str, inputs: PublishInputs, read: pa.Table
) -> None:
    """The new version's ``part_partitions.parquet``: ``read`` (:func:`part_partition_rows`
    of the part files it read) and, for an incremental version, the previous
    version's rows of the part files it did not read (a part file never changes)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    increment = inputs.increment
    if increment is not None:
        before = read_parquet(published, index_key(dataset_id, increment.previous.version, PART_PARTITIONS_NAME))
        if before is not None:
            read_keys = _strings({info.key for info in inputs.part_files})
            kept = before.filter(pc.invert(pc.is_in(before.column("key"), value_set=read_keys)))
            read = pa.concat_tables([kept.select(read.column_names).cast(read.schema), read])
    write_parquet(published, index_key(dataset_id, version, PART_PARTITIONS_NAME), read)
