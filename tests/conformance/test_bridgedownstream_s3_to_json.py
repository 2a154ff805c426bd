"""Mirrors of Sage-Bionetworks/BridgeDownstream tests/test_s3_to_json_s3.py
(commit bc1c651a), TestS3ToJsonS3: the same inputs and expectations, asked
of this project's public functions (docs/conformance.md says which original
each test mirrors, and why the others do not apply)."""

from __future__ import annotations

import copy
import json
import zipfile

import pytest

from bridge_downstream.config.registry import PipelineRules, SchemaRegistry
from bridge_downstream.ingest.resolution import archive_map_schema, resolve_file, self_referenced_schemas
from bridge_downstream.ingest.validation import drop_accepted_deviations, validate_document
from project_paths import shared_path
from support import SPELLING_ARCHIVE, SPELLING_METADATA, ingest_folder, read_dataset

MOBILE_V2 = "https://sage-bionetworks.github.io/mobile-client-json/schemas/v2"
TASKDATA_COMBINED = (
    "https://raw.githubusercontent.com/MobileToolbox/MTBfx/937cdd1bf3b09815e97b53632c58208a14255b34/"
    "JSONschema/taskData_combinedSchema.json"
)
VERBAL_REASONING = (
    "https://raw.githubusercontent.com/MobileToolbox/MobileToolboxSchemas/0.9.0/VerbalReasoning/"
    "VerbalReasoningJSONSchema.json"
)

# The original's `archive_map` fixture, verbatim.
ARCHIVE_MAP = {
    "anyOf": [{"filename": "metadata.json", "isRequired": True, "jsonSchema": f"{MOBILE_V2}/ArchiveMetadata.json"}],
    "assessments": [
        {
            "assessmentIdentifier": "spelling",
            "assessmentRevision": 5,
            "files": [
                {
                    "filename": "taskData.json",
                    "contentType": "application/json",
                    "isRequired": True,
                    "jsonSchema": TASKDATA_COMBINED,
                }
            ],
        }
    ],
    "apps": [
        {
            "appId": "mobile-toolbox",
            "iOS": 0,
            "android": 0,
            "default": [
                {
                    "organization": "Sage Bionetworks",
                    "files": [
                        {
                            "filename": "assessmentResult.json",
                            "isRequired": True,
                            "jsonSchema": f"{MOBILE_V2}/AssessmentResultObject.json",
                        }
                    ],
                }
            ],
            "anyOf": [
                {"filename": "motion.json", "isRequired": False, "jsonSchema": f"{MOBILE_V2}/MotionRecord.json"},
                {
                    "filename": "microphone_levels.json",
                    "description": "The microphone levels.",
                    "contentType": "application/json",
                    "isRequired": False,
                    "jsonSchema": f"{MOBILE_V2}/AudioLevelRecord.json",
                },
            ],
        }
    ],
}

# The original's `metadata_json_schema` fixture, without its descriptions and examples.
METADATA_JSON_SCHEMA = {
    "$id": f"{MOBILE_V2}/ArchiveMetadata.json",
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "title": "ArchiveMetadata",
    "definitions": {
        "FileInfo": {
            "$id": "#FileInfo",
            "type": "object",
            "properties": {
                "filename": {"type": "string", "format": "uri-relative"},
                "timestamp": {"type": "string", "format": "date-time"},
                "contentType": {"type": "string"},
                "identifier": {"type": "string"},
                "stepPath": {"type": "string"},
                "jsonSchema": {"type": "string", "format": "uri"},
                "metadata": {},
            },
            "required": ["filename", "timestamp"],
            "additionalProperties": False,
        }
    },
    "properties": {
        "appName": {"type": "string"},
        "appVersion": {"type": "string"},
        "deviceInfo": {"type": "string"},
        "deviceTypeIdentifier": {"type": "string"},
        "files": {"type": "array", "items": {"$ref": "#/definitions/FileInfo"}},
    },
    "required": ["appName", "appVersion", "deviceInfo", "deviceTypeIdentifier", "files"],
}


def schema_of(file_name: str) -> str | None:
    """The schema URL the original fixture's archive map gives a file of a
    spelling revision 5 record of mobile-toolbox."""
    url, _ = archive_map_schema(
        ARCHIVE_MAP, file_name=file_name, app_id="mobile-toolbox", assessment_id="spelling", revision=5
    )
    return url


# test_get_json_schema_universal_file / _assessment_specific_file /
# _app_specific_file / _app_specific_default_file / _unlisted_filename
@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("metadata.json", f"{MOBILE_V2}/ArchiveMetadata.json"),
        ("taskData.json", TASKDATA_COMBINED),
        ("motion.json", f"{MOBILE_V2}/MotionRecord.json"),
        ("assessmentResult.json", f"{MOBILE_V2}/AssessmentResultObject.json"),
        ("jellybeanz.json", None),
    ],
)
def test_get_json_schema_from_the_archive_map(file_name, expected):
    assert schema_of(file_name) == expected


# test_update_json_schemas: every file of the real Spelling upload that the
# archive map names gets its schema (taskData, motion, metadata, microphone_levels).
@pytest.mark.shared_data
def test_update_json_schemas_names_every_mapped_file_of_the_spelling_upload():
    with zipfile.ZipFile(shared_path("bridge-archives", SPELLING_ARCHIVE)) as archive:
        names = archive.namelist()
    found = {name for name in names if schema_of(name) is not None}
    assert found == {"taskData.json", "motion.json", "metadata.json", "microphone_levels.json"}


# test_that_get_self_ref_schema_list_returns_empty_if_not_self_ref
@pytest.mark.shared_data
def test_self_ref_schema_list_is_empty_for_the_spelling_upload():
    with zipfile.ZipFile(shared_path("bridge-archives", SPELLING_ARCHIVE)) as archive:
        metadata = json.loads(archive.read("metadata.json"))
    assert self_referenced_schemas(metadata) == {}


# test_that_get_self_ref_schema_list_returns_nonempty_dict_if_self_ref (the
# original's `metadata_json_self_ref` fixture, its files[] entry verbatim).
def test_self_ref_schema_list_names_the_files_schema():
    metadata = {
        "schemaIdentifier": "MTBVerbalReasoning",
        "taskIdentifier": "VerbalReasoningV1",
        "files": [
            {
                "jsonSchema": VERBAL_REASONING,
                "filename": "taskData.json",
                "identifier": "VerbalReasoningV1",
                "contentType": "application/json",
                "timestamp": "2023-05-09T10:36:27.051-06:00",
            }
        ],
    }
    assert self_referenced_schemas(metadata) == {"taskData.json": VERBAL_REASONING}


# test_that_get_self_ref_schema_list_returns_empty_if_no_metadata_json: an
# archive without metadata.json has no document to read self-references from.
def test_self_ref_schema_list_is_empty_without_metadata_json():
    assert self_referenced_schemas(None) == {}


def original_mappings_registry(schemas: dict | None = None, archive_map: dict | None = None) -> SchemaRegistry:
    """A registry of the original's schema and dataset mappings
    (src/glue/resources/*_mapping.json, kept in the shared data)."""
    config = shared_path("bridge-downstream-config")
    return SchemaRegistry(
        version="conformance",
        archive_map=archive_map or {},
        schemas=schemas or {},
        aliases={},
        schema_mapping=json.loads((config / "schema_mapping.json").read_text()),
        dataset_mapping=json.loads((config / "dataset_mapping.json").read_text()),
        rules=PipelineRules(),
    )


# test_that_get_json_schema_returns_expected_settings_for_self_ref: the
# self-reference wins over the archive map.
@pytest.mark.shared_data
def test_self_reference_comes_before_the_archive_map():
    registry = original_mappings_registry(
        schemas={VERBAL_REASONING: {"$id": VERBAL_REASONING, "type": "object"}}, archive_map=ARCHIVE_MAP
    )
    resolution = resolve_file(
        registry,
        file_name="taskData.json",
        app_id="mobile-toolbox",
        assessment_id="spelling",
        revision=5,
        self_references={"taskData.json": VERBAL_REASONING},
    )
    assert (resolution.schema_url, resolution.source) == (VERBAL_REASONING, "self-reference")


# test_get_dataset_identifier_has_schema
@pytest.mark.shared_data
def test_dataset_identifier_of_a_schema():
    assert original_mappings_registry().dataset_for_schema(f"{MOBILE_V2}/ArchiveMetadata.json") == "ArchiveMetadata_v1"


def legacy_dataset(assessment_id: str, revision: str, file_name: str) -> str | None:
    resolution = resolve_file(
        original_mappings_registry(),
        file_name=file_name,
        app_id="mobile-toolbox",
        assessment_id=assessment_id,
        revision=int(revision),
        self_references={},
    )
    return resolution.dataset_id


# test_get_dataset_identifier_does_not_have_schema / _unlisted_assessment_id /
# _unlisted_assessment_revision / _unlisted_file_name
@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("assessment_id", "revision", "file_name", "expected"),
    [
        ("dccs", "5", "motion.json", "MotionRecord_v1"),
        ("jellybeanz", "5", "motion.json", None),
        ("dccs", "-1", "motion.json", None),
        ("dccs", "5", "jellybeanz.json", None),
    ],
)
def test_dataset_identifier_without_a_schema(assessment_id, revision, file_name, expected):
    assert legacy_dataset(assessment_id, revision, file_name) == expected


# test_validate_against_schema: the real upload's metadata.json is valid for
# the fixture's schema; requiring one more property gives exactly one error.
@pytest.mark.shared_data
def test_validate_against_schema():
    with zipfile.ZipFile(shared_path("bridge-archives", SPELLING_ARCHIVE)) as archive:
        document = json.loads(archive.read("metadata.json"))
    url = METADATA_JSON_SCHEMA["$id"]
    assert validate_document(original_mappings_registry(schemas={url: METADATA_JSON_SCHEMA}), url, document) == []
    stricter = copy.deepcopy(METADATA_JSON_SCHEMA)
    stricter["properties"]["cookies"] = {"type": "string"}
    stricter["required"].append("cookies")
    errors = validate_document(original_mappings_registry(schemas={url: stricter}), url, document)
    assert errors == ["'cookies' is a required property"]


def accepted_deviation_rules() -> list[dict]:
    """The original's remove_expected_validation_errors, as the shared data
    records it, in this project's pipeline-rules form."""
    facts = json.loads((shared_path("bridge-downstream-config") / "expected_validation_deviations.json").read_text())
    accepted = facts["accepted_validation_errors"]
    return [
        {"when": accepted["applies_when"], "file": file_name, "messages": messages}
        for file_name, messages in accepted["by_file"].items()
    ]


ANDROID = "{osName:'Android'}"
MOTION_ERRORS = [
    (
        "'acceleration' is not one of ['accelerometer', 'gyro', 'magnetometer', 'attitude', 'gravity', "
        "'magneticField', 'rotationRate', 'userAcceleration']"
    ),
    "'stepPath' is a required property",
    "None is not of type 'integer'",
]


# test_remove_expected_validation_error, case by case
@pytest.mark.shared_data
@pytest.mark.parametrize(
    "errors",
    [
        {},
        {"metadata.json": ["'appName' is a required property", "'files' is a required property"]},
        {"taskData.json": ["Additional properties are not allowed ('type' was unexpected)"]},
        {"weather.json": ["'type' is a required property"]},
        {"weather.json": ["'type' is a required property", "'type' is a required property"]},
        {"motion.json": MOTION_ERRORS},
    ],
)
def test_expected_android_errors_are_removed(errors):
    remaining = drop_accepted_deviations(
        errors, accepted_deviation_rules(), app_id="mobile-toolbox", client_info=ANDROID, assessment_id="flanker"
    )
    assert remaining == {}


# test_remove_expected_validation_error: no errors stay no errors for another
# client or app. The original also returned {} for *errors* of another client
# or app -- it never got there, its input had none; here they stay.
@pytest.mark.shared_data
@pytest.mark.parametrize(("app_id", "client_info"), [("mobile-toolbox", "{osName:'iOS'}"), ("example-app", ANDROID)])
def test_expected_errors_are_kept_for_other_clients_and_apps(app_id, client_info):
    rules = accepted_deviation_rules()
    assert drop_accepted_deviations({}, rules, app_id=app_id, client_info=client_info, assessment_id="flanker") == {}
    weather = {"weather.json": ["'type' is a required property"]}
    assert drop_accepted_deviations(
        weather, rules, app_id=app_id, client_info=client_info, assessment_id="flanker"
    ) == (weather)


# test_validate_data / test_validate_data_no_schemas: the invalid-record
# message keeps the original's field names, the revision an integer
# (validate_data's int(assessmentrevision)).
def test_validation_result_has_the_original_fields():
    from bridge_downstream.ingest import ValidationResult

    result = ValidationResult(assessment_id="dccs", assessment_revision="5", app_id="mobile-toolbox", record_id="r1")
    assert result.to_json() == {
        "assessmentId": "dccs",
        "assessmentRevision": 5,
        "appId": "mobile-toolbox",
        "recordId": "r1",
        "errors": {},
    }
    assert result.valid


# test_write_metadata_file_to_json_dataset / test_write_weather_file_to_json_dataset:
# every row carries the partition fields; metadata.json's rows also carry the
# upload's S3 metadata.
@pytest.mark.shared_data
def test_written_rows_carry_the_metadata_and_partition_fields(real_registry, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    archive = inputs / SPELLING_ARCHIVE
    archive.write_bytes(shared_path("bridge-archives", SPELLING_ARCHIVE).read_bytes())
    (inputs / f"{SPELLING_ARCHIVE}.metadata.json").write_text(json.dumps(SPELLING_METADATA))
    ingest_folder(inputs, tmp_path / "out", real_registry)
    partition_fields = ["assessmentid", "year", "month", "day", "recordid"]
    expected_fields = {
        "ArchiveMetadata_v1": [*partition_fields, *SPELLING_METADATA],
        "WeatherResult_v1": partition_fields,
    }
    for dataset_id, fields in expected_fields.items():
        rows = read_dataset(tmp_path / "out", dataset_id)
        assert len(rows) == 1, dataset_id
        for name in fields:
            assert name in rows[0], (dataset_id, name)
        assert (rows[0]["recordid"], rows[0]["assessmentid"]) == ("OCJByUtSrVTYtqObYp7XZV_J", "spelling")
        assert (rows[0]["year"], rows[0]["month"], rows[0]["day"]) == (2022, 2, 15)
