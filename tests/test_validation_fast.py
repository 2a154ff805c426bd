"""The compiled validation fast path decides exactly as jsonschema does, and a
failing document gets jsonschema's own messages."""

from __future__ import annotations

import json
import zipfile

import pytest

from bridge_downstream.validation import fast_validator, validate_document, validate_document_slow
from conftest import shared_path
from support import SAMPLES, TASKDATA_URL, build_real_registry, build_sample_registry

SAMPLE_BASE = "https://bridge-downstream.invalid/schemas"


def test_sample_documents(tmp_path):
    registry = build_sample_registry(tmp_path / "reg")
    urls = {"taskData.json": f"{SAMPLE_BASE}/v1/TaskData.json", "motion.json": f"{SAMPLE_BASE}/v1/MotionRecord.json", "metadata.json": f"{SAMPLE_BASE}/v1/ArchiveMetadata.json"}
    checked = 0
    for path in sorted((SAMPLES / "archives").glob("*.zip")):
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            continue
        with archive:
            for name, url in urls.items():
                if name in archive.namelist():
                    document = json.loads(archive.read(name))
                    assert fast_validator(registry, url) is not None
                    assert validate_document(registry, url, document) == validate_document_slow(registry, url, document), (path.name, name)
                    checked += 1
    broken = {"taskIdentifier": 3, "steps": [{"identifier": "a", "responseTime": "fast"}, {"responseTime": -1}]}
    assert validate_document(registry, urls["taskData.json"], broken) == validate_document_slow(registry, urls["taskData.json"], broken) != []
    assert checked >= 10


def test_validators_compiled_up_front_are_the_ones_used(tmp_path, monkeypatch):
    from bridge_downstream import validation

    registry = build_sample_registry(tmp_path / "reg")
    assert validation.compile_validators(registry) == len({registry.schema_id_for(url) for url in registry.schema_mapping})
    compiled = dict(validation._FAST_VALIDATORS[registry])
    monkeypatch.setattr(validation, "_compile_fast", lambda *a: pytest.fail("compiled again"))
    url = f"{SAMPLE_BASE}/v1/TaskData.json"
    assert fast_validator(registry, url) is compiled[registry.schema_id_for(url)]


@pytest.mark.shared_data
def test_every_real_taskdata_document(tmp_path):
    registry = build_real_registry(tmp_path / "real")
    root = shared_path("mtb-taskdata")
    documents = sorted(p for folder in ("Archive Exports and Tests", "June22 revision") for p in (root / folder).rglob("*.json"))
    fast = fast_validator(registry, TASKDATA_URL)
    assert fast is not None, "the real task-data schema compiles"
    for path in documents:
        document = json.loads(path.read_text())
        slow = validate_document_slow(registry, TASKDATA_URL, document)
        assert validate_document(registry, TASKDATA_URL, document) == slow, path.name
        assert fast(document) == (slow == []), path.name


def test_compiled_validators_do_not_keep_their_registry_alive(tmp_path):
    # They are cached per registry, weakly: a process that loads a new
    # registry version must not keep every old one and its validators.
    import gc
    import weakref

    from bridge_downstream import validation

    registry = build_sample_registry(tmp_path / "reg")
    gc.collect()  # registries other tests left behind go now, not during this test
    cached_before = len(validation._FAST_VALIDATORS)
    assert validation.compile_validators(registry) == 4
    assert fast_validator(registry, f"{SAMPLE_BASE}/v1/MotionRecord.json")([{"stepPath": "a", "timestamp": 1}]) is True
    assert len(validation._FAST_VALIDATORS) == cached_before + 1
    alive = weakref.ref(registry)
    del registry
    gc.collect()
    assert alive() is None
    assert len(validation._FAST_VALIDATORS) == cached_before
