"""Publishing real public data from ../shared/data."""

import json
import zipfile

import duckdb
import pytest

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.catalog import DuckDBCatalog
from bridge_downstream.publish.spark_engine import publish_dataset
from project_paths import shared_path
from support import SPELLING_ARCHIVE, SPELLING_METADATA, ingest_folder

pytestmark = [pytest.mark.spark, pytest.mark.shared_data]


def link_with_metadata(folder, source, metadata):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / source.name).symlink_to(source)
    (folder / f"{source.name}.metadata.json").write_text(json.dumps(metadata))


def publish_all(spark, registry, root, profile, datasets):
    storage = LocalStorage(root)
    return {
        d: publish_dataset(
            spark,
            dataset_id=d,
            registry=registry,
            profile=load_profile(profile),
            work=storage,
            published=storage,
            run_id="real",
            catalog=DuckDBCatalog(storage),
        ).manifest
        for d in datasets
    }


def test_real_recover_export(spark, real_registry, tmp_path):
    source = shared_path("bridge-archives", "recover-2023-01-13T21--08--51Z_TESTDATA.zip")
    link_with_metadata(tmp_path / "in", source, {"cohort": "adults_v1"})
    ingest_folder(tmp_path / "in", tmp_path / "out", real_registry, profile="recover")
    manifests = publish_all(
        spark, real_registry, tmp_path / "out", "recover", ["FitbitIntradayCombined", "FitbitSleepLogs"]
    )
    assert manifests["FitbitIntradayCombined"].tables["dataset_fitbitintradaycombined"].rows == 59_005
    with zipfile.ZipFile(source) as archive:
        sleep = [json.loads(line) for line in archive.open("FitbitSleepLogs_20230112-20230114.json") if line.strip()]
    details = sum(len(r["SleepLogDetails"]) for r in sleep)
    tables = manifests["FitbitSleepLogs"].tables
    assert tables["dataset_fitbitsleeplogs"].rows == len(sleep)
    assert tables["dataset_fitbitsleeplogs_sleeplogdetails"].rows == details
    with duckdb.connect(str(tmp_path / "out" / layout.LOCAL_CATALOG_NAME), read_only=True) as db:
        per_log = dict(
            db.execute(
                "SELECT p.LogId, count(c.index) FROM dataset_fitbitsleeplogs p LEFT JOIN dataset_fitbitsleeplogs_sleeplogdetails c ON c.id = p.SleepLogDetails GROUP BY p.LogId"
            ).fetchall()
        )
    assert per_log == {r["LogId"]: len(r["SleepLogDetails"]) for r in sleep}


def test_real_spelling_upload_tables(spark, real_registry, tmp_path):
    source = shared_path("bridge-archives", SPELLING_ARCHIVE)
    link_with_metadata(tmp_path / "in", source, SPELLING_METADATA)
    ingest_folder(tmp_path / "in", tmp_path / "out", real_registry)
    manifests = publish_all(
        spark, real_registry, tmp_path / "out", "mtb", ["sharedSchema_v1", "AudioLevelRecord_v1", "MotionRecord_v1"]
    )
    with zipfile.ZipFile(source) as archive:
        task = json.loads(archive.read("taskData.json"))
    shared = manifests["sharedSchema_v1"].tables
    assert shared["dataset_sharedschema_v1"].rows == 1
    assert shared["dataset_sharedschema_v1_stephistory"].rows == len(task["stepHistory"])
    assert shared["dataset_sharedschema_v1_consideredsteps"].rows == len(task["consideredSteps"])
    assert manifests["AudioLevelRecord_v1"].tables["dataset_audiolevelrecord_v1"].rows == 8
    for table in shared.values():
        assert table.partition_keys == ["assessmentid", "year", "month", "day"]
        assert {f.partition["day"] for f in table.files} <= {"15"}
