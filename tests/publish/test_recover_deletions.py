"""recover deletions: a ``<Type>[_<Subtype>]_Deleted_<dates>.json`` file
removes its type's records by key from what is published, for every type,
also when it arrives in an export after the records'."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.catalog import DuckDBCatalog
from bridge_downstream.publish.engines import publish_dataset_with
from support import ingest_folder

ENGINES = ["arrow", pytest.param("spark", marks=pytest.mark.spark)]
DATES = "20230112-20230114"
LATER_DATES = "20230115-20230117"


def _lines(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def _export(folder: Path, name: str, files: dict[str, list[dict]]) -> None:
    """An export at ``recover/pilot/adults_v1/<name>`` (its cohort in its key, no metadata, as Care Evolution writes them)."""
    path = folder / "recover" / "pilot" / "adults_v1" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file_name, rows in files.items():
            archive.writestr(file_name, _lines(rows))
    path.write_bytes(buffer.getvalue())


def _workouts(*keys: str) -> list[dict]:
    return [
        {"ParticipantIdentifier": "RX-1", "HealthKitWorkoutKey": key, "InsertedDate": "2023-01-13T00:00:00Z"}
        for key in keys
    ]


def _steps(*keys: str) -> list[dict]:
    return [{"ParticipantIdentifier": "RX-1", "HealthKitSampleKey": key, "Value": "10"} for key in keys]


def _sleep_logs(*ids: str) -> list[dict]:
    return [{"ParticipantIdentifier": "RX-1", "LogId": log_id} for log_id in ids]


@pytest.fixture(params=ENGINES)
def published_rows(request, registry):
    """``published_rows(root, dataset_id)``: the rows of the dataset's root table once published on the engine."""
    engine = request.param
    spark_factory = (lambda: request.getfixturevalue("spark")) if engine == "spark" else None

    def run(root: Path, dataset_id: str) -> list[dict]:
        storage = LocalStorage(root)
        manifest = publish_dataset_with(
            engine,
            spark_factory,
            dataset_id=dataset_id,
            registry=registry,
            profile=load_profile("recover"),
            work=storage,
            published=storage,
            run_id=f"deletions-{dataset_id}",
            catalog=DuckDBCatalog(storage),
        ).manifest
        table = manifest.tables[f"dataset_{dataset_id.lower()}"]
        rows: list[dict] = []
        for file in table.files_of("parquet"):
            rows.extend(pq.read_table(io.BytesIO((root / file.key).read_bytes())).to_pylist())
        return rows

    return run


def test_deletions_in_the_same_export_remove_the_records_of_every_type(registry, tmp_path, published_rows):
    folder, out = tmp_path / "in", tmp_path / "out"
    _export(
        folder,
        "2023-01-14.zip",
        {
            f"HealthKitV2Workouts_{DATES}.json": _workouts("w1", "w2"),
            f"HealthKitV2Workouts_Deleted_{DATES}.json": _workouts("w2"),
            f"HealthKitV2Samples_Steps_{DATES}.json": _steps("s1", "s2"),
            f"HealthKitV2Samples_Steps_Deleted_{DATES}.json": _steps("s1"),
            f"FitbitSleepLogs_{DATES}.json": _sleep_logs("l1", "l2"),
            f"FitbitSleepLogs_Deleted_{DATES}.json": _sleep_logs("l2"),
        },
    )
    report = ingest_folder(folder, out, registry, profile="recover")
    assert report["archives"]["processed"] == 1
    assert [r["HealthKitWorkoutKey"] for r in published_rows(out, "HealthKitV2Workouts")] == ["w1"]
    steps = published_rows(out, "HealthKitV2Samples")
    assert [(r["HealthKitSampleKey"], r["Type"]) for r in steps] == [("s2", "Steps")]
    assert [r["LogId"] for r in published_rows(out, "FitbitSleepLogs")] == ["l1"]


def test_deletions_arriving_in_a_later_export_remove_the_published_records(registry, tmp_path, published_rows):
    folder, out = tmp_path / "in", tmp_path / "out"
    _export(
        folder,
        "2023-01-14.zip",
        {
            f"HealthKitV2Workouts_{DATES}.json": _workouts("w1", "w2", "w3"),
            f"HealthKitV2Samples_Steps_{DATES}.json": _steps("s1", "s2"),
        },
    )
    ingest_folder(folder, out, registry, profile="recover")
    assert sorted(r["HealthKitWorkoutKey"] for r in published_rows(out, "HealthKitV2Workouts")) == ["w1", "w2", "w3"]
    assert sorted(r["HealthKitSampleKey"] for r in published_rows(out, "HealthKitV2Samples")) == ["s1", "s2"]

    _export(
        folder,
        "2023-01-17.zip",
        {
            f"HealthKitV2Workouts_Deleted_{LATER_DATES}.json": _workouts("w1", "w3"),
            f"HealthKitV2Samples_Steps_Deleted_{LATER_DATES}.json": _steps("s2"),
        },
    )
    report = ingest_folder(folder, out, registry, profile="recover")
    assert report["archives"] == {"total": 2, "processed": 1, "invalid": 0, "skipped": 1}
    assert {d: e["rows"] for d, e in report["datasets"].items()} == {
        "HealthKitV2Workouts_Deleted": 2,
        "HealthKitV2Samples_Deleted": 1,
    }
    assert [r["HealthKitWorkoutKey"] for r in published_rows(out, "HealthKitV2Workouts")] == ["w2"]
    assert [r["HealthKitSampleKey"] for r in published_rows(out, "HealthKitV2Samples")] == ["s1"]
    deleted = published_rows(out, "HealthKitV2Workouts_Deleted")
    assert sorted(r["HealthKitWorkoutKey"] for r in deleted) == ["w1", "w3"]
    assert {r["export_end_date"].isoformat() for r in deleted} == {"2023-01-17T00:00:00+00:00"}
