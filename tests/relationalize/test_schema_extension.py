"""A schema's columns extended by the rows: every key of a document gets a column."""

from __future__ import annotations

import json

import pytest

from bridge_downstream.relationalize import plan_from_schema
from bridge_downstream.relationalize.arrow_executor import relationalize_arrow
from bridge_downstream.relationalize.plan import METADATA_PREFIX, build_plan
from bridge_downstream.relationalize.schema_extension import extend_with_rows
from bridge_downstream.relationalize.schema_types import root_row_type
from bridge_downstream.relationalize.types import BIGINT_T, DOUBLE_T, STRING_T, Array, Struct

KEYS = {"extra_columns": {"recordid": "string"}, "identity_columns": ["recordid"]}

SCHEMA = {
    "type": "object",
    "properties": {
        "taskName": {"type": "string"},
        "q2": {"type": "integer"},
        "scores": {"type": "object"},
        "steps": {"type": "array", "items": {"type": "object", "properties": {"stepIdentifier": {"type": "string"}}}},
        "anything": {},
    },
}


def _partial():
    return root_row_type(SCHEMA, finalized=False)


def test_declared_fields_keep_their_order_and_types_and_undeclared_keys_follow():
    rows = [
        {"zeta": 1, "taskName": "t", "q2": "n/a", "alpha": "a", "recordid": "r1"},
        {"alpha": "b", "recordid": "r2"},
    ]
    extended = extend_with_rows(_partial(), rows, ignored_keys=["recordid"])
    assert isinstance(extended.row_type, Struct)
    assert extended.row_type.field_names() == ["taskName", "q2", "scores", "steps", "anything", "alpha", "zeta"]
    assert extended.row_type.get("q2") == BIGINT_T  # the schema types what it declares
    assert extended.row_type.get("zeta") == BIGINT_T
    assert extended.undeclared_keys == {"alpha": 2, "zeta": 1}  # rows holding each; recordid is the pipeline's


def test_an_open_object_and_nested_undeclared_keys_become_typed_columns():
    rows = [
        {
            "scores": {"finalTheta": 0.5, "itemCount": 10},
            "steps": [{"stepIdentifier": "s1", "identifier": "x"}, {"identifier": "y"}],
            "anything": {"k": 1},
        },
        {"scores": {"finalTheta": 1}},
    ]
    extended = extend_with_rows(_partial(), rows)
    row_type = extended.row_type
    assert isinstance(row_type, Struct)
    assert row_type.get("scores") == Struct((("finalTheta", DOUBLE_T), ("itemCount", BIGINT_T)))
    assert row_type.get("steps") == Array(Struct((("stepIdentifier", STRING_T), ("identifier", STRING_T))))
    assert row_type.get("anything") == STRING_T  # unconstrained by the schema: JSON text, as before
    assert extended.undeclared_keys == {
        "scores.finalTheta": 2,
        "scores.itemCount": 1,
        "steps[].identifier": 1,  # one root row holds it, in two elements
    }


def test_rows_that_hold_only_declared_keys_leave_the_schema_as_it_is():
    extended = extend_with_rows(_partial(), [{"taskName": "t", "q2": 1}])
    assert extended.undeclared_keys == {}
    assert extended.row_type == root_row_type(SCHEMA)


def test_the_plan_publishes_every_value_of_the_document(tmp_path):
    rows = [
        {"recordid": "r1", "taskName": "t", "scores": {"finalTheta": 0.5}, "steps": [{"identifier": "x"}], "new": 3}
    ]
    path = tmp_path / "rows.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plan = plan_from_schema("Task_v1", SCHEMA, ndjson=[path.read_bytes()], **KEYS)
    assert plan.undeclared_keys == {"new": 1, "scores.finalTheta": 1, "steps[].identifier": 1}
    tables = relationalize_arrow(plan, [path])
    (root,) = tables["dataset_task_v1"].to_pylist()
    assert (root["scores_finalTheta"], root["new"], root["taskName"]) == (0.5, 3, "t")
    (step,) = tables["dataset_task_v1_steps"].to_pylist()
    assert (step["identifier"], step["stepIdentifier"]) == ("x", None)
    assert type(plan).from_json(json.loads(plan.dumps())).undeclared_keys == plan.undeclared_keys


@pytest.mark.parametrize(
    ("document_key", "column"),
    [("appVersion", f"{METADATA_PREFIX}appversion"), ("other", "appversion")],
)
def test_a_metadata_column_gives_way_to_a_document_key_of_the_same_name(document_key, column):
    row_type = Struct(((document_key, STRING_T),))
    plan = build_plan(
        "Meta_v1",
        row_type,
        extra_columns={"recordid": "string", "appversion": "string"},
        identity_columns=["recordid"],
        metadata_columns=["appversion"],
    )
    names = plan.root.column_names
    assert document_key in names and column in names
    assert not any(name.endswith("_2") for name in names)
    assert plan.root.column(column).path == ["appversion"]  # the metadata's own key, renamed on output
