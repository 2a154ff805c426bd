"""One type per column, for good: a value that does not fit its published
column is rescued into the row's ``_rescued_data``, the column keeps its type
in Parquet, Glue and DuckDB, and the publish counts it -- on both engines."""

from __future__ import annotations

import json

import boto3
import duckdb
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import Profile, load_profile
from bridge_downstream.publish.catalog import DuckDBCatalog
from bridge_downstream.publish.engines import publish_dataset_with
from bridge_downstream.relationalize.plan import RESCUED_COLUMN
from bridge_downstream_adapters.glue_catalog import GlueCatalog
from support import ingest_folder, mtb_metadata, write_archive

ENGINES = ["arrow", pytest.param("spark", marks=pytest.mark.spark)]
DATASET = "SurveyAnswers_v1"  # legacy-survey answers.json: inferred, no schema
ROOT = "dataset_surveyanswers_v1"


@pytest.fixture(params=ENGINES)
def publish(request, registry):
    engine = request.param
    spark_factory = (lambda: request.getfixturevalue("spark")) if engine == "spark" else None

    def run(root, run_id: str, profile: Profile | None = None):
        storage = LocalStorage(root / "out")
        return publish_dataset_with(
            engine,
            spark_factory,
            dataset_id=DATASET,
            registry=registry,
            profile=profile or load_profile("mtb"),
            work=storage,
            published=storage,
            run_id=run_id,
            catalog=DuckDBCatalog(storage),
        ).manifest

    return run


def _answers(root, registry, record: str, answers: dict, day: int) -> None:
    folder = root / f"in-{record}"
    uploaded = f"2024-03-{day:02d}T10:00:00.000Z"
    write_archive(
        folder / f"{record}.zip",
        {"answers.json": [answers]},
        mtb_metadata(record, "legacy-survey", uploaded_on=uploaded),
    )
    assert ingest_folder(folder, root / "out", registry)["archives"]["processed"] == 1


def _root_rows(root, manifest) -> dict[str, dict]:
    storage = LocalStorage(root / "out")
    rows = [
        row
        for file in manifest.tables[ROOT].files_of("parquet")
        for row in pq.read_table(storage.path(file.key)).to_pylist()
    ]
    return {row["recordid"]: row for row in rows}


def _types(manifest) -> dict[str, str]:
    return {c["name"]: c["type"] for c in manifest.tables[ROOT].columns}


def test_a_later_value_that_does_not_fit_is_rescued_and_the_column_keeps_its_type(publish, registry, tmp_path):
    _answers(tmp_path, registry, "r1", {"q2": 3, "q3": "a"}, 1)
    first = publish(tmp_path, "first")
    assert _types(first)["q2"] == "bigint"
    assert _root_rows(tmp_path, first)["r1"][RESCUED_COLUMN] is None

    _answers(tmp_path, registry, "r2", {"q2": "n/a", "q3": "b"}, 2)
    second = publish(tmp_path, "second")
    assert _types(second)["q2"] == "bigint"  # not string, as inference alone would make it
    rows = _root_rows(tmp_path, second)
    assert (rows["r1"]["q2"], rows["r1"][RESCUED_COLUMN]) == (3, None)
    assert rows["r2"]["q2"] is None
    assert json.loads(rows["r2"][RESCUED_COLUMN]) == {"q2": "n/a"}
    assert second.rescued_values == {"q2": 1}

    storage_root = tmp_path / "out"
    parquet_file = next(iter(second.tables[ROOT].files_of("parquet")))
    assert str(pq.read_schema(storage_root / parquet_file.key).field("q2").type) == "int64"
    with duckdb.connect(str(storage_root / layout.LOCAL_CATALOG_NAME), read_only=True) as connection:
        described = dict(connection.execute(f"SELECT column_name, column_type FROM (DESCRIBE {ROOT})").fetchall())
        assert described["q2"] == "BIGINT"
        assert connection.execute(f"SELECT sum(q2) FROM {ROOT}").fetchone()[0] == 3
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": "db"})
        GlueCatalog("db", LocalStorage(storage_root), glue).register(second)
        columns = glue.get_table(DatabaseName="db", Name=ROOT)["Table"]["StorageDescriptor"]["Columns"]
    assert {c["Name"]: c["Type"] for c in columns}["q2"] == "bigint"


def test_a_column_the_new_rows_lack_stays(publish, registry, tmp_path):
    _answers(tmp_path, registry, "r1", {"q9": 1.5}, 1)
    publish(tmp_path, "first")
    # the only record holding q9 is replaced by a version without it
    _answers(tmp_path, registry, "r1", {"other": True}, 2)
    second = publish(tmp_path, "second")
    assert _types(second)["q9"] == "double"
    assert _root_rows(tmp_path, second)["r1"]["q9"] is None


def test_a_profile_declares_a_columns_type(publish, registry, tmp_path):
    _answers(tmp_path, registry, "r1", {"when": "2024-03-01T10:00:00-05:00"}, 1)
    _answers(tmp_path, registry, "r2", {"when": "not a time"}, 2)
    profile = load_profile("mtb")
    profile = Profile(**{**profile.__dict__, "column_types": {DATASET: {"when": "timestamp"}}})
    manifest = publish(tmp_path, "declared", profile)
    assert _types(manifest)["when"] == "timestamp"
    rows = _root_rows(tmp_path, manifest)
    assert rows["r1"]["when"].isoformat() == "2024-03-01T15:00:00+00:00"
    assert (rows["r2"]["when"], json.loads(rows["r2"][RESCUED_COLUMN])) == (None, {"when": "not a time"})
    assert manifest.rescued_values == {"when": 1}


def test_a_child_column_keeps_its_type_and_rescues_in_its_own_table(publish, registry, tmp_path):
    child = f"{ROOT}_items"
    _answers(tmp_path, registry, "r1", {"items": [{"n": 1}, {"n": 2}]}, 1)
    first = publish(tmp_path, "first")
    assert {c["name"]: c["type"] for c in first.tables[child].columns}["n"] == "bigint"

    _answers(tmp_path, registry, "r2", {"items": [{"n": "n/a"}, {"n": 5}]}, 2)
    second = publish(tmp_path, "second")
    assert {c["name"]: c["type"] for c in second.tables[child].columns}["n"] == "bigint"
    assert second.rescued_values == {"items[].n": 1}
    storage_root = tmp_path / "out"
    with duckdb.connect(str(storage_root / layout.LOCAL_CATALOG_NAME), read_only=True) as connection:
        rows = connection.execute(
            f"SELECT recordid, index, n, {RESCUED_COLUMN} FROM {child} ORDER BY recordid, index"
        ).fetchall()
        assert connection.execute(f"SELECT sum(n) FROM {child}").fetchone()[0] == 8
    assert rows == [("r1", 0, 1, None), ("r1", 1, 2, None), ("r2", 0, None, '{"n":"n/a"}'), ("r2", 1, 5, None)]
