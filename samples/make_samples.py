"""Writes the bundled sample data: a small schema registry source, Bridge-style
upload archives with their metadata sidecars, and a recover-style export.

Everything here is invented for the demo and the tests. The output is
deterministic (fixed ZIP timestamps), so rerunning this script changes no file.

    python samples/make_samples.py
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = "https://bridge-downstream.invalid/schemas"
STAMP = (2024, 3, 1, 12, 0, 0)


def dump(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")


def write_zip(path: Path, members: dict[str, bytes | str | object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            if not isinstance(content, (bytes, str)):
                content = json.dumps(content, indent=1)
            info = zipfile.ZipInfo(name, STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)


# -- registry source ----------------------------------------------------------

COMMON = {
    "$id": f"{BASE}/v1/Common.json",
    "$schema": "http://json-schema.org/draft-07/schema#",
    "definitions": {
        "interaction": {
            "type": "object",
            "properties": {"controlEvent": {"type": "string"}, "timestamp": {"type": "string"}},
            "required": ["controlEvent"],
        },
        "responseTime": {"type": "number", "minimum": 0},
    },
}

ARCHIVE_METADATA = {
    "$id": f"{BASE}/v1/ArchiveMetadata.json",
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "appName": {"type": "string"},
        "appVersion": {"type": "string"},
        "taskIdentifier": {"type": "string"},
        "startDate": {"type": "string", "format": "date-time"},
        "endDate": {"type": "string", "format": "date-time"},
        "files": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "filename": {"type": "string"},
                    "timestamp": {"type": "string"},
                    "contentType": {"type": "string"},
                    "jsonSchema": {"type": "string"},
                },
                "required": ["filename"],
            },
        },
    },
    "required": ["appName", "files"],
}


def task_data_schema(version: int) -> dict:
    step = {
        "type": "object",
        "properties": {
            "identifier": {"type": "string"},
            "response": {"type": "string"},
            "responseTime": {"$ref": f"{BASE}/v1/Common.json#/definitions/responseTime"},
            "interactions": {"type": "array", "items": {"$ref": "../v1/Common.json#/definitions/interaction"}},
        },
        "required": ["identifier", "responseTime"],
    }
    properties = {
        "taskIdentifier": {"type": "string"},
        "taskRunUUID": {"type": "string"},
        "startDate": {"type": "string"},
        "endDate": {"type": "string"},
        "scores": {
            "type": "object",
            "properties": {"rawScore": {"type": "integer"}, "theta": {"type": "number"}},
        },
        "steps": {"type": "array", "items": step},
    }
    if version == 2:
        properties["locale"] = {"type": "string"}
    return {
        "$id": f"{BASE}/v{version}/TaskData.json",
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": properties,
        "required": ["taskIdentifier", "steps"],
    }


MOTION_RECORD = {
    "$id": f"{BASE}/v1/MotionRecord.json",
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "stepPath": {"type": "string"},
            "timestamp": {"type": "number"},
            "sensorType": {"type": "string", "enum": ["accelerometer", "gyro", "magnetometer"]},
            "x": {"type": "number"},
            "y": {"type": "number"},
            "z": {"type": "number"},
        },
        "required": ["stepPath", "timestamp"],
    },
}


def write_registry_source() -> None:
    source = HERE / "registry-src"
    dump(source / "schemas" / "v1" / "Common.json", COMMON)
    dump(source / "schemas" / "v1" / "ArchiveMetadata.json", ARCHIVE_METADATA)
    dump(source / "schemas" / "v1" / "TaskData.json", task_data_schema(1))
    dump(source / "schemas" / "v2" / "TaskData.json", task_data_schema(2))
    dump(source / "schemas" / "v1" / "MotionRecord.json", MOTION_RECORD)
    task_file = lambda version: {
        "filename": "taskData.json",
        "contentType": "application/json",
        "isRequired": True,
        "jsonSchema": f"{BASE}/v{version}/TaskData.json",
    }
    dump(
        source / "archive-map.json",
        {
            "anyOf": [
                {
                    "filename": "metadata.json",
                    "contentType": "application/json",
                    "isRequired": True,
                    "jsonSchema": f"{BASE}/v1/ArchiveMetadata.json",
                },
                {"filename": "info.json", "contentType": "application/json", "isRequired": False, "deprecated": True},
            ],
            "assessments": [
                {"assessmentIdentifier": "number-match", "assessmentRevision": 1, "files": [task_file(1)]},
                {"assessmentIdentifier": "number-match", "assessmentRevision": 3, "files": [task_file(2)]},
            ],
            "apps": [
                {
                    "appId": "sample-app",
                    "default": [{"organization": "Samples", "files": [task_file(1)]}],
                    "anyOf": [
                        {
                            "filename": "motion.json",
                            "contentType": "application/json",
                            "isRequired": False,
                            "jsonSchema": f"{BASE}/v1/MotionRecord.json",
                        }
                    ],
                }
            ],
        },
    )
    dump(
        source / "schema-mapping.json",
        {
            f"{BASE}/v1/ArchiveMetadata.json": "ArchiveMetadata_v1",
            f"{BASE}/v1/TaskData.json": "TaskData_v1",
            f"{BASE}/v2/TaskData.json": "TaskData_v2",
            f"{BASE}/v1/MotionRecord.json": "MotionRecord_v1",
        },
    )
    dump(
        source / "dataset-mapping.json",
        {
            "assessmentIdentifier": {
                "legacy-survey": {
                    "assessmentRevision": {
                        "1": {"answers.json": "SurveyAnswers_v1", "metadata.json": "TaskMetadata_v1"}
                    }
                }
            }
        },
    )
    dump(
        source / "pipeline-rules.json",
        {
            "file_aliases": {"motion_data.json": "motion.json"},
            "accepted_deviations": [
                {
                    "when": {"appId": "sample-app", "clientInfoContains": "Android"},
                    "file": "motion.json",
                    "messages": ["'stepPath' is a required property"],
                }
            ],
        },
    )


# -- archives -----------------------------------------------------------------


def metadata_json(task: str) -> dict:
    return {
        "appName": "SampleApp",
        "appVersion": "2.1.0",
        "taskIdentifier": task,
        "startDate": "2024-03-01T09:00:00.000-08:00",
        "endDate": "2024-03-01T09:04:00.000-08:00",
        "files": [
            {"filename": "taskData.json", "contentType": "application/json"},
            {"filename": "motion.json", "contentType": "application/json"},
        ],
    }


def task_data(task: str, raw_score: int, steps: int, response_time: object = 1.5, locale: str | None = None) -> dict:
    document = {
        "taskIdentifier": task,
        "taskRunUUID": f"{task}-{raw_score}-{steps}",
        "startDate": "2024-03-01T09:00:00.000-08:00",
        "endDate": "2024-03-01T09:04:00.000-08:00",
        "scores": {"rawScore": raw_score, "theta": raw_score / 10},
        "steps": [
            {
                "identifier": f"item-{i}",
                "response": str(i * 7 % 10),
                "responseTime": response_time if i == 0 else 1.0 + i / 4,
                "interactions": [
                    {"controlEvent": "tap", "timestamp": f"2024-03-01T09:0{i}:0{j}Z"} for j in range(i % 3)
                ],
            }
            for i in range(steps)
        ],
    }
    if locale:
        document["locale"] = locale
    return document


def motion(samples: int, with_step_path: bool = True) -> list[dict]:
    sensors = ["accelerometer", "gyro", "magnetometer"]
    records = []
    for i in range(samples):
        record = {"timestamp": round(i * 0.01, 2), "sensorType": sensors[i % 3], "x": i * 0.1, "y": -i * 0.1, "z": 0.98}
        if with_step_path:
            record["stepPath"] = "main/step"
        records.append(record)
    return records


def bridge_metadata(
    record_id: str, assessment: str, revision: int, uploaded_on: str, client: str = "iOS", **extra
) -> dict:
    meta = {
        "recordid": record_id,
        "assessmentid": assessment,
        "assessmentrevision": str(revision),
        "uploadedon": uploaded_on,
        "appid": "sample-app",
        "clientinfo": f"ClientInfo [appName=SampleApp, appVersion=21, osName={client}]",
    }
    meta.update(extra)
    return meta


def write_archive(folder: Path, name: str, members: dict, metadata: dict | None) -> None:
    write_zip(folder / name, members)
    if metadata is not None:
        dump(folder / f"{name}.metadata.json", metadata)


def write_archives() -> None:
    folder = HERE / "archives"
    write_archive(
        folder,
        "rec-0001-number-match.zip",
        {
            "metadata.json": metadata_json("number-match"),
            "taskData.json": task_data("number-match", 12, 4),
            "motion.json": motion(9),
            "info.json": {"format": "v2_generic"},
        },
        bridge_metadata("rec-0001", "number-match", 1, "2024-03-01T17:10:00.000Z"),
    )
    write_archive(
        folder,
        "rec-0002-number-match-v3.zip",
        {
            "metadata.json": metadata_json("number-match"),
            "taskData.json": task_data("number-match", 15, 3, locale="en_US"),
            "motion.json": motion(6),
        },
        bridge_metadata("rec-0002", "number-match", 3, "2024-03-02T08:00:00.000Z"),
    )
    write_archive(
        folder,
        "rec-0003-flanker-android.zip",
        {
            "metadata.json": metadata_json("flanker"),
            "taskData.json": task_data("flanker", 20, 5),
            "motion_data.json": motion(4, with_step_path=False),
        },
        bridge_metadata("rec-0003", "flanker", 2, "2024-03-02T09:30:00.000Z", client="Android"),
    )
    write_archive(
        folder,
        "rec-0004-legacy-survey.zip",
        {
            "metadata.json": {"taskIdentifier": "legacy-survey"},
            "answers.json": {"q1": "yes", "q2": 3, "q3": {"other": "free text"}},
        },
        bridge_metadata("rec-0004", "legacy-survey", 1, "2024-03-03T10:00:00.000Z"),
    )
    write_archive(
        folder,
        "rec-0005-invalid-response-time.zip",
        {
            "metadata.json": metadata_json("number-match"),
            "taskData.json": task_data("number-match", 9, 2, response_time="fast"),
            "motion.json": motion(3),
        },
        bridge_metadata("rec-0005", "number-match", 1, "2024-03-03T11:00:00.000Z"),
    )
    (folder / "rec-0006-corrupt.zip").write_bytes(b"PK\x03\x04 this upload was cut short")
    dump(
        folder / "rec-0006-corrupt.zip.metadata.json",
        bridge_metadata("rec-0006", "number-match", 1, "2024-03-03T12:00:00.000Z"),
    )
    write_archive(
        folder,
        "rec-0007-no-metadata.zip",
        {"metadata.json": metadata_json("number-match"), "taskData.json": task_data("number-match", 4, 1)},
        None,
    )
    # A re-export of rec-0001 with a corrected score: deduplication keeps it.
    write_archive(
        folder,
        "rec-0001-number-match-reexport.zip",
        {
            "metadata.json": metadata_json("number-match"),
            "taskData.json": task_data("number-match", 13, 4),
            "motion.json": motion(9),
        },
        bridge_metadata(
            "rec-0001", "number-match", 1, "2024-03-01T17:10:00.000Z", exportedon="2024-03-05T00:00:00.000Z"
        ),
    )


def write_export() -> None:
    def ndjson(rows: list[dict]) -> str:
        return "".join(json.dumps(r) + "\n" for r in rows)

    participants = ["RX-0001", "RX-0002"]
    sleep = [
        {
            "ParticipantIdentifier": p,
            "LogId": f"{p}-sleep-{n}",
            "StartDate": f"2024-01-0{n + 1}T22:00:00",
            "Duration": str(28_800_000 + n),
            "InsertedDate": "2024-01-05T03:00:00Z",
            "SleepLogDetails": [
                {
                    "Type": "stage",
                    "StartDate": f"2024-01-0{n + 1}T22:{m:02d}:00",
                    "Value": ["wake", "light", "deep"][m % 3],
                }
                for m in range(n + 2)
            ],
        }
        for p in participants
        for n in range(2)
    ]
    intraday = [
        {
            "ParticipantIdentifier": p,
            "Type": "activities-steps",
            "DateTime": f"2024-01-01T00:{m:02d}:00",
            "Value": str(m * 3),
            "InsertedDate": "2024-01-05T03:00:00Z",
        }
        for p in participants
        for m in range(30)
    ]
    steps = [
        {
            "ParticipantIdentifier": "RX-0001",
            "HealthKitSampleKey": f"hk-{i}",
            "Type": "Steps",
            "Value": str(100 + i),
            "StartDate": f"2024-01-02T0{i}:00:00Z",
            "InsertedDate": "2024-01-05T03:00:00Z",
        }
        for i in range(5)
    ]
    deleted = [
        {"ParticipantIdentifier": "RX-0001", "HealthKitSampleKey": "hk-3", "InsertedDate": "2024-01-05T04:00:00Z"}
    ]
    manifest = "ExportStartDate,ExportEndDate,ExportConfiguration,FitbitSleepLogs,FitbitIntradayCombined\n2024-01-01T00:00:00+00:00,2024-01-05T00:00:00+00:00,SampleCohort,4,60\n"
    folder = HERE / "exports"
    write_zip(
        folder / "export-2024-01-05T03--00--00Z_SAMPLE.zip",
        {
            "Manifest.csv": manifest,
            "FitbitSleepLogs_20240101-20240105.json": ndjson(sleep),
            "FitbitIntradayCombined_20240101-20240105.json": ndjson(intraday),
            "HealthKitV2Samples_Steps_20240101-20240105.json": ndjson(steps),
            "HealthKitV2Samples_Steps_Deleted_20240101-20240105.json": ndjson(deleted),
            "HealthKitV2Samples_Weight_20240101-20240105.json": "",
        },
    )
    dump(folder / "export-2024-01-05T03--00--00Z_SAMPLE.zip.metadata.json", {"cohort": "adults_v1"})


if __name__ == "__main__":
    write_registry_source()
    write_archives()
    write_export()
    print(f"sample data written under {HERE}")
