"""JSON datasets -> relationalized Parquet and CSV, published atomically."""

import csv
import io
import json
from datetime import UTC, datetime

import duckdb
import pyarrow.parquet as pq
import pytest

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.catalog import DuckDBCatalog
from bridge_downstream.publish.manifest import current_version, read_current_manifests
from bridge_downstream.publish.spark_engine import publish_dataset
from bridge_downstream.publish.versions import list_versions, rollback
from support import SAMPLES, ingest_folder, read_dataset

pytestmark = pytest.mark.spark


def publish(spark, registry, root, dataset_id, profile="mtb", **kwargs):
    storage = LocalStorage(root)
    return publish_dataset(
        spark,
        dataset_id=dataset_id,
        registry=registry,
        profile=load_profile(profile),
        work=storage,
        published=storage,
        run_id=kwargs.pop("run_id", "test-run"),
        catalog=DuckDBCatalog(storage),
        **kwargs,
    )


@pytest.fixture(scope="module")
def sample_publish(spark, registry, tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    report = ingest_folder(SAMPLES / "archives", root, registry)
    manifests = {d: publish(spark, registry, root, d).manifest for d in report["datasets"]}
    return root, manifests


def _value(text: str) -> str:
    """Compare values, not spellings: CSV writes the double 0.0 as "0"."""
    try:
        return repr(float(text))
    except ValueError:
        return text.lower()


def normalise(rows):
    return sorted(tuple(_value(v) for v in row) for row in rows)


def sql(root, query):
    with duckdb.connect(str(root / layout.LOCAL_CATALOG_NAME), read_only=True) as connection:
        return connection.execute(query).fetchall()


def test_tables_follow_the_relationalize_naming(sample_publish):
    _, manifests = sample_publish
    assert sorted(manifests["TaskData_v1"].tables) == [
        "dataset_taskdata_v1",
        "dataset_taskdata_v1_steps",
        "dataset_taskdata_v1_steps_interactions",
    ]
    assert sorted(manifests["MotionRecord_v1"].tables) == ["dataset_motionrecord_v1"]


def test_dedup_keeps_the_latest_export_of_a_record(sample_publish):
    root, manifests = sample_publish
    # rec-0001 was uploaded twice; the re-export (exportedon 2024-03-05) wins,
    # whole: its 9 motion samples, not 9 + 9.
    assert manifests["MotionRecord_v1"].tables["dataset_motionrecord_v1"].rows == 9 + 6 + 4
    rows = sql(root, "SELECT recordid, scores_rawScore FROM dataset_taskdata_v1 ORDER BY recordid")
    assert rows == [("rec-0001", 13), ("rec-0003", 20)]


def test_child_rows_match_array_lengths_and_join_exactly_one_parent(sample_publish):
    root, _ = sample_publish
    survivors = [
        r for r in read_dataset(root, "TaskData_v1") if not (r["recordid"] == "rec-0001" and "exportedon" not in r)
    ]
    steps = sum(len(r["steps"]) for r in survivors)
    interactions = sum(len(s.get("interactions", [])) for r in survivors for s in r["steps"])
    assert sql(root, "SELECT count(*) FROM dataset_taskdata_v1_steps") == [(steps,)]
    assert sql(root, "SELECT count(*) FROM dataset_taskdata_v1_steps_interactions") == [(interactions,)]
    orphans = sql(
        root,
        "SELECT count(*) FROM dataset_taskdata_v1_steps c LEFT JOIN dataset_taskdata_v1 p ON c.id = p.steps WHERE p.steps IS NULL",
    )
    assert orphans == [(0,)]
    fan_in = sql(
        root,
        "SELECT max(n) FROM (SELECT c.id, count(DISTINCT p.recordid) AS n FROM dataset_taskdata_v1_steps c JOIN dataset_taskdata_v1 p ON c.id = p.steps GROUP BY c.id)",
    )
    assert fan_in == [(1,)]
    grand_orphans = sql(
        root,
        "SELECT count(*) FROM dataset_taskdata_v1_steps_interactions g LEFT JOIN dataset_taskdata_v1_steps c ON g.id = c.interactions WHERE c.interactions IS NULL",
    )
    assert grand_orphans == [(0,)]


def test_key_and_partition_columns_are_in_every_table(sample_publish):
    root, manifests = sample_publish
    for name in manifests["TaskData_v1"].tables:
        mismatches = sql(
            root,
            f"SELECT count(*) FROM {name} WHERE recordid IS NULL OR assessmentid IS NULL OR year <> '2024' OR month <> '03' OR day NOT IN ('01', '02')",
        )
        assert mismatches == [(0,)], name
    child = sql(
        root,
        "SELECT DISTINCT c.recordid, c.assessmentid, c.day, p.recordid, p.day FROM dataset_taskdata_v1_steps_interactions c JOIN dataset_taskdata_v1_steps s ON c.id = s.interactions JOIN dataset_taskdata_v1 p ON s.id = p.steps",
    )
    assert all(row[0] == row[3] and row[2] == row[4] for row in child)


def _text(value) -> str:
    """A Parquet value as the CSV writes it."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)


def test_parquet_and_csv_hold_the_same_rows(sample_publish):
    root, manifests = sample_publish
    storage = LocalStorage(root)
    for manifest in manifests.values():
        for table in manifest.tables.values():
            parquet_rows, csv_rows = [], []
            for file in table.files_of("parquet"):
                data = pq.ParquetFile(storage.path(file.key)).read().to_pylist()
                parquet_rows += [tuple(_text(v) for v in row.values()) + tuple(file.partition.values()) for row in data]
            for file in table.files_of("csv"):
                reader = csv.reader(io.StringIO(storage.path(file.key).read_text(encoding="utf-8")))
                next(reader)
                csv_rows += [tuple(row) for row in reader]
            assert normalise(parquet_rows) == normalise(csv_rows), table.name
            assert table.rows == len(parquet_rows)


def test_manifest_describes_every_file(sample_publish):
    root, manifests = sample_publish
    storage = LocalStorage(root)
    import hashlib

    for table in manifests["TaskData_v1"].tables.values():
        for file in table.files:
            data = storage.path(file.key).read_bytes()
            assert (file.size, file.sha256, file.md5) == (
                len(data),
                hashlib.sha256(data).hexdigest(),
                hashlib.md5(data).hexdigest(),
            )
            assert not file.key.rsplit("/", 1)[-1].startswith(("_", "."))
            assert file.partition["assessmentid"] in ("number-match", "flanker")


def test_duckdb_catalog_answers_count_per_table(sample_publish):
    root, manifests = sample_publish
    counts = DuckDBCatalog(LocalStorage(root)).counts()
    expected = {name: t.rows for m in manifests.values() for name, t in m.tables.items()}
    assert counts == expected


def test_republish_gives_the_same_rows_and_keeps_the_previous_version(spark, registry, tmp_path):
    ingest_folder(SAMPLES / "archives", tmp_path, registry)
    first = publish(spark, registry, tmp_path, "TaskData_v1").manifest
    rows_first = sql(tmp_path, "SELECT * FROM dataset_taskdata_v1_steps ORDER BY id, index")
    second = publish(spark, registry, tmp_path, "TaskData_v1").manifest
    assert second.version != first.version and second.previous_version == first.version
    assert sql(tmp_path, "SELECT * FROM dataset_taskdata_v1_steps ORDER BY id, index") == rows_first
    assert list_versions(LocalStorage(tmp_path), "TaskData_v1") == {first.version: True, second.version: True}

    restored = rollback(LocalStorage(tmp_path), "TaskData_v1", catalog=DuckDBCatalog(LocalStorage(tmp_path)))
    assert restored.version == first.version == current_version(LocalStorage(tmp_path), "TaskData_v1")


def test_a_publish_that_fails_midway_leaves_the_previous_version_current(spark, registry, tmp_path):
    ingest_folder(SAMPLES / "archives", tmp_path, registry)
    storage = LocalStorage(tmp_path)
    good = publish(spark, registry, tmp_path, "TaskData_v1").manifest
    before = sql(tmp_path, "SELECT count(*) FROM dataset_taskdata_v1_steps")
    with pytest.raises(RuntimeError, match="interrupted after 1 tables"):
        # in full: with no new data an incremental publish writes no table (it carries them all)
        publish(spark, registry, tmp_path, "TaskData_v1", fail_after_tables=1, full=True)
    assert current_version(storage, "TaskData_v1") == good.version
    assert sql(tmp_path, "SELECT count(*) FROM dataset_taskdata_v1_steps") == before
    versions = list_versions(storage, "TaskData_v1")
    assert len(versions) == 2 and sum(versions.values()) == 1  # the partial one has no manifest
    # The next publish prunes the partial version.
    third = publish(spark, registry, tmp_path, "TaskData_v1").manifest
    assert list_versions(storage, "TaskData_v1") == {good.version: True, third.version: True}


def test_retention_prunes_old_versions_but_never_the_current(spark, registry, tmp_path):
    ingest_folder(SAMPLES / "archives", tmp_path, registry)
    # in full, so no version's files are referenced by a later one (pruning by reference:
    # tests/publish/test_incremental_parity.py)
    versions = [
        publish(spark, registry, tmp_path, "MotionRecord_v1", retention=2, full=True).manifest.version for _ in range(3)
    ]
    assert list(list_versions(LocalStorage(tmp_path), "MotionRecord_v1")) == versions[1:]
    with pytest.raises(ValueError, match="no complete version"):
        rollback(LocalStorage(tmp_path), "MotionRecord_v1", to_version=versions[0])


def test_recover_dedup_and_deleted_rows(spark, registry, tmp_path):
    ingest_folder(SAMPLES / "exports", tmp_path, registry, profile="recover")
    manifest = publish(spark, registry, tmp_path, "HealthKitV2Samples", profile="recover").manifest
    assert manifest.tables["dataset_healthkitv2samples"].rows == 4
    assert sql(tmp_path, "SELECT count(*) FROM dataset_healthkitv2samples WHERE HealthKitSampleKey = 'hk-3'") == [(0,)]
    sleep = publish(spark, registry, tmp_path, "FitbitSleepLogs", profile="recover").manifest
    details = sum(len(r["SleepLogDetails"]) for r in read_dataset(tmp_path, "FitbitSleepLogs"))
    assert sleep.tables["dataset_fitbitsleeplogs_sleeplogdetails"].rows == details
    carried = sql(
        tmp_path,
        "SELECT DISTINCT ParticipantIdentifier, cohort FROM dataset_fitbitsleeplogs_sleeplogdetails ORDER BY 1",
    )
    assert carried == [("RX-0001", "adults_v1"), ("RX-0002", "adults_v1")]


def test_a_re_exported_recover_row_keeps_its_latest_version(spark, registry, tmp_path):
    dataset = tmp_path / "json" / "dataset=FitbitDevices" / "cohort=adults_v1"
    dataset.mkdir(parents=True)
    rows = [
        {
            "ParticipantIdentifier": "p1",
            "Device": "Versa",
            "Date": "2024-01-01",
            "Battery": "Low",
            "InsertedDate": "2024-01-02T00:00:00Z",
        },
        {
            "ParticipantIdentifier": "p1",
            "Device": "Versa",
            "Date": "2024-01-01",
            "Battery": "High",
            "InsertedDate": "2024-01-03T00:00:00Z",
        },
        {
            "ParticipantIdentifier": "p2",
            "Device": "Versa",
            "Date": "2024-01-01",
            "Battery": "Medium",
            "InsertedDate": "2024-01-02T00:00:00Z",
        },
    ]
    enrich = {
        "cohort": "adults_v1",
        "exportstartdate": "2024-01-01",
        "exportenddate": "2024-01-04",
        "sourcefile": "FitbitDevices_20240104.json",
    }
    (dataset / "part-a-00000.ndjson").write_text(
        "".join(json.dumps({**r, **enrich, "sourceindex": i}) + "\n" for i, r in enumerate(rows))
    )
    publish(spark, registry, tmp_path, "FitbitDevices", profile="recover")
    assert sql(tmp_path, "SELECT ParticipantIdentifier, Battery FROM dataset_fitbitdevices ORDER BY 1") == [
        ("p1", "High"),
        ("p2", "Medium"),
    ]


def test_type_drift_and_awkward_text_survive_into_parquet_and_csv(spark, registry, tmp_path):
    """A schema-less dataset whose values change type between records, with
    text that needs CSV quoting: no row and no value is lost."""
    dataset = (
        tmp_path
        / "json"
        / "dataset=SurveyAnswers_v1"
        / "assessmentid=legacy-survey"
        / "year=2024"
        / "month=03"
        / "day=03"
    )
    dataset.mkdir(parents=True)
    answers = [
        {"q2": 3, "note": 'said "hi", then left'},
        {"q2": "three", "note": "line one\nline two"},
        {"q2": {"n": 3}, "note": "naïve, ü"},
    ]
    lines = []
    for i, answer in enumerate(answers):
        lines.append(
            json.dumps(
                {
                    **answer,
                    "recordid": f"r{i}",
                    "assessmentid": "legacy-survey",
                    "year": 2024,
                    "month": 3,
                    "day": 3,
                    "uploadedon": f"2024-03-03T0{i}:00:00Z",
                    "sourcefile": "answers.json",
                    "sourceindex": 0,
                }
            )
        )
    (dataset / "part-x-00000.ndjson").write_text("\n".join(lines) + "\n")
    manifest = publish(spark, registry, tmp_path, "SurveyAnswers_v1").manifest
    table = manifest.tables["dataset_surveyanswers_v1"]
    assert table.rows == 3
    values = dict(sql(tmp_path, "SELECT recordid, q2 FROM dataset_surveyanswers_v1"))
    assert values["r0"] == "3" and values["r1"] == "three" and json.loads(values["r2"]) == {"n": 3}
    rows = []
    for csv_file in table.files_of("csv"):
        with open(LocalStorage(tmp_path).path(csv_file.key), newline="", encoding="utf-8") as stream:
            rows += list(csv.DictReader(stream))
    assert sorted(r["note"] for r in rows) == sorted(a["note"] for a in answers)


def test_every_current_manifest_is_listed(sample_publish):
    root, manifests = sample_publish
    assert {m.dataset_id for m in read_current_manifests(LocalStorage(root))} == set(manifests)
