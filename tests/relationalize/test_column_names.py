"""Column names every reader can take: no two columns of a table share a
lower-case form; a case-only clash (``Type`` beside ``type``) is renamed by
naming rule 3, the same whatever the order of the rows, and the plan lists
each renamed column with the JSON path it holds. And the JSON Schema's
descriptions, per column, for the catalogs' comments."""

from __future__ import annotations

import itertools
import json

import pytest

from bridge_downstream.relationalize import column_descriptions, plan_from_rows, plan_from_schema
from bridge_downstream.relationalize.plan import RESCUED_COLUMN, RelationalizePlan

COLUMNS = {
    "extra_columns": {"recordid": "string"},
    "identity_columns": ["recordid"],
    "carry_columns": ["recordid"],
}
ROWS = [
    {"Type": "Walk", "type": "walking", "detail": {"Kind": 1}},
    {"type": "running", "steps": [{"Name": "a", "name": "b", "recordid": "inner"}]},
    {"Type": "Bike", "detail": {"kind": 2, "Kind": 3}},
]


def lower_case_unique(plan: RelationalizePlan) -> None:
    for table in plan.tables:
        lowered = [name.lower() for name in table.column_names]
        assert len(lowered) == len(set(lowered)), table.name


def test_a_case_only_clash_is_renamed_and_listed():
    plan = plan_from_rows("Activity_v1", ROWS, **COLUMNS)
    root = plan.table("dataset_activity_v1")
    assert root.column_names[:5] == ["Type", "detail_Kind", "detail_kind_2", "steps", "type_2"]
    assert root.column("Type").path == ["Type"] and root.column("type_2").path == ["type"]
    steps = plan.table("dataset_activity_v1_steps")
    assert steps.column_names == ["id", "index", "Name", "name_2", "recordid_2", "recordid", RESCUED_COLUMN]
    assert plan.renamed_columns == {
        "dataset_activity_v1": {"detail_kind_2": "detail.kind", "type_2": "type"},
        "dataset_activity_v1_steps": {"name_2": "name", "recordid_2": "recordid"},
    }
    lower_case_unique(plan)


def test_the_names_do_not_depend_on_the_order_of_the_rows():
    expected = plan_from_rows("Activity_v1", ROWS, **COLUMNS).to_json()
    for order in itertools.permutations(ROWS):
        assert plan_from_rows("Activity_v1", list(order), **COLUMNS).to_json() == expected
        # each row's keys in the other order too
        flipped = [dict(reversed(list(row.items()))) for row in order]
        assert plan_from_rows("Activity_v1", flipped, **COLUMNS).to_json() == expected


def test_a_schema_declared_key_keeps_its_name_and_an_undeclared_twin_is_renamed():
    schema = {"type": "object", "properties": {"type": {"type": "string"}}}
    lines = [json.dumps(row) for row in ROWS]
    plans = [
        plan_from_schema("Activity_v1", schema, ndjson=["\n".join(order)], **COLUMNS)
        for order in itertools.permutations(lines)
    ]
    assert all(plan.to_json() == plans[0].to_json() for plan in plans)
    root = plans[0].root
    assert root.column_names[:2] == ["type", "Type_2"]  # the schema's column first, as declared
    assert plans[0].renamed_columns["dataset_activity_v1"]["Type_2"] == "Type"
    lower_case_unique(plans[0])


def test_a_plan_without_renamed_columns_or_descriptions_reads_back():
    plan = plan_from_rows("Activity_v1", ROWS, **COLUMNS)
    plan.column_descriptions = {"dataset_activity_v1": {"Type": "the activity"}}
    assert RelationalizePlan.from_json(plan.to_json()).to_json() == plan.to_json()
    older = plan.to_json()
    del older["renamed_columns"], older["column_descriptions"]
    read = RelationalizePlan.from_json(older)
    assert read.renamed_columns == {} and read.column_descriptions == {}
    assert read.table_names == plan.table_names


SCHEMA = {
    "$id": "https://example.org/schemas/Task.json",
    "type": "object",
    "definitions": {
        "instant": {"type": "string", "description": "When it happened (ISO 8601)."},
        "step": {
            "type": "object",
            "description": "One step.",
            "properties": {
                "at": {"$ref": "#/definitions/instant"},
                "answer": {"description": "Beside the $ref: the author's word.", "$ref": "#/definitions/instant"},
            },
        },
    },
    "properties": {
        "startDate": {"$ref": "#/definitions/instant"},
        "scores": {
            "type": "object",
            "description": "The scores.",
            "properties": {"finalTheta": {"type": "number", "description": "The final ability estimate."}},
        },
        "steps": {"type": "array", "description": "The steps taken.", "items": {"$ref": "#/definitions/step"}},
        "labels": {"type": "array", "items": {"type": "string", "description": "A label."}},
        "counts": {"type": "object", "additionalProperties": {"type": "integer", "description": "A count."}},
        "variant": {
            "oneOf": [
                {"type": "object", "properties": {"a": {"type": "string"}}},
                {"type": "object", "properties": {"a": {"type": "string", "description": "Variant a."}}},
            ]
        },
        "broken": {"$ref": "#/definitions/nowhere"},
        "plain": {"type": "string"},
    },
}


def test_descriptions_follow_refs_items_maps_and_variants():
    plan = plan_from_schema("Task_v1", SCHEMA, **COLUMNS)
    descriptions = column_descriptions(SCHEMA, None, SCHEMA["$id"], plan)
    assert descriptions == {
        "dataset_task_v1": {
            "startDate": "When it happened (ISO 8601).",
            "scores_finalTheta": "The final ability estimate.",
            "steps": "The steps taken.",
            "variant_a": "Variant a.",
        },
        "dataset_task_v1_steps": {
            "at": "When it happened (ISO 8601).",
            "answer": "Beside the $ref: the author's word.",
        },
        "dataset_task_v1_labels": {"labels_val": "A label."},
        "dataset_task_v1_counts": {"value": "A count."},
    }
    # columns the schema does not describe (the key columns, "plain", a broken $ref, the links without one) get none
    assert set(plan.root.column_names) > set(descriptions["dataset_task_v1"]) | {"plain", "broken", "recordid"}


@pytest.mark.shared_data
def test_descriptions_through_the_registry_resolver(real_registry):
    from bridge_downstream.publish.engine_steps import dataset_schema

    schema_id, schema = dataset_schema(real_registry, "MotionRecord_v1")
    plan = plan_from_schema("MotionRecord_v1", schema, real_registry.resolver(), base_uri=schema_id, **COLUMNS)
    descriptions = column_descriptions(schema, real_registry.resolver(), schema_id, plan)["dataset_motionrecord_v1"]
    # a top-level array schema: each element is a row, described under "items"
    assert descriptions["stepPath"] == "An identifier marking the current step."
    # beside a $ref whose target's description is empty
    assert descriptions["sensorType"] == "The sensor type for this record sample."
    assert "recordid" not in descriptions
