"""Two pipeline roots' current versions compared, table by table (recover's
branch-versus-main check): rows only in A, only in B, values that changed
per column (within tolerances), columns and types that differ.

Rows are joined on each table's natural key, read from the version's own
manifest (its relationalize plan), so no profile is needed and a table is
joined on the key it was published with: a root table on the plan's
``identity_columns`` (the profile's record key plus ``version_sequence``, or
its ``identity_fields`` where the data type has no key), a child table on
``id`` plus ``index`` (arrays) or ``key`` (maps). ``id`` is built from the
root row's natural key, so it names the record at every depth, where the
carried key columns plus ``index`` would not tell apart two grand-children
of one record (docs/decisions/0024-compare-on-the-published-key.md).

datacompy does the joining and the comparing: :class:`datacompy.PandasCompare`
on one machine, :class:`datacompy.SparkSQLCompare` for tables too large for
it (``engine="spark"``). Both are given the same frames' shape, so their
results are read the same way.
"""

from __future__ import annotations

import csv
import fnmatch
import html
import io
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bridge_downstream.common import layout
from bridge_downstream.common.storage import Storage, join_key
from bridge_downstream.publish.manifest import (
    PublishedTable,
    PublishManifest,
    current_version,
    published_datasets,
    read_manifest,
)

ENGINES = ("pandas", "spark")
SIDE_A, SIDE_B = "a", "b"  # datacompy's frame names: its column suffixes (``<column>_a``)
SUMMARY_NAME = "summary.txt"
HTML_NAME = "report.html"
JSON_NAME = "compare.json"
SHOWN_ROWS = 20  # differing rows shown per table and kind in the summary and the HTML
COMPARE_REPORTS_PREFIX = join_key(layout.REPORTS_PREFIX, "compare")


def compare_report_prefix(run_id: str) -> str:
    """Where a compare run's reports go under the compared (branch) root."""
    return join_key(COMPARE_REPORTS_PREFIX, layout.key_segment(run_id))


class CompareError(ValueError):
    pass


@dataclass(frozen=True)
class CompareOptions:
    """``tables``: shell patterns naming a dataset id or a table (every table
    when empty); ``where``: a SQL condition each compared table is filtered by
    on both sides (DuckDB's dialect locally, Spark SQL's on Spark); a table
    without a column it names is reported as not compared. ``row_limit``:
    the differing rows kept per table and kind (the counts are always exact)."""

    abs_tol: float = 0.0
    rel_tol: float = 0.0
    tables: tuple[str, ...] = ()
    where: str | None = None
    ignore_columns: tuple[str, ...] = ()
    row_limit: int = 100_000

    def selects(self, dataset_id: str, table: str) -> bool:
        if not self.tables:
            return True
        return any(fnmatch.fnmatchcase(dataset_id, p) or fnmatch.fnmatchcase(table, p) for p in self.tables)


@dataclass
class ColumnChange:
    """A column whose values differ on rows both sides hold: ``rows`` has the
    join columns, then the value in A and in B (at most ``row_limit`` rows)."""

    column: str
    unequal: int
    max_diff: float
    rows: pd.DataFrame


@dataclass
class TableComparison:
    dataset_id: str
    table: str
    join_columns: list[str]
    rows_a: int = 0
    rows_b: int = 0
    only_in_a_count: int = 0
    only_in_b_count: int = 0
    only_in_a: pd.DataFrame = field(default_factory=pd.DataFrame)
    only_in_b: pd.DataFrame = field(default_factory=pd.DataFrame)
    changed: list[ColumnChange] = field(default_factory=list)
    columns_only_in_a: list[str] = field(default_factory=list)
    columns_only_in_b: list[str] = field(default_factory=list)
    type_changes: dict[str, tuple[str, str]] = field(default_factory=dict)
    duplicate_keys: bool = False
    not_compared: str | None = None  # why the rows could not be compared
    datacompy_report: str = ""

    @property
    def differs(self) -> bool:
        return bool(
            self.only_in_a_count
            or self.only_in_b_count
            or self.changed
            or self.columns_only_in_a
            or self.columns_only_in_b
            or self.type_changes
            or self.not_compared
        )

    def changed_values(self) -> pd.DataFrame:
        """Every kept changed value, one row each: the join columns, ``column``, ``a``, ``b``."""
        frames = []
        for change in self.changed:
            frame = change.rows.rename(
                columns={f"{change.column}_{SIDE_A}": "a", f"{change.column}_{SIDE_B}": "b"}
            ).copy()
            frame.insert(len(self.join_columns), "column", change.column)
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=[*self.join_columns, "column", "a", "b"])
        return pd.concat(frames, ignore_index=True)

    def counts(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "table": self.table,
            "join_columns": self.join_columns,
            "rows_a": self.rows_a,
            "rows_b": self.rows_b,
            "only_in_a": self.only_in_a_count,
            "only_in_b": self.only_in_b_count,
            "changed": {c.column: c.unequal for c in self.changed},
            "columns_only_in_a": self.columns_only_in_a,
            "columns_only_in_b": self.columns_only_in_b,
            "type_changes": {c: list(t) for c, t in self.type_changes.items()},
            "duplicate_keys": self.duplicate_keys,
            "not_compared": self.not_compared,
            "differs": self.differs,
        }


@dataclass
class ComparisonReport:
    a_label: str
    b_label: str
    engine: str
    options: CompareOptions
    datasets_only_in_a: list[str] = field(default_factory=list)
    datasets_only_in_b: list[str] = field(default_factory=list)
    tables_only_in_a: list[tuple[str, str]] = field(default_factory=list)
    tables_only_in_b: list[tuple[str, str]] = field(default_factory=list)
    tables: list[TableComparison] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        return bool(
            self.datasets_only_in_a
            or self.datasets_only_in_b
            or self.tables_only_in_a
            or self.tables_only_in_b
            or any(t.differs for t in self.tables)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a_label,
            "b": self.b_label,
            "engine": self.engine,
            "abs_tol": self.options.abs_tol,
            "rel_tol": self.options.rel_tol,
            "where": self.options.where,
            "tables_selected": list(self.options.tables),
            "differs": self.differs,
            "datasets_only_in_a": self.datasets_only_in_a,
            "datasets_only_in_b": self.datasets_only_in_b,
            "tables_only_in_a": [list(t) for t in self.tables_only_in_a],
            "tables_only_in_b": [list(t) for t in self.tables_only_in_b],
            "tables": [t.counts() for t in self.tables],
        }

    def summary_text(self) -> str:
        lines = [f"A: {self.a_label}", f"B: {self.b_label}", ""]
        for label, items in (
            ("datasets only in A", self.datasets_only_in_a),
            ("datasets only in B", self.datasets_only_in_b),
            ("tables only in A", [f"{d}/{t}" for d, t in self.tables_only_in_a]),
            ("tables only in B", [f"{d}/{t}" for d, t in self.tables_only_in_b]),
        ):
            if items:
                lines.append(f"{label}: {', '.join(items)}")
        differing = [t for t in self.tables if t.differs]
        lines.append(
            f"{len(self.tables)} tables compared, {len(differing)} differ"
            + ("" if self.differs else ": A and B hold the same data")
        )
        for table in differing:
            lines.append("")
            lines.append(f"{table.dataset_id}/{table.table} (key: {', '.join(table.join_columns) or '-'})")
            lines.extend(f"  {line}" for line in _table_lines(table))
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        return _render_html(self)

    def write(self, storage: Storage, prefix: str = "") -> list[str]:
        """The summary, the HTML report, the counts as JSON and a CSV of each
        table's differing rows, under ``prefix``; the keys written."""
        written = []

        def put(key: str, data: bytes) -> None:
            storage.write_bytes(key, data)
            written.append(key)

        put(join_key(prefix, SUMMARY_NAME), self.summary_text().encode())
        put(join_key(prefix, HTML_NAME), self.html().encode())
        put(join_key(prefix, JSON_NAME), json.dumps(self.to_json(), indent=2, default=str).encode())
        for table in self.tables:
            folder = join_key(prefix, layout.key_segment(table.dataset_id))
            for kind, frame in _differing_frames(table):
                put(join_key(folder, f"{layout.key_segment(table.table)}.{kind}.csv"), _csv_bytes(frame))
        return written


def _differing_frames(table: TableComparison) -> Iterator[tuple[str, pd.DataFrame]]:
    if table.only_in_a_count:
        yield "only_in_a", table.only_in_a
    if table.only_in_b_count:
        yield "only_in_b", table.only_in_b
    if table.changed:
        yield "changed", table.changed_values()


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    return buffer.getvalue().encode()


def _key_text(row: pd.Series, columns: Sequence[str]) -> str:
    return ", ".join(f"{c}={row[c]}" for c in columns)


def _table_lines(table: TableComparison) -> Iterator[str]:
    if table.not_compared:
        yield f"not compared: {table.not_compared}"
    yield f"rows: A {table.rows_a}, B {table.rows_b}"
    if table.duplicate_keys:
        yield "the key is not unique: datacompy paired duplicates in the order of their other columns"
    for kind, columns in (
        ("columns only in A", table.columns_only_in_a),
        ("columns only in B", table.columns_only_in_b),
    ):
        if columns:
            yield f"{kind}: {', '.join(columns)}"
    for column, (type_a, type_b) in table.type_changes.items():
        yield f"type of {column}: {type_a} in A, {type_b} in B"
    for label, count, frame in (
        ("only in A", table.only_in_a_count, table.only_in_a),
        ("only in B", table.only_in_b_count, table.only_in_b),
    ):
        if count:
            yield f"{count} rows {label}"
            for _, row in frame.head(SHOWN_ROWS).iterrows():
                yield f"  {_key_text(row, table.join_columns)}"
    for change in table.changed:
        yield f"{change.unequal} changed values in {change.column} (max difference {change.max_diff:g})"
        for _, row in change.rows.head(SHOWN_ROWS).iterrows():
            a, b = row[f"{change.column}_{SIDE_A}"], row[f"{change.column}_{SIDE_B}"]
            yield f"  {_key_text(row, table.join_columns)}: {a!r} -> {b!r}"


_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #bbb;padding:2px 6px;text-align:left}.diff{color:#a00}.same{color:#070}"
    "pre{background:#f5f5f5;padding:.5em;overflow-x:auto}"
)


def _frame_html(frame: pd.DataFrame) -> str:
    shown = frame.head(SHOWN_ROWS)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in shown.itertuples(index=False)
    )
    more = f"<p>{len(frame) - len(shown)} more in the CSV</p>" if len(frame) > len(shown) else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _render_html(report: ComparisonReport) -> str:
    """One file, no scripts or links: it is read from S3 or a laptop alike."""
    e = html.escape
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>compare</title><style>{_STYLE}</style></head><body>",
        f"<h1>Compare</h1><p>A: <code>{e(report.a_label)}</code><br>B: <code>{e(report.b_label)}</code></p>",
        "<p class='{}'>{}</p>".format(
            "diff" if report.differs else "same", "A and B differ" if report.differs else "A and B hold the same data"
        ),
    ]
    for label, items in (
        ("Datasets only in A", report.datasets_only_in_a),
        ("Datasets only in B", report.datasets_only_in_b),
        ("Tables only in A", [f"{d}/{t}" for d, t in report.tables_only_in_a]),
        ("Tables only in B", [f"{d}/{t}" for d, t in report.tables_only_in_b]),
    ):
        if items:
            parts.append(f"<h2>{label}</h2><ul>" + "".join(f"<li>{e(i)}</li>" for i in items) + "</ul>")
    parts.append("<h2>Tables</h2><table><tr><th>dataset</th><th>table</th><th>rows A</th><th>rows B</th>")
    parts.append("<th>only in A</th><th>only in B</th><th>changed values</th><th>columns / types</th></tr>")
    for t in report.tables:
        schema = len(t.columns_only_in_a) + len(t.columns_only_in_b) + len(t.type_changes)
        cls = "diff" if t.differs else "same"
        parts.append(
            f"<tr class='{cls}'><td>{e(t.dataset_id)}</td><td><a href='#{e(t.dataset_id)}/{e(t.table)}'>"
            f"{e(t.table)}</a></td><td>{t.rows_a}</td><td>{t.rows_b}</td><td>{t.only_in_a_count}</td>"
            f"<td>{t.only_in_b_count}</td><td>{sum(c.unequal for c in t.changed)}</td><td>{schema}</td></tr>"
        )
    parts.append("</table>")
    for t in report.tables:
        if not t.differs:
            continue
        parts.append(f"<h3 id='{e(t.dataset_id)}/{e(t.table)}'>{e(t.dataset_id)}/{e(t.table)}</h3>")
        parts.append("<pre>" + e("\n".join(_table_lines(t))) + "</pre>")
        for label, frame in _differing_frames(t):
            parts.append(f"<h4>{e(label.replace('_', ' '))}</h4>{_frame_html(frame)}")
        if t.datacompy_report:
            parts.append(f"<details><summary>datacompy report</summary><pre>{e(t.datacompy_report)}</pre></details>")
    parts.append("</body></html>")
    return "".join(parts)


class TableReader(Protocol):
    """Reads a published table of a root into a frame datacompy compares."""

    def read(self, storage: Storage, manifest: PublishManifest, table: str, where: str | None) -> Any: ...

    def compare(self, a: Any, b: Any, join_columns: list[str], options: CompareOptions) -> Any: ...

    def count(self, frame: Any) -> int: ...

    def head(self, frame: Any, rows: int) -> pd.DataFrame: ...

    def drop(self, frame: Any, columns: list[str]) -> Any: ...


def _types_of(manifest: PublishManifest, table: str) -> dict[str, str]:
    published = manifest.tables[table]
    types = {c["name"]: c["type"] for c in published.columns}
    for name in published.partition_keys:
        types.setdefault(name, layout.partition_type(name))
    return types


def _partition_value(name: str, text: str) -> object:
    if text == layout.HIVE_DEFAULT_PARTITION:
        return None
    return int(text) if layout.partition_type(name) == "int" else text


class PandasReader:
    """The table's Parquet files read through the storage into pandas, the
    partition columns added from the manifest (their files do not hold them)."""

    def read(self, storage: Storage, manifest: PublishManifest, table: str, where: str | None) -> pd.DataFrame:
        published = manifest.tables[table]
        pieces = []
        for file in published.files_of("parquet"):
            piece = pq.read_table(io.BytesIO(storage.read_bytes(file.key)))
            for name in published.partition_keys:
                value = _partition_value(name, file.partition.get(name, layout.HIVE_DEFAULT_PARTITION))
                piece = piece.append_column(name, pa.array([value] * piece.num_rows))
            pieces.append(piece)
        if pieces:
            arrow = pa.concat_tables(pieces, promote_options="default")
        else:
            arrow = pa.table({name: pa.array([], pa.string()) for name in _types_of(manifest, table)})
        if where:
            arrow = _filtered(arrow, where)
        return arrow.to_pandas()

    def compare(self, a: pd.DataFrame, b: pd.DataFrame, join_columns: list[str], options: CompareOptions) -> Any:
        import datacompy  # here: every command of the CLI imports this module, few compare

        return datacompy.PandasCompare(
            a,
            b,
            join_columns=join_columns,
            abs_tol=options.abs_tol,
            rel_tol=options.rel_tol,
            df1_name=SIDE_A,
            df2_name=SIDE_B,
            cast_column_names_lower=False,
        )

    def count(self, frame: pd.DataFrame) -> int:
        return len(frame)

    def head(self, frame: pd.DataFrame, rows: int) -> pd.DataFrame:
        return frame.head(rows).reset_index(drop=True)

    def drop(self, frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
        return frame.drop(columns=[c for c in columns if c in frame.columns])


def _filtered(arrow: pa.Table, where: str) -> pa.Table:
    import duckdb

    with duckdb.connect() as connection:
        connection.register("compared", arrow)
        return connection.execute(f"SELECT * FROM compared WHERE {where}").to_arrow_table()


class SparkReader:
    """The table's Parquet files read by Spark, reached through a
    :class:`~bridge_downstream.publish.spark_engine.SparkLocation` (directly on
    Glue, a staged copy against emulated S3)."""

    def __init__(self, spark: Any, location: Any):
        self.spark = spark
        self.location = location

    def read(self, storage: Storage, manifest: PublishManifest, table: str, where: str | None) -> Any:

        frame = read_published_spark(self.spark, self.location, storage, manifest.tables[table])
        if frame is None:
            schema = ", ".join(f"`{name}` {kind}" for name, kind in _types_of(manifest, table).items())
            frame = self.spark.createDataFrame([], schema)
        return frame.where(where) if where else frame

    def compare(self, a: Any, b: Any, join_columns: list[str], options: CompareOptions) -> Any:
        import datacompy

        return datacompy.SparkSQLCompare(
            self.spark,
            a,
            b,
            join_columns=join_columns,
            abs_tol=options.abs_tol,
            rel_tol=options.rel_tol,
            df1_name=SIDE_A,
            df2_name=SIDE_B,
            cast_column_names_lower=False,
        )

    def count(self, frame: Any) -> int:
        return int(frame.count())

    def head(self, frame: Any, rows: int) -> pd.DataFrame:
        return frame.limit(rows).toPandas()

    def drop(self, frame: Any, columns: list[str]) -> Any:
        return frame.drop(*columns)


def read_published_spark(spark: Any, location: Any, storage: Storage, table: PublishedTable) -> Any:
    """``table``'s Parquet files read by Spark through ``location`` (a
    :class:`~bridge_downstream.publish.spark_engine.SparkLocation`), partition
    columns typed as the layout types them; ``None`` when it has no file.

    An incremental version carries unchanged partitions by reference, in the
    folders of the versions that wrote them: one read per folder, united by
    column name (a carried partition may predate a column)."""
    from functools import reduce

    from pyspark.sql import functions as F

    groups: dict[str, list[str]] = {}
    for file in table.files_of("parquet"):
        below = table.relative_key(file)
        groups.setdefault(file.key[: -len(below)].rstrip("/"), []).append(below)
    if not groups:
        return None
    inference = "spark.sql.sources.partitionColumnTypeInference.enabled"
    previous = spark.conf.get(inference)
    # Partition types are the layout's (date parts int, the rest text), never guessed from values.
    spark.conf.set(inference, "false")
    try:
        frames = []
        for folder, names in groups.items():
            base = location.read_uri(storage, folder).rstrip("/")
            paths = [f"{base}/{_escaped_glob(name)}" for name in names]
            frames.append(spark.read.option("basePath", base).option("mergeSchema", "true").parquet(*paths))
    finally:
        spark.conf.set(inference, previous)
    frame = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)
    for name in table.partition_keys:
        if name in frame.columns and layout.partition_type(name) == "int":
            frame = frame.withColumn(name, F.col(name).cast("int"))
    return frame


def _escaped_glob(path: str) -> str:
    """Hadoop expands glob characters in a path it is given; escaped, they are themselves."""
    return "".join("\\" + c if c in "\\{}[]*?" else c for c in path)


def join_columns(manifest: PublishManifest, table: str) -> list[str] | None:
    """The natural key a published table's rows are joined on, from its
    version's plan; None when the version records no plan (or the table is
    none of the plan's, such as a nested table)."""
    plan = manifest.plan
    if not plan:
        return None
    table_plan = next((t for t in plan["tables"] if t["name"] == table), None)
    if table_plan is None:
        return None
    columns = table_plan["columns"]
    if table_plan["kind"] == "root":
        by_path = {tuple(c["path"]): c["name"] for c in columns if c["role"] == "value"}
        return [by_path.get((name,), name) for name in plan["identity_columns"]]
    position = "index" if table_plan["kind"] == "array" else "key"
    by_role = {c["role"]: c["name"] for c in columns}
    return [by_role["id"], by_role[position]]


def _current_manifests(storage: Storage) -> dict[str, PublishManifest]:
    manifests = {}
    for dataset_id in published_datasets(storage):
        version = current_version(storage, dataset_id)
        if version is not None:
            manifests[dataset_id] = read_manifest(storage, dataset_id, version)
    return manifests


def compare_storages(
    a: Storage,
    b: Storage,
    options: CompareOptions | None = None,
    *,
    engine: str = "pandas",
    spark: Any = None,
    locations: tuple[Any, Any] | None = None,
    a_label: str | None = None,
    b_label: str | None = None,
) -> ComparisonReport:
    """Compare the current version of every dataset of pipeline root ``a``
    with ``b``'s. ``engine="spark"`` needs ``spark`` and, where Spark cannot
    read the storages' URIs itself, ``locations`` (one SparkLocation per side)."""
    options = options or CompareOptions()
    if engine not in ENGINES:
        raise CompareError(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")
    readers: tuple[TableReader, TableReader]
    if engine == "spark":
        if spark is None:
            raise CompareError("the spark engine needs a Spark session")
        if locations is None:
            from bridge_downstream.publish.spark_engine import DirectLocation

            locations = (DirectLocation(), DirectLocation())
        readers = (SparkReader(spark, locations[0]), SparkReader(spark, locations[1]))
    else:
        readers = (PandasReader(), PandasReader())
    report = ComparisonReport(
        a_label=a_label or a.uri(""), b_label=b_label or b.uri(""), engine=engine, options=options
    )
    manifests_a, manifests_b = _current_manifests(a), _current_manifests(b)
    for dataset_id in sorted(set(manifests_a) | set(manifests_b)):
        manifest_a, manifest_b = manifests_a.get(dataset_id), manifests_b.get(dataset_id)
        if manifest_a is None or manifest_b is None:
            if options.selects(dataset_id, ""):
                (report.datasets_only_in_b if manifest_a is None else report.datasets_only_in_a).append(dataset_id)
            continue
        for table in _ordered_tables(manifest_a, manifest_b):
            if not options.selects(dataset_id, table):
                continue
            if table not in manifest_b.tables:
                report.tables_only_in_a.append((dataset_id, table))
            elif table not in manifest_a.tables:
                report.tables_only_in_b.append((dataset_id, table))
            else:
                report.tables.append(_compare_table((a, manifest_a), (b, manifest_b), table, readers, options))
    return report


def _ordered_tables(a: PublishManifest, b: PublishManifest) -> list[str]:
    """A's tables in its order (parents first), then those only B has."""
    return list(dict.fromkeys([*a.tables, *b.tables]))


def _compare_table(
    side_a: tuple[Storage, PublishManifest],
    side_b: tuple[Storage, PublishManifest],
    table: str,
    readers: tuple[TableReader, TableReader],
    options: CompareOptions,
) -> TableComparison:
    (storage_a, manifest_a), (storage_b, manifest_b) = side_a, side_b
    keys = join_columns(manifest_a, table) or join_columns(manifest_b, table)
    result = TableComparison(dataset_id=manifest_a.dataset_id, table=table, join_columns=keys or [])
    types_a, types_b = _types_of(manifest_a, table), _types_of(manifest_b, table)
    ignored = set(options.ignore_columns)
    result.columns_only_in_a = [c for c in types_a if c not in types_b and c not in ignored]
    result.columns_only_in_b = [c for c in types_b if c not in types_a and c not in ignored]
    result.type_changes = {
        c: (types_a[c], types_b[c]) for c in types_a if c in types_b and c not in ignored and types_a[c] != types_b[c]
    }
    key_b = join_columns(manifest_b, table)
    if keys is None:
        result.not_compared = "its versions record no plan, so no natural key to join rows on"
        return result
    if key_b is not None and key_b != keys:
        result.not_compared = f"the natural key differs: {keys} in A, {key_b} in B"
        return result
    try:
        frame_a = readers[0].read(storage_a, manifest_a, table, options.where)
        frame_b = readers[1].read(storage_b, manifest_b, table, options.where)
    except Exception as error:  # a --where naming a column this table lacks: reported, the others compared
        if not options.where:
            raise
        result.not_compared = f"--where could not be applied: {str(error).splitlines()[0]}"
        return result
    result.rows_a, result.rows_b = readers[0].count(frame_a), readers[1].count(frame_b)
    dropped = [c for c in ignored if c not in keys]
    frame_a, frame_b = readers[0].drop(frame_a, dropped), readers[1].drop(frame_b, dropped)
    missing = [k for k in keys if k not in frame_a.columns or k not in frame_b.columns]
    if missing:
        result.not_compared = f"key columns {missing} are missing"
        return result
    comparison = readers[0].compare(frame_a, frame_b, keys, options)
    reader = readers[0]
    result.duplicate_keys = bool(comparison._any_dupes)
    result.only_in_a_count = reader.count(comparison.df1_unq_rows)
    result.only_in_b_count = reader.count(comparison.df2_unq_rows)
    result.only_in_a = _sorted(reader.head(comparison.df1_unq_rows, options.row_limit), keys)
    result.only_in_b = _sorted(reader.head(comparison.df2_unq_rows, options.row_limit), keys)
    for stats in comparison.column_stats:
        if stats["column"] in keys or not stats["unequal_cnt"]:
            continue
        rows = reader.head(comparison.sample_mismatch(stats["column"], options.row_limit), options.row_limit)
        max_diff = float(stats["max_diff"] or 0.0)
        result.changed.append(
            ColumnChange(
                column=stats["column"],
                unequal=int(stats["unequal_cnt"]),
                max_diff=0.0 if math.isnan(max_diff) else max_diff,
                rows=_sorted(rows, keys),
            )
        )
    if result.differs:
        result.datacompy_report = comparison.report(sample_count=10)
    return result


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    present = [k for k in keys if k in frame.columns]
    if not present or frame.empty:
        return frame.reset_index(drop=True)
    return frame.sort_values(present, kind="stable").reset_index(drop=True)
