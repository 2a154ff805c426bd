"""Execute a relationalize plan with plain PySpark column expressions.

No Python UDFs and no per-row Python: the NDJSON lines are parsed by Spark's
JSON parser (``from_json`` with the plan's schema), child tables come from
``posexplode`` (a narrow transformation: no shuffle), ids are ``concat`` of
strings (identity values and map keys escaped with ``replace``).

Why ``spark.read.text`` + ``from_json`` rather than ``spark.read.schema(s).json``:
the data source reader rejects a schema with two keys that differ only by case
(``COLUMN_ALREADY_EXISTS`` -- real documents have e.g. ``Type`` and ``type``),
``from_json`` uses the same parser (same PERMISSIVE semantics, same JSON text for
string columns) without that check.  Immediately after parsing, the row struct is
cast to the same shape with positional field names (``f0``, ``f1``, ...), so no
expression ever resolves a JSON key by name (case-insensitive analysis, dots).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from os import PathLike
from typing import TYPE_CHECKING

from bridge_downstream.relationalize import plan as rules  # roles, kinds and the id rules
from bridge_downstream.relationalize.nested import NestedTablePlan, converted_kind
from bridge_downstream.relationalize.plan import RelationalizePlan, TablePlan, time_month, time_month_sql
from bridge_downstream.relationalize.text_values import converted_sql
from bridge_downstream.relationalize.types import (
    BIGINT,
    BOOLEAN,
    DECIMAL,
    DECIMAL_DIGITS,
    DOUBLE,
    STRING,
    TIMESTAMP,
    Array,
    Map,
    Scalar,
    Struct,
    Type,
)

if TYPE_CHECKING:
    # only for annotations: importing this module must not need pyspark
    from pyspark.sql import DataFrame


def _spark_scalar(kind: str):
    from pyspark.sql import types as T

    return {
        STRING: T.StringType,
        BIGINT: T.LongType,
        DOUBLE: T.DoubleType,
        BOOLEAN: T.BooleanType,
        DECIMAL: lambda: T.DecimalType(DECIMAL_DIGITS, 0),
        TIMESTAMP: T.StringType,  # read as its text, converted on output
    }[kind]()


def spark_type(t: Type, positional: bool = False):
    """The Spark DataType of a type tree: JSON keys as field names, or ``f<i>`` when positional."""
    from pyspark.sql import types as T

    if isinstance(t, Scalar):
        return _spark_scalar(t.kind)
    if isinstance(t, Struct):
        return T.StructType(
            [
                T.StructField(f"f{i}" if positional else name, spark_type(v, positional), True)
                for i, (name, v) in enumerate(t.fields)
            ]
        )
    if isinstance(t, Array):
        return T.ArrayType(spark_type(t.element, positional), True)
    if isinstance(t, Map):
        return T.MapType(T.StringType(), spark_type(t.value, positional), True)
    raise TypeError(f"not a finished type: {t!r}")


def read_schema(plan: RelationalizePlan):
    """The Spark schema for reading the dataset's NDJSON lines (JSON keys as names)."""
    return spark_type(plan.row_type)


def table_schema(table: TablePlan):
    """The Spark schema of one output table."""
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField(c.name, T.TimestampType() if c.type == TIMESTAMP else spark_type(Scalar(c.type)), True)
            for c in table.columns
        ]
    )


def _index_path(t: Type, path: list[str]) -> list[str]:
    out = []
    for key in path:
        assert isinstance(t, Struct), (t, path)
        i = t.index_of(key)
        out.append(f"f{i}")
        t = t.fields[i][1]
    return out


def _at(col, t: Type, path: list[str]):
    for name in _index_path(t, path):
        col = col.getField(name)
    return col


def parse_lines(plan: RelationalizePlan, lines):
    """``lines``: a DataFrame whose first column holds one NDJSON line per row.
    Returns a DataFrame with one struct column ``e`` (positional field names)."""
    from pyspark.sql import functions as F

    value = lines[lines.columns[0]]
    # one projection: each costs Spark an analysis in proportion to the row's fields
    parsed = F.from_json(value, read_schema(plan)).cast(spark_type(plan.row_type, positional=True))
    rows = lines.where(F.trim(value) != "").select(parsed.alias("e"))
    if not plan.time_partitions:
        return rows
    # a second projection, only for time-partitioned datasets (narrow ones): it reads the fields parsed
    e = F.col("e")
    for column, source in plan.time_partitions.items():
        e = e.withField(_index_path(plan.row_type, [column])[0], _time_month(plan.row_type, source))
    return rows.select(e.alias("e"))


def _time_month(row_type: Type, source: str):
    """The Arrow executor's ``with_time_partitions`` of one column of the parsed rows ``e``."""
    from pyspark.sql import functions as F

    if not isinstance(row_type, Struct) or source not in dict(row_type.fields):
        return F.lit(time_month(None)).cast("bigint")
    return F.expr(time_month_sql(f"CAST(e.{_index_path(row_type, [source])[0]} AS string)"))


class SparkTables(dict):
    """``{table name: DataFrame}`` in plan order, plus ``parsed``: the parsed
    source rows every table derives from (persisted when asked)."""

    parsed = None

    def unpersist(self) -> None:
        if self.parsed is not None:
            self.parsed.unpersist()


def relationalize_spark(
    spark,
    plan: RelationalizePlan,
    source: str | PathLike | Iterable[str | PathLike] | DataFrame,
    *,
    persist: bool = False,
    cluster_partitions: int | None = None,
    partition_widths: Mapping[str, int] | None = None,
) -> SparkTables:
    """Execute ``plan``: returns ``{table name: DataFrame}`` in plan order.

    ``source``: NDJSON path(s) (files or directories, any Hadoop-readable URI),
    or a DataFrame whose first column holds NDJSON lines (e.g. ``spark.read.text``).
    Frames are lazy; every table re-reads and re-parses the source unless
    ``persist=True``: the parsed rows are then persisted once, on local disk
    (held in memory, they would take the JVM's memory in proportion to the
    dataset), and the caller calls ``tables.unpersist()`` after writing them all.

    ``cluster_partitions``: the parsed rows are first shuffled into this many
    tasks by the plan's partition columns, so each output partition is
    written by one task (one file per partition and table) and a task's
    write sorts a bounded share of the rows.

    ``partition_widths``: when given, the plan's partition columns come out as
    text, left-padded with zeros to the width given for a column (the folder
    names of a Hive layout), in the table's one projection: a second
    projection over a table of 10,000 columns costs Spark's optimizer a time
    that grows with the square of the columns (``CollapseProject``).

    A frame holds its element's fields as columns of their own (``inline``:
    by position), so no field of a wide struct is looked up by name: Spark
    finds a field by name by scanning the struct, which made a document of
    10,000 keys quadratic.
    """
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F

    if isinstance(source, DataFrame):
        lines = source
    else:
        paths = [str(source)] if isinstance(source, (str, PathLike)) else [str(p) for p in source]
        lines = spark.read.text(paths)
    parsed = parse_lines(plan, lines)
    if cluster_partitions and plan.partition_columns:
        partition_values = [_at(F.col("e"), plan.row_type, [c]) for c in plan.partition_columns]
        parsed = parsed.repartition(cluster_partitions, *partition_values)
    if persist:
        from pyspark import StorageLevel

        parsed = parsed.persist(StorageLevel.DISK_ONLY)

    row_type = plan.row_type
    e = F.col("e")
    key = _row_key([_at(e, row_type, [c]) for c in plan.identity_columns])
    carried = [_at(e, row_type, [c]).alias(f"c{i}") for i, c in enumerate(plan.carry_columns)]
    carry_index = {c: f"c{i}" for i, c in enumerate(plan.carry_columns)}
    carry_cols = [f"c{i}" for i in range(len(plan.carry_columns))]
    text_widths = None if partition_widths is None else {c: partition_widths.get(c) for c in plan.partition_columns}

    # internal frames: k (row key), c0.. (carried), the element (its fields f0.., or e),
    # plus id, and pos (array tables) or n (map key, map tables)
    internal = {plan.root.name: parsed.select(key.alias("k"), *carried, *_element(e, row_type))}
    out = SparkTables()
    out.parsed = parsed
    tables = {table.name: table for table in plan.tables}
    for table in plan.tables:
        if table.parent is not None:
            parent = tables[table.parent]
            pframe = internal[parent.name]
            assert table.parent_column is not None, table.name  # set with parent by build_plan
            container = _element_at(parent.element_type, table.source_path)
            segment = F.lit("/" + table.parent_column)
            if table.kind == rules.KIND_ARRAY:
                exploded = pframe.select(
                    F.concat(F.col("k"), segment).alias("id"),
                    *carry_cols,
                    F.posexplode(container).alias("pos", "e"),
                )
                frame = exploded.select(
                    F.concat(F.col("id"), F.lit("["), F.col("pos").cast("string"), F.lit("]")).alias("k"),
                    "id",
                    F.col("pos").cast("bigint").alias("pos"),
                    *carry_cols,
                    *_element(F.col("e"), table.element_type),
                )
            elif table.kind == rules.KIND_MAP:
                exploded = pframe.select(
                    F.concat(F.col("k"), segment).alias("id"),
                    *carry_cols,
                    F.explode(container).alias("n", "e"),
                )
                frame = exploded.select(
                    F.concat(F.col("id"), F.lit("["), _escaped(F.col("n"), rules.MAP_KEY_ESCAPES), F.lit("]")).alias(
                        "k"
                    ),
                    "id",
                    "n",
                    *carry_cols,
                    *_element(F.col("e"), table.element_type),
                )
            else:  # pragma: no cover
                raise ValueError(table.kind)
            internal[table.name] = frame
        frame = internal[table.name]
        out[table.name] = frame.selectExpr(*[_column_sql(table, c, carry_index, text_widths) for c in table.columns])
    return out


def _element(element, t: Type) -> list:
    """The select items that hold a frame's element: a struct's fields as
    columns ``f0``, ``f1``, ... (by position), anything else as ``e``."""
    from pyspark.sql import functions as F

    if isinstance(t, Struct):
        return [F.inline(F.array(element))]  # a null struct gives a row of nulls
    return [element.alias("e")]


def _element_path(t: Type, path: list[str]) -> list[str]:
    """The column and field names of ``path`` in a frame holding an element of type ``t``."""
    return _index_path(t, path) or ["e"]


def _element_at(t: Type, path: list[str]):
    from pyspark.sql import functions as F

    column, *fields = _element_path(t, path)
    value = F.col(column)
    for name in fields:
        value = value.getField(name)
    return value


def _escaped(text, replacements: tuple[tuple[str, str], ...]):
    """``text`` escaped for an id (the plan's id rules)."""
    from pyspark.sql import functions as F

    for special, escaped in replacements:
        text = F.replace(text, F.lit(special), F.lit(escaped))
    return text


def _row_key(identity: list):
    """The root row key (the plan's id rules)."""
    from pyspark.sql import functions as F

    components = [
        F.coalesce(_escaped(c.cast("string"), rules.IDENTITY_ESCAPES), F.lit(rules.NULL_COMPONENT)) for c in identity
    ]
    return F.concat_ws(rules.KEY_SEPARATOR, *components)


def _column_sql(table: TablePlan, column, carry_index, text_widths: dict[str, int | None] | None) -> str:
    """One output column as SQL text: a table is one ``selectExpr``, because a
    ``Column`` built per output column costs several py4j round trips (a
    10,000-key document spent most of a minute there). Field names are
    positional and column names sanitized (``[A-Za-z0-9_]``), so the text needs
    no escaping beyond the backticks; the plan's type names are Spark's."""
    if column.role == rules.ROLE_VALUE:
        expr = ".".join(_element_path(table.element_type, column.path))
    elif column.role == rules.ROLE_LINK:
        container = ".".join(_element_path(table.element_type, column.path))
        expr = f"CASE WHEN {container} IS NOT NULL THEN concat(k, '/{column.name}') END"
    elif column.role == rules.ROLE_ID:
        expr = "id"
    elif column.role == rules.ROLE_INDEX:
        expr = "pos"
    elif column.role == rules.ROLE_KEY:
        expr = "n"
    elif column.role == rules.ROLE_CARRY:
        expr = carry_index[column.path[0]]
    elif column.role == rules.ROLE_RESCUED:
        return f"{_rescued_sql(table)} AS `{column.name}`"
    else:  # pragma: no cover
        raise ValueError(column.role)
    if text_widths is not None and column.name in text_widths:
        width = text_widths[column.name]
        text = f"CAST({expr} AS string)"
        if width is not None:
            text = f"lpad({text}, {int(width)}, '0')"
        return f"{text} AS `{column.name}`"
    if column.from_text:
        return f"{converted_sql(column.type, f'CAST({expr} AS string)')} AS `{column.name}`"
    return f"CAST({expr} AS {column.type}) AS `{column.name}`"


def _rescued_sql(table: TablePlan) -> str:
    """The JSON text of {path: text} of the values of ``table``'s text columns
    that do not convert, null when none (the Arrow executor's ``_rescued``)."""
    entries = []
    for column in table.columns:
        if column.role == rules.ROLE_VALUE and column.from_text:
            text = f"CAST({'.'.join(_element_path(table.element_type, column.path))} AS string)"
            misfit = f"{text} IS NOT NULL AND {converted_sql(column.type, text)} IS NULL"
            entries.append(f"{_sql_literal(rules.rescued_path(column))}, CASE WHEN {misfit} THEN {text} END")
    if not entries:
        return "CAST(NULL AS string)"
    return f"nullif(to_json(map_filter(map({', '.join(entries)}), (k, v) -> v IS NOT NULL)), '{{}}')"


def _sql_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def infer_type_spark(spark, source, max_struct_fields: int | None = None) -> Type:
    """:func:`inference.infer_type` distributed over a Spark cluster, for datasets
    without a schema too large for one driver: each partition runs the same
    pure-Python inference, the partial types are merged on the driver.  The
    result equals ``infer_type`` over the same rows (merge is order-independent).
    Python runs per row here -- this is the inference pass, not the executor."""
    from pyspark.sql import DataFrame

    from bridge_downstream.relationalize.inference import (
        MAX_STRUCT_FIELDS,
        TypeAccumulator,
        finish,
        parse_line,
    )
    from bridge_downstream.relationalize.types import merge_all

    limit = max_struct_fields or MAX_STRUCT_FIELDS
    if isinstance(source, DataFrame):
        lines = source
    else:
        paths = [str(source)] if isinstance(source, (str, PathLike)) else [str(p) for p in source]
        lines = spark.read.text(paths)

    def partition(rows):
        acc = TypeAccumulator(limit)
        for row in rows:
            line = row[0]
            if line and line.strip():
                acc.add(parse_line(line))
        yield acc.partial

    return finish(merge_all(lines.rdd.mapPartitions(partition).collect()), limit)


# ---------------------------------------------------------------------------
# the nested table (relationalize/nested.py)


def nested_spark_type(t: Type):
    """The Spark type of a nested table's column (a published type: named fields, output scalars)."""
    from pyspark.sql import types as T

    if isinstance(t, Scalar):
        return T.TimestampType() if t.kind == TIMESTAMP else _spark_scalar(t.kind)
    if isinstance(t, Struct):
        return T.StructType([T.StructField(name, nested_spark_type(v), True) for name, v in t.fields])
    if isinstance(t, Array):
        return T.ArrayType(nested_spark_type(t.element), True)
    if isinstance(t, Map):
        return T.MapType(T.StringType(), nested_spark_type(t.value), True)
    raise TypeError(f"not a finished type: {t!r}")


def nested_table_spark(
    plan: RelationalizePlan,
    nested: NestedTablePlan,
    parsed: DataFrame,
    partition_widths: Mapping[str, int] | None = None,
) -> DataFrame:
    """The nested table of ``parsed`` (:attr:`SparkTables.parsed`): the root
    table's columns as :func:`relationalize_spark` makes them (same
    ``partition_widths``), the objects, arrays and maps cast by position to
    their published types (values read as text converted as in the root table)."""
    from pyspark.sql import functions as F

    root = plan.root
    text_widths = None if partition_widths is None else {c: partition_widths.get(c) for c in plan.partition_columns}
    frame = parsed.select(F.col("e"), *_element(F.col("e"), plan.row_type))
    selected = []
    for column in nested.columns:
        if column.key is None:
            selected.append(F.expr(_column_sql(root, root.column(column.name), {}, text_widths)))
            continue
        i = plan.row_type.index_of(column.key)
        value = _nested_sql(f"f{i}", plan.row_type.fields[i][1], column.type)
        selected.append(F.expr(value).cast(nested_spark_type(column.type)).alias(column.name))
    return frame.select(*selected)


def _converts(source: Type, published: Type) -> bool:
    if isinstance(source, Scalar):
        assert isinstance(published, Scalar)
        return converted_kind(source, published) is not None
    if isinstance(source, Struct):
        assert isinstance(published, Struct)
        return any(_converts(v, w) for (_, v), (_, w) in zip(source.fields, published.fields, strict=True))
    if isinstance(source, Array):
        assert isinstance(published, Array)
        return _converts(source.element, published.element)
    if isinstance(source, Map):
        assert isinstance(published, Map)
        return _converts(source.value, published.value)
    return False


def _nested_sql(expr: str, source: Type, published: Type, depth: int = 0) -> str:
    """SQL for the value ``expr`` (positional fields) of type ``source``, its
    values read as text converted: the rest is left to the one cast to the
    published type, which renames struct fields by position."""
    if not _converts(source, published):
        return expr
    if isinstance(source, Scalar):
        assert isinstance(published, Scalar)
        return converted_sql(published.kind, f"CAST({expr} AS string)")
    if isinstance(source, Struct):
        assert isinstance(published, Struct)
        parts = ", ".join(
            f"'f{i}', {_nested_sql(f'{expr}.f{i}', v, w, depth)}"
            for i, ((_, v), (_, w)) in enumerate(zip(source.fields, published.fields, strict=True))
        )
        return f"CASE WHEN {expr} IS NOT NULL THEN named_struct({parts}) END"
    if isinstance(source, Array):
        assert isinstance(published, Array)
        x = f"x{depth}"
        return f"transform({expr}, {x} -> {_nested_sql(x, source.element, published.element, depth + 1)})"
    if isinstance(source, Map):
        assert isinstance(published, Map)
        k, v = f"k{depth}", f"v{depth}"
        return f"transform_values({expr}, ({k}, {v}) -> {_nested_sql(v, source.value, published.value, depth + 1)})"
    raise TypeError(f"not a finished type: {source!r}")
