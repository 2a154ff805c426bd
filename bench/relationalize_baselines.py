"""Other ways to produce the relationalize step's tables, for comparison.

* DuckDB: ``read_json`` with the plan's column types, ``unnest`` +
  ``generate_subscripts`` for child tables; SQL generated from the same
  :class:`RelationalizePlan`, so the tables (names, columns, rows) are ours.
* pyarrow: ``pyarrow.json`` with the plan's schema, ``list_flatten`` +
  ``list_parent_indices`` for child tables -- the shortest pyarrow program for
  the same tables (no fallback reader, no Spark-compatible coercion).
* dlt: its normalizer (``extract`` + ``normalize`` to Parquet load packages) on
  the same rows; dlt names and nests its tables its own way (``steps``,
  ``steps__interactions``), so only the work is comparable, not the tables.

Every function writes one Parquet file per table under ``out`` and returns
``{table: rows}``.
"""

from __future__ import annotations

import json
from pathlib import Path

from bridge_downstream.relationalize.plan import (
    KIND_ARRAY,
    ROLE_CARRY,
    ROLE_ID,
    ROLE_INDEX,
    ROLE_LINK,
    ROLE_RESCUED,
    ROLE_VALUE,
    RelationalizePlan,
)
from bridge_downstream.relationalize.types import Array, Map, Scalar, Struct, Type

# -- DuckDB --------------------------------------------------------------------

# Timestamps are read as text and converted on output, as our executors do; the
# benchmark data holds no value that does not fit its column, so the
# baselines leave the rescued column null rather than build it.
_DUCK = {"string": "VARCHAR", "bigint": "BIGINT", "double": "DOUBLE", "boolean": "BOOLEAN", "timestamp": "VARCHAR"}
_DUCK_OUTPUT = {**_DUCK, "timestamp": "TIMESTAMPTZ"}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def duck_type(t: Type) -> str:
    if isinstance(t, Scalar):
        return _DUCK[t.kind]
    if isinstance(t, Struct):
        return "STRUCT(" + ", ".join(f"{_q(k)} {duck_type(v)}" for k, v in t.fields) + ")"
    if isinstance(t, Array):
        return duck_type(t.element) + "[]"
    if isinstance(t, Map):
        raise NotImplementedError("maps: not in the benchmark data")
    raise TypeError(t)


def _path(base: str | None, path: list[str]) -> str:
    """base None: the root, whose first key is a column of read_json."""
    if base is None:
        expr, rest = _q(path[0]), path[1:]
    else:
        expr, rest = base, path
    for key in rest:
        expr = f"struct_extract({expr}, {_lit(key)})"
    return expr


def relationalize_duckdb(
    plan: RelationalizePlan, paths: list[str], out: Path, threads: int | None = None
) -> dict[str, int]:
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {threads}")
    columns = "{" + ", ".join(f"{_lit(k)}: {_lit(duck_type(v))}" for k, v in plan.row_type.fields) + "}"
    files = "[" + ", ".join(_lit(str(p)) for p in paths) + "]"
    key = "concat_ws('|', " + ", ".join(f"CAST({_q(c)} AS VARCHAR)" for c in plan.identity_columns) + ")"
    carried = ", ".join(f"{_q(c)} AS __c{i}" for i, c in enumerate(plan.carry_columns))
    carry_cols = ", ".join(f"__c{i}" for i in range(len(plan.carry_columns)))
    carry_index = {c: f"__c{i}" for i, c in enumerate(plan.carry_columns)}
    con.execute(
        f"CREATE TEMP TABLE t0 AS SELECT {key} AS __k, {carried}, * "
        f"FROM read_json({files}, format='newline_delimited', columns={columns}, maximum_object_size=1073741824)"
    )
    temp = {plan.root.name: "t0"}
    counts = {}
    for number, table in enumerate(plan.tables):
        base = None if table.parent is None else "__e"
        if table.parent is not None:
            parent = plan.table(table.parent)
            container = _path(None if parent.parent is None else "__e", table.source_path)
            if table.kind != KIND_ARRAY:
                raise NotImplementedError("maps: not in the benchmark data")
            name = f"t{number}"
            con.execute(
                f"CREATE TEMP TABLE {name} AS SELECT *, __id || '[' || CAST(__pos AS VARCHAR) || ']' AS __k FROM ("
                f"SELECT {temp[parent.name]}.__k || {_lit('/' + table.parent_column)} AS __id, {carry_cols}, "
                f"unnest({container}) AS __e, generate_subscripts({container}, 1) - 1 AS __pos FROM {temp[parent.name]})"
            )
            temp[table.name] = name
        selects = []
        for column in table.columns:
            if column.role == ROLE_VALUE:
                expr = "__e" if not column.path else _path(base, column.path)
            elif column.role == ROLE_LINK:
                expr = f"CASE WHEN {_path(base, column.path)} IS NOT NULL THEN __k || {_lit('/' + column.name)} END"
            elif column.role == ROLE_ID:
                expr = "__id"
            elif column.role == ROLE_INDEX:
                expr = "__pos"
            elif column.role == ROLE_CARRY:
                expr = carry_index[column.path[0]]
            elif column.role == ROLE_RESCUED:
                expr = "NULL"
            else:  # ROLE_KEY: maps only
                raise NotImplementedError(column.role)
            selects.append(f"TRY_CAST({expr} AS {_DUCK_OUTPUT[column.type]}) AS {_q(column.name)}")
        target = out / f"{table.name}.parquet"
        con.execute(
            f"COPY (SELECT {', '.join(selects)} FROM {temp[table.name]}) TO {_lit(str(target))} (FORMAT PARQUET, COMPRESSION SNAPPY)"
        )
        counts[table.name] = con.execute(f"SELECT count(*) FROM {temp[table.name]}").fetchone()[0]
    con.close()
    return counts


# -- pyarrow -------------------------------------------------------------------


def relationalize_pyarrow(plan: RelationalizePlan, paths: list[str], out: Path) -> dict[str, int]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    from bridge_downstream.relationalize.arrow_executor import arrow_type, table_schema

    out.mkdir(parents=True, exist_ok=True)
    row_type = arrow_type(plan.row_type, positional=False)
    options = pj.ParseOptions(explicit_schema=pa.schema(list(row_type)), unexpected_field_behavior="ignore")
    parts = [pj.read_json(p, read_options=pj.ReadOptions(block_size=8 << 20), parse_options=options) for p in paths]
    root_table = pa.concat_tables(parts).combine_chunks()
    root = pa.StructArray.from_arrays([c.combine_chunks() for c in root_table.columns], fields=list(row_type))

    def at(array, t, path):
        for key in path:
            i = t.index_of(key)
            array, t = pc.struct_field(array, [i]), t.fields[i][1]
        return array

    key = pc.binary_join_element_wise(
        *[pc.cast(at(root, plan.row_type, [c]), pa.string()) for c in plan.identity_columns], "|", null_handling="skip"
    )
    frames = {plan.root.name: {"k": key, "e": root, "c": {c: at(root, plan.row_type, [c]) for c in plan.carry_columns}}}
    counts = {}
    for table in plan.tables:
        if table.parent is not None:
            parent = plan.table(table.parent)
            pf = frames[parent.name]
            container = at(pf["e"], parent.element_type, table.source_path)
            parents = pc.list_parent_indices(container)
            values = pc.list_flatten(container)
            offsets = container.offsets.to_numpy()
            pos = pa.array(np.arange(len(values), dtype=np.int64) - offsets[parents.to_numpy()])
            ids = pc.binary_join_element_wise(pc.take(pf["k"], parents), "/" + table.parent_column, "")
            k = pc.binary_join_element_wise(ids, "[", pc.cast(pos, pa.string()), "]", "")
            frames[table.name] = {
                "k": k,
                "e": values,
                "id": ids,
                "pos": pos,
                "c": {c: pc.take(a, parents) for c, a in pf["c"].items()},
            }
        frame = frames[table.name]
        arrays = []
        for column in table.columns:
            if column.role == ROLE_VALUE:
                a = at(frame["e"], table.element_type, column.path)
            elif column.role == ROLE_LINK:
                container = at(frame["e"], table.element_type, column.path)
                a = pc.if_else(
                    pc.is_valid(container),
                    pc.binary_join_element_wise(frame["k"], "/" + column.name, ""),
                    pa.scalar(None, pa.string()),
                )
            elif column.role == ROLE_ID:
                a = frame["id"]
            elif column.role == ROLE_INDEX:
                a = frame["pos"]
            elif column.role == ROLE_CARRY:
                a = frame["c"][column.path[0]]
            elif column.role == ROLE_RESCUED:
                a = pa.nulls(len(frame["k"]), pa.string())
            else:
                raise NotImplementedError(column.role)
            if column.type == "timestamp":
                a = pc.cast(a, pa.timestamp("us", tz="UTC"))
            arrays.append(a)
        result = pa.Table.from_arrays(arrays, schema=table_schema(table))
        pq.write_table(result, out / f"{table.name}.parquet", compression="snappy")
        counts[table.name] = result.num_rows
    return counts


# -- dlt -----------------------------------------------------------------------


def normalize_dlt(dataset_id: str, paths: list[str], work: Path, workers: int = 1) -> dict[str, int]:
    """dlt's extract + normalize (Parquet load packages) on the same NDJSON rows."""
    import os

    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    import dlt

    def rows():
        for path in paths:
            with open(path, "rb") as handle:
                for line in handle:
                    if line.strip():
                        yield json.loads(line)

    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{dataset_id.lower()}",
        pipelines_dir=str(work / "pipelines"),
        destination=dlt.destinations.duckdb(str(work / "dlt.duckdb")),
        dataset_name="bench",
    )
    pipeline.extract(
        dlt.resource(rows(), name=dataset_id.lower(), write_disposition="append"), loader_file_format="parquet"
    )
    info = pipeline.normalize(workers=workers)
    return {k: v for k, v in (info.row_counts or {}).items() if not k.startswith("_dlt")}
