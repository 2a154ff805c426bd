"""Publish on Arrow: the same versions, manifests, Parquet and CSV as
:func:`.spark_engine.publish_dataset` (Spark), without a JVM -- for single-machine
runs (the local command, tests, small batches). Spark stays the engine on Glue.

Steps (the engine-neutral ones are :mod:`.engine_steps`'):

1. plan, version (:func:`.engine_steps.begin_publish`);
2. the dataset's NDJSON part files (of committed ingest runs only,
   :func:`~bridge_downstream.common.run_commits.committed_part_files`) are read in chunks of about
   ``chunk_bytes`` (whole part files, in key order) with the relationalize
   plan's types (:func:`relationalize.arrow_executor.read_ndjson`, vectorized);
3. dedup, deciding as :mod:`.spark_dedup` decides on Spark: per record key
   exactly one version survives, ordered by the profile's ``order_by`` fields
   as instants (missing or no instant last), then part file (descending),
   then the version's place in its part file (the last written first); a
   version is a row, or (``version_sequence``, Bridge records) one archive's
   rows, all kept; keys listed in the ``_Deleted`` dataset go. Pass one reads
   only the key, order and sequence fields of every chunk -- a chunk's whole
   part files number their versions there -- and pass two relationalizes
   each chunk's survivors: memory is bounded by the chunk, not the dataset;
4. each table is written as snappy Parquet under Hive partition folders named
   as Spark names them (zero-padded, escaped, ``__HIVE_DEFAULT_PARTITION__``),
   without the partition columns in the files, as Spark writes them;
5. CSVs, manifest, CURRENT, catalog, pruning: :mod:`.engine_steps`.

Values compared with Spark: a key field is compared as the text
``get_json_object`` returns for it, an order field as the instant that text
spells (one parse per distinct text); for a value that does not fit the plan's
type (a document that fails its schema) the Arrow reader yields null where
``get_json_object`` would yield the raw text.
"""

from __future__ import annotations

import functools
import json
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge_downstream.common import layout
from bridge_downstream.common.storage import ObjectInfo, Storage
from bridge_downstream.config.profiles import Profile
from bridge_downstream.config.registry import SchemaRegistry
from bridge_downstream.config.run_config import DEFAULT_RETENTION
from bridge_downstream.publish.catalog import Catalog
from bridge_downstream.publish.engine_steps import (
    EXPORT_END_DATE_FIELD,
    PendingVersion,
    PublishResult,
    RecordCounts,
    begin_publish,
    check_interrupt,
    complete_publish,
    describe_table,
    table_partition_keys,
)
from bridge_downstream.publish.file_layout import (
    FileLayout,
    compact_partitions,
    layout_for,
    sort_columns,
    sort_rows,
    write_parquet,
)
from bridge_downstream.publish.increments import (
    NULL_KEY,
    key_index_rows,
    part_partition,
    part_partition_rows,
    row_partition,
    write_part_partitions,
)
from bridge_downstream.publish.nested_tables import describe_nested_table, nested_table_of

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa


# NDJSON read at a time. A publish's peak memory is one chunk parsed and
# relationalized (about three times its NDJSON for the nested TaskData tables)
# on top of the process's fixed ~150 MiB, so the chunk sets the peak; at 8 MiB
# that peak hardly moves with the dataset's size (benchmark, peak RSS of the
# publish step at 10k / 100k records: 8 MiB 172 / 203 MiB, 4 MiB 157 / 196,
# 16 MiB 180 / 221, 64 MiB 382 / 523) and a chunk is one pyarrow JSON block,
# so no parsing parallelism is lost. A partition that spans a chunk boundary
# gets one Parquet file per chunk; part files are read in partition order, so
# that stays rare (1.004 files per partition at 100k records).
DEFAULT_CHUNK_BYTES = 8 << 20


@dataclass
class _Chunk:
    path: str  # a local NDJSON file: whole part files, concatenated
    files: list[int]  # global rank of each part file in it (key order)
    rows: list[int]  # non-blank lines of each part file


def _count_rows(data: bytes) -> int:
    count = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    if b"\n\n" in data or data.startswith(b"\n") or not data.strip():
        count = sum(1 for line in data.splitlines() if line.strip())
    return count


def _stage_chunks(storage: Storage, part_files: list[ObjectInfo], folder: str, chunk_bytes: int) -> list[_Chunk]:
    keys = sorted(info.key for info in part_files)
    chunks: list[_Chunk] = []
    handle, size = None, 0
    for rank, key in enumerate(keys):
        data = storage.read_bytes(key)
        if handle is None or size >= chunk_bytes:
            if handle is not None:
                handle.close()
            path = os.path.join(folder, f"chunk-{len(chunks):05d}.ndjson")
            handle, size = open(path, "wb"), 0  # noqa: SIM115 - closed below
            chunks.append(_Chunk(path, [], []))
        handle.write(data)
        if data and not data.endswith(b"\n"):
            handle.write(b"\n")
        size += len(data)
        chunks[-1].files.append(rank)
        chunks[-1].rows.append(_count_rows(data))
    if handle is not None:
        handle.close()
    return chunks


def _read_chunk(plan, chunk: _Chunk):
    """A chunk's root rows, parsed on this thread: a chunk is one pyarrow JSON
    block, so Arrow's thread pool would not parse it faster, and memory freed
    by the pool's threads stays cached for them, where
    :func:`_release_memory` cannot reach it (the default pool's
    ``release_unused`` returns only the calling thread's)."""
    from bridge_downstream.relationalize.arrow_executor import read_ndjson

    return read_ndjson(plan, [chunk.path], use_threads=False)


def _json_text(value) -> str | None:
    """What Spark's ``get_json_object`` returns for a parsed JSON value."""
    from bridge_downstream.relationalize.arrow_executor import json_text

    if value is None:
        return None
    return value if isinstance(value, str) else json_text(value)


def _field_text(root, row_type, name: str):
    """A top-level field of the root rows as get_json_object text (nulls where absent)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if name not in dict(row_type.fields):
        return pa.nulls(len(root), pa.string())
    array = pc.struct_field(root, [row_type.index_of(name)])
    if pa.types.is_string(array.type):
        return array
    if pa.types.is_floating(array.type):
        return pa.array([_json_text(v) for v in array.to_pylist()], pa.string())
    return pc.cast(array, pa.string())  # bigint: digits; boolean: true/false


def _instants(texts):
    """Each text's instant in microseconds since the epoch, null where it spells
    none (:func:`~bridge_downstream.common.instants.instant_micros`, which
    Spark's ``instant_micros_column`` mirrors); parsed once
    per distinct text -- a version's rows all carry the same."""
    import pyarrow as pa

    from bridge_downstream.common.instants import instant_micros

    encoded = texts.dictionary_encode()
    micros = pa.array([instant_micros(text) for text in encoded.dictionary.to_pylist()], pa.int64())
    return micros.take(encoded.indices)


def _field_values(root, row_type, name: str):
    """A top-level field of the root rows with the plan's type (nulls where absent)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if name not in dict(row_type.fields):
        return pa.nulls(len(root), pa.string())
    return pc.struct_field(root, [row_type.index_of(name)])


def _dedup_columns(plan, root, key: tuple[str, ...], order_by) -> dict:
    """Per row: the key parts as text (``k<i>``) and the order fields as instants (``o<i>``)."""
    columns = {f"k{i}": _field_text(root, plan.row_type, name) for i, name in enumerate(key)}
    for i, (name, _) in enumerate(order_by):
        columns[f"o{i}"] = _instants(_field_text(root, plan.row_type, name))
    return columns


def _version_ordinals(columns: dict, sequence: list, files) -> np.ndarray:
    """Per row of one chunk (whole part files, rows in file order): which
    version of its key, instants and part file the row belongs to, 1 for the
    last written. With no ``sequence`` every row is a version; otherwise one
    version's rows follow each other with ``sequence`` strictly increasing
    (as :func:`.spark_dedup.dedup_lines` counts them)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(files)
    if n == 0:  # a chunk of part files without rows
        return np.zeros(0, dtype=np.int64)
    group = pa.table({**columns, "file": files, "position": pa.array(np.arange(n, dtype=np.int64))})
    sort_keys = [(name, "ascending") for name in columns] + [("file", "ascending"), ("position", "descending")]
    order = pc.sort_indices(group, sort_keys=sort_keys, null_placement="at_end")
    starts_group = np.ones(n, dtype=bool)
    starts_group[1:] = ~_same_as_previous((group.column(name).take(order) for name in [*columns, "file"]), n)
    starts_version = starts_group.copy()
    if sequence:  # last written first: along one version the sequence decreases
        starts_version[1:] |= ~_earlier_than_previous([values.take(order) for values in sequence], n)
    else:
        starts_version[:] = True
    versions_so_far = np.cumsum(starts_version)
    group_first = np.maximum.accumulate(np.where(starts_group, np.arange(n), 0))
    ordinals = np.empty(n, dtype=np.int64)
    ordinals[order.to_numpy()] = versions_so_far - versions_so_far[group_first] + 1
    return ordinals


def _earlier_than_previous(columns: list, n: int):
    """numpy bool, one per row but the first: the row's values come before the
    previous row's, compared column by column (unknown, with a null: False)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    earlier = np.zeros(max(n - 1, 0), dtype=bool)
    equal_so_far = np.ones(max(n - 1, 0), dtype=bool)
    for column in columns:
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        a, b = column.slice(1), column.slice(0, n - 1)
        earlier |= equal_so_far & pc.fill_null(pc.less(a, b), False).to_numpy(zero_copy_only=False)
        equal_so_far &= pc.fill_null(pc.equal(a, b), False).to_numpy(zero_copy_only=False)
    return earlier


def _key_strings(columns: dict, count: int):
    """One string per row joining its key parts; null when any part is null (never matches)."""
    import pyarrow.compute as pc

    parts = [columns[f"k{i}"] for i in range(count)]
    return pc.binary_join_element_wise(*parts, "\x1f", null_handling="emit_null")


def _survivor_mask(columns: dict, key_count: int, order_by):
    """numpy bool mask over all rows: the rows of the one version of each key
    that survives dedup (see :mod:`.spark_dedup`'s order). ``columns`` may be
    chunked; only one sorted column is materialized at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.table(columns)
    n = table.num_rows
    if n == 0:
        return np.zeros(0, dtype=bool)
    sort_keys = [(f"k{i}", "ascending") for i in range(key_count)]
    sort_keys += [(f"o{i}", "descending" if descending else "ascending") for i, (_, descending) in enumerate(order_by)]
    sort_keys += [("file", "descending"), ("version", "ascending")]
    order = pc.sort_indices(table, sort_keys=sort_keys, null_placement="at_end")

    def same_as_previous(names: list[str]):
        return _same_as_previous((table.column(name).take(order) for name in names), n)

    group_start = np.ones(n, dtype=bool)
    group_start[1:] = ~same_as_previous([f"k{i}" for i in range(key_count)])
    # the rows of the key's first version: those tied with its first row
    tie = np.zeros(n, dtype=bool)
    tie[1:] = same_as_previous([f"o{i}" for i in range(len(order_by))] + ["file", "version"])
    breaks = group_start | ~tie
    last_break = np.maximum.accumulate(np.where(breaks, np.arange(n), 0))
    winner = group_start[last_break]
    mask = np.zeros(n, dtype=bool)
    mask[order.to_numpy()[winner]] = True
    return mask


def _same_as_previous(columns, n: int):
    """numpy bool, one per row but the first: the row equals the row before in
    every one of ``columns`` (arrays of ``n`` rows; null == null)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    same = np.ones(max(n - 1, 0), dtype=bool)
    for column in columns:
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        a, b = column.slice(1), column.slice(0, n - 1)
        equal = pc.fill_null(pc.equal(a, b), False).to_numpy(zero_copy_only=False)
        both_null = pc.and_(pc.is_null(a), pc.is_null(b)).to_numpy(zero_copy_only=False)
        same &= equal | both_null
    return same


def _runs(columns: dict):
    """Consecutive rows equal on every dedup column form one run (an archive's
    rows of one file are written together): the first row of each run, and
    the run lengths. Dedup on runs decides exactly as on rows, with a fraction
    of the memory."""
    import numpy as np
    import pyarrow as pa

    n = len(columns["file"])
    starts = np.ones(n, dtype=bool)
    if n > 1:
        starts[1:] = ~_same_as_previous(columns.values(), n)
    first = np.flatnonzero(starts)
    lengths = np.diff(np.append(first, n))
    return {name: column.take(pa.array(first)) for name, column in columns.items()}, lengths


class _Partitions:
    """Each row's published partition (:func:`.increments.row_partition`) as a
    small integer, its text kept once: the part file's folder and, for a
    dataset partitioned by its rows' time, the month the reader computed
    (``with_time_partitions``), so the index holds where the row is written."""

    def __init__(self, dataset_id: str, plan, part_files: list[ObjectInfo]):
        import numpy as np

        self.part_keys = sorted(info.key for info in part_files)  # by rank, as the chunks number them
        self._folders = [part_partition(dataset_id, key) for key in self.part_keys]
        self._codes: dict[str, int] = {}
        self._month = plan.row_type.index_of(layout.TIME_PARTITION_COLUMN) if plan.time_partitions else None
        if self._month is None:
            self._folder_codes = np.array([self._code(folder) for folder in self._folders], dtype=np.int32)

    def _code(self, partition: str) -> int:
        return self._codes.setdefault(partition, len(self._codes))

    def texts(self) -> pa.Array:
        """The partitions' texts, by code."""
        import pyarrow as pa

        return pa.array(list(self._codes), pa.string())

    def codes(self, root, files: np.ndarray) -> np.ndarray:
        """int32 per row of ``root``, read from the part files of ranks ``files``."""
        import numpy as np
        import pyarrow.compute as pc

        if self._month is None:
            return self._folder_codes[files]
        if len(files) == 0:
            return np.zeros(0, dtype=np.int32)
        months = pc.fill_null(pc.struct_field(root, [self._month]), 0).to_numpy(zero_copy_only=False)
        pairs, inverse = np.unique(
            np.stack([files.astype(np.int64), months.astype(np.int64)]), axis=1, return_inverse=True
        )
        pair_codes = np.array(
            [self._code(row_partition(self._folders[rank], int(month))) for rank, month in pairs.T], dtype=np.int32
        )
        return pair_codes[inverse.reshape(-1)]


@dataclass
class _Survivors:
    """Pass one's verdict, kept as one bool per run of equal rows (see
    :func:`_runs`) rather than one per row, and expanded to rows one chunk at
    a time."""

    keep: np.ndarray  # bool per run: the runs of every chunk, in chunk order
    run_bounds: np.ndarray  # chunk i's runs are keep[run_bounds[i] : run_bounds[i + 1]]
    run_lengths: list[np.ndarray | None]  # per chunk: rows per run; None: a run per row
    deduplicated: np.ndarray  # as ``keep``, before the deleted records are dropped (for the counts)
    # as ``keep``: the runs of the partitions the version rewrites (an increment
    # of a time-partitioned dataset reads rows of months it carries, and drops them)
    rewritten: np.ndarray

    def rows_of_chunk(self, number: int, runs: np.ndarray | None = None):
        """numpy bool per row of chunk ``number`` of ``runs`` (one of this
        verdict's arrays; default ``keep``: the rows that survive)."""
        import numpy as np

        runs = self.keep if runs is None else runs
        keep = runs[self.run_bounds[number] : self.run_bounds[number + 1]]
        lengths = self.run_lengths[number]
        return keep if lengths is None else np.repeat(keep, lengths)


def _deleted_keys(storage: Storage, part_files: list[ObjectInfo], key: tuple[str, ...]):
    import pyarrow as pa

    values = set()
    for info in part_files:
        for line in storage.read_bytes(info.key).splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            parts = [_json_text(row.get(name)) if isinstance(row, dict) else None for name in key]
            texts = [part for part in parts if part is not None]
            if len(texts) == len(key):
                values.add("\x1f".join(texts))
    return pa.array(sorted(values), pa.string())


def _dedup(
    plan,
    chunks: list[_Chunk],
    *,
    dataset_id: str,
    profile: Profile,
    work: Storage,
    pending: PendingVersion,
    placed: _Partitions,
) -> tuple[_Survivors, pa.Table, pa.Table | None]:
    """Pass one: the key and order fields of every row, its part file and its
    version there decide which rows survive (see the module's docstring).
    Also where each key read lies (:func:`.increments.key_index_rows`) and,
    for a dataset partitioned by its rows' time, the partitions each part
    file's rows lie in (:func:`.increments.part_partition_rows`)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    key = profile.dedup.key_for(dataset_id)
    order_by = list(profile.dedup.order_by)
    sequence_names = profile.dedup.version_sequence
    parts: dict[str, list] = {}
    run_lengths: list = []
    run_counts = [0]
    for chunk in chunks:
        root = _read_chunk(plan, chunk)
        if len(root) != sum(chunk.rows):
            raise RuntimeError(f"{dataset_id}: {len(root)} rows read from {sum(chunk.rows)} lines")
        columns = _dedup_columns(plan, root, key, order_by)
        ranks = np.repeat(np.array(chunk.files, dtype=np.int32), chunk.rows)
        files = pa.array(ranks)
        # a version lies within one part file, and a chunk holds whole part files
        sequence = [_field_values(root, plan.row_type, name) for name in sequence_names]
        columns["version"] = pa.array(_version_ordinals(columns, sequence, files))
        columns["file"] = files
        columns["partition"] = pa.array(placed.codes(root, ranks))
        del root, sequence
        _release_memory()
        lengths = None  # export rows: every row is its own version
        if sequence_names:  # a version's rows are one run
            columns, lengths = _runs(columns)
        run_lengths.append(lengths)
        run_counts.append(len(columns["file"]))
        for name, column in columns.items():
            parts.setdefault(name, []).append(column)
    columns = {name: pa.chunked_array(arrays) for name, arrays in parts.items()}
    del parts
    deduplicated = _survivor_mask(columns, len(key), order_by) if columns else np.zeros(0, dtype=bool)
    inputs = pending.inputs
    codes = columns["partition"].to_numpy() if columns else np.zeros(0, dtype=np.int32)
    rewritten = np.ones(len(codes), dtype=bool)
    if inputs.increment is not None and len(codes):
        # dedup over the rows read is the dedup over the rewritten partitions' rows
        # (a key's winner and its new versions lie in partitions rewritten): what lies elsewhere goes
        affected = inputs.increment.affected
        rewritten = np.array([text in affected for text in placed.texts().to_pylist()], dtype=bool)[codes]
    deduplicated &= rewritten
    keep = deduplicated.copy()
    keys = pc.fill_null(_key_strings(columns, len(key)), NULL_KEY) if columns else pa.array([], pa.string())
    if inputs.increment is not None and inputs.increment.excluded_keys and len(keep):
        # their surviving version lies in a partition carried, unchanged
        excluded = pc.is_in(keys, value_set=pa.array(sorted(inputs.increment.excluded_keys), pa.string()))
        elsewhere = excluded.to_numpy(zero_copy_only=False)
        deduplicated &= ~elsewhere
        keep = deduplicated.copy()
    if inputs.deleted_id is not None and len(keep):
        gone = pc.is_in(_key_strings(columns, len(key)), value_set=_deleted_keys(work, inputs.deleted, key))
        keep &= ~pc.fill_null(gone, False).to_numpy(zero_copy_only=False)
    texts = placed.texts()
    key_rows = key_index_rows(keys.filter(pa.array(rewritten)), texts.take(pa.array(codes[rewritten])), keep[rewritten])
    part_rows = None
    if plan.time_partitions:
        ranks = columns["file"].to_numpy() if columns else np.zeros(0, dtype=np.int32)
        pairs = np.unique(np.stack([ranks.astype(np.int64), codes.astype(np.int64)]), axis=1)
        part_rows = part_partition_rows([placed.part_keys[rank] for rank in pairs[0]], texts.take(pa.array(pairs[1])))
    survivors = _Survivors(keep, np.cumsum(run_counts), run_lengths, deduplicated, rewritten)
    return survivors, key_rows, part_rows


def _count_chunk(
    counts: RecordCounts, root, row_type, survivors: _Survivors | None, number: int, partitions: pa.Array
) -> None:
    """A chunk's rows per partition (``partitions``: each row's) and export
    end date: read, left after dedup, written; rows of partitions the version
    does not rewrite are not counted (their counts are carried)."""
    import numpy as np
    import pyarrow as pa

    everyone = np.ones(len(root), dtype=np.int64)
    read = everyone if survivors is None else survivors.rows_of_chunk(number, survivors.rewritten)
    deduplicated = everyone if survivors is None else survivors.rows_of_chunk(number, survivors.deduplicated)
    written = everyone if survivors is None else survivors.rows_of_chunk(number)
    tallies = pa.table(
        {
            "partition": partitions,
            "date": _field_text(root, row_type, EXPORT_END_DATE_FIELD),
            "read": np.asarray(read, dtype=np.int64),
            "deduplicated": np.asarray(deduplicated, dtype=np.int64),
            "written": np.asarray(written, dtype=np.int64),
        }
    )
    if survivors is not None:
        tallies = tallies.filter(pa.array(np.asarray(read, dtype=bool)))
    tallies = tallies.group_by(["partition", "date"], use_threads=False)
    summed = tallies.aggregate([("read", "sum"), ("deduplicated", "sum"), ("written", "sum")])
    for row in summed.to_pylist():
        counts.add(row["date"], row["read_sum"], row["deduplicated_sum"], row["written_sum"], row["partition"])


def _partition_texts(table, partition_keys: list[str]):
    """Partition columns as the Spark engine makes them (zero-padded text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = []
    for name in partition_keys:
        column = pc.cast(table.column(name), pa.string())
        width = layout.PARTITION_WIDTHS.get(name)
        if width:
            column = pc.utf8_slice_codeunits(pc.utf8_lpad(column, width, "0"), 0, width)
        texts.append(column)
    return texts


def _write_partitioned(
    published: Storage,
    prefix: str,
    table,
    partition_keys: list[str],
    task: int,
    staging: str,
    sort_by: tuple[str, ...] | list[str] = (),
    rules: FileLayout | None = None,
) -> int:
    """Parquet files of one table chunk, one per partition; returns files written."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    data = table.drop_columns(partition_keys) if partition_keys else table
    written = 0

    def put(relative: str, rows) -> None:
        nonlocal written
        local = os.path.join(staging, f"{uuid.uuid4().hex}.parquet")
        write_parquet(sort_rows(rows, sort_by), local, rules or layout_for("arrow"))
        published.upload_file(local, posixpath.join(prefix, relative))
        os.remove(local)
        written += 1

    name = f"part-{task:05d}-{uuid.uuid4()}.c000.snappy.parquet"
    if not partition_keys:
        put(name, data)
        return written
    if table.num_rows == 0:
        return written
    texts = _partition_texts(table, partition_keys)
    combined = pc.binary_join_element_wise(*[pc.fill_null(t, "\x00") for t in texts], "\x1f")
    encoded = (
        pc.dictionary_encode(combined).combine_chunks()
        if isinstance(combined, pa.ChunkedArray)
        else pc.dictionary_encode(combined)
    )
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for group in np.split(order, bounds):
        first = int(group[0])
        folders = []
        for key_name, text in zip(partition_keys, texts):
            value = text[first].as_py()
            folders.append(layout.partition_segment(key_name, value))  # as Spark names it: escaped, null as default
        put(posixpath.join(*folders, name), data.take(pa.array(group)))
    return written


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None with another C library)."""
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return None


def _release_memory() -> None:
    """Return the memory freed since the last call to the system. Arrow's
    allocator and the C heap (numpy, large Python objects, Arrow's C++
    structures) both keep freed pages for reuse; without this every chunk,
    CSV and manifest starts from the high-water mark of all that ran before
    it, which grows with the dataset's size."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def publish_dataset_arrow(
    *,
    dataset_id: str,
    registry: SchemaRegistry,
    profile: Profile,
    work: Storage,
    published: Storage,
    run_id: str,
    catalog: Catalog | None = None,
    retention: int = DEFAULT_RETENTION,
    mapper: Callable = map,
    fail_after_tables: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    full: bool = False,
) -> PublishResult:
    """:func:`.spark_engine.publish_dataset` on Arrow; same arguments (no Spark, no location)."""
    pending = begin_publish(registry, profile, dataset_id, work, published, run_id, full=full)
    return publish_pending_arrow(
        pending,
        profile=profile,
        work=work,
        published=published,
        catalog=catalog,
        retention=retention,
        mapper=mapper,
        fail_after_tables=fail_after_tables,
        chunk_bytes=chunk_bytes,
    )


def publish_pending_arrow(
    pending: PendingVersion,
    *,
    profile: Profile,
    work: Storage,
    published: Storage,
    catalog: Catalog | None = None,
    retention: int = DEFAULT_RETENTION,
    mapper: Callable = map,
    fail_after_tables: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> PublishResult:
    """Write the version ``pending`` plans, on Arrow: the Arrow engine's
    publish, and the Spark engine's for a dataset it publishes on the driver."""
    import numpy as np
    import pyarrow as pa

    from bridge_downstream.relationalize.arrow_executor import execute

    dataset_id = pending.dataset_id
    version, plan = pending.version, pending.plan
    nested = nested_table_of(plan, profile, dataset_id)
    key_rows = part_rows = None
    staging = tempfile.mkdtemp(prefix="bridge-downstream-publish-")
    rules = layout_for("arrow")
    placed = _Partitions(dataset_id, plan, pending.inputs.part_files)
    try:
        chunks = _stage_chunks(work, pending.inputs.part_files, staging, chunk_bytes)
        survivors = None
        if profile.dedup.key_for(dataset_id):
            survivors, key_rows, part_rows = _dedup(
                plan, chunks, dataset_id=dataset_id, profile=profile, work=work, pending=pending, placed=placed
            )
            _release_memory()

        # pass two: relationalize each chunk's survivors, write its Parquet files
        table_prefixes = {t.name: layout.table_prefix(dataset_id, version, "parquet", t.name) for t in plan.tables}
        if nested is not None:
            table_prefixes[nested.name] = layout.table_prefix(dataset_id, version, "parquet", nested.name)
        files_written = dict.fromkeys(table_prefixes, 0)
        counts = RecordCounts(dataset_id)
        for number, chunk in enumerate(chunks):
            root = _read_chunk(plan, chunk)
            row_partitions = placed.texts().take(
                pa.array(placed.codes(root, np.repeat(np.array(chunk.files, dtype=np.int32), chunk.rows)))
            )
            _count_chunk(counts, root, plan.row_type, survivors, number, row_partitions)
            if survivors is not None:
                root = root.filter(pa.array(survivors.rows_of_chunk(number)))
            frames = execute(plan, root)
            for written, table in enumerate(plan.tables):
                check_interrupt(dataset_id, written, fail_after_tables)
                files_written[table.name] += _write_partitioned(
                    published,
                    table_prefixes[table.name],
                    frames[table.name],
                    table_partition_keys(plan, table),
                    number,
                    staging,
                    sort_columns(plan, table, profile.dedup.order_by),
                    rules,
                )
            if nested is not None:
                rows = _nested_rows(plan, nested, root, frames)
                partition_keys = table_partition_keys(plan, nested)
                prefix = table_prefixes[nested.name]
                files_written[nested.name] += _write_partitioned(
                    published, prefix, rows, partition_keys, number, staging, rules=rules
                )
            del root, frames
            _release_memory()  # keep the peak at one chunk
        for table in plan.tables:  # a partition spanning chunks: its small files merged
            sort_by = sort_columns(plan, table, profile.dedup.order_by)
            compact_partitions(published, table_prefixes[table.name], sort_by, rules, staging)
        if nested is not None:
            compact_partitions(published, table_prefixes[nested.name], (), rules, staging)
        for table in plan.tables:  # an empty table: one file without rows, as Spark writes it
            if files_written[table.name] == 0:
                empty = pa.Table.from_batches([], schema=_empty_schema(plan, table))
                _write_partitioned(published, table_prefixes[table.name], empty, [], 0, staging)
        if nested is not None and files_written[nested.name] == 0:
            empty = pa.Table.from_batches([], schema=_empty_nested_schema(plan, nested))
            _write_partitioned(published, table_prefixes[nested.name], empty, [], 0, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    tables = {}
    for written, table in enumerate(plan.tables):
        check_interrupt(dataset_id, written, fail_after_tables)  # (no chunk: nothing checked yet)
        tables[table.name] = describe_table(published, plan, dataset_id, version, table, mapper)
        _release_memory()
    if nested is not None:
        tables[nested.name] = describe_nested_table(published, plan, dataset_id, version, nested, mapper)
    if part_rows is not None:
        write_part_partitions(published, dataset_id, version, pending.inputs, part_rows)
    return complete_publish(
        pending, published, tables, catalog=catalog, retention=retention, record_counts=counts, key_rows=key_rows
    )


def _empty_schema(plan, table):
    from bridge_downstream.relationalize.arrow_executor import table_schema

    schema = table_schema(table)
    for name in table_partition_keys(plan, table):
        schema = schema.remove(schema.get_field_index(name))
    return schema


def _nested_rows(plan, nested, root, frames):
    from bridge_downstream.relationalize.arrow_executor import nested_table_arrow

    return nested_table_arrow(plan, nested, root, frames[plan.root.name])


def _empty_nested_schema(plan, nested):
    from bridge_downstream.relationalize.arrow_executor import nested_table_schema

    schema = nested_table_schema(nested)
    for name in table_partition_keys(plan, nested):
        schema = schema.remove(schema.get_field_index(name))
    return schema
