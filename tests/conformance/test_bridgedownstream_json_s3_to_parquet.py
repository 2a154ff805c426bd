"""Mirrors of Sage-Bionetworks/BridgeDownstream tests/test_json_s3_to_parquet.py
(commit bc1c651a), TestJsonS3ToParquet: its fixture datasets
(tests/test_json_s3_to_parquet/dataset=pytest_{flat,nested}_table/...), read
and relationalized by this project's relationalize (Arrow executor) instead of
a Glue crawler and DynamicFrame.relationalize."""

from __future__ import annotations

import json

import pytest

from bridge_downstream.relationalize import plan_from_ndjson, relationalize_arrow
from bridge_downstream.relationalize.plan import RESCUED_COLUMN as RESCUED

PARTITION = ["assessmentid", "year", "month", "day"]
# (file, partition day, document) of the original's fixture files
FLAT = [("flat_data_1", 1, {"recordid": "one"}), ("flat_data_2", 1, {"recordid": "two"})]
FLAT += [("flat_data_3", 2, {"recordid": "three"})]
NESTED = [
    (
        f"nested_data_{n}",
        day,
        {
            "recordid": word,
            "arrayofobjectsfield": [{"filename": word, "timestamp": word}],
            "objectfield": {"filename": word, "timestamp": word},
        },
    )
    for n, day, word in [(1, 1, "one"), (2, 1, "two"), (3, 2, "three")]
]


def relationalized(tmp_path, dataset_id: str, files) -> dict:
    """The dataset's tables; its partition values as ingest writes them in every row."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, day, document in files:
        path = tmp_path / f"{name}.ndjson"
        row = {**document, "assessmentid": "exampleassessment", "year": 2022, "month": 9, "day": day}
        path.write_text(json.dumps(row) + "\n")
        paths.append(path)
    plan = plan_from_ndjson(
        dataset_id,
        paths,
        extra_columns={
            "recordid": "string",
            "assessmentid": "string",
            "year": "bigint",
            "month": "bigint",
            "day": "bigint",
        },
        identity_columns=["recordid"],
        carry_columns=["recordid", *PARTITION],
        partition_columns=PARTITION,
    )
    return relationalize_arrow(plan, paths)


def test_get_table_flat(tmp_path):
    (table,) = relationalized(tmp_path, "pytest_flat_table", FLAT).values()
    assert table.num_rows == 3
    assert set(table.column_names) - {RESCUED} == {"recordid", *PARTITION}


def test_has_nested_fields(tmp_path):
    assert len(relationalized(tmp_path / "flat", "pytest_flat_table", FLAT)) == 1
    assert len(relationalized(tmp_path / "nested", "pytest_nested_table", NESTED)) == 2


@pytest.fixture
def nested(tmp_path) -> dict:
    return relationalized(tmp_path, "pytest_nested_table", NESTED)


def test_add_index_to_table_root(nested):
    root = nested["dataset_pytest_nested_table"]
    expected = {"recordid", "arrayofobjectsfield", "objectfield_filename", "objectfield_timestamp", *PARTITION}
    assert set(root.column_names) - {RESCUED} == expected


def test_add_index_to_table_child(nested):
    child = nested["dataset_pytest_nested_table_arrayofobjectsfield"]
    assert set(child.column_names) - {RESCUED} == {"id", "index", "filename", "timestamp", *PARTITION, "recordid"}
    rows = sorted(child.to_pylist(), key=lambda row: row["recordid"])
    assert [(r["filename"], r["timestamp"], r["recordid"], r["assessmentid"]) for r in rows] == [
        ("one", "one", "one", "exampleassessment"),
        ("three", "three", "three", "exampleassessment"),
        ("two", "two", "two", "exampleassessment"),
    ]
    assert [r["index"] for r in rows] == [0, 0, 0]
    roots = {r["recordid"]: r["arrayofobjectsfield"] for r in nested["dataset_pytest_nested_table"].to_pylist()}
    assert all(r["id"] == roots[r["recordid"]] for r in rows)


def test_add_index_to_table_child_partition_values(nested):
    """A deliberate difference (docs/conformance.md): the original's crawler
    read ``year``/``month``/``day`` from the key as strings (``'2022'``,
    ``'09'``, ``'01'``); here they are integers for every reader
    (docs/publish.md, "Partition columns"), the same dates."""
    child = nested["dataset_pytest_nested_table_arrayofobjectsfield"]
    rows = sorted(child.to_pylist(), key=lambda row: row["recordid"])
    assert [(r["year"], r["month"], r["day"]) for r in rows] == [(2022, 9, 1), (2022, 9, 2), (2022, 9, 1)]
