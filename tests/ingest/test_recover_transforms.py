"""Recover's field transforms of export rows (ingest/export_transforms.py).

The first tests mirror recover's own (Sage-Bionetworks/recover
tests/test_s3_to_json.py, commit 6a9e4ae4), named after them, with their
inputs and expected outputs."""

import copy
import json
import logging
import zipfile

import duckdb
import pytest
import yaml

from bridge_downstream.common import jsoncodec, layout
from bridge_downstream.config.profiles import FieldTransform, Profile, ProfileError, load_profile
from bridge_downstream.ingest.export_transforms import (
    OFFSET_KEY,
    TransformedRows,
    export_rows,
    offset_array,
    transform_row,
)
from bridge_downstream_cli.main import main
from project_paths import shared_path
from support import build_sample_registry, ingest_folder, read_dataset, write_archive

RECOVER = load_profile("recover")
LOGGER = "bridge_downstream.ingest.export_transforms"
CUSTOM_FIELDS_SYMPTOMS = (FieldTransform("json_text", ("CustomFields", "Symptoms"), malformed="empty_list"),)

# recover's s3_to_json.transform_json, garmin_transform_types: data type -> field -> (metric, type)
RECOVER_GARMIN_TRANSFORMS = {
    "GarminDailySummary": {"TimeOffsetHeartRateSamples": ("HeartRate", "int")},
    "GarminHrvSummary": {"HrvValues": ("Hrv", "int")},
    "GarminPulseOxSummary": {"TimeOffsetSpo2Values": ("Spo2Value", "int")},
    "GarminRespirationSummary": {"TimeOffsetEpochToBreaths": ("Breaths", "float")},
    "GarminSleepSummary": {
        "TimeOffsetSleepSpo2": ("Spo2Value", "int"),
        "TimeOffsetSleepRespiration": ("Breaths", "float"),
    },
    "GarminStressDetailSummary": {
        "TimeOffsetStressLevelValues": ("StressLevel", "int"),
        "TimeOffsetBodyBatteryValues": ("BodyBattery", "int"),
    },
    "GarminThirdPartyDailySummary": {"TimeOffsetHeartRateSamples": ("HeartRate", "int")},
    "GarminHealthSnapshotSummary": {"Summaries.EpochSummaries": ("Value", "float")},
}


# -- recover's tests ---------------------------------------------------------------


def test_transform_object_to_array_of_objects():
    transformed, failed = offset_array({"0": 60.0, "1": 61.2, "2": "99"}, "value", "int")
    assert transformed == [
        {OFFSET_KEY: 0, "value": 60},
        {OFFSET_KEY: 1, "value": 61},
        {OFFSET_KEY: 2, "value": 99},
    ]
    assert failed == 0


def test_log_error_transform_object_to_array_of_objects(caplog):
    transform = (FieldTransform("offset_array", ("Samples",), metric="HeartRate", metric_type="int"),)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        row = transform_row({"Samples": {"a": 1, "2": "x", "3": 4}}, transform, "file line 1")
    assert row["Samples"] == [
        {OFFSET_KEY: None, "HeartRate": 1},
        {OFFSET_KEY: 2, "HeartRate": None},
        {OFFSET_KEY: 3, "HeartRate": 4},
    ]
    assert [r.getMessage() for r in caplog.records] == [
        "file line 1: 2 offsets or values of Samples did not convert; null"
    ]


def test_transform_json_symptom_log():
    transformed_value = {"a": 1, "b": 2}
    row = transform_row({"Value": json.dumps(transformed_value)}, RECOVER.transforms["SymptomLog"])
    assert row["Value"] == transformed_value


def test_cast_custom_fields_to_array():
    sample_symptoms = {"id": "123", "symptom": "sick"}
    row = transform_row(
        {"CustomFields": {"Symptoms": json.dumps(sample_symptoms)}}, RECOVER.transforms["EnrolledParticipants"]
    )
    assert row["CustomFields"]["Symptoms"] == sample_symptoms


def test_cast_custom_fields_to_array_malformatted_str(caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        row = transform_row(
            {"CustomFields": {"Symptoms": r'[{\\\"id\\\": "123", \\\"symptom\\\": "sick"}]'}},
            RECOVER.transforms["EnrolledParticipants"],
        )
    assert len(caplog.records) == 1
    assert row["CustomFields"]["Symptoms"] == []


def test_transform_garmin_data_types_one_level_hierarchy():
    row = transform_row(
        {"TimeOffsetHeartRateSamples": {"0": 60.0, "1": 61.0, "2": 99.0}},
        RECOVER.transforms["GarminDailySummary"],
    )
    assert row["TimeOffsetHeartRateSamples"] == [
        {"OffsetInSeconds": 0, "HeartRate": 60},
        {"OffsetInSeconds": 1, "HeartRate": 61},
        {"OffsetInSeconds": 2, "HeartRate": 99},
    ]


def test_transform_garmin_data_types_two_level_hierarchy():
    epoch_summaries = {"0": 60.0, "1": 61.0, "2": 99.0}
    transformed_epoch_summaries = [
        {"OffsetInSeconds": 0, "Value": 60.0},
        {"OffsetInSeconds": 1, "Value": 61.0},
        {"OffsetInSeconds": 2, "Value": 99.0},
    ]
    row = transform_row(
        {"Summaries": [{"EpochSummaries": epoch_summaries, "Dummy": 1}, {"EpochSummaries": epoch_summaries}]},
        RECOVER.transforms["GarminHealthSnapshotSummary"],
    )
    assert row["Summaries"][0]["EpochSummaries"] == transformed_epoch_summaries
    assert row["Summaries"][0]["Dummy"] == 1
    assert row["Summaries"][1]["EpochSummaries"] == transformed_epoch_summaries


# -- beyond recover's tests ----------------------------------------------------------


def test_the_recover_profile_names_recovers_transforms():
    garmin = {
        data_type: {".".join(t.path): (t.metric, t.metric_type) for t in transforms}
        for data_type, transforms in RECOVER.transforms.items()
        if data_type.startswith("Garmin")
    }
    assert garmin == RECOVER_GARMIN_TRANSFORMS
    assert all(t.kind == "offset_array" for data_type in garmin for t in RECOVER.transforms[data_type])
    assert RECOVER.transforms["SymptomLog"] == (FieldTransform("json_text", ("Value",), malformed="fail"),)
    assert RECOVER.transforms["EnrolledParticipants"] == (
        FieldTransform("json_text", ("CustomFields", "Symptoms"), malformed="empty_list"),
        FieldTransform("json_text", ("CustomFields", "Treatments"), malformed="empty_list"),
    )


def test_empty_custom_fields_text_is_an_empty_list_without_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        row = transform_row(
            {"CustomFields": {"Symptoms": "", "Treatments": "[]"}}, RECOVER.transforms["EnrolledParticipants"]
        )
    assert row["CustomFields"] == {"Symptoms": [], "Treatments": []}
    assert caplog.records == []


def test_a_rewrite_leaves_the_parsed_row_as_it_was():
    row = {"CustomFields": {"Symptoms": '[{"id": "a"}]', "Site": "x"}, "Other": [1]}
    before = copy.deepcopy(row)
    shaped = transform_row(row, CUSTOM_FIELDS_SYMPTOMS)
    assert row == before
    assert shaped == {"CustomFields": {"Symptoms": [{"id": "a"}], "Site": "x"}, "Other": [1]}


def test_fields_absent_or_not_text_are_kept():
    transforms = RECOVER.transforms["EnrolledParticipants"] + RECOVER.transforms["GarminSleepSummary"]
    row = {"CustomFields": {"Symptoms": [{"id": "a"}], "Treatments": None}, "TimeOffsetSleepSpo2": [1, 2]}
    assert transform_row(row, transforms) == row
    assert transform_row({"ParticipantIdentifier": "p"}, transforms) == {"ParticipantIdentifier": "p"}


def test_offset_values_that_are_null_or_not_finite_are_null():
    transformed, failed = offset_array({"0": None, "1": "1e999", "2": "nan", "3": "2.5"}, "Breaths", "float")
    assert transformed == [
        {OFFSET_KEY: 0, "Breaths": None},
        {OFFSET_KEY: 1, "Breaths": None},
        {OFFSET_KEY: 2, "Breaths": None},
        {OFFSET_KEY: 3, "Breaths": 2.5},
    ]
    assert failed == 2  # a null stays null: nothing failed to convert


def test_a_dataset_without_transforms_gets_the_plain_encoder():
    shared = {"cohort": "c", "sourcefile": "f.json"}
    assert type(export_rows(RECOVER, "FitbitSleepLogs", shared)) is jsoncodec.Rows
    assert type(export_rows(RECOVER, "SymptomLog", shared)) is TransformedRows
    # Per data type as recover matched it: a Deleted companion is not rewritten.
    assert type(export_rows(RECOVER, "SymptomLog_Deleted", shared)) is jsoncodec.Rows


def test_the_transformed_line_is_the_plain_line_of_the_rewritten_row():
    shared = {"cohort": "c", "sourcefile": "SymptomLog_20230101.json"}
    row = {"DataPointKey": "k", "Value": '{"notes": "n", "symptoms": [{"id": "s", "severity": 2}]}'}
    line = export_rows(RECOVER, "SymptomLog", shared).line(row, 4)
    assert json.loads(line) == {
        "DataPointKey": "k",
        "Value": {"notes": "n", "symptoms": [{"id": "s", "severity": 2}]},
        "cohort": "c",
        "sourcefile": "SymptomLog_20230101.json",
        "sourceindex": 4,
    }


def profile_with(transforms) -> dict:
    return {"name": "p", "kind": "ndjson-export", "identity_fields": ["sourcefile"], "transforms": transforms}


@pytest.mark.parametrize(
    ("transforms", "problem"),
    [
        ({"A": [{"field": "x", "kind": "yaml_text"}]}, "kind is one of"),
        ({"A": [{"field": "x..y", "kind": "json_text"}]}, "dotted path"),
        ({"A": [{"field": "x", "kind": "json_text", "malformed": "skip"}]}, "malformed is one of"),
        ({"A": [{"field": "x", "kind": "offset_array", "type": "int"}]}, "names its metric"),
        ({"A": [{"field": "x", "kind": "offset_array", "metric": "m", "type": "str"}]}, "type is one of"),
        ({"A": [{"field": "x", "kind": "json_text", "metric": "m"}]}, "belong to an offset_array"),
        ({"A": [{"field": "x", "kind": "json_text", "fallback": []}]}, "unknown keys"),
        ({"A": []}, "non-empty list"),
        ({"A": ["x"]}, "is not a mapping"),
        (["A"], "must map datasets"),
    ],
)
def test_a_profile_with_a_transform_it_cannot_apply_does_not_load(transforms, problem):
    with pytest.raises(ProfileError, match=problem):
        Profile.from_mapping(profile_with(transforms))


def test_a_profile_without_transforms_has_none():
    assert Profile.from_mapping(profile_with(None)).transforms == {}
    assert load_profile("mtb").transforms == {}


# -- through ingest and publish --------------------------------------------------


def query(output, sql: str) -> list[dict]:
    with duckdb.connect(str(output / layout.LOCAL_CATALOG_NAME), read_only=True) as connection:
        cursor = connection.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def run_recover(folder, tmp_path) -> None:
    build_sample_registry(tmp_path / "registry")
    arguments = ["--registry", str(tmp_path / "registry"), "--output", str(tmp_path / "out"), "--profile", "recover"]
    assert main(["run", str(folder), *arguments, "--no-progress", "--engine", "arrow"]) == 0


def write_export(path, files: dict[str, list[dict]]) -> None:
    members = {name: "".join(json.dumps(row) + "\n" for row in rows) for name, rows in files.items()}
    write_archive(path, members, {"cohort": "adults_v1"})


def test_a_symptom_log_value_that_is_not_json_makes_the_export_invalid(registry, tmp_path):
    write_export(
        tmp_path / "in" / "export.zip",
        {
            "SymptomLog_20230112-20230114.json": [
                {"DataPointKey": "a", "Value": "{}"},
                {"DataPointKey": "b", "Value": "{"},
            ]
        },
    )
    report = ingest_folder(tmp_path / "in", tmp_path / "out", registry, profile="recover")
    assert report["archives"]["invalid"] == 1 and report["archives"]["processed"] == 0
    (entry,) = report["invalid"]
    assert entry["reason"].startswith("SymptomLog_20230112-20230114.json line 2: Value is not JSON text (")
    assert read_dataset(tmp_path / "out", "SymptomLog") == []


def test_garmin_offsets_and_symptom_log_become_child_tables(tmp_path):
    write_export(
        tmp_path / "in" / "export.zip",
        {
            "GarminDailySummary_20230112-20230114.json": [
                {"ParticipantIdentifier": "p", "SummaryId": "s1", "TimeOffsetHeartRateSamples": {"0": 62, "15": 63}}
            ],
            "SymptomLog_20230112-20230114.json": [
                {
                    "DataPointKey": "k",
                    "ParticipantIdentifier": "p",
                    "Value": '{"notes": "n", "symptoms": [{"id": "x"}]}',
                }
            ],
        },
    )
    run_recover(tmp_path / "in", tmp_path)
    samples = 'SELECT "OffsetInSeconds", "HeartRate" FROM dataset_garmindailysummary_timeoffsetheartratesamples'
    assert query(tmp_path / "out", samples + ' ORDER BY "OffsetInSeconds"') == [
        {"OffsetInSeconds": 0, "HeartRate": 62},
        {"OffsetInSeconds": 15, "HeartRate": 63},
    ]
    assert query(tmp_path / "out", 'SELECT "Value_notes" FROM dataset_symptomlog') == [{"Value_notes": "n"}]


@pytest.mark.shared_data
def test_the_real_export_publishes_recovers_tables(tmp_path):
    """After a run of the real export, the tables recover made from the parsed
    text exist with the fields its table definitions give them."""
    source = shared_path("bridge-archives", "recover-2023-01-13T21--08--51Z_TESTDATA.zip")
    definitions = yaml.safe_load(shared_path("recover-config", "table_columns.yaml").read_text())["tables"]
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / source.name).symlink_to(source)
    (folder / f"{source.name}.metadata.json").write_text(json.dumps({"cohort": "adults_v1"}))
    run_recover(folder, tmp_path)

    def columns(table: str) -> set[str]:
        sql = f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}'"
        return {row["column_name"] for row in query(tmp_path / "out", sql)}

    def recover_type(data_type: str, column: str) -> str:
        (type_text,) = [c["Type"] for c in definitions[data_type]["columns"] if c["Name"] == column]
        return type_text

    with zipfile.ZipFile(source) as archive:
        symptom_log = [json.loads(line) for line in archive.open("SymptomLog_20230112-20230114.json")]
    value_fields = {key for row in symptom_log for key in json.loads(row["Value"])}
    assert value_fields <= {"symptoms", "treatments", "notes", "overallFeeling", "icon"}
    assert {f"Value_{key}" for key in value_fields} <= columns("dataset_symptomlog")
    assert "Value" not in columns("dataset_symptomlog")
    # recover's table spells it DatapointKey: the profile's type applies to the data's key, no twin column
    assert "DataPointKey" in columns("dataset_symptomlog") and "DatapointKey_2" not in columns("dataset_symptomlog")
    assert {"severity", "ParticipantIdentifier", "cohort"} <= columns("dataset_symptomlog_value_symptoms")
    assert columns("dataset_symptomlog_value_treatments")
    symptom_columns = columns("dataset_enrolledparticipants_customfields_symptoms")
    assert {"name", "color", "severityTracking", "ParticipantIdentifier"} <= symptom_columns
    assert {"name", "color"} <= columns("dataset_enrolledparticipants_customfields_treatments")
    # recover's own tables: the same fields, arrays where it made child tables
    assert "Symptoms:array<struct<id:string,name:string,color:string,severityTracking:string" in recover_type(
        "EnrolledParticipants", "CustomFields"
    )
    assert recover_type("SymptomLog", "Value").startswith("struct<symptoms:array<struct<id:string,severity:int>>")

    symptom_count = sum(len(json.loads(row["Value"]).get("symptoms", [])) for row in symptom_log)
    assert symptom_count > 0
    assert query(tmp_path / "out", "SELECT count(*) AS n FROM dataset_symptomlog_value_symptoms") == [
        {"n": symptom_count}
    ]
