"""Replay keeps ingest's distinction between no metadata and empty metadata
(issue 24, item 3): an empty sidecar is metadata with no fields, so the
profile's defaults apply and the record is refused only for the fields it
lacks; no sidecar (and none recorded) is still "no Bridge metadata"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge_downstream.common.storage import NO_METADATA, LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.config.registry import SchemaRegistry
from bridge_downstream.replay import (
    Selection,
    StorageInvalidStore,
    archive_metadata,
    choose_metadata,
    local_archive_input,
    replay,
)
from bridge_downstream_cli.main import main
from support import build_sample_registry, ingest_folder, invalid_entries, mtb_metadata, write_archive

TASK = {"taskIdentifier": "number-match", "steps": [{"identifier": "a", "responseTime": 1.0}]}
NO_SIDECAR = "no Bridge metadata: expected the S3 object's metadata, or locally a sidecar file bare.zip.metadata.json"
EVERY_FIELD = "Bridge metadata is incomplete: missing recordid, assessmentid, assessmentrevision, uploadedon"


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("registry") / "reg"
    build_sample_registry(folder)
    return folder


@pytest.fixture()
def registry(registry_dir) -> SchemaRegistry:
    return SchemaRegistry.load(registry_dir)


@pytest.fixture()
def bare_record(registry, tmp_path) -> tuple[Path, Path]:
    """An MTB archive ingested without a sidecar: invalid, no Bridge metadata."""
    archives, output = tmp_path / "archives", tmp_path / "out"
    write_archive(archives / "bare.zip", {"taskData.json": TASK})
    report = ingest_folder(archives, output, registry)
    assert report["archives"]["invalid"] == 1
    assert invalid_entries(output)["bare.zip"]["reason"] == NO_SIDECAR
    return archives, output


def _replay(registry: SchemaRegistry, output: Path, record: str = "bare.zip") -> dict:
    return replay(
        StorageInvalidStore(LocalStorage(output)),
        Selection(records=(record,)),
        registry=registry,
        profile=load_profile("mtb"),
        output=LocalStorage(output),
    )


@pytest.mark.parametrize("sidecar_text", ["", "{}"])
def test_an_empty_sidecar_is_replayed_as_empty_metadata_the_profile_completes(registry, bare_record, sidecar_text):
    archives, output = bare_record
    (archives / "bare.zip.metadata.json").write_text(sidecar_text)

    report = _replay(registry, output)

    assert report["counts"]["still_invalid"] == 1
    (item,) = report["still_invalid"]
    assert item["reason"] == EVERY_FIELD
    entry = invalid_entries(output)["bare.zip"]
    assert entry["reason"] == EVERY_FIELD
    assert entry["validation_result"]["appId"] == "mobile-toolbox"  # mtb's documented app_id default
    assert entry["replays"][0]["previous_reason"] == NO_SIDECAR


def test_no_sidecar_is_still_no_bridge_metadata(registry, bare_record):
    _, output = bare_record

    report = _replay(registry, output)

    assert [item["reason"] for item in report["still_invalid"]] == [NO_SIDECAR]
    assert invalid_entries(output)["bare.zip"]["reason"] == NO_SIDECAR


def test_a_sidecar_emptied_since_ingest_wins_over_the_recorded_metadata(registry, tmp_path):
    archives, output = tmp_path / "archives", tmp_path / "out"
    wrong = mtb_metadata("wrong-1", revision=1) | {"assessmentrevision": "first"}
    write_archive(archives / "bare.zip", {"taskData.json": TASK}, wrong)
    ingest_folder(archives, output, registry)
    assert invalid_entries(output)["wrong-1"]["metadata"]["recordid"] == "wrong-1"
    (archives / "bare.zip.metadata.json").write_text("")

    report = _replay(registry, output, "wrong-1")

    assert [item["reason"] for item in report["still_invalid"]] == [EVERY_FIELD]


def test_invalid_replay_command_hands_over_an_empty_sidecar_as_empty(registry_dir, bare_record, capsys):
    archives, output = bare_record
    (archives / "bare.zip.metadata.json").write_text("{}")

    code = main(["invalid", "replay", "--output", str(output), "--registry", str(registry_dir), "--all", "--json"])

    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [item["reason"] for item in report["still_invalid"]] == [EVERY_FIELD]


def test_metadata_choice_and_hand_over():
    recorded = {"metadata": {"recordid": "r1"}}
    # No sidecar now: the recorded metadata, or none at all.
    assert choose_metadata(NO_METADATA, recorded) == {"recordid": "r1"}
    assert choose_metadata(NO_METADATA, {"metadata": {}}) is None
    # A sidecar now, even an empty one, wins.
    assert choose_metadata({}, recorded) == {}
    assert choose_metadata({"recordid": "r2"}, recorded) == {"recordid": "r2"}
    # ArchiveInput.metadata: {} is "none", None is "read the store's" (an empty sidecar reads as empty).
    assert archive_metadata(None) == {}
    assert archive_metadata({}) is None
    assert archive_metadata({"recordid": "r2"}) == {"recordid": "r2"}


def test_local_archive_input_of_an_empty_sidecar_reads_the_store(tmp_path):
    write_archive(tmp_path / "a.zip", {"taskData.json": TASK})
    entry = {"source": (tmp_path / "a.zip").as_uri(), "metadata": {}}
    assert local_archive_input(entry).metadata == {}  # none: ingest's "no Bridge metadata"
    (tmp_path / "a.zip.metadata.json").write_text("")
    inp = local_archive_input(entry)
    assert inp.metadata is None
    assert inp.storage.metadata(inp.key) == {} and inp.storage.metadata(inp.key) is not NO_METADATA
