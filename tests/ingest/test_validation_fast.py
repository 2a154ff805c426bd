"""The compiled validation fast path decides exactly as jsonschema does, and a
failing document gets jsonschema's own messages."""

from __future__ import annotations

import json
import zipfile

import pytest

from bridge_downstream.ingest import validation
from bridge_downstream.ingest.validation import (
    fast_validator,
    validate_document,
    validate_document_slow,
)
from project_paths import shared_path
from support import SAMPLES, TASKDATA_URL, build_real_registry, build_sample_registry

SAMPLE_BASE = "https://bridge-downstream.invalid/schemas"


def test_sample_documents(tmp_path):
    registry = build_sample_registry(tmp_path / "reg")
    urls = {
        "taskData.json": f"{SAMPLE_BASE}/v1/TaskData.json",
        "motion.json": f"{SAMPLE_BASE}/v1/MotionRecord.json",
        "metadata.json": f"{SAMPLE_BASE}/v1/ArchiveMetadata.json",
    }
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
                    assert validate_document(registry, url, document) == validate_document_slow(
                        registry, url, document
                    ), (path.name, name)
                    checked += 1
    broken = {"taskIdentifier": 3, "steps": [{"identifier": "a", "responseTime": "fast"}, {"responseTime": -1}]}
    assert (
        validate_document(registry, urls["taskData.json"], broken)
        == validate_document_slow(registry, urls["taskData.json"], broken)
        != []
    )
    assert checked >= 10


def test_validators_compiled_up_front_are_the_ones_used(tmp_path, monkeypatch):
    from bridge_downstream.ingest import validation

    registry = build_sample_registry(tmp_path / "reg")
    assert validation.compile_validators(registry) == len(
        {registry.schema_id_for(url) for url in registry.schema_mapping}
    )
    compiled = dict(validation._FAST_VALIDATORS[registry])
    monkeypatch.setattr(validation, "_compile_fast", lambda *a: pytest.fail("compiled again"))
    url = f"{SAMPLE_BASE}/v1/TaskData.json"
    assert fast_validator(registry, url) == compiled[registry.schema_id_for(url)].is_valid


@pytest.mark.shared_data
def test_every_real_taskdata_document(tmp_path):
    registry = build_real_registry(tmp_path / "real")
    root = shared_path("mtb-taskdata")
    documents = sorted(
        p for folder in ("Archive Exports and Tests", "June22 revision") for p in (root / folder).rglob("*.json")
    )
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

    from bridge_downstream.ingest import validation

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


MOTION_URL = f"{SAMPLE_BASE}/v1/MotionRecord.json"
TASK_V1_URL = f"{SAMPLE_BASE}/v1/TaskData.json"
NO_STEP_PATH = "'stepPath' is a required property"


def _motion(samples: int) -> list[dict]:
    return [{"timestamp": float(i), "sensorType": "gyro", "x": 0.1, "y": 0.2, "z": 0.3} for i in range(samples)]


def test_accepted_deviations_never_hide_an_error(tmp_path):
    # An old client leaves stepPath out of every sample: accepted. More errors
    # than the per-file cap are accepted ones, and the one that is not comes
    # after them: it must still fail the file.
    registry = build_sample_registry(tmp_path / "reg")
    document = _motion(12)
    assert validate_document(registry, MOTION_URL, document, lambda: (NO_STEP_PATH,)) == []
    assert validate_document_slow(registry, MOTION_URL, document, (NO_STEP_PATH,)) == []
    document[11]["timestamp"] = "late"
    expected = ["'late' is not of type 'number' (at /11/timestamp)"]
    assert validate_document(registry, MOTION_URL, document, lambda: (NO_STEP_PATH,)) == expected
    assert validate_document_slow(registry, MOTION_URL, document, (NO_STEP_PATH,)) == expected
    # Nothing accepted: the first MAX_ERRORS_PER_FILE errors, all about stepPath.
    unaccepted = validate_document(registry, MOTION_URL, document)
    assert len(unaccepted) == validation.MAX_ERRORS_PER_FILE and unaccepted[0] == f"{NO_STEP_PATH} (at /0)"


def _faulty_task(rng) -> dict:
    steps = []
    for number in range(rng.randint(1, 6)):
        step = {"identifier": f"s{number}", "responseTime": rng.choice([0.5, 2, -1, "fast"]), "interactions": []}
        for _ in range(rng.randint(0, 3)):
            step["interactions"].append(
                rng.choice([{"controlEvent": "tap", "timestamp": "t"}, {"timestamp": "t"}, {"controlEvent": 3}])
            )
        if rng.random() < 0.3:
            del step["identifier"]
        steps.append(step)
    task = {"taskIdentifier": rng.choice(["dccs", 7]), "steps": steps}
    if rng.random() < 0.1:
        del task["taskIdentifier"]
    return task


def _faulty_motion(rng) -> list:
    samples = _motion(rng.randint(1, 30))
    for sample in samples:
        if rng.random() < 0.8:
            sample["stepPath"] = "a/b"
        if rng.random() < 0.05:
            sample["sensorType"] = "barometer"
        if rng.random() < 0.05:
            sample["timestamp"] = "late"
    if rng.random() < 0.05:
        samples.append("not a sample")
    return samples


ACCEPTABLE = {
    MOTION_URL: [
        NO_STEP_PATH,
        "'late' is not of type 'number'",
        "'barometer' is not one of ['accelerometer', 'gyro', 'magnetometer']",
    ],
    TASK_V1_URL: [
        "'identifier' is a required property",
        "-1 is less than the minimum of 0",
        "'fast' is not of type 'number'",
        "'controlEvent' is a required property",
        "3 is not of type 'string'",
    ],
}


def test_accepted_deviations_are_decided_as_jsonschema_decides(tmp_path, monkeypatch):
    # Documents with random faults (through $refs, in arrays, at the top) and
    # random sets of accepted messages: the verdict and the messages are
    # jsonschema's whichever way decided -- the schema without the accepted
    # requirements, jsonschema's messages for jsonschema-rs's errors, or
    # jsonschema alone.
    import random

    registry = build_sample_registry(tmp_path / "reg")
    waived, messaged, slow = [], [], []
    waiving, messages_of, reference = (
        validation._valid_but_for_accepted_requirements,
        validation._messages_of_compiled_errors,
        validation.validate_document_slow,
    )
    monkeypatch.setattr(
        validation, "_valid_but_for_accepted_requirements", lambda *args: waived.append(waiving(*args)) or waived[-1]
    )
    monkeypatch.setattr(
        validation, "_messages_of_compiled_errors", lambda *args: messaged.append(messages_of(*args)) or messaged[-1]
    )
    monkeypatch.setattr(validation, "validate_document_slow", lambda *args: slow.append(1) or reference(*args))
    rng = random.Random(20261124)
    for _ in range(400):
        url = rng.choice(sorted(ACCEPTABLE))
        document = _faulty_motion(rng) if url == MOTION_URL else _faulty_task(rng)
        accepted = tuple(rng.sample(ACCEPTABLE[url], rng.randint(1, len(ACCEPTABLE[url]))))
        expected = reference(registry, url, document, accepted)
        assert validate_document(registry, url, document, lambda accepted=accepted: accepted) == expected, (
            document,
            accepted,
        )
        everything = [m for m in (_all_messages(registry, url, document)) if not validation.is_accepted(m, accepted)]
        assert expected == everything[: validation.MAX_ERRORS_PER_FILE]
    # Every way decided often, so every way was compared.
    assert waived.count(True) > 25
    assert messaged.count([]) > 50 and sum(1 for m in messaged if m and len(m) == 1) > 50
    assert len(slow) > 50


def test_requirements_are_waived_only_where_the_schema_is_a_conjunction(tmp_path):
    # Under anyOf, a missing property is not reported as such: leaving the
    # requirement out would make a document valid that jsonschema rejects.
    from bridge_downstream.config.registry import PipelineRules, SchemaRegistry

    base = "https://bridge-downstream.invalid/test"
    schemas = {
        f"{base}/either.json": {
            "$id": f"{base}/either.json",
            "type": "object",
            "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
        },
        f"{base}/samples.json": {
            "$id": f"{base}/samples.json",
            "type": "array",
            "items": {"$ref": "#/definitions/sample"},
            "definitions": {
                "sample": {"type": "object", "allOf": [{"required": ["a"]}, {"$ref": f"{base}/either.json#/anyOf/1"}]}
            },
        },
        f"{base}/guarded.json": {
            "$id": f"{base}/guarded.json",
            "type": "array",
            "items": {"$ref": f"{base}/either.json"},
        },
    }
    registry = SchemaRegistry(
        version="t",
        archive_map={},
        schemas=schemas,
        aliases={},
        schema_mapping={},
        dataset_mapping={},
        rules=PipelineRules(),
    )
    no_a = ("'a' is a required property",)
    either, samples, guarded = (f"{base}/{name}.json" for name in ("either", "samples", "guarded"))
    assert validation._waivable_requirements(registry, either) == frozenset()
    assert validation._waivable_requirements(registry, guarded) == frozenset()  # anyOf behind a $ref
    assert validation._waivable_requirements(registry, samples) == {
        "a",
        "b",
    }  # a $ref into an anyOf's branch is a plain schema
    for url, document in [(either, {}), (guarded, [{}]), (samples, [{"b": 1}, {"b": 2}]), (samples, [{"b": 1}, {}])]:
        expected = validate_document_slow(registry, url, document, no_a)
        assert validate_document(registry, url, document, lambda: no_a) == expected, (url, document)
    assert validate_document(registry, either, {}, lambda: no_a) == ["{} is not valid under any of the given schemas"]
    assert validate_document(registry, samples, [{"b": 1}, {"b": 2}], lambda: no_a) == []
    assert validation._valid_but_for_accepted_requirements(registry, samples, [{"b": 1}, {"b": 2}], no_a)
    assert validate_document(registry, samples, [{"b": 1}, {}], lambda: no_a) == ["'b' is a required property (at /1)"]


def _all_messages(registry, url, document) -> list[str]:
    return [validation._error_text(e.message, e.absolute_path) for e in registry.validator(url).iter_errors(document)]
