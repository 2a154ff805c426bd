"""The ingest stage on the bundled sample archives."""

import json
import shutil

from support import SAMPLES, ingest_folder, invalid_entries, read_dataset


def test_every_archive_is_accounted_for_once(sample_run):
    _, report = sample_run
    assert report["archives"] == {"total": 8, "processed": 5, "invalid": 3, "skipped": 0}
    reasons = {entry["source"].rsplit("/", 1)[-1]: entry["reason"] for entry in report["invalid"]}
    assert reasons == {
        "rec-0005-invalid-response-time.zip": "failed validation: taskData.json",
        "rec-0006-corrupt.zip": "corrupt-archive: not a readable ZIP archive (File is not a zip file)",
        "rec-0007-no-metadata.zip": (
            "no Bridge metadata: expected the S3 object's metadata, or locally a sidecar file rec-0007-no-metadata.zip.metadata.json"
        ),
    }


def test_dataset_row_counts_equal_document_element_counts(sample_run):
    output, report = sample_run
    counts = {dataset: entry["rows"] for dataset, entry in report["datasets"].items()}
    # motion: 9 + 9 (re-export) + 6 + 4 samples; one taskData document per record.
    assert counts == {
        "ArchiveMetadata_v1": 5,
        "MotionRecord_v1": 28,
        "SurveyAnswers_v1": 1,
        "TaskData_v1": 3,
        "TaskData_v2": 1,
    }
    for dataset, rows in counts.items():
        assert len(read_dataset(output, dataset)) == rows


def test_rows_are_enriched_and_partitioned_by_upload_date(sample_run):
    output, _ = sample_run
    motion = [r for r in read_dataset(output, "MotionRecord_v1") if r["recordid"] == "rec-0002"]
    assert len(motion) == 6
    assert {(r["assessmentid"], r["year"], r["month"], r["day"]) for r in motion} == {("number-match", 2024, 3, 2)}
    assert [r["sourceindex"] for r in motion] == list(range(6))
    assert all(r["sourcefile"] == "motion.json" and r["uploadedon"] == "2024-03-02T08:00:00.000Z" for r in motion)
    folders = sorted(p.parent.relative_to(output / "json").as_posix() for p in (output / "json").rglob("*.ndjson"))
    assert "dataset=MotionRecord_v1/assessmentid=number-match/year=2024/month=03/day=02" in folders
    assert all(not p.name.startswith(("_", ".")) for p in (output / "json").rglob("*"))


def test_archive_metadata_rows_also_get_every_bridge_metadata_field(sample_run):
    output, _ = sample_run
    row = next(r for r in read_dataset(output, "ArchiveMetadata_v1") if r["recordid"] == "rec-0002")
    assert (
        row["assessmentrevision"] == "3" and row["appid"] == "sample-app" and row["clientinfo"].startswith("ClientInfo")
    )
    assert row["appName"] == "SampleApp"  # the document's own fields stay
    task = next(r for r in read_dataset(output, "TaskData_v2"))
    assert "clientinfo" not in task and task["recordid"] == "rec-0002"


def test_accepted_client_deviation_keeps_the_record(sample_run):
    output, _ = sample_run
    android = [r for r in read_dataset(output, "MotionRecord_v1") if r["recordid"] == "rec-0003"]
    # motion_data.json lacks stepPath, an accepted deviation for Android clients.
    assert len(android) == 4 and all("stepPath" not in r for r in android)
    assert {r["sourcefile"] for r in android} == {"motion_data.json"}


def test_invalid_record_goes_whole_to_the_sink_with_its_errors(sample_run):
    output, _ = sample_run
    entries = invalid_entries(output)
    assert set(entries) == {"rec-0005", "rec-0006", "rec-0007-no-metadata.zip"}
    entry = entries["rec-0005"]
    assert entry["source_key"] == "rec-0005-invalid-response-time.zip"
    assert entry["validation_result"] == {
        "assessmentId": "number-match",
        "assessmentRevision": 1,  # an integer, as the original sent it
        "appId": "sample-app",
        "recordId": "rec-0005",
        "errors": {"taskData.json": ["'fast' is not of type 'number' (at /steps/0/responseTime)"]},
    }
    # Nothing of the invalid record reached a dataset, not even its valid files.
    assert not any(
        r["recordid"] == "rec-0005" for d in ("MotionRecord_v1", "ArchiveMetadata_v1") for r in read_dataset(output, d)
    )


def test_legacy_assessment_is_not_validated_and_maps_by_file_name(sample_run):
    output, _ = sample_run
    rows = read_dataset(output, "SurveyAnswers_v1")
    assert rows[0]["q3"] == {"other": "free text"} and rows[0]["recordid"] == "rec-0004"
    # metadata.json still goes by its schema's $id (the schema mapping comes
    # before the legacy mapping), but is not validated: it lacks the
    # schema's required appName and files.
    metadata = next(r for r in read_dataset(output, "ArchiveMetadata_v1") if r["recordid"] == "rec-0004")
    assert metadata["taskIdentifier"] == "legacy-survey" and "appName" not in metadata


def test_rerun_into_the_same_output_duplicates_nothing(registry, tmp_path):
    first = ingest_folder(SAMPLES / "archives", tmp_path, registry)
    before = {d: len(read_dataset(tmp_path, d)) for d in first["datasets"]}
    second = ingest_folder(SAMPLES / "archives", tmp_path, registry)
    assert second["archives"] == {"total": 8, "processed": 0, "invalid": 3, "skipped": 5}
    assert all(s["reason"].startswith("already ingested") for s in second["skipped"])
    assert {d: len(read_dataset(tmp_path, d)) for d in first["datasets"]} == before
    assert len(list((tmp_path / "invalid").glob("*.json"))) == 3


def test_parallel_and_serial_runs_write_the_same_rows(registry, tmp_path, sample_run):
    parallel_output, parallel = sample_run
    serial = ingest_folder(SAMPLES / "archives", tmp_path, registry, workers=1)
    assert serial["datasets"].keys() == parallel["datasets"].keys()
    for dataset in serial["datasets"]:
        key = lambda r: json.dumps(r, sort_keys=True)
        assert sorted(map(key, read_dataset(tmp_path, dataset))) == sorted(
            map(key, read_dataset(parallel_output, dataset))
        )


def test_a_partly_overlapping_rerun_adds_only_the_new_archives(registry, tmp_path):
    first_batch = tmp_path / "first"
    first_batch.mkdir()
    for name in ("rec-0001-number-match.zip", "rec-0002-number-match-v3.zip"):
        shutil.copy(SAMPLES / "archives" / name, first_batch / name)
        shutil.copy(SAMPLES / "archives" / f"{name}.metadata.json", first_batch / f"{name}.metadata.json")
    output = tmp_path / "out"
    ingest_folder(first_batch, output, registry)
    report = ingest_folder(SAMPLES / "archives", output, registry)
    assert report["archives"]["skipped"] == 2 and report["archives"]["processed"] == 3
    assert len(read_dataset(output, "MotionRecord_v1")) == 28


def test_recover_sample_export(registry, tmp_path):
    report = ingest_folder(SAMPLES / "exports", tmp_path, registry, profile="recover")
    assert report["archives"] == {"total": 1, "processed": 1, "invalid": 0, "skipped": 0}
    assert {d: e["rows"] for d, e in report["datasets"].items()} == {
        "FitbitIntradayCombined": 60,
        "FitbitSleepLogs": 4,
        "HealthKitV2Samples": 5,
        "HealthKitV2Samples_Deleted": 1,
    }
    skipped = {f["file"]: f["reason"] for f in report["files_skipped"]}
    assert skipped == {
        "HealthKitV2Samples_Weight_20240101-20240105.json": "empty data file",
        "Manifest.csv": "export manifest, not a data file",
    }
    row = read_dataset(tmp_path, "FitbitSleepLogs")[0]
    assert (row["cohort"], row["export_start_date"], row["export_end_date"]) == (
        "adults_v1",
        "2024-01-01T00:00:00",
        "2024-01-05T00:00:00",
    )
    assert {r["Type"] for r in read_dataset(tmp_path, "HealthKitV2Samples")} == {"Steps"}
    assert (tmp_path / "json" / "dataset=FitbitSleepLogs" / "cohort=adults_v1").is_dir()


def test_progress_counts_every_archive_once_across_workers_and_segments(registry, tmp_path):
    from bridge_downstream.common.storage import LocalStorage
    from bridge_downstream.config.profiles import load_profile
    from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
    from bridge_downstream.ingest.listing import ArchiveInput
    from bridge_downstream.ingest.run import run_ingest

    source, output = LocalStorage(SAMPLES / "archives"), LocalStorage(tmp_path)
    inputs = [ArchiveInput(source, p.name) for p in sorted((SAMPLES / "archives").glob("*.zip"))]
    reported: list[int] = []
    report = run_ingest(
        inputs,
        registry=registry,
        profile=load_profile("mtb"),
        output=output,
        sink=StorageInvalidSink(output),
        workers=2,
        archives_per_process=2,
        progress=reported.append,
    )
    assert sum(reported) == report["archives"]["total"] == 8
    assert all(count > 0 for count in reported)


def test_metadata_given_with_the_input_is_read_as_the_storage_gives_it(registry, tmp_path):
    """Names in any case and values of any type, as an event or a replayed entry may carry them."""
    from bridge_downstream.common.storage import LocalStorage
    from bridge_downstream.config.profiles import load_profile
    from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
    from bridge_downstream.ingest.listing import ArchiveInput
    from bridge_downstream.ingest.run import run_ingest

    source, output = LocalStorage(SAMPLES / "archives"), LocalStorage(tmp_path)
    given = {
        "RecordId": "rec-given",
        "AssessmentId": "number-match",
        "AssessmentRevision": 1,
        "UploadedOn": "2024-03-01T17:10:00.000Z",
        "appId": "sample-app",
    }
    report = run_ingest(
        [ArchiveInput(source, "rec-0001-number-match.zip", metadata=given)],
        registry=registry,
        profile=load_profile("mtb"),
        output=output,
        sink=StorageInvalidSink(output),
        workers=1,
    )
    assert report["archives"]["processed"] == 1
    rows = read_dataset(tmp_path, "ArchiveMetadata_v1")
    assert {row["recordid"] for row in rows} == {"rec-given"}
    assert rows[0]["assessmentrevision"] == "1" and rows[0]["assessmentid"] == "number-match"
