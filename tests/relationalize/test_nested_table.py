"""The nested table: planned from the relationalize plan (names, published
types, Glue type strings) and made by both executors with the same schema
and rows: structs, lists of structs of lists, maps, nulls, converted
timestamps and rescued misfits."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bridge_downstream.publish.spark_engine import publish_settings
from bridge_downstream.relationalize import build_plan, relationalize_arrow, relationalize_spark
from bridge_downstream.relationalize.arrow_executor import (
    coerce_rows,
    execute,
    nested_table_arrow,
    nested_table_schema,
    read_ndjson,
)
from bridge_downstream.relationalize.nested import hive_type, plan_nested_table, published_type
from bridge_downstream.relationalize.types import (
    BIGINT_T,
    DOUBLE_T,
    STRING_T,
    Array,
    Map,
    Scalar,
    Struct,
)

ROW_TYPE = Struct(
    (
        ("recordid", STRING_T),
        ("score", BIGINT_T),
        ("Info", Struct((("Type", STRING_T), ("type", STRING_T), ("at", Scalar("timestamp")), ("2x", DOUBLE_T)))),
        (
            "steps",
            Array(Struct((("name", STRING_T), ("hits", Array(BIGINT_T)), ("when", Scalar("timestamp"))))),
        ),
        ("tags", Map(STRING_T)),
        ("nested", Array(STRING_T)),
    )
)
ROWS = [
    {
        "recordid": "r1",
        "score": 7,
        "Info": {"Type": "A", "type": "a", "at": "2024-03-01T12:00:00+02:00", "2x": 1.5},
        "steps": [
            {"name": "s1", "hits": [1, 2], "when": "2024-03-01T10:00:00Z"},
            {"name": "s2", "hits": [], "when": "not a time"},
            None,
        ],
        "tags": {"k1": "v1", "k2": None},
        "nested": ["x"],
    },
    {"recordid": "r2", "score": None, "Info": None, "steps": None, "tags": {}},
    {"recordid": "r3", "Info": {"at": "tomorrow"}, "steps": [{"hits": None}]},
]


def plan():
    return build_plan("Sample_v1", ROW_TYPE, extra_columns={"year": "bigint"}, identity_columns=["recordid"])


def test_the_plan_keeps_root_columns_and_nests_the_rest():
    nested = plan_nested_table(plan())
    # a top-level array "nested" already made the child table dataset_sample_v1_nested
    assert "dataset_sample_v1_nested" in plan().table_names
    assert nested.name == "dataset_sample_v1_nested_2"
    assert nested.column_names == ["recordid", "score", "Info", "steps", "tags", "nested", "year", "_rescued_data"]
    types = dict(nested.athena_columns())
    # field names as the documents spell them when safe; a case-only clash and a leading digit follow the naming rule
    assert types["Info"] == "struct<type:string,type_2:string,at:timestamp,c_2x:double>"
    assert types["steps"] == "array<struct<name:string,hits:array<bigint>,when:timestamp>>"
    assert types["tags"] == "map<string,string>"
    assert (types["recordid"], types["score"], types["year"]) == ("string", "bigint", "bigint")
    info = nested.columns[2].type
    assert isinstance(info, Struct) and info.field_names() == ["Type", "type_2", "at", "c_2x"]


def test_a_column_read_as_text_keeps_its_root_kind_inside_a_struct():
    row_type = Struct((("recordid", STRING_T), ("m", Struct((("q2", STRING_T), ("q3", STRING_T))))))
    declared = build_plan(
        "D", row_type, extra_columns={}, identity_columns=["recordid"], text_columns={("m", "q2"): "bigint"}
    )
    (m,) = [c for c in plan_nested_table(declared).columns if c.key == "m"]
    assert m.hive_type == "struct<q2:bigint,q3:string>"
    assert hive_type(published_type(Array(Map(DOUBLE_T)))) == "array<map<string,double>>"


def _expected_rows():
    return [
        {
            "recordid": "r1",
            "score": 7,
            "Info": {"Type": "A", "type_2": "a", "at": _utc("2024-03-01T10:00:00"), "c_2x": 1.5},
            "steps": [
                {"name": "s1", "hits": [1, 2], "when": _utc("2024-03-01T10:00:00")},
                {"name": "s2", "hits": [], "when": None},
                None,
            ],
            "tags": [("k1", "v1"), ("k2", None)],
            "nested": ["x"],
            "year": 2024,
        },
        {
            "recordid": "r2",
            "score": None,
            "Info": None,
            "steps": None,
            "tags": [],
            "nested": None,
            "year": 2024,
        },
        {
            "recordid": "r3",
            "score": None,
            "Info": {"Type": None, "type_2": None, "at": None, "c_2x": None},
            "steps": [{"name": None, "hits": None, "when": None}],
            "tags": None,
            "nested": None,
            "year": 2024,
        },
    ]


def _utc(text: str):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _rows_with_year():
    return [{**row, "year": 2024} for row in ROWS]


def test_arrow_makes_the_nested_rows():
    p = plan()
    nested = plan_nested_table(p)
    root = coerce_rows(p, _rows_with_year())
    table = nested_table_arrow(p, nested, root, execute(p, root)[p.root.name])
    assert table.schema == nested_table_schema(nested)
    assert table.schema.field("tags").type == pa.map_(pa.string(), pa.string())
    rows = table.to_pylist()
    rescued = [row.pop("_rescued_data") for row in rows]
    assert rows == _expected_rows()
    # misfit instants inside arrays are null; the root's own misfit is rescued as in the root table
    assert rescued[0] is None and json.loads(rescued[2]) == {"Info.at": "tomorrow"}


@pytest.mark.spark
def test_spark_makes_the_same_nested_rows(spark, tmp_path):
    from bridge_downstream.relationalize.spark_executor import nested_table_spark

    p = plan()
    nested = plan_nested_table(p)
    source = tmp_path / "rows.ndjson"
    source.write_text("".join(json.dumps(row) + "\n" for row in _rows_with_year()))
    frames = relationalize_spark(spark, p, str(source), persist=True)
    try:
        out = tmp_path / "nested.parquet"
        with publish_settings(spark):  # timestamps as Parquet's TIMESTAMP(MICROS, UTC), as Arrow writes them
            nested_table_spark(p, nested, frames.parsed).coalesce(1).write.parquet(str(out))
    finally:
        frames.unpersist()
    on_spark = pq.read_table(out)
    arrow_root = relationalize_arrow(p, str(source))[p.root.name]
    on_arrow = nested_table_arrow(p, nested, read_ndjson(p, [source]), arrow_root)
    assert on_spark.schema.names == on_arrow.schema.names
    assert sorted(on_spark.to_pylist(), key=_record) == sorted(on_arrow.to_pylist(), key=_record)


def _record(row: dict) -> str:
    return row["recordid"]
