"""The original BridgeDownstream's MTB rules as the project ships them
(registry-sources/mtb.yaml), on real data from ../shared/data; the archive
map's precedence inside an app entry; the invalid message's field types."""

from __future__ import annotations

import copy
import json
import shlex
import zipfile
from pathlib import Path

import pytest

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config import RegistrySources, SchemaRegistry
from bridge_downstream.ingest.resolution import archive_map_schema
from bridge_downstream.replay import Selection, StorageInvalidStore, select, summary_row
from bridge_downstream_cli.main import main
from project_paths import PROJECT_ROOT, SHARED_DATA, shared_path
from support import SPELLING_ARCHIVE, SPELLING_METADATA, ingest_folder, invalid_entries, read_dataset, write_archive

MTB_SOURCES = PROJECT_ROOT / "registry-sources" / "mtb.yaml"
ANDROID = (
    "ClientInfo [appName=MobileToolboxApp, appVersion=1.1.4, deviceName=Pixel 4a, osName=Android, "
    "osVersion=12, sdkName=BridgeClientKMM, sdkVersion=0]"
)


@pytest.fixture(scope="module")
def mtb_registry(tmp_path_factory) -> SchemaRegistry:
    shared_path("mobile-client-json")
    out = tmp_path_factory.mktemp("registry") / "mtb"
    RegistrySources.load(MTB_SOURCES, root=SHARED_DATA).build(out)
    return SchemaRegistry.load(out)


def spelling_documents() -> dict[str, object]:
    with zipfile.ZipFile(shared_path("bridge-archives", SPELLING_ARCHIVE)) as archive:
        return {name: json.loads(archive.read(name)) for name in archive.namelist() if name.endswith(".json")}


def android_documents() -> dict[str, object]:
    """The real Spelling upload as an Android client of MTB's first year wrote
    it: each file with the deviations the original accepted."""
    documents = spelling_documents()
    metadata = documents["metadata.json"]
    del metadata["appName"], metadata["files"]
    documents["taskData.json"]["type"] = "taskData"
    del documents["weather.json"]["type"]
    motion = documents["motion.json"]
    motion[1]["sensorType"] = "acceleration"
    motion[1]["eventAccuracy"] = None
    return documents


def ingest_one(tmp_path: Path, registry: SchemaRegistry, documents: dict, client_info: str) -> dict:
    metadata = {**SPELLING_METADATA, "clientinfo": client_info}
    write_archive(tmp_path / "in" / SPELLING_ARCHIVE, documents, metadata)
    return ingest_folder(tmp_path / "in", tmp_path / "out", registry)


@pytest.mark.shared_data
def test_real_upload_gets_both_microphone_files(mtb_registry, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / SPELLING_ARCHIVE).symlink_to(shared_path("bridge-archives", SPELLING_ARCHIVE))
    (folder / f"{SPELLING_ARCHIVE}.metadata.json").write_text(json.dumps(SPELLING_METADATA))
    report = ingest_folder(folder, tmp_path / "out", mtb_registry)
    assert report["archives"]["processed"] == 1
    assert report["datasets"]["AudioLevelRecord_v1"]["rows"] == 8
    rows = read_dataset(tmp_path / "out", "AudioLevelRecord_v1")
    assert sorted({row["sourcefile"] for row in rows}) == ["microphone.json", "microphone_levels.json"]
    assert len(rows) == 8


@pytest.mark.shared_data
def test_android_record_with_only_the_accepted_deviations_is_valid(mtb_registry, tmp_path):
    report = ingest_one(tmp_path, mtb_registry, android_documents(), ANDROID)
    assert report["archives"] == {"total": 1, "processed": 1, "invalid": 0, "skipped": 0}
    motion = read_dataset(tmp_path / "out", "MotionRecord_v1")
    assert len(motion) == len(android_documents()["motion.json"])
    assert motion[1]["sensorType"] == "acceleration"
    assert report["datasets"]["WeatherResult_v1"]["rows"] == 1


@pytest.mark.shared_data
def test_the_same_deviations_from_ios_keep_the_record_invalid(mtb_registry, tmp_path):
    report = ingest_one(tmp_path, mtb_registry, android_documents(), SPELLING_METADATA["clientinfo"])
    assert report["archives"]["invalid"] == 1
    errors = invalid_entries(tmp_path / "out")[SPELLING_METADATA["recordid"]]["validation_result"]["errors"]
    assert sorted(errors) == ["metadata.json", "motion.json", "taskData.json", "weather.json"]


@pytest.mark.shared_data
def test_android_record_with_another_deviation_is_invalid_with_the_reason(mtb_registry, tmp_path):
    documents = android_documents()
    documents["motion.json"][2]["x"] = "fast"
    report = ingest_one(tmp_path, mtb_registry, documents, ANDROID)
    assert report["archives"]["invalid"] == 1
    entry = invalid_entries(tmp_path / "out")[SPELLING_METADATA["recordid"]]
    assert entry["reason"] == "failed validation: motion.json"
    assert entry["validation_result"] == {
        "assessmentId": "spelling",
        "assessmentRevision": 5,
        "appId": "mobile-toolbox",
        "recordId": SPELLING_METADATA["recordid"],
        "errors": {"motion.json": ["'fast' is not of type 'number' (at /2/x)"]},
    }
    assert read_dataset(tmp_path / "out", "MotionRecord_v1") == []

    # The invalid store reads the message as the original typed it, and as
    # this project wrote it before (the revision as text), alike.
    old = copy.deepcopy(entry)
    old["validation_result"]["assessmentRevision"] = "5"
    old["identity"] = "0" * 64
    store = StorageInvalidStore(LocalStorage(tmp_path / "out"))
    store.send(old)
    chosen = select(store.load(), Selection(assessments=("spelling",)))
    assert len(chosen) == 2
    rows = [summary_row(stored.entry) for stored in chosen]
    assert {(row["record_id"], row["assessment"], row["reason"]) for row in rows} == {
        (SPELLING_METADATA["recordid"], "spelling", "failed validation: motion.json")
    }


def test_inside_an_app_entry_anyof_overrides_default():
    """The original's get_json_schema assigned on every match in the app's
    default organizations, then in its anyOf: the last assignment won."""
    archive_map = {
        "anyOf": [{"filename": "shared.json", "jsonSchema": "https://example.org/top.json"}],
        "assessments": [],
        "apps": [
            {
                "appId": "mobile-toolbox",
                "default": [
                    {"organization": "first", "files": [{"filename": "x.json", "jsonSchema": "https://e.org/d1.json"}]},
                    {
                        "organization": "second",
                        "files": [{"filename": "x.json", "jsonSchema": "https://e.org/d2.json"}],
                    },
                    {"organization": "third", "files": [{"filename": "y.json", "jsonSchema": "https://e.org/y.json"}]},
                ],
                "anyOf": [
                    {"filename": "x.json", "jsonSchema": "https://e.org/any.json"},
                    {"filename": "z.json", "jsonSchema": "https://e.org/z.json"},
                ],
            }
        ],
    }

    def schema_of(file_name: str, app_id: str = "mobile-toolbox"):
        return archive_map_schema(archive_map, file_name=file_name, app_id=app_id, assessment_id="a", revision=1)

    assert schema_of("x.json") == ("https://e.org/any.json", "app-anyOf")
    assert schema_of("y.json") == ("https://e.org/y.json", "app-default")
    assert schema_of("z.json") == ("https://e.org/z.json", "app-anyOf")
    assert schema_of("shared.json") == ("https://example.org/top.json", "anyOf")
    assert schema_of("x.json", app_id="other-app") == (None, "none")
    without_anyof = copy.deepcopy(archive_map)
    del without_anyof["apps"][0]["anyOf"][0]
    # Of two organizations' defaults, the later one's.
    assert archive_map_schema(
        without_anyof, file_name="x.json", app_id="mobile-toolbox", assessment_id="a", revision=1
    ) == ("https://e.org/d2.json", "app-default")


def docs_registry_command() -> list[str]:
    """The real-registry command of docs/ingest.md, as its reader copies it."""
    text = (PROJECT_ROOT / "docs" / "ingest.md").read_text()
    section = text.split("## The schema registry", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return shlex.split(block.replace("\\\n", " "))


@pytest.mark.shared_data
def test_the_documented_real_registry_command_runs_as_written(tmp_path, monkeypatch, capsys):
    shared_path("mobile-client-json")
    argv = docs_registry_command()
    assert argv[:3] == ["bridge-downstream", "registry", "build"] and "--sources" in argv
    arguments = argv[1:]
    # Only the output goes elsewhere, and the data where this machine keeps it.
    arguments[arguments.index("--out") + 1] = str(tmp_path / "registry")
    arguments = [str(SHARED_DATA) if value == "../shared/data" else value for value in arguments]
    monkeypatch.chdir(PROJECT_ROOT)
    assert main(arguments) == 0
    assert "warning" not in capsys.readouterr().out
    registry = SchemaRegistry.load(tmp_path / "registry")
    assert registry.rules.file_aliases == {"microphone.json": "microphone_levels.json"}
    assert len(registry.rules.accepted_deviations) == 4
    assert registry.dataset_for_schema(
        "https://sage-bionetworks.github.io/mobile-client-json/schemas/v2/AudioLevelRecord.json"
    ) == ("AudioLevelRecord_v1")
