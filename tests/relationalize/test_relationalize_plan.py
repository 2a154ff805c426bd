"""The pure part of relationalize: naming, JSON Schema -> types, inference, the plan."""

from __future__ import annotations

import json
import random

import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from bridge_downstream.relationalize import build_plan, plan_from_rows, plan_from_schema
from bridge_downstream.relationalize.inference import infer_type
from bridge_downstream.relationalize.naming import (
    NameAllocator,
    child_table_name,
    root_table_name,
    sanitize,
)
from bridge_downstream.relationalize.plan import RESCUED_COLUMN, RelationalizePlan
from bridge_downstream.relationalize.schema_types import root_row_type, schema_to_type
from bridge_downstream.relationalize.types import (
    BIGINT_T,
    BOOLEAN_T,
    DECIMAL_T,
    DOUBLE_T,
    STRING_T,
    Array,
    Map,
    Struct,
    merge,
)
from project_paths import shared_path

# --- the ingest contract, as the pipeline passes it (parameters, not hard-coded in the module)

MTB_EXTRA = {
    "recordid": "string",
    "assessmentid": "string",
    "year": "bigint",
    "month": "bigint",
    "day": "bigint",
    "uploadedon": "string",
    "exportedon": "string",
    "sourcefile": "string",
    "sourceindex": "bigint",
}
MTB_IDENTITY = ["recordid", "sourcefile", "sourceindex"]
MTB_KEYS = ["recordid", "assessmentid", "year", "month", "day"]
MTB_PARTITIONS = ["assessmentid", "year", "month", "day"]
MTB_ARGS = {
    "extra_columns": MTB_EXTRA,
    "identity_columns": MTB_IDENTITY,
    "carry_columns": MTB_KEYS,
    "partition_columns": MTB_PARTITIONS,
}

RECOVER_EXTRA = {
    "cohort": "string",
    "exportstartdate": "string",
    "exportenddate": "string",
    "sourcefile": "string",
    "sourceindex": "bigint",
}
RECOVER_ARGS = {
    "extra_columns": RECOVER_EXTRA,
    "identity_columns": ["cohort", "sourcefile", "sourceindex"],
    "carry_columns": ["ParticipantIdentifier", "cohort"],
    "partition_columns": ["cohort"],
}


def synthetic_rows() -> list[dict]:
    """Nested MTB-like root rows exercising every edge case (enrichment included)."""

    def enrich(recordid, sourceindex, doc, day=15):
        return dict(
            doc,
            recordid=recordid,
            assessmentid="spelling",
            year=2022,
            month=2,
            day=day,
            uploadedon="2022-02-15T18:48:15.890Z",
            sourcefile="taskData.json",
            sourceindex=sourceindex,
        )

    r1 = {
        "stepHistory": [
            {
                "identifier": "a",
                "id": "own-id",
                "index": 7,
                "recordid": "shadow",
                "score": 1,
                "interactions": [
                    {"t": 1, "tags": ["p", "q", None]},
                    {"t": 2, "tags": []},
                    {"t": 3},
                ],
            },
            {"identifier": "b", "interactions": None, "score": 2.5},
            {"identifier": "c", "interactions": [{"t": 4, "tags": ["r"]}]},
            None,
        ],
        "matrix": [[1, 2], [3], [], None],
        "byDate": {"2022-01-01": {"v": 1, "items": [1, 2]}, "2022-01-02": {"v": 2.5}},
        "empty": {},
        "drift": 1,
        "num": 1,
        "a.b": "dotted",
        "a": {"b": "nested", "c": {"d": True}},
        "Type": "upper",
        "type": "lower",
        "_private": "p",
        "2fa": "digit",
        "text": {
            "x": 1e-5,
            "y": 12345678.9,
            "z": [0.1, 100.0, -0.0, 1e21, 123456789012345678901234567890],
            "w": 'é\n"q"',
        },
        "tags": ["x", "y"],
        "meta": {"list": [{"q": 1}, {"q": 2}], "name": "m"},
        "x": [{"y": [1]}],
        "x_y": [5, 6],
    }
    r2 = {
        "stepHistory": [],
        "matrix": None,
        "byDate": {},
        "empty": {},
        "drift": "text",
        "num": 2.5,
        "text": "plain",
        "meta": {"list": [], "name": None},
        "x": [],
    }
    r3 = {
        "drift": {"k": [1, 2.0], "s": "v"},
        "num": None,
        "text": ["arr", 7],
        "tags": None,
        "meta": None,
        "x_y": [],
    }
    r4 = {
        "stepHistory": [{"identifier": "d", "interactions": [{"t": 9, "tags": ["s", "t"]}]}],
        "drift": True,
        "tags": ["z"],
    }
    return [
        enrich("REC1", 0, r1),
        enrich("REC2", 0, r2, day=16),
        enrich("REC3", 0, r3),
        enrich("REC1", 1, r4),
    ]


def synthetic_plan(rows=None) -> RelationalizePlan:
    return plan_from_rows("Synthetic_v1", rows or synthetic_rows(), **MTB_ARGS)


def registry_resolver(*schemas):
    registry = (
        Registry()
        .with_resources((s["$id"], Resource.from_contents(s, default_specification=DRAFT7)) for s in schemas)
        .crawl()
    )

    def resolve(ref, base_uri=""):
        resolved = registry.resolver(base_uri=base_uri).lookup(ref)
        return resolved.contents, resolved.resolver._base_uri

    return resolve


# --- naming ---------------------------------------------------------------


def test_sanitize_rules():
    assert sanitize("a.b") == "a_b"
    assert sanitize("heart rate (bpm)") == "heart_rate__bpm_"
    assert sanitize("_id") == "id"
    assert sanitize("__") == "__"
    assert sanitize("") == "col"
    assert sanitize("2fa") == "c_2fa"
    assert sanitize("é") == "_"
    long = sanitize("x" * 400)
    assert len(long) == 255 and long != sanitize("x" * 401)


def test_allocator_is_case_insensitive_and_deterministic():
    names = NameAllocator(["id", "index"])
    assert [names.allocate(n) for n in ["ID", "value", "Value", "value_2", "index"]] == [
        "ID_2",
        "value",
        "Value_2",
        "value_2_2",
        "index_2",
    ]


def test_table_names():
    assert root_table_name("MotionRecord_v1") == "dataset_motionrecord_v1"
    assert child_table_name("dataset_x_v1", "stepHistory") == "dataset_x_v1_stephistory"


# --- JSON Schema -> types -------------------------------------------------


def test_schema_type_mapping():
    schema = {
        "$id": "urn:test",
        "type": "object",
        "definitions": {"when": {"type": "string", "format": "date-time"}},
        "properties": {
            "i": {"type": "integer"},
            "n": {"type": "number"},
            "b": {"type": "boolean"},
            "s": {"$ref": "#/definitions/when"},
            "nullable": {"type": ["integer", "null"]},
            "intOrNum": {"type": ["integer", "number"]},
            "multi": {"type": ["string", "number"]},
            "untyped": {"description": "anything"},
            "obj": {"type": "object"},
            "map": {"type": "object", "additionalProperties": {"type": "number"}},
            "pmap": {"patternProperties": {"^x": {"type": "integer"}, "^y": {"type": "number"}}},
            "arr": {
                "type": "array",
                "items": {"type": "object", "properties": {"z": {"type": "integer"}}},
            },
            "tuple": {"type": "array", "items": [{"type": "string"}, {"enum": ["a", "b"]}]},
            "anyarr": {"type": "array"},
            "enumInts": {"enum": [1, 2]},
            "oneOf": {
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {"r": {"type": "integer"}, "p": {"type": "string"}},
                    },
                    {
                        "type": "object",
                        "properties": {"r": {"type": "string"}, "q": {"type": "number"}},
                    },
                ]
            },
            "conflict": {
                "anyOf": [
                    {"type": "integer"},
                    {"type": "object", "properties": {"a": {"type": "string"}}},
                ]
            },
            "allOf": {
                "allOf": [
                    {"type": "object", "properties": {"a": {"type": "integer"}}},
                    {"required": ["a"]},
                ]
            },
        },
    }
    t = schema_to_type(schema)
    assert t.field_names() == list(schema["properties"])  # schema property order
    f = dict(t.fields)
    assert f["i"] == BIGINT_T and f["n"] == DOUBLE_T and f["b"] == BOOLEAN_T and f["s"] == STRING_T
    assert f["nullable"] == BIGINT_T and f["intOrNum"] == DOUBLE_T and f["multi"] == STRING_T
    assert f["untyped"] == STRING_T and f["obj"] == STRING_T
    assert f["map"] == Map(DOUBLE_T) and f["pmap"] == Map(DOUBLE_T)
    assert f["arr"] == Array(Struct((("z", BIGINT_T),)))
    assert f["tuple"] == Array(STRING_T) and f["anyarr"] == Array(STRING_T)
    assert f["enumInts"] == BIGINT_T
    assert f["oneOf"] == Struct((("r", STRING_T), ("p", STRING_T), ("q", DOUBLE_T)))
    assert f["conflict"] == STRING_T
    assert f["allOf"] == Struct((("a", BIGINT_T),))


def test_schema_refs_through_resolver_and_recursion():
    common = {"$id": "https://example.org/common.json", "definitions": {"v": {"type": "number"}}}
    tree = {
        "$id": "https://example.org/tree.json",
        "type": "object",
        "properties": {
            "value": {"$ref": "common.json#/definitions/v"},
            "children": {"type": "array", "items": {"$ref": "#"}},
        },
    }
    t = schema_to_type(tree, registry_resolver(common, tree))
    assert t.fields[0] == ("value", DOUBLE_T)
    # the recursive $ref stops at the first repetition: JSON text
    assert t.fields[1][1] == Array(Struct((("value", DOUBLE_T), ("children", Array(STRING_T)))))
    with pytest.raises(ValueError):
        schema_to_type(tree, strict=True)  # a remote $ref needs the resolver
    # not strict: an unresolvable $ref gives a JSON-text column
    assert schema_to_type(tree).fields[0] == ("value", STRING_T)
    dangling = {"type": "object", "properties": {"op": {"$ref": "Step.json#Missing"}}}
    assert schema_to_type(dangling, registry_resolver(common)) == Struct((("op", STRING_T),))


def test_real_motion_schema_row_type():
    schema = json.loads(shared_path("mobile-client-json", "schemas", "v2", "MotionRecord.json").read_text())
    t = root_row_type(schema)  # top-level array: each element is a row
    assert t.field_names() == [
        "uptime",
        "timestamp",
        "stepPath",
        "timestampDate",
        "sensorType",
        "eventAccuracy",
        "referenceCoordinate",
        "heading",
        "x",
        "y",
        "z",
        "w",
    ]
    plan = plan_from_schema("MotionRecord_v1", schema, registry_resolver(schema), **MTB_ARGS)
    assert plan.table_names == ["dataset_motionrecord_v1"]
    assert plan.root.column_names == t.field_names() + list(MTB_EXTRA) + [RESCUED_COLUMN]
    assert dict(plan.root.athena_columns())["sensorType"] == "string"
    assert dict(plan.root.athena_columns())["eventAccuracy"] == "bigint"


def test_real_taskdata_schema_plan():
    schema = json.loads(shared_path("mtb-taskdata", "archiveSchemas", "taskData_combinedSchema.json").read_text())
    plan = plan_from_schema("sharedSchema_v1", schema, registry_resolver(schema), **MTB_ARGS)
    assert plan.table_names == [
        "dataset_sharedschema_v1",
        "dataset_sharedschema_v1_taskstatus",
        "dataset_sharedschema_v1_userinteractions",
        "dataset_sharedschema_v1_userinteractions_controlevent",
        "dataset_sharedschema_v1_consideredsteps",
        "dataset_sharedschema_v1_steps",
        "dataset_sharedschema_v1_stephistory",
    ]
    root = plan.root
    assert root.column("scores").type == "string"  # {"type": "object"} without properties: JSON text
    assert root.column("stepHistory").role == "link"
    history = plan.table("dataset_sharedschema_v1_stephistory")
    cols = dict(history.athena_columns())
    # oneOf variants merged: response is integer in some, string in others -> string
    assert cols["response"] == "string" and cols["theta"] == "double" and cols["score"] == "bigint"
    assert history.column_names[:2] == ["id", "index"] and history.column_names[-6:] == [*MTB_KEYS, RESCUED_COLUMN]
    # the same plan without the registry (local refs only)
    assert plan_from_schema("sharedSchema_v1", schema, None, **MTB_ARGS).to_json() == plan.to_json()


# --- inference ------------------------------------------------------------


def test_inference_rules():
    rows = [
        {
            "i": 1,
            "d": 1,
            "s": "x",
            "drift": 1,
            "e": {},
            "n": None,
            "big": 2**70,
            "arr": [1, 2.5],
            "o": {"b": 1},
        },
        {"i": 2, "d": 2.5, "s": None, "drift": {"a": 1}, "e": {}, "arr": [], "o": {"a": "x"}},
        {
            "mapish": {"2021-01-01": 1, "2021-01-02": 2},
            "uuidmap": {"0f8fad5b-d9cb-469f-a165-70867728950e": {"x": 1}},
        },
    ]
    t = infer_type(rows)
    f = dict(t.fields)
    assert f["i"] == BIGINT_T and f["d"] == DOUBLE_T and f["s"] == STRING_T
    assert f["drift"] == STRING_T and f["e"] == STRING_T and f["n"] == STRING_T and f["big"] == DECIMAL_T
    assert f["arr"] == Array(DOUBLE_T)
    assert f["o"] == Struct((("a", STRING_T), ("b", BIGINT_T)))  # union, sorted
    assert f["mapish"] == Map(BIGINT_T)
    assert f["uuidmap"] == Map(Struct((("x", BIGINT_T),)))
    assert t.field_names() == sorted(t.field_names())


def test_inference_is_order_independent():
    rows = synthetic_rows()
    reference = synthetic_plan(rows).to_json()
    for seed in range(5):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        assert synthetic_plan(shuffled).to_json() == reference


def test_merge_rules():
    assert merge(BIGINT_T, DOUBLE_T) == DOUBLE_T
    assert merge(BOOLEAN_T, BIGINT_T) == STRING_T
    assert merge(Array(BIGINT_T), STRING_T) == STRING_T
    assert merge(Map(BIGINT_T), Struct((("a", DOUBLE_T),))) == Map(DOUBLE_T)


# --- the plan -------------------------------------------------------------


def test_synthetic_plan_tables_and_clash_rules():
    plan = synthetic_plan()
    root = plan.root
    assert root.name == "dataset_synthetic_v1"
    names = root.column_names
    # flattening a.b.c -> a_b_c; key "a.b" sanitized and disambiguated (key order is sorted)
    assert "a_b" in names and "a_b_2" in names and "a_c_d" in names
    assert root.column("a_b").path == ["a", "b"] and root.column("a_b_2").path == ["a.b"]
    assert "Type" in names and "type_2" in names  # case-insensitive clash
    assert "private" in names and "c_2fa" in names  # no leading underscore / digit
    assert root.column("empty").type == "string" and root.column("drift").type == "string"
    assert root.column("num").type == "double" and root.column("text").type == "string"
    assert names[-len(MTB_EXTRA) - 1 :] == [*MTB_EXTRA, RESCUED_COLUMN]

    by_name = {t.name: t for t in plan.tables}
    history = by_name["dataset_synthetic_v1_stephistory"]
    assert history.column_names == [
        "id",
        "index",
        "id_2",
        "identifier",
        "index_2",
        "interactions",
        "recordid_2",
        "score",
        "recordid",
        "assessmentid",
        "year",
        "month",
        "day",
        RESCUED_COLUMN,
    ]
    assert history.column("id_2").path == ["id"] and history.column("score").type == "double"
    inter = by_name["dataset_synthetic_v1_stephistory_interactions"]
    assert inter.parent == history.name and inter.depth == 2
    tags = by_name["dataset_synthetic_v1_stephistory_interactions_tags"]
    assert tags.depth == 3 and "tags_val" in tags.column_names
    matrix = by_name["dataset_synthetic_v1_matrix"]
    assert matrix.column("matrix_val").role == "link"
    assert by_name["dataset_synthetic_v1_matrix_matrix_val"].column_names[:3] == [
        "id",
        "index",
        "matrix_val_val",
    ]
    bydate = by_name["dataset_synthetic_v1_bydate"]
    assert bydate.kind == "map" and bydate.column_names[:5] == [
        "id",
        "key",
        "value_items",
        "value_v",
        "recordid",
    ]
    assert bydate.column("value_items").child == "dataset_synthetic_v1_bydate_value_items"
    assert by_name["dataset_synthetic_v1_meta_list"].source_path == ["meta", "list"]
    # table-name clash: x[].y and x_y both want dataset_..._x_y
    assert "dataset_synthetic_v1_x_y" in by_name and "dataset_synthetic_v1_x_y_2" in by_name
    assert {
        by_name["dataset_synthetic_v1_x_y"].parent,
        by_name["dataset_synthetic_v1_x_y_2"].parent,
    } == {"dataset_synthetic_v1", "dataset_synthetic_v1_x"}
    # every child table carries the key and partition columns; names unique case-insensitively
    for t in plan.tables:
        lower = [n.lower() for n in t.column_names]
        assert len(lower) == len(set(lower)), t.name
        # no document column starts with "_": the rescued column's name is the pipeline's
        assert all(
            n.replace("_", "").isalnum() and not n.startswith("_") for n in t.column_names if n != RESCUED_COLUMN
        )
        for key in MTB_KEYS:
            assert key in t.column_names
        assert {c.type for c in t.columns} <= {"string", "bigint", "double", "boolean"}
    assert plan.partition_columns == MTB_PARTITIONS


def test_plan_json_round_trip():
    plan = synthetic_plan()
    text = plan.dumps()
    again = RelationalizePlan.loads(text)
    assert again.to_json() == plan.to_json()
    assert json.loads(text)["tables"][0]["columns"][0].keys() == {
        "name",
        "type",
        "role",
        "path",
        "child",
        "from_text",
    }
    assert plan.athena_columns()[plan.root.name][-2:] == [("sourceindex", "bigint"), (RESCUED_COLUMN, "string")]


def test_build_plan_validates_key_columns():
    t = Struct((("a", Array(BIGINT_T)), ("b", STRING_T)))
    with pytest.raises(ValueError):
        build_plan("X", t, extra_columns={}, identity_columns=["a"])
    with pytest.raises(ValueError):
        build_plan("X", t, extra_columns={}, identity_columns=[])
    with pytest.raises(ValueError):
        build_plan("X", t, extra_columns={"d": "double"}, identity_columns=["d"])
    plan = build_plan(
        "X", t, extra_columns={"b": "bigint"}, identity_columns=["b"]
    )  # enrichment overrides the document field
    assert plan.root.athena_columns() == [("a", "string"), ("b", "bigint"), (RESCUED_COLUMN, "string")]
