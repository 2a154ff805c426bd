"""An empty sidecar is empty metadata, not missing metadata (issue 24, item 3):
the archive is invalid only for the required fields it lacks, and the
profile's documented defaults (docs/ingest.md, "Profiles": recover's
``cohort``, MTB's ``app_id``) apply where the metadata does not say."""

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import pytest

from bridge_downstream.common.storage import NO_METADATA, LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
from bridge_downstream.ingest.listing import ArchiveInput
from bridge_downstream.ingest.run import run_ingest
from support import invalid_entries, mtb_metadata, read_dataset, write_archive

TASK = {"taskIdentifier": "number-match", "steps": [{"identifier": "a", "responseTime": 1.0}]}
RECOVER_FILE = "FitbitDevices_20230114.json"


def _ingest(folder: Path, output: Path, registry, profile) -> dict:
    storage = LocalStorage(folder)
    inputs = [ArchiveInput(storage, p.relative_to(folder).as_posix()) for p in sorted(folder.rglob("*.zip"))]
    out = LocalStorage(output)
    return run_ingest(inputs, registry=registry, profile=profile, output=out, sink=StorageInvalidSink(out), workers=1)


def _reasons(output: Path) -> dict[str, str]:
    return {
        Path(record["source"]).name: record.get("reason", "")
        for path in sorted((output / "reports").glob("*.records.jsonl"))
        for record in map(json.loads, path.read_text().splitlines())
    }


def _recover_export(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(RECOVER_FILE, '{"Device": "a"}\n')
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize("sidecar_text", ["", "  \n", "{}"])
def test_an_empty_sidecar_is_an_empty_mapping_and_no_sidecar_is_none_held(tmp_path, sidecar_text):
    (tmp_path / "a.zip").write_bytes(b"zip")
    (tmp_path / "a.zip.metadata.json").write_text(sidecar_text)
    storage = LocalStorage(tmp_path)
    assert storage.metadata("a.zip") == {}
    assert storage.metadata("a.zip") is not NO_METADATA
    assert storage.metadata("other.zip") is NO_METADATA


def test_an_mtb_archive_with_an_empty_sidecar_is_invalid_for_the_fields_it_lacks(registry, tmp_path):
    folder = tmp_path / "in"
    # Each archive its own bytes: the same bytes and metadata twice would be one archive and its copy.
    write_archive(folder / "empty.zip", {"taskData.json": {**TASK, "n": 1}})
    (folder / "empty.zip.metadata.json").write_text("")
    write_archive(folder / "braces.zip", {"taskData.json": {**TASK, "n": 2}}, {})
    write_archive(folder / "none.zip", {"taskData.json": {**TASK, "n": 3}})
    write_archive(folder / "good.zip", {"taskData.json": TASK}, mtb_metadata("good-1"))

    report = _ingest(folder, tmp_path / "out", registry, load_profile("mtb"))

    assert report["archives"] == {"total": 4, "processed": 1, "invalid": 3, "skipped": 0}
    every_field = "Bridge metadata is incomplete: missing recordid, assessmentid, assessmentrevision, uploadedon"
    reasons = _reasons(tmp_path / "out")
    assert reasons["empty.zip"] == every_field
    assert reasons["braces.zip"] == every_field
    assert reasons["none.zip"] == (
        "no Bridge metadata: expected the S3 object's metadata, or locally a sidecar file none.zip.metadata.json"
    )


def test_mtb_app_id_default_names_the_app_of_a_record_that_does_not(registry, tmp_path):
    """An app's files (sample-app's default organization maps taskData.json
    for any assessment) are found through the profile's ``app_id`` when the
    metadata has no ``appid``; the record's own ``appid`` wins."""
    folder = tmp_path / "in"
    no_app = {k: v for k, v in mtb_metadata("no-app", assessment="unlisted-task").items() if k != "appid"}
    write_archive(folder / "no-app.zip", {"taskData.json": TASK}, no_app)
    sample_app_profile = dataclasses.replace(load_profile("mtb"), app_id="sample-app")

    report = _ingest(folder, tmp_path / "defaulted", registry, sample_app_profile)
    assert report["archives"]["processed"] == 1
    assert [row["recordid"] for row in read_dataset(tmp_path / "defaulted", "TaskData_v1")] == ["no-app"]

    # mtb's own default (mobile-toolbox) is not the app that maps the file: nothing resolves.
    report = _ingest(folder, tmp_path / "mtb-default", registry, load_profile("mtb"))
    assert report["archives"]["processed"] == 0
    assert read_dataset(tmp_path / "mtb-default", "TaskData_v1") == []


def test_mtb_app_id_default_is_the_app_an_invalid_record_is_filed_under(registry, tmp_path):
    folder = tmp_path / "in"
    write_archive(folder / "partial.zip", {"taskData.json": TASK}, {"recordid": "partial-1"})

    _ingest(folder, tmp_path / "out", registry, load_profile("mtb"))

    entry = invalid_entries(tmp_path / "out")["partial-1"]
    assert entry["validation_result"]["appId"] == "mobile-toolbox"


@pytest.mark.parametrize("sidecar_text", [None, "", "{}"])
def test_recover_cohort_default_applies_with_no_empty_or_braces_sidecar(registry, tmp_path, sidecar_text):
    folder = tmp_path / "in"
    path = _recover_export(folder / "export.zip")
    if sidecar_text is not None:
        Path(f"{path}.metadata.json").write_text(sidecar_text)

    report = _ingest(folder, tmp_path / "out", registry, load_profile("recover"))

    assert report["archives"] == {"total": 1, "processed": 1, "invalid": 0, "skipped": 0}
    assert [row["cohort"] for row in read_dataset(tmp_path / "out", "FitbitDevices")] == ["adults_v1"]
    assert (tmp_path / "out" / "json" / "dataset=FitbitDevices" / "cohort=adults_v1").is_dir()
