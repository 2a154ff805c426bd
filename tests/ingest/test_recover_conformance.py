"""recover's s3_to_json rules, mirrored: which dataset a file of a Care
Evolution export goes to, its subtype (``Type``), its export dates, and the
export's cohort (Sage-Bionetworks/recover tests/test_s3_to_json.py; each
mirror is named after the original, with its fixtures' inputs and expected
outputs). The deliberate differences are in docs/conformance.md."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import yaml

from bridge_downstream.config.profiles import Profile, ProfileError, load_profile
from bridge_downstream.ingest.ndjson_export import export_dataset_id, export_file
from project_paths import shared_path
from support import ingest_folder, read_dataset

RECOVER = load_profile("recover")
SUBTYPE_DATA_TYPES = RECOVER.subtype_data_types

# recover's fixture ``json_file_basenames_dict``: its data type -> a file name of it
JSON_FILE_BASENAMES = {
    "EnrolledParticipants": "EnrolledParticipants_20230103.json",
    "FitbitActivityLogs": "FitbitActivityLogs_20220111-20230103.json",
    "FitbitDailyData": "FitbitDailyData_20220111-20230103.json",
    "FitbitDevices": "FitbitDevices_20230103.json",
    "FitbitIntradayCombined": "FitbitIntradayCombined_20220111-20230103.json",
    "FitbitRestingHeartRates": "FitbitRestingHeartRates_20220111-20230103.json",
    "FitbitSleepLogs": "FitbitSleepLogs_20220111-20230103.json",
    "GoogleFitSamples": "GoogleFitSamples_20220111-20230103.json",
    "HealthKitV2ActivitySummaries": "HealthKitV2ActivitySummaries_20220111-20230103.json",
    "HealthKitV2ActivitySummaries_Deleted": "HealthKitV2ActivitySummaries_Deleted_20220111-20230103.json",
    "HealthKitV2Electrocardiogram": "HealthKitV2Electrocardiogram_Samples_20220111-20230103.json",
    "HealthKitV2Electrocardiogram_Deleted": "HealthKitV2Electrocardiogram_Samples_Deleted_20220111-20230103.json",
    "HealthKitV2Heartbeat": "HealthKitV2Heartbeat_Samples_20220401-20230112.json",
    "HealthKitV2Heartbeat_Deleted": "HealthKitV2Heartbeat_Samples_Deleted_20220401-20230112.json",
    "HealthKitV2Samples": "HealthKitV2Samples_AbdominalCramps_20220111-20230103.json",
    "HealthKitV2Samples_Deleted": "HealthKitV2Samples_AbdominalCramps_Deleted_20220111-20230103.json",
    "HealthKitV2Statistics": "HealthKitV2Statistics_HourlySteps_20201022-20211022.json",
    "HealthKitV2Statistics_Deleted": "HealthKitV2Statistics_HourlySteps_Deleted_20201022-20211022.json",
    "HealthKitV2Workouts": "HealthKitV2Workouts_20220111-20230103.json",
    "HealthKitV2Workouts_Deleted": "HealthKitV2Workouts_Deleted_20220111-20230103.json",
    "SymptomLog": "SymptomLog_20220401-20230112.json",
}

# recover's fixture ``sample_metadata``, as the file name that says it
# (subtype FakeSubtype, 2022-01-12 to 2023-01-14, cohort adults_v1)
SAMPLE_SUBTYPE_FILE = "HealthKitV2Samples_FakeSubtype_20220112-20230114.json"
SAMPLE_FILE = "FitbitDevices_20220112-20230114.json"
SAMPLE_START, SAMPLE_END = "2022-01-12T00:00:00", "2023-01-14T00:00:00"

REAL_EXPORT = ("bridge-archives", "recover-2023-01-13T21--08--51Z_TESTDATA.zip")


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _ingest(tmp_path: Path, registry, files: dict[str, str], key: str = "export.zip", metadata: dict | None = None):
    """One export at ``key`` under the input folder (with a metadata sidecar
    when given): (run report, output folder)."""
    folder, out = tmp_path / "in", tmp_path / "out"
    path = folder / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_zip(files))
    if metadata is not None:
        path.with_name(path.name + ".metadata.json").write_text(json.dumps(metadata))
    return ingest_folder(folder, out, registry, profile="recover"), out


def _records(out: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted((out / "reports").glob("*.records.jsonl"))
        for line in path.read_text().splitlines()
    ]


# -- get_metadata: the file name --------------------------------------------------


def test_get_metadata_startdate_enddate():
    parsed = export_file(JSON_FILE_BASENAMES["HealthKitV2Samples_Deleted"], SUBTYPE_DATA_TYPES)
    assert (parsed.start_date, parsed.end_date) == ("2022-01-11T00:00:00", "2023-01-03T00:00:00")


def test_get_metadata_no_startdate():
    parsed = export_file(JSON_FILE_BASENAMES["EnrolledParticipants"], SUBTYPE_DATA_TYPES)
    assert parsed.start_date is None
    assert parsed.end_date == "2023-01-03T00:00:00"


def test_get_metadata_subtype():
    assert export_file(JSON_FILE_BASENAMES["HealthKitV2Samples"], SUBTYPE_DATA_TYPES).subtype == "AbdominalCramps"
    assert export_file(JSON_FILE_BASENAMES["HealthKitV2Statistics"], SUBTYPE_DATA_TYPES).subtype == "HourlySteps"
    deleted = export_file(JSON_FILE_BASENAMES["HealthKitV2Samples_Deleted"], SUBTYPE_DATA_TYPES)
    assert deleted.subtype == "AbdominalCramps"


def test_get_metadata_no_subtype():
    with_subtype = {
        "HealthKitV2Samples",
        "HealthKitV2Samples_Deleted",
        "HealthKitV2Statistics",
        "HealthKitV2Statistics_Deleted",
    }
    subtypes = {
        data_type: export_file(name, SUBTYPE_DATA_TYPES).subtype for data_type, name in JSON_FILE_BASENAMES.items()
    }
    assert {data_type for data_type, subtype in subtypes.items() if subtype is not None} == with_subtype


def test_get_metadata_type():
    datasets = {
        data_type: export_dataset_id(name, SUBTYPE_DATA_TYPES) for data_type, name in JSON_FILE_BASENAMES.items()
    }
    assert datasets == {data_type: data_type for data_type in JSON_FILE_BASENAMES}


@pytest.mark.parametrize(
    "name",
    [
        "HealthKitV2Samples_20230103.json",  # a subtype data type without its subtype
        "HealthKitV2Samples_Deleted_20230103.json",
        "FitbitDevices.json",
        "FitbitDevices_2023-01-03.json",
        "Manifest.csv",
    ],
)
def test_a_name_outside_the_grammar_names_no_dataset(name):
    assert export_dataset_id(name, SUBTYPE_DATA_TYPES) is None


def test_a_deleted_file_of_any_type_goes_to_its_deleted_dataset():
    """recover took ``_Deleted`` only after a HealthKitV2 type (a Fitbit one
    went into the type's own dataset); here every type's does."""
    assert export_dataset_id("FitbitSleepLogs_Deleted_20230103.json") == "FitbitSleepLogs_Deleted"
    assert (
        export_dataset_id("HealthKitV2ActivitySummaries_Deleted_20230103.json")
        == "HealthKitV2ActivitySummaries_Deleted"
    )


def test_a_date_that_is_no_calendar_date_is_refused():
    with pytest.raises(ValueError):
        export_file("FitbitDevices_20231340.json")


# -- transform_json / _add_universal_properties: what each row gets ---------------


def test_transform_json_with_subtype(registry, tmp_path):
    report, out = _ingest(tmp_path, registry, {SAMPLE_SUBTYPE_FILE: '{"Type": "Apple\'s own"}\n'})
    assert report["archives"]["processed"] == 1
    [row] = read_dataset(out, "HealthKitV2Samples")
    assert row["Type"] == "FakeSubtype"
    assert (row["export_start_date"], row["export_end_date"]) == (SAMPLE_START, SAMPLE_END)


def test_add_universal_properties_start_date(registry, tmp_path):
    _, out = _ingest(tmp_path, registry, {SAMPLE_FILE: "{}\n"})
    assert read_dataset(out, "FitbitDevices")[0]["export_start_date"] == SAMPLE_START


def test_add_universal_properties_no_start_date(registry, tmp_path):
    _, out = _ingest(tmp_path, registry, {"FitbitDevices_20230114.json": "{}\n"})
    [row] = read_dataset(out, "FitbitDevices")
    assert "export_start_date" in row and row["export_start_date"] is None


def test_add_universal_properties_generic(registry, tmp_path):
    _, out = _ingest(tmp_path, registry, {SAMPLE_FILE: "{}\n"})
    [row] = read_dataset(out, "FitbitDevices")
    assert (row["export_end_date"], row["cohort"]) == (SAMPLE_END, "adults_v1")


def test_upload_file_to_json_dataset_s3_key(registry, tmp_path):
    """recover's key ``…/dataset=<type>/cohort=<cohort>/<file>``: the same
    dataset and cohort folders, part files named by this project."""
    _, out = _ingest(tmp_path, registry, {SAMPLE_SUBTYPE_FILE: "{}\n"}, key="recover/pilot/pediatric_v1/x.zip")
    parts = sorted(p.relative_to(out).as_posix() for p in (out / "json").rglob("*.ndjson"))
    assert len(parts) == 1
    assert parts[0].startswith("json/dataset=HealthKitV2Samples/cohort=pediatric_v1/part-")


def test_every_file_keeps_its_own_export_dates(registry, tmp_path):
    """Per file, as recover: two files of one export, two pairs of dates (no manifest consulted)."""
    files = {
        "FitbitDevices_20230114.json": '{"Device": "a"}\n',
        "FitbitSleepLogs_20230110-20230113.json": '{"LogId": "1"}\n',
        "Manifest.csv": "ExportStartDate,ExportEndDate\n2020-01-01T00:00:00+00:00,2020-01-02T00:00:00+00:00\n",
    }
    _, out = _ingest(tmp_path, registry, files)
    devices, logs = read_dataset(out, "FitbitDevices")[0], read_dataset(out, "FitbitSleepLogs")[0]
    assert (devices["export_start_date"], devices["export_end_date"]) == (None, "2023-01-14T00:00:00")
    assert (logs["export_start_date"], logs["export_end_date"]) == ("2023-01-10T00:00:00", "2023-01-13T00:00:00")


def test_subtype_files_share_their_types_dataset(registry, tmp_path):
    files = {
        "HealthKitV2Samples_Steps_20230112-20230114.json": '{"HealthKitSampleKey": "s1"}\n{"HealthKitSampleKey": "s2"}\n',
        "HealthKitV2Samples_Weight_20230112-20230114.json": '{"HealthKitSampleKey": "w1"}\n',
        "HealthKitV2Statistics_HourlySteps_20230112-20230114.json": '{"HealthKitStatisticKey": "h1"}\n',
        "HealthKitV2Heartbeat_Samples_20230112-20230114.json": '{"HealthKitHeartbeatSampleKey": "b1"}\n',
        "HealthKitV2Heartbeat_Samples_Deleted_20230112-20230114.json": '{"HealthKitHeartbeatSampleKey": "b0"}\n',
    }
    report, out = _ingest(tmp_path, registry, files)
    assert {d: e["rows"] for d, e in report["datasets"].items()} == {
        "HealthKitV2Samples": 3,
        "HealthKitV2Statistics": 1,
        "HealthKitV2Heartbeat": 1,
        "HealthKitV2Heartbeat_Deleted": 1,
    }
    samples = {r["HealthKitSampleKey"]: r["Type"] for r in read_dataset(out, "HealthKitV2Samples")}
    assert samples == {"s1": "Steps", "s2": "Steps", "w1": "Weight"}
    assert read_dataset(out, "HealthKitV2Statistics")[0]["Type"] == "HourlySteps"
    assert "Type" not in read_dataset(out, "HealthKitV2Heartbeat")[0]


# -- main: the cohort ---------------------------------------------------------------


def test_an_export_without_metadata_takes_its_cohort_from_the_key(registry, tmp_path):
    report, out = _ingest(
        tmp_path, registry, {SAMPLE_FILE: "{}\n"}, key="recover/pilot/pediatric_v1/2023-01-13T21--08--51Z.zip"
    )
    assert report["archives"] == {"total": 1, "processed": 1, "invalid": 0, "skipped": 0}
    assert read_dataset(out, "FitbitDevices")[0]["cohort"] == "pediatric_v1"
    assert (out / "json" / "dataset=FitbitDevices" / "cohort=pediatric_v1").is_dir()
    assert not (out / "json" / "dataset=FitbitDevices" / "cohort=adults_v1").exists()


def test_the_profiles_cohort_applies_only_where_the_key_names_none(registry, tmp_path):
    report, out = _ingest(tmp_path, registry, {SAMPLE_FILE: "{}\n"}, key="export.zip")
    assert report["archives"]["processed"] == 1
    assert read_dataset(out, "FitbitDevices")[0]["cohort"] == "adults_v1"


def test_a_key_and_metadata_that_name_two_cohorts_are_invalid(registry, tmp_path):
    report, out = _ingest(
        tmp_path,
        registry,
        {SAMPLE_FILE: "{}\n"},
        key="recover/pilot/pediatric_v1/x.zip",
        metadata={"cohort": "adults_v1"},
    )
    assert report["archives"]["invalid"] == 1
    [record] = [r for r in _records(out) if r.get("status") == "invalid"]
    assert record["reason"] == "cohort conflict: the key names 'pediatric_v1', the metadata 'adults_v1'"
    assert read_dataset(out, "FitbitDevices") == []


def test_one_export_under_two_cohorts_is_two_archives(registry, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    for cohort in ("adults_v1", "pediatric_v1"):
        path = folder / "recover" / "pilot" / cohort / "same.zip"
        path.parent.mkdir(parents=True)
        path.write_bytes(_zip({SAMPLE_FILE: '{"Device": "d"}\n'}))
    report = ingest_folder(folder, out, registry, profile="recover")
    assert report["archives"]["processed"] == 2
    assert sorted(r["cohort"] for r in read_dataset(out, "FitbitDevices")) == ["adults_v1", "pediatric_v1"]


@pytest.mark.parametrize(
    ("key", "cohort"),
    [
        ("recover/pilot/pediatric_v1/export.zip", "pediatric_v1"),
        ("recover/pilot/adults_v1/export.zip", "adults_v1"),
        ("recover/pilot/export.zip", None),  # the pipeline's prefix and no cohort folder
        ("x/recover/pilot/adults_v1/export.zip", None),  # the pattern is the whole key
        ("export.zip", None),
    ],
)
def test_the_cohort_of_a_key(key, cohort):
    assert RECOVER.cohort_of_key(key) == cohort


def test_a_literal_segment_of_the_pattern_must_be_there():
    profile = Profile.from_mapping(
        {
            "name": "p",
            "kind": "ndjson-export",
            "identity_fields": ["sourcefile"],
            "cohort_key_pattern": "exports/{cohort}/{export}",
        }
    )
    assert profile.cohort_of_key("exports/pediatric_v1/x.zip") == "pediatric_v1"
    assert profile.cohort_of_key("imports/pediatric_v1/x.zip") is None


@pytest.mark.parametrize("pattern", ["{namespace}/{export}", "{cohort}/{cohort}", "x{cohort}/{export}", 3])
def test_a_pattern_without_one_cohort_segment_is_refused(pattern):
    with pytest.raises(ProfileError, match="cohort_key_pattern"):
        Profile.from_mapping(
            {"name": "p", "kind": "ndjson-export", "identity_fields": ["sourcefile"], "cohort_key_pattern": pattern}
        )


# -- the real export, against recover's tables --------------------------------------


@pytest.fixture(scope="module")
def recover_tables() -> dict:
    return yaml.safe_load(shared_path("recover-config", "table_columns.yaml").read_text())["tables"]


@pytest.fixture(scope="module")
def real_export(registry, tmp_path_factory):
    """The real export ingested without metadata, at a key naming its cohort: (report, output, zip path)."""
    source = shared_path(*REAL_EXPORT)
    root = tmp_path_factory.mktemp("real-recover-in")
    folder = root / "recover" / "pilot" / "pediatric_v1"
    folder.mkdir(parents=True)
    (folder / source.name).write_bytes(source.read_bytes())
    out = tmp_path_factory.mktemp("real-recover-out")
    return ingest_folder(root, out, registry, profile="recover"), out, source


@pytest.mark.shared_data
def test_every_file_of_the_real_export_names_one_of_recovers_tables(recover_tables):
    with zipfile.ZipFile(shared_path(*REAL_EXPORT)) as archive:
        names = [n for n in archive.namelist() if n != "Manifest.csv"]
    datasets = {name: export_dataset_id(name, SUBTYPE_DATA_TYPES) for name in names}
    assert len(names) == 109 and None not in datasets.values()
    assert set(datasets.values()) <= set(recover_tables)
    assert sorted(set(datasets.values())) == [
        "EnrolledParticipants",
        "FitbitActivityLogs",
        "FitbitDailyData",
        "FitbitDevices",
        "FitbitIntradayCombined",
        "FitbitRestingHeartRates",
        "FitbitSleepLogs",
        "GoogleFitSamples",
        "HealthKitV2ActivitySummaries",
        "HealthKitV2Electrocardiogram",
        "HealthKitV2Heartbeat",
        "HealthKitV2Heartbeat_Deleted",
        "HealthKitV2Samples",
        "HealthKitV2Samples_Deleted",
        "HealthKitV2Statistics",
        "HealthKitV2Workouts",
        "SymptomLog",
    ]


@pytest.mark.shared_data
def test_recovers_export_date_columns_are_the_profiles(recover_tables):
    enrichment = set(RECOVER.enrichment_columns)
    for table, definition in recover_tables.items():
        export_columns = {c["Name"]: c["Type"] for c in definition["columns"] if c["Name"].startswith("export_")}
        assert export_columns == {"export_start_date": "string", "export_end_date": "string"}, table
        assert export_columns.keys() <= enrichment
        assert [k["Name"] for k in definition["partition_keys"]] == list(RECOVER.partition_fields), table
    # recover's names; published as UTC timestamps, where recover kept the text (a deliberate difference)
    assert {RECOVER.enrichment_columns[name] for name in ("export_start_date", "export_end_date")} == {"timestamp"}


@pytest.mark.shared_data
def test_transform_block_empty_file(real_export):
    report, _, _ = real_export
    skipped = {f["file"]: f["reason"] for f in report["files_skipped"]}
    assert skipped["HealthKitV2Samples_Weight_20230112-20230114.json"] == "empty data file"
    assert "HealthKitV2Samples" not in report["datasets"]


@pytest.mark.shared_data
def test_transform_block_non_empty_file_all_blocks(real_export):
    report, out, _ = real_export
    assert report["datasets"]["FitbitSleepLogs"]["rows"] == 12
    assert len(read_dataset(out, "FitbitSleepLogs")) == 12


@pytest.mark.shared_data
def test_write_file_to_json_dataset_record_consistency(real_export):
    _, out, source = real_export
    with zipfile.ZipFile(source) as archive:
        input_line_count = len(archive.read("FitbitDevices_20230114.json").splitlines())
    rows = read_dataset(out, "FitbitDevices")
    assert len(rows) == input_line_count == 9
    assert {(r["export_start_date"], r["export_end_date"]) for r in rows} == {(None, "2023-01-14T00:00:00")}


@pytest.mark.shared_data
def test_write_file_to_json_dataset_multiple_parts(real_export):
    report, out, source = real_export
    with zipfile.ZipFile(source) as archive:
        input_line_count = len(archive.read("FitbitIntradayCombined_20230112-20230114.json").splitlines())
    assert report["datasets"]["FitbitIntradayCombined"]["rows"] == input_line_count == 59_005
    assert len(read_dataset(out, "FitbitIntradayCombined")) == input_line_count


@pytest.mark.shared_data
def test_the_real_export_without_metadata_is_processed_in_its_keys_cohort(real_export):
    report, out, _ = real_export
    assert report["archives"] == {"total": 1, "processed": 1, "invalid": 0, "skipped": 0}
    assert {r["cohort"] for r in read_dataset(out, "SymptomLog")} == {"pediatric_v1"}
    assert sorted(report["datasets"]) == [
        "EnrolledParticipants",
        "FitbitActivityLogs",
        "FitbitDailyData",
        "FitbitDevices",
        "FitbitIntradayCombined",
        "FitbitRestingHeartRates",
        "FitbitSleepLogs",
        "SymptomLog",
    ]
