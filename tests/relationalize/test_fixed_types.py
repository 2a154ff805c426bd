"""The types a plan keeps, and where the rows hold values they do not: columns
read as text, their misfits rescued in their own table's rescued data -- in the
root table and inside arrays and maps alike."""

from __future__ import annotations

import json

import pytest

from bridge_downstream.relationalize import ColumnTypes, plan_from_rows, plan_from_schema
from bridge_downstream.relationalize.arrow_executor import relationalize_arrow
from bridge_downstream.relationalize.fixed_types import fixed_row_type
from bridge_downstream.relationalize.plan import RESCUED_COLUMN
from bridge_downstream.relationalize.types import BIGINT_T, DOUBLE_T, STRING_T, Array, Struct

KEYS = {"extra_columns": {"recordid": "string"}, "identity_columns": ["recordid"]}
SCHEMA = {
    "type": "object",
    "properties": {
        "score": {"type": "integer"},
        "steps": {"type": "array", "items": {"type": "object", "properties": {"duration": {"type": "integer"}}}},
    },
}
ROWS = [
    {"recordid": "r1", "score": 4, "steps": [{"duration": 10}]},
    {"recordid": "r2", "score": "n/a", "steps": [{"duration": "n/a"}, {"duration": 12}]},
]


def test_previous_types_stay_and_previous_columns_remain():
    current = Struct((("a", STRING_T), ("b", BIGINT_T)))
    previous = Struct((("a", BIGINT_T), ("gone", DOUBLE_T)))
    data = Struct((("a", STRING_T), ("b", BIGINT_T)))
    fixed = fixed_row_type(current, data, previous=previous)
    assert fixed.row_type == Struct((("a", STRING_T), ("gone", DOUBLE_T), ("b", BIGINT_T)))
    assert fixed.text_columns == {("a",): "bigint"}  # kept bigint, read as text: its rows hold text


def test_a_declared_type_is_read_as_text_where_the_rows_hold_text():
    fixed = fixed_row_type(Struct((("when", STRING_T),)), Struct((("when", STRING_T),)), declared={"when": "timestamp"})
    assert fixed.text_columns == {("when",): "timestamp"}


def _schema_plan(tmp_path):
    path = tmp_path / "rows.ndjson"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return plan_from_schema("Task_v1", SCHEMA, ndjson=[path.read_bytes()], types=ColumnTypes(), **KEYS), path


def _check_schema_tables(roots: list[dict], steps: list[dict]) -> None:
    by_record = {row["recordid"]: row for row in roots}
    assert (by_record["r1"]["score"], by_record["r2"]["score"]) == (4, None)
    assert json.loads(by_record["r2"][RESCUED_COLUMN]) == {"score": "n/a"}
    assert by_record["r1"][RESCUED_COLUMN] is None
    by_step = {(row["id"], row["index"]): row for row in steps}
    assert [by_step[key]["duration"] for key in sorted(by_step)] == [10, None, 12]
    rescued = [by_step[key][RESCUED_COLUMN] for key in sorted(by_step)]
    assert rescued[0] is None and rescued[2] is None
    assert json.loads(rescued[1]) == {"duration": "n/a"}


def test_a_schema_typed_value_is_rescued_in_the_root_table_and_inside_arrays(tmp_path):
    plan, path = _schema_plan(tmp_path)
    assert plan.root.column("score").type == "bigint"
    duration = plan.table("dataset_task_v1_steps").column("duration")
    assert (duration.type, duration.from_text) == ("bigint", True)  # kept: the schema's integer
    tables = relationalize_arrow(plan, [path])
    _check_schema_tables(tables["dataset_task_v1"].to_pylist(), tables["dataset_task_v1_steps"].to_pylist())


@pytest.mark.spark
def test_spark_rescues_as_arrow_does(spark, tmp_path):
    from bridge_downstream.relationalize import relationalize_spark

    plan, path = _schema_plan(tmp_path)
    frames = relationalize_spark(spark, plan, str(path))
    roots = [row.asDict() for row in frames["dataset_task_v1"].collect()]
    _check_schema_tables(roots, [row.asDict() for row in frames["dataset_task_v1_steps"].collect()])


@pytest.mark.parametrize("previous_kind", ["bigint", "double"])
def test_an_inferred_dataset_keeps_the_type_of_its_first_publish(previous_kind):
    previous = Struct((("recordid", STRING_T), ("q", BIGINT_T if previous_kind == "bigint" else DOUBLE_T)))
    plan = plan_from_rows("Legacy_v1", [{"recordid": "r", "q": 1.5}], types=ColumnTypes(previous=previous), **KEYS)
    column = plan.root.column("q")
    # 1.5 fits a double column as it is; a bigint column reads it as text, and rescues it
    assert (column.type, column.from_text) == (previous_kind, previous_kind == "bigint")
    assert plan.row_type.get("q") == (STRING_T if previous_kind == "bigint" else DOUBLE_T)


def test_a_child_column_keeps_its_previous_type_and_a_scalar_array_rescues_by_its_name(tmp_path):
    previous = Struct(
        (("recordid", STRING_T), ("sizes", Array(BIGINT_T)), ("steps", Array(Struct((("n", BIGINT_T),)))))
    )
    rows = [{"recordid": "r1", "sizes": [1, "big"], "steps": [{"n": 2.5}, {"n": 3}]}]
    plan = plan_from_rows("Legacy_v1", rows, types=ColumnTypes(previous=previous), **KEYS)
    sizes, steps = plan.table("dataset_legacy_v1_sizes"), plan.table("dataset_legacy_v1_steps")
    assert (sizes.column("sizes_val").type, steps.column("n").type) == ("bigint", "bigint")
    path = tmp_path / "rows.ndjson"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tables = relationalize_arrow(plan, [path])
    size_rows = tables["dataset_legacy_v1_sizes"].to_pylist()
    assert [(r["sizes_val"], r[RESCUED_COLUMN]) for r in size_rows] == [(1, None), (None, '{"sizes_val":"big"}')]
    step_rows = tables["dataset_legacy_v1_steps"].to_pylist()
    assert [(r["n"], r[RESCUED_COLUMN]) for r in step_rows] == [(None, '{"n":"2.5"}'), (3, None)]


def test_a_declared_key_spelled_in_another_case_types_the_rows_key_and_adds_no_twin():
    row = Struct((("DataPointKey", STRING_T), ("Value", STRING_T)))
    fixed = fixed_row_type(row, row, declared={"DatapointKey": "string", "value": "bigint", "Absent": "double"})
    assert fixed.row_type == Struct((("DataPointKey", STRING_T), ("Value", STRING_T), ("Absent", DOUBLE_T)))
    assert fixed.text_columns == {("Value",): "bigint"}
