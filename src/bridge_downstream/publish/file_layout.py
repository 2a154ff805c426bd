"""How a publish lays out its Parquet files: size, order, row groups, indexes.

One place for the rules both engines apply when they write a table
(docs/publish.md, "File layout"):

* **target file size**, per engine and environment (:data:`TARGET_FILE_BYTES`;
  ``BRIDGE_DOWNSTREAM_TARGET_FILE_BYTES`` overrides it, and
  ``BRIDGE_DOWNSTREAM_ENVIRONMENT=glue`` is set by the Glue jobs): Athena and
  Spark on S3 pay per object opened, so Glue's files are large; a local run's
  are small enough that a test or a laptop sees several per table;
* **compaction**: the Arrow engine writes a partition's rows chunk by chunk;
  once a table is written, the files of a partition smaller than the target
  are merged into files of at least the target (a partition holding less
  data than the target keeps one file). Spark writes one file per partition
  already (the parsed rows are clustered by partition before the tables are
  made), unless :attr:`FileLayout.max_rows_per_file` splits it;
* **order**: rows sorted within a file by the natural key (the dedup key and
  version sequence, the plan's identity columns, as the table carries them),
  then by the profile's ``order_by`` time fields, then a child row's id and
  index: files of adjacent keys and times hold disjoint ranges, and
  min/max statistics let Athena and DuckDB skip files and pages;
* **Parquet**: snappy, statistics and page indexes (column and offset
  indexes) written, row groups of :attr:`FileLayout.row_group_rows` rows.

The CSV twins are written from the Parquet files once compacted, so they
follow the same partitions and order.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bridge_downstream.common.storage import Storage

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "TARGET_FILE_BYTES",
    "TARGET_FILE_BYTES_VARIABLE",
    "FileLayout",
    "compact_partitions",
    "layout_for",
    "sort_columns",
    "sort_rows",
    "spark_writer",
    "write_parquet",
]

ENVIRONMENT_VARIABLE = "BRIDGE_DOWNSTREAM_ENVIRONMENT"  # local (default) or glue
TARGET_FILE_BYTES_VARIABLE = "BRIDGE_DOWNSTREAM_TARGET_FILE_BYTES"

# (engine, environment) -> target Parquet file size. On Glue, S3 objects of
# about 128 MiB are what Athena and Spark read best (one split each); locally
# 8 MiB keeps tests and single-machine runs quick while still merging the
# per-chunk files of a partition.
TARGET_FILE_BYTES = {
    ("arrow", "local"): 8 << 20,
    ("spark", "local"): 8 << 20,
    ("spark", "glue"): 128 << 20,
    ("arrow", "glue"): 128 << 20,
}

# A row group of this many rows keeps a page index's pages and a reader's
# memory per group bounded, whatever a row's width (pyarrow's own default,
# 1Mi rows, makes one group of nearly every file).
ROW_GROUP_ROWS = 128 * 1024


@dataclass(frozen=True)
class FileLayout:
    target_file_bytes: int
    row_group_rows: int = ROW_GROUP_ROWS
    # Spark splits a partition's file after this many rows (0: never).
    max_rows_per_file: int = 0

    @property
    def row_group_bytes(self) -> int:
        """Spark's (parquet-mr's) row group size is in bytes: at most a file."""
        return min(self.target_file_bytes, 128 << 20)


def layout_for(engine: str, environment: str | None = None) -> FileLayout:
    """The layout a publish by ``engine`` (``arrow`` or ``spark``) writes in
    ``environment`` (``local`` or ``glue``; default: :data:`ENVIRONMENT_VARIABLE`)."""
    environment = environment or os.environ.get(ENVIRONMENT_VARIABLE, "local")
    if (engine, environment) not in TARGET_FILE_BYTES:
        raise ValueError(f"no file layout for engine {engine!r} in environment {environment!r}")
    override = os.environ.get(TARGET_FILE_BYTES_VARIABLE)
    target = int(override) if override else TARGET_FILE_BYTES[(engine, environment)]
    if target <= 0:
        raise ValueError(f"{TARGET_FILE_BYTES_VARIABLE} must be a positive number of bytes, not {override!r}")
    return FileLayout(target_file_bytes=target)


def sort_columns(plan, table, order_by: Iterable[tuple[str, bool]] = ()) -> list[str]:
    """The columns a table's files are sorted by: the natural key and the
    time fields (JSON keys of the root row) as the table holds them, root
    value or carried column, then a child row's id and index."""
    from bridge_downstream.relationalize.plan import ROLE_CARRY, ROLE_ID, ROLE_INDEX, ROLE_VALUE

    wanted = list(dict.fromkeys([*plan.identity_columns, *(name for name, _ in order_by)]))
    by_field = {
        column.path[0]: column.name
        for column in table.columns
        if column.role in (ROLE_VALUE, ROLE_CARRY) and len(column.path) == 1
    }
    names = [by_field[name] for name in wanted if name in by_field]
    names += [column.name for column in table.columns if column.role in (ROLE_ID, ROLE_INDEX)]
    partition_columns = set(plan.partition_columns)
    return [name for name in dict.fromkeys(names) if name not in partition_columns]


def sort_rows(rows, by: Sequence[str]):
    """``rows`` (a pyarrow table) sorted by the columns of ``by`` it holds (nulls last)."""
    present = [name for name in by if name in rows.column_names]
    if not present or rows.num_rows < 2:
        return rows
    return rows.sort_by([(name, "ascending") for name in present])


def write_parquet(rows, path: str, file_layout: FileLayout) -> None:
    """One Parquet file as every publish writes it (the module's docstring)."""
    import pyarrow.parquet as pq

    pq.write_table(
        rows,
        path,
        compression="snappy",
        row_group_size=file_layout.row_group_rows,
        write_statistics=True,
        write_page_index=True,
    )


def compact_partitions(
    storage: Storage, prefix: str, sort_by: Sequence[str], file_layout: FileLayout, staging: str
) -> int:
    """Merge, per partition folder under a table's ``prefix``, the Parquet
    files smaller than the target into as many files as their rows fill to
    at least the target each (one, where they hold less), sorted by
    ``sort_by``. Files already at the target stay. Returns the files removed."""
    import pyarrow as pa

    small: dict[str, list] = {}
    for info in storage.list(prefix.rstrip("/") + "/"):
        if info.key.endswith(".parquet") and info.size < file_layout.target_file_bytes:
            small.setdefault(posixpath.dirname(info.key), []).append(info)
    removed = 0
    for folder, infos in sorted(small.items()):
        if len(infos) < 2:
            continue
        infos.sort(key=lambda info: info.key)
        rows = sort_rows(pa.concat_tables([_read_parquet(storage, info.key) for info in infos]), sort_by)
        # Each small file repeats a footer and its pages' headers: the merged
        # file's own size says how many files of the target its rows fill.
        merged = os.path.join(staging, f"{uuid.uuid4().hex}.parquet")
        write_parquet(rows, merged, file_layout)
        pieces = max(1, os.path.getsize(merged) // file_layout.target_file_bytes)
        locals_ = [merged]
        if pieces > 1:
            os.remove(merged)
            bounds = [rows.num_rows * i // pieces for i in range(pieces + 1)]
            locals_ = [os.path.join(staging, f"{uuid.uuid4().hex}.parquet") for _ in range(pieces)]
            for number, local in enumerate(locals_):
                write_parquet(rows.slice(bounds[number], bounds[number + 1] - bounds[number]), local, file_layout)
        for number, local in enumerate(locals_):
            name = f"part-{number:05d}-{uuid.uuid4()}.c000.snappy.parquet"
            storage.upload_file(local, posixpath.join(folder, name))
            os.remove(local)
        for info in infos:
            storage.delete(info.key)
        removed += len(infos)
        del rows
    return removed


def _read_parquet(storage: Storage, key: str):
    import io

    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(storage.read_bytes(key)))


def spark_writer(frame, partition_keys: Sequence[str], sort_by: Sequence[str], file_layout: FileLayout):
    """``frame``'s writer (mode overwrite, partitioned by ``partition_keys``),
    its rows sorted within each task by partition then ``sort_by`` -- the
    partition first, so the writer's own sort by partition is already
    satisfied and adds none -- with statistics, page indexes and row groups
    as :func:`write_parquet` writes them."""
    ordered = frame.sortWithinPartitions(*partition_keys, *[name for name in sort_by if name in frame.columns])
    return (
        ordered.write.mode("overwrite")
        .partitionBy(*partition_keys)
        .option("maxRecordsPerFile", file_layout.max_rows_per_file)
        .option("parquet.block.size", file_layout.row_group_bytes)
        .option("parquet.column.index.truncate.length", 64)
        .option("parquet.statistics.truncate.length", 64)
    )
