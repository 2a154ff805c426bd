"""A dataset with no row to publish -- its part files hold none, or dedup
removes every row -- publishes a version of empty tables on both engines
instead of failing: every table of its plan, no row, current, catalogued."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.catalog import DuckDBCatalog
from bridge_downstream.publish.engines import publish_dataset_with
from bridge_downstream.publish.manifest import current_version

ENGINES = ["arrow", pytest.param("spark", marks=pytest.mark.spark)]
MTB_PARTITION = "assessmentid=legacy-survey/year=2024/month=03/day=03"


@pytest.fixture(params=ENGINES)
def publish(request, registry):
    """``publish(root, dataset_id, profile)`` on the engine under test -> its manifest."""
    engine = request.param
    spark_factory = (lambda: request.getfixturevalue("spark")) if engine == "spark" else None

    def run(root, dataset_id: str, profile: str):
        storage = LocalStorage(root)
        result = publish_dataset_with(
            engine,
            spark_factory,
            dataset_id=dataset_id,
            registry=registry,
            profile=load_profile(profile),
            work=storage,
            published=storage,
            run_id="empty",
            catalog=DuckDBCatalog(storage),
        )
        return result.manifest

    return run


def _part(root, dataset_id: str, partition: str, content: bytes, name: str = "part-0.ndjson") -> None:
    path = root / "json" / f"dataset={dataset_id}" / partition / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def _assert_published_empty(root, manifest, tables: list[str]) -> None:
    assert list(manifest.tables) == tables
    assert current_version(LocalStorage(root), manifest.dataset_id) == manifest.version
    for table in manifest.tables.values():
        assert table.rows == 0, table.name
        for file in table.files_of("parquet"):
            assert pq.read_metadata(io.BytesIO((root / file.key).read_bytes())).num_rows == 0
    assert DuckDBCatalog(LocalStorage(root)).counts() == dict.fromkeys(tables, 0)


def test_an_empty_part_file_of_a_schema_less_dataset(publish, tmp_path):
    """No row to infer from: the root table holds the enrichment columns."""
    _part(tmp_path, "SurveyAnswers_v1", MTB_PARTITION, b"")
    manifest = publish(tmp_path, "SurveyAnswers_v1", "mtb")
    _assert_published_empty(tmp_path, manifest, ["dataset_surveyanswers_v1"])
    table = manifest.tables["dataset_surveyanswers_v1"]
    names = ["recordid", "uploadedon", "exportedon", "sourcefile", "sourceindex", "_rescued_data"]
    assert [c["name"] for c in table.columns] == names
    assert table.partition_keys == ["assessmentid", "year", "month", "day"]


def test_blank_lines_of_a_dataset_with_a_schema(publish, tmp_path):
    """Every table the schema gives, the child tables included."""
    _part(tmp_path, "TaskData_v1", MTB_PARTITION, b"\n\n")
    manifest = publish(tmp_path, "TaskData_v1", "mtb")
    _assert_published_empty(
        tmp_path,
        manifest,
        ["dataset_taskdata_v1", "dataset_taskdata_v1_steps", "dataset_taskdata_v1_steps_interactions"],
    )
    assert [c["name"] for c in manifest.tables["dataset_taskdata_v1_steps"].columns][:3] == [
        "id",
        "index",
        "identifier",
    ]


def test_an_empty_export_whose_carried_column_no_row_holds(publish, tmp_path):
    """recover carries ``ParticipantIdentifier`` and the data type's key
    (``LogId``), document fields: without rows they are string columns of
    nulls, so the table still has its key columns -- and the columns the
    profile declares for the data type, with their types."""
    _part(tmp_path, "FitbitSleepLogs", "cohort=adults_v1", b"")
    manifest = publish(tmp_path, "FitbitSleepLogs", "recover")
    _assert_published_empty(tmp_path, manifest, ["dataset_fitbitsleeplogs"])
    columns = {c["name"]: c["type"] for c in manifest.tables["dataset_fitbitsleeplogs"].columns}
    assert columns["ParticipantIdentifier"] == columns["LogId"] == "string"
    assert list(columns)[:2] == ["LogId", "ParticipantIdentifier"]
    declared = load_profile("recover").declared_column_types("FitbitSleepLogs")
    assert declared["IsMainSleep"] == "boolean"  # recover's table definition
    assert {name: columns[name] for name in declared} == declared
    assert list(columns)[-5:] == ["export_start_date", "export_end_date", "sourcefile", "sourceindex", "_rescued_data"]


def test_a_dataset_whose_rows_are_all_deleted(publish, tmp_path):
    """Rows to plan from, none left after dedup: the tables of the rows' shape, empty."""
    logs = [
        {
            "ParticipantIdentifier": participant,
            "LogId": log,
            "Details": [{"Level": "deep"}],
            "InsertedDate": "2023-01-13T00:00:00Z",
            "cohort": "adults_v1",
            "exportenddate": "2023-01-14",
            "sourcefile": "FitbitSleepLogs_20230112-20230114.json",
            "sourceindex": index,
        }
        for index, (participant, log) in enumerate([("RX-1", 1), ("RX-2", 2)])
    ]
    _part(tmp_path, "FitbitSleepLogs", "cohort=adults_v1", b"".join(json.dumps(r).encode() + b"\n" for r in logs))
    deleted = [{"ParticipantIdentifier": r["ParticipantIdentifier"], "LogId": r["LogId"]} for r in logs]
    _part(
        tmp_path,
        "FitbitSleepLogs_Deleted",
        "cohort=adults_v1",
        b"".join(json.dumps(r).encode() + b"\n" for r in deleted),
    )
    manifest = publish(tmp_path, "FitbitSleepLogs", "recover")
    _assert_published_empty(tmp_path, manifest, ["dataset_fitbitsleeplogs", "dataset_fitbitsleeplogs_details"])
    assert {c["name"] for c in manifest.tables["dataset_fitbitsleeplogs"].columns} >= {"LogId", "Details"}
