"""Incremental versions: a publish rewrites only the partitions that received
new rows since the previous version and carries every other partition into
the new version by reference (its manifest lists their files where they lie).

What makes it exact, beside every version (``index/``, written before the manifest):

* ``part_files.arrow``: the NDJSON part files the version was made of
  (dataset, key, size). Part files are written per partition
  (``json/dataset=<D>/<partition>/part-*.ndjson``), so a part file's folder is
  the partition of all its rows: a new part file names a partition to rewrite,
  and the files to read for a partition are those in its folder.
* ``keys.arrow``: per record key (its fields' text joined, as dedup compares
  them), the partitions holding a row of it and whether that row survived.
  A new version of a record, or a deletion of it, also rewrites the partition
  its surviving row lies in, so a record that moves to another partition
  leaves the old one.
* ``part_partitions.arrow`` (datasets partitioned by their rows' time,
  decision 0025): per part file, the partitions its rows lie in -- its folder
  then each row's month (:func:`row_partition`). A part file's rows spread
  over months, so its folder no longer names them: the new rows' own months
  name the partitions to rewrite, and the files to read for a partition are
  those holding a row of it; the engines drop the rows read of a partition
  not rewritten before they count, index or write them.

* ``runs.json``: the committed ingest runs whose part files the version
  holds (:func:`part_files_since`). The next version takes the part files of
  the runs committed since from their parts lists, so a publish never lists
  the part files of the history (decision 0030).

Rows of the partitions read whose key survives in a partition not read
(an older version of a record that moved) are dropped: the surviving version
is unchanged, and it is carried. A part file that changed or vanished, a plan
that changed, a table not partitioned like the dataset, or no index on the
previous version make the publish a full rebuild, and the manifest says why.
"""

from __future__ import annotations

import functools
import io
import json
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge_downstream.common import layout
from bridge_downstream.common.run_commits import commit_record, committed_part_files, committed_runs
from bridge_downstream.common.storage import ObjectInfo, Storage
from bridge_downstream.publish.manifest import (
    FILE_ORDER,
    FILE_SEPARATOR,
    FileLines,
    PublishedFile,
    PublishedTable,
    PublishManifest,
    file_line,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from bridge_downstream.publish.engine_steps import RecordCounts

INDEX_FOLDER = "index"
# The index's tables are Arrow IPC files (lz4): a delta reads and writes the
# key index of the whole history, ~5x faster than as Parquet. Versions
# published before wrote them as Parquet, under the same name but ".parquet".
KEY_INDEX_NAME = "keys.arrow"
PART_INDEX_NAME = "part_files.arrow"
PART_PARTITIONS_NAME = "part_partitions.arrow"
RUNS_NAME = "runs.json"
COUNTS_NAME = "record_counts.arrow"
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
    return _partition_path(tuple(partition_keys), tuple([file.partition.get(name, "") for name in partition_keys]))


@functools.lru_cache(maxsize=1 << 16)
def _partition_path(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    # once per partition: a version carries every file of the history, and
    # each file's partition is asked for when carrying and counting rescued values
    return layout.partition_path(dict(zip(names, values)))


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
    # the previous version's keys.arrow rows of the partitions carried (read and filtered once)
    carried_keys: pa.Table | None = None


@dataclass(frozen=True)
class PartFiles:
    """The part files readers take of a dataset and of its ``_Deleted``
    companion, as (dataset, key, size, partition) rows (the version's
    ``part_files.arrow``), and the committed runs they are the part files of."""

    dataset_id: str
    deleted_id: str | None  # the companion, when it has part files
    index: pa.Table
    runs: frozenset[str]
    # the rows added since the previous version, when told by the runs
    # committed since; None when listed (plan_increment compares the two)
    new: pa.Table | None = None

    def _infos(self, dataset_id: str | None) -> list[ObjectInfo]:
        import pyarrow.compute as pc

        if dataset_id is None:
            return []
        rows = self.index.filter(pc.equal(self.index.column("dataset"), dataset_id))
        return _object_infos(rows)

    @functools.cached_property
    def committed(self) -> list[ObjectInfo]:
        return self._infos(self.dataset_id)

    @functools.cached_property
    def deleted(self) -> list[ObjectInfo]:
        return self._infos(self.deleted_id)


@dataclass(frozen=True)
class PublishInputs:
    """The part files a publish is made of: all those committed (recorded in
    its index), and those it reads (all, or an increment's)."""

    parts: PartFiles
    increment: Increment | None
    rebuild_reason: str | None  # why a full rebuild, when one was not asked for; None otherwise

    @property
    def committed(self) -> list[ObjectInfo]:
        return self.parts.committed

    @property
    def deleted_id(self) -> str | None:
        return self.parts.deleted_id

    @property
    def deleted(self) -> list[ObjectInfo]:
        return self.parts.deleted

    @property
    def part_files(self) -> list[ObjectInfo]:
        return self.increment.part_files if self.increment is not None else self.committed


def read_index_table(storage: Storage, dataset_id: str, version: str, name: str) -> pa.Table | None:
    """One of ``version``'s index tables (``name``: :data:`KEY_INDEX_NAME`, ...),
    or None when it has none; as Parquet when the version was published before
    the index was written as Arrow IPC."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    key = index_key(dataset_id, version, name)
    if storage.exists(key):
        with pa.ipc.open_file(pa.py_buffer(storage.read_bytes(key))) as reader:
            return reader.read_all()
    legacy = index_key(dataset_id, version, posixpath.splitext(name)[0] + ".parquet")
    if storage.exists(legacy):
        return pq.read_table(io.BytesIO(storage.read_bytes(legacy)))
    return None


def write_index_table(storage: Storage, dataset_id: str, version: str, name: str, table: pa.Table) -> None:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as writer:
        writer.write_table(table)
    storage.write_bytes(index_key(dataset_id, version, name), sink.getvalue().to_pybytes())


def _rows_of(storage: Storage, files: Iterable[ObjectInfo]) -> Iterable[object]:
    for info in files:
        for line in storage.read_bytes(info.key).splitlines():
            if line.strip():
                yield json.loads(line)


def _part_index(rows: list[tuple[str, str, int, str]]) -> pa.Table:
    """(dataset, key, size, partition) rows as ``part_files.arrow`` holds them."""
    import pyarrow as pa

    columns = list(zip(*rows)) if rows else [(), (), (), ()]
    types = (pa.string(), pa.string(), pa.int64(), pa.string())
    return pa.table(
        {name: pa.array(list(values), type_) for name, values, type_ in zip(PART_INDEX_COLUMNS, columns, types)}
    )


PART_INDEX_COLUMNS = ("dataset", "key", "size", "partition")


def _object_infos(rows: pa.Table) -> list[ObjectInfo]:
    return [ObjectInfo(key, size) for key, size in zip(rows.column("key").to_pylist(), rows.column("size").to_pylist())]


def deleted_companion(dataset_id: str, deleted_suffix: str | None) -> str | None:
    """The ``_Deleted`` companion whose keys remove rows of ``dataset_id`` (a
    profile's ``deleted_suffix``), whether or not it has part files."""
    if deleted_suffix and not dataset_id.endswith(deleted_suffix):
        return dataset_id + deleted_suffix
    return None


def listed_part_files(work: Storage, dataset_id: str, deleted_suffix: str | None) -> PartFiles:
    """Every part file readers take now, listed: how a full publish finds
    them, and an incremental one when the runs cannot tell (:func:`part_files_since`)."""
    # Runs first: a run committed before the listing had stored all its part
    # files, so each run recorded here has all of them in the listing.
    runs = committed_runs(work)
    companion = deleted_companion(dataset_id, deleted_suffix)
    folders: dict[tuple[str, str], str] = {}  # a folder's partition, once per folder
    rows = []
    for name in (dataset_id, companion) if companion is not None else (dataset_id,):
        for info in committed_part_files(work, name):
            folder = (name, posixpath.dirname(info.key))
            if folder not in folders:
                folders[folder] = part_partition(name, info.key)
            rows.append((name, info.key, info.size, folders[folder]))
    deleted_id = companion if any(row[0] == companion for row in rows) else None
    return PartFiles(dataset_id, deleted_id, _part_index(rows), frozenset(runs))


def part_files_since(
    *, published: Storage, work: Storage, dataset_id: str, version: str, deleted_suffix: str | None
) -> PartFiles | None:
    """The part files readers take, without listing them: those ``version``
    holds (its index) and those of the runs committed since (each run's parts
    list, stored before its commit). None when the runs cannot tell:
    ``version`` recorded no runs (made before they were recorded), a run it
    holds has no commit any more, a run committed since has no parts list, or
    one stored a part file again that ``version`` holds (a rerun of the same
    archives): the listing then compares each part file with the version's."""
    import pyarrow as pa
    import pyarrow.compute as pc

    runs = committed_runs(work)
    seen = _recorded_runs(published, dataset_id, version)
    if seen is None or not seen <= runs:
        return None
    before = read_index_table(published, dataset_id, version, PART_INDEX_NAME)
    if before is None or before.column_names != list(PART_INDEX_COLUMNS):
        return None
    companion = deleted_companion(dataset_id, deleted_suffix)
    rows = []
    for run_id in sorted(runs - seen):
        parts_key = commit_record(work, run_id).get("parts")
        if not isinstance(parts_key, str) or not work.exists(parts_key):
            return None
        for line in work.read_bytes(parts_key).splitlines():
            part = json.loads(line) if line.strip() else {}
            name = part.get("dataset")
            if name is not None and name in (dataset_id, companion):
                rows.append((name, part["key"], part["size"], part_partition(name, part["key"])))
    new = _part_index(rows)
    if len(new) and pc.any(pc.is_in(new.column("key"), value_set=before.column("key"))).as_py():
        return None
    index = pa.concat_tables([before, new])
    has_companion = companion is not None and pc.any(pc.equal(index.column("dataset"), companion)).as_py()
    return PartFiles(dataset_id, companion if has_companion else None, index, frozenset(runs), new)


def _recorded_runs(published: Storage, dataset_id: str, version: str) -> frozenset[str] | None:
    key = index_key(dataset_id, version, RUNS_NAME)
    if not published.exists(key):
        return None
    return frozenset(json.loads(published.read_bytes(key))["runs"])


def plan_increment(
    *,
    published: Storage,
    work: Storage,
    dataset_id: str,
    previous: PublishManifest,
    key: tuple[str, ...],
    parts: PartFiles,
    time_source: str | None = None,
) -> Increment | str:
    """The increment from ``previous`` to ``parts``, or why there is none.
    ``time_source``: the field whose month partitions the dataset's rows (decision 0025)."""
    import pyarrow.compute as pc

    added = parts.new
    if added is None:  # listed: each part file the previous version read must be there, unchanged
        before = read_index_table(published, dataset_id, previous.version, PART_INDEX_NAME)
        if before is None:
            return f"version {previous.version} has no index of its part files"
        now = dict(zip(parts.index.column("key").to_pylist(), parts.index.column("size").to_pylist()))
        for part_key, size in zip(before.column("key").to_pylist(), before.column("size").to_pylist()):
            if now.get(part_key) != size:
                state = "vanished" if part_key not in now else "changed"
                return f"part file {part_key} {state} since version {previous.version}"
        added = parts.index.filter(pc.invert(pc.is_in(parts.index.column("key"), value_set=before.column("key"))))
    new_parts = _object_infos(added.filter(pc.equal(added.column("dataset"), dataset_id)))
    new_deleted = (
        _object_infos(added.filter(pc.equal(added.column("dataset"), parts.deleted_id)))
        if parts.deleted_id is not None
        else []
    )
    # the partitions of the new part files' rows: their folder, or (time_source) their rows' months
    partitions_of = {info.key: set() if time_source else {part_partition(dataset_id, info.key)} for info in new_parts}
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
    affected = set().union(*partitions_of.values())
    excluded: set[str] = set()
    keys = None
    if key:
        keys = read_index_table(published, dataset_id, previous.version, KEY_INDEX_NAME)
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
            in_rewritten = pc.is_in(keys.column("partition"), value_set=_strings(affected))
            in_affected = keys.filter(in_rewritten)
            keys = keys.filter(pc.invert(in_rewritten))  # the rows of the partitions carried
            candidates = set(in_affected.column("key").to_pylist()) - new_keys
            if candidates:

                def won(rows: pa.Table) -> set[str]:
                    chosen = pc.is_in(rows.column("key"), value_set=_strings(candidates))
                    return set(rows.filter(pc.and_(rows.column("winner"), chosen)).column("key").to_pylist())

                excluded = won(keys) - won(in_affected)
    read = _part_files_of(published, dataset_id, previous.version, parts, affected, time_source, partitions_of)
    if isinstance(read, str):
        return read
    return Increment(
        previous=previous,
        affected=frozenset(affected),
        part_files=read,
        excluded_keys=frozenset(excluded),
        new_files=new_parts,
        new_deleted_files=len(new_deleted),
        carried_keys=keys,
    )


def _part_files_of(
    published: Storage,
    dataset_id: str,
    version: str,
    parts: PartFiles,
    affected: set[str],
    time_source: str | None,
    new_partitions: dict[str, set[str]],
) -> list[ObjectInfo] | str:
    """The dataset's part files holding a row of the ``affected`` partitions,
    in key order: those in their folders or, for a dataset partitioned by its
    rows' time, those ``version``'s ``part_partitions.arrow`` records in them
    and the new ones (``new_partitions``) with a row in them."""
    import pyarrow.compute as pc

    index = parts.index
    own = pc.equal(index.column("dataset"), dataset_id)
    rewritten = _strings(affected)
    if time_source is None:
        chosen = index.filter(pc.and_(own, pc.is_in(index.column("partition"), value_set=rewritten)))
    else:
        recorded = read_index_table(published, dataset_id, version, PART_PARTITIONS_NAME)
        if recorded is None:
            return f"version {version} has no index of its part files' months"
        in_rewritten = recorded.filter(pc.is_in(recorded.column("partition"), value_set=rewritten)).column("key")
        keys = set(in_rewritten.to_pylist()) | {k for k, found in new_partitions.items() if found & affected}
        chosen = index.filter(pc.and_(own, pc.is_in(index.column("key"), value_set=_strings(keys))))
    return sorted(_object_infos(chosen), key=lambda info: info.key)


def _strings(values: Iterable[str]):
    import pyarrow as pa

    return pa.array(sorted(values), pa.string())


def partitioned_like_dataset(plan, tables: Iterable) -> bool:
    """Every table is partitioned by all of the dataset's partition columns
    (a table without them would need every row of the dataset)."""
    columns = list(plan.partition_columns)
    return all([c for c in columns if c in {col.name for col in table.columns}] == columns for table in tables)


@dataclass(frozen=True)
class CarriedTables:
    """Per table, what an incremental version changed of the previous one's
    files: those it wrote, and those it no longer lists (replaced: those of
    the partitions it rewrote, every file of a table it no longer has)."""

    written: dict[str, list[PublishedFile]]
    replaced: dict[str, list[PublishedFile]]


def carry_unchanged(published: Storage, increment: Increment, tables: dict[str, PublishedTable]) -> CarriedTables:
    """Add to each table the previous version's files of the partitions not
    rewritten (by reference), as the previous manifest's lines, and list
    every table's files in :data:`~.manifest.FILE_ORDER`: a version carries
    every file of the history, and building each one cost more than the rest
    of a small publish. A table's file without rows and partition (an
    engine's stand-in for an empty table) goes when files are carried."""
    written_by_table: dict[str, list[PublishedFile]] = {}
    # a table the new version no longer has replaced all its files
    replaced_by_table = {
        name: list(before.files) for name, before in increment.previous.tables.items() if name not in tables
    }
    in_order = increment.previous.increment.get("file_order") == FILE_ORDER
    for name, table in tables.items():
        written_by_table[name] = list(table.files)
        table.files = FileLines([file_line(f) for f in _in_file_order(written_by_table[name], table.partition_keys)])
        before = increment.previous.tables.get(name)
        if before is None:
            continue
        written = [f for f in written_by_table[name] if f.rows or f.partition]
        merged = _merge_in_order(before, increment.affected, written, in_order) or _merge_by_sorting(
            before, increment.affected, written
        )
        replaced_by_table[name] = list(FileLines(merged.replaced))
        if not merged.carried:
            continue
        for file in written_by_table[name]:
            if not (file.rows or file.partition):
                published.delete(file.key)
        written_by_table[name] = written
        table.files = merged.files
        table.rows = (
            before.rows
            - sum(f.rows for f in replaced_by_table[name] if f.format == "parquet")
            + sum(f.rows for f in written if f.format == "parquet")
        )
    return CarriedTables(written_by_table, replaced_by_table)


@dataclass(frozen=True)
class _MergedLines:
    files: FileLines  # the new version's files, in FILE_ORDER
    replaced: list[bytes]  # the previous version's lines it no longer lists
    carried: bool  # whether it lists any of the previous version's files


def _order_of(file: PublishedFile, partition_keys: list[str]) -> tuple[str, str, str]:
    return file.format, file_partition(file, partition_keys), file.key


def _in_file_order(files: list[PublishedFile], partition_keys: list[str]) -> list[PublishedFile]:
    return sorted(files, key=lambda file: _order_of(file, partition_keys))


class _LinesByPosition:
    """A :attr:`~.manifest.FileLines.body` searched by byte position: a line
    starts at 0 or after a :data:`~.manifest.FILE_SEPARATOR`, so bisecting
    the bytes finds a line without splitting the history's lines."""

    def __init__(self, body: bytes):
        self.body = body
        self._view = memoryview(body)

    def start_from(self, position: int) -> int:
        """The first line start at or after ``position`` (the body's length: none)."""
        if position <= 0:
            return 0
        separator = self.body.find(FILE_SEPARATOR, max(0, position - len(FILE_SEPARATOR)))
        return len(self.body) if separator < 0 else separator + len(FILE_SEPARATOR)

    def line(self, start: int) -> bytes:
        end = self.body.find(FILE_SEPARATOR, start)
        return self.body[start : len(self.body) if end < 0 else end]

    def first_where(self, holds: Callable[[bytes], bool]) -> int:
        """The start of the first line that ``holds`` (False then True along the lines)."""
        low, high = 0, len(self.body)
        while low < high:
            middle = (low + high) // 2
            start = self.start_from(middle)
            if start >= high:  # no line starts in the upper half
                high = middle
            elif holds(self.line(start)):
                high = start
            else:
                low = start + 1
        return self.start_from(low)

    def block(self, start: int, end: int) -> memoryview:
        """The lines from the line start ``start`` to the one at ``end``, without their last separator."""
        if end >= len(self.body):
            return self._view[start:]
        return self._view[start : max(start, end - len(FILE_SEPARATOR))]


def _merge_in_order(
    before: PublishedTable, affected: frozenset[str], written: list[PublishedFile], in_order: bool
) -> _MergedLines | None:
    """The merge when ``before`` lists its files in :data:`~.manifest.FILE_ORDER`
    (``in_order``: its version says so): each rewritten partition's lines are
    found by bisecting the manifest's bytes and the bytes between them kept
    as they are, so a delta parses a few lines per partition it rewrites and
    never splits the history's. None when ``before`` promises no order, or
    when so many partitions are rewritten that sorting all lines costs less."""
    files = before.files
    if not in_order or not isinstance(files, FileLines):
        return None
    keys, body = before.partition_keys, files.body
    # about how many lines it holds, without counting them: each is about as long as the first
    lines_held = len(body) // (body.find(FILE_SEPARATOR) % len(body) + len(FILE_SEPARATOR)) if body else 0
    if (2 * len(affected) + len(written)) * max(1, len(body).bit_length()) > lines_held:
        return None
    lines = _LinesByPosition(body)

    @functools.cache
    def order(line: bytes) -> tuple[str, str, str]:
        return _order_of(FileLines([line])[0], keys)

    def at_least(target: tuple[str, ...], line: bytes) -> bool:
        return order(line)[: len(target)] >= target

    # each rewritten partition's lines, in each format, and the lines written there
    new_lines: dict[tuple[str, ...], list[tuple[tuple[str, str, str], bytes]]] = {}
    for file in written:
        position = _order_of(file, keys)
        new_lines.setdefault(position[:2], []).append((position, file_line(file)))
    formats = {"csv", "parquet"} | {f.format for f in written}
    groups = sorted({(fmt, path) for fmt in formats for path in affected} | set(new_lines))
    pieces: list[bytes | memoryview] = []
    replaced: list[bytes] = []
    cursor = 0
    for group in groups:
        low = lines.first_where(functools.partial(at_least, group))
        high = low
        while high < len(body) and order(lines.line(high))[:2] == group:  # a partition holds a few files
            high = lines.start_from(high + 1)
        old = bytes(lines.block(low, high)).split(FILE_SEPARATOR) if high > low else []
        if group[1] in affected:
            replaced += old
            old = []
        added = sorted([*((order(line), line) for line in old), *new_lines.get(group, [])])
        pieces += [lines.block(cursor, low), *(line for _, line in added)]
        cursor = high
    pieces.append(lines.block(cursor, len(body)))
    kept = [piece for piece in pieces if piece]
    # each written line is a piece of its own; any other piece holds a carried line
    carried = len(kept) > len(written)
    return _MergedLines(FileLines(chunks=kept), replaced, carried)


def _merge_by_sorting(before: PublishedTable, affected: frozenset[str], written: list[PublishedFile]) -> _MergedLines:
    """The merge for a ``before`` in any order: its lines split by partition
    in Arrow (:func:`_split_by_partition`), then sorted with the written files."""
    import pyarrow as pa
    import pyarrow.compute as pc

    carried, replaced = _split_by_partition(before, affected)
    own = pa.table(
        {
            "format": pa.array([f.format for f in written], pa.string()),
            "path": pa.array([file_partition(f, before.partition_keys) for f in written], pa.string()),
            "key": pa.array([f.key for f in written], pa.string()),
            "line": pa.array([file_line(f) for f in written], pa.binary()),
        }
    )
    files = pa.concat_tables([carried, own])
    order = pc.sort_indices(files, sort_keys=[("format", "ascending"), ("path", "ascending"), ("key", "ascending")])
    return _MergedLines(FileLines(files.column("line").take(order).to_pylist()), replaced, carried.num_rows > 0)


# The start of a manifest's file line (either spacing), and the characters
# escape_path_name changes (or the % of an escape) or an empty value: a
# folder holding none of them is its own partition path.
_LINE_HEAD = r'^\{"format": ?"(?P<format>[^"\\]*)", ?"key": ?"(?P<key>[^"\\]*)"'
_NOT_ITS_OWN_PATH = r"[\x00-\x1f\x7f\"#%'*:?\\{\[\]^]|=/|=$"


def _split_by_partition(before: PublishedTable, affected: frozenset[str]):
    """(format, path, key, line) of ``before``'s files in partitions not in
    ``affected`` (an Arrow table, in ``before``'s order), and the lines of its
    files in ``affected``. A file's partition path is its folder when the folder
    spells it as :func:`file_partition` would (its names in the table's
    order, nothing escaped or empty); otherwise it is computed from the file."""
    import pyarrow as pa
    import pyarrow.compute as pc

    files = before.files
    lines = files.lines if isinstance(files, FileLines) else [file_line(f) for f in files]
    line_array = pa.array(lines, pa.binary())
    head = pc.extract_regex(line_array.cast(pa.string()), _LINE_HEAD)
    keys = head.field("key")
    # the table's folder name in the pattern, each character not a letter, digit or _ as RE2's \x{...}
    segment = "".join(c if c.isalnum() or c == "_" else f"\\x{{{ord(c):x}}}" for c in layout.key_segment(before.name))
    located = pc.extract_regex(keys, rf"/(?:parquet|csv)/{segment}/(?:(?P<folder>.*)/)?[^/]*$")
    folders = located.field("folder")
    names = "/".join(layout.escape_path_name(name) for name in before.partition_keys)
    fast = pc.and_kleene(
        pc.and_kleene(head.is_valid(), located.is_valid()),
        pc.and_kleene(
            pc.equal(pc.replace_substring_regex(folders, r"=[^/]*", ""), names),
            pc.invert(pc.match_substring_regex(folders, _NOT_ITS_OWN_PATH)),
        ),
    ).fill_null(False)
    formats, paths, file_keys = head.field("format"), folders, keys
    slow = pc.indices_nonzero(pc.invert(fast)).to_pylist()
    if slow:
        formats, paths, file_keys = formats.to_pylist(), paths.to_pylist(), file_keys.to_pylist()
        for i in slow:
            file = FileLines([lines[i]])[0]
            formats[i], paths[i], file_keys[i] = file.format, file_partition(file, before.partition_keys), file.key
    table = pa.table(
        {
            "format": pa.array(formats, pa.string()),
            "path": pa.array(paths, pa.string()),
            "key": pa.array(file_keys, pa.string()),
            "line": line_array,
        }
    )
    rewritten = pc.is_in(table.column("path"), value_set=_strings(affected)).fill_null(False)
    return table.filter(pc.invert(rewritten)), table.filter(rewritten).column("line").to_pylist()


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
        before_counts = read_index_table(published, dataset_id, increment.previous.version, COUNTS_NAME)
        if before_counts is not None:
            partitions = before_counts.column("partition")
            record_counts.carry(
                before_counts.filter(pc.invert(pc.is_in(partitions, value_set=_strings(increment.affected))))
            )
    write_index_table(published, dataset_id, version, COUNTS_NAME, record_counts.by_partition())

    write_index_table(published, dataset_id, version, PART_INDEX_NAME, inputs.parts.index)
    runs = json.dumps({"runs": sorted(inputs.parts.runs)}).encode()
    published.write_bytes(index_key(dataset_id, version, RUNS_NAME), runs)
    if key_rows is None:
        return
    key_rows = _as_key_index(key_rows)
    if increment is not None and increment.carried_keys is not None:
        carried = _as_key_index(increment.carried_keys)
        key_rows = pa.concat_tables([carried, key_rows]).unify_dictionaries().combine_chunks()
    write_index_table(published, dataset_id, version, KEY_INDEX_NAME, key_rows)


def _as_key_index(rows: pa.Table) -> pa.Table:
    """(key, partition, winner) rows as ``keys.arrow`` holds them: each
    partition's path once, in a dictionary (a partition holds many keys: the
    index is a third of the size, read and written faster, and a delta's
    filters on partition compare few paths)."""
    import pyarrow as pa

    partition = rows.column("partition")
    if not pa.types.is_dictionary(partition.type):
        partition = partition.cast(pa.string()).dictionary_encode()
    return pa.table(
        {
            "key": rows.column("key").cast(pa.string()),
            "partition": partition,
            "winner": rows.column("winner").cast(pa.bool_()),
        }
    )


def part_partition_rows(part_keys, partitions) -> pa.Table:
    """Distinct (part file key, partition) rows of one publish's reading: the
    partitions each part file's rows lie in (all of its rows, read or dropped)."""
    import pyarrow as pa

    table = pa.table({"key": pa.array(part_keys, pa.string()), "partition": pa.array(partitions, pa.string())})
    return table.group_by(["key", "partition"], use_threads=False).aggregate([])


def write_part_partitions(
    published: Storage, dataset_id: str, version: str, inputs: PublishInputs, read: pa.Table
) -> None:
    """The new version's ``part_partitions.arrow``: ``read`` (:func:`part_partition_rows`
    of the part files it read) and, for an incremental version, the previous
    version's rows of the part files it did not read (a part file never changes)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    increment = inputs.increment
    if increment is not None:
        before = read_index_table(published, dataset_id, increment.previous.version, PART_PARTITIONS_NAME)
        if before is not None:
            read_keys = _strings({info.key for info in inputs.part_files})
            kept = before.filter(pc.invert(pc.is_in(before.column("key"), value_set=read_keys)))
            read = pa.concat_tables([kept.select(read.column_names).cast(read.schema), read])
    write_index_table(published, dataset_id, version, PART_PARTITIONS_NAME, read)
