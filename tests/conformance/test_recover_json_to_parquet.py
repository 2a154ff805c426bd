"""Mirrors of Sage-Bionetworks/recover tests/test_json_to_parquet.py (commit
6a9e4ae4), TestJsonS3ToParquet: its dedup, deletion and relationalize cases,
with its fixtures' rows, asked of this project's publish (Arrow engine) and
relationalize. The original's export_end_date is this project's
exportenddate (the recover profile's enrichment column)."""

from __future__ import annotations

import dataclasses
import io
import json

import pyarrow.parquet as pq
import pytest

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.engines import publish_dataset_with
from bridge_downstream.relationalize import plan_from_ndjson, relationalize_arrow
from bridge_downstream.relationalize.plan import RESCUED_COLUMN as RESCUED

COHORT = {"cohort": "adults_v1"}
DATA_TYPE = "TestFlatDataType"


def recover_profile_keyed_by_global_key():
    """The recover profile, with the original fixture's data types keyed by
    GlobalKey (its INDEX_FIELD_MAP entry for them)."""
    profile = load_profile("recover")
    keys = {**profile.dedup.keys_by_data_type, DATA_TYPE: ("GlobalKey",), "TestNestedDataType": ("GlobalKey",)}
    return dataclasses.replace(profile, dedup=dataclasses.replace(profile.dedup, keys_by_data_type=keys))


def write_rows(root, dataset_id: str, rows: list[dict]) -> None:
    path = root / layout.json_part_key(dataset_id, COHORT, "conformance", 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    enriched = [
        {**row, "cohort": "adults_v1", "sourcefile": f"{dataset_id}_20230514.json", "sourceindex": i}
        for i, row in enumerate(rows)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in enriched))


def published_root_rows(registry, root, dataset_id: str = DATA_TYPE) -> list[dict]:
    published = LocalStorage(root / "published")
    manifest = publish_dataset_with(
        "arrow",
        lambda: None,
        dataset_id=dataset_id,
        registry=registry,
        profile=recover_profile_keyed_by_global_key(),
        work=LocalStorage(root),
        published=published,
        run_id="conformance",
        catalog=None,
    ).manifest
    table = next(t for t in manifest.tables.values() if t.parent is None)
    rows = []
    for file in table.files_of("parquet"):
        rows += pq.read_table(io.BytesIO(published.read_bytes(file.key))).to_pylist()
    return rows


def columns_to_rows(columns: dict[str, list]) -> list[dict]:
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


# The original's `sample_table_data` fixture.
SAMPLE_TABLE = {
    "name": ["John", "John", "Jane", "Bob"],
    "age": [25, 25, 30, 22],
    "city": ["New York", "Chicago", "San Francisco", "Los Angeles"],
    "GlobalKey": ["1", "1", "2", "3"],
    "exportenddate": ["2023-05-12T00:00:00", "2023-05-13T00:00:00", "2023-05-13T00:00:00", "2023-05-14T00:00:00"],
}

# The original's `sample_table_inserted_date_data` fixture.
SAMPLE_TABLE_INSERTED_DATE = {
    "name": ["John", "John", "Jane", "Bob", "Bob_2"],
    "age": [25, 25, 30, 22, 40],
    "city": ["New York", "Chicago", "San Francisco", "Los Angeles", "Tucson"],
    "GlobalKey": ["1", "1", "2", "3", "3"],
    "InsertedDate": [
        "2023-05-12T00:00:00",
        "2023-05-13T00:00:00",
        "2023-05-13T00:00:00",
        "2023-05-14T00:00:00",
        "2023-05-14T00:00:00",
    ],
    "exportenddate": [
        "2023-05-14T00:00:00",
        "2023-05-14T00:00:00",
        "2023-05-14T00:00:00",
        "2023-05-14T00:00:00",
        "2023-05-15T00:00:00",
    ],
}


def test_drop_table_duplicates(registry, tmp_path):
    write_rows(tmp_path, DATA_TYPE, columns_to_rows(SAMPLE_TABLE))
    rows = published_root_rows(registry, tmp_path)
    assert len(rows) == 3
    assert "Chicago" in {row["city"] for row in rows}


def test_drop_table_duplicates_inserted_date(registry, tmp_path):
    write_rows(tmp_path, DATA_TYPE, columns_to_rows(SAMPLE_TABLE_INSERTED_DATE))
    rows = published_root_rows(registry, tmp_path)
    assert len(rows) == 3
    assert {row["name"] for row in rows} == {"John", "Jane", "Bob_2"}
    assert {row["city"] for row in rows} == {"Chicago", "San Francisco", "Tucson"}
    assert {row["GlobalKey"] for row in rows} == {"1", "2", "3"}


# test_json_to_parquet/TestFlatDataType_20230512.ndjson, _20230612.ndjson and
# TestFlatDataType_Deleted_20230514.ndjson, as their rows.
FLAT_ROWS = [
    {"GlobalKey": "123456789", "exportenddate": "2023-05-12T00:00:00"},
    {"GlobalKey": "123456789", "exportenddate": "2023-06-12T00:00:00"},
]
DELETED_ROWS = [{"GlobalKey": "123456789", "exportenddate": "2023-06-14T00:00:00"}]


def test_drop_deleted_healthkit_data_nonempty(registry, tmp_path):
    write_rows(tmp_path, DATA_TYPE, FLAT_ROWS)
    write_rows(tmp_path, f"{DATA_TYPE}_Deleted", DELETED_ROWS)
    assert published_root_rows(registry, tmp_path) == []


def test_drop_deleted_healthkit_data_empty(registry, tmp_path):
    # an empty _Deleted companion: the table comes back as dedup left it
    write_rows(tmp_path, DATA_TYPE, FLAT_ROWS)
    write_rows(tmp_path, f"{DATA_TYPE}_Deleted", [])
    rows = published_root_rows(registry, tmp_path)
    assert [(row["GlobalKey"], row["exportenddate"]) for row in rows] == [("123456789", "2023-06-12T00:00:00")]


def test_drop_deleted_healthkit_data_nonexistent_table(registry, tmp_path):
    """A deliberate difference (docs/conformance.md): the original raised
    Glue's EntityNotFoundException when no ``_Deleted`` table was in the
    catalog; here an export without deletions deletes nothing, and the
    publish keeps what dedup left."""
    write_rows(tmp_path, DATA_TYPE, FLAT_ROWS)
    rows = published_root_rows(registry, tmp_path)
    assert [(row["GlobalKey"], row["exportenddate"]) for row in rows] == [("123456789", "2023-06-12T00:00:00")]


# test_json_to_parquet/TestNestedDataType_20230512.ndjson, with the enrichment
# the recover profile adds.
NESTED_ROW = {
    "GlobalKey": "123456789",
    "ArrayOfObjectsField": [{"filename": "test.json", "timestamp": "999"}],
    "ObjectField": {"filename": "test.json", "timestamp": "999"},
    "export_end_date": "2023-05-12T00:00:00",
    "cohort": "adults_v1",
}


def nested_tables(tmp_path) -> dict:
    path = tmp_path / "TestNestedDataType.ndjson"
    path.write_text(json.dumps(NESTED_ROW) + "\n")
    profile = recover_profile_keyed_by_global_key()
    plan = plan_from_ndjson(
        "TestNestedDataType",
        [path],
        extra_columns={"cohort": "string"},
        identity_columns=list(profile.identity_columns("TestNestedDataType")),
        carry_columns=list(profile.carry_columns("TestNestedDataType")),
        partition_columns=["cohort"],
    )
    return relationalize_arrow(plan, [path])


def test_has_nested_fields(tmp_path):
    tables = nested_tables(tmp_path)
    assert sorted(tables) == ["dataset_testnesteddatatype", "dataset_testnesteddatatype_arrayofobjectsfield"]


ORIGINAL_COLUMNS = {
    "dataset_testnesteddatatype": {
        "GlobalKey",
        "ArrayOfObjectsField",
        "ObjectField_filename",
        "ObjectField_timestamp",
        "export_end_date",
        "cohort",
    },
    "dataset_testnesteddatatype_arrayofobjectsfield": {"id", "index", "filename", "timestamp", "GlobalKey", "cohort"},
}
# the recover profile's carry field, null where absent
CARRIED = "ParticipantIdentifier"


@pytest.mark.parametrize("table", sorted(ORIGINAL_COLUMNS))
def test_add_index_to_table_columns_but_for_the_added_ones(tmp_path, table):
    assert set(nested_tables(tmp_path)[table].column_names) - {RESCUED} == ORIGINAL_COLUMNS[table] | {CARRIED}


def test_add_index_to_table_values(tmp_path):
    tables = nested_tables(tmp_path)
    (root,) = tables["dataset_testnesteddatatype"].to_pylist()
    children = tables["dataset_testnesteddatatype_arrayofobjectsfield"].to_pylist()
    shown = [{k: row[k] for k in ("filename", "timestamp", "GlobalKey", "cohort")} for row in children]
    assert shown == [{"filename": "test.json", "timestamp": "999", "GlobalKey": "123456789", "cohort": "adults_v1"}]
    assert [(row["id"], row["index"]) for row in children] == [(root["ArrayOfObjectsField"], 0)]
    assert (root["ObjectField_filename"], root["ObjectField_timestamp"]) == ("test.json", "999")
