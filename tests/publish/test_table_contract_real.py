"""The table contract on the real MTB Spelling upload: every key of a document
has a column, an object the schema leaves open becomes columns, and no
document key is renamed by a metadata field of the same name."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.engines import publish_dataset_with
from bridge_downstream.relationalize.plan import METADATA_PREFIX
from project_paths import shared_path
from support import SPELLING_ARCHIVE, SPELLING_METADATA, ingest_folder

pytestmark = pytest.mark.shared_data
ENGINES = ["arrow", pytest.param("spark", marks=pytest.mark.spark)]


@pytest.fixture(scope="module")
def spelling(real_registry, tmp_path_factory):
    """The real upload, ingested once; its documents as the archive holds them."""
    source = shared_path("bridge-archives", SPELLING_ARCHIVE)
    folder = tmp_path_factory.mktemp("spelling")
    (folder / "in").mkdir()
    (folder / "in" / source.name).symlink_to(source)
    (folder / "in" / f"{source.name}.metadata.json").write_text(json.dumps(SPELLING_METADATA))
    report = ingest_folder(folder / "in", folder / "work", real_registry)
    assert report["archives"]["processed"] == 1
    with zipfile.ZipFile(source) as archive:
        documents = {name: json.loads(archive.read(name)) for name in ("metadata.json", "taskData.json")}
    return folder, documents


@pytest.fixture(params=ENGINES)
def published(request, spelling, real_registry, tmp_path):
    """``{dataset: (manifest, {table: rows})}`` for the upload's two main datasets."""
    engine = request.param
    spark_factory = (lambda: request.getfixturevalue("spark")) if engine == "spark" else None
    folder, _ = spelling
    out = LocalStorage(tmp_path / "published")
    result = {}
    for dataset_id in ("ArchiveMetadata_v1", "sharedSchema_v1"):
        manifest = publish_dataset_with(
            engine,
            spark_factory,
            dataset_id=dataset_id,
            registry=real_registry,
            profile=load_profile("mtb"),
            work=LocalStorage(folder / "work"),
            published=out,
            run_id=f"contract-{engine}",
        ).manifest
        tables = {
            name: [row for file in table.files_of("parquet") for row in pq.read_table(out.path(file.key)).to_pylist()]
            for name, table in manifest.tables.items()
        }
        result[dataset_id] = (manifest, tables)
    return result


def test_archive_metadata_keeps_every_key_of_metadata_json(published, spelling):
    _, documents = spelling
    document = documents["metadata.json"]
    manifest, tables = published["ArchiveMetadata_v1"]
    (row,) = tables["dataset_archivemetadata_v1"]
    # the keys the original ArchiveMetadata table had, and the schema does not declare
    for key in (
        "taskRunUUID",
        "taskIdentifier",
        "startDate",
        "endDate",
        "scheduledOn",
        "activityLabel",
        "scheduleIdentifier",
        "dataGroups",
        "rsdFrameworkVersion",
    ):
        assert row[key] == document[key], key
    assert row["dataGroups"] == "test_user"
    assert row["appVersion"] == "version 1.2.0, build 73"  # the document's, under its own name
    # Bridge's metadata field of the same name keeps its own column (absent from this upload's metadata)
    assert row[f"{METADATA_PREFIX}appversion"] is None and row[f"{METADATA_PREFIX}datagroups"] is None
    assert row["clientinfo"] == SPELLING_METADATA["clientinfo"]
    assert manifest.plan["undeclared_keys"]["taskRunUUID"] == 1
    files = tables["dataset_archivemetadata_v1_files"]
    assert [f["filename"] for f in files] == [f["filename"] for f in document["files"]]


def test_scores_become_columns_with_the_documents_values(published, spelling):
    _, documents = spelling
    scores = documents["taskData.json"]["scores"]
    _, tables = published["sharedSchema_v1"]
    (row,) = tables["dataset_sharedschema_v1"]
    assert "scores" not in row
    assert {key: row[f"scores_{key}"] for key in scores} == scores
    considered = tables["dataset_sharedschema_v1_consideredsteps"]
    expected = [step["identifier"] for step in documents["taskData.json"]["consideredSteps"]]
    assert [step["identifier"] for step in considered] == expected  # undeclared in the schema, kept


def test_no_document_key_is_renamed(published):
    for _, tables in published.values():
        for name, rows in tables.items():
            assert rows, name
            renamed = [column for column in rows[0] if column.rsplit("_", 1)[-1].isdigit()]
            assert renamed == [], name


def test_the_pipelines_instants_are_utc_timestamps(published):
    manifest, tables = published["sharedSchema_v1"]
    (row,) = tables["dataset_sharedschema_v1"]
    # Bridge's "2022-02-15T18:48:15.890Z", as an instant (Parquet TIMESTAMP(MICROS, UTC))
    assert row["uploadedon"] == datetime(2022, 2, 15, 18, 48, 15, 890000, tzinfo=UTC)
    assert row["exportedon"] is None
    columns = {c["name"]: c["type"] for c in manifest.tables["dataset_sharedschema_v1"].columns}
    assert columns["uploadedon"] == columns["exportedon"] == "timestamp"  # the Glue (Athena) type
