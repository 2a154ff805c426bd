"""A document key spelled exactly like a field the pipeline adds to its rows
(a Bridge metadata field such as ``healthcode``, or a derived one such as
``year`` or ``recordid``) keeps the document's value: ingest writes it under
an escaped key instead of letting the added field overwrite it, and publish
gives it a column -- the document's name where the added field is Bridge
metadata (published as ``bridge_<name>``), the next free name where the added
field is the pipeline's own (``year_2``, listed as renamed) -- on both engines."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from bridge_downstream.common import jsoncodec
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.engines import publish_dataset_with
from bridge_downstream.relationalize import plan_from_schema
from support import ingest_folder, mtb_metadata, write_archive

ENGINES = ["arrow", pytest.param("spark", marks=pytest.mark.spark)]
DATASET = "ArchiveMetadata_v1"
ROOT = "dataset_archivemetadata_v1"


def _upload(root, registry, record: str, document: dict, health_code: str) -> None:
    folder = root / f"in-{record}"
    write_archive(
        folder / f"{record}.zip",
        {"metadata.json": document},
        mtb_metadata(record, uploaded_on="2024-03-01T10:00:00.000Z", healthcode=health_code),
    )
    assert ingest_folder(folder, root / "out", registry)["archives"]["processed"] == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_a_document_key_named_like_an_added_field_keeps_its_value(engine, request, registry, tmp_path):
    document = {"appName": "a", "files": [], "healthcode": "doc-7", "year": 1990, "recordid": "mine"}
    _upload(tmp_path, registry, "r1", document, "73")
    _upload(tmp_path, registry, "r2", {"appName": "b", "files": []}, "74")
    storage = LocalStorage(tmp_path / "out")
    spark_factory = (lambda: request.getfixturevalue("spark")) if engine == "spark" else None
    manifest = publish_dataset_with(
        engine,
        spark_factory,
        dataset_id=DATASET,
        registry=registry,
        profile=load_profile("mtb"),
        work=storage,
        published=storage,
        run_id="collisions",
    ).manifest
    rows = {
        row["recordid"]: row
        for file in manifest.tables[ROOT].files_of("parquet")
        for row in pq.read_table(storage.path(file.key)).to_pylist()
    }
    first, second = rows["r1"], rows["r2"]
    assert (first["healthcode"], first["bridge_healthcode"]) == ("doc-7", "73")
    assert (second["healthcode"], second["bridge_healthcode"]) == (None, "74")
    assert (first["year_2"], first["recordid_2"], second["year_2"]) == (1990, "mine", None)
    assert first["year"] == second["year"] == 2024  # the partition stays the pipeline's
    assert manifest.plan["renamed_columns"][ROOT] == {"recordid_2": "recordid", "year_2": "year"}
    assert manifest.plan["undeclared_keys"] == {"healthcode": 1, "recordid": 1, "year": 1}


def test_ingest_escapes_only_the_keys_an_added_field_names():
    rows = jsoncodec.Rows({"recordid": "r1", "year": 2024})
    line = json.loads(rows.line({"year": 1990, "score": 3, "\x00odd": 1}, 0))
    assert line == {"\x00year": 1990, "score": 3, "\x00\x00odd": 1, "recordid": "r1", "year": 2024, "sourceindex": 0}
    assert json.loads(rows.line({"score": 3}, 1)) == {"score": 3, "recordid": "r1", "year": 2024, "sourceindex": 1}
    assert [jsoncodec.document_key(key) for key in line] == [
        "year",
        "score",
        "\x00odd",
        "recordid",
        "year",
        "sourceindex",
    ]


def test_a_schema_property_named_like_an_added_field_keeps_its_schema_type():
    schema = {"type": "object", "properties": {"recordid": {"type": "integer"}, "score": {"type": "number"}}}
    plan = plan_from_schema("Task_v1", schema, extra_columns={"recordid": "string"}, identity_columns=["recordid"])
    column = plan.root.column("recordid_2")
    assert (column.type, column.path) == ("bigint", ["\x00recordid"])
    assert plan.root.column("recordid").type == "string"
    assert plan.renamed_columns == {"dataset_task_v1": {"recordid_2": "recordid"}}
